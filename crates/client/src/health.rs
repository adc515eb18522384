//! Allocation health, as the client judges it for deployments and migrations (pure logic: the
//! current time is an input).
//!
//! An allocation is healthy once all its tasks have run, and (with `health_check = "checks"`)
//! all its service checks have passed, continuously for `min_healthy_time`; a task restart or
//! a failing check starts that time over. It is unhealthy at once when a task fails or ends,
//! and when `healthy_deadline` passes before it became healthy. Health is decided once.

use serde::{Deserialize, Serialize};
use yurt_proto::v1::{Allocation, TaskState};
use yurt_types::status::*;

/// How one allocation's health is judged, from its group's `update` block (when it belongs to
/// a deployment) or `migrate` block (otherwise, e.g. a replacement during a drain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub use_checks: bool,
    pub min_healthy_ms: u64,
    pub deadline_ms: u64,
}

/// The spec for an allocation, or `None` when the client never sets its health (batch jobs,
/// `health_check = "manual"`, no block).
pub fn spec_for(alloc: &Allocation) -> Option<Spec> {
    let job = alloc.job.as_ref()?;
    if job.r#type == JOB_TYPE_BATCH {
        return None;
    }
    let group = job
        .task_groups
        .iter()
        .find(|g| g.name == alloc.task_group)?;
    let (check, min, deadline) = if alloc.deployment_id.is_empty() {
        let m = group.migrate.as_ref()?;
        (
            &m.health_check,
            m.min_healthy_time_ms,
            m.healthy_deadline_ms,
        )
    } else {
        let u = group.update.as_ref()?;
        (
            &u.health_check,
            u.min_healthy_time_ms,
            u.healthy_deadline_ms,
        )
    };
    match check.as_str() {
        "checks" | "" | "task_states" => Some(Spec {
            use_checks: check != "task_states",
            min_healthy_ms: min,
            deadline_ms: deadline,
        }),
        _ => None,
    }
}

/// The health tracking of one allocation, kept with the client's state across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    /// When tracking began (the client received the allocation), Unix ms.
    pub started_ms: i64,
    /// The verdict and when it was reached; set once.
    pub healthy: Option<bool>,
    pub decided_ms: i64,
}

/// Why an allocation was found unhealthy, for the "Alloc Unhealthy" task event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Undecided,
    Healthy,
    Unhealthy(String),
}

/// Judges an allocation now. `checks_passing_since` is when every check last started passing
/// continuously (`None` while one is not passing; with no checks, pass `Some(i64::MIN)`).
pub fn judge<'a>(
    spec: &Spec,
    tracker: &Tracker,
    tasks: impl Iterator<Item = &'a TaskState> + Clone,
    checks_passing_since: Option<i64>,
    now: i64,
) -> Verdict {
    if tasks.clone().any(|t| t.failed) {
        return Verdict::Unhealthy("Unhealthy because of failed task".into());
    }
    if tasks.clone().any(|t| t.state == TASK_DEAD) {
        return Verdict::Unhealthy("Unhealthy because of dead task".into());
    }
    let running = tasks.clone().all(|t| t.state == TASK_RUNNING);
    // Tasks count as healthy from the latest start: a restart starts the clock over.
    let tasks_since = tasks.map(|t| t.started_at_unix_ms).max();
    let since = match (running, tasks_since) {
        (true, Some(t)) if spec.use_checks => checks_passing_since.map(|c| c.max(t)),
        (true, Some(t)) => Some(t),
        _ => None,
    };
    if since.is_some_and(|s| now - s >= spec.min_healthy_ms as i64) {
        return Verdict::Healthy;
    }
    if now >= tracker.started_ms + spec.deadline_ms as i64 {
        let what = if spec.use_checks {
            "Task not running or checks not passing"
        } else {
            "Task not running"
        };
        return Verdict::Unhealthy(format!(
            "{what} for min_healthy_time of {} by healthy_deadline of {}",
            yurt_types::duration::format_ms(spec.min_healthy_ms),
            yurt_types::duration::format_ms(spec.deadline_ms)
        ));
    }
    Verdict::Undecided
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_proto::v1::{Job, MigrateStrategy, TaskGroup, UpdateStrategy};

    const SPEC: Spec = Spec {
        use_checks: true,
        min_healthy_ms: 10_000,
        deadline_ms: 300_000,
    };

    fn running(started: i64) -> TaskState {
        TaskState {
            state: TASK_RUNNING.into(),
            started_at_unix_ms: started,
            ..TaskState::default()
        }
    }

    fn tracker() -> Tracker {
        Tracker {
            started_ms: 0,
            ..Tracker::default()
        }
    }

    #[test]
    fn healthy_after_tasks_and_checks_pass_for_min_healthy_time() {
        let tasks = [running(1_000), running(2_000)];
        // Checks passing since 5s: healthy at 15s, not before.
        assert_eq!(
            judge(&SPEC, &tracker(), tasks.iter(), Some(5_000), 14_999),
            Verdict::Undecided
        );
        assert_eq!(
            judge(&SPEC, &tracker(), tasks.iter(), Some(5_000), 15_000),
            Verdict::Healthy
        );
        // A failing check (None) keeps it undecided however long the tasks run.
        assert_eq!(
            judge(&SPEC, &tracker(), tasks.iter(), None, 200_000),
            Verdict::Undecided
        );
    }

    #[test]
    fn a_task_restart_starts_min_healthy_time_over() {
        // Checks passed long ago, but a task (re)started at 50s.
        let tasks = [running(1_000), running(50_000)];
        assert_eq!(
            judge(&SPEC, &tracker(), tasks.iter(), Some(0), 59_000),
            Verdict::Undecided
        );
        assert_eq!(
            judge(&SPEC, &tracker(), tasks.iter(), Some(0), 60_000),
            Verdict::Healthy
        );
    }

    #[test]
    fn task_states_ignores_checks() {
        let spec = Spec {
            use_checks: false,
            ..SPEC
        };
        let tasks = [running(1_000)];
        assert_eq!(
            judge(&spec, &tracker(), tasks.iter(), None, 11_000),
            Verdict::Healthy
        );
    }

    #[test]
    fn failed_or_dead_tasks_and_the_deadline_make_it_unhealthy() {
        let failed = TaskState {
            state: TASK_DEAD.into(),
            failed: true,
            ..TaskState::default()
        };
        assert!(matches!(
            judge(&SPEC, &tracker(), [running(0), failed].iter(), Some(0), 1),
            Verdict::Unhealthy(m) if m.contains("failed task")
        ));
        let done = TaskState {
            state: TASK_DEAD.into(),
            ..TaskState::default()
        };
        assert!(matches!(
            judge(&SPEC, &tracker(), [done].iter(), Some(0), 1),
            Verdict::Unhealthy(m) if m.contains("dead task")
        ));
        let pending = TaskState {
            state: TASK_PENDING.into(),
            ..TaskState::default()
        };
        assert_eq!(
            judge(&SPEC, &tracker(), [pending.clone()].iter(), None, 299_999),
            Verdict::Undecided
        );
        assert_eq!(
            judge(&SPEC, &tracker(), [pending].iter(), None, 300_000),
            Verdict::Unhealthy(
                "Task not running or checks not passing for min_healthy_time of 10s by healthy_deadline of 5m0s".into()
            )
        );
    }

    #[test]
    fn the_spec_comes_from_migrate_without_a_deployment_and_update_with_one() {
        let group = TaskGroup {
            name: "app".into(),
            update: Some(UpdateStrategy {
                health_check: "task_states".into(),
                min_healthy_time_ms: 1_000,
                healthy_deadline_ms: 2_000,
                ..UpdateStrategy::default()
            }),
            migrate: Some(MigrateStrategy {
                health_check: "checks".into(),
                min_healthy_time_ms: 3_000,
                healthy_deadline_ms: 4_000,
                ..MigrateStrategy::default()
            }),
            ..TaskGroup::default()
        };
        let mut alloc = Allocation {
            task_group: "app".into(),
            job: Some(Job {
                r#type: JOB_TYPE_SERVICE.into(),
                task_groups: vec![group],
                ..Job::default()
            }),
            ..Allocation::default()
        };
        assert_eq!(
            spec_for(&alloc),
            Some(Spec {
                use_checks: true,
                min_healthy_ms: 3_000,
                deadline_ms: 4_000
            })
        );
        alloc.deployment_id = "d1".into();
        assert_eq!(
            spec_for(&alloc),
            Some(Spec {
                use_checks: false,
                min_healthy_ms: 1_000,
                deadline_ms: 2_000
            })
        );
        alloc.job.as_mut().unwrap().task_groups[0]
            .update
            .as_mut()
            .unwrap()
            .health_check = "manual".into();
        assert_eq!(spec_for(&alloc), None);
        alloc.job.as_mut().unwrap().r#type = JOB_TYPE_BATCH.into();
        assert_eq!(spec_for(&alloc), None);
    }
}
