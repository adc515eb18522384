//! Namespaces over HTTP, in Nomad's shape: `GET /v1/namespaces` (`prefix`),
//! `GET|PUT|POST|DELETE /v1/namespace/<name>` (a write's body: `Name`, `Description`, `Meta`).

use yurt_proto::v1::namespaces_server::Namespaces;

use super::*;

/// `GET /v1/namespaces`.
pub(super) async fn list(api: &Api, rq: &Rq, q: &str) -> Answer {
    let prefix = query(q, "prefix")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    json(
        &Namespaces::list(&api.namespaces(), rq.of(ListNamespacesRequest { prefix }))
            .await?
            .into_inner()
            .namespaces,
    )
}

/// `/v1/namespace/<name>`.
pub(super) async fn one(api: &Api, method: &Method, name: &str, body: &Value, rq: &Rq) -> Answer {
    let svc = api.namespaces();
    let named = || {
        rq.of(GetNamespaceRequest {
            name: name.to_string(),
        })
    };
    match *method {
        Method::GET => json(&Namespaces::get(&svc, named()).await?.into_inner()),
        Method::PUT | Method::POST => {
            let body_name = string_field(body, "Name")?;
            if !body_name.is_empty() && body_name != name {
                return Err(bad(format!(
                    "the namespace's Name {body_name:?} does not match the URL's {name:?}"
                )));
            }
            let meta = match body.get("Meta") {
                None | Some(Value::Null) => Default::default(),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        other => Err(bad(format!("Meta.{k}: expected a string, found {other}"))),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => return Err(bad(format!("Meta: expected an object, found {other}"))),
            };
            let ns = Namespace {
                name: name.to_string(),
                description: string_field(body, "Description")?,
                meta,
                ..Namespace::default()
            };
            let r = Namespaces::apply(&svc, rq.of(ns)).await?.into_inner();
            Ok(serde_json::json!({ "Index": r.index }))
        }
        Method::DELETE => {
            let r = Namespaces::delete(&svc, named()).await?.into_inner();
            Ok(serde_json::json!({ "Index": r.index }))
        }
        _ => Err(no_route(method, &["v1", "namespace", "*"])),
    }
}
