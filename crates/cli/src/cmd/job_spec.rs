//! `yurt job init` (an example job file), `yurt job validate FILE` (a job file checked as the
//! servers would, without submitting it) and `yurt job inspect JOB` (a registered job in
//! Nomad's job JSON); `-var`/`-var-file`; the warnings that
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
        let dir = match job_file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let read_file: yurt_types::jobspec::FileReader = std::sync::Arc::new(move |name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        });
        Ok(yurt_types::jobspec::Inputs {
            vars,
            var_files,
            env: std::env::vars()
                .filter_map(|(k, v)| Some((k.strip_prefix("NOMAD_VAR_")?.to_string(), v)))
                .collect(),
            read_file: Some(read_file),
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

/// The example job `job init` writes: a host process under raw_exec (a `-dev` agent enables
/// it), with a variable, a rolling update and a restart policy.
const EXAMPLE: &str = r#"# An example job: two instances of a small service that says hello every ten seconds.
# Run it on a dev agent with `yurt job run example.nomad.hcl`, then try
# `yurt job plan -var greeting=hi example.nomad.hcl` to see a rolling update planned.

# A value you can change without editing the file: -var greeting=..., or NOMAD_VAR_greeting.
variable "greeting" {
  type        = string
  default     = "hello"
  description = "What each instance says"
}

job "example" {
  # service (runs until stopped), batch (runs to completion) or system (one per node)
  type = "service"

  group "hello" {
    count = 2

    # Replace one allocation at a time; the next once the new one has run for 5s.
    update {
      max_parallel     = 1
      min_healthy_time = "5s"
      healthy_deadline = "1m"
    }

    # A task that exits is restarted on its node up to twice in 5m, 5s apart.
    restart {
      attempts = 2
      interval = "5m"
      delay    = "5s"
      mode     = "fail"
    }

    task "say" {
      # A host process; `exec` isolates it, `docker` runs a container.
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"${var.greeting} from ${NOMAD_ALLOC_ID}\"; sleep 10; done"]
      }

      resources {
        cpu    = 50 # MHz
        memory = 32 # MB
      }
    }
  }
}
"#;

/// The docker variant of [`EXAMPLE`]: the README's docker example.
const EXAMPLE_DOCKER: &str = include_str!("../../../../examples/docker.hcl");

/// `job init`: the example, without comments when `short`.
pub fn init(file: &PathBuf, short: bool, docker: bool) -> CmdResult {
    if file.exists() {
        return Err(CliError::Other(format!(
            "{} already exists: remove it or name another file",
            file.display()
        )));
    }
    let text = if docker { EXAMPLE_DOCKER } else { EXAMPLE };
    let text = if short {
        let mut out = String::new();
        for line in text.lines() {
            let code = match line.find(" #") {
                Some(i) if !line.trim_start().starts_with('#') => line[..i].trim_end(),
                _ => line,
            };
            if code.trim_start().starts_with('#') {
                continue;
            }
            if code.is_empty() && out.ends_with("\n\n") {
                continue;
            }
            out.push_str(code);
            out.push('\n');
        }
        out.trim_start().to_string()
    } else {
        text.to_string()
    };
    std::fs::write(file, text)
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", file.display())))?;
    println!("Example job file written to {}", file.display());
    Ok(0)
}
