//! What this machine offers: CPU (MHz in total), memory, OS, architecture and hostname (the
//! task drivers fingerprint themselves: [`crate::driver`]).

use std::collections::BTreeMap;

use yurt_proto::v1::Resources;

pub struct Fingerprint {
    pub hostname: String,
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
}

fn cpu_mhz() -> u32 {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|f| f as u32)
        .filter(|f| *f > 0)
        .unwrap_or(1000)
}

fn memory_mb() -> u32 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| (kb / 1024) as u32)
        .unwrap_or(1024)
}

/// This machine's hostname (`localhost` if it has none).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub fn fingerprint() -> Fingerprint {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mhz = cpu_mhz();
    let memory = memory_mb();
    let hostname = hostname();
    let attributes = BTreeMap::from([
        ("kernel.name".to_string(), std::env::consts::OS.to_string()),
        ("os.name".to_string(), std::env::consts::OS.to_string()),
        ("cpu.arch".to_string(), std::env::consts::ARCH.to_string()),
        ("cpu.numcores".to_string(), cores.to_string()),
        ("cpu.frequency".to_string(), mhz.to_string()),
        (
            "memory.totalbytes".to_string(),
            (u64::from(memory) * 1024 * 1024).to_string(),
        ),
        ("unique.hostname".to_string(), hostname.clone()),
    ]);
    Fingerprint {
        hostname,
        resources: Resources {
            cpu: cores * mhz,
            memory_mb: memory,
            memory_max_mb: 0,
        },
        attributes,
    }
}
