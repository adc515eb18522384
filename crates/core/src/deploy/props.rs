//! Property test of the rolling update's safety promise over the simulated cluster: whatever
//! the new version's allocations do (fail at once, fail and get rescheduled, restart, turn
//! healthy) and whenever time passes, the old allocations still running plus the new healthy
//! ones are never fewer than `count - max_parallel`.

use proptest::prelude::*;

use super::*;
use crate::testkit::Sim;

fn job(count: u32, env: &str, max_parallel: u32, progress_deadline: &str, attempts: u32) -> Job {
    let update = format!(
        "max_parallel = {max_parallel}\n      min_healthy_time = \"1s\"\n      healthy_deadline = \"1m\"\n      progress_deadline = \"{progress_deadline}\""
    );
    let reschedule = format!(
        "attempts = {attempts}\n      interval = \"1h\"\n      delay = \"5s\"\n      delay_function = \"constant\"\n      unlimited = false"
    );
    crate::testkit::web_job(count, env, &update, &reschedule)
}

/// What happens next to one of the new version's allocations whose health is not decided yet,
/// or to the clock.
#[derive(Debug, Clone)]
enum Op {
    /// The task exits, and the client says the allocation is unhealthy.
    FailUnhealthy(usize),
    /// The task exits before any health verdict.
    Fail(usize),
    /// The task restarted: running, no verdict yet.
    Restart(usize),
    Healthy(usize),
    /// Seconds pass: delayed reschedules fall due, deadlines pass.
    Tick(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..8).prop_map(Op::FailUnhealthy),
        (0usize..8).prop_map(Op::Fail),
        (0usize..8).prop_map(Op::Restart),
        (0usize..8).prop_map(Op::Healthy),
        (1u8..40).prop_map(Op::Tick),
    ]
}

fn version(a: &Allocation) -> u64 {
    a.job.as_ref().map_or(0, |j| j.version)
}

/// The new version's live allocations not yet judged, in a stable order.
fn undecided_new(s: &Sim) -> Vec<String> {
    let mut v: Vec<&Allocation> = s
        .state
        .allocs
        .values()
        .filter(|a| !alloc_terminal(a) && version(a) == 1 && healthy(a).is_none())
        .collect();
    v.sort_by_key(|a| (a.create_index, a.id.clone()));
    v.into_iter().map(|a| a.id.clone()).collect()
}

/// Old allocations still meant to run, plus new ones proven healthy.
fn serving(s: &Sim) -> u32 {
    s.state
        .allocs
        .values()
        .filter(|a| !alloc_terminal(a))
        .filter(|a| version(a) == 0 || healthy(a) == Some(true))
        .count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn a_rollout_never_serves_fewer_than_count_less_max_parallel(
        count in 1u32..6,
        max_parallel in 1u32..3,
        no_deadline in any::<bool>(),
        attempts in 0u32..3,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let pd = if no_deadline { "0s" } else { "10m" };
        let mut s = Sim::new();
        s.run(job(count, "a", max_parallel, pd, attempts));
        s.all_healthy();
        prop_assert_eq!(serving(&s), count);
        s.run(job(count, "b", max_parallel, pd, attempts));
        let floor = count.saturating_sub(max_parallel);
        for op in ops {
            let pick = |i: usize| {
                let u = undecided_new(&s);
                (!u.is_empty()).then(|| u[i % u.len()].clone())
            };
            match op {
                Op::FailUnhealthy(i) => {
                    if let Some(id) = pick(i) {
                        s.report(&id, ALLOC_FAILED, Some(false));
                    }
                }
                Op::Fail(i) => {
                    if let Some(id) = pick(i) {
                        s.report(&id, ALLOC_FAILED, None);
                    }
                }
                Op::Restart(i) => {
                    if let Some(id) = pick(i) {
                        s.report(&id, ALLOC_RUNNING, None);
                    }
                }
                Op::Healthy(i) => {
                    if let Some(id) = pick(i) {
                        s.report(&id, ALLOC_RUNNING, Some(true));
                    }
                }
                Op::Tick(secs) => s.tick(i64::from(secs) * 1000),
            }
            prop_assert!(
                serving(&s) >= floor,
                "after {:?}: {} serving, floor {} (live: {:?})",
                op,
                serving(&s),
                floor,
                s.live()
            );
            // A failed allocation that was replaced is told to stop, as Nomad does.
            for a in s.state.allocs.values() {
                if !a.next_allocation.is_empty() {
                    prop_assert_eq!(&a.desired_status, ALLOC_DESIRED_STOP);
                }
            }
        }
    }
}

/// Item 0 of the Nomad-user findings, as reported: count 3, max_parallel 1, no progress
/// deadline, no restarts or reschedules, and every new allocation fails at once.
#[test]
fn a_new_version_that_fails_at_once_stops_only_max_parallel_old_allocations() {
    let mut s = Sim::new();
    s.run(job(3, "a", 1, "0s", 0));
    s.all_healthy();
    s.run(job(3, "b", 1, "0s", 0));
    for _ in 0..3 {
        for id in undecided_new(&s) {
            s.report(&id, ALLOC_FAILED, Some(false));
        }
        s.tick(1);
    }
    assert_eq!(s.latest().status, DEPLOYMENT_FAILED);
    assert_eq!(s.live_of_version(0), 2, "{:?}", s.live());
}

/// With a reschedule budget, the evaluation that sees the failure replaces nothing more while
/// the failed allocation waits for its delayed reschedule; the rollout goes on once its
/// replacement is healthy.
#[test]
fn a_failed_allocation_waiting_for_its_reschedule_holds_the_rollout() {
    let mut s = Sim::new();
    s.run(job(3, "a", 1, "10m", 1));
    s.all_healthy();
    s.run(job(3, "b", 1, "10m", 1));
    let first = undecided_new(&s);
    assert_eq!(first.len(), 1);
    s.report(&first[0], ALLOC_FAILED, Some(false));
    assert_eq!(s.live_of_version(0), 2, "nothing more replaced");
    assert!(undecided_new(&s).is_empty(), "the reschedule waits 5s");
    s.tick(5_000);
    let second = undecided_new(&s);
    assert_eq!(second.len(), 1, "the rescheduled allocation");
    assert_eq!(s.live_of_version(0), 2, "still nothing more replaced");
    let failed = &s.state.allocs[&first[0]];
    assert_eq!(failed.next_allocation, second[0]);
    assert_eq!(failed.desired_status, ALLOC_DESIRED_STOP);
    s.report(&second[0], ALLOC_RUNNING, Some(true));
    assert_eq!(s.live_of_version(0), 1, "the next one is replaced");
}
