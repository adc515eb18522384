//! Histories of what clients saw, judged for linearizability. A [`Workload`] runs concurrent
//! clients against a set of servers' HTTP APIs, on one [`Object`] used as a compare-and-set
//! register: a Nomad variable (reads `GET /v1/var/:path`, consistent; writes of a new unique
//! value with `cas=` the index of the value the client last read) or a job (reads `GET
//! /v1/job/:id`; registrations of a new unique `meta` value with `EnforceIndex` and the job
//! modify index last read, as `job run -check-index` does). Every operation is
//! recorded when it is invoked and when it returns, in real time order; a write whose outcome
//! is unknown (no answer in time, an error that does not say it was refused) stays in flight
//! for ever, as it may or may not have happened (a read whose answer never came is dropped).
//! [`Workload::judge`] adds a final read once the faults are healed and judges the whole
//! history: an acknowledged write that went missing, or a read that saw the past, makes it
//! non-linearizable. While the clients work, a [`Sampler`] notes which servers lead in which
//! term; two in one term is a split brain. [`Workload::finish`] (the tests') fails on either,
//! with the history printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::check::{linearizable, Event, Model};
use crate::http::{connect, exchange};
use crate::terms::{split, Sampler, Terms};

/// A register operation: read it, or write `new` if it holds `expect` (`None`: if unset).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Cas { expect: Option<String>, new: String },
}

/// What an operation answered: the value read (`None`: unset) with, for a job, the version
/// the server gave it; a write done; a write refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    Value(Option<String>, Option<u64>),
    Written,
    Conflict,
}

/// The sequential specification: one value, or none, and how many writes made it (a job's
/// version is one less: its first registration is version 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CasRegister {
    value: Option<String>,
    writes: u64,
}

impl Model for CasRegister {
    type Op = Op;
    type Ret = Ret;

    fn step(&self, op: &Op, ret: Option<&Ret>) -> Option<CasRegister> {
        let (fits, next) = match op {
            Op::Read => {
                let fits = |r: &Ret| match r {
                    Ret::Value(value, version) => {
                        *value == self.value && version.is_none_or(|v| v + 1 == self.writes)
                    }
                    _ => false,
                };
                (ret.is_none_or(fits), self.clone())
            }
            Op::Cas { expect, new } if *expect == self.value => {
                let next = CasRegister {
                    value: Some(new.clone()),
                    writes: self.writes + 1,
                };
                (ret.is_none_or(|r| *r == Ret::Written), next)
            }
            Op::Cas { .. } => (ret.is_none_or(|r| *r == Ret::Conflict), self.clone()),
        };
        fits.then_some(next)
    }
}

/// What a read saw of the object: its value, its index (what a write expects), and a job's
/// version.
#[derive(Clone, Debug)]
struct Seen {
    value: String,
    index: u64,
    version: Option<u64>,
}

impl Seen {
    fn ret(seen: &Option<Seen>) -> Ret {
        match seen {
            Some(s) => Ret::Value(Some(s.value.clone()), s.version),
            None => Ret::Value(None, None),
        }
    }
}

/// One line of the printed history.
#[derive(Clone, Debug)]
pub struct Entry {
    pub at: Duration,
    pub client: u64,
    pub server: String,
    pub op: Op,
    /// `None` while in flight, or when the outcome is unknown.
    pub ret: Option<Ret>,
    pub took: Duration,
    pub note: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ret = self
            .ret
            .as_ref()
            .map_or("unknown".to_string(), |r| format!("{r:?}"));
        write!(
            f,
            "{:>9.3}s client {:>8} via {}: {:?} -> {ret} ({:?}) {}",
            self.at.as_secs_f64(),
            self.client,
            self.server,
            self.op,
            self.took,
            self.note
        )
    }
}

/// What one register's clients did: every operation, in the order invoked, and the calls and
/// returns in the order they happened (naming operations by their place in `log`).
#[derive(Default)]
struct Shared {
    log: Vec<Entry>,
    events: Vec<Event>,
}

impl Shared {
    /// Records an operation invoked now; returns its index.
    fn invoke(&mut self, entry: Entry) -> usize {
        self.log.push(entry);
        self.events.push(Event::Call(self.log.len() - 1));
        self.log.len() - 1
    }

    /// Records the answer of operation `i` (`None`: unknown).
    fn answer(&mut self, i: usize, ret: Option<Ret>, took: Duration, note: String) {
        let entry = &mut self.log[i];
        (entry.took, entry.note) = (took, note);
        match ret {
            Some(ret) => {
                entry.ret = Some(ret);
                self.events.push(Event::Return(i));
            }
            // A read that never answered changed nothing: it did not happen.
            None if entry.op == Op::Read => self.events.retain(|e| *e != Event::Call(i)),
            None => {}
        }
    }

    fn is_linearizable(&self) -> bool {
        let ops: Vec<(Op, Option<Ret>)> = self
            .log
            .iter()
            .map(|e| (e.op.clone(), e.ret.clone()))
            .collect();
        linearizable(CasRegister::default(), &ops, &self.events)
    }
}

/// One register and what its clients saw of it.
struct Register {
    object: Object,
    shared: Arc<Mutex<Shared>>,
}

/// Clients at work on one register, or a few, until [`Workload::finish`].
pub struct Workload {
    registers: Vec<Register>,
    started: Instant,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sampler: Option<Sampler>,
    terms: Terms,
}

/// How long a client waits for one answer before the operation's outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the clients read and write.
#[derive(Clone, Debug)]
pub enum Object {
    /// A variable by path.
    Variable(String),
    /// A batch job by ID, in a datacenter no node has (it is only registered).
    Job(String),
}

impl Object {
    /// What one server answers of it (`None`: not there); an error when the answer says
    /// nothing about it.
    fn read(&self, server: &str) -> Result<Option<Seen>, String> {
        self.read_on(connect(server, OP_TIMEOUT)?, server)
    }

    /// [`Object::read`] on a connection already made.
    fn read_on(&self, conn: std::net::TcpStream, server: &str) -> Result<Option<Seen>, String> {
        let url = match self {
            Object::Variable(path) => format!("/v1/var/{path}"),
            Object::Job(id) => format!("/v1/job/{id}"),
        };
        let (status, _, body) = exchange(conn, server, "GET", &url, "", "", OP_TIMEOUT)?;
        match status.split_whitespace().nth(1) {
            Some("200") => {
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                let (value, index, version) = match self {
                    Object::Variable(_) => (&v["Items"]["v"], &v["ModifyIndex"], None),
                    Object::Job(_) => (&v["Meta"]["v"], &v["JobModifyIndex"], Some(&v["Version"])),
                };
                Ok(Some(Seen {
                    value: value.as_str().ok_or("no value v")?.to_string(),
                    index: index.as_u64().ok_or("no index")?,
                    version: match version {
                        Some(v) => Some(v.as_u64().ok_or("no Version")?),
                        None => None,
                    },
                }))
            }
            Some("404") => Ok(None),
            _ => Err(format!("{status}: {}", body.trim())),
        }
    }

    /// A write's outcome: `Some` when the answer is definite, `None` when unknown.
    fn write(
        &self,
        conn: std::net::TcpStream,
        server: &str,
        cas: u64,
        value: &str,
    ) -> (Option<Ret>, String) {
        let (url, body) = match self {
            Object::Variable(path) => (
                format!("/v1/var/{path}?cas={cas}"),
                serde_json::json!({ "Items": { "v": value } }),
            ),
            Object::Job(id) => (
                format!("/v1/job/{id}"),
                serde_json::json!({
                    "Job": {
                        "ID": id, "Type": "batch", "Datacenters": ["nowhere"],
                        "Meta": { "v": value },
                        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
                            "Name": "t", "Driver": "raw_exec",
                            "Config": { "command": "/bin/true" },
                        }]}],
                    },
                    "EnforceIndex": true,
                    "JobModifyIndex": cas,
                }),
            ),
        };
        match exchange(conn, server, "PUT", &url, &body.to_string(), "", OP_TIMEOUT) {
            Err(e) => (None, e),
            Ok((status, _, body)) => match status.split_whitespace().nth(1) {
                Some("200") => (Some(Ret::Written), String::new()),
                // A variable's compare-and-set refused, or a job's modify index enforced.
                Some("409") => (Some(Ret::Conflict), String::new()),
                Some("400") if body.contains("Enforcing job modify index") => {
                    (Some(Ret::Conflict), String::new())
                }
                _ => (None, format!("{status}: {}", body.trim())),
            },
        }
    }
}

impl Workload {
    /// Starts `clients` clients, client `i` sending to `servers[i % servers.len()]` (HTTP
    /// addresses), on `object`.
    pub fn start(servers: &[String], clients: usize, object: Object) -> Workload {
        Workload::start_on(servers, clients, vec![object])
    }

    /// [`Workload::start`] on several registers: client `i` works on
    /// `objects[i * objects.len() / clients]`, so that two clients of one register send to
    /// different servers. Each register's history is judged on its own (linearizability is
    /// local to each object), which keeps a long history with faults decidable.
    pub fn start_on(servers: &[String], clients: usize, objects: Vec<Object>) -> Workload {
        let registers: Vec<Register> = objects
            .into_iter()
            .map(|object| Register {
                object,
                shared: Arc::new(Mutex::new(Shared::default())),
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers = (0..clients)
            .map(|i| {
                let server = servers[i % servers.len()].clone();
                let r = &registers[i * registers.len() / clients.max(1)];
                let (shared, object) = (r.shared.clone(), r.object.clone());
                let stop = stop.clone();
                std::thread::spawn(move || {
                    client(i as u64, &server, &object, &shared, &stop, started)
                })
            })
            .collect();
        Workload {
            registers,
            started,
            stop,
            workers,
            sampler: Some(Sampler::start(servers.to_vec())),
            terms: Terms::new(),
        }
    }

    /// The operations so far, in the order they were invoked.
    pub fn log(&self) -> Vec<Entry> {
        let mut log: Vec<Entry> = self
            .registers
            .iter()
            .flat_map(|r| r.shared.lock().unwrap().log.clone())
            .collect();
        log.sort_by_key(|e| e.at);
        log
    }

    /// Time since the workload started (the `at` of the entries).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients (their last operations are answered or in flight) and the sampling
    /// of leaders.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            w.join().unwrap();
        }
        if let Some(sampler) = self.sampler.take() {
            self.terms = sampler.stop();
        }
    }

    /// Stops the clients, reads each register once more through `server` (retried for up to
    /// a minute until a server answers), and judges each register's history.
    pub fn judge(mut self, server: &str) -> Verdict {
        self.stop();
        let mut linearizable = Ok(true);
        for r in &self.registers {
            let verdict = r.judge(server, self.started);
            linearizable = match (linearizable, verdict) {
                (Ok(false), _) | (_, Ok(false)) => Ok(false),
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => Ok(true),
            };
        }
        Verdict {
            log: self.log(),
            linearizable,
            terms: std::mem::take(&mut self.terms),
        }
    }

    /// [`Workload::judge`], for the tests: returns the entries; panics with the history when
    /// it is not linearizable or could not be judged, or when two servers led in one term.
    pub fn finish(self, server: &str) -> Vec<Entry> {
        let v = self.judge(server);
        let printed: Vec<String> = v.log.iter().map(Entry::to_string).collect();
        let split = split(&v.terms);
        assert!(
            !v.terms.is_empty(),
            "no server was seen leading while the clients worked"
        );
        assert!(
            split.is_empty(),
            "two servers led in one term: {split:?} (terms seen: {:?}); the history:\n{}",
            v.terms,
            printed.join("\n")
        );
        match v.linearizable {
            Ok(true) => v.log,
            Ok(false) => panic!(
                "the history is not linearizable ({} operations):\n{}",
                v.log.len(),
                printed.join("\n")
            ),
            Err(e) => panic!("{e} ({} operations):\n{}", v.log.len(), printed.join("\n")),
        }
    }
}

impl Register {
    /// Adds a final read through `server` and judges this register's history.
    fn judge(&self, server: &str, started: Instant) -> Result<bool, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let last = loop {
            match self.object.read(server) {
                Ok(v) => break v,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("no final read through {server}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let shared = self.shared.clone();
        let mut s = shared.lock().unwrap();
        let i = s.invoke(Entry {
            at: started.elapsed(),
            client: u64::MAX,
            server: server.to_string(),
            op: Op::Read,
            ret: None,
            took: Duration::ZERO,
            note: String::new(),
        });
        let note = format!("final read of {:?}", self.object);
        s.answer(i, Some(Seen::ret(&last)), Duration::ZERO, note);
        drop(s);
        // The search is quick (see `check`); a bound all the same, so that a test never hangs.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(shared.lock().unwrap().is_linearizable());
        });
        rx.recv_timeout(Duration::from_secs(120))
            .map_err(|_| "the linearizability checker did not decide within 120 s".to_string())
    }
}

/// A judged history.
pub struct Verdict {
    /// Every operation, in the order invoked, the final read last.
    pub log: Vec<Entry>,
    /// Whether it is linearizable, or why it could not be judged.
    pub linearizable: Result<bool, String>,
    /// The servers seen leading, by term, while the clients worked.
    pub terms: Terms,
}

/// One client's loop: alternately reads and writes; a write expects what this client last
/// read. After an operation whose outcome is unknown (it stays in flight), the client goes on.
fn client(
    worker: u64,
    server: &str,
    object: &Object,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    started: Instant,
) {
    let mut last: Option<Seen> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let op = if n % 2 == 1 {
            Op::Read
        } else {
            Op::Cas {
                expect: last.as_ref().map(|s| s.value.clone()),
                new: format!("c{worker}-{n}"),
            }
        };
        // A request that cannot even connect is never sent: it did not happen, and is not
        // recorded (an operation in flight for ever would only make the history harder to
        // judge). Invoked once connected: its effect cannot come before.
        let Ok(conn) = connect(server, OP_TIMEOUT) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let invoked = Instant::now();
        let i = shared.lock().unwrap().invoke(Entry {
            at: invoked - started,
            client: worker,
            server: server.to_string(),
            op: op.clone(),
            ret: None,
            took: Duration::ZERO,
            note: String::new(),
        });
        let (ret, note) = match &op {
            Op::Read => match object.read_on(conn, server) {
                Ok(seen) => {
                    let ret = Seen::ret(&seen);
                    last = seen;
                    (Some(ret), String::new())
                }
                Err(e) => (None, e),
            },
            Op::Cas { new, .. } => {
                let cas = last.as_ref().map_or(0, |s| s.index);
                object.write(conn, server, cas, new)
            }
        };
        let unknown = ret.is_none();
        shared
            .lock()
            .unwrap()
            .answer(i, ret, invoked.elapsed(), note);
        // A few dozen operations a second per client: enough to catch a fault at work, and a
        // history the checker judges in moments. A server that does not answer is not
        // hammered either.
        std::thread::sleep(Duration::from_millis(if unknown { 200 } else { 40 }));
    }
}

#[cfg(test)]
#[test]
fn the_register_spec_accepts_linearizable_histories_and_refuses_stale_reads() {
    let cas = |expect: Option<&str>, new: &str| Op::Cas {
        expect: expect.map(String::from),
        new: new.into(),
    };
    let value = |v: Option<&str>| Some(Ret::Value(v.map(String::from), None));
    let check = |ops: &[(Op, Option<Ret>)], events: &[Event]| {
        linearizable(CasRegister::default(), ops, events)
    };
    use Event::{Call, Return};
    // 0 writes a while 1 reads nothing (concurrent), then 2 reads a; 3 writes b on a, in flight.
    let ops = [
        (cas(None, "a"), Some(Ret::Written)),
        (Op::Read, value(None)),
        (Op::Read, value(Some("a"))),
        (cas(Some("a"), "b"), None),
        (Op::Read, value(Some("b"))),
        (cas(Some("x"), "c"), Some(Ret::Conflict)),
    ];
    let events = [Call(0), Call(1), Return(1), Return(0), Call(2), Return(2)];
    assert!(check(&ops, &events));
    // A read after the write returned that sees the past.
    let stale = [Call(0), Return(0), Call(1), Return(1)];
    assert!(!check(&ops, &stale));
    // The write in flight may have happened; a conflict is fine where the value differs.
    let more = [
        &events[..],
        &[Call(3), Call(4), Return(4), Call(5), Return(5)],
    ]
    .concat();
    assert!(check(&ops, &more));
    // A write acknowledged as a conflict that would have succeeded.
    let ops = [(cas(None, "a"), Some(Ret::Conflict))];
    assert!(!check(&ops, &[Call(0), Return(0)]));
    // A job's version counts its writes: b is version 1; a version that went back, or skipped
    // a write, is not what the value says.
    let job = |v: &str, version: u64| Some(Ret::Value(Some(v.into()), Some(version)));
    let mut ops = vec![
        (cas(None, "a"), Some(Ret::Written)),
        (cas(Some("a"), "b"), Some(Ret::Written)),
        (Op::Read, job("b", 1)),
    ];
    let events = [Call(0), Return(0), Call(1), Return(1), Call(2), Return(2)];
    assert!(check(&ops, &events));
    for wrong in [0, 2] {
        ops[2].1 = job("b", wrong);
        assert!(!check(&ops, &events), "version {wrong}");
    }
}
