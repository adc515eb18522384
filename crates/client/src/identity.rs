//! Who a process is beyond its PID. The kernel gives a PID to a new process once the old one
//! is gone, and a host that reboots starts counting again: a PID read from a file may name
//! another process by the time it is read. The executor records its own identity and its
//! task's ([`Identity`]: the boot the process runs in, and the clock tick it started at,
//! field 22 of `/proc/PID/stat`) beside the PIDs, and the client signals, joins or counts a
//! recorded PID only while it still names the recorded process.
//!
//! An executor of an older release records no identity: its PIDs are taken as they are, as
//! that release did.

use std::path::Path;

/// A process's boot and start tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    boot: String,
    started: u64,
}

/// Where the executor records its own identity, in its executor dir.
pub const EXECUTOR: &str = "executor-identity";
/// Where the executor records its task's identity (beside `pid`).
pub const TASK: &str = "task-identity";

/// The running system's boot ID (it changes at every boot).
fn boot() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

impl Identity {
    /// The identity of the process at `pid` now (also of a zombie), if there is one.
    pub fn of(pid: i32) -> Option<Identity> {
        let fields = crate::executor::stat_fields(pid)?;
        Some(Identity {
            boot: boot()?,
            // Field 22 of proc(5); `stat_fields` starts at field 3.
            started: fields.get(22 - 3)?.parse().ok()?,
        })
    }

    /// Writes this identity to `path` (replaced whole).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.boot, self.started))?;
        std::fs::rename(tmp, path)
    }

    /// The identity recorded at `path`, if one is (and reads as one).
    pub fn read(path: &Path) -> Option<Identity> {
        let text = std::fs::read_to_string(path).ok()?;
        let (boot, started) = text.trim().split_once(' ')?;
        Some(Identity {
            boot: boot.to_string(),
            started: started.parse().ok()?,
        })
    }
}

/// Whether `pid` may still be taken for the process recorded at `path`: true when nothing was
/// recorded (an older executor), or when the recorded process is of this boot and `pid` names
/// it or nothing at all (a process group outlives its leader, and its ID is not given to
/// another process while the group has members); false when `pid` now names another process,
/// or the record is of an earlier boot.
pub fn still(pid: i32, path: &Path) -> bool {
    let Some(recorded) = Identity::read(path) else {
        return true;
    };
    if boot().is_some_and(|now| now != recorded.boot) {
        return false;
    }
    Identity::of(pid).is_none_or(|now| now == recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_pid_is_taken_only_while_it_names_the_recorded_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TASK);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let me = Identity::of(pid).unwrap();
        // Nothing recorded: taken as it is.
        assert!(still(pid, &path));
        me.write(&path).unwrap();
        assert_eq!(Identity::read(&path), Some(me.clone()));
        assert!(still(pid, &path));
        // The process at this PID started at another tick than the recorded one: another
        // process was given the PID.
        Identity {
            started: me.started + 1,
            ..me.clone()
        }
        .write(&path)
        .unwrap();
        assert!(!still(pid, &path));
        // The same PID and start tick from an earlier boot.
        Identity {
            boot: "an-earlier-boot".into(),
            ..me.clone()
        }
        .write(&path)
        .unwrap();
        assert!(!still(pid, &path));
        // Gone (reaped), and no other process took its PID: its group may still be signalled.
        me.write(&path).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(still(pid, &path), Identity::of(pid).is_none());
        // A record that does not read as one counts as none.
        std::fs::write(&path, "garbage").unwrap();
        assert!(still(pid, &path));
    }
}
