//! The client's `ClientFs` service: reads a task's stdout/stderr files for `alloc logs`, and
//! its usage for `alloc status -stats` ([`crate::stats`]).

use tonic::{Request, Response, Status};
use yurt_proto::v1::client_fs_server::ClientFs;
use yurt_proto::v1::{AllocResourceUsage, AllocStatsRequest, LogsRequest, LogsResponse};
use yurt_types::status::TASK_DEAD;

use crate::logfiles;
use crate::runner::log_rotation;
use crate::Client;

const MAX_CHUNK: u64 = 1024 * 1024;

pub struct LogService {
    pub(crate) client: Client,
}

#[tonic::async_trait]
impl ClientFs for LogService {
    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogsResponse>, Status> {
        let req = req.into_inner();
        let local = self.client.local_alloc(&req.alloc_id).ok_or_else(|| {
            Status::not_found(format!(
                "allocation {:?} is not on this client",
                req.alloc_id
            ))
        })?;
        let task = if req.task.is_empty() {
            let names: Vec<&String> = local.tasks.keys().collect();
            match names.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    let list: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                    return Err(Status::invalid_argument(format!(
                        "allocation has several tasks, name one of: {}",
                        list.join(", ")
                    )));
                }
            }
        } else {
            req.task.clone()
        };
        let t = local.tasks.get(&task).ok_or_else(|| {
            Status::not_found(format!(
                "task {task:?} is not in allocation {}",
                req.alloc_id
            ))
        })?;
        let rotation = log_rotation(self.client.client_dir(), &local.alloc, &task, req.stderr);
        let limit = if req.limit == 0 {
            MAX_CHUNK
        } else {
            req.limit.min(MAX_CHUNK)
        };
        let (data, next_offset) = logfiles::read(&rotation, req.offset, req.from_end, limit)
            .map_err(|e| {
                Status::internal(format!("cannot read {}: {e}", rotation.base.display()))
            })?;
        Ok(Response::new(LogsResponse {
            next_offset,
            data,
            finished: t.state.state == TASK_DEAD,
        }))
    }

    async fn stats(
        &self,
        req: Request<AllocStatsRequest>,
    ) -> Result<Response<AllocResourceUsage>, Status> {
        let client = self.client.clone();
        let id = req.into_inner().alloc_id;
        tokio::task::spawn_blocking(move || client.alloc_stats(&id))
            .await
            .map_err(|e| Status::internal(format!("cannot read the usage: {e}")))?
            .map(Response::new)
    }
}
