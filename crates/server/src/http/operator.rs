//! Operator routes: `PUT /v1/system/gc` (collect every finished job, allocation, evaluation
//! and down node now) and `/v1/operator/scheduler/configuration` (GET, and PUT/POST with
//! Nomad's `SchedulerAlgorithm`, `MemoryOversubscriptionEnabled`; what is left out is kept).

use super::*;

pub(super) async fn gc(api: &Api, rq: &Rq) -> Answer {
    json(
        &Operator::garbage_collect(&api.operator(), rq.of(GarbageCollectRequest {}))
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
