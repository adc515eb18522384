//! The Raft log and vote in sled, under `<data_dir>/raft/log`.
//!
//! sled is durable only after a flush: appends, votes, commits and truncations flush before
//! they are acknowledged. Nothing is written while the file system is nearly full
//! ([`super::space`]): the write waits for room instead of failing, which would end Raft. sled,
//! once one of its writes has failed (the disk filled up at once), fails every later call until
//! it is opened again: an operation that fails waits for room, reopens the database and runs
//! once more; what was acknowledged was flushed, so the reopened log holds it.
//!
//! sled drops what it cannot read when it opens a damaged file, without an error. A server
//! that has voted keeps a marker file beside the log (`voted`, written once, outside sled); a
//! log that lost its vote while the marker says there was one is refused at open, before Raft
//! could take the empty log for a new server and bootstrap a cluster of its own.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    Vote,
};
use prost::Message;
use yurt_proto::internal::{log_entry, LogBlank, LogCommands, LogEntry};

use super::{NodeId, StorageError, TypeConfig};

/// sled's page cache; its default is 1 GiB.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Why the log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Sled(#[from] sled::Error),
    #[error("it has lost its contents: this server voted in a Raft election before, but its log holds no vote (the storage engine drops what it cannot read from a damaged file); move this data dir aside and join the server to its cluster again with an empty one")]
    Lost,
    #[error("the storage engine failed reading it ({0}); the log is damaged: move this data dir aside and join the server to its cluster again with an empty one")]
    Panicked(String),
    #[error("cannot write {path}: {source}")]
    Marker {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The sled database and its two trees (cheap handles to share).
#[derive(Clone)]
struct Trees {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
}

fn open_trees(dir: &Path) -> Result<Trees, sled::Error> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let logs = db.open_tree("logs")?;
    let meta = db.open_tree("meta")?;
    Ok(Trees { db, logs, meta })
}

/// How many times, and how far apart, opening the log again is tried after a failure.
const REOPEN_TRIES: u32 = 250;
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Clone)]
pub struct LogStore {
    /// Replaced when the database is reopened after a failure; `None` only if that failed.
    trees: Arc<std::sync::RwLock<Option<Trees>>>,
    /// Last committed index, for `agent-info` (`commit_index`).
    committed: Arc<AtomicU64>,
    /// The marker file that says this log has held a vote; `None` once it exists.
    voted_marker: Option<std::path::PathBuf>,
    /// The log's directory, whose file system must have room before each write.
    dir: std::path::PathBuf,
}

/// The marker beside the log directory `dir` (see the module docs).
fn voted_marker(dir: &Path) -> std::path::PathBuf {
    dir.with_file_name("voted")
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageError::IO {
        source: openraft::StorageIOError::new(subject, verb, AnyError::new(&e)),
    }
}

/// The first byte of a log entry in the binary encoding ([`LogEntry`]); a JSON one (Yurt 0.1)
/// starts with `{`.
const BINARY_ENTRY: u8 = 1;

/// An entry as the protobuf [`LogEntry`], the form the log keeps and servers of 0.2 replicate.
pub(crate) fn entry_to_proto(e: &Entry<TypeConfig>) -> Result<LogEntry, serde_json::Error> {
    let payload = match &e.payload {
        EntryPayload::Blank => log_entry::Payload::Blank(LogBlank {}),
        EntryPayload::Normal(p) => log_entry::Payload::Commands(LogCommands {
            commands: p.commands.clone(),
        }),
        EntryPayload::Membership(m) => {
            log_entry::Payload::MembershipJson(serde_json::to_string(m)?)
        }
    };
    Ok(LogEntry {
        term: e.log_id.leader_id.term,
        leader_node_id: e.log_id.leader_id.node_id,
        index: e.log_id.index,
        payload: Some(payload),
    })
}

/// The entry a [`LogEntry`] holds; the error says what is wrong with it.
pub(crate) fn entry_from_proto(e: LogEntry) -> Result<Entry<TypeConfig>, String> {
    let payload = match e.payload {
        Some(log_entry::Payload::Blank(_)) => EntryPayload::Blank,
        Some(log_entry::Payload::Commands(c)) => EntryPayload::Normal(super::Proposal {
            commands: c.commands,
        }),
        Some(log_entry::Payload::MembershipJson(m)) => {
            EntryPayload::Membership(serde_json::from_str(&m).map_err(|e| e.to_string())?)
        }
        None => return Err("no payload".into()),
    };
    Ok(Entry {
        log_id: LogId::new(CommittedLeaderId::new(e.term, e.leader_node_id), e.index),
        payload,
    })
}

/// A log entry as stored: a tag byte and the protobuf [`LogEntry`] (no JSON, no base64 of the
/// commands: those were the largest cost of writing and replicating entries).
fn encode_entry(e: &Entry<TypeConfig>) -> Result<Vec<u8>, serde_json::Error> {
    let entry = entry_to_proto(e)?;
    let mut out = Vec::with_capacity(1 + entry.encoded_len());
    out.push(BINARY_ENTRY);
    entry
        .encode(&mut out)
        .expect("a Vec grows to hold the message");
    Ok(out)
}

/// Reads an entry in either encoding.
fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, std::io::Error> {
    let bad = |why: String| std::io::Error::other(format!("unreadable log entry: {why}"));
    let Some((&BINARY_ENTRY, rest)) = bytes.split_first() else {
        return serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()));
    };
    entry_from_proto(LogEntry::decode(rest).map_err(|e| bad(e.to_string()))?).map_err(bad)
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<LogStore, OpenError> {
        // sled panics on some damaged files: that is a damaged log, said in one sentence.
        let opened = std::panic::catch_unwind(|| open_trees(dir));
        let trees = opened
            .map_err(|panic| OpenError::Panicked(yurt_types::limits::panic_text(&*panic)))??;
        let marker = voted_marker(dir);
        let has_vote = trees.meta.get("vote")?.is_some();
        if marker.exists() && !has_vote {
            return Err(OpenError::Lost);
        }
        if has_vote && !marker.exists() {
            // A log from before the marker existed: mark it now.
            write_marker(&marker)?;
        }
        let store = LogStore {
            trees: Arc::new(std::sync::RwLock::new(Some(trees))),
            committed: Arc::new(AtomicU64::new(0)),
            voted_marker: (!marker.exists()).then_some(marker),
            dir: dir.to_path_buf(),
        };
        if let Ok(Some(Some(c))) = store.get_meta::<Option<LogId<NodeId>>>("committed") {
            store.committed.store(c.index, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The database as it is now.
    fn trees(&self) -> Result<Trees, sled::Error> {
        self.trees
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| sled::Error::ReportableBug("the Raft log could not be reopened".into()))
    }

    /// Drops the database after a failure, so that it can be opened again.
    fn close(&self) {
        *self.trees.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// One try at opening the database again after [`LogStore::close`].
    fn try_open(&self) -> Result<(), sled::Error> {
        let t = open_trees(&self.dir)?;
        *self.trees.write().unwrap_or_else(|e| e.into_inner()) = Some(t);
        tracing::info!(dir = %self.dir.display(), "the Raft log is open again");
        Ok(())
    }

    /// Opens the database again after a failure, from a read (synchronous). The old one lets
    /// go of its files once its last handle and its background threads are gone: within
    /// moments, waited for here ([`REOPEN_TRIES`] times [`REOPEN_PAUSE`] at most).
    fn reopen(&self) -> Result<(), sled::Error> {
        self.close();
        let mut tries = 0;
        loop {
            match self.try_open() {
                Err(_) if tries < REOPEN_TRIES => {
                    tries += 1;
                    std::thread::sleep(REOPEN_PAUSE);
                }
                done => return done,
            }
        }
    }

    /// [`LogStore::reopen`] for a write, which waits without holding a runtime thread.
    async fn reopen_async(&self) -> Result<(), sled::Error> {
        self.close();
        let mut tries = 0;
        loop {
            match self.try_open() {
                Err(_) if tries < REOPEN_TRIES => {
                    tries += 1;
                    tokio::time::sleep(REOPEN_PAUSE).await;
                }
                done => return done,
            }
        }
    }

    /// Runs a read; if it fails, reopens the database and runs it once more.
    fn read<T>(&self, op: impl Fn(&Trees) -> Result<T, sled::Error>) -> Result<T, sled::Error> {
        match op(&self.trees()?) {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::error!(error = %e, dir = %self.dir.display(), "reading the Raft log failed; opening it again");
                self.reopen()?;
                op(&self.trees()?)
            }
        }
    }

    /// Runs a write and flushes it, once there is room; if it fails, waits for room, reopens
    /// the database and runs it once more.
    async fn durably(
        &self,
        subject: ErrorSubject<NodeId>,
        op: impl Fn(&Trees) -> Result<(), sled::Error>,
    ) -> Result<(), StorageError> {
        let err = |e| io_err(subject.clone(), ErrorVerb::Write, e);
        super::space::wait_for_room(&self.dir, 0, "the Raft log").await;
        let mut again = false;
        loop {
            let trees = self.trees().map_err(err)?;
            let done = match op(&trees) {
                Ok(()) => trees.db.flush_async().await.map(|_| ()),
                Err(e) => Err(e),
            };
            drop(trees);
            match done {
                Ok(()) => return Ok(()),
                Err(e) if !again => {
                    again = true;
                    tracing::error!(error = %e, dir = %self.dir.display(), "writing the Raft log failed; opening it again once there is room");
                    super::space::wait_for_room(&self.dir, 0, "the Raft log").await;
                    self.reopen_async().await.map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// The last committed index as this server knows it (for `agent-info`).
    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// The id of the last log entry, or of the last purged one when the log is empty.
    pub fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let last = self
            .read(|t| t.logs.last())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        match last {
            Some((_, v)) => Ok(Some(Self::decode(&v)?.log_id)),
            None => self.get_meta("last_purged"),
        }
    }

    /// The node ID of the server that writes this log (recorded by [`LogStore::set_owner`]; none
    /// in logs of Yurt 0.2.0 and older).
    pub fn owner(&self) -> Option<NodeId> {
        let v = self.read(|t| t.meta.get("owner")).ok()??;
        std::str::from_utf8(&v).ok()?.parse().ok()
    }

    /// Records the node ID of the server that writes this log, so that a damaged `node-id`
    /// file is caught (or restored) at the next start.
    pub fn set_owner(&self, id: NodeId) -> Result<(), sled::Error> {
        let t = self.trees()?;
        t.meta.insert("owner", id.to_string().as_bytes())?;
        t.db.flush().map(|_| ())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StorageError> {
        let read_err = |e: &dyn std::fmt::Display| {
            io_err(
                ErrorSubject::Store,
                ErrorVerb::Read,
                std::io::Error::other(format!("{name}: {e}")),
            )
        };
        match self.read(|t| t.meta.get(name)).map_err(|e| read_err(&e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| read_err(&e)),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.durably(ErrorSubject::Store, |t| {
            t.meta.insert(name, bytes.as_slice()).map(|_| ())
        })
        .await
    }

    fn decode(bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
        decode_entry(bytes).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = (Bound::Included(key(start)), end);
        let stored = self
            .read(|t| t.logs.range(range).values().collect::<Result<Vec<_>, _>>())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        stored.iter().map(|v| Self::decode(v)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState {
            last_purged_log_id: self.get_meta("last_purged")?,
            last_log_id: self.last_log_id()?,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta("vote", vote).await?;
        if let Some(marker) = self.voted_marker.take() {
            write_marker(&marker).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        }
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        if let Some(c) = committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        // Not flushed: the committed index only saves re-applying entries after a restart, and
        // an older value on disk is always safe. sled writes it out within its flush interval;
        // not at all while the disk is nearly full.
        if super::space::low(&self.dir) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        // A failure here is left for the next write to meet (and reopen the log).
        if let Ok(t) = self.trees() {
            let _ = t.meta.insert("committed", bytes);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((key(e.log_id.index), encode_entry(&e)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|err| io_err(ErrorSubject::Logs, ErrorVerb::Write, err))?;
        let flushed = self
            .durably(ErrorSubject::Logs, |t| {
                let mut batch = sled::Batch::default();
                for (k, bytes) in &encoded {
                    batch.insert(k, bytes.as_slice());
                }
                t.logs.apply_batch(batch)
            })
            .await;
        let io = flushed
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io);
        flushed
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.durably(ErrorSubject::Logs, |t| {
            remove_entries(t, key(log_id.index)..)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.put_meta("last_purged", &log_id).await?;
        self.durably(ErrorSubject::Logs, |t| {
            remove_entries(t, ..=key(log_id.index))
        })
        .await
    }
}

/// Removes the log entries whose keys fall in `range` (not flushed).
fn remove_entries<R: RangeBounds<[u8; 8]>>(t: &Trees, range: R) -> Result<(), sled::Error> {
    let keys: Vec<sled::IVec> = t.logs.range(range).keys().collect::<Result<_, _>>()?;
    for k in keys {
        t.logs.remove(k)?;
    }
    Ok(())
}

/// Writes the `voted` marker durably: the file, then its directory.
fn write_marker(path: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::Marker {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::create(path).map_err(err)?;
    f.sync_all().map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{BasicNode, Membership};

    fn entries() -> Vec<Entry<TypeConfig>> {
        let id = |index| LogId::new(CommittedLeaderId::new(3, 42), index);
        let members = std::collections::BTreeMap::from([(42, BasicNode::new("127.0.0.1:4647"))]);
        vec![
            Entry {
                log_id: id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(2),
                payload: EntryPayload::Membership(Membership::new(
                    vec![std::collections::BTreeSet::from([42])],
                    members,
                )),
            },
            Entry {
                log_id: id(3),
                payload: EntryPayload::Normal(super::super::Proposal {
                    commands: vec![b"one".to_vec(), vec![0, 255, 7], Vec::new()],
                }),
            },
        ]
    }

    #[test]
    fn entries_round_trip_in_the_binary_encoding_and_json_ones_still_read() {
        for e in entries() {
            let bytes = encode_entry(&e).unwrap();
            assert_eq!(bytes[0], BINARY_ENTRY);
            assert_eq!(decode_entry(&bytes).unwrap(), e);
            // What Yurt 0.1 wrote.
            let json = serde_json::to_vec(&e).unwrap();
            assert_eq!(decode_entry(&json).unwrap(), e);
        }
        let err = decode_entry(&[BINARY_ENTRY, 0xff, 0xff]).unwrap_err();
        assert!(
            err.to_string().starts_with("unreadable log entry: "),
            "{err}"
        );
    }
}
