//! `yurt job scale JOB [GROUP] COUNT`, `yurt job scaling-events JOB` and `yurt job eval JOB`:
//! a group's count changed (a new version of the job, with its scaling event), the groups'
//! recent scaling events, and a new evaluation of the job as it is; scale and eval are
//! followed as `job run` follows its evaluation unless `-detach`.

use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::{GetJobRequest, JobEvaluateRequest, JobScaleRequest, ScalingEvent};

use super::{connect, CliError, CmdResult};
use crate::output;

/// `job scale`: GROUP may be left out when the job has one group.
pub async fn scale(addr: &str, job: &str, args: &[String], detach: bool) -> CmdResult {
    let channel = connect(addr).await?;
    let mut jobs = JobsClient::new(channel.clone());
    let (group, count) = match args {
        [count] => {
            let j = jobs
                .get(GetJobRequest { job_id: job.into() })
                .await
                .map_err(CliError::api("reading job"))?
                .into_inner();
            match j.task_groups.as_slice() {
                [one] => (one.name.clone(), count),
                groups => {
                    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                    return Err(CliError::Other(format!(
                        "job {job:?} has {} groups ({}): name the one to scale",
                        groups.len(),
                        names.join(", ")
                    )));
                }
            }
        }
        [group, count] => (group.clone(), count),
        _ => {
            return Err(CliError::Other(
                "usage: yurt job scale JOB [GROUP] COUNT".into(),
            ))
        }
    };
    let count: i64 = count
        .parse()
        .map_err(|_| CliError::Other(format!("count {count:?} is not a whole number")))?;
    let reply = jobs
        .scale(JobScaleRequest {
            job_id: job.into(),
            group,
            count: Some(count),
            message: "submitted using the Yurt CLI".into(),
            ..JobScaleRequest::default()
        })
        .await
        .map_err(CliError::api("scaling job"))?
        .into_inner();
    if detach {
        println!("Evaluation ID: {}", reply.eval_id);
        return Ok(0);
    }
    super::job::monitor_registration(channel, &reply).await
}

/// `job scaling-events`: every group's events, newest first.
pub async fn scaling_events(addr: &str, job: &str, verbose: bool, json: bool) -> CmdResult {
    let status = JobsClient::new(connect(addr).await?)
        .scale_status(GetJobRequest { job_id: job.into() })
        .await
        .map_err(CliError::api("retrieving scaling events"))?
        .into_inner();
    let mut events: Vec<(&String, &ScalingEvent)> = status
        .task_groups
        .iter()
        .flat_map(|(group, g)| g.events.iter().map(move |e| (group, e)))
        .collect();
    events.sort_by_key(|(_, e)| std::cmp::Reverse((e.time_unix_ms, e.create_index)));
    if json {
        let all: Vec<serde_json::Value> = events
            .iter()
            .map(|(group, e)| serde_json::json!({ "task_group": group, "event": e }))
            .collect();
        print!("{}", output::json(&all));
        return Ok(0);
    }
    if events.is_empty() {
        println!("No events found");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|(group, e)| {
            let count = e.count.map_or_else(String::new, |c| c.to_string());
            let mut row = vec![group.to_string(), count, e.previous_count.to_string()];
            if verbose {
                row.extend([e.error.to_string(), e.message.clone(), e.eval_id.clone()]);
            }
            row.push(output::time(e.time_unix_ms));
            row
        })
        .collect();
    let header: &[&str] = if verbose {
        &[
            "Task Group",
            "Count",
            "PrevCount",
            "Error",
            "Message",
            "Eval ID",
            "Date",
        ]
    } else {
        &["Task Group", "Count", "PrevCount", "Date"]
    };
    print!("{}", output::table(header, &rows));
    Ok(0)
}

/// `job eval`.
pub async fn eval(addr: &str, job: &str, force_reschedule: bool, detach: bool) -> CmdResult {
    let channel = connect(addr).await?;
    let reply = JobsClient::new(channel.clone())
        .evaluate(JobEvaluateRequest {
            job_id: job.into(),
            force_reschedule,
        })
        .await
        .map_err(CliError::api("evaluating job"))?
        .into_inner();
    if detach {
        println!("Evaluation ID: {}", reply.eval_id);
        return Ok(0);
    }
    super::job::monitor_eval(channel, &reply.eval_id).await
}
