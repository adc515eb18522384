//! Raft wiring: openraft's type configuration, the sled log store, the state machine over
//! `yurt_core::state::State` with snapshot files, and the gRPC transport between servers.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type; helpers that feed
// them return it as well.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod space;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// The largest message servers accept from each other. gRPC's default (4 MiB) is smaller than
/// one AppendEntries can be (64 entries, each a batch of up to 1 MiB of commands, or a large
/// plan), and a message over the limit can never be delivered: replication would stall.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// What goes into one Raft log entry: a batch of encoded `yurt.internal.v1.Command`s, applied
/// in order (the writer groups concurrent writes so that many share one append and one flush).
/// Keeping the protobuf bytes (not a Rust enum) lets an older server recognise a command it
/// does not know. In JSON (log entries, Raft messages) each command is a base64 string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    #[serde(with = "base64_list")]
    pub commands: Vec<Vec<u8>>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.commands.iter().map(Vec::len).sum();
        write!(f, "{} command(s), {bytes} bytes", self.commands.len())
    }
}

mod base64_list {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(items.iter().map(|b| STANDARD.encode(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The state machine's answer to one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// The refusal, as a sentence for the user, when the command was not applied.
    pub error: Option<String>,
    pub index: u64,
    pub job_modify_index: u64,
    pub eval_id: String,
}

openraft::declare_raft_types!(
    /// Yurt's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Vec<ApplyResult>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// How long a request that finds no leader (an election under way) waits for one before it
/// is refused: Nomad's RPC hold timeout. A server paused past an election timeout wakes up,
/// calls an election, and the requests sent meanwhile would otherwise fail at once.
pub const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a request waiting for a leader looks again.
pub const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A connection to the current leader's gRPC endpoint (the public API and the Raft transport
/// share it), for the calls that only the leader may answer.
pub async fn dial_leader(
    raft: &Raft,
    dialer: &yurt_tls::Dialer,
) -> Result<tonic::transport::Channel, tonic::Status> {
    let addr = leader_addr(raft).ok_or_else(|| tonic::Status::unavailable("no cluster leader"))?;
    dialer
        .endpoint(&addr, yurt_tls::Peer::Server)
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .map_err(|_| tonic::Status::unavailable(format!("cannot reach the leader at {addr}")))
}

/// The current leader's address as the Raft configuration records it.
pub fn leader_addr(raft: &Raft) -> Option<String> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let leader = m.current_leader?;
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

/// Takes a server out of the Raft configuration, voter or learner. Leader only.
pub async fn remove_member(raft: &Raft, id: NodeId) -> Result<(), tonic::Status> {
    use openraft::ChangeMembers;
    use std::collections::BTreeSet;
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let change = if membership.voter_ids().any(|v| v == id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else if membership.get_node(&id).is_some() {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    } else {
        return Err(tonic::Status::not_found(format!(
            "no Raft peer with ID {id}"
        )));
    };
    raft.change_membership(change, false)
        .await
        .map(|_| ())
        .map_err(|e| {
            tonic::Status::unavailable(format!("cannot change the Raft configuration: {e}"))
        })
}

/// Whether this server is the leader right now. Read from openraft's server metrics, which
/// it updates before the full ones and which the leadership task follows: a leader loop it
/// started never sees this server as not yet leader.
pub fn is_leader(raft: &Raft) -> bool {
    leads(&raft.server_metrics().borrow())
}

/// Whether the server these metrics are of leads.
pub fn leads(m: &openraft::metrics::RaftServerMetrics<NodeId, openraft::BasicNode>) -> bool {
    m.current_leader == Some(m.id)
}

/// The highest log index known replicated to each follower (the leader's replication
/// progress; empty on a follower).
pub fn matched_indexes(
    m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
) -> std::collections::BTreeMap<NodeId, u64> {
    m.replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index)))
                .collect()
        })
        .unwrap_or_default()
}
pub type StorageError = openraft::StorageError<NodeId>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_carries_its_commands_as_base64_strings_and_round_trips() {
        let p = Proposal {
            commands: vec![vec![0, 1, 2, 255], Vec::new(), b"job".to_vec()],
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"commands":["AAEC/w==","","am9i"]}"#);
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Proposal>(r#"{"commands":["%%"]}"#).is_err());
        assert_eq!(p.to_string(), "3 command(s), 7 bytes");
    }
}
