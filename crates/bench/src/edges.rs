//! `yurt-bench fuzz-edges [N] [SEED]`: generated requests against the API edges of one server
//! started in-process (its gRPC services behind the agent's guard layer, and its HTTP API, each
//! on a loopback port): every public RPC of the `yurt.v1` package (read from the compiled
//! descriptors, so a new one is fuzzed without a change here) sent raw bytes that are mutations
//! of valid messages, and HTTP requests on every route with mutated paths, queries and bodies.
//!
//! Rules: every call is answered within [`PER_CALL`] (a blocking query is given a short wait),
//! never with a gRPC `INTERNAL`/`UNKNOWN` or an HTTP 5xx, and a refusal is one sentence; after
//! each batch the server still answers. An input that breaks a rule is saved under
//! `fixtures/fuzz/grpc` or `fixtures/fuzz/http`, replayed by the tests.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};
use prost::Message;
use tokio::net::TcpStream;
use yurt_types::v1;

use crate::fuzz::{mutate, regressions, save, sentence, Report};

/// Longest one call may take (a blocking query is asked to wait less).
const PER_CALL: Duration = Duration::from_secs(10);
/// What an input that no HTTP client could send is (the server never sees it): not a failure.
const NOT_A_REQUEST: &str = "not a request";

/// How often the server is asked whether it still answers.
const HEALTH_EVERY: u64 = 200;

/// The two edges, by the name their saved inputs go under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Grpc,
    Http,
}

impl Edge {
    pub fn name(self) -> &'static str {
        match self {
            Edge::Grpc => "grpc",
            Edge::Http => "http",
        }
    }
}

/// Every unary-or-streaming method of the public API, as a gRPC path, and whether the server
/// streams its answer.
fn public_methods() -> Vec<(String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(yurt_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptors decode");
    let mut out = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "yurt.v1") {
        for service in &file.service {
            for m in &service.method {
                out.push((
                    format!("/yurt.v1.{}/{}", service.name(), m.name()),
                    m.server_streaming(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// One server with its two edges on loopback, in this process.
pub struct Edges {
    rt: tokio::runtime::Runtime,
    grpc: SocketAddr,
    http: SocketAddr,
    methods: Vec<(String, bool)>,
    stop: tokio::sync::watch::Sender<bool>,
    server: std::sync::Arc<yurt_server::Server>,
    _dir: tempfile::TempDir,
}

impl Edges {
    /// Starts a server that bootstraps alone, and waits until it leads.
    pub fn start() -> Edges {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (grpc, http, stop, server) = rt.block_on(async {
            let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc = grpc_l.local_addr().unwrap();
            let http = http_l.local_addr().unwrap();
            let config = yurt_server::ServerConfig {
                data_dir: dir.path().to_path_buf(),
                name: "fuzz".into(),
                advertise_addr: grpc.to_string(),
                bootstrap_expect: 1,
                join: vec![],
                datacenter: "dc1".into(),
                autopilot: yurt_server::leader::AutopilotSettings {
                    stabilization: Duration::from_secs(10),
                    dead_server: Duration::from_secs(60),
                },
                snapshot_threshold: 8192,
                heartbeat: Default::default(),
                trailing_logs: 10_240,
                raft_multiplier: 1,
                region: "global".into(),
                gc: Default::default(),
                gc_interval: Duration::from_secs(300),
                dialer: yurt_tls::Dialer::plain(),
                acl_enabled: false,
                http_addr: String::new(),
            };
            let server = std::sync::Arc::new(
                yurt_server::Server::start(config)
                    .await
                    .expect("an in-process server starts"),
            );
            let mut routes = tonic::service::RoutesBuilder::default();
            server.add_services(&mut routes);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let mut grpc_stop = stopped.clone();
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_l);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(yurt_server::guard::Guard::new(
                        &yurt_tls::TlsConfig::default(),
                        "global",
                    ))
                    .add_routes(routes.routes())
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = grpc_stop.changed().await;
                    }),
            );
            tokio::spawn(yurt_server::http::serve(
                http_l,
                server.api(),
                None,
                stopped,
            ));
            (grpc, http, stop, server)
        });
        let edges = Edges {
            rt,
            grpc,
            http,
            methods: public_methods(),
            stop,
            server,
            _dir: dir,
        };
        let started = Instant::now();
        while edges.healthy().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the in-process server never led"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        edges
    }

    /// Whether the server still answers a consistent read.
    fn healthy(&self) -> Result<(), String> {
        let (status, body) = self.http_request("GET", "/v1/status/leader", &[])?;
        if status == 200 && body.len() > 2 {
            Ok(())
        } else {
            Err(format!("the server no longer answers: {status} {body}"))
        }
    }

    /// One HTTP request; its status and body.
    fn http_request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", self.http.to_string())
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|_| NOT_A_REQUEST.to_string())?;
        let addr = self.http;
        self.rt.block_on(async move {
            let call = async {
                let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
            };
            tokio::time::timeout(PER_CALL, call)
                .await
                .map_err(|_| format!("a hang: no answer within {PER_CALL:?}"))?
        })
    }

    /// One gRPC call of `path` with `message` as its raw request; the status and message.
    fn grpc_call(
        &self,
        path: &str,
        streaming: bool,
        message: &[u8],
    ) -> Result<(u32, String), String> {
        let mut framed = Vec::with_capacity(message.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.grpc))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            // A blocking query waits at most this long.
            .header("grpc-timeout", "100m")
            .body(Full::new(Bytes::from(framed)))
            .map_err(|e| e.to_string())?;
        let addr = self.grpc;
        self.rt.block_on(async move {
            let call = async {
                let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let (mut send, conn) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    hyper_util::rt::TokioIo::new(tcp),
                )
                .await
                .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
                let mut headers = resp.headers().clone();
                if !headers.contains_key("grpc-status") && !streaming {
                    // The status comes in the trailers after the answer.
                    let collected = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Some(t) = collected.trailers() {
                        headers.extend(t.clone());
                    }
                }
                let status = headers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    // A stream that began answering is fine: the call was taken.
                    .unwrap_or(if streaming { 0 } else { u32::MAX });
                let message = headers
                    .get("grpc-message")
                    .map(|v| {
                        percent_encoding::percent_decode(v.as_bytes())
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                Ok::<_, String>((status, message))
            };
            tokio::time::timeout(PER_CALL, call)
                .await
                .map_err(|_| format!("a hang: no answer within {PER_CALL:?}"))?
        })
    }

    /// Runs one input against its edge: Ok, or the rule it broke.
    pub fn run_one(&self, edge: Edge, input: &[u8]) -> Result<(), String> {
        match edge {
            Edge::Grpc => {
                let Some((&which, message)) = input.split_first() else {
                    return Ok(());
                };
                let (path, streaming) = &self.methods[usize::from(which) % self.methods.len()];
                let (status, text) = self.grpc_call(path, *streaming, message)?;
                match status {
                    0 => Ok(()),
                    // INTERNAL, UNKNOWN, or no status at all: the server's fault.
                    2 | 13 | u32::MAX => Err(format!("{path}: status {status}: {text}")),
                    _ => sentence(&text).map_err(|e| format!("{path}: {e}")),
                }
            }
            Edge::Http => {
                let text = String::from_utf8_lossy(input);
                let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
                let (method, target) = head.split_once(' ').unwrap_or(("GET", head));
                let method = method.trim();
                if !["GET", "PUT", "POST", "DELETE"].contains(&method) || !target.starts_with('/') {
                    return Ok(());
                }
                // A blocking query waits 10 ms at most (a first `wait` is the one read).
                let target = match target.split_once('?') {
                    Some((path, query)) => format!("{path}?wait=10ms&{query}"),
                    None => target.to_string(),
                };
                let (status, answer) = match self.http_request(method, &target, body.as_bytes()) {
                    Err(e) if e == NOT_A_REQUEST => return Ok(()),
                    other => other?,
                };
                match status {
                    200..=299 => Ok(()),
                    500.. => Err(format!("{method} {target}: HTTP {status}: {answer}")),
                    _ => sentence(answer.trim_end()).map_err(|e| format!("{method} {target}: {e}")),
                }
            }
        }
    }

    /// Stops the server and its edges.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let server = self.server.clone();
        self.rt.block_on(async move { server.shutdown().await });
    }
}

/// The seeds of an edge: valid requests, and every saved regression.
fn seeds(root: &Path, edge: Edge, methods: &[(String, bool)]) -> Vec<Vec<u8>> {
    let web = std::fs::read(root.join("examples/web.hcl")).unwrap_or_default();
    let job = yurt_types::jobspec::parse_hcl("web.hcl", &String::from_utf8_lossy(&web)).ok();
    let mut out: Vec<Vec<u8>> = Vec::new();
    match edge {
        Edge::Grpc => {
            let node = v1::Node {
                id: "00000000-0000-4000-8000-000000000001".into(),
                name: "fuzz-node".into(),
                datacenter: "dc1".into(),
                version: yurt_types::VERSION.into(),
                resources: Some(v1::Resources {
                    cpu: 1000,
                    memory_mb: 1000,
                    memory_max_mb: 0,
                }),
                ..Default::default()
            };
            let messages: Vec<Vec<u8>> = vec![
                v1::RegisterJobRequest {
                    job: job.clone(),
                    ..Default::default()
                }
                .encode_to_vec(),
                v1::RegisterNodeRequest { node: Some(node) }.encode_to_vec(),
                v1::GetJobRequest {
                    job_id: "web".into(),
                }
                .encode_to_vec(),
                v1::ClientAllocsRequest {
                    node_id: "00000000-0000-4000-8000-000000000001".into(),
                    wait_ms: 60_000,
                    paged: true,
                    ..Default::default()
                }
                .encode_to_vec(),
                Vec::new(),
            ];
            // Each message to every method: a message of one type read as another's is input
            // like any other.
            for which in 0..methods.len() {
                for m in &messages {
                    let mut input = vec![which as u8];
                    input.extend_from_slice(m);
                    out.push(input);
                }
            }
        }
        Edge::Http => {
            let job_json = job
                .as_ref()
                .map(|j| {
                    let ours = serde_json::to_value(j).unwrap_or_default();
                    serde_json::json!({ "Job": yurt_types::nomad_json::to_nomad(&ours) })
                        .to_string()
                })
                .unwrap_or_default();
            for request in [
                "GET /v1/jobs".to_string(),
                "GET /v1/jobs?prefix=we&index=1".to_string(),
                format!("POST /v1/jobs\n\n{job_json}"),
                format!("POST /v1/job/web/plan\n\n{job_json}"),
                format!("POST /v1/jobs/parse\n\n{{\"JobHCL\": {:?}}}", String::from_utf8_lossy(&web)),
                "GET /v1/job/web".into(),
                "DELETE /v1/job/web?purge=true".into(),
                "GET /v1/job/web/versions".into(),
                "GET /v1/job/web/allocations".into(),
                "GET /v1/job/web/evaluations".into(),
                "GET /v1/job/web/deployment".into(),
                "POST /v1/job/web/revert\n\n{\"JobID\": \"web\", \"JobVersion\": 0}".into(),
                "GET /v1/allocations?prefix=a".into(),
                "GET /v1/allocation/a1".into(),
                "GET /v1/evaluations".into(),
                "GET /v1/nodes?index=3".into(),
                "POST /v1/node/n1/eligibility\n\n{\"Eligibility\": \"ineligible\"}".into(),
                "POST /v1/node/n1/drain\n\n{\"DrainSpec\": {\"Deadline\": 1000000000}}".into(),
                "GET /v1/deployments".into(),
                "POST /v1/deployment/promote/d1\n\n{\"All\": true}".into(),
                "GET /v1/status/peers".into(),
                "GET /v1/agent/members".into(),
                "GET /v1/agent/self".into(),
                "GET /v1/operator/raft/configuration".into(),
                "GET /v1/acl/policies".into(),
                "POST /v1/acl/policy/p\n\n{\"Name\": \"p\", \"Rules\": \"node { policy = \\\"read\\\" }\"}".into(),
                "GET /v1/metrics?format=prometheus".into(),
                "PUT /v1/var/app/db?cas=0\n\n{\"Items\": {\"user\": \"me\"}}".into(),
                "GET /v1/var/app/db?namespace=default".into(),
                "DELETE /v1/var/app/db?cas=3".into(),
                "GET /v1/vars?prefix=app&per_page=1&next_token=app%2Fdb".into(),
                "PUT /v1/operator/keyring/rotate".into(),
                "PUT /v1/namespace/prod\n\n{\"Name\": \"prod\", \"Meta\": {\"a\": \"b\"}}".into(),
                "GET /v1/namespaces?prefix=p".into(),
                "DELETE /v1/namespace/prod".into(),
                "GET /v1/jobs?namespace=%2A".into(),
                "POST /v1/search\n\n{\"Prefix\": \"we\", \"Context\": \"all\"}".into(),
                "POST /v1/search/fuzzy\n\n{\"Text\": \"web\", \"Context\": \"tasks\"}".into(),
                "GET /v1/scaling/policies?job=web".into(),
                "POST /v1/job/web/scale\n\n{\"Count\": 2, \"Target\": {\"Group\": \"g\"}}".into(),
                "POST /v1/job/web/stable\n\n{\"JobVersion\": 0, \"Stable\": true}".into(),
                "POST /v1/job/web/evaluate\n\n{\"EvalOptions\": {\"ForceReschedule\": false}}".into(),
                "POST /v1/node/n1/evaluate".into(),
                "GET /v1/client/fs/ls/a1?path=%2F".into(),
                "GET /v1/client/fs/logs/a1?task=t&type=stderr&follow=false&origin=end".into(),
                "POST /v1/client/allocation/a1/signal\n\n{\"Signal\": \"SIGHUP\"}".into(),
                "GET /v1/client/stats".into(),
                "PUT /v1/agent/force-leave?node=s9".into(),
            ] {
                out.push(request.into_bytes());
            }
        }
    }
    out.extend(regressions(root, edge.name()).into_iter().map(|(_, b)| b));
    out
}

/// Runs `n` generated requests, alternating the edges, from `seed`, against one in-process
/// server; stops at the first hang or the first time the server no longer answers.
pub fn fuzz(root: &Path, n: u64, seed: u64) -> Report {
    let started = Instant::now();
    let edges = Edges::start();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8] = 0xed;
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let all = [Edge::Grpc, Edge::Http];
    let pools: Vec<Vec<Vec<u8>>> = all
        .iter()
        .map(|e| seeds(root, *e, &edges.methods))
        .collect();
    let mut failures = Vec::new();
    let mut inputs = 0;
    while inputs < n {
        let i = (inputs % 2) as usize;
        let edge = all[i];
        let pool = &pools[i];
        let mut input = pool[rng.random_range(0..pool.len())].clone();
        for _ in 0..rng.random_range(0..3u8) {
            mutate(&mut rng, &mut input);
        }
        // The method a gRPC input is for is its first byte: often any method at all.
        if edge == Edge::Grpc && rng.random_range(0..2u8) == 0 {
            if let Some(first) = input.first_mut() {
                *first = rng.random_range(0..edges.methods.len() as u8);
            }
        }
        inputs += 1;
        let mut result = edges.run_one(edge, &input);
        if result.is_ok() && inputs % HEALTH_EVERY == 0 {
            result = edges.healthy();
        }
        if let Err(why) = result {
            let path = save(root, edge.name(), &input);
            let fatal = why.contains("a hang") || why.contains("no longer answers");
            failures.push((edge.name(), path, why));
            if fatal {
                break;
            }
        }
    }
    edges.stop();
    Report {
        inputs,
        elapsed: started.elapsed(),
        failures,
    }
}

/// Replays every saved regression of the edges; returns the ones that still break a rule.
pub fn replay(root: &Path) -> Vec<(std::path::PathBuf, String)> {
    let saved: Vec<(Edge, std::path::PathBuf, Vec<u8>)> = [Edge::Grpc, Edge::Http]
        .into_iter()
        .flat_map(|e| {
            regressions(root, e.name())
                .into_iter()
                .map(move |(p, b)| (e, p, b))
        })
        .collect();
    if saved.is_empty() {
        return Vec::new();
    }
    let edges = Edges::start();
    let out = saved
        .into_iter()
        .filter_map(|(e, path, input)| edges.run_one(e, &input).err().map(|why| (path, why)))
        .collect();
    edges.stop();
    out
}

/// `yurt-bench fuzz-edges [N] [SEED]`.
pub fn main(n: u64, seed: u64) {
    let root = crate::fuzz::root();
    let again = replay(&root);
    for (path, why) in &again {
        println!("  saved input {} still fails: {why}", path.display());
    }
    let r = fuzz(&root, n, seed);
    let secs = r.elapsed.as_secs_f64();
    println!(
        "fuzz-edges: {} requests over gRPC ({} public methods) and HTTP in {secs:.1} s ({:.0} requests/s), seed {seed}, {} failures",
        r.inputs,
        public_methods().len(),
        r.inputs as f64 / secs.max(1e-9),
        r.failures.len()
    );
    for (edge, path, why) in &r.failures {
        println!("  {edge}: {why} (saved as {})", path.display());
    }
    if !r.failures.is_empty() || !again.is_empty() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_method_is_fuzzed() {
        let methods = public_methods();
        assert!(methods.len() > 20, "{methods:?}");
        assert!(methods.iter().any(|(m, _)| m == "/yurt.v1.Jobs/Register"));
        assert!(methods.len() < 256, "a method is chosen by one byte");
    }

    #[test]
    fn a_short_fuzz_of_the_edges_breaks_no_rule_and_saved_inputs_pass() {
        let root = crate::fuzz::root();
        let again = replay(&root);
        assert!(again.is_empty(), "{again:#?}");
        let seed = std::env::var("YURT_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let r = fuzz(&root, 1_000, seed);
        assert_eq!(r.inputs, 1_000, "{:#?}", r.failures);
        assert!(r.failures.is_empty(), "seed {seed}: {:#?}", r.failures);
    }

    #[test]
    fn the_edge_rules_catch_what_they_are_for() {
        let edges = Edges::start();
        // A valid call passes; an unknown route and an undecodable message are refusals.
        assert!(edges.run_one(Edge::Http, b"GET /v1/jobs").is_ok());
        let (status, _) = edges.http_request("GET", "/v1/nope", &[]).unwrap();
        assert_eq!(status, 404);
        let register = public_methods()
            .iter()
            .position(|(m, _)| m == "/yurt.v1.Jobs/Register")
            .unwrap();
        let (code, text) = edges
            .grpc_call("/yurt.v1.Jobs/Register", false, &[0xff, 0xff, 0xff])
            .unwrap();
        assert_eq!(code, 3, "{text}");
        let mut input = vec![register as u8];
        input.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(edges.run_one(Edge::Grpc, &input).is_ok());
        edges.stop();
    }
}
