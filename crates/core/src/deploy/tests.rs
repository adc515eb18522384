//! The deployment state machine driven end to end in memory: the scheduler, the state machine,
//! simulated clients reporting health, and the watcher at a simulated time (hours of deadlines
//! in microseconds).

use super::*;
use crate::internal::{command, ApplyPlan};
use crate::testkit::{Sim, MIN};

/// A service job "web", group "app", with `update` written as given and no reschedules.
fn job(count: u32, env: &str, update: &str) -> Job {
    crate::testkit::web_job(count, env, update, "attempts = 0\n      unlimited = false")
}

const ROLLING: &str = r#"max_parallel = 2
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "10m""#;

#[test]
fn the_first_run_succeeds_and_marks_version_0_stable() {
    let mut s = Sim::new();
    s.run(job(3, "a", ROLLING));
    let d = s.latest();
    assert_eq!(
        (d.status.as_str(), d.status_description.as_str()),
        (DEPLOYMENT_RUNNING, DESC_DEPLOYMENT_RUNNING)
    );
    assert_eq!(d.task_groups["app"].desired_total, 3);
    assert_eq!(
        d.task_groups["app"].placed_allocs, 3,
        "placements are not limited"
    );
    assert!(!s.stable(0));
    s.all_healthy();
    let d = s.latest();
    assert_eq!(
        (d.status.as_str(), d.status_description.as_str()),
        (DEPLOYMENT_SUCCESSFUL, DESC_DEPLOYMENT_SUCCESSFUL)
    );
    assert_eq!(d.task_groups["app"].healthy_allocs, 3);
    assert!(s.stable(0) && s.state.jobs[&crate::state::job_key("", "web")].stable);
    // Running the same spec again changes nothing and starts no deployment.
    s.run(job(3, "a", ROLLING));
    assert_eq!(s.state.deployments.len(), 1);
}

#[test]
fn a_rolling_update_never_has_more_than_max_parallel_new_allocations_unproven() {
    let mut s = Sim::new();
    s.run(job(6, "a", ROLLING));
    s.all_healthy();
    s.run(job(6, "b", ROLLING));
    let d = s.latest();
    assert_eq!((d.job_version, d.status.as_str()), (1, DEPLOYMENT_RUNNING));
    let mut rounds = 0;
    while s.latest().status == DEPLOYMENT_RUNNING {
        rounds += 1;
        assert!(rounds < 10, "the rollout ends");
        let live = s.live();
        let unproven = live
            .iter()
            .filter(|(v, h, _)| *v == 1 && h.is_none())
            .count();
        assert!(
            unproven <= 2,
            "at most max_parallel new ones waiting: {live:?}"
        );
        // The old ones not yet replaced keep running: never below count minus max_parallel
        // healthy.
        let healthy = live.iter().filter(|(_, h, _)| *h == Some(true)).count();
        assert!(healthy >= 4, "{live:?}");
        assert_eq!(live.len(), 6, "{live:?}");
        // One at a time becomes healthy, and the next one starts.
        let next = s.undecided()[0].clone();
        s.report(&next, ALLOC_RUNNING, Some(true));
    }
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
    assert_eq!(s.live_of_version(1), 6);
    assert!(s.stable(1));
}

#[test]
fn an_in_place_change_keeps_the_allocations_and_joins_the_deployment() {
    let mut s = Sim::new();
    s.run(job(2, "a", ROLLING));
    s.all_healthy();
    let before: Vec<String> = s.state.allocs.keys().cloned().collect();
    let mut j = job(2, "a", ROLLING);
    j.priority = 70;
    s.run(j);
    let d = s.latest();
    assert_eq!((d.job_version, d.status.as_str()), (1, DEPLOYMENT_RUNNING));
    let after: Vec<String> = s.state.allocs.keys().cloned().collect();
    assert_eq!(before, after, "same allocations");
    assert!(s.state.allocs.values().all(|a| a.deployment_id == d.id));
    assert_eq!(s.undecided().len(), 2, "health is judged afresh");
    s.all_healthy();
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
}

#[test]
fn the_progress_deadline_fails_the_deployment_and_old_allocations_keep_running() {
    let mut s = Sim::new();
    s.run(job(4, "a", ROLLING));
    s.all_healthy();
    s.run(job(4, "bad", ROLLING));
    // The two new ones never become healthy (checks failing: no verdict until the deadline).
    for id in s.undecided() {
        s.report(&id, ALLOC_RUNNING, None);
    }
    s.tick(9 * MIN);
    assert_eq!(s.latest().status, DEPLOYMENT_RUNNING);
    s.tick(MIN + 1);
    let d = s.latest();
    assert_eq!(
        (d.status.as_str(), d.status_description.as_str()),
        (DEPLOYMENT_FAILED, DESC_DEPLOYMENT_PROGRESS_DEADLINE)
    );
    // Nothing more is replaced: the two old allocations not yet updated keep running.
    s.tick(60 * MIN);
    assert_eq!(s.live_of_version(0), 2);
    assert!(!s.stable(1));
}

#[test]
fn progress_deadline_0_fails_on_the_first_unhealthy_allocation_and_auto_revert_rolls_back() {
    let update = r#"max_parallel = 1
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "0s"
      auto_revert = true"#;
    let mut s = Sim::new();
    s.run(job(2, "a", update));
    s.all_healthy();
    s.run(job(2, "bad", update));
    let bad = s.undecided();
    assert_eq!(bad.len(), 1, "max_parallel 1");
    s.report(&bad[0], ALLOC_RUNNING, Some(false));
    s.tick(1);
    let failed = of_job(&s.state, "", "web")
        .into_iter()
        .find(|d| d.job_version == 1)
        .unwrap();
    assert_eq!(failed.status, DEPLOYMENT_FAILED);
    assert_eq!(
        failed.status_description,
        "Failed due to unhealthy allocations - rolling back to job version 0"
    );
    // Version 2 is version 0's spec, deployed anew.
    let j = &s.state.jobs[&crate::state::job_key("", "web")];
    assert_eq!(j.version, 2);
    assert!(crate::state::same_spec(
        j,
        &s.state.job_versions[&crate::state::job_key("", "web")][0]
    ));
    s.all_healthy();
    s.all_healthy();
    let d = s.latest();
    assert_eq!(
        (d.job_version, d.status.as_str()),
        (2, DEPLOYMENT_SUCCESSFUL)
    );
    assert_eq!(s.live_of_version(2), 2);
}

#[test]
fn auto_revert_without_a_stable_version_or_to_the_same_spec_only_explains() {
    let update = r#"max_parallel = 1
      progress_deadline = "0s"
      auto_revert = true"#;
    let mut s = Sim::new();
    s.run(job(1, "a", update));
    let first = s.undecided();
    s.report(&first[0], ALLOC_RUNNING, Some(false));
    s.tick(1);
    let d = s.latest();
    assert_eq!(
        d.status_description,
        "Failed due to unhealthy allocations - no stable job version to auto revert to"
    );
    assert_eq!(
        s.state.jobs[&crate::state::job_key("", "web")].version,
        0,
        "nothing registered"
    );

    // Version 0 stable; version 1 fails and is rolled back as version 2 (version 0's spec);
    // when version 2 fails too, reverting to version 0 would change nothing: no revert loop.
    let mut s = Sim::new();
    s.run(job(1, "a", update));
    s.all_healthy();
    s.run(job(1, "b", update));
    let v1 = s.undecided();
    s.report(&v1[0], ALLOC_RUNNING, Some(false));
    s.tick(1);
    assert_eq!(s.state.jobs[&crate::state::job_key("", "web")].version, 2);
    let v2 = s.undecided();
    s.report(&v2[0], ALLOC_RUNNING, Some(false));
    s.tick(1);
    let d = s.latest();
    assert_eq!(d.job_version, 2);
    assert_eq!(
        d.status_description,
        "Failed due to unhealthy allocations - not rolling back to stable job version 0 as current job has same specification"
    );
    assert_eq!(
        s.state.jobs[&crate::state::job_key("", "web")].version,
        2,
        "nothing registered"
    );
}

const CANARY: &str = r#"max_parallel = 1
      canary = 1
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "10m""#;

#[test]
fn a_canary_waits_for_promotion_which_is_refused_until_it_is_healthy() {
    let mut s = Sim::new();
    s.run(job(3, "a", CANARY));
    s.all_healthy();
    assert_eq!(
        s.latest().status,
        DEPLOYMENT_SUCCESSFUL,
        "no canary on first run"
    );
    s.run(job(3, "b", CANARY));
    let d = s.latest();
    assert_eq!(d.status_description, DESC_DEPLOYMENT_NEEDS_PROMOTION);
    assert_eq!(d.task_groups["app"].desired_canaries, 1);
    // One canary beside the three old ones.
    assert_eq!(s.live_of_version(0), 3);
    assert_eq!(s.live_of_version(1), 1);
    let canary = s.undecided()[0].clone();
    assert!(is_canary(&s.state.allocs[&canary]));
    let name = s.state.allocs[&canary].name.clone();
    // Promotion is refused while the canary is not healthy.
    let d = s.latest();
    let refused = promote(&s.state, &d, &mut || "e".into()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "Task group \"app\" has 0/1 healthy allocations"
    );
    // Healthy canaries waiting for promotion never fail by the progress deadline.
    s.report(&canary, ALLOC_RUNNING, Some(true));
    s.tick(11 * MIN);
    assert_eq!(s.latest().status, DEPLOYMENT_RUNNING);
    assert_eq!(s.live_of_version(0), 3, "nothing replaced before promotion");
    let d = s.latest();
    let mut ids = 0;
    s.change(promote(&s.state, &d, &mut || {
        ids += 1;
        format!("promote-eval-{ids}")
    }))
    .unwrap();
    let d = s.latest();
    assert!(d.task_groups["app"].promoted);
    assert_eq!(d.status_description, DESC_DEPLOYMENT_RUNNING);
    // The old allocation with the canary's name went first; then one at a time.
    let old_same_name = s
        .state
        .allocs
        .values()
        .find(|a| a.name == name && a.id != canary)
        .unwrap();
    assert_eq!(old_same_name.desired_status, ALLOC_DESIRED_STOP);
    assert_eq!(s.live().len(), 3);
    while s.latest().status == DEPLOYMENT_RUNNING {
        assert!(s.live().len() == 3);
        s.all_healthy();
    }
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
    assert_eq!(s.live_of_version(1), 3);
    // Terminal deployments refuse operations.
    let d = s.latest();
    assert_eq!(
        promote(&s.state, &d, &mut || "e".into())
            .unwrap_err()
            .to_string(),
        "can't promote terminal deployment"
    );
    assert_eq!(
        fail(&s.state, &d, &mut || "e".into())
            .unwrap_err()
            .to_string(),
        "can't fail terminal deployment"
    );
}

#[test]
fn auto_promote_promotes_once_the_canaries_are_healthy() {
    let update = r#"max_parallel = 2
      canary = 2
      auto_promote = true
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "10m""#;
    let mut s = Sim::new();
    s.run(job(4, "a", update));
    s.all_healthy();
    s.run(job(4, "b", update));
    assert_eq!(
        s.latest().status_description,
        DESC_DEPLOYMENT_AUTO_PROMOTION
    );
    let canaries = s.undecided();
    assert_eq!(canaries.len(), 2);
    s.report(&canaries[0], ALLOC_RUNNING, Some(true));
    s.tick(1);
    assert!(
        !s.latest().task_groups["app"].promoted,
        "one of two healthy"
    );
    s.report(&canaries[1], ALLOC_RUNNING, Some(true));
    s.tick(1);
    assert!(s.latest().task_groups["app"].promoted);
    while s.latest().status == DEPLOYMENT_RUNNING {
        s.all_healthy();
        s.tick(1);
    }
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
    assert_eq!((s.live_of_version(0), s.live_of_version(1)), (0, 4));
}

#[test]
fn blue_green_runs_both_sets_and_promotion_stops_every_old_allocation_at_once() {
    let update = r#"max_parallel = 2
      canary = 3
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "10m""#;
    let mut s = Sim::new();
    s.run(job(3, "blue", update));
    s.all_healthy();
    s.run(job(3, "green", update));
    assert_eq!((s.live_of_version(0), s.live_of_version(1)), (3, 3));
    s.all_healthy();
    let d = s.latest();
    s.change(promote(&s.state, &d, &mut || "eval-promote".into()))
        .unwrap();
    assert_eq!((s.live_of_version(0), s.live_of_version(1)), (0, 3));
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
}

#[test]
fn pause_holds_placements_past_the_deadline_and_resume_continues() {
    let mut s = Sim::new();
    s.run(job(4, "a", ROLLING));
    s.all_healthy();
    s.run(job(4, "b", ROLLING));
    let d = s.latest();
    s.change(pause(&s.state, &d, true, &mut || "e1".into()))
        .unwrap();
    assert_eq!(s.latest().status_description, DESC_DEPLOYMENT_PAUSED);
    s.all_healthy();
    // Healthy, but paused: nothing more is replaced, and the deadline does not fail it.
    s.tick(30 * MIN);
    assert_eq!(s.latest().status, DEPLOYMENT_PAUSED);
    assert_eq!(s.live_of_version(1), 2);
    let d = s.latest();
    s.change(pause(&s.state, &d, false, &mut || "e2".into()))
        .unwrap();
    let d = s.latest();
    assert_eq!(d.status, DEPLOYMENT_RUNNING);
    assert_eq!(
        d.task_groups["app"].require_progress_by_unix_ms,
        s.now + 10 * MIN,
        "resume restarts the deadline"
    );
    assert_eq!(s.live_of_version(1), 4, "resume goes on with the rollout");
    s.all_healthy();
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
}

#[test]
fn deployment_fail_by_the_user_and_a_newer_version_or_a_stop_cancel() {
    let mut s = Sim::new();
    s.run(job(4, "a", ROLLING));
    s.all_healthy();
    s.run(job(4, "b", ROLLING));
    let d = s.latest();
    s.change(fail(&s.state, &d, &mut || "e".into())).unwrap();
    let d = s.latest();
    assert_eq!(
        (d.status.as_str(), d.status_description.as_str()),
        (DEPLOYMENT_FAILED, DESC_DEPLOYMENT_FAILED_BY_USER)
    );
    assert_eq!(s.live_of_version(0), 2, "the old ones left keep running");

    s.run(job(4, "c", ROLLING));
    let running = s.latest();
    assert_eq!(
        (running.job_version, running.status.as_str()),
        (2, "running")
    );
    s.run(job(4, "d", ROLLING));
    let cancelled = &s.state.deployments[&running.id];
    assert_eq!(
        (
            cancelled.status.as_str(),
            cancelled.status_description.as_str()
        ),
        (DEPLOYMENT_CANCELLED, DESC_DEPLOYMENT_NEWER_JOB)
    );
    let current = s.latest();
    s.apply(command::Kind::JobDeregister(
        crate::internal::JobDeregister {
            job_id: "web".into(),
            purge: false,
            eval: Some(crate::evals::new_eval(
                &s.state.jobs[&crate::state::job_key("", "web")].clone(),
                "stop".into(),
                TRIGGER_JOB_DEREGISTER,
            )),
            namespace: String::new(),
        },
    ))
    .unwrap();
    s.settle();
    assert_eq!(
        s.state.deployments[&current.id].status_description,
        DESC_DEPLOYMENT_JOB_STOPPED
    );
}

#[test]
fn revert_registers_a_kept_version_and_refuses_missing_or_current_ones() {
    let mut s = Sim::new();
    s.run(job(1, "a", ROLLING));
    s.run(job(1, "b", ROLLING));
    let mut id = || "e".to_string();
    assert_eq!(
        revert(&s.state, "", "web", 7, &mut id)
            .unwrap_err()
            .to_string(),
        "job \"web\" has no version 7 (kept versions: 0, 1)"
    );
    assert_eq!(
        revert(&s.state, "", "web", 1, &mut id)
            .unwrap_err()
            .to_string(),
        "job \"web\" is already at version 1"
    );
    let r = revert(&s.state, "", "web", 0, &mut id).unwrap();
    s.apply(command::Kind::JobRegister(r)).unwrap();
    let j = &s.state.jobs[&crate::state::job_key("", "web")];
    assert_eq!((j.version, j.stable), (2, false));
    assert_eq!(
        revert(&s.state, "", "web", 0, &mut id).unwrap_err().to_string(),
        "job \"web\" version 0 has the same specification as the current version 2: nothing to revert"
    );
}

#[test]
fn after_a_streak_of_failed_versions_the_stable_one_is_still_reachable() {
    let update = |revert: bool| {
        format!("max_parallel = 1\n      progress_deadline = \"0s\"\n      auto_revert = {revert}")
    };
    let mut s = Sim::new();
    s.run(job(1, "ok", &update(false)));
    s.all_healthy();
    assert!(s.stable(0));
    for v in 1..=8 {
        s.run(job(1, &format!("bad{v}"), &update(false)));
        for id in s.undecided() {
            s.report(&id, ALLOC_FAILED, Some(false));
        }
        s.tick(1);
        assert_eq!(s.latest().status, DEPLOYMENT_FAILED, "version {v}");
    }
    let kept: Vec<u64> = s.state.job_versions[&crate::state::job_key("", "web")]
        .iter()
        .map(|j| j.version)
        .collect();
    assert_eq!(kept, vec![0, 4, 5, 6, 7, 8]);
    // A snapshot keeps them.
    let back = State::from_snapshot(&s.state.to_snapshot("test")).unwrap();
    let again: Vec<u64> = back.job_versions[&crate::state::job_key("", "web")]
        .iter()
        .map(|j| j.version)
        .collect();
    assert_eq!(again, kept);
    // auto_revert on a further failure goes back to version 0's spec.
    s.run(job(1, "bad9", &update(true)));
    for id in s.undecided() {
        s.report(&id, ALLOC_FAILED, Some(false));
    }
    s.tick(1);
    let j = &s.state.jobs[&crate::state::job_key("", "web")];
    assert_eq!(j.version, 10);
    assert!(crate::state::same_spec(
        j,
        &s.state.job_versions[&crate::state::job_key("", "web")][0]
    ));
    let kept: Vec<u64> = s.state.job_versions[&crate::state::job_key("", "web")]
        .iter()
        .map(|j| j.version)
        .collect();
    assert_eq!(kept, vec![0, 6, 7, 8, 9, 10]);
    // And `job revert` reaches it too.
    let mut id = || "e".to_string();
    s.run(job(1, "bad11", &update(false)));
    assert!(revert(&s.state, "", "web", 0, &mut id).is_ok());
}

#[test]
fn manual_health_drives_the_rollout_and_unknown_allocations_are_refused() {
    let update = r#"max_parallel = 1
      health_check = "manual"
      min_healthy_time = "1s"
      healthy_deadline = "1m"
      progress_deadline = "10m""#;
    let mut s = Sim::new();
    s.run(job(2, "a", update));
    let d = s.latest();
    let ids = s.undecided();
    assert_eq!(
        set_alloc_health(&s.state, &d, vec!["nope".into()], vec![], &mut || "e"
            .into())
        .unwrap_err()
        .to_string(),
        format!("allocation nope is not part of deployment {}", d.id)
    );
    s.change(set_alloc_health(&s.state, &d, ids, vec![], &mut || {
        "e".into()
    }))
    .unwrap();
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
}

#[test]
fn deployments_survive_a_snapshot() {
    let mut s = Sim::new();
    s.run(job(2, "a", ROLLING));
    // A state without deployments is written as Yurt 0.1 reads it; one with them is not.
    let plain = Sim::new();
    assert_eq!(plain.state.snapshot_format(), 1);
    assert_eq!(s.state.snapshot_format(), 2);
    let back = State::from_snapshot(&s.state.to_snapshot("test")).unwrap();
    assert_eq!(back.deployments, s.state.deployments);
    assert_eq!(back.deployments.in_state(DEPLOYMENT_RUNNING).count(), 1);
}

#[test]
fn a_plan_s_deployment_change_is_skipped_once_the_deployment_has_ended() {
    let mut s = Sim::new();
    s.run(job(1, "a", ROLLING));
    let d = s.latest();
    s.change(fail(&s.state, &d, &mut || "e".into())).unwrap();
    let stale = ApplyPlan {
        deployment_changes: vec![DeploymentChange {
            deployment_id: d.id.clone(),
            status: DEPLOYMENT_SUCCESSFUL.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    s.apply(command::Kind::ApplyPlan(stale)).unwrap();
    assert_eq!(s.latest().status, DEPLOYMENT_FAILED);
    // A user's change to it is refused by the state machine too.
    let late = DeploymentChange {
        deployment_id: d.id.clone(),
        status: DEPLOYMENT_PAUSED.into(),
        ..Default::default()
    };
    assert_eq!(
        s.apply(command::Kind::DeploymentChange(late))
            .unwrap_err()
            .to_string(),
        "can't pause terminal deployment"
    );
}

#[test]
fn a_failed_allocation_is_unhealthy_and_fails_the_deployment_when_it_cannot_be_replaced() {
    let mut s = Sim::new();
    s.run(job(2, "a", ROLLING));
    s.all_healthy();
    s.run(job(2, "crash", ROLLING));
    // The task exits: its client reports the allocation failed and unhealthy; no reschedule
    // attempts are left.
    for id in s.undecided() {
        s.report(&id, ALLOC_FAILED, Some(false));
    }
    assert_eq!(s.latest().task_groups["app"].unhealthy_allocs, 2);
    s.tick(1);
    let d = s.latest();
    assert_eq!(
        (d.status.as_str(), d.status_description.as_str()),
        (DEPLOYMENT_FAILED, DESC_DEPLOYMENT_FAILED_ALLOCS)
    );
    // The failed ones are not replaced by more of the failing version.
    s.tick(60 * MIN);
    assert_eq!(s.live_of_version(1), 0);
}

#[test]
fn while_canaries_wait_a_lost_allocation_comes_back_at_the_old_version() {
    let mut s = Sim::new();
    s.run(job(3, "a", CANARY));
    s.all_healthy();
    s.run(job(3, "b", CANARY));
    assert_eq!((s.live_of_version(0), s.live_of_version(1)), (3, 1));
    // The node of an old allocation goes down (with the canary, if it is there too).
    let victim = s
        .state
        .allocs
        .values()
        .find(|a| !alloc_terminal(a) && !is_canary(a))
        .unwrap()
        .node_id
        .clone();
    let mut ids = s.ids;
    let kind = crate::evals::node_status_command(&s.state, &victim, NODE_DOWN, true, &mut || {
        ids += 1;
        format!("id-{ids:04}")
    });
    s.ids = ids;
    s.apply(kind).unwrap();
    s.settle();
    assert_eq!(
        (s.live_of_version(0), s.live_of_version(1)),
        (3, 1),
        "replaced at version 0, and still one canary"
    );
    let d = s.latest();
    for a in s.state.allocs.values().filter(|a| !alloc_terminal(a)) {
        let v = a.job.as_ref().unwrap().version;
        assert_eq!(v == 1, a.deployment_id == d.id, "only canaries join: {a:?}");
        assert_ne!(a.node_id, victim);
    }
}

#[test]
fn promoted_canaries_are_members_and_a_paused_canary_deployment_keeps_its_canaries() {
    let mut s = Sim::new();
    s.run(job(3, "a", CANARY));
    s.all_healthy();
    s.run(job(3, "b", CANARY));
    // Paused while its canary waits: the canary stays.
    let d = s.latest();
    s.change(pause(&s.state, &d, true, &mut || "p".into()))
        .unwrap();
    s.tick(1);
    assert_eq!(s.live_of_version(1), 1, "the canary survives the pause");
    s.change(pause(&s.state, &s.latest(), false, &mut || "r".into()))
        .unwrap();
    s.all_healthy();
    s.change(promote(&s.state, &s.latest(), &mut || "e".into()))
        .unwrap();
    while s.latest().status == DEPLOYMENT_RUNNING {
        s.all_healthy();
    }
    assert_eq!(s.latest().status, DEPLOYMENT_SUCCESSFUL);
    assert!(
        s.state.allocs.values().all(|a| !is_canary(a)),
        "flags cleared"
    );
    // The next version: the former canary is updated like the others (a new canary first).
    s.run(job(3, "c", CANARY));
    assert_eq!(
        (s.live_of_version(1), s.live_of_version(2)),
        (3, 1),
        "nothing of version 1 stopped before promotion"
    );
}

#[test]
fn a_deployment_whose_placements_are_all_blocked_has_no_deadline_and_waits() {
    let mut s = Sim::with_nodes(0, 0);
    s.run(job(2, "a", ROLLING));
    let d = s.latest();
    assert_eq!(d.status, DEPLOYMENT_RUNNING);
    let g = &d.task_groups["app"];
    assert_eq!((g.placed_allocs, g.require_progress_by_unix_ms), (0, 0));
    // Hours past any progress deadline: nothing has joined, so nothing is judged.
    s.tick(600 * MIN);
    assert_eq!(s.latest().status, DEPLOYMENT_RUNNING);
    assert_eq!(next_deadline(&s.state), None);
}
