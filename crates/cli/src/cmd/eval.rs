//! `yurt eval list|status`.

use clap::Subcommand;
use yurt_proto::v1::evals_client::EvalsClient;
use yurt_proto::v1::{Evaluation, GetEvalRequest, ListEvalsRequest};

use super::job::placement_failures;
use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, or_none, short, table, time};

#[derive(Subcommand, Debug)]
pub enum EvalCmd {
    /// List evaluations, newest first.
    List {
        /// Only this job's.
        #[arg(long)]
        job: Option<String>,
        /// Only those with this status (pending, blocked, complete, failed, canceled).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one evaluation: what triggered it, its status and placement failures.
    Status {
        eval: String,
        #[arg(long)]
        json: bool,
    },
}

fn failures(e: &Evaluation) -> bool {
    !e.failed_tg_allocs.is_empty()
}

pub async fn run(addr: &str, cmd: EvalCmd) -> CmdResult {
    let mut evals = EvalsClient::new(connect(addr).await?);
    match cmd {
        EvalCmd::List { job, status, json } => {
            let list = evals
                .list(ListEvalsRequest {
                    job_id: job.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                })
                .await
                .map_err(CliError::api("listing evaluations"))?
                .into_inner()
                .evals;
            if json {
                print!("{}", output::json(&list));
                return Ok(0);
            }
            if list.is_empty() {
                println!("No evaluations found");
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|e| {
                    vec![
                        short(&e.id).to_string(),
                        e.priority.to_string(),
                        e.triggered_by.clone(),
                        e.job_id.clone(),
                        or_none(short(&e.node_id)),
                        e.status.clone(),
                        failures(e).to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "Priority",
                        "Triggered By",
                        "Job ID",
                        "Node ID",
                        "Status",
                        "Placement Failures"
                    ],
                    &rows
                )
            );
            Ok(0)
        }
        EvalCmd::Status { eval, json } => {
            let e = evals
                .get(GetEvalRequest { eval_id: eval })
                .await
                .map_err(CliError::api("querying evaluation"))?
                .into_inner();
            if json {
                print!("{}", output::json(&e));
                return Ok(0);
            }
            let mut out = kv(&[
                ("ID", e.id.clone()),
                ("Create Time", time(e.create_time_unix_ms)),
                ("Modify Time", time(e.modify_time_unix_ms)),
                ("Status", e.status.clone()),
                ("Status Description", or_none(&e.status_description)),
                ("Type", e.r#type.clone()),
                ("TriggeredBy", e.triggered_by.clone()),
                ("Job ID", e.job_id.clone()),
                ("Node ID", or_none(&e.node_id)),
                ("Priority", e.priority.to_string()),
                ("Placement Failures", failures(&e).to_string()),
                ("Previous Eval", or_none(&e.previous_eval)),
                ("Blocked Eval", or_none(&e.blocked_eval)),
            ]);
            if failures(&e) {
                out.push_str("\n==> Failed Placements\n");
                out.push_str(&placement_failures(
                    &e.failed_tg_allocs,
                    &e.queued_allocations,
                    "",
                ));
            }
            print!("{out}");
            Ok(0)
        }
    }
}
