//! The Yurt server agent: the I/O shell around `yurt-core`.
//!
//! - [`raft`]: openraft with the log in sled and the state machine over `yurt_core::state`;
//! - [`write`]: the one path that changes state (propose, or forward to the leader);
//! - [`rpc`]: the public gRPC services;
//! - [`read`]: consistent (or `-stale`) reads;
//! - [`cluster`]: server discovery, liveness and bootstrap by gossip;
//! - [`operator`]: server members, Raft peers, force-leave, remove-peer;
//! - [`leader`]: the leader's loops (evaluation → scheduler → plan; autopilot);
//! - [`leadership`]: runs them only while this server leads, and stops and joins them.
//! - [`allocs`]: the Allocs service, and the calls it forwards to client agents;
//! - [`acl`]: the ACL service (bootstrap, policies, tokens); calls are checked in [`read`];
//! - [`variables`]: the Variables and Keyring services; [`keyring`] holds the keys that seal
//!   variables (in each server's keystore, never in Raft) and fetches those it lacks;
//! - [`namespaces`]: the Namespaces service;
//! - [`job_actions`]: `job eval`, job stability, `job scale`, node evaluate;
//! - [`search`]: the Search service (prefix and fuzzy);
//! - [`nodes`]: the Nodes service (users' and client agents' calls);
//! - [`node_client`]: a node's host usage and garbage collection, asked of its client;
//! - [`scope`]: the namespace a call names, and which objects of it its token may see;
//! - [`guard`]: which certificate roles may make the calls only agents make;
//! - [`heavy`]: long request work (parsing, planning) off the async workers, one at a time.
//!
//! Architecture invariant: only this crate depends on openraft and sled (the client keeps its
//! own sled state, but never Raft).

pub mod acl;
pub mod allocs;
pub mod cluster;
pub mod events;
pub mod guard;
pub mod heartbeat;
pub mod heavy;
pub mod http;
pub mod job_actions;
pub mod keyring;
pub mod leader;
pub mod leadership;
pub mod lifecycle;
pub mod metrics;
pub mod namespaces;
pub mod node_client;
pub mod nodes;
pub mod operator;
pub mod raft;
pub mod read;
pub mod rpc;
pub mod scope;
pub mod search;
pub mod variables;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tonic::service::RoutesBuilder;
use yurt_proto::internal::raft_transport_server::RaftTransportServer;
use yurt_proto::v1::operator_server::OperatorServer;
use yurt_proto::v1::{
    allocs_server::AllocsServer, deployments_server::DeploymentsServer, evals_server::EvalsServer,
    jobs_server::JobsServer, nodes_server::NodesServer,
};

use raft::log_store::LogStore;
use raft::network::{Network, RaftService};
use raft::state_machine::{StateHandle, StateMachine};
use raft::{NodeId, Raft};
use write::Writer;

/// Everything a server agent needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// The server's name in `server members` and `agent-info`.
    pub name: String,
    /// The gRPC address other servers and clients reach this server at.
    pub advertise_addr: String,
    /// How many servers to wait for before bootstrapping Raft (1: bootstrap alone at once,
    /// unless `join` is set; 0: never bootstrap, only join).
    pub bootstrap_expect: u32,
    /// Addresses of servers to join (gRPC `host:port`).
    pub join: Vec<String>,
    pub datacenter: String,
    pub autopilot: leader::AutopilotSettings,
    /// Take a snapshot (and compact the log) after this many entries.
    pub snapshot_threshold: u64,
    /// Heartbeat TTLs, grace and the failover TTL.
    pub heartbeat: yurt_core::heartbeat::Config,
    /// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log instead of a snapshot install (Nomad's `raft_trailing_logs`).
    pub trailing_logs: u64,
    /// Scales Raft's timing (Nomad's `raft_multiplier`); see [`raft_timing`].
    pub raft_multiplier: u32,
    pub region: String,
    /// How long finished objects are kept, and how often the leader collects them.
    pub gc: yurt_core::gc::Thresholds,
    pub gc_interval: Duration,
    /// How this server dials other servers and clients (plaintext or mutual TLS).
    pub dialer: yurt_tls::Dialer,
    /// `acl { enabled = true }`: every API call needs a token that allows it.
    pub acl_enabled: bool,
    /// The address of this agent's HTTP API (host:port), told to clients; empty without one.
    pub http_addr: String,
}

/// Why a server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the Raft log in {path}: {source}")]
    Log {
        path: PathBuf,
        source: raft::log_store::OpenError,
    },
    #[error("{} is damaged: {why}", path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("cannot start Raft on the log and snapshots in {}: {why}; they may be damaged", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error(transparent)]
    State(#[from] raft::state_machine::LoadError),
    #[error("raft: {0}")]
    Raft(String),
    #[error(
        "bootstrap_expect = {0}: multi-server clusters are not supported by this build yet; use 1"
    )]
    MultiServer(u32),
}

/// A running server agent.
pub struct Server {
    pub raft: Raft,
    pub state: StateHandle,
    pub writer: Writer,
    pub cluster: cluster::Cluster,
    pub heartbeats: Arc<heartbeat::Heartbeats>,
    keyring: keyring::Keyring,
    config: ServerConfig,
    /// A read-only view of the Raft log store (for `agent-info`).
    log: LogStore,
    last_contact: Arc<Mutex<Option<Instant>>>,
    shutdown: watch::Sender<bool>,
    /// The task that runs the leader's loops while this server leads (joined at shutdown).
    leading: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A stable Raft node ID, kept in `<data_dir>/server/node-id` and recorded in the Raft log it
/// writes (`owner`). Made once, for a new server. A file that is missing or unreadable is
/// restored from the log's record, and said so; one that names another server than the log
/// does (a truncated ID is a valid number), or is lost beside a log of an older build that has
/// no record, is refused with one sentence: another ID would never be elected.
fn node_id(
    dir: &std::path::Path,
    had_log: bool,
    owner: Option<NodeId>,
) -> Result<NodeId, StartError> {
    let path = dir.join("node-id");
    let damaged = |why: String| StartError::Damaged {
        path: path.clone(),
        why,
    };
    let restore = |id: NodeId, why: &str| {
        tracing::warn!(path = %path.display(), id, "{why}; restored from the Raft log");
        std::fs::write(&path, id.to_string()).map_err(|e| damaged(e.to_string()))?;
        Ok(id)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match (text.trim().parse::<NodeId>(), owner) {
            (Ok(id), Some(o)) if id != o => Err(damaged(format!(
                "it holds node ID {id}, but the Raft log beside it was written by node {o}"
            ))),
            (Ok(id), _) => Ok(id),
            (Err(_), Some(o)) => restore(o, "node-id was unreadable"),
            (Err(_), None) => Err(damaged(format!(
                "it holds {}, not a node ID",
                yurt_types::limits::shown(text.trim())
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match owner {
            Some(o) => restore(o, "node-id was missing"),
            None if had_log => Err(damaged(
                "it is missing, and the Raft log beside it belongs to the ID it held".into(),
            )),
            None => {
                let id = uuid::Uuid::new_v4().as_u64_pair().0 >> 1;
                std::fs::write(&path, id.to_string()).map_err(|e| damaged(e.to_string()))?;
                Ok(id)
            }
        },
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// Raft's timing at a `raft_multiplier` (at least 1), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

/// A follower that hears nothing from its leader waits out the leader's lease (openraft sets it
/// to `election_max`) and then a random election timeout before it stands for election:
/// 125-150 ms at multiplier 1, so a dead leader is usually replaced within 200 ms (one more
/// election timeout when the first candidate's log is behind); a busy machine whose servers
/// stall for longer than that needs a larger multiplier.
pub fn raft_timing(multiplier: u32) -> RaftTiming {
    let m = u64::from(multiplier.max(1));
    RaftTiming {
        heartbeat_ms: 15 * m,
        election_min_ms: 50 * m,
        election_max_ms: 75 * m,
    }
}

impl Server {
    pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
        let dir = config.data_dir.join("server");
        let dir_err = |source| StartError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let log_dir = dir.join("raft").join("log");
        let had_log = log_dir.exists();
        let log = LogStore::open(&log_dir).map_err(|source| StartError::Log {
            path: log_dir.clone(),
            source,
        })?;
        let id = node_id(&dir, had_log, log.owner())?;
        log.set_owner(id).map_err(|e| StartError::Log {
            path: log_dir.clone(),
            source: e.into(),
        })?;
        let log_view = log.clone();
        let sm = StateMachine::open(&dir.join("raft").join("snapshots"))?;
        let state = sm.handle();
        let timing = raft_timing(config.raft_multiplier);
        let raft_config = openraft::Config {
            cluster_name: "yurt".into(),
            heartbeat_interval: timing.heartbeat_ms,
            election_timeout_min: timing.election_min_ms,
            election_timeout_max: timing.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: config.trailing_logs,
            // Snapshots travel in 1 MiB chunks, each with time to spare on a busy machine.
            snapshot_max_chunk_size: 1024 * 1024,
            // With entries of up to a writer batch each, this bounds one AppendEntries message
            // well below the transport's limit.
            max_payload_entries: 64,
            install_snapshot_timeout: 10_000,
            ..openraft::Config::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        let alone = config.bootstrap_expect == 1 && config.join.is_empty();
        // A server that bootstraps alone names its cluster from the start (the state takes the
        // name once it leads); see `cluster::ClusterName`.
        let founding_id = if alone {
            uuid::Uuid::new_v4().to_string()
        } else {
            String::new()
        };
        let cluster_name = cluster::ClusterName::new(state.clone(), founding_id);
        let network = Network::new(cluster_name.clone(), config.dialer.clone(), timing);
        // Raft reads its log and snapshot here: a failure is about what is in them.
        let raft = Raft::new(id, raft_config, network, log, sm)
            .await
            .map_err(|e| StartError::Unreadable {
                path: dir.join("raft"),
                why: e.to_string(),
            })?;
        if alone
            && !raft
                .is_initialized()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
        {
            let mut members = BTreeMap::new();
            members.insert(id, BasicNode::new(&config.advertise_addr));
            raft.initialize(members)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            tracing::info!(id, "bootstrapped a single-server cluster");
        }
        // Set by check-quorum while this server leads no majority.
        let (quorum_lost, quorum_lost_rx) = tokio::sync::watch::channel(false);
        let writer = Writer::new(
            raft.clone(),
            config.dialer.clone(),
            quorum_lost_rx,
            config.data_dir.clone(),
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let cluster = cluster::Cluster::new(
            yurt_proto::internal::ServerMember {
                id,
                name: config.name.clone(),
                addr: config.advertise_addr.clone(),
                version: yurt_types::version::build(),
                datacenter: config.datacenter.clone(),
                region: config.region.clone(),
                left: false,
                initialized: false,
                bootstrap_expect: config.bootstrap_expect,
                cluster_id: String::new(),
                raft_protocol: yurt_types::version::RAFT_PROTOCOL,
                http_addr: config.http_addr.clone(),
            },
            config.join.clone(),
            cluster_name,
            config.dialer.clone(),
        );
        // Counts the leaders this server has seen take over (`yurt.raft.leader_changes`).
        let mut raft_metrics = raft.server_metrics();
        tokio::spawn(async move {
            let mut last = None;
            while raft_metrics.changed().await.is_ok() {
                let leader = raft_metrics.borrow().current_leader;
                if leader.is_some() && leader != last {
                    metrics::metrics().incr("yurt.raft.leader_changes");
                }
                last = leader;
            }
        });
        tokio::spawn(cluster::run(
            cluster.clone(),
            raft.clone(),
            shutdown_rx.clone(),
        ));
        let keystore = dir.join("keystore");
        let keyring = keyring::Keyring::open(
            keystore.clone(),
            state.clone(),
            cluster.clone(),
            config.dialer.clone(),
        )
        .map_err(|source| StartError::DataDir {
            path: keystore,
            source,
        })?;
        tokio::spawn(keyring.clone().replicate(shutdown_rx.clone()));
        let heartbeats = heartbeat::Heartbeats::new(config.heartbeat);
        // The leader's loops, run by one task only while this server leads.
        let start_loops: leadership::StartLoops = {
            let leader = leader::Leader {
                state: state.clone(),
                writer: writer.clone(),
                raft: raft.clone(),
                cluster: cluster.clone(),
            };
            let heartbeats = heartbeats.clone();
            let (gc, autopilot) = ((config.gc, config.gc_interval), config.autopilot);
            Box::new(move |stop| {
                vec![
                    tokio::spawn(heartbeat::run(
                        heartbeats.clone(),
                        leader.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(leader::run_eval_loop(leader.clone(), stop.clone())),
                    tokio::spawn(leader::run_deployment_watcher(leader.clone(), stop.clone())),
                    tokio::spawn(leader::run_drainer(leader.clone(), stop.clone())),
                    tokio::spawn(leader::run_gc(leader.clone(), gc, stop.clone())),
                    tokio::spawn(leader::run_autopilot(leader.clone(), autopilot, stop)),
                ]
            })
        };
        tokio::spawn(leadership::check_quorum(
            raft.clone(),
            Duration::from_millis(timing.election_max_ms),
            quorum_lost,
            shutdown_rx.clone(),
        ));
        let leading = tokio::spawn(leadership::run(
            raft.clone(),
            start_loops,
            writer.quorum_lost(),
            shutdown_rx,
        ));
        Ok(Server {
            raft,
            state,
            writer,
            cluster,
            heartbeats,
            keyring,
            config,
            log: log_view,
            last_contact: Arc::new(Mutex::new(None)),
            shutdown,
            leading: Mutex::new(Some(leading)),
        })
    }

    /// The public API's handlers (also what the HTTP API calls).
    pub fn api(&self) -> rpc::Api {
        rpc::Api {
            writer: self.writer.clone(),
            reads: read::Reads {
                raft: self.raft.clone(),
                state: self.state.clone(),
                dialer: self.config.dialer.clone(),
                acl_enabled: self.config.acl_enabled,
            },
            heartbeats: self.heartbeats.clone(),
            cluster: self.cluster.clone(),
            keyring: self.keyring.clone(),
        }
    }

    /// Adds the server's gRPC services (public API and Raft transport) to an agent's router.
    pub fn add_services(&self, routes: &mut RoutesBuilder) {
        let api = self.api();
        let reads = api.reads.clone();
        routes
            .add_service(JobsServer::new(api.clone()))
            .add_service(EvalsServer::new(api.clone()))
            .add_service(yurt_proto::v1::events_server::EventsServer::new(
                api.clone(),
            ))
            .add_service(DeploymentsServer::new(api.clone()))
            .add_service(reflection())
            .add_service(NodesServer::new(api.clone()))
            .add_service(yurt_proto::v1::acl_server::AclServer::new(api.acl()))
            .add_service(yurt_proto::v1::variables_server::VariablesServer::new(
                api.variables(),
            ))
            .add_service(yurt_proto::v1::keyring_server::KeyringServer::new(
                api.variables(),
            ))
            .add_service(yurt_proto::v1::namespaces_server::NamespacesServer::new(
                api.namespaces(),
            ))
            .add_service(yurt_proto::v1::search_server::SearchServer::new(
                api.search(),
            ))
            .add_service(OperatorServer::new(api.operator()))
            .add_service(AllocsServer::new(api))
            .add_service(
                RaftTransportServer::new(RaftService {
                    raft: self.raft.clone(),
                    writer: self.writer.clone(),
                    last_contact: self.last_contact.clone(),
                    cluster: self.cluster.clone(),
                    reads,
                    keyring: self.keyring.clone(),
                })
                .max_decoding_message_size(raft::MAX_MESSAGE_BYTES),
            );
    }

    /// The `yurt` and `raft` sections of `agent-info`.
    pub fn info_sections(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let commit = self.log.committed_index().max(applied);
        let snap = self.state.last_snapshot();
        let last_log = self.log.last_log_id().ok().flatten();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let num_peers = if voters.contains(&m.id) {
            voters.len() - 1
        } else {
            0
        };
        let is_leader = m.state == ServerState::Leader;
        let last_contact = if is_leader {
            "0".to_string()
        } else {
            match *self.last_contact.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(t) => format!("{}ms", t.elapsed().as_millis()),
                None => "never".into(),
            }
        };
        // As leader, our own address: the configuration may hold an older one.
        let leader_addr = if is_leader {
            self.config.advertise_addr.clone()
        } else {
            raft::leader_addr(&self.raft).unwrap_or_default()
        };
        let mut raft = BTreeMap::new();
        for (k, v) in [
            ("applied_index", applied.to_string()),
            ("commit_index", commit.to_string()),
            ("fsm_pending", commit.saturating_sub(applied).to_string()),
            ("last_contact", last_contact),
            (
                "last_log_index",
                last_log.map_or(0, |l| l.index).to_string(),
            ),
            (
                "last_log_term",
                last_log.map_or(0, |l| l.leader_id.term).to_string(),
            ),
            (
                "last_snapshot_index",
                snap.map_or(0, |s| s.index).to_string(),
            ),
            (
                "last_snapshot_term",
                snap.map_or(0, |s| s.leader_id.term).to_string(),
            ),
            ("num_peers", num_peers.to_string()),
            ("state", format!("{:?}", m.state)),
            ("term", m.current_term.to_string()),
            ("protocol_version", "3".to_string()),
            ("id", m.id.to_string()),
        ] {
            raft.insert(k.to_string(), v);
        }
        let mut yurt = BTreeMap::new();
        for (k, v) in [
            ("server", "true".to_string()),
            ("leader", is_leader.to_string()),
            ("leader_addr", leader_addr),
            ("bootstrap", (self.config.bootstrap_expect == 1).to_string()),
            // How many regions this server knows, as Nomad counts them: its own.
            ("known_regions", "1".to_string()),
            ("region", self.config.region.clone()),
            ("name", self.config.name.clone()),
            ("cluster_id", self.state.read(|s| s.cluster_id.clone())),
        ] {
            yurt.insert(k.to_string(), v);
        }
        BTreeMap::from([("raft".to_string(), raft), ("yurt".to_string(), yurt)])
    }

    /// Leaves the cluster gracefully (`leave_on_terminate`): out of the Raft configuration,
    /// and `left` in `server members`. Bounded: a server that cannot reach the others gives up.
    pub async fn leave(&self) {
        let leave = cluster::leave(&self.cluster, &self.raft);
        if tokio::time::timeout(Duration::from_secs(5), leave)
            .await
            .is_err()
        {
            tracing::warn!("gave up leaving the cluster after 5s");
        }
    }

    /// Stops the leader's loops (joined, within a deadline) and Raft.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let leading = self
            .leading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = leading {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("the leader's loops did not stop within 10s");
            }
        }
        let _ = self.raft.shutdown().await;
    }
}

/// gRPC server reflection (v1), so generic gRPC tools discover the API.
fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(yurt_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptors built from proto/ are valid")
}

#[cfg(test)]
mod reflection_tests {
    /// The descriptors compiled from proto/ make a reflection service (no panic at start).
    #[test]
    fn the_reflection_service_builds() {
        let _ = super::reflection();
    }
}
