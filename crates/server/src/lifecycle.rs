//! An allocation's life cycle from the API: `Allocs/Stop` (`yurt alloc stop`,
//! `POST /v1/allocation/:id/stop`) marks the allocation to migrate, as a drain does, with an
//! evaluation of its job: the scheduler stops it and places it again. It uses the drainer's
//! command, so it waits, as `node drain` does, for every server at the version that has it.

use tonic::{Request, Response, Status};
use yurt_core::internal::{command, DrainProgress};
use yurt_proto::v1::{AllocStopRequest, AllocStopResponse};
use yurt_types::acl::{Need, ALLOC_LIFECYCLE};
use yurt_types::status::*;

use crate::rpc::Api;

/// The trigger of the evaluation an `alloc stop` makes (Nomad's).
pub const TRIGGER_ALLOC_STOP: &str = "alloc-stop";

pub async fn stop(
    api: &Api,
    req: Request<AllocStopRequest>,
) -> Result<Response<AllocStopResponse>, Status> {
    api.reads.authorize(&req, Need::job(ALLOC_LIFECYCLE))?;
    // The command is the drainer's: servers of 0.1 do not know it.
    yurt_core::features::check(
        &yurt_core::features::NODE_DRAIN,
        &api.cluster.gate_servers(),
    )
    .map_err(|why| Status::failed_precondition(why.replace("node drain", "alloc stop")))?;
    // Decided on the leader's view: this server catches up with it first.
    api.reads.barrier(false).await?;
    let id = req.into_inner().alloc_id;
    let (alloc, job) = api.reads.state.read(|s| {
        let a = yurt_core::state::State::find_by_prefix(&s.allocs, &id)
            .map_err(|e| Status::not_found(e.sentence("allocation", &id)))?
            .clone();
        let job = s.jobs.get(&a.job_id).map(|j| (**j).clone());
        Ok::<_, Status>((a, job))
    })?;
    if alloc.desired_status != ALLOC_DESIRED_RUN
        || matches!(
            alloc.client_status.as_str(),
            ALLOC_COMPLETE | ALLOC_FAILED | ALLOC_LOST
        )
    {
        return Err(Status::failed_precondition(format!(
            "allocation {} has already stopped ({}, {})",
            &alloc.id[..8.min(alloc.id.len())],
            alloc.desired_status,
            alloc.client_status
        )));
    }
    let job = job.ok_or_else(|| {
        Status::failed_precondition(format!(
            "the job {:?} of the allocation is gone",
            alloc.job_id
        ))
    })?;
    let eval =
        yurt_core::evals::new_eval(&job, uuid::Uuid::new_v4().to_string(), TRIGGER_ALLOC_STOP);
    let eval_id = eval.id.clone();
    let r = api
        .writer
        .apply(command::Kind::DrainProgress(DrainProgress {
            migrate_allocs: vec![alloc.id.clone()],
            evals: vec![eval],
            ..DrainProgress::default()
        }))
        .await?;
    Ok(Response::new(AllocStopResponse {
        eval_id,
        index: r.index,
    }))
}
