//! Fixtures: a cluster, then steps, each a change and one scheduler run whose outcome must be
//! as written. Counts are (place, stop, ignore, in-place update, destructive update).

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
