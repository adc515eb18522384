//! A job's scale (pure): `job scale` as the job registered again with one group's count
//! changed, each group's desired count beside what runs (`/v1/job/:id/scale`), and the groups'
//! `scaling` blocks as Nomad's scaling policies (`/v1/scaling/policies`).

use std::collections::BTreeMap;

use yurt_proto::v1::{value, Job, ScalingPolicy, TaskGroupScaleStatus, Value};
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

/// A policy's ID: a UUID-shaped FNV-1a hash of the job and group, the same everywhere.
pub fn policy_id(job: &str, group: &str) -> String {
    let hash = |seed: u64| {
        let mut h = seed;
        for b in job.bytes().chain([0]).chain(group.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A field of a block as given in a job file (`min`) or Nomad's JSON (`Min`).
fn field<'v>(block: &'v Value, name: &str) -> Option<&'v Value> {
    match &block.kind {
        Some(value::Kind::MapValue(m)) => m
            .fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v?.kind.as_ref()? {
        value::Kind::IntValue(i) => Some(*i),
        value::Kind::FloatValue(f) => Some(*f as i64),
        _ => None,
    }
}

/// The `scaling` blocks of the jobs' groups (of `job` only, when named), as policies: `min`
/// defaults to the group's count, `max` is required by Nomad (0 when missing), `enabled`
/// defaults to true.
pub fn policies(state: &State, job: Option<&str>) -> Vec<ScalingPolicy> {
    let mut out = Vec::new();
    for j in state
        .jobs
        .values()
        .filter(|j| job.is_none_or(|id| j.id == id))
    {
        for g in &j.task_groups {
            let Some(block) = g.unimplemented.get("Scaling") else {
                continue;
            };
            let enabled = match field(block, "enabled").and_then(|v| v.kind.as_ref()) {
                Some(value::Kind::BoolValue(b)) => *b,
                _ => true,
            };
            let target = [
                ("Namespace", j.namespace.as_str()),
                ("Job", j.id.as_str()),
                ("Group", g.name.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            out.push(ScalingPolicy {
                id: policy_id(&j.id, &g.name),
                r#type: "horizontal".into(),
                target,
                min: int(field(block, "min")).unwrap_or(i64::from(g.count)),
                max: int(field(block, "max")).unwrap_or(0),
                enabled,
                policy: field(block, "policy").cloned(),
                create_index: j.create_index,
                modify_index: j.job_modify_index,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
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

    #[test]
    fn scaling_blocks_are_policies_with_stable_ids() {
        let map = |pairs: &[(&str, Value)]| Value {
            kind: Some(value::Kind::MapValue(yurt_proto::v1::ValueMap {
                fields: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            })),
        };
        let int = |i| Value {
            kind: Some(value::Kind::IntValue(i)),
        };
        let mut group = TaskGroup {
            name: "app".into(),
            count: 2,
            ..TaskGroup::default()
        };
        group.unimplemented.insert(
            "Scaling".into(),
            map(&[("Max", int(10)), ("policy", map(&[("cooldown", int(60))]))]),
        );
        let mut state = State::default();
        state.jobs.insert(
            "web".into(),
            std::sync::Arc::new(Job {
                id: "web".into(),
                namespace: "default".into(),
                task_groups: vec![group, TaskGroup::default()],
                ..Job::default()
            }),
        );
        let p = policies(&state, None);
        assert_eq!(p.len(), 1, "only the group with a scaling block");
        assert_eq!((p[0].min, p[0].max, p[0].enabled), (2, 10, true));
        assert_eq!(p[0].target["Group"], "app");
        assert_eq!(p[0].id, policy_id("web", "app"));
        assert_ne!(policy_id("web", "app"), policy_id("we", "bapp"));
        assert_eq!(p[0].id.len(), 36);
        assert!(policies(&state, Some("other")).is_empty());
    }
}
