//! The client host's usage, as Nomad's `/v1/client/stats` shows it: memory (`/proc/meminfo`),
//! each CPU's user, system and idle share since the previous reading (`/proc/stat`; since boot
//! for the first), uptime (`/proc/uptime`), and the disk of the client's data dir (statvfs).
//! The parsing is pure and tested on sample text.

use std::path::Path;
use std::sync::Mutex;

use yurt_proto::v1::{HostCpuStats, HostDiskStats, HostMemoryStats, HostStats};

/// One CPU's counters from `/proc/stat` (jiffies): name, user (+nice), system (+irq, softirq),
/// idle (+iowait), total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTimes {
    pub name: String,
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub total: u64,
}

/// The per-CPU lines of `/proc/stat` (`cpu0`, `cpu1`...; not the `cpu` sum).
pub fn parse_proc_stat(text: &str) -> Vec<CpuTimes> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let n: Vec<u64> = f.filter_map(|v| v.parse().ok()).collect();
            let at = |i: usize| n.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            Some(CpuTimes {
                name,
                user: at(0) + at(1),
                system: at(2) + at(5) + at(6),
                idle: at(3) + at(4),
                total: n.iter().take(8).sum(),
            })
        })
        .collect()
}

/// `/proc/meminfo`'s total, available and free memory, in bytes.
pub fn parse_meminfo(text: &str) -> HostMemoryStats {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kib("MemTotal");
    let available = kib("MemAvailable");
    HostMemoryStats {
        total,
        available,
        used: total.saturating_sub(available),
        free: kib("MemFree"),
    }
}

/// Each CPU's shares (percent) between two readings.
pub fn cpu_percent(before: &[CpuTimes], now: &[CpuTimes]) -> Vec<HostCpuStats> {
    now.iter()
        .map(|n| {
            let b = before.iter().find(|b| b.name == n.name);
            let d = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(0)) as f64;
            let total = d(n.total, b.map(|b| b.total)).max(1.0);
            let user = 100.0 * d(n.user, b.map(|b| b.user)) / total;
            let system = 100.0 * d(n.system, b.map(|b| b.system)) / total;
            let idle = 100.0 * d(n.idle, b.map(|b| b.idle)) / total;
            HostCpuStats {
                cpu: n.name.clone(),
                user,
                system,
                idle,
                total: 100.0 - idle,
            }
        })
        .collect()
}

/// The previous CPU reading, for the shares since then.
#[derive(Default)]
pub struct Sampler(Mutex<Vec<CpuTimes>>);

impl Sampler {
    /// Reads the host's usage now; `data_dir` names the disk reported.
    pub fn read(&self, data_dir: &Path, now_unix_ms: i64) -> HostStats {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let now = parse_proc_stat(&stat);
        let cpus = {
            let mut before = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let shares = cpu_percent(&before, &now);
            *before = now;
            shares
        };
        let memory = parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
        let uptime_s = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0, |s| s as u64);
        // statvfs's counts are `fsblkcnt_t`, whose width differs between platforms.
        #[allow(clippy::unnecessary_cast)]
        let disk = nix::sys::statvfs::statvfs(data_dir).ok().map(|v| {
            let block = v.fragment_size() as u64;
            let size = v.blocks() as u64 * block;
            let available = v.blocks_available() as u64 * block;
            let used = size.saturating_sub(v.blocks_free() as u64 * block);
            HostDiskStats {
                mountpoint: data_dir.display().to_string(),
                size,
                used,
                available,
                used_percent: if size == 0 {
                    0.0
                } else {
                    100.0 * used as f64 / size as f64
                },
            }
        });
        HostStats {
            memory: Some(memory),
            cpus,
            uptime_s,
            timestamp_unix_ms: now_unix_ms,
            disks: disk.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1\n";
    const STAT_LATER: &str = "cpu0 35 0 15 50 0 0 0 0 0 0\ncpu1 5 0 5 140 0 0 0 0 0 0\n";

    #[test]
    fn cpus_memory_and_shares_since_the_last_reading() {
        let before = parse_proc_stat(STAT);
        assert_eq!(before.len(), 2, "the summed line is left out");
        assert_eq!(before[0].total, 50);
        let later = parse_proc_stat(STAT_LATER);
        let shares = cpu_percent(&before, &later);
        // cpu0: 30 user, 10 system, 10 idle of 50.
        assert_eq!(
            (shares[0].user, shares[0].system, shares[0].idle),
            (60.0, 20.0, 20.0)
        );
        assert_eq!(shares[0].total, 80.0);
        assert_eq!(shares[1].idle, 100.0);
        let m = parse_meminfo(
            "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n",
        );
        assert_eq!(
            (m.total, m.available, m.used, m.free),
            (1_024_000, 409_600, 614_400, 102_400)
        );
    }
}
