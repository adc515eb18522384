//! Leaders by Raft term, sampled while a workload runs: Raft allows one leader per term, so
//! two servers that each said they led in the same term are a split brain, whatever the
//! clients saw. Each server's `/v1/agent/self` (`stats.raft.state` and `term`) is read every
//! 100 ms; a server that does not answer (paused, or busy) is skipped that round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::try_http;

/// The servers (HTTP addresses) seen leading, by term.
pub type Terms = BTreeMap<u64, BTreeSet<String>>;

/// A sampler at work until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Terms>,
}

impl Sampler {
    /// Starts sampling `servers`' Raft state.
    pub fn start(servers: Vec<String>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut terms = Terms::new();
            while !flag.load(Ordering::SeqCst) {
                for server in &servers {
                    if let Some(term) = leading(server) {
                        terms.entry(term).or_default().insert(server.clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            terms
        });
        Sampler { stop, thread }
    }

    /// Stops sampling; returns what was seen.
    pub fn stop(self) -> Terms {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// The term `server` says it leads, if it answers that it is the leader.
fn leading(server: &str) -> Option<u64> {
    let within = Duration::from_secs(1);
    let (status, _, body) = try_http(server, "GET", "/v1/agent/self", "", "", within).ok()?;
    if !status.contains(" 200") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let raft = &v["stats"]["raft"];
    let term = raft["term"].as_str()?.parse().ok()?;
    (raft["state"].as_str()? == "Leader").then_some(term)
}

/// The terms in which more than one server led.
pub fn split(terms: &Terms) -> Vec<(u64, Vec<String>)> {
    terms
        .iter()
        .filter(|(_, leaders)| leaders.len() > 1)
        .map(|(term, leaders)| (*term, leaders.iter().cloned().collect()))
        .collect()
}
