//! Raft between servers over gRPC (`yurt.internal.v1.RaftTransport`). Each call carries an
//! openraft request serialized as JSON; the reply is `Result<response, RaftError>` the same way.
//!
//! Every Raft call names the server it is for (`yurt-raft-target`: its Raft ID) and the
//! sender's cluster (`yurt-cluster-id`, once the cluster has an ID); a server with another ID
//! or of another cluster refuses it. A Raft configuration can outlive the servers it names:
//! when a dead member's address is reused (by a server of another cluster, or by the same
//! server restarted on an empty data dir, which gives it a new ID), the survivors' heartbeats
//! and elections must not reach it: a higher term would depose another cluster's leader, and
//! an answer from an empty log makes openraft's leader panic ("follower log reversion").

use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::raft_transport_server::RaftTransport;
use yurt_proto::internal::{
    GossipRequest, GossipResponse, RaftPayload, ReadIndexRequest, ReadIndexResponse,
};
use yurt_types::tls::Peer;

use super::{NodeId, Raft, TypeConfig};
use crate::cluster::{self, Cluster};
use crate::read::Reads;
use crate::write::Writer;

/// The metadata keys naming the sender's cluster and the receiver's Raft ID on Raft calls.
const CLUSTER_KEY: &str = "yurt-cluster-id";
const TARGET_KEY: &str = "yurt-raft-target";

/// Makes connections to other servers, by the address in their membership entry.
pub struct Network {
    pub cluster_name: cluster::ClusterName,
    pub dialer: yurt_types::tls::Dialer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            client: None,
            cluster_name: self.cluster_name.clone(),
            dialer: self.dialer.clone(),
        }
    }
}

pub struct Connection {
    target: NodeId,
    addr: String,
    client: Option<RaftTransportClient<Channel>>,
    cluster_name: cluster::ClusterName,
    dialer: yurt_types::tls::Dialer,
}

/// A Raft call meant for another server, or from a server of another cluster, refused.
fn check_peer<T>(
    req: &tonic::Request<T>,
    raft: &Raft,
    cluster: &Cluster,
) -> Result<(), tonic::Status> {
    let me = raft.metrics().borrow().id;
    let target = req
        .metadata()
        .get(TARGET_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if let Some(target) = target.filter(|t| *t != me) {
        return Err(tonic::Status::permission_denied(format!(
            "this address now belongs to Raft server {me}, not to {target}: the sender's Raft configuration names a server that is gone (its data dir was replaced, or another server took its address)"
        )));
    }
    let theirs = req
        .metadata()
        .get(CLUSTER_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ours = cluster.cluster_id();
    if theirs.is_empty() || ours.is_empty() || theirs == ours {
        return Ok(());
    }
    Err(tonic::Status::permission_denied(format!(
        "this server belongs to cluster {ours}, not to the sender's cluster {theirs}: its Raft configuration names an address that another cluster's server now uses"
    )))
}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: std::time::Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.client.is_none() {
            let endpoint = self
                .dialer
                .endpoint(&self.addr, Peer::Server)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            let channel = endpoint
                .connect_timeout(ttl)
                .connect()
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            self.client = Some(
                RaftTransportClient::new(channel)
                    .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(super::MAX_MESSAGE_BYTES),
            );
        }
        let client = self.client.as_mut().expect("connected above");
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut payload = tonic::Request::new(RaftPayload { data });
        let cluster_id = self.cluster_name.get();
        if let Ok(v) = cluster_id.parse() {
            payload.metadata_mut().insert(CLUSTER_KEY, v);
        }
        if let Ok(v) = self.target.to_string().parse() {
            payload.metadata_mut().insert(TARGET_KEY, v);
        }
        // openraft gives each call a deadline; a peer that does not answer in time is unreachable.
        let call = async {
            match rpc {
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {ttl:?}"
            ))),
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == tonic::Code::PermissionDenied {
                    tracing::warn!(peer = %self.addr, "{}", status.message());
                }
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
        };
        let res: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

/// The receiving side: hands requests from other servers to the local Raft.
pub struct RaftService {
    pub raft: Raft,
    pub writer: Writer,
    /// When this server last heard from a leader (for `agent-info`'s `last_contact`).
    pub last_contact: Arc<Mutex<Option<Instant>>>,
    pub cluster: Cluster,
    pub reads: Reads,
}

fn decode<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, tonic::Status> {
    serde_json::from_slice(&p.data)
        .map_err(|e| tonic::Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    serde_json::to_vec(v)
        .map(|data| tonic::Response::new(RaftPayload { data }))
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn gossip(
        &self,
        req: tonic::Request<GossipRequest>,
    ) -> Result<tonic::Response<GossipResponse>, tonic::Status> {
        let init = cluster::initialized(&self.raft);
        self.cluster
            .handle(req.into_inner(), init)
            .map(tonic::Response::new)
    }

    async fn read_index(
        &self,
        _req: tonic::Request<ReadIndexRequest>,
    ) -> Result<tonic::Response<ReadIndexResponse>, tonic::Status> {
        let index = self.reads.leader_read_index().await?;
        Ok(tonic::Response::new(ReadIndexResponse { index }))
    }

    async fn forward(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let result = self.writer.propose_local(req.into_inner().data).await?;
        encode(&result)
    }
}
