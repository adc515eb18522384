//! `exec`: the task isolated as Nomad's exec driver isolates it. Linux, client running as
//! root: its own PID, mount, IPC and UTS namespaces (`pid_mode`/`ipc_mode` `private`, or
//! `host` where the task or the client's `default_pid_mode`/`default_ipc_mode` says so), the
//! task dir as its root with the host directories of `chroot_env` bound read-only and the
//! allocation's `alloc/`, its own `local/`, `secrets/` (only its user may read it) and
//! `tmp/`, run as `user` (default `nobody`; the client's `user.denylist` refuses root), in a
//! cgroup that enforces its `memory` (hard limit, no swap), `cpu` (a weight relative to other
//! tasks) and a process limit. The host's network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yurt_proto::v1::DriverInfo;
use yurt_types::agentconfig::DriverConfig;

use super::executors::Flavour;
use super::{config_string, dir_env, info, make_dir, TaskStart};
use crate::cgroup::{self, Group, Limits};
use crate::executor::{Confine, ExecSpec};
use crate::isolate::{self, Bind, Isolation};

pub const NAME: &str = "exec";

/// Nomad's default `chroot_env`: what an exec task's root holds from the host.
pub const DEFAULT_CHROOT_ENV: [&str; 8] = [
    "/bin",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/run/resolvconf",
    "/sbin",
    "/usr",
];

/// The most processes one task may have unless the client says otherwise.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

pub struct Exec {
    chroot_env: BTreeMap<String, String>,
    pid_host: bool,
    ipc_host: bool,
    pids_limit: u32,
    denylist: Vec<String>,
    checked: bool,
}

impl Exec {
    pub fn new(config: &DriverConfig) -> Exec {
        let chroot_env = config.chroot_env.clone().unwrap_or_else(|| {
            DEFAULT_CHROOT_ENV
                .iter()
                .map(|p| (p.to_string(), p.to_string()))
                .collect()
        });
        let checked = config
            .user_checked_drivers
            .as_ref()
            .is_none_or(|l| l.iter().any(|d| d == NAME));
        Exec {
            chroot_env,
            pid_host: config.default_pid_mode.as_deref() == Some("host"),
            ipc_host: config.default_ipc_mode.as_deref() == Some("host"),
            pids_limit: config.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT),
            denylist: config
                .user_denylist
                .clone()
                .unwrap_or_else(|| vec!["root".into(), "Administrator".into()]),
            checked,
        }
    }

    /// The task's user: its name, uid and gid; refused when unknown or denied.
    fn user(&self, name: &str) -> Result<(u32, u32), String> {
        if self.checked && self.denylist.iter().any(|u| u == name) {
            return Err(format!(
                "user {name:?} is denied by the client's user.denylist for the exec driver"
            ));
        }
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
            Ok(None) => Err(format!("user {name:?} not found")),
            Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
        }
    }

    /// The mount points under the root for the host paths of `chroot_env` that exist (a
    /// directory or a file, as on the host).
    fn binds(&self, root: &Path) -> Result<Vec<Bind>, String> {
        let mut out = Vec::new();
        for (source, target) in &self.chroot_env {
            let Ok(meta) = std::fs::metadata(source) else {
                continue;
            };
            let at = isolate::under(root, Path::new(target));
            if meta.is_dir() {
                std::fs::create_dir_all(&at)
            } else {
                at.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&at, b""))
            }
            .map_err(|e| format!("cannot make {} in the task's root: {e}", at.display()))?;
            out.push(Bind {
                source: source.into(),
                target: target.into(),
                writable: false,
            });
        }
        Ok(out)
    }

    /// Whether the task asks for `private` or `host` (else the client's default).
    fn host_mode(&self, t: &TaskStart<'_>, key: &str, default: bool) -> Result<bool, String> {
        match config_string(t.task, key).as_deref() {
            None => Ok(default),
            Some("private") => Ok(false),
            Some("host") => Ok(true),
            Some(other) => Err(format!(
                "config.{key} must be \"private\" or \"host\", found {other:?}"
            )),
        }
    }
}

/// The exec driver's fingerprint from what this machine offers: Linux, root, PID namespaces
/// and cgroups, or the reason it cannot run tasks.
pub fn health(
    linux: bool,
    root: bool,
    pid_namespaces: bool,
    layout: Result<cgroup::Layout, String>,
    now: i64,
) -> DriverInfo {
    if !linux {
        return info(false, false, "the exec driver runs on Linux only", now);
    }
    if !root {
        return info(
            true,
            false,
            "the exec driver needs the client to run as root",
            now,
        );
    }
    if !pid_namespaces {
        return info(true, false, "this kernel has no PID namespaces", now);
    }
    match layout {
        Ok(layout) => {
            let mut i = info(true, true, "Healthy", now);
            let version = match layout {
                cgroup::Layout::V1(_) => "v1",
                cgroup::Layout::V2(_) => "v2",
            };
            i.attributes
                .insert("driver.exec.cgroup".into(), version.into());
            i
        }
        Err(why) => info(true, false, format!("no usable cgroups: {why}"), now),
    }
}

/// A task's hard and soft memory limits in bytes: `memory`, or with oversubscription
/// `memory_max` with `memory` as the soft limit (0: none).
pub fn memory_limits(r: &yurt_proto::v1::Resources, oversubscription: bool) -> (u64, u64) {
    let mb = |m: u32| u64::from(m.max(1)) << 20;
    if oversubscription && r.memory_max_mb > r.memory_mb {
        (mb(r.memory_max_mb), mb(r.memory_mb))
    } else {
        (mb(r.memory_mb), 0)
    }
}

impl Flavour for Exec {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fingerprint(&self) -> DriverInfo {
        health(
            cfg!(target_os = "linux"),
            nix::unistd::geteuid().is_root(),
            Path::new("/proc/self/ns/pid").exists(),
            cgroup::layout(),
            crate::runner::now_ms(),
        )
    }

    fn spec(&self, t: TaskStart<'_>) -> Result<ExecSpec, String> {
        let user = t.task.user.clone();
        let user = if user.is_empty() {
            "nobody".into()
        } else {
            user
        };
        let (uid, gid) = self.user(&user)?;
        let pid_host = self.host_mode(&t, "pid_mode", self.pid_host)?;
        let ipc_host = self.host_mode(&t, "ipc_mode", self.ipc_host)?;
        let layout = cgroup::layout()?;
        let root = t.task_dir;
        make_dir(root, 0o755, Some((0, 0)))?;
        // Shared by the group's tasks; sticky, so that no task can move what it does not own
        // (the client's `logs/`, which the executor writes as root) and put a link there.
        make_dir(&t.alloc_dir.join("alloc"), 0o1777, None)?;
        make_dir(&root.join("local"), 0o755, Some((uid, gid)))?;
        make_dir(&root.join("secrets"), 0o700, Some((uid, gid)))?;
        make_dir(&root.join("tmp"), 0o1777, None)?;
        for d in ["alloc", "dev", "proc"] {
            make_dir(&root.join(d), 0o755, None)?;
        }
        let mut binds = self.binds(root)?;
        binds.push(Bind {
            source: t.alloc_dir.join("alloc"),
            target: "/alloc".into(),
            writable: true,
        });
        // The executor's files are in the task dir: covered, the task cannot read them.
        let hide: Vec<PathBuf> = t
            .handle_dir
            .strip_prefix(root)
            .ok()
            .map(|rel| Path::new("/").join(rel))
            .into_iter()
            .collect();
        let mut env = t.env;
        dir_env(
            &mut env,
            Path::new("/alloc"),
            Path::new("/local"),
            Path::new("/secrets"),
        );
        env.insert("HOME".into(), "/local".into());
        env.insert("USER".into(), user.clone());
        let (command, args) = super::command_line(t.task, &env)?;
        let resources = t.task.resources.unwrap_or_default();
        let (memory, soft) = memory_limits(&resources, t.memory_oversubscription);
        Ok(ExecSpec {
            command,
            args,
            env,
            dir: "/".into(),
            stdout: t.stdout,
            stderr: t.stderr,
            cgroup: Some(Confine {
                group: Group::for_task(layout, t.alloc_id, &t.task.name),
                limits: Some(Limits {
                    memory_bytes: memory,
                    memory_soft_bytes: soft,
                    cpu_mhz: resources.cpu,
                    pids: self.pids_limit,
                }),
            }),
            isolation: Some(Isolation {
                root: root.to_path_buf(),
                binds,
                hide,
                uid,
                gid,
                pid_ns: !pid_host,
                ipc_ns: !ipc_host,
                cwd: "/".into(),
            }),
        })
    }
}
