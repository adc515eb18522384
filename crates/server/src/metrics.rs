//! Metrics for `/v1/metrics`: timings and counts recorded where things happen (Raft applies,
//! plan commits, heartbeats, HTTP requests, leader changes), and gauges read off the state when
//! asked (nodes, allocations, deployments and jobs by status, the evaluation queue, Raft
//! indexes). Shown as Nomad's JSON (`Gauges`, `Counters`, `Samples`) or, with
//! `?format=prometheus`, as Prometheus text (names with `_` for `.`).

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use yurt_core::state::State;
use yurt_types::status::*;

/// A timing: how many, and their sum, least and most (milliseconds).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<BTreeMap<String, Sample>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    pub fn incr(&self, name: &str) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        // The name is allocated once, when first seen (these run on every request).
        match counters.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                counters.insert(name.to_string(), 1);
            }
        }
    }

    pub fn observe(&self, name: &str, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if !samples.contains_key(name) {
            samples.insert(name.to_string(), Sample::default());
        }
        let Some(s) = samples.get_mut(name) else {
            return;
        };
        if s.count == 0 || ms < s.min {
            s.min = ms;
        }
        s.max = s.max.max(ms);
        s.count += 1;
        s.sum += ms;
    }
}

/// Times every gRPC request this agent serves (`yurt.rpc.<Service>.<Method>`, until the
/// response starts), as a tower layer on the gRPC server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTimer;

impl<S> tower::Layer<S> for RpcTimer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed(inner)
    }
}

#[derive(Debug, Clone)]
pub struct Timed<S>(S);

impl<S, B> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // `/yurt.v1.Jobs/Register` → `yurt.rpc.Jobs.Register`.
        let path = req.uri().path();
        let name = path
            .trim_start_matches('/')
            .rsplit_once('/')
            .map(|(service, method)| {
                let service = service.rsplit('.').next().unwrap_or(service);
                format!("yurt.rpc.{service}.{method}")
            })
            .unwrap_or_else(|| "yurt.rpc.unknown".into());
        let started = std::time::Instant::now();
        let fut = self.0.call(req);
        Box::pin(async move {
            let r = fut.await;
            metrics().observe(&name, started.elapsed());
            r
        })
    }
}

/// A gauge: name, labels, value.
type Gauge = (&'static str, Vec<(&'static str, String)>, f64);

/// The gauges of a state (this server's copy) and its Raft position.
fn gauges(state: &State, raft: &[(&'static str, u64)]) -> Vec<Gauge> {
    let mut out: Vec<Gauge> = Vec::new();
    let mut count_by = |name: &'static str, label: &'static str, values: Vec<String>| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        for (v, n) in counts {
            out.push((name, vec![(label, v)], n as f64));
        }
    };
    count_by(
        "yurt.nodes",
        "status",
        state.nodes.values().map(|n| n.status.clone()).collect(),
    );
    count_by(
        "yurt.allocations",
        "client_status",
        state
            .allocs
            .values()
            .filter(|a| {
                a.desired_status == ALLOC_DESIRED_RUN || !alloc_client_terminal(&a.client_status)
            })
            .map(|a| a.client_status.clone())
            .collect(),
    );
    count_by(
        "yurt.deployments",
        "status",
        state
            .deployments
            .values()
            .map(|d| d.status.clone())
            .collect(),
    );
    count_by(
        "yurt.jobs",
        "status",
        state.jobs.values().map(|j| j.status.clone()).collect(),
    );
    for status in [EVAL_PENDING, EVAL_BLOCKED] {
        out.push((
            "yurt.broker.evaluations",
            vec![("status", status.to_string())],
            state.evals.in_state(status).count() as f64,
        ));
    }
    for (name, v) in raft {
        out.push((name, vec![], *v as f64));
    }
    out
}

/// The metrics as Nomad's `/v1/metrics` JSON.
pub fn json_report(state: &State, raft: &[(&'static str, u64)], now_unix_ms: i64) -> Value {
    let m = metrics();
    let gauges: Vec<Value> = gauges(state, raft)
        .into_iter()
        .map(|(name, labels, value)| {
            json!({
                "Name": name,
                "Value": value,
                "Labels": labels.into_iter().collect::<BTreeMap<_, _>>(),
            })
        })
        .collect();
    let counters: Vec<Value> = m
        .counters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, n)| json!({ "Name": name, "Count": n, "Sum": n }))
        .collect();
    let samples: Vec<Value> = m
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, s)| {
            json!({
                "Name": name,
                "Count": s.count,
                "Sum": s.sum,
                "Min": s.min,
                "Max": s.max,
                "Mean": if s.count == 0 { 0.0 } else { s.sum / s.count as f64 },
            })
        })
        .collect();
    json!({
        // Nanoseconds since the epoch, as every time in the HTTP API.
        "Timestamp": now_unix_ms.saturating_mul(1_000_000),
        "Gauges": gauges,
        "Counters": counters,
        "Samples": samples,
    })
}

fn prom_name(name: &str) -> String {
    name.replace('.', "_")
}

fn prom_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The metrics as Prometheus text (version 0.0.4): gauges, counters (`_total`) and timings as
/// summaries in milliseconds (`_sum`, `_count`).
pub fn prometheus_report(state: &State, raft: &[(&'static str, u64)]) -> String {
    let m = metrics();
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    for (name, labels, value) in gauges(state, raft) {
        let n = prom_name(name);
        if typed.insert(n.clone()) {
            out.push_str(&format!("# TYPE {n} gauge\n"));
        }
        out.push_str(&format!("{n}{} {value}\n", prom_labels(&labels)));
    }
    for (name, count) in m.counters.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let n = format!("{}_total", prom_name(name));
        out.push_str(&format!("# TYPE {n} counter\n{n} {count}\n"));
    }
    for (name, s) in m.samples.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let n = format!("{}_ms", prom_name(name));
        out.push_str(&format!(
            "# TYPE {n} summary\n{n}_sum {}\n{n}_count {}\n",
            s.sum, s.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_in_both_shapes() {
        let mut state = State::default();
        state.nodes.insert(
            "n1".into(),
            yurt_proto::v1::Node {
                id: "n1".into(),
                status: NODE_READY.into(),
                ..Default::default()
            },
        );
        metrics().incr("yurt.test.counter");
        metrics().observe("yurt.test.timing", Duration::from_millis(4));
        metrics().observe("yurt.test.timing", Duration::from_millis(2));
        let raft = [("yurt.raft.last_log_index", 7)];
        let j = json_report(&state, &raft, 1_000);
        let nodes = j["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["Name"] == "yurt.nodes")
            .unwrap();
        assert_eq!(
            (nodes["Labels"]["status"].as_str(), nodes["Value"].as_f64()),
            (Some("ready"), Some(1.0))
        );
        let t = j["Samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == "yurt.test.timing")
            .unwrap();
        assert_eq!(
            (t["Count"].as_u64(), t["Min"].as_f64(), t["Max"].as_f64()),
            (Some(2), Some(2.0), Some(4.0))
        );
        let p = prometheus_report(&state, &raft);
        assert!(
            p.contains("# TYPE yurt_nodes gauge\nyurt_nodes{status=\"ready\"} 1\n"),
            "{p}"
        );
        assert!(p.contains("yurt_raft_last_log_index 7\n"), "{p}");
        assert!(p.contains("yurt_test_counter_total 1\n"), "{p}");
        assert!(p.contains("yurt_test_timing_ms_count 2\n"), "{p}");
    }
}
