//! Autopilot: the leader's decisions about Raft membership, as a pure function of what it knows
//! about the servers, the Raft configuration and the time.
//!
//! - A live server that is not in the configuration joins as a non-voter (learner), if it may:
//!   a server that is already part of a Raft cluster joins only a cluster of the same ID.
//! - A learner becomes a voter once it has been alive for the stabilization time and has
//!   caught up with the leader's log.
//! - A server that left (gracefully or by `force-leave`) is removed.
//! - A voter silent for longer than the dead-server threshold is removed, but only while the
//!   voters still alive keep a quorum of the smaller configuration.
//! - A member whose address changed (restarted on another port) gets its address updated.
//!
//! At most one change per call: Raft membership changes are applied one at a time.

use std::collections::{BTreeMap, BTreeSet};

/// What the leader knows of one server from gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    /// When the current stretch of liveness began (Unix ms); `None` while failed.
    pub alive_since_ms: Option<i64>,
    /// Last direct contact (Unix ms).
    pub last_contact_ms: i64,
    pub left: bool,
    /// Whether the server may be added: it has never been in a Raft cluster, or its cluster is
    /// this one (a server that left and came back).
    pub may_join: bool,
}

/// The Raft side: the current configuration and replication progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftView {
    pub leader: u64,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    /// Address of each node in the configuration.
    pub addrs: BTreeMap<u64, String>,
    /// Highest log index known replicated to each follower.
    pub matched: BTreeMap<u64, u64>,
    pub last_log_index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long a new server must be healthy before it may vote.
    pub stabilization_ms: i64,
    /// How long a voter may be silent before it is removed as dead (0: never).
    pub dead_server_ms: i64,
    /// How far behind the leader's log a learner may be and still be promoted.
    pub max_trailing_logs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    AddLearner { id: u64, addr: String },
    Promote { id: u64 },
    Remove { id: u64, why: &'static str },
    SetAddr { id: u64, addr: String },
}

pub fn decide(members: &[Member], raft: &RaftView, now_ms: i64, cfg: &Config) -> Option<Action> {
    let in_config = |id: u64| raft.voters.contains(&id) || raft.learners.contains(&id);
    let alive = |m: &Member| m.alive_since_ms.is_some() && !m.left;

    // Removals first: a left server must not count towards quorum.
    for m in members {
        if m.left && in_config(m.id) && m.id != raft.leader {
            return Some(Action::Remove {
                id: m.id,
                why: "left",
            });
        }
    }
    for m in members {
        if alive(m) && in_config(m.id) && raft.addrs.get(&m.id).is_some_and(|a| *a != m.addr) {
            return Some(Action::SetAddr {
                id: m.id,
                addr: m.addr.clone(),
            });
        }
    }
    for m in members {
        if alive(m) && !in_config(m.id) && m.may_join {
            return Some(Action::AddLearner {
                id: m.id,
                addr: m.addr.clone(),
            });
        }
    }
    for m in members {
        let Some(since) = m.alive_since_ms else {
            continue;
        };
        if m.left || !raft.learners.contains(&m.id) || now_ms - since < cfg.stabilization_ms {
            continue;
        }
        let matched = raft.matched.get(&m.id).copied().unwrap_or(0);
        if matched + cfg.max_trailing_logs >= raft.last_log_index {
            return Some(Action::Promote { id: m.id });
        }
    }
    if cfg.dead_server_ms > 0 {
        let by_id: BTreeMap<u64, &Member> = members.iter().map(|m| (m.id, m)).collect();
        let live_voters = raft
            .voters
            .iter()
            .filter(|v| **v == raft.leader || by_id.get(v).is_some_and(|m| alive(m)))
            .count();
        for v in &raft.voters {
            if *v == raft.leader {
                continue;
            }
            // Only a server this leader has seen and then lost counts as dead: one it has not
            // heard from yet (say, just after an election) may be perfectly healthy.
            let dead = by_id.get(v).is_some_and(|m| {
                m.alive_since_ms.is_none()
                    && m.last_contact_ms > 0
                    && now_ms - m.last_contact_ms > cfg.dead_server_ms
            });
            // After removing it, the live voters must still be a majority of the rest.
            let remaining = raft.voters.len() - 1;
            if dead && live_voters > remaining / 2 {
                return Some(Action::Remove {
                    id: *v,
                    why: "dead",
                });
            }
        }
    }
    None
}

/// How soon to look again at a learner that is stable but has not caught up with the log
/// (replication progress is not news the loop is woken for).
pub const CATCH_UP_LOOK_MS: i64 = 250;

/// When [`decide`] may next answer differently with nothing else changing: a learner's
/// stabilization time ends, a silent voter passes the dead-server threshold, or a stable
/// learner may have caught up. `None`: only a change of members or configuration can.
pub fn next_look(members: &[Member], raft: &RaftView, now_ms: i64, cfg: &Config) -> Option<i64> {
    let mut next: Option<i64> = None;
    let mut at = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
    for m in members {
        match m.alive_since_ms {
            Some(since) if !m.left && raft.learners.contains(&m.id) => {
                let stable_at = since + cfg.stabilization_ms;
                at(if stable_at > now_ms {
                    stable_at
                } else {
                    now_ms + CATCH_UP_LOOK_MS
                });
            }
            None if cfg.dead_server_ms > 0
                && m.last_contact_ms > 0
                && m.id != raft.leader
                && raft.voters.contains(&m.id) =>
            {
                at((m.last_contact_ms + cfg.dead_server_ms + 1).max(now_ms));
            }
            _ => {}
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: Config = Config {
        stabilization_ms: 10_000,
        dead_server_ms: 30_000,
        max_trailing_logs: 100,
    };

    fn member(id: u64, alive_since: Option<i64>, last_contact: i64) -> Member {
        Member {
            id,
            addr: format!("10.0.0.{id}:4647"),
            alive_since_ms: alive_since,
            last_contact_ms: last_contact,
            left: false,
            may_join: true,
        }
    }

    fn raft(voters: &[u64], learners: &[u64]) -> RaftView {
        let ids = voters.iter().chain(learners);
        RaftView {
            leader: 1,
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addrs: ids.map(|i| (*i, format!("10.0.0.{i}:4647"))).collect(),
            matched: BTreeMap::new(),
            last_log_index: 500,
        }
    }

    #[test]
    fn the_next_look_is_when_a_decision_can_change_with_time_alone() {
        let members = vec![
            member(1, Some(0), 0),
            member(2, Some(0), 0),
            member(3, None, 40_000),
            member(4, Some(50_000), 50_000),
        ];
        // A steady cluster: nothing to look at until something changes.
        assert_eq!(next_look(&members[..2], &raft(&[1, 2], &[]), 9, &CFG), None);
        // Voter 3 went silent at 40 s; learner 4 is stable at 60 s.
        let mut r = raft(&[1, 2, 3], &[4]);
        let next = next_look(&members, &r, 50_000, &CFG).unwrap();
        assert_eq!(next, 60_000);
        r.matched.insert(4, 450);
        assert_eq!(decide(&members, &r, next - 1, &CFG), None);
        assert_eq!(
            decide(&members, &r, next, &CFG),
            Some(Action::Promote { id: 4 })
        );
        // Once 4 votes, the next look is when 3 counts as dead, and it is removed then.
        let r = raft(&[1, 2, 3, 4], &[]);
        let next = next_look(&members, &r, 60_000, &CFG).unwrap();
        assert_eq!(next, 70_001);
        assert_eq!(decide(&members, &r, next - 1, &CFG), None);
        assert!(matches!(
            decide(&members, &r, next, &CFG),
            Some(Action::Remove { id: 3, .. })
        ));
        // A stable learner that lags is looked at again soon.
        let mut r = raft(&[1, 2], &[4]);
        r.matched.insert(4, 10);
        assert_eq!(
            next_look(&members, &r, 70_000, &CFG),
            Some(70_000 + CATCH_UP_LOOK_MS)
        );
    }

    #[test]
    fn a_server_already_in_another_cluster_is_never_added() {
        let mut stray = member(4, Some(0), 0);
        stray.may_join = false;
        let members = vec![member(1, Some(0), 0), member(2, Some(0), 0), stray];
        assert_eq!(decide(&members, &raft(&[1, 2], &[]), 50_000, &CFG), None);
    }

    #[test]
    fn a_new_server_joins_as_learner_then_votes_after_stabilization() {
        let members = vec![
            member(1, Some(0), 0),
            member(2, Some(0), 0),
            member(4, Some(50_000), 50_000),
        ];
        let r = raft(&[1, 2], &[]);
        assert_eq!(
            decide(&members, &r, 50_000, &CFG),
            Some(Action::AddLearner {
                id: 4,
                addr: "10.0.0.4:4647".into()
            })
        );
        let mut r = raft(&[1, 2], &[4]);
        r.matched.insert(4, 450);
        // Not stable long enough yet.
        assert_eq!(decide(&members, &r, 55_000, &CFG), None);
        assert_eq!(
            decide(&members, &r, 60_000, &CFG),
            Some(Action::Promote { id: 4 })
        );
        // Too far behind: wait for it to catch up.
        r.matched.insert(4, 300);
        assert_eq!(decide(&members, &r, 90_000, &CFG), None);
    }

    #[test]
    fn dead_voters_are_removed_only_while_quorum_holds() {
        // 1 (leader), 2 alive, 3 dead for long: removing 3 leaves 2 of 2 alive.
        let members = vec![
            member(1, Some(0), 100_000),
            member(2, Some(0), 100_000),
            member(3, None, 10_000),
        ];
        let r = raft(&[1, 2, 3], &[]);
        assert_eq!(
            decide(&members, &r, 100_000, &CFG),
            Some(Action::Remove { id: 3, why: "dead" })
        );
        // Not dead long enough.
        assert_eq!(decide(&members, &r, 35_000, &CFG), None);
        // 5 voters, 3 dead: only 2 alive, which is not a majority of the 4 that would remain.
        let members = vec![
            member(1, Some(0), 100_000),
            member(2, Some(0), 100_000),
            member(3, None, 1),
            member(4, None, 1),
            member(5, None, 1),
        ];
        let r = raft(&[1, 2, 3, 4, 5], &[]);
        assert_eq!(decide(&members, &r, 100_000, &CFG), None);
        // A voter this leader never heard from (or does not know) is not presumed dead.
        let members = vec![
            member(1, Some(0), 100_000),
            member(2, Some(0), 100_000),
            member(3, None, 0),
        ];
        assert_eq!(
            decide(&members, &raft(&[1, 2, 3], &[]), 100_000, &CFG),
            None
        );
        assert_eq!(
            decide(&members[..2], &raft(&[1, 2, 3], &[]), 100_000, &CFG),
            None
        );
        // Cleanup disabled.
        let off = Config {
            dead_server_ms: 0,
            ..CFG
        };
        let members = vec![
            member(1, Some(0), 0),
            member(2, Some(0), 0),
            member(3, None, 0),
        ];
        assert_eq!(
            decide(&members, &raft(&[1, 2, 3], &[]), 100_000, &off),
            None
        );
    }

    #[test]
    fn left_servers_are_removed_and_moved_servers_get_their_new_address() {
        let mut gone = member(3, None, 0);
        gone.left = true;
        let members = vec![member(1, Some(0), 0), member(2, Some(0), 0), gone];
        assert_eq!(
            decide(&members, &raft(&[1, 2, 3], &[]), 1_000, &CFG),
            Some(Action::Remove { id: 3, why: "left" })
        );
        let mut moved = member(2, Some(0), 0);
        moved.addr = "10.0.0.2:5000".into();
        let members = vec![member(1, Some(0), 0), moved];
        assert_eq!(
            decide(&members, &raft(&[1, 2], &[]), 1_000, &CFG),
            Some(Action::SetAddr {
                id: 2,
                addr: "10.0.0.2:5000".into()
            })
        );
    }
}
