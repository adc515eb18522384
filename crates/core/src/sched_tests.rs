//! Reconciler and placement tests: a state built by applying commands, then one scheduler run.

use super::*;
use crate::evals::*;
use crate::internal::{NodeRegister, SetSchedulerConfig};
use crate::v1::Constraint;
use yurt_types::jobspec::parse_hcl;

/// A job without an update strategy (`max_parallel = 0`: changes apply at once, no deployment;
/// deployments are tested in `deploy::tests`).
fn job_src(kind: &str, count: u32, env: &str, memory: u32, priority: u32) -> Job {
    let update = if kind == "batch" {
        ""
    } else {
        "update {\n    max_parallel = 0\n  }"
    };
    parse_hcl(
        "t.hcl",
        &format!(
            r#"job "web" {{
  type = "{kind}"
  priority = {priority}
  {update}
  group "app" {{
    count = {count}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
      }}
      env {{
        E = "{env}"
      }}
      resources {{
        cpu = 100
        memory = {memory}
      }}
    }}
  }}
}}"#
        ),
    )
    .unwrap()
}

fn job(count: u32, env: &str) -> Job {
    job_src("service", count, env, 100, 50)
}

struct World {
    state: State,
    index: u64,
    ids: u32,
    now: i64,
}

impl World {
    fn new(nodes: u32) -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            ids: 0,
            now: 1,
        };
        for i in 0..nodes {
            w.node(&format!("node-{i}"), 1000, 1000);
        }
        w
    }

    fn apply(&mut self, kind: command::Kind) {
        self.index += 1;
        let cmd = Command {
            now_unix_ms: self.now,
            ignore_if_unknown: false,
            kind: Some(kind),
        };
        self.state.apply(self.index, &cmd).unwrap();
    }

    fn node(&mut self, id: &str, cpu: u32, mem: u32) {
        let node = Node {
            id: id.into(),
            name: id.into(),
            datacenter: "dc1".into(),
            status: NODE_READY.into(),
            resources: Some(Resources {
                cpu,
                memory_mb: mem,
            }),
            ..Node::default()
        };
        self.apply(command::Kind::NodeRegister(NodeRegister {
            node: Some(node),
            evals: vec![],
            event: None,
        }));
    }

    /// Registers the job and runs the scheduler, committing the plan.
    fn run(&mut self, job: Job) -> Outcome {
        self.apply(command::Kind::JobRegister(JobRegister {
            job: Some(job.clone()),
            eval: None,
            enforce_index: false,
            job_modify_index: 0,
        }));
        self.schedule(&job.id)
    }

    fn schedule(&mut self, job_id: &str) -> Outcome {
        let ids = &mut self.ids;
        let out = schedule(&self.state, job_id, "eval", self.now, &mut || {
            *ids += 1;
            format!("alloc-{ids}")
        });
        self.apply(command::Kind::ApplyPlan(ApplyPlan {
            allocs: out.allocs.clone(),
            eval: None,
            new_evals: vec![],
            job: out.job.clone(),
            deployment: out.deployment.clone(),
            deployment_changes: out.deployment_changes.clone(),
        }));
        out
    }

    fn running(&self) -> Vec<&Allocation> {
        self.state
            .allocs
            .values()
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN)
            .collect()
    }
}

fn counts(o: &Outcome) -> (u64, u64, u64, u64, u64) {
    let d = &o.desired["app"];
    (
        d.place,
        d.stop,
        d.ignore,
        d.in_place_update,
        d.destructive_update,
    )
}

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
        },
    ));
    let o = w.schedule("web");
    assert_eq!(o.allocs.len(), 2);
    assert!(w.running().is_empty());
    assert_eq!(w.state.jobs["web"].status, JOB_DEAD);
}

fn purge(w: &mut World) {
    w.apply(command::Kind::JobDeregister(
        crate::internal::JobDeregister {
            job_id: "web".into(),
            purge: true,
            eval: None,
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
    let new: Vec<&Allocation> = w.state.job_allocs("web");
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
        &new_eval(&w.state.jobs["web"], "e".into(), TRIGGER_JOB_REGISTER),
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

#[test]
fn datacenter_and_constraints_filter_nodes() {
    let mut w = World::new(1);
    let mut j = job(1, "a");
    j.datacenters = vec!["eu-*".into()];
    let o = w.run(j);
    assert_eq!(o.queued["app"], 1);
    assert_eq!(
        o.failed["app"].constraint_filtered["missing compatible datacenter"],
        1
    );
}

/// Three nodes with a rack and a kernel version each; a job of `count` with `constraint`.
fn racked_world(count: u32, constraint: &str) -> (World, Outcome) {
    let mut w = World::new(0);
    for (i, (rack, kernel)) in [
        ("r1", "5.15.0-91-generic"),
        ("r1", "6.1.0"),
        ("r2", "4.19.0"),
    ]
    .iter()
    .enumerate()
    {
        let mut node = Node {
            id: format!("node-{i}"),
            name: format!("node-{i}"),
            datacenter: "dc1".into(),
            status: NODE_READY.into(),
            resources: Some(Resources {
                cpu: 1000,
                memory_mb: 1000,
            }),
            ..Node::default()
        };
        node.meta.insert("rack".into(), rack.to_string());
        node.attributes
            .insert("kernel.version".into(), kernel.to_string());
        w.apply(command::Kind::NodeRegister(NodeRegister {
            node: Some(node),
            evals: vec![],
            event: None,
        }));
    }
    let src = format!(
        r#"job "web" {{
  group "app" {{
    count = {count}
    {constraint}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
      }}
      resources {{
        cpu = 100
        memory = 100
      }}
    }}
  }}
}}"#
    );
    let o = w.run(parse_hcl("t.hcl", &src).unwrap());
    (w, o)
}

fn nodes_used(w: &World) -> Vec<String> {
    let mut v: Vec<String> = w.running().iter().map(|a| a.node_id.clone()).collect();
    v.sort();
    v
}

#[test]
fn bin_packing_fills_a_node_before_the_next_in_a_large_cluster() {
    let mut w = World::new(64);
    // 100 MHz each on 1000 MHz nodes: ten fit on one node.
    let o = w.run(job(20, "a"));
    assert_eq!(o.desired["app"].place, 20);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in w.running() {
        *per_node.entry(a.node_id.clone()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![10, 10]);
}

#[test]
fn the_spread_algorithm_puts_each_placement_on_the_emptiest_node_it_samples() {
    let mut w = World::new(4);
    w.apply(command::Kind::SetSchedulerConfig(SetSchedulerConfig {
        config: Some(SchedulerConfiguration {
            scheduler_algorithm: SCHEDULER_SPREAD.into(),
            ..Default::default()
        }),
    }));
    // Each placement scores three of the four equal nodes, from where the previous one landed,
    // and takes the emptiest: four placements land on four nodes.
    w.run(job(4, "a"));
    let used: BTreeSet<String> = w.running().iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(used.len(), 4, "{used:?}");

    // The same job under bin packing: one node.
    let mut b = World::new(4);
    b.run(job(4, "a"));
    let used: BTreeSet<String> = b.running().iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(used.len(), 1, "bin packing stacks them");
}

#[test]
fn scheduler_settings_default_to_binpack_and_refuse_unknown_algorithms() {
    let s = State::default();
    assert_eq!(scheduler_config(&s).scheduler_algorithm, SCHEDULER_BINPACK);
    let algorithm = |a: &str| set_scheduler_config(&s, a).map(|c| c.scheduler_algorithm);
    assert_eq!(algorithm("spread").unwrap(), SCHEDULER_SPREAD);
    assert_eq!(
        algorithm("").unwrap(),
        SCHEDULER_BINPACK,
        "empty keeps the setting"
    );
    assert_eq!(
        algorithm("random").unwrap_err(),
        r#"scheduler algorithm "random" is not one of "binpack" or "spread""#
    );
}

#[test]
fn regexp_and_version_constraints_pick_nodes() {
    let (w, o) = racked_world(
        2,
        r#"constraint {
      attribute = "${attr.kernel.version}"
      version   = ">= 5.10, < 7"
    }"#,
    );
    assert_eq!(o.desired["app"].place, 2);
    assert!(nodes_used(&w)
        .iter()
        .all(|n| n == "node-0" || n == "node-1"));

    let (w, o) = racked_world(
        2,
        r#"constraint {
      attribute = "${meta.rack}"
      operator  = "regexp"
      value     = "^r2$"
    }"#,
    );
    assert_eq!(nodes_used(&w), vec!["node-2", "node-2"]);
    assert_eq!(o.desired["app"].place, 2);

    // No node matches: the failure names the constraint and how many nodes it excluded.
    let (_, o) = racked_world(
        1,
        r#"constraint {
      attribute = "${attr.kernel.version}"
      operator  = "semver"
      value     = ">= 7.0.0"
    }"#,
    );
    assert_eq!(o.queued["app"], 1);
    assert_eq!(
        o.failed["app"].constraint_filtered["${attr.kernel.version} semver >= 7.0.0"],
        3
    );
}

#[test]
fn distinct_property_spreads_over_racks_up_to_its_limit() {
    let (w, o) = racked_world(
        3,
        r#"constraint {
      distinct_property = "${meta.rack}"
    }"#,
    );
    // Two racks, one allocation each: the third cannot be placed.
    assert_eq!(o.desired["app"].place, 2);
    assert_eq!(o.queued["app"], 1);
    let racks: BTreeSet<String> = w
        .running()
        .iter()
        .map(|a| w.state.nodes[&a.node_id].meta["rack"].clone())
        .collect();
    assert_eq!(racks.len(), 2);
    assert_eq!(
        o.failed["app"].constraint_filtered["${meta.rack} distinct_property"],
        3
    );

    let (w, o) = racked_world(
        3,
        r#"constraint {
      operator  = "distinct_property"
      attribute = "${meta.rack}"
      value     = "2"
    }"#,
    );
    assert_eq!(o.desired["app"].place, 3);
    let on_r1 = nodes_used(&w)
        .iter()
        .filter(|n| *n == "node-0" || *n == "node-1")
        .count();
    // Three allocations, at most two per rack: two on one rack, one on the other.
    assert!(on_r1 == 1 || on_r1 == 2, "{:?}", nodes_used(&w));
}

#[test]
fn plan_reports_diff_annotations_and_exit_code_semantics() {
    let mut w = World::new(1);
    let new = plan_job(&w.state, &job(2, "a"), 0, Gates::ALL);
    assert_eq!(new.job_modify_index, 0);
    assert!(new.changes_allocations());
    assert_eq!(new.diff.task_groups[0].updates["create"], 2);
    w.run(job(2, "a"));
    let jmi = w.state.jobs["web"].job_modify_index;
    let same = plan_job(&w.state, &job(2, "a"), 0, Gates::ALL);
    assert_eq!(same.job_modify_index, jmi);
    assert!(!same.changes_allocations());
    let edit = plan_job(&w.state, &job(2, "b"), 0, Gates::ALL);
    assert!(edit.changes_allocations());
    assert_eq!(edit.diff.task_groups[0].updates["create/destroy update"], 2);
    // Planning changed nothing.
    assert_eq!(w.state.jobs["web"].job_modify_index, jmi);
    let inplace = plan_job(
        &w.state,
        &job_src("service", 2, "a", 100, 60),
        0,
        Gates::ALL,
    );
    assert!(!inplace.changes_allocations());
    assert_eq!(inplace.diff.task_groups[0].updates["in-place update"], 2);
}

fn job_with_port(count: u32, port: &str, env: &str) -> Job {
    parse_hcl(
        "t.hcl",
        &format!(
            r#"job "web" {{
  group "app" {{
    count = {count}
    network {{
      port "http" {{{port}}}
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
      }}
      env {{
        E = "{env}"
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

fn ports_of(w: &World) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = w
        .running()
        .iter()
        .map(|a| (a.node_id.clone(), a.ports[0].value))
        .collect();
    v.sort();
    v
}

#[test]
fn dynamic_ports_are_never_shared_on_a_node() {
    let mut w = World::new(1);
    w.run(job_with_port(3, "", "a"));
    let ports: Vec<u32> = ports_of(&w).into_iter().map(|(_, p)| p).collect();
    assert_eq!(ports, vec![20_000, 20_001, 20_002]);
    assert!(w.running().iter().all(|a| a.ports[0].label == "http"));
    // A destructive update frees the old ports in the same plan: the replacements reuse them.
    w.run(job_with_port(3, "", "b"));
    let ports: Vec<u32> = ports_of(&w).into_iter().map(|(_, p)| p).collect();
    assert_eq!(ports, vec![20_000, 20_001, 20_002]);
}

#[test]
fn a_static_port_fits_once_per_node() {
    let mut w = World::new(1);
    let o = w.run(job_with_port(2, " static = 8080 ", "a"));
    assert_eq!(o.desired["app"].place, 1);
    assert_eq!(o.queued["app"], 1);
    assert_eq!(
        o.failed["app"].dimension_exhausted["network: reserved port collision http=8080"],
        1
    );
    w.node("node-9", 1000, 1000);
    let o = w.schedule("web");
    assert_eq!(o.desired["app"].place, 1);
    let ports = ports_of(&w);
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0].0, ports[1].0, "one per node");
    assert!(ports.iter().all(|(_, p)| *p == 8080));
}

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
        &w.state.jobs["web"].clone(),
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

/// Property tests: whatever sequence of scaling, destructive changes and node failures a job
/// goes through, each scheduler run leaves a state that keeps the reconciler's invariants.
mod invariants {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Scale(u32),
        /// A new env value: a destructive update.
        Change(u8),
        NodeDown(usize),
        NodeUp(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..9).prop_map(Op::Scale),
            (0u8..3).prop_map(Op::Change),
            (0usize..6).prop_map(Op::NodeDown),
            (0usize..6).prop_map(Op::NodeUp),
        ]
    }

    fn set_status(w: &mut World, node: usize, status: &str) {
        let id = format!("node-{}", node % w.state.nodes.len());
        w.apply(command::Kind::NodeStatusUpdate(
            crate::internal::NodeStatusUpdate {
                node_id: id,
                status: status.into(),
                evals: vec![],
                event: None,
            },
        ));
    }

    /// Checks the state after a run that wanted `count` allocations and queued `queued`.
    fn check(w: &World, o: &Outcome, count: u32, queued: u32) -> Result<(), TestCaseError> {
        let live: Vec<&Allocation> = w
            .state
            .allocs
            .values()
            .filter(|a| !alloc_terminal(a))
            .collect();
        // Exactly count: running or waiting for room.
        prop_assert_eq!(live.len() as u32 + queued, count, "live + queued");
        // Never more new allocations than the job asks for.
        // (The plan's new allocations are the ones the state had not stamped yet.)
        let created = o
            .allocs
            .iter()
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN && a.create_index == 0)
            .count() as u32;
        prop_assert!(created <= count, "{created} placements for count {count}");
        // Names are distinct and within the count.
        let names: BTreeSet<&str> = live.iter().map(|a| a.name.as_str()).collect();
        prop_assert_eq!(names.len(), live.len(), "duplicate names: {:?}", names);
        for a in &live {
            let idx = name_index(&a.name).unwrap();
            prop_assert!(idx < count, "{} outside count {}", a.name, count);
            // Nothing is meant to run on a node that is down.
            prop_assert_eq!(&w.state.nodes[&a.node_id].status, NODE_READY);
        }
        // No node is over-committed.
        for n in w.state.nodes.values() {
            let cap = n.resources.unwrap_or_default();
            let (cpu, mem) = live
                .iter()
                .filter(|a| a.node_id == n.id)
                .map(|a| a.resources.unwrap_or_default())
                .fold((0, 0), |(c, m), r| (c + r.cpu, m + r.memory_mb));
            prop_assert!(
                cpu <= cap.cpu && mem <= cap.memory_mb,
                "{} over-committed",
                n.id
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn every_run_keeps_count_names_and_capacity(
            memories in proptest::collection::vec(prop_oneof![Just(150u32), Just(400), Just(1000)], 1..6),
            job_memory in prop_oneof![Just(100u32), Just(300)],
            first in 0u32..9,
            ops in proptest::collection::vec(op(), 1..12),
        ) {
            let mut w = World::new(0);
            for (i, m) in memories.iter().enumerate() {
                w.node(&format!("node-{i}"), 1000, *m);
            }
            let (mut count, mut env) = (first, 0u8);
            let spec = |count, env: u8| job_src("service", count, &env.to_string(), job_memory, 50);
            let o = w.run(spec(count, env));
            check(&w, &o, count, o.queued.values().sum())?;
            for op in ops {
                w.now += 1000;
                let o = match op {
                    Op::Scale(c) => {
                        count = c;
                        w.run(spec(count, env))
                    }
                    Op::Change(e) => {
                        env = e;
                        w.run(spec(count, env))
                    }
                    Op::NodeDown(n) => {
                        set_status(&mut w, n, NODE_DOWN);
                        w.schedule("web")
                    }
                    Op::NodeUp(n) => {
                        set_status(&mut w, n, NODE_READY);
                        w.schedule("web")
                    }
                };
                check(&w, &o, count, o.queued.values().sum())?;
            }
        }
    }
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
        }));
    }
    let mut n = 0;
    let mut ids = || {
        n += 1;
        format!("a{n}")
    };
    // Apart, each run sees an empty node.
    let web = schedule(&w.state, "web", "e1", 1, &mut ids);
    let other = schedule(&w.state, "other", "e2", 1, &mut ids);
    assert_eq!((web.allocs.len(), other.allocs.len()), (6, 6));
    // Together, the second sees the first's placements.
    let mut usage = NodeUsage::of_state(&w.state);
    let web = schedule_with(&w.state, &mut usage, Gates::ALL, "web", "e1", 1, &mut ids);
    let other = schedule_with(&w.state, &mut usage, Gates::ALL, "other", "e2", 1, &mut ids);
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

/// Fixtures: a cluster, then steps, each a change and one scheduler run whose outcome must be
/// as written. Counts are (place, stop, ignore, in-place update, destructive update).
mod fixtures {
    use super::*;

    enum Step {
        /// Registers the job `web` as `(type, count, env, memory MB)`.
        Run(&'static str, u32, &'static str, u32),
        /// A node of `(cpu MHz, memory MB)` joins.
        NodeJoins(u32, u32),
        /// The oldest allocation meant to run reports it completed.
        OneCompletes,
    }

    struct Expect {
        counts: (u64, u64, u64, u64, u64),
        queued: u32,
        /// How many nodes the allocations meant to run are spread over.
        nodes_used: usize,
    }

    struct Case {
        name: &'static str,
        /// `(cpu MHz, memory MB)` per node.
        nodes: &'static [(u32, u32)],
        steps: &'static [(Step, Expect)],
    }

    const fn expect(counts: (u64, u64, u64, u64, u64), queued: u32, nodes_used: usize) -> Expect {
        Expect {
            counts,
            queued,
            nodes_used,
        }
    }

    use Step::*;
    const CASES: &[Case] = &[
        Case {
            name: "scale 3 -> 5 -> 2: count changes are in place, scale down stops",
            nodes: &[(1000, 1000), (1000, 1000)],
            steps: &[
                (Run("service", 3, "a", 100), expect((3, 0, 0, 0, 0), 0, 1)),
                (Run("service", 5, "a", 100), expect((2, 0, 0, 3, 0), 0, 1)),
                (Run("service", 2, "a", 100), expect((0, 3, 0, 2, 0), 0, 1)),
            ],
        },
        Case {
            name: "bin packing fills one node before the next",
            nodes: &[(1000, 1000), (1000, 1000), (1000, 1000)],
            steps: &[(Run("service", 12, "a", 50), expect((12, 0, 0, 0, 0), 0, 2))],
        },
        Case {
            name: "a destructive change replaces every allocation",
            nodes: &[(1000, 1000)],
            steps: &[
                (Run("service", 2, "a", 100), expect((2, 0, 0, 0, 0), 0, 1)),
                (Run("service", 2, "b", 100), expect((0, 0, 0, 0, 2), 0, 1)),
                (Run("service", 2, "b", 100), expect((0, 0, 2, 0, 0), 0, 1)),
            ],
        },
        Case {
            name: "system job on three nodes, then a fourth joins",
            nodes: &[(1000, 1000), (1000, 1000), (1000, 1000)],
            steps: &[
                (Run("system", 1, "a", 100), expect((3, 0, 0, 0, 0), 0, 3)),
                (NodeJoins(1000, 1000), expect((1, 0, 3, 0, 0), 0, 4)),
            ],
        },
        Case {
            name: "a completed batch allocation is not run again",
            nodes: &[(1000, 1000)],
            steps: &[
                (Run("batch", 2, "a", 100), expect((2, 0, 0, 0, 0), 0, 1)),
                (OneCompletes, expect((0, 0, 1, 0, 0), 0, 1)),
            ],
        },
        Case {
            name: "no room: what fits is placed, the rest queued until a node joins",
            nodes: &[(1000, 250)],
            steps: &[
                (Run("service", 3, "a", 100), expect((2, 0, 0, 0, 0), 1, 1)),
                (NodeJoins(1000, 1000), expect((1, 0, 2, 0, 0), 0, 2)),
            ],
        },
    ];

    #[test]
    fn every_fixture_plans_as_written() {
        for case in CASES {
            let mut w = World::new(0);
            for (i, (cpu, mem)) in case.nodes.iter().enumerate() {
                w.node(&format!("node-{i}"), *cpu, *mem);
            }
            for (i, (step, want)) in case.steps.iter().enumerate() {
                let o = match step {
                    Run(kind, count, env, mem) => w.run(job_src(kind, *count, env, *mem, 50)),
                    NodeJoins(cpu, mem) => {
                        let n = w.state.nodes.len();
                        w.node(&format!("node-{n}"), *cpu, *mem);
                        w.schedule("web")
                    }
                    OneCompletes => {
                        let id = w.running()[0].id.clone();
                        w.state
                            .allocs
                            .update(&id, |a| a.client_status = ALLOC_COMPLETE.into());
                        w.schedule("web")
                    }
                };
                let at = format!("{} (step {})", case.name, i + 1);
                assert_eq!(counts(&o), want.counts, "{at}");
                assert_eq!(o.queued.values().sum::<u32>(), want.queued, "{at}");
                let used: BTreeSet<&str> = w
                    .running()
                    .iter()
                    .filter(|a| !alloc_client_terminal(&a.client_status))
                    .map(|a| a.node_id.as_str())
                    .collect();
                assert_eq!(used.len(), want.nodes_used, "{at}");
            }
        }
    }
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
    }));
    let mut ids = 0;
    let mut usage = NodeUsage::of_state(&w.state);
    let gated = Gates {
        deployments: false,
        ..Gates::ALL
    };
    let o = schedule_with(&w.state, &mut usage, gated, "web", "e", 1, &mut || {
        ids += 1;
        format!("n{ids}")
    });
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
