//! What the executor's drivers (`raw_exec`, `exec`) share: a task runs under its own
//! `yurt executor` ([`crate::executor`]), forked by the launcher ([`crate::launcher`]) or
//! started directly, and is found again through the executor's files and socket. Each of them
//! is a [`Flavour`] (name, fingerprint, the executor's spec) that [`OnExecutor`] makes a
//! [`Driver`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use yurt_proto::v1::DriverInfo;

use super::{Driver, ExecOutput, Handle, Seen, Started, TaskStart, Waiting};
use crate::cgroup::Usage;
use crate::executor::{self, ExecSpec};
use crate::launcher::{LaunchError, Launcher};

/// What one of the executor's drivers adds to it: its name, its fingerprint, and the spec its
/// tasks run with. [`OnExecutor`] makes it a [`Driver`].
pub trait Flavour: Send + Sync {
    fn name(&self) -> &'static str;
    fn fingerprint(&self) -> DriverInfo;
    /// Readies the task's directories; what its executor runs.
    fn spec(&self, t: TaskStart<'_>) -> Result<ExecSpec, String>;
}

/// A driver whose tasks run under the executor: `F`'s spec, the executor's life cycle.
pub struct OnExecutor<F> {
    flavour: F,
    executors: Arc<Executors>,
}

impl<F: Flavour> OnExecutor<F> {
    pub fn new(flavour: F, executors: Arc<Executors>) -> OnExecutor<F> {
        OnExecutor { flavour, executors }
    }
}

impl<F: Flavour> Driver for OnExecutor<F> {
    fn name(&self) -> &'static str {
        self.flavour.name()
    }

    fn fingerprint(&self) -> DriverInfo {
        self.flavour.fingerprint()
    }

    fn prepare(&self, t: TaskStart<'_>) -> Result<(), String> {
        let dir = t.handle_dir.to_path_buf();
        Executors::write_spec(&dir, &self.flavour.spec(t)?)
    }

    fn start(&self, handle_dirs: &[PathBuf]) -> Vec<Result<Started, String>> {
        let pids = self.executors.start(handle_dirs);
        pids.into_iter()
            .map(|r| {
                r.map(|pid| Started {
                    pid,
                    events: Vec::new(),
                })
            })
            .collect()
    }

    fn recover(&self, h: Handle<'_>) -> Seen {
        Executors::recover(h)
    }

    fn signal(&self, h: Handle<'_>, sig: Signal) -> std::io::Result<()> {
        executor::signal(h.dir, sig)
    }

    fn stop(&self, h: Handle<'_>, sig: Signal) {
        Executors::stop(h, sig)
    }

    fn wait(&self, h: Handle<'_>) -> Waiting {
        Executors::wait(h)
    }

    fn stats(&self, h: Handle<'_>) -> Option<Usage> {
        Executors::stats(h)
    }

    fn exec(
        &self,
        h: Handle<'_>,
        command: &[String],
        timeout: Duration,
    ) -> std::io::Result<ExecOutput> {
        super::run_in::run_in(h, command, timeout)
    }
}

/// The executors of this client's tasks: how to start them, and the launcher once started.
pub struct Executors {
    exe: PathBuf,
    launcher: Mutex<Option<Launcher>>,
}

impl Executors {
    pub fn new(exe: &Path) -> Executors {
        Executors {
            exe: exe.to_path_buf(),
            launcher: Mutex::new(None),
        }
    }

    /// Whether a launcher is running (tests).
    pub fn has_launcher(&self) -> bool {
        self.launcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Writes the spec a task's executor runs.
    pub fn write_spec(dir: &Path, spec: &ExecSpec) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(executor::exit_path(dir));
        let _ = std::fs::remove_file(executor::pid_path(dir));
        let _ = std::fs::remove_file(dir.join("error"));
        let bytes = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        std::fs::write(executor::spec_path(dir), bytes)
            .map_err(|e| format!("cannot write task spec: {e}"))
    }

    /// Starts an executor for each dir; the results in order. They are forked by the launcher,
    /// started first if need be; when the binary has no launcher, or it ends, the rest are
    /// started directly ([`spawn_direct`]). Runs on a blocking thread of the runtime.
    pub fn start(&self, dirs: &[PathBuf]) -> Vec<Result<i32, String>> {
        let handle = tokio::runtime::Handle::current();
        let mut launcher = self.launcher.lock().unwrap_or_else(|e| e.into_inner());
        if launcher.is_none() {
            match Launcher::start(&self.exe) {
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
                    out.extend(spawn_direct(&handle, &self.exe, std::slice::from_ref(dir)))
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
                    // It may have forked this one before it ended: starting another could run
                    // the task twice, so this start fails (and the restart policy takes over).
                    out.push(Err(format!(
                        "the executor launcher ended before it answered ({why})"
                    )));
                }
            }
            rest = more;
        }
        drop(launcher);
        out.extend(spawn_direct(&handle, &self.exe, rest));
        out
    }

    /// What the executor says of a task: its recorded exit, or that the executor and the task
    /// are gone without one (the executor records the exit; if it is gone too, nobody will. It
    /// may have written the exit and ended just now: look once more before calling it lost).
    /// A lost task's cgroup is emptied and removed.
    pub fn recover(h: Handle<'_>) -> Seen {
        if let Some(status) = executor::read_exit(h.dir) {
            return Seen::Exited {
                status,
                driver_error: std::fs::read_to_string(h.dir.join("error")).ok(),
            };
        }
        let executor_gone = h.pid.is_none_or(|p| !executor::executor_alive(h.dir, p));
        let task_alive = executor::task_pid(h.dir).is_some_and(executor::alive);
        if executor_gone && !task_alive && executor::read_exit(h.dir).is_none() {
            if let Some(c) = spec(h.dir).and_then(|s| s.cgroup) {
                c.group.destroy();
            }
            Seen::Lost
        } else {
            Seen::Nothing
        }
    }

    /// Stops a task's process group through its executor, or directly when the executor is
    /// unreachable (the task may outlive it); a SIGKILL reaches every process of its cgroup.
    pub fn stop(h: Handle<'_>, sig: Signal) {
        if executor::signal(h.dir, sig).is_err() {
            if let Some(pid) = executor::task_pid(h.dir) {
                executor::signal_group(pid, sig);
            }
            if sig == Signal::SIGKILL {
                if let Some(c) = spec(h.dir).and_then(|s| s.cgroup) {
                    c.group.kill_all();
                }
            }
        }
    }

    /// Resolves when the task ends; an executor that cannot be reached (not listening yet,
    /// from an older release, gone) is looked at again for about two seconds, then left to the
    /// supervisor's periodic pass.
    pub fn wait(h: Handle<'_>) -> Waiting {
        let dir = h.dir.to_path_buf();
        Box::pin(async move {
            for _ in 0..100 {
                match executor::wait(&dir).await {
                    Ok(_) => return,
                    Err(_) if executor::read_exit(&dir).is_some() => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    }

    /// The task's usage from its cgroup (none for a task started without one).
    pub fn stats(h: Handle<'_>) -> Option<Usage> {
        if executor::read_exit(h.dir).is_some() {
            return None;
        }
        Some(spec(h.dir)?.cgroup?.group.usage())
    }
}

/// The spec a task's executor ran.
pub fn spec(dir: &Path) -> Option<ExecSpec> {
    serde_json::from_slice(&std::fs::read(executor::spec_path(dir)).ok()?).ok()
}

/// Starts `yurt executor DIR` for each dir, on a few threads at once; the results in order.
/// Each executor is reaped by the runtime when it ends while this agent runs (after a restart,
/// init does).
pub fn spawn_direct(
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
