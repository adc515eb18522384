//! `yurt-bench raft`: starts three `yurt agent -server` processes on loopback and prints
//! job registrations committed per second with 1 and with 64 concurrent clients, latency
//! percentiles, and leader failover time (kill -9 the leader → first accepted write).
//! `yurt-bench client`: see [`client`]. `yurt-bench sched`: see [`sched`]. `yurt-bench deploy`:
//! see [`deploy`]. `yurt-bench docker`: see [`docker`]. `yurt-bench idle`: see [`idle`].
//! `yurt-bench ui [JOBS]`: see [`ui`]. `yurt-bench fuzz [N] [SEED]`: see [`fuzz`]
//! (in-process, no agent).
//!
//! Build the agent first, then run the bench in release mode:
//! `cargo build --release && cargo run --release -p yurt-bench -- raft` (or `client`).
//! Figures are printed, never asserted; record them in docs/performance.md.

mod client;
mod deploy;
mod docker;
mod edges;
mod fuzz;
mod idle;
mod nemesis;
mod sched;
mod state;
mod ui;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::operator_client::OperatorClient;
use yurt_proto::v1::{Job, RaftPeersRequest, RegisterJobRequest};

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    addr: String,
    /// The HTTP API's address.
    http: String,
    args: Vec<String>,
}

impl Server {
    /// One server (`-bootstrap-expect 1`) under `dir/server`, once it leads.
    async fn single(yurt: &Path, dir: &Path) -> Server {
        let args = ["-server".into(), "-bootstrap-expect".into(), "1".into()];
        let server = Server::spawn(yurt, &dir.join("server"), &args, 0);
        leader(std::slice::from_ref(&server)).await;
        server
    }

    /// A client agent under `dir` of the server at `servers`, with `config` as its
    /// configuration file.
    fn client(yurt: &Path, dir: &Path, servers: &str, config: &str) -> Server {
        let file = dir.with_extension("hcl");
        std::fs::write(&file, config).unwrap();
        let args = [
            "-client".into(),
            "-servers".into(),
            servers.to_string(),
            "-config".into(),
            file.display().to_string(),
        ];
        Server::spawn(yurt, dir, &args, 0)
    }

    fn spawn(yurt: &Path, dir: &Path, args: &[String], port: u16) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let addrs = dir.join("agent-addrs.json");
        let _ = std::fs::remove_file(&addrs);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .unwrap();
        let child = Command::new(yurt)
            .arg("agent")
            .args(args)
            .args([
                "-data-dir",
                dir.to_str().unwrap(),
                "-grpc-port",
                &port.to_string(),
                "-http-port",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start yurt agent (build it first: cargo build --release)");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (addr, http) = loop {
            if let Ok(text) = std::fs::read_to_string(&addrs) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let http = v["http"].as_str().unwrap_or_default().to_string();
                    break (v["grpc"].as_str().unwrap().to_string(), http);
                }
            }
            assert!(
                Instant::now() < deadline,
                "agent in {} did not start",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr,
            http,
            args: args.to_vec(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, yurt: &Path) {
        self.kill9();
        let port = self.addr.rsplit_once(':').unwrap().1.parse().unwrap();
        *self = Server::spawn(yurt, &self.dir.clone(), &self.args.clone(), port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// A job of about 1.5 KiB.
fn job(id: &str) -> Job {
    let env: String = (0..24)
        .map(|i| format!("        VAR_{i:02} = \"value-{i:02}-padding-padding-padding\"\n"))
        .collect();
    let src = format!(
        "job \"{id}\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n      env {{\n{env}      }}\n    }}\n  }}\n}}\n"
    );
    yurt_types::jobspec::parse_hcl("bench.hcl", &src).unwrap()
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// The leader, once every running server names the same one: a server restarted with its own
/// old vote calls itself leader until it hears from the real one, and killing it would time
/// nothing.
async fn leader(servers: &[Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut named = Vec::new();
        for s in servers.iter().filter(|s| s.child.is_some()) {
            let mut op = OperatorClient::new(channel(&s.addr).await);
            let leader = match op.raft_peers(RaftPeersRequest {}).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let voters = r.peers.iter().filter(|p| p.voter).count();
                    r.peers
                        .into_iter()
                        .find(|p| p.state == "leader")
                        .filter(|_| voters == servers.len())
                        .map(|p| p.address)
                }
                Err(_) => None,
            };
            named.push(leader);
        }
        if let Some(Some(addr)) = named.first() {
            if named.iter().all(|n| n.as_ref() == Some(addr)) {
                if let Some(i) = servers
                    .iter()
                    .position(|s| &s.addr == addr && s.child.is_some())
                {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every server has applied the same index (a healthy cluster to kill from).
async fn converged(servers: &[Server]) {
    use yurt_proto::v1::agent_client::AgentClient;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for s in servers {
            let info = AgentClient::new(channel(&s.addr).await)
                .info(yurt_proto::v1::AgentInfoRequest {})
                .await;
            let applied = info.ok().and_then(|r| {
                r.into_inner()
                    .sections
                    .into_iter()
                    .find(|s| s.name == "raft")
                    .and_then(|s| s.values.get("applied_index").cloned())
            });
            seen.push(applied);
        }
        if seen.iter().all(|a| a.is_some() && *a == seen[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "servers did not converge: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time (user and system, all threads) a process has used so far.
pub(crate) fn cpu_time(pid: i32) -> Option<Duration> {
    // utime and stime are fields 14 and 15.
    let fields = yurt_client::executor::stat_fields(pid)?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Registers `total` jobs from `clients` concurrent callers over one connection to `addr`,
/// and prints the rate, the latencies and the CPU time the `servers` and the load generator
/// spent per registration.
async fn load(addr: &str, servers: &[Server], clients: usize, total: usize, tag: &str) {
    let ch = channel(addr).await;
    let jobs: Arc<Vec<Job>> = Arc::new((0..total).map(|i| job(&format!("{tag}-{i}"))).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu = |pid: i32| cpu_time(pid).unwrap_or_default();
    let pids: Vec<i32> = servers.iter().map(Server::pid).collect();
    let servers_before: Vec<Duration> = pids.iter().map(|p| cpu(*p)).collect();
    let me_before = cpu(std::process::id() as i32);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ch, jobs, next, retries) = (ch.clone(), jobs.clone(), next.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = JobsClient::new(ch);
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs.len() {
                    return lat;
                }
                let t = Instant::now();
                // A write that finds no leader (an election under load) is retried, as a
                // client would; its latency includes the wait.
                loop {
                    let r = c
                        .register(RegisterJobRequest {
                            job: Some(jobs[i].clone()),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(_) => break,
                        Err(e) if e.code() == tonic::Code::Unavailable => {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("register: {e:?}"),
                    }
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let per_job = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
    let servers_cpu: Vec<f64> = pids
        .iter()
        .zip(&servers_before)
        .map(|(p, before)| per_job(cpu(*p).saturating_sub(*before)))
        .collect();
    let me_cpu = per_job(cpu(std::process::id() as i32).saturating_sub(me_before));
    lat.sort();
    let retried = retries.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "registrations, {clients:>2} client(s): {:>8.0}/s   p50 {:>8.3} ms   p99 {:>8.3} ms   ({total} jobs of {} bytes{})",
        total as f64 / secs,
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        serde_json::to_vec(&jobs[0]).map(|v| v.len()).unwrap_or(0),
        if retried > 0 {
            format!("; {retried} tries found no leader and were retried")
        } else {
            String::new()
        }
    );
    let each: Vec<String> = servers_cpu.iter().map(|c| format!("{c:.0}")).collect();
    println!(
        "    CPU per registration: servers {:.0} µs ({} µs each), load generator {me_cpu:.0} µs",
        servers_cpu.iter().sum::<f64>(),
        each.join(" / ")
    );
}

async fn raft(yurt: PathBuf, count: usize, failover: bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // `YURT_BENCH_KEEP=1` keeps the servers' data dirs and logs to read afterwards.
    let _dir = match std::env::var_os("YURT_BENCH_KEEP") {
        Some(_) => {
            eprintln!("keeping {}", dir.keep().display());
            None
        }
        None => Some(dir),
    };
    let mut servers: Vec<Server> = Vec::new();
    for i in 0..count {
        let mut args: Vec<String> = [
            "-server",
            "-bootstrap-expect",
            &count.to_string(),
            "-node",
            &format!("b{i}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(first) = servers.first() {
            args.extend(["-join".to_string(), first.addr.clone()]);
        }
        servers.push(Server::spawn(&yurt, &root.join(format!("s{i}")), &args, 0));
    }
    let l = leader(&servers).await;
    println!(
        "{count} server(s) on loopback; leader is {}",
        servers[l].addr
    );
    load(&servers[l].addr, &servers, 1, 500, "one").await;
    load(&servers[l].addr, &servers, 64, 5000, "many").await;
    if !failover || count < 3 {
        return;
    }

    let mut failovers = Vec::new();
    for round in 0..5 {
        let l = leader(&servers).await;
        converged(&servers).await;
        let other = (l + 1) % servers.len();
        let mut c = JobsClient::new(channel(&servers[other].addr).await);
        servers[l].kill9();
        let killed = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let req = RegisterJobRequest {
                job: Some(job(&format!("failover-{round}-{n}"))),
                ..Default::default()
            };
            if tokio::time::timeout(Duration::from_millis(200), c.register(req))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                break;
            }
            // A refused write is tried again after a short pause, as a client would: a loop
            // without one takes CPU from the servers electing a leader on the same two cores.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failovers.push(killed.elapsed());
        if std::env::var_os("YURT_BENCH_KEEP").is_some() {
            eprintln!(
                "round {round}: killed {} at {killed:?}, write accepted after {:?}",
                servers[l].addr,
                killed.elapsed()
            );
        }
        servers[l].restart(&yurt);
    }
    failovers.sort();
    println!(
        "leader failover (kill -9 → first accepted write): median {:.0} ms over {} kills (min {:.0}, max {:.0})",
        percentile(&failovers, 0.5).as_secs_f64() * 1000.0,
        failovers.len(),
        failovers[0].as_secs_f64() * 1000.0,
        failovers[failovers.len() - 1].as_secs_f64() * 1000.0
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    if what == "fuzz" {
        // `fuzz [N] [SEED]`: in-process, no agent needed.
        let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
        let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
        return fuzz::main(n, seed);
    }
    if what == "fuzz-edges" {
        // `fuzz-edges [N] [SEED]`: one server in-process, its gRPC and HTTP edges on loopback.
        let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
        let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
        return edges::main(n, seed);
    }
    let yurt = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("yurt")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            eprintln!(
                "the yurt binary is not beside yurt-bench: run `cargo build --release` first"
            );
            std::process::exit(2)
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match what.as_str() {
        "raft" => {
            // `raft [SERVERS] [--no-failover]`: three servers and the failover rounds by default.
            let rest: Vec<String> = args.collect();
            let count = rest.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
            let failover = !rest.iter().any(|a| a == "--no-failover");
            rt.block_on(raft(yurt, count, failover))
        }
        "client" => {
            let heartbeats = !args.any(|a| a == "--no-heartbeats");
            rt.block_on(client::client(yurt, heartbeats))
        }
        "deploy" => rt.block_on(deploy::deploy(yurt)),
        // `docker [ENDPOINT]`: a daemon's unix:// socket (else DOCKER_HOST).
        "docker" => rt.block_on(docker::docker(yurt, args.next())),
        // `idle [YURT]`: another build's binary to measure beside this one's.
        "idle" => rt.block_on(idle::idle(args.next().map_or(yurt, PathBuf::from))),
        "state" => state::state(),
        // `ui [JOBS]`: the web UI in headless Chromium (1,000 jobs by default).
        "ui" => {
            let jobs = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
            rt.block_on(ui::ui(&yurt, jobs))
        }
        "nemesis" => {
            // `nemesis [RUNS] [SECONDS] [SEED]`: exits 1 if a run lost a write, is not
            // linearizable, had two leaders in one term, or ends without the job's allocations
            // running.
            let runs = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
            let seconds = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
            let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
            if !rt.block_on(nemesis::nemesis(yurt, runs, seconds, seed)) {
                std::process::exit(1)
            }
        }
        "sched" => {
            sched::in_memory();
            rt.block_on(sched::end_to_end(yurt))
        }
        _ => {
            eprintln!("usage: yurt-bench raft [SERVERS] [--no-failover] | client [--no-heartbeats] | docker [ENDPOINT] | sched | deploy | state | idle [YURT] | ui [JOBS] | fuzz [N] [SEED] | fuzz-edges [N] [SEED] | nemesis [RUNS] [SECONDS] [SEED]");
            std::process::exit(2)
        }
    }
}
