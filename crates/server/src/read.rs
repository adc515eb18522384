//! Consistent reads. By default a read is answered only after this server has applied
//! everything the leader had committed when the read arrived (the leader confirms its
//! leadership with a quorum first: openraft's read index). A request carrying the
//! `yurt-stale` metadata key skips this and reads the local replica, as Nomad's `-stale`.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tonic::Status;
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::ReadIndexRequest;

use crate::raft::state_machine::StateHandle;
use crate::raft::Raft;

/// The metadata key a client sets to allow stale reads.
pub const STALE_KEY: &str = "yurt-stale";

/// How long a follower waits to catch up with the leader's read index.
const CATCH_UP: Duration = Duration::from_secs(5);

/// How long one ask for the read index may take (the leader's confirmation by a quorum, or a
/// follower's call to the leader) before it is asked again.
const ASK: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Reads {
    pub raft: Raft,
    pub state: StateHandle,
    /// How to reach the leader (and, for logs, client agents).
    pub dialer: yurt_tls::Dialer,
    /// Whether calls need an ACL token that allows them (`acl { enabled = true }`).
    pub acl_enabled: bool,
}

/// The metadata key (and HTTP header) carrying a caller's ACL token secret.
pub use yurt_types::acl::TOKEN_KEY;

/// The caller's token secret, if it sent one.
pub fn token<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.metadata()
        .get(TOKEN_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
}

/// A request this server makes on behalf of `from` (to the leader): the caller's token and
/// read mode go along, so the leader decides as this server did.
pub fn on_behalf<T, U>(from: &tonic::Request<T>, message: U) -> tonic::Request<U> {
    let mut req = tonic::Request::new(message);
    for key in [TOKEN_KEY, STALE_KEY, crate::scope::NAMESPACE_KEY] {
        if let Some(v) = from.metadata().get(key) {
            req.metadata_mut().insert(key, v.clone());
        }
    }
    req
}

/// Whether the request allows a stale read.
pub fn stale<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().get(STALE_KEY).is_some_and(|v| v == "true")
}

/// Why the read index is not known.
enum ReadIndex {
    /// No leader is known or it cannot confirm its leadership: an election may fix it.
    NoLeader(Status),
    Failed(Status),
}

impl Reads {
    /// The read index: this server's own if it leads, else the leader's.
    async fn read_index(&self) -> Result<u64, ReadIndex> {
        let asked = tokio::time::timeout(ASK, self.raft.ensure_linearizable()).await;
        let Ok(answer) = asked else {
            return Err(ReadIndex::NoLeader(Status::unavailable(
                "no cluster leader: leadership was not confirmed in time",
            )));
        };
        match answer {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let addr = f.leader_node.map(|n| n.addr).ok_or_else(|| {
                    ReadIndex::NoLeader(Status::unavailable(
                        "no cluster leader (use -stale to read this server's copy)",
                    ))
                })?;
                let channel = self
                    .dialer
                    .endpoint(&addr, yurt_tls::Peer::Server)
                    .map_err(|e| ReadIndex::Failed(Status::internal(e.to_string())))?
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
                    .map_err(|_| {
                        ReadIndex::NoLeader(Status::unavailable(format!(
                            "cannot reach the leader at {addr}"
                        )))
                    })?;
                // A leader that stops answering (paused, partitioned) is given up on in time.
                let mut leader = RaftTransportClient::new(channel);
                match tokio::time::timeout(ASK, leader.read_index(ReadIndexRequest {})).await {
                    Ok(Ok(r)) => Ok(r.into_inner().index),
                    Ok(Err(s)) if s.code() == tonic::Code::Unavailable => {
                        Err(ReadIndex::NoLeader(s))
                    }
                    Ok(Err(s)) => Err(ReadIndex::Failed(s)),
                    Err(_) => Err(ReadIndex::NoLeader(Status::unavailable(format!(
                        "the leader at {addr} did not answer in time"
                    )))),
                }
            }
            Err(e) => Err(ReadIndex::NoLeader(Status::unavailable(format!(
                "no cluster leader: {e}"
            )))),
        }
    }

    /// Refuses the call unless ACLs are off or the caller's token allows `need`; an unknown
    /// token or one short of `need` gets `PermissionDenied` and the call changes nothing.
    pub fn authorize<T>(
        &self,
        req: &tonic::Request<T>,
        need: yurt_types::acl::Need<'_>,
    ) -> Result<(), Status> {
        if !self.acl_enabled {
            return Ok(());
        }
        let acl = self
            .state
            .read(|s| s.acl_for(token(req)))
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        if acl.allows(need) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "Permission denied: this needs {need}"
            )))
        }
    }

    /// What the caller's token may do, for calls that filter what they show; `None` when ACLs
    /// are off (everything is shown). An unknown token is refused.
    pub fn acl_of<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<yurt_types::acl::Acl>, Status> {
        if !self.acl_enabled {
            return Ok(None);
        }
        self.state
            .read(|s| s.acl_for(token(req)))
            .map(Some)
            .map_err(|e| Status::permission_denied(e.to_string()))
    }

    /// The index a consistent read must see, as the leader knows it. Only on the leader.
    pub async fn leader_read_index(&self) -> Result<u64, Status> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(Status::unavailable("not the leader"))
            }
            Err(e) => Err(Status::unavailable(format!("no cluster leader: {e}"))),
        }
    }

    /// Waits until a read here would be consistent (unless `stale`). While no leader is known
    /// (an election), it waits for one, up to [`crate::raft::LEADER_WAIT`].
    pub async fn barrier(&self, stale: bool) -> Result<(), Status> {
        if stale {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + crate::raft::LEADER_WAIT;
        let index = loop {
            match self.read_index().await {
                Err(ReadIndex::NoLeader(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(crate::raft::LEADER_POLL).await;
                }
                Err(ReadIndex::NoLeader(s) | ReadIndex::Failed(s)) => return Err(s),
                Ok(index) => break index,
            }
        };
        let applied = self
            .state
            .wait_past(index.saturating_sub(1), CATCH_UP)
            .await;
        if applied < index {
            return Err(Status::unavailable(format!(
                "this server is behind the leader (applied {applied}, needs {index}); retry or use -stale"
            )));
        }
        Ok(())
    }
}
