//! Raft between servers over gRPC (`yurt.internal.v1.RaftTransport`). Each call carries an
//! openraft request serialized as JSON; the reply is `Result<response, RaftError>` the same way.
//! AppendEntries and InstallSnapshot, which carry the log and the snapshots, go as protobuf
//! instead (`AppendEntriesBinary`, with the entries as the log keeps them, and
//! `InstallSnapshotBinary`) to every server that takes them: a Yurt 0.1 server answers
//! UNIMPLEMENTED, and is sent JSON.
//!
//! Every Raft call names the server it is for (`yurt-raft-target`: its Raft ID) and the
//! sender's cluster (`yurt-cluster-id`, once the cluster has an ID); a server with another ID
//! or of another cluster refuses it. A Raft configuration can outlive the servers it names:
//! when a dead member's address is reused (by a server of another cluster, or by the same
//! server restarted on an empty data dir, which gives it a new ID), the survivors' heartbeats
//! and elections must not reach it: a higher term would depose another cluster's leader, and
//! an answer from an empty log makes openraft's leader panic ("follower log reversion").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, LogId, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::raft_transport_server::RaftTransport;
use yurt_proto::internal::{
    AppendEntriesBody, FetchRootKeyRequest, FetchRootKeyResponse, GossipRequest, GossipResponse,
    InstallSnapshotBody, LogPosition, RaftPayload, ReadIndexRequest, ReadIndexResponse,
};
use yurt_tls::Peer;

use super::log_store::{entry_from_proto, entry_to_proto};
use super::{NodeId, Raft, TypeConfig};
use crate::cluster::{self, Cluster};
use crate::read::Reads;
use crate::write::Writer;

/// The metadata keys naming the sender's cluster and the receiver's Raft ID on Raft calls.
const CLUSTER_KEY: &str = "yurt-cluster-id";
const TARGET_KEY: &str = "yurt-raft-target";

/// Makes connections to other servers, by the address in their membership entry.
pub struct Network {
    cluster_name: cluster::ClusterName,
    dialer: yurt_tls::Dialer,
    timing: crate::RaftTiming,
    /// One channel per server (by Raft ID and address), shared by every connection to it.
    channels: HashMap<(NodeId, String), Arc<ServerChannel>>,
}

impl Network {
    pub fn new(
        cluster_name: cluster::ClusterName,
        dialer: yurt_tls::Dialer,
        timing: crate::RaftTiming,
    ) -> Network {
        Network {
            cluster_name,
            dialer,
            timing,
            channels: HashMap::new(),
        }
    }
}

/// How long a connection to another server may take to open. openraft bounds every call
/// (an AppendEntries by the heartbeat interval), and a call it gives up on leaves the
/// connection opening in the channel's background, for the next call to use.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The channel to one server (it reconnects by itself), shared by the votes and every
/// replication session sent to it: a new leader replicates over the connection its votes
/// opened, instead of opening one under the first AppendEntries' deadline (the heartbeat).
struct ServerChannel {
    client: Result<RaftTransportClient<Channel>, String>,
    /// Whether the last call failed, so that the log says once when a server stops answering
    /// and once when it answers again (openraft retries every few milliseconds).
    unreachable: AtomicBool,
    /// Until when this server is sent AppendEntries and InstallSnapshot as JSON: it answered a
    /// binary call
    /// UNIMPLEMENTED (Yurt 0.1). Asked again after [`JSON_RECHECK`], since it may have been
    /// upgraded in place.
    json_until: Mutex<Option<Instant>>,
}

/// How long a server that does not take the binary AppendEntries is sent JSON before it is
/// asked again.
const JSON_RECHECK: Duration = Duration::from_secs(30);

impl ServerChannel {
    fn takes_binary(&self) -> bool {
        let until = self.json_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_none_or(|t| Instant::now() >= t)
    }

    /// Remembers that the server answered the binary call UNIMPLEMENTED; says so in the log
    /// the first time.
    fn send_json(&self, target: NodeId, addr: &str) {
        let mut until = self.json_until.lock().unwrap_or_else(|e| e.into_inner());
        if until.is_none() {
            tracing::info!(
                "server {target} at {addr} predates binary replication (Yurt 0.1): sending it JSON"
            );
        }
        *until = Some(Instant::now() + JSON_RECHECK);
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        let peer = self
            .channels
            .entry((target, node.addr.clone()))
            .or_insert_with(|| {
                let client = self
                    .dialer
                    .endpoint(&node.addr, Peer::Server)
                    .map(|e| {
                        RaftTransportClient::new(e.connect_timeout(CONNECT_TIMEOUT).connect_lazy())
                            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
                    })
                    .map_err(|e| e.to_string());
                Arc::new(ServerChannel {
                    client,
                    unreachable: AtomicBool::new(false),
                    json_until: Mutex::new(None),
                })
            })
            .clone();
        Connection {
            target,
            addr: node.addr.clone(),
            peer,
            cluster_name: self.cluster_name.clone(),
            timing: self.timing,
        }
    }
}

/// Pauses that double from the first up to the longest.
fn pauses((first, most): (Duration, Duration)) -> impl Iterator<Item = Duration> + Send {
    std::iter::successors(Some(first.min(most)), move |d| Some((*d * 2).min(most)))
}

/// The sending side to one server. A call that fails or times out never closes the channel:
/// opening a new connection on a busy machine can take longer than the next call's deadline.
pub struct Connection {
    target: NodeId,
    addr: String,
    peer: Arc<ServerChannel>,
    cluster_name: cluster::ClusterName,
    timing: crate::RaftTiming,
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

/// What a Raft call gives openraft: the other server's reply, or why there is none.
type Answer<Resp, E> = Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Connection {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftTransportClient<Channel>, RPCError<NodeId, BasicNode, E>> {
        self.peer
            .client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))
    }

    /// A request carrying the sender's cluster and the receiver's Raft ID.
    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        if let Ok(v) = self.cluster_name.get().parse() {
            req.metadata_mut().insert(CLUSTER_KEY, v);
        }
        if let Ok(v) = self.target.to_string().parse() {
            req.metadata_mut().insert(TARGET_KEY, v);
        }
        req
    }

    /// Sends one call with an openraft request as JSON; openraft puts a deadline on each (and
    /// drops the call when it passes).
    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, req: &Req) -> Answer<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.client()?;
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = self.request(RaftPayload { data });
        let reply = match rpc {
            Rpc::Append => client.append_entries(payload).await,
            Rpc::Vote => client.vote(payload).await,
            Rpc::Snapshot => client.install_snapshot(payload).await,
        };
        self.reply(reply)
    }

    /// The answer to a binary call; `None` when the server predates it (Yurt 0.1 answers
    /// UNIMPLEMENTED), and is then sent JSON for a while.
    fn binary_reply<Resp, E>(
        &self,
        reply: Result<tonic::Response<RaftPayload>, tonic::Status>,
    ) -> Option<Answer<Resp, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        match reply {
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                self.peer.send_json(self.target, &self.addr);
                None
            }
            reply => Some(self.reply(reply)),
        }
    }

    /// The openraft reply (JSON) of a call, or why there is none.
    fn reply<Resp, E>(
        &self,
        reply: Result<tonic::Response<RaftPayload>, tonic::Status>,
    ) -> Answer<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if status.code() == tonic::Code::PermissionDenied {
                    tracing::warn!(peer = %self.addr, "{}", status.message());
                } else if !self.peer.unreachable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "server {} at {} does not answer Raft calls ({}); retrying",
                        self.target,
                        self.addr,
                        status.message()
                    );
                }
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
        };
        if self.peer.unreachable.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "server {} at {} answers Raft calls again",
                self.target,
                self.addr
            );
        }
        let res: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn vote_of(term: u64, node_id: NodeId, committed: bool) -> Vote<NodeId> {
    if committed {
        Vote::new_committed(term, node_id)
    } else {
        Vote::new(term, node_id)
    }
}

/// An AppendEntries request with its entries as the log keeps them (protobuf), for
/// `AppendEntriesBinary`: no JSON, no base64 of every command, on every server.
fn append_body(
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Result<AppendEntriesBody, serde_json::Error> {
    let position = |l: &LogId<NodeId>| LogPosition {
        term: l.leader_id.term,
        leader_node_id: l.leader_id.node_id,
        index: l.index,
    };
    Ok(AppendEntriesBody {
        vote_term: rpc.vote.leader_id.term,
        vote_node_id: rpc.vote.leader_id.node_id,
        vote_committed: rpc.vote.committed,
        prev_log_id: rpc.prev_log_id.as_ref().map(position),
        leader_commit: rpc.leader_commit.as_ref().map(position),
        entries: rpc
            .entries
            .iter()
            .map(entry_to_proto)
            .collect::<Result<_, _>>()?,
    })
}

/// The openraft request an `AppendEntriesBinary` call carries; the error says what is wrong.
fn append_request(body: AppendEntriesBody) -> Result<AppendEntriesRequest<TypeConfig>, String> {
    let id = |p: LogPosition| LogId::new(CommittedLeaderId::new(p.term, p.leader_node_id), p.index);
    Ok(AppendEntriesRequest {
        vote: vote_of(body.vote_term, body.vote_node_id, body.vote_committed),
        prev_log_id: body.prev_log_id.map(id),
        leader_commit: body.leader_commit.map(id),
        entries: body
            .entries
            .into_iter()
            .map(entry_from_proto)
            .collect::<Result<_, _>>()?,
    })
}

/// A chunk of a snapshot with its bytes as bytes, for `InstallSnapshotBinary` (JSON writes
/// each byte as a number: three to four times the snapshot, to write and to parse).
fn snapshot_body(
    rpc: &InstallSnapshotRequest<TypeConfig>,
) -> Result<InstallSnapshotBody, serde_json::Error> {
    Ok(InstallSnapshotBody {
        vote_term: rpc.vote.leader_id.term,
        vote_node_id: rpc.vote.leader_id.node_id,
        vote_committed: rpc.vote.committed,
        meta_json: serde_json::to_string(&rpc.meta)?,
        offset: rpc.offset,
        data: rpc.data.clone(),
        done: rpc.done,
    })
}

/// The openraft request an `InstallSnapshotBinary` call carries; the error says what is wrong.
fn snapshot_request(
    body: InstallSnapshotBody,
) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    Ok(InstallSnapshotRequest {
        vote: vote_of(body.vote_term, body.vote_node_id, body.vote_committed),
        meta: serde_json::from_str(&body.meta_json).map_err(|e| format!("snapshot meta: {e}"))?,
        offset: body.offset,
        data: body.data,
        done: body.done,
    })
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if self.peer.takes_binary() {
            let body = append_body(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let reply = self
                .client()?
                .append_entries_binary(self.request(body))
                .await;
            if let Some(answer) = self.binary_reply(reply) {
                return answer;
            }
        }
        self.call(Rpc::Append, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        if self.peer.takes_binary() {
            let body = snapshot_body(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let reply = self
                .client()?
                .install_snapshot_binary(self.request(body))
                .await;
            if let Some(answer) = self.binary_reply(reply) {
                return answer;
            }
        }
        self.call(Rpc::Snapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc).await
    }

    /// After a call finds the server unreachable, replication to it pauses, doubling from the
    /// first pause up to the longest (twice the heartbeat, then the shortest election timeout).
    /// openraft's own pause, 500 ms every time, made one failed call on a busy machine cost
    /// half a second without replication, long enough for the follower to stand for election;
    /// and a restarted server heard from its leader only after its own election timer had run
    /// out, so that every restart deposed the leader.
    fn backoff(&self) -> Backoff {
        Backoff::new(pauses((
            Duration::from_millis(self.timing.heartbeat_ms * 2),
            Duration::from_millis(self.timing.election_min_ms),
        )))
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
    pub keyring: crate::keyring::Keyring,
}

impl RaftService {
    async fn append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // Handed to Raft in a task of its own, so that it is taken even when the leader stops
        // waiting for the answer (after one heartbeat interval): a busy follower that missed
        // every deadline would otherwise hear nothing, and stand for election.
        let raft = self.raft.clone();
        let reply = tokio::spawn(async move { raft.append_entries(rpc).await })
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        encode(&reply)
    }

    async fn install(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        encode(&self.raft.install_snapshot(rpc).await)
    }
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
        self.append(rpc).await
    }

    async fn append_entries_binary(
        &self,
        req: tonic::Request<AppendEntriesBody>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let rpc = append_request(req.into_inner())
            .map_err(|e| tonic::Status::invalid_argument(format!("bad AppendEntries: {e}")))?;
        self.append(rpc).await
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
        self.install(rpc).await
    }

    async fn install_snapshot_binary(
        &self,
        req: tonic::Request<InstallSnapshotBody>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let rpc = snapshot_request(req.into_inner())
            .map_err(|e| tonic::Status::invalid_argument(format!("bad InstallSnapshot: {e}")))?;
        self.install(rpc).await
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

    async fn fetch_root_key(
        &self,
        req: tonic::Request<FetchRootKeyRequest>,
    ) -> Result<tonic::Response<FetchRootKeyResponse>, tonic::Status> {
        check_peer(&req, &self.raft, &self.cluster)?;
        let id = &req.get_ref().key_id;
        let meta = self.reads.state.read(|s| s.root_keys.get(id).cloned());
        match (meta, self.keyring.material(id)) {
            (Some(meta), Some(key)) => Ok(tonic::Response::new(FetchRootKeyResponse {
                meta: Some(meta),
                key,
            })),
            _ => Err(tonic::Status::not_found(format!(
                "this server does not have key {id}"
            ))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{EntryPayload, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    fn id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    #[test]
    fn appends_and_snapshots_survive_the_binary_encoding_as_they_do_json() {
        let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:4647"))]);
        let entries = vec![
            openraft::Entry {
                log_id: id(3, 1, 7),
                payload: EntryPayload::Blank,
            },
            openraft::Entry {
                log_id: id(3, 1, 8),
                payload: EntryPayload::Normal(super::super::Proposal {
                    commands: vec![vec![0, 1, 255], Vec::new(), b"job".to_vec()],
                }),
            },
            openraft::Entry {
                log_id: id(3, 1, 9),
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1])],
                    nodes,
                )),
            },
        ];
        for (vote, prev, commit, entries) in [
            (
                Vote::new_committed(3, 1),
                Some(id(2, 2, 6)),
                Some(id(3, 1, 5)),
                entries,
            ),
            (Vote::new(4, 2), None, None, Vec::new()),
        ] {
            let rpc = AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: prev,
                entries,
                leader_commit: commit,
            };
            let back = append_request(append_body(&rpc).unwrap()).unwrap();
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&rpc).unwrap()
            );
        }
        let snapshot = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: openraft::SnapshotMeta {
                last_log_id: Some(id(3, 1, 9)),
                last_membership: openraft::StoredMembership::new(
                    Some(id(3, 1, 9)),
                    Membership::new(vec![BTreeSet::from([1])], ()),
                ),
                snapshot_id: "3-9".into(),
            },
            offset: 1 << 20,
            data: (0..=255).collect(),
            done: true,
        };
        let back = snapshot_request(snapshot_body(&snapshot).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&snapshot).unwrap()
        );
        let bad = InstallSnapshotBody {
            meta_json: "{".into(),
            ..Default::default()
        };
        assert!(snapshot_request(bad)
            .unwrap_err()
            .starts_with("snapshot meta: "));
        let bad = AppendEntriesBody {
            entries: vec![yurt_proto::internal::LogEntry::default()],
            ..Default::default()
        };
        assert_eq!(append_request(bad).unwrap_err(), "no payload");
    }

    #[test]
    fn replication_pauses_double_from_the_first_up_to_the_longest() {
        let ms = Duration::from_millis;
        let got: Vec<_> = pauses((ms(30), ms(100))).take(5).collect();
        assert_eq!(got, [ms(30), ms(60), ms(100), ms(100), ms(100)]);
        // A first pause longer than the longest is cut to it.
        assert_eq!(pauses((ms(300), ms(100))).next(), Some(ms(100)));
    }
}
