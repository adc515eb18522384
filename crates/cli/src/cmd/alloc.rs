//! `yurt alloc status|logs|exec|stop|signal|restart` (`fs`: `alloc_fs`).

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use yurt_proto::v1::allocs_client::AllocsClient;
use yurt_proto::v1::{
    AllocExecRequest, AllocRestartRequest, AllocSignalRequest, AllocStatsRequest, AllocStopRequest,
    GetAllocRequest, LogsRequest, ResourceUsage,
};

use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, or_none, table, time};

#[derive(Subcommand, Debug)]
pub enum AllocCmd {
    /// Send a signal to an allocation's running tasks, or to TASK.
    Signal {
        /// The signal (`SIGHUP`, `HUP`) [default: SIGKILL].
        #[arg(short = 's', long = "signal", default_value = "")]
        signal: String,
        alloc: String,
        task: Option<String>,
    },
    /// List a directory of the allocation's, or print a file (`-stat`: what the path is).
    Fs {
        #[arg(long)]
        stat: bool,
        alloc: String,
        /// Inside the allocation directory (`/`: the directory itself).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Restart an allocation's running tasks in place, or TASK (not counted against its
    /// restart policy).
    Restart { alloc: String, task: Option<String> },
    /// Stop an allocation and have the scheduler place it again.
    Stop {
        alloc: String,
        /// Return once asked, without waiting for the allocation to stop.
        #[arg(long)]
        detach: bool,
    },
    /// Show an allocation: its status, tasks and recent events.
    Status {
        alloc: String,
        #[arg(long)]
        json: bool,
        /// Also show what each task uses now (memory and CPU, from its cgroup); with -json,
        /// print only that.
        #[arg(long)]
        stats: bool,
    },
    /// Run a command inside a running task (its root, user and namespaces) and print its
    /// output; exits with the command's exit code. Not interactive: no terminal, no stdin.
    Exec {
        /// The task (default: the allocation's only task).
        #[arg(long)]
        task: Option<String>,
        /// Kill the command after this long (at most 10m).
        #[arg(long, default_value = "60s")]
        timeout: String,
        alloc: String,
        /// The program and its arguments.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Print a task's stdout (or stderr).
    Logs {
        alloc: String,
        task: Option<String>,
        #[arg(long)]
        stderr: bool,
        /// Keep printing new output until the task ends.
        #[arg(short = 'f')]
        follow: bool,
        /// Start from the end: print only the last -n lines.
        #[arg(long)]
        tail: bool,
        /// With -tail, how many lines.
        #[arg(short = 'n', default_value_t = 10)]
        lines: usize,
    },
}

pub async fn run(addr: &str, cmd: AllocCmd) -> CmdResult {
    let mut allocs = AllocsClient::new(connect(addr).await?);
    match cmd {
        AllocCmd::Status { alloc, json, stats } => {
            let a = allocs
                .get(GetAllocRequest { alloc_id: alloc })
                .await
                .map_err(CliError::api("querying allocation"))?
                .into_inner();
            let usage = if stats {
                let u = allocs
                    .stats(AllocStatsRequest {
                        alloc_id: a.id.clone(),
                    })
                    .await
                    .map_err(CliError::api("querying the allocation's usage"))?
                    .into_inner();
                if json {
                    print!("{}", output::json(&u));
                    return Ok(0);
                }
                Some(u)
            } else {
                None
            };
            if json {
                print!("{}", output::json(&a));
                return Ok(0);
            }
            let mut fields = vec![
                ("ID", a.id.clone()),
                ("Eval ID", output::short(&a.eval_id).to_string()),
                ("Name", a.name.clone()),
                ("Node ID", output::short(&a.node_id).to_string()),
                ("Node Name", a.node_name.clone()),
                ("Job ID", a.job_id.clone()),
                (
                    "Job Version",
                    a.job.as_ref().map_or(0, |j| j.version).to_string(),
                ),
                ("Client Status", a.client_status.clone()),
                ("Client Description", or_none(&a.client_description)),
                ("Desired Status", a.desired_status.clone()),
                ("Desired Description", or_none(&a.desired_description)),
                ("Created", time(a.create_time_unix_ms)),
                ("Modified", time(a.modify_time_unix_ms)),
            ];
            if !a.next_allocation.is_empty() {
                let next = output::short(&a.next_allocation).to_string();
                fields.push(("Replacement Alloc ID", next));
            }
            if !a.deployment_id.is_empty() {
                fields.push(("Deployment ID", output::short(&a.deployment_id).to_string()));
            }
            // As Nomad: `healthy`, `unhealthy`, or `unset` while the client has not decided.
            if !a.deployment_id.is_empty() || a.deployment_status.is_some() {
                let health = match a.deployment_status.as_ref().and_then(|d| d.healthy) {
                    Some(true) => "healthy",
                    Some(false) => "unhealthy",
                    None => "unset",
                };
                fields.push(("Deployment Health", health.to_string()));
            }
            let mut out = kv(&fields);
            if !a.ports.is_empty() {
                out.push_str(&addresses(addr, &a).await);
            }
            let tasks = a
                .job
                .as_ref()
                .and_then(|j| j.task_groups.iter().find(|g| g.name == a.task_group))
                .map(|g| g.tasks.clone())
                .unwrap_or_default();
            for t in tasks {
                let st = a.task_states.get(&t.name).cloned().unwrap_or_default();
                let state = if st.state.is_empty() {
                    "pending".to_string()
                } else {
                    st.state.clone()
                };
                out.push_str(&format!("\nTask {:?} is {:?}\n", t.name, state));
                let r = t.resources.unwrap_or_default();
                out.push_str("Task Resources:\n");
                out.push_str(&table(
                    &["CPU", "Memory"],
                    &[vec![
                        format!("{} MHz", r.cpu),
                        format!("{} MiB", r.memory_mb),
                    ]],
                ));
                let task_usage = usage
                    .as_ref()
                    .and_then(|u| u.tasks.get(&t.name))
                    .and_then(|u| u.resource_usage.clone());
                if let Some(ru) = task_usage {
                    out.push_str(&usage_tables(&ru));
                }
                out.push_str("\nRecent Events:\n");
                let rows: Vec<Vec<String>> = st
                    .events
                    .iter()
                    .rev()
                    .take(10)
                    .map(|e| vec![time(e.time_unix_ms), e.r#type.clone(), e.message.clone()])
                    .collect();
                out.push_str(&table(&["Time", "Type", "Description"], &rows));
            }
            print!("{out}");
            Ok(0)
        }
        AllocCmd::Signal {
            signal,
            alloc,
            task,
        } => {
            allocs
                .signal(AllocSignalRequest {
                    alloc_id: alloc,
                    task: task.unwrap_or_default(),
                    signal,
                })
                .await
                .map_err(CliError::api("signalling allocation"))?;
            Ok(0)
        }
        AllocCmd::Fs { stat, alloc, path } => super::alloc_fs::run(addr, &alloc, &path, stat).await,
        AllocCmd::Restart { alloc, task } => {
            allocs
                .restart(AllocRestartRequest {
                    alloc_id: alloc,
                    task: task.unwrap_or_default(),
                })
                .await
                .map_err(CliError::api("restarting allocation"))?;
            Ok(0)
        }
        AllocCmd::Stop { alloc, detach } => {
            let r = allocs
                .stop(AllocStopRequest {
                    alloc_id: alloc.clone(),
                })
                .await
                .map_err(CliError::api("stopping the allocation"))?
                .into_inner();
            println!("Evaluation ID: {}", r.eval_id);
            if detach {
                return Ok(0);
            }
            // Until the allocation is told to stop (its replacement is the scheduler's).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let a = allocs
                    .get(GetAllocRequest {
                        alloc_id: alloc.clone(),
                    })
                    .await
                    .map_err(CliError::api("retrieving the allocation"))?
                    .into_inner();
                if a.desired_status != yurt_types::status::ALLOC_DESIRED_RUN {
                    println!(
                        "Allocation {:?} stopped: {}",
                        output::short(&a.id),
                        a.desired_description
                    );
                    return Ok(0);
                }
                if std::time::Instant::now() > deadline {
                    return Err(CliError::Other(format!(
                        "allocation {:?} was not stopped within 60s; its evaluation is {}",
                        output::short(&a.id),
                        r.eval_id
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        AllocCmd::Exec {
            task,
            timeout,
            alloc,
            command,
        } => {
            let timeout = yurt_types::duration::parse(&timeout)
                .map_err(|e| CliError::Other(format!("-timeout: {e}")))?;
            let r = allocs
                .exec(AllocExecRequest {
                    alloc_id: alloc,
                    task: task.unwrap_or_default(),
                    command,
                    timeout_ms: timeout.as_millis() as u64,
                })
                .await
                .map_err(CliError::api("running the command"))?
                .into_inner();
            let mut out = std::io::stdout();
            let _ = out.write_all(&r.stdout);
            let _ = out.flush();
            let mut err = std::io::stderr();
            let _ = err.write_all(&r.stderr);
            if r.truncated {
                let _ = writeln!(err, "(output cut short: at most 1 MiB of each stream)");
            }
            Ok(r.exit_code.clamp(0, 255) as u8)
        }
        AllocCmd::Logs {
            alloc,
            task,
            stderr,
            follow,
            tail,
            lines,
        } => {
            let mut offset = 0;
            let mut stdout = std::io::stdout();
            if tail {
                // The last 64 KiB hold the last lines of any sane log; print the last `lines`.
                let r = allocs
                    .logs(LogsRequest {
                        alloc_id: alloc.clone(),
                        task: task.clone().unwrap_or_default(),
                        stderr,
                        offset: 64 * 1024,
                        limit: 64 * 1024,
                        from_end: true,
                    })
                    .await
                    .map_err(CliError::api("reading logs"))?
                    .into_inner();
                let text = String::from_utf8_lossy(&r.data);
                let all: Vec<&str> = text.split_inclusive('\n').collect();
                let _ =
                    stdout.write_all(all[all.len().saturating_sub(lines)..].concat().as_bytes());
                let _ = stdout.flush();
                offset = r.next_offset;
                if !follow || r.finished {
                    return Ok(0);
                }
            }
            loop {
                let r = allocs
                    .logs(LogsRequest {
                        alloc_id: alloc.clone(),
                        task: task.clone().unwrap_or_default(),
                        stderr,
                        offset,
                        limit: 0,
                        from_end: false,
                    })
                    .await
                    .map_err(CliError::api("reading logs"))?
                    .into_inner();
                let _ = stdout.write_all(&r.data);
                let _ = stdout.flush();
                let got = r.data.len();
                offset = r.next_offset;
                if got > 0 {
                    continue;
                }
                if !follow || r.finished {
                    return Ok(0);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// A task's usage as Nomad's `alloc status -stats` shows it: memory, then CPU.
fn usage_tables(ru: &ResourceUsage) -> String {
    let m = ru.memory_stats.clone().unwrap_or_default();
    let c = ru.cpu_stats.clone().unwrap_or_default();
    let mut out = String::from("\nMemory Stats\n");
    out.push_str(&table(
        &["Cache", "Max Usage", "RSS", "Usage"],
        &[vec![
            output::bytes(m.cache),
            output::bytes(m.max_usage),
            output::bytes(m.rss),
            output::bytes(m.usage),
        ]],
    ));
    out.push_str("\nCPU Stats\n");
    out.push_str(&table(
        &[
            "Percent",
            "Throttled Periods",
            "Throttled Time",
            "Total Time",
        ],
        &[vec![
            format!("{:.2}%", c.percent),
            c.throttled_periods.to_string(),
            yurt_types::duration::format_ms(c.throttled_time / 1_000_000),
            yurt_types::duration::format_ms(c.total_time / 1_000_000),
        ]],
    ));
    out
}

/// `Allocation Addresses`, as Nomad shows them: each port's label, whether it was picked by the
/// scheduler, and where it is reached (the node's address; `-> to` when mapped).
async fn addresses(addr: &str, a: &yurt_proto::v1::Allocation) -> String {
    let host = match connect(addr).await {
        Ok(c) => yurt_proto::v1::nodes_client::NodesClient::new(c)
            .get(yurt_proto::v1::GetNodeRequest {
                node_id: a.node_id.clone(),
                ..Default::default()
            })
            .await
            .ok()
            .map(|n| n.into_inner().rpc_addr)
            .and_then(|r| r.rsplit_once(':').map(|(h, _)| h.to_string()))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let reserved: Vec<String> = a
        .job
        .as_ref()
        .and_then(|j| j.task_groups.iter().find(|g| g.name == a.task_group))
        .map(|g| {
            g.networks
                .iter()
                .flat_map(|n| n.reserved_ports.iter().map(|p| p.label.clone()))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = a
        .ports
        .iter()
        .map(|p| {
            let dynamic = if reserved.contains(&p.label) {
                "no"
            } else {
                "yes"
            };
            let mut at = format!("{host}:{}", p.value);
            if p.to > 0 && p.to != p.value {
                at.push_str(&format!(" -> {}", p.to));
            }
            vec![p.label.clone(), dynamic.to_string(), at]
        })
        .collect();
    format!(
        "\nAllocation Addresses:\n{}",
        table(&["Label", "Dynamic", "Address"], &rows)
    )
}
