//! The `Operator` service: server members, Raft peers, force-leave and remove-peer.
//! Membership changes run on the leader; a follower passes them on to it.

use std::collections::BTreeSet;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use yurt_proto::v1::operator_client::OperatorClient;
use yurt_proto::v1::operator_server::Operator;
use yurt_proto::v1::*;

use yurt_core::internal::{command, RestoreState};
use yurt_types::acl::{Level, Need};

use crate::cluster::{self, Cluster};
use crate::raft::NodeId;
use crate::read::{on_behalf, stale, Reads};
use crate::write::{now_unix_ms, Writer};

#[derive(Clone)]
pub struct OperatorService {
    pub cluster: Cluster,
    pub reads: Reads,
    pub writer: Writer,
}

type Reply<T> = Result<Response<T>, Status>;

/// Metadata key marking a request one server passed on to the leader.
const FORWARDED: &str = "yurt-forwarded";

fn split_addr(addr: &str) -> (String, u32) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0)),
        None => (addr.to_string(), 0),
    }
}

impl OperatorService {
    async fn leader_client(&self) -> Result<OperatorClient<Channel>, Status> {
        let channel = crate::raft::dial_leader(&self.reads.raft, &self.reads.dialer).await?;
        Ok(OperatorClient::new(channel))
    }

    fn is_leader(&self) -> bool {
        crate::raft::is_leader(&self.reads.raft)
    }

    /// Removes another server from the Raft configuration. Leader only.
    async fn remove(&self, id: NodeId) -> Result<(), Status> {
        if id == self.reads.raft.metrics().borrow().id {
            return Err(Status::failed_precondition(
                "cannot remove the current leader: stop it (or let another server win an election) first",
            ));
        }
        crate::raft::remove_member(&self.reads.raft, id).await
    }
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn server_members(
        &self,
        req: Request<ServerMembersRequest>,
    ) -> Reply<ServerMembersResponse> {
        self.reads.authorize(&req, Need::Agent(Level::Read))?;
        let m = self.reads.raft.metrics().borrow().clone();
        let leader = m.current_leader;
        let mut members: Vec<ServerMemberInfo> = self
            .cluster
            .members(cluster::initialized(&self.reads.raft))
            .into_iter()
            .map(|(s, alive)| {
                let (address, port) = split_addr(&s.addr);
                ServerMemberInfo {
                    name: s.name.clone(),
                    address,
                    port,
                    status: cluster::status_of(alive, s.left).into(),
                    leader: leader == Some(s.id),
                    raft_version: s.raft_protocol.max(1).to_string(),
                    build: s.version.clone(),
                    datacenter: s.datacenter.clone(),
                    region: s.region.clone(),
                    id: s.id,
                }
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(ServerMembersResponse { members }))
    }

    async fn raft_peers(&self, req: Request<RaftPeersRequest>) -> Reply<RaftPeersResponse> {
        self.reads.authorize(&req, Need::Operator(Level::Read))?;
        let m = self.reads.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let names: std::collections::BTreeMap<NodeId, (String, u32)> = self
            .cluster
            .members(true)
            .into_iter()
            .map(|(s, _)| (s.id, (s.name, s.raft_protocol.max(1))))
            .collect();
        let mut peers: Vec<RaftPeer> = membership
            .nodes()
            .map(|(id, node)| RaftPeer {
                node: names
                    .get(id)
                    .map_or_else(|| "(unknown)".into(), |(n, _)| n.clone()),
                id: id.to_string(),
                address: node.addr.clone(),
                state: if m.current_leader == Some(*id) {
                    "leader"
                } else {
                    "follower"
                }
                .into(),
                voter: voters.contains(id),
                raft_protocol: names.get(id).map_or(1, |(_, p)| *p).to_string(),
            })
            .collect();
        peers.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(Response::new(RaftPeersResponse {
            peers,
            index: m.membership_config.log_id().map_or(0, |l| l.index),
        }))
    }

    async fn force_leave(&self, req: Request<ForceLeaveRequest>) -> Reply<ForceLeaveResponse> {
        self.reads.authorize(&req, Need::Agent(Level::Write))?;
        // The server the user asked judged liveness; the leader it forwards to trusts that.
        let forwarded = req.metadata().get(FORWARDED).is_some();
        let name = req.get_ref().name.clone();
        let target = self
            .cluster
            .members(true)
            .into_iter()
            .find(|(s, _)| s.name == name)
            .map(|(s, alive)| (s.id, alive));
        let Some((id, alive)) = target else {
            return Err(Status::not_found(format!(
                "no server named {name:?} (see `yurt server members`)"
            )));
        };
        if id == self.cluster.me().id {
            return Err(Status::failed_precondition(
                "a server cannot force itself to leave; stop it instead",
            ));
        }
        if alive && !forwarded {
            return Err(Status::failed_precondition(format!(
                "server {name:?} is alive: force-leave is for failed servers (stop it to make it leave)"
            )));
        }
        self.cluster.force_leave(&name);
        if self.is_leader() {
            match self.remove(id).await {
                // Not (or no longer) a Raft peer: marking it left was all there was to do.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                other => other?,
            }
        } else {
            let mut fwd = on_behalf(&req, ForceLeaveRequest { name });
            fwd.metadata_mut().insert(
                FORWARDED,
                tonic::metadata::MetadataValue::from_static("true"),
            );
            self.leader_client().await?.force_leave(fwd).await?;
        }
        Ok(Response::new(ForceLeaveResponse {}))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Reply<JoinResponse> {
        self.reads.authorize(&req, Need::Agent(Level::Write))?;
        let addrs: Vec<String> = req
            .get_ref()
            .addresses
            .iter()
            .map(|a| a.trim_start_matches("http://").to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(Status::invalid_argument("no address to join"));
        }
        self.cluster.join_later(&addrs);
        // Gossip runs twice a second: a server that answers is known within a few rounds.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let answered: Vec<&String> = addrs
                .iter()
                .filter(|a| self.cluster.answers_at(a) || **a == self.cluster.me().addr)
                .collect();
            if answered.len() == addrs.len() || tokio::time::Instant::now() >= deadline {
                let missing: Vec<&str> = addrs
                    .iter()
                    .filter(|a| !answered.contains(a))
                    .map(String::as_str)
                    .collect();
                let error = if missing.is_empty() {
                    String::new()
                } else {
                    format!("no server answered at {} within 5s", missing.join(", "))
                };
                return Ok(Response::new(JoinResponse {
                    num_joined: answered.len() as u32,
                    error,
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn remove_peer(&self, req: Request<RemovePeerRequest>) -> Reply<RemovePeerResponse> {
        self.reads.authorize(&req, Need::Operator(Level::Write))?;
        let peer = req.get_ref().peer.clone();
        if !self.is_leader() {
            self.leader_client()
                .await?
                .remove_peer(on_behalf(&req, RemovePeerRequest { peer }))
                .await?;
            return Ok(Response::new(RemovePeerResponse {}));
        }
        let membership = self
            .reads
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let id = membership
            .nodes()
            .find(|(id, node)| id.to_string() == peer || node.addr == peer)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                Status::not_found(format!("no Raft peer with ID or address {peer:?}"))
            })?;
        self.remove(id).await?;
        if let Some(node) = membership.get_node(&id) {
            self.cluster.force_leave(&node.addr);
        }
        Ok(Response::new(RemovePeerResponse {}))
    }

    async fn garbage_collect(
        &self,
        req: Request<GarbageCollectRequest>,
    ) -> Reply<GarbageCollectResponse> {
        self.reads.authorize(&req, Need::Management)?;
        if !self.is_leader() {
            return self
                .leader_client()
                .await?
                .garbage_collect(on_behalf(&req, GarbageCollectRequest {}))
                .await;
        }
        let now = crate::write::now_unix_ms();
        let (gc, [jobs, allocations, evaluations, nodes]) = self.reads.state.scan(|s| {
            let gc = yurt_core::gc::collect(s, now, yurt_core::gc::Thresholds::FORCE);
            let totals = yurt_core::gc::totals(s, &gc);
            (gc, totals)
        });
        let counts = GarbageCollectResponse {
            jobs: jobs as u32,
            allocations: allocations as u32,
            evaluations: evaluations as u32,
            nodes: nodes as u32,
        };
        if !yurt_core::gc::is_empty(&gc) {
            self.writer
                .apply(yurt_core::internal::command::Kind::Gc(gc))
                .await?;
        }
        Ok(Response::new(counts))
    }

    async fn snapshot_save(
        &self,
        req: Request<SnapshotSaveRequest>,
    ) -> Reply<SnapshotSaveResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.reads.barrier(stale(&req)).await?;
        let term = self.reads.raft.metrics().borrow().current_term;
        let (data, index) = self.reads.state.scan(|s| {
            (
                yurt_core::backup::encode(s, term, yurt_types::VERSION, now_unix_ms()),
                s.index,
            )
        });
        Ok(Response::new(SnapshotSaveResponse { data, index }))
    }

    async fn snapshot_restore(
        &self,
        req: Request<SnapshotRestoreRequest>,
    ) -> Reply<SnapshotRestoreResponse> {
        self.reads.authorize(&req, Need::Management)?;
        let data = req.into_inner().data;
        let (file, _) = yurt_core::backup::decode(&data)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let r = self
            .writer
            .apply(command::Kind::RestoreState(RestoreState {
                state: file.state,
            }))
            .await?;
        tracing::warn!(
            index = r.index,
            from_index = file.index,
            "state replaced by a restored snapshot"
        );
        Ok(Response::new(SnapshotRestoreResponse { index: r.index }))
    }

    async fn scheduler_get_configuration(
        &self,
        req: Request<SchedulerGetConfigurationRequest>,
    ) -> Reply<SchedulerConfiguration> {
        self.reads.authorize(&req, Need::Operator(Level::Read))?;
        self.reads.barrier(stale(&req)).await?;
        let config = self.reads.state.read(yurt_core::sched::scheduler_config);
        Ok(Response::new(config))
    }

    async fn scheduler_set_configuration(
        &self,
        req: Request<SchedulerSetConfigurationRequest>,
    ) -> Reply<SchedulerSetConfigurationResponse> {
        self.reads.authorize(&req, Need::Operator(Level::Write))?;
        let req = req.into_inner();
        if req.memory_oversubscription == "true" {
            yurt_core::features::check(
                &yurt_core::features::MEMORY_OVERSUBSCRIPTION,
                &self.cluster.gate_servers(),
            )
            .map_err(Status::failed_precondition)?;
        }
        let mut config = self
            .reads
            .state
            .read(|s| {
                yurt_core::sched::set_scheduler_config(
                    s,
                    &req.scheduler_algorithm,
                    &req.memory_oversubscription,
                )
            })
            .map_err(Status::invalid_argument)?;
        let applied = self
            .writer
            .apply(command::Kind::SetSchedulerConfig(
                yurt_core::internal::SetSchedulerConfig {
                    config: Some(config.clone()),
                },
            ))
            .await?;
        config.modify_index = applied.index;
        Ok(Response::new(SchedulerSetConfigurationResponse {
            config: Some(config),
            index: applied.index,
        }))
    }

    async fn upgrade_check(
        &self,
        req: Request<UpgradeCheckRequest>,
    ) -> Reply<UpgradeCheckResponse> {
        self.reads.authorize(&req, Need::Operator(Level::Read))?;
        if !crate::raft::is_leader(&self.reads.raft) {
            // Replication progress is known to the leader only.
            return self
                .leader_client()
                .await?
                .upgrade_check(on_behalf(&req, UpgradeCheckRequest {}))
                .await;
        }
        let m = self.reads.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = crate::raft::matched_indexes(&m);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let servers: Vec<yurt_core::upgrade::ServerView> = self
            .cluster
            .members(true)
            .into_iter()
            .map(|(s, alive)| yurt_core::upgrade::ServerView {
                status: cluster::status_of(alive, s.left).into(),
                voter: voters.contains(&s.id),
                leader: m.current_leader == Some(s.id),
                matched_index: if m.current_leader == Some(s.id) {
                    Some(last_log_index)
                } else {
                    matched.get(&s.id).copied()
                },
                name: s.name,
                version: s.version,
            })
            .collect();
        let clients = self.reads.state.read(|st| {
            st.nodes
                .values()
                .filter(|n| n.status != yurt_types::status::NODE_DOWN)
                .map(|n| (n.name.clone(), n.version.clone()))
                .collect()
        });
        let rows = servers
            .iter()
            .map(|s| UpgradeCheckServer {
                name: s.name.clone(),
                version: s.version.clone(),
                status: s.status.clone(),
                voter: s.voter,
                leader: s.leader,
                last_log_index: s.matched_index,
            })
            .collect();
        let gate_servers = self.cluster.gate_servers();
        let features = yurt_core::features::FEATURES
            .iter()
            .map(|f| {
                let held = yurt_core::features::check(f, &gate_servers).err();
                FeatureGate {
                    name: f.name.into(),
                    since: f.since.into(),
                    open: held.is_none(),
                    held_back_by: held.unwrap_or_default(),
                }
            })
            .collect();
        let report = yurt_core::upgrade::report(&yurt_core::upgrade::Input {
            servers,
            last_log_index,
            last_snapshot_index: m.snapshot.map_or(0, |s| s.index),
            clients,
        });
        Ok(Response::new(UpgradeCheckResponse {
            safe: report.safe(),
            checks: report
                .checks
                .into_iter()
                .map(|c| UpgradeCheckItem {
                    name: c.name.into(),
                    ok: c.ok,
                    detail: c.detail,
                })
                .collect(),
            next_server: report.next.unwrap_or_default(),
            next_reason: report.next_reason,
            servers: rows,
            features,
        }))
    }

    async fn raft_snapshot(
        &self,
        req: Request<RaftSnapshotRequest>,
    ) -> Reply<RaftSnapshotResponse> {
        self.reads.authorize(&req, Need::Operator(Level::Write))?;
        let raft = &self.reads.raft;
        let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        if applied == 0 {
            return Err(Status::failed_precondition(
                "this server has applied nothing yet: there is nothing to snapshot",
            ));
        }
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| Status::unavailable(format!("cannot take a snapshot: {e}")))?;
        let mut metrics = raft.metrics();
        let taken = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            metrics.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied)),
        )
        .await;
        match taken {
            Ok(Ok(m)) => Ok(Response::new(RaftSnapshotResponse {
                index: m.snapshot.map_or(0, |s| s.index),
            })),
            _ => Err(Status::deadline_exceeded(
                "the snapshot did not complete within 30s; see this server's log",
            )),
        }
    }
}
