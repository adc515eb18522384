//! A job's scale (pure): `job scale` as the job registered again with one group's count
//! changed, and each group's desired count beside what runs (`/v1/job/:id/scale`).

use std::collections::BTreeMap;

use yurt_proto::v1::{Job, TaskGroupScaleStatus};
use yurt_types::status::*;

use crate::state::State;

/// The job with group `group`'s count set to `count`; the sentence says what is wrong.
pub fn scaled(job: &Job, group: &str, count: i64) -> Result<Job, String> {
    if count < 0 {
        return Err(format!("count must not be negative, not {count}"));
    }
    let count = u32::try_from(count).map_err(|_| format!("count {count} is too large"))?;
    let mut job = job.clone();
    let names: Vec<String> = job.task_groups.iter().map(|g| g.name.clone()).collect();
    let g = job
        .task_groups
        .iter_mut()
        .find(|g| g.name == group)
        .ok_or_else(|| {
            format!(
                "job {:?} has no group {group:?} (it has {})",
                job.id,
                names.join(", ")
            )
        })?;
    g.count = count;
    Ok(job)
}

/// Each group's desired count and its allocations of the job as registered now: placed (not
/// terminal), running, and healthy or unhealthy as their clients judged them.
pub fn scale_status(state: &State, job: &Job) -> BTreeMap<String, TaskGroupScaleStatus> {
    let mut out: BTreeMap<String, TaskGroupScaleStatus> = job
        .task_groups
        .iter()
        .map(|g| {
            let status = TaskGroupScaleStatus {
                desired: i64::from(g.count),
                ..TaskGroupScaleStatus::default()
            };
            (g.name.clone(), status)
        })
        .collect();
    for a in state.job_allocs(&job.id) {
        let Some(g) = out.get_mut(&a.task_group) else {
            continue;
        };
        if alloc_terminal(a) {
            continue;
        }
        g.placed += 1;
        if a.client_status == ALLOC_RUNNING {
            g.running += 1;
        }
        match a.deployment_status.as_ref().and_then(|d| d.healthy) {
            Some(true) => g.healthy += 1,
            Some(false) => g.unhealthy += 1,
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_proto::v1::TaskGroup;

    #[test]
    fn scaling_changes_one_group_and_names_the_others_when_it_is_missing() {
        let job = Job {
            id: "web".into(),
            task_groups: vec![
                TaskGroup {
                    name: "a".into(),
                    count: 1,
                    ..TaskGroup::default()
                },
                TaskGroup {
                    name: "b".into(),
                    count: 2,
                    ..TaskGroup::default()
                },
            ],
            ..Job::default()
        };
        let s = scaled(&job, "b", 5).unwrap();
        assert_eq!((s.task_groups[0].count, s.task_groups[1].count), (1, 5));
        assert_eq!(
            scaled(&job, "c", 1).unwrap_err(),
            "job \"web\" has no group \"c\" (it has a, b)"
        );
        assert!(scaled(&job, "a", -1).is_err());
        assert!(scaled(&job, "a", i64::from(u32::MAX) + 1).is_err());
        let status = scale_status(&State::default(), &job);
        assert_eq!(status["b"].desired, 2);
        assert_eq!(status["b"].placed, 0);
    }
}
