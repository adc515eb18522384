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

/// Values for a job file's variables: `-var name=value` (repeated), `-var-file FILE`
/// (repeated), and `NOMAD_VAR_name` from the environment.
#[derive(clap::Args, Debug, Default)]
pub struct VarArgs {
    /// A variable's value, `name=value` (repeatable; wins over the others).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub var: Vec<String>,
    /// A file of `name = value` lines (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
}

impl VarArgs {
    /// The inputs for `job_file`: its directory for `file()`, the environment, the files and
    /// the `-var`s.
    pub fn inputs(
        &self,
        job_file: &std::path::Path,
    ) -> Result<yurt_types::jobspec::Inputs, CliError> {
        let vars = self
            .var
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| CliError::Other(format!("-var {kv:?} is not name=value")))
            })
            .collect::<Result<_, _>>()?;
        let var_files = self
            .var_file
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .map(|text| (f.display().to_string(), text))
                    .map_err(|e| {
                        CliError::Other(format!("cannot read -var-file {}: {e}", f.display()))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(yurt_types::jobspec::Inputs {
            vars,
            var_files,
            env: yurt_types::jobspec::Inputs::env_vars(),
            base_dir: job_file
                .parent()
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        std::path::Path::new(".")
                    } else {
                        d
                    }
                })
                .map(std::path::Path::to_path_buf),
        })
    }
}

pub fn validate(file: &PathBuf, vars: &VarArgs) -> CmdResult {
    let mut job = super::job::read_job(file, vars)?;
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
