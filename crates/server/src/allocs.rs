//! The `Allocs` gRPC service: allocations read from the state (`alloc status`, lists), and the
//! calls the servers forward to the client agent that runs the allocation (logs, usage, `alloc
//! exec`, signal, restart, and its files), each in the caller's namespace scope and with the
//! caller's token, which the client has the servers judge again.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use yurt_proto::v1::client_fs_client::ClientFsClient;
use yurt_proto::v1::*;
use yurt_types::acl::{ALLOC_EXEC, ALLOC_LIFECYCLE, READ_FS, READ_JOB, READ_LOGS, SUBMIT_JOB};

use crate::read::on_behalf;
use crate::rpc::{listed, lookup, Api};
use crate::scope::Scope;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl allocs_server::Allocs for Api {
    async fn get(&self, req: Request<GetAllocRequest>) -> Reply<Allocation> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let id = req.into_inner().alloc_id;
        self.reads
            .state
            .read(|s| {
                let a = lookup(&s.allocs, "allocation", &id)?;
                scope.check(&a.namespace, "allocation", &id)?;
                Ok(a.clone())
            })
            .map(Response::new)
    }

    async fn list(&self, req: Request<ListAllocsRequest>) -> Reply<ListAllocsResponse> {
        // A node's allocations are of every namespace unless the call names one.
        let scope = match crate::scope::named(&req) {
            None if !req.get_ref().node_id.is_empty() => {
                self.reads
                    .scope_in(&req, crate::scope::ALL.into(), READ_JOB)?
            }
            _ => self.reads.scope(&req, READ_JOB)?,
        };
        self.barrier(&req).await?;
        let node = req.into_inner().node_id;
        let allocs = self.reads.state.scan(|s| {
            let rows: Box<dyn Iterator<Item = &Allocation>> = if node.is_empty() {
                Box::new(s.allocs.values())
            } else {
                Box::new(s.allocs.on_node(&node))
            };
            rows.filter(|a| scope.admits(&a.namespace))
                .map(listed)
                .collect()
        });
        Ok(Response::new(ListAllocsResponse { allocs }))
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Reply<LogsResponse> {
        self.forward(
            req,
            READ_LOGS,
            "read logs",
            PATIENCE,
            |mut c, r| async move { c.logs(r).await },
        )
        .await
    }

    async fn stats(&self, req: Request<AllocStatsRequest>) -> Reply<AllocResourceUsage> {
        self.forward(
            req,
            READ_JOB,
            "read usage",
            PATIENCE,
            |mut c, r| async move { c.stats(r).await },
        )
        .await
    }

    async fn stop(&self, req: Request<AllocStopRequest>) -> Reply<AllocStopResponse> {
        crate::lifecycle::stop(self, req).await
    }

    async fn fs_list(&self, req: Request<FsRequest>) -> Reply<FsListResponse> {
        self.forward(
            req,
            READ_FS,
            "read files",
            PATIENCE,
            |mut c, r| async move { c.fs_list(r).await },
        )
        .await
    }

    async fn fs_stat(&self, req: Request<FsRequest>) -> Reply<FsFileInfo> {
        self.forward(
            req,
            READ_FS,
            "read files",
            PATIENCE,
            |mut c, r| async move { c.fs_stat(r).await },
        )
        .await
    }

    async fn fs_read_at(&self, req: Request<FsReadRequest>) -> Reply<FsReadResponse> {
        self.forward(
            req,
            READ_FS,
            "read files",
            PATIENCE,
            |mut c, r| async move { c.fs_read_at(r).await },
        )
        .await
    }

    async fn gc(&self, req: Request<ClientGcRequest>) -> Reply<ClientGcResponse> {
        self.forward(
            req,
            SUBMIT_JOB,
            "collect",
            PATIENCE,
            |mut c, r| async move { c.gc(r).await },
        )
        .await
    }

    async fn signal(&self, req: Request<AllocSignalRequest>) -> Reply<AllocActionResponse> {
        self.forward(
            req,
            ALLOC_LIFECYCLE,
            "signal tasks",
            PATIENCE,
            |mut c, r| async move { c.signal(r).await },
        )
        .await
    }

    async fn restart(&self, req: Request<AllocRestartRequest>) -> Reply<AllocActionResponse> {
        self.forward(
            req,
            ALLOC_LIFECYCLE,
            "restart tasks",
            PATIENCE,
            |mut c, r| async move { c.restart(r).await },
        )
        .await
    }

    async fn exec(&self, req: Request<AllocExecRequest>) -> Reply<AllocExecResponse> {
        // The client bounds the command; the call waits a little longer for its answer (and
        // the client checks the caller's token again: its port takes calls from anyone).
        let limit = yurt_types::limits::exec_timeout(req.get_ref().timeout_ms);
        let deadline = limit + Duration::from_secs(10);
        self.forward(
            req,
            ALLOC_EXEC,
            "run a command",
            deadline,
            |mut c, r| async move { c.exec(r).await },
        )
        .await
    }
}

/// How long a forwarded call may take, but `alloc exec` (its own limit).
const PATIENCE: Duration = Duration::from_secs(30);

/// A request the servers forward to the client that runs the allocation it names.
trait ToClient: Clone {
    fn alloc_id(&self) -> &str;
    fn set_alloc_id(&mut self, id: String);
}

macro_rules! to_client {
    ($($t:ty),*) => {$(
        impl ToClient for $t {
            fn alloc_id(&self) -> &str {
                &self.alloc_id
            }
            fn set_alloc_id(&mut self, id: String) {
                self.alloc_id = id;
            }
        }
    )*};
}

to_client!(
    LogsRequest,
    AllocStatsRequest,
    FsRequest,
    FsReadRequest,
    ClientGcRequest,
    AllocSignalRequest,
    AllocRestartRequest,
    AllocExecRequest
);

impl Api {
    /// Forwards `req` to the client agent of the allocation it names (by its full ID, however
    /// the caller wrote it), once the caller's token allows `capability` in the allocation's
    /// namespace; `call` makes the call on that client, `what` names it in errors.
    async fn forward<R, T, F>(
        &self,
        req: Request<R>,
        capability: &'static str,
        what: &str,
        deadline: Duration,
        call: impl FnOnce(ClientFsClient<Channel>, Request<R>) -> F,
    ) -> Reply<T>
    where
        R: ToClient,
        F: std::future::Future<Output = Reply<T>>,
    {
        let scope = self.reads.scope(&req, capability)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(&scope, req.get_ref().alloc_id(), what, deadline)
            .await?;
        let mut inner = req.get_ref().clone();
        inner.set_alloc_id(alloc_id);
        call(ClientFsClient::new(channel), on_behalf(&req, inner)).await
    }

    /// The allocation's full ID (from a prefix) and a connection to the client agent that
    /// runs it, to `what` there.
    async fn client_of(
        &self,
        scope: &Scope,
        alloc: &str,
        what: &str,
        deadline: Duration,
    ) -> Result<(String, Channel), Status> {
        let (alloc_id, addr) = self.reads.state.read(|s| {
            let a = lookup(&s.allocs, "allocation", alloc)?;
            scope.check(&a.namespace, "allocation", alloc)?;
            let node = s.nodes.get(&a.node_id).ok_or_else(|| {
                Status::not_found(format!("node {:?} of allocation not found", a.node_id))
            })?;
            Ok::<_, Status>((a.id.clone(), node.rpc_addr.clone()))
        })?;
        let channel = crate::node_client::dial(self, &addr, deadline, what).await?;
        Ok((alloc_id, channel))
    }
}
