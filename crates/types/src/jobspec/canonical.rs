//! Nomad's defaults for a job: what a job file leaves unset gets the value Nomad gives it
//! (per job type for `restart` and `reschedule`; service and system jobs get an `update`).

use super::*;

const DEFAULT_PRIORITY: i32 = 50;
const DEFAULT_CPU: u32 = 100;
const DEFAULT_MEMORY_MB: u32 = 300;
const DEFAULT_KILL_TIMEOUT_MS: u64 = 5_000;
/// Nomad's default `logs` block: 10 files of 10 MB per stream.
pub(super) const DEFAULT_LOG_FILES: u32 = 10;
pub(super) const DEFAULT_LOG_FILE_MB: u32 = 10;
pub(super) const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// Nomad's default `update` block, given to every service and system group that has none.
pub fn default_update() -> UpdateStrategy {
    UpdateStrategy {
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time_ms: 10 * SEC,
        healthy_deadline_ms: 5 * MIN,
        progress_deadline_ms: 10 * MIN,
        auto_revert: false,
        auto_promote: false,
        canary: 0,
        stagger_ms: 30 * SEC,
    }
}

/// Nomad's default `migrate` block, given to service groups.
pub fn default_migrate() -> MigrateStrategy {
    MigrateStrategy {
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time_ms: 10 * SEC,
        healthy_deadline_ms: 5 * MIN,
    }
}

/// Nomad's default `restart` block for a job type.
pub fn default_restart(job_type: &str) -> RestartPolicy {
    let batch = job_type == JOB_TYPE_BATCH;
    RestartPolicy {
        attempts: if batch { 3 } else { 2 },
        interval_ms: if batch { 24 * HOUR } else { 30 * MIN },
        delay_ms: 15 * SEC,
        mode: "fail".into(),
    }
}

/// Nomad's default `reschedule` block for a job type (system jobs are never rescheduled).
pub fn default_reschedule(job_type: &str) -> Option<ReschedulePolicy> {
    match job_type {
        JOB_TYPE_SERVICE => Some(ReschedulePolicy {
            attempts: 0,
            interval_ms: 0,
            delay_ms: 30 * SEC,
            delay_function: "exponential".into(),
            max_delay_ms: HOUR,
            unlimited: true,
        }),
        JOB_TYPE_BATCH => Some(ReschedulePolicy {
            attempts: 1,
            interval_ms: 24 * HOUR,
            delay_ms: 5 * SEC,
            delay_function: "constant".into(),
            max_delay_ms: 0,
            unlimited: false,
        }),
        _ => None,
    }
}

/// Applies Nomad's defaults to everything left unset (zero or absent).
pub fn canonicalize(job: &mut Job) {
    if job.r#type.is_empty() {
        job.r#type = JOB_TYPE_SERVICE.into();
    }
    if job.name.is_empty() {
        job.name = job.id.clone();
    }
    if job.priority == 0 {
        job.priority = DEFAULT_PRIORITY;
    }
    if job.datacenters.is_empty() {
        job.datacenters = vec!["*".into()];
    }
    if job.namespace.is_empty() {
        job.namespace = "default".into();
    }
    if job.region.is_empty() {
        job.region = "global".into();
    }
    let ty = job.r#type.clone();
    let wants_update = ty == JOB_TYPE_SERVICE || ty == JOB_TYPE_SYSTEM;
    if wants_update && job.update.is_none() {
        job.update = Some(default_update());
    }
    for g in &mut job.task_groups {
        if wants_update && g.update.is_none() {
            g.update = job.update.clone();
        }
        if ty == JOB_TYPE_SERVICE && g.migrate.is_none() {
            g.migrate = Some(default_migrate());
        }
        for n in &mut g.networks {
            if n.mode.is_empty() {
                n.mode = "host".into();
            }
        }
        // A partly written block keeps its fields; the rest (marked u32/u64::MAX by the HCL
        // reader, or empty) come from the type's defaults.
        let d = default_restart(&ty);
        let r = g.restart.get_or_insert_with(|| d.clone());
        fill(&mut r.attempts, d.attempts);
        fill(&mut r.interval_ms, d.interval_ms);
        fill(&mut r.delay_ms, d.delay_ms);
        if r.mode.is_empty() {
            r.mode = d.mode;
        }
        match (g.reschedule.as_mut(), default_reschedule(&ty)) {
            (None, d) => g.reschedule = d,
            (Some(r), Some(d)) => {
                fill(&mut r.attempts, d.attempts);
                fill(&mut r.interval_ms, d.interval_ms);
                fill(&mut r.delay_ms, d.delay_ms);
                fill(&mut r.max_delay_ms, d.max_delay_ms);
                if r.delay_function.is_empty() {
                    r.delay_function = d.delay_function;
                }
            }
            (Some(r), None) => {
                fill(&mut r.attempts, 0);
                fill(&mut r.interval_ms, 0);
                fill(&mut r.delay_ms, 0);
                fill(&mut r.max_delay_ms, 0);
            }
        }
        if let Some(d) = g.disconnect.as_mut() {
            d.replace.get_or_insert(true);
            if d.reconcile.is_empty() {
                d.reconcile = RECONCILE_BEST_SCORE.into();
            }
        }
        for t in &mut g.tasks {
            let r = t.resources.get_or_insert_with(Resources::default);
            if r.cpu == 0 {
                r.cpu = DEFAULT_CPU;
            }
            if r.memory_mb == 0 {
                r.memory_mb = DEFAULT_MEMORY_MB;
            }
            if t.kill_timeout_ms == 0 {
                t.kill_timeout_ms = DEFAULT_KILL_TIMEOUT_MS;
            }
            if t.kill_signal.is_empty() {
                t.kill_signal = "SIGTERM".into();
            }
            t.logs.get_or_insert(LogConfig {
                max_files: DEFAULT_LOG_FILES,
                max_file_size_mb: DEFAULT_LOG_FILE_MB,
            });
        }
    }
}

/// Replaces the "not written" marker (the type's MAX) with a default.
fn fill<T: PartialEq + Copy + Bounded>(v: &mut T, default: T) {
    if *v == T::MAX {
        *v = default;
    }
}

trait Bounded {
    const MAX: Self;
}
impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}
impl Bounded for u64 {
    const MAX: Self = u64::MAX;
}
