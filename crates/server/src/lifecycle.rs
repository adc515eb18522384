//! An allocation's life cycle from the API: `Allocs/Stop` (`yurt alloc stop`,
//! `POST /v1/allocation/:id/stop`) applies `yurt_core::drain::stop_alloc_command`, decided on
//! this server's copy once it has caught up with the leader. It uses the drainer's command, so
//! it waits, as `node drain` does, for every server at the version that has it.

use tonic::{Request, Response, Status};
use yurt_proto::v1::{AllocStopRequest, AllocStopResponse};
use yurt_types::acl::ALLOC_LIFECYCLE;

use crate::rpc::Api;

pub async fn stop(
    api: &Api,
    req: Request<AllocStopRequest>,
) -> Result<Response<AllocStopResponse>, Status> {
    let scope = api.reads.scope(&req, ALLOC_LIFECYCLE)?;
    yurt_core::features::check(
        &yurt_core::features::ALLOC_STOP,
        &api.cluster.gate_servers(),
    )
    .map_err(Status::failed_precondition)?;
    api.reads.barrier(false).await?;
    let id = req.into_inner().alloc_id;
    let eval_id = uuid::Uuid::new_v4().to_string();
    let cmd = api
        .reads
        .state
        .read(|s| {
            if let Ok(a) = yurt_core::state::State::find_by_prefix(&s.allocs, &id) {
                scope
                    .check(&a.namespace, "allocation", &id)
                    .map_err(|e| (e.code() == tonic::Code::NotFound, e.message().to_string()))?;
            }
            yurt_core::drain::stop_alloc_command(s, &id, eval_id.clone())
        })
        .map_err(|(missing, why)| {
            if missing {
                Status::not_found(why)
            } else {
                Status::failed_precondition(why)
            }
        })?;
    let r = api.writer.apply(cmd).await?;
    Ok(Response::new(AllocStopResponse {
        eval_id,
        index: r.index,
    }))
}
