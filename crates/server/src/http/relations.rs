//! Routes that answer from what other reads already give: the allocations of a node, an
//! evaluation or a deployment (`/v1/node/:id/allocations`, `/v1/evaluation/:id/allocations`,
//! `/v1/deployment/allocations/:id`), a job's summary (`/v1/job/:id/summary`, Nomad's
//! `JobSummary`: per group, how many allocations are queued, starting, running, failed,
//! complete, lost), the servers this agent knows (`/v1/agent/servers`), and the agent's members
//! and itself as Nomad's `/v1/agent/members` and `/v1/agent/self` show them.

use super::*;
use yurt_types::status::*;

/// The allocations that `keep` selects, in Nomad's shape (the caller's rights are checked by
/// the read it makes).
pub(super) async fn allocations_where(
    api: &Api,
    rq: &Rq,
    node_id: &str,
    keep: impl Fn(&Allocation) -> bool,
) -> Answer {
    let all = Allocs::list(
        api,
        rq.of(ListAllocsRequest {
            node_id: node_id.to_string(),
        }),
    )
    .await?
    .into_inner()
    .allocs;
    json(&all.into_iter().filter(|a| keep(a)).collect::<Vec<_>>())
}

/// `/v1/node/:id/allocations` (the full node ID, or a unique prefix of it).
pub(super) async fn node_allocations(api: &Api, rq: &Rq, id: &str) -> Answer {
    let node = Nodes::get(
        api,
        rq.of(GetNodeRequest {
            node_id: id.to_string(),
            ..Default::default()
        }),
    )
    .await?
    .into_inner();
    allocations_where(api, rq, &node.id, |_| true).await
}

/// `/v1/evaluation/:id/allocations`: the allocations the evaluation placed.
pub(super) async fn evaluation_allocations(api: &Api, rq: &Rq, id: &str) -> Answer {
    let eval = Evals::get(
        api,
        rq.of(GetEvalRequest {
            eval_id: id.to_string(),
        }),
    )
    .await?
    .into_inner();
    allocations_where(api, rq, "", |a| a.eval_id == eval.id).await
}

/// `/v1/deployment/allocations/:id`: the allocations of the deployment.
pub(super) async fn deployment_allocations(api: &Api, rq: &Rq, id: &str) -> Answer {
    let d = Deployments::get(
        api,
        rq.of(GetDeploymentRequest {
            deployment_id: id.to_string(),
        }),
    )
    .await?
    .into_inner();
    allocations_where(api, rq, "", |a| a.deployment_id == d.id).await
}

/// `/v1/job/:id/summary`, in Nomad's `JobSummary` shape.
pub(super) async fn job_summary(api: &Api, rq: &Rq, id: &str) -> Answer {
    let job = Jobs::get(api, rq.job(id)).await?.into_inner();
    let allocs = Jobs::allocations(api, rq.job(&job.id))
        .await?
        .into_inner()
        .allocs;
    let evals = Jobs::evaluations(api, rq.job(&job.id))
        .await?
        .into_inner()
        .evals;
    // The newest evaluation's queued allocations, while it waits for room.
    let queued = evals
        .iter()
        .find(|e| e.status == EVAL_BLOCKED || !e.queued_allocations.is_empty())
        .map(|e| e.queued_allocations.clone())
        .unwrap_or_default();
    let summary = group_summary(&job, allocs.iter(), &queued);
    Ok(serde_json::json!({
        "JobID": job.id,
        "Namespace": job.namespace,
        "Summary": summary,
        "Children": {"Pending": 0, "Running": 0, "Dead": 0},
        "CreateIndex": job.create_index,
        "ModifyIndex": job.modify_index,
    }))
}

/// Per group of `job`: how many of `allocs` are starting, running, failed, complete, lost,
/// and how many are `queued`.
fn group_summary<'a>(
    job: &Job,
    allocs: impl Iterator<Item = &'a Allocation> + Clone,
    queued: &std::collections::BTreeMap<String, u32>,
) -> Value {
    let mut summary = serde_json::Map::new();
    for g in &job.task_groups {
        let count = |status: &str| {
            allocs
                .clone()
                .filter(|a| a.task_group == g.name && a.client_status == status)
                .count()
        };
        summary.insert(
            g.name.clone(),
            serde_json::json!({
                "Queued": queued.get(&g.name).copied().unwrap_or(0),
                "Starting": count(ALLOC_PENDING),
                "Running": count(ALLOC_RUNNING),
                "Failed": count(ALLOC_FAILED),
                "Complete": count(ALLOC_COMPLETE),
                "Lost": count(ALLOC_LOST),
                "Unknown": 0,
            }),
        );
    }
    Value::Object(summary)
}

/// `/v1/jobs`: the list (as the caller may read it), each item with its `JobSummary`, as
/// Nomad's list stubs carry it.
pub(super) async fn jobs_with_summaries(api: &Api, rq: &Rq, prefix: &str) -> Answer {
    let stubs = Jobs::list(
        api,
        rq.of(ListJobsRequest {
            prefix: prefix.to_string(),
        }),
    )
    .await?
    .into_inner()
    .jobs;
    let mut items = match json(&stubs)? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    api.reads.state.read(|s| {
        for (item, stub) in items.iter_mut().zip(&stubs) {
            let Some(job) = s.job(&stub.namespace, &stub.id) else {
                continue;
            };
            let allocs = s.job_allocs(&stub.namespace, &stub.id);
            let summary = group_summary(job, allocs.iter().copied(), &Default::default());
            if let Some(m) = item.as_object_mut() {
                m.insert(
                    "JobSummary".into(),
                    serde_json::json!({ "JobID": stub.id, "Summary": summary }),
                );
            }
        }
    });
    Ok(Value::Array(items))
}

/// `/v1/agent/servers`: the RPC addresses of the servers this agent knows.
pub(super) fn servers(api: &Api) -> Answer {
    let addrs: std::collections::BTreeSet<String> = api
        .cluster
        .members(true)
        .into_iter()
        .filter(|(m, alive)| *alive && !m.addr.is_empty())
        .map(|(m, _)| m.addr)
        .collect();
    Ok(Value::from(addrs.into_iter().collect::<Vec<_>>()))
}

/// A server as Nomad's agent endpoints show a member: `Addr`, `Port`, `Status`, `Tags`.
pub(super) fn member(m: &ServerMemberInfo) -> Value {
    serde_json::json!({
        "Name": m.name,
        "Addr": m.address,
        "Port": m.port,
        "Status": m.status,
        "Tags": {
            "role": "nomad",
            "region": m.region,
            "dc": m.datacenter,
            "build": m.build,
            "port": m.port.to_string(),
            "id": m.id.to_string(),
            "raft_vsn": m.raft_version,
            "leader": m.leader.to_string(),
        },
    })
}

/// `/v1/agent/self` in Nomad's shape: `config`, `member`, `stats`.
pub(super) async fn agent_self(api: &Api, rq: &Rq) -> Answer {
    let me = api.cluster.me().clone();
    let members = Operator::server_members(&api.operator(), rq.of(ServerMembersRequest {}))
        .await?
        .into_inner()
        .members;
    let m = api.reads.raft.metrics().borrow().clone();
    let member = members
        .iter()
        .find(|x| x.name == me.name)
        .map(member)
        .unwrap_or(Value::Null);
    Ok(serde_json::json!({
        "config": {
            "Region": me.region,
            "Datacenter": me.datacenter,
            "NodeName": me.name,
            "Version": {"Version": me.version},
            "Server": {"Enabled": true},
            "ACL": {"Enabled": api.reads.acl_enabled},
        },
        "member": member,
        "stats": {"raft": {
            "state": format!("{:?}", m.state),
            "term": m.current_term.to_string(),
            "last_log_index": m.last_log_index.unwrap_or(0).to_string(),
            "applied_index": m.last_applied.map_or(0, |l| l.index).to_string(),
        }},
    }))
}
