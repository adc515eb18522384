//! The public gRPC services (`yurt.v1`). Handlers are thin: read the state, or build a command
//! and hand it to the [`Writer`]. Errors reach the user as one sentence in the status message.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use yurt_core::deploy;
use yurt_core::evals::{
    new_eval, node_eligibility_command, node_register_command, node_status_command,
};
use yurt_core::internal::{command, AllocClientUpdates, JobDeregister, JobRegister};
use yurt_core::sched::{client_update_evals, plan_job_on};
use yurt_core::state::{PrefixError, State};
use yurt_types::feed;

use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::*;
use yurt_types::acl::{Level, Need, LIST_JOBS, READ_JOB, SUBMIT_JOB};
use yurt_types::diff::job_diff;
use yurt_types::jobspec;
use yurt_types::status::*;

use crate::heartbeat::Heartbeats;
use crate::read::{on_behalf, stale, Reads};
use crate::scope::Scope;
use crate::write::{now_unix_ms, Writer};

/// Longest a blocking query may wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

type Reply<T> = Result<Response<T>, Status>;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A job by ID or prefix, in the call's scope.
pub(crate) fn find_job<'s>(s: &'s State, scope: &Scope, id: &str) -> Result<&'s Job, Status> {
    let job = lookup(&s.jobs, "job", id)?;
    scope.check(&job.namespace, "job", id)?;
    Ok(job)
}

/// A job sent without a namespace takes the call's (`-namespace`, `?namespace=`).
fn in_namespace<T>(req: &Request<T>, job: Option<Job>) -> Option<Job> {
    job.map(|mut j| {
        if j.namespace.is_empty() {
            let ns = crate::scope::namespace(req);
            if ns != crate::scope::ALL {
                j.namespace = ns;
            }
        }
        j
    })
}

pub(crate) fn lookup<'a, T: 'a>(
    map: &'a impl yurt_core::state::ById<T>,
    what: &str,
    id: &str,
) -> Result<&'a T, Status> {
    State::find_by_prefix(map, id).map_err(|e| status(e, what, id))
}

fn status(e: PrefixError, what: &str, id: &str) -> Status {
    match e {
        PrefixError::NotFound => Status::not_found(e.sentence(what, id)),
        PrefixError::Ambiguous => Status::invalid_argument(e.sentence(what, id)),
    }
}

/// Applies defaults and checks a job that arrived over the API (the CLI already did this for
/// files, but the API accepts jobs from anyone), including that it is for this region.
pub(crate) fn checked_job(job: Option<Job>, region: &str) -> Result<Job, Status> {
    let mut job = job.ok_or_else(|| Status::invalid_argument("request has no job"))?;
    jobspec::canonicalize(&mut job);
    jobspec::validate(&job)
        .and_then(|()| jobspec::place_in_region(&mut job, region))
        .map_err(|p| Status::invalid_argument(p.to_string()))?;
    Ok(job)
}

/// An allocation as lists show it (as Nomad's allocation stubs): its job as the identity of the
/// version it runs, so that a list's size does not grow with the job's (`Allocs/Get` has it
/// whole).
pub(crate) fn listed(a: &Allocation) -> Allocation {
    let mut a = a.clone();
    a.job = a.job.as_ref().map(feed::job_stub);
    a
}

#[derive(Clone)]
pub struct Api {
    pub writer: Writer,
    pub reads: Reads,
    pub heartbeats: Arc<Heartbeats>,
    /// The servers as gossip knows them (their versions gate features).
    pub cluster: crate::cluster::Cluster,
    /// The keys that seal variables.
    pub keyring: crate::keyring::Keyring,
}

impl Api {
    /// The `Operator` service over the same server (for the gRPC router and the HTTP API).
    pub fn operator(&self) -> crate::operator::OperatorService {
        crate::operator::OperatorService {
            cluster: self.cluster.clone(),
            reads: self.reads.clone(),
            writer: self.writer.clone(),
        }
    }

    /// The `Variables` and `Keyring` services over the same server.
    pub fn variables(&self) -> crate::variables::VariablesService {
        crate::variables::VariablesService {
            reads: self.reads.clone(),
            writer: self.writer.clone(),
            cluster: self.cluster.clone(),
            keyring: self.keyring.clone(),
        }
    }

    /// The `Search` service over the same server.
    pub fn search(&self) -> crate::search::SearchService {
        crate::search::SearchService {
            reads: self.reads.clone(),
        }
    }

    /// The `Namespaces` service over the same server.
    pub fn namespaces(&self) -> crate::namespaces::NamespacesService {
        crate::namespaces::NamespacesService {
            reads: self.reads.clone(),
            writer: self.writer.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// The `Acl` service over the same server.
    pub fn acl(&self) -> crate::acl::AclService {
        crate::acl::AclService {
            reads: self.reads.clone(),
            writer: self.writer.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// A client for the leader's `Nodes` service when this server is not the leader (heartbeats
    /// are tracked on the leader only); `None` on the leader.
    async fn leader_nodes(&self) -> Result<Option<NodesClient<Channel>>, Status> {
        if crate::raft::is_leader(&self.reads.raft) {
            return Ok(None);
        }
        let channel = crate::raft::dial_leader(&self.reads.raft, &self.reads.dialer).await?;
        Ok(Some(NodesClient::new(channel)))
    }

    /// Makes the read that follows consistent, unless the request allows a stale one.
    pub(crate) async fn barrier<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.reads.barrier(stale(req)).await
    }

    /// Before a write decided on this server's copy of the state (its evaluations, its checks):
    /// the copy catches up with everything the leader had committed when the request came (a
    /// follower asks the leader), so that a lagging follower never decides on an old view.
    async fn decide_on_current_state(&self) -> Result<(), Status> {
        self.reads.barrier(false).await
    }
}

#[tonic::async_trait]
impl jobs_server::Jobs for Api {
    async fn register(&self, req: Request<RegisterJobRequest>) -> Reply<RegisterJobResponse> {
        let job = checked_job(
            in_namespace(&req, req.get_ref().job.clone()),
            &self.cluster.me().region,
        )?;
        self.reads.scope_at(&req, &job.namespace, SUBMIT_JOB)?;
        let req = req.into_inner();
        let warnings = yurt_types::nomad_job::warnings(&job).join("\n");
        let eval = new_eval(&job, new_id(), TRIGGER_JOB_REGISTER);
        let r = self
            .writer
            .apply(command::Kind::JobRegister(JobRegister {
                job: Some(job),
                eval: Some(eval),
                enforce_index: req.enforce_index,
                job_modify_index: req.job_modify_index,
            }))
            .await?;
        Ok(Response::new(RegisterJobResponse {
            eval_id: r.eval_id,
            job_modify_index: r.job_modify_index,
            index: r.index,
            warnings,
        }))
    }

    async fn plan(&self, req: Request<PlanJobRequest>) -> Reply<PlanJobResponse> {
        let job = checked_job(
            in_namespace(&req, req.get_ref().job.clone()),
            &self.cluster.me().region,
        )?;
        self.reads.scope_at(&req, &job.namespace, SUBMIT_JOB)?;
        self.barrier(&req).await?;
        let warnings = yurt_types::nomad_job::warnings(&job).join("\n");
        let gates = self.cluster.gates();
        // A snapshot (no lock held while planning), planned off the async workers.
        let state = self.reads.state.snapshot();
        let plan = crate::heavy::run("planning", move || {
            plan_job_on(state, &job, now_unix_ms(), gates)
        })
        .await?;
        Ok(Response::new(PlanJobResponse {
            job_modify_index: plan.job_modify_index,
            diff: Some(plan.diff),
            desired_tg_updates: plan.desired.into_iter().collect(),
            failed_tg_allocs: plan.failed.into_iter().collect(),
            warnings,
        }))
    }

    async fn get(&self, req: Request<GetJobRequest>) -> Reply<Job> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().job_id;
        self.reads
            .state
            .read(|s| find_job(s, &scope, &id).cloned())
            .map(Response::new)
    }

    async fn list(&self, req: Request<ListJobsRequest>) -> Reply<ListJobsResponse> {
        let scope = self.reads.scope(&req, LIST_JOBS)?;
        self.barrier(&req).await?;
        let prefix = req.into_inner().prefix;
        let jobs = self.reads.state.scan(|s| {
            s.jobs
                .values()
                .filter(|j| j.id.starts_with(&prefix) && scope.admits(&j.namespace))
                .map(|j| JobListStub {
                    namespace: j.namespace.clone(),
                    id: j.id.clone(),
                    name: j.name.clone(),
                    r#type: j.r#type.clone(),
                    priority: j.priority,
                    status: j.status.clone(),
                    submit_time_unix_ms: j.submit_time_unix_ms,
                    version: j.version,
                })
                .collect()
        });
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn versions(&self, req: Request<JobVersionsRequest>) -> Reply<JobVersionsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let req = req.into_inner();
        let versions: Vec<Job> = self.reads.state.read(|s| {
            let id = find_job(s, &scope, &req.job_id)?.id.clone();
            Ok::<_, Status>(
                s.job_versions
                    .get(&id)
                    .map(|v| v.iter().rev().map(|j| Job::clone(j)).collect())
                    .unwrap_or_default(),
            )
        })?;
        let diffs = if req.diffs {
            versions
                .windows(2)
                .map(|w| job_diff(Some(&w[1]), &w[0]))
                .collect()
        } else {
            vec![]
        };
        Ok(Response::new(JobVersionsResponse { versions, diffs }))
    }

    async fn deregister(&self, req: Request<DeregisterJobRequest>) -> Reply<DeregisterJobResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        self.decide_on_current_state().await?;
        let req = req.into_inner();
        let job = self
            .reads
            .state
            .read(|s| find_job(s, &scope, &req.job_id).cloned())?;
        let eval = new_eval(&job, new_id(), TRIGGER_JOB_DEREGISTER);
        let r = self
            .writer
            .apply(command::Kind::JobDeregister(JobDeregister {
                job_id: job.id.clone(),
                purge: req.purge,
                eval: Some(eval),
            }))
            .await?;
        Ok(Response::new(DeregisterJobResponse {
            eval_id: r.eval_id,
            index: r.index,
        }))
    }

    async fn allocations(&self, req: Request<GetJobRequest>) -> Reply<ListAllocsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().job_id;
        let allocs = self.reads.state.scan(|s| {
            let id = find_job(s, &scope, &id)?.id.clone();
            Ok::<_, Status>(s.job_allocs(&id).into_iter().map(listed).collect())
        })?;
        Ok(Response::new(ListAllocsResponse { allocs }))
    }

    async fn evaluations(&self, req: Request<GetJobRequest>) -> Reply<ListEvalsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().job_id;
        let mut evals: Vec<Evaluation> = self.reads.state.scan(|s| {
            s.evals
                .values()
                .filter(|e| e.job_id == id && scope.admits(&e.namespace))
                .cloned()
                .collect()
        });
        evals.sort_by_key(|e| std::cmp::Reverse(e.create_index));
        Ok(Response::new(ListEvalsResponse { evals }))
    }

    async fn deployments(&self, req: Request<GetJobRequest>) -> Reply<ListDeploymentsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().job_id;
        let deployments = self.reads.state.read(|s| {
            let id = find_job(s, &scope, &id)?.id.clone();
            Ok::<_, Status>(deploy::of_job(s, &id))
        })?;
        Ok(Response::new(ListDeploymentsResponse { deployments }))
    }

    async fn evaluate(&self, req: Request<JobEvaluateRequest>) -> Reply<JobEvaluateResponse> {
        crate::job_actions::evaluate(self, req).await
    }

    async fn set_stable(&self, req: Request<JobStableRequest>) -> Reply<JobStableResponse> {
        crate::job_actions::set_stable(self, req).await
    }

    async fn scale(&self, req: Request<JobScaleRequest>) -> Reply<RegisterJobResponse> {
        crate::job_actions::scale(self, req).await
    }

    async fn scale_status(&self, req: Request<GetJobRequest>) -> Reply<JobScaleStatus> {
        crate::job_actions::scale_status(self, req).await
    }

    async fn scaling_policies(
        &self,
        req: Request<ListScalingPoliciesRequest>,
    ) -> Reply<ListScalingPoliciesResponse> {
        crate::job_actions::scaling_policies(self, req).await
    }

    async fn scaling_policy(&self, req: Request<GetScalingPolicyRequest>) -> Reply<ScalingPolicy> {
        crate::job_actions::scaling_policy(self, req).await
    }

    async fn revert(&self, req: Request<RevertJobRequest>) -> Reply<RegisterJobResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let req = req.into_inner();
        let register = self.reads.state.read(|s| {
            let id = find_job(s, &scope, &req.job_id)?.id.clone();
            deploy::revert(s, &id, req.version, &mut new_id)
                .map_err(|e| Status::failed_precondition(e.to_string()))
        })?;
        let r = self
            .writer
            .apply(command::Kind::JobRegister(register))
            .await?;
        Ok(Response::new(RegisterJobResponse {
            eval_id: r.eval_id,
            job_modify_index: r.job_modify_index,
            index: r.index,
            warnings: String::new(),
        }))
    }
}

impl Api {
    /// The answer to a user's change of a node: the evaluations it made and the node's
    /// modify index once this server has applied it.
    pub(crate) fn node_updated(
        &self,
        node_id: &str,
        index: u64,
        eval_ids: Vec<String>,
    ) -> NodeUpdateResponse {
        let node_modify_index = self
            .reads
            .state
            .read(|s| s.nodes.get(node_id).map_or(0, |n| n.modify_index));
        NodeUpdateResponse {
            heartbeat_ttl_ms: 0,
            index,
            server_version: yurt_types::VERSION.into(),
            eval_ids,
            node_modify_index,
        }
    }

    /// Builds a user's change of a deployment (found by ID or prefix) and commits it; the reply
    /// carries the deployment as it is afterwards.
    async fn change_deployment(
        &self,
        scope: Scope,
        id: &str,
        build: impl FnOnce(
            &State,
            &Deployment,
        )
            -> Result<yurt_core::internal::DeploymentChange, deploy::DeployError>,
    ) -> Reply<DeploymentActionResponse> {
        yurt_core::features::check(
            &yurt_core::features::DEPLOYMENTS,
            &self.cluster.gate_servers(),
        )
        .map_err(Status::failed_precondition)?;
        let change = self.reads.state.read(|s| {
            let d = lookup(&s.deployments, "deployment", id)?;
            scope.check(&d.namespace, "deployment", id)?;
            build(s, d).map_err(|e| Status::failed_precondition(e.to_string()))
        })?;
        let deployment_id = change.deployment_id.clone();
        let r = self
            .writer
            .apply(command::Kind::DeploymentChange(change))
            .await?;
        let deployment = self
            .reads
            .state
            .read(|s| s.deployments.get(&deployment_id).cloned());
        Ok(Response::new(DeploymentActionResponse {
            eval_id: r.eval_id,
            index: r.index,
            deployment,
        }))
    }
}

#[tonic::async_trait]
impl deployments_server::Deployments for Api {
    async fn list(&self, req: Request<ListDeploymentsRequest>) -> Reply<ListDeploymentsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let prefix = req.into_inner().prefix;
        let mut deployments: Vec<Deployment> = self.reads.state.scan(|s| {
            s.deployments
                .values()
                .filter(|d| d.id.starts_with(&prefix) && scope.admits(&d.namespace))
                .cloned()
                .collect()
        });
        deployments.sort_by_key(|d| std::cmp::Reverse(d.create_index));
        Ok(Response::new(ListDeploymentsResponse { deployments }))
    }

    async fn get(&self, req: Request<GetDeploymentRequest>) -> Reply<Deployment> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().deployment_id;
        self.reads
            .state
            .read(|s| {
                let d = lookup(&s.deployments, "deployment", &id)?;
                scope.check(&d.namespace, "deployment", &id)?;
                Ok(d.clone())
            })
            .map(Response::new)
    }

    async fn promote(
        &self,
        req: Request<DeploymentActionRequest>,
    ) -> Reply<DeploymentActionResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let id = req.into_inner().deployment_id;
        self.change_deployment(scope, &id, |s, d| deploy::promote(s, d, &mut new_id))
            .await
    }

    async fn fail(&self, req: Request<DeploymentActionRequest>) -> Reply<DeploymentActionResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let id = req.into_inner().deployment_id;
        self.change_deployment(scope, &id, |s, d| deploy::fail(s, d, &mut new_id))
            .await
    }

    async fn pause(
        &self,
        req: Request<DeploymentActionRequest>,
    ) -> Reply<DeploymentActionResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let id = req.into_inner().deployment_id;
        self.change_deployment(scope, &id, |s, d| deploy::pause(s, d, true, &mut new_id))
            .await
    }

    async fn resume(
        &self,
        req: Request<DeploymentActionRequest>,
    ) -> Reply<DeploymentActionResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let id = req.into_inner().deployment_id;
        self.change_deployment(scope, &id, |s, d| deploy::pause(s, d, false, &mut new_id))
            .await
    }

    async fn set_alloc_health(
        &self,
        req: Request<SetAllocHealthRequest>,
    ) -> Reply<DeploymentActionResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        let req = req.into_inner();
        let (healthy, unhealthy) = self.reads.state.read(|s| {
            let full = |ids: &[String]| -> Result<Vec<String>, Status> {
                ids.iter()
                    .map(|id| lookup(&s.allocs, "allocation", id).map(|a| a.id.clone()))
                    .collect()
            };
            Ok::<_, Status>((full(&req.healthy_allocs)?, full(&req.unhealthy_allocs)?))
        })?;
        self.change_deployment(scope, &req.deployment_id, |s, d| {
            deploy::set_alloc_health(s, d, healthy, unhealthy, &mut new_id)
        })
        .await
    }
}

#[tonic::async_trait]
impl evals_server::Evals for Api {
    async fn get(&self, req: Request<GetEvalRequest>) -> Reply<Evaluation> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().eval_id;
        self.reads
            .state
            .read(|s| {
                let e = lookup(&s.evals, "evaluation", &id)?;
                scope.check(&e.namespace, "evaluation", &id)?;
                Ok(e.clone())
            })
            .map(Response::new)
    }

    async fn list(&self, req: Request<ListEvalsRequest>) -> Reply<ListEvalsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let f = req.into_inner();
        let mut evals: Vec<Evaluation> = self.reads.state.scan(|s| {
            s.evals
                .values()
                .filter(|e| scope.admits(&e.namespace))
                .filter(|e| f.job_id.is_empty() || e.job_id == f.job_id)
                .filter(|e| f.status.is_empty() || e.status == f.status)
                .cloned()
                .collect()
        });
        evals.sort_by_key(|e| std::cmp::Reverse(e.create_index));
        Ok(Response::new(ListEvalsResponse { evals }))
    }
}

#[tonic::async_trait]
impl nodes_server::Nodes for Api {
    async fn check_token(&self, req: Request<CheckTokenRequest>) -> Reply<CheckTokenResponse> {
        match req.get_ref().node.as_str() {
            "" => {}
            "read" | "write" => {
                let level = if req.get_ref().node == "write" {
                    Level::Write
                } else {
                    Level::Read
                };
                self.reads.authorize(&req, Need::Node(level))?;
                return Ok(Response::new(CheckTokenResponse {}));
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "node must be \"read\" or \"write\", not {}",
                    yurt_types::limits::shown(other)
                )))
            }
        }
        let capability =
            yurt_types::acl::capability(&req.get_ref().capability).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "capability {:?} is not one Yurt knows",
                    yurt_types::limits::shown(&req.get_ref().capability)
                ))
            })?;
        let namespace = req.get_ref().namespace.clone();
        let namespace = if namespace.is_empty() {
            yurt_types::acl::DEFAULT_NAMESPACE.to_string()
        } else {
            namespace
        };
        self.reads
            .authorize(&req, Need::Namespace(&namespace, capability))?;
        Ok(Response::new(CheckTokenResponse {}))
    }

    async fn list(&self, req: Request<ListNodesRequest>) -> Reply<ListNodesResponse> {
        self.reads.authorize(&req, Need::Node(Level::Read))?;
        self.barrier(&req).await?;
        let nodes = self
            .reads
            .state
            .scan(|s| s.nodes.values().cloned().collect());
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get(&self, req: Request<GetNodeRequest>) -> Reply<Node> {
        self.reads.authorize(&req, Need::Node(Level::Read))?;
        if req.get_ref().heartbeats {
            // Only the leader tracks heartbeats.
            if let Some(mut leader) = self.leader_nodes().await? {
                return leader.get(on_behalf(&req, req.get_ref().clone())).await;
            }
        }
        self.barrier(&req).await?;
        let req = req.into_inner();
        let mut node = self.reads.state.read(|s| {
            s.find_node(&req.node_id)
                .cloned()
                .map_err(|e| status(e, "node", &req.node_id))
        })?;
        if req.heartbeats {
            self.heartbeats.describe(&mut node);
        }
        Ok(Response::new(node))
    }

    async fn update_eligibility(
        &self,
        req: Request<NodeEligibilityRequest>,
    ) -> Reply<NodeUpdateResponse> {
        self.reads.authorize(&req, Need::Node(Level::Write))?;
        self.decide_on_current_state().await?;
        let req = req.into_inner();
        let cmd = self.reads.state.read(|s| {
            let node = s
                .find_node(&req.node_id)
                .map_err(|e| status(e, "node", &req.node_id))?;
            if req.eligible {
                yurt_core::drain::check_eligible(node).map_err(Status::failed_precondition)?;
            }
            Ok::<_, Status>(node_eligibility_command(
                s,
                &node.id,
                req.eligible,
                &mut new_id,
            ))
        })?;
        let (node_id, eval_ids) = match &cmd {
            command::Kind::NodeEligibilityUpdate(u) => (
                u.node_id.clone(),
                u.evals.iter().map(|e| e.id.clone()).collect(),
            ),
            _ => (String::new(), vec![]),
        };
        let r = self.writer.apply(cmd).await?;
        Ok(Response::new(
            self.node_updated(&node_id, r.index, eval_ids),
        ))
    }

    async fn evaluate(&self, req: Request<NodeEvaluateRequest>) -> Reply<NodeUpdateResponse> {
        crate::job_actions::node_evaluate(self, req).await
    }

    async fn host_stats(&self, req: Request<NodeEvaluateRequest>) -> Reply<HostStats> {
        crate::node_client::host_stats(self, req).await
    }

    async fn client_gc(&self, req: Request<NodeEvaluateRequest>) -> Reply<ClientGcResponse> {
        crate::node_client::client_gc(self, req).await
    }

    async fn update_drain(&self, req: Request<NodeDrainRequest>) -> Reply<NodeUpdateResponse> {
        self.reads.authorize(&req, Need::Node(Level::Write))?;
        let req = req.into_inner();
        yurt_core::features::check(
            &yurt_core::features::NODE_DRAIN,
            &self.cluster.gate_servers(),
        )
        .map_err(Status::failed_precondition)?;
        self.decide_on_current_state().await?;
        let update = self.reads.state.read(|s| {
            let node = s
                .find_node(&req.node_id)
                .map_err(|e| status(e, "node", &req.node_id))?;
            Ok::<_, Status>(yurt_core::drain::drain_command(
                s,
                node,
                req.strategy,
                req.mark_eligible,
                now_unix_ms(),
                &mut new_id,
            ))
        })?;
        let node_id = update.node_id.clone();
        let eval_ids = update.evals.iter().map(|e| e.id.clone()).collect();
        let r = self
            .writer
            .apply(command::Kind::NodeDrainUpdate(update))
            .await?;
        Ok(Response::new(
            self.node_updated(&node_id, r.index, eval_ids),
        ))
    }

    async fn register(&self, req: Request<RegisterNodeRequest>) -> Reply<NodeUpdateResponse> {
        // Servers are upgraded before clients: a newer client is refused where it arrives.
        if let Some(n) = &req.get_ref().node {
            yurt_types::version::check_client(yurt_types::VERSION, &n.version)
                .map_err(Status::failed_precondition)?;
            yurt_types::limits::check_node(n).map_err(|(_, why)| Status::invalid_argument(why))?;
        }
        if let Some(mut leader) = self.leader_nodes().await? {
            return leader.register(req.into_inner()).await;
        }
        let mut node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("request has no node"))?;
        node.status = NODE_READY.into();
        let id = node.id.clone();
        let events = self.cluster.gates().node_events;
        let cmd = self
            .reads
            .state
            .read(|s| node_register_command(s, node, events, &mut new_id));
        let r = self.writer.apply(cmd).await?;
        let nodes = self.reads.state.read(|s| s.nodes.len());
        Ok(Response::new(NodeUpdateResponse {
            heartbeat_ttl_ms: self.heartbeats.beat(&id, nodes),
            index: r.index,
            server_version: yurt_types::VERSION.into(),
            ..NodeUpdateResponse::default()
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Reply<NodeUpdateResponse> {
        crate::metrics::metrics().incr("yurt.heartbeat");
        if let Some(mut leader) = self.leader_nodes().await? {
            return leader.heartbeat(req.into_inner()).await;
        }
        let id = req.into_inner().node_id;
        let (status, nodes) = self
            .reads
            .state
            .read(|s| (s.nodes.get(&id).map(|n| n.status.clone()), s.nodes.len()));
        let status =
            status.ok_or_else(|| Status::not_found(PrefixError::NotFound.sentence("node", &id)))?;
        let mut index = self.reads.state.read(|s| s.index);
        if status != NODE_READY {
            // Back from down: the node heartbeats again (its lost allocations stay stopped).
            let events = self.cluster.gates().node_events;
            let cmd = self
                .reads
                .state
                .read(|s| node_status_command(s, &id, NODE_READY, events, &mut new_id));
            index = self.writer.apply(cmd).await?.index;
            tracing::info!(node = %id, "node is back: ready again");
        }
        Ok(Response::new(NodeUpdateResponse {
            heartbeat_ttl_ms: self.heartbeats.beat(&id, nodes),
            index,
            server_version: yurt_types::VERSION.into(),
            ..NodeUpdateResponse::default()
        }))
    }

    async fn client_allocs(
        &self,
        req: Request<ClientAllocsRequest>,
    ) -> Reply<ClientAllocsResponse> {
        self.barrier(&req).await?;
        let req = req.into_inner();
        let node = &req.node_id;
        let after = req
            .paged
            .then(|| feed::Cursor::continued(req.after_index, &req.after_alloc_id))
            .flatten();
        if after.is_none() {
            // Only a change to this node's allocations answers: a cluster's every write would
            // otherwise send each client all of its allocations again.
            let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
            self.reads
                .state
                .wait_until(wait, |s| s.node_allocs_index(node) != req.min_index)
                .await;
        }
        let reply = self.reads.state.scan(|s| {
            let index = s.node_allocs_index(node);
            let all = !req.changed_only || index < req.min_index;
            if req.paged {
                let after = feed::Cursor::of_request(after.clone(), req.min_index, all);
                let page = feed::page(s.allocs.on_node(node), &after, feed::PAGE_BYTES);
                let more = page.next.is_some();
                let next = page.next.unwrap_or_default();
                return ClientAllocsResponse {
                    allocs: page.allocs,
                    index,
                    jobs: page.jobs,
                    more,
                    next_after_index: next.index,
                    next_after_alloc_id: next.alloc_id,
                };
            }
            let allocs = s
                .allocs
                .on_node(node)
                .filter(|a| all || a.modify_index > req.min_index)
                .cloned()
                .collect();
            ClientAllocsResponse {
                allocs,
                index,
                ..Default::default()
            }
        });
        Ok(Response::new(reply))
    }

    async fn update_allocs(
        &self,
        req: Request<UpdateAllocsRequest>,
    ) -> Reply<UpdateAllocsResponse> {
        self.decide_on_current_state().await?;
        let req = req.into_inner();
        let evals = self
            .reads
            .state
            .read(|s| client_update_evals(s, &req.updates, &mut new_id));
        let r = self
            .writer
            .apply(command::Kind::AllocClientUpdates(AllocClientUpdates {
                node_id: req.node_id,
                updates: req.updates,
                evals,
            }))
            .await?;
        Ok(Response::new(UpdateAllocsResponse { index: r.index }))
    }
}
