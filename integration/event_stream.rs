//! The event stream over plain HTTP: `GET /v1/event/stream` delivers a drain's `NodeDrain`
//! event, resumes after `index` from the events the servers keep, filters by
//! `topic=Job:web`, and refuses an unknown topic with one sentence; `yurt event stream`; a
//! subscriber that stops reading is dropped while the servers carry on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A subscription: the stream's lines (its chunks) as they come.
pub(crate) struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    fn open(http: &str, query: &str) -> Stream {
        Stream::open_with(http, query, "")
    }

    /// A subscription with an ACL token (none when empty).
    pub(crate) fn open_with(http: &str, query: &str, token: &str) -> Stream {
        Stream::get(http, &format!("/v1/event/stream?{query}"), token)
    }

    /// Any streamed answer of `GET path` (chunked; one JSON line per chunk).
    pub(crate) fn get(http: &str, path: &str, token: &str) -> Stream {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(timeout())).unwrap();
        let token = if token.is_empty() {
            String::new()
        } else {
            format!("X-Nomad-Token: {token}\r\n")
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n{token}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains("200"), "{status}");
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
        }
        Stream { reader }
    }

    /// The next line of the stream (chunked encoding: each chunk is one line).
    pub(crate) fn next_line(&mut self) -> Value {
        let mut size = String::new();
        self.reader.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("{size:?}"));
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).unwrap();
        serde_json::from_slice(&data[..n]).unwrap()
    }

    /// The next line, or `None` once the stream has ended (its last chunk, or the connection
    /// closed).
    fn try_next_line(&mut self) -> Option<Value> {
        let mut size = String::new();
        if self.reader.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).ok()?;
        serde_json::from_slice(&data[..n]).ok()
    }

    /// Reads lines until an event `pick` accepts; panics after `within`.
    fn until(&mut self, within: Duration, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            assert!(Instant::now() < deadline, "no such event within {within:?}");
            let line = self.next_line();
            if let Some(e) = line["Events"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| pick(e))
            {
                return e.clone();
            }
        }
    }
}

#[test]
fn a_drain_reaches_the_event_stream_and_streams_resume_and_filter() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    let web = web_job(&dir.path, "hello");
    agent.ok(&["job", "run", "-detach", web.to_str().unwrap()]);
    let nodes = agent.ok(&["node", "status", "-json"]);
    let node = serde_json::from_str::<Value>(&nodes).unwrap()["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // From now on: Node events only.
    let now = agent.ok(&["job", "inspect", "web"]);
    let index = serde_json::from_str::<Value>(&now).unwrap()["Job"]["ModifyIndex"]
        .as_u64()
        .unwrap();
    let mut nodes_only = Stream::open(&http, &format!("topic=Node&index={index}"));
    agent.ok(&["node", "drain", "-enable", "-yes", "-detach", &node]);
    // Delivered (bounded by the harness's wait; how fast is a figure, not an assertion).
    let drain = nodes_only.until(timeout(), |e| e["Type"] == "NodeDrain");
    assert_eq!(drain["Topic"], "Node");
    assert_eq!(drain["Key"], node.as_str());
    assert_eq!(drain["Payload"]["Node"]["ID"], node.as_str());
    // Resuming from the start: the job's registration is among the kept events; another
    // job's events are filtered out.
    let other = sh_batch_job(&dir.path, "other", 1, "true");
    agent.ok(&["job", "run", "-detach", other.to_str().unwrap()]);
    let mut jobs = Stream::open(&http, "topic=Job:web&index=0");
    let registered = jobs.until(timeout(), |e| e["Type"] == "JobRegistered");
    assert_eq!(registered["Key"], "web");
    assert_eq!(registered["Payload"]["Job"]["ID"], "web");
    let mut all_jobs = Stream::open(&http, "topic=Job&index=0");
    let seen = all_jobs.until(timeout(), |e| e["Key"] == "other");
    assert_eq!(seen["Topic"], "Job");
    let (status, _, text) = http_request(&http, "GET", "/v1/event/stream?topic=Jobs", "");
    assert!(status.contains("400"), "{status}");
    assert_eq!(
        text,
        "topic \"Jobs\" is not one of *, Job, Allocation, Deployment, Evaluation, Node"
    );
}

#[test]
fn yurt_event_stream_prints_the_events_as_json_lines() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let web = web_job(&dir.path, "hello");
    agent.ok(&["job", "run", "-detach", web.to_str().unwrap()]);
    let mut child = std::process::Command::new(YURT)
        .args([
            "event",
            "stream",
            "-topic",
            "Job:web",
            "-topic",
            "Node",
            "-no-heartbeats",
        ])
        .env("YURT_ADDR", &agent.grpc)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = wait_for("the job's registration in `yurt event stream`", || {
        let line = lines.next().ok_or("ended")?.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        for e in v["Events"].as_array().into_iter().flatten() {
            seen.push((e["Topic"].clone(), e["Key"].clone()));
        }
        v["Events"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["Type"] == "JobRegistered").cloned())
            .ok_or(line)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(found["Key"], "web");
    assert!(
        seen.iter()
            .all(|(t, k)| t == "Node" || (t == "Job" && k == "web")),
        "only the topics asked for: {seen:?}"
    );
    let bad = agent.yurt(&["event", "stream", "-topic", "Jobs"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("topic \"Jobs\" is not one of"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_the_servers_carry_on() {
    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let http = agent.http.clone().unwrap();
    // Subscribed, and then never read while the cluster writes far more than the sockets hold.
    let mut stalled = Stream::open(&http, "topic=Job");
    let pad = "x".repeat(32 * 1024);
    let writes = 1000;
    for i in 0..writes {
        let job = serde_json::json!({"Job": {"ID": format!("j{i}"), "Type": "batch",
            "Datacenters": ["nowhere"], "Meta": {"pad": pad},
            "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t",
                "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}});
        let (status, _, body) = http_request(&http, "POST", "/v1/jobs", &job.to_string());
        assert!(
            status.contains("200"),
            "write {i} while a subscriber stalls: {status} {body}"
        );
    }
    // A new subscriber is served at once.
    let mut fresh = Stream::open(&http, "topic=Job:j999&index=0");
    let e = fresh.until(timeout(), |e| e["Key"] == "j999");
    assert_eq!(e["Type"], "JobRegistered");
    // The stalled one was dropped: what it reads now ends before all the writes, after an
    // error line when there was room for one.
    let mut seen = 0;
    let mut last = Value::Null;
    while let Some(line) = stalled.try_next_line() {
        seen += line["Events"].as_array().map_or(0, Vec::len);
        last = line;
    }
    assert!(
        seen < writes,
        "a stalled subscriber is not kept up to date: saw {seen}"
    );
    if let Some(err) = last["Error"].as_str() {
        assert!(err.contains("fell behind"), "{err}");
    }
}
