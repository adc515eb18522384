//! The executor: a small synchronous process (`yurt executor DIR`, no async runtime) that is
//! the parent of one task process. It starts its own session, so it and the task outlive the
//! client agent. It owns the task's stdout and stderr pipes and writes them to rotated log
//! files ([`crate::logfiles`]), records the task's PID and exit status in files, and answers
//! the client on a unix socket.
//!
//! Files in the task's executor dir:
//! - `spec.json`: what to run ([`ExecSpec`]), written by the client;
//! - `pid`: the task's PID, which is also its process group ID;
//! - `task-identity` and `executor-identity`: who the task and the executor are beyond their
//!   PIDs, which the kernel reuses ([`crate::identity`]);
//! - `exit.json`: the task's [`ExitStatus`], written once it has ended;
//! - `error`: why the task could not be started, if it could not;
//! - `executor.sock`: the socket. One JSON [`Request`] line in, one JSON [`Reply`] line out:
//!   `status`, `wait` (answers when the task has ended) and `signal` (to the task's group).
//!
//! The files stay the source of truth: a client that finds the socket gone (an executor from an
//! older release, or one that died) falls back to them.
//!
//! A spec may put the task in a cgroup ([`crate::cgroup`]: limits, usage, and every process
//! of the task killed when it ends) and isolate it ([`crate::isolate`]: namespaces, its own
//! root, its user). The executor starts its threads before the task: once it has made a PID
//! namespace for its children it can start no more.
//!
//! This module is the only place that builds `std::process::Command` for tasks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{Group, Limits};
use crate::identity::{self, Identity};
use crate::isolate::Isolation;
use crate::logfiles::{self, Rotation};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory of the task (inside its root when isolated).
    pub dir: PathBuf,
    pub stdout: Rotation,
    pub stderr: Rotation,
    /// The task's cgroup and limits (none in specs of 0.1.0).
    #[serde(default)]
    pub cgroup: Option<Confine>,
    /// How an `exec` task is isolated (none for `raw_exec`).
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// A task's cgroup and the limits written to it (none: tracking only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confine {
    pub group: Group,
    pub limits: Option<Limits>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
    /// The kernel killed the task for going over its memory limit.
    #[serde(default)]
    pub oom_killed: bool,
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
                oom_killed: false,
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

/// The task's PID and, once it has ended, its exit status; and the connections of clients
/// waiting for that end.
struct State {
    reply: Reply,
    waiters: Vec<UnixStream>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three threads in all: this one waits for the task, one copies both of its pipes into the
/// logs, one answers the socket. Both helpers start before the task does.
fn run_inner(exec_dir: &Path, new_session: bool) -> std::io::Result<()> {
    // Our own session: no signal aimed at the client's process group reaches us.
    if new_session {
        let _ = nix::unistd::setsid();
    }
    if let Some(me) = Identity::of(std::process::id() as i32) {
        me.write(&exec_dir.join(identity::EXECUTOR))?;
    }
    let spec: ExecSpec = serde_json::from_slice(&std::fs::read(spec_path(exec_dir))?)
        .map_err(std::io::Error::other)?;
    let socket = exec_dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = {
        let (_dir, path) = socket_via_fd(exec_dir)?;
        UnixListener::bind(path)?
    };
    let group = match &spec.cgroup {
        Some(c) => match c.group.create(c.limits.as_ref()) {
            Ok(()) => Some(c.group.clone()),
            // A group only for tracking (raw_exec): the task runs without it.
            Err(_) if c.limits.is_none() => None,
            Err(e) => return Err(std::io::Error::other(e)),
        },
        None => None,
    };
    let started = start_task(exec_dir, &spec, group.as_ref(), listener);
    let (mut child, shared, pipes, status_pipe) = match started {
        Ok(s) => s,
        Err(e) => {
            if let Some(g) = &group {
                g.destroy();
            }
            return Err(e);
        }
    };
    let pid = child.id() as i32;
    // Before the PID, so that whoever reads the PID can tell whether it is still the task's
    // (the task is at least a zombie until `wait` below: its identity can be read).
    if let Some(task) = Identity::of(pid) {
        task.write(&exec_dir.join(identity::TASK))?;
    }
    write_atomic(&pid_path(exec_dir), pid.to_string().as_bytes())?;
    lock(&shared).reply.pid = pid;
    let raw = child.wait()?;
    let mut status = ExitStatus {
        code: raw.code().unwrap_or(-1),
        signal: raw.signal().unwrap_or(0),
        oom_killed: false,
    };
    if let Some(read) = status_pipe {
        // The init of the task's PID namespace says how the task itself ended.
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::fs::File::from(read), &mut bytes);
        if let Some((code, signal)) = crate::isolate::read_status(&bytes) {
            status.code = code;
            status.signal = signal;
        }
    }
    if let Some(g) = &group {
        status.oom_killed = !status.success() && g.oom_kills() > 0;
        // Whatever the task left behind (also processes that left its group) ends with it.
        g.destroy();
    }
    // Output still in the pipes belongs before the exit; a background process that kept
    // the pipes open does not hold the exit back for long.
    let _ = pipes.recv_timeout(Duration::from_secs(2));
    write_atomic(
        &exit_path(exec_dir),
        &serde_json::to_vec(&status).map_err(std::io::Error::other)?,
    )?;
    let (reply, waiters) = {
        let mut state = lock(&shared);
        state.reply.exit = Some(status);
        (state.reply.clone(), std::mem::take(&mut state.waiters))
    };
    for conn in waiters {
        let _ = send(&conn, &reply);
    }
    // Let clients that connected just now read their answer before the process goes.
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

type Started = (
    std::process::Child,
    Shared,
    mpsc::Receiver<()>,
    Option<OwnedFd>,
);

/// Starts the socket's and the pipes' threads, then the task: in its cgroup, and isolated
/// when the spec says so. Returns the task, the shared state, a channel that says when the
/// pipes are copied, and the pipe the PID namespace's init writes the task's status to.
#[allow(unsafe_code)]
fn start_task(
    exec_dir: &Path,
    spec: &ExecSpec,
    group: Option<&Group>,
    listener: UnixListener,
) -> std::io::Result<Started> {
    let log = |r: &Rotation| {
        logfiles::Writer::open(r.clone()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open the log file {}: {e}", r.base.display()),
            )
        })
    };
    let (stdout_log, stderr_log) = (log(&spec.stdout)?, log(&spec.stderr)?);
    let shared: Shared = Arc::new(Mutex::new(State {
        reply: Reply::default(),
        waiters: Vec::new(),
    }));
    {
        let shared = shared.clone();
        std::thread::spawn(move || serve(listener, shared));
    }
    let (pipes_tx, pipes_rx) = mpsc::channel::<Vec<(OwnedFd, logfiles::Writer)>>();
    let (copied, copies_done) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(pipes) = pipes_rx.recv() {
            copy_pipes(pipes);
        }
        let _ = copied.send(());
    });
    // The task joins its cgroup before it runs anything: a write of 0 to each `cgroup.procs`.
    let procs: Vec<std::fs::File> = match group {
        Some(g) => g
            .procs_files()
            .iter()
            .map(|f| std::fs::OpenOptions::new().write(true).open(f))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot join the task's cgroup: {e}"))
            })?,
        None => Vec::new(),
    };
    let setup_error = exec_dir.join("setup-error");
    let _ = std::fs::remove_file(&setup_error);
    let mut status_pipe = None;
    let prepared = match &spec.isolation {
        Some(iso) => {
            let errors = std::fs::File::create(&setup_error)?;
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            if iso.pid_ns {
                // The task's first process is PID 1 of a namespace of its own.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)?;
            }
            let prepared = iso.prepare(errors.as_raw_fd(), write.as_raw_fd());
            status_pipe = Some((read, write, errors));
            Some(prepared)
        }
        None => None,
    };
    let mut command = std::process::Command::new(&spec.command);
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(if spec.isolation.is_some() {
            Path::new("/")
        } else {
            &spec.dir
        })
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let join: Vec<i32> = procs.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // with values prepared here.
    unsafe {
        command.pre_exec(move || {
            for fd in &join {
                nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(*fd), b"0")?;
            }
            match &prepared {
                Some(p) => p.enter(),
                None => Ok(()),
            }
        });
    }
    let mut child = command.spawn().map_err(|e| {
        let why = std::fs::read_to_string(&setup_error).unwrap_or_default();
        if why.is_empty() {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", spec.command))
        } else {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {why}", spec.command))
        }
    })?;
    drop(command);
    // The write end and the error file were for the task's side only.
    let status_read = status_pipe.map(|(read, _write, _errors)| read);
    let mut pipes = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push((OwnedFd::from(out), stdout_log));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push((OwnedFd::from(err), stderr_log));
    }
    let _ = pipes_tx.send(pipes);
    Ok((child, shared, copies_done, status_read))
}

/// Copies the task's pipes into their logs until both are closed (or a log cannot be
/// written).
fn copy_pipes(mut pipes: Vec<(OwnedFd, logfiles::Writer)>) {
    let mut buf = [0u8; 8192];
    while !pipes.is_empty() {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = pipes
                .iter()
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        };
        let mut i = 0;
        pipes.retain_mut(|(fd, log)| {
            let was_ready = ready[i];
            i += 1;
            if !was_ready {
                return true;
            }
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => false,
                Ok(n) => log.write_all(&buf[..n]).is_ok(),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => true,
                Err(_) => false,
            }
        });
    }
}

/// How long after the client starts waiting on a task the executor gives back its start-up
/// pages: past the start of a large placement (a hundred executors starting at once on the
/// same cores), so that shedding (it reads `/proc/self/smaps`, about a millisecond) does not
/// take CPU from the executors still starting.
const SHED_AFTER: Duration = Duration::from_secs(2);

/// Answers the client's requests one connection at a time (each is one line in, one line
/// out); a `wait` connection is kept and answered when the task ends. Gives back the
/// start-up pages [`SHED_AFTER`] the first wait, if the task still runs then.
fn serve(listener: UnixListener, shared: Shared) {
    let mut shed_at: Option<Instant> = None;
    let mut shed = false;
    loop {
        if let Some(at) = shed_at {
            let left = at.saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    shed_at = None;
                    shed = true;
                    if lock(&shared).reply.exit.is_none() {
                        // The client (and a restarted one) waits on every running task: from
                        // here on the executor idles, so what start-up touched need not stay
                        // resident.
                        crate::memory::shed_clean_pages();
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
        }
        let Ok((conn, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        // A client that connects and says nothing holds the others back for a second at most.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        if answer(conn, &shared) && !shed && shed_at.is_none() {
            shed_at = Some(Instant::now() + SHED_AFTER);
        }
    }
}

/// Answers one request; true when it was a `wait` kept for the task's end.
fn answer(conn: UnixStream, shared: &Shared) -> bool {
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return false;
    }
    let out = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            error: Some(format!("bad request: {e}")),
            ..Reply::default()
        },
        Ok(Request::Status) => lock(shared).reply.clone(),
        Ok(Request::Wait) => {
            let mut state = lock(shared);
            if state.reply.exit.is_none() {
                state.waiters.push(conn);
                return true;
            }
            state.reply.clone()
        }
        Ok(Request::Signal { signal }) => {
            let mut r = lock(shared).reply.clone();
            match signal.parse::<Signal>() {
                Ok(_) if r.pid <= 0 => r.error = Some("the task has not started yet".into()),
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
    let _ = send(&conn, &out);
    false
}

fn send(conn: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    (&*conn).write_all(&bytes)
}

/// The socket's path through `/proc/self/fd`, so that a long data dir does not exceed the
/// socket path limit (about 100 bytes). The directory handle must stay open until the socket
/// is bound or connected.
fn socket_via_fd(exec_dir: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
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
        if let Some(pid) = task_pid(exec_dir) {
            signal_group(pid, sig);
        }
    }
}

/// The task's PID (and process group ID) while it still names the task or its group: none
/// once another process has the PID, or the host has rebooted since ([`crate::identity`]).
pub fn task_pid(exec_dir: &Path) -> Option<i32> {
    read_pid(exec_dir).filter(|pid| identity::still(*pid, &exec_dir.join(identity::TASK)))
}

/// Whether the executor the client knows as `pid` still runs (not another process that was
/// given its PID since).
pub fn executor_alive(exec_dir: &Path, pid: i32) -> bool {
    alive(pid) && identity::still(pid, &exec_dir.join(identity::EXECUTOR))
}

/// Reads the task PID written by the executor, if it has started the task. It may name
/// another process by now: [`task_pid`] tells.
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
    match stat_fields(pid) {
        Some(fields) => fields.first().map(String::as_str) != Some("Z"),
        None => true,
    }
}

/// A process's parent PID.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of `/proc/PID/stat` after the command name: state, parent PID, ... (field 3 of
/// `proc(5)` onwards, so field N is at index N - 3).
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
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
            cgroup: None,
            isolation: None,
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
            Some(ExitStatus {
                code: 3,
                signal: 0,
                oom_killed: false
            })
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
                signal: 0,
                oom_killed: false
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
        // Two clients wait (a restarted client agent may wait beside the old one's
        // connection); the socket still answers other requests meanwhile.
        let waiter = |dir: PathBuf| {
            tokio::spawn(async move {
                loop {
                    if let Ok(r) = wait(&dir).await {
                        return r;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let (waiter, second) = (waiter(dir.clone()), waiter(dir.clone()));
        let pid = loop {
            if let Some(p) = read_pid(&dir) {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(alive(pid));
        assert!(!waiter.is_finished() && !second.is_finished());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while signal(&dir, Signal::SIGTERM).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "socket never answered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let reply = waiter.await.unwrap();
        assert_eq!(second.await.unwrap(), reply);
        assert_eq!(reply.pid, pid);
        assert_eq!(
            reply.exit,
            Some(ExitStatus {
                code: -1,
                signal: 15,
                oom_killed: false
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
