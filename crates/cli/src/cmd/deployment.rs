//! `yurt deployment list|status|promote|fail|pause|resume|allocation-health`, and the
//! deployment views `job status` and `job run` share.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Subcommand;
use yurt_proto::v1::deployments_client::DeploymentsClient;
use yurt_proto::v1::*;
use yurt_types::status::*;

use super::{connect, CliError, CmdResult, Conn};
use crate::output::{self, kv, short, table, time};

#[derive(Subcommand, Debug)]
pub enum DeploymentCmd {
    /// List deployments, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a deployment and its task groups.
    Status {
        deployment: String,
        /// Follow the deployment, updating the view in place, until it ends.
        #[arg(long)]
        monitor: bool,
        #[arg(long)]
        json: bool,
    },
    /// Promote the canaries of every task group (refused until they are healthy).
    Promote {
        deployment: String,
        /// Return without monitoring the deployment.
        #[arg(long)]
        detach: bool,
    },
    /// Mark a running or paused deployment failed (reverting if a group has auto_revert).
    Fail {
        deployment: String,
        #[arg(long)]
        detach: bool,
    },
    /// Pause a deployment: nothing more is placed, its deadline does not run.
    Pause { deployment: String },
    /// Resume a paused deployment.
    Resume {
        deployment: String,
        #[arg(long)]
        detach: bool,
    },
    /// Set the health of allocations of a deployment by hand (health_check = "manual").
    AllocationHealth {
        deployment: String,
        /// Allocations to mark healthy (ID or prefix); repeatable.
        #[arg(long = "healthy")]
        healthy: Vec<String>,
        /// Allocations to mark unhealthy; repeatable.
        #[arg(long = "unhealthy")]
        unhealthy: Vec<String>,
    },
}

pub async fn run(addr: &str, cmd: DeploymentCmd) -> CmdResult {
    let channel = connect(addr).await?;
    let mut client = DeploymentsClient::new(channel.clone());
    let action = |deployment_id: String| DeploymentActionRequest { deployment_id };
    // What Nomad prints once the action is done (the reply's deployment is read before it).
    let (reply, verb, detach, done) = match cmd {
        DeploymentCmd::List { json } => return list(channel, json).await,
        DeploymentCmd::Status {
            deployment,
            monitor,
            json,
        } => return status(channel, &deployment, monitor, json).await,
        DeploymentCmd::Promote { deployment, detach } => (
            client.promote(action(deployment)).await,
            "promoting deployment",
            detach,
            None,
        ),
        DeploymentCmd::Fail { deployment, detach } => (
            client.fail(action(deployment)).await,
            "failing deployment",
            detach,
            None,
        ),
        DeploymentCmd::Pause { deployment } => (
            client.pause(action(deployment)).await,
            "pausing deployment",
            true,
            Some("paused"),
        ),
        DeploymentCmd::Resume { deployment, detach } => (
            client.resume(action(deployment)).await,
            "resuming deployment",
            detach,
            Some("resumed"),
        ),
        DeploymentCmd::AllocationHealth {
            deployment,
            healthy,
            unhealthy,
        } => {
            if healthy.is_empty() && unhealthy.is_empty() {
                return Err(CliError::Other(
                    "give at least one allocation with -healthy or -unhealthy".into(),
                ));
            }
            (
                client
                    .set_alloc_health(SetAllocHealthRequest {
                        deployment_id: deployment,
                        healthy_allocs: healthy,
                        unhealthy_allocs: unhealthy,
                    })
                    .await,
                "setting allocation health",
                true,
                None,
            )
        }
    };
    let reply = reply.map_err(CliError::api(verb))?.into_inner();
    let d = reply.deployment.unwrap_or_default();
    match done {
        Some(done) => println!("Deployment {:?} {done}", short(&d.id)),
        None => println!(
            "Deployment {:?} {}: {}",
            short(&d.id),
            d.status,
            d.status_description
        ),
    }
    if !reply.eval_id.is_empty() {
        println!("Evaluation ID: {}", reply.eval_id);
    }
    if detach || !deployment_active(&d.status) {
        return Ok(0);
    }
    monitor(channel, &d.id).await
}

async fn list(channel: Conn, json: bool) -> CmdResult {
    let reply = DeploymentsClient::new(channel)
        .list(ListDeploymentsRequest::default())
        .await
        .map_err(CliError::api("retrieving deployments"))?
        .into_inner();
    if json {
        print!("{}", output::json(&reply));
        return Ok(0);
    }
    if reply.deployments.is_empty() {
        println!("No deployments found");
        return Ok(0);
    }
    print!("{}", list_table(&reply.deployments));
    Ok(0)
}

/// `ID  Job ID  Job Version  Status  Description`, as `deployment list` and `job deployments`
/// show it.
pub fn list_table(deployments: &[Deployment]) -> String {
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            vec![
                short(&d.id).to_string(),
                d.job_id.clone(),
                d.job_version.to_string(),
                d.status.clone(),
                d.status_description.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "Job ID", "Job Version", "Status", "Description"],
        &rows,
    )
}

async fn status(channel: Conn, id: &str, follow: bool, json: bool) -> CmdResult {
    let d = get(channel.clone(), id).await?;
    if json {
        print!("{}", output::json(&d));
        return Ok(0);
    }
    if follow {
        return monitor(channel, &d.id).await;
    }
    print!("{}", view(&d, true));
    Ok(0)
}

async fn get(channel: Conn, id: &str) -> Result<Deployment, CliError> {
    Ok(DeploymentsClient::new(channel)
        .get(GetDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .map_err(CliError::api("retrieving deployment"))?
        .into_inner())
}

/// The `Deployed` table: one row per task group. `deadline` adds the progress deadline.
pub fn deployed_table(d: &Deployment, deadline: bool) -> String {
    let canaries = d.task_groups.values().any(|g| g.desired_canaries > 0);
    let revert = d.task_groups.values().any(|g| g.auto_revert);
    let mut header = vec!["Task Group"];
    if revert {
        header.push("Auto Revert");
    }
    if canaries {
        header.push("Promoted");
    }
    header.push("Desired");
    if canaries {
        header.push("Canaries");
    }
    header.extend(["Placed", "Healthy", "Unhealthy"]);
    if deadline {
        header.push("Progress Deadline");
    }
    let rows: Vec<Vec<String>> = d
        .task_groups
        .iter()
        .map(|(name, g)| {
            let mut row = vec![name.clone()];
            if revert {
                row.push(g.auto_revert.to_string());
            }
            if canaries {
                row.push(if g.desired_canaries > 0 {
                    g.promoted.to_string()
                } else {
                    "N/A".into()
                });
            }
            row.push(g.desired_total.to_string());
            if canaries {
                row.push(g.desired_canaries.to_string());
            }
            row.extend([
                g.placed_allocs.to_string(),
                g.healthy_allocs.to_string(),
                g.unhealthy_allocs.to_string(),
            ]);
            if deadline {
                row.push(
                    if g.require_progress_by_unix_ms == 0 || !deployment_active(&d.status) {
                        "N/A".into()
                    } else {
                        time(g.require_progress_by_unix_ms)
                    },
                );
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// `deployment status`: the deployment's fields and its `Deployed` table.
pub fn view(d: &Deployment, deadline: bool) -> String {
    let mut out = kv(&[
        ("ID", short(&d.id).to_string()),
        ("Job ID", d.job_id.clone()),
        ("Job Version", d.job_version.to_string()),
        ("Status", d.status.clone()),
        ("Description", d.status_description.clone()),
    ]);
    out.push_str("\nDeployed\n");
    out.push_str(&deployed_table(d, deadline));
    out
}

/// Follows a deployment until it ends, redrawing its view in place on a terminal (one view per
/// change otherwise). Exit code 0 when it succeeded, 1 otherwise.
pub async fn monitor(channel: Conn, id: &str) -> CmdResult {
    let tty = std::io::stdout().is_terminal();
    println!(
        "==> {}: Monitoring deployment {:?}",
        time(output::now_ms()),
        short(id)
    );
    let mut last = String::new();
    let mut drawn_lines = 0;
    loop {
        let d = get(channel.clone(), id).await?;
        let done = !deployment_active(&d.status);
        let mark = match d.status.as_str() {
            DEPLOYMENT_SUCCESSFUL => "✓",
            DEPLOYMENT_RUNNING | DEPLOYMENT_PAUSED => "⠿",
            _ => "!",
        };
        let body = view(&d, true);
        let text = format!(
            "  {mark} Deployment {:?} {}\n\n{}",
            short(&d.id),
            d.status,
            body.lines()
                .map(|l| if l.is_empty() {
                    "\n".to_string()
                } else {
                    format!("    {l}\n")
                })
                .collect::<String>()
        );
        if text != last {
            let mut stdout = std::io::stdout().lock();
            if tty && drawn_lines > 0 {
                // Back to the top of the previous view, and clear to the end of the screen.
                let _ = write!(stdout, "\x1b[{drawn_lines}A\x1b[J");
            }
            let _ = write!(stdout, "{text}");
            let _ = stdout.flush();
            drawn_lines = text.lines().count();
            last = text;
        }
        if done {
            return Ok(if d.status == DEPLOYMENT_SUCCESSFUL {
                0
            } else {
                1
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
