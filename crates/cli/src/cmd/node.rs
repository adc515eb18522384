//! `yurt node status` and `yurt node eligibility`.

use clap::Subcommand;
use yurt_proto::v1::allocs_client::AllocsClient;
use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::{GetNodeRequest, ListAllocsRequest, ListNodesRequest, NodeEligibilityRequest};
use yurt_types::status::alloc_terminal;

use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, or_none, short, table, time};

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List client nodes, or show one node and its allocations.
    Status {
        node: Option<String>,
        #[arg(long)]
        json: bool,
        /// Also show the node's heartbeats as the leader sees them.
        #[arg(long)]
        verbose: bool,
    },
    /// Mark a node eligible or ineligible for new allocations (those on it keep running).
    Eligibility {
        node: String,
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
}

pub async fn run(addr: &str, cmd: NodeCmd) -> CmdResult {
    let (node, json, verbose) = match cmd {
        NodeCmd::Status {
            node,
            json,
            verbose,
        } => (node, json, verbose),
        NodeCmd::Eligibility { node, enable, .. } => {
            NodesClient::new(connect(addr).await?)
                .update_eligibility(NodeEligibilityRequest {
                    node_id: node.clone(),
                    eligible: enable,
                })
                .await
                .map_err(CliError::api("updating node eligibility"))?;
            let what = if enable { "eligible" } else { "ineligible" };
            println!("Node {node:?} scheduling eligibility set: {what} for scheduling");
            return Ok(0);
        }
    };
    let channel = connect(addr).await?;
    let mut nodes = NodesClient::new(channel.clone());
    let Some(id) = node else {
        let list = nodes
            .list(ListNodesRequest {})
            .await
            .map_err(CliError::api("querying node status"))?
            .into_inner();
        if json {
            print!("{}", output::json(&list));
            return Ok(0);
        }
        if list.nodes.is_empty() {
            println!("No nodes registered");
            return Ok(0);
        }
        let rows: Vec<Vec<String>> = list
            .nodes
            .iter()
            .map(|n| {
                vec![
                    short(&n.id).to_string(),
                    n.datacenter.clone(),
                    n.name.clone(),
                    or_none(&n.node_class),
                    n.drain.to_string(),
                    n.scheduling_eligibility.clone(),
                    n.status.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ID",
                    "DC",
                    "Name",
                    "Class",
                    "Drain",
                    "Eligibility",
                    "Status"
                ],
                &rows
            )
        );
        return Ok(0);
    };
    let n = nodes
        .get(GetNodeRequest {
            node_id: id,
            heartbeats: verbose,
        })
        .await
        .map_err(CliError::api("querying node info"))?
        .into_inner();
    let allocs = AllocsClient::new(channel)
        .list(ListAllocsRequest {
            node_id: n.id.clone(),
        })
        .await
        .map_err(CliError::api("querying node allocations"))?
        .into_inner()
        .allocs;
    if json {
        print!("{}", output::json(&n));
        return Ok(0);
    }
    let r = n.resources.unwrap_or_default();
    let mut rows = vec![
        ("ID", n.id.clone()),
        ("Name", n.name.clone()),
        ("Class", or_none(&n.node_class)),
        ("DC", n.datacenter.clone()),
        ("Drain", n.drain.to_string()),
        ("Eligibility", n.scheduling_eligibility.clone()),
        ("Status", n.status.clone()),
        ("Status Updated", time(n.status_updated_unix_ms)),
        ("Address", n.rpc_addr.clone()),
        ("Version", n.version.clone()),
        ("CPU", format!("{} MHz", r.cpu)),
        ("Memory", format!("{} MiB", r.memory_mb)),
    ];
    if verbose {
        let now = crate::output::now_ms();
        rows.extend([
            (
                "Heartbeat TTL",
                yurt_types::duration::format_ms(n.heartbeat_ttl_ms),
            ),
            (
                "Last Heartbeat",
                crate::output::ago(n.last_heartbeat_unix_ms, now),
            ),
            ("Down After", time(n.heartbeat_deadline_unix_ms)),
        ]);
    }
    let mut out = kv(&rows);
    if verbose {
        // As Nomad's `node status -verbose`: the attributes and meta constraints read.
        let mut attrs: Vec<(&String, &String)> = n.attributes.iter().collect();
        attrs.sort();
        let attrs: Vec<(&str, String)> = attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        out.push_str("\nAttributes\n");
        out.push_str(&kv(&attrs));
        let mut meta: Vec<(&String, &String)> = n.meta.iter().collect();
        meta.sort();
        let meta: Vec<(&str, String)> = meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        out.push_str("\nMeta\n");
        out.push_str(&kv(&meta));
    }
    out.push_str("\nAllocations\n");
    let live: Vec<_> = allocs.iter().filter(|a| !alloc_terminal(a)).collect();
    if live.is_empty() {
        out.push_str("No allocations placed\n");
    } else {
        let rows: Vec<Vec<String>> = live
            .iter()
            .map(|a| {
                vec![
                    short(&a.id).to_string(),
                    a.job_id.clone(),
                    a.task_group.clone(),
                    a.desired_status.clone(),
                    a.client_status.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ID", "Job ID", "Task Group", "Desired", "Status"],
            &rows,
        ));
    }
    print!("{out}");
    Ok(0)
}
