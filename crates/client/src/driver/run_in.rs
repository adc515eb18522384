//! A command run inside a running task of the executor's drivers (`Driver::exec`, for
//! `alloc exec`): with the task's environment, in its cgroup, and for an isolated task in its
//! namespaces and root as its user; its output kept up to a bound, killed at its deadline.

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;

use super::executors::spec;
use super::{ExecOutput, Handle};
use crate::executor;
use crate::isolate::Entry;

/// The most of each stream an answer carries.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Runs `command` in the task `h` names; refuses when the task does not run, kills the command
/// (and what it started) when `timeout` passes.
#[allow(unsafe_code)]
pub fn run_in(h: Handle<'_>, command: &[String], timeout: Duration) -> std::io::Result<ExecOutput> {
    let spec = spec(h.dir).ok_or_else(|| std::io::Error::other("the task's spec is unreadable"))?;
    let pid = executor::task_pid(h.dir)
        .filter(|p| executor::alive(*p))
        .ok_or_else(|| std::io::Error::other("the task is not running"))?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    let procs: Vec<std::fs::File> = match &spec.cgroup {
        Some(c) => c
            .group
            .procs_files()
            .iter()
            .map(|f| std::fs::OpenOptions::new().write(true).open(f))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let join: Vec<i32> = procs.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // The task's namespaces, entered through its first process's (for exec, the init's).
    let mut spaces = Vec::new();
    let entry = match &spec.isolation {
        None => {
            cmd.current_dir(&spec.dir);
            None
        }
        Some(iso) => {
            for (name, flag) in [
                ("ipc", CloneFlags::CLONE_NEWIPC),
                ("uts", CloneFlags::CLONE_NEWUTS),
                ("pid", CloneFlags::CLONE_NEWPID),
                ("mnt", CloneFlags::CLONE_NEWNS),
            ] {
                let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}"))?;
                spaces.push((f, flag));
            }
            Some(Entry::new(iso))
        }
    };
    let fds: Vec<(i32, CloneFlags)> = spaces.iter().map(|(f, fl)| (f.as_raw_fd(), *fl)).collect();
    // SAFETY: the closure runs between fork and exec and only makes system calls with values
    // prepared here.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &join {
                nix::unistd::write(BorrowedFd::borrow_raw(*fd), b"0")?;
            }
            for (fd, flag) in &fds {
                nix::sched::setns(BorrowedFd::borrow_raw(*fd), *flag)?;
            }
            match &entry {
                Some(e) => e.enter(),
                None => Ok(()),
            }
        });
    }
    let mut child = cmd.spawn()?;
    drop(spaces);
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut more = false;
            if let Some(mut p) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    more |= n > room;
                }
            }
            (kept, more)
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the command did not finish within {}",
                    yurt_types::duration::format(timeout)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (stdout, more_out) = out.join().unwrap_or_default();
    let (stderr, more_err) = err.join().unwrap_or_default();
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        truncated: more_out || more_err,
    })
}
