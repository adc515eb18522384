//! Control groups for tasks, in both layouts: cgroup v1 (one hierarchy per controller) and v2
//! (one unified hierarchy). Each task gets `yurt/<alloc id>.<task>` in every hierarchy it
//! uses: its limits (memory, CPU weight, process count) are written there, the task's
//! processes join it before they run, its usage is read from it, and at the end every process
//! still in it is killed (also ones that left the task's process group) and the group removed.
//!
//! Where the hierarchies are, the paths and the limits' values are pure functions (unit tests
//! for both layouts); the rest is a few reads and writes of cgroup files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The parent group of every task's group.
pub const PARENT: &str = "yurt";

/// The v1 controllers a task's group is made in.
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

/// Where this machine's cgroups are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// One mount point per controller (`memory` → `/sys/fs/cgroup/memory`, ...).
    V1(Vec<(String, PathBuf)>),
    /// The unified hierarchy's mount point.
    V2(PathBuf),
}

/// The layout from `/proc/self/mountinfo`'s text: a unified hierarchy that has controllers is
/// v2 (`controllers` says whether the mount point's `cgroup.controllers` names any); else the
/// v1 hierarchies of the controllers Yurt uses, if all are mounted.
pub fn layout_from(mountinfo: &str, controllers: impl Fn(&Path) -> bool) -> Result<Layout, String> {
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split_whitespace().collect();
        let theirs: Vec<&str> = right.split_whitespace().collect();
        let (Some(point), Some(fstype)) = (fields.get(4), theirs.first()) else {
            continue;
        };
        let point = PathBuf::from(point.replace("\\040", " "));
        match *fstype {
            "cgroup2" if controllers(&point) => return Ok(Layout::V2(point)),
            "cgroup" => {
                let options = theirs.get(2).copied().unwrap_or_default();
                for c in options.split(',') {
                    if V1_CONTROLLERS.contains(&c) && !v1.iter().any(|(n, _)| n == c) {
                        v1.push((c.to_string(), point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let missing: Vec<&str> = V1_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !v1.iter().any(|(n, _)| n == c))
        .collect();
    if v1.is_empty() {
        return Err("no cgroup hierarchy is mounted".into());
    }
    if !missing.is_empty() {
        return Err(format!(
            "the cgroup v1 controllers {} are not mounted",
            missing.join(", ")
        ));
    }
    Ok(Layout::V1(v1))
}

/// This machine's layout.
pub fn layout() -> Result<Layout, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    layout_from(&mountinfo, |p| {
        std::fs::read_to_string(p.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
    })
}

/// A task's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard memory limit (`resources.memory`, or `memory_max` with oversubscription); no swap
    /// beyond it.
    pub memory_bytes: u64,
    /// What the task reserved (`resources.memory`) when it may go past it: the kernel takes
    /// memory back from it first under pressure (0: no soft limit).
    #[serde(default)]
    pub memory_soft_bytes: u64,
    /// `resources.cpu` in MHz: a share of the CPU relative to other tasks, not a cap.
    pub cpu_mhz: u32,
    /// Most processes the task may have at once; 0 for no limit.
    pub pids: u32,
}

/// One file to write in one group: `(controller or "" in v2, file, value)`.
pub type Setting = (&'static str, &'static str, String);

/// The files that put `limits` in force, in the order to write them.
pub fn settings(layout: &Layout, limits: &Limits) -> Vec<Setting> {
    let pids = if limits.pids == 0 {
        "max".to_string()
    } else {
        limits.pids.to_string()
    };
    let mut out = match layout {
        Layout::V1(_) => vec![
            (
                "memory",
                "memory.limit_in_bytes",
                limits.memory_bytes.to_string(),
            ),
            // Absent when the kernel has no swap accounting; then swappiness keeps it off.
            (
                "memory",
                "memory.memsw.limit_in_bytes",
                limits.memory_bytes.to_string(),
            ),
            ("memory", "memory.swappiness", "0".into()),
            ("cpu", "cpu.shares", cpu_shares(limits.cpu_mhz).to_string()),
            ("pids", "pids.max", pids),
        ],
        Layout::V2(_) => vec![
            ("", "memory.max", limits.memory_bytes.to_string()),
            ("", "memory.swap.max", "0".into()),
            (
                "",
                "cpu.weight",
                cpu_weight(cpu_shares(limits.cpu_mhz)).to_string(),
            ),
            ("", "pids.max", pids),
        ],
    };
    if limits.memory_soft_bytes > 0 {
        let soft = limits.memory_soft_bytes.to_string();
        out.push(match layout {
            Layout::V1(_) => ("memory", "memory.soft_limit_in_bytes", soft),
            Layout::V2(_) => ("", "memory.low", soft),
        });
    }
    out
}

/// v1 CPU shares for `cpu` MHz (the kernel's least is 2).
pub fn cpu_shares(cpu_mhz: u32) -> u64 {
    u64::from(cpu_mhz).max(2)
}

/// v2 CPU weight (1 to 10000) for v1 shares (2 to 262144), as the kernel's documentation maps
/// them.
pub fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// A task's group: its path in every hierarchy it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub layout: Layout,
    /// `yurt/<alloc id>.<task>`, relative to each hierarchy's root.
    pub name: String,
}

impl Group {
    pub fn for_task(layout: Layout, alloc_id: &str, task: &str) -> Group {
        Group {
            layout,
            name: format!("{PARENT}/{alloc_id}.{task}"),
        }
    }

    /// The group's directory for `controller` (`""`: v2's only one).
    pub fn dir(&self, controller: &str) -> Option<PathBuf> {
        match &self.layout {
            Layout::V2(root) => Some(root.join(&self.name)),
            Layout::V1(points) => points
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, p)| p.join(&self.name)),
        }
    }

    /// Every directory of the group (one per v1 hierarchy, shared mounts once).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match &self.layout {
            Layout::V2(root) => vec![root.join(&self.name)],
            Layout::V1(points) => points.iter().map(|(_, p)| p.join(&self.name)).collect(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// Makes the group and writes its limits, if it has any.
    pub fn create(&self, limits: Option<&Limits>) -> Result<(), String> {
        if let Layout::V2(root) = &self.layout {
            // The controllers must be enabled in every group above the task's.
            enable_v2(root)?;
            let parent = root.join(PARENT);
            mkdir(&parent)?;
            enable_v2(&parent)?;
        }
        for dir in self.dirs() {
            if let Some(parent) = dir.parent() {
                mkdir(parent)?;
            }
            mkdir(&dir)?;
        }
        let Some(limits) = limits else {
            return Ok(());
        };
        for (controller, file, value) in settings(&self.layout, limits) {
            let Some(dir) = self.dir(controller) else {
                continue;
            };
            let path = dir.join(file);
            if !path.exists() && matches!(file, "memory.memsw.limit_in_bytes" | "memory.swap.max") {
                continue;
            }
            std::fs::write(&path, &value)
                .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes `0` to in order to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// The PIDs in the group.
    pub fn pids(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kills every process in the group, frozen first so that none forks meanwhile, and
    /// waits (briefly) until the group is empty.
    pub fn kill_all(&self) {
        let freeze = |state: &str| match &self.layout {
            Layout::V1(_) => {
                if let Some(d) = self.dir("freezer") {
                    let _ = std::fs::write(d.join("freezer.state"), state);
                }
            }
            Layout::V2(_) => {
                if let Some(d) = self.dir("") {
                    let frozen = if state == "FROZEN" { "1" } else { "0" };
                    let _ = std::fs::write(d.join("cgroup.freeze"), frozen);
                }
            }
        };
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            freeze("FROZEN");
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            freeze("THAWED");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills what is left in the group and removes it.
    pub fn destroy(&self) {
        self.kill_all();
        for dir in self.dirs() {
            for _ in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process of the group.
    pub fn oom_kills(&self) -> u64 {
        let (dir, file) = match &self.layout {
            Layout::V1(_) => (self.dir("memory"), "memory.oom_control"),
            Layout::V2(_) => (self.dir(""), "memory.events"),
        };
        dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// The group's memory and CPU usage.
    pub fn usage(&self) -> Usage {
        let read = |controller: &str, file: &str| {
            self.dir(controller)
                .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
                .unwrap_or_default()
        };
        usage_from(&self.layout, read)
    }
}

/// A task's resource usage, as Nomad's `ResourceUsage` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    pub max_usage_bytes: u64,
    /// CPU time used in all, nanoseconds.
    pub cpu_total_ns: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// The usage from the group's files (`read(controller, file)` gives a file's text).
pub fn usage_from(layout: &Layout, read: impl Fn(&str, &str) -> String) -> Usage {
    match layout {
        Layout::V1(_) => {
            let stat = read("memory", "memory.stat");
            let cpu = read("cpu", "cpu.stat");
            Usage {
                rss_bytes: keyed(&stat, "total_rss")
                    .or(keyed(&stat, "rss"))
                    .unwrap_or(0),
                cache_bytes: keyed(&stat, "total_cache")
                    .or(keyed(&stat, "cache"))
                    .unwrap_or(0),
                max_usage_bytes: read("memory", "memory.max_usage_in_bytes")
                    .trim()
                    .parse()
                    .unwrap_or(0),
                cpu_total_ns: read("cpuacct", "cpuacct.usage").trim().parse().unwrap_or(0),
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_ns: keyed(&cpu, "throttled_time").unwrap_or(0),
            }
        }
        Layout::V2(_) => {
            let stat = read("", "memory.stat");
            let cpu = read("", "cpu.stat");
            Usage {
                rss_bytes: keyed(&stat, "anon").unwrap_or(0),
                cache_bytes: keyed(&stat, "file").unwrap_or(0),
                max_usage_bytes: read("", "memory.peak").trim().parse().unwrap_or(0),
                cpu_total_ns: keyed(&cpu, "usage_usec").unwrap_or(0) * 1000,
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_ns: keyed(&cpu, "throttled_usec").unwrap_or(0) * 1000,
            }
        }
    }
}

/// The number after `key` in a `key value` per line file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
}

/// Enables the memory, cpu and pids controllers for the children of a v2 group.
fn enable_v2(dir: &Path) -> Result<(), String> {
    let path = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&path).unwrap_or_default();
    for c in ["memory", "cpu", "pids"] {
        if on.split_whitespace().any(|x| x == c) {
            continue;
        }
        std::fs::write(&path, format!("+{c}"))
            .map_err(|e| format!("cannot enable the {c} controller in {}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
25 1 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 25 0:27 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
31 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn finds_both_layouts_and_says_what_is_missing() {
        // A hybrid machine: the unified mount has no controllers, so v1 is used.
        let v1 = layout_from(V1, |_| false).unwrap();
        let Layout::V1(points) = &v1 else {
            panic!("{v1:?}")
        };
        assert_eq!(points.len(), 5);
        assert_eq!(
            layout_from(V2, |_| true).unwrap(),
            Layout::V2("/sys/fs/cgroup".into())
        );
        let joint = V1.replace("rw,cpu\n", "rw,cpu,cpuacct\n").replace(
            "27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n",
            "",
        );
        let g = Group::for_task(layout_from(&joint, |_| false).unwrap(), "a1", "web");
        assert_eq!(
            g.dir("cpuacct").unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpu/yurt/a1.web")
        );
        // The joint mount is one directory, not two.
        assert_eq!(g.dirs().len(), 4);
        assert_eq!(
            layout_from(&V1.replace("rw,pids\n", "rw\n"), |_| false).unwrap_err(),
            "the cgroup v1 controllers pids are not mounted"
        );
        assert_eq!(
            layout_from("", |_| true).unwrap_err(),
            "no cgroup hierarchy is mounted"
        );
    }

    #[test]
    fn limits_in_both_layouts() {
        let limits = Limits {
            memory_bytes: 64 << 20,
            memory_soft_bytes: 0,
            cpu_mhz: 300,
            pids: 0,
        };
        let v1 = settings(&layout_from(V1, |_| false).unwrap(), &limits);
        assert!(v1.contains(&("memory", "memory.limit_in_bytes", "67108864".into())));
        assert!(v1.contains(&("cpu", "cpu.shares", "300".into())));
        assert!(v1.contains(&("pids", "pids.max", "max".into())));
        let v2 = settings(&Layout::V2("/c".into()), &Limits { pids: 64, ..limits });
        assert!(v2.contains(&("", "memory.max", "67108864".into())));
        assert!(v2.contains(&("", "memory.swap.max", "0".into())));
        assert!(v2.contains(&("", "cpu.weight", "12".into())));
        assert!(v2.contains(&("", "pids.max", "64".into())));
        assert!(!v2.iter().any(|(_, f, _)| *f == "memory.low"));
        // Oversubscribed: the hard limit is memory_max, the reservation a soft limit.
        let over = Limits {
            memory_soft_bytes: 32 << 20,
            ..limits
        };
        let v1 = settings(&layout_from(V1, |_| false).unwrap(), &over);
        assert!(v1.contains(&("memory", "memory.soft_limit_in_bytes", "33554432".into())));
        let v2 = settings(&Layout::V2("/c".into()), &over);
        assert!(v2.contains(&("", "memory.low", "33554432".into())));
        // The kernel's mapping: the ends of the ranges, and 1024 shares (v1's default) ≈ 39.
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_shares(0), 2);
        let g = Group::for_task(Layout::V2("/c".into()), "a1", "web");
        assert_eq!(g.dirs(), vec![PathBuf::from("/c/yurt/a1.web")]);
        assert_eq!(
            g.procs_files(),
            vec![PathBuf::from("/c/yurt/a1.web/cgroup.procs")]
        );
    }

    #[test]
    fn usage_in_both_layouts() {
        let v1 = layout_from(V1, |_| false).unwrap();
        let u = usage_from(&v1, |c, f| match (c, f) {
            ("memory", "memory.stat") => {
                "cache 4096\nrss 8192\ntotal_cache 4096\ntotal_rss 12288\n".into()
            }
            ("memory", "memory.max_usage_in_bytes") => "20000\n".into(),
            ("cpuacct", "cpuacct.usage") => "123456789\n".into(),
            ("cpu", "cpu.stat") => "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n".into(),
            _ => String::new(),
        });
        assert_eq!(
            u,
            Usage {
                rss_bytes: 12288,
                cache_bytes: 4096,
                max_usage_bytes: 20000,
                cpu_total_ns: 123_456_789,
                throttled_periods: 2,
                throttled_ns: 5000,
            }
        );
        let u = usage_from(&Layout::V2("/c".into()), |_, f| match f {
            "memory.stat" => "anon 100\nfile 50\n".into(),
            "memory.peak" => "300\n".into(),
            "cpu.stat" => "usage_usec 7\nnr_throttled 1\nthrottled_usec 3\n".into(),
            _ => String::new(),
        });
        assert_eq!(u.rss_bytes, 100);
        assert_eq!(u.cpu_total_ns, 7000);
        assert_eq!(u.throttled_ns, 3000);
        assert_eq!(keyed("oom 0\noom_kill 3\n", "oom_kill"), Some(3));
    }
}
