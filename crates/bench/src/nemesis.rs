//! `yurt-bench nemesis [RUNS] [SECONDS] [SEED]`: the soak. Each run starts three servers and
//! two clients on loopback addresses of their own, runs a service job on the clients, and
//! keeps six clients of the HTTP API at three compare-and-set registers (variables, two
//! clients of two servers on each; each history is judged for linearizability) and one more
//! writing new variables one after another, while a schedule drawn from the seed injects
//! faults one at a time: the leader or a follower cut off, the leader's packets to the
//! followers dropped, a lossy link, a slow link (what the leader sends a follower held 100 to
//! 700 ms), a server paused (SIGSTOP) or killed with SIGKILL and restarted, a client cut off
//! from every server. After the last fault is healed it prints,
//! per run: operations, faults, acknowledged writes lost (each new
//! variable acknowledged must be there), the linearizability verdict, the terms in which two
//! servers said they led (sampled every 100 ms), the job's running allocations. Exits 1 if a
//! run lost a write, is not linearizable, had two leaders in one term, or does not end with
//! the job's two allocations running. Needs root and iptables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};
use yurt_nemesis::history::{Object, Ret, Workload};
use yurt_nemesis::http::try_http;
use yurt_nemesis::net::host_of;
use yurt_nemesis::{Net, Paused};

use crate::Server;

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// One run's cluster: servers `s0..s2`, clients `c0`, `c1`, on `net`'s addresses.
struct Cluster {
    yurt: PathBuf,
    servers: Vec<Server>,
    clients: Vec<Server>,
}

impl Cluster {
    async fn start(yurt: &Path, root: &Path, net: &Net) -> Cluster {
        let mut servers: Vec<Server> = Vec::new();
        for i in 0..3u8 {
            let mut args: Vec<String> = [
                "-server",
                "-bootstrap-expect",
                "3",
                "-node",
                &format!("s{i}"),
                "-bind",
                &net.ip(i + 1),
                "-min-heartbeat-ttl",
                "1s",
                "-heartbeat-grace",
                "2s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(first) = servers.first() {
                args.extend(["-join".to_string(), first.addr.clone()]);
            }
            servers.push(Server::spawn(yurt, &root.join(format!("s{i}")), &args, 0));
        }
        crate::leader(&servers).await;
        let list: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
        let config = root.join("client.hcl");
        std::fs::write(&config, RAW_EXEC).unwrap();
        let clients = (0..2u8)
            .map(|i| {
                let args: Vec<String> = [
                    "-client",
                    "-servers",
                    &list.join(","),
                    "-node",
                    &format!("c{i}"),
                    "-bind",
                    &net.ip(11 + i),
                    "-config",
                    config.to_str().unwrap(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Server::spawn(yurt, &root.join(format!("c{i}")), &args, 0)
            })
            .collect();
        Cluster {
            yurt: yurt.to_path_buf(),
            servers,
            clients,
        }
    }

    fn http(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.http.clone()).collect()
    }

    fn hosts(&self, of: &[usize]) -> Vec<String> {
        of.iter().map(|i| host_of(&self.servers[*i].addr)).collect()
    }

    /// The server most running servers name leader now (none while they disagree or elect).
    fn leader(&self) -> Option<usize> {
        let mut votes = [0; 3];
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            let Ok((status, _, body)) = try_http(
                &s.http,
                "GET",
                "/v1/status/leader",
                "",
                "",
                Duration::from_secs(1),
            ) else {
                continue;
            };
            if !status.contains(" 200") {
                continue;
            }
            let addr: String = serde_json::from_str(&body).unwrap_or_default();
            if let Some(i) = self.servers.iter().position(|s| s.addr == addr) {
                votes[i] += 1;
            }
        }
        (0..3).filter(|i| votes[*i] >= 2).max_by_key(|i| votes[*i])
    }
}

/// The clients' configuration: the job's tasks are host processes.
const RAW_EXEC: &str = "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n";

/// A fault in place, undone by [`Cluster::heal`].
#[derive(Default)]
struct Undo {
    paused: Option<Paused>,
    killed: Option<usize>,
}

impl Cluster {
    /// Injects one fault drawn from `rng`; returns its name.
    fn inject(&mut self, net: &Net, rng: &mut TestRng, undo: &mut Undo) -> String {
        let leader = self.leader().unwrap_or_else(|| rng.random_range(0..3usize));
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let follower = followers[rng.random_range(0..2usize)];
        let name = |i: usize| format!("s{i}");
        match rng.random_range(0..8u8) {
            0 => {
                let l = self.hosts(&[leader]);
                let f = self.hosts(&followers);
                net.partition(&[l[0].as_str()], &[f[0].as_str(), f[1].as_str()]);
                format!("leader {} isolated", name(leader))
            }
            1 => {
                let f = self.hosts(&[follower]);
                let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
                let o = self.hosts(&others);
                net.partition(&[f[0].as_str()], &[o[0].as_str(), o[1].as_str()]);
                format!("follower {} isolated", name(follower))
            }
            2 => {
                let l = self.hosts(&[leader]);
                for f in self.hosts(&followers) {
                    net.cut(&l[0], &f);
                }
                format!("leader {}'s packets to the followers dropped", name(leader))
            }
            3 => {
                let (l, f) = (self.hosts(&[leader]), self.hosts(&[follower]));
                net.lossy(&l[0], &f[0], 0.3);
                net.lossy(&f[0], &l[0], 0.3);
                format!("30% loss between {} and {}", name(leader), name(follower))
            }
            7 => {
                let l = self.hosts(&[leader]);
                let to = self.servers[follower]
                    .addr
                    .parse()
                    .expect("a server's address");
                let by = rng.random_range(100..700u64);
                net.delay(&l[0], to, Duration::from_millis(by));
                format!("{} to {} delayed {by} ms", name(leader), name(follower))
            }
            4 => {
                let victim = rng.random_range(0..3usize);
                undo.paused = Some(Paused::new(self.servers[victim].pid()));
                format!("{} paused", name(victim))
            }
            5 => {
                let victim = rng.random_range(0..3usize);
                self.servers[victim].kill9();
                undo.killed = Some(victim);
                format!("{} killed (-9)", name(victim))
            }
            _ => {
                let c = rng.random_range(0..2usize);
                let client = host_of(&self.clients[c].addr);
                let all = self.hosts(&[0, 1, 2]);
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                net.partition(&[client.as_str()], &all);
                format!("client c{c} cut off")
            }
        }
    }

    fn heal(&mut self, net: &Net, undo: &mut Undo) {
        net.heal();
        if let Some(mut p) = undo.paused.take() {
            p.resume();
        }
        if let Some(i) = undo.killed.take() {
            let yurt = self.yurt.clone();
            self.servers[i].restart(&yurt);
        }
    }
}

/// The leader once the healed cluster has one (up to a minute).
async fn settled_leader(c: &Cluster) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = tokio::task::block_in_place(|| c.leader());
        if l.is_some() || Instant::now() > deadline {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// New variables written one after another through each server in turn; the paths of those
/// acknowledged.
fn writer(servers: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut n = 0usize;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let path = format!("soak/w/{n}");
            let server = &servers[n % servers.len()];
            let body = serde_json::json!({ "Items": { "n": n.to_string() } }).to_string();
            let r = try_http(
                server,
                "PUT",
                &format!("/v1/var/{path}"),
                &body,
                "",
                HTTP_TIMEOUT,
            );
            if r.is_ok_and(|(status, _, _)| status.contains(" 200")) {
                acked.push(path);
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        acked
    })
}

/// How many acknowledged variables are missing, read through `server`.
fn lost(server: &str, acked: &[String]) -> Result<usize, String> {
    let mut lost = 0;
    for path in acked {
        let (status, _, body) = try_http(
            server,
            "GET",
            &format!("/v1/var/{path}"),
            "",
            "",
            HTTP_TIMEOUT,
        )?;
        match status.split_whitespace().nth(1) {
            Some("200") => {}
            Some("404") => lost += 1,
            _ => return Err(format!("{status}: {body}")),
        }
    }
    Ok(lost)
}

/// Waits up to a minute for `want` running allocations of job `soak`; how many run.
fn running_allocations(server: &str, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = try_http(
            server,
            "GET",
            "/v1/job/soak/allocations",
            "",
            "",
            HTTP_TIMEOUT,
        );
        let body = answer.map(|(_, _, body)| body).unwrap_or_else(|e| e);
        let running = serde_json::from_str::<serde_json::Value>(&body).map_or(0, |v| {
            let allocs = v.as_array().into_iter().flatten();
            allocs
                .filter(|a| a["DesiredStatus"] == "run" && a["ClientStatus"] == "running")
                .count()
        });
        if running == want {
            return running;
        }
        if std::env::var_os("YURT_SOAK_DEBUG").is_some() {
            eprintln!("DEBUG {body}");
        }
        if Instant::now() > deadline {
            eprintln!("the job's allocations: {body}");
            return running;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

const JOB: &str = r#"{"Job": {"ID": "soak", "Type": "service", "Datacenters": ["dc1"], "TaskGroups": [{"Name": "g", "Count": 2,
  "Update": {"MaxParallel": 0},
  "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sleep", "args": ["3600"]}}]}]}}"#;

/// The soak; returns whether every run kept every acknowledged write, was linearizable and
/// ended with the job's allocations running.
pub async fn nemesis(yurt: PathBuf, runs: usize, seconds: u64, seed: u64) -> bool {
    let mut clean = true;
    let (mut total_lost, mut linearizable) = (0, 0);
    for run in 0..runs {
        let seed = seed.wrapping_add(run as u64);
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let mut c = Cluster::start(&yurt, dir.path(), &net).await;
        let http = c.http();
        let posted = try_http(&http[0], "POST", "/v1/jobs", JOB, "", HTTP_TIMEOUT);
        if !posted.as_ref().is_ok_and(|(s, _, _)| s.contains(" 200")) {
            println!("run {}: the job was not registered: {posted:?}", run + 1);
        }
        // Three registers, each shared by two clients of two different servers.
        let registers = (0..3).map(|i| Object::Variable(format!("soak/cas{i}")));
        let work = Workload::start_on(&http, 6, registers.collect());
        let stop = Arc::new(AtomicBool::new(false));
        let writes = writer(http.clone(), stop.clone());
        let faults = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut undo = Undo::default();
        while started.elapsed() < Duration::from_secs(seconds) {
            let hold = Duration::from_millis(rng.random_range(1_500..4_000u64));
            let calm = Duration::from_millis(rng.random_range(1_000..2_500u64));
            let name = c.inject(&net, &mut rng, &mut undo);
            faults.lock().unwrap().push(name);
            tokio::time::sleep(hold).await;
            c.heal(&net, &mut undo);
            tokio::time::sleep(calm).await;
        }
        stop.store(true, Ordering::SeqCst);
        let acked = writes.join().unwrap();
        let via = settled_leader(&c).await.unwrap_or(0);
        let verdict = tokio::task::block_in_place(|| work.judge(&c.servers[via].http));
        let split = yurt_nemesis::terms::split(&verdict.terms);
        let ops = verdict.log.len();
        let written = verdict
            .log
            .iter()
            .filter(|e| e.ret == Some(Ret::Written))
            .count();
        let missing = tokio::task::block_in_place(|| lost(&c.servers[via].http, &acked));
        let running = tokio::task::block_in_place(|| running_allocations(&c.servers[via].http, 2));
        let verdict_text = match &verdict.linearizable {
            Ok(true) => "yes".to_string(),
            Ok(false) => "NO".to_string(),
            Err(e) => format!("undecided ({e})"),
        };
        let missing_text = match &missing {
            Ok(n) => format!("{n} of {} new variables", acked.len()),
            Err(e) => format!("unknown ({e})"),
        };
        let faults = faults.lock().unwrap().clone();
        println!(
            "run {}/{runs} (seed {seed}): {ops} operations ({} writes acknowledged), {} faults: {}; acknowledged writes lost: {missing_text}; linearizable: {verdict_text}; terms with two leaders: {} of {}; allocations running: {running} of 2",
            run + 1,
            written + acked.len(),
            faults.len(),
            faults.join(", "),
            split.len(),
            verdict.terms.len(),
        );
        // `YURT_BENCH_KEEP=1` keeps every run's data dirs and logs to read afterwards.
        if std::env::var_os("YURT_BENCH_KEEP").is_some() {
            drop(c);
            eprintln!("keeping {}", dir.keep().display());
        }
        if verdict.linearizable != Ok(true) || missing != Ok(0) || running != 2 || !split.is_empty()
        {
            clean = false;
            let printed: Vec<String> = verdict.log.iter().map(|e| e.to_string()).collect();
            eprintln!("history of run {}:\n{}", run + 1, printed.join("\n"));
        }
        total_lost += missing.unwrap_or(0);
        linearizable += usize::from(verdict.linearizable == Ok(true));
    }
    println!(
        "{runs} runs: {total_lost} acknowledged writes lost, {linearizable} of {runs} linearizable"
    );
    clean
}
