//! Heartbeat TTLs and node expiry, as pure functions of the time (Unix ms) and of the random
//! jitter the caller draws. Only the leader keeps a [`Tracker`]; heartbeats never touch Raft, only
//! the status changes they cause do.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The smallest TTL handed to a client (Nomad: 10s).
    pub min_ttl_ms: u64,
    /// How many heartbeats per second the leader wants at most (Nomad: 50).
    pub max_per_second: u64,
    /// Extra time past the TTL before a node is down (Nomad: 10s).
    pub grace_ms: u64,
    /// The TTL every known node gets when a server becomes leader, so that an election never
    /// marks live nodes down (Nomad: 5m; Yurt: 1m).
    pub failover_ttl_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            min_ttl_ms: 10_000,
            max_per_second: 50,
            grace_ms: 10_000,
            failover_ttl_ms: 60_000,
        }
    }
}

/// The TTL to hand a client: `max(min_ttl, nodes / max_per_second)`, plus a jitter of up to the
/// same again (`jitter` in `[0, 1)`), so that clients spread their heartbeats.
pub fn ttl_ms(cfg: &Config, nodes: usize, jitter: f64) -> u64 {
    let spread = (nodes as u64 * 1000) / cfg.max_per_second.max(1);
    let base = cfg.min_ttl_ms.max(spread);
    base + (base as f64 * jitter.clamp(0.0, 0.999)) as u64
}

/// What the leader knows of one node's heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Beat {
    /// The node is down if nothing is heard from it by then.
    deadline: i64,
    /// The last heartbeat to this leader and the TTL it was given (none yet after a reset).
    last: Option<(i64, u64)>,
}

/// When each node must have heartbeated by. A hash map: a steady beat is a lookup by node ID
/// on every heartbeat the cluster sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    nodes: HashMap<String, Beat>,
}

impl Tracker {
    /// A heartbeat (or registration) from `node` at `now`, given `ttl_ms`: the node is down if
    /// nothing more is heard by `now + ttl + grace`. Says whether the node is new to this
    /// tracker (its deadline may then come before every other one).
    pub fn beat(&mut self, cfg: &Config, node: &str, now: i64, ttl_ms: u64) -> bool {
        let beat = Beat {
            deadline: now + (ttl_ms + cfg.grace_ms) as i64,
            last: Some((now, ttl_ms)),
        };
        // A node heard from before (every steady beat) is updated in place, without copying
        // its ID.
        match self.nodes.get_mut(node) {
            Some(b) => {
                *b = beat;
                false
            }
            None => {
                self.nodes.insert(node.to_string(), beat);
                true
            }
        }
    }

    /// The earliest deadline: nothing expires before it unless a new node comes (a beat of a
    /// known node only moves its deadline later).
    pub fn next_deadline(&self) -> Option<i64> {
        self.nodes.values().map(|b| b.deadline).min()
    }

    /// When `node` last heartbeated to this leader and the TTL it was handed.
    pub fn last_beat(&self, node: &str) -> Option<(i64, u64)> {
        self.nodes.get(node).and_then(|b| b.last)
    }

    /// On gaining leadership: every node still alive in the state gets the failover TTL,
    /// unless this leader has already heard from it (its own deadline stands).
    pub fn reset(&mut self, cfg: &Config, nodes: impl IntoIterator<Item = String>, now: i64) {
        for n in nodes {
            self.nodes.entry(n).or_insert(Beat {
                deadline: now + cfg.failover_ttl_ms as i64,
                last: None,
            });
        }
    }

    /// Looks at `node` again at `deadline` whatever its heartbeats (a `disconnected` node is
    /// down when its `lost_after` ends).
    pub fn arm(&mut self, node: &str, deadline: i64) {
        let last = self.last_beat(node);
        self.nodes.insert(node.to_string(), Beat { deadline, last });
    }

    /// Forgets every node (on losing leadership).
    pub fn clear(&mut self) {
        self.nodes.clear();
    }

    /// Stops tracking a node (it is down, or gone).
    pub fn forget(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// The nodes whose deadline has passed at `now`, by ID.
    pub fn expired(&self, now: i64) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, b)| b.deadline < now)
            .map(|(n, _)| n.clone())
            .collect();
        out.sort();
        out
    }

    pub fn deadline(&self, node: &str) -> Option<i64> {
        self.nodes.get(node).map(|b| b.deadline)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_deadline_only_moves_earlier_for_a_new_node() {
        let cfg = Config::default();
        let mut t = Tracker::default();
        assert_eq!(t.next_deadline(), None);
        assert!(t.beat(&cfg, "a", 0, 10_000));
        let first = t.next_deadline().unwrap();
        assert_eq!(first, 10_000 + cfg.grace_ms as i64);
        // A steady beat of a known node moves its deadline later, never earlier.
        assert!(!t.beat(&cfg, "a", 5_000, 10_000));
        assert_eq!(t.next_deadline(), Some(first + 5_000));
        assert!(t.beat(&cfg, "b", 5_000, 1_000));
        assert_eq!(t.next_deadline(), Some(6_000 + cfg.grace_ms as i64));
        t.forget("b");
        assert_eq!(t.next_deadline(), Some(first + 5_000));
    }

    #[test]
    fn ttl_grows_with_the_cluster_and_carries_jitter() {
        let cfg = Config::default();
        assert_eq!(ttl_ms(&cfg, 10, 0.0), 10_000);
        assert_eq!(ttl_ms(&cfg, 10, 0.5), 15_000);
        // 1000 nodes at 50/s: 20 s base, as in Nomad.
        assert_eq!(ttl_ms(&cfg, 1000, 0.0), 20_000);
        assert!(ttl_ms(&cfg, 1000, 0.9999) < 40_000);
    }

    #[test]
    fn a_node_is_down_only_after_ttl_plus_grace() {
        let cfg = Config::default();
        let mut t = Tracker::default();
        t.beat(&cfg, "n1", 0, 10_000);
        assert!(t.expired(19_999).is_empty());
        assert!(t.expired(20_000).is_empty());
        assert_eq!(t.expired(20_001), vec!["n1"]);
        // A beat moves the deadline; hours of steady beats never expire.
        for minute in 0..600 {
            let now = minute * 10_000;
            t.beat(&cfg, "n1", now, 10_000);
            assert!(t.expired(now + 19_000).is_empty());
        }
        t.forget("n1");
        assert!(t.is_empty());
        // A disconnected node is looked at again when its lost_after ends.
        t.arm("n1", 3_600_000);
        assert_eq!(t.next_deadline(), Some(3_600_000));
        assert!(t.expired(3_600_000).is_empty());
    }

    #[test]
    fn a_new_leader_gives_every_node_the_failover_ttl() {
        let cfg = Config::default();
        let mut t = Tracker::default();
        // "c" heartbeated to this leader before it set up its tracker: that deadline stands.
        t.beat(&cfg, "c", 500, 1_000);
        t.reset(
            &cfg,
            ["a".to_string(), "b".to_string(), "c".to_string()],
            1_000,
        );
        assert_eq!(t.deadline("c"), Some(11_500));
        t.forget("c");
        assert!(t.expired(60_000).is_empty());
        assert_eq!(t.expired(61_001), vec!["a", "b"]);
        // "a" heartbeats at 50 s: its deadline is 50 + 10 + 10 s.
        t.beat(&cfg, "a", 50_000, 10_000);
        assert_eq!(t.expired(61_001), vec!["b"]);
        assert_eq!(t.deadline("a"), Some(70_000));
    }
}
