//! The HTTP/JSON API (read-only for now), on hyper. Responses are the same `yurt.v1` messages
//! the gRPC API returns, serialized with serde, so field names match across both APIs.
//!
//! Routes: `/v1/jobs`, `/v1/job/<id>`, `/v1/job/<id>/allocations`, `/v1/job/<id>/versions`,
//! `/v1/nodes`, `/v1/node/<id>`, `/v1/allocations`, `/v1/allocation/<id>`,
//! `/v1/evaluation/<id>`.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_core::state::{PrefixError, State};

use crate::raft::state_machine::StateHandle;

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        serde_json::json!({ "error": msg }).to_string() + "\n",
    )
}

fn found<T: serde::Serialize>(r: Result<T, (StatusCode, String)>) -> Response<Full<Bytes>> {
    match r {
        Ok(v) => reply(
            StatusCode::OK,
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
        ),
        Err((s, m)) => error(s, &m),
    }
}

fn by_id<'a, T>(
    map: &'a std::collections::BTreeMap<String, T>,
    what: &str,
    id: &str,
) -> Result<&'a T, (StatusCode, String)> {
    State::find_by_prefix(map, id).map_err(|e| {
        let code = match e {
            PrefixError::NotFound => StatusCode::NOT_FOUND,
            PrefixError::Ambiguous => StatusCode::BAD_REQUEST,
        };
        (code, e.sentence(what, id))
    })
}

/// Answers one request from the state (pure routing over a read).
pub fn route(state: &State, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the HTTP API is read-only in this version; use the gRPC API or the CLI to write",
        );
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "jobs"] => found(Ok::<_, (StatusCode, String)>(
            state.jobs.values().collect::<Vec<_>>(),
        )),
        ["v1", "job", id] => found(by_id(&state.jobs, "job", id)),
        ["v1", "job", id, "allocations"] => {
            found(by_id(&state.jobs, "job", id).map(|j| state.job_allocs(&j.id)))
        }
        ["v1", "job", id, "versions"] => found(by_id(&state.jobs, "job", id).map(|j| {
            state
                .job_versions
                .get(&j.id)
                .map(|v| v.iter().rev().collect::<Vec<_>>())
                .unwrap_or_default()
        })),
        ["v1", "nodes"] => found(Ok::<_, (StatusCode, String)>(
            state.nodes.values().collect::<Vec<_>>(),
        )),
        ["v1", "node", id] => found(by_id(&state.nodes, "node", id)),
        ["v1", "allocations"] => found(Ok::<_, (StatusCode, String)>(
            state.allocs.values().collect::<Vec<_>>(),
        )),
        ["v1", "allocation", id] => found(by_id(&state.allocs, "allocation", id)),
        ["v1", "evaluation", id] => found(by_id(&state.evals, "evaluation", id)),
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

/// Serves the HTTP API on `listener` until `stop` changes.
pub async fn serve(listener: TcpListener, state: StateHandle, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let r = state.read(|s| route(s, req.method(), req.uri().path()));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_json_and_errors() {
        let state = State::default();
        assert_eq!(
            route(&state, &Method::GET, "/v1/jobs").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&state, &Method::GET, "/v1/job/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&state, &Method::POST, "/v1/jobs").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&state, &Method::GET, "/v2/x").status(),
            StatusCode::NOT_FOUND
        );
    }
}
