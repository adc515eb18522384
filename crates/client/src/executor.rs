//! The executor: a small synchronous process (`yurt executor DIR`, no async runtime) that is
//! the parent of one task process. It starts its own session, so it and the task outlive the
//! client agent. It owns the task's stdout and stderr pipes and writes them to rotated log
//! files ([`crate::logfiles`]), records the task's PID and exit status in files, and answers
//! the client on a unix socket.
//!
//! Files in the task's executor dir:
//! - `spec.json`: what to run ([`ExecSpec`]), written by the client;
//! - `pid`: the task's PID, which is also its process group ID;
//! - `exit.json`: the task's [`ExitStatus`], written once it has ended;
//! - `error`: why the task could not be started, if it could not;
//! - `executor.sock`: the socket. One JSON [`Request`] line in, one JSON [`Reply`] line out:
//!   `status`, `wait` (answers when the task has ended) and `signal` (to the task's group).
//!
//! The files stay the source of truth: a client that finds the socket gone (an executor from an
//! older release, or one that died) falls back to them.
//!
//! This module is the only place that builds `std::process::Command` for tasks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::logfiles::{self, Rotation};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory of the task.
    pub dir: PathBuf,
    pub stdout: Rotation,
    pub stderr: Rotation,
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

/// What the client asks the executor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Answered once the task has ended.
    Wait,
    /// Sends the named signal (`SIGTERM`, ...) to the task's process group.
    Signal {
        signal: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub pid: i32,
    pub exit: Option<ExitStatus>,
    pub error: Option<String>,
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
const SOCKET: &str = "executor.sock";

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
            let _ = std::fs::remove_file(exec_dir.join(SOCKET));
            1
        }
    }
}

/// The task's PID and, once it has ended, its exit status; waiters sleep on the condvar.
type Shared = Arc<(Mutex<Reply>, Condvar)>;

fn run_inner(exec_dir: &Path, new_session: bool) -> std::io::Result<()> {
    // Our own session: no signal aimed at the client's process group reaches us.
    if new_session {
        let _ = nix::unistd::setsid();
    }
    let spec: ExecSpec = serde_json::from_slice(&std::fs::read(spec_path(exec_dir))?)
        .map_err(std::io::Error::other)?;
    let log = |r: &Rotation| {
        logfiles::Writer::open(r.clone()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open the log file {}: {e}", r.base.display()),
            )
        })
    };
    let (stdout_log, stderr_log) = (log(&spec.stdout)?, log(&spec.stderr)?);
    let socket = exec_dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = {
        let (_dir, path) = socket_via_fd(exec_dir)?;
        UnixListener::bind(path)?
    };
    let mut child = std::process::Command::new(&spec.command)
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", spec.command))
        })?;
    let pid = child.id() as i32;
    write_atomic(&pid_path(exec_dir), pid.to_string().as_bytes())?;
    let shared: Shared = Arc::new((
        Mutex::new(Reply {
            pid,
            ..Reply::default()
        }),
        Condvar::new(),
    ));
    {
        let shared = shared.clone();
        std::thread::spawn(move || serve(listener, shared));
    }
    let (copied, copies_done) = mpsc::channel();
    for (pipe, mut log) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            stdout_log,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            stderr_log,
        ),
    ] {
        let copied = copied.clone();
        std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 || log.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
            let _ = copied.send(());
        });
    }
    let status = child.wait()?;
    // Output still in the pipes belongs before the exit; a background process that kept
    // the pipes open does not hold the exit back for long.
    for _ in 0..2 {
        let _ = copies_done.recv_timeout(Duration::from_secs(2));
    }
    let status = ExitStatus {
        code: status.code().unwrap_or(-1),
        signal: status.signal().unwrap_or(0),
    };
    write_atomic(
        &exit_path(exec_dir),
        &serde_json::to_vec(&status).map_err(std::io::Error::other)?,
    )?;
    let (reply, ended) = &*shared;
    reply.lock().unwrap_or_else(|e| e.into_inner()).exit = Some(status);
    ended.notify_all();
    // Let waiting clients read their answer before the process goes.
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// How long after the client starts waiting on a task the executor gives back its start-up
/// pages: past the start of a large placement (a hundred executors starting at once on the
/// same cores), so that shedding (it reads `/proc/self/smaps`, about a millisecond) does not
/// take CPU from the executors still starting.
const SHED_AFTER: Duration = Duration::from_secs(2);

/// Answers the client's requests, one thread per connection.
fn serve(listener: UnixListener, shared: Shared) {
    for conn in listener.incoming().flatten() {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = answer(conn, &shared);
        });
    }
}

fn answer(conn: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let (reply, ended) = &**shared;
    let out = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            error: Some(format!("bad request: {e}")),
            ..Reply::default()
        },
        Ok(Request::Status) => reply.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        Ok(Request::Wait) => {
            let r = reply.lock().unwrap_or_else(|e| e.into_inner());
            let (mut r, _) = ended
                .wait_timeout_while(r, SHED_AFTER, |r| r.exit.is_none())
                .unwrap_or_else(|e| e.into_inner());
            if r.exit.is_none() {
                // The client (and a restarted one) waits on every running task: from here on
                // the executor idles, so what start-up touched need not stay resident.
                crate::memory::shed_clean_pages();
            }
            while r.exit.is_none() {
                r = ended.wait(r).unwrap_or_else(|e| e.into_inner());
            }
            r.clone()
        }
        Ok(Request::Signal { signal }) => {
            let mut r = reply.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match signal.parse::<Signal>() {
                Ok(sig) if r.exit.is_none() => {
                    if let Err(e) = killpg(Pid::from_raw(r.pid), sig) {
                        r.error = Some(format!("cannot send {sig}: {e}"));
                    }
                }
                Ok(_) => {}
                Err(_) => r.error = Some(format!("unknown signal {signal:?}")),
            }
            r
        }
    };
    let mut bytes = serde_json::to_vec(&out).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    (&conn).write_all(&bytes)
}

/// The socket's path through `/proc/self/fd`, so that a long data dir does not exceed the
/// socket path limit (about 100 bytes). The directory handle must stay open until the socket
/// is bound or connected.
fn socket_via_fd(exec_dir: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(exec_dir)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd()));
    Ok((dir, path))
}

/// Sends a signal to a task through its executor (blocking, bounded by a short timeout).
pub fn signal(exec_dir: &Path, sig: Signal) -> std::io::Result<()> {
    let (_dir, path) = socket_via_fd(exec_dir)?;
    let conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    conn.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut req = serde_json::to_vec(&Request::Signal {
        signal: sig.to_string(),
    })
    .map_err(std::io::Error::other)?;
    req.push(b'\n');
    (&conn).write_all(&req)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let reply: Reply = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    match reply.error {
        Some(e) => Err(std::io::Error::other(e)),
        None => Ok(()),
    }
}

/// Waits until the task ends (or its executor goes away), without blocking a thread.
pub async fn wait(exec_dir: &Path) -> std::io::Result<Reply> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (_dir, path) = socket_via_fd(exec_dir)?;
    let mut conn = tokio::net::UnixStream::connect(path).await?;
    let mut req = serde_json::to_vec(&Request::Wait).map_err(std::io::Error::other)?;
    req.push(b'\n');
    conn.write_all(&req).await?;
    let mut line = String::new();
    tokio::io::BufReader::new(conn).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Stops a task's process group: through its executor, or directly when the executor is
/// unreachable (the task may outlive it).
pub fn stop(exec_dir: &Path, sig: Signal) {
    if signal(exec_dir, sig).is_err() {
        if let Some(pid) = read_pid(exec_dir) {
            signal_group(pid, sig);
        }
    }
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
            stdout: Rotation {
                base: dir.join("out"),
                max_files: 2,
                max_file_bytes: 1024,
            },
            stderr: Rotation {
                base: dir.join("err"),
                max_files: 2,
                max_file_bytes: 1024,
            },
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
            std::fs::read_to_string(dir.path().join("out.0")).unwrap(),
            "out-1\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err.0")).unwrap(),
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

    #[tokio::test]
    async fn the_socket_answers_status_signal_and_wait() {
        // A long directory name: the socket is reached through /proc/self/fd.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("x".repeat(120));
        std::fs::create_dir(&dir).unwrap();
        spec(&dir, "/bin/sh", "echo started; exec sleep 30");
        let runner = {
            let dir = dir.clone();
            std::thread::spawn(move || run_inner(&dir, false))
        };
        let waiter = {
            let dir = dir.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(r) = wait(&dir).await {
                        return r;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let pid = loop {
            if let Some(p) = read_pid(&dir) {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(alive(pid));
        assert!(!waiter.is_finished());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while signal(&dir, Signal::SIGTERM).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "socket never answered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let reply = waiter.await.unwrap();
        assert_eq!(reply.pid, pid);
        assert_eq!(
            reply.exit,
            Some(ExitStatus {
                code: -1,
                signal: 15
            })
        );
        runner.join().unwrap().unwrap();
        assert_eq!(read_exit(&dir), reply.exit);
        assert_eq!(
            std::fs::read_to_string(dir.join("out.0")).unwrap(),
            "started\n"
        );
        // The executor is gone and so is its socket: callers fall back to the files.
        assert!(!dir.join(SOCKET).exists());
        assert!(signal(&dir, Signal::SIGTERM).is_err());
    }
}
