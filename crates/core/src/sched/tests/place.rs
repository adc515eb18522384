//! Placement: datacenters and constraints, bin packing and spread, scheduler settings,
//! distinct properties, `job plan`, ports.

use super::*;

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

#[test]
fn a_task_goes_only_where_its_driver_is_healthy() {
    let mut w = World::new(0);
    // Healthy raw_exec; raw_exec disabled (undetected); exec unhealthy only; a 0.2.0 client
    // (no fingerprints, its attributes say what it runs).
    let mut nodes = Vec::new();
    for (i, (detected, healthy)) in [(true, true), (false, false), (true, false)]
        .into_iter()
        .enumerate()
    {
        let mut n = crate::testkit::ready_node(&format!("node-{i}"), 1000, 1000);
        let raw = n.drivers.get_mut("raw_exec").unwrap();
        raw.detected = detected;
        raw.healthy = healthy;
        nodes.push(n);
    }
    let mut old = crate::testkit::ready_node("node-old", 1000, 1000);
    old.drivers.clear();
    old.attributes.insert("driver.raw_exec".into(), "1".into());
    nodes.push(old);
    for n in nodes {
        w.apply(crate::testkit::register_node(n));
    }
    // Room for ten on each node: twenty fill the two that can run them, no more.
    let o = w.run(job(21, "a"));
    assert_eq!(o.queued["app"], 1);
    assert_eq!(o.failed["app"].constraint_filtered["missing drivers"], 2);
    let placed: std::collections::BTreeSet<&str> =
        o.allocs.iter().map(|a| a.node_id.as_str()).collect();
    assert_eq!(
        placed,
        ["node-0", "node-old"].into_iter().collect(),
        "{:?}",
        o.failed
    );
    // A driver no node has: Nomad's words for it.
    let mut w = World::new(2);
    let mut j = job(1, "a");
    j.task_groups[0].tasks[0].driver = "docker".into();
    let o = w.run(j);
    assert_eq!(o.queued["app"], 1);
    assert_eq!(o.failed["app"].constraint_filtered["missing drivers"], 2);
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
                memory_max_mb: 0,
            }),
            drivers: crate::testkit::healthy_drivers(),
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
    let algorithm = |a: &str| set_scheduler_config(&s, a, "").map(|c| c.scheduler_algorithm);
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
    // Memory oversubscription: off by default, set on its own, the algorithm kept.
    assert!(!scheduler_config(&s).memory_oversubscription_enabled);
    let on = set_scheduler_config(&s, "", "true").unwrap();
    assert!(on.memory_oversubscription_enabled);
    assert_eq!(on.scheduler_algorithm, SCHEDULER_BINPACK);
    assert_eq!(
        set_scheduler_config(&s, "", "yes").unwrap_err(),
        r#"memory oversubscription must be true or false, not "yes""#
    );
}

#[test]
fn with_oversubscription_allocations_may_use_memory_max_but_place_by_memory() {
    let mut w = World::new(1);
    let mut j = job(10, "a");
    j.task_groups[0].tasks[0].resources = Some(crate::v1::Resources {
        cpu: 100,
        memory_mb: 100,
        memory_max_mb: 900,
    });
    // Off: placed by `memory`, not allowed past it.
    let o = w.run(j.clone());
    assert_eq!(
        o.allocs.len(),
        10,
        "ten of 100 MB fit 1000 MB: {:?}",
        o.failed
    );
    assert!(o.allocs.iter().all(|a| !a.memory_oversubscription));
    // On: new allocations carry it.
    let on = set_scheduler_config(&w.state, "", "true").unwrap();
    w.apply(command::Kind::SetSchedulerConfig(SetSchedulerConfig {
        config: Some(on),
    }));
    let mut j2 = j.clone();
    j2.id = "other".into();
    w.node("node-1", 1000, 1000);
    let o = w.run(j2);
    assert_eq!(o.allocs.len(), 10);
    assert!(o.allocs.iter().all(|a| a.memory_oversubscription));
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
    let jmi = w.state.jobs[&crate::state::job_key("", "web")].job_modify_index;
    let same = plan_job(&w.state, &job(2, "a"), 0, Gates::ALL);
    assert_eq!(same.job_modify_index, jmi);
    assert!(!same.changes_allocations());
    let edit = plan_job(&w.state, &job(2, "b"), 0, Gates::ALL);
    assert!(edit.changes_allocations());
    assert_eq!(edit.diff.task_groups[0].updates["create/destroy update"], 2);
    // Planning changed nothing.
    assert_eq!(
        w.state.jobs[&crate::state::job_key("", "web")].job_modify_index,
        jmi
    );
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
