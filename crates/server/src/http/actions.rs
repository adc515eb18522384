//! Changes to a node or a job besides registering it, in Nomad's shapes:
//! `POST /v1/node/:id/{eligibility,drain,evaluate}` (answered with `EvalIDs`,
//! `EvalCreateIndex`, `NodeModifyIndex`, `Index`), `POST /v1/job/:id/evaluate`
//! (`EvalOptions.ForceReschedule`), `POST /v1/job/:id/stable` (`JobVersion`, `Stable`), and
//! `/v1/job/:id/scale` (GET: each group's status and scaling events; POST: `Count`,
//! `Target.Group`, `Message`, `Error`, `Meta`, `EnforceIndex`, `JobModifyIndex`);
//! `POST /v1/client/allocation/:id/{signal,restart}`; `GET /v1/scaling/policies` and
//! `/v1/scaling/policy/:id` (the groups' `scaling` blocks).

use super::*;

/// A node change's answer.
fn node_reply(r: &NodeUpdateResponse) -> Value {
    serde_json::json!({
        "EvalIDs": r.eval_ids,
        "EvalCreateIndex": r.index,
        "NodeModifyIndex": r.node_modify_index,
        "Index": r.index,
    })
}

/// `POST /v1/node/:id/{eligibility,drain,evaluate}`.
pub(super) async fn node(api: &Api, rq: &Rq, id: &str, what: &str, body: &Value) -> Answer {
    let node_id = id.to_string();
    let r = match what {
        "eligibility" => {
            let eligible = match string_field(body, "Eligibility")?.as_str() {
                "eligible" => true,
                "ineligible" => false,
                "" => return Err(bad("request body must have \"Eligibility\"")),
                other => {
                    return Err(bad(format!(
                        "Eligibility must be \"eligible\" or \"ineligible\", not {other:?}"
                    )))
                }
            };
            let req = NodeEligibilityRequest { node_id, eligible };
            Nodes::update_eligibility(api, rq.of(req)).await?
        }
        "drain" => {
            // Nomad's body: {"DrainSpec": {"Deadline": ns, "IgnoreSystemJobs": b} | null,
            // "MarkEligible": b}.
            let strategy = match body.get("DrainSpec") {
                None | Some(Value::Null) => None,
                Some(spec) => Some(DrainStrategy {
                    deadline_ms: yurt_types::nomad_json::ns_to_ms(number_field(
                        spec,
                        "DrainSpec.Deadline",
                    )?),
                    ignore_system_jobs: bool_field(spec, "DrainSpec.IgnoreSystemJobs")?,
                    ..Default::default()
                }),
            };
            let req = NodeDrainRequest {
                node_id,
                strategy,
                mark_eligible: bool_field(body, "MarkEligible")?,
            };
            Nodes::update_drain(api, rq.of(req)).await?
        }
        _ => Nodes::evaluate(api, rq.of(NodeEvaluateRequest { node_id })).await?,
    };
    Ok(node_reply(&r.into_inner()))
}

/// `POST /v1/job/:id/{evaluate,stable}`.
pub(super) async fn job(api: &Api, rq: &Rq, id: &str, what: &str, body: &Value) -> Answer {
    let job_id = id.to_string();
    if what == "evaluate" {
        let options = body.get("EvalOptions").unwrap_or(&Value::Null);
        let force_reschedule = bool_field(options, "EvalOptions.ForceReschedule")?;
        let r = Jobs::evaluate(
            api,
            rq.of(JobEvaluateRequest {
                job_id,
                force_reschedule,
            }),
        )
        .await?
        .into_inner();
        return Ok(serde_json::json!({
            "EvalID": r.eval_id,
            "EvalCreateIndex": r.index,
            "JobModifyIndex": r.job_modify_index,
            "Index": r.index,
        }));
    }
    let version = match body.get("JobVersion") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad(format!("JobVersion: expected a version, found {n}")))?,
        None | Some(Value::Null) => return Err(bad("request body must have \"JobVersion\"")),
        Some(other) => return Err(bad(format!("JobVersion: expected a number, found {other}"))),
    };
    let r = Jobs::set_stable(
        api,
        rq.of(JobStableRequest {
            job_id,
            version,
            stable: bool_field(body, "Stable")?,
        }),
    )
    .await?
    .into_inner();
    Ok(serde_json::json!({ "Index": r.index, "JobModifyIndex": r.job_modify_index }))
}

/// A scaling event in Nomad's shape (`Time` in nanoseconds; `Count`, `Meta` and `EvalID` null
/// when absent).
pub(super) fn scaling_event_json(e: &ScalingEvent) -> Value {
    let meta = serde_json::from_str::<Value>(&e.meta_json).unwrap_or(Value::Null);
    serde_json::json!({
        "Time": e.time_unix_ms.saturating_mul(1_000_000),
        "Count": e.count,
        "PreviousCount": e.previous_count,
        "Message": e.message,
        "Error": e.error,
        "Meta": meta,
        "EvalID": (!e.eval_id.is_empty()).then_some(&e.eval_id),
        "CreateIndex": e.create_index,
    })
}

/// `GET /v1/job/:id/scale`.
pub(super) async fn scale_status(api: &Api, rq: &Rq, id: &str) -> Answer {
    let s = Jobs::scale_status(api, rq.job(id)).await?.into_inner();
    let groups: serde_json::Map<String, Value> = s
        .task_groups
        .iter()
        .map(|(name, g)| {
            let events: Vec<Value> = g.events.iter().map(scaling_event_json).collect();
            let status = serde_json::json!({
                "Desired": g.desired, "Placed": g.placed, "Running": g.running,
                "Healthy": g.healthy, "Unhealthy": g.unhealthy,
                "Events": (!events.is_empty()).then_some(events),
            });
            (name.clone(), status)
        })
        .collect();
    Ok(serde_json::json!({
        "JobID": s.job_id,
        "Namespace": s.namespace,
        "JobCreateIndex": s.job_create_index,
        "JobModifyIndex": s.job_modify_index,
        "JobStopped": s.job_stopped,
        "TaskGroups": groups,
    }))
}

/// `POST /v1/job/:id/scale`.
pub(super) async fn scale(api: &Api, rq: &Rq, id: &str, body: &Value) -> Answer {
    let count = match body.get("Count") {
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| bad(format!("Count: expected a whole number, found {n}")))?,
        ),
        None | Some(Value::Null) => None,
        Some(other) => return Err(bad(format!("Count: expected a number, found {other}"))),
    };
    let meta_json = match body.get("Meta") {
        None | Some(Value::Null) => String::new(),
        Some(m @ Value::Object(_)) => m.to_string(),
        Some(other) => return Err(bad(format!("Meta: expected an object, found {other}"))),
    };
    let target = body.get("Target").unwrap_or(&Value::Null);
    let group = string_field(target, "Target.Group")?;
    if group.is_empty() {
        return Err(bad("Target.Group: the group to scale is required"));
    }
    let index = number_field(body, "JobModifyIndex")?;
    let r = Jobs::scale(
        api,
        rq.of(JobScaleRequest {
            job_id: id.to_string(),
            group,
            count,
            message: string_field(body, "Message")?,
            error: bool_field(body, "Error")?,
            meta_json,
            enforce_index: bool_field(body, "EnforceIndex")?,
            job_modify_index: u64::try_from(index)
                .map_err(|_| bad(format!("JobModifyIndex: expected an index, found {index}")))?,
        }),
    )
    .await?
    .into_inner();
    let eval = (!r.eval_id.is_empty()).then_some(&r.eval_id);
    Ok(serde_json::json!({
        "EvalID": eval,
        "EvalCreateIndex": if eval.is_some() { r.index } else { 0 },
        "JobModifyIndex": r.job_modify_index,
        "Index": r.index,
        "Warnings": r.warnings,
    }))
}

/// `POST /v1/client/allocation/:id/{signal,restart}` (`Task`/`TaskName`, `Signal`).
pub(super) async fn alloc(api: &Api, rq: &Rq, id: &str, what: &str, body: &Value) -> Answer {
    let alloc_id = id.to_string();
    let r = if what == "signal" {
        let req = AllocSignalRequest {
            alloc_id,
            task: string_field(body, "Task")?,
            signal: string_field(body, "Signal")?,
        };
        Allocs::signal(api, rq.of(req)).await?
    } else {
        let task = match string_field(body, "TaskName")? {
            t if t.is_empty() => string_field(body, "Task")?,
            t => t,
        };
        Allocs::restart(api, rq.of(AllocRestartRequest { alloc_id, task })).await?
    };
    Ok(serde_json::json!({ "Tasks": r.into_inner().tasks }))
}

/// A scaling policy in Nomad's shape (`Min`, `Max`, `Policy` only for one read whole).
fn policy_json(p: &ScalingPolicy, whole: bool) -> Value {
    let mut v = serde_json::json!({
        "ID": p.id,
        "Type": p.r#type,
        "Target": p.target,
        "Enabled": p.enabled,
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if whole {
        v["Min"] = Value::from(p.min);
        v["Max"] = Value::from(p.max);
        v["Policy"] = p
            .policy
            .as_ref()
            .map_or(Value::Null, yurt_types::diff::value_to_json);
    }
    v
}

/// `GET /v1/scaling/policies` (`job=`) and `/v1/scaling/policy/:id`.
pub(super) async fn scaling(api: &Api, rq: &Rq, id: Option<&str>, q: &str) -> Answer {
    if let Some(id) = id {
        let p = Jobs::scaling_policy(api, rq.of(GetScalingPolicyRequest { id: id.into() }))
            .await?
            .into_inner();
        return Ok(policy_json(&p, true));
    }
    let job = query(q, "job")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    let r = Jobs::scaling_policies(api, rq.of(ListScalingPoliciesRequest { job }))
        .await?
        .into_inner();
    Ok(Value::from(
        r.policies
            .iter()
            .map(|p| policy_json(p, false))
            .collect::<Vec<_>>(),
    ))
}
