//! The scheduler and the state machine agree on whether an allocation fits a node: for any
//! node (status, eligibility, drain, capacity, what already runs there) and any need, the
//! scheduler places on it exactly when the state machine would accept that placement in a
//! plan (`state::takes_placements` and `state::fits` are the one rule both ask).

use proptest::prelude::*;
use yurt_types::status::*;

use crate::internal::{command, ApplyPlan, Command};
use crate::state::State;
use crate::testkit::{ready_node, register_job, register_node, JobSpec};
use crate::v1::{Allocation, Job, Resources};

fn apply(state: &mut State, kind: command::Kind) {
    let index = state.index + 1;
    let cmd = Command {
        now_unix_ms: 1,
        ignore_if_unknown: false,
        kind: Some(kind),
    };
    let _ = state.apply(index, &cmd);
}

fn job(memory: u32) -> Job {
    JobSpec::new("web")
        .resources(100, memory)
        .block("update", "max_parallel = 0")
        .job()
}

/// A state with one node and, on it, an allocation of another job using `used` MB.
fn world(capacity: u32, used: u32) -> State {
    let mut s = State::default();
    apply(&mut s, register_node(ready_node("n", 1000, capacity)));
    if used > 0 {
        let mut other = job(used.max(10));
        other.id = "other".into();
        apply(&mut s, register_job(other.clone()));
        let a = Allocation {
            id: "busy".into(),
            node_id: "n".into(),
            job_id: "other".into(),
            name: "other.app[0]".into(),
            task_group: "app".into(),
            resources: Some(Resources {
                cpu: 100,
                memory_mb: used,
                memory_max_mb: 0,
            }),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_RUNNING.into(),
            ..Default::default()
        };
        apply(&mut s, plan(a, other));
    }
    s
}

fn plan(a: Allocation, job: Job) -> command::Kind {
    command::Kind::ApplyPlan(ApplyPlan {
        allocs: vec![a],
        eval: None,
        new_evals: vec![],
        job: Some(job),
        deployment: None,
        deployment_changes: vec![],
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_scheduler_places_exactly_where_a_plan_would_be_accepted(
        status in prop_oneof![Just(NODE_READY), Just(NODE_DOWN), Just("initializing")],
        eligibility in prop_oneof![Just(NODE_ELIGIBLE), Just(NODE_INELIGIBLE), Just("")],
        drain in any::<bool>(),
        capacity in prop_oneof![Just(200u32), Just(500), Just(1000)],
        used in prop_oneof![Just(0u32), Just(100), Just(300), Just(600)],
        need in prop_oneof![Just(50u32), Just(200), Just(400)],
    ) {
        let mut s = world(capacity, used);
        let j = job(need);
        apply(&mut s, register_job(j.clone()));
        let node = s.nodes.get_mut("n").unwrap();
        node.status = status.into();
        node.scheduling_eligibility = eligibility.into();
        node.drain = drain;
        // The scheduler's view.
        let mut n = 0;
        let outcome = crate::sched::schedule(&s, &crate::state::job_key("", "web"), "e", 1, &mut || {
            n += 1;
            format!("a{n}")
        });
        let placed = outcome.allocs.iter().any(|a| a.node_id == "n");
        // The state machine's view of the same placement in a plan.
        let probe = Allocation {
            id: "probe".into(),
            node_id: "n".into(),
            job_id: "web".into(),
            name: "web.app[0]".into(),
            task_group: "app".into(),
            resources: Some(Resources { cpu: 100, memory_mb: need, memory_max_mb: 0 }),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_PENDING.into(),
            ..Default::default()
        };
        apply(&mut s, plan(probe, j));
        let accepted = s.allocs.contains_key("probe");
        prop_assert_eq!(
            placed,
            accepted,
            "status {} eligibility {:?} drain {} capacity {} used {} need {}",
            status, eligibility, drain, capacity, used, need
        );
    }
}
