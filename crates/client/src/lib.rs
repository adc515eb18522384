//! The Yurt client agent: registers its node, heartbeats, watches the allocations the servers
//! place on it, runs their tasks through the [`executor`], and reports their state back.
//!
//! Tasks outlive the agent: each runs under its own `yurt executor` in its own session, and the
//! agent keeps what it knows in sled (`<data_dir>/client/state`). A restarted agent reloads
//! that state and re-attaches to the tasks still running.
//!
//! Architecture invariant: this crate never depends on `yurt-core` or `yurt-server`; it talks
//! to the servers only through the public gRPC API.

mod alloc_fs;
pub mod cgroup;
pub mod checks;
mod client_fs;
pub mod driver;
pub mod executor;
pub mod fingerprint;
mod gc;
pub mod health;
pub mod host_stats;
pub mod identity;
pub mod isolate;
pub mod launcher;
pub mod logfiles;
mod memory;
pub mod restart;
mod runner;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::Code;
use yurt_proto::v1::client_fs_server::ClientFsServer;
use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::{HeartbeatRequest, Node, RegisterNodeRequest};
use yurt_types::status::*;

pub use runner::LocalAlloc;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub data_dir: PathBuf,
    /// gRPC addresses of the servers (`host:port`).
    pub servers: Vec<String>,
    pub name: Option<String>,
    pub datacenter: String,
    pub node_class: String,
    /// The node's labels (`${meta.KEY}` in constraints).
    pub meta: BTreeMap<String, String>,
    /// The gRPC address the servers reach this agent at (for logs).
    pub advertise_addr: String,
    /// The `yurt` binary, run as `yurt executor-launcher` to fork each task's executor (or as
    /// `yurt executor DIR` per task when it cannot be).
    pub executor_exe: PathBuf,
    /// How the client dials servers (plaintext or mutual TLS).
    pub dialer: yurt_tls::Dialer,
    /// How often the task supervisor looks at its tasks.
    pub tick: Duration,
    /// Terminal allocations are forgotten (state and alloc dir) once the client tracks more
    /// than this many allocations (`client { gc_max_allocs }`, Nomad's default 50).
    pub gc_max_allocs: usize,
    /// How often the client looks for allocations to forget (`client { gc_interval }`, 1m).
    pub gc_interval: Duration,
    /// What the task drivers may do (`plugin` blocks, `client { chroot_env, options }`).
    pub drivers: yurt_types::agentconfig::DriverConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use client data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open client state in {path}: {source}")]
    State { path: PathBuf, source: sled::Error },
    #[error("client state in {path} is unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("no servers given: use -servers host:port")]
    NoServers,
    #[error("bad server address {0:?}: {1}")]
    BadServer(String, String),
}

/// Where `meta` keeps the time of the last heartbeat a server answered (Unix ms, big-endian).
const LAST_HEARTBEAT_KEY: &[u8] = b"last_heartbeat_unix_ms";

/// How long a client waits for a server to answer a registration or a status report before it
/// tries the next server (a heartbeat gets a second; the allocation watch, a blocking query,
/// is made again when another call moves on).
pub(crate) const SERVER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The servers a client knows, used one at a time: a call that cannot reach the current one
/// moves on to the next, so a client keeps working while any server answers.
struct Servers {
    clients: Vec<NodesClient<Channel>>,
    current: AtomicU64,
    /// Told when the client moves on to another server: a call parked on the one it left
    /// (the allocation watch, a blocking query of up to 30 s) is made again on the next.
    moved: tokio::sync::Notify,
    /// The HTTP API of the server that last answered a registration or a heartbeat (empty
    /// until one said it): the client agent's HTTP API passes its calls on to it.
    http: Mutex<String>,
}

impl Servers {
    /// Notes the HTTP API a server's answer named (an older server names none).
    fn heard(&self, http: &str) {
        if !http.is_empty() {
            *self.http.lock().unwrap_or_else(|e| e.into_inner()) = http.to_string();
        }
    }

    fn get(&self) -> NodesClient<Channel> {
        let i = self.current.load(Ordering::Relaxed) as usize % self.clients.len();
        self.clients[i].clone()
    }

    /// Notes the outcome of a call: a transport failure moves on to the next server.
    fn check<T>(&self, r: Result<T, tonic::Status>) -> Result<T, tonic::Status> {
        if let Err(s) = &r {
            if matches!(
                s.code(),
                Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
            ) {
                self.current.fetch_add(1, Ordering::Relaxed);
                self.moved.notify_waiters();
            }
        }
        r
    }
}

/// A running client agent.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    node_id: String,
    dir: PathBuf,
    db: sled::Tree,
    allocs: Mutex<BTreeMap<String, LocalAlloc>>,
    /// The running check loops of allocations whose health is being decided.
    checkers: Mutex<BTreeMap<String, runner::Checkers>>,
    /// Wakes the supervisor at once (a task ended).
    wake: tokio::sync::Notify,
    /// One supervisor pass at a time: a pass starts executors after it lets go of `allocs`,
    /// and no other pass may see its tasks in between.
    tick_serial: tokio::sync::Mutex<()>,
    /// The task drivers and their fingerprints.
    drivers: driver::Drivers,
    /// The last CPU reading of each task, for `alloc status -stats`'s percent.
    samples: stats::Samples,
    /// The host's last CPU reading, for `/v1/client/stats`.
    host: host_stats::Sampler,
    servers: Servers,
    last_heartbeat: Mutex<Option<Instant>>,
    /// The client's own records (`meta`): its state's format, its last heartbeat answered.
    meta: sled::Tree,
    /// When a server last answered a heartbeat before this start (Unix ms), from `meta`: a
    /// client restarted while cut off still knows how long it has been without the servers.
    heard_before: Option<i64>,
    ttl_ms: AtomicU64,
    registered: watch::Sender<bool>,
    /// A driver's fingerprint changed: the node registers again with its new `Drivers`.
    reregister: AtomicBool,
    fingerprint_changed: tokio::sync::Notify,
    shutdown: watch::Sender<bool>,
}

/// A stable node ID, kept in `<data_dir>/client/node-id`.
fn node_id(dir: &std::path::Path) -> std::io::Result<String> {
    let path = dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, &id)?;
    Ok(id)
}

impl Client {
    pub async fn start(config: ClientConfig) -> Result<Client, StartError> {
        let dir = config.data_dir.join("client");
        let dir_err = |source| StartError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir.join("allocs")).map_err(dir_err)?;
        let id = node_id(&dir).map_err(dir_err)?;
        let state_path = dir.join("state");
        let sled_db = sled::Config::new()
            .path(&state_path)
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .map_err(|source| StartError::State {
                path: state_path.clone(),
                source,
            })?;
        let tree = |name: &str| {
            sled_db.open_tree(name).map_err(|source| StartError::State {
                path: state_path.clone(),
                source,
            })
        };
        let db = tree("allocs")?;
        let meta = tree("meta")?;
        runner::check_format(&meta).map_err(|message| StartError::Corrupt {
            path: state_path.clone(),
            message,
        })?;
        let heard_before = meta
            .get(LAST_HEARTBEAT_KEY)
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes);
        let allocs = runner::load(&db).map_err(|message| StartError::Corrupt {
            path: state_path.clone(),
            message,
        })?;
        // Every allocation directory was recorded before it was made: one without a record
        // means the state lost it (sled drops what it cannot read). Starting would run those
        // tasks a second time, so refuse and leave the running tasks alone.
        let unrecorded: Vec<String> = std::fs::read_dir(dir.join("allocs"))
            .map_err(dir_err)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|id| !allocs.contains_key(id))
            .collect();
        if let Some(first) = unrecorded.first() {
            return Err(StartError::Corrupt {
                path: state_path.clone(),
                message: format!(
                    "it has no record of {} allocation(s) found under {} (first: {first}); \
                     their tasks were left running. Stop them and move the client data dir \
                     aside to start afresh",
                    unrecorded.len(),
                    dir.join("allocs").display()
                ),
            });
        }
        if config.servers.is_empty() {
            return Err(StartError::NoServers);
        }
        // A connection per known server; calls go to one until it fails, then to the next.
        let endpoints = config
            .servers
            .iter()
            .map(|s| {
                config
                    .dialer
                    .endpoint(s, yurt_tls::Peer::Server)
                    .map(|e| {
                        e.connect_timeout(Duration::from_secs(2))
                            .timeout(Duration::from_secs(60))
                    })
                    .map_err(|e| StartError::BadServer(s.clone(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let servers = Servers {
            clients: endpoints
                .into_iter()
                .map(|e| NodesClient::new(e.connect_lazy()))
                .collect(),
            current: AtomicU64::new(0),
            moved: tokio::sync::Notify::new(),
            http: Mutex::new(String::new()),
        };
        let drivers = driver::Drivers::new(&config.drivers, &config.executor_exe, &id);
        drivers.refresh().await;
        for why in drivers.unusable() {
            tracing::warn!("task driver {why}: no task of it starts on this node");
        }
        tracing::info!(node_id = %id, restored = allocs.len(), "client starting");
        let client = Client {
            inner: Arc::new(Inner {
                config,
                node_id: id,
                dir,
                db,
                allocs: Mutex::new(allocs),
                checkers: Mutex::default(),
                wake: tokio::sync::Notify::new(),
                tick_serial: tokio::sync::Mutex::new(()),
                drivers,
                samples: stats::Samples::default(),
                host: host_stats::Sampler::default(),
                servers,
                last_heartbeat: Mutex::new(None),
                meta,
                heard_before,
                ttl_ms: AtomicU64::new(0),
                registered: watch::channel(false).0,
                reregister: AtomicBool::new(false),
                fingerprint_changed: tokio::sync::Notify::new(),
                shutdown: watch::channel(false).0,
            }),
        };
        tokio::spawn(client.clone().fingerprint_loop());
        tokio::spawn(client.clone().heartbeat_loop());
        tokio::spawn(client.clone().watch_loop());
        tokio::spawn(client.clone().supervise_loop());
        Ok(client)
    }

    /// The HTTP API of the server that last answered this client (host:port), once one said.
    pub fn server_http(&self) -> Option<String> {
        let http = self
            .inner
            .servers
            .http
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (!http.is_empty()).then(|| http.clone())
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The client's gRPC service (logs), to be served on the agent's listener.
    pub fn fs_service(&self) -> ClientFsServer<client_fs::FsService> {
        ClientFsServer::new(client_fs::FsService {
            client: self.clone(),
        })
    }

    /// Waits until the node is registered with the servers (bounded).
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.registered.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok();
        ok
    }

    /// The `client` section of `agent-info`.
    pub fn info_section(&self) -> BTreeMap<String, String> {
        let last = self
            .inner
            .last_heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| format!("{}ms", t.elapsed().as_millis()))
            .unwrap_or_else(|| "never".into());
        let n = self
            .inner
            .allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        BTreeMap::from([
            ("node_id".to_string(), self.inner.node_id.clone()),
            (
                "known_servers".to_string(),
                self.inner.config.servers.join(","),
            ),
            ("num_allocations".to_string(), n.to_string()),
            ("last_heartbeat".to_string(), last),
            (
                "heartbeat_ttl".to_string(),
                yurt_types::duration::format_ms(self.inner.ttl_ms.load(Ordering::Relaxed)),
            ),
        ])
    }

    /// Kills every task this client runs and removes what they left outside the data dir
    /// (containers): a `-dev` agent discarding its data dir takes its tasks with it.
    pub async fn kill_all_tasks(&self) {
        let mut left = Vec::new();
        {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for a in allocs.values() {
                for (name, t) in &a.tasks {
                    let driver = self.driver_of(a, name);
                    driver.stop(runner::handle(t), nix::sys::signal::Signal::SIGKILL);
                    left.extend(driver.destroy(runner::handle(t)));
                }
            }
        }
        futures_util::future::join_all(left).await;
    }

    /// Whether the caller of a `ClientFs` call (the servers, forwarding a user's call with
    /// its token) may do what it asks: the servers judge the token. Anyone who reaches this
    /// agent's port could send the call, so it is never taken on trust. A server of 0.1 (no
    /// ACLs, no such call) allows everything, as it did.
    pub(crate) async fn check_token<T>(
        &self,
        from: &tonic::Request<T>,
        alloc_id: &str,
        capability: &str,
    ) -> Result<(), tonic::Status> {
        // The capability is judged in the allocation's namespace.
        let namespace = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            allocs
                .get(alloc_id)
                .map(|a| a.alloc.namespace.clone())
                .unwrap_or_default()
        };
        let req = yurt_proto::v1::CheckTokenRequest {
            capability: capability.into(),
            namespace,
            node: String::new(),
        };
        self.ask_servers_of(from, req).await
    }

    /// As [`Client::check_token`], for the calls about the node itself: `node:read` (or
    /// `node:write`).
    pub(crate) async fn check_node_token<T>(
        &self,
        from: &tonic::Request<T>,
        write: bool,
    ) -> Result<(), tonic::Status> {
        let req = yurt_proto::v1::CheckTokenRequest {
            node: if write { "write" } else { "read" }.into(),
            ..Default::default()
        };
        self.ask_servers_of(from, req).await
    }

    /// Has the servers judge the caller's token for `check`.
    async fn ask_servers_of<T>(
        &self,
        from: &tonic::Request<T>,
        check: yurt_proto::v1::CheckTokenRequest,
    ) -> Result<(), tonic::Status> {
        let key = yurt_types::acl::TOKEN_KEY;
        let mut req = tonic::Request::new(check);
        if let Some(t) = from.metadata().get(key) {
            req.metadata_mut().insert(key, t.clone());
        }
        req.set_timeout(Duration::from_secs(5));
        let servers = &self.inner.servers;
        match servers.check(servers.get().check_token(req).await) {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::Unimplemented => Ok(()),
            Err(s) if s.code() == Code::PermissionDenied => Err(s),
            Err(s) => Err(tonic::Status::unavailable(format!(
                "cannot check the caller's token with a server: {}",
                s.message()
            ))),
        }
    }

    /// The host's usage now (`/v1/client/stats`).
    pub(crate) fn host_stats(&self) -> yurt_proto::v1::HostStats {
        self.inner.host.read(&self.inner.dir, runner::now_ms())
    }

    /// Stops the agent's loops. Tasks keep running: they belong to their executors.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    fn node(&self) -> Node {
        let mut fp = fingerprint::fingerprint();
        fp.attributes.extend(self.inner.drivers.attributes());
        let c = &self.inner.config;
        Node {
            id: self.inner.node_id.clone(),
            name: c.name.clone().unwrap_or(fp.hostname),
            datacenter: c.datacenter.clone(),
            node_class: c.node_class.clone(),
            meta: c.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            status: NODE_INIT.into(),
            scheduling_eligibility: String::new(),
            drain: false,
            attributes: fp.attributes,
            resources: Some(fp.resources),
            rpc_addr: c.advertise_addr.clone(),
            version: yurt_types::VERSION.into(),
            drivers: self.inner.drivers.found().into_iter().collect(),
            ..Node::default()
        }
    }

    async fn register(&self) -> Result<u64, tonic::Status> {
        let servers = &self.inner.servers;
        let mut server = servers.get();
        let call = server.register(RegisterNodeRequest {
            node: Some(self.node()),
        });
        let answer = match tokio::time::timeout(SERVER_CALL_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "no answer to the registration in time",
            )),
        };
        let r = servers.check(answer)?.into_inner();
        servers.heard(&r.server_http_addr);
        // Servers are upgraded before clients (0.1 servers did not say their version).
        let server = match r.server_version.as_str() {
            "" => "0.1.0",
            v => v,
        };
        yurt_types::version::check_client(server, yurt_types::VERSION)
            .map_err(tonic::Status::failed_precondition)?;
        Ok(r.heartbeat_ttl_ms)
    }

    /// Asks the drivers whose health can change again, every [`driver::docker::FINGERPRINT_PERIOD`];
    /// a change makes the node register again with its new `Drivers` (and nothing new is
    /// placed with a driver that became unhealthy). First, what the drivers left on the node
    /// that no task claims is removed.
    async fn fingerprint_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let dirs: Vec<PathBuf> = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            allocs
                .values()
                .flat_map(|a| a.tasks.values().map(|t| t.exec_dir.clone()))
                .collect()
        };
        self.inner.drivers.adopt(dirs).await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(driver::docker::FINGERPRINT_PERIOD) => {}
                _ = shutdown.changed() => return,
            }
            if self.inner.drivers.refresh().await {
                self.inner.reregister.store(true, Ordering::Relaxed);
                self.inner.fingerprint_changed.notify_one();
            }
        }
    }

    async fn heartbeat_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut registered = false;
        let mut failures = 0u32;
        loop {
            if self.inner.reregister.swap(false, Ordering::Relaxed) {
                registered = false;
            }
            let result = if registered {
                let servers = &self.inner.servers;
                let mut client = servers.get();
                let call = client.heartbeat(HeartbeatRequest {
                    node_id: self.inner.node_id.clone(),
                });
                // A heartbeat that cannot be answered within a second is a failed one.
                let r = match tokio::time::timeout(Duration::from_secs(1), call).await {
                    Ok(r) => r,
                    Err(_) => Err(tonic::Status::deadline_exceeded("heartbeat timed out")),
                };
                servers.check(r).map(|r| {
                    let r = r.into_inner();
                    servers.heard(&r.server_http_addr);
                    r.heartbeat_ttl_ms
                })
            } else {
                self.register().await
            };
            if result.is_ok() {
                failures = 0;
            }
            let wait = match result {
                Ok(ttl) => {
                    if !registered {
                        tracing::info!(node_id = %self.inner.node_id, "node registered");
                        // Start-up is over: what it touched of the binary need not stay.
                        tokio::task::spawn_blocking(memory::shed_clean_pages);
                    }
                    registered = true;
                    self.inner.registered.send_replace(true);
                    self.inner.ttl_ms.store(ttl, Ordering::Relaxed);
                    *self
                        .inner
                        .last_heartbeat
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    let at = runner::now_ms().to_be_bytes();
                    if let Err(e) = self.inner.meta.insert(LAST_HEARTBEAT_KEY, &at) {
                        tracing::warn!(error = %e, "cannot save the last heartbeat's time");
                    }
                    Duration::from_millis(ttl / 2).max(Duration::from_millis(100))
                }
                Err(s) if s.code() == Code::NotFound => {
                    registered = false;
                    Duration::from_millis(100)
                }
                Err(s) if s.code() == Code::FailedPrecondition => {
                    // Refused (e.g. this client is newer than the servers): said once in a
                    // while, retried in case the servers are upgraded meanwhile.
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(error = %s.message(), "a server refused this client");
                    }
                    Duration::from_secs(2)
                }
                Err(s) => {
                    // Each failure has moved on to the next server; back off once all were tried.
                    failures += 1;
                    let n = self.inner.servers.clients.len() as u32;
                    let backoff = Duration::from_millis(100) * 2u32.pow((failures / n).min(6));
                    tracing::warn!(error = %s.message(), retry_in = ?backoff, "cannot reach a server; trying the next");
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.fingerprint_changed.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
