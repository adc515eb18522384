//! Task drivers: how a task runs on this node. A driver is one implementation of [`Driver`]:
//! it says whether it is usable here ([`Driver::fingerprint`]), readies and starts tasks,
//! finds out what became of one it started (also before a client restart: re-attaching, never
//! restarting), signals and stops it, waits for it, reads its usage and runs a command in it.
//! The runner knows only this trait. `raw_exec` ([`raw_exec::RawExec`]) runs a host process,
//! `exec` ([`exec::Exec`]) an isolated one; both under the executor, as
//! [`executors::Flavour`]s that [`executors::OnExecutor`] makes drivers. `docker`
//! ([`docker::Docker`]) runs a container through the Docker Engine API.
//!
//! [`Drivers`] holds this node's drivers and their fingerprints; a task runs only with a driver
//! fingerprinted healthy.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use yurt_proto::v1::{value, DriverInfo, Port, Task};
use yurt_types::agentconfig::DriverConfig;

use crate::cgroup::Usage;
use crate::executor::ExitStatus;
use crate::logfiles::Rotation;

pub mod docker;
pub mod exec;
pub mod executors;
pub mod raw_exec;
pub mod run_in;

/// What the supervisor observed of a running task in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing new: the task runs (or it is not running, and there is nothing to observe).
    Nothing,
    /// The task ended, and the driver's error if it failed to run it.
    Exited {
        status: ExitStatus,
        driver_error: Option<String>,
    },
    /// The task is gone and nobody recorded how it ended.
    Lost,
}

/// Where a driver finds a task it started: the task's handle dir (the executor's files, for
/// the executor's drivers) and the PID of the process that watches it.
#[derive(Debug, Clone, Copy)]
pub struct Handle<'a> {
    pub dir: &'a Path,
    pub pid: Option<i32>,
}

/// What a driver needs to ready one task.
pub struct TaskStart<'a> {
    pub alloc_id: &'a str,
    /// The allocation's job and group, and this node (what a container's labels name).
    pub job: &'a str,
    pub group: &'a str,
    pub node_id: &'a str,
    /// The group's ports as placed on this node, and the address they are reached at.
    pub ports: &'a [Port],
    pub host_ip: &'a str,
    /// The cluster let the allocation use its tasks' `memory_max`.
    pub memory_oversubscription: bool,
    pub task: &'a Task,
    /// `<alloc dir>`: holds `alloc/` (shared by the group's tasks) and each task's dir.
    pub alloc_dir: &'a Path,
    /// `<alloc dir>/<task>`.
    pub task_dir: &'a Path,
    /// Where the driver keeps what it needs to find the task again.
    pub handle_dir: &'a Path,
    /// The task's environment but for the directories' variables, which the driver adds as
    /// the task sees them ([`dir_env`]).
    pub env: BTreeMap<String, String>,
    pub stdout: Rotation,
    pub stderr: Rotation,
}

/// What a command run in a task printed, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Its exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// There was more output than an answer carries.
    pub truncated: bool,
}

/// A future a driver returns (drivers are trait objects).
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Resolves when a task has ended.
pub type Waiting = Pending<()>;

/// A task a driver started: the PID of the process that watches it (the task's own, for a
/// container), and what the driver did on the way (task events: type, message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub pid: i32,
    pub events: Vec<(String, String)>,
}

/// One task driver.
pub trait Driver: Send + Sync {
    /// The name jobs give as `driver`.
    fn name(&self) -> &'static str;
    /// Whether the driver is usable on this node, and its attributes (the last known answer,
    /// for a driver whose health can change: see [`Driver::refingerprint`]).
    fn fingerprint(&self) -> DriverInfo;
    /// Looks again whether the driver is usable, for a driver whose health can change while
    /// the client runs (a daemon it talks to); `None` for one whose answer cannot change.
    fn refingerprint(&self) -> Option<Pending<DriverInfo>> {
        None
    }
    /// At client start, given the handle dirs of every task the client knows: removes what
    /// this driver left on the node that none of them claims (a container whose allocation
    /// is gone). `None` for a driver that leaves nothing behind.
    fn adopt(&self, _handle_dirs: Vec<PathBuf>) -> Option<Pending<()>> {
        None
    }
    /// Removes what a task left outside its directories (a container), for a client that
    /// discards its data dir; `None` for a driver that leaves nothing there.
    fn destroy(&self, _h: Handle<'_>) -> Option<Pending<()>> {
        None
    }
    /// Readies a task to start (its directories, what it runs); `start` then starts it.
    fn prepare(&self, t: TaskStart<'_>) -> Result<(), String>;
    /// Starts readied tasks (blocking, on a thread that may block on the runtime; several at
    /// once where the driver can): for each, what started, or why it could not start.
    fn start(&self, handle_dirs: &[PathBuf]) -> Vec<Result<Started, String>>;
    /// What became of a task this driver started, possibly before a client restart. A task
    /// that still runs is left alone: re-attaching never restarts it.
    fn recover(&self, h: Handle<'_>) -> Seen;
    /// Sends a signal to the task.
    fn signal(&self, h: Handle<'_>, sig: Signal) -> std::io::Result<()>;
    /// Stops the task with `sig` (its `kill_signal`; SIGKILL once its `kill_timeout` passed),
    /// also when the process that watches it is gone.
    fn stop(&self, h: Handle<'_>, sig: Signal);
    /// Resolves when the task has ended (or nobody can say any more).
    fn wait(&self, h: Handle<'_>) -> Waiting;
    /// The task's memory and CPU usage, where the driver tracks it.
    fn stats(&self, h: Handle<'_>) -> Option<Usage>;
    /// Runs a command inside the running task (as the task's user, in its root), killed when
    /// `timeout` passes.
    fn exec(
        &self,
        h: Handle<'_>,
        command: &[String],
        timeout: std::time::Duration,
    ) -> std::io::Result<ExecOutput>;
}

/// This node's drivers and what their fingerprints found.
pub struct Drivers {
    drivers: BTreeMap<&'static str, Arc<dyn Driver>>,
    found: Mutex<BTreeMap<String, DriverInfo>>,
}

impl Drivers {
    /// The drivers with this node's settings, fingerprinted (a driver whose health can change
    /// says so once [`Drivers::refresh`] has asked it).
    pub fn new(config: &DriverConfig, exe: &Path, node_id: &str) -> Drivers {
        use executors::{Executors, OnExecutor};
        let executors = Arc::new(Executors::new(exe));
        let list: Vec<Arc<dyn Driver>> = vec![
            Arc::new(OnExecutor::new(
                raw_exec::RawExec::new(config),
                executors.clone(),
            )),
            Arc::new(OnExecutor::new(exec::Exec::new(config), executors)),
            Arc::new(docker::Docker::new(config, node_id)),
        ];
        Drivers::of(list)
    }

    /// Given drivers, fingerprinted (tests use their own); raw_exec must be among them.
    fn of(list: Vec<Arc<dyn Driver>>) -> Drivers {
        let found = list
            .iter()
            .map(|d| (d.name().to_string(), d.fingerprint()))
            .collect();
        Drivers {
            drivers: list.into_iter().map(|d| (d.name(), d)).collect(),
            found: Mutex::new(found),
        }
    }

    /// Asks the drivers whose health can change again; whether any answer changed (other
    /// than its time).
    pub async fn refresh(&self) -> bool {
        let asked: Vec<(&'static str, Pending<DriverInfo>)> = self
            .drivers
            .iter()
            .filter_map(|(name, d)| Some((*name, d.refingerprint()?)))
            .collect();
        let mut changed = false;
        for (name, pending) in asked {
            let info = pending.await;
            let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
            let same = found.get(name).is_some_and(|old| {
                (
                    old.detected,
                    old.healthy,
                    &old.health_description,
                    &old.attributes,
                ) == (
                    info.detected,
                    info.healthy,
                    &info.health_description,
                    &info.attributes,
                )
            });
            if !same {
                tracing::info!(driver = name, healthy = info.healthy, why = %info.health_description, "task driver fingerprint changed");
                found.insert(name.to_string(), info);
                changed = true;
            }
        }
        changed
    }

    /// Lets each driver remove what it left on the node that no task claims
    /// ([`Driver::adopt`]).
    pub async fn adopt(&self, handle_dirs: Vec<PathBuf>) {
        for d in self.drivers.values() {
            if let Some(pending) = d.adopt(handle_dirs.clone()) {
                pending.await;
            }
        }
    }

    /// What each driver's fingerprint found, by name (the node's `Drivers`).
    pub fn found(&self) -> BTreeMap<String, DriverInfo> {
        self.found.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The node attributes the drivers add: `driver.NAME = 1` for each healthy one, and its
    /// own attributes.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, info) in &self.found() {
            if info.detected && info.healthy {
                out.insert(format!("driver.{name}"), "1".to_string());
                out.extend(info.attributes.clone());
            }
        }
        out
    }

    /// The driver a task names, to run a new task: only a healthy one.
    pub fn to_start(&self, name: &str) -> Result<Arc<dyn Driver>, String> {
        let Some(driver) = self.drivers.get(name) else {
            return Err(format!(
                "driver {name:?} is not a driver this node has (it has {})",
                self.drivers.keys().copied().collect::<Vec<_>>().join(", ")
            ));
        };
        match self.found().get(name) {
            Some(i) if i.detected && i.healthy => Ok(driver.clone()),
            Some(i) => Err(format!(
                "driver {name:?} is not usable on this node: {}",
                i.health_description
            )),
            None => Err(format!("driver {name:?} was not fingerprinted")),
        }
    }

    /// The driver of a task already started (healthy or not: a running task is never left
    /// unwatched); tasks of a driver this build does not know are the executor's.
    pub fn of_task(&self, name: &str) -> Arc<dyn Driver> {
        self.drivers
            .get(name)
            .or_else(|| self.drivers.get(raw_exec::NAME))
            .cloned()
            .expect("raw_exec is always among the drivers")
    }

    /// One line per driver that cannot run tasks, for the client's log.
    pub fn unusable(&self) -> Vec<String> {
        self.found()
            .iter()
            .filter(|(_, i)| !(i.detected && i.healthy))
            .map(|(n, i)| format!("{n}: {}", i.health_description))
            .collect()
    }
}

/// A driver's fingerprint.
pub fn info(detected: bool, healthy: bool, why: impl Into<String>, now_ms: i64) -> DriverInfo {
    DriverInfo {
        detected,
        healthy,
        health_description: why.into(),
        attributes: BTreeMap::new(),
        update_time_unix_ms: now_ms,
    }
}

/// Adds the directories' variables (`NOMAD_ALLOC_DIR`, `NOMAD_TASK_DIR`, `NOMAD_SECRETS_DIR`
/// and their `YURT_` twins) as the task sees them.
pub fn dir_env(env: &mut BTreeMap<String, String>, alloc: &Path, local: &Path, secrets: &Path) {
    for prefix in ["YURT", "NOMAD"] {
        env.insert(format!("{prefix}_ALLOC_DIR"), alloc.display().to_string());
        env.insert(format!("{prefix}_TASK_DIR"), local.display().to_string());
        env.insert(
            format!("{prefix}_SECRETS_DIR"),
            secrets.display().to_string(),
        );
    }
}

/// Replaces `${NAME}` with values from `env`; unknown names are left as written.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
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

/// A string of the task's `config`.
pub fn config_string(task: &Task, key: &str) -> Option<String> {
    match task.config.get(key).and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The task's `config.command` and `config.args`, interpolated.
pub fn command_line(
    task: &Task,
    env: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let command = config_string(task, "command").ok_or("task has no config.command")?;
    let args = match task.config.get("args").and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::ListValue(l)) => l
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(value::Kind::StringValue(s)) => Some(interpolate(s, env)),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    Ok((interpolate(&command, env), args))
}

/// Creates a directory (and its parents) with `mode`, owned by `owner` when given.
pub fn make_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
