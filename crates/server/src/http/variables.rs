//! Nomad Variables and the keyring over HTTP, in Nomad's shape: `GET /v1/vars` (`prefix`,
//! `namespace`, `per_page`, `next_token`; the next page's token in `X-Nomad-NextToken`),
//! `GET|PUT|DELETE /v1/var/<path>` (`cas=INDEX`: a conflict is a 409 whose body is the current
//! variable), `GET /v1/operator/keyring/keys`, `PUT /v1/operator/keyring/rotate`.

use yurt_proto::v1::keyring_server::Keyring;
use yurt_proto::v1::variables_server::Variables;

use super::*;

/// The `namespace` query parameter, else the body's `Namespace`.
fn namespace_of(q: &str, body: &Value) -> Result<String, Failure> {
    match query(q, "namespace") {
        Some(ns) => decoded(ns),
        None => string_field(body, "Namespace"),
    }
}

/// `cas=INDEX`, when given.
fn cas(q: &str) -> Result<Option<u64>, Failure> {
    query(q, "cas")
        .map(|v| {
            v.parse().map_err(|_| {
                bad(format!(
                    "cas: {} is not an index",
                    yurt_types::limits::shown(v)
                ))
            })
        })
        .transpose()
}

/// `GET /v1/vars`: the variables' metadata and the next page's token.
pub(super) async fn list(api: &Api, rq: &Rq, q: &str) -> Result<(Value, String), Failure> {
    let per_page = match query(q, "per_page") {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            bad(format!(
                "per_page: {} is not a number",
                yurt_types::limits::shown(v)
            ))
        })?,
    };
    let r = Variables::list(
        &api.variables(),
        rq.of(ListVariablesRequest {
            namespace: query(q, "namespace")
                .map(decoded)
                .transpose()?
                .unwrap_or_default(),
            prefix: query(q, "prefix")
                .map(decoded)
                .transpose()?
                .unwrap_or_default(),
            per_page,
            next_token: query(q, "next_token")
                .map(decoded)
                .transpose()?
                .unwrap_or_default(),
        }),
    )
    .await?
    .into_inner();
    // Metadata, as Nomad's list: no `Items`.
    let mut list = json(&r.variables)?;
    for v in list.as_array_mut().into_iter().flatten() {
        if let Some(m) = v.as_object_mut() {
            m.remove("Items");
        }
    }
    Ok((list, r.next_token))
}

/// `/v1/var/<path>`.
pub(super) async fn var(
    api: &Api,
    method: &Method,
    path: String,
    q: &str,
    body: &Value,
    rq: &Rq,
) -> Answer {
    let svc = api.variables();
    let ns = namespace_of(q, body)?;
    let cas = cas(q)?;
    // Each call's answer, or the status it failed with (a conflict answers differently).
    let answer: Result<Answer, tonic::Status> = match *method {
        Method::GET => Variables::get(
            &svc,
            rq.of(GetVariableRequest {
                namespace: ns.clone(),
                path: path.clone(),
            }),
        )
        .await
        .map(|v| json(&v.into_inner())),
        Method::PUT | Method::POST => {
            let body_path = string_field(body, "Path")?;
            if !body_path.is_empty() && body_path != path {
                return Err(bad(format!(
                    "the variable's Path {body_path:?} does not match the URL's {path:?}"
                )));
            }
            let items = match body.get("Items") {
                None | Some(Value::Null) => Default::default(),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        other => Err(bad(format!("Items.{k}: expected a string, found {other}"))),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(bad(format!("Items: expected an object, found {other}")))
                }
            };
            Variables::put(
                &svc,
                rq.of(PutVariableRequest {
                    variable: Some(Variable {
                        namespace: ns.clone(),
                        path: path.clone(),
                        items,
                        ..Variable::default()
                    }),
                    cas: cas.is_some(),
                    check_index: cas.unwrap_or(0),
                }),
            )
            .await
            .map(|v| json(&v.into_inner()))
        }
        Method::DELETE => Variables::delete(
            &svc,
            rq.of(DeleteVariableRequest {
                namespace: ns.clone(),
                path: path.clone(),
                cas: cas.is_some(),
                check_index: cas.unwrap_or(0),
            }),
        )
        .await
        .map(|_| Ok(Value::Null)),
        _ => return Err(no_route(method, &["v1", "var", "*"])),
    };
    match answer {
        Ok(a) => a,
        Err(s) if s.code() == Code::Aborted => Err(conflict(api, rq, ns, path).await),
        Err(s) => Err(s.into()),
    }
}

/// A compare-and-set conflict: 409 with the variable as it is now (its items only if the
/// token may read them; absent, a variable with no index).
async fn conflict(api: &Api, rq: &Rq, namespace: String, path: String) -> Failure {
    let read = Variables::get(
        &api.variables(),
        rq.of(GetVariableRequest {
            namespace: namespace.clone(),
            path: path.clone(),
        }),
    )
    .await;
    let current = match read {
        Ok(v) => v.into_inner(),
        Err(_) => {
            let ns = if namespace.is_empty() {
                acl::DEFAULT_NAMESPACE.to_string()
            } else {
                namespace
            };
            api.reads
                .state
                .read(|s| s.variable(&ns, &path).and_then(|v| v.meta.clone()))
                .unwrap_or(Variable {
                    namespace: ns,
                    path,
                    ..Variable::default()
                })
        }
    };
    Failure::with_body(StatusCode::CONFLICT, json(&current).unwrap_or(Value::Null))
}

/// `/v1/operator/keyring/...`.
pub(super) async fn keyring(api: &Api, method: &Method, what: &str, rq: &Rq) -> Answer {
    let svc = api.variables();
    match (method, what) {
        (&Method::GET, "keys") => json(
            &Keyring::list(&svc, rq.of(KeyringListRequest {}))
                .await?
                .into_inner()
                .keys,
        ),
        (&Method::PUT | &Method::POST, "rotate") => {
            let r = Keyring::rotate(&svc, rq.of(KeyringRotateRequest {}))
                .await?
                .into_inner();
            Ok(serde_json::json!({ "Key": json(&r.key)?, "Index": r.index }))
        }
        _ => Err(no_route(method, &["v1", "operator", "keyring", what])),
    }
}
