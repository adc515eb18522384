//! The drainer driven end to end in memory with simulated clients and time.

use super::*;
use crate::internal::command;
use crate::testkit::{ready_node, register_node, JobSpec, Sim, MIN};
use crate::v1::Job;

/// A job `kind` named `id` with `count` allocations of 100 MB, migrate max_parallel `mp`.
fn job(id: &str, kind: &str, count: u32, mp: u32) -> Job {
    let spec = JobSpec::new(id).kind(kind).count(count).resources(100, 100);
    match kind {
        "service" => spec
            .block("update", "max_parallel = 0")
            .block(
                "migrate",
                &format!(
                    "max_parallel = {mp}\n      min_healthy_time = \"1s\"\n      healthy_deadline = \"1m\""
                ),
            )
            .job(),
        _ => spec.job(),
    }
}

fn strategy(deadline_ms: i64) -> DrainStrategy {
    DrainStrategy {
        deadline_ms,
        ..Default::default()
    }
}

impl Sim {
    fn drain(&mut self, node: &str, s: Option<DrainStrategy>) {
        let n = self.state.nodes[node].clone();
        let mut ids = self.ids;
        let u = drain_command(&self.state, &n, s, true, self.now, &mut || {
            ids += 1;
            format!("id-{ids:04}")
        });
        self.ids = ids;
        self.apply(command::Kind::NodeDrainUpdate(u)).unwrap();
        self.settle();
        self.drain_pass();
    }

    /// The clients: allocations told to stop stop; new ones start (healthy when `healthy`).
    fn clients(&mut self, healthy: bool) {
        let stopping: Vec<String> = self
            .state
            .allocs
            .values()
            .filter(|a| a.desired_status != ALLOC_DESIRED_RUN && !stopped(a))
            .map(|a| a.id.clone())
            .collect();
        for id in stopping {
            self.report(&id, ALLOC_COMPLETE, None);
        }
        let starting: Vec<String> = self
            .state
            .allocs
            .values()
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN && a.client_status == ALLOC_PENDING)
            .map(|a| a.id.clone())
            .collect();
        for id in starting {
            self.report(&id, ALLOC_RUNNING, healthy.then_some(true));
        }
        self.drain_pass();
    }

    fn live_on(&self, node: &str) -> usize {
        self.state
            .allocs
            .on_node(node)
            .filter(|a| !alloc_terminal(a))
            .count()
    }

    fn events(&self, node: &str) -> Vec<String> {
        self.state.nodes[node]
            .events
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    /// Migrations of a job in flight: a marked allocation that has not stopped on its client,
    /// or whose replacement is not yet judged.
    fn moving(&self, job: &str) -> usize {
        self.state
            .allocs
            .of_job("", job)
            .filter(|m| marked(m))
            .filter(|m| {
                let replacement = self
                    .state
                    .allocs
                    .of_job("", job)
                    .find(|r| r.previous_allocation == m.id);
                !stopped(m)
                    || replacement.is_none_or(|r| {
                        !alloc_terminal(r)
                            && r.deployment_status
                                .as_ref()
                                .and_then(|d| d.healthy)
                                .is_none()
                    })
            })
            .count()
    }

    /// The node with the most live allocations.
    fn busiest(&self) -> String {
        self.state
            .nodes
            .keys()
            .max_by_key(|n| (self.live_on(n), std::cmp::Reverse((*n).clone())))
            .unwrap()
            .clone()
    }
}

/// Makes every running allocation's health known, one at a time in order: returns whether one
/// was waiting.
fn prove_one(s: &mut Sim) -> bool {
    let Some(id) = s.undecided().into_iter().next() else {
        return false;
    };
    s.report(&id, ALLOC_RUNNING, Some(true));
    s.drain_pass();
    true
}

/// The other of two nodes.
fn other(node: &str) -> String {
    if node == "node-0" { "node-1" } else { "node-0" }.to_string()
}

#[test]
fn a_metered_drain_moves_one_allocation_at_a_time_and_completes_when_all_stopped() {
    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("web", "service", 3, 1));
    s.clients(true);
    let (n0, n1) = (s.busiest(), other(&s.busiest()));
    assert_eq!(s.live_on(&n0), 3, "bin packing put all on one node");
    s.drain(&n0, Some(strategy(60 * MIN)));
    assert_eq!(s.state.nodes[&n0].scheduling_eligibility, NODE_INELIGIBLE);
    assert_eq!(s.events(&n0), [NODE_EVENT_DRAIN_SET]);
    let mut rounds = 0;
    while s.state.nodes[&n0].drain_strategy.is_some() {
        rounds += 1;
        assert!(rounds < 20, "the drain ends");
        assert!(s.moving("web") <= 1, "never two moving at once");
        let healthy = s
            .state
            .allocs
            .of_job("", "web")
            .filter(|a| !alloc_terminal(a))
            .filter(|a| a.deployment_status.as_ref().and_then(|d| d.healthy) == Some(true))
            .count();
        assert!(healthy >= 2, "the job never drops below count - 1 healthy");
        s.clients(false);
        prove_one(&mut s);
    }
    assert_eq!((s.live_on(&n0), s.live_on(&n1)), (0, 3));
    assert_eq!(
        s.events(&n0),
        [NODE_EVENT_DRAIN_SET, NODE_EVENT_DRAIN_COMPLETE]
    );
    let n = &s.state.nodes[&n0];
    assert_eq!(
        (n.drain, n.scheduling_eligibility.as_str()),
        (false, NODE_INELIGIBLE)
    );
    let migrated = s
        .state
        .allocs
        .values()
        .filter(|a| a.desired_description == yurt_types::status::DESC_MIGRATING)
        .count();
    assert_eq!(migrated, 3);
}

#[test]
fn two_nodes_drained_together_still_move_one_allocation_of_a_group_at_a_time() {
    // Two allocations on each of node-0 and node-1 (room for two per node), two empty nodes.
    let mut s = Sim::with_nodes(2, 250);
    s.run(job("web", "service", 4, 1));
    s.clients(true);
    for i in 2..4 {
        s.apply(register_node(ready_node(&format!("node-{i}"), 250, 250)))
            .unwrap();
    }
    assert_eq!((s.live_on("node-0"), s.live_on("node-1")), (2, 2));
    s.drain("node-0", Some(strategy(60 * MIN)));
    s.drain("node-1", Some(strategy(60 * MIN)));
    let mut rounds = 0;
    while s.live_on("node-0") + s.live_on("node-1") > 0 {
        rounds += 1;
        assert!(rounds < 30, "the drains end");
        assert!(s.moving("web") <= 1, "max_parallel 1 across both nodes");
        s.clients(false);
        prove_one(&mut s);
    }
    s.clients(false);
    assert!(s.state.nodes["node-0"].drain_strategy.is_none());
    assert!(s.state.nodes["node-1"].drain_strategy.is_none());
    assert_eq!((s.live_on("node-2"), s.live_on("node-3")), (2, 2));
}

#[test]
fn the_deadline_stops_whatever_is_left_and_force_stops_at_once() {
    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("web", "service", 3, 1));
    s.clients(true);
    let (n0, n1) = (s.busiest(), other(&s.busiest()));
    s.drain(&n0, Some(strategy(10 * MIN)));
    // Replacements never prove healthy: one moves, the others wait for the deadline.
    s.clients(false);
    assert_eq!(s.live_on(&n0), 2);
    s.tick(10 * MIN);
    s.clients(false);
    assert_eq!(s.live_on(&n0), 0);
    assert_eq!(
        s.events(&n0),
        [
            NODE_EVENT_DRAIN_SET,
            NODE_EVENT_DRAIN_DEADLINE,
            NODE_EVENT_DRAIN_COMPLETE
        ]
    );
    assert_eq!(
        s.state.nodes[&n0].events[2].details["deadline_reached"],
        "true"
    );

    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("web", "service", 3, 1));
    s.clients(true);
    let n0 = s.busiest();
    s.drain(&n0, Some(strategy(-1)));
    assert_eq!(s.live_on(&n0), 0, "-force: all at once");
    assert_eq!(s.live_on(&n1), 3);
}

#[test]
fn batch_allocations_finish_unreplaced_and_system_ones_stop_last_unless_ignored() {
    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("web", "service", 1, 1));
    s.run(job("report", "batch", 1, 1));
    s.run(job("agent", "system", 1, 1));
    s.clients(true);
    let (n0, n1) = (s.busiest(), other(&s.busiest()));
    assert_eq!((s.live_on(&n0), s.live_on(&n1)), (3, 1));
    s.drain(&n0, Some(strategy(60 * MIN)));
    s.clients(true);
    s.clients(true);
    // The service allocation moved; the batch one runs on; the system one waits for it.
    let mut live: Vec<String> = s
        .state
        .allocs
        .on_node(&n0)
        .filter(|a| !alloc_terminal(a))
        .map(|a| a.job_id.clone())
        .collect();
    live.sort();
    assert_eq!(live, ["agent", "report"]);
    assert!(s.state.nodes[&n0].drain_strategy.is_some());
    // The batch task finishes: not replaced anywhere; then the system allocation stops.
    let batch = s
        .state
        .allocs
        .on_node(&n0)
        .find(|a| a.job_id == "report")
        .unwrap()
        .id
        .clone();
    s.report(&batch, ALLOC_COMPLETE, None);
    s.drain_pass();
    s.clients(true);
    assert_eq!(s.live_on(&n0), 0);
    assert!(s.state.nodes[&n0].drain_strategy.is_none());
    assert_eq!(
        s.state.allocs.of_job("", "report").count(),
        1,
        "not replaced"
    );

    // At the deadline a batch allocation is stopped, and not replaced either; with
    // ignore_system the system allocation stays.
    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("report", "batch", 1, 1));
    s.run(job("agent", "system", 1, 1));
    s.clients(true);
    let n0 = s.busiest();
    s.drain(
        &n0,
        Some(DrainStrategy {
            deadline_ms: 5 * MIN,
            ignore_system_jobs: true,
            ..Default::default()
        }),
    );
    s.tick(5 * MIN);
    s.clients(true);
    assert_eq!(
        s.state.allocs.of_job("", "report").count(),
        1,
        "not replaced"
    );
    assert_eq!(s.live_on(&n0), 1, "the system allocation keeps running");
    assert!(s.state.nodes[&n0].drain_strategy.is_none(), "done");
}

#[test]
fn an_empty_node_drains_at_once_and_eligibility_waits_for_the_drain() {
    let mut s = Sim::with_nodes(2, 1000);
    s.drain("node-1", Some(strategy(60 * MIN)));
    assert!(s.state.nodes["node-1"].drain_strategy.is_none());
    assert_eq!(
        s.events("node-1"),
        [NODE_EVENT_DRAIN_SET, NODE_EVENT_DRAIN_COMPLETE]
    );
    // Draining (a batch job holds it): eligibility cannot be turned back on.
    s.run(job("report", "batch", 1, 1));
    s.clients(true);
    s.drain("node-0", Some(strategy(60 * MIN)));
    let mut ids = 0;
    let enable = crate::evals::node_eligibility_command(&s.state, "node-0", true, &mut || {
        ids += 1;
        format!("e{ids}")
    });
    assert_eq!(
        s.apply(enable).unwrap_err().to_string(),
        "can not set node's scheduling eligibility to eligible while it is draining"
    );
    // A client that registers again keeps its node draining.
    let mut again = s.state.nodes["node-0"].clone();
    again.drain = false;
    again.drain_strategy = None;
    again.scheduling_eligibility = String::new();
    s.apply(command::Kind::NodeRegister(crate::internal::NodeRegister {
        node: Some(again),
        evals: vec![],
        event: None,
    }))
    .unwrap();
    assert!(s.state.nodes["node-0"].drain_strategy.is_some());
    assert_eq!(
        s.state.nodes["node-0"].scheduling_eligibility,
        NODE_INELIGIBLE
    );
    // Disabling the drain makes it eligible again.
    s.drain("node-0", None);
    assert_eq!(
        s.state.nodes["node-0"].scheduling_eligibility,
        NODE_ELIGIBLE
    );
    assert_eq!(
        s.events("node-0").last().unwrap(),
        NODE_EVENT_DRAIN_DISABLED
    );
    // So does `-disable` after a drain completed (the node stays ineligible until then).
    assert_eq!(
        s.state.nodes["node-1"].scheduling_eligibility,
        NODE_INELIGIBLE
    );
    s.drain("node-1", None);
    assert_eq!(
        s.state.nodes["node-1"].scheduling_eligibility,
        NODE_ELIGIBLE
    );
}

#[test]
fn a_stopped_allocation_is_replaced_and_cannot_be_stopped_twice() {
    let mut s = Sim::with_nodes(2, 1000);
    s.run(job("web", "service", 2, 1));
    s.clients(true);
    let victim = s
        .state
        .allocs
        .of_job("", "web")
        .next()
        .map(|a| a.id.clone())
        .unwrap();
    let cmd = stop_alloc_command(&s.state, &victim, "stop-eval".into()).unwrap();
    s.apply(cmd).unwrap();
    s.settle();
    let old = s.state.allocs.get(&victim).unwrap();
    assert_ne!(old.desired_status, ALLOC_DESIRED_RUN, "{old:?}");
    let live = s
        .state
        .allocs
        .of_job("", "web")
        .filter(|a| a.desired_status == ALLOC_DESIRED_RUN)
        .count();
    assert_eq!(live, 2, "a replacement keeps the count");
    s.clients(true);
    let (missing, why) = stop_alloc_command(&s.state, &victim, "e2".into()).unwrap_err();
    assert!(!missing && why.contains("has already stopped"), "{why}");
    let (missing, _) = stop_alloc_command(&s.state, "nope", "e3".into()).unwrap_err();
    assert!(missing);
}
