//! The state machine: `yurt_core::state::State` in memory, snapshots in one file
//! (`<data_dir>/raft/snapshots/current.snap`), rebuilt on start from that snapshot plus the log
//! entries after it.
//!
//! Snapshot file layout: the magic `YURTSNP1`, a big-endian u32 length, that many bytes of
//! JSON `SnapshotMeta` (openraft's: last log id, membership), then the encoded
//! `yurt.internal.v1.StateSnapshot` (which carries its own format version).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StoredMembership,
};
use prost::Message;
use tokio::sync::watch;
use yurt_core::internal::Command;
use yurt_core::state::State;

use super::{ApplyResult, NodeId, StorageError, TypeConfig};

const MAGIC: &[u8; 8] = b"YURTSNP1";

/// Why the state could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is not a Yurt snapshot (bad header)")]
    BadHeader { path: PathBuf },
    #[error("snapshot {path}: {source}")]
    State {
        path: PathBuf,
        source: yurt_core::state::SnapshotError,
    },
}

struct Applied {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The last snapshot: its metadata and the encoded state.
type CurrentSnapshot = Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>;

struct Inner {
    state: RwLock<State>,
    applied: Mutex<Applied>,
    dir: PathBuf,
    current: Mutex<CurrentSnapshot>,
    index_tx: watch::Sender<u64>,
    /// The events of the applied commands, for the event stream.
    events: crate::events::EventLog,
}

/// Read access to the replicated state, shared by the gRPC services and the leader's loops.
#[derive(Clone)]
pub struct StateHandle {
    inner: Arc<Inner>,
}

impl StateHandle {
    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// A copy of the current state for a long read (an evaluation, a plan), made without
    /// holding the lock for more than the copy: the state's maps are persistent, so the copy
    /// shares their rows and later changes copy only what they touch.
    pub fn snapshot(&self) -> State {
        self.read(State::clone)
    }

    /// Runs `f` on a [`StateHandle::snapshot`]: for reads that walk many rows (lists,
    /// reports, a snapshot file), which then hold the lock only for the copy.
    pub fn scan<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.snapshot())
    }

    /// Waits until the state's index exceeds `min_index` or `wait` passes; returns the index.
    pub async fn wait_past(&self, min_index: u64, wait: Duration) -> u64 {
        let mut rx = self.inner.index_tx.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > min_index)).await;
        let idx = *rx.borrow();
        idx
    }

    /// Waits until `done` holds of the state, checked after every applied entry, or until
    /// `wait` passes.
    pub async fn wait_until(&self, wait: Duration, done: impl Fn(&State) -> bool) {
        let mut rx = self.inner.index_tx.subscribe();
        let check = async {
            loop {
                // Marked seen before the state is read: an entry applied in between wakes us.
                rx.borrow_and_update();
                if self.read(&done) || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(wait, check).await;
    }

    /// A receiver that changes whenever an entry is applied.
    /// The events of the applied commands.
    pub fn events(&self) -> &crate::events::EventLog {
        &self.inner.events
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.index_tx.subscribe()
    }

    /// Index and term of the last snapshot taken or installed.
    pub fn last_snapshot(&self) -> Option<LogId<NodeId>> {
        let cur = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        cur.as_ref().and_then(|(m, _)| m.last_log_id)
    }
}

#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::IO {
        source: openraft::StorageIOError::new(
            ErrorSubject::StateMachine,
            verb,
            AnyError::error(e.to_string()),
        ),
    }
}

fn snapshot_file(dir: &Path) -> PathBuf {
    dir.join("current.snap")
}

fn encode_file(meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8]) -> Vec<u8> {
    let meta_json = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + meta_json.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(data);
    out
}

fn decode_file(bytes: &[u8]) -> Option<(SnapshotMeta<NodeId, BasicNode>, &[u8])> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let meta = serde_json::from_slice(rest.get(4..4 + len)?).ok()?;
    Some((meta, &rest[4 + len..]))
}

/// Writes a file atomically: temp file, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl StateMachine {
    /// Opens the state machine, loading the last snapshot from `dir` if there is one.
    pub fn open(dir: &Path) -> Result<StateMachine, LoadError> {
        let io = |source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = snapshot_file(dir);
        let mut state = State::default();
        let mut applied = Applied {
            last: None,
            membership: StoredMembership::default(),
        };
        let mut current = None;
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            let (meta, data) =
                decode_file(&bytes).ok_or(LoadError::BadHeader { path: path.clone() })?;
            state = State::from_snapshot(data).map_err(|source| LoadError::State {
                path: path.clone(),
                source,
            })?;
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            current = Some((meta, data.to_vec()));
        }
        let (index_tx, _) = watch::channel(state.index);
        Ok(StateMachine {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                applied: Mutex::new(applied),
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                index_tx,
                events: crate::events::EventLog::default(),
            }),
        })
    }

    pub fn handle(&self) -> StateHandle {
        StateHandle {
            inner: self.inner.clone(),
        }
    }

    /// Writes the snapshot file once there is room for it: a snapshot that fails for want of
    /// space (the old file stays) waits for room and is written again, since openraft ends a
    /// server's Raft at the first storage error.
    async fn save_current(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        let dir = &self.inner.dir;
        let file = encode_file(meta, &data);
        let mut said = false;
        loop {
            super::space::wait_for_room(dir, file.len() as u64, "the snapshot").await;
            match write_atomic(&snapshot_file(dir), &file) {
                Ok(()) => break,
                Err(e) if super::space::is_full(&e) => {
                    let _ = std::fs::remove_file(snapshot_file(dir).with_extension("tmp"));
                    if !std::mem::replace(&mut said, true) {
                        tracing::error!(dir = %dir.display(), "no space left on device for the snapshot; writing it again once space is freed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(sm_err(ErrorVerb::Write, e)),
            }
        }
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.clone(), data));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last, membership) = {
            let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
            let applied = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
            (
                state.to_snapshot(yurt_types::VERSION),
                applied.last,
                applied.membership.clone(),
            )
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: last.map_or("0-0".into(), |l| {
                format!("{}-{}", l.leader_id.term, l.index)
            }),
        };
        self.save_current(&meta, data.clone()).await?;
        tracing::info!(
            index = last.map(|l| l.index),
            bytes = data.len(),
            "snapshot written"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Applies one command of a log entry; a command that cannot be decoded or is refused is
/// answered with the reason and changes nothing.
fn apply_command(
    state: &mut State,
    index: u64,
    bytes: &[u8],
    events: &crate::events::EventLog,
) -> ApplyResult {
    let refused = |error: String| ApplyResult {
        error: Some(error),
        index,
        ..ApplyResult::default()
    };
    let cmd = match Command::decode(bytes) {
        Err(e) => return refused(format!("undecodable command at index {index}: {e}")),
        Ok(cmd) => cmd,
    };
    // What the command touches is read before applying it consumes it; its events carry the
    // objects as they are after.
    let touched = yurt_core::events::touched(&cmd);
    match state.apply_owned(index, cmd) {
        Ok(a) => {
            events.publish(yurt_core::events::events(state, index, &touched));
            ApplyResult {
                error: None,
                index,
                job_modify_index: a.job_modify_index,
                eval_id: a.eval_id,
            }
        }
        Err(e) => refused(e.to_string()),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let a = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
        Ok((a.last, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<ApplyResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut last_index = None;
        {
            let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            let mut applied = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
            for entry in entries {
                let index = entry.log_id.index;
                applied.last = Some(entry.log_id);
                last_index = Some(index);
                let result = match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        Vec::new()
                    }
                    EntryPayload::Normal(p) => p
                        .commands
                        .iter()
                        .map(|bytes| apply_command(&mut state, index, bytes, &self.inner.events))
                        .collect(),
                };
                if state.index < index {
                    state.index = index;
                }
                out.push(result);
            }
        }
        if let Some(i) = last_index {
            self.inner.index_tx.send_replace(i);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let new_state = State::from_snapshot(&data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let index = new_state.index;
        {
            let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            let mut applied = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
            *state = new_state;
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.save_current(meta, data).await?;
        self.inner.index_tx.send_replace(index);
        tracing::info!(index, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let cur = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cur.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_file_round_trips_and_rejects_garbage() {
        let meta = SnapshotMeta::<NodeId, BasicNode>::default();
        let bytes = encode_file(&meta, b"state");
        let (m, data) = decode_file(&bytes).unwrap();
        assert_eq!(m, meta);
        assert_eq!(data, b"state");
        assert!(decode_file(b"NOTASNAPSHOT").is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("current.snap"), b"garbage").unwrap();
        let err = StateMachine::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is not a Yurt snapshot"), "{err}");
    }

    #[test]
    fn a_scan_holds_no_lock_while_it_runs_and_sees_the_state_it_began_with() {
        let dir = tempfile::tempdir().unwrap();
        let h = StateMachine::open(dir.path()).unwrap().handle();
        let (started, running) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|sc| {
            let h2 = &h;
            let scan = sc.spawn(move || {
                h2.scan(|s| {
                    started.send(()).unwrap();
                    finished.recv().unwrap();
                    s.index
                })
            });
            running.recv().unwrap();
            // A write goes through while the scan runs; the scan keeps its view.
            let mut state = h.inner.state.try_write().expect("a scan holds the lock");
            state.index = 99;
            drop(state);
            finish.send(()).unwrap();
            assert_eq!(scan.join().unwrap(), 0);
        });
        assert_eq!(h.read(|s| s.index), 99);
        // A plain read does hold it.
        h.read(|_| assert!(h.inner.state.try_write().is_err()));
    }
}
