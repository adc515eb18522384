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
            s.allocs
                .values()
                .filter(|a| node.is_empty() || a.node_id == node)
                .filter(|a| scope.admits(&a.namespace))
                .map(listed)
                .collect()
        });
        Ok(Response::new(ListAllocsResponse { allocs }))
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Reply<LogsResponse> {
        let scope = self.reads.scope(&req, READ_LOGS)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "read logs",
                Duration::from_secs(30),
            )
            .await?;
        let inner = LogsRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .logs(on_behalf(&req, inner))
            .await
    }

    async fn stats(&self, req: Request<AllocStatsRequest>) -> Reply<AllocResourceUsage> {
        let scope = self.reads.scope(&req, READ_JOB)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "read usage",
                Duration::from_secs(30),
            )
            .await?;
        ClientFsClient::new(channel)
            .stats(on_behalf(&req, AllocStatsRequest { alloc_id }))
            .await
    }

    async fn stop(&self, req: Request<AllocStopRequest>) -> Reply<AllocStopResponse> {
        crate::lifecycle::stop(self, req).await
    }

    async fn fs_list(&self, req: Request<FsRequest>) -> Reply<FsListResponse> {
        let (alloc_id, channel) = self.fs_client(&req, &req.get_ref().alloc_id).await?;
        let inner = FsRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .fs_list(on_behalf(&req, inner))
            .await
    }

    async fn fs_stat(&self, req: Request<FsRequest>) -> Reply<FsFileInfo> {
        let (alloc_id, channel) = self.fs_client(&req, &req.get_ref().alloc_id).await?;
        let inner = FsRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .fs_stat(on_behalf(&req, inner))
            .await
    }

    async fn fs_read_at(&self, req: Request<FsReadRequest>) -> Reply<FsReadResponse> {
        let (alloc_id, channel) = self.fs_client(&req, &req.get_ref().alloc_id).await?;
        let inner = FsReadRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .fs_read_at(on_behalf(&req, inner))
            .await
    }

    async fn gc(&self, req: Request<ClientGcRequest>) -> Reply<ClientGcResponse> {
        let scope = self.reads.scope(&req, SUBMIT_JOB)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "collect",
                Duration::from_secs(30),
            )
            .await?;
        ClientFsClient::new(channel)
            .gc(on_behalf(&req, ClientGcRequest { alloc_id }))
            .await
    }

    async fn signal(&self, req: Request<AllocSignalRequest>) -> Reply<AllocActionResponse> {
        let scope = self.reads.scope(&req, ALLOC_LIFECYCLE)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "signal tasks",
                Duration::from_secs(30),
            )
            .await?;
        let inner = AllocSignalRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .signal(on_behalf(&req, inner))
            .await
    }

    async fn restart(&self, req: Request<AllocRestartRequest>) -> Reply<AllocActionResponse> {
        let scope = self.reads.scope(&req, ALLOC_LIFECYCLE)?;
        self.barrier(&req).await?;
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "restart tasks",
                Duration::from_secs(30),
            )
            .await?;
        let inner = AllocRestartRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        ClientFsClient::new(channel)
            .restart(on_behalf(&req, inner))
            .await
    }

    async fn exec(&self, req: Request<AllocExecRequest>) -> Reply<AllocExecResponse> {
        let scope = self.reads.scope(&req, ALLOC_EXEC)?;
        self.barrier(&req).await?;
        // The client bounds the command; the call waits a little longer for its answer.
        let limit = yurt_types::limits::exec_timeout(req.get_ref().timeout_ms);
        let (alloc_id, channel) = self
            .client_of(
                &scope,
                &req.get_ref().alloc_id,
                "run a command",
                limit + Duration::from_secs(10),
            )
            .await?;
        let inner = AllocExecRequest {
            alloc_id,
            ..req.get_ref().clone()
        };
        // The client checks the caller's token again: its port takes calls from anyone.
        ClientFsClient::new(channel)
            .exec(on_behalf(&req, inner))
            .await
    }
}

impl Api {
    /// The client agent of an allocation whose files a call reads (`read-fs`).
    async fn fs_client<T>(
        &self,
        req: &Request<T>,
        alloc: &str,
    ) -> Result<(String, Channel), Status> {
        let scope = self.reads.scope(req, READ_FS)?;
        self.barrier(req).await?;
        self.client_of(&scope, alloc, "read files", Duration::from_secs(30))
            .await
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
        // A server+client agent has one certificate, its server one.
        let peer = if addr == self.cluster.me().addr {
            yurt_tls::Peer::Server
        } else {
            yurt_tls::Peer::Client
        };
        let channel = self
            .reads
            .dialer
            .endpoint(&addr, peer)
            .map_err(|e| Status::internal(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(deadline)
            .connect()
            .await
            .map_err(|_| {
                Status::unavailable(format!("cannot reach the client agent at {addr} to {what}"))
            })?;
        Ok((alloc_id, channel))
    }
}
