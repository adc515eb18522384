//! The `Nodes` gRPC service: nodes as users see them (list, status, eligibility, drain,
//! evaluate; host usage and GC through `node_client`), the calls client agents make
//! (register, heartbeat, their allocations, their reports), and `CheckToken`, with which a
//! client has the servers judge a caller's token.

use std::time::Duration;

use tonic::{Request, Response, Status};
use yurt_core::evals::{node_eligibility_command, node_register_command, node_status_command};
use yurt_core::internal::{command, AllocClientUpdates};
use yurt_core::sched::client_update_evals;
use yurt_core::state::PrefixError;
use yurt_proto::v1::*;
use yurt_types::acl::{Level, Need};
use yurt_types::feed;
use yurt_types::status::*;

use crate::read::on_behalf;
use crate::rpc::{new_id, status, Api, MAX_WAIT};
use crate::write::now_unix_ms;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl nodes_server::Nodes for Api {
    async fn check_token(&self, req: Request<CheckTokenRequest>) -> Reply<CheckTokenResponse> {
        match req.get_ref().node.as_str() {
            "" => {}
            "read" | "write" => {
                let level = if req.get_ref().node == "write" {
                    Level::Write
                } else {
                    Level::Read
                };
                self.reads.authorize(&req, Need::Node(level))?;
                return Ok(Response::new(CheckTokenResponse {}));
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "node must be \"read\" or \"write\", not {}",
                    yurt_types::limits::shown(other)
                )))
            }
        }
        let capability =
            yurt_types::acl::capability(&req.get_ref().capability).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "capability {:?} is not one Yurt knows",
                    yurt_types::limits::shown(&req.get_ref().capability)
                ))
            })?;
        let namespace = req.get_ref().namespace.clone();
        let namespace = if namespace.is_empty() {
            yurt_types::acl::DEFAULT_NAMESPACE.to_string()
        } else {
            namespace
        };
        self.reads
            .authorize(&req, Need::Namespace(&namespace, capability))?;
        Ok(Response::new(CheckTokenResponse {}))
    }

    async fn list(&self, req: Request<ListNodesRequest>) -> Reply<ListNodesResponse> {
        self.reads.authorize(&req, Need::Node(Level::Read))?;
        self.barrier(&req).await?;
        let nodes = self
            .reads
            .state
            .scan(|s| s.nodes.values().cloned().collect());
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get(&self, req: Request<GetNodeRequest>) -> Reply<Node> {
        self.reads.authorize(&req, Need::Node(Level::Read))?;
        if req.get_ref().heartbeats {
            // Only the leader tracks heartbeats.
            if let Some(mut leader) = self.leader_nodes().await? {
                return leader.get(on_behalf(&req, req.get_ref().clone())).await;
            }
        }
        self.barrier(&req).await?;
        let req = req.into_inner();
        let mut node = self.reads.state.read(|s| {
            s.find_node(&req.node_id)
                .cloned()
                .map_err(|e| status(e, "node", &req.node_id))
        })?;
        if req.heartbeats {
            self.heartbeats.describe(&mut node);
        }
        Ok(Response::new(node))
    }

    async fn update_eligibility(
        &self,
        req: Request<NodeEligibilityRequest>,
    ) -> Reply<NodeUpdateResponse> {
        self.reads.authorize(&req, Need::Node(Level::Write))?;
        self.decide_on_current_state().await?;
        let req = req.into_inner();
        let cmd = self.reads.state.read(|s| {
            let node = s
                .find_node(&req.node_id)
                .map_err(|e| status(e, "node", &req.node_id))?;
            if req.eligible {
                yurt_core::drain::check_eligible(node).map_err(Status::failed_precondition)?;
            }
            Ok::<_, Status>(node_eligibility_command(
                s,
                &node.id,
                req.eligible,
                &mut new_id,
            ))
        })?;
        let (node_id, eval_ids) = match &cmd {
            command::Kind::NodeEligibilityUpdate(u) => (
                u.node_id.clone(),
                u.evals.iter().map(|e| e.id.clone()).collect(),
            ),
            _ => (String::new(), vec![]),
        };
        let r = self.writer.apply(cmd).await?;
        Ok(Response::new(
            self.node_updated(&node_id, r.index, eval_ids),
        ))
    }

    async fn evaluate(&self, req: Request<NodeEvaluateRequest>) -> Reply<NodeUpdateResponse> {
        crate::job_actions::node_evaluate(self, req).await
    }

    async fn host_stats(&self, req: Request<NodeEvaluateRequest>) -> Reply<HostStats> {
        crate::node_client::host_stats(self, req).await
    }

    async fn client_gc(&self, req: Request<NodeEvaluateRequest>) -> Reply<ClientGcResponse> {
        crate::node_client::client_gc(self, req).await
    }

    async fn update_drain(&self, req: Request<NodeDrainRequest>) -> Reply<NodeUpdateResponse> {
        self.reads.authorize(&req, Need::Node(Level::Write))?;
        let req = req.into_inner();
        yurt_core::features::check(
            &yurt_core::features::NODE_DRAIN,
            &self.cluster.gate_servers(),
        )
        .map_err(Status::failed_precondition)?;
        self.decide_on_current_state().await?;
        let update = self.reads.state.read(|s| {
            let node = s
                .find_node(&req.node_id)
                .map_err(|e| status(e, "node", &req.node_id))?;
            Ok::<_, Status>(yurt_core::drain::drain_command(
                s,
                node,
                req.strategy,
                req.mark_eligible,
                now_unix_ms(),
                &mut new_id,
            ))
        })?;
        let node_id = update.node_id.clone();
        let eval_ids = update.evals.iter().map(|e| e.id.clone()).collect();
        let r = self
            .writer
            .apply(command::Kind::NodeDrainUpdate(update))
            .await?;
        Ok(Response::new(
            self.node_updated(&node_id, r.index, eval_ids),
        ))
    }

    async fn register(&self, req: Request<RegisterNodeRequest>) -> Reply<NodeUpdateResponse> {
        // Servers are upgraded before clients: a newer client is refused where it arrives.
        if let Some(n) = &req.get_ref().node {
            yurt_types::version::check_client(yurt_types::VERSION, &n.version)
                .map_err(Status::failed_precondition)?;
            yurt_types::limits::check_node(n).map_err(|(_, why)| Status::invalid_argument(why))?;
        }
        if let Some(mut leader) = self.leader_nodes().await? {
            return leader.register(req.into_inner()).await;
        }
        let mut node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("request has no node"))?;
        node.status = NODE_READY.into();
        let id = node.id.clone();
        let events = self.cluster.gates().node_events;
        let cmd = self
            .reads
            .state
            .read(|s| node_register_command(s, node, events, &mut new_id));
        let r = self.writer.apply(cmd).await?;
        let nodes = self.reads.state.read(|s| s.nodes.len());
        Ok(Response::new(NodeUpdateResponse {
            heartbeat_ttl_ms: self.heartbeats.beat(&id, nodes),
            index: r.index,
            server_version: yurt_types::VERSION.into(),
            server_http_addr: self.cluster.me().http_addr.clone(),
            ..NodeUpdateResponse::default()
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Reply<NodeUpdateResponse> {
        crate::metrics::metrics().incr("yurt.heartbeat");
        if let Some(mut leader) = self.leader_nodes().await? {
            return leader.heartbeat(req.into_inner()).await;
        }
        if *self.writer.quorum_lost().borrow() {
            // A leader cut off from the majority: the client must find the servers that can
            // keep its node alive (the majority's leader tracks its heartbeats).
            return Err(Status::unavailable(
                "this server has lost contact with a majority of the servers: heartbeat another server",
            ));
        }
        let id = req.into_inner().node_id;
        let (status, nodes) = self
            .reads
            .state
            .read(|s| (s.nodes.get(&id).map(|n| n.status.clone()), s.nodes.len()));
        let status =
            status.ok_or_else(|| Status::not_found(PrefixError::NotFound.sentence("node", &id)))?;
        let mut index = self.reads.state.read(|s| s.index);
        if status != NODE_READY {
            // Back from down: the node heartbeats again (its lost allocations stay stopped).
            let events = self.cluster.gates().node_events;
            let cmd = self
                .reads
                .state
                .read(|s| node_status_command(s, &id, NODE_READY, events, &mut new_id));
            index = self.writer.apply(cmd).await?.index;
            tracing::info!(node = %id, "node is back: ready again");
        }
        Ok(Response::new(NodeUpdateResponse {
            heartbeat_ttl_ms: self.heartbeats.beat(&id, nodes),
            index,
            server_version: yurt_types::VERSION.into(),
            server_http_addr: self.cluster.me().http_addr.clone(),
            ..NodeUpdateResponse::default()
        }))
    }

    async fn client_allocs(
        &self,
        req: Request<ClientAllocsRequest>,
    ) -> Reply<ClientAllocsResponse> {
        self.barrier(&req).await?;
        let req = req.into_inner();
        let node = &req.node_id;
        let after = req
            .paged
            .then(|| feed::Cursor::continued(req.after_index, &req.after_alloc_id))
            .flatten();
        if after.is_none() {
            // Only a change to this node's allocations answers: a cluster's every write would
            // otherwise send each client all of its allocations again.
            let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
            self.reads
                .state
                .wait_until(wait, |s| s.node_allocs_index(node) != req.min_index)
                .await;
        }
        let reply = self.reads.state.scan(|s| {
            let index = s.node_allocs_index(node);
            let all = !req.changed_only || index < req.min_index;
            if req.paged {
                let after = feed::Cursor::of_request(after.clone(), req.min_index, all);
                let page = feed::page(s.allocs.on_node(node), &after, feed::PAGE_BYTES);
                let more = page.next.is_some();
                let next = page.next.unwrap_or_default();
                return ClientAllocsResponse {
                    allocs: page.allocs,
                    index,
                    jobs: page.jobs,
                    more,
                    next_after_index: next.index,
                    next_after_alloc_id: next.alloc_id,
                };
            }
            let allocs = s
                .allocs
                .on_node(node)
                .filter(|a| all || a.modify_index > req.min_index)
                .cloned()
                .collect();
            ClientAllocsResponse {
                allocs,
                index,
                ..Default::default()
            }
        });
        Ok(Response::new(reply))
    }

    async fn update_allocs(
        &self,
        req: Request<UpdateAllocsRequest>,
    ) -> Reply<UpdateAllocsResponse> {
        self.decide_on_current_state().await?;
        let req = req.into_inner();
        let evals = self
            .reads
            .state
            .read(|s| client_update_evals(s, &req.updates, &mut new_id));
        let r = self
            .writer
            .apply(command::Kind::AllocClientUpdates(AllocClientUpdates {
                node_id: req.node_id,
                updates: req.updates,
                evals,
            }))
            .await?;
        Ok(Response::new(UpdateAllocsResponse { index: r.index }))
    }
}
