//! Tests of the state machine: commands applied in order, and what the state then holds.

use super::*;
use crate::internal::ApplyPlan;
use crate::testkit::{ready_node, JobSpec};
use crate::v1::{Port, Resources};

fn placement(id: &str, node: &str, memory_mb: u32, port: u32) -> Allocation {
    Allocation {
        id: id.into(),
        node_id: node.into(),
        job_id: "web".into(),
        desired_status: ALLOC_DESIRED_RUN.into(),
        client_status: ALLOC_PENDING.into(),
        resources: Some(Resources {
            cpu: 10,
            memory_mb,
            memory_max_mb: 0,
        }),
        ports: vec![Port {
            label: "http".into(),
            value: port,
            to: 0,
        }],
        ..Allocation::default()
    }
}

fn plan(eval: &str, allocs: Vec<Allocation>) -> Command {
    Command {
        kind: Some(command::Kind::ApplyPlan(ApplyPlan {
            allocs,
            eval: Some(Evaluation {
                id: eval.into(),
                job_id: "web".into(),
                status: EVAL_COMPLETE.into(),
                ..Evaluation::default()
            }),
            new_evals: vec![],
            job: None,
            ..Default::default()
        })),
        ..Command::default()
    }
}

/// Pending evaluations of job `web`, for plans to complete.
fn pending_evals(s: &mut State, ids: &[&str]) {
    for id in ids {
        s.evals.insert(Evaluation {
            id: id.to_string(),
            job_id: "web".into(),
            status: EVAL_PENDING.into(),
            ..Evaluation::default()
        });
    }
}

#[test]
fn registration_and_status_changes_leave_node_events_once_every_server_reads_them() {
    use crate::evals::{node_register_command, node_status_command};
    let mut s = State::default();
    let mut index = 0;
    let mut apply = |s: &mut State, kind| {
        index += 1;
        let cmd = Command {
            kind: Some(kind),
            now_unix_ms: index as i64 * 1000,
            ..Command::default()
        };
        s.apply(index, &cmd).unwrap();
    };
    let mut ids = || "e".to_string();
    let register = |s: &State, events, ids: &mut dyn FnMut() -> String| {
        node_register_command(s, ready_node("n1", 1000, 1000), events, ids)
    };
    let messages = |s: &State| -> Vec<String> {
        s.nodes["n1"]
            .events
            .iter()
            .map(|e| format!("{} {}: {}", e.time_unix_ms, e.subsystem, e.message))
            .collect()
    };
    // While an older server may read the state, the commands carry no event.
    let kind = register(&s, false, &mut ids);
    apply(&mut s, kind);
    let kind = node_status_command(&s, "n1", NODE_DOWN, false, &mut ids);
    apply(&mut s, kind);
    assert!(messages(&s).is_empty());
    let kind = register(&s, true, &mut ids);
    apply(&mut s, kind);
    // A restart within the grace registers again: nothing happened to the node.
    let kind = register(&s, true, &mut ids);
    apply(&mut s, kind);
    let kind = node_status_command(&s, "n1", NODE_DOWN, true, &mut ids);
    apply(&mut s, kind);
    let kind = node_status_command(&s, "n1", NODE_DOWN, true, &mut ids);
    apply(&mut s, kind);
    let kind = node_status_command(&s, "n1", NODE_READY, true, &mut ids);
    apply(&mut s, kind);
    assert_eq!(
        messages(&s),
        [
            "3000 Cluster: Node re-registered",
            "5000 Cluster: Node heartbeat missed",
            "7000 Cluster: Node reregistered by heartbeat",
        ]
    );
    let mut fresh = State::default();
    let kind = register(&fresh, true, &mut ids);
    apply(&mut fresh, kind);
    assert_eq!(messages(&fresh).len(), 1);
    assert!(messages(&fresh)[0].ends_with("Cluster: Node registered"));
}

#[test]
fn a_nodes_allocations_index_moves_only_with_its_own_allocations() {
    let mut s = State::default();
    s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
    s.nodes.insert("n2".into(), ready_node("n2", 1000, 1000));
    assert_eq!(s.node_allocs_index("n1"), 0);
    s.apply(3, &plan("e1", vec![placement("a1", "n1", 100, 20000)]))
        .unwrap();
    assert_eq!(s.node_allocs_index("n1"), 3);
    // A placement on another node, and a write that touches no allocation, leave it.
    s.apply(4, &plan("e2", vec![placement("a2", "n2", 100, 20000)]))
        .unwrap();
    s.apply(5, &plan("e3", vec![])).unwrap();
    assert_eq!(s.node_allocs_index("n1"), 3);
    assert_eq!(s.node_allocs_index("n2"), 4);
    // The client's own report changes the allocation, and so the index.
    let report = Command {
        kind: Some(command::Kind::AllocClientUpdates(
            crate::internal::AllocClientUpdates {
                node_id: "n1".into(),
                evals: vec![],
                updates: vec![crate::v1::AllocClientUpdate {
                    alloc_id: "a1".into(),
                    client_status: ALLOC_RUNNING.into(),
                    ..Default::default()
                }],
            },
        )),
        ..Command::default()
    };
    s.apply(6, &report).unwrap();
    assert_eq!(s.node_allocs_index("n1"), 6);
}

#[test]
fn one_evaluation_per_job_the_newest_with_the_older_ones_it_supersedes() {
    let mut s = State::default();
    let eval = |id: &str, job: &str, index: u64, priority: i32, wait: i64| Evaluation {
        id: id.into(),
        job_id: job.into(),
        create_index: index,
        priority,
        status: EVAL_PENDING.into(),
        wait_until_unix_ms: wait,
        ..Evaluation::default()
    };
    for e in [
        eval("a1", "a", 1, 50, 0),
        eval("a2", "a", 5, 50, 0),
        eval("a3", "a", 6, 50, 10_000),
        eval("b1", "b", 3, 70, 0),
    ] {
        s.evals.insert(e);
    }
    let picked: Vec<(&str, Vec<&str>)> = s
        .evals_to_schedule(100, 32)
        .into_iter()
        .map(|(e, older)| (e.id.as_str(), older.iter().map(|o| o.id.as_str()).collect()))
        .collect();
    // b first (higher priority); a's newest due evaluation, superseding a1; a3 waits.
    assert_eq!(picked, vec![("b1", vec![]), ("a2", vec!["a1"])]);
    // The leader's loop sleeps until a3 is due, and no longer once it is.
    assert_eq!(s.next_delayed_eval(100), Some(10_000));
    assert_eq!(s.next_delayed_eval(10_000), None);
    // At most the asked number of jobs, from the head of the queue.
    let first: Vec<&str> = s
        .evals_to_schedule(100, 1)
        .into_iter()
        .map(|(e, _)| e.id.as_str())
        .collect();
    assert_eq!(first, ["b1"]);
    let cmd = crate::sched::plan_command(
        &s.evals["a2"],
        &[&s.evals["a1"]],
        crate::sched::Outcome::default(),
        100,
        &mut || "x".into(),
    );
    s.apply(7, &cmd).unwrap();
    assert_eq!(s.evals["a1"].status, EVAL_CANCELED);
    assert_eq!(
        s.evals["a1"].status_description,
        "superseded by evaluation a2"
    );
    assert_eq!(s.evals["a2"].status, EVAL_COMPLETE);
    assert_eq!(s.evals["a3"].status, EVAL_PENDING);
}

#[test]
fn plans_from_stale_state_lose_the_placements_that_no_longer_fit() {
    let mut s = State::default();
    s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
    s.nodes.insert("n2".into(), ready_node("n2", 1000, 1000));
    pending_evals(&mut s, &["e1", "e2"]);
    // Two plans computed from the same state each fill n1; the first wins.
    s.apply(1, &plan("e1", vec![placement("a1", "n1", 800, 20000)]))
        .unwrap();
    s.apply(
        2,
        &plan(
            "e2",
            vec![
                placement("a2", "n1", 800, 20001),
                placement("a3", "n2", 100, 20000),
            ],
        ),
    )
    .unwrap();
    assert!(s.allocs.contains_key("a1") && s.allocs.contains_key("a3"));
    assert!(!s.allocs.contains_key("a2"), "n1 would be over-committed");
    assert_eq!(s.evals["e1"].status, EVAL_COMPLETE);
    let e2 = &s.evals["e2"];
    assert_eq!((e2.status.as_str(), e2.plan_rejections), (EVAL_PENDING, 1));
    assert_eq!(
        e2.status_description,
        "plan refused because n1: the node would be over-committed"
    );

    // A port taken twice, a node gone or ineligible: refused the same way.
    s.apply(3, &plan("e2", vec![placement("a4", "n2", 10, 20000)]))
        .unwrap();
    assert!(s.evals["e2"]
        .status_description
        .ends_with("n2: port 20000 would be taken twice"));
    s.nodes.get_mut("n2").unwrap().scheduling_eligibility = NODE_INELIGIBLE.into();
    for i in 4..7 {
        s.apply(i, &plan("e2", vec![placement("a5", "n2", 10, 1)]))
            .unwrap();
    }
    let e2 = &s.evals["e2"];
    assert_eq!((e2.status.as_str(), e2.plan_rejections), (EVAL_FAILED, 5));
    assert_eq!(
        e2.status_description,
        "plan refused 5 times, last because n2: the node is not ready for placements"
    );
    // Stopping an allocation always applies, and makes room.
    let mut stop = s.allocs["a1"].clone();
    stop.desired_status = ALLOC_DESIRED_STOP.into();
    s.apply(
        7,
        &plan("e3", vec![stop, placement("a6", "n1", 900, 20000)]),
    )
    .unwrap();
    assert!(s.allocs.contains_key("a6"));
}
use crate::internal::{JobRegister, NodeRegister};

fn job(count: u32) -> Job {
    JobSpec::new("web").count(count).job()
}

fn register(job: Job, enforce: Option<u64>) -> Command {
    Command {
        now_unix_ms: 1000,
        ignore_if_unknown: false,
        kind: Some(command::Kind::JobRegister(JobRegister {
            job: Some(job),
            eval: None,
            enforce_index: enforce.is_some(),
            job_modify_index: enforce.unwrap_or(0),
            scaling_event: None,
        })),
    }
}

#[test]
fn an_allocation_that_ends_gives_blocked_evaluations_another_chance() {
    let blocked = |id: &str| Evaluation {
        id: id.into(),
        job_id: "other".into(),
        status: EVAL_BLOCKED.into(),
        ..Evaluation::default()
    };
    let mut s = State::default();
    s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
    s.apply(1, &plan("e1", vec![placement("a1", "n1", 500, 20000)]))
        .unwrap();
    s.apply(2, &plan("e2", vec![placement("a2", "n1", 500, 20001)]))
        .unwrap();
    s.evals.insert(blocked("b1"));
    // Still running: nothing to retry.
    let report = |alloc: &str, status: &str| Command {
        kind: Some(command::Kind::AllocClientUpdates(
            crate::internal::AllocClientUpdates {
                node_id: "n1".into(),
                evals: vec![],
                updates: vec![crate::v1::AllocClientUpdate {
                    alloc_id: alloc.into(),
                    client_status: status.into(),
                    ..Default::default()
                }],
            },
        )),
        ..Command::default()
    };
    s.apply(3, &report("a1", ALLOC_RUNNING)).unwrap();
    assert_eq!(s.evals["b1"].status, EVAL_BLOCKED);
    // The client reports a1 finished: room.
    s.apply(4, &report("a1", ALLOC_COMPLETE)).unwrap();
    assert_eq!(s.evals["b1"].status, EVAL_PENDING);

    // A plan that stops a2 frees its room as well.
    s.evals.insert(blocked("b2"));
    let mut stop = s.allocs["a2"].clone();
    stop.desired_status = ALLOC_DESIRED_STOP.into();
    s.apply(5, &plan("e3", vec![stop])).unwrap();
    assert_eq!(s.evals["b2"].status, EVAL_PENDING);
}

#[test]
fn versions_advance_only_on_spec_change() {
    let mut s = State::default();
    assert_eq!(
        s.apply(5, &register(job(1), None))
            .unwrap()
            .job_modify_index,
        5
    );
    assert_eq!(
        s.apply(6, &register(job(1), None))
            .unwrap()
            .job_modify_index,
        5
    );
    assert_eq!(s.jobs[&crate::state::job_key("", "web")].version, 0);
    s.apply(7, &register(job(2), None)).unwrap();
    let j = &s.jobs[&crate::state::job_key("", "web")];
    assert_eq!((j.version, j.job_modify_index, j.create_index), (1, 7, 5));
    assert_eq!(s.job_versions[&crate::state::job_key("", "web")].len(), 2);
    for i in 0..10 {
        s.apply(8 + i, &register(job(3 + i as u32), None)).unwrap();
    }
    assert_eq!(
        s.job_versions[&crate::state::job_key("", "web")].len(),
        TRACKED_VERSIONS
    );
    assert_eq!(
        s.job_versions[&crate::state::job_key("", "web")]
            .last()
            .unwrap()
            .version,
        11
    );
}

#[test]
fn job_status_follows_nomad_s_rules() {
    // (stopped, live allocations, open evaluations, any at all) -> status
    for (args, want) in [
        ((true, true, true, true), JOB_DEAD),
        ((false, true, true, true), JOB_RUNNING),
        ((false, false, true, true), JOB_PENDING),
        ((false, false, false, true), JOB_DEAD),
        ((false, false, false, false), JOB_PENDING),
    ] {
        assert_eq!(job_status(args.0, args.1, args.2, args.3), want, "{args:?}");
    }
}

#[test]
fn a_service_job_whose_allocations_all_failed_for_good_is_dead() {
    let mut s = crate::testkit::Sim::new();
    let job = yurt_types::jobspec::parse_hcl(
        "t.hcl",
        "job \"web\" {\n  group \"app\" {\n    count = 2\n    reschedule {\n      attempts = 0\n      unlimited = false\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/false\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    s.run(job);
    assert_eq!(
        s.state.jobs[&crate::state::job_key("", "web")].status,
        JOB_RUNNING
    );
    let ids: Vec<String> = s.state.allocs.values().map(|a| a.id.clone()).collect();
    s.report(&ids[0], ALLOC_FAILED, None);
    assert_eq!(
        s.state.jobs[&crate::state::job_key("", "web")].status,
        JOB_RUNNING,
        "one still runs"
    );
    s.report(&ids[1], ALLOC_FAILED, None);
    assert_eq!(
        s.state.jobs[&crate::state::job_key("", "web")].status,
        JOB_DEAD
    );
}

#[test]
fn the_newest_stable_version_is_kept_beyond_the_tracked_ones() {
    let kept = |stable: &[u64], n: u64| {
        let mut v: Vec<Arc<Job>> = Vec::new();
        for version in 0..n {
            v.push(Arc::new(Job {
                version,
                stable: stable.contains(&version),
                ..Job::default()
            }));
            trim_versions(&mut v);
        }
        v.iter().map(|j| j.version).collect::<Vec<u64>>()
    };
    // Older than the six newest: kept, with the five newest.
    assert_eq!(kept(&[0], 9), vec![0, 4, 5, 6, 7, 8]);
    // Only the newest stable one is kept; an older stable one goes in turn.
    assert_eq!(kept(&[0, 1], 9), vec![1, 4, 5, 6, 7, 8]);
    // No stable version: the six newest.
    assert_eq!(kept(&[], 9), vec![3, 4, 5, 6, 7, 8]);
    // The stable one among the six newest: the six newest.
    assert_eq!(kept(&[5], 9), vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(kept(&[8], 9), vec![3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_registered_job_is_stored_once_and_copied_only_when_its_status_changes() {
    let mut s = State::default();
    s.apply_owned(5, register(job(1), None)).unwrap();
    let current = &s.jobs[&crate::state::job_key("", "web")];
    let version = s.job_versions[&crate::state::job_key("", "web")]
        .last()
        .unwrap();
    assert!(Arc::ptr_eq(current, version), "one copy for both");
    assert_eq!(current.status, JOB_PENDING);

    // A running allocation makes the job running: the current job and its last version
    // both say so, and only the current job records the index of the change.
    s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
    let mut a = placement("a1", "n1", 100, 20000);
    a.client_status = ALLOC_RUNNING.into();
    s.apply(6, &plan("e1", vec![a])).unwrap();
    let current = &s.jobs[&crate::state::job_key("", "web")];
    let version = s.job_versions[&crate::state::job_key("", "web")]
        .last()
        .unwrap();
    assert_eq!(
        (current.status.as_str(), current.modify_index),
        (JOB_RUNNING, 6)
    );
    assert_eq!(
        (version.status.as_str(), version.modify_index),
        (JOB_RUNNING, 5)
    );
    assert!(!Arc::ptr_eq(current, version));
}

#[test]
fn check_index_is_compare_and_swap() {
    let mut s = State::default();
    let err = s.apply(3, &register(job(1), Some(9))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Enforcing job modify index 9: job does not exist"
    );
    assert!(s.jobs.is_empty());
    s.apply(4, &register(job(1), Some(0))).unwrap();
    let err = s.apply(5, &register(job(2), Some(0))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Enforcing job modify index 0: job already exists"
    );
    let err = s.apply(6, &register(job(2), Some(3))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Enforcing job modify index 3: job exists with conflicting job modify index: 4"
    );
    assert_eq!(
        s.jobs[&crate::state::job_key("", "web")].task_groups[0].count,
        1
    );
    s.apply(7, &register(job(2), Some(4))).unwrap();
    assert_eq!(
        s.jobs[&crate::state::job_key("", "web")].task_groups[0].count,
        2
    );
}

#[test]
fn unknown_command_is_refused_unless_ignorable() {
    let mut s = State::default();
    let mut cmd = Command::default();
    assert_eq!(s.apply(1, &cmd), Err(ApplyError::UnknownCommand));
    cmd.ignore_if_unknown = true;
    assert!(s.apply(2, &cmd).is_ok());
}

#[test]
fn snapshot_round_trips_and_refuses_newer_formats() {
    let mut s = State::default();
    s.apply(1, &register(job(1), None)).unwrap();
    s.apply(2, &register(job(2), None)).unwrap();
    let node = Node {
        id: "n1".into(),
        status: NODE_READY.into(),
        ..Node::default()
    };
    s.apply(
        3,
        &Command {
            kind: Some(command::Kind::NodeRegister(NodeRegister {
                node: Some(node),
                evals: vec![],
                event: None,
            })),
            ..Command::default()
        },
    )
    .unwrap();
    s.apply(
        4,
        &Command {
            kind: Some(command::Kind::SetSchedulerConfig(
                crate::internal::SetSchedulerConfig {
                    config: Some(SchedulerConfiguration {
                        scheduler_algorithm: SCHEDULER_SPREAD.into(),
                        ..Default::default()
                    }),
                },
            )),
            ..Command::default()
        },
    )
    .unwrap();
    assert_eq!(
        (
            s.scheduler_config.create_index,
            s.scheduler_config.modify_index
        ),
        (4, 4)
    );
    let back = State::from_snapshot(&s.to_snapshot("0.1.0")).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.scheduler_config.scheduler_algorithm, SCHEDULER_SPREAD);

    let mut snap = StateSnapshot::decode(s.to_snapshot("0.1.0").as_slice()).unwrap();
    snap.format_version = SNAPSHOT_FORMAT + 1;
    snap.written_by = "9.9.9".into();
    let err = State::from_snapshot(&snap.encode_to_vec()).unwrap_err();
    assert!(err.to_string().contains("written by Yurt 9.9.9"), "{err}");
    assert!(
        err.to_string().contains("downgrades are not supported"),
        "{err}"
    );
    assert!(State::from_snapshot(b"\xff\xff garbage").is_err());
}

#[test]
fn a_plan_never_rolls_back_what_the_client_reported() {
    use crate::internal::AllocClientUpdates;
    use crate::v1::AllocClientUpdate;
    let mut s = State::default();
    s.nodes.insert("n1".into(), ready_node("n1", 1000, 1000));
    let placed = Allocation {
        id: "a1".into(),
        node_id: "n1".into(),
        job_id: "web".into(),
        desired_status: ALLOC_DESIRED_RUN.into(),
        client_status: ALLOC_PENDING.into(),
        ..Allocation::default()
    };
    let plan = |allocs: Vec<Allocation>| Command {
        kind: Some(command::Kind::ApplyPlan(ApplyPlan {
            allocs,
            eval: None,
            new_evals: vec![],
            job: None,
            ..Default::default()
        })),
        ..Command::default()
    };
    s.apply(1, &plan(vec![placed.clone()])).unwrap();
    let report = Command {
        kind: Some(command::Kind::AllocClientUpdates(AllocClientUpdates {
            node_id: "n1".into(),
            evals: vec![],
            updates: vec![AllocClientUpdate {
                alloc_id: "a1".into(),
                client_status: ALLOC_RUNNING.into(),
                ..AllocClientUpdate::default()
            }],
        })),
        ..Command::default()
    };
    s.apply(2, &report).unwrap();
    // An in-place update computed from the state at index 1 arrives after the report.
    let mut stale = placed.clone();
    stale.desired_description = "updated in place".into();
    s.apply(3, &plan(vec![stale.clone()])).unwrap();
    let a = &s.allocs["a1"];
    assert_eq!(
        (a.client_status.as_str(), a.desired_description.as_str()),
        (ALLOC_RUNNING, "updated in place")
    );
    assert_eq!((a.create_index, a.modify_index), (1, 3));
    // Health the client decided is recorded with its index and kept through later plans.
    let mut healthy = report.clone();
    if let Some(command::Kind::AllocClientUpdates(u)) = &mut healthy.kind {
        u.updates[0].deployment_status = Some(crate::v1::AllocDeploymentStatus {
            healthy: Some(true),
            timestamp_unix_ms: 42,
            ..Default::default()
        });
    }
    s.apply(4, &healthy).unwrap();
    s.apply(5, &report).unwrap();
    s.apply(6, &plan(vec![stale])).unwrap();
    let d = s.allocs["a1"].deployment_status.unwrap();
    assert_eq!(
        (d.healthy, d.timestamp_unix_ms, d.modify_index),
        (Some(true), 42, 4)
    );
    // Another node cannot report on it.
    let mut foreign = report.clone();
    if let Some(command::Kind::AllocClientUpdates(u)) = &mut foreign.kind {
        u.node_id = "n2".into();
        u.updates[0].client_status = ALLOC_FAILED.into();
    }
    s.apply(4, &foreign).unwrap();
    assert_eq!(s.allocs["a1"].client_status, ALLOC_RUNNING);
    // A report of failure needs a rescheduling evaluation once, not when repeated.
    let failed = vec![AllocClientUpdate {
        alloc_id: "a1".into(),
        client_status: ALLOC_FAILED.into(),
        ..AllocClientUpdate::default()
    }];
    s.jobs.insert(
        crate::state::job_key("", "web"),
        Job {
            id: "web".into(),
            ..Job::default()
        }
        .into(),
    );
    assert_eq!(s.jobs_with_new_failures(&failed).len(), 1);
    s.allocs
        .update("a1", |a| a.client_status = ALLOC_FAILED.into());
    assert!(s.jobs_with_new_failures(&failed).is_empty());
    s.allocs
        .update("a1", |a| a.client_status = ALLOC_RUNNING.into());
    // Losing an allocation is the scheduler's call.
    let mut lost = placed;
    lost.client_status = ALLOC_LOST.into();
    s.apply(5, &plan(vec![lost])).unwrap();
    assert_eq!(s.allocs["a1"].client_status, ALLOC_LOST);
}

#[test]
fn prefix_lookup() {
    let mut m = OrdMap::new();
    m.insert("abc1".to_string(), 1);
    m.insert("abd2".to_string(), 2);
    assert_eq!(State::find_by_prefix(&m, "abc"), Ok(&1));
    assert_eq!(State::find_by_prefix(&m, "ab"), Err(PrefixError::Ambiguous));
    assert_eq!(State::find_by_prefix(&m, "x"), Err(PrefixError::NotFound));
}

#[test]
fn a_node_s_exact_name_wins_over_another_node_s_id_prefix() {
    let mut s = State::default();
    for (id, name) in [("c1b3564d-0000", "c2"), ("381a23fe-0000", "c1")] {
        let mut n = ready_node(id, 100, 100);
        n.name = name.into();
        s.nodes.insert(id.into(), n);
    }
    assert_eq!(s.find_node("c1").unwrap().id, "381a23fe-0000");
    assert_eq!(s.find_node("c1b3").unwrap().id, "c1b3564d-0000");
    assert_eq!(s.find_node("c1b3564d-0000").unwrap().name, "c2");
    assert_eq!(s.find_node("38").unwrap().name, "c1");
}

#[test]
fn a_copy_of_the_state_is_a_snapshot_that_later_changes_leave_alone() {
    let mut s = State::default();
    s.nodes
        .insert("n1".into(), ready_node("n1", 100_000, 100_000));
    pending_evals(&mut s, &["e1", "e2"]);
    let many: Vec<Allocation> = (0..500)
        .map(|i| placement(&format!("a{i:03}"), "n1", 10, 20_000 + i))
        .collect();
    s.apply(1, &plan("e1", many)).unwrap();
    let snapshot = s.clone();
    // Changes after the copy: a new placement, a node gone, an allocation updated.
    s.apply(2, &plan("e2", vec![placement("b", "n1", 10, 30_000)]))
        .unwrap();
    s.allocs
        .update("a000", |a| a.client_status = ALLOC_FAILED.into());
    s.nodes.remove("n1");
    assert_eq!(snapshot.index, 1);
    assert_eq!(snapshot.allocs.len(), 500);
    assert_eq!(snapshot.allocs.on_node("n1").count(), 500);
    assert_eq!(snapshot.allocs["a000"].client_status, ALLOC_PENDING);
    assert!(snapshot.nodes.contains_key("n1"));
    assert_eq!(snapshot.evals["e2"].status, EVAL_PENDING);
    assert_eq!(s.allocs.len(), 501);
    assert_eq!(s.evals["e2"].status, EVAL_COMPLETE);
    assert_eq!(s.allocs["a000"].client_status, ALLOC_FAILED);
    // And the other way round: the copy changes alone.
    let mut copy = s.clone();
    copy.allocs.remove("b");
    assert!(s.allocs.contains_key("b"));
}

#[test]
fn the_same_job_id_in_two_namespaces_is_two_jobs_with_their_own_allocations_and_lifecycles() {
    use crate::testkit::Sim;
    let mut s = Sim::new();
    s.apply(command::Kind::NamespaceUpdate(
        crate::internal::NamespaceUpdate {
            upsert: vec![crate::v1::Namespace {
                name: "prod".into(),
                ..Default::default()
            }],
            delete: vec![],
        },
    ))
    .unwrap();
    let in_ns = |ns: &str, count: u32| Job {
        namespace: ns.into(),
        ..JobSpec::new("web").count(count).job()
    };
    s.run(in_ns("default", 2));
    s.run(in_ns("prod", 3));
    let live = |s: &Sim, ns: &str| {
        s.state
            .job_allocs(ns, "web")
            .into_iter()
            .filter(|a| !alloc_terminal(a) && a.namespace == ns)
            .count()
    };
    assert_eq!((live(&s, "default"), live(&s, "prod")), (2, 3));
    assert_eq!(s.state.jobs.len(), 2);
    // Each job's evaluations, deployments and allocations carry its namespace.
    assert!(s
        .state
        .evals
        .of_job("prod", "web")
        .all(|e| e.namespace == "prod"));
    assert!(s.state.evals.of_job("prod", "web").next().is_some());

    // Stopping and purging prod's changes nothing of default's.
    let stop = |ns: &str, purge: bool| {
        command::Kind::JobDeregister(crate::internal::JobDeregister {
            job_id: "web".into(),
            purge,
            eval: Some(crate::evals::new_eval(
                &in_ns(ns, 0),
                format!("stop-{ns}-{purge}"),
                TRIGGER_JOB_DEREGISTER,
            )),
            namespace: ns.into(),
        })
    };
    s.apply(stop("prod", false)).unwrap();
    s.settle();
    assert_eq!((live(&s, "default"), live(&s, "prod")), (2, 0));
    assert!(s.state.job("prod", "web").unwrap().stop);
    assert!(!s.state.job("default", "web").unwrap().stop);

    // Its client reports the stopped allocations complete; then the collector names prod's
    // job by namespace, and default's stays.
    let stopped: Vec<String> = s
        .state
        .job_allocs("prod", "web")
        .iter()
        .map(|a| a.id.clone())
        .collect();
    for id in stopped {
        s.report(&id, ALLOC_COMPLETE, None);
    }
    let gc = crate::gc::collect(&s.state, i64::MAX, crate::gc::Thresholds::FORCE);
    assert!(gc.job_ids.is_empty(), "{gc:?}");
    assert_eq!(gc.namespaced_jobs.len(), 1);
    s.apply(command::Kind::Gc(gc)).unwrap();
    assert!(s.state.job("prod", "web").is_none());
    assert_eq!(live(&s, "default"), 2);
    assert_eq!(s.state.versions("default", "web").len(), 1);
}
