//! The one path by which cluster state changes: encode a command, propose it to Raft, and
//! forward it to the leader when this server is not the leader.

use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tonic::transport::Channel;
use yurt_core::internal::{command, Command};
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::RaftPayload;

use crate::raft::{ApplyResult, NodeId, Proposal, Raft};

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The state machine refused the command (e.g. a `-check-index` mismatch).
    #[error("{0}")]
    Refused(String),
    #[error("no cluster leader")]
    NoLeader,
    #[error("raft: {0}")]
    Raft(String),
}

impl From<WriteError> for tonic::Status {
    fn from(e: WriteError) -> tonic::Status {
        match e {
            WriteError::Refused(m) => tonic::Status::failed_precondition(m),
            WriteError::NoLeader => tonic::Status::unavailable("no cluster leader"),
            WriteError::Raft(m) => tonic::Status::unavailable(m),
        }
    }
}

/// The leader's wall clock in Unix milliseconds: the only clock read on the write path.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Writer {
    raft: Raft,
}

impl Writer {
    pub fn new(raft: Raft) -> Writer {
        Writer { raft }
    }

    /// Applies a command of the given kind, stamped with the current time.
    pub async fn apply(&self, kind: command::Kind) -> Result<ApplyResult, WriteError> {
        self.submit(Command {
            now_unix_ms: now_unix_ms(),
            ignore_if_unknown: false,
            kind: Some(kind),
        })
        .await
    }

    /// Applies a complete command, forwarding it to the leader if needed.
    pub async fn submit(&self, cmd: Command) -> Result<ApplyResult, WriteError> {
        let proposal = Proposal {
            command: cmd.encode_to_vec(),
        };
        match self.raft.client_write(proposal.clone()).await {
            Ok(r) => into_result(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) => forward(f.leader_id, &node.addr, proposal).await,
                None => Err(WriteError::NoLeader),
            },
            Err(e) => Err(WriteError::Raft(e.to_string())),
        }
    }

    /// Proposes on this server only (used when another server forwarded the write here).
    pub async fn propose_local(&self, proposal: Proposal) -> Result<ApplyResult, tonic::Status> {
        match self.raft.client_write(proposal).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(tonic::Status::unavailable("not the leader"))
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }
    }
}

fn into_result(r: ApplyResult) -> Result<ApplyResult, WriteError> {
    match &r.error {
        Some(e) => Err(WriteError::Refused(e.clone())),
        None => Ok(r),
    }
}

async fn forward(
    leader: Option<NodeId>,
    addr: &str,
    proposal: Proposal,
) -> Result<ApplyResult, WriteError> {
    tracing::debug!(?leader, addr, "forwarding write to leader");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| WriteError::Raft(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .map_err(|_| WriteError::NoLeader)?;
    let reply = RaftTransportClient::new(channel)
        .forward(RaftPayload {
            data: proposal.command,
        })
        .await
        .map_err(|s| WriteError::Raft(s.message().to_string()))?;
    let result: ApplyResult = serde_json::from_slice(&reply.into_inner().data)
        .map_err(|e| WriteError::Raft(e.to_string()))?;
    into_result(result)
}
