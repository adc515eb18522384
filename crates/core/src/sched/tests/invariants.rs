//! Property tests: whatever sequence of scaling, destructive changes and node failures a job
//! goes through, each scheduler run leaves a state that keeps the reconciler's invariants.

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
