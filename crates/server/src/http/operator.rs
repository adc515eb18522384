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
    let algorithm = match body.get("SchedulerAlgorithm") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(a)) => a.clone(),
        Some(other) => {
            return Err(bad(format!(
                "SchedulerAlgorithm: expected a string, found {other}"
            )))
        }
    };
    let oversubscription = match body.get("MemoryOversubscriptionEnabled") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(bad(format!(
                "MemoryOversubscriptionEnabled: expected true or false, found {other}"
            )))
        }
    };
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
