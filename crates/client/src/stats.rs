//! What an allocation's tasks use now (`alloc status -stats`): each running task's usage as
//! its driver reads it (the cgroup's memory and CPU time), the CPU as a percent of one core
//! since the previous reading, and the allocation's sum.

use std::collections::BTreeMap;

use tonic::Status;
use yurt_proto::v1::{AllocResourceUsage, CpuStats, MemoryStats, ResourceUsage, TaskResourceUsage};
use yurt_types::status::TASK_RUNNING;

use crate::cgroup::Usage;
use crate::runner::{handle, now_ms};
use crate::Client;

/// The last CPU reading of each task: when (Unix ms), and its CPU time then (ns).
pub(crate) type Samples = std::sync::Mutex<BTreeMap<(String, String), (i64, u64)>>;

/// CPU used between two readings, as a percent of one core.
pub(crate) fn percent(previous: Option<(i64, u64)>, now_ms: i64, total_ns: u64) -> f64 {
    match previous {
        Some((at, before)) if now_ms > at && total_ns >= before => {
            (total_ns - before) as f64 / ((now_ms - at) as f64 * 1e6) * 100.0
        }
        _ => 0.0,
    }
}

/// A driver's reading in the API's shape.
pub(crate) fn resource_usage(u: &Usage, percent: f64) -> ResourceUsage {
    ResourceUsage {
        memory_stats: Some(MemoryStats {
            rss: u.rss_bytes,
            cache: u.cache_bytes,
            usage: u.rss_bytes + u.cache_bytes,
            max_usage: u.max_usage_bytes,
            measured: ["RSS", "Cache", "Usage", "Max Usage"]
                .map(String::from)
                .to_vec(),
        }),
        cpu_stats: Some(CpuStats {
            percent,
            throttled_periods: u.throttled_periods,
            throttled_time: u.throttled_ns,
            total_time: u.cpu_total_ns,
            measured: [
                "Percent",
                "Throttled Periods",
                "Throttled Time",
                "Total Time",
            ]
            .map(String::from)
            .to_vec(),
        }),
    }
}

/// The sum of the tasks' usage.
pub(crate) fn total(tasks: &BTreeMap<String, TaskResourceUsage>) -> ResourceUsage {
    let mut memory = MemoryStats::default();
    let mut cpu = CpuStats::default();
    for t in tasks.values() {
        let r = t.resource_usage.clone().unwrap_or_default();
        let (m, c) = (
            r.memory_stats.unwrap_or_default(),
            r.cpu_stats.unwrap_or_default(),
        );
        memory.rss += m.rss;
        memory.cache += m.cache;
        memory.usage += m.usage;
        memory.max_usage += m.max_usage;
        cpu.percent += c.percent;
        cpu.throttled_periods += c.throttled_periods;
        cpu.throttled_time += c.throttled_time;
        cpu.total_time += c.total_time;
        if memory.measured.is_empty() {
            memory.measured = m.measured;
            cpu.measured = c.measured;
        }
    }
    ResourceUsage {
        memory_stats: Some(memory),
        cpu_stats: Some(cpu),
    }
}

impl Client {
    /// The usage of an allocation's running tasks (a task whose driver tracks none is left
    /// out).
    pub(crate) fn alloc_stats(&self, alloc_id: &str) -> Result<AllocResourceUsage, Status> {
        let local = crate::client_fs::local_alloc(self, alloc_id)?;
        let running: Vec<(&String, &crate::runner::LocalTask)> = local
            .tasks
            .iter()
            .filter(|(_, t)| t.state.state == TASK_RUNNING)
            .collect();
        let read = |name: &str, t: &crate::runner::LocalTask| {
            self.driver_of(&local, name).stats(handle(t))
        };
        let samples = || self.inner.samples.lock().unwrap_or_else(|e| e.into_inner());
        // A first reading of a task has nothing to compare with: one a moment earlier (the
        // samples are not held while waiting).
        let unseen = running
            .iter()
            .any(|(n, _)| !samples().contains_key(&(alloc_id.to_string(), n.to_string())));
        if unseen {
            let then = now_ms();
            for (name, t) in &running {
                if let Some(u) = read(name, t) {
                    samples().insert(
                        (alloc_id.to_string(), name.to_string()),
                        (then, u.cpu_total_ns),
                    );
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let mut samples = samples();
        let now = now_ms();
        let mut tasks = BTreeMap::new();
        for (name, t) in running {
            let Some(u) = read(name, t) else {
                continue;
            };
            let key = (alloc_id.to_string(), name.clone());
            let pct = percent(samples.get(&key).copied(), now, u.cpu_total_ns);
            samples.insert(key, (now, u.cpu_total_ns));
            tasks.insert(
                name.clone(),
                TaskResourceUsage {
                    resource_usage: Some(resource_usage(&u, pct)),
                    timestamp_unix_ms: now,
                },
            );
        }
        // A task that no longer runs starts afresh when it runs again.
        samples.retain(|(a, t), _| a != alloc_id || tasks.contains_key(t));
        Ok(AllocResourceUsage {
            resource_usage: Some(total(&tasks)),
            tasks,
            timestamp_unix_ms: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_one_core_between_readings() {
        assert_eq!(percent(None, 1000, 5_000_000), 0.0);
        // Half a second of CPU in one second: 50 %; two cores busy: 200 %.
        assert_eq!(percent(Some((1000, 0)), 2000, 500_000_000), 50.0);
        assert_eq!(percent(Some((1000, 0)), 2000, 2_000_000_000), 200.0);
        // A counter that went back (a new cgroup): no reading.
        assert_eq!(percent(Some((1000, 10)), 2000, 5), 0.0);
    }

    #[test]
    fn the_allocation_sums_its_tasks() {
        let u = Usage {
            rss_bytes: 10,
            cache_bytes: 5,
            max_usage_bytes: 20,
            cpu_total_ns: 100,
            throttled_periods: 1,
            throttled_ns: 7,
        };
        let t = TaskResourceUsage {
            resource_usage: Some(resource_usage(&u, 12.5)),
            timestamp_unix_ms: 1,
        };
        let tasks = BTreeMap::from([("a".to_string(), t.clone()), ("b".to_string(), t)]);
        let sum = total(&tasks);
        let (m, c) = (sum.memory_stats.unwrap(), sum.cpu_stats.unwrap());
        assert_eq!((m.rss, m.usage, m.max_usage), (20, 30, 40));
        assert_eq!((c.percent, c.total_time, c.throttled_time), (25.0, 200, 14));
    }
}
