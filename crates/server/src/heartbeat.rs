//! The leader's heartbeat tracker: hands clients their TTL, remembers when each node must be
//! heard from next, and marks silent nodes `down` (through Raft, with a `node-update`
//! evaluation for every job concerned) when their deadline passes, or `disconnected` while
//! their allocations' `disconnect.lost_after` lasts, then `down`. Steady heartbeats never
//! touch Raft. A server that becomes leader gives every live node the failover TTL first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use yurt_core::disconnect::{node_lost_at, silent_node_status};
use yurt_core::evals::node_status_command;
use yurt_core::heartbeat::{ttl_ms, Config, Tracker};
use yurt_types::status::*;

use crate::raft::state_machine::StateHandle;
use crate::write::{now_unix_ms, Writer};

pub struct Heartbeats {
    pub config: Config,
    tracker: Mutex<Tracker>,
    /// Told when a node new to the tracker beats: its deadline may be the earliest.
    new_node: tokio::sync::Notify,
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
            new_node: tokio::sync::Notify::new(),
        })
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a heartbeat from `node` (on the leader) and returns the TTL to hand back.
    pub fn beat(&self, node: &str, nodes: usize) -> u64 {
        let ttl = ttl_ms(&self.config, nodes, jitter());
        if self.tracker().beat(&self.config, node, now_unix_ms(), ttl) {
            self.new_node.notify_one();
        }
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

/// The least time between two looks at the deadlines: a steady beat only moves a deadline
/// later, so a look at one that moved finds nothing and sleeps again; this bounds those looks.
const MIN_LOOK: Duration = Duration::from_millis(100);

/// The longest sleep of the loop (with no node, nothing is due at all).
const IDLE_LOOK: Duration = Duration::from_secs(3600);

/// The leader's expiry loop, run while this server leads (see [`crate::leadership`]): every
/// live node first gets the failover TTL, then the loop sleeps until the earliest deadline (or
/// until a node new to this leader beats) and marks the nodes whose deadline passed `down`.
/// When leadership ends the tracker forgets every node.
pub async fn run(
    hb: Arc<Heartbeats>,
    crate::leader::Leader {
        state,
        writer,
        cluster,
        ..
    }: crate::leader::Leader,
    mut stop: watch::Receiver<bool>,
) {
    let alive: Vec<String> = state.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.status != NODE_DOWN)
            .map(|n| n.id.clone())
            .collect()
    });
    tracing::info!(nodes = alive.len(), ttl = ?Duration::from_millis(hb.config.failover_ttl_ms), "leader: giving every node the failover heartbeat TTL");
    hb.tracker().reset(&hb.config, alive, now_unix_ms());
    loop {
        let now = now_unix_ms();
        expire(&hb, &state, &writer, &cluster, now).await;
        let next = hb.tracker().next_deadline();
        // `expired` takes deadlines strictly before now: look just after the earliest one.
        let wait = next.map_or(IDLE_LOOK, |at| {
            Duration::from_millis((at + 1 - now).max(0) as u64).clamp(MIN_LOOK, IDLE_LOOK)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = hb.new_node.notified() => {}
            _ = stop.changed() => break,
        }
    }
    hb.tracker().clear();
}

/// What becomes of a node whose deadline passed.
enum Verdict {
    /// Gone from the state, or down already: nothing more to track.
    Forget,
    /// Disconnected, its `lost_after` not over: looked at again then.
    Later(i64),
    /// Its new status, written with its evaluations.
    Write(&'static str, Box<yurt_core::internal::command::Kind>),
}

/// Marks every node whose deadline passed `disconnected` or `down` (each with its
/// evaluations), and a disconnected one `down` once its `lost_after` is over; one that cannot
/// be marked yet stays tracked and is tried again at the next look.
async fn expire(
    hb: &Heartbeats,
    state: &StateHandle,
    writer: &Writer,
    cluster: &crate::cluster::Cluster,
    now: i64,
) {
    let expired = hb.tracker().expired(now);
    let gates = cluster.gates();
    for node in expired {
        let verdict = state.read(|s| {
            let Some(n) = s.nodes.get(&node) else {
                return Verdict::Forget;
            };
            let to = match n.status.as_str() {
                NODE_DOWN => return Verdict::Forget,
                NODE_DISCONNECTED => match node_lost_at(s, &node) {
                    Some(at) if at > now => return Verdict::Later(at),
                    _ => NODE_DOWN,
                },
                _ => silent_node_status(s, &node, gates),
            };
            let cmd = node_status_command(s, &node, to, gates.node_events, &mut new_id);
            Verdict::Write(to, Box::new(cmd))
        });
        let (to, cmd) = match verdict {
            Verdict::Forget => {
                hb.tracker().forget(&node);
                continue;
            }
            Verdict::Later(at) => {
                hb.tracker().arm(&node, at);
                continue;
            }
            Verdict::Write(to, cmd) => (to, cmd),
        };
        match writer.apply(*cmd).await {
            Ok(_) if to == NODE_DISCONNECTED => {
                let at = state.read(|s| node_lost_at(s, &node)).unwrap_or(now);
                tracing::warn!(node = %node, lost_at_unix_ms = at, "node TTL expired: node is disconnected, its allocations unknown until their lost_after ends");
                hb.tracker().arm(&node, at);
            }
            Ok(_) => {
                tracing::warn!(node = %node, "node TTL expired: node is down, its allocations are lost");
                hb.tracker().forget(&node);
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "could not mark node {to}; will retry")
            }
        }
    }
}
