//! Garbage collection of finished work (pure: the time is an input), so that the servers'
//! memory does not grow without bound. The leader proposes a [`Gc`] command every interval
//! with what has been finished for longer than its threshold; `yurt system gc` proposes one
//! with every eligible object, whatever its age. The state machine checks eligibility again
//! when it applies the command (a job may have been registered again meanwhile).
//!
//! Eligible:
//! - an allocation whose client has finished with it (complete, failed, lost) and that no
//!   longer stands for a slot: told to stop, replaced (`next_allocation`), or its job is gone
//!   or stopped. A failed allocation that used up its reschedule attempts, or a batch
//!   allocation that completed, stays while its job does: it is what keeps the slot filled;
//! - an evaluation that is finished (complete, failed, canceled) and that no live allocation
//!   came from;
//! - a job that is stopped (or a batch job that is dead) once none of its allocations run and
//!   none of its evaluations are waiting: the job, its versions, allocations and evaluations;
//! - a node that has been down for the threshold and has no allocations left.

use std::collections::{BTreeMap, BTreeSet};

use yurt_types::status::*;

use crate::internal::{Gc, JobRef};
use crate::state::{job_key, JobKey, State};
use crate::table::Row;
use crate::v1::{Allocation, Evaluation, Job};

/// A job's namespace and ID, borrowed.
type JobOf<'a> = (&'a str, &'a str);

fn job_of<R: Row>(r: &R) -> JobOf<'_> {
    (r.namespace(), r.job_id())
}

/// The jobs a GC command names: `job_ids` in `default`, the others by namespace.
pub fn jobs_named(gc: &Gc) -> Vec<JobKey> {
    let default = gc.job_ids.iter().map(|id| job_key("", id));
    let others = gc
        .namespaced_jobs
        .iter()
        .map(|j| job_key(&j.namespace, &j.id));
    default.chain(others).collect()
}

/// Names job `key` in a GC command (`default`'s where servers before 0.2 read them).
fn name_job(gc: &mut Gc, key: JobKey) {
    if key.0 == yurt_types::acl::DEFAULT_NAMESPACE {
        gc.job_ids.push(key.1);
    } else {
        gc.namespaced_jobs.push(JobRef {
            namespace: key.0,
            id: key.1,
        });
    }
}

/// How long finished objects are kept (Nomad's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub eval_ms: i64,
    pub job_ms: i64,
    pub node_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            eval_ms: 60 * 60 * 1000,
            job_ms: 4 * 60 * 60 * 1000,
            node_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl Thresholds {
    /// Everything eligible, whatever its age (`yurt system gc`).
    pub const FORCE: Thresholds = Thresholds {
        eval_ms: 0,
        job_ms: 0,
        node_ms: 0,
    };
}

fn eval_finished(e: &Evaluation) -> bool {
    [EVAL_COMPLETE, EVAL_FAILED, EVAL_CANCELED].contains(&e.status.as_str())
}

/// A job's allocations and evaluations, grouped in one pass over the state.
struct ByJob<'a> {
    allocs: BTreeMap<JobOf<'a>, Vec<&'a Allocation>>,
    evals: BTreeMap<JobOf<'a>, Vec<&'a Evaluation>>,
    /// Evaluations that live allocations came from.
    live_evals: BTreeSet<&'a str>,
}

impl<'a> ByJob<'a> {
    fn new(state: &'a State) -> ByJob<'a> {
        let mut by = ByJob {
            allocs: BTreeMap::new(),
            evals: BTreeMap::new(),
            live_evals: BTreeSet::new(),
        };
        for a in state.allocs.values() {
            by.allocs.entry(job_of(a)).or_default().push(a);
            if !alloc_terminal(a) {
                by.live_evals.insert(a.eval_id.as_str());
            }
        }
        for e in state.evals.values() {
            by.evals.entry(job_of(e)).or_default().push(e);
        }
        by
    }

    /// Whether the job is finished with, and since when nothing about it changed.
    fn job_done(&self, j: &Job) -> Option<i64> {
        let finished = j.stop || (j.r#type == JOB_TYPE_BATCH && j.status == JOB_DEAD);
        let key = (
            yurt_types::acl::namespace_or_default(&j.namespace),
            j.id.as_str(),
        );
        let allocs = self.allocs.get(&key).map_or(&[][..], |v| v);
        let evals = self.evals.get(&key).map_or(&[][..], |v| v);
        let quiet = allocs
            .iter()
            .all(|a| alloc_client_terminal(&a.client_status))
            && evals.iter().all(|e| eval_finished(e));
        (finished && quiet).then(|| {
            allocs
                .iter()
                .map(|a| a.modify_time_unix_ms)
                .chain(evals.iter().map(|e| e.modify_time_unix_ms))
                .chain([j.submit_time_unix_ms])
                .max()
                .unwrap_or(0)
        })
    }
}

fn alloc_collectable(state: &State, a: &Allocation) -> bool {
    alloc_client_terminal(&a.client_status)
        && (a.desired_status != ALLOC_DESIRED_RUN
            || !a.next_allocation.is_empty()
            || state.job(&a.namespace, &a.job_id).is_none_or(|j| j.stop))
}

/// What may be collected now. Empty when there is nothing to do.
pub fn collect(state: &State, now: i64, t: Thresholds) -> Gc {
    let old = |modified: i64, threshold: i64| now.saturating_sub(modified) >= threshold;
    let by = ByJob::new(state);
    let mut gc = Gc::default();
    let mut gone_jobs: BTreeSet<JobOf> = BTreeSet::new();
    for (key, j) in state.jobs.iter() {
        if by.job_done(j).is_some_and(|at| old(at, t.job_ms)) {
            gone_jobs.insert((&key.0, &key.1));
            name_job(&mut gc, key.clone());
        }
    }
    for a in state.allocs.values() {
        if !gone_jobs.contains(&job_of(a))
            && alloc_collectable(state, a)
            && old(a.modify_time_unix_ms, t.eval_ms)
        {
            gc.alloc_ids.push(a.id.clone());
        }
    }
    for e in state.evals.values() {
        if !gone_jobs.contains(&job_of(e))
            && eval_finished(e)
            && !by.live_evals.contains(e.id.as_str())
            && old(e.modify_time_unix_ms, t.eval_ms)
        {
            gc.eval_ids.push(e.id.clone());
        }
    }
    let collected: BTreeSet<&str> = gc.alloc_ids.iter().map(String::as_str).collect();
    for n in state.nodes.values() {
        if n.status == NODE_DOWN
            && old(n.status_updated_unix_ms, t.node_ms)
            && state
                .node_allocs(&n.id)
                .iter()
                .all(|a| collected.contains(a.id.as_str()) || gone_jobs.contains(&job_of(*a)))
        {
            gc.node_ids.push(n.id.clone());
        }
    }
    gc
}

/// How many jobs, allocations, evaluations and nodes a GC command removes, counting those that
/// go with their job.
pub fn totals(state: &State, gc: &Gc) -> [usize; 4] {
    let jobs: BTreeSet<JobKey> = jobs_named(gc).into_iter().collect();
    let with_job = |r: JobOf| jobs.contains(&job_key(r.0, r.1));
    let allocs = state
        .allocs
        .values()
        .filter(|a| with_job(job_of(*a)))
        .count()
        + gc.alloc_ids.len();
    let evals = state
        .evals
        .values()
        .filter(|e| with_job(job_of(*e)))
        .count()
        + gc.eval_ids.len();
    [jobs.len(), allocs, evals, gc.node_ids.len()]
}

/// Whether a GC command would remove anything.
pub fn is_empty(gc: &Gc) -> bool {
    gc.job_ids.is_empty()
        && gc.namespaced_jobs.is_empty()
        && gc.alloc_ids.is_empty()
        && gc.eval_ids.is_empty()
        && gc.node_ids.is_empty()
}

/// Applies a GC command: removes what is named and still eligible (checked again, with no age
/// threshold, against the state as it is now). Returns how many objects went.
impl State {
    /// Applies a `Gc` command: [`apply`].
    pub(crate) fn apply_gc(&mut self, gc: &Gc) -> usize {
        apply(self, gc)
    }
}

pub fn apply(state: &mut State, gc: &Gc) -> usize {
    let eligible = collect(state, i64::MAX, Thresholds::FORCE);
    let keep = |named: &[String], ok: &[String]| -> BTreeSet<String> {
        let ok: BTreeSet<&String> = ok.iter().collect();
        named.iter().filter(|n| ok.contains(n)).cloned().collect()
    };
    let ok_jobs: BTreeSet<JobKey> = jobs_named(&eligible).into_iter().collect();
    let jobs: BTreeSet<JobKey> = jobs_named(gc)
        .into_iter()
        .filter(|j| ok_jobs.contains(j))
        .collect();
    let mut allocs = keep(&gc.alloc_ids, &eligible.alloc_ids);
    let mut evals = keep(&gc.eval_ids, &eligible.eval_ids);
    let nodes = keep(&gc.node_ids, &eligible.node_ids);
    for (ns, id) in &jobs {
        allocs.extend(state.allocs.of_job(ns, id).map(|a| a.id.clone()));
        evals.extend(state.evals.of_job(ns, id).map(|e| e.id.clone()));
    }
    for key in &jobs {
        state.jobs.remove(key);
        state.job_versions.remove(key);
        state.scaling_events.remove(key);
        let (ns, id) = key;
        let deployments: Vec<String> = state
            .deployments
            .of_job(ns, id)
            .map(|d| d.id.clone())
            .collect();
        for d in deployments {
            state.deployments.remove(&d);
        }
    }
    for id in &allocs {
        state.allocs.remove(id);
    }
    for id in &evals {
        state.evals.remove(id);
    }
    for id in &nodes {
        state.nodes.remove(id);
    }
    jobs.len() + allocs.len() + evals.len() + nodes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Node;

    const HOUR: i64 = 60 * 60 * 1000;

    fn job(id: &str, kind: &str, stop: bool, status: &str) -> Job {
        Job {
            id: id.into(),
            r#type: kind.into(),
            stop,
            status: status.into(),
            ..Job::default()
        }
    }

    fn alloc(id: &str, job: &str, eval: &str, desired: &str, client: &str) -> Allocation {
        Allocation {
            id: id.into(),
            job_id: job.into(),
            eval_id: eval.into(),
            node_id: "n1".into(),
            desired_status: desired.into(),
            client_status: client.into(),
            ..Allocation::default()
        }
    }

    fn eval(id: &str, job: &str, status: &str) -> Evaluation {
        Evaluation {
            id: id.into(),
            job_id: job.into(),
            status: status.into(),
            ..Evaluation::default()
        }
    }

    fn state() -> State {
        let mut s = State::default();
        for j in [
            job("stopped", JOB_TYPE_SERVICE, true, JOB_DEAD),
            job("live", JOB_TYPE_SERVICE, false, JOB_RUNNING),
            job("done", JOB_TYPE_BATCH, false, JOB_DEAD),
        ] {
            s.jobs.insert(crate::state::key_of(&j), j.into());
        }
        let mut replaced = alloc(
            "a-replaced",
            "live",
            "e-old",
            ALLOC_DESIRED_RUN,
            ALLOC_FAILED,
        );
        replaced.next_allocation = "a-live".into();
        for a in [
            alloc(
                "a-stopped",
                "stopped",
                "e-stop",
                ALLOC_DESIRED_STOP,
                ALLOC_COMPLETE,
            ),
            alloc("a-live", "live", "e-live", ALLOC_DESIRED_RUN, ALLOC_RUNNING),
            replaced,
            // Used up its reschedule attempts: it is the slot's state, it stays.
            alloc(
                "a-exhausted",
                "live",
                "e-live",
                ALLOC_DESIRED_RUN,
                ALLOC_FAILED,
            ),
            alloc(
                "a-batch",
                "done",
                "e-batch",
                ALLOC_DESIRED_RUN,
                ALLOC_COMPLETE,
            ),
        ] {
            s.allocs.insert(a);
        }
        for e in [
            eval("e-stop", "stopped", EVAL_COMPLETE),
            eval("e-live", "live", EVAL_COMPLETE),
            eval("e-old", "live", EVAL_COMPLETE),
            eval("e-canceled", "live", EVAL_CANCELED),
            eval("e-pending", "live", EVAL_PENDING),
            eval("e-batch", "done", EVAL_COMPLETE),
        ] {
            s.evals.insert(e);
        }
        s.nodes.insert(
            "gone".into(),
            Node {
                id: "gone".into(),
                status: NODE_DOWN.into(),
                ..Node::default()
            },
        );
        s
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn finished_work_goes_after_its_threshold_and_slots_stay() {
        let s = state();
        assert!(
            is_empty(&collect(&s, 0, Thresholds::default())),
            "too young"
        );
        let gc = collect(&s, 25 * HOUR, Thresholds::default());
        assert_eq!(sorted(gc.job_ids.clone()), vec!["done", "stopped"]);
        assert_eq!(gc.alloc_ids, vec!["a-replaced"]);
        assert_eq!(sorted(gc.eval_ids.clone()), vec!["e-canceled", "e-old"]);
        assert_eq!(gc.node_ids, vec!["gone"]);
        // Allocations and evaluations go after an hour, jobs after four, nodes after a day.
        let gc = collect(&s, 2 * HOUR, Thresholds::default());
        assert!(gc.job_ids.is_empty() && gc.node_ids.is_empty());
        assert_eq!(sorted(gc.alloc_ids), vec!["a-replaced", "a-stopped"]);

        let mut s = s;
        let gc = collect(&s, 25 * HOUR, Thresholds::default());
        assert_eq!(totals(&s, &gc), [2, 3, 4, 1]);
        let removed = apply(&mut s, &gc);
        assert_eq!(removed, 2 + 3 + 4 + 1);
        assert_eq!(
            sorted(s.jobs.keys().map(|k| k.1.clone()).collect()),
            vec!["live"]
        );
        assert_eq!(
            sorted(s.allocs.keys().cloned().collect()),
            vec!["a-exhausted", "a-live"]
        );
        assert_eq!(
            sorted(s.evals.keys().cloned().collect()),
            vec!["e-live", "e-pending"]
        );
        assert!(s.nodes.is_empty());
    }

    #[test]
    fn what_became_live_again_is_kept_when_applied() {
        let mut s = state();
        let gc = collect(&s, 25 * HOUR, Thresholds::default());
        // Registered again between the leader's pass and the commit.
        std::sync::Arc::make_mut(
            s.jobs
                .get_mut(&crate::state::job_key("", "stopped"))
                .unwrap(),
        )
        .stop = false;
        apply(&mut s, &gc);
        assert!(s.jobs.contains_key(&crate::state::job_key("", "stopped")));
        assert!(
            s.allocs.contains_key("a-stopped"),
            "its allocations stay with it"
        );
        assert!(!s.jobs.contains_key(&crate::state::job_key("", "done")));
    }
}
