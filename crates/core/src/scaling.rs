//! A job's scale (pure): `job scale` as the job registered again with one group's count
//! changed, the groups' scaling events (newest first, [`KEPT_EVENTS`] each), each group's
//! desired count beside what runs and its events (`/v1/job/:id/scale`), and the groups'
//! `scaling` blocks as Nomad's scaling policies (`/v1/scaling/policies`).

use std::collections::BTreeMap;

use yurt_proto::internal::JobScalingEvent;
use yurt_proto::v1::{value, Job, ScalingEvent, ScalingPolicy, TaskGroupScaleStatus, Value};
use yurt_types::status::*;

use crate::state::{job_key, ApplyError, State};

/// Scaling events kept per group (Nomad keeps as many).
pub const KEPT_EVENTS: usize = 20;

/// The sentence refusing a scaling request, if it is not one: an error reports that scaling
/// failed, so it changes no count; an event without a count says something.
pub fn check_request(count: Option<i64>, error: bool, message: &str) -> Result<(), String> {
    match count {
        Some(_) if error => Err("a scaling request that reports an error cannot set Count".into()),
        None if !error && message.is_empty() => {
            Err("a scaling request needs a Count, or a Message or Error to record".into())
        }
        _ => Ok(()),
    }
}

impl State {
    /// Records a scaling event of a job's group (at `index`, the entry's time), newest first,
    /// keeping [`KEPT_EVENTS`]. Refused, changing nothing, without such a job or group.
    pub(crate) fn apply_scaling_event(
        &mut self,
        index: u64,
        now: i64,
        s: &JobScalingEvent,
    ) -> Result<(), ApplyError> {
        let key = job_key(&s.namespace, &s.job_id);
        let job = self
            .jobs
            .get(&key)
            .ok_or_else(|| ApplyError::JobNotFound(s.job_id.clone()))?;
        if !job.task_groups.iter().any(|g| g.name == s.group) {
            return Err(ApplyError::Refused(format!(
                "job {:?} has no group {:?}",
                s.job_id, s.group
            )));
        }
        let event = ScalingEvent {
            time_unix_ms: now,
            create_index: index,
            ..s.event.clone().unwrap_or_default()
        };
        let all = self.scaling_events.entry(key.clone()).or_default();
        (all.namespace, all.job_id) = key;
        let events = &mut all.groups.entry(s.group.clone()).or_default().events;
        events.insert(0, event);
        events.truncate(KEPT_EVENTS);
        Ok(())
    }
}

/// The index of group `group` in `job`; the sentence names the groups it has.
fn group_index(job: &Job, group: &str) -> Result<usize, String> {
    job.task_groups
        .iter()
        .position(|g| g.name == group)
        .ok_or_else(|| {
            let names: Vec<&str> = job.task_groups.iter().map(|g| g.name.as_str()).collect();
            format!(
                "job {:?} has no group {group:?} (it has {})",
                job.id,
                names.join(", ")
            )
        })
}

/// The job with group `group`'s count set to `count`; the sentence says what is wrong.
pub fn scaled(job: &Job, group: &str, count: i64) -> Result<Job, String> {
    if count < 0 {
        return Err(format!("count must not be negative, not {count}"));
    }
    let count = u32::try_from(count).map_err(|_| format!("count {count} is too large"))?;
    let i = group_index(job, group)?;
    let mut job = job.clone();
    job.task_groups[i].count = count;
    Ok(job)
}

/// The scaling event a request records for group `group` of `job` (its previous count the
/// job's), once the request is checked ([`check_request`]) and the group found.
pub fn event_for(
    job: &Job,
    group: &str,
    count: Option<i64>,
    message: &str,
    error: bool,
    meta_json: &str,
) -> Result<JobScalingEvent, String> {
    check_request(count, error, message)?;
    let previous = job.task_groups[group_index(job, group)?].count;
    Ok(JobScalingEvent {
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        group: group.to_string(),
        event: Some(ScalingEvent {
            count,
            previous_count: i64::from(previous),
            message: message.to_string(),
            error,
            meta_json: meta_json.to_string(),
            ..ScalingEvent::default()
        }),
    })
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
                events: state
                    .scaling_events
                    .get(&job_key(&job.namespace, &job.id))
                    .and_then(|e| e.groups.get(&g.name))
                    .map(|l| l.events.clone())
                    .unwrap_or_default(),
                ..TaskGroupScaleStatus::default()
            };
            (g.name.clone(), status)
        })
        .collect();
    for a in state.job_allocs(&job.namespace, &job.id) {
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

/// A policy's ID: a UUID-shaped FNV-1a hash of the job's namespace and ID and the group, the
/// same everywhere.
pub fn policy_id(ns: &str, job: &str, group: &str) -> String {
    let ns = yurt_types::acl::namespace_or_default(ns);
    let hash = |seed: u64| {
        let mut h = seed;
        let bytes = ns.bytes().chain([0]).chain(job.bytes());
        for b in bytes.chain([0]).chain(group.bytes()) {
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
                id: policy_id(&j.namespace, &j.id, &g.name),
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
    fn scaling_events_are_kept_newest_first_twenty_per_group_and_go_with_their_job() {
        use crate::internal::{command, Command, JobDeregister, JobRegister};
        use crate::testkit::JobSpec;
        let mut state = State::default();
        let mut index = 0;
        let mut apply = |state: &mut State, kind| {
            index += 1;
            let cmd = Command {
                now_unix_ms: index as i64,
                kind: Some(kind),
                ..Command::default()
            };
            state.apply(index, &cmd)
        };
        let job = JobSpec::new("web").job();
        let group = job.task_groups[0].name.clone();
        let register = |count: i64, message: &str| {
            command::Kind::JobRegister(JobRegister {
                job: Some(scaled(&job, &group, count).unwrap()),
                scaling_event: Some(JobScalingEvent {
                    group: group.clone(),
                    event: Some(ScalingEvent {
                        count: Some(count),
                        message: message.into(),
                        ..ScalingEvent::default()
                    }),
                    ..JobScalingEvent::default()
                }),
                ..JobRegister::default()
            })
        };
        apply(&mut state, register(1, "first")).unwrap();
        for n in 2..=25 {
            apply(&mut state, register(n, &format!("scale {n}"))).unwrap();
        }
        let note = |group: &str| {
            command::Kind::JobScalingEvent(JobScalingEvent {
                namespace: String::new(),
                job_id: "web".into(),
                group: group.into(),
                event: Some(ScalingEvent {
                    error: true,
                    message: "no metrics".into(),
                    ..ScalingEvent::default()
                }),
            })
        };
        apply(&mut state, note(&group)).unwrap();
        let before = state.clone();
        let refused = apply(&mut state, note("nope")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("job \"web\" has no group \"nope\"")
        );
        assert_eq!(
            state.scaling_events, before.scaling_events,
            "a refusal changes nothing"
        );

        let current = state.job("", "web").unwrap().clone();
        let events = &scale_status(&state, &current)[&group].events;
        assert_eq!(events.len(), KEPT_EVENTS);
        assert_eq!(
            (events[0].message.as_str(), events[0].count),
            ("no metrics", None)
        );
        assert_eq!(
            (events[1].message.as_str(), events[1].count),
            ("scale 25", Some(25))
        );
        assert_eq!(events[0].create_index, 26);
        assert_eq!(events[0].time_unix_ms, 26, "the entry's time");
        assert_eq!(events.last().unwrap().message, "scale 7");
        // Kept in snapshots; gone when the job is purged.
        let restored = State::from_snapshot(&state.to_snapshot("test")).unwrap();
        assert_eq!(restored.scaling_events, state.scaling_events);
        apply(
            &mut state,
            command::Kind::JobDeregister(JobDeregister {
                job_id: "web".into(),
                purge: true,
                ..JobDeregister::default()
            }),
        )
        .unwrap();
        assert!(state.scaling_events.is_empty());
        let e = event_for(&job, &group, Some(3), "m", false, "").unwrap();
        assert_eq!(e.event.unwrap().previous_count, 1);
        let err = event_for(&job, "nope", None, "m", false, "").unwrap_err();
        assert!(
            err.starts_with("job \"web\" has no group \"nope\" (it has "),
            "{err}"
        );
        assert!(check_request(None, false, "").is_err());
        assert!(check_request(Some(1), true, "").is_err());
        assert!(check_request(None, true, "").is_ok());
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
            crate::state::job_key("", "web"),
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
        assert_eq!(p[0].id, policy_id("default", "web", "app"));
        assert_eq!(p[0].id, policy_id("", "web", "app"));
        assert_ne!(policy_id("", "web", "app"), policy_id("", "we", "bapp"));
        assert_ne!(policy_id("", "web", "app"), policy_id("prod", "web", "app"));
        assert_eq!(p[0].id.len(), 36);
        assert!(policies(&state, Some("other")).is_empty());
    }
}
