//! The executor: a small synchronous process (`yurt executor SPEC`) that is the parent of one
//! task process. It starts its own session, so it and the task outlive the client agent; it
//! writes the task's PID and, when the task ends, its exit status to files the client reads.
//! A restarted client re-attaches by reading those files.
//!
//! Files in the task's executor dir:
//! - `spec.json`: what to run ([`ExecSpec`]), written by the client;
//! - `pid`: the task's PID, which is also its process group ID;
//! - `exit.json`: the task's [`ExitStatus`], written once it has ended.
//!
//! This module is the only place that builds `std::process::Command` for tasks.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory of the task.
    pub dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal == 0
    }
}

pub fn spec_path(exec_dir: &Path) -> PathBuf {
    exec_dir.join("spec.json")
}
pub fn pid_path(exec_dir: &Path) -> PathBuf {
    exec_dir.join("pid")
}
pub fn exit_path(exec_dir: &Path) -> PathBuf {
    exec_dir.join("exit.json")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The executor's main: runs the task described in `exec_dir/spec.json` to its end.
/// Returns the process exit code for the executor itself.
pub fn run(exec_dir: &Path) -> i32 {
    run_with(exec_dir, true)
}

fn run_with(exec_dir: &Path, new_session: bool) -> i32 {
    match run_inner(exec_dir, new_session) {
        Ok(()) => 0,
        Err(e) => {
            // Record the failure where the client looks for the outcome.
            let _ = std::fs::write(exec_dir.join("error"), e.to_string());
            let status = ExitStatus {
                code: 127,
                signal: 0,
            };
            let _ = write_atomic(
                &exit_path(exec_dir),
                &serde_json::to_vec(&status).unwrap_or_default(),
            );
            1
        }
    }
}

fn run_inner(exec_dir: &Path, new_session: bool) -> std::io::Result<()> {
    // Our own session: no signal aimed at the client's process group reaches us.
    if new_session {
        let _ = nix::unistd::setsid();
    }
    let spec: ExecSpec = serde_json::from_slice(&std::fs::read(spec_path(exec_dir))?)
        .map_err(std::io::Error::other)?;
    let open = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let mut child = std::process::Command::new(&spec.command)
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.dir)
        .stdin(std::process::Stdio::null())
        .stdout(open(&spec.stdout)?)
        .stderr(open(&spec.stderr)?)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", spec.command))
        })?;
    write_atomic(&pid_path(exec_dir), child.id().to_string().as_bytes())?;
    let status = child.wait()?;
    let status = ExitStatus {
        code: status.code().unwrap_or(-1),
        signal: status.signal().unwrap_or(0),
    };
    write_atomic(
        &exit_path(exec_dir),
        &serde_json::to_vec(&status).map_err(std::io::Error::other)?,
    )
}

/// Reads the task PID written by the executor, if it has started the task.
pub fn read_pid(exec_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_path(exec_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the task's exit status, if it has ended.
pub fn read_exit(exec_dir: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(exit_path(exec_dir)).ok()?).ok()
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie still answers kill(0); /proc tells it apart.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Sends a signal to a task's whole process group.
pub fn signal_group(pid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid), sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, command: &str, script: &str) {
        let spec = ExecSpec {
            command: command.into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::from([("X".to_string(), "1".to_string())]),
            dir: dir.into(),
            stdout: dir.join("out"),
            stderr: dir.join("err"),
        };
        std::fs::write(spec_path(dir), serde_json::to_vec(&spec).unwrap()).unwrap();
    }

    #[test]
    fn runs_a_task_and_records_its_exit() {
        let dir = tempfile::tempdir().unwrap();
        spec(dir.path(), "/bin/sh", "echo out-$X; echo err >&2; exit 3");
        run_inner(dir.path(), false).unwrap();
        assert_eq!(
            read_exit(dir.path()),
            Some(ExitStatus { code: 3, signal: 0 })
        );
        let pid = read_pid(dir.path()).unwrap();
        assert!(!alive(pid));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "out-1\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "err\n"
        );
    }

    #[test]
    fn missing_command_is_recorded_as_exit_127() {
        let dir = tempfile::tempdir().unwrap();
        spec(dir.path(), "/no/such/binary", "");
        assert_eq!(run_with(dir.path(), false), 1);
        assert_eq!(
            read_exit(dir.path()),
            Some(ExitStatus {
                code: 127,
                signal: 0
            })
        );
        let why = std::fs::read_to_string(dir.path().join("error")).unwrap();
        assert!(why.contains("cannot start \"/no/such/binary\""), "{why}");
    }
}
