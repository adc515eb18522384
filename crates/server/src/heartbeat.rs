//! The leader's heartbeat tracker: hands clients their TTL, remembers when each node must be
//! heard from next, and marks silent nodes `down` (through Raft, with a `node-update`
//! evaluation for every job concerned). Steady heartbeats never touch Raft. A server that
//! becomes leader gives every live node the failover TTL first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use yurt_core::evals::node_status_command;
use yurt_core::heartbeat::{ttl_ms, Config, Tracker};
use yurt_types::status::*;

use crate::raft::state_machine::StateHandle;
use crate::raft::Raft;
use crate::write::{now_unix_ms, Writer};

pub struct Heartbeats {
    pub config: Config,
    tracker: Mutex<Tracker>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A number in [0, 1) for the TTL jitter: the fraction of the current millisecond. It only
/// spreads the next heartbeats, which arrive at scattered times; a random UUID cost a system
/// call per heartbeat.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 1_000_000) as f64 / 1_000_000.0
}

impl Heartbeats {
    pub fn new(config: Config) -> Arc<Heartbeats> {
        Arc::new(Heartbeats {
            config,
            tracker: Mutex::new(Tracker::default()),
        })
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a heartbeat from `node` (on the leader) and returns the TTL to hand back.
    pub fn beat(&self, node: &str, nodes: usize) -> u64 {
        let ttl = ttl_ms(&self.config, nodes, jitter());
        self.tracker().beat(&self.config, node, now_unix_ms(), ttl);
        ttl
    }

    /// Fills in what this leader knows of a node's heartbeats.
    pub fn describe(&self, node: &mut yurt_core::v1::Node) {
        let t = self.tracker();
        if let Some((at, ttl)) = t.last_beat(&node.id) {
            node.last_heartbeat_unix_ms = at;
            node.heartbeat_ttl_ms = ttl;
        }
        node.heartbeat_deadline_unix_ms = t.deadline(&node.id).unwrap_or(0);
    }
}

/// The leader's expiry loop.
pub async fn run(
    hb: Arc<Heartbeats>,
    state: StateHandle,
    writer: Writer,
    raft: Raft,
    cluster: crate::cluster::Cluster,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
        let leader = raft.metrics().borrow().state == ServerState::Leader;
        if !leader {
            if was_leader {
                hb.tracker().clear();
            }
            was_leader = false;
            continue;
        }
        let now = now_unix_ms();
        if !was_leader {
            let alive: Vec<String> = state.read(|s| {
                s.nodes
                    .values()
                    .filter(|n| n.status != NODE_DOWN)
                    .map(|n| n.id.clone())
                    .collect()
            });
            tracing::info!(nodes = alive.len(), ttl = ?Duration::from_millis(hb.config.failover_ttl_ms), "leader: giving every node the failover heartbeat TTL");
            hb.tracker().reset(&hb.config, alive, now);
            was_leader = true;
        }
        let expired = hb.tracker().expired(now);
        let events = !expired.is_empty() && cluster.gates().node_events;
        for node in expired {
            let down = state.read(|s| {
                s.nodes
                    .get(&node)
                    .filter(|n| n.status != NODE_DOWN)
                    .map(|_| node_status_command(s, &node, NODE_DOWN, events, &mut new_id))
            });
            let Some(cmd) = down else {
                hb.tracker().forget(&node);
                continue;
            };
            match writer.apply(cmd).await {
                Ok(_) => {
                    tracing::warn!(node = %node, "node TTL expired: node is down, its allocations are lost");
                    hb.tracker().forget(&node);
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "could not mark node down; will retry")
                }
            }
        }
    }
}
