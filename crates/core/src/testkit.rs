//! A simulated cluster for tests: the scheduler, the state machine, clients that report what
//! the test says, the deployment watcher and the drainer, at a simulated time.

use yurt_types::status::*;

use crate::deploy::*;
use crate::internal::{
    command, AllocClientUpdates, Command, DeploymentChange, JobRegister, NodeRegister,
};
use crate::sched::{plan_command, schedule};
use crate::state::{ApplyError, State};
use crate::v1::{
    AllocClientUpdate, AllocDeploymentStatus, Allocation, Deployment, Evaluation, Job, Node,
    Resources,
};

pub const MIN: i64 = 60_000;

fn healthy(a: &Allocation) -> Option<bool> {
    a.deployment_status.as_ref().and_then(|s| s.healthy)
}

fn is_canary(a: &Allocation) -> bool {
    a.deployment_status.as_ref().is_some_and(|s| s.canary)
}

/// A job file for tests, built field by field and read by the job-spec reader (so it gets
/// Nomad's defaults as a real file would): `JobSpec::new("web").count(3).job()`. One group
/// `app`, one task `t` running `/bin/sleep`.
#[derive(Debug, Clone)]
pub struct JobSpec {
    id: String,
    kind: String,
    count: u32,
    priority: u32,
    env: String,
    cpu: u32,
    memory: u32,
    /// Blocks written into the group (`update { ... }`, `reschedule { ... }`).
    group: String,
}

impl JobSpec {
    pub fn new(id: &str) -> JobSpec {
        JobSpec {
            id: id.into(),
            kind: "service".into(),
            count: 1,
            priority: 50,
            env: "a".into(),
            cpu: 10,
            memory: 10,
            group: String::new(),
        }
    }

    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind.into();
        self
    }

    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The task's env `E`: a change of it is a destructive update.
    pub fn env(mut self, env: &str) -> Self {
        self.env = env.into();
        self
    }

    pub fn resources(mut self, cpu: u32, memory: u32) -> Self {
        self.cpu = cpu;
        self.memory = memory;
        self
    }

    /// A block of the group, written as `name { body }`.
    pub fn block(mut self, name: &str, body: &str) -> Self {
        self.group
            .push_str(&format!("    {name} {{\n      {body}\n    }}\n"));
        self
    }

    pub fn job(&self) -> Job {
        let src = format!(
            "job {:?} {{\n  type = {:?}\n  priority = {}\n  group \"app\" {{\n    count = {}\n{}    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n      }}\n      env {{\n        E = {:?}\n      }}\n      resources {{\n        cpu = {}\n        memory = {}\n      }}\n    }}\n  }}\n}}\n",
            self.id, self.kind, self.priority, self.count, self.group, self.env, self.cpu, self.memory
        );
        yurt_types::jobspec::parse_hcl("t.hcl", &src).unwrap()
    }
}

/// A service job "web", group "app" of `count`, whose task's env is `E = env`, with the
/// group's `update` and `reschedule` blocks' bodies written as given.
pub fn web_job(count: u32, env: &str, update: &str, reschedule: &str) -> Job {
    JobSpec::new("web")
        .count(count)
        .env(env)
        .block("update", update)
        .block("reschedule", reschedule)
        .job()
}

/// A ready, eligible node `id` (also its name) in `dc1` with `cpu` MHz and `memory_mb` MB.
pub fn ready_node(id: &str, cpu: u32, memory_mb: u32) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        status: NODE_READY.into(),
        scheduling_eligibility: NODE_ELIGIBLE.into(),
        resources: Some(Resources {
            cpu,
            memory_mb,
            memory_max_mb: 0,
        }),
        drivers: healthy_drivers(),
        ..Node::default()
    }
}

/// The fingerprints of a node with `raw_exec` and `exec` healthy.
pub fn healthy_drivers() -> std::collections::BTreeMap<String, crate::v1::DriverInfo> {
    ["raw_exec", "exec"]
        .into_iter()
        .map(|d| {
            let info = crate::v1::DriverInfo {
                detected: true,
                healthy: true,
                health_description: "Healthy".into(),
                ..Default::default()
            };
            (d.to_string(), info)
        })
        .collect()
}

/// The command that registers `job` (no evaluation, no index check).
pub fn register_job(job: Job) -> command::Kind {
    command::Kind::JobRegister(JobRegister {
        job: Some(job),
        eval: None,
        enforce_index: false,
        job_modify_index: 0,
        scaling_event: None,
    })
}

/// The command that registers `node` (no evaluations, no event).
pub fn register_node(node: Node) -> command::Kind {
    command::Kind::NodeRegister(NodeRegister {
        node: Some(node),
        evals: vec![],
        event: None,
    })
}

pub struct Sim {
    pub state: State,
    pub index: u64,
    pub now: i64,
    pub ids: u32,
}

impl Sim {
    pub fn new() -> Sim {
        Sim::with_nodes(3, 10_000)
    }

    /// `n` ready nodes of `memory_mb` each (and as many MHz).
    pub fn with_nodes(n: u32, memory_mb: u32) -> Sim {
        let mut s = Sim {
            state: State::default(),
            index: 0,
            now: 1_000_000,
            ids: 0,
        };
        for i in 0..n {
            s.apply(register_node(ready_node(
                &format!("node-{i}"),
                memory_mb,
                memory_mb,
            )))
            .unwrap();
        }
        s
    }

    pub fn id(&mut self) -> String {
        self.ids += 1;
        format!("id-{:04}", self.ids)
    }

    pub fn apply(&mut self, kind: command::Kind) -> Result<crate::state::Applied, ApplyError> {
        self.index += 1;
        let cmd = Command {
            now_unix_ms: self.now,
            ignore_if_unknown: false,
            kind: Some(kind),
        };
        self.state.apply(self.index, &cmd)
    }

    /// Registers a job version and schedules until nothing is pending.
    pub fn run(&mut self, job: Job) {
        let eval = crate::evals::new_eval(&job, self.id(), TRIGGER_JOB_REGISTER);
        self.apply(command::Kind::JobRegister(JobRegister {
            job: Some(job),
            eval: Some(eval),
            enforce_index: false,
            job_modify_index: 0,
            scaling_event: None,
        }))
        .unwrap();
        self.settle();
    }

    /// The leader's eval loop until no evaluation is due.
    pub fn settle(&mut self) {
        for _ in 0..50 {
            let due: Vec<(Evaluation, Vec<Evaluation>)> = self
                .state
                .evals_to_schedule(self.now, usize::MAX)
                .into_iter()
                .map(|(e, s)| (e.clone(), s.into_iter().cloned().collect()))
                .collect();
            if due.is_empty() {
                return;
            }
            for (eval, superseded) in due {
                let mut ids = self.ids;
                let mut new_id = || {
                    ids += 1;
                    format!("id-{ids:04}")
                };
                let outcome = schedule(
                    &self.state,
                    &crate::state::job_key(&eval.namespace, &eval.job_id),
                    &eval.id,
                    self.now,
                    &mut new_id,
                );
                let sup: Vec<&Evaluation> = superseded.iter().collect();
                let cmd = plan_command(&eval, &sup, outcome, self.now, &mut new_id);
                self.ids = ids;
                self.index += 1;
                self.state.apply(self.index, &cmd).unwrap();
            }
        }
        panic!("evaluations keep coming");
    }

    /// A client's report on one allocation (with the evaluations the server adds).
    pub fn report(&mut self, alloc: &str, status: &str, healthy: Option<bool>) {
        self.send(AllocClientUpdate {
            alloc_id: alloc.into(),
            client_status: status.into(),
            deployment_status: healthy.map(|h| AllocDeploymentStatus {
                healthy: Some(h),
                timestamp_unix_ms: self.now,
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    /// A client's report as written (with the evaluations the server adds), then the
    /// scheduler until nothing is pending.
    pub fn send(&mut self, update: AllocClientUpdate) {
        let a = self.state.allocs[&update.alloc_id].clone();
        let mut ids = self.ids;
        let mut new_id = || {
            ids += 1;
            format!("id-{ids:04}")
        };
        let evals = crate::sched::client_update_evals(
            &self.state,
            std::slice::from_ref(&update),
            &mut new_id,
        );
        self.ids = ids;
        self.apply(command::Kind::AllocClientUpdates(AllocClientUpdates {
            node_id: a.node_id,
            updates: vec![update],
            evals,
        }))
        .unwrap();
        self.settle();
    }

    /// Every allocation the servers want running and not yet judged: running and healthy.
    pub fn all_healthy(&mut self) {
        for id in self.undecided() {
            self.report(&id, ALLOC_RUNNING, Some(true));
        }
    }

    pub fn undecided(&self) -> Vec<String> {
        self.state
            .allocs
            .values()
            .filter(|a| !alloc_terminal(a) && healthy(a).is_none())
            .map(|a| a.id.clone())
            .collect()
    }

    /// Time passes; the watcher acts on what is due, then the scheduler.
    pub fn tick(&mut self, ms: i64) {
        self.now += ms;
        let mut ids = self.ids;
        let changes = watch(&self.state, self.now, &mut || {
            ids += 1;
            format!("id-{ids:04}")
        });
        self.ids = ids;
        for c in changes {
            self.apply(command::Kind::DeploymentChange(c)).unwrap();
        }
        self.settle();
        self.drain_pass();
        let mut ids = self.ids;
        assert!(
            watch(&self.state, self.now, &mut || {
                ids += 1;
                format!("id-{ids:04}")
            })
            .is_empty(),
            "the watcher's changes are done once"
        );
    }

    pub fn latest(&self) -> Deployment {
        of_job(&self.state, "", "web")
            .into_iter()
            .next()
            .expect("a deployment")
    }

    /// Live allocations: (version, healthy?) of each.
    pub fn live(&self) -> Vec<(u64, Option<bool>, bool)> {
        let mut v: Vec<(u64, Option<bool>, bool)> = self
            .state
            .allocs
            .values()
            .filter(|a| !alloc_terminal(a))
            .map(|a| (a.job.as_ref().unwrap().version, healthy(a), is_canary(a)))
            .collect();
        v.sort();
        v
    }

    pub fn live_of_version(&self, version: u64) -> usize {
        self.live().iter().filter(|(v, _, _)| *v == version).count()
    }

    pub fn change(&mut self, c: Result<DeploymentChange, DeployError>) -> Result<(), String> {
        let c = c.map_err(|e| e.to_string())?;
        self.apply(command::Kind::DeploymentChange(c))
            .map_err(|e| e.to_string())?;
        self.settle();
        Ok(())
    }

    pub fn stable(&self, version: u64) -> bool {
        self.state.job_versions[&crate::state::job_key("", "web")]
            .iter()
            .find(|j| j.version == version)
            .unwrap()
            .stable
    }

    /// The leader's drainer until it has nothing more to do now, the scheduler after each pass.
    pub fn drain_pass(&mut self) {
        for _ in 0..20 {
            let mut ids = self.ids;
            let progress = crate::drain::plan(&self.state, self.now, &mut || {
                ids += 1;
                format!("id-{ids:04}")
            });
            self.ids = ids;
            let Some(p) = progress else { return };
            self.apply(command::Kind::DrainProgress(p)).unwrap();
            self.settle();
        }
        panic!("the drainer keeps finding work");
    }
}
