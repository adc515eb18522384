//! The one path by which cluster state changes: encode a command, propose it to Raft, and
//! forward it to the leader when this server is not the leader.
//!
//! Writes are grouped (group commit): openraft appends and flushes each proposal on its own,
//! so the writer's batching task takes every command queued while earlier batches were in
//! flight and proposes them as one log entry. A lone write goes out at once; under load, many
//! writes share one append, one flush and one replication round.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;
use yurt_core::internal::{command, Command};
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::RaftPayload;

use crate::raft::{ApplyResult, Proposal, Raft};

/// Batches proposed at once; more writes wait in the queue and form the next batch.
const BATCHES_IN_FLIGHT: usize = 2;
/// Limits of one batch (one log entry).
const MAX_BATCH_COMMANDS: usize = 512;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The state machine refused the command (e.g. a `-check-index` mismatch).
    #[error("{0}")]
    Refused(String),
    #[error("no cluster leader")]
    NoLeader,
    /// This server is not the leader; the leader's address when known.
    #[error("not the leader")]
    NotLeader(Option<String>),
    #[error("raft: {0}")]
    Raft(String),
}

impl From<WriteError> for tonic::Status {
    fn from(e: WriteError) -> tonic::Status {
        match e {
            WriteError::Refused(m) => tonic::Status::failed_precondition(m),
            WriteError::NoLeader => tonic::Status::unavailable("no cluster leader"),
            WriteError::NotLeader(_) => tonic::Status::unavailable("not the leader"),
            WriteError::Raft(m) => tonic::Status::unavailable(m),
        }
    }
}

/// The leader's wall clock in Unix milliseconds: the only clock read on the write path.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A command waiting for its batch.
struct Queued {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<ApplyResult, WriteError>>,
}

/// The leader's address and a client connected to it.
type LeaderConnection = (String, RaftTransportClient<Channel>);

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Queued>,
    /// The connection to the leader for forwarded writes, kept while the leader stays.
    leader: Arc<Mutex<Option<LeaderConnection>>>,
    dialer: yurt_tls::Dialer,
    /// This server's Raft: a forwarded write stops waiting when another leader is elected.
    raft: Raft,
    /// True while this server leads but no majority confirms it (check-quorum).
    quorum_lost: tokio::sync::watch::Receiver<bool>,
    /// The data dir, whose file system must have room for a leader to take a write.
    data_dir: std::path::PathBuf,
}

impl Writer {
    /// Starts the batching task (it ends when the last `Writer` is dropped).
    pub fn new(
        raft: Raft,
        dialer: yurt_tls::Dialer,
        quorum_lost: tokio::sync::watch::Receiver<bool>,
        data_dir: std::path::PathBuf,
    ) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(raft.clone(), rx));
        Writer {
            queue,
            leader: Arc::default(),
            dialer,
            raft,
            quorum_lost,
            data_dir,
        }
    }

    /// Whether this server leads no majority now (check-quorum), as it changes.
    pub fn quorum_lost(&self) -> tokio::sync::watch::Receiver<bool> {
        self.quorum_lost.clone()
    }

    /// Applies a command of the given kind, stamped with the current time.
    pub async fn apply(&self, kind: command::Kind) -> Result<ApplyResult, WriteError> {
        self.submit(Command {
            now_unix_ms: now_unix_ms(),
            ignore_if_unknown: false,
            kind: Some(kind),
        })
        .await
    }

    /// Applies a complete command, forwarding it to the leader if needed.
    pub async fn submit(&self, cmd: Command) -> Result<ApplyResult, WriteError> {
        let command = cmd.encode_to_vec();
        let started = std::time::Instant::now();
        // While no leader is known (an election), the write waits for one, bounded.
        let deadline = tokio::time::Instant::now() + crate::raft::LEADER_WAIT;
        let r = loop {
            break match self.propose_local(command.clone()).await {
                Err(WriteError::NotLeader(Some(addr))) => {
                    match self.forward(&addr, command.clone()).await {
                        // The leader could not be reached at all (the write never left): it
                        // may have just gone; ask Raft again for the new one.
                        Err(WriteError::NoLeader) if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(crate::raft::LEADER_POLL).await;
                            continue;
                        }
                        r => r,
                    }
                }
                Err(WriteError::NotLeader(None)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(crate::raft::LEADER_POLL).await;
                    continue;
                }
                Err(WriteError::NotLeader(None)) => Err(WriteError::NoLeader),
                other => other.and_then(into_result),
            };
        };
        crate::metrics::metrics().observe("yurt.raft.apply", started.elapsed());
        r
    }

    /// Proposes an encoded command on this server only (also used when another server
    /// forwarded the write here). A refusal by the state machine is an `Ok` with its error set.
    /// While this server leads no majority (check-quorum), a write is not proposed, and one
    /// waiting for its commit stops waiting: either way the sentence says so. A leader whose
    /// disk is nearly full refuses it too (`raft::space`).
    pub async fn propose_local(&self, command: Vec<u8>) -> Result<ApplyResult, WriteError> {
        if crate::raft::is_leader(&self.raft) && crate::raft::space::low(&self.data_dir) {
            return Err(WriteError::Raft(crate::raft::space::refusal(
                &self.data_dir,
            )));
        }
        let mut lost = self.quorum_lost.clone();
        if *lost.borrow_and_update() {
            return Err(WriteError::Raft(
                "this server has lost contact with a majority of the servers and commits nothing: the write was not applied; send it to another server".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Queued { command, reply })
            .map_err(|_| WriteError::Raft("the server is shutting down".into()))?;
        tokio::select! {
            r = rx => r.map_err(|_| WriteError::Raft("the server is shutting down".into()))?,
            Ok(_) = lost.wait_for(|l| *l) => Err(WriteError::Raft(
                "this server lost contact with a majority of the servers before the write was committed; the write may or may not have been applied: check before sending it again".into(),
            )),
        }
    }

    async fn forward(&self, addr: &str, command: Vec<u8>) -> Result<ApplyResult, WriteError> {
        tracing::debug!(addr, "forwarding write to leader");
        let cached = {
            let leader = self.leader.lock().unwrap_or_else(|e| e.into_inner());
            leader
                .as_ref()
                .filter(|(a, _)| a == addr)
                .map(|(_, c)| c.clone())
        };
        let mut client = match cached {
            Some(c) => c,
            None => {
                let channel = self
                    .dialer
                    .endpoint(addr, yurt_tls::Peer::Server)
                    .map_err(|e| WriteError::Raft(e.to_string()))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .connect()
                    .await
                    .map_err(|_| WriteError::NoLeader)?;
                let client = RaftTransportClient::new(channel)
                    .max_decoding_message_size(crate::raft::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(crate::raft::MAX_MESSAGE_BYTES);
                *self.leader.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((addr.to_string(), client.clone()));
                client
            }
        };
        // A leader that stops answering (paused, partitioned) does not hold the write: once
        // another server is elected (or after FORWARD_WAIT) this one stops waiting. Whether the
        // old leader applied the write is then unknown, and the sentence says so.
        let sent =
            tokio::time::timeout(FORWARD_WAIT, client.forward(RaftPayload { data: command }));
        let outcome = tokio::select! {
            r = sent => r,
            new = another_leader(&self.raft, addr) => {
                *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(WriteError::Raft(format!(
                    "the leader at {addr} stopped answering and {new} was elected; the write may or may not have been applied: check before sending it again"
                )));
            }
        };
        let reply = match outcome {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(WriteError::Raft(s.message().to_string()));
            }
            Err(_) => {
                *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(WriteError::Raft(format!(
                    "the leader at {addr} did not answer within {}s; the write may or may not have been applied",
                    FORWARD_WAIT.as_secs()
                )));
            }
        };
        let result: ApplyResult =
            serde_json::from_slice(&reply.data).map_err(|e| WriteError::Raft(e.to_string()))?;
        into_result(result)
    }
}

/// Waits until this server knows a leader other than the one at `addr`; its address.
async fn another_leader(raft: &Raft, addr: &str) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Some(new) = crate::raft::leader_addr(raft).filter(|a| a != addr) {
            return new;
        }
        if metrics.changed().await.is_err() {
            // Raft is shutting down: the forward's own deadline ends the wait.
            std::future::pending::<()>().await;
        }
    }
}

fn into_result(r: ApplyResult) -> Result<ApplyResult, WriteError> {
    match &r.error {
        Some(e) => Err(WriteError::Refused(e.clone())),
        None => Ok(r),
    }
}

/// How long a write forwarded to the leader waits for its answer.
const FORWARD_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Takes queued commands in batches and proposes each batch as one log entry, with at most
/// `BATCHES_IN_FLIGHT` batches waiting on Raft at a time.
async fn batch_loop(raft: Raft, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything queued while waiting for a slot joins this batch.
        let mut bytes = first.command.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += q.command.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(slot);
        });
    }
}

async fn propose(raft: &Raft, batch: Vec<Queued>) {
    let (commands, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|q| (q.command, q.reply)).unzip();
    let count = commands.len();
    let outcome = raft.client_write(Proposal { commands }).await;
    let results: Vec<Result<ApplyResult, WriteError>> = match outcome {
        Ok(r) if r.data.len() == count => r.data.into_iter().map(Ok).collect(),
        Ok(r) => {
            let e = format!(
                "{count} commands in a log entry gave {} results",
                r.data.len()
            );
            (0..count)
                .map(|_| Err(WriteError::Raft(e.clone())))
                .collect()
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            let addr = f.leader_node.map(|n| n.addr);
            (0..count)
                .map(|_| Err(WriteError::NotLeader(addr.clone())))
                .collect()
        }
        Err(e) => {
            let e = e.to_string();
            (0..count)
                .map(|_| Err(WriteError::Raft(e.clone())))
                .collect()
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}
