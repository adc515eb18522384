//! Rescheduling failed allocations, and the evaluations node changes bring; shared node usage
//! across runs; placement failures; the deployments feature gate.

use super::*;

fn job_with_reschedule(policy: &str) -> Job {
    parse_hcl(
        "t.hcl",
        &format!(
            r#"job "web" {{
  group "app" {{
    reschedule {{
      {policy}
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/false"
      }}
      resources {{
        memory = 50
      }}
    }}
  }}
}}"#
        ),
    )
    .unwrap()
}

impl World {
    /// The client reports an allocation failed, at the world's current time.
    fn fail(&mut self, alloc_id: &str) {
        let node = self.state.allocs[alloc_id].node_id.clone();
        self.apply(command::Kind::AllocClientUpdates(
            crate::internal::AllocClientUpdates {
                node_id: node,
                evals: vec![],
                updates: vec![crate::v1::AllocClientUpdate {
                    alloc_id: alloc_id.into(),
                    client_status: ALLOC_FAILED.into(),
                    ..Default::default()
                }],
            },
        ));
    }

    fn live(&self) -> Vec<String> {
        self.state
            .allocs
            .values()
            .filter(|a| !alloc_terminal(a))
            .map(|a| a.id.clone())
            .collect()
    }
}

#[test]
fn a_failed_allocation_is_replaced_after_its_delay_until_attempts_run_out() {
    let mut w = World::new(2);
    w.now = 100_000;
    w.run(job_with_reschedule(
        r#"attempts = 1
      interval = "1h"
      delay = "5s"
      delay_function = "constant"
      unlimited = false"#,
    ));
    let first = w.live()[0].clone();
    w.fail(&first);

    // Too early: nothing placed, a follow-up is asked for when the delay has passed.
    w.now = 101_000;
    let o = w.schedule("web");
    assert!(w.live().is_empty());
    assert_eq!(o.followup_at, Some(105_000));

    w.now = 105_000;
    let o = w.schedule("web");
    assert_eq!(o.desired["app"].place, 1);
    let second = w.live()[0].clone();
    let s = &w.state.allocs[&second];
    assert_eq!(
        (s.previous_allocation.as_str(), s.name.as_str()),
        (first.as_str(), "web.app[0]")
    );
    // The replacement goes to the other node, though bin packing alone would not move it.
    assert_ne!(s.node_id, w.state.allocs[&first].node_id);
    assert_eq!(s.reschedule_events.len(), 1);
    assert_eq!(s.reschedule_events[0].prev_alloc_id, first);
    let old = &w.state.allocs[&first];
    assert_eq!(
        (
            old.next_allocation.as_str(),
            old.desired_description.as_str()
        ),
        (second.as_str(), DESC_RESCHEDULED)
    );

    // The replacement fails too: its one attempt is used up, so the slot stays empty.
    w.fail(&second);
    w.now = 200_000;
    let o = w.schedule("web");
    assert!(w.live().is_empty());
    assert_eq!((o.desired["app"].place, o.followup_at), (0, None));
}

#[test]
fn unlimited_exponential_rescheduling_doubles_the_delay() {
    let mut w = World::new(1);
    w.now = 0;
    w.run(job_with_reschedule(
        r#"delay = "10s"
      delay_function = "exponential"
      max_delay = "1m"
      unlimited = true"#,
    ));
    let mut delays = Vec::new();
    for _ in 0..4 {
        let current = w.live()[0].clone();
        w.fail(&current);
        let o = w.schedule("web");
        let due = o.followup_at.expect("a delayed follow-up");
        delays.push(due - w.now);
        w.now = due;
        w.schedule("web");
    }
    assert_eq!(delays, vec![10_000, 20_000, 40_000, 60_000]);
    // A follow-up already waiting is not asked for twice.
    let current = w.live()[0].clone();
    w.fail(&current);
    let o = w.schedule("web");
    let eval = new_eval(
        &w.state.jobs[&crate::state::job_key("", "web")].clone(),
        "e".into(),
        TRIGGER_JOB_REGISTER,
    );
    let cmd = plan_command(&eval, &[], o, w.now, &mut || "f1".into());
    let Some(command::Kind::ApplyPlan(p)) = &cmd.kind else {
        panic!()
    };
    assert_eq!(p.new_evals.len(), 1);
    assert_eq!(p.new_evals[0].wait_until_unix_ms, w.now + 60_000);
    w.index += 1;
    w.state.apply(w.index, &cmd).unwrap();
    assert!(w.state.pending_evals(w.now).is_empty(), "not due yet");
    assert_eq!(w.state.pending_evals(w.now + 60_000).len(), 1);
    assert_eq!(
        w.schedule("web").followup_at,
        None,
        "one is already waiting"
    );
}

#[test]
fn a_node_status_change_evaluates_the_jobs_on_it_and_every_system_job() {
    let mut w = World::new(2);
    w.run(job(1, "a"));
    let mut sys = job_src("system", 1, "a", 100, 50);
    sys.id = "agent".into();
    w.run(sys);
    let busy = w
        .state
        .allocs
        .values()
        .find(|a| a.job_id == "web")
        .unwrap()
        .node_id
        .clone();
    let idle = if busy == "node-0" { "node-1" } else { "node-0" };
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("e{n}")
    };
    let evals = |kind: command::Kind| match kind {
        command::Kind::NodeStatusUpdate(u) => {
            let mut jobs: Vec<(String, String)> =
                u.evals.into_iter().map(|e| (e.job_id, e.node_id)).collect();
            jobs.sort();
            jobs
        }
        _ => panic!("not a node status update"),
    };
    let on_busy = evals(node_status_command(
        &w.state, &busy, NODE_DOWN, true, &mut ids,
    ));
    assert_eq!(
        on_busy,
        vec![("agent".into(), busy.clone()), ("web".into(), busy.clone())]
    );
    let on_idle = evals(node_status_command(
        &w.state, idle, NODE_DOWN, true, &mut ids,
    ));
    assert_eq!(on_idle, vec![("agent".to_string(), idle.to_string())]);
}

#[test]
fn runs_sharing_node_usage_do_not_plan_the_same_room_twice() {
    let mut w = World::new(1);
    // Two jobs of 6 x 100 MHz each on one 1000 MHz node: both fit alone, not together.
    let mut other = job(6, "a");
    other.id = "other".into();
    for j in [job(6, "a"), other] {
        w.apply(command::Kind::JobRegister(JobRegister {
            job: Some(j),
            eval: None,
            enforce_index: false,
            job_modify_index: 0,
            scaling_event: None,
        }));
    }
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("a{n}")
    };
    // Apart, each run sees an empty node.
    let web = schedule(
        &w.state,
        &crate::state::job_key("", "web"),
        "e1",
        1,
        &mut ids,
    );
    let other = schedule(
        &w.state,
        &crate::state::job_key("", "other"),
        "e2",
        1,
        &mut ids,
    );
    assert_eq!((web.allocs.len(), other.allocs.len()), (6, 6));
    // Together, the second sees the first's placements.
    let mut usage = NodeUsage::of_state(&w.state);
    let web = schedule_with(
        &w.state,
        &mut usage,
        Gates::ALL,
        &crate::state::job_key("", "web"),
        "e1",
        1,
        &mut ids,
    );
    let other = schedule_with(
        &w.state,
        &mut usage,
        Gates::ALL,
        &crate::state::job_key("", "other"),
        "e2",
        1,
        &mut ids,
    );
    assert_eq!((web.allocs.len(), other.allocs.len()), (6, 4));
    assert_eq!(other.queued["app"], 2);
}

#[test]
fn a_job_s_placement_failure_is_the_newest_evaluation_that_failed_while_one_is_blocked() {
    let eval = |id: &str, index: u64, status: &str, failed: bool| Evaluation {
        id: id.into(),
        create_index: index,
        status: status.into(),
        failed_tg_allocs: if failed {
            [("app".to_string(), AllocMetric::default())].into()
        } else {
            Default::default()
        },
        ..Evaluation::default()
    };
    let mut evals = vec![
        eval("old", 1, EVAL_COMPLETE, true),
        eval("new", 5, EVAL_COMPLETE, true),
        eval("ok", 7, EVAL_COMPLETE, false),
        eval("waiting", 6, EVAL_BLOCKED, false),
    ];
    assert_eq!(
        placement_failure(&evals).map(|e| e.id.as_str()),
        Some("new")
    );
    // Once nothing waits for room, nothing is explained.
    evals[3].status = EVAL_COMPLETE.into();
    assert!(placement_failure(&evals).is_none());
}

#[test]
fn a_node_made_eligible_evaluates_its_system_jobs_and_unblocks_waiting_ones() {
    let mut w = World::new(1);
    w.run(job_src("system", 1, "a", 100, 50));
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("e{n}")
    };
    let evals = |kind: &command::Kind| match kind {
        command::Kind::NodeEligibilityUpdate(u) => u.evals.len(),
        other => panic!("not an eligibility change: {other:?}"),
    };
    let off = node_eligibility_command(&w.state, "node-0", false, &mut ids);
    assert_eq!(evals(&off), 0, "allocations stay; nothing to evaluate");
    w.apply(off);
    assert_eq!(
        w.state.nodes["node-0"].scheduling_eligibility,
        NODE_INELIGIBLE
    );
    w.state.evals.insert(Evaluation {
        id: "waiting".into(),
        job_id: "other".into(),
        status: EVAL_BLOCKED.into(),
        ..Evaluation::default()
    });
    let on = node_eligibility_command(&w.state, "node-0", true, &mut ids);
    assert_eq!(evals(&on), 1, "the system job");
    w.apply(on);
    assert_eq!(
        w.state.nodes["node-0"].scheduling_eligibility,
        NODE_ELIGIBLE
    );
    assert_eq!(w.state.evals["waiting"].status, EVAL_PENDING);
}

#[test]
fn without_the_deployments_feature_updates_replace_everything_at_once() {
    // An older server in the cluster could not read deployments: 0.1's behaviour.
    let mut w = World::new(1);
    let rolling = |env: &str| {
        let mut j = job(3, env);
        j.task_groups[0].update.as_mut().unwrap().max_parallel = 1;
        j
    };
    w.run(rolling("a"));
    w.apply(command::Kind::JobRegister(JobRegister {
        job: Some(rolling("b")),
        eval: None,
        enforce_index: false,
        job_modify_index: 0,
        scaling_event: None,
    }));
    let mut ids = 0;
    let mut usage = NodeUsage::of_state(&w.state);
    let gated = Gates {
        deployments: false,
        ..Gates::ALL
    };
    let o = schedule_with(
        &w.state,
        &mut usage,
        gated,
        &crate::state::job_key("", "web"),
        "e",
        1,
        &mut || {
            ids += 1;
            format!("n{ids}")
        },
    );
    assert_eq!(counts(&o), (0, 0, 0, 0, 3));
    assert!(o.deployment.is_none() && o.deployment_changes.is_empty());
    assert!(o
        .allocs
        .iter()
        .filter(|a| a.desired_status == ALLOC_DESIRED_RUN)
        .all(|a| a.deployment_id.is_empty()));
    let plan = plan_job(&w.state, &rolling("c"), 1, gated);
    assert!(plan.desired["app"].destructive_update == 3);
    let with = plan_job(&w.state, &rolling("c"), 1, Gates::ALL);
    assert_eq!(with.desired["app"].destructive_update, 1);
}

#[test]
fn an_evaluation_planned_again_on_state_that_missed_its_first_plan_changes_nothing() {
    // A new leader whose state had not applied its predecessor's last plan schedules the same
    // evaluation again: the second plan must not place a second set of allocations.
    let mut s = crate::testkit::Sim::with_nodes(2, 10_000);
    let job = crate::testkit::JobSpec::new("web").count(2).job();
    let eval = crate::evals::new_eval(&job, s.id(), TRIGGER_JOB_REGISTER);
    s.apply(command::Kind::JobRegister(crate::internal::JobRegister {
        job: Some(job),
        eval: Some(eval.clone()),
        enforce_index: false,
        job_modify_index: 0,
        scaling_event: None,
    }))
    .unwrap();
    let stale = s.state.clone();
    s.settle();
    let live = |s: &crate::testkit::Sim| {
        s.state
            .allocs
            .values()
            .filter(|a| !alloc_terminal(a))
            .count()
    };
    assert_eq!(live(&s), 2);
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("again-{n}")
    };
    let key = crate::state::job_key("", "web");
    let again = schedule(&stale, &key, &eval.id, s.now, &mut ids);
    assert_eq!(again.allocs.len(), 2, "the stale state places them again");
    let cmd = plan_command(&eval, &[], again, s.now, &mut ids);
    s.index += 1;
    s.state.apply(s.index, &cmd).unwrap();
    assert_eq!(live(&s), 2);
    assert!(s.state.allocs.values().all(|a| !a.id.starts_with("again-")));
}
