//! Versions, and the rules for which agents of different versions work together (pure).
//!
//! Every agent knows its build version (the crate's semver, plus the git commit it was built
//! from when known) and the Raft protocol it speaks. Where agents meet they check each other:
//! - servers form one cluster only within one minor version of each other (N and N-1), so a
//!   rolling upgrade moves one minor version at a time;
//! - a client may not be newer than the server it talks to (servers are upgraded first);
//! - servers speak the same Raft protocol.
//!
//! New Raft commands and fields are gated separately, by the oldest server in the cluster
//! (`yurt_core::features`).

use semver::Version;

/// The Raft protocol this build speaks. Servers that do not advertise one speak 1.
pub const RAFT_PROTOCOL: u32 = 1;

/// The build: the version, and the commit when the build knew it (`0.2.0 (abc1234)`).
pub fn build() -> String {
    match option_env!("YURT_GIT_COMMIT") {
        Some(c) if !c.is_empty() => format!("{} ({c})", crate::VERSION),
        _ => crate::VERSION.to_string(),
    }
}

/// Reads a version as agents advertise it (`0.2.0`, or a build string `0.2.0 (abc1234)`).
pub fn parse(text: &str) -> Result<Version, String> {
    let v = text.split_whitespace().next().unwrap_or_default();
    Version::parse(v).map_err(|_| format!("{text:?} is not a version (major.minor.patch)"))
}

/// Whether a server of version `theirs` (named `who`) may be in one cluster with this one.
pub fn check_server(ours: &str, who: &str, theirs: &str) -> Result<(), String> {
    let (a, b) = (
        parse(ours)?,
        parse(theirs).map_err(|e| format!("server {who:?}: {e}"))?,
    );
    let minors_apart = (a.minor as i64 - b.minor as i64).abs();
    if a.major != b.major || minors_apart > 1 {
        return Err(format!(
            "server {who:?} runs Yurt {theirs} and this server Yurt {ours}: servers must be within one minor version of each other; upgrade one minor version at a time"
        ));
    }
    Ok(())
}

/// Whether a client of version `client` may use a server of version `server`.
pub fn check_client(server: &str, client: &str) -> Result<(), String> {
    parse(server)?;
    parse(client).map_err(|e| format!("client version: {e}"))?;
    if newer(client, server) {
        return Err(format!(
            "client runs Yurt {client}, newer than server Yurt {server}: upgrade the servers before the clients"
        ));
    }
    Ok(())
}

/// Whether a server speaking Raft protocol `theirs` (0: an older build, protocol 1) may join.
pub fn check_raft_protocol(who: &str, theirs: u32) -> Result<(), String> {
    let theirs = theirs.max(1);
    if theirs != RAFT_PROTOCOL {
        return Err(format!(
            "server {who:?} speaks Raft protocol {theirs} and this server {RAFT_PROTOCOL}: run every server with a build that speaks Raft protocol {RAFT_PROTOCOL}, or upgrade all of them to protocol {theirs}"
        ));
    }
    Ok(())
}

/// major.minor.patch, what versions are compared by (pre-release and build tags aside).
fn triple(v: &str) -> Option<(u64, u64, u64)> {
    parse(v).ok().map(|v| (v.major, v.minor, v.patch))
}

/// Whether `a` is a newer version than `b` (false when either cannot be read).
pub fn newer(a: &str, b: &str) -> bool {
    matches!((triple(a), triple(b)), (Some(a), Some(b)) if a > b)
}

/// Whether `v` is at least `min` (an unreadable `v` is not).
pub fn at_least(v: &str, min: &str) -> bool {
    matches!((triple(v), triple(min)), (Some(v), Some(m)) if v >= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_within_one_minor_version_work_together() {
        assert!(check_server("0.2.0", "s1", "0.1.7").is_ok());
        assert!(check_server("0.2.0", "s1", "0.3.0 (abc1234)").is_ok());
        assert_eq!(
            check_server("0.3.1", "s1", "0.1.0").unwrap_err(),
            "server \"s1\" runs Yurt 0.1.0 and this server Yurt 0.3.1: servers must be within one minor version of each other; upgrade one minor version at a time"
        );
        assert!(check_server("1.0.0", "s1", "0.9.0").is_err());
        assert_eq!(
            check_server("0.2.0", "s1", "banana").unwrap_err(),
            "server \"s1\": \"banana\" is not a version (major.minor.patch)"
        );
    }

    #[test]
    fn clients_may_not_be_newer_than_servers() {
        assert!(check_client("0.2.0", "0.1.0").is_ok());
        assert!(check_client("0.2.0", "0.2.0").is_ok());
        assert_eq!(
            check_client("0.2.0", "0.2.1").unwrap_err(),
            "client runs Yurt 0.2.1, newer than server Yurt 0.2.0: upgrade the servers before the clients"
        );
    }

    #[test]
    fn raft_protocols_must_match_and_builds_read_as_versions() {
        assert!(check_raft_protocol("s1", 0).is_ok());
        assert!(check_raft_protocol("s1", 1).is_ok());
        assert!(check_raft_protocol("s1", 2)
            .unwrap_err()
            .contains("speaks Raft protocol 2 and this server 1"));
        assert!(at_least("0.2.0 (abc1234)", "0.2.0"));
        assert!(!at_least("0.1.9", "0.2.0"));
        assert!(!at_least("", "0.2.0"));
        assert_eq!(parse(&build()).unwrap().to_string(), crate::VERSION);
    }
}
