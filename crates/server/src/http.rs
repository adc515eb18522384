//! The HTTP/JSON API on hyper, shaped like Nomad's `/v1` API: the same `yurt.v1` messages as
//! the gRPC API, in Nomad's JSON shape (`yurt_types::nomad_json`: `ID`, `TaskGroups`,
//! nanoseconds), so that scripts and clients written for Nomad work for these calls. Every
//! handler calls the gRPC service implementation in-process (validation, forwarding to the
//! leader, feature gates are theirs).
//!
//! Reads answer with `X-Nomad-Index` (and `X-Yurt-Index`): the Raft index the answer reflects.
//! A read with `?index=N` blocks until the state passes N or `wait` (default 5m, at most 10m)
//! ends; `?stale` answers from this server's copy without asking the leader. Errors are an
//! HTTP status and one plain-text sentence, as Nomad's are. Request bodies
//! are limited to 4 MiB (a gRPC message's limit) and must arrive within 30 s; the plumbing is in
//! [`request`].
//!
//! Routes: `GET /v1/jobs`, `PUT|POST /v1/jobs` and `/v1/job/<id>` (register `{"Job": ...}`),
//! `GET|DELETE /v1/job/<id>` (`?purge=true`), `POST /v1/job/<id>/plan`,
//! `GET /v1/job/<id>/{versions,allocations,evaluations,deployments,deployment}`,
//! `POST /v1/job/<id>/revert` (`{"JobVersion": N}`), `POST /v1/jobs/parse` (`{"JobHCL": ...,
//! "Variables": ...}`),
//! `POST /v1/validate/job` (jobs in Nomad's job JSON, `yurt_types::nomad_job`),
//! `GET /v1/allocations`, `/v1/allocation/<id>`, `/v1/client/allocation/<id>/stats`,
//! `/v1/evaluations`, `/v1/evaluation/<id>`,
//! `/v1/nodes`, `/v1/node/<id>`, `POST /v1/node/<id>/eligibility`, `POST /v1/node/<id>/drain`,
//! `GET /v1/deployments`, `/v1/deployment/<id>`, `POST /v1/deployment/{promote,fail,pause}/<id>`,
//! `GET /v1/status/leader`, `/v1/status/peers`, `/v1/agent/health`, `/v1/agent/self`,
//! `/v1/agent/members`, `/v1/operator/raft/configuration`, `/v1/regions`,
//! `/v1/metrics` (`?format=prometheus`), `/v1/acl/{bootstrap,policies,policy/<name>,tokens,
//! token,token/self,token/<accessor>}`. The `X-Nomad-Token` header is the ACL token. The web
//! UI is served at `/ui/` ([`ui`]).

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;
use yurt_proto::v1::acl_server::Acl;
use yurt_proto::v1::allocs_server::Allocs;
use yurt_proto::v1::deployments_server::Deployments;
use yurt_proto::v1::evals_server::Evals;
use yurt_proto::v1::jobs_server::Jobs;
use yurt_proto::v1::nodes_server::Nodes;
use yurt_proto::v1::operator_server::Operator;
use yurt_proto::v1::*;
use yurt_types::acl::{self, Need};
use yurt_types::nomad_json::to_nomad;

use crate::rpc::Api;

mod actions;
mod client_fs;
mod namespaces;
mod nodes;
mod operator;
mod relations;
pub mod relay;
mod request;
mod search;
mod ui;
mod variables;

use request::*;

struct Http {
    api: Api,
}

impl Http {
    async fn route(&self, method: &Method, path: &str, q: &str, body: Value, rq: Rq) -> Answer {
        // Segments are percent-decoded: a job ID in any script is reachable.
        let parts: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(decoded)
            .collect::<Result<_, _>>()?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let api = &self.api;
        use Method as M;
        match (method, parts.as_slice()) {
            (&M::GET, ["v1", "jobs"]) => {
                let prefix = query(q, "prefix").unwrap_or_default();
                relations::jobs_with_summaries(api, &rq, prefix).await
            }
            (&M::PUT | &M::POST, ["v1", "jobs"]) | (&M::PUT | &M::POST, ["v1", "job", _]) => {
                let (job, _) = nomad_job(&body)?;
                if let ["v1", "job", id] = parts.as_slice() {
                    if *id != job.id {
                        return Err(bad(format!(
                            "the job's ID {:?} does not match the URL's {id:?}",
                            job.id
                        )));
                    }
                }
                let enforce = body.get("EnforceIndex").and_then(Value::as_bool) == Some(true);
                let index = body
                    .get("JobModifyIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let reply = Jobs::register(
                    api,
                    rq.of(RegisterJobRequest {
                        job: Some(job),
                        enforce_index: enforce,
                        job_modify_index: index,
                    }),
                )
                .await?
                .into_inner();
                json(&reply)
            }
            (&M::POST, ["v1", "jobs", "parse"]) => {
                api.reads.scope(&rq.of(()), acl::PARSE_JOB)?;
                let hcl = body
                    .get("JobHCL")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("request body must have \"JobHCL\""))?;
                let hcl = hcl.to_string();
                // `Variables`: a variable file's text (as Nomad's API takes it), or an object
                // of name → value.
                let inputs = yurt_types::jobspec::Inputs {
                    var_files: body
                        .get("Variables")
                        .and_then(Value::as_str)
                        .map(|t| vec![("Variables".to_string(), t.to_string())])
                        .unwrap_or_default(),
                    vars: body
                        .get("Variables")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    let text =
                                        v.as_str().map_or_else(|| v.to_string(), String::from);
                                    (k.clone(), text)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    ..Default::default()
                };
                let job = crate::heavy::run("parsing job files", move || {
                    yurt_types::jobspec::parse_hcl_with("JobHCL", &hcl, &inputs)
                })
                .await?
                .map_err(|e| bad(e.to_string()))?;
                Ok(yurt_types::nomad_job::to_nomad(&job))
            }
            (&M::POST | &M::PUT, ["v1", "validate", "job"]) => {
                api.reads.scope(&rq.of(()), acl::PARSE_JOB)?;
                Ok(validate_job(&body, &api.cluster.me().region))
            }
            (&M::GET, ["v1", "job", id]) => Ok(yurt_types::nomad_job::to_nomad(
                &Jobs::get(api, rq.job(id)).await?.into_inner(),
            )),
            (&M::DELETE, ["v1", "job", id]) => json(
                &Jobs::deregister(
                    api,
                    rq.of(DeregisterJobRequest {
                        job_id: id.to_string(),
                        purge: flag(q, "purge")?,
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::POST | &M::PUT, ["v1", "job", _, "plan"]) => {
                let (job, _) = nomad_job(&body)?;
                let index = api.reads.state.read(|s| s.index);
                let mut plan = json(
                    &Jobs::plan(api, rq.of(PlanJobRequest { job: Some(job) }))
                        .await?
                        .into_inner(),
                )?;
                // Nomad's reply: the scheduler's counts under `Annotations`, and the index the
                // plan was made at.
                if let Some(m) = plan.as_object_mut() {
                    let updates = m.remove("DesiredTGUpdates").unwrap_or(Value::Null);
                    m.insert(
                        "Annotations".into(),
                        serde_json::json!({ "DesiredTGUpdates": updates }),
                    );
                    m.insert("Index".into(), Value::from(index));
                }
                Ok(plan)
            }
            (&M::GET, ["v1", "job", id, "versions"]) => {
                let r = Jobs::versions(
                    api,
                    rq.of(JobVersionsRequest {
                        job_id: id.to_string(),
                        diffs: flag(q, "diffs")?,
                    }),
                )
                .await?
                .into_inner();
                let versions: Vec<Value> = r
                    .versions
                    .iter()
                    .map(yurt_types::nomad_job::to_nomad)
                    .collect();
                Ok(serde_json::json!({
                    "Versions": versions,
                    "Diffs": json(&r.diffs)?,
                }))
            }
            (&M::GET, ["v1", "job", id, "summary"]) => relations::job_summary(api, &rq, id).await,
            (&M::GET, ["v1", "node", id, "allocations"]) => {
                relations::node_allocations(api, &rq, id).await
            }
            (&M::GET, ["v1", "evaluation", id, "allocations"]) => {
                relations::evaluation_allocations(api, &rq, id).await
            }
            (&M::GET, ["v1", "deployment", "allocations", id]) => {
                relations::deployment_allocations(api, &rq, id).await
            }
            (&M::GET, ["v1", "agent", "servers"]) => relations::servers(api),
            (&M::GET, ["v1", "job", id, "allocations"]) => json(
                &Jobs::allocations(api, rq.job(id))
                    .await?
                    .into_inner()
                    .allocs,
            ),
            (&M::GET, ["v1", "job", id, "evaluations"]) => {
                json(&Jobs::evaluations(api, rq.job(id)).await?.into_inner().evals)
            }
            (&M::GET, ["v1", "job", id, which @ ("deployments" | "deployment")]) => {
                let all = Jobs::deployments(api, rq.job(id))
                    .await?
                    .into_inner()
                    .deployments;
                // `deployment` is the latest one (the list is newest first).
                if *which == "deployment" {
                    json(&all.into_iter().next())
                } else {
                    json(&all)
                }
            }
            (&M::POST | &M::PUT, ["v1", "job", id, "revert"]) => {
                let version = body
                    .get("JobVersion")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("request body must have \"JobVersion\" (a number)"))?;
                json(
                    &Jobs::revert(
                        api,
                        rq.of(RevertJobRequest {
                            job_id: id.to_string(),
                            version,
                        }),
                    )
                    .await?
                    .into_inner(),
                )
            }
            (&M::GET, ["v1", "allocations"]) => json(
                &Allocs::list(api, rq.of(ListAllocsRequest::default()))
                    .await?
                    .into_inner()
                    .allocs,
            ),
            (&M::GET, ["v1", "allocation", id]) => json(
                &Allocs::get(
                    api,
                    rq.of(GetAllocRequest {
                        alloc_id: id.to_string(),
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::POST | &M::PUT, ["v1", "allocation", id, "stop"]) => {
                let r = Allocs::stop(
                    api,
                    rq.of(AllocStopRequest {
                        alloc_id: id.to_string(),
                    }),
                )
                .await?
                .into_inner();
                Ok(serde_json::json!({ "EvalID": r.eval_id, "Index": r.index }))
            }
            (&M::GET, ["v1", "client", "allocation", id, "stats"]) => json(
                &Allocs::stats(
                    api,
                    rq.of(AllocStatsRequest {
                        alloc_id: id.to_string(),
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::GET, ["v1", "evaluations"]) => json(
                &Evals::list(
                    api,
                    rq.of(ListEvalsRequest {
                        job_id: query(q, "job").unwrap_or_default().into(),
                        status: query(q, "status").unwrap_or_default().into(),
                    }),
                )
                .await?
                .into_inner()
                .evals,
            ),
            (&M::GET, ["v1", "evaluation", id]) => json(
                &Evals::get(
                    api,
                    rq.of(GetEvalRequest {
                        eval_id: id.to_string(),
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::GET, ["v1", "nodes"]) => nodes::list(api, &rq, q).await,
            (&M::GET, ["v1", "node", id]) => nodes::one(api, &rq, id).await,
            (
                &M::POST | &M::PUT,
                ["v1", "node", id, what @ ("eligibility" | "drain" | "evaluate")],
            ) => actions::node(api, &rq, id, what, &body).await,
            (&M::POST | &M::PUT, ["v1", "job", id, what @ ("evaluate" | "stable")]) => {
                actions::job(api, &rq, id, what, &body).await
            }
            (&M::GET, ["v1", "job", id, "scale"]) => actions::scale_status(api, &rq, id).await,
            (
                &M::POST | &M::PUT,
                ["v1", "client", "allocation", id, what @ ("signal" | "restart")],
            ) => actions::alloc(api, &rq, id, what, &body).await,
            (&M::GET | &M::PUT | &M::POST, ["v1", "client", "allocation", id, "gc"]) => {
                let req = ClientGcRequest {
                    alloc_id: id.to_string(),
                };
                Allocs::gc(api, rq.of(req)).await?;
                Ok(Value::Null)
            }
            (&M::GET, ["v1", "client", "stats"]) => nodes::host_stats(api, &rq, q).await,
            (&M::GET, ["v1", "scaling", "policies"]) => actions::scaling(api, &rq, None, q).await,
            (&M::GET, ["v1", "scaling", "policy", id]) => {
                actions::scaling(api, &rq, Some(id), q).await
            }
            (&M::GET | &M::PUT | &M::POST, ["v1", "client", "gc"]) => {
                nodes::client_gc(api, &rq, q).await
            }
            (&M::POST | &M::PUT, ["v1", "job", id, "scale"]) => {
                actions::scale(api, &rq, id, &body).await
            }
            (&M::GET, ["v1", "deployments"]) => json(
                &Deployments::list(
                    api,
                    rq.of(ListDeploymentsRequest {
                        prefix: query(q, "prefix").unwrap_or_default().into(),
                    }),
                )
                .await?
                .into_inner()
                .deployments,
            ),
            (&M::GET, ["v1", "deployment", id]) => json(
                &Deployments::get(
                    api,
                    rq.of(GetDeploymentRequest {
                        deployment_id: id.to_string(),
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::POST | &M::PUT, ["v1", "deployment", action, id]) => {
                let req = rq.of(DeploymentActionRequest {
                    deployment_id: id.to_string(),
                });
                let reply = match *action {
                    "promote" => Deployments::promote(api, req).await?,
                    "fail" => Deployments::fail(api, req).await?,
                    "allocation-health" => {
                        Deployments::set_alloc_health(
                            api,
                            rq.of(SetAllocHealthRequest {
                                deployment_id: id.to_string(),
                                healthy_allocs: strings_field(&body, "HealthyAllocationIDs")?,
                                unhealthy_allocs: strings_field(&body, "UnhealthyAllocationIDs")?,
                            }),
                        )
                        .await?
                    }
                    "pause" => {
                        // Nomad pauses and resumes on one route: {"Pause": true|false}.
                        if opt_bool_field(&body, "Pause")? == Some(false) {
                            Deployments::resume(api, req).await?
                        } else {
                            Deployments::pause(api, req).await?
                        }
                    }
                    other => {
                        return Err(Failure::new(
                            StatusCode::NOT_FOUND,
                            format!("no such deployment action: {other}"),
                        ))
                    }
                };
                json(&reply.into_inner())
            }
            (&M::GET, ["v1", "status", "leader"]) => Ok(Value::String(
                crate::raft::leader_addr(&api.reads.raft).unwrap_or_default(),
            )),
            (&M::GET, ["v1", "status", "peers"]) => {
                let m = api.reads.raft.metrics().borrow().clone();
                let peers: Vec<String> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, _)| {
                        m.membership_config
                            .membership()
                            .voter_ids()
                            .any(|v| v == **id)
                    })
                    .map(|(_, n)| n.addr.clone())
                    .collect();
                Ok(Value::from(peers))
            }
            (&M::GET, ["v1", "agent", "members"]) => {
                let members =
                    Operator::server_members(&api.operator(), rq.of(ServerMembersRequest {}))
                        .await?
                        .into_inner()
                        .members;
                let me = api.cluster.me();
                Ok(serde_json::json!({
                    "ServerName": me.name,
                    "ServerRegion": me.region,
                    "ServerDC": me.datacenter,
                    "Members": members.iter().map(relations::member).collect::<Vec<_>>(),
                }))
            }
            (&M::GET, ["v1", "agent", "self"]) => {
                api.reads
                    .authorize(&rq.of(()), Need::Agent(acl::Level::Read))?;
                relations::agent_self(api, &rq).await
            }
            (&M::GET, ["v1", "operator", "raft", "configuration"]) => {
                let peers = Operator::raft_peers(&api.operator(), rq.of(RaftPeersRequest {}))
                    .await?
                    .into_inner();
                let servers: Vec<Value> = peers
                    .peers
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "ID": p.id, "Node": p.node, "Address": p.address,
                            "Leader": p.state == "leader", "Voter": p.voter,
                            "RaftProtocol": p.raft_protocol,
                        })
                    })
                    .collect();
                Ok(serde_json::json!({ "Servers": servers, "Index": peers.index }))
            }
            (&M::PUT | &M::POST, ["v1", "system", "gc"]) => operator::gc(api, &rq).await,
            (&M::PUT | &M::POST, ["v1", "system", "reconcile", "summaries"]) => {
                operator::reconcile_summaries(api, &rq)
            }
            (&M::PUT | &M::POST, ["v1", "agent", "join"]) => operator::join(api, &rq, q).await,
            (&M::PUT | &M::POST, ["v1", "agent", "force-leave"]) => {
                operator::force_leave(api, &rq, q).await
            }
            (&M::GET, ["v1", "operator", "upgrade-check"]) => {
                operator::upgrade_check(api, &rq).await
            }
            (&M::GET, ["v1", "operator", "scheduler", "configuration"]) => {
                operator::scheduler_config(api, &rq).await
            }
            (&M::PUT | &M::POST, ["v1", "operator", "scheduler", "configuration"]) => {
                operator::set_scheduler_config(api, &rq, &body).await
            }
            (&M::GET, ["v1", "agent", "health"]) => Ok(serde_json::json!({
                "server": { "ok": true, "message": "ok" }
            })),
            (_, ["v1", "acl", ..]) => self.acl_route(method, &parts, body, rq).await,
            (_, ["v1", "var", rest @ ..]) if !rest.is_empty() => {
                variables::var(api, method, rest.join("/"), q, &body, &rq).await
            }
            (&M::GET, ["v1", "namespaces"]) => namespaces::list(api, &rq, q).await,
            (&M::POST | &M::PUT, ["v1", "search"]) => search::search(api, &rq, false, &body).await,
            (&M::POST | &M::PUT, ["v1", "search", "fuzzy"]) => {
                search::search(api, &rq, true, &body).await
            }
            (_, ["v1", "namespace", name]) => namespaces::one(api, method, name, &body, &rq).await,
            (_, ["v1", "operator", "keyring", what]) => {
                variables::keyring(api, method, what, &rq).await
            }
            (&M::GET, ["v1", "regions"]) => Ok(Value::from(vec![api.cluster.me().region.clone()])),
            (_, ["v1", ..]) => Err(no_route(method, &parts)),
            _ => Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {}", yurt_types::limits::shown(path)),
            )),
        }
    }

    /// `/v1/acl/...`: bootstrap, policies and tokens.
    async fn acl_route(&self, method: &Method, parts: &[&str], body: Value, rq: Rq) -> Answer {
        use Method as M;
        let svc = self.api.acl();
        let token_req = |id: &str| {
            rq.of(AclTokenRequest {
                accessor_id: id.to_string(),
            })
        };
        match (method, parts) {
            (&M::POST | &M::PUT, ["v1", "acl", "bootstrap"]) => json(
                &Acl::bootstrap(&svc, rq.of(AclBootstrapRequest {}))
                    .await?
                    .into_inner(),
            ),
            (&M::GET, ["v1", "acl", "policies"]) => json(
                &Acl::list_policies(&svc, rq.of(ListAclPoliciesRequest {}))
                    .await?
                    .into_inner()
                    .policies,
            ),
            (&M::GET, ["v1", "acl", "policy", name]) => {
                let p = Acl::get_policy(
                    &svc,
                    rq.of(AclPolicyRequest {
                        name: name.to_string(),
                    }),
                )
                .await?
                .into_inner();
                let mut v = json(&p)?;
                if let Ok(parsed) = acl::parse_policy(&p.name, &p.rules) {
                    v["RulesJSON"] = parsed.rules_json();
                }
                Ok(v)
            }
            (&M::POST | &M::PUT, ["v1", "acl", "policy", name]) => {
                let policy = AclPolicy {
                    name: name.to_string(),
                    description: string_field(&body, "Description")?,
                    rules: string_field(&body, "Rules")?,
                    ..AclPolicy::default()
                };
                json(&Acl::upsert_policy(&svc, rq.of(policy)).await?.into_inner())
            }
            (&M::DELETE, ["v1", "acl", "policy", name]) => json(
                &Acl::delete_policy(
                    &svc,
                    rq.of(AclPolicyRequest {
                        name: name.to_string(),
                    }),
                )
                .await?
                .into_inner(),
            ),
            (&M::GET, ["v1", "acl", "tokens"]) => json(
                &Acl::list_tokens(&svc, rq.of(ListAclTokensRequest {}))
                    .await?
                    .into_inner()
                    .tokens,
            ),
            (&M::POST | &M::PUT, ["v1", "acl", "token"]) => {
                let asked = token_of(&body, "")?;
                json(&Acl::create_token(&svc, rq.of(asked)).await?.into_inner())
            }
            (&M::GET, ["v1", "acl", "token", "self"]) => {
                json(&Acl::get_token(&svc, token_req("")).await?.into_inner())
            }
            (&M::GET, ["v1", "acl", "token", id]) => {
                json(&Acl::get_token(&svc, token_req(id)).await?.into_inner())
            }
            (&M::DELETE, ["v1", "acl", "token", id]) => {
                json(&Acl::delete_token(&svc, token_req(id)).await?.into_inner())
            }
            (&M::POST | &M::PUT, ["v1", "acl", "token", id]) => {
                let asked = token_of(&body, id)?;
                json(&Acl::update_token(&svc, rq.of(asked)).await?.into_inner())
            }
            _ => Err(no_route(method, parts)),
        }
    }

    /// `/v1/metrics`: this server's metrics as JSON, or Prometheus text (`?format=prometheus`).
    fn metrics(&self, q: &str, index: u64) -> HttpResponse {
        let m = self.api.reads.raft.metrics().borrow().clone();
        let raft = [
            ("yurt.raft.term", m.current_term),
            ("yurt.raft.last_log_index", m.last_log_index.unwrap_or(0)),
            (
                "yurt.raft.applied_index",
                m.last_applied.map_or(0, |l| l.index),
            ),
            (
                "yurt.raft.leader",
                u64::from(m.current_leader == Some(m.id)),
            ),
        ];
        let state = &self.api.reads.state;
        if query(q, "format") == Some("prometheus") {
            let text = state.scan(|s| crate::metrics::prometheus_report(s, &raft));
            let mut r = Response::new(full(text));
            set_headers(&mut r, "text/plain; version=0.0.4", index);
            return r;
        }
        let now = crate::write::now_unix_ms();
        let v = state.scan(|s| crate::metrics::json_report(s, &raft, now));
        json_response(&v, index)
    }

    /// `GET /v1/event/stream`: the gRPC `Events/Stream` in-process, as newline-delimited JSON
    /// until the caller goes away ([`crate::events`]).
    async fn event_stream(&self, q: &str, rq: &Rq) -> Result<HttpResponse, Failure> {
        use futures_util::StreamExt;
        use yurt_proto::v1::events_server::Events;
        let topics: Vec<String> = q
            .split('&')
            .filter_map(|kv| kv.strip_prefix("topic="))
            .map(decoded)
            .collect::<Result<_, _>>()?;
        let index = match query(q, "index") {
            None => 0,
            Some(i) => i.parse::<u64>().map_err(|_| {
                bad(format!(
                    "index {} is not a whole number",
                    yurt_types::limits::shown(i)
                ))
            })?,
        };
        let lines = Events::stream(&self.api, rq.of(EventStreamRequest { topics, index }))
            .await?
            .into_inner();
        let frames = lines.filter_map(|line| async move {
            let line = line.ok()?;
            Some(Ok(hyper::body::Frame::data(Bytes::from(line.json + "\n"))))
        });
        let mut r = Response::new(BodyExt::boxed_unsync(http_body_util::StreamBody::new(
            frames,
        )));
        let at = self.api.reads.state.read(|s| s.index);
        set_headers(&mut r, "application/json", at);
        Ok(r)
    }

    /// One request: body read within limits, blocking reads, the index headers.
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> HttpResponse {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if method == Method::GET {
            if let Some(page) = ui::serve(&path) {
                return page;
            }
        }
        // Nomad's header; an unreadable one is no token.
        let token = req
            .headers()
            .get("x-nomad-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let q = req.uri().query().unwrap_or_default().to_string();
        let body = match read_body(req.into_body()).await {
            Ok(b) => b,
            Err(f) => return f.respond(0),
        };
        let mut applied = self.api.reads.state.subscribe();
        if method == Method::GET {
            let wait = match blocking(&q) {
                Ok(w) => w,
                Err(f) => return f.respond(0),
            };
            if let Some((min, wait)) = wait {
                let deadline = tokio::time::Instant::now() + wait;
                while self.api.reads.state.read(|s| s.index) <= min {
                    tokio::select! {
                        _ = applied.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
        }
        let index = self.api.reads.state.read(|s| s.index);
        let started = std::time::Instant::now();
        if method == Method::GET && path.trim_end_matches('/') == "/v1/metrics" {
            return self.metrics(&q, index);
        }
        // `?namespace=` (Nomad's), for every call; `*` is every namespace (reads).
        let namespace = match query(&q, "namespace").map(decoded).transpose() {
            Ok(None) => None,
            Ok(Some(ns)) => match ns.parse() {
                Ok(v) => Some(v),
                Err(_) => {
                    let m = format!(
                        "namespace {} is not a namespace name",
                        yurt_types::limits::shown(&ns)
                    );
                    return plain(StatusCode::BAD_REQUEST, &m, index);
                }
            },
            Err(f) => return f.respond(index),
        };
        if method == Method::GET && path.trim_end_matches('/') == "/v1/event/stream" {
            let rq = Rq {
                token,
                stale: false,
                namespace,
            };
            return match self.event_stream(&q, &rq).await {
                Ok(r) => r,
                Err(f) => f.respond(index),
            };
        }
        let rq = Rq {
            token,
            stale: flag(&q, "stale").unwrap_or(false),
            namespace,
        };
        if let ("GET", Some(rest)) = (method.as_str(), path.strip_prefix("/v1/client/fs/")) {
            let parts: Vec<&str> = rest.split('/').collect();
            let answer = match parts.as_slice() {
                [what, alloc] if !alloc.is_empty() => match decoded(alloc) {
                    Ok(alloc) => self.client_fs(what, &alloc, &q, &rq, index).await,
                    Err(f) => Err(f),
                },
                _ => Err(no_route(&method, &["v1", "client", "fs", rest])),
            };
            return answer.unwrap_or_else(|f| f.respond(index));
        }
        if method == Method::GET && path.trim_end_matches('/') == "/v1/vars" {
            // The next page's token travels in a header, as Nomad's.
            return match variables::list(&self.api, &rq, &q).await {
                Ok((v, next)) => {
                    let mut r = json_response(&v, index);
                    if let Ok(next) = hyper::header::HeaderValue::from_str(&next) {
                        if !next.is_empty() {
                            r.headers_mut().insert("x-nomad-nexttoken", next);
                        }
                    }
                    r
                }
                Err(f) => f.respond(index),
            };
        }
        let answer = self.route(&method, &path, &q, body, rq).await;
        crate::metrics::metrics().observe("yurt.http.request", started.elapsed());
        match answer {
            Ok(v) => json_response(&v, index),
            Err(f) => f.respond(index),
        }
    }
}

/// Serves the HTTP API on `listener` until `stop` changes: HTTPS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = std::sync::Arc::new(Http { api });
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    while let Some(stream) = next_connection(&listener, &mut stop).await {
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let http = http.clone();
                async move { Ok::<_, Infallible>(http.handle(req).await) }
            });
            serve_one(stream, tls, svc).await;
        });
    }
}

/// The next connection on `listener`, or `None` once `stop` changes.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
) -> Option<tokio::net::TcpStream> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => return Some(stream),
                Err(e) => tracing::warn!(error = %e, "HTTP accept failed"),
            },
            _ = stop.changed() => return None,
        }
    }
}

/// Serves one accepted connection: TLS first when `tls` is given (a handshake that does not
/// finish within 10 s, or fails, drops it), then HTTP/1.1, a request's headers due within 30 s.
pub(crate) async fn serve_one<S, B>(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    svc: S,
) where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = hyper::server::conn::http1::Builder::new();
    conn.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    match tls {
        None => {
            let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
        }
        Some(tls) => {
            let handshake = tokio::time::timeout(Duration::from_secs(10), tls.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!("HTTPS handshake timed out"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
