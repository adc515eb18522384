//! The `disconnect` block driven through the state machine and the scheduler with simulated
//! clients and hours of time.

use super::*;
use crate::evals::node_status_command;
use crate::testkit::{ready_node, register_node, JobSpec, Sim, MIN};
use crate::v1::{AllocClientUpdate, TaskState};

/// A service job `id`, one allocation, with the group's `disconnect` block as given.
fn job(id: &str, disconnect: &str) -> crate::v1::Job {
    let spec = JobSpec::new(id).block("update", "max_parallel = 0");
    if disconnect.is_empty() {
        spec.job()
    } else {
        spec.block("disconnect", disconnect).job()
    }
}

impl Sim {
    /// `node-0` alone runs `job`; then `node-1` joins (`memory` MB: a small node scores higher
    /// for bin packing).
    fn started_on_node_0(jobs: &[crate::v1::Job], memory: u32) -> Sim {
        let mut s = Sim::with_nodes(1, 10_000);
        for j in jobs {
            s.run(j.clone());
            for id in s.allocs_on("node-0") {
                s.client_says(&id, ALLOC_RUNNING);
            }
        }
        s.apply(register_node(ready_node("node-1", memory, memory)))
            .unwrap();
        s
    }

    fn allocs_on(&self, node: &str) -> Vec<String> {
        self.state
            .allocs
            .on_node(node)
            .filter(|a| !alloc_terminal(a))
            .map(|a| a.id.clone())
            .collect()
    }

    /// What a client reports of one allocation (its task running since now, when running).
    fn client_says(&mut self, alloc: &str, status: &str) {
        let a = self.state.allocs[alloc].clone();
        let mut task = TaskState {
            state: status.into(),
            ..Default::default()
        };
        if status == ALLOC_RUNNING {
            task.started_at_unix_ms = a
                .task_states
                .get("t")
                .map_or(self.now, |t| t.started_at_unix_ms);
        }
        self.send(AllocClientUpdate {
            alloc_id: alloc.into(),
            client_status: status.into(),
            task_states: [("t".to_string(), task)].into(),
            ..Default::default()
        });
    }

    /// The node becomes `status` (as the heartbeat tracker or a heartbeat writes it).
    fn node_becomes(&mut self, node: &str, status: &str) {
        let mut ids = self.ids;
        let cmd = node_status_command(&self.state, node, status, true, &mut || {
            ids += 1;
            format!("id-{ids:04}")
        });
        self.ids = ids;
        self.apply(cmd).unwrap();
        self.settle();
    }

    /// The heartbeat tracker's verdict on a silent node, written.
    fn silence(&mut self, node: &str) -> &'static str {
        let status = silent_node_status(&self.state, node, Gates::ALL);
        self.node_becomes(node, status);
        status
    }

    /// The node heartbeats again and its client reports every allocation it still runs.
    fn back(&mut self, node: &str, running: &[String]) {
        self.node_becomes(node, NODE_READY);
        for id in running {
            self.client_says(id, ALLOC_RUNNING);
        }
    }

    fn live_of(&self, job: &str) -> Vec<&Allocation> {
        self.state
            .allocs
            .values()
            .filter(|a| a.job_id == job && !alloc_terminal(a))
            .collect()
    }
}

#[test]
fn a_silent_node_is_disconnected_its_allocations_unknown_and_replaced_then_reconciled_per_strategy()
{
    let jobs = [
        job(
            "orig",
            "lost_after = \"1h\"\n reconcile = \"keep_original\"",
        ),
        job(
            "repl",
            "lost_after = \"1h\"\n reconcile = \"keep_replacement\"",
        ),
        job(
            "long",
            "lost_after = \"1h\"\n reconcile = \"longest_running\"",
        ),
        job("best", "lost_after = \"1h\""),
        job("kept", "lost_after = \"1h\"\n replace = false"),
    ];
    // node-1 is small: a replacement there scores higher than the original on node-0.
    let mut s = Sim::started_on_node_0(&jobs, 1_000);
    let originals = s.allocs_on("node-0");
    assert_eq!(originals.len(), 5);
    s.now += 2 * MIN;
    assert_eq!(s.silence("node-0"), NODE_DISCONNECTED);
    let node = &s.state.nodes["node-0"];
    assert_eq!(node.status, NODE_DISCONNECTED);
    assert_eq!(
        node.events.last().unwrap().message,
        NODE_EVENT_HEARTBEAT_MISSED
    );
    for id in &originals {
        let a = &s.state.allocs[id];
        assert_eq!(a.client_status, ALLOC_UNKNOWN, "{}", a.name);
        assert_eq!(a.client_description, DESC_UNKNOWN);
        assert_eq!(a.desired_status, ALLOC_DESIRED_RUN);
    }
    // Every job but `kept` (replace = false) has a replacement on node-1 naming the original.
    for j in ["orig", "repl", "long", "best"] {
        let live = s.live_of(j);
        assert_eq!(live.len(), 2, "{j}");
        let r = live.iter().find(|a| a.node_id == "node-1").unwrap();
        assert!(originals.contains(&r.previous_allocation), "{j}");
        assert!(r.score > s.state.allocs[&r.previous_allocation].score);
    }
    assert_eq!(s.live_of("kept").len(), 1);
    let replacements = s.allocs_on("node-1");
    s.now += MIN;
    for id in &replacements {
        s.client_says(id, ALLOC_RUNNING);
    }
    // Back within the hour: the node is ready; until its client reports, nothing is stopped.
    s.node_becomes("node-0", NODE_READY);
    assert_eq!(
        s.state.nodes["node-0"].events.last().unwrap().message,
        NODE_EVENT_RECONNECTED
    );
    assert_eq!(s.live_of("orig").len(), 2);
    s.back("node-0", &originals);
    let on = |s: &Sim, j: &str| -> Vec<String> {
        s.live_of(j).iter().map(|a| a.node_id.clone()).collect()
    };
    assert_eq!(on(&s, "orig"), ["node-0"]);
    assert_eq!(on(&s, "repl"), ["node-1"]);
    assert_eq!(on(&s, "long"), ["node-0"], "the original started first");
    assert_eq!(on(&s, "best"), ["node-1"], "the replacement scored higher");
    assert_eq!(on(&s, "kept"), ["node-0"]);
    let loser = s
        .state
        .allocs
        .values()
        .find(|a| a.job_id == "orig" && a.node_id == "node-1")
        .unwrap();
    assert_eq!(loser.desired_status, ALLOC_DESIRED_STOP);
    assert_eq!(loser.desired_description, DESC_RECONNECT);
    let kept = originals
        .iter()
        .find(|id| s.state.allocs[*id].job_id == "kept");
    assert_eq!(s.state.allocs[kept.unwrap()].client_status, ALLOC_RUNNING);
}

#[test]
fn best_score_keeps_the_original_on_a_tie_and_an_update_meanwhile_keeps_the_new_version() {
    let best = job("best", "lost_after = \"1h\"");
    let mut s = Sim::started_on_node_0(std::slice::from_ref(&best), 10_000);
    let original = s.allocs_on("node-0");
    s.silence("node-0");
    let replacement = s.allocs_on("node-1");
    s.client_says(&replacement[0], ALLOC_RUNNING);
    s.back("node-0", &original);
    let live = s.live_of("best");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, original[0], "same score: the original stays");

    // A new version while the node is away: the replacement at it wins whatever the strategy.
    s.silence("node-0");
    s.run(
        JobSpec::new("best")
            .env("b")
            .block("update", "max_parallel = 0")
            .block(
                "disconnect",
                "lost_after = \"1h\"\n reconcile = \"keep_original\"",
            )
            .job(),
    );
    let new = s.allocs_on("node-1");
    assert_eq!(new.len(), 1);
    s.client_says(&new[0], ALLOC_RUNNING);
    s.back("node-0", &original);
    let live = s.live_of("best");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, new[0]);
}

#[test]
fn an_unknown_allocation_is_lost_when_lost_after_ends_and_the_node_down_with_its_longest() {
    let jobs = [
        job("short", "lost_after = \"10m\""),
        job("long", "lost_after = \"30m\""),
    ];
    let mut s = Sim::started_on_node_0(&jobs, 10_000);
    let originals = s.allocs_on("node-0");
    let t0 = s.now;
    s.silence("node-0");
    assert_eq!(node_lost_at(&s.state, "node-0"), Some(t0 + 30 * MIN));
    s.tick(9 * MIN);
    assert!(originals
        .iter()
        .all(|id| s.state.allocs[id].client_status == ALLOC_UNKNOWN));
    // The follow-up evaluation at ten minutes finds `short`'s allocation lost.
    s.tick(2 * MIN);
    let of = |s: &Sim, j: &str| {
        let id = originals.iter().find(|id| s.state.allocs[*id].job_id == j);
        s.state.allocs[id.unwrap()].clone()
    };
    let (short, long) = (of(&s, "short"), of(&s, "long"));
    assert_eq!(short.client_status, ALLOC_LOST);
    assert_eq!(short.desired_description, DESC_LOST);
    assert_eq!(long.client_status, ALLOC_UNKNOWN);
    assert!(s
        .state
        .evals
        .values()
        .any(|e| e.triggered_by == TRIGGER_MAX_DISCONNECT_TIMEOUT && e.job_id == "short"));
    s.tick(20 * MIN);
    assert_eq!(of(&s, "long").client_status, ALLOC_LOST);
    // Past the longest the heartbeat tracker marks the node down; its return undoes nothing.
    assert_eq!(
        silent_node_status(&s.state, "node-0", Gates::ALL),
        NODE_DISCONNECTED
    );
    s.node_becomes("node-0", NODE_DOWN);
    s.back("node-0", &originals);
    for id in &originals {
        assert_eq!(s.state.allocs[id].client_status, ALLOC_LOST);
        assert_eq!(s.state.allocs[id].desired_status, ALLOC_DESIRED_STOP);
    }
    assert_eq!(s.live_of("short").len(), 1);
    assert_eq!(s.live_of("long").len(), 1);
}

#[test]
fn without_lost_after_or_before_every_server_has_it_a_silent_node_is_down() {
    let mut s = Sim::started_on_node_0(&[job("plain", "")], 10_000);
    assert_eq!(
        silent_node_status(&s.state, "node-0", Gates::ALL),
        NODE_DOWN
    );
    let mut s2 = Sim::started_on_node_0(&[job("w", "lost_after = \"1h\"")], 10_000);
    let older = Gates {
        disconnect: false,
        ..Gates::ALL
    };
    assert_eq!(silent_node_status(&s2.state, "node-0", older), NODE_DOWN);
    assert_eq!(s2.silence("node-0"), NODE_DISCONNECTED);
    assert_eq!(s.silence("node-0"), NODE_DOWN);
    let lost = s
        .state
        .allocs
        .values()
        .find(|a| a.node_id == "node-0")
        .unwrap();
    assert_eq!(lost.client_status, ALLOC_LOST);
    assert_eq!(s.live_of("plain").len(), 1);
}

#[test]
fn a_pending_allocation_on_a_disconnected_node_is_lost_at_once() {
    let mut s = Sim::with_nodes(1, 10_000);
    s.run(job("run", "lost_after = \"1h\""));
    let running = s.allocs_on("node-0");
    s.client_says(&running[0], ALLOC_RUNNING);
    s.run(job("wait", "lost_after = \"1h\""));
    let pending = s.allocs_on("node-0")[1].clone();
    s.apply(register_node(ready_node("node-1", 10_000, 10_000)))
        .unwrap();
    s.silence("node-0");
    assert_eq!(s.state.allocs[&running[0]].client_status, ALLOC_UNKNOWN);
    assert_eq!(s.state.allocs[&pending].client_status, ALLOC_LOST);
}

#[test]
fn the_replacement_of_a_client_that_stops_its_own_tasks_waits_for_them_to_stop() {
    let mut s = Sim::started_on_node_0(&[job("w", "stop_on_client_after = \"2m\"")], 10_000);
    let original = s.allocs_on("node-0");
    let t0 = s.now;
    assert_eq!(s.silence("node-0"), NODE_DOWN);
    assert_eq!(s.state.allocs[&original[0]].client_status, ALLOC_LOST);
    // The client stops it after 2 minutes; its task has 5 s to stop.
    assert!(s.live_of("w").is_empty());
    s.tick(MIN);
    assert!(s.live_of("w").is_empty());
    s.tick(MIN + 4_000);
    assert!(s.live_of("w").is_empty());
    s.tick(2_000);
    let live = s.live_of("w");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].node_id, "node-1");
    assert!(s.now >= t0 + 2 * MIN + 5_000);
}

#[test]
fn pick_follows_the_strategy_and_keeps_the_original_on_a_tie() {
    let group = |reconcile: &str| TaskGroup {
        disconnect: Some(crate::v1::Disconnect {
            lost_after_ms: 1,
            reconcile: reconcile.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let alloc = |score: f64, started: i64| Allocation {
        client_status: ALLOC_RUNNING.into(),
        score,
        task_states: [(
            "t".to_string(),
            TaskState {
                started_at_unix_ms: started,
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    };
    let (old, new) = (alloc(0.5, 100), alloc(0.5, 200));
    for (s, keep) in [
        (RECONCILE_KEEP_ORIGINAL, Keep::Original),
        (RECONCILE_KEEP_REPLACEMENT, Keep::Replacement),
        (RECONCILE_LONGEST_RUNNING, Keep::Original),
        (RECONCILE_BEST_SCORE, Keep::Original),
    ] {
        assert_eq!(pick(&group(s), &old, &new), keep, "{s}");
    }
    assert_eq!(
        pick(&group(RECONCILE_LONGEST_RUNNING), &alloc(0.5, 300), &new),
        Keep::Replacement
    );
    let better = alloc(0.9, 200);
    assert_eq!(
        pick(&group(RECONCILE_BEST_SCORE), &old, &better),
        Keep::Replacement
    );
    let pending = Allocation {
        client_status: ALLOC_PENDING.into(),
        ..better
    };
    assert_eq!(pick(&group(""), &old, &pending), Keep::Original);
}

#[test]
fn a_system_job_s_allocation_on_a_disconnected_node_is_unknown_then_lost_never_replaced_elsewhere()
{
    let mut s = Sim::with_nodes(2, 10_000);
    s.run(
        JobSpec::new("sys")
            .kind("system")
            .block("disconnect", "lost_after = \"1h\"")
            .job(),
    );
    let on0 = s.allocs_on("node-0");
    assert_eq!((on0.len(), s.allocs_on("node-1").len()), (1, 1));
    s.client_says(&on0[0], ALLOC_RUNNING);
    assert_eq!(s.silence("node-0"), NODE_DISCONNECTED);
    let a = &s.state.allocs[&on0[0]];
    assert_eq!(
        (a.client_status.as_str(), a.desired_status.as_str()),
        (ALLOC_UNKNOWN, ALLOC_DESIRED_RUN)
    );
    assert_eq!(
        s.live_of("sys").len(),
        2,
        "one per node, nothing placed elsewhere"
    );
    // Back in time: it runs on.
    s.back("node-0", &on0);
    assert_eq!(s.state.allocs[&on0[0]].client_status, ALLOC_RUNNING);
    // Away past lost_after: lost.
    s.silence("node-0");
    s.tick(61 * MIN);
    assert_eq!(s.state.allocs[&on0[0]].client_status, ALLOC_LOST);
    assert_eq!(s.live_of("sys").len(), 1);
}
