//! The client's `ClientFs` service: reads a task's stdout/stderr files for `alloc logs`, its
//! usage for `alloc status -stats` ([`crate::stats`]), and runs a command in it for `alloc
//! exec` (its driver's `exec`), and signals and restarts tasks (`alloc signal|restart`). Each
//! call is checked first: the servers judge the caller's token (`Client::check_token`).

use tonic::{Request, Response, Status};
use yurt_proto::v1::client_fs_server::ClientFs;
use yurt_proto::v1::{
    AllocActionResponse, AllocRestartRequest, AllocSignalRequest, ClientGcRequest,
    ClientGcResponse, FsFileInfo, FsListResponse, FsReadRequest, FsReadResponse, FsRequest,
    HostStats, HostStatsRequest,
};
use yurt_proto::v1::{
    AllocExecRequest, AllocExecResponse, AllocResourceUsage, AllocStatsRequest, LogsRequest,
    LogsResponse,
};
use yurt_types::acl::{ALLOC_EXEC, ALLOC_LIFECYCLE, READ_FS, READ_JOB, READ_LOGS, SUBMIT_JOB};
use yurt_types::status::TASK_DEAD;
use yurt_types::status::TASK_RUNNING;

use crate::logfiles;
use crate::runner::handle;
use crate::runner::log_rotation;
use crate::{Client, LocalAlloc};

const MAX_CHUNK: u64 = 1024 * 1024;

/// An allocation this client runs, or why not.
pub(crate) fn local_alloc(client: &Client, id: &str) -> Result<LocalAlloc, Status> {
    client
        .local_alloc(id)
        .ok_or_else(|| Status::not_found(format!("allocation {id:?} is not on this client")))
}

/// The task a request names, or the allocation's only task when it names none.
fn task_of(local: &LocalAlloc, name: &str) -> Result<String, Status> {
    if name.is_empty() {
        let names: Vec<&str> = local.tasks.keys().map(String::as_str).collect();
        return match names.as_slice() {
            [one] => Ok(one.to_string()),
            _ => Err(Status::invalid_argument(format!(
                "allocation has several tasks, name one of: {}",
                names.join(", ")
            ))),
        };
    }
    if local.tasks.contains_key(name) {
        Ok(name.to_string())
    } else {
        Err(Status::not_found(format!(
            "task {name:?} is not in allocation {}",
            local.alloc.id
        )))
    }
}

pub struct FsService {
    pub(crate) client: Client,
}

impl FsService {
    /// The directory of an allocation this client has (its files outlive its tasks).
    fn alloc_root(&self, id: &str) -> Result<std::path::PathBuf, Status> {
        let local = local_alloc(&self.client, id)?;
        Ok(crate::runner::alloc_dir(
            self.client.client_dir(),
            &local.alloc.id,
        ))
    }
}

#[tonic::async_trait]
impl ClientFs for FsService {
    async fn host_stats(
        &self,
        req: Request<HostStatsRequest>,
    ) -> Result<Response<HostStats>, Status> {
        self.client.check_node_token(&req, false).await?;
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.host_stats())
            .await
            .map_err(|e| Status::internal(format!("cannot read the host's usage: {e}")))
            .map(Response::new)
    }

    async fn gc(
        &self,
        req: Request<ClientGcRequest>,
    ) -> Result<Response<ClientGcResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        if id.is_empty() {
            self.client.check_node_token(&req, true).await?;
        } else {
            self.client.check_token(&req, &id, SUBMIT_JOB).await?;
        }
        let allocs = self.client.gc_now(&id)?;
        Ok(Response::new(ClientGcResponse { allocs }))
    }

    async fn fs_list(&self, req: Request<FsRequest>) -> Result<Response<FsListResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, READ_FS).await?;
        let root = self.alloc_root(&id)?;
        let path = req.into_inner().path;
        let files = tokio::task::spawn_blocking(move || crate::alloc_fs::list(&root, &path))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(FsListResponse { files }))
    }

    async fn fs_stat(&self, req: Request<FsRequest>) -> Result<Response<FsFileInfo>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, READ_FS).await?;
        let root = self.alloc_root(&id)?;
        let path = req.into_inner().path;
        tokio::task::spawn_blocking(move || crate::alloc_fs::stat(&root, &path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
    }

    async fn fs_read_at(
        &self,
        req: Request<FsReadRequest>,
    ) -> Result<Response<FsReadResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, READ_FS).await?;
        let root = self.alloc_root(&id)?;
        let r = req.into_inner();
        tokio::task::spawn_blocking(move || {
            crate::alloc_fs::read_at(&root, &r.path, r.offset, r.limit, r.from_end)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map(Response::new)
    }

    async fn signal(
        &self,
        req: Request<AllocSignalRequest>,
    ) -> Result<Response<AllocActionResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, ALLOC_LIFECYCLE).await?;
        let r = req.into_inner();
        let signal = if r.signal.is_empty() {
            "SIGKILL"
        } else {
            &r.signal
        };
        let tasks = self.client.signal_tasks(&id, &r.task, signal)?;
        Ok(Response::new(AllocActionResponse { tasks }))
    }

    async fn restart(
        &self,
        req: Request<AllocRestartRequest>,
    ) -> Result<Response<AllocActionResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, ALLOC_LIFECYCLE).await?;
        let tasks = self.client.restart_tasks(&id, &req.get_ref().task)?;
        Ok(Response::new(AllocActionResponse { tasks }))
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogsResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, READ_LOGS).await?;
        let req = req.into_inner();
        let local = local_alloc(&self.client, &req.alloc_id)?;
        let task = task_of(&local, &req.task)?;
        let t = &local.tasks[&task];
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
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, READ_JOB).await?;
        let client = self.client.clone();
        let id = req.into_inner().alloc_id;
        tokio::task::spawn_blocking(move || client.alloc_stats(&id))
            .await
            .map_err(|e| Status::internal(format!("cannot read the usage: {e}")))?
            .map(Response::new)
    }

    async fn exec(
        &self,
        req: Request<AllocExecRequest>,
    ) -> Result<Response<AllocExecResponse>, Status> {
        let id = req.get_ref().alloc_id.clone();
        self.client.check_token(&req, &id, ALLOC_EXEC).await?;
        let req = req.into_inner();
        let local = local_alloc(&self.client, &req.alloc_id)?;
        let task = task_of(&local, &req.task)?;
        let t = local.tasks[&task].clone();
        if t.state.state != TASK_RUNNING {
            return Err(Status::failed_precondition(format!(
                "task {task:?} is not running"
            )));
        }
        if req.command.is_empty() {
            return Err(Status::invalid_argument("no command given"));
        }
        let timeout = yurt_types::limits::exec_timeout(req.timeout_ms);
        let driver = self.client.driver_of(&local, &task);
        let out =
            tokio::task::spawn_blocking(move || driver.exec(handle(&t), &req.command, timeout))
                .await
                .map_err(|e| Status::internal(format!("cannot run the command: {e}")))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::TimedOut => Status::deadline_exceeded(e.to_string()),
                    std::io::ErrorKind::NotFound => {
                        Status::not_found(format!("cannot run the command in task {task:?}: {e}"))
                    }
                    _ => Status::failed_precondition(format!(
                        "cannot run the command in task {task:?}: {e}"
                    )),
                })?;
        Ok(Response::new(AllocExecResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
            truncated: out.truncated,
        }))
    }
}
