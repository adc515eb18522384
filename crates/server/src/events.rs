//! The event stream's server side: the events of each applied command
//! ([`yurt_core::events`]) kept in a ring of the newest [`KEPT`] and broadcast to subscribers,
//! and `GET /v1/event/stream` (newline-delimited JSON, Nomad's shape: one line
//! `{"Index": N, "Events": [...]}` per applied index, `{}` every [`HEARTBEAT`]; `topic=Job:web`
//! filters, `index=N` resumes after N), served as the gRPC `Events/Stream` (which the HTTP
//! route calls in-process). A subscriber that falls behind is sent a last line
//! `{"Error": ...}` and dropped: publishing never waits for anyone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use yurt_core::events::{Event, Payload, Topic};

/// How many of the newest events are kept for subscribers resuming with `index`.
pub const KEPT: usize = 4096;
/// How often an idle stream says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How many events a subscriber may be behind before it is dropped.
const BEHIND: usize = 1024;

/// The events of this server's applied commands.
pub struct EventLog {
    tx: broadcast::Sender<Arc<Event>>,
    ring: Mutex<VecDeque<Arc<Event>>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            tx: broadcast::channel(BEHIND).0,
            ring: Mutex::new(VecDeque::with_capacity(KEPT)),
        }
    }
}

impl EventLog {
    /// Keeps and sends the events of one applied command.
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            let e = Arc::new(e);
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(e.clone());
            let _ = self.tx.send(e);
        }
    }

    /// The kept events after `index`, and the events from now on (no gap, no repeat).
    pub fn subscribe(&self, index: u64) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let backlog = ring.iter().filter(|e| e.index > index).cloned().collect();
        (backlog, rx)
    }
}

/// What a subscriber asked for: per topic, the keys (`*`: all); and what it may see: the
/// namespace it named (`*`: all) and, with ACLs on, the namespaces its token may `read-job` in
/// (node events need `node:read`, checked when it subscribes).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(BTreeMap<Topic, Vec<String>>, Option<Seen>);

/// The namespaces a subscriber may see events of.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    namespace: String,
    acl: Option<yurt_types::acl::Acl>,
}

impl Filter {
    /// `topic=Job:web&topic=Node` (no topic, or `topic=*`: every topic, every key).
    pub fn parse(values: &[String]) -> Result<Filter, String> {
        let mut out: BTreeMap<Topic, Vec<String>> = BTreeMap::new();
        for v in values {
            let (topic, key) = v.split_once(':').unwrap_or((v.as_str(), "*"));
            let topics: Vec<Topic> = if topic == "*" {
                Topic::ALL.to_vec()
            } else {
                vec![Topic::parse(topic).ok_or_else(|| {
                    format!(
                        "topic {topic:?} is not one of *, {}",
                        Topic::ALL.map(Topic::name).join(", ")
                    )
                })?]
            };
            for t in topics {
                out.entry(t).or_default().push(key.to_string());
            }
        }
        if out.is_empty() {
            out = Topic::ALL.map(|t| (t, vec!["*".to_string()])).into();
        }
        Ok(Filter(out, None))
    }

    /// Only the events of `namespace` (`*`: every one) that `acl` (none: ACLs off) allows
    /// `read-job` in; node events are not in a namespace.
    pub fn seen_by(self, namespace: String, acl: Option<yurt_types::acl::Acl>) -> Filter {
        Filter(self.0, Some(Seen { namespace, acl }))
    }

    pub fn topics(&self) -> impl Iterator<Item = Topic> + '_ {
        self.0.keys().copied()
    }

    fn wants(&self, e: &Event) -> bool {
        let visible = match &self.1 {
            _ if e.topic == Topic::Node => true,
            None => true,
            Some(seen) => {
                (seen.namespace == "*" || seen.namespace == e.namespace)
                    && seen.acl.as_ref().is_none_or(|a| {
                        a.allows(yurt_types::acl::Need::Namespace(
                            &e.namespace,
                            yurt_types::acl::READ_JOB,
                        ))
                    })
            }
        };
        visible
            && self
                .0
                .get(&e.topic)
                .is_some_and(|keys| keys.iter().any(|k| k == "*" || *k == e.key))
    }
}

/// A message in Nomad's shape.
fn nomad<T: serde::Serialize>(v: &T) -> Value {
    yurt_types::nomad_json::to_nomad(&serde_json::to_value(v).unwrap_or_default())
}

/// An event in Nomad's shape.
fn to_json(e: &Event) -> Value {
    let payload = match &e.payload {
        Payload::Job(j) => json!({ "Job": yurt_types::nomad_job::to_nomad(j) }),
        Payload::Allocation(a) => json!({ "Allocation": (nomad(&**a)) }),
        Payload::Deployment(d) => json!({ "Deployment": (nomad(&**d)) }),
        Payload::Evaluation(v) => json!({ "Evaluation": (nomad(&**v)) }),
        Payload::Node(n) => json!({ "Node": (nomad(&**n)) }),
        Payload::Gone => Value::Null,
    };
    json!({
        "Topic": e.topic.name(),
        "Type": e.kind,
        "Key": e.key,
        "Namespace": e.namespace,
        "FilterKeys": null,
        "Index": e.index,
        "Payload": payload,
    })
}

/// Forwards the events `filter` wants as lines into `out` until the subscriber goes away or
/// falls behind: the kept ones first, one line per index.
pub async fn forward(
    backlog: Vec<Arc<Event>>,
    mut rx: broadcast::Receiver<Arc<Event>>,
    filter: Filter,
    out: mpsc::Sender<String>,
) {
    let line = |index: u64, events: &[Arc<Event>]| {
        let list: Vec<Value> = events.iter().map(|e| to_json(e)).collect();
        json!({ "Index": index, "Events": list }).to_string() + "\n"
    };
    let mut pending: Vec<Arc<Event>> = Vec::new();
    let send = |text: String| {
        let out = out.clone();
        async move {
            tokio::time::timeout(HEARTBEAT, out.send(text))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some()
        }
    };
    for e in backlog.into_iter().filter(|e| filter.wants(e)) {
        if pending.first().is_some_and(|p| p.index != e.index) {
            if !send(line(pending[0].index, &pending)).await {
                return;
            }
            pending.clear();
        }
        pending.push(e);
    }
    loop {
        // What is pending goes out once nothing more of its index is waiting.
        let next = if pending.is_empty() {
            tokio::time::timeout(HEARTBEAT, rx.recv()).await
        } else {
            tokio::time::timeout(Duration::from_millis(5), rx.recv()).await
        };
        match next {
            Ok(Ok(e)) => {
                if !filter.wants(&e) {
                    continue;
                }
                if pending.first().is_some_and(|p| p.index != e.index) {
                    if !send(line(pending[0].index, &pending)).await {
                        return;
                    }
                    pending.clear();
                }
                pending.push(e);
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                let last = pending.first().map_or(0, |p| p.index);
                let error = json!({ "Error": format!(
                    "the subscriber fell behind and {n} events were dropped; subscribe again with index={last}"
                )});
                let _ = send(error.to_string() + "\n").await;
                return;
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return,
            Err(_) if !pending.is_empty() => {
                if !send(line(pending[0].index, &pending)).await {
                    return;
                }
                pending.clear();
            }
            Err(_) => {
                if !send("{}\n".into()).await {
                    return;
                }
            }
        }
    }
}

type Lines = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<yurt_proto::v1::EventLine, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl yurt_proto::v1::events_server::Events for crate::rpc::Api {
    type StreamStream = Lines;

    async fn stream(
        &self,
        req: tonic::Request<yurt_proto::v1::EventStreamRequest>,
    ) -> Result<tonic::Response<Lines>, tonic::Status> {
        let filter =
            Filter::parse(&req.get_ref().topics).map_err(tonic::Status::invalid_argument)?;
        if filter.topics().any(|t| t == Topic::Node) {
            self.reads.authorize(
                &req,
                yurt_types::acl::Need::Node(yurt_types::acl::Level::Read),
            )?;
        }
        // One namespace named: a token that may not read it there is refused at once; with
        // `*`, each event is judged by its own namespace.
        let scope = if filter.topics().any(|t| t != Topic::Node) {
            Some(self.reads.scope(&req, yurt_types::acl::READ_JOB)?)
        } else {
            None
        };
        let namespace = scope.map_or_else(|| "*".to_string(), |s| s.namespace);
        let filter = filter.seen_by(namespace, self.reads.acl_of(&req)?);
        let (backlog, rx) = self.reads.state.events().subscribe(req.get_ref().index);
        let (tx, lines) = mpsc::channel::<String>(16);
        tokio::spawn(forward(backlog, rx, filter, tx));
        let stream = futures_util::stream::unfold(lines, |mut lines| async move {
            let line = lines.recv().await?;
            let json = line.trim_end().to_string();
            Some((Ok(yurt_proto::v1::EventLine { json }), lines))
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: Topic, key: &str, index: u64) -> Event {
        Event {
            topic,
            kind: "X",
            key: key.into(),
            namespace: "default".into(),
            index,
            payload: Payload::Gone,
        }
    }

    #[test]
    fn filters_and_resuming() {
        let f = Filter::parse(&["Job:web".into(), "Node".into()]).unwrap();
        assert!(f.wants(&event(Topic::Job, "web", 1)));
        assert!(!f.wants(&event(Topic::Job, "api", 1)));
        assert!(f.wants(&event(Topic::Node, "n1", 1)));
        assert!(!f.wants(&event(Topic::Allocation, "a", 1)));
        assert!(Filter::parse(&[])
            .unwrap()
            .wants(&event(Topic::Evaluation, "e", 1)));
        assert!(Filter::parse(&["Jobs".into()])
            .unwrap_err()
            .contains("is not one of"));
        let log = EventLog::default();
        log.publish(vec![event(Topic::Job, "a", 1), event(Topic::Job, "b", 2)]);
        let (backlog, _) = log.subscribe(1);
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog[0].key, "b");
    }

    #[test]
    fn a_subscriber_sees_the_namespaces_it_named_and_its_token_may_read() {
        let in_ns = |topic, ns: &str| Event {
            namespace: ns.into(),
            ..event(topic, "k", 1)
        };
        let policy =
            yurt_types::acl::parse_policy("p", "namespace \"prod\" {\n  policy = \"read\"\n}\n")
                .unwrap();
        let acl = yurt_types::acl::Acl::of_policies([&policy]);
        let all = Filter::parse(&[])
            .unwrap()
            .seen_by("*".into(), Some(acl.clone()));
        assert!(all.wants(&in_ns(Topic::Job, "prod")));
        assert!(!all.wants(&in_ns(Topic::Job, "default")));
        assert!(!all.wants(&in_ns(Topic::Allocation, "default")));
        // Node events are not in a namespace (node:read is checked at subscription).
        assert!(all.wants(&in_ns(Topic::Node, "default")));
        let one = Filter::parse(&[]).unwrap().seen_by("prod".into(), None);
        assert!(one.wants(&in_ns(Topic::Evaluation, "prod")));
        assert!(!one.wants(&in_ns(Topic::Evaluation, "dev")));
    }

    #[tokio::test(start_paused = true)]
    async fn events_go_out_one_line_per_index_and_idle_streams_get_heartbeats() {
        let log = Arc::new(EventLog::default());
        let (backlog, rx) = log.subscribe(0);
        let (tx, mut lines) = mpsc::channel(16);
        tokio::spawn(forward(backlog, rx, Filter::parse(&[]).unwrap(), tx));
        log.publish(vec![
            event(Topic::Job, "a", 5),
            event(Topic::Evaluation, "e", 5),
        ]);
        log.publish(vec![event(Topic::Node, "n", 6)]);
        let first: Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
        assert_eq!(first["Index"], 5);
        assert_eq!(first["Events"].as_array().unwrap().len(), 2);
        let second: Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
        assert_eq!(second["Events"][0]["Topic"], "Node");
        assert_eq!(
            lines.recv().await.unwrap(),
            "{}\n",
            "a heartbeat after 10s of nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_falls_behind_or_stops_reading_is_dropped_never_waited_for() {
        let log = Arc::new(EventLog::default());
        // Behind: more events than the broadcast holds arrive before it reads one.
        let (backlog, rx) = log.subscribe(0);
        let (tx, mut lines) = mpsc::channel(16);
        let slow = tokio::spawn(forward(backlog, rx, Filter::parse(&[]).unwrap(), tx));
        for i in 1..=(BEHIND as u64 + 500) {
            log.publish(vec![event(Topic::Job, "a", i)]);
        }
        let last: Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
        assert!(
            last["Error"].as_str().unwrap().contains("fell behind"),
            "{last}"
        );
        assert!(lines.recv().await.is_none(), "and the stream ends");
        slow.await.unwrap();
        // Stopped reading: its forwarder gives up once a line waits a heartbeat's time.
        let (backlog, rx) = log.subscribe(0);
        let (tx, _never_read) = mpsc::channel(1);
        let stuck = tokio::spawn(forward(backlog, rx, Filter::parse(&[]).unwrap(), tx));
        for i in 0..4u64 {
            log.publish(vec![event(Topic::Node, "n", 10_000 + i)]);
        }
        tokio::time::timeout(HEARTBEAT * 4, stuck)
            .await
            .expect("the forwarder of a subscriber that stopped reading ends")
            .unwrap();
        // Publishing never waited for either.
        log.publish(vec![event(Topic::Job, "b", 20_000)]);
    }
}
