//! Allocation and task runners: start the tasks of allocations the servers want running, stop
//! those they want stopped, restart tasks by their `restart` policy, and report every change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use yurt_proto::v1::{
    value, AllocClientUpdate, AllocDeploymentStatus, Allocation, ClientAllocsRequest, TaskEvent,
    TaskState, UpdateAllocsRequest,
};
use yurt_types::status::*;

use crate::executor::{self, ExecSpec};
use crate::health::{self, Verdict};
use crate::launcher::{LaunchError, Launcher};
use crate::restart::{decide, Decision};
use crate::{checks, Client};

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
}

/// How long the supervisor waits after a task ends for other changes to report with it.
const COALESCE: Duration = Duration::from_millis(5);

/// A task whose executor a pass starts.
struct Spawn {
    alloc_id: String,
    task: String,
    exec_dir: PathBuf,
}

/// Starts an executor for each dir; the results in order. They are forked by the launcher
/// ([`crate::launcher`]), started first if need be; when `exe` has no launcher, or it ends,
/// the rest are started directly ([`spawn_direct`]).
fn spawn_executors(
    handle: &tokio::runtime::Handle,
    exe: &Path,
    launcher: &std::sync::Mutex<Option<Launcher>>,
    dirs: &[PathBuf],
) -> Vec<Result<i32, String>> {
    let mut launcher = launcher.lock().unwrap_or_else(|e| e.into_inner());
    if launcher.is_none() {
        match Launcher::start(exe) {
            Ok(l) => *launcher = Some(l),
            Err(e) => {
                tracing::debug!(error = %e, "no executor launcher; starting executors directly")
            }
        }
    }
    let mut out = Vec::with_capacity(dirs.len());
    let mut rest = dirs;
    while let (Some(l), Some((dir, more))) = (launcher.as_mut(), rest.split_first()) {
        match l.launch(dir) {
            Ok(pid) => out.push(Ok(pid)),
            Err(LaunchError::Unsuitable) => {
                out.extend(spawn_direct(handle, exe, std::slice::from_ref(dir)))
            }
            Err(LaunchError::Failed(why)) => {
                out.push(Err(format!("cannot start the executor: {why}")))
            }
            Err(LaunchError::Gone { sent, why }) => {
                tracing::warn!(%why, "the executor launcher ended; starting executors directly until it is restarted");
                *launcher = None;
                if !sent {
                    break;
                }
                // It may have forked this one before it ended: starting another could run the
                // task twice, so this start fails (and the restart policy takes over).
                out.push(Err(format!(
                    "the executor launcher ended before it answered ({why})"
                )));
            }
        }
        rest = more;
    }
    drop(launcher);
    out.extend(spawn_direct(handle, exe, rest));
    out
}

/// Starts `yurt executor DIR` for each dir, on a few threads at once; the results in order.
/// Each executor is reaped by the runtime when it ends while this agent runs (after a restart,
/// init does).
fn spawn_direct(
    handle: &tokio::runtime::Handle,
    exe: &Path,
    dirs: &[PathBuf],
) -> Vec<Result<i32, String>> {
    let start = |dir: &PathBuf| -> Result<i32, String> {
        let _runtime = handle.enter();
        let mut child = tokio::process::Command::new(exe)
            .arg("executor")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the executor {}: {e}", exe.display()))?;
        let pid = child.id().map_or(0, |p| p as i32);
        handle.spawn(async move {
            let _ = child.wait().await;
        });
        Ok(pid)
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    if dirs.len() < 2 * threads {
        return dirs.iter().map(start).collect();
    }
    let chunk = dirs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(start).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .zip(dirs.chunks(chunk))
            .flat_map(|(w, part)| {
                w.join().unwrap_or_else(|_| {
                    vec![Err("the thread starting executors panicked".to_string()); part.len()]
                })
            })
            .collect()
    })
}

fn now_ms() -> i64 {
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
        let a: LocalAlloc = serde_json::from_slice(&v)
            .map_err(|e| format!("allocation {}: {e}", String::from_utf8_lossy(&k)))?;
        out.insert(a.alloc.id.clone(), a);
    }
    Ok(out)
}

fn event(kind: &str, message: impl Into<String>) -> TaskEvent {
    TaskEvent {
        r#type: kind.into(),
        time_unix_ms: now_ms(),
        message: message.into(),
        ..TaskEvent::default()
    }
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

/// Marks a task as ended.
fn finish(t: &mut LocalTask, failed: bool, now: i64) {
    t.state.state = TASK_DEAD.into();
    t.state.failed = failed;
    t.state.finished_at_unix_ms = now;
}

/// An allocation's client status from its tasks' states: failed if all ended and one failed,
/// complete if all ended, running if one runs, else pending.
fn alloc_status<'a>(
    mut states: impl Iterator<Item = &'a TaskState> + Clone,
) -> (&'static str, &'static str) {
    let all_dead = states.clone().all(|s| s.state == TASK_DEAD);
    if all_dead && states.clone().any(|s| s.failed) {
        (ALLOC_FAILED, "Failed tasks")
    } else if all_dead {
        (ALLOC_COMPLETE, "All tasks have completed")
    } else if states.any(|s| s.state == TASK_RUNNING) {
        (ALLOC_RUNNING, "Tasks are running")
    } else {
        (ALLOC_PENDING, "No tasks have started")
    }
}

/// The task group an allocation runs, from the job version it carries.
fn group_of(a: &Allocation) -> Option<&yurt_proto::v1::TaskGroup> {
    a.job
        .as_ref()
        .and_then(|j| j.task_groups.iter().find(|g| g.name == a.task_group))
}

/// Replaces `${NAME}` with values from `env`; unknown names are left as written.
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
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

    /// Runs the supervisor pass when a task ends (its executor answers the `wait` request), a
    /// few milliseconds later so that changes close together go out in one report, and at
    /// least every `tick` for restart and kill deadlines.
    pub(crate) async fn supervise_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        // Tasks re-attached after a restart are watched like new ones.
        let running: Vec<PathBuf> = {
            let allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            allocs
                .values()
                .flat_map(|a| a.tasks.values())
                .filter(|t| t.state.state == TASK_RUNNING)
                .map(|t| t.exec_dir.clone())
                .collect()
        };
        for dir in running {
            self.watch_exit(&dir);
        }
        let mut last_gc = tokio::time::Instant::now();
        loop {
            self.tick().await;
            if last_gc.elapsed() >= self.inner.config.gc_interval {
                last_gc = tokio::time::Instant::now();
                self.collect_garbage();
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.tick) => {}
                _ = self.inner.wake.notified() => {
                    tokio::time::sleep(COALESCE).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Forgets the terminal allocations [`crate::gc::victims`] names: their saved state, their
    /// health checks and their alloc dirs.
    fn collect_garbage(&self) {
        let gone: Vec<String> = {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            let gone = crate::gc::victims(&allocs, self.inner.config.gc_max_allocs);
            for id in &gone {
                allocs.remove(id);
                if let Err(e) = self.inner.db.remove(id.as_bytes()) {
                    tracing::error!(alloc = %id, error = %e, "cannot save client state");
                }
            }
            gone
        };
        if gone.is_empty() {
            return;
        }
        {
            let mut checkers = self
                .inner
                .checkers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in &gone {
                checkers.remove(id);
            }
        }
        self.flush_state();
        for id in &gone {
            let dir = alloc_dir(&self.inner.dir, id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(alloc = %id, "garbage collected the allocation"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(alloc = %id, error = %e, "cannot remove the alloc dir {}", dir.display())
                }
            }
        }
    }

    /// Wakes the supervisor when the task under `exec_dir` ends. An executor that cannot be
    /// reached (not listening yet, from an older release, gone) is left to the periodic pass.
    fn watch_exit(&self, exec_dir: &Path) {
        let client = self.clone();
        let dir = exec_dir.to_path_buf();
        tokio::spawn(async move {
            for _ in 0..100 {
                match executor::wait(&dir).await {
                    Ok(_) => break,
                    Err(_) if executor::read_exit(&dir).is_some() => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            client.inner.wake.notify_one();
        });
    }

    /// Saves an allocation's local state; durable at the next [`Client::flush_state`], which
    /// comes before anything acts on it (tasks start, the servers hear of it).
    fn persist(&self, a: &LocalAlloc) {
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
    fn flush_state(&self) {
        if let Err(e) = self.inner.db.flush() {
            tracing::error!(error = %e, "cannot save client state");
        }
    }

    /// Brings local allocations in line with the servers' view.
    async fn reconcile(&self, server: Vec<Allocation>) {
        let mut to_start = Vec::new();
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
                        local.alloc = a;
                        if stop && !local.stopping {
                            local.stopping = true;
                            self.stop_tasks(local);
                        }
                        self.persist(local);
                    }
                    Some(_) => {}
                }
            }
        }
        self.flush_state();
        if !to_start.is_empty() {
            self.tick().await;
        }
    }

    /// Asks every running task of an allocation to stop: SIGTERM now, SIGKILL after kill_timeout.
    fn stop_tasks(&self, local: &mut LocalAlloc) {
        let how: BTreeMap<String, (u64, Signal)> = group_of(&local.alloc)
            .map(|g| {
                g.tasks
                    .iter()
                    .map(|t| {
                        let signal = t.kill_signal.parse().unwrap_or(Signal::SIGTERM);
                        (t.name.clone(), (t.kill_timeout_ms, signal))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (name, t) in local.tasks.iter_mut() {
            t.restart_at_ms = None;
            if t.state.state == TASK_RUNNING {
                let (timeout, signal) = how.get(name).copied().unwrap_or((5_000, Signal::SIGTERM));
                executor::stop(&t.exec_dir, signal);
                t.kill_at_ms = Some(now_ms() + timeout as i64);
                t.state
                    .events
                    .push(event("Killing", format!("Sent {signal}")));
            } else if t.state.state == TASK_PENDING {
                t.state.state = TASK_DEAD.into();
                t.state.finished_at_unix_ms = now_ms();
            }
        }
    }

    /// Readies a task to start: its directories, environment and `spec.json`; the pass then
    /// starts its executor ([`spawn_executors`]) once it has let go of the allocations.
    fn prepare_task(
        &self,
        local: &LocalAlloc,
        task_name: &str,
        t: &mut LocalTask,
    ) -> Result<(), String> {
        let a = &local.alloc;
        let task = group_of(a)
            .and_then(|g| g.tasks.iter().find(|x| x.name == task_name))
            .ok_or_else(|| format!("task {task_name:?} is not in the allocation's job"))?;
        let adir = alloc_dir(&self.inner.dir, &a.id);
        let task_dir = adir.join(task_name);
        let logs = adir.join("alloc").join("logs");
        for d in [&task_dir, &logs, &t.exec_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(executor::exit_path(&t.exec_dir));
        let _ = std::fs::remove_file(executor::pid_path(&t.exec_dir));
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        );
        for prefix in ["YURT", "NOMAD"] {
            env.insert(format!("{prefix}_ALLOC_ID"), a.id.clone());
            env.insert(format!("{prefix}_ALLOC_NAME"), a.name.clone());
            env.insert(format!("{prefix}_JOB_NAME"), a.job_id.clone());
            env.insert(format!("{prefix}_GROUP_NAME"), a.task_group.clone());
            env.insert(format!("{prefix}_TASK_NAME"), task_name.into());
            env.insert(
                format!("{prefix}_ALLOC_DIR"),
                adir.join("alloc").display().to_string(),
            );
            env.insert(format!("{prefix}_TASK_DIR"), task_dir.display().to_string());
            if let Some(i) = a
                .name
                .rsplit_once('[')
                .and_then(|(_, r)| r.strip_suffix(']'))
            {
                env.insert(format!("{prefix}_ALLOC_INDEX"), i.to_string());
            }
            for p in &a.ports {
                let host = self.host_ip();
                let port = if p.to > 0 { p.to } else { p.value };
                env.insert(format!("{prefix}_PORT_{}", p.label), port.to_string());
                env.insert(
                    format!("{prefix}_HOST_PORT_{}", p.label),
                    p.value.to_string(),
                );
                env.insert(format!("{prefix}_IP_{}", p.label), host.clone());
                env.insert(
                    format!("{prefix}_ADDR_{}", p.label),
                    format!("{host}:{}", p.value),
                );
            }
        }
        let base = env.clone();
        for (k, v) in &task.env {
            env.insert(k.clone(), interpolate(v, &base));
        }
        let string = |key: &str| match task.config.get(key).and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        };
        let command = string("command").ok_or("task has no config.command")?;
        let args = match task.config.get("args").and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::ListValue(l)) => l
                .values
                .iter()
                .filter_map(|v| match &v.kind {
                    Some(value::Kind::StringValue(s)) => Some(interpolate(s, &env)),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        let spec = ExecSpec {
            command: interpolate(&command, &env),
            args,
            env,
            dir: task_dir,
            stdout: log_rotation(&self.inner.dir, a, task_name, false),
            stderr: log_rotation(&self.inner.dir, a, task_name, true),
        };
        let bytes = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
        std::fs::write(executor::spec_path(&t.exec_dir), bytes)
            .map_err(|e| format!("cannot write task spec: {e}"))?;
        t.state.state = TASK_RUNNING.into();
        t.state.started_at_unix_ms = now_ms();
        t.state
            .events
            .push(event("Started", "Task started by client"));
        Ok(())
    }

    /// One pass of the task supervisor: start due tasks, notice exits, enforce kill deadlines,
    /// derive allocation status, persist and report changes.
    pub(crate) async fn tick(&self) {
        let _serial = self.inner.tick_serial.lock().await;
        let now = now_ms();
        let mut updates = Vec::new();
        let mut changed = false;
        let mut spawns = Vec::new();
        {
            let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
            for local in allocs.values_mut() {
                let before = (
                    local.client_status.clone(),
                    local.tasks.clone(),
                    local.health.clone(),
                );
                let names: Vec<String> = local.tasks.keys().cloned().collect();
                for name in names {
                    let mut t = local.tasks[&name].clone();
                    self.advance_task(local, &name, &mut t, now, &mut spawns);
                    local.tasks.insert(name, t);
                }
                let (status, desc) = alloc_status(local.tasks.values().map(|t| &t.state));
                local.client_status = status.into();
                local.client_description = desc.into();
                // Tasks started in this pass count from when they started, not from the pass.
                self.track_health(local, now_ms());
                if before.0 != local.client_status
                    || before.1 != local.tasks
                    || before.2 != local.health
                {
                    local.dirty = true;
                    self.persist(local);
                    changed = true;
                }
                if local.dirty {
                    updates.push(AllocClientUpdate {
                        alloc_id: local.alloc.id.clone(),
                        client_status: local.client_status.clone(),
                        client_description: local.client_description.clone(),
                        task_states: local
                            .tasks
                            .iter()
                            .map(|(k, t)| (k.clone(), t.state.clone()))
                            .collect(),
                        deployment_status: local.health.healthy.map(|h| AllocDeploymentStatus {
                            healthy: Some(h),
                            timestamp_unix_ms: local.health.decided_ms,
                            ..AllocDeploymentStatus::default()
                        }),
                    });
                }
            }
        }
        if changed {
            self.flush_state();
        }
        if !spawns.is_empty() {
            self.start_executors(spawns).await;
        }
        if updates.is_empty() {
            return;
        }
        let sent: BTreeSet<String> = updates.iter().map(|u| u.alloc_id.clone()).collect();
        let req = UpdateAllocsRequest {
            node_id: self.inner.node_id.clone(),
            updates,
        };
        let servers = &self.inner.servers;
        match servers.check(servers.get().update_allocs(req).await) {
            Ok(_) => {
                let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
                for id in sent {
                    if let Some(a) = allocs.get_mut(&id) {
                        a.dirty = false;
                        self.persist(a);
                    }
                }
                self.flush_state();
            }
            Err(s) => {
                tracing::warn!(error = %s.message(), "cannot report allocation status; will retry")
            }
        }
    }

    /// Starts the executors of the tasks a pass readied, several at once (each start waits for
    /// the `exec` of the `yurt` binary, a millisecond or two), then records their PIDs; a task
    /// whose executor cannot start fails with a `Driver Failure` event.
    async fn start_executors(&self, spawns: Vec<Spawn>) {
        let exe = self.inner.config.executor_exe.clone();
        let dirs: Vec<PathBuf> = spawns.iter().map(|s| s.exec_dir.clone()).collect();
        let handle = tokio::runtime::Handle::current();
        let launcher = self.inner.launcher.clone();
        let started =
            tokio::task::spawn_blocking(move || spawn_executors(&handle, &exe, &launcher, &dirs))
                .await
                .unwrap_or_else(|e| {
                    vec![Err(format!("cannot start executors: {e}")); spawns.len()]
                });
        let now = now_ms();
        let mut allocs = self.inner.allocs.lock().unwrap_or_else(|e| e.into_inner());
        for (s, result) in spawns.iter().zip(started) {
            let Some(local) = allocs.get_mut(&s.alloc_id) else {
                continue;
            };
            let Some(t) = local.tasks.get_mut(&s.task) else {
                continue;
            };
            match result {
                Ok(pid) => {
                    t.executor_pid = Some(pid);
                    self.watch_exit(&s.exec_dir);
                }
                Err(e) => {
                    finish(t, true, now);
                    t.state.events.push(event("Driver Failure", e));
                    local.dirty = true;
                }
            }
            self.persist(local);
        }
        drop(allocs);
        self.flush_state();
    }

    /// One step of one task: start it when due, notice its exit (then restart it, or finish
    /// it, per the `restart` policy), notice a lost executor, enforce the kill deadline.
    fn advance_task(
        &self,
        local: &LocalAlloc,
        name: &str,
        t: &mut LocalTask,
        now: i64,
        spawns: &mut Vec<Spawn>,
    ) {
        match t.state.state.as_str() {
            TASK_PENDING if !local.stopping && t.restart_at_ms.is_some_and(|at| at <= now) => {
                t.restart_at_ms = None;
                match self.prepare_task(local, name, t) {
                    Ok(()) => spawns.push(Spawn {
                        alloc_id: local.alloc.id.clone(),
                        task: name.to_string(),
                        exec_dir: t.exec_dir.clone(),
                    }),
                    Err(e) => {
                        finish(t, true, now);
                        t.state.events.push(event("Driver Failure", e));
                    }
                }
            }
            TASK_RUNNING => {
                if let Some(status) = executor::read_exit(&t.exec_dir) {
                    let mut ev = event(
                        "Terminated",
                        match status.signal {
                            0 => format!("Exit Code: {}", status.code),
                            sig => format!("Exit Code: {}, Signal: {sig}", 128 + sig),
                        },
                    );
                    ev.exit_code = status.code;
                    ev.signal = status.signal;
                    t.state.events.push(ev);
                    if let Ok(why) = std::fs::read_to_string(t.exec_dir.join("error")) {
                        t.state.events.push(event("Driver Failure", why));
                    }
                    if local.stopping {
                        finish(t, false, now);
                        return;
                    }
                    let batch = local
                        .alloc
                        .job
                        .as_ref()
                        .is_some_and(|j| j.r#type == JOB_TYPE_BATCH);
                    let policy = group_of(&local.alloc)
                        .and_then(|g| g.restart.clone())
                        .unwrap_or_default();
                    match decide(&policy, &t.restarts_ms, now, status.success(), batch) {
                        Decision::Complete => finish(t, false, now),
                        Decision::Fail { reason } => {
                            finish(t, true, now);
                            t.state.events.push(event("Not Restarting", reason));
                        }
                        Decision::Restart { at_ms, reason } => {
                            t.state.state = TASK_PENDING.into();
                            t.state.restarts += 1;
                            t.restarts_ms.push(now);
                            t.restart_at_ms = Some(at_ms);
                            t.state.events.push(event("Restarting", reason));
                        }
                    }
                    return;
                }
                // The executor records the exit; if it is gone too, nobody will. (It may have
                // written the exit and ended just now: look once more before calling it lost.)
                let executor_gone = t.executor_pid.is_none_or(|p| !executor::alive(p));
                let task_alive = executor::read_pid(&t.exec_dir).is_some_and(executor::alive);
                if executor_gone && !task_alive && executor::read_exit(&t.exec_dir).is_none() {
                    finish(t, !local.stopping, now);
                    t.state.events.push(event(
                        "Task Lost",
                        "the task's executor exited unexpectedly",
                    ));
                } else if t.kill_at_ms.is_some_and(|at| at <= now) {
                    executor::stop(&t.exec_dir, Signal::SIGKILL);
                    t.kill_at_ms = None;
                }
            }
            _ => {}
        }
    }

    /// Decides an allocation's health once its tasks (and checks) allow, running its checks
    /// meanwhile; stops the checks once decided or when health no longer applies.
    fn track_health(&self, local: &mut LocalAlloc, now: i64) {
        let id = local.alloc.id.clone();
        // An allocation that failed or finished by itself is still judged (unhealthy: its tasks
        // ended); one the servers stopped is not.
        let decided = local.health.healthy.is_some() || local.stopping;
        let Some(spec) = health::spec_for(&local.alloc).filter(|_| !decided) else {
            self.inner
                .checkers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return;
        };
        if local.health.started_ms == 0 {
            local.health.started_ms = now;
        }
        let passing_since = if spec.use_checks {
            self.checks_passing_since(local)
        } else {
            None
        };
        let verdict = health::judge(
            &spec,
            &local.health,
            local.tasks.values().map(|t| &t.state),
            passing_since,
            now,
        );
        let healthy = match verdict {
            Verdict::Undecided => return,
            Verdict::Healthy => true,
            Verdict::Unhealthy(why) => {
                for t in local.tasks.values_mut() {
                    t.state.events.push(event("Alloc Unhealthy", why.clone()));
                }
                false
            }
        };
        tracing::info!(alloc = %id, healthy, "allocation health decided");
        local.health.healthy = Some(healthy);
        local.health.decided_ms = now;
        self.inner
            .checkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Since when all of an allocation's checks pass; starts its check loops the first time.
    fn checks_passing_since(&self, local: &LocalAlloc) -> Option<i64> {
        let mut checkers = self
            .inner
            .checkers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = checkers.entry(local.alloc.id.clone()).or_insert_with(|| {
            let host = self.host_ip();
            let targets = checks::targets(&local.alloc, &host, |task| {
                local
                    .tasks
                    .get(task)
                    .map(|t| t.exec_dir.clone())
                    .unwrap_or_default()
            })
            .map_err(|e| {
                tracing::warn!(alloc = %local.alloc.id, error = %e, "cannot run the allocation's checks");
            });
            // Checks that cannot run never pass: the healthy deadline decides.
            let runnable = targets.is_ok();
            let targets = targets.unwrap_or_default();
            let results = checks::Results::default();
            let handles = targets
                .iter()
                .map(|t| tokio::spawn(checks::run(t.clone(), results.clone(), now_ms)).abort_handle())
                .collect();
            Checkers {
                names: targets.into_iter().map(|t| t.name).collect(),
                runnable,
                results,
                handles,
            }
        });
        let results = entry.results.lock().unwrap_or_else(|e| e.into_inner());
        checks::all_passing_since(&entry.names, &results).filter(|_| entry.runnable)
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
    fn host_ip(&self) -> String {
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
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn allocation_status_follows_its_tasks() {
        let st = |state: &str, failed: bool| TaskState {
            state: state.into(),
            failed,
            ..TaskState::default()
        };
        let of = |v: Vec<TaskState>| alloc_status(v.iter()).0;
        assert_eq!(
            of(vec![st(TASK_PENDING, false), st(TASK_RUNNING, false)]),
            ALLOC_RUNNING
        );
        assert_eq!(of(vec![st(TASK_PENDING, false)]), ALLOC_PENDING);
        assert_eq!(
            of(vec![st(TASK_DEAD, false), st(TASK_DEAD, false)]),
            ALLOC_COMPLETE
        );
        assert_eq!(
            of(vec![st(TASK_DEAD, false), st(TASK_DEAD, true)]),
            ALLOC_FAILED
        );
        // A failed task among running ones does not fail the allocation yet.
        assert_eq!(
            of(vec![st(TASK_RUNNING, false), st(TASK_DEAD, true)]),
            ALLOC_RUNNING
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_launcher_executors_start_directly_and_failures_keep_their_place() {
        let dirs: Vec<PathBuf> = (0..12)
            .map(|i| PathBuf::from(format!("/tmp/{i}")))
            .collect();
        let handle = tokio::runtime::Handle::current();
        let (h, d) = (handle.clone(), dirs.clone());
        // `/bin/true executor-launcher` never says it is ready.
        let started = tokio::task::spawn_blocking(move || {
            spawn_executors(&h, Path::new("/bin/true"), &Default::default(), &d)
        })
        .await
        .unwrap();
        assert_eq!(started.len(), 12);
        assert!(started.iter().all(|r| r.as_ref().is_ok_and(|pid| *pid > 0)));
        let missing = tokio::task::spawn_blocking(move || {
            spawn_executors(
                &handle,
                Path::new("/nonexistent/yurt"),
                &Default::default(),
                &dirs,
            )
        })
        .await
        .unwrap();
        assert_eq!(missing.len(), 12);
        for r in missing {
            let e = r.unwrap_err();
            assert!(
                e.starts_with("cannot start the executor /nonexistent/yurt: "),
                "{e}"
            );
        }
    }

    /// A stand-in launcher (a shell script) that answers PIDs for two requests, an error for
    /// the third, and ends after reading the fourth without answering.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launcher_that_ends_fails_the_start_it_owed_and_the_rest_start_directly() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("launcher");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\n[ \"$1\" = executor-launcher ] || exit 0\necho '{}'\n\
                 read a; echo 101\nread b; echo 102\nread c; echo 'error no room'\nread d\n",
                crate::launcher::HELLO
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dirs: Vec<PathBuf> = (0..5).map(|i| tmp.path().join(i.to_string())).collect();
        let handle = tokio::runtime::Handle::current();
        let launcher = Arc::new(std::sync::Mutex::new(None));
        let l = launcher.clone();
        let started =
            tokio::task::spawn_blocking(move || spawn_executors(&handle, &exe, &l, &dirs))
                .await
                .unwrap();
        assert_eq!(started[0], Ok(101));
        assert_eq!(started[1], Ok(102));
        assert_eq!(
            started[2],
            Err("cannot start the executor: no room".to_string())
        );
        let owed = started[3].as_ref().unwrap_err();
        assert!(
            owed.starts_with("the executor launcher ended before it answered"),
            "{owed}"
        );
        // The script itself, run directly as `launcher executor DIR`, exits at once.
        assert!(started[4].as_ref().is_ok_and(|pid| *pid > 0));
        assert!(launcher.lock().unwrap().is_none());
    }

    #[test]
    fn interpolation_replaces_known_names_only() {
        let env = BTreeMap::from([("YURT_ALLOC_ID".to_string(), "abc".to_string())]);
        assert_eq!(interpolate("id=${YURT_ALLOC_ID}!", &env), "id=abc!");
        assert_eq!(
            interpolate("${UNKNOWN} and ${YURT_ALLOC_ID}", &env),
            "${UNKNOWN} and abc"
        );
        assert_eq!(interpolate("open ${", &env), "open ${");
    }
}
