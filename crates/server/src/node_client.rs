//! Calls about a client node that its client agent answers, forwarded there with the caller's
//! token: the host's usage (`/v1/client/stats`) and garbage collection now (`/v1/client/gc`).
//! Without a node ID the call is for this agent's own client (a `-dev` agent, or a server and
//! client in one process).

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use yurt_proto::v1::client_fs_client::ClientFsClient;
use yurt_proto::v1::*;
use yurt_types::acl::{Level, Need};

use crate::read::on_behalf;
use crate::rpc::Api;

type Reply<T> = Result<Response<T>, Status>;

/// A connection to the client agent of node `node_id` (a unique prefix works; empty: this
/// agent's own client).
async fn node_channel(api: &Api, node_id: &str) -> Result<Channel, Status> {
    let me = api.cluster.me().addr.clone();
    let addr = api.reads.state.read(|s| {
        if node_id.is_empty() {
            s.nodes
                .values()
                .find(|n| n.rpc_addr == me)
                .map(|n| n.rpc_addr.clone())
                .ok_or_else(|| {
                    Status::invalid_argument(
                        "node_id is required: this agent runs no client of its own",
                    )
                })
        } else {
            s.find_node(node_id)
                .map(|n| n.rpc_addr.clone())
                .map_err(|e| Status::not_found(e.sentence("node", node_id)))
        }
    })?;
    dial(api, &addr, Duration::from_secs(30), "answer").await
}

/// A connection to the client agent at `addr`, for calls that take up to `deadline`; `what`
/// says what the call was for when the agent cannot be reached.
pub(crate) async fn dial(
    api: &Api,
    addr: &str,
    deadline: Duration,
    what: &str,
) -> Result<Channel, Status> {
    // A server+client agent has one certificate, its server's.
    let peer = if addr == api.cluster.me().addr {
        yurt_tls::Peer::Server
    } else {
        yurt_tls::Peer::Client
    };
    api.reads
        .dialer
        .endpoint(addr, peer)
        .map_err(|e| {
            Status::failed_precondition(format!(
                "the client agent's address {} cannot be dialled: {e}",
                yurt_types::limits::shown(addr)
            ))
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(deadline)
        .connect()
        .await
        .map_err(|_| {
            Status::unavailable(format!("cannot reach the client agent at {addr} to {what}"))
        })
}

pub async fn host_stats(api: &Api, req: Request<NodeEvaluateRequest>) -> Reply<HostStats> {
    api.reads.authorize(&req, Need::Node(Level::Read))?;
    let channel = node_channel(api, &req.get_ref().node_id).await?;
    ClientFsClient::new(channel)
        .host_stats(on_behalf(&req, HostStatsRequest {}))
        .await
}

pub async fn client_gc(api: &Api, req: Request<NodeEvaluateRequest>) -> Reply<ClientGcResponse> {
    api.reads.authorize(&req, Need::Node(Level::Write))?;
    let channel = node_channel(api, &req.get_ref().node_id).await?;
    ClientFsClient::new(channel)
        .gc(on_behalf(&req, ClientGcRequest::default()))
        .await
}
