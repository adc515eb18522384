//! `yurt operator upgrade-check` (pure): whether a rolling upgrade may take down one server
//! now, and which one should go next. Nomad has no such command; its upgrade guide asks the
//! operator to check these things by hand between steps.

use yurt_types::version::newer;

/// How many log entries a follower may trail the leader by and still count as caught up.
pub const MAX_LAG: u64 = 64;

/// A server as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub name: String,
    pub version: String,
    /// alive | failed | left
    pub status: String,
    pub voter: bool,
    pub leader: bool,
    /// The last log index the leader knows it has (the leader's own for itself).
    pub matched_index: Option<u64>,
}

/// What the check reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub servers: Vec<ServerView>,
    pub last_log_index: u64,
    /// The leader's last Raft snapshot (0: none yet).
    pub last_snapshot_index: u64,
    /// Client nodes and their versions.
    pub clients: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
    /// The server to upgrade next, and why that one.
    pub next: Option<String>,
    pub next_reason: String,
}

impl Report {
    /// Whether a server may be taken down for its upgrade now.
    pub fn safe(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

fn check(name: &'static str, problems: Vec<String>, fine: String) -> Check {
    Check {
        name,
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            fine
        } else {
            problems.join("; ")
        },
    }
}

pub fn report(input: &Input) -> Report {
    let present: Vec<&ServerView> = input
        .servers
        .iter()
        .filter(|s| s.status != "left")
        .collect();
    let mut checks = Vec::new();

    let down: Vec<String> = present
        .iter()
        .filter(|s| s.status != "alive")
        .map(|s| format!("{} is {}", s.name, s.status))
        .collect();
    checks.push(check(
        "servers alive",
        down,
        format!("all {} servers are alive", present.len()),
    ));

    let non_voters: Vec<String> = present
        .iter()
        .filter(|s| !s.voter)
        .map(|s| format!("{} is not a voter yet", s.name))
        .collect();
    checks.push(check(
        "voters",
        non_voters,
        "every server is a voter".into(),
    ));

    let lagging: Vec<String> = present
        .iter()
        .filter(|s| s.status == "alive")
        .filter_map(|s| {
            let at = s.matched_index.unwrap_or(0);
            let behind = input.last_log_index.saturating_sub(at);
            (behind > MAX_LAG).then(|| format!("{} is {behind} entries behind", s.name))
        })
        .collect();
    checks.push(check(
        "caught up",
        lagging,
        format!(
            "every server is within {MAX_LAG} entries of the leader's index {}",
            input.last_log_index
        ),
    ));

    let voters = present.iter().filter(|s| s.voter).count();
    let alive_voters = present
        .iter()
        .filter(|s| s.voter && s.status == "alive")
        .count();
    let quorum = voters / 2 + 1;
    let tolerance = if alive_voters > quorum {
        vec![]
    } else {
        vec![format!(
            "{alive_voters} of {voters} voters are alive and a quorum is {quorum}: taking one down would stop the cluster"
        )]
    };
    checks.push(check(
        "quorum without one server",
        tolerance,
        format!("{alive_voters} voters alive, quorum {quorum}: one may go down"),
    ));

    let snapshot = if input.last_snapshot_index == 0 {
        vec!["no Raft snapshot yet: take one with `yurt operator raft snapshot` (and a backup with `yurt operator snapshot save FILE`)".to_string()]
    } else {
        vec![]
    };
    checks.push(check(
        "snapshot",
        snapshot,
        format!("last Raft snapshot at index {}", input.last_snapshot_index),
    ));

    let oldest = present
        .iter()
        .map(|s| s.version.as_str())
        .min_by(|a, b| {
            if newer(a, b) {
                std::cmp::Ordering::Greater
            } else if newer(b, a) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .unwrap_or_default()
        .to_string();
    let ahead: Vec<String> = input
        .clients
        .iter()
        .filter(|(_, v)| newer(v, &oldest))
        .map(|(n, v)| format!("client {n} runs {v}, newer than server version {oldest}"))
        .collect();
    checks.push(check(
        "client versions",
        ahead,
        format!("no client is newer than the oldest server ({oldest})"),
    ));

    // Next: a follower still on the oldest version, the leader last.
    let newest = present
        .iter()
        .map(|s| s.version.as_str())
        .fold(oldest.clone(), |acc, v| {
            if newer(v, &acc) {
                v.to_string()
            } else {
                acc
            }
        });
    let mut candidates: Vec<&&ServerView> = present
        .iter()
        .filter(|s| s.version == oldest || !newer(&newest, &oldest))
        .collect();
    candidates.sort_by_key(|s| (s.leader, s.name.clone()));
    let (next, next_reason) = match candidates.first() {
        Some(s) if s.leader && newer(&newest, &oldest) => (
            Some(s.name.clone()),
            format!("the leader, last: every other server already runs {newest}"),
        ),
        Some(s) if s.leader => (
            Some(s.name.clone()),
            "the leader (the only server)".to_string(),
        ),
        Some(s) if newer(&newest, &oldest) => (
            Some(s.name.clone()),
            format!("a follower still on {oldest}; the leader goes last"),
        ),
        Some(s) => (
            Some(s.name.clone()),
            "a follower; the leader goes last".to_string(),
        ),
        None => (None, "no servers".into()),
    };
    Report {
        checks,
        next,
        next_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, version: &str, leader: bool, matched: u64) -> ServerView {
        ServerView {
            name: name.into(),
            version: version.into(),
            status: "alive".into(),
            voter: true,
            leader,
            matched_index: Some(matched),
        }
    }

    fn healthy() -> Input {
        Input {
            servers: vec![
                server("s0", "0.1.0", true, 100),
                server("s1", "0.1.0", false, 100),
                server("s2", "0.1.0", false, 99),
            ],
            last_log_index: 100,
            last_snapshot_index: 50,
            clients: vec![("c0".into(), "0.1.0".into())],
        }
    }

    #[test]
    fn a_healthy_cluster_upgrades_followers_first_and_the_leader_last() {
        let r = report(&healthy());
        assert!(r.safe(), "{r:?}");
        assert_eq!(r.next.as_deref(), Some("s1"));
        let mut i = healthy();
        i.servers[1].version = "0.2.0".into();
        let r = report(&i);
        assert_eq!(r.next.as_deref(), Some("s2"));
        assert_eq!(
            r.next_reason,
            "a follower still on 0.1.0; the leader goes last"
        );
        i.servers[2].version = "0.2.0".into();
        let r = report(&i);
        assert_eq!(r.next.as_deref(), Some("s0"));
        assert_eq!(
            r.next_reason,
            "the leader, last: every other server already runs 0.2.0"
        );
    }

    #[test]
    fn each_unsafe_condition_is_named() {
        let mut i = healthy();
        i.servers[2].status = "failed".into();
        i.servers[1].matched_index = Some(10);
        i.last_snapshot_index = 0;
        i.clients.push(("c9".into(), "0.3.0".into()));
        let r = report(&i);
        assert!(!r.safe());
        let failed: Vec<(&str, &str)> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name, c.detail.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                ("servers alive", "s2 is failed"),
                ("caught up", "s1 is 90 entries behind"),
                (
                    "quorum without one server",
                    "2 of 3 voters are alive and a quorum is 2: taking one down would stop the cluster"
                ),
                (
                    "snapshot",
                    "no Raft snapshot yet: take one with `yurt operator raft snapshot` (and a backup with `yurt operator snapshot save FILE`)"
                ),
                ("client versions", "client c9 runs 0.3.0, newer than server version 0.1.0"),
            ]
        );
        // A left server does not count; a learner is not safe to upgrade around.
        let mut i = healthy();
        i.servers[2].status = "left".into();
        i.servers[1].voter = false;
        let r = report(&i);
        let failed: Vec<&str> = r.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        assert_eq!(failed, ["voters", "quorum without one server"]);
    }
}
