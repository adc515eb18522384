//! The `Namespaces` gRPC service (`yurt namespace ...`, `/v1/namespaces`,
//! `/v1/namespace/:name`): a token sees the namespaces it may do something in; creating,
//! changing and deleting them needs a management token and every server at a version that has
//! namespaces. Whether one may be deleted (no jobs, no variables) is the state machine's call.

use tonic::{Request, Response, Status};
use yurt_core::internal::{command, NamespaceUpdate};
use yurt_proto::v1::namespaces_server::Namespaces;
use yurt_proto::v1::*;
use yurt_types::acl::Need;

use crate::read::{stale, Reads};
use crate::write::Writer;

type Reply<T> = Result<Response<T>, Status>;

#[derive(Clone)]
pub struct NamespacesService {
    pub reads: Reads,
    pub writer: Writer,
    pub cluster: crate::cluster::Cluster,
}

impl NamespacesService {
    /// Commits a change (gated) and waits until this server has applied it.
    async fn commit(&self, u: NamespaceUpdate) -> Result<u64, Status> {
        yurt_core::features::check(
            &yurt_core::features::NAMESPACES,
            &self.cluster.gate_servers(),
        )
        .map_err(Status::failed_precondition)?;
        let index = self
            .writer
            .apply(command::Kind::NamespaceUpdate(u))
            .await?
            .index;
        self.reads
            .state
            .wait_past(index.saturating_sub(1), std::time::Duration::from_secs(5))
            .await;
        Ok(index)
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    async fn list(&self, req: Request<ListNamespacesRequest>) -> Reply<ListNamespacesResponse> {
        self.reads.barrier(stale(&req)).await?;
        let acl = self.reads.acl_of(&req)?;
        let prefix = &req.get_ref().prefix;
        let (namespaces, index) = self.reads.state.read(|s| {
            let all = s
                .all_namespaces()
                .into_iter()
                .filter(|n| n.name.starts_with(prefix.as_str()))
                .filter(|n| acl.as_ref().is_none_or(|a| a.sees_namespace(&n.name)))
                .collect();
            (all, s.index)
        });
        Ok(Response::new(ListNamespacesResponse { namespaces, index }))
    }

    async fn get(&self, req: Request<GetNamespaceRequest>) -> Reply<Namespace> {
        self.reads.barrier(stale(&req)).await?;
        let name = req.get_ref().name.clone();
        if let Some(acl) = self.reads.acl_of(&req)? {
            if !acl.sees_namespace(&name) {
                return Err(Status::permission_denied(format!(
                    "Permission denied: this needs a capability in namespace {name:?}"
                )));
            }
        }
        self.reads
            .state
            .read(|s| s.namespace(&name))
            .map(Response::new)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "namespace {} not found",
                    yurt_types::limits::shown(&name)
                ))
            })
    }

    async fn apply(&self, req: Request<Namespace>) -> Reply<NamespaceWriteResponse> {
        self.reads.authorize(&req, Need::Management)?;
        let ns = req.into_inner();
        yurt_core::namespaces::check_name(&ns.name).map_err(Status::invalid_argument)?;
        if ns.description.len() > 256 {
            return Err(Status::invalid_argument(format!(
                "namespace {:?}: the description is {} bytes, at most 256",
                ns.name,
                ns.description.len()
            )));
        }
        let index = self
            .commit(NamespaceUpdate {
                upsert: vec![ns],
                ..NamespaceUpdate::default()
            })
            .await?;
        Ok(Response::new(NamespaceWriteResponse { index }))
    }

    async fn delete(&self, req: Request<GetNamespaceRequest>) -> Reply<NamespaceWriteResponse> {
        self.reads.authorize(&req, Need::Management)?;
        self.reads.barrier(false).await?;
        let index = self
            .commit(NamespaceUpdate {
                delete: vec![req.into_inner().name],
                ..NamespaceUpdate::default()
            })
            .await?;
        Ok(Response::new(NamespaceWriteResponse { index }))
    }
}
