//! Operator routes: `PUT /v1/system/gc` (collect every finished job, allocation, evaluation
//! and down node now), `PUT /v1/system/reconcile/summaries`, `/v1/operator/scheduler/
//! configuration` (GET, and PUT/POST with Nomad's `SchedulerAlgorithm`,
//! `MemoryOversubscriptionEnabled`; what is left out is kept), and the agent's
//! `PUT /v1/agent/join?address=` and `/v1/agent/force-leave?node=`; Yurt's own `GET
//! /v1/operator/upgrade-check` (`operator upgrade-check`: the checks, the next server to
//! upgrade, each server's version and last log index as the leader sees them, the feature
//! gates).

use super::*;

pub(super) async fn gc(api: &Api, rq: &Rq) -> Answer {
    json(
        &Operator::garbage_collect(&api.operator(), rq.of(GarbageCollectRequest {}))
            .await?
            .into_inner(),
    )
}

pub(super) async fn upgrade_check(api: &Api, rq: &Rq) -> Answer {
    json(
        &Operator::upgrade_check(&api.operator(), rq.of(UpgradeCheckRequest {}))
            .await?
            .into_inner(),
    )
}

pub(super) async fn scheduler_config(api: &Api, rq: &Rq) -> Answer {
    let c = Operator::scheduler_get_configuration(
        &api.operator(),
        rq.of(SchedulerGetConfigurationRequest {}),
    )
    .await?
    .into_inner();
    let index = c.modify_index;
    Ok(serde_json::json!({ "SchedulerConfig": json(&c)?, "Index": index }))
}

pub(super) async fn set_scheduler_config(api: &Api, rq: &Rq, body: &Value) -> Answer {
    // What is left out is kept.
    let algorithm = string_field(body, "SchedulerAlgorithm")?;
    let oversubscription = opt_bool_field(body, "MemoryOversubscriptionEnabled")?
        .map(|b| b.to_string())
        .unwrap_or_default();
    let r = Operator::scheduler_set_configuration(
        &api.operator(),
        rq.of(SchedulerSetConfigurationRequest {
            scheduler_algorithm: algorithm,
            memory_oversubscription: oversubscription,
        }),
    )
    .await?
    .into_inner();
    Ok(serde_json::json!({ "Updated": true, "Index": r.index }))
}

/// `PUT /v1/agent/join?address=A&address=B`: `num_joined`, `error` (Nomad's lower-case names).
pub(super) async fn join(api: &Api, rq: &Rq, q: &str) -> Answer {
    let addresses: Vec<String> = q
        .split('&')
        .filter_map(|kv| kv.strip_prefix("address="))
        .map(decoded)
        .collect::<Result<_, _>>()?;
    let r = Operator::join(&api.operator(), rq.of(JoinRequest { addresses }))
        .await?
        .into_inner();
    Ok(serde_json::json!({ "num_joined": r.num_joined, "error": r.error }))
}

/// `PUT /v1/agent/force-leave?node=NAME`.
pub(super) async fn force_leave(api: &Api, rq: &Rq, q: &str) -> Answer {
    let name = query(q, "node")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    if name.is_empty() {
        return Err(bad("node: the server to force out is required"));
    }
    Operator::force_leave(&api.operator(), rq.of(ForceLeaveRequest { name })).await?;
    Ok(Value::Null)
}

/// `PUT /v1/system/reconcile/summaries`: Yurt derives job summaries from the allocations at
/// each read, so there is nothing to rebuild; a management token, as in Nomad.
pub(super) fn reconcile_summaries(api: &Api, rq: &Rq) -> Answer {
    api.reads.authorize(&rq.of(()), Need::Management)?;
    Ok(Value::Null)
}
