//! `yurt server members|force-leave`, `yurt operator raft list-peers|remove-peer` and
//! `yurt operator snapshot save|inspect|restore` and `yurt operator scheduler get-config|set-config`.

use std::path::PathBuf;

use clap::Subcommand;
use yurt_proto::v1::operator_client::OperatorClient;
use yurt_proto::v1::{
    ForceLeaveRequest, RaftPeersRequest, RaftSnapshotRequest, RemovePeerRequest,
    SchedulerGetConfigurationRequest, SchedulerSetConfigurationRequest, ServerMembersRequest,
    SnapshotRestoreRequest, SnapshotSaveRequest,
};

use super::{connect, CliError, CmdResult};
use crate::output::{self, table};

#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// List the server agents and their status.
    Members {
        #[arg(long)]
        json: bool,
    },
    /// Mark a failed server as left and remove it from the Raft configuration.
    ForceLeave { name: String },
    /// Have the agent's server gossip with other servers (their gRPC addresses).
    Join {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Raft operations.
    Raft {
        #[command(subcommand)]
        cmd: RaftCmd,
    },
    /// Save, inspect and restore point-in-time copies of the cluster state.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Show or change the cluster-wide scheduler settings.
    Scheduler {
        #[command(subcommand)]
        cmd: SchedulerCmd,
    },
    /// The keyring that seals variables (`operator root keyring list|rotate`).
    Root {
        #[command(subcommand)]
        cmd: super::var::RootCmd,
    },
    /// Check that a rolling upgrade may take down one server now, and say which one next.
    UpgradeCheck {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchedulerCmd {
    /// Show the scheduler settings.
    GetConfig {
        #[arg(long)]
        json: bool,
    },
    /// Change the scheduler settings; settings not given keep their value.
    SetConfig {
        /// How placements rank nodes: binpack (fill the fullest node that fits) or spread.
        #[arg(long = "scheduler-algorithm")]
        scheduler_algorithm: Option<String>,
        /// Whether tasks may use memory up to their `memory_max` (true or false).
        #[arg(long = "memory-oversubscription")]
        memory_oversubscription: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Write a consistent copy of the cluster state to FILE (which must not exist).
    Save { file: PathBuf },
    /// Show what a snapshot file holds.
    Inspect { file: PathBuf },
    /// Replace the cluster's state with the one saved in FILE.
    Restore { file: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// List the Raft peers.
    ListPeers {
        #[arg(long)]
        json: bool,
    },
    /// Remove a peer from the Raft configuration.
    RemovePeer {
        #[arg(long = "peer-id")]
        peer_id: Option<String>,
        #[arg(long = "peer-address")]
        peer_address: Option<String>,
    },
    /// Take a Raft snapshot on the server the CLI talks to and compact its log behind it.
    Snapshot,
}

pub async fn run_server(addr: &str, cmd: ServerCmd) -> CmdResult {
    let mut op = OperatorClient::new(connect(addr).await?);
    match cmd {
        ServerCmd::Members { json } => {
            let r = op
                .server_members(ServerMembersRequest {})
                .await
                .map_err(CliError::api("querying servers"))?
                .into_inner();
            if json {
                print!("{}", output::json(&r));
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = r
                .members
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.address.clone(),
                        m.port.to_string(),
                        m.status.clone(),
                        m.leader.to_string(),
                        m.raft_version.clone(),
                        m.build.clone(),
                        m.datacenter.clone(),
                        m.region.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "Name",
                        "Address",
                        "Port",
                        "Status",
                        "Leader",
                        "Raft Version",
                        "Build",
                        "Datacenter",
                        "Region"
                    ],
                    &rows
                )
            );
            Ok(0)
        }
        ServerCmd::ForceLeave { name } => {
            op.force_leave(ForceLeaveRequest { name })
                .await
                .map_err(CliError::api("forcing member leave"))?;
            Ok(0)
        }
        ServerCmd::Join { addresses } => {
            let r = op
                .join(yurt_proto::v1::JoinRequest { addresses })
                .await
                .map_err(CliError::api("joining servers"))?
                .into_inner();
            println!("Joined {} servers successfully", r.num_joined);
            if r.error.is_empty() {
                Ok(0)
            } else {
                eprintln!("Error joining: {}", r.error);
                Ok(1)
            }
        }
    }
}

pub async fn run_operator(addr: &str, cmd: OperatorCmd) -> CmdResult {
    let cmd = match cmd {
        OperatorCmd::Raft { cmd } => cmd,
        OperatorCmd::Snapshot { cmd } => return snapshot(addr, cmd).await,
        OperatorCmd::Scheduler { cmd } => return scheduler(addr, cmd).await,
        OperatorCmd::UpgradeCheck { json } => return upgrade_check(addr, json).await,
        OperatorCmd::Root { cmd } => return super::var::run_root(addr, cmd).await,
    };
    let mut op = OperatorClient::new(connect(addr).await?);
    match cmd {
        RaftCmd::ListPeers { json } => {
            let r = op
                .raft_peers(RaftPeersRequest {})
                .await
                .map_err(CliError::api("getting peers"))?
                .into_inner();
            if json {
                print!("{}", output::json(&r));
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = r
                .peers
                .iter()
                .map(|p| {
                    vec![
                        p.node.clone(),
                        p.id.clone(),
                        p.address.clone(),
                        p.state.clone(),
                        p.voter.to_string(),
                        p.raft_protocol.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["Node", "ID", "Address", "State", "Voter", "RaftProtocol"],
                    &rows
                )
            );
            Ok(0)
        }
        RaftCmd::RemovePeer {
            peer_id,
            peer_address,
        } => {
            let peer = match (peer_id, peer_address) {
                (Some(id), None) => id,
                (None, Some(a)) => a,
                _ => {
                    return Err(CliError::Other(
                        "give exactly one of -peer-id or -peer-address".into(),
                    ))
                }
            };
            op.remove_peer(RemovePeerRequest { peer: peer.clone() })
                .await
                .map_err(CliError::api("removing peer"))?;
            println!("Removed peer with address or ID {peer:?}");
            Ok(0)
        }
        RaftCmd::Snapshot => {
            let r = op
                .raft_snapshot(RaftSnapshotRequest {})
                .await
                .map_err(CliError::api("taking a Raft snapshot"))?
                .into_inner();
            println!("Raft snapshot taken at index {}", r.index);
            Ok(0)
        }
    }
}

fn read_snapshot(
    file: &PathBuf,
) -> Result<(Vec<u8>, yurt_core::internal::SnapshotFile, String), CliError> {
    let name = file.display().to_string();
    let data = std::fs::read(file)
        .map_err(|e| CliError::Other(format!("cannot read snapshot file {name}: {e}")))?;
    let (header, state) =
        yurt_core::backup::decode(&data).map_err(|e| CliError::Other(format!("{name}: {e}")))?;
    let summary = format!(
        "{} jobs, {} nodes, {} allocations, {} evaluations",
        state.jobs.len(),
        state.nodes.len(),
        state.allocs.len(),
        state.evals.len()
    );
    Ok((data, header, summary))
}

async fn snapshot(addr: &str, cmd: SnapshotCmd) -> CmdResult {
    match cmd {
        SnapshotCmd::Save { file } => {
            let name = file.display().to_string();
            if file.exists() {
                return Err(CliError::Other(format!(
                    "{name} already exists: choose a new file name"
                )));
            }
            let r = OperatorClient::new(connect(addr).await?)
                .snapshot_save(SnapshotSaveRequest {})
                .await
                .map_err(CliError::api("saving snapshot"))?
                .into_inner();
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, &r.data)
                .and_then(|_| std::fs::rename(&tmp, &file))
                .map_err(|e| CliError::Other(format!("cannot write {name}: {e}")))?;
            println!("State file written to {name}");
            Ok(0)
        }
        SnapshotCmd::Inspect { file } => {
            let (data, h, summary) = read_snapshot(&file)?;
            print!(
                "{}",
                output::kv(&[
                    ("Created", output::time(h.created_unix_ms)),
                    ("Index", h.index.to_string()),
                    ("Term", h.term.to_string()),
                    ("Version", h.written_by.clone()),
                    ("Size", format!("{} bytes", data.len())),
                    ("Contents", summary),
                ])
            );
            Ok(0)
        }
        SnapshotCmd::Restore { file } => {
            // Check the file here first: a damaged one never reaches the servers.
            let (data, _, _) = read_snapshot(&file)?;
            OperatorClient::new(connect(addr).await?)
                .snapshot_restore(SnapshotRestoreRequest { data })
                .await
                .map_err(CliError::api("restoring snapshot"))?;
            println!("Snapshot Restored");
            Ok(0)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Collect every finished job, allocation, evaluation and down node now, whatever its age.
    Gc,
}

pub async fn run_system(addr: &str, cmd: SystemCmd) -> CmdResult {
    let mut op = OperatorClient::new(connect(addr).await?);
    match cmd {
        SystemCmd::Gc => {
            let r = op
                .garbage_collect(yurt_proto::v1::GarbageCollectRequest {})
                .await
                .map_err(CliError::api("collecting garbage"))?
                .into_inner();
            println!(
                "Collected {} jobs, {} allocations, {} evaluations, {} nodes",
                r.jobs, r.allocations, r.evaluations, r.nodes
            );
            Ok(0)
        }
    }
}

async fn scheduler(addr: &str, cmd: SchedulerCmd) -> CmdResult {
    let mut op = OperatorClient::new(connect(addr).await?);
    match cmd {
        SchedulerCmd::GetConfig { json } => {
            let c = op
                .scheduler_get_configuration(SchedulerGetConfigurationRequest {})
                .await
                .map_err(CliError::api("getting the scheduler configuration"))?
                .into_inner();
            if json {
                print!("{}", output::json(&c));
            } else {
                print!(
                    "{}",
                    output::kv(&[
                        ("Scheduler Algorithm", c.scheduler_algorithm),
                        (
                            "Memory Oversubscription",
                            c.memory_oversubscription_enabled.to_string(),
                        ),
                        ("Modify Index", c.modify_index.to_string()),
                    ])
                );
            }
        }
        SchedulerCmd::SetConfig {
            scheduler_algorithm,
            memory_oversubscription,
        } => {
            let r = op
                .scheduler_set_configuration(SchedulerSetConfigurationRequest {
                    scheduler_algorithm: scheduler_algorithm.unwrap_or_default(),
                    memory_oversubscription: memory_oversubscription.unwrap_or_default(),
                })
                .await
                .map_err(CliError::api("updating the scheduler configuration"))?
                .into_inner();
            println!("Scheduler configuration updated! (index {})", r.index);
        }
    }
    Ok(0)
}

/// `yurt operator upgrade-check`: exit 0 when one server may go down for its upgrade now.
async fn upgrade_check(addr: &str, json: bool) -> CmdResult {
    let r = OperatorClient::new(connect(addr).await?)
        .upgrade_check(yurt_proto::v1::UpgradeCheckRequest {})
        .await
        .map_err(CliError::api("checking the upgrade"))?
        .into_inner();
    if json {
        print!("{}", output::json(&r));
    } else {
        let rows: Vec<Vec<String>> = r
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    if c.ok { "ok" } else { "FAIL" }.to_string(),
                    c.detail.clone(),
                ]
            })
            .collect();
        print!("{}", output::table(&["Check", "Result", "Detail"], &rows));
        println!();
        if r.safe {
            println!(
                "Safe to upgrade one server now: {} ({})",
                r.next_server, r.next_reason
            );
        } else {
            println!("Not safe to take a server down now: fix the checks marked FAIL first.");
        }
    }
    Ok(if r.safe { 0 } else { 1 })
}
