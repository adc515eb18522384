//! The executor launcher: `yurt executor-launcher`, a small single-threaded process (no
//! argument parser, no async runtime) that the client agent starts once and keeps. For each
//! executor dir the client writes on its stdin, one path per line, it forks an executor
//! ([`crate::executor::run`]) and answers on its stdout with the executor's PID, or with
//! `error ` and the reason. A fork of this small process costs a fraction of an `exec` of
//! `yurt` (loading the binary and its libraries, faulting in their pages), which was the
//! largest part of starting a task.
//!
//! The launcher says [`HELLO`] once it is ready; a binary that does not know this mode (or is
//! not `yurt` at all) never does, and the client then starts executors directly. It ignores
//! `SIGCHLD`, so the kernel reaps the executors that end while it lives; it exits when the
//! client closes its stdin (the client stopped, or was replaced), and its executors live on
//! under init, as directly started ones do.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, ForkResult};

/// The launcher's first line: ready to take requests.
pub const HELLO: &str = "yurt executor launcher 1";

/// The launcher's main; returns when the client closes its stdin.
#[allow(unsafe_code)]
pub fn run() -> i32 {
    // SAFETY: this process has one thread, and no other code handles signals in it.
    unsafe {
        let _ = signal(Signal::SIGCHLD, SigHandler::SigIgn);
    }
    let reply = |text: &str| {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
    };
    if reply(HELLO).is_err() {
        return 1;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        // The lock is let go before the fork: the child never inherits a held lock.
        match std::io::stdin().lock().read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let dir = PathBuf::from(OsString::from_vec(line.clone()));
        // SAFETY: single-threaded, so the child may go on running ordinary code.
        let answer = match unsafe { fork() } {
            Ok(ForkResult::Child) => executor(&dir),
            Ok(ForkResult::Parent { child }) => child.to_string(),
            Err(e) => format!("error cannot fork an executor: {e}"),
        };
        if reply(&answer).is_err() {
            return 0;
        }
    }
}

/// The forked child: an executor, detached from the launcher's pipes to the client.
#[allow(unsafe_code)]
fn executor(dir: &Path) -> ! {
    // SAFETY: as in `run`, one thread.
    unsafe {
        let _ = signal(Signal::SIGCHLD, SigHandler::SigDfl);
    }
    // Named for `ps` and `top` (the command line stays the launcher's).
    let _ = nix::sys::prctl::set_name(c"yurt executor");
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    std::process::exit(crate::executor::run(dir))
}

/// The client's side: a running launcher.
pub struct Launcher {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

/// Why the launcher could not start an executor.
#[derive(Debug, PartialEq, Eq)]
pub enum LaunchError {
    /// A dir the line-based protocol cannot carry (its path has a line break): start that
    /// executor some other way.
    Unsuitable,
    /// The launcher is gone or unusable; whether it started this executor is unknown only if
    /// the request reached it (`sent`).
    Gone { sent: bool, why: String },
    /// The launcher is fine, the executor could not be started.
    Failed(String),
}

impl Launcher {
    /// Starts `exe executor-launcher` and waits until it is ready.
    pub fn start(exe: &Path) -> std::io::Result<Launcher> {
        let mut child = Command::new(exe)
            .arg("executor-launcher")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the launcher's pipes are missing"));
        };
        let mut launcher = Launcher {
            child,
            input,
            output: BufReader::new(output),
        };
        let mut hello = String::new();
        launcher.output.read_line(&mut hello)?;
        if hello.trim_end() != HELLO {
            return Err(std::io::Error::other(format!(
                "{} is not an executor launcher",
                exe.display()
            )));
        }
        Ok(launcher)
    }

    /// Forks one executor for `dir`; its PID.
    pub fn launch(&mut self, dir: &Path) -> Result<i32, LaunchError> {
        let bytes = dir.as_os_str().as_bytes();
        if bytes.contains(&b'\n') {
            return Err(LaunchError::Unsuitable);
        }
        let gone = |sent: bool, e: std::io::Error| LaunchError::Gone {
            sent,
            why: e.to_string(),
        };
        let mut req = Vec::with_capacity(bytes.len() + 1);
        req.extend_from_slice(bytes);
        req.push(b'\n');
        self.input.write_all(&req).map_err(|e| gone(false, e))?;
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err(LaunchError::Gone {
                sent: true,
                why: "the launcher ended".into(),
            }),
            Err(e) => Err(gone(true, e)),
            Ok(_) => {
                let line = line.trim_end();
                if let Some(why) = line.strip_prefix("error ") {
                    return Err(LaunchError::Failed(why.to_string()));
                }
                line.parse().map_err(|_| LaunchError::Gone {
                    sent: true,
                    why: format!("unexpected answer {line:?}"),
                })
            }
        }
    }
}

impl Drop for Launcher {
    /// Ends the launcher (it has nothing of its own to finish; its executors are not touched)
    /// and reaps it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
