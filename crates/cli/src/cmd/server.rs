//! `yurt server members|force-leave` and `yurt operator raft list-peers|remove-peer`.

use clap::Subcommand;
use yurt_proto::v1::operator_client::OperatorClient;
use yurt_proto::v1::{
    ForceLeaveRequest, RaftPeersRequest, RemovePeerRequest, ServerMembersRequest,
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
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Raft operations.
    Raft {
        #[command(subcommand)]
        cmd: RaftCmd,
    },
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
    }
}

pub async fn run_operator(addr: &str, cmd: OperatorCmd) -> CmdResult {
    let OperatorCmd::Raft { cmd } = cmd;
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
    }
}
