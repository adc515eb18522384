//! The event stream's events (pure): what each applied Raft command changed, as Nomad's event
//! stream names it (topic, type, key), with the object as it is after the change. [`touched`]
//! reads a command before it is applied (applying consumes it); [`events`] reads the state
//! after.

use yurt_proto::v1::{Allocation, Deployment, Evaluation, Job, Node};

use crate::internal::{command, Command};
use crate::state::State;

/// An event's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    Job,
    Allocation,
    Deployment,
    Evaluation,
    Node,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Job,
        Topic::Allocation,
        Topic::Deployment,
        Topic::Evaluation,
        Topic::Node,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Job => "Job",
            Topic::Allocation => "Allocation",
            Topic::Deployment => "Deployment",
            Topic::Evaluation => "Evaluation",
            Topic::Node => "Node",
        }
    }

    pub fn parse(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The object an event carries, as it is after the change (none when it is gone).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Job(Box<Job>),
    Allocation(Box<Allocation>),
    Deployment(Box<Deployment>),
    Evaluation(Box<Evaluation>),
    Node(Box<Node>),
    Gone,
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: Topic,
    /// Nomad's event type: `JobRegistered`, `AllocationUpdated`, `NodeDrain`, ...
    pub kind: &'static str,
    /// The object's ID.
    pub key: String,
    pub namespace: String,
    pub index: u64,
    pub payload: Payload,
}

/// What a command changes, named before it is applied: (topic, type, ID, and for a job its
/// namespace, since a job's ID is unique in its namespace only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched(pub Vec<(Topic, &'static str, String, String)>);

impl Touched {
    fn add(&mut self, topic: Topic, kind: &'static str, id: &str) {
        if !id.is_empty() {
            self.0.push((topic, kind, id.to_string(), String::new()));
        }
    }

    fn job(&mut self, kind: &'static str, ns: &str, id: &str) {
        let ns = yurt_types::acl::namespace_or_default(ns);
        self.0
            .push((Topic::Job, kind, id.to_string(), ns.to_string()));
    }

    fn evals<'a>(&mut self, evals: impl IntoIterator<Item = &'a Evaluation>) {
        for e in evals {
            self.add(Topic::Evaluation, "EvaluationUpdated", &e.id);
        }
    }
}

/// What `cmd` will change.
pub fn touched(cmd: &Command) -> Touched {
    let mut t = Touched::default();
    match &cmd.kind {
        Some(command::Kind::JobRegister(r)) => {
            if let Some(j) = &r.job {
                t.job("JobRegistered", &j.namespace, &j.id);
            }
            t.evals(&r.eval);
        }
        Some(command::Kind::JobDeregister(d)) => {
            t.job("JobDeregistered", &d.namespace, &d.job_id);
            t.evals(&d.eval);
        }
        Some(command::Kind::NodeRegister(r)) => {
            if let Some(n) = &r.node {
                t.add(Topic::Node, "NodeRegistration", &n.id);
            }
            t.evals(&r.evals);
        }
        Some(command::Kind::NodeStatusUpdate(u)) => {
            t.add(Topic::Node, "NodeStatusUpdate", &u.node_id);
            t.evals(&u.evals);
        }
        Some(command::Kind::NodeEligibilityUpdate(u)) => {
            t.add(Topic::Node, "NodeEligibility", &u.node_id);
            t.evals(&u.evals);
        }
        Some(command::Kind::NodeDrainUpdate(u)) => {
            t.add(Topic::Node, "NodeDrain", &u.node_id);
            t.evals(&u.evals);
        }
        Some(command::Kind::ApplyPlan(p)) => {
            for a in &p.allocs {
                t.add(Topic::Allocation, "PlanResult", &a.id);
            }
            if let Some(d) = &p.deployment {
                t.add(Topic::Deployment, "DeploymentStatusUpdate", &d.id);
            }
            for c in &p.deployment_changes {
                t.add(
                    Topic::Deployment,
                    "DeploymentStatusUpdate",
                    &c.deployment_id,
                );
            }
            t.evals(p.eval.iter().chain(&p.new_evals));
        }
        Some(command::Kind::AllocClientUpdates(u)) => {
            for a in &u.updates {
                t.add(Topic::Allocation, "AllocationUpdated", &a.alloc_id);
            }
            t.evals(&u.evals);
        }
        Some(command::Kind::DeploymentChange(c)) => {
            let kind = if c.promote {
                "DeploymentPromotion"
            } else if !c.healthy_allocs.is_empty() || !c.unhealthy_allocs.is_empty() {
                "DeploymentAllocHealth"
            } else {
                "DeploymentStatusUpdate"
            };
            t.add(Topic::Deployment, kind, &c.deployment_id);
            if let Some(j) = &c.rollback {
                t.job("JobRegistered", &j.namespace, &j.id);
            }
            t.evals(&c.eval);
        }
        Some(command::Kind::DrainProgress(p)) => {
            for a in p.migrate_allocs.iter().chain(&p.stop_allocs) {
                t.add(Topic::Allocation, "AllocationUpdated", a);
            }
            for n in p.done_nodes.iter().chain(&p.deadline_nodes) {
                t.add(Topic::Node, "NodeDrain", n);
            }
            t.evals(&p.evals);
        }
        _ => {}
    }
    t
}

/// The events of a change at `index`, with the objects as `state` (after it) has them.
pub fn events(state: &State, index: u64, touched: &Touched) -> Vec<Event> {
    touched
        .0
        .iter()
        .map(|(topic, kind, id, ns)| {
            let (namespace, payload) = match topic {
                Topic::Job => state.job(ns, id).map_or((ns.clone(), Payload::Gone), |j| {
                    (j.namespace.clone(), Payload::Job(Box::new(j.clone())))
                }),
                Topic::Allocation => {
                    state
                        .allocs
                        .get(id)
                        .map_or((String::new(), Payload::Gone), |a| {
                            (
                                a.namespace.clone(),
                                Payload::Allocation(Box::new(a.clone())),
                            )
                        })
                }
                Topic::Deployment => {
                    state
                        .deployments
                        .get(id)
                        .map_or((String::new(), Payload::Gone), |d| {
                            (
                                d.namespace.clone(),
                                Payload::Deployment(Box::new(d.clone())),
                            )
                        })
                }
                Topic::Evaluation => {
                    state
                        .evals
                        .get(id)
                        .map_or((String::new(), Payload::Gone), |e| {
                            (
                                e.namespace.clone(),
                                Payload::Evaluation(Box::new(e.clone())),
                            )
                        })
                }
                Topic::Node => state
                    .nodes
                    .get(id)
                    .map_or((String::new(), Payload::Gone), |n| {
                        (String::new(), Payload::Node(Box::new(n.clone())))
                    }),
            };
            Event {
                topic: *topic,
                kind,
                key: id.clone(),
                namespace: if namespace.is_empty() {
                    "default".into()
                } else {
                    namespace
                },
                index,
                payload,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::{JobRegister, NodeDrainUpdate};

    #[test]
    fn a_registration_is_a_job_and_an_evaluation_event_with_the_objects_after_it() {
        let mut state = State::default();
        let job = crate::testkit::web_job(2, "a", "", "");
        let eval = Evaluation {
            id: "e1".into(),
            job_id: "web".into(),
            ..Evaluation::default()
        };
        let cmd = Command {
            kind: Some(command::Kind::JobRegister(JobRegister {
                job: Some(job),
                eval: Some(eval),
                ..JobRegister::default()
            })),
            ..Command::default()
        };
        let t = touched(&cmd);
        state.apply_owned(7, cmd).unwrap();
        let ev = events(&state, 7, &t);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            (ev[0].topic, ev[0].kind, ev[0].key.as_str()),
            (Topic::Job, "JobRegistered", "web")
        );
        assert!(matches!(&ev[0].payload, Payload::Job(j) if j.id == "web"));
        assert_eq!(
            (ev[1].topic, ev[1].kind),
            (Topic::Evaluation, "EvaluationUpdated")
        );
        assert_eq!(ev[1].index, 7);
        let drain = Command {
            kind: Some(command::Kind::NodeDrainUpdate(NodeDrainUpdate {
                node_id: "n1".into(),
                ..NodeDrainUpdate::default()
            })),
            ..Command::default()
        };
        let t = touched(&drain);
        assert_eq!(
            t.0,
            vec![(Topic::Node, "NodeDrain", "n1".to_string(), String::new())]
        );
        assert_eq!(
            events(&state, 8, &t)[0].payload,
            Payload::Gone,
            "no such node"
        );
        assert_eq!(Topic::parse("Deployment"), Some(Topic::Deployment));
        assert_eq!(Topic::parse("deployment"), None);
    }
}
