//! `raw_exec`: the task is a process on the host, as the client's user, in the task dir. Off
//! unless the client enables it (`plugin "raw_exec" { config { enabled = true } }`, or a `-dev`
//! agent), as in Nomad. Its processes are put in a cgroup (when the client can make one) for
//! usage and cleanup, without limits: whatever the task leaves running dies with it.

use yurt_proto::v1::DriverInfo;
use yurt_types::agentconfig::DriverConfig;

use super::executors::Flavour;
use super::{dir_env, info, make_dir, TaskStart};
use crate::cgroup::{self, Group};
use crate::executor::{Confine, ExecSpec};

pub const NAME: &str = "raw_exec";

/// Why a disabled raw_exec runs nothing.
pub const DISABLED: &str = "disabled: the client enables it with plugin \"raw_exec\" { config { enabled = true } } (a -dev agent has it on)";

pub struct RawExec {
    enabled: bool,
}

impl RawExec {
    pub fn new(config: &DriverConfig) -> RawExec {
        RawExec {
            enabled: config.raw_exec_enabled.unwrap_or(false),
        }
    }
}

impl Flavour for RawExec {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fingerprint(&self) -> DriverInfo {
        let now = crate::runner::now_ms();
        if self.enabled {
            info(true, true, "Healthy", now)
        } else {
            info(false, false, DISABLED, now)
        }
    }

    fn spec(&self, t: TaskStart<'_>) -> Result<ExecSpec, String> {
        let local = t.task_dir.join("local");
        let secrets = t.task_dir.join("secrets");
        for (dir, mode) in [
            (&local, 0o755),
            (&secrets, 0o700),
            (&t.task_dir.join("tmp"), 0o1777),
        ] {
            make_dir(dir, mode, None)?;
        }
        let mut env = t.env;
        dir_env(&mut env, &t.alloc_dir.join("alloc"), &local, &secrets);
        let (command, args) = super::command_line(t.task, &env)?;
        // Tracking only: a client that cannot make cgroups (not root, none mounted) runs the
        // task without.
        let cgroup = match cgroup::layout() {
            Ok(layout) if nix::unistd::geteuid().is_root() => Some(Confine {
                group: Group::for_task(layout, t.alloc_id, &t.task.name),
                limits: None,
            }),
            _ => None,
        };
        Ok(ExecSpec {
            command,
            args,
            env,
            dir: t.task_dir.to_path_buf(),
            stdout: t.stdout,
            stderr: t.stderr,
            cgroup,
            isolation: None,
        })
    }
}
