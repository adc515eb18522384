//! The reconciler's buckets: counts, names, destructive and in-place changes, stops, purges,
//! lost allocations, system jobs, batch jobs.

use super::*;

#[test]
fn places_count_allocations_with_names() {
    let mut w = World::new(2);
    let o = w.run(job(3, "a"));
    assert_eq!(counts(&o), (3, 0, 0, 0, 0));
    let mut names: Vec<_> = w.running().iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["web.app[0]", "web.app[1]", "web.app[2]"]);
    assert!(w.running().iter().all(|a| a.client_status == ALLOC_PENDING));
}

#[test]
fn rerun_of_same_job_ignores_everything() {
    let mut w = World::new(1);
    w.run(job(2, "a"));
    let o = w.run(job(2, "a"));
    assert_eq!(counts(&o), (0, 0, 2, 0, 0));
    assert!(o.allocs.is_empty());
}

#[test]
fn count_up_places_and_count_down_stops_highest_indexes() {
    let mut w = World::new(1);
    w.run(job(2, "a"));
    // A count change alone is not destructive: existing allocations are updated in place.
    let o = w.run(job(4, "a"));
    assert_eq!(counts(&o), (2, 0, 0, 2, 0));
    assert_eq!(w.running().len(), 4);
    let o = w.run(job(1, "a"));
    assert_eq!(counts(&o), (0, 3, 0, 1, 0));
    let left = w.running();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "web.app[0]");
    let stopped: Vec<_> = w
        .state
        .allocs
        .values()
        .filter(|a| a.desired_status == ALLOC_DESIRED_STOP)
        .collect();
    assert!(stopped
        .iter()
        .all(|a| a.desired_description == DESC_NOT_NEEDED));
}

#[test]
fn env_change_is_destructive_and_keeps_names() {
    let mut w = World::new(1);
    w.run(job(2, "a"));
    let before: Vec<String> = w.running().iter().map(|a| a.id.clone()).collect();
    let o = w.run(job(2, "b"));
    assert_eq!(counts(&o), (0, 0, 0, 0, 2));
    let now = w.running();
    assert_eq!(now.len(), 2);
    for a in &now {
        assert!(!before.contains(&a.id), "replaced with a new allocation");
        assert!(before.contains(&a.previous_allocation));
    }
    let old = &w.state.allocs[&before[0]];
    assert_eq!(old.desired_description, DESC_UPDATING);
}

#[test]
fn priority_change_is_in_place_and_keeps_ids() {
    let mut w = World::new(1);
    w.run(job_src("service", 2, "a", 100, 50));
    let before: Vec<String> = w.running().iter().map(|a| a.id.clone()).collect();
    let o = w.run(job_src("service", 2, "a", 100, 70));
    assert_eq!(counts(&o), (0, 0, 0, 2, 0));
    let after: Vec<String> = w.running().iter().map(|a| a.id.clone()).collect();
    assert_eq!(before, after);
    assert!(w
        .running()
        .iter()
        .all(|a| a.job.as_ref().unwrap().priority == 70));
}

#[test]
fn resources_change_is_destructive() {
    let mut w = World::new(1);
    w.run(job_src("service", 1, "a", 100, 50));
    let o = w.run(job_src("service", 1, "a", 200, 50));
    assert_eq!(counts(&o), (0, 0, 0, 0, 1));
}

#[test]
fn no_room_reports_exhausted_memory_and_queues() {
    let mut w = World::new(0);
    w.node("small", 1000, 250);
    let o = w.run(job(3, "a"));
    assert_eq!(o.desired["app"].place, 2);
    assert_eq!(o.queued["app"], 1);
    let m = &o.failed["app"];
    assert_eq!(m.nodes_exhausted, 1);
    assert_eq!(m.dimension_exhausted["memory"], 1);

    let eval = new_eval(&job(3, "a"), "e1".into(), TRIGGER_JOB_REGISTER);
    let cmd = plan_command(&eval, &[], o, 5, &mut || "e2".into());
    let Some(command::Kind::ApplyPlan(p)) = cmd.kind else {
        panic!()
    };
    let done = p.eval.unwrap();
    assert_eq!(
        (done.status.as_str(), done.blocked_eval.as_str()),
        (EVAL_COMPLETE, "e2")
    );
    assert_eq!(p.new_evals[0].status, EVAL_BLOCKED);
    assert_eq!(p.new_evals[0].triggered_by, TRIGGER_QUEUED_ALLOCS);
}

#[test]
fn no_nodes_fails_every_placement() {
    let mut w = World::new(0);
    let o = w.run(job(2, "a"));
    assert_eq!(o.queued["app"], 2);
    assert_eq!(o.failed["app"].nodes_evaluated, 0);
}

#[test]
fn stopping_the_job_stops_every_allocation() {
    let mut w = World::new(1);
    w.run(job(2, "a"));
    w.apply(command::Kind::JobDeregister(
        crate::internal::JobDeregister {
            job_id: "web".into(),
            purge: false,
            eval: None,
            namespace: String::new(),
        },
    ));
    let o = w.schedule("web");
    assert_eq!(o.allocs.len(), 2);
    assert!(w.running().is_empty());
    assert_eq!(
        w.state.jobs[&crate::state::job_key("", "web")].status,
        JOB_DEAD
    );
}

fn purge(w: &mut World) {
    w.apply(command::Kind::JobDeregister(
        crate::internal::JobDeregister {
            job_id: "web".into(),
            purge: true,
            eval: None,
            namespace: String::new(),
        },
    ));
}

/// Allocations of a purged job belong to no later job of that name: registered again, the job
/// has only its own, and the old ones are left as they are (a failed one is not replaced).
#[test]
fn a_job_registered_again_after_a_purge_does_not_take_the_purged_job_s_allocations() {
    let mut w = World::new(1);
    w.run(job(3, "a"));
    let failed = w.running()[0].id.clone();
    let mut a = w.state.allocs[&failed].clone();
    a.client_status = ALLOC_FAILED.into();
    w.state.allocs.insert(a);
    purge(&mut w);
    w.schedule("web");
    let before: Vec<(String, u64)> = w
        .state
        .allocs
        .values()
        .map(|a| (a.id.clone(), a.modify_index))
        .collect();
    w.now += 1000;
    w.run(job(3, "a"));
    let new: Vec<&Allocation> = w.state.job_allocs("", "web");
    assert_eq!(new.len(), 3);
    assert!(new
        .iter()
        .all(|a| !before.iter().any(|(id, _)| *id == a.id)));
    for (id, modified) in &before {
        assert_eq!(w.state.allocs[id.as_str()].modify_index, *modified, "{id}");
    }
    assert_eq!(w.state.allocs.len(), 6);
}

/// Registered again before the purge's evaluation ran: the old allocations still running are
/// stopped by the new job's first evaluation.
#[test]
fn a_purged_job_s_allocations_still_running_are_stopped_when_the_id_is_registered_again() {
    let mut w = World::new(1);
    w.run(job(2, "a"));
    let old: Vec<String> = w.running().iter().map(|a| a.id.clone()).collect();
    purge(&mut w);
    w.run(job(2, "b"));
    for id in &old {
        let a = &w.state.allocs[id.as_str()];
        assert_eq!(
            (a.desired_status.as_str(), a.desired_description.as_str()),
            (ALLOC_DESIRED_STOP, DESC_JOB_STOPPED)
        );
    }
    assert_eq!(w.running().len(), 2);
}

/// A service or batch job's allocations on a down node are lost, every one of them, and
/// placed again elsewhere.
#[test]
fn allocations_on_a_down_node_are_lost_and_replaced() {
    for job_type in ["service", "batch"] {
        let mut w = World::new(2);
        w.run(job_src(job_type, 2, "a", 100, 50));
        let victim = w.running()[0].node_id.clone();
        let on_victim = w.running().iter().filter(|a| a.node_id == victim).count();
        w.apply(command::Kind::NodeStatusUpdate(
            crate::internal::NodeStatusUpdate {
                node_id: victim.clone(),
                status: NODE_DOWN.into(),
                evals: vec![],
                event: None,
            },
        ));
        w.schedule("web");
        let lost = w
            .state
            .allocs
            .values()
            .filter(|a| a.client_status == ALLOC_LOST)
            .count();
        assert_eq!(lost, on_victim, "{job_type}");
        assert!(
            w.running().iter().all(|a| a.node_id != victim),
            "{job_type}"
        );
        assert_eq!(w.running().len(), 2, "{job_type}");
    }
}

#[test]
fn system_job_runs_once_per_feasible_node() {
    let mut w = World::new(3);
    let mut j = job_src("system", 1, "a", 100, 50);
    j.task_groups[0].constraints.push(Constraint {
        attribute: "${node.unique.name}".into(),
        operator: "!=".into(),
        value: "node-1".into(),
    });
    let o = w.run(j);
    assert_eq!(o.desired["app"].place, 2);
    let mut nodes: Vec<_> = w.running().iter().map(|a| a.node_id.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["node-0", "node-2"]);
    w.node("node-3", 1000, 1000);
    let o = w.schedule("web");
    assert_eq!(counts(&o), (1, 0, 2, 0, 0));
}

#[test]
fn a_system_job_update_replaces_max_parallel_allocations_then_waits_stagger() {
    let mut w = World::new(3);
    let with_update = |env: &str| {
        let mut j = job_src("system", 1, env, 100, 50);
        let u = j.task_groups[0].update.as_mut().unwrap();
        u.max_parallel = 1;
        u.stagger_ms = 30_000;
        j
    };
    w.run(with_update("a"));
    let o = w.run(with_update("b"));
    assert_eq!(counts(&o), (0, 0, 2, 0, 1), "one node now, two later");
    assert_eq!(o.rolling_at, Some(w.now + 30_000));
    let rolling = plan_command(
        &new_eval(
            &w.state.jobs[&crate::state::job_key("", "web")],
            "e".into(),
            TRIGGER_JOB_REGISTER,
        ),
        &[],
        o,
        w.now,
        &mut || "next".into(),
    );
    let Some(command::Kind::ApplyPlan(p)) = rolling.kind else {
        panic!("a plan")
    };
    let next = &p.new_evals[0];
    assert_eq!(
        (next.triggered_by.as_str(), next.wait_until_unix_ms),
        (TRIGGER_ROLLING_UPDATE, w.now + 30_000)
    );
    w.now += 30_000;
    let o = w.schedule("web");
    assert_eq!(counts(&o), (0, 0, 2, 0, 1), "the next node, stagger later");
    w.now += 30_000;
    let o = w.schedule("web");
    assert_eq!(counts(&o), (0, 0, 2, 0, 1));
    assert_eq!(o.rolling_at, None, "done");
    assert!(w
        .running()
        .iter()
        .all(|a| a.job.as_ref().is_none_or(|j| j.version == 1)));
}

#[test]
fn a_registering_node_gets_an_evaluation_for_every_system_job_and_its_own_jobs() {
    let mut w = World::new(1);
    w.run(job_src("system", 1, "a", 100, 50));
    let mut service = job(1, "a");
    service.id = "svc".into();
    w.run(service);
    let node = |id: &str| Node {
        id: id.into(),
        ..Node::default()
    };
    let evals = |kind: command::Kind| match kind {
        command::Kind::NodeRegister(r) => {
            let mut v: Vec<(String, String, String)> = r
                .evals
                .into_iter()
                .map(|e| (e.job_id, e.triggered_by, e.node_id))
                .collect();
            v.sort();
            v
        }
        other => panic!("not a registration: {other:?}"),
    };
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("e{n}")
    };
    let new = evals(node_register_command(
        &w.state,
        node("node-9"),
        true,
        &mut ids,
    ));
    assert_eq!(
        new,
        [(
            "web".to_string(),
            "node-update".to_string(),
            "node-9".to_string()
        )]
    );
    // Coming back, node-0 also has the service job's allocation.
    let back = evals(node_register_command(
        &w.state,
        node("node-0"),
        true,
        &mut ids,
    ));
    let jobs: Vec<&str> = back.iter().map(|(j, _, _)| j.as_str()).collect();
    assert_eq!(jobs, ["svc", "web"]);
}

#[test]
fn batch_allocations_that_completed_are_not_rerun() {
    let mut w = World::new(1);
    w.run(job_src("batch", 2, "a", 100, 50));
    let first = w.running()[0].id.clone();
    w.state
        .allocs
        .update(&first, |a| a.client_status = ALLOC_COMPLETE.into());
    let o = w.schedule("web");
    assert_eq!(counts(&o), (0, 0, 1, 0, 0));
}
