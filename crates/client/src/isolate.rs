//! Isolation of an `exec` task, done in the task's process between fork and exec: its own
//! mount, IPC and UTS namespaces (and PID namespace: the executor has made one for its
//! children), a root of its own (the task dir, with the host directories of `chroot_env`
//! bound read-only, a small `/dev`, `/proc` of its PID namespace, and the executor's files
//! hidden), then the task's user.
//!
//! In a PID namespace the first process is the namespace's init: the kernel delivers it only
//! the signals it handles, and when it ends every process of the namespace is killed. So the
//! first process stays behind as a small init ([`init`]): it forwards the stop signals to the
//! task's process group, reaps orphans, and when the task ends kills what is left and writes
//! the task's exit status to a pipe the executor reads. Nothing between fork and exec
//! allocates: every path is made a C string beforehand ([`Prepared`]).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

/// How an `exec` task is isolated (in the executor's spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The task's root: its task dir.
    pub root: PathBuf,
    /// Host paths bound at paths under the root.
    pub binds: Vec<Bind>,
    /// Paths under the root covered by an empty read-only file system (the executor's dir).
    pub hide: Vec<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    /// Its own PID namespace (`pid_mode = "private"`); the executor makes it.
    pub pid_ns: bool,
    /// Its own IPC namespace (`ipc_mode = "private"`).
    pub ipc_ns: bool,
    /// The working directory, inside the root.
    pub cwd: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Inside the root (absolute, as the task sees it).
    pub target: PathBuf,
    pub writable: bool,
}

/// The devices an exec task gets in its `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// One step of the setup, with what to say if it fails.
enum Step {
    Private,
    Bind {
        source: CString,
        target: CString,
        writable: bool,
    },
    Tmpfs {
        target: CString,
        options: CString,
        read_only: bool,
    },
    Touch(CString),
    Mkdir(CString),
    Symlink {
        to: CString,
        at: CString,
    },
    Proc(CString),
    Chroot(CString),
    Chdir(CString),
    User {
        uid: u32,
        gid: u32,
    },
}

/// The setup, ready to run between fork and exec.
pub struct Prepared {
    steps: Vec<(Step, String)>,
    flags: CloneFlags,
    /// Whether the first process stays behind as the PID namespace's init.
    init: bool,
    /// Where a failed step says why (a file in the executor's dir).
    error_fd: RawFd,
    /// Where the init writes the task's exit status.
    status_fd: RawFd,
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// `inner` (absolute, as the task sees it) under `root`.
pub fn under(root: &Path, inner: &Path) -> PathBuf {
    root.join(inner.strip_prefix("/").unwrap_or(inner))
}

impl Isolation {
    /// The setup's steps and messages, made before the fork.
    pub fn prepare(&self, error_fd: RawFd, status_fd: RawFd) -> Prepared {
        let root = &self.root;
        let mut steps: Vec<(Step, String)> = vec![(
            Step::Private,
            "cannot make the task's mounts private".into(),
        )];
        for b in &self.binds {
            let target = under(root, &b.target);
            steps.push((
                Step::Bind {
                    source: c(&b.source),
                    target: c(&target),
                    writable: b.writable,
                },
                format!(
                    "cannot bind {} at {} in the task's root",
                    b.source.display(),
                    b.target.display()
                ),
            ));
        }
        let dev = root.join("dev");
        steps.push((
            Step::Tmpfs {
                target: c(&dev),
                options: CString::new("mode=755,size=64k").unwrap_or_default(),
                read_only: false,
            },
            "cannot mount the task's /dev".into(),
        ));
        for d in DEVICES {
            let at = dev.join(d);
            steps.push((Step::Touch(c(&at)), format!("cannot create /dev/{d}")));
            steps.push((
                Step::Bind {
                    source: c(&Path::new("/dev").join(d)),
                    target: c(&at),
                    writable: true,
                },
                format!("cannot bind /dev/{d}"),
            ));
        }
        for (name, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push((
                Step::Symlink {
                    to: CString::new(to).unwrap_or_default(),
                    at: c(&dev.join(name)),
                },
                format!("cannot link /dev/{name}"),
            ));
        }
        steps.push((
            Step::Mkdir(c(&dev.join("shm"))),
            "cannot create /dev/shm".into(),
        ));
        steps.push((
            Step::Tmpfs {
                target: c(&dev.join("shm")),
                options: CString::new("mode=1777,size=64m").unwrap_or_default(),
                read_only: false,
            },
            "cannot mount /dev/shm".into(),
        ));
        steps.push((
            Step::Proc(c(&root.join("proc"))),
            "cannot mount /proc".into(),
        ));
        for h in &self.hide {
            steps.push((
                Step::Tmpfs {
                    target: c(&under(root, h)),
                    options: CString::new("mode=000,size=4k").unwrap_or_default(),
                    read_only: true,
                },
                format!("cannot hide {}", h.display()),
            ));
        }
        steps.push((
            Step::Chroot(c(root)),
            "cannot change the task's root".into(),
        ));
        steps.push((
            Step::Chdir(c(&self.cwd)),
            format!("cannot change to {} in the task's root", self.cwd.display()),
        ));
        steps.push((
            Step::User {
                uid: self.uid,
                gid: self.gid,
            },
            format!("cannot run as uid {} gid {}", self.uid, self.gid),
        ));
        let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS;
        if self.ipc_ns {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        Prepared {
            steps,
            flags,
            init: self.pid_ns,
            error_fd,
            status_fd,
        }
    }
}

impl Prepared {
    /// Runs in the forked task process before its exec. In a PID namespace this process
    /// becomes the init and never returns; its child goes on to the exec.
    pub fn enter(&self) -> std::io::Result<()> {
        let fail = |what: &str, e: Errno| {
            let fd = unsafe_borrow(self.error_fd);
            for part in [what, ": ", e.desc()] {
                let _ = nix::unistd::write(fd, part.as_bytes());
            }
            std::io::Error::from_raw_os_error(e as i32)
        };
        unshare(self.flags).map_err(|e| fail("cannot make the task's namespaces", e))?;
        if self.init {
            match unsafe_fork().map_err(|e| fail("cannot fork the task's init", e))? {
                ForkResult::Parent { child } => init(child, self.status_fd),
                ForkResult::Child => {
                    setsid().map_err(|e| fail("cannot start the task's session", e))?;
                }
            }
        }
        for (step, what) in &self.steps {
            run(step).map_err(|e| fail(what, e))?;
        }
        Ok(())
    }
}

fn run(step: &Step) -> nix::Result<()> {
    let none: Option<&std::ffi::CStr> = None;
    match step {
        Step::Private => mount(
            none,
            c"/",
            none,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            none,
        ),
        Step::Bind {
            source,
            target,
            writable,
        } => {
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )?;
            if *writable {
                return Ok(());
            }
            mount(
                none,
                target.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
                none,
            )
        }
        Step::Tmpfs {
            target,
            options,
            read_only,
        } => {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if *read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(
                Some(c"tmpfs"),
                target.as_c_str(),
                Some(c"tmpfs"),
                flags,
                Some(options.as_c_str()),
            )
        }
        Step::Touch(path) => nix::fcntl::open(
            path.as_c_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .and_then(nix::unistd::close),
        Step::Mkdir(path) => {
            match nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o1777)) {
                Err(Errno::EEXIST) => Ok(()),
                r => r,
            }
        }
        Step::Symlink { to, at } => nix::unistd::symlinkat(to.as_c_str(), None, at.as_c_str()),
        Step::Proc(target) => mount(
            Some(c"proc"),
            target.as_c_str(),
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            none,
        ),
        Step::Chroot(root) => nix::unistd::chroot(root.as_c_str()),
        Step::Chdir(dir) => nix::unistd::chdir(dir.as_c_str()),
        Step::User { uid, gid } => become_user(*uid, *gid),
    }
}

fn become_user(uid: u32, gid: u32) -> nix::Result<()> {
    let gid = Gid::from_raw(gid);
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(Uid::from_raw(uid))
}

/// Entering a running task's root and user (after joining its namespaces) for a command run
/// inside it: a fork, so that the command is in the task's PID namespace, whose parent waits
/// for it and ends with its status.
#[derive(Debug, Clone)]
pub struct Entry {
    root: CString,
    cwd: CString,
    uid: u32,
    gid: u32,
}

impl Entry {
    pub fn new(iso: &Isolation) -> Entry {
        Entry {
            root: c(&iso.root),
            cwd: c(&iso.cwd),
            uid: iso.uid,
            gid: iso.gid,
        }
    }

    /// Runs between fork and exec, after the namespaces were joined.
    pub fn enter(&self) -> std::io::Result<()> {
        let io = |e: Errno| std::io::Error::from_raw_os_error(e as i32);
        match unsafe_fork().map_err(io)? {
            ForkResult::Parent { child } => {
                // Hold nothing open for the caller to wait on but the command's own output.
                close_from(3, -1);
                let code = loop {
                    match waitpid(child, None) {
                        Ok(WaitStatus::Exited(_, code)) => break code,
                        Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(_) => break 127,
                    }
                };
                exit_now(code)
            }
            ForkResult::Child => {
                // Ends with the parent the caller waits on (and kills at its deadline).
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io)?;
                nix::unistd::chroot(self.root.as_c_str()).map_err(io)?;
                nix::unistd::chdir(self.cwd.as_c_str()).map_err(io)?;
                become_user(self.uid, self.gid).map_err(io)
            }
        }
    }
}

/// Closes the fds from `first` up to `until` (excluded; -1: all), in one system call.
#[allow(unsafe_code)]
fn close_from(first: RawFd, until: RawFd) {
    if until >= 0 && until <= first {
        return;
    }
    let last = if until < 0 {
        u32::MAX
    } else {
        (until - 1) as u32
    };
    // SAFETY: close_range(2) only closes descriptors of this process.
    unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, first as u32, last, 0u32);
    }
}

#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: ends this process without running anything of the parent's.
    unsafe { nix::libc::_exit(code) }
}

#[allow(unsafe_code)]
fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fd stays open in this process until it execs or exits.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

#[allow(unsafe_code)]
fn unsafe_fork() -> nix::Result<ForkResult> {
    // SAFETY: between fork and exec; the child only makes system calls with prepared values.
    unsafe { fork() }
}

/// The task's process group, for the init's signal handler.
static TASK: AtomicI32 = AtomicI32::new(0);

/// The signals the init passes on to the task (SIGKILL and SIGSTOP cannot be caught: a
/// SIGKILL to the init ends the whole namespace).
const FORWARDED: [Signal; 9] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
];

extern "C" fn forward(sig: nix::libc::c_int) {
    let task = TASK.load(Ordering::Relaxed);
    if task > 0 {
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = kill(Pid::from_raw(-task), sig);
        }
    }
}

/// The PID namespace's init: forwards signals to the task's group, reaps every process, and
/// once the task has ended kills the rest, writes the task's status (code and signal, 4
/// bytes each) to `status_fd` and exits.
#[allow(unsafe_code)]
fn init(task: Pid, status_fd: RawFd) -> ! {
    TASK.store(task.as_raw(), Ordering::Relaxed);
    let handler = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only loads an atomic and calls kill(2).
        let _ = unsafe { sigaction(sig, &handler) };
    }
    // Hold nothing of the executor's: its pipes (the task's output, the spawn's error pipe)
    // must close when the task's side does.
    close_from(0, status_fd);
    close_from(status_fd + 1, -1);
    let _ = nix::sys::prctl::set_name(c"yurt-init");
    let mut status: Option<(i32, i32)> = None;
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == task => {
                status = Some((code, 0));
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == task => {
                status = Some((-1, sig as i32));
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if let Some((code, sig)) = status {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&code.to_le_bytes());
        bytes[4..].copy_from_slice(&sig.to_le_bytes());
        let _ = nix::unistd::write(unsafe_borrow(status_fd), &bytes);
    }
    exit_now(0)
}

/// The task's status as the init wrote it, if it did.
pub fn read_status(bytes: &[u8]) -> Option<(i32, i32)> {
    let code = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let sig = i32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    Some((code, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_root_and_the_status_bytes() {
        assert_eq!(
            under(Path::new("/d/task"), Path::new("/usr/bin")),
            PathBuf::from("/d/task/usr/bin")
        );
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(-1i32).to_le_bytes());
        bytes.extend_from_slice(&9i32.to_le_bytes());
        assert_eq!(read_status(&bytes), Some((-1, 9)));
        assert_eq!(read_status(&bytes[..5]), None);
    }
}
