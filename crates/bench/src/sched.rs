//! `yurt-bench sched`: placements per second of the scheduler, in memory over 1,000 and
//! 10,000 simulated heterogeneous nodes (one job of count 10,000; 100 jobs of count 100, each
//! plan committed to the in-memory state before the next), and end to end through one real
//! server (100 jobs of count 100 on 1,000 simulated nodes, plans committed through Raft).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use yurt_core::internal::{command, Command, NodeRegister};
use yurt_core::sched::{plan_command, schedule};
use yurt_core::state::State;
use yurt_proto::v1::evals_client::EvalsClient;
use yurt_proto::v1::jobs_client::JobsClient;
use yurt_proto::v1::nodes_client::NodesClient;
use yurt_proto::v1::{
    Evaluation, GetJobRequest, Job, ListEvalsRequest, Node, RegisterJobRequest,
    RegisterNodeRequest, Resources,
};

use crate::{channel, Server};

/// A node of a mixed fleet: sizes, kernels, racks and classes vary with its number.
fn node(i: usize) -> Node {
    let mut n = Node {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        name: format!("sim-{i}"),
        datacenter: "dc1".into(),
        node_class: ["general", "compute", "memory"][i % 3].into(),
        status: "ready".into(),
        resources: Some(Resources {
            cpu: 4000 * (1 + (i % 4) as u32),
            memory_mb: 8192 * (1 + (i % 8) as u32),
            memory_max_mb: 0,
        }),
        version: yurt_types::VERSION.into(),
        ..Node::default()
    };
    let kernel = if i.is_multiple_of(10) {
        "windows"
    } else {
        "linux"
    };
    n.attributes.insert("kernel.name".into(), kernel.into());
    n.meta.insert("rack".into(), format!("r{}", i % 20));
    n
}

fn job(id: &str, count: u32) -> Job {
    let src = format!(
        r#"job "{id}" {{
  constraint {{
    attribute = "${{attr.kernel.name}}"
    value     = "linux"
  }}
  group "g" {{
    count = {count}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/true"
      }}
      resources {{
        cpu    = 100
        memory = 128
      }}
    }}
  }}
}}"#
    );
    yurt_types::jobspec::parse_hcl("bench.hcl", &src).unwrap()
}

fn apply(state: &mut State, index: &mut u64, kind: command::Kind) {
    *index += 1;
    state
        .apply(
            *index,
            &Command {
                now_unix_ms: 1,
                ignore_if_unknown: false,
                kind: Some(kind),
            },
        )
        .unwrap();
}

fn cluster(nodes: usize) -> (State, u64) {
    let mut state = State::default();
    let mut index = 0;
    for i in 0..nodes {
        apply(
            &mut state,
            &mut index,
            command::Kind::NodeRegister(NodeRegister {
                node: Some(node(i)),
                evals: vec![],
                event: None,
            }),
        );
    }
    (state, index)
}

/// Registers `jobs` and schedules each in turn, committing every plan; returns the
/// placements, the time they took, and how long a copy of the final state takes (what a long
/// read holds the state lock for: the whole evaluation before snapshots, the copy after).
fn run(nodes: usize, jobs: &[Job]) -> (usize, Duration, Duration) {
    let (mut state, mut index) = cluster(nodes);
    let mut ids = 0u64;
    let mut placed = 0;
    let mut spent = Duration::ZERO;
    for j in jobs {
        apply(
            &mut state,
            &mut index,
            command::Kind::JobRegister(yurt_core::internal::JobRegister {
                job: Some(j.clone()),
                eval: None,
                enforce_index: false,
                job_modify_index: 0,
                scaling_event: None,
            }),
        );
        let eval = Evaluation {
            id: format!("eval-{}", j.id),
            job_id: j.id.clone(),
            ..Evaluation::default()
        };
        let start = Instant::now();
        let mut new_id = || {
            ids += 1;
            format!("alloc-{ids}")
        };
        let outcome = schedule(
            &state,
            &yurt_core::state::key_of(j),
            &eval.id,
            1,
            &mut new_id,
        );
        placed += outcome
            .desired
            .values()
            .map(|d| d.place as usize)
            .sum::<usize>();
        let cmd = plan_command(&eval, &[], outcome, 1, &mut new_id);
        spent += start.elapsed();
        index += 1;
        state.apply(index, &cmd).unwrap();
    }
    const COPIES: u32 = 20;
    let start = Instant::now();
    for _ in 0..COPIES {
        std::hint::black_box(state.clone());
    }
    let copy = start.elapsed() / COPIES;
    if jobs.len() == 1 {
        let (alone, beside) = reports(&mut state, &mut index);
        println!(
            "  applying a client's report of its allocations: {} µs, {} µs while a snapshot lives",
            alone.as_micros(),
            beside.as_micros()
        );
    }
    (placed, spent, copy)
}

/// The time to apply one node's report on all its allocations, alone and while a snapshot of
/// the state taken just before lives (as while an evaluation runs): the changes then copy
/// what they touch instead of changing it in place.
fn reports(state: &mut State, index: &mut u64) -> (Duration, Duration) {
    let mut nodes: Vec<String> = state.allocs.values().map(|a| a.node_id.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes.truncate(100);
    let mut times = [Duration::ZERO; 2];
    let mut counts = [0u32; 2];
    // Each node reports twice, once alone and once beside a snapshot, in turn.
    for (round, status) in ["running", "complete"].iter().enumerate() {
        for (i, node) in nodes.iter().enumerate() {
            let updates = state
                .allocs
                .on_node(node)
                .map(|a| yurt_proto::v1::AllocClientUpdate {
                    alloc_id: a.id.clone(),
                    client_status: status.to_string(),
                    ..Default::default()
                })
                .collect();
            let kind = command::Kind::AllocClientUpdates(yurt_core::internal::AllocClientUpdates {
                node_id: node.clone(),
                updates,
                evals: vec![],
            });
            let beside = (i + round) % 2 == 1;
            let snapshot = beside.then(|| state.clone());
            let start = Instant::now();
            apply(state, index, kind);
            times[usize::from(beside)] += start.elapsed();
            counts[usize::from(beside)] += 1;
            drop(snapshot);
        }
    }
    (times[0] / counts[0].max(1), times[1] / counts[1].max(1))
}

pub fn in_memory() {
    for nodes in [1_000, 10_000] {
        let big = [job("big", 10_000)];
        let (placed, spent, copy) = run(nodes, &big);
        println!(
            "scheduler in memory, {nodes:>6} nodes, 1 job of count 10,000:  {:>9.0} placements/s ({placed} placed in {:.0} ms; a copy of the state: {} µs)",
            placed as f64 / spent.as_secs_f64(),
            spent.as_secs_f64() * 1000.0,
            copy.as_micros()
        );
        let many: Vec<Job> = (0..100).map(|i| job(&format!("j{i}"), 100)).collect();
        let (placed, spent, _) = run(nodes, &many);
        println!(
            "scheduler in memory, {nodes:>6} nodes, 100 jobs of count 100:   {:>9.0} placements/s ({placed} placed in {:.0} ms)",
            placed as f64 / spent.as_secs_f64(),
            spent.as_secs_f64() * 1000.0
        );
    }
}

/// 100 jobs of count 100 through one real server with 1,000 simulated nodes.
pub async fn end_to_end(yurt: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::single(&yurt, dir.path()).await;
    let ch = channel(&server.addr).await;
    let mut nodes = NodesClient::new(ch.clone());
    for i in 0..1_000 {
        nodes
            .register(RegisterNodeRequest {
                node: Some(node(i)),
            })
            .await
            .expect("register a simulated node");
    }
    let jobs: Vec<Job> = (0..100).map(|i| job(&format!("e2e{i}"), 100)).collect();
    let want = 100 * 100;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for j in jobs {
        let mut c = JobsClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            c.register(RegisterJobRequest {
                job: Some(j),
                ..Default::default()
            })
            .await
            .expect("register");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let registered = start.elapsed();
    // Done when every registration's evaluation is complete: its plan is committed then (a
    // refused plan leaves it pending). Evaluations are small; polling them costs the server
    // little, unlike reading 10,000 allocations.
    let mut evals_api = EvalsClient::new(ch.clone());
    loop {
        let evals = evals_api
            .list(ListEvalsRequest {
                job_id: String::new(),
                status: "complete".into(),
            })
            .await
            .map(|r| r.into_inner().evals)
            .unwrap_or_default();
        let complete = evals
            .iter()
            .filter(|e| e.triggered_by == "job-register" && e.job_id.starts_with("e2e"))
            .count();
        if complete >= 100 {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "only {complete} of 100 evaluations complete; the server's log ends:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let spent = start.elapsed();
    // Counted job by job (all 10,000 in one answer exceed gRPC's message limit), untimed.
    let mut jobs_api = JobsClient::new(ch);
    let mut placed = 0;
    for i in 0..100 {
        placed += jobs_api
            .allocations(GetJobRequest {
                job_id: format!("e2e{i}"),
            })
            .await
            .expect("list a job's allocations")
            .into_inner()
            .allocs
            .len();
    }
    assert_eq!(
        placed, want,
        "every evaluation is complete, but not every allocation placed"
    );
    if std::env::var_os("YURT_BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    println!(
        "scheduler end to end (one server, 1,000 nodes, 100 jobs of count 100, plans through Raft): {:.0} placements/s ({want} in {:.0} ms; registrations took {:.0} ms)",
        want as f64 / spent.as_secs_f64(),
        spent.as_secs_f64() * 1000.0,
        registered.as_secs_f64() * 1000.0
    );
}
