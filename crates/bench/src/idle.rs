//! `yurt-bench idle`: three servers and one client on loopback with nothing to do; after they
//! settle, the CPU time each agent spends over 30 s (from `/proc`), as a share of one core.
//! An idle cluster should cost close to nothing; what it does cost is heartbeats, gossip and
//! the leader's loops.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{cpu_time, leader, Server};

const SETTLE: Duration = Duration::from_secs(10);
const MEASURE: Duration = Duration::from_secs(30);

pub async fn idle(yurt: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root: &Path = dir.path();
    let mut agents: Vec<Server> = Vec::new();
    for i in 0..3 {
        let mut args: Vec<String> = ["-server", "-bootstrap-expect", "3", "-node"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("s{i}"));
        if let Some(first) = agents.first() {
            args.extend(["-join".to_string(), first.addr.clone()]);
        }
        agents.push(Server::spawn(&yurt, &root.join(format!("s{i}")), &args, 0));
    }
    let l = leader(&agents).await;
    let servers: String = agents
        .iter()
        .map(|s| s.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let client_args: Vec<String> = ["-client", "-servers", &servers, "-node", "c0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    agents.push(Server::spawn(&yurt, &root.join("c0"), &client_args, 0));
    tokio::time::sleep(SETTLE).await;
    let before: Vec<Option<Duration>> = agents.iter().map(|a| cpu_time(a.pid())).collect();
    tokio::time::sleep(MEASURE).await;
    println!(
        "idle: three servers and one client, CPU over {}s after {}s to settle",
        MEASURE.as_secs(),
        SETTLE.as_secs()
    );
    let mut total = Duration::ZERO;
    for (i, (a, was)) in agents.iter().zip(before).enumerate() {
        let role = match i {
            3 => "client".to_string(),
            i if i == l => "server (leader)".to_string(),
            _ => "server".to_string(),
        };
        match (was, cpu_time(a.pid())) {
            (Some(b), Some(n)) => {
                let used = n.saturating_sub(b);
                total += used;
                println!(
                    "  {role:<16} {:>7.1} ms  ({:.2}% of a core)",
                    used.as_secs_f64() * 1000.0,
                    used.as_secs_f64() / MEASURE.as_secs_f64() * 100.0
                );
            }
            _ => println!("  {role:<16} (no /proc reading)"),
        }
    }
    println!(
        "  all              {:>7.1} ms  ({:.2}% of a core)",
        total.as_secs_f64() * 1000.0,
        total.as_secs_f64() / MEASURE.as_secs_f64() * 100.0
    );
}
