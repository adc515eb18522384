//! `yurt node status`, `yurt node eligibility` and `yurt node drain`.

use clap::Subcommand;
use yurt_proto::v1::allocs_client::AllocsClient;
use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::{
    AllocStatsRequest, Allocation, DrainStrategy, GetNodeRequest, ListAllocsRequest,
    ListNodesRequest, Node, NodeDrainRequest, NodeEligibilityRequest,
};
use yurt_types::status::*;

use super::{connect, CliError, CmdResult, Conn};
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
        /// Also show what the node's allocations use now (from their tasks' cgroups).
        #[arg(long)]
        stats: bool,
    },
    /// Mark a node eligible or ineligible for new allocations (those on it keep running).
    Eligibility {
        node: String,
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Drain a node: move its allocations elsewhere and keep new ones away.
    Drain(DrainArgs),
}

/// `node drain`'s flags.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// The node (ID, prefix or name); or -self.
    node: Option<String>,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Stop whatever is left after this long (default 1h).
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["no_deadline", "force"])]
    deadline: Option<String>,
    /// Wait as long as it takes.
    #[arg(long = "no-deadline", conflicts_with = "force")]
    no_deadline: bool,
    /// Stop every allocation now (an immediate deadline).
    #[arg(long)]
    force: bool,
    /// Leave system jobs' allocations running.
    #[arg(long = "ignore-system")]
    ignore_system: bool,
    /// With -disable: keep the node ineligible.
    #[arg(long = "keep-ineligible")]
    keep_ineligible: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Return at once instead of following the drain.
    #[arg(long)]
    detach: bool,
    /// Only follow the node's drain.
    #[arg(long)]
    monitor: bool,
    /// The node of the agent the CLI talks to.
    #[arg(long = "self")]
    this: bool,
}

pub async fn run(addr: &str, cmd: NodeCmd) -> CmdResult {
    let (node, json, verbose, stats) = match cmd {
        NodeCmd::Status {
            node,
            json,
            verbose,
            stats,
        } => (node, json, verbose, stats),
        NodeCmd::Drain(args) => return drain(addr, args).await,
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
                    or_none(&n.version),
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
                    "Version",
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
        ("Drivers", usable_drivers(&n)),
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
    if let Some(d) = &n.drain_strategy {
        let deadline = match d.force_deadline_unix_ms {
            0 => "none".to_string(),
            at => time(at),
        };
        rows.extend([
            ("Drain Deadline", deadline),
            ("Drain Ignore System Jobs", d.ignore_system_jobs.to_string()),
            ("Drain Started", time(d.started_at_unix_ms)),
        ]);
    }
    let mut out = kv(&rows);
    if !n.events.is_empty() {
        out.push_str("\nEvents\n");
        let rows: Vec<Vec<String>> = n
            .events
            .iter()
            .rev()
            .map(|e| {
                let mut details: Vec<String> =
                    e.details.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                details.sort();
                vec![
                    time(e.time_unix_ms),
                    e.subsystem.clone(),
                    e.message.clone(),
                    details.join(", "),
                ]
            })
            .collect();
        out.push_str(&table(&["Time", "Subsystem", "Message", "Details"], &rows));
    }
    if verbose && !n.drivers.is_empty() {
        // As Nomad's: each driver's fingerprint, and why it cannot run tasks.
        out.push_str("\nDrivers\n");
        let rows: Vec<Vec<String>> = n
            .drivers
            .iter()
            .map(|(name, d)| {
                vec![
                    name.clone(),
                    d.detected.to_string(),
                    d.healthy.to_string(),
                    d.health_description.clone(),
                    time(d.update_time_unix_ms),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Driver", "Detected", "Healthy", "Message", "Time"],
            &rows,
        ));
    }
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
    let live: Vec<_> = allocs.iter().filter(|a| !alloc_terminal(a)).collect();
    // As Nomad's: what the allocations reserve of the node, and with -stats what they use.
    let (cpu, memory) = live.iter().fold((0u64, 0u64), |(c, m), a| {
        let r = a.resources.unwrap_or_default();
        (c + u64::from(r.cpu), m + u64::from(r.memory_mb))
    });
    out.push_str("\nAllocated Resources\n");
    out.push_str(&table(
        &["CPU", "Memory"],
        &[vec![
            format!("{cpu}/{} MHz", r.cpu),
            format!(
                "{}/{}",
                output::bytes(memory << 20),
                output::bytes(u64::from(r.memory_mb) << 20)
            ),
        ]],
    ));
    if stats {
        let mut allocs_api = AllocsClient::new(connect(addr).await?);
        let (mut percent, mut used) = (0.0, 0u64);
        for a in live.iter().filter(|a| a.client_status == ALLOC_RUNNING) {
            let u = allocs_api
                .stats(AllocStatsRequest {
                    alloc_id: a.id.clone(),
                })
                .await
                .map_err(CliError::api("querying the allocations' usage"))?
                .into_inner();
            let ru = u.resource_usage.unwrap_or_default();
            percent += ru.cpu_stats.unwrap_or_default().percent;
            used += ru.memory_stats.unwrap_or_default().usage;
        }
        // A percent of one core, in MHz of this node's cores.
        let core_mhz: f64 = n
            .attributes
            .get("cpu.frequency")
            .and_then(|f| f.parse().ok())
            .unwrap_or(0.0);
        out.push_str("\nAllocation Resource Utilization\n");
        out.push_str(&table(
            &["CPU", "Memory"],
            &[vec![
                format!("{:.0}/{} MHz", percent / 100.0 * core_mhz, r.cpu),
                format!(
                    "{}/{}",
                    output::bytes(used),
                    output::bytes(u64::from(r.memory_mb) << 20)
                ),
            ]],
        ));
    }
    out.push_str("\nAllocations\n");
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

/// `yurt node drain`.
async fn drain(addr: &str, a: DrainArgs) -> CmdResult {
    let mut channel = connect(addr).await?;
    let node_arg = match (a.this, a.node) {
        (true, Some(_)) => {
            return Err(CliError::Other(
                "give either a node or -self, not both".into(),
            ))
        }
        (true, None) => {
            let (node, server) = self_node(channel.clone()).await?;
            if let Some(server) = server {
                channel = connect(&server).await?;
            }
            node
        }
        (false, Some(n)) => n,
        (false, None) => {
            return Err(CliError::Other(
                "node drain needs a node (ID, prefix or name) or -self".into(),
            ))
        }
    };
    if a.enable == a.disable && !a.monitor {
        return Err(CliError::Other(
            "node drain needs exactly one of -enable, -disable or -monitor".into(),
        ));
    }
    let mut nodes = NodesClient::new(channel.clone());
    let node = nodes
        .get(GetNodeRequest {
            node_id: node_arg.clone(),
            heartbeats: false,
        })
        .await
        .map_err(CliError::api("querying node"))?
        .into_inner();
    let before = node_allocs(channel.clone(), &node.id).await?;
    if a.monitor && !a.enable && !a.disable {
        return monitor_drain(channel, &node.id, before).await;
    }
    if a.disable {
        nodes
            .update_drain(NodeDrainRequest {
                node_id: node.id.clone(),
                strategy: None,
                mark_eligible: !a.keep_ineligible,
            })
            .await
            .map_err(CliError::api("updating drain"))?;
        println!("Node {:?} drain strategy unset", node.id);
        return Ok(0);
    }
    let deadline_ms: i64 = if a.force {
        -1
    } else if a.no_deadline {
        0
    } else {
        let text = a.deadline.as_deref().unwrap_or("1h");
        let d = yurt_types::duration::parse(text)
            .map_err(|e| CliError::Other(format!("-deadline: {e}")))?;
        if d.is_zero() {
            return Err(CliError::Other(
                "-deadline must be positive (use -no-deadline to wait forever, -force to stop now)"
                    .into(),
            ));
        }
        d.as_millis() as i64
    };
    if !a.yes && !confirm(&node)? {
        println!("Canceling drain");
        return Ok(1);
    }
    nodes
        .update_drain(NodeDrainRequest {
            node_id: node.id.clone(),
            strategy: Some(DrainStrategy {
                deadline_ms,
                ignore_system_jobs: a.ignore_system,
                ..Default::default()
            }),
            mark_eligible: false,
        })
        .await
        .map_err(CliError::api("updating drain"))?;
    if !a.detach {
        println!(
            "{}: Ctrl-C to stop monitoring: will not cancel the node drain",
            time(output::now_ms())
        );
    }
    println!(
        "{}: Node {:?} drain strategy set",
        time(output::now_ms()),
        node.id
    );
    if a.detach {
        return Ok(0);
    }
    monitor_drain(channel, &node.id, before).await
}

/// Asks before draining, as Nomad does; without a terminal, `-yes` is required.
fn confirm(node: &Node) -> Result<bool, CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Other(
            "not draining without confirmation: pass -yes (standard input is not a terminal)"
                .into(),
        ));
    }
    print!(
        "Are you sure you want to enable drain mode for node {:?}? [y/N] ",
        node.id
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// The node of the client agent at the CLI's address (`-self`), and where to ask about it: that
/// agent when it is also a server, else the first server the client knows.
async fn self_node(channel: Conn) -> Result<(String, Option<String>), CliError> {
    let info = yurt_proto::v1::agent_client::AgentClient::new(channel)
        .info(yurt_proto::v1::AgentInfoRequest {})
        .await
        .map_err(CliError::api("querying agent info"))?
        .into_inner();
    let section = |name: &str| info.sections.iter().find(|s| s.name == name);
    let client = section("client")
        .ok_or_else(|| CliError::Other("-self: the agent at this address runs no client".into()))?;
    let node = client.values.get("node_id").cloned().unwrap_or_default();
    let is_server = section("yurt")
        .and_then(|s| s.values.get("server"))
        .is_some_and(|v| v == "true");
    let server = (!is_server)
        .then(|| {
            client
                .values
                .get("known_servers")
                .and_then(|s| s.split(',').find(|a| !a.is_empty()).map(String::from))
        })
        .flatten();
    Ok((node, server))
}

/// What the drain monitor remembers of an allocation: marked, desired and client status.
type Seen = (bool, String, String);

fn seen_of(a: &Allocation) -> Seen {
    (
        a.desired_transition.as_ref().is_some_and(|t| t.migrate),
        a.desired_status.clone(),
        a.client_status.clone(),
    )
}

async fn node_allocs(channel: Conn, node_id: &str) -> Result<Vec<Allocation>, CliError> {
    Ok(AllocsClient::new(channel)
        .list(ListAllocsRequest {
            node_id: node_id.into(),
        })
        .await
        .map_err(CliError::api("querying node allocations"))?
        .into_inner()
        .allocs)
}

/// Follows a node's drain, one line per change of its allocations (against `before`, what was
/// on the node when the drain was asked for), until it is complete or disabled.
async fn monitor_drain(channel: Conn, node_id: &str, before: Vec<Allocation>) -> CmdResult {
    let mut nodes = NodesClient::new(channel.clone());
    let line = |m: String| println!("{}: {m}", time(output::now_ms()));
    let mut seen: std::collections::BTreeMap<String, Seen> =
        before.iter().map(|a| (a.id.clone(), seen_of(a))).collect();
    let mut was_down = false;
    loop {
        let node = nodes
            .get(GetNodeRequest {
                node_id: node_id.into(),
                heartbeats: false,
            })
            .await
            .map_err(CliError::api("querying node"))?
            .into_inner();
        let allocs = node_allocs(channel.clone(), node_id).await?;
        for a in &allocs {
            let now = seen_of(a);
            let Some((was_marked, was_desired, was_client)) = seen.insert(a.id.clone(), now) else {
                continue;
            };
            let marked = a.desired_transition.as_ref().is_some_and(|t| t.migrate);
            if marked && !was_marked {
                line(format!("Alloc {:?} marked for migration", a.id));
            }
            if a.desired_status != ALLOC_DESIRED_RUN && was_desired == ALLOC_DESIRED_RUN {
                line(format!("Alloc {:?} draining", a.id));
            }
            if a.client_status != was_client {
                line(format!(
                    "Alloc {:?} status {} -> {}",
                    a.id, was_client, a.client_status
                ));
            }
        }
        if node.status == NODE_DOWN && !was_down {
            line(format!("Node {:?} down", node.id));
        }
        was_down = node.status == NODE_DOWN;
        if node.drain_strategy.is_none() {
            let last_drain_event = node
                .events
                .iter()
                .rev()
                .find(|e| e.subsystem == NODE_EVENT_SUBSYSTEM_DRAIN);
            if last_drain_event.map(|e| e.message.as_str()) == Some(NODE_EVENT_DRAIN_COMPLETE) {
                if allocs
                    .iter()
                    .all(|a| alloc_client_terminal(&a.client_status))
                {
                    line(format!(
                        "All allocations on node {:?} have stopped",
                        node.id
                    ));
                }
                line(format!("Drain complete for node {}", node.id));
            } else {
                line(format!("Drain disabled for node {}", node.id));
            }
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The drivers a node can run tasks with (`exec,raw_exec`), as Nomad's `node status` lists
/// them; for a client of 0.1.0, from its `driver.*` attributes.
fn usable_drivers(n: &Node) -> String {
    let names: Vec<String> = if n.drivers.is_empty() {
        n.attributes
            .keys()
            .filter_map(|k| k.strip_prefix("driver."))
            .filter(|d| !d.contains('.'))
            .map(str::to_string)
            .collect()
    } else {
        n.drivers
            .iter()
            .filter(|(_, d)| d.detected && d.healthy)
            .map(|(name, _)| name.clone())
            .collect()
    };
    if names.is_empty() {
        "<none>".into()
    } else {
        names.join(",")
    }
}
