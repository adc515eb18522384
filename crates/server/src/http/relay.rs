//! The HTTP API of an agent that runs no server (a client agent), as Nomad's clients serve
//! theirs: each call is passed on to the HTTP API of the server that last answered this client
//! (servers name it in their answers to registrations and heartbeats), and its answer streams
//! back as it comes, so blocking queries, followed logs, the event stream and the web UI work
//! through any agent. With `tls { http = true }` it serves HTTPS and calls the server over
//! HTTPS with the agent's certificate. Until a server has named its HTTP API, calls are refused
//! in one sentence; a server that does not answer is named in another.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use yurt_tls::HttpsClient;

type RelayBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Where calls go: the server's HTTP API (host:port), once known.
pub type Upstream = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How long the server gets to start answering a call that is not a blocking query (a
/// write waits for its commit, which the server bounds well within this).
pub const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// How much longer than its `wait` a blocking query's answer may take to start.
const BLOCKING_MARGIN: Duration = Duration::from_secs(30);

/// Until when the server may take to start answering a call with query `q`: a blocking query
/// its `wait` and a margin, any other call `call`. Streams (logs, events) start at once.
fn deadline(q: &str, call: Duration) -> Duration {
    match super::request::blocking(q) {
        Ok(Some((_, wait))) => wait + BLOCKING_MARGIN,
        _ => call,
    }
}

/// Serves `listener` until `stop` changes (over TLS with `tls`), passing every call on to
/// `upstream()` (over TLS with `to_server`); a server that has not started answering a call
/// within its deadline (`call` for all but blocking queries) is named in a 504.
pub async fn serve(
    listener: TcpListener,
    upstream: Upstream,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    to_server: Option<HttpsClient>,
    call: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    while let Some(stream) = super::next_connection(&listener, &mut stop).await {
        let (upstream, tls, to_server) = (upstream.clone(), tls.clone(), to_server.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (upstream, to_server) = (upstream.clone(), to_server.clone());
                async move { Ok::<_, Infallible>(relay(upstream(), to_server, call, req).await) }
            });
            super::serve_one(stream, tls, svc).await;
        });
    }
}

/// One call passed on to the server at `to`.
async fn relay(
    to: Option<String>,
    tls: Option<HttpsClient>,
    call: Duration,
    req: Request<Incoming>,
) -> Response<RelayBody> {
    let Some(to) = to else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "this client agent has not heard from a server yet, so it has no server's HTTP API to pass the call on to: try again once it has registered".into(),
        );
    };
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, format!("{path}: {e}")),
    };
    // The server's own name for itself goes with the call, not this agent's.
    match hyper::header::HeaderValue::from_str(&to) {
        Ok(host) => parts.headers.insert(hyper::header::HOST, host),
        Err(_) => parts.headers.remove(hyper::header::HOST),
    };
    let within = deadline(parts.uri.query().unwrap_or(""), call);
    let sent = send(&to, tls, Request::from_parts(parts, body));
    match tokio::time::timeout(within, sent).await {
        Ok(Ok(answer)) => answer.map(|b| b.boxed_unsync()),
        Ok(Err(e)) => refusal(
            StatusCode::BAD_GATEWAY,
            format!("the server's HTTP API at {to} did not answer: {e}"),
        ),
        Err(_) => refusal(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the server's HTTP API at {to} did not answer within {within:?}"),
        ),
    }
}

/// Sends `req` to `to` on a connection of its own (HTTPS with `tls`); the answer's body
/// streams as the server writes it.
async fn send(
    to: &str,
    tls: Option<HttpsClient>,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to))
        .await
        .map_err(|_| "no connection within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => over(TokioIo::new(tcp), req).await,
        Some(tls) => {
            let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
            let name = tls.server_name(host)?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let handshake = connector.connect(name, tcp);
            let stream = tokio::time::timeout(Duration::from_secs(5), handshake)
                .await
                .map_err(|_| "no TLS handshake within 5 s".to_string())?
                .map_err(|e| format!("TLS: {e}"))?;
            over(TokioIo::new(stream), req).await
        }
    }
}

async fn over<IO>(io: IO, req: Request<Incoming>) -> Result<Response<Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn refusal(status: StatusCode, sentence: String) -> Response<RelayBody> {
    let body = http_body_util::Full::new(Bytes::from(sentence))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_call_is_refused_in_one_sentence_until_a_server_is_known_and_when_it_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A port nothing listens on, once "known".
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap().to_string();
        drop(gone);
        let known = Arc::new(std::sync::Mutex::new(None::<String>));
        let k = known.clone();
        let (stop, stopped) = watch::channel(false);
        let upstream: Upstream = Arc::new(move || k.lock().unwrap().clone());
        tokio::spawn(serve(
            listener,
            upstream,
            None,
            None,
            CALL_DEADLINE,
            stopped,
        ));
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains("has not heard from a server yet"),
            "{answer}"
        );
        *known.lock().unwrap() = Some(gone_addr.clone());
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains(&format!(
                "the server's HTTP API at {gone_addr} did not answer"
            )),
            "{answer}"
        );
        stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn a_server_that_takes_a_call_and_never_answers_is_named_once_its_deadline_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts connections and reads, never answers (as a paused server's kernel does).
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let (stop, stopped) = watch::channel(false);
        let to = silent_addr.clone();
        let upstream: Upstream = Arc::new(move || Some(to.clone()));
        let call = Duration::from_millis(200);
        tokio::spawn(serve(listener, upstream, None, None, call, stopped));
        let answer = tokio::time::timeout(Duration::from_secs(30), get(addr))
            .await
            .expect("the relay answers by itself");
        assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
        assert!(
            answer.contains(&format!(
                "the server's HTTP API at {silent_addr} did not answer within 200ms"
            )),
            "{answer}"
        );
        stop.send(true).unwrap();
    }

    #[test]
    fn a_blocking_query_gets_its_wait_and_a_margin_and_other_calls_the_call_deadline() {
        let call = Duration::from_secs(7);
        assert_eq!(deadline("", call), call);
        assert_eq!(deadline("namespace=x", call), call);
        assert_eq!(
            deadline("index=5&wait=10s", call),
            Duration::from_secs(10) + BLOCKING_MARGIN
        );
        assert_eq!(
            deadline("index=5", call),
            Duration::from_secs(300) + BLOCKING_MARGIN
        );
        // Past the servers' longest wait, the longest wait.
        assert_eq!(
            deadline("index=5&wait=1h", call),
            Duration::from_secs(600) + BLOCKING_MARGIN
        );
        // A wait the server will refuse: it refuses at once.
        assert_eq!(deadline("index=x", call), call);
    }
}
