//! `yurt job run|plan|status|history|deployments|revert|stop` (`validate`, `inspect`: `job_spec`;
//! `scale`, `eval`: `job_scale`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use yurt_proto::v1::evals_client::EvalsClient;
use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::*;
use yurt_types::diff::render;
use yurt_types::status::*;

use super::{connect, CliError, CmdResult, Conn};
use crate::output::{self, kv, short, table, time};

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Register a job from a file and watch its evaluation.
    Run {
        file: PathBuf,
        #[command(flatten)]
        vars: super::job_spec::VarArgs,
        /// Return after registering, without monitoring the evaluation.
        #[arg(long)]
        detach: bool,
        /// Register only if the job's modify index is still this (from `job plan`).
        #[arg(long = "check-index")]
        check_index: Option<u64>,
    },
    /// Show what running a job file would change, without changing anything.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        vars: super::job_spec::VarArgs,
        /// Show unchanged fields too.
        #[arg(long)]
        verbose: bool,
    },
    /// List jobs, or show one job and its allocations.
    Status {
        job: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a job's versions.
    History {
        job: String,
        /// Show the diff between each version and the one before.
        #[arg(short = 'p')]
        diff: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a job's deployments, newest first.
    Deployments {
        job: String,
        /// Only the newest one.
        #[arg(long)]
        latest: bool,
        #[arg(long)]
        json: bool,
    },
    /// Register an earlier version's specification again, as a new version.
    Revert {
        job: String,
        version: u64,
        /// Return after registering, without monitoring.
        #[arg(long)]
        detach: bool,
    },
    /// Write an example job file (`example.nomad.hcl`) that runs on a fresh `-dev` agent.
    Init {
        /// Without the comments.
        #[arg(long)]
        short: bool,
        /// A container (the docker driver) instead of a host process (raw_exec).
        #[arg(long)]
        docker: bool,
        /// Where to write it.
        #[arg(default_value = "example.nomad.hcl")]
        file: PathBuf,
    },
    /// Check a job file without submitting it: its errors, or its warnings.
    Validate {
        file: PathBuf,
        #[command(flatten)]
        vars: super::job_spec::VarArgs,
    },
    /// Show a registered job as Nomad's job JSON (what `POST /v1/jobs` takes back).
    Inspect {
        job: String,
        /// A version other than the latest.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Change a group's count: `job scale JOB [GROUP] COUNT` (a new version of the job).
    Scale {
        job: String,
        /// `[GROUP] COUNT`.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[arg(long)]
        detach: bool,
    },
    /// The recent scaling events of the job's groups, newest first.
    #[command(name = "scaling-events")]
    ScalingEvents {
        job: String,
        /// Also each event's error flag, message and evaluation.
        #[arg(long)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make a new evaluation of the job as it is.
    Eval {
        job: String,
        /// Nomad's flag to reschedule failed allocations now (refused: not implemented).
        #[arg(long = "force-reschedule")]
        force_reschedule: bool,
        #[arg(long)]
        detach: bool,
    },
    /// Stop a job and its allocations.
    Stop {
        job: String,
        #[arg(long)]
        detach: bool,
        /// Remove the job from the servers entirely.
        #[arg(long)]
        purge: bool,
    },
}

pub async fn run(addr: &str, cmd: JobCmd) -> CmdResult {
    match cmd {
        JobCmd::Run {
            file,
            vars,
            detach,
            check_index,
        } => job_run(addr, &file, &vars, detach, check_index).await,
        JobCmd::Plan {
            file,
            vars,
            verbose,
        } => job_plan(addr, &file, &vars, verbose)
            .await
            .map_err(|e| CliError::Plan(Box::new(e))),
        JobCmd::Status { job: None, json } => job_list(addr, json).await,
        JobCmd::Status {
            job: Some(id),
            json,
        } => job_status(addr, &id, json).await,
        JobCmd::History { job, diff, json } => job_history(addr, &job, diff, json).await,
        JobCmd::Stop { job, detach, purge } => job_stop(addr, &job, detach, purge).await,
        JobCmd::Scale { job, args, detach } => {
            super::job_scale::scale(addr, &job, &args, detach).await
        }
        JobCmd::ScalingEvents { job, verbose, json } => {
            super::job_scale::scaling_events(addr, &job, verbose, json).await
        }
        JobCmd::Eval {
            job,
            force_reschedule,
            detach,
        } => super::job_scale::eval(addr, &job, force_reschedule, detach).await,
        JobCmd::Validate { file, vars } => super::job_spec::validate(&file, &vars),
        JobCmd::Init {
            short,
            docker,
            file,
        } => super::job_spec::init(&file, short, docker),
        JobCmd::Inspect { job, version } => super::job_spec::inspect(addr, &job, version).await,
        JobCmd::Deployments { job, latest, json } => {
            job_deployments(addr, &job, latest, json).await
        }
        JobCmd::Revert {
            job,
            version,
            detach,
        } => job_revert(addr, &job, version, detach).await,
    }
}

/// Reads and parses a job file with its variables' values; errors name the file, line and
/// field.
pub(super) fn read_job(file: &PathBuf, vars: &super::job_spec::VarArgs) -> Result<Job, CliError> {
    let name = file.display().to_string();
    let src = std::fs::read_to_string(file)
        .map_err(|e| CliError::Other(format!("cannot read job file {name}: {e}")))?;
    let inputs = vars.inputs(file)?;
    Ok(yurt_types::jobspec::parse_file_with(&name, &src, &inputs)?)
}

async fn job_run(
    addr: &str,
    file: &PathBuf,
    vars: &super::job_spec::VarArgs,
    detach: bool,
    check_index: Option<u64>,
) -> CmdResult {
    let job = read_job(file, vars)?;
    let channel = connect(addr).await?;
    let reply = JobsClient::new(channel.clone())
        .register(RegisterJobRequest {
            job: Some(job),
            enforce_index: check_index.is_some(),
            job_modify_index: check_index.unwrap_or(0),
        })
        .await
        .map_err(CliError::api("submitting job"))?
        .into_inner();
    super::job_spec::print_warnings(&reply.warnings);
    if detach {
        println!("Job registration successful");
        println!("Evaluation ID: {}", reply.eval_id);
        return Ok(0);
    }
    monitor_registration(channel, &reply).await
}

/// A job's deployments, newest first; none from a server of Yurt 0.1, which had none.
async fn deployments_of(
    jobs: &mut JobsClient<Conn>,
    job_id: &str,
) -> Result<Vec<Deployment>, CliError> {
    match jobs
        .deployments(GetJobRequest {
            job_id: job_id.into(),
        })
        .await
    {
        Ok(r) => Ok(r.into_inner().deployments),
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(Vec::new()),
        Err(s) => Err(CliError::api("retrieving deployments")(s)),
    }
}

/// Follows what a registration started: its evaluation, then the deployment it created (if
/// any) until that ends.
pub(super) async fn monitor_registration(channel: Conn, reply: &RegisterJobResponse) -> CmdResult {
    let code = monitor_eval(channel.clone(), &reply.eval_id).await?;
    if code != 0 {
        // Allocations wait for room: the deployment cannot finish before they are placed.
        return Ok(code);
    }
    let eval = EvalsClient::new(channel.clone())
        .get(GetEvalRequest {
            eval_id: reply.eval_id.clone(),
        })
        .await
        .map_err(CliError::api("reading evaluation"))?
        .into_inner();
    let deployments = deployments_of(&mut JobsClient::new(channel.clone()), &eval.job_id).await?;
    match own_deployment(&deployments, reply) {
        Some(d) => super::deployment::monitor(channel, &d.id).await,
        None => Ok(0),
    }
}

/// The deployment a registration's version started, not a later one (an auto-revert's, say),
/// and none when it started none (the same spec again).
fn own_deployment<'d>(
    deployments: &'d [Deployment],
    reply: &RegisterJobResponse,
) -> Option<&'d Deployment> {
    deployments
        .iter()
        .find(|d| d.job_modify_index == reply.job_modify_index && d.create_index >= reply.index)
}

/// The allocations an evaluation's monitor lists, each with whether the evaluation created it:
/// those its plan created (written at the evaluation's own index, whatever later evaluations
/// did to them since), and those it updated and still leaves running.
fn eval_allocations<'a>(e: &Evaluation, allocs: &'a [Allocation]) -> Vec<(&'a Allocation, bool)> {
    allocs
        .iter()
        .filter_map(|a| {
            let created = a.create_index == e.modify_index;
            let kept = a.eval_id == e.id && a.desired_status == ALLOC_DESIRED_RUN;
            (created || kept).then_some((a, created))
        })
        .collect()
}

/// Follows an evaluation until it is no longer pending, printing what it did, like Nomad's
/// monitor. Returns 0 when every allocation was placed, 2 otherwise (as Nomad does).
pub async fn monitor_eval(channel: Conn, eval_id: &str) -> CmdResult {
    let now = || time(output::now_ms());
    println!("==> {}: Monitoring evaluation {:?}", now(), short(eval_id));
    let mut evals = EvalsClient::new(channel.clone());
    let mut jobs = JobsClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed_trigger = false;
    loop {
        let e = evals
            .get(GetEvalRequest {
                eval_id: eval_id.into(),
            })
            .await
            .map_err(CliError::api("reading evaluation"))?
            .into_inner();
        if !printed_trigger {
            println!("    {}: Evaluation triggered by job {:?}", now(), e.job_id);
            printed_trigger = true;
        }
        if e.status != EVAL_PENDING {
            let allocs = jobs
                .allocations(GetJobRequest {
                    job_id: e.job_id.clone(),
                })
                .await
                .map(|r| r.into_inner().allocs)
                .unwrap_or_default();
            for (a, created) in eval_allocations(&e, &allocs) {
                let verb = if created { "created" } else { "modified" };
                println!(
                    "    {}: Allocation {:?} {verb}: node {:?}, group {:?}",
                    now(),
                    short(&a.id),
                    short(&a.node_id),
                    a.task_group
                );
            }
            println!(
                "    {}: Evaluation status changed: \"pending\" -> {:?}",
                now(),
                e.status
            );
            if e.failed_tg_allocs.is_empty() {
                println!(
                    "==> {}: Evaluation {:?} finished with status {:?}",
                    now(),
                    short(&e.id),
                    e.status
                );
                return Ok(0);
            }
            println!(
                "==> {}: Evaluation {:?} finished with status {:?} but failed to place all allocations:",
                now(),
                short(&e.id),
                e.status
            );
            print!(
                "{}",
                placement_failures(&e.failed_tg_allocs, &e.queued_allocations, "    ")
            );
            if !e.blocked_eval.is_empty() {
                println!(
                    "    Evaluation {:?} waiting for additional capacity to place remainder",
                    short(&e.blocked_eval)
                );
            }
            return Ok(2);
        }
        if Instant::now() > deadline {
            return Err(CliError::Other(format!(
                "evaluation {} is still {:?} after 60s; check `yurt job status {}`",
                short(&e.id),
                e.status,
                e.job_id
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn placement_failures(
    failed: &BTreeMap<String, AllocMetric>,
    queued: &BTreeMap<String, u32>,
    indent: &str,
) -> String {
    let mut out = String::new();
    for (group, m) in failed {
        let n = queued.get(group).copied().unwrap_or(1);
        let s = if n == 1 { "" } else { "s" };
        out.push_str(&format!(
            "{indent}Task Group {group:?} (failed to place {n} allocation{s}):\n"
        ));
        if m.nodes_evaluated == 0 {
            out.push_str(&format!(
                "{indent}  * No nodes were eligible for evaluation\n"
            ));
        }
        for (why, k) in &m.constraint_filtered {
            out.push_str(&format!(
                "{indent}  * Constraint {why:?}: {k} nodes excluded by filter\n"
            ));
        }
        if m.nodes_exhausted > 0 {
            out.push_str(&format!(
                "{indent}  * Resources exhausted on {} nodes\n",
                m.nodes_exhausted
            ));
        }
        for (dim, k) in &m.dimension_exhausted {
            out.push_str(&format!(
                "{indent}  * Dimension {dim:?} exhausted on {k} nodes\n"
            ));
        }
    }
    out
}

async fn job_plan(
    addr: &str,
    file: &PathBuf,
    vars: &super::job_spec::VarArgs,
    verbose: bool,
) -> CmdResult {
    let job = read_job(file, vars)?;
    let channel = connect(addr).await?;
    let plan = JobsClient::new(channel)
        .plan(PlanJobRequest { job: Some(job) })
        .await
        .map_err(CliError::api("during plan"))?
        .into_inner();
    let diff = plan.diff.unwrap_or_default();
    print!("{}", render(&diff, verbose));
    println!();
    super::job_spec::print_warnings(&plan.warnings);
    println!("Scheduler dry-run:");
    if plan.failed_tg_allocs.is_empty() {
        println!("- All tasks successfully allocated.");
    } else {
        println!("- WARNING: Failed to place all allocations.");
        let queued = plan
            .failed_tg_allocs
            .keys()
            .map(|g| {
                let d = plan.desired_tg_updates.get(g).cloned().unwrap_or_default();
                let wanted = d.place + d.destructive_update;
                (g.clone(), wanted.max(1) as u32)
            })
            .collect();
        print!(
            "{}",
            placement_failures(&plan.failed_tg_allocs, &queued, "  ")
        );
    }
    let n = plan.job_modify_index;
    println!();
    println!("Job Modify Index: {n}");
    println!("To submit the job with version verification run:");
    println!();
    println!("yurt job run -check-index {n} {}", file.display());
    println!();
    println!("With -check-index, the job is registered only if its modify index on the servers");
    println!("is still {n}. If it has changed, someone else has modified the job since this plan,");
    println!("and the plan above may no longer hold.");
    let changes = plan
        .desired_tg_updates
        .values()
        .any(|d| d.place + d.stop + d.destructive_update + d.migrate + d.canary > 0);
    Ok(if changes { 1 } else { 0 })
}

async fn job_list(addr: &str, json: bool) -> CmdResult {
    let jobs = JobsClient::new(connect(addr).await?)
        .list(ListJobsRequest::default())
        .await
        .map_err(CliError::api("querying jobs"))?
        .into_inner();
    if json {
        print!("{}", output::json(&jobs));
        return Ok(0);
    }
    if jobs.jobs.is_empty() {
        println!("No running jobs");
        return Ok(0);
    }
    // Across namespaces (`-namespace '*'`), each job's namespace is shown too, as Nomad does.
    let all = super::all_namespaces();
    let rows: Vec<Vec<String>> = jobs
        .jobs
        .iter()
        .map(|j| {
            let mut row = vec![
                j.id.clone(),
                j.r#type.clone(),
                j.priority.to_string(),
                j.status.clone(),
                time(j.submit_time_unix_ms),
            ];
            if all {
                row.insert(1, j.namespace.clone());
            }
            row
        })
        .collect();
    let header: &[&str] = if all {
        &[
            "ID",
            "Namespace",
            "Type",
            "Priority",
            "Status",
            "Submit Date",
        ]
    } else {
        &["ID", "Type", "Priority", "Status", "Submit Date"]
    };
    print!("{}", table(header, &rows));
    Ok(0)
}

async fn job_status(addr: &str, id: &str, json: bool) -> CmdResult {
    let channel = connect(addr).await?;
    let mut jobs = JobsClient::new(channel);
    let job = jobs
        .get(GetJobRequest { job_id: id.into() })
        .await
        .map_err(CliError::api("querying job"))?
        .into_inner();
    let allocs = jobs
        .allocations(GetJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .map_err(CliError::api("querying job allocations"))?
        .into_inner()
        .allocs;
    let evals = jobs
        .evaluations(GetJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .map_err(CliError::api("querying job evaluations"))?
        .into_inner()
        .evals;
    let failure = yurt_core::evals::placement_failure(&evals);
    let latest = deployments_of(&mut jobs, &job.id).await?.into_iter().next();
    if json {
        #[derive(serde::Serialize)]
        struct Status<'a> {
            job: &'a Job,
            allocations: &'a [Allocation],
            latest_deployment: &'a Option<Deployment>,
        }
        print!(
            "{}",
            output::json(&Status {
                job: &job,
                allocations: &allocs,
                latest_deployment: &latest,
            })
        );
        return Ok(0);
    }
    let mut out = kv(&[
        ("ID", job.id.clone()),
        ("Name", job.name.clone()),
        ("Submit Date", time(job.submit_time_unix_ms)),
        ("Type", job.r#type.clone()),
        ("Priority", job.priority.to_string()),
        ("Datacenters", job.datacenters.join(",")),
        ("Namespace", job.namespace.clone()),
        (
            "Status",
            if job.stop {
                format!("{} (stopped)", job.status)
            } else {
                job.status.clone()
            },
        ),
        // As Nomad shows them: Yurt has neither periodic nor parameterized jobs yet.
        ("Periodic", "false".into()),
        ("Parameterized", "false".into()),
    ]);
    out.push_str("\nSummary\n");
    let rows: Vec<Vec<String>> = job
        .task_groups
        .iter()
        .map(|g| {
            let count = |s: &str| {
                allocs
                    .iter()
                    .filter(|a| a.task_group == g.name && a.client_status == s)
                    .count()
                    .to_string()
            };
            let starting = allocs
                .iter()
                .filter(|a| {
                    a.task_group == g.name
                        && a.client_status == ALLOC_PENDING
                        && a.desired_status == ALLOC_DESIRED_RUN
                })
                .count();
            let queued = failure
                .and_then(|e| e.queued_allocations.get(&g.name))
                .copied()
                .unwrap_or(0);
            vec![
                g.name.clone(),
                queued.to_string(),
                starting.to_string(),
                count(ALLOC_RUNNING),
                count(ALLOC_FAILED),
                count(ALLOC_COMPLETE),
                count(ALLOC_LOST),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Task Group",
            "Queued",
            "Starting",
            "Running",
            "Failed",
            "Complete",
            "Lost",
        ],
        &rows,
    ));
    if let Some(e) = failure {
        out.push_str("\nPlacement Failure\n");
        out.push_str(&placement_failures(
            &e.failed_tg_allocs,
            &e.queued_allocations,
            "",
        ));
    }
    if let Some(d) = &latest {
        out.push_str("\nLatest Deployment\n");
        out.push_str(&kv(&[
            ("ID", short(&d.id).to_string()),
            ("Status", d.status.clone()),
            ("Description", d.status_description.clone()),
        ]));
        out.push_str("\nDeployed\n");
        out.push_str(&super::deployment::deployed_table(d, false));
    }
    out.push_str("\nAllocations\n");
    if allocs.is_empty() {
        out.push_str("No allocations placed\n");
    } else {
        let now = output::now_ms();
        let mut sorted = allocs.clone();
        sorted.sort_by_key(|a| std::cmp::Reverse(a.create_index));
        let rows: Vec<Vec<String>> = sorted
            .iter()
            .map(|a| {
                vec![
                    short(&a.id).to_string(),
                    short(&a.node_id).to_string(),
                    a.task_group.clone(),
                    a.job.as_ref().map_or(0, |j| j.version).to_string(),
                    a.desired_status.clone(),
                    a.client_status.clone(),
                    output::ago(a.create_time_unix_ms, now),
                    output::ago(a.modify_time_unix_ms, now),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ID",
                "Node ID",
                "Task Group",
                "Version",
                "Desired",
                "Status",
                "Created",
                "Modified",
            ],
            &rows,
        ));
    }
    print!("{out}");
    Ok(0)
}

async fn job_history(addr: &str, id: &str, diff: bool, json: bool) -> CmdResult {
    let reply = JobsClient::new(connect(addr).await?)
        .versions(JobVersionsRequest {
            job_id: id.into(),
            diffs: diff,
        })
        .await
        .map_err(CliError::api("retrieving job versions"))?
        .into_inner();
    if json {
        print!("{}", output::json(&reply));
        return Ok(0);
    }
    let mut blocks = Vec::new();
    for (i, v) in reply.versions.iter().enumerate() {
        let mut block = kv(&[
            ("Version", v.version.to_string()),
            ("Stable", v.stable.to_string()),
            ("Submit Date", time(v.submit_time_unix_ms)),
        ]);
        if diff {
            if let Some(d) = reply.diffs.get(i) {
                block.push_str("Diff        =\n");
                block.push_str(&render(d, false));
            }
        }
        blocks.push(block);
    }
    print!("{}", blocks.join("\n"));
    Ok(0)
}

async fn job_deployments(addr: &str, id: &str, latest: bool, json: bool) -> CmdResult {
    let mut deployments = JobsClient::new(connect(addr).await?)
        .deployments(GetJobRequest { job_id: id.into() })
        .await
        .map_err(CliError::api("retrieving deployments"))?
        .into_inner()
        .deployments;
    if latest {
        deployments.truncate(1);
    }
    if json {
        print!("{}", output::json(&deployments));
        return Ok(0);
    }
    if deployments.is_empty() {
        println!("No deployments found");
        return Ok(0);
    }
    print!("{}", super::deployment::list_table(&deployments));
    Ok(0)
}

async fn job_revert(addr: &str, id: &str, version: u64, detach: bool) -> CmdResult {
    let channel = connect(addr).await?;
    let reply = JobsClient::new(channel.clone())
        .revert(RevertJobRequest {
            job_id: id.into(),
            version,
        })
        .await
        .map_err(CliError::api("reverting job"))?
        .into_inner();
    if detach {
        println!("Evaluation ID: {}", reply.eval_id);
        return Ok(0);
    }
    monitor_registration(channel, &reply).await
}

async fn job_stop(addr: &str, id: &str, detach: bool, purge: bool) -> CmdResult {
    let channel = connect(addr).await?;
    let reply = JobsClient::new(channel.clone())
        .deregister(DeregisterJobRequest {
            job_id: id.into(),
            purge,
        })
        .await
        .map_err(CliError::api("deregistering job"))?
        .into_inner();
    if detach {
        println!("{}", reply.eval_id);
        return Ok(0);
    }
    monitor_eval(channel, &reply.eval_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_run_follows_its_own_version_s_deployment_not_a_later_revert() {
        let d = |id: &str, job_modify_index: u64, create_index: u64| Deployment {
            id: id.into(),
            job_modify_index,
            create_index,
            ..Default::default()
        };
        // Newest first: the auto-revert's (version 2, registered at 30), then version 1's.
        let list = [d("revert", 30, 31), d("v1", 20, 21), d("v0", 10, 11)];
        let reply = |job_modify_index, index| RegisterJobResponse {
            job_modify_index,
            index,
            ..Default::default()
        };
        assert_eq!(own_deployment(&list, &reply(20, 20)).unwrap().id, "v1");
        assert_eq!(own_deployment(&list, &reply(30, 30)).unwrap().id, "revert");
        // The same spec again: a new evaluation, no new deployment.
        assert!(own_deployment(&list, &reply(20, 40)).is_none());
    }

    #[test]
    fn an_evaluation_lists_what_it_created_even_once_later_ones_stopped_it() {
        let e = Evaluation {
            id: "e1".into(),
            modify_index: 20,
            ..Default::default()
        };
        let a = |id: &str, eval: &str, create_index, desired: &str| Allocation {
            id: id.into(),
            eval_id: eval.into(),
            create_index,
            desired_status: desired.into(),
            ..Default::default()
        };
        let allocs = [
            // Created by e1, since stopped by a later evaluation (an auto-revert's).
            a("new", "e9", 20, ALLOC_DESIRED_STOP),
            // Updated in place by e1.
            a("kept", "e1", 5, ALLOC_DESIRED_RUN),
            // Stopped by e1 (a destructive update): not listed.
            a("old", "e1", 5, ALLOC_DESIRED_STOP),
            a("other", "e2", 7, ALLOC_DESIRED_RUN),
        ];
        let listed: Vec<(&str, bool)> = eval_allocations(&e, &allocs)
            .into_iter()
            .map(|(a, created)| (a.id.as_str(), created))
            .collect();
        assert_eq!(listed, vec![("new", true), ("kept", false)]);
    }
}
