//! `yurt job scale JOB [GROUP] COUNT` and `yurt job eval JOB`: a group's count changed (a new
//! version of the job), and a new evaluation of the job as it is; both followed as `job run`
//! follows its evaluation unless `-detach`.

use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::{GetJobRequest, JobEvaluateRequest, JobScaleRequest};

use super::{connect, CliError, CmdResult};

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
            count,
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
