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

use crate::raft::state_machine::StateHandle;
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
    /// Addresses given later (`server join`), gossiped with as `-join` ones are.
    joined_later: Arc<Mutex<Vec<String>>>,
    known: Arc<Mutex<BTreeMap<NodeId, Known>>>,
    /// Set when this server leaves gracefully; gossip then says so.
    leaving: Arc<std::sync::atomic::AtomicBool>,
    name: ClusterName,
    /// Set when this server must stop: it belongs to another cluster than the one it joins.
    fatal: watch::Sender<Option<String>>,
    /// What the leader's loops wake on, as of the last gossip round.
    roster: watch::Sender<Roster>,
    dialer: yurt_tls::Dialer,
}

/// The part of the cluster's view that the leader's loops act on: every member this server
/// knows (itself included), at which address, running which version (the feature gates follow
/// from the versions), alive or left. It changes only when one of those does, so a loop
/// waiting on it wakes for news, not for every gossip round.
pub type Roster = Vec<RosterEntry>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub id: u64,
    pub addr: String,
    pub version: String,
    pub alive: bool,
    pub left: bool,
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
    pub fn new(
        me: ServerMember,
        join: Vec<String>,
        name: ClusterName,
        dialer: yurt_tls::Dialer,
    ) -> Cluster {
        Cluster {
            dialer,
            me,
            join,
            joined_later: Arc::default(),
            known: Arc::new(Mutex::new(BTreeMap::new())),
            leaving: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            name,
            fatal: watch::channel(None).0,
            roster: watch::channel(Roster::default()).0,
        }
    }

    /// Changes when a member's address, version or liveness changes (checked after every
    /// gossip round).
    pub fn roster(&self) -> watch::Receiver<Roster> {
        self.roster.subscribe()
    }

    /// Publishes the roster if it changed.
    fn publish_roster(&self) {
        let now: Roster = self
            .members(true)
            .into_iter()
            .map(|(m, alive)| RosterEntry {
                id: m.id,
                addr: m.addr,
                version: m.version,
                alive,
                left: m.left,
            })
            .collect();
        self.roster.send_if_modified(|r| {
            let changed = *r != now;
            if changed {
                *r = now;
            }
            changed
        });
    }

    /// Changes to `Some(sentence)` when this server cannot go on (see [`Cluster::check_cluster`]).
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// This server's cluster ID (see [`ClusterName::get`]).
    pub fn cluster_id(&self) -> String {
        self.name.get()
    }

    /// The name this server gives the cluster it bootstrapped alone, if it did.
    pub fn founding_id(&self) -> &str {
        self.name.founding()
    }

    /// Handles a server of another cluster: fatal if this server was told to join it and has
    /// found no server of its own cluster (its data dir is the stray one), otherwise logged and
    /// ignored (a server of a working cluster whose `-join` address another cluster's server
    /// has since taken carries on).
    fn refuse(&self, addr: &str, why: String) {
        let ours = self.cluster_id();
        let with_peers = !ours.is_empty()
            && self.lock().values().any(|k| {
                k.member.id != self.me.id
                    && k.member.cluster_id == ours
                    && k.alive_since_ms.is_some()
            });
        if self.join.iter().any(|j| j == addr) && !with_peers {
            self.fatal.send_replace(Some(format!(
                "{why}: this server's data dir belongs to another cluster than the one -join {addr} names; start it with that cluster's data dir or an empty one"
            )));
        } else {
            tracing::error!("{why}; ignoring that server");
        }
    }

    /// A member of another cluster, or of a version or Raft protocol this server cannot work
    /// with, is never observed: it is the wrong peer, whichever side is the stray one. Returns
    /// the sentence that says so.
    fn foreign(&self, other: &ServerMember) -> Option<String> {
        if let Err(why) =
            yurt_types::version::check_server(&self.me.version, &other.name, &other.version)
                .and_then(|_| {
                    yurt_types::version::check_raft_protocol(&other.name, other.raft_protocol)
                })
        {
            return Some(why);
        }
        let ours = self.cluster_id();
        if ours.is_empty() || other.cluster_id.is_empty() || ours == other.cluster_id {
            return None;
        }
        Some(format!(
            "server {:?} ({}) belongs to cluster {}, and server {:?} ({}) to cluster {ours}",
            other.name, other.addr, other.cluster_id, self.me.name, self.me.addr
        ))
    }

    pub fn me(&self) -> &ServerMember {
        &self.me
    }

    /// The servers feature gates count: every member that has not left, failed ones included
    /// (they come back with the binary they had).
    pub fn gate_servers(&self) -> Vec<yurt_core::features::Server> {
        self.members(true)
            .into_iter()
            .filter(|(m, _)| !m.left)
            .map(|(m, _)| yurt_core::features::Server {
                name: m.name,
                version: m.version,
            })
            .collect()
    }

    /// What the scheduler may use given the servers' versions.
    pub fn gates(&self) -> yurt_core::features::Gates {
        yurt_core::features::Gates::of(&self.gate_servers())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every member this server knows of, itself included, with whether it is alive.
    pub fn members(&self, initialized: bool) -> Vec<(ServerMember, bool)> {
        let now = now_unix_ms();
        let mut out = vec![(self.me_now(initialized), true)];
        for k in self.lock().values() {
            if k.member.id != self.me.id && self.foreign(&k.member).is_none() {
                out.push((k.member.clone(), alive(k, now)));
            }
        }
        out
    }

    /// The autopilot's view: members with their liveness history.
    pub fn autopilot_members(&self) -> Vec<Member> {
        let now = now_unix_ms();
        let ours = self.cluster_id();
        let mut out = vec![Member {
            id: self.me.id,
            addr: self.me.addr.clone(),
            alive_since_ms: Some(0),
            last_contact_ms: now,
            left: false,
            may_join: true,
        }];
        for k in self.lock().values() {
            // Never a server of another cluster, even one seen before this one was named.
            if k.member.id == self.me.id || self.foreign(&k.member).is_some() {
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
                // A server that bootstrapped a cluster of its own is in it before that cluster
                // has a name: only a server in no cluster, or in ours, is taken in.
                may_join: !k.member.initialized
                    || (!ours.is_empty() && k.member.cluster_id == ours),
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

    /// Marks the servers with this name or address as left (force-leave).
    pub fn force_leave(&self, name: &str) {
        self.mark_left(|m| m.name == name || m.addr == name);
    }

    /// Marks a server the autopilot removed from the Raft configuration as left.
    pub fn removed(&self, id: u64) {
        self.mark_left(|m| m.id == id);
    }

    fn mark_left(&self, which: impl Fn(&ServerMember) -> bool) {
        for k in self.lock().values_mut() {
            if which(&k.member) {
                k.member.left = true;
                k.alive_since_ms = None;
            }
        }
    }

    /// This server as it describes itself right now.
    fn me_now(&self, initialized: bool) -> ServerMember {
        let mut me = self.me.clone();
        me.initialized = initialized;
        me.left = self.leaving.load(std::sync::atomic::Ordering::Relaxed);
        me.cluster_id = self.cluster_id();
        me
    }

    fn gossip_message(&self, initialized: bool) -> (ServerMember, Vec<ServerMember>) {
        let known = self.lock().values().map(|k| k.member.clone()).collect();
        (self.me_now(initialized), known)
    }

    /// Answers another server's gossip.
    pub fn handle(
        &self,
        req: GossipRequest,
        initialized: bool,
    ) -> Result<GossipResponse, tonic::Status> {
        if let Some(from) = &req.from {
            if let Some(why) = self.foreign(from) {
                return Err(tonic::Status::failed_precondition(why));
            }
            self.observe(from);
        }
        self.merge(&req.known);
        let (me, known) = self.gossip_message(initialized);
        Ok(GossipResponse {
            me: Some(me),
            known,
        })
    }

    /// Gossips with `addrs` from now on, as with `-join` addresses.
    pub fn join_later(&self, addrs: &[String]) {
        let mut later = self.joined_later.lock().unwrap_or_else(|e| e.into_inner());
        for a in addrs {
            if !later.contains(a) {
                later.push(a.clone());
            }
        }
    }

    /// Whether a live member answers at `addr`.
    pub fn answers_at(&self, addr: &str) -> bool {
        self.members(true)
            .iter()
            .any(|(m, alive)| *alive && !m.left && m.addr == addr)
    }

    /// Everyone to gossip with: the `-join` addresses, every known member, and every server
    /// in the Raft configuration (so a restarted server finds its peers without `-join`).
    fn targets(&self, raft: &Raft) -> Vec<String> {
        let mut t: Vec<String> = self.join.clone();
        for a in self
            .joined_later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if !t.contains(a) {
                t.push(a.clone());
            }
        }
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

/// A server's cluster ID, read on every Raft call.
#[derive(Clone)]
pub struct ClusterName {
    state: StateHandle,
    /// The name a server that bootstraps alone gives its cluster; empty for servers that join
    /// or bootstrap together.
    founding: Arc<str>,
    /// The name in the state, once there: it never changes after.
    named: Arc<std::sync::OnceLock<String>>,
}

impl ClusterName {
    pub fn new(state: StateHandle, founding: String) -> ClusterName {
        ClusterName {
            state,
            founding: founding.into(),
            named: Arc::default(),
        }
    }

    /// The ID the cluster's first leader wrote to the state; before that, the name a server
    /// that bootstrapped alone will give it (so that from its first moment it is told apart
    /// from other clusters), or empty (a server that joins learns it).
    pub fn get(&self) -> String {
        if let Some(named) = self.named.get() {
            return named.clone();
        }
        let named = self.state.read(|s| s.cluster_id.clone());
        if named.is_empty() {
            return self.founding.to_string();
        }
        self.named.get_or_init(|| named).clone()
    }

    pub fn founding(&self) -> &str {
        &self.founding
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
    let mut clients = Clients::new(cluster.dialer.clone());
    loop {
        let init = initialized(&raft);
        gossip_round(&cluster, &raft, &mut clients).await;
        cluster.publish_roster();
        if !init {
            maybe_bootstrap(&cluster, &raft).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(GOSSIP_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Connections to the other servers, kept between rounds, and how often each failed.
pub struct Clients {
    conns: BTreeMap<String, RaftTransportClient<Channel>>,
    /// Consecutive failures per address, and when to try it next.
    failures: BTreeMap<String, (u32, std::time::Instant)>,
    dialer: yurt_tls::Dialer,
}

impl Clients {
    pub fn new(dialer: yurt_tls::Dialer) -> Clients {
        Clients {
            dialer,
            conns: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    /// Whether an address is due for another try: after three failures in a row, tries back
    /// off (0.5 s, 1 s, 2 s, ... up to 8 s). A server that comes back is heard from anyway,
    /// since it gossips to us.
    fn due(&self, addr: &str) -> bool {
        self.failures
            .get(addr)
            .is_none_or(|(_, next)| std::time::Instant::now() >= *next)
    }

    fn failed(&mut self, addr: &str) -> u32 {
        let e = self
            .failures
            .entry(addr.to_string())
            .or_insert((0, std::time::Instant::now()));
        e.0 += 1;
        let wait = match e.0 {
            0..=3 => Duration::ZERO,
            n => {
                (Duration::from_millis(250) * 2u32.pow((n - 3).min(5))).min(Duration::from_secs(8))
            }
        };
        e.1 = std::time::Instant::now() + wait;
        e.0
    }

    fn get(&mut self, addr: &str) -> Option<RaftTransportClient<Channel>> {
        if let Some(c) = self.conns.get(addr) {
            return Some(c.clone());
        }
        let endpoint = match self.dialer.endpoint(addr, yurt_tls::Peer::Server) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "not a server address");
                return None;
            }
        };
        let c = RaftTransportClient::new(
            endpoint
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(1))
                .connect_lazy(),
        );
        self.conns.insert(addr.to_string(), c.clone());
        Some(c)
    }
}

/// One round of gossip with every target at once.
pub async fn gossip_round(cluster: &Cluster, raft: &Raft, clients: &mut Clients) {
    let (me, known) = cluster.gossip_message(initialized(raft));
    let mut round = tokio::task::JoinSet::new();
    for addr in cluster.targets(raft) {
        if !clients.due(&addr) {
            continue;
        }
        let Some(mut client) = clients.get(&addr) else {
            continue;
        };
        let req = GossipRequest {
            from: Some(me.clone()),
            known: known.clone(),
        };
        round.spawn(async move {
            let r = client.gossip(req).await.map(|r| r.into_inner());
            (addr, r)
        });
    }
    while let Some(Ok((addr, result))) = round.join_next().await {
        match result {
            Ok(resp) => {
                if let Some(why) = resp.me.as_ref().and_then(|m| cluster.foreign(m)) {
                    cluster.refuse(&addr, why);
                    continue;
                }
                if let Some(m) = &resp.me {
                    cluster.observe(m);
                }
                cluster.merge(&resp.known);
                if clients.failures.remove(&addr).is_some_and(|(n, _)| n >= 4) {
                    tracing::info!(%addr, "reached server again");
                }
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                cluster.refuse(&addr, status.message().to_string());
            }
            Err(status) => {
                let n = clients.failed(&addr);
                if n.is_power_of_two() && n >= 4 {
                    tracing::warn!(%addr, attempts = n, error = %status.message(), "cannot reach server; retrying with backoff");
                }
            }
        }
    }
}

/// Leaves the cluster gracefully: out of the Raft configuration (through the leader), then
/// tells every server it has left.
pub async fn leave(cluster: &Cluster, raft: &Raft) {
    let me = cluster.me.id;
    let m = raft.metrics().borrow().clone();
    let in_config = m.membership_config.membership().get_node(&me).is_some();
    let voters = m.membership_config.membership().voter_ids().count();
    if in_config && voters > 1 {
        let result = if m.current_leader == Some(me) {
            crate::raft::remove_member(raft, me)
                .await
                .map_err(|s| s.message().to_string())
        } else {
            remove_via_leader(cluster, raft, me).await
        };
        match result {
            Ok(()) => tracing::info!("left the Raft configuration"),
            Err(e) => tracing::warn!(error = %e, "could not leave the Raft configuration"),
        }
    }
    cluster
        .leaving
        .store(true, std::sync::atomic::Ordering::Relaxed);
    gossip_round(cluster, raft, &mut Clients::new(cluster.dialer.clone())).await;
}

async fn remove_via_leader(cluster: &Cluster, raft: &Raft, me: NodeId) -> Result<(), String> {
    use yurt_proto::v1::operator_client::OperatorClient;
    let channel = crate::raft::dial_leader(raft, &cluster.dialer)
        .await
        .map_err(|s| s.message().to_string())?;
    OperatorClient::new(channel)
        .remove_peer(yurt_proto::v1::RemovePeerRequest {
            peer: me.to_string(),
        })
        .await
        .map(|_| ())
        .map_err(|s| s.message().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_after_three_failures_and_reset_on_success() {
        let mut c = Clients::new(yurt_tls::Dialer::plain());
        for _ in 0..3 {
            c.failed("a");
            assert!(c.due("a"), "transient failures are retried at once");
        }
        c.failed("a");
        assert!(!c.due("a"), "the fourth failure in a row backs off");
        assert!(c.due("b"));
        c.failures.remove("a");
        assert!(c.due("a"));
        for _ in 0..20 {
            c.failed("a");
        }
        let (_, next) = c.failures["a"];
        assert!(next <= std::time::Instant::now() + Duration::from_secs(8));
    }

    #[test]
    fn status_names() {
        assert_eq!(status_of(true, false), "alive");
        assert_eq!(status_of(false, false), "failed");
        assert_eq!(status_of(true, true), "left");
    }
}
