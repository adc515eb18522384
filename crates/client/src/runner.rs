//! Allocation and task runners: start the tasks of allocations the servers want running, stop
//! those they want stopped, restart tasks by their `restart` policy, and report every change.
//!
//! This file holds the local allocation and its persistence, and the watch of the servers'
//! allocations with its reconcile; [`spawn`] starts tasks, [`supervise`] advances them and
//! reports (each task's life is the pure [`step`]), [`alloc_health`] judges allocations for deployments and migrations,
//! [`lifecycle`] signals and restarts tasks on a user's request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use yurt_proto::v1::{
    AllocClientUpdate, AllocDeploymentStatus, Allocation, ClientAllocsRequest, TaskEvent,
    TaskState, UpdateAllocsRequest,
};
use yurt_types::status::*;

use crate::health::{self, Verdict};
use crate::{checks, Client};

mod alloc_health;
mod lifecycle;
mod spawn;
mod step;
mod supervise;

use spawn::Spawn;
pub(crate) use supervise::handle;

/// The layout of the client's persisted state (`client/state`: one [`LocalAlloc`] as JSON per
/// allocation, and this number under `meta/format`). Bump on a change an older client could
/// misread; state written by a newer format is refused, untouched. 1: Yurt 0.2.0 (whose state
/// has no marker; `fixtures/0.2.0/client-alloc.json` is one of its allocations).
pub const CLIENT_STATE_FORMAT: u32 = 1;

/// Reads (and, for state without one, writes) the client state's format; refuses a newer one.
pub(crate) fn check_format(meta: &sled::Tree) -> Result<(), String> {
    let found = meta
        .get("format")
        .map_err(|e| e.to_string())?
        .map(|v| String::from_utf8_lossy(&v).parse::<u32>())
        .transpose()
        .map_err(|_| "its format marker is unreadable".to_string())?;
    match found {
        Some(f) if f > CLIENT_STATE_FORMAT => Err(format!(
            "it was written in client state format {f}, and this client reads format {CLIENT_STATE_FORMAT} at most: downgrades are not supported"
        )),
        Some(_) => Ok(()),
        None => meta
            .insert("format", CLIENT_STATE_FORMAT.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// What the client knows of one allocation; persisted in sled as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalAlloc {
    pub alloc: Allocation,
    pub tasks: BTreeMap<String, LocalTask>,
    pub client_status: String,
    pub client_description: String,
    /// Stop requested by the servers: tasks are being killed.
    pub stopping: bool,
    /// The current status has not reached the servers yet.
    pub dirty: bool,
    /// Health for deployments and migrations (absent in state written before it existed).
    #[serde(default)]
    pub health: health::Tracker,
}

/// The check loops of one allocation; dropping this stops them.
pub(crate) struct Checkers {
    names: Vec<String>,
    /// False when the checks could not be set up (e.g. a port that was not allocated).
    runnable: bool,
    results: checks::Results,
    handles: Vec<tokio::task::AbortHandle>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

impl LocalAlloc {
    /// A newly received allocation: every task pending, due to start at once.
    fn new(alloc: Allocation, dir: &Path) -> LocalAlloc {
        let names: Vec<String> = group_of(&alloc)
            .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default();
        let task = |name: &String| LocalTask {
            state: TaskState {
                state: TASK_PENDING.into(),
                events: vec![event("Received", "Task received by client")],
                ..TaskState::default()
            },
            exec_dir: dir.join(name).join("executor"),
            executor_pid: None,
            restart_at_ms: Some(0),
            restarts_ms: vec![],
            kill_at_ms: None,
            starting: false,
            restart_requested: false,
        };
        LocalAlloc {
            tasks: names.iter().map(|n| (n.clone(), task(n))).collect(),
            alloc,
            client_status: ALLOC_PENDING.into(),
            client_description: String::new(),
            stopping: false,
            dirty: true,
            health: health::Tracker {
                started_ms: now_ms(),
                ..health::Tracker::default()
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalTask {
    pub state: TaskState,
    pub exec_dir: PathBuf,
    /// PID of the `yurt executor` that runs the task.
    pub executor_pid: Option<i32>,
    /// When a pending restart is due (Unix ms).
    pub restart_at_ms: Option<i64>,
    pub restarts_ms: Vec<i64>,
    /// When a stopping task gets SIGKILL (Unix ms).
    pub kill_at_ms: Option<i64>,
    /// Readied and handed to its driver, which has not said yet that it started (pulling an
    /// image can take minutes): still pending, not started again, not judged healthy.
    #[serde(default)]
    pub starting: bool,
    /// `alloc restart`: the task was told to stop and starts again once it exits, without
    /// counting against its `restart` policy.
    #[serde(default)]
    pub restart_requested: bool,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Loads the persisted allocations.
pub(crate) fn load(db: &sled::Tree) -> Result<BTreeMap<String, LocalAlloc>, String> {
    let mut out = BTreeMap::new();
    for kv in db.iter() {
        let (k, v) = kv.map_err(|e| e.to_string())?;
        let mut a: LocalAlloc = serde_json::from_slice(&v)
            .map_err(|e| format!("allocation {}: {e}", String::from_utf8_lossy(&k)))?;
        for t in a.tasks.values_mut() {
            // The client stopped while a driver started the task: whether it started is the
            // driver's to say, as for a running task (re-attached, or lost and restarted).
            if t.starting {
                step::started(t, step::event_time(t));
            }
        }
        out.insert(a.alloc.id.clone(), a);
    }
    Ok(out)
}

pub(crate) fn event(kind: &str, message: impl Into<String>) -> TaskEvent {
    step::event_at(kind, message, now_ms())
}

/// The directory of an allocation: `<data_dir>/client/allocs/<id>`.
pub(crate) fn alloc_dir(client_dir: &Path, alloc_id: &str) -> PathBuf {
    client_dir.join("allocs").join(alloc_id)
}

/// Where a task's stdout or stderr goes: `<alloc_dir>/alloc/logs/<task>.stdout.N`, rotated per
/// the task's `logs` block.
pub(crate) fn log_rotation(
    client_dir: &Path,
    alloc: &Allocation,
    task: &str,
    stderr: bool,
) -> crate::logfiles::Rotation {
    let config = group_of(alloc)
        .and_then(|g| g.tasks.iter().find(|t| t.name == task))
        .and_then(|t| t.logs)
        .unwrap_or(yurt_proto::v1::LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
        });
    crate::logfiles::rotation(
        &alloc_dir(client_dir, &alloc.id).join("alloc").join("logs"),
        task,
        stderr,
        config.max_files,
        config.max_file_size_mb,
    )
}

/// The task group an allocation runs, from the job version it carries.
pub(crate) fn group_of(a: &Allocation) -> Option<&yurt_proto::v1::TaskGroup> {
    a.job
        .as_ref()
        .and_then(|j| j.task_groups.iter().find(|g| g.name == a.task_group))
}

impl Client {
    pub(crate) async fn watch_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let _ = self.wait_registered(Duration::from_secs(3600)).await;
        let mut index = 0;
        // Inside a paged answer: where the next page starts.
        let mut after: Option<(u64, String)> = None;
        loop {
            let (after_index, after_alloc_id) = after.clone().unwrap_or_default();
            let req = ClientAllocsRequest {
                node_id: self.inner.node_id.clone(),
                min_index: index,
                wait_ms: 30_000,
                // Allocations not in an answer are unchanged (reconcile leaves them alone).
                changed_only: true,
                // A page at a time, each job once: the answer's size does not depend on how
                // large the jobs are (an older server answers all at once, jobs included).
                paged: true,
                after_index,
                after_alloc_id,
            };
            let mut nodes = self.inner.servers.get();
            let call = nodes.client_allocs(req);
            let reply = tokio::select! {
                r = call => r,
                // Another call found this server gone: ask the next one.
                _ = self.inner.servers.moved.notified() => continue,
                _ = shutdown.changed() => return,
            };
            match self.inner.servers.check(reply) {
                Ok(r) => {
                    let mut r = r.into_inner();
                    yurt_types::feed::rejoin(&mut r.allocs, &r.jobs);
                    if r.more {
                        after = Some((r.next_after_index, r.next_after_alloc_id));
                    } else {
                        after = None;
                        index = r.index;
                    }
                    self.reconcile(r.allocs).await;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), "cannot fetch allocations; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Saves an allocation's local state; durable at the next [`Client::flush_state`], which
    /// comes before anything acts on it (tasks start, the servers hear of it).
    pub(crate) fn persist(&self, a: &LocalAlloc) {
        let saved = serde_json::to_vec(a)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.inner
                    .db
                    .insert(a.alloc.id.as_bytes(), bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            tracing::error!(alloc = %a.alloc.id, error = %e, "cannot save client state");
        }
    }

    /// Makes every saved change durable, with one flush for all of them.
    pub(crate) fn flush_state(&self) {
        if let Err(e) = self.inner.db.flush() {
            tracing::error!(error = %e, "cannot save client state");
        }
    }

    /// Brings local allocations in line with the servers' view.
    pub(crate) async fn reconcile(&self, server: Vec<Allocation>) {
        let mut to_start = Vec::new();
        let mut report = false;
        {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for a in server {
                match allocs.get_mut(&a.id) {
                    None if a.desired_status == ALLOC_DESIRED_RUN
                        && !alloc_client_terminal(&a.client_status) =>
                    {
                        let local = LocalAlloc::new(a.clone(), &alloc_dir(&self.inner.dir, &a.id));
                        tracing::info!(alloc = %a.id, name = %a.name, "starting allocation");
                        self.persist(&local);
                        allocs.insert(a.id.clone(), local);
                        to_start.push(a.id.clone());
                    }
                    None => {}
                    Some(local) if local.alloc.modify_index != a.modify_index => {
                        let stop = a.desired_status != ALLOC_DESIRED_RUN;
                        if a.deployment_id != local.alloc.deployment_id {
                            // Updated in place into a new deployment: health is judged afresh.
                            local.health = health::Tracker {
                                started_ms: now_ms(),
                                ..health::Tracker::default()
                            };
                            local.dirty = true;
                        }
                        // The servers could not hear from this node for a while: they say
                        // again what the allocation is.
                        if a.client_status == ALLOC_UNKNOWN && !stop {
                            local.dirty = true;
                            report = true;
                        }
                        local.alloc = a;
                        if stop && !local.stopping {
                            local.stopping = true;
                            self.stop_tasks(local, now_ms());
                        }
                        self.persist(local);
                    }
                    Some(_) => {}
                }
            }
        }
        self.flush_state();
        if !to_start.is_empty() || report {
            self.tick().await;
        }
    }

    /// The local view of an allocation (for logs).
    pub(crate) fn local_alloc(&self, id: &str) -> Option<LocalAlloc> {
        self.inner
            .allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The address tasks' ports are reached at: the host this agent advertises.
    pub(crate) fn host_ip(&self) -> String {
        let addr = &self.inner.config.advertise_addr;
        addr.rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .to_string()
    }

    pub(crate) fn client_dir(&self) -> &Path {
        &self.inner.dir
    }
}

#[cfg(test)]
mod tests;
