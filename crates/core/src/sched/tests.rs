//! Reconciler and placement tests: a state built by applying commands, then one scheduler run.
//! The helpers are here; the tests are in `tests/`: the buckets ([`reconcile`]), placement
//! ([`place`]), rescheduling and node changes ([`nodes`]), properties ([`invariants`]) and
//! step-by-step fixtures ([`fixtures`]).

use super::*;
use crate::evals::*;
use crate::internal::{NodeRegister, SetSchedulerConfig};
use crate::testkit::{ready_node, register_node, JobSpec};
use crate::v1::Constraint;
use yurt_types::jobspec::parse_hcl;

mod fixtures;
mod invariants;
mod nodes;
mod place;
mod reconcile;

/// A job without an update strategy (`max_parallel = 0`: changes apply at once, no deployment;
/// deployments are tested in `deploy::tests`).
fn job_src(kind: &str, count: u32, env: &str, memory: u32, priority: u32) -> Job {
    let spec = JobSpec::new("web")
        .kind(kind)
        .count(count)
        .env(env)
        .resources(100, memory)
        .priority(priority);
    if kind == "batch" {
        spec.job()
    } else {
        spec.block("update", "max_parallel = 0").job()
    }
}

fn job(count: u32, env: &str) -> Job {
    job_src("service", count, env, 100, 50)
}

struct World {
    state: State,
    index: u64,
    ids: u32,
    now: i64,
}

impl World {
    fn new(nodes: u32) -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            ids: 0,
            now: 1,
        };
        for i in 0..nodes {
            w.node(&format!("node-{i}"), 1000, 1000);
        }
        w
    }

    fn apply(&mut self, kind: command::Kind) {
        self.index += 1;
        let cmd = Command {
            now_unix_ms: self.now,
            ignore_if_unknown: false,
            kind: Some(kind),
        };
        self.state.apply(self.index, &cmd).unwrap();
    }

    fn node(&mut self, id: &str, cpu: u32, mem: u32) {
        self.apply(register_node(ready_node(id, cpu, mem)));
    }

    /// Registers the job and runs the scheduler, committing the plan.
    fn run(&mut self, job: Job) -> Outcome {
        self.apply(command::Kind::JobRegister(JobRegister {
            job: Some(job.clone()),
            eval: None,
            enforce_index: false,
            job_modify_index: 0,
            scaling_event: None,
        }));
        self.schedule(&job.id)
    }

    fn schedule(&mut self, job_id: &str) -> Outcome {
        let ids = &mut self.ids;
        let out = schedule(
            &self.state,
            &crate::state::job_key("", job_id),
            "eval",
            self.now,
            &mut || {
                *ids += 1;
                format!("alloc-{ids}")
            },
        );
        self.apply(command::Kind::ApplyPlan(ApplyPlan {
            allocs: out.allocs.clone(),
            eval: None,
            new_evals: vec![],
            job: out.job.clone(),
            deployment: out.deployment.clone(),
            deployment_changes: out.deployment_changes.clone(),
        }));
        out
    }

    fn running(&self) -> Vec<&Allocation> {
        self.state
            .allocs
            .values()
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN)
            .collect()
    }
}

fn counts(o: &Outcome) -> (u64, u64, u64, u64, u64) {
    let d = &o.desired["app"];
    (
        d.place,
        d.stop,
        d.ignore,
        d.in_place_update,
        d.destructive_update,
    )
}
