//! Server discovery and liveness: each server gossips with every server it knows (and with its
//! `-join` addresses) twice a second, learning new members and telling who is alive. This is
//! what `server members` shows, what autopilot reads, and what bootstraps a cluster of
//! `-bootstrap-expect` servers exactly once.
//!
//! Liveness is local: a member is alive while this server has had direct contact with it (it
//! answered our gossip or sent us its own) within [`FAILED_AFTER`]. Second-hand reports only
//! teach addresses and the sticky `left` flag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use tokio::sync::watch;
use tonic::transport::Channel;
use yurt_core::autopilot::Member;
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::{GossipRequest, GossipResponse, ServerMember};

use crate::raft::{NodeId, Raft};
use crate::write::now_unix_ms;

/// How often each server gossips.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(250);
/// Silence after which a member counts as failed.
pub const FAILED_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Known {
    member: ServerMember,
    /// Start of the current stretch of direct contact; `None` while failed or never seen.
    alive_since_ms: Option<i64>,
    last_contact_ms: i64,
}

/// This server's view of the server cluster.
#[derive(Clone)]
pub struct Cluster {
    me: ServerMember,
    join: Vec<String>,
    known: Arc<Mutex<BTreeMap<NodeId, Known>>>,
}

/// A member's liveness as `server members` shows it.
pub fn status_of(alive: bool, left: bool) -> &'static str {
    match (alive, left) {
        (_, true) => "left",
        (true, false) => "alive",
        (false, false) => "failed",
    }
}

impl Cluster {
    pub fn new(me: ServerMember, join: Vec<String>) -> Cluster {
        Cluster {
            me,
            join,
            known: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    pub fn me(&self) -> &ServerMember {
        &self.me
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every member this server knows of, itself included, with whether it is alive.
    pub fn members(&self, initialized: bool) -> Vec<(ServerMember, bool)> {
        let now = now_unix_ms();
        let mut me = self.me.clone();
        me.initialized = initialized;
        let mut out = vec![(me, true)];
        for k in self.lock().values() {
            if k.member.id != self.me.id {
                out.push((k.member.clone(), alive(k, now)));
            }
        }
        out
    }

    /// The autopilot's view: members with their liveness history.
    pub fn autopilot_members(&self) -> Vec<Member> {
        let now = now_unix_ms();
        let mut out = vec![Member {
            id: self.me.id,
            addr: self.me.addr.clone(),
            alive_since_ms: Some(0),
            last_contact_ms: now,
            left: false,
        }];
        for k in self.lock().values() {
            if k.member.id == self.me.id {
                continue;
            }
            out.push(Member {
                id: k.member.id,
                addr: k.member.addr.clone(),
                alive_since_ms: if alive(k, now) {
                    k.alive_since_ms
                } else {
                    None
                },
                last_contact_ms: k.last_contact_ms,
                left: k.member.left,
            });
        }
        out
    }

    /// Records direct contact with a member (it answered us, or gossiped to us).
    pub fn observe(&self, m: &ServerMember) {
        if m.id == self.me.id {
            return;
        }
        let now = now_unix_ms();
        let mut known = self.lock();
        let k = known.entry(m.id).or_insert_with(|| Known {
            member: m.clone(),
            alive_since_ms: None,
            last_contact_ms: 0,
        });
        if !alive(k, now) {
            k.alive_since_ms = Some(now);
            tracing::info!(name = %m.name, addr = %m.addr, "server is alive");
        }
        k.last_contact_ms = now;
        // What a member says of itself wins, `left` included: a server that talks is back.
        k.member = m.clone();
    }

    /// Merges second-hand reports: new members and `left` flags.
    pub fn merge(&self, reports: &[ServerMember]) {
        let mut known = self.lock();
        for m in reports {
            if m.id == self.me.id || m.id == 0 {
                continue;
            }
            match known.get_mut(&m.id) {
                None => {
                    known.insert(
                        m.id,
                        Known {
                            member: m.clone(),
                            alive_since_ms: None,
                            last_contact_ms: 0,
                        },
                    );
                }
                Some(k) => {
                    if m.left && !k.member.left && !alive(k, now_unix_ms()) {
                        k.member.left = true;
                    }
                    k.member.initialized |= m.initialized;
                }
            }
        }
    }

    /// Marks a server as left (force-leave). Returns false if no member has that name.
    pub fn force_leave(&self, name: &str) -> bool {
        let mut known = self.lock();
        let mut found = false;
        for k in known.values_mut() {
            if k.member.name == name || k.member.addr == name {
                k.member.left = true;
                k.alive_since_ms = None;
                found = true;
            }
        }
        found
    }

    fn gossip_message(&self, initialized: bool) -> (ServerMember, Vec<ServerMember>) {
        let mut me = self.me.clone();
        me.initialized = initialized;
        let known = self.lock().values().map(|k| k.member.clone()).collect();
        (me, known)
    }

    /// Answers another server's gossip.
    pub fn handle(&self, req: GossipRequest, initialized: bool) -> GossipResponse {
        if let Some(from) = &req.from {
            self.observe(from);
        }
        self.merge(&req.known);
        let (me, known) = self.gossip_message(initialized);
        GossipResponse {
            me: Some(me),
            known,
        }
    }

    /// Everyone to gossip with: the `-join` addresses, every known member, and every server
    /// in the Raft configuration (so a restarted server finds its peers without `-join`).
    fn targets(&self, raft: &Raft) -> Vec<String> {
        let mut t: Vec<String> = self.join.clone();
        let metrics = raft.metrics().borrow().clone();
        for (_, node) in metrics.membership_config.membership().nodes() {
            if !t.contains(&node.addr) {
                t.push(node.addr.clone());
            }
        }
        for k in self.lock().values() {
            if !k.member.left && !t.contains(&k.member.addr) {
                t.push(k.member.addr.clone());
            }
        }
        t.retain(|a| *a != self.me.addr);
        t
    }
}

fn alive(k: &Known, now: i64) -> bool {
    k.alive_since_ms.is_some() && now - k.last_contact_ms < FAILED_AFTER.as_millis() as i64
}

/// Whether this server's Raft has a configuration (it bootstrapped or was added).
pub fn initialized(raft: &Raft) -> bool {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some()
}

/// Gossips until shutdown, and bootstraps Raft once `bootstrap_expect` servers that are not
/// yet part of a cluster know each other. Each round talks to every target at once, over
/// connections kept between rounds, so one dead server never delays news of the others.
pub async fn run(cluster: Cluster, raft: Raft, mut shutdown: watch::Receiver<bool>) {
    let mut clients: BTreeMap<String, RaftTransportClient<Channel>> = BTreeMap::new();
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let init = initialized(&raft);
        let (me, known) = cluster.gossip_message(init);
        let mut round = tokio::task::JoinSet::new();
        for addr in cluster.targets(&raft) {
            let client = match clients.get(&addr) {
                Some(c) => c.clone(),
                None => match Channel::from_shared(format!("http://{addr}")) {
                    Ok(endpoint) => {
                        let c = RaftTransportClient::new(
                            endpoint
                                .connect_timeout(Duration::from_millis(500))
                                .timeout(Duration::from_secs(1))
                                .connect_lazy(),
                        );
                        clients.insert(addr.clone(), c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "not a server address");
                        continue;
                    }
                },
            };
            let req = GossipRequest {
                from: Some(me.clone()),
                known: known.clone(),
            };
            round.spawn(async move {
                let mut client = client;
                let r = client.gossip(req).await.map(|r| r.into_inner());
                (addr, r)
            });
        }
        while let Some(Ok((addr, result))) = round.join_next().await {
            match result {
                Ok(resp) => {
                    if let Some(m) = &resp.me {
                        cluster.observe(m);
                    }
                    cluster.merge(&resp.known);
                    if failures.remove(&addr).is_some_and(|n| n >= 4) {
                        tracing::info!(%addr, "reached server again");
                    }
                }
                Err(status) => {
                    let n = failures.entry(addr.clone()).or_default();
                    *n += 1;
                    // Say so in the log, backing off the messages, not the retries.
                    if n.is_power_of_two() && *n >= 4 {
                        tracing::warn!(%addr, attempts = *n, error = %status.message(), "cannot reach server; retrying");
                    }
                }
            }
        }
        if !init {
            maybe_bootstrap(&cluster, &raft).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(GOSSIP_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The lowest-ID server of the first `bootstrap_expect` uninitialised live servers bootstraps
/// them all; the others wait to be replicated to. Nobody bootstraps once any known server
/// belongs to a cluster: new servers are added by the leader's autopilot instead.
async fn maybe_bootstrap(cluster: &Cluster, raft: &Raft) {
    let expect = cluster.me.bootstrap_expect as usize;
    if expect <= 1 {
        return;
    }
    let members = cluster.members(false);
    if members.iter().any(|(m, _)| m.initialized) {
        return;
    }
    let mut ready: Vec<&ServerMember> = members
        .iter()
        .filter(|(m, alive)| *alive && !m.left && m.bootstrap_expect as usize == expect)
        .map(|(m, _)| m)
        .collect();
    if ready.len() < expect {
        return;
    }
    ready.sort_by_key(|m| m.id);
    ready.truncate(expect);
    if ready[0].id != cluster.me.id {
        return;
    }
    let voters: BTreeMap<NodeId, BasicNode> = ready
        .iter()
        .map(|m| (m.id, BasicNode::new(&m.addr)))
        .collect();
    match raft.initialize(voters).await {
        Ok(()) => tracing::info!(servers = expect, "bootstrapped the cluster"),
        Err(e) => tracing::warn!(error = %e, "bootstrap failed"),
    }
}
