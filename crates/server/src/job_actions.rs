//! Actions on a job or node besides registering it: `job eval` (`/v1/job/:id/evaluate`), a
//! version marked stable or not (`/v1/job/:id/stable`), `job scale` and its status
//! (`/v1/job/:id/scale`), and `/v1/node/:id/evaluate`. Each is decided on this server's copy
//! once it has caught up with the leader; the new commands wait for every server at a version
//! that has them.

use tonic::{Request, Response, Status};
use yurt_core::evals::{new_eval, node_evaluate_command};
use yurt_core::internal::{command, EvalsCreate, JobRegister, JobStability};
use yurt_proto::v1::*;
use yurt_types::acl::{
    Level, Need, LIST_SCALING_POLICIES, READ_JOB_SCALING, READ_SCALING_POLICY, SCALE_JOB,
    SUBMIT_JOB,
};
use yurt_types::status::{TRIGGER_JOB_REGISTER, TRIGGER_JOB_SCALING};

use crate::rpc::{checked_job, find_job, Api};

type Reply<T> = Result<Response<T>, Status>;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn gate(api: &Api) -> Result<(), Status> {
    yurt_core::features::check(
        &yurt_core::features::JOB_ACTIONS,
        &api.cluster.gate_servers(),
    )
    .map_err(Status::failed_precondition)
}

/// A new evaluation of the job as it is registered.
pub async fn evaluate(api: &Api, req: Request<JobEvaluateRequest>) -> Reply<JobEvaluateResponse> {
    let scope = api.reads.scope(&req, SUBMIT_JOB)?;
    if req.get_ref().force_reschedule {
        return Err(Status::invalid_argument(
            "ForceReschedule is not implemented by Yurt: failed allocations are rescheduled by their reschedule policy",
        ));
    }
    gate(api)?;
    api.reads.barrier(false).await?;
    let job = api
        .reads
        .state
        .read(|s| find_job(s, &scope, &req.get_ref().job_id).cloned())?;
    let mut eval = new_eval(&job, new_id(), TRIGGER_JOB_REGISTER);
    eval.job_modify_index = job.job_modify_index;
    let eval_id = eval.id.clone();
    let r = api
        .writer
        .apply(command::Kind::EvalsCreate(EvalsCreate {
            evals: vec![eval],
        }))
        .await?;
    Ok(Response::new(JobEvaluateResponse {
        eval_id,
        index: r.index,
        job_modify_index: job.job_modify_index,
    }))
}

/// Marks a kept version of the job stable or not.
pub async fn set_stable(api: &Api, req: Request<JobStableRequest>) -> Reply<JobStableResponse> {
    let scope = api.reads.scope(&req, SUBMIT_JOB)?;
    gate(api)?;
    api.reads.barrier(false).await?;
    let r = req.get_ref();
    let job = api
        .reads
        .state
        .read(|s| find_job(s, &scope, &r.job_id).cloned())?;
    let applied = api
        .writer
        .apply(command::Kind::JobStability(JobStability {
            job_id: job.id.clone(),
            version: r.version,
            stable: r.stable,
            namespace: job.namespace.clone(),
        }))
        .await?;
    Ok(Response::new(JobStableResponse {
        index: applied.index,
        job_modify_index: job.job_modify_index,
    }))
}

/// Registers the job again with one group's count changed (a new version, as Nomad's scale),
/// recording the scaling event with it; without a count, records the event only. Before
/// every server records events (an older one would not), the count changes without one.
pub async fn scale(api: &Api, req: Request<JobScaleRequest>) -> Reply<RegisterJobResponse> {
    let scope = api.reads.scope(&req, SCALE_JOB)?;
    api.reads.barrier(false).await?;
    let r = req.into_inner();
    if !r.meta_json.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&r.meta_json) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => return Err(Status::invalid_argument("Meta: expected a JSON object")),
        }
    }
    let job = api
        .reads
        .state
        .read(|s| find_job(s, &scope, &r.job_id).cloned())?;
    let event =
        yurt_core::scaling::event_for(&job, &r.group, r.count, &r.message, r.error, &r.meta_json)
            .map_err(Status::invalid_argument)?;
    let Some(count) = r.count else {
        gate(api)?;
        let applied = api
            .writer
            .apply(command::Kind::JobScalingEvent(event))
            .await?;
        return Ok(Response::new(RegisterJobResponse {
            eval_id: String::new(),
            job_modify_index: job.job_modify_index,
            index: applied.index,
            warnings: String::new(),
        }));
    };
    let scaled =
        yurt_core::scaling::scaled(&job, &r.group, count).map_err(Status::invalid_argument)?;
    let scaled = checked_job(Some(scaled), &api.cluster.me().region)?;
    let eval = new_eval(&scaled, new_id(), TRIGGER_JOB_SCALING);
    tracing::info!(job = %job.id, group = %r.group, count, message = %r.message, "scaling a job");
    let applied = api
        .writer
        .apply(command::Kind::JobRegister(JobRegister {
            job: Some(scaled),
            eval: Some(eval),
            enforce_index: r.enforce_index,
            job_modify_index: r.job_modify_index,
            scaling_event: gate(api).is_ok().then_some(event),
        }))
        .await?;
    Ok(Response::new(RegisterJobResponse {
        eval_id: applied.eval_id,
        job_modify_index: applied.job_modify_index,
        index: applied.index,
        warnings: String::new(),
    }))
}

/// Each group's desired count beside its allocations.
pub async fn scale_status(api: &Api, req: Request<GetJobRequest>) -> Reply<JobScaleStatus> {
    let scope = api.reads.scope(&req, READ_JOB_SCALING)?;
    api.reads.barrier(crate::read::stale(&req)).await?;
    api.reads.state.read(|s| {
        let job = find_job(s, &scope, &req.get_ref().job_id)?;
        Ok(Response::new(JobScaleStatus {
            job_id: job.id.clone(),
            namespace: job.namespace.clone(),
            job_create_index: job.create_index,
            job_modify_index: job.job_modify_index,
            job_stopped: job.stop,
            task_groups: yurt_core::scaling::scale_status(s, job)
                .into_iter()
                .collect(),
        }))
    })
}

/// The groups' `scaling` blocks as policies, in the call's namespace scope.
pub async fn scaling_policies(
    api: &Api,
    req: Request<ListScalingPoliciesRequest>,
) -> Reply<ListScalingPoliciesResponse> {
    let scope = api.reads.scope(&req, LIST_SCALING_POLICIES)?;
    api.reads.barrier(crate::read::stale(&req)).await?;
    let job = req.get_ref().job.clone();
    let (policies, index) = api.reads.state.read(|s| {
        let all = yurt_core::scaling::policies(s, Some(job.as_str()).filter(|j| !j.is_empty()));
        let seen = all
            .into_iter()
            .filter(|p| scope.admits(p.target.get("Namespace").map_or("", String::as_str)))
            .collect();
        (seen, s.index)
    });
    Ok(Response::new(ListScalingPoliciesResponse {
        policies,
        index,
    }))
}

/// One policy by ID.
pub async fn scaling_policy(
    api: &Api,
    req: Request<GetScalingPolicyRequest>,
) -> Reply<ScalingPolicy> {
    let id = req.get_ref().id.clone();
    api.reads.barrier(crate::read::stale(&req)).await?;
    let policy = api
        .reads
        .state
        .read(|s| {
            yurt_core::scaling::policies(s, None)
                .into_iter()
                .find(|p| p.id == id)
        })
        .ok_or_else(|| Status::not_found(format!("scaling policy {id:?} not found")))?;
    let ns = policy.target.get("Namespace").cloned().unwrap_or_default();
    api.reads.scope_at(&req, &ns, READ_SCALING_POLICY)?;
    Ok(Response::new(policy))
}

/// A new evaluation of every job the node concerns.
pub async fn node_evaluate(
    api: &Api,
    req: Request<NodeEvaluateRequest>,
) -> Reply<NodeUpdateResponse> {
    api.reads.authorize(&req, Need::Node(Level::Write))?;
    gate(api)?;
    api.reads.barrier(false).await?;
    let id = &req.get_ref().node_id;
    let (node_id, cmd) = api.reads.state.read(|s| {
        let node = s.find_node(id).map_err(|e| match e {
            yurt_core::state::PrefixError::NotFound => Status::not_found(e.sentence("node", id)),
            yurt_core::state::PrefixError::Ambiguous => {
                Status::invalid_argument(e.sentence("node", id))
            }
        })?;
        let mut id_gen = new_id;
        Ok::<_, Status>((
            node.id.clone(),
            node_evaluate_command(s, &node.id, &mut id_gen),
        ))
    })?;
    let eval_ids = match &cmd {
        command::Kind::EvalsCreate(c) => c.evals.iter().map(|e| e.id.clone()).collect(),
        _ => vec![],
    };
    let r = api.writer.apply(cmd).await?;
    Ok(Response::new(api.node_updated(&node_id, r.index, eval_ids)))
}
