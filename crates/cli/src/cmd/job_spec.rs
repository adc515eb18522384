//! `yurt job validate FILE` (a job file checked as the servers would, without submitting it)
//! and `yurt job inspect JOB` (a registered job in Nomad's job JSON); the warnings that
//! `job run`, `job plan` and `job validate` print for what Yurt does not implement.

use std::path::PathBuf;

use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::{GetJobRequest, JobVersionsRequest};

use super::{connect, CliError, CmdResult};

/// Prints a register or plan answer's warnings, as Nomad does, before what follows.
pub fn print_warnings(warnings: &str) {
    if warnings.trim().is_empty() {
        return;
    }
    println!("Job Warnings:");
    for w in warnings.lines() {
        println!("* {w}");
    }
    println!();
}

pub fn validate(file: &PathBuf) -> CmdResult {
    let mut job = super::job::read_job(file)?;
    yurt_types::jobspec::canonicalize(&mut job);
    print_warnings(&yurt_types::nomad_job::warnings(&job).join("\n"));
    println!("Job validation successful");
    Ok(0)
}

pub async fn inspect(addr: &str, id: &str, version: Option<u64>) -> CmdResult {
    let mut jobs = JobsClient::new(connect(addr).await?);
    let job = match version {
        None => jobs
            .get(GetJobRequest { job_id: id.into() })
            .await
            .map_err(CliError::api("retrieving job"))?
            .into_inner(),
        Some(v) => jobs
            .versions(JobVersionsRequest {
                job_id: id.into(),
                diffs: false,
            })
            .await
            .map_err(CliError::api("retrieving job versions"))?
            .into_inner()
            .versions
            .into_iter()
            .find(|j| j.version == v)
            .ok_or_else(|| CliError::Other(format!("job {id:?} has no version {v}")))?,
    };
    let shown = serde_json::json!({ "Job": yurt_types::nomad_job::to_nomad(&job) });
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    Ok(0)
}
