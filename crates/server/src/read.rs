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

#[derive(Clone)]
pub struct Reads {
    pub raft: Raft,
    pub state: StateHandle,
    /// How to reach the leader (and, for logs, client agents).
    pub dialer: yurt_types::tls::Dialer,
}

/// Whether the request allows a stale read.
pub fn stale<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().get(STALE_KEY).is_some_and(|v| v == "true")
}

impl Reads {
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

    /// Waits until a read here would be consistent (unless `stale`).
    pub async fn barrier(&self, stale: bool) -> Result<(), Status> {
        if stale {
            return Ok(());
        }
        let index = match self.raft.ensure_linearizable().await {
            Ok(log_id) => log_id.map_or(0, |l| l.index),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let addr = f.leader_node.map(|n| n.addr).ok_or_else(|| {
                    Status::unavailable("no cluster leader (use -stale to read this server's copy)")
                })?;
                let channel = self
                    .dialer
                    .endpoint(&addr, yurt_types::tls::Peer::Server)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
                    .map_err(|_| {
                        Status::unavailable(format!("cannot reach the leader at {addr}"))
                    })?;
                RaftTransportClient::new(channel)
                    .read_index(ReadIndexRequest {})
                    .await?
                    .into_inner()
                    .index
            }
            Err(e) => return Err(Status::unavailable(format!("no cluster leader: {e}"))),
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
