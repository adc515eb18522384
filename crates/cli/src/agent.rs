//! `yurt agent`: runs a server, a client, or both (`-dev`) in this process.
//!
//! The agent binds its listeners first (port 0 picks a free port), then writes the addresses
//! it bound to `<data_dir>/agent-addrs.json` (temp file + rename) and prints them, so scripts
//! and tests can find an agent started on ephemeral ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use yurt_client::{Client, ClientConfig};
use yurt_proto::v1::agent_server::{Agent, AgentServer};
use yurt_proto::v1::{AgentInfoRequest, AgentInfoResponse, InfoSection};
use yurt_server::{Server, ServerConfig};
use yurt_types::agentconfig::{self, AgentConfig};

use crate::cmd::{CliError, CmdResult};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Server and client in one process on a throwaway data dir, single-server Raft.
    #[arg(long)]
    dev: bool,
    /// Run a server (Raft member, scheduler, API).
    #[arg(long)]
    server: bool,
    /// Run a client (runs allocations).
    #[arg(long)]
    client: bool,
    /// An agent configuration file (HCL); repeat to layer several, later ones win.
    #[arg(long)]
    config: Vec<PathBuf>,
    /// Where the agent keeps its state. Required unless -dev.
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Address to bind the APIs to [default: 127.0.0.1].
    #[arg(long)]
    bind: Option<String>,
    /// gRPC API port, `ports.rpc` in a config file; 0 picks a free one [default: 4647].
    #[arg(long = "grpc-port")]
    grpc_port: Option<u16>,
    /// HTTP/JSON API port; 0 picks a free one [default: 4646].
    #[arg(long = "http-port")]
    http_port: Option<u16>,
    /// Servers a client connects to (host:port, comma separated).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Servers to wait for before bootstrapping Raft; 1 with no -join bootstraps alone [default: 1].
    #[arg(long = "bootstrap-expect")]
    bootstrap_expect: Option<u32>,
    /// Servers to join (gRPC host:port, or a host alone for the -grpc-port; repeat or comma
    /// separate). Retried until reached.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// How long a new server must be healthy before it becomes a voter [default: 10s].
    #[arg(long = "server-stabilization-time", value_parser = parse_duration)]
    server_stabilization_time: Option<Duration>,
    /// How long a server may be unreachable before autopilot removes it; 0s: never [default: 1m].
    #[arg(long = "dead-server-threshold", value_parser = parse_duration)]
    dead_server_threshold: Option<Duration>,
    /// This agent's name [default: the hostname].
    #[arg(long)]
    node: Option<String>,
    /// Datacenter of the agent [default: dc1].
    #[arg(long)]
    dc: Option<String>,
    /// Node class of the client node.
    #[arg(long = "node-class")]
    node_class: Option<String>,
    /// A label of the client node, read by constraints as `${meta.KEY}` (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Region of the servers [default: global].
    #[arg(long)]
    region: Option<String>,
    /// On SIGTERM or SIGINT, leave the server cluster (out of Raft, `left` in members).
    #[arg(long = "leave-on-terminate")]
    leave_on_terminate: bool,
    /// Snapshot the state and compact the Raft log after this many entries [default: 8192].
    #[arg(long = "raft-snapshot-threshold")]
    raft_snapshot_threshold: Option<u64>,
    /// Raft log entries kept behind a snapshot [default: 10240].
    #[arg(long = "raft-trailing-logs")]
    raft_trailing_logs: Option<u64>,
    /// Scales Raft's heartbeat and election timeouts (1-10): 1 fails over fastest (a leader
    /// silent for about 200 ms is replaced), larger values tolerate slower machines [default: 1].
    #[arg(long = "raft-multiplier")]
    raft_multiplier: Option<u32>,
    /// Time past a client's heartbeat TTL before its node is down [default: 10s].
    #[arg(long = "heartbeat-grace", value_parser = parse_duration)]
    heartbeat_grace: Option<Duration>,
    /// The smallest heartbeat TTL handed to clients [default: 10s].
    #[arg(long = "min-heartbeat-ttl", value_parser = parse_duration)]
    min_heartbeat_ttl: Option<Duration>,
    /// Heartbeats per second the leader aims for at most; TTLs grow with the node count [default: 50].
    #[arg(long = "max-heartbeats-per-second")]
    max_heartbeats_per_second: Option<u64>,
    /// Require ACL tokens on the servers' APIs (`acl { enabled = true }`).
    #[arg(long = "acl-enabled")]
    acl_enabled: bool,
    /// The TTL every node gets when a server becomes leader [default: 1m].
    #[arg(long = "failover-heartbeat-ttl", value_parser = parse_duration)]
    failover_heartbeat_ttl: Option<Duration>,
}

/// The agent's settings after layering: defaults, then config files in order, then flags.
#[derive(Debug, Clone)]
struct Settings {
    dev: bool,
    server: bool,
    client: bool,
    data_dir: Option<PathBuf>,
    bind: String,
    grpc_port: u16,
    http_port: u16,
    servers: Vec<String>,
    bootstrap_expect: u32,
    join: Vec<String>,
    server_stabilization_time: Duration,
    dead_server_threshold: Duration,
    node: Option<String>,
    dc: String,
    node_class: String,
    meta: std::collections::BTreeMap<String, String>,
    region: String,
    leave_on_terminate: bool,
    raft_snapshot_threshold: u64,
    raft_trailing_logs: u64,
    raft_multiplier: u32,
    heartbeat: yurt_core::heartbeat::Config,
    gc: yurt_core::gc::Thresholds,
    gc_interval: Duration,
    /// `client { gc_max_allocs, gc_interval }`.
    client_gc_max_allocs: usize,
    client_gc_interval: Duration,
    tls: yurt_tls::TlsConfig,
    acl_enabled: bool,
    /// The task drivers' settings; a `-dev` agent enables raw_exec unless a file says not.
    drivers: agentconfig::DriverConfig,
}

/// Layers the configuration in one place, in one documented order: defaults, then each
/// `-config` file in order, then flags.
fn resolve(args: AgentArgs) -> Result<Settings, CliError> {
    let mut file = AgentConfig::default();
    for path in &args.config {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read config file {name}: {e}")))?;
        file.merge(agentconfig::parse(&name, &src)?);
    }
    let mut meta = file.meta.clone();
    for kv in &args.meta {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| fail(format!("-meta {kv:?} must be written KEY=VALUE")))?;
        meta.insert(k.to_string(), v.to_string());
    }
    let raft_multiplier = args.raft_multiplier.or(file.raft_multiplier).unwrap_or(1);
    if !(1..=10).contains(&raft_multiplier) {
        return Err(fail(format!(
            "raft_multiplier must be between 1 and 10, not {raft_multiplier}"
        )));
    }
    let ms = Duration::from_millis;
    let grpc_port = args.grpc_port.or(file.rpc_port).unwrap_or(4647);
    // An address without a port means the RPC port (4647 when this agent takes any free one),
    // as Nomad users write them.
    let rpc_port = if grpc_port == 0 { 4647 } else { grpc_port };
    let pick = |flag: Vec<String>, from_file: Vec<String>| {
        let addrs = if flag.is_empty() { from_file } else { flag };
        addrs
            .iter()
            .map(|a| agentconfig::with_default_port(a, rpc_port))
            .collect::<Vec<String>>()
    };
    Ok(Settings {
        dev: args.dev,
        server: args.dev || args.server || file.server_enabled == Some(true),
        client: args.dev || args.client || file.client_enabled == Some(true),
        data_dir: args.data_dir.or(file.data_dir.map(PathBuf::from)),
        bind: args
            .bind
            .or(file.bind_addr)
            .unwrap_or_else(|| "127.0.0.1".into()),
        grpc_port,
        http_port: args.http_port.or(file.http_port).unwrap_or(4646),
        servers: pick(args.servers, file.servers),
        bootstrap_expect: args.bootstrap_expect.or(file.bootstrap_expect).unwrap_or(1),
        join: pick(args.join, file.retry_join),
        server_stabilization_time: args
            .server_stabilization_time
            .or(file.server_stabilization_time_ms.map(ms))
            .unwrap_or(Duration::from_secs(10)),
        dead_server_threshold: args
            .dead_server_threshold
            .or(file.dead_server_threshold_ms.map(ms))
            .unwrap_or(Duration::from_secs(60)),
        node: args.node.or(file.name),
        dc: args.dc.or(file.datacenter).unwrap_or_else(|| "dc1".into()),
        node_class: args.node_class.or(file.node_class).unwrap_or_default(),
        meta,
        region: args
            .region
            .or(file.region)
            .unwrap_or_else(|| "global".into()),
        leave_on_terminate: args.leave_on_terminate
            || file.leave_on_terminate == Some(true)
            || file.leave_on_interrupt == Some(true),
        raft_snapshot_threshold: args
            .raft_snapshot_threshold
            .or(file.raft_snapshot_threshold)
            .unwrap_or(8192),
        raft_trailing_logs: args
            .raft_trailing_logs
            .or(file.raft_trailing_logs)
            .unwrap_or(10240),
        raft_multiplier,
        heartbeat: {
            let d = yurt_core::heartbeat::Config::default();
            let ms = |v: Option<Duration>, file: Option<u64>, default: u64| {
                v.map(|d| d.as_millis() as u64).or(file).unwrap_or(default)
            };
            yurt_core::heartbeat::Config {
                min_ttl_ms: ms(
                    args.min_heartbeat_ttl,
                    file.min_heartbeat_ttl_ms,
                    d.min_ttl_ms,
                ),
                max_per_second: args
                    .max_heartbeats_per_second
                    .or(file.max_heartbeats_per_second)
                    .unwrap_or(d.max_per_second),
                grace_ms: ms(args.heartbeat_grace, file.heartbeat_grace_ms, d.grace_ms),
                failover_ttl_ms: ms(
                    args.failover_heartbeat_ttl,
                    file.failover_heartbeat_ttl_ms,
                    d.failover_ttl_ms,
                ),
            }
        },
        gc: {
            let d = yurt_core::gc::Thresholds::default();
            yurt_core::gc::Thresholds {
                eval_ms: file.eval_gc_threshold_ms.map_or(d.eval_ms, |v| v as i64),
                job_ms: file.job_gc_threshold_ms.map_or(d.job_ms, |v| v as i64),
                node_ms: file.node_gc_threshold_ms.map_or(d.node_ms, |v| v as i64),
            }
        },
        gc_interval: file.job_gc_interval_ms.map_or(Duration::from_secs(300), ms),
        client_gc_max_allocs: file.client_gc_max_allocs.map_or(50, |n| n as usize),
        client_gc_interval: file
            .client_gc_interval_ms
            .map_or(Duration::from_secs(60), ms),
        drivers: agentconfig::DriverConfig {
            raw_exec_enabled: file.drivers.raw_exec_enabled.or(args.dev.then_some(true)),
            ..file.drivers.clone()
        },
        tls: file.tls.unwrap_or_default(),
        acl_enabled: args.acl_enabled || file.acl_enabled == Some(true),
    })
}

/// The addresses an agent bound, as written to `agent-addrs.json`.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct BoundAddrs {
    pub grpc: String,
    pub http: Option<String>,
    pub pid: u32,
}

/// Answers `agent-info` from whichever parts this agent runs.
struct AgentInfo {
    server: Option<Arc<Server>>,
    client: Option<Client>,
}

#[tonic::async_trait]
impl Agent for AgentInfo {
    async fn info(
        &self,
        req: Request<AgentInfoRequest>,
    ) -> Result<Response<AgentInfoResponse>, Status> {
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if let Some(s) = &self.server {
            s.api().reads.authorize(
                &req,
                yurt_types::acl::Need::Agent(yurt_types::acl::Level::Read),
            )?;
            sections.extend(s.info_sections());
        } else {
            sections.insert(
                "yurt".into(),
                BTreeMap::from([("server".to_string(), "false".to_string())]),
            );
        }
        if let Some(c) = &self.client {
            sections.insert("client".into(), c.info_section());
        }
        let mut runtime = BTreeMap::new();
        runtime.insert("version".to_string(), yurt_types::VERSION.to_string());
        runtime.insert("os".to_string(), std::env::consts::OS.to_string());
        runtime.insert("arch".to_string(), std::env::consts::ARCH.to_string());
        runtime.insert(
            "cpu_count".to_string(),
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .to_string(),
        );
        sections.insert("runtime".into(), runtime);
        Ok(Response::new(AgentInfoResponse {
            sections: sections
                .into_iter()
                .map(|(name, values)| InfoSection {
                    name,
                    values: values.into_iter().collect(),
                })
                .collect(),
        }))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    yurt_types::duration::parse(s)
}

fn fail(msg: impl Into<String>) -> CliError {
    CliError::Other(msg.into())
}

fn write_addrs(dir: &Path, addrs: &BoundAddrs) -> Result<(), CliError> {
    let path = dir.join("agent-addrs.json");
    let tmp = dir.join("agent-addrs.json.tmp");
    let bytes = serde_json::to_vec_pretty(addrs).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

async fn bind(host: &str, port: u16, what: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| fail(format!("cannot bind the {what} API to {host}:{port}: {e}")))
}

/// Logs go to stderr; `YURT_LOG` (an env-filter directive) overrides the default. openraft's
/// replication logs every retry to a server that is down (several a second); the Raft network
/// says once when a server stops answering and once when it answers again instead.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YURT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=error,sled=warn,h2=warn,tower=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn run(args: AgentArgs) -> CmdResult {
    init_logging();
    let args = resolve(args)?;
    if !args.server && !args.client {
        return Err(fail("agent needs -dev, -server or -client"));
    }
    let throwaway = args.data_dir.is_none() && args.dev;
    let data_dir = match (&args.data_dir, args.dev) {
        (Some(d), _) => d.clone(),
        (None, true) => tempfile::Builder::new()
            .prefix("yurt-dev-")
            .tempdir()
            .map_err(|e| fail(format!("cannot create a throwaway data dir: {e}")))?
            .keep(),
        (None, false) => {
            return Err(fail(
                "-data-dir is required (or use -dev for a throwaway one)",
            ))
        }
    };
    let tls_fail = |e: yurt_tls::TlsError| fail(e.to_string());
    let read_file = |p: &Path| std::fs::read(p);
    let dialer = yurt_tls::Dialer::agent(&args.tls, &args.region, &read_file)
        .map_err(tls_fail)?
        .from_address(&args.bind);
    let grpc_tls = yurt_tls::grpc_server(&args.tls, &read_file).map_err(tls_fail)?;
    let https = yurt_tls::https_server(&args.tls, &read_file).map_err(tls_fail)?;
    crate::datadir::prepare(&data_dir, args.server)?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);

    let grpc = bind(&args.bind, args.grpc_port, "gRPC").await?;
    let grpc_addr: SocketAddr = grpc.local_addr().map_err(|e| fail(e.to_string()))?;
    let http = bind(&args.bind, args.http_port, "HTTP").await?;
    let http_addr = http.local_addr().ok();

    let name = args
        .node
        .clone()
        .unwrap_or_else(yurt_client::fingerprint::hostname);
    // The names servers would refuse at registration are refused here, before anything starts.
    for (what, value) in [("node name", &name), ("datacenter", &args.dc)] {
        yurt_types::limits::check_name(what, value).map_err(fail)?;
    }
    if !args.node_class.is_empty() {
        yurt_types::limits::check_name("node class", &args.node_class).map_err(fail)?;
    }
    let server = if args.server {
        let cfg = ServerConfig {
            data_dir: data_dir.clone(),
            name: name.clone(),
            advertise_addr: grpc_addr.to_string(),
            bootstrap_expect: args.bootstrap_expect,
            join: args.join.clone(),
            datacenter: args.dc.clone(),
            autopilot: yurt_server::leader::AutopilotSettings {
                stabilization: args.server_stabilization_time,
                dead_server: args.dead_server_threshold,
            },
            snapshot_threshold: args.raft_snapshot_threshold,
            trailing_logs: args.raft_trailing_logs,
            raft_multiplier: args.raft_multiplier,
            heartbeat: args.heartbeat,
            region: args.region.clone(),
            gc: args.gc,
            gc_interval: args.gc_interval,
            dialer: dialer.clone(),
            acl_enabled: args.acl_enabled,
            http_addr: http_addr.map(|a| a.to_string()).unwrap_or_default(),
        };
        let server = Server::start(cfg).await.map_err(|e| fail(e.to_string()))?;
        crate::datadir::mark_server(&data_dir)?;
        Some(Arc::new(server))
    } else {
        None
    };

    let mut routes = RoutesBuilder::default();
    if let Some(s) = &server {
        s.add_services(&mut routes);
    }
    let client = if args.client {
        let servers = if args.servers.is_empty() && args.server {
            vec![grpc_addr.to_string()]
        } else {
            args.servers.clone()
        };
        let exe = std::env::current_exe()
            .map_err(|e| fail(format!("cannot find the yurt binary: {e}")))?;
        let cfg = ClientConfig {
            data_dir: data_dir.clone(),
            servers,
            name: args.node.clone(),
            datacenter: args.dc.clone(),
            node_class: args.node_class.clone(),
            meta: args.meta.clone(),
            advertise_addr: grpc_addr.to_string(),
            executor_exe: exe,
            tick: Duration::from_millis(100),
            gc_max_allocs: args.client_gc_max_allocs,
            gc_interval: args.client_gc_interval,
            drivers: args.drivers.clone(),
            dialer,
        };
        let c = Client::start(cfg).await.map_err(|e| fail(e.to_string()))?;
        routes.add_service(c.fs_service());
        Some(c)
    } else {
        None
    };
    routes.add_service(AgentServer::new(AgentInfo {
        server: server.clone(),
        client: client.clone(),
    }));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_task = {
        let mut stop = stop_rx.clone();
        // No Nagle delay: small answers (Raft acks, short replies) go out at once instead of
        // waiting up to 40 ms for the peer's delayed ACK.
        let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = grpc_tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| fail(format!("tls: {e}")))?;
        }
        tokio::spawn(
            builder
                .layer(yurt_server::metrics::RpcTimer)
                .layer(yurt_server::guard::Guard::new(&args.tls, &args.region))
                .add_routes(routes.routes())
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.changed().await;
                }),
        )
    };
    match (&server, &client) {
        (Some(s), _) => {
            tokio::spawn(yurt_server::http::serve(
                http,
                s.api(),
                https,
                stop_rx.clone(),
            ));
        }
        (None, Some(c)) => {
            // A client agent passes its HTTP API's calls on to a server's.
            let c = c.clone();
            let upstream: yurt_server::http::relay::Upstream = Arc::new(move || c.server_http());
            let to_server =
                yurt_tls::https_client(&args.tls, &args.region, &read_file).map_err(tls_fail)?;
            let relay = yurt_server::http::relay::serve(
                http,
                upstream,
                https,
                to_server,
                yurt_server::http::relay::CALL_DEADLINE,
                stop_rx.clone(),
            );
            tokio::spawn(relay);
        }
        _ => {}
    }

    write_addrs(
        &data_dir,
        &BoundAddrs {
            grpc: grpc_addr.to_string(),
            http: http_addr.map(|a| a.to_string()),
            pid: std::process::id(),
        },
    )?;
    let role = match (args.server, args.client) {
        (true, true) => "server + client",
        (true, false) => "server",
        _ => "client",
    };
    println!(
        "==> Yurt agent started ({role}{})",
        if args.dev { ", dev mode" } else { "" }
    );
    println!("    Version:  {}", yurt_types::VERSION);
    let scheme = |on: bool| if on { " (TLS)" } else { "" };
    println!("    gRPC:     {grpc_addr}{}", scheme(args.tls.rpc));
    if let Some(h) = http_addr {
        println!("    HTTP:     {h}{}", scheme(args.tls.http));
    }
    println!("    Data dir: {}", data_dir.display());
    if let Some(c) = &client {
        println!("    Node ID:  {}", c.node_id());
    }
    println!("==> Run `yurt job run examples/web.hcl` in another shell; Ctrl-C stops the agent.");

    let mut fatal = server.as_ref().map(|s| s.cluster.fatal());
    let fatal_error = tokio::select! {
        _ = wait_for_signal() => None,
        why = async {
            match fatal.as_mut() {
                Some(rx) => rx.wait_for(|f| f.is_some()).await.ok().and_then(|f| f.clone()),
                None => std::future::pending().await,
            }
        } => why,
    };
    match &fatal_error {
        None => println!("==> Caught signal, shutting down"),
        Some(why) => tracing::error!("{why}"),
    }
    if let (Some(s), true, None) = (&server, args.leave_on_terminate, &fatal_error) {
        println!("==> Leaving the server cluster");
        s.leave().await;
    }
    let _ = stop_tx.send(true);
    if let Some(c) = &client {
        c.shutdown();
    }
    if let Some(s) = &server {
        s.shutdown().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), grpc_task).await;
    if throwaway {
        if let Some(c) = &client {
            // A throwaway data dir takes its tasks with it.
            c.kill_all_tasks().await;
        }
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    match fatal_error {
        Some(why) => Err(fail(why)),
        None => Ok(0),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
