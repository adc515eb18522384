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

pub(super) type HttpResponse = Response<Full<Bytes>>;

/// A failed request: status and one sentence.
#[derive(Debug)]
pub(super) struct Failure(pub(super) StatusCode, pub(super) String);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        let code = match s.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            // The server is busy with other requests of the kind (`heavy`): try again later.
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, s.message().to_string())
    }
}

pub(super) fn bad(msg: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, msg.into())
}

pub(super) type Answer = Result<Value, Failure>;

pub(super) fn json<T: serde::Serialize>(v: &T) -> Answer {
    serde_json::to_value(v)
        .map(|v| to_nomad(&v))
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The query parameter `name`, if given (still percent-encoded).
pub(super) fn query<'a>(q: &'a str, name: &str) -> Option<&'a str> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
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
    let checked = nomad_job(body)
        .map_err(|Failure(_, why)| why)
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

/// Makes the gRPC requests of one HTTP request's in-process calls: they carry its ACL token
/// and, with `?stale`, allow a read from this server's copy.
pub(super) struct Rq {
    pub(super) token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    pub(super) stale: bool,
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

/// An answer of one sentence: whatever a route or a check says, the caller gets one short line
/// ([`yurt_types::limits::tidy`]).
pub(super) fn plain(code: StatusCode, msg: &str, index: u64) -> HttpResponse {
    let line = yurt_types::limits::tidy(msg);
    let mut r = Response::new(Full::new(Bytes::from(format!("{line}\n"))));
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
            return Err(Failure(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}s",
                    BODY_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => {
            return Err(Failure(
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
