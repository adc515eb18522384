//! `yurt-bench client`: one server and one client agent on loopback. Prints the time from
//! `job run` of a count=100 job until all 100 allocations are `running` in the servers' state,
//! for `raw_exec` and then `exec` tasks in the same run, the RSS of the idle client agent and
//! what each running task costs beside the task itself (its executor; for exec also the
//! init of its PID namespace), and how many heartbeats per second the server answers from
//! many simulated clients, with its CPU time per heartbeat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use prost::Message;

use yurt_client::executor::parent_of;
use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::{
    ClientAllocsRequest, DeregisterJobRequest, HeartbeatRequest, ListNodesRequest, Node,
    RegisterJobRequest, RegisterNodeRequest, Resources,
};

use crate::{channel, cpu_time, Server};

const COUNT: usize = 100;
const SIMULATED_NODES: usize = 1000;
const HEARTBEAT_CALLERS: usize = 64;
const HEARTBEAT_CONNECTIONS: usize = 8;

/// A `Key:   123 kB` field of a `/proc/<pid>/` file, in KiB.
fn proc_kib(pid: i32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    proc_kib(pid, "status", "VmRSS:")
}

/// Proportional set size in KiB: resident memory with each shared page divided among the
/// processes that map it (what one more process of the kind costs).
fn pss_kib(pid: i32) -> Option<u64> {
    proc_kib(pid, "smaps_rollup", "Pss:")
}

/// PIDs of the tasks the client started, from their executors' `pid` files.
fn task_pids(client_dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for alloc in std::fs::read_dir(client_dir.join("client").join("allocs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for task in std::fs::read_dir(alloc.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(task.path().join("executor").join("pid")) {
                out.extend(text.trim().parse::<i32>().ok());
            }
        }
    }
    out
}

fn sleeper_job(driver: &str) -> yurt_proto::v1::Job {
    let src = format!(
        "job \"hundred-{driver}\" {{\n  group \"g\" {{\n    count = {COUNT}\n    task \"t\" {{\n      driver = \"{driver}\"\n      config {{\n        command = \"/bin/sleep\"\n        args = [\"3600\"]\n      }}\n      resources {{\n        cpu = 10\n        memory = 10\n      }}\n    }}\n  }}\n}}\n"
    );
    yurt_types::jobspec::parse_hcl("hundred.hcl", &src).unwrap()
}

/// `heartbeats`: also measure heartbeats (`--no-heartbeats` skips them, for quick runs of the
/// rest).
pub async fn client(yurt: PathBuf, heartbeats: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::single(&yurt, dir.path()).await;
    let client_dir = dir.path().join("client");
    let agent = Server::client(
        &yurt,
        &client_dir,
        &server.addr,
        "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
    );
    let mut nodes = NodesClient::new(channel(&server.addr).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    let node_id = loop {
        let listed = nodes.list(ListNodesRequest {}).await;
        if let Some(n) = listed.ok().and_then(|r| {
            r.into_inner()
                .nodes
                .into_iter()
                .find(|n| n.status == "ready")
        }) {
            break n.id;
        }
        assert!(Instant::now() < deadline, "the client did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the client settle, past its first heartbeats (every TTL/2 = 5 s), before reading its
    // idle footprint: it gives back its start-up pages once registered, and a heartbeat
    // touches some of them again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let client_pid = agent.pid();
    let idle = rss_kib(client_pid).unwrap_or(0);
    let server_idle = rss_kib(server.pid()).unwrap_or(0);

    let mut jobs = JobsClient::new(channel(&server.addr).await);
    let mut busy = 0;
    for driver in ["raw_exec", "exec"] {
        let run = hundred(&mut jobs, &mut nodes, &node_id, &client_dir, driver).await;
        busy = busy.max(rss_kib(client_pid).unwrap_or(0));
        println!(
            "{driver}: job run count={COUNT}, one client → all running in server state: {:.0} ms, every task's process started: {:.0} ms; per running task beside it: {:.1} MiB RSS, {:.2} MiB PSS ({})",
            run.all_running.as_secs_f64() * 1000.0,
            run.all_started.as_secs_f64() * 1000.0,
            run.rss_kib as f64 / 1024.0,
            run.pss_kib as f64 / 1024.0,
            run.what
        );
    }
    println!(
        "RSS: server idle {:.1} MiB, client agent idle {:.1} MiB ({:.1} MiB with {COUNT} allocations)",
        server_idle as f64 / 1024.0,
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
    );

    // The heartbeat load runs on a thread of its own with a single-threaded runtime: on two
    // cores shared with the server, a multi-threaded generator spent its time waking its own
    // threads and contending on its HTTP/2 connection's lock.
    let (addr, pid) = (server.addr.clone(), server.pid());
    if heartbeats {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(heartbeat_load(&addr, pid))
        })
        .await
        .unwrap();
    }

    // Stop the tasks before the agents go (tasks outlive a SIGKILLed client).
    let deadline = Instant::now() + Duration::from_secs(30);
    while task_pids(&client_dir)
        .iter()
        .any(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), None).is_ok())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in task_pids(&client_dir) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    drop(agent);
}

/// One run of the hundred tasks.
struct Hundred {
    all_running: Duration,
    /// Until every task's process runs (its PID written).
    all_started: Duration,
    /// What one running task costs beside itself.
    rss_kib: u64,
    pss_kib: u64,
    what: &'static str,
}

/// Runs count=100 tasks of `driver` until all are running, measures one, then stops them all.
async fn hundred(
    jobs: &mut JobsClient<tonic::transport::Channel>,
    nodes: &mut NodesClient<tonic::transport::Channel>,
    node_id: &str,
    client_dir: &Path,
    driver: &str,
) -> Hundred {
    // A job of its own per driver: the previous run's allocations are not counted.
    let job_id = format!("hundred-{driver}");
    let start = Instant::now();
    jobs.register(RegisterJobRequest {
        job: Some(sleeper_job(driver)),
        ..Default::default()
    })
    .await
    .expect("register");
    // Watched as the client agent watches them: a blocking query on the node's allocations
    // that answers with those changed (polling all 100 every few milliseconds took the server
    // 40-110 ms of CPU during the burst it measured).
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    let mut index = 0;
    while status.values().filter(|s| *s == "running").count() < COUNT {
        let answer = nodes
            .client_allocs(ClientAllocsRequest {
                node_id: node_id.to_string(),
                min_index: index,
                wait_ms: 1000,
                changed_only: true,
                ..Default::default()
            })
            .await
            .expect("watch the node's allocations")
            .into_inner();
        for a in answer.allocs.into_iter().filter(|a| a.job_id == job_id) {
            status.insert(a.id, a.client_status);
        }
        index = answer.index;
        assert!(start.elapsed() < Duration::from_secs(60), "not all running");
    }
    let all_running = start.elapsed();
    // "running" is reported once a task's executor is started; the task itself (for exec,
    // after its namespaces, mounts and cgroup) writes its PID a moment later.
    while live_tasks(client_dir).len() < COUNT {
        assert!(start.elapsed() < Duration::from_secs(60), "not all started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_started = start.elapsed();
    // Executors give back their start-up pages two seconds after the client waits on them.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = live_tasks(client_dir).first().copied().unwrap_or(0);
    // raw_exec: the task's parent is its executor. exec: the PID file names the init of the
    // task's PID namespace, whose parent is the executor.
    let (procs, what) = if driver == "exec" {
        (vec![pid, parent_of(pid).unwrap_or(0)], "executor + init")
    } else {
        (vec![parent_of(pid).unwrap_or(0)], "executor")
    };
    let rss = procs.iter().map(|p| rss_kib(*p).unwrap_or(0)).sum();
    let pss = procs.iter().map(|p| pss_kib(*p).unwrap_or(0)).sum();
    let _ = jobs
        .deregister(DeregisterJobRequest {
            job_id: job_id.clone(),
            purge: true,
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !live_tasks(client_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Hundred {
        all_running,
        all_started,
        rss_kib: rss,
        pss_kib: pss,
        what,
    }
}

/// The tasks of the client that still run.
fn live_tasks(client_dir: &Path) -> Vec<i32> {
    task_pids(client_dir)
        .into_iter()
        .filter(|p| yurt_client::executor::alive(*p))
        .collect()
}

/// One gRPC `Nodes/Heartbeat` call per node, each encoded once up front (a gRPC message is a
/// flag byte, a big-endian length and the protobuf bytes).
fn heartbeat_bodies(ids: &[String]) -> Vec<Bytes> {
    ids.iter()
        .map(|id| {
            let msg = HeartbeatRequest {
                node_id: id.clone(),
            }
            .encode_to_vec();
            let mut body = Vec::with_capacity(5 + msg.len());
            body.push(0);
            body.extend((msg.len() as u32).to_be_bytes());
            body.extend(msg);
            Bytes::from(body)
        })
        .collect()
}

/// Registers many simulated nodes, then heartbeats them from many concurrent callers over a few
/// HTTP/2 connections, and prints the rate and the server's CPU time per heartbeat.
///
/// The callers send requests encoded beforehand straight over HTTP/2: through tonic's client
/// (its buffer task, per-call encoding) the load generator took as much CPU as the server it
/// measured, on the same two cores.
async fn heartbeat_load(addr: &str, server_pid: i32) {
    let ch = channel(addr).await;
    let mut nodes = NodesClient::new(ch);
    let ids: Vec<String> = (0..SIMULATED_NODES)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    for id in &ids {
        nodes
            .register(RegisterNodeRequest {
                node: Some(Node {
                    id: id.clone(),
                    name: format!("sim-{id}"),
                    datacenter: "dc1".into(),
                    resources: Some(Resources {
                        cpu: 1000,
                        memory_mb: 1024,
                        memory_max_mb: 0,
                    }),
                    version: yurt_types::VERSION.into(),
                    ..Node::default()
                }),
            })
            .await
            .expect("register a simulated node");
    }
    let bodies = Arc::new(heartbeat_bodies(&ids));
    // Simulated clients share a few connections (a real cluster has one per client).
    let mut senders = Vec::new();
    for _ in 0..HEARTBEAT_CONNECTIONS {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        senders.push(sender);
    }
    let uri: hyper::Uri = format!("http://{addr}/yurt.v1.Nodes/Heartbeat")
        .parse()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs(3);
    let cpu_before = cpu_time(server_pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..HEARTBEAT_CALLERS {
        let (bodies, done, failed) = (bodies.clone(), done.clone(), failed.clone());
        let (mut sender, uri) = (senders[c % senders.len()].clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while start.elapsed() < run_for {
                let req = hyper::Request::post(uri.clone())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(bodies[i % bodies.len()].clone()))
                    .unwrap();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.headers().get("grpc-status").cloned();
                        let body = resp.into_body().collect().await;
                        let trailer = body
                            .ok()
                            .and_then(|b| b.trailers().and_then(|t| t.get("grpc-status").cloned()));
                        status.or(trailer).is_some_and(|s| s == "0")
                    }
                    Err(_) => false,
                };
                if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
                i += HEARTBEAT_CALLERS;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let done = done.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "heartbeats answered by one server ({SIMULATED_NODES} simulated nodes, {HEARTBEAT_CALLERS} callers): {:.0}/s{}",
        done as f64 / elapsed.as_secs_f64(),
        if failed > 0 { format!(" ({failed} failed)") } else { String::new() }
    );
    if let (Some(before), Some(after), true) = (cpu_before, cpu_time(server_pid), done > 0) {
        let per = (after - before) / done as u32;
        println!(
            "server CPU per heartbeat: {:.1} µs (one core's worth: {:.0}/s)",
            per.as_secs_f64() * 1e6,
            1.0 / per.as_secs_f64()
        );
    }
}
