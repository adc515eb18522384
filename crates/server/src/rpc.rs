//! The public gRPC services (`yurt.v1`). Handlers are thin: read the state, or build a command
//! and hand it to the [`Writer`]. Errors reach the user as one sentence in the status message.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use yurt_core::deploy;
use yurt_core::evals::new_eval;
use yurt_core::internal::{command, JobDeregister, JobRegister};
use yurt_core::sched::plan_job_on;
use yurt_core::state::{PrefixError, State};
use yurt_types::feed;

use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::*;
use yurt_types::acl::{LIST_JOBS, READ_JOB, SUBMIT_JOB};
use yurt_types::diff::job_diff;
use yurt_types::jobspec;
use yurt_types::status::*;

use crate::heartbeat::Heartbeats;
use crate::read::{stale, Reads};
use crate::scope::Scope;
use crate::write::{now_unix_ms, Writer};

/// Longest a blocking query may wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(300);

type Reply<T> = Result<Response<T>, Status>;

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A job by ID or prefix, in the call's namespace; with `*`, in the one namespace the caller
/// may see that has it (the same ID in two is ambiguous: the sentence names them).
pub(crate) fn find_job<'s>(s: &'s State, scope: &Scope, id: &str) -> Result<&'s Job, Status> {
    let all = scope.namespace == crate::scope::ALL;
    let ns = (!all).then_some(scope.namespace.as_str());
    let mut jobs = match s.find_jobs(ns, id) {
        Err(PrefixError::NotFound) => vec![],
        found => found.map_err(|e| status(e, "job", id))?,
    };
    if all {
        jobs.retain(|j| scope.admits(&j.namespace));
    }
    match jobs.as_slice() {
        [] if all => Err(status(PrefixError::NotFound, "job", id)),
        [] => Err(Status::not_found(format!(
            "job {} not found in namespace {:?}",
            yurt_types::limits::shown(id),
            scope.namespace
        ))),
        [job] => {
            scope.check(&job.namespace, "job", id)?;
            Ok(job)
        }
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|j| format!("{:?}", j.namespace))
                .collect();
            Err(Status::invalid_argument(format!(
                "job {id:?} exists in namespaces {}: name one with -namespace",
                names.join(", ")
            )))
        }
    }
}

/// The namespace a job is registered in, by Nomad's order: the one the call names
/// (`-namespace`, `?namespace=`), else the job's own, else `default`.
fn in_namespace<T>(req: &Request<T>, job: Option<Job>) -> Option<Job> {
    job.map(|mut j| {
        match crate::scope::named(req).filter(|ns| ns != crate::scope::ALL) {
            Some(ns) => j.namespace = ns,
            None if j.namespace.is_empty() => j.namespace = crate::scope::namespace(req),
            None => {}
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

pub(crate) fn status(e: PrefixError, what: &str, id: &str) -> Status {
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
    pub(crate) async fn leader_nodes(&self) -> Result<Option<NodesClient<Channel>>, Status> {
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
    pub(crate) async fn decide_on_current_state(&self) -> Result<(), Status> {
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
                scaling_event: None,
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
            let job = find_job(s, &scope, &req.job_id)?;
            Ok::<_, Status>(
                s.versions(&job.namespace, &job.id)
                    .iter()
                    .rev()
                    .map(|j| Job::clone(j))
                    .collect(),
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
                namespace: job.namespace.clone(),
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
            let job = find_job(s, &scope, &id)?;
            let allocs = s.job_allocs(&job.namespace, &job.id);
            Ok::<_, Status>(allocs.into_iter().map(listed).collect())
        })?;
        Ok(Response::new(ListAllocsResponse { allocs }))
    }

    async fn evaluations(&self, req: Request<GetJobRequest>) -> Reply<ListEvalsResponse> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().job_id;
        // Kept while the job is gone too (a purged job's evaluations, until collected): by
        // the table's index in the named namespace; across namespaces, each it admits.
        let mut evals: Vec<Evaluation> = self.reads.state.scan(|s| {
            let namespaces: Vec<String> = if scope.namespace == crate::scope::ALL {
                s.all_namespaces().into_iter().map(|n| n.name).collect()
            } else {
                vec![scope.namespace.clone()]
            };
            namespaces
                .iter()
                .filter(|ns| scope.admits(ns))
                .flat_map(|ns| s.evals.of_job(ns, &id))
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
            let job = find_job(s, &scope, &id)?;
            Ok::<_, Status>(deploy::of_job(s, &job.namespace, &job.id))
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
            let job = find_job(s, &scope, &req.job_id)?;
            deploy::revert(s, &job.namespace, &job.id, req.version, &mut new_id)
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
            server_http_addr: self.cluster.me().http_addr.clone(),
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
