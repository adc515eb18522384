//! The HTTP API's request plumbing: the body (size and time limits), query parameters
//! (percent-decoded; a blocking query's `index` and `wait` refused when unreadable), a job
//! read from Nomad's job JSON, the gRPC requests made on the caller's behalf, and answers as
//! JSON or one plain sentence.

use super::*;

/// Largest request body accepted.
/// The same limit as a gRPC message's, on both APIs.
pub(super) const MAX_BODY: usize = yurt_types::limits::MAX_MESSAGE_BYTES;
/// Longest a client may take to send its body.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a blocking query waits.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(600);

/// An answer's body: the whole of it, or a stream (the event stream).
pub(super) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
pub(super) type HttpResponse = Response<Body>;

/// A body of `bytes`.
pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A failed request: status and one sentence; and, for a conflict, the object as it is now
/// (Nomad answers a lost compare-and-set with the current variable).
#[derive(Debug)]
pub(super) struct Failure(
    pub(super) StatusCode,
    pub(super) String,
    pub(super) Option<Value>,
);

impl Failure {
    pub(super) fn new(code: StatusCode, sentence: impl Into<String>) -> Failure {
        Failure(code, sentence.into(), None)
    }

    /// A failure answered with a JSON body rather than a sentence.
    pub(super) fn with_body(code: StatusCode, body: Value) -> Failure {
        Failure(code, String::new(), Some(body))
    }

    /// The answer: the sentence, or the JSON body.
    pub(super) fn respond(self, index: u64) -> HttpResponse {
        match self.2 {
            None => plain(self.0, &self.1, index),
            Some(body) => {
                let text = serde_json::to_string(&body).unwrap_or_default() + "\n";
                let mut r = Response::new(full(text));
                *r.status_mut() = self.0;
                set_headers(&mut r, "application/json", index);
                r
            }
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        let code = match s.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            // A compare-and-set that lost (variables).
            Code::Aborted => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            // The server is busy with other requests of the kind (`heavy`): try again later.
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(code, s.message())
    }
}

pub(super) fn bad(msg: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, msg)
}

pub(super) type Answer = Result<Value, Failure>;

pub(super) fn json<T: serde::Serialize>(v: &T) -> Answer {
    serde_json::to_value(v)
        .map(|v| to_nomad(&v))
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The query parameter `name`, if given (still percent-encoded).
pub(super) fn query<'a>(q: &'a str, name: &str) -> Option<&'a str> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// A boolean query parameter as Go's `ParseBool` reads it (`1`, `t`, `T`, `TRUE`, `true`,
/// `True`, and their false twins); given without a value it is true, absent false.
pub(super) fn flag(q: &str, name: &str) -> Result<bool, Failure> {
    match query(q, name) {
        None => Ok(false),
        Some("" | "1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(bad(format!(
            "{name}: {} is not true or false",
            yurt_types::limits::shown(other)
        ))),
    }
}

/// The field `path`'s last part of `v` as a whole number; absent or null is 0, anything else
/// is refused (a deadline sent as a string must not mean "no deadline").
pub(super) fn number_field(v: &Value, path: &str) -> Result<i64, Failure> {
    let key = path.rsplit('.').next().unwrap_or(path);
    match v.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(n) => n
            .as_i64()
            .ok_or_else(|| bad(format!("{path}: expected a number, found {n}"))),
    }
}

/// As [`number_field`], for true or false; absent or null is `None`.
pub(super) fn opt_bool_field(v: &Value, path: &str) -> Result<Option<bool>, Failure> {
    let key = path.rsplit('.').next().unwrap_or(path);
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(b) => b
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(format!("{path}: expected true or false, found {b}"))),
    }
}

/// [`opt_bool_field`], absent meaning false.
pub(super) fn bool_field(v: &Value, path: &str) -> Result<bool, Failure> {
    Ok(opt_bool_field(v, path)?.unwrap_or(false))
}

/// As [`number_field`], for a string; absent or null is `""`.
pub(super) fn string_field(v: &Value, path: &str) -> Result<String, Failure> {
    let key = path.rsplit('.').next().unwrap_or(path);
    match v.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad(format!("{path}: expected a string, found {other}"))),
    }
}

/// As [`number_field`], for a list of strings; absent or null is empty.
pub(super) fn strings_field(v: &Value, path: &str) -> Result<Vec<String>, Failure> {
    let key = path.rsplit('.').next().unwrap_or(path);
    let wrong = |found: &Value| bad(format!("{path}: expected a list of strings, found {found}"));
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(String::from).ok_or_else(|| wrong(i)))
            .collect(),
        Some(other) => Err(wrong(other)),
    }
}

/// An ACL token as Nomad's API sends it (`Name`, `Type`, `Policies`, `Global`), for
/// `accessor_id` (empty: a new one).
pub(super) fn token_of(body: &Value, accessor_id: &str) -> Result<AclToken, Failure> {
    Ok(AclToken {
        accessor_id: accessor_id.to_string(),
        name: string_field(body, "Name")?,
        r#type: string_field(body, "Type")?,
        policies: strings_field(body, "Policies")?,
        global: bool_field(body, "Global")?,
        ..AclToken::default()
    })
}

/// The routes, for telling a wrong method (405) from a path that is none (404): `*` is any
/// one segment.
const PATHS: &[&str] = &[
    "v1/jobs",
    "v1/jobs/parse",
    "v1/validate/job",
    "v1/job/*",
    "v1/job/*/plan",
    "v1/job/*/summary",
    "v1/job/*/versions",
    "v1/job/*/allocations",
    "v1/job/*/evaluations",
    "v1/job/*/deployments",
    "v1/job/*/deployment",
    "v1/job/*/revert",
    "v1/job/*/evaluate",
    "v1/job/*/stable",
    "v1/job/*/scale",
    "v1/node/*/evaluate",
    "v1/allocations",
    "v1/allocation/*",
    "v1/allocation/*/stop",
    "v1/client/allocation/*/stats",
    "v1/client/allocation/*/signal",
    "v1/client/allocation/*/restart",
    "v1/client/allocation/*/gc",
    "v1/client/stats",
    "v1/scaling/policies",
    "v1/scaling/policy/*",
    "v1/client/gc",
    "v1/evaluations",
    "v1/evaluation/*",
    "v1/evaluation/*/allocations",
    "v1/nodes",
    "v1/node/*",
    "v1/node/*/allocations",
    "v1/node/*/eligibility",
    "v1/node/*/drain",
    "v1/deployments",
    "v1/deployment/*",
    "v1/deployment/allocations/*",
    "v1/deployment/*/*",
    "v1/status/leader",
    "v1/status/peers",
    "v1/agent/members",
    "v1/agent/self",
    "v1/agent/servers",
    "v1/agent/health",
    "v1/operator/raft/configuration",
    "v1/operator/scheduler/configuration",
    "v1/system/gc",
    "v1/system/reconcile/summaries",
    "v1/agent/join",
    "v1/agent/force-leave",
    "v1/regions",
    "v1/metrics",
    "v1/acl/bootstrap",
    "v1/acl/policies",
    "v1/acl/policy/*",
    "v1/acl/tokens",
    "v1/acl/token",
    "v1/acl/token/*",
    "v1/vars",
    "v1/search",
    "v1/search/fuzzy",
    "v1/namespaces",
    "v1/operator/keyring/keys",
    "v1/operator/keyring/rotate",
];

/// 405 for a route that takes other methods, else 404.
pub(super) fn no_route(method: &Method, parts: &[&str]) -> Failure {
    let path = parts.join("/");
    let known = PATHS.iter().any(|p| {
        let pat: Vec<&str> = p.split('/').collect();
        pat.len() == parts.len() && pat.iter().zip(parts).all(|(a, b)| *a == "*" || a == b)
    });
    if known {
        Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed for /{path}"),
        )
    } else {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {method} {}",
                yurt_types::limits::shown(&format!("/{path}"))
            ),
        )
    }
}

/// A percent-encoded path segment or query value as the text it stands for.
pub(super) fn decoded(raw: &str) -> Result<String, Failure> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad(format!("{raw:?} is not percent-encoded UTF-8")))
}

/// A blocking query's `?index=N&wait=D`: the index to wait past and for how long at most
/// (Nomad's default five minutes); a value that is not one is refused, not guessed.
pub(super) fn blocking(q: &str) -> Result<Option<(u64, Duration)>, Failure> {
    let Some(index) = query(q, "index") else {
        return Ok(None);
    };
    let index = index.parse::<u64>().map_err(|_| {
        bad(format!(
            "index {} is not a whole number",
            yurt_types::limits::shown(index)
        ))
    })?;
    let wait = match query(q, "wait") {
        None => Duration::from_secs(300),
        Some(w) => {
            let w = decoded(w)?;
            yurt_types::duration::parse(&w).map_err(|e| bad(format!("wait: {e}")))?
        }
    };
    Ok(Some((index, wait.min(MAX_WAIT))))
}

/// The job of a request body (`{"Job": ...}`, or the job itself) in Nomad's job JSON
/// ([`yurt_types::nomad_job`]); a field Yurt does not know, or a wrong value, is a 400 naming
/// its path.
pub(super) fn nomad_job(body: &Value) -> Result<(Job, Vec<String>), Failure> {
    let inner = body.get("Job").unwrap_or(body);
    if !inner.is_object() {
        return Err(bad("request body must be a JSON object with \"Job\""));
    }
    yurt_types::nomad_job::from_nomad(inner).map_err(|e| bad(format!("invalid Job: {e}")))
}

/// `POST /v1/validate/job` (Nomad's answer: `ValidationErrors`, `Error`, `Warnings`): the job
/// read, completed with its defaults and checked as a registration would be, registering
/// nothing.
pub(super) fn validate_job(body: &Value, region: &str) -> Value {
    let checked =
        nomad_job(body)
            .map_err(|Failure(_, why, _)| why)
            .and_then(|(mut job, warnings)| {
                yurt_types::jobspec::canonicalize(&mut job);
                yurt_types::jobspec::validate(&job)
                    .and_then(|()| yurt_types::jobspec::place_in_region(&mut job, region))
                    .map(|()| warnings)
                    .map_err(|p| p.to_string())
            });
    let (errors, warnings) = match checked {
        Ok(w) => (Vec::new(), w),
        Err(why) => (vec![why], Vec::new()),
    };
    serde_json::json!({
        "DriverConfigValidated": errors.is_empty(),
        "ValidationErrors": errors,
        "Error": errors.join("; "),
        "Warnings": warnings.join("\n"),
    })
}

/// Makes the gRPC requests of one HTTP request's in-process calls: they carry its ACL token,
/// its `?namespace=` and, with `?stale`, allow a read from this server's copy.
pub(super) struct Rq {
    pub(super) token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    pub(super) stale: bool,
    pub(super) namespace: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Rq {
    pub(super) fn of<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(t) = &self.token {
            req.metadata_mut().insert(crate::read::TOKEN_KEY, t.clone());
        }
        if self.stale {
            req.metadata_mut().insert(
                crate::read::STALE_KEY,
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        if let Some(ns) = &self.namespace {
            req.metadata_mut()
                .insert(crate::scope::NAMESPACE_KEY, ns.clone());
        }
        req
    }

    /// The request naming job `id`.
    pub(super) fn job(&self, id: &str) -> tonic::Request<GetJobRequest> {
        self.of(GetJobRequest {
            job_id: id.to_string(),
        })
    }
}

pub(super) fn set_headers(r: &mut HttpResponse, content_type: &'static str, index: u64) {
    let h = r.headers_mut();
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    for name in ["x-nomad-index", "x-yurt-index"] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&index.to_string()) {
            h.insert(name, v);
        }
    }
}

/// A JSON answer (pretty, as Nomad's), with the index headers.
pub(super) fn json_response(v: &Value, index: u64) -> HttpResponse {
    let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let mut r = Response::new(full(text));
    set_headers(&mut r, "application/json", index);
    r
}

/// An answer of one sentence: whatever a route or a check says, the caller gets one short line
/// ([`yurt_types::limits::tidy`]).
pub(super) fn plain(code: StatusCode, msg: &str, index: u64) -> HttpResponse {
    // The sentence alone, without a newline, as Nomad's error bodies are.
    let line = yurt_types::limits::tidy(msg);
    let mut r = Response::new(full(line));
    *r.status_mut() = code;
    set_headers(&mut r, "text/plain; charset=utf-8", index);
    r
}

/// The request's JSON body (`null` when empty), within the size and time limits.
pub(super) async fn read_body<B>(body: B) -> Result<Value, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = Limited::new(body, MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => {
            return Err(Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}s",
                    BODY_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "cannot read the request body (at most {} MiB): {e}",
                    MAX_BODY >> 20
                ),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("request body is not valid JSON: {e}")))
}
