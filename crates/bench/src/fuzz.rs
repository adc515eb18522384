//! `yurt-bench fuzz [N]`: N generated inputs, in-process, against every reader of outside
//! input: HCL job files (then planned by the scheduler when valid), JSON job files, jobs in
//! Nomad's JSON shape as the HTTP API reads them, agent configuration files, ACL policies, and
//! the protobuf messages of the public RPCs as the gRPC edge decodes and checks them.
//!
//! Inputs are mutations of seed files (the example job, the docs' examples, earlier
//! regressions) and of generated jobs, drawn by proptest's generator from a seed, so a run can
//! be repeated. Each input must be answered without a panic, within [`PER_INPUT`], and when
//! refused with one sentence (one line, bounded length). An input that breaks a rule is saved
//! under `fixtures/fuzz/` and the run fails; the test suite replays every saved input and runs
//! a short fuzz.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;

use yurt_types::v1;

/// Longest one input may take (a hang is a failure).
pub const PER_INPUT: Duration = Duration::from_secs(5);
/// Longest refusal sentence.
const MAX_SENTENCE: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Hcl,
    JobJson,
    NomadJson,
    AgentConfig,
    AclPolicy,
    Proto,
}

const TARGETS: [Target; 6] = [
    Target::Hcl,
    Target::JobJson,
    Target::NomadJson,
    Target::AgentConfig,
    Target::AclPolicy,
    Target::Proto,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Hcl => "hcl",
            Target::JobJson => "job-json",
            Target::NomadJson => "nomad-json",
            Target::AgentConfig => "agent-config",
            Target::AclPolicy => "acl-policy",
            Target::Proto => "proto",
        }
    }
}

/// A refusal must be one sentence: one line, not empty, not huge.
pub(crate) fn sentence(e: &str) -> Result<(), String> {
    if e.trim().is_empty() || e.contains('\n') || e.len() > MAX_SENTENCE {
        let cut: String = e.chars().take(300).collect();
        return Err(format!("not one sentence ({} bytes): {cut:?}", e.len()));
    }
    Ok(())
}

/// The scheduler's dry run of a valid job on a small cluster.
fn plan(job: &v1::Job) {
    use yurt_core::internal::{command, Command, NodeRegister};
    let mut state = yurt_core::state::State::default();
    for i in 0..3 {
        let node = v1::Node {
            id: format!("node-{i}"),
            name: format!("node-{i}"),
            datacenter: "dc1".into(),
            status: yurt_types::status::NODE_READY.into(),
            resources: Some(v1::Resources {
                cpu: 4000,
                memory_mb: 8000,
                memory_max_mb: 0,
            }),
            ..Default::default()
        };
        let cmd = Command {
            now_unix_ms: 1,
            ignore_if_unknown: false,
            kind: Some(command::Kind::NodeRegister(NodeRegister {
                node: Some(node),
                evals: vec![],
                event: None,
            })),
        };
        let _ = state.apply(i + 1, &cmd);
    }
    let gates = yurt_core::features::Gates::ALL;
    let _ = yurt_core::sched::plan_job(&state, job, 1, gates);
}

/// The API edge's checks of a job: defaults, then the rules.
fn checked(mut job: v1::Job) -> Result<v1::Job, String> {
    yurt_types::jobspec::canonicalize(&mut job);
    yurt_types::jobspec::validate(&job).map_err(|p| p.to_string())?;
    Ok(job)
}

/// Runs one input against its target: Ok, or the rule it broke (a panic is caught by the
/// caller).
pub fn run_one(target: Target, input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    match target {
        Target::Hcl => match yurt_types::jobspec::parse_hcl("fuzz.hcl", &text) {
            Ok(job) => {
                plan(&job);
                Ok(())
            }
            Err(e) => sentence(&e.to_string()),
        },
        Target::JobJson => match yurt_types::jobspec::parse_json("fuzz.json", &text) {
            Ok(job) => {
                plan(&job);
                Ok(())
            }
            Err(e) => sentence(&e.to_string()),
        },
        Target::NomadJson => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                return Ok(());
            };
            let inner = v.get("Job").unwrap_or(&v);
            match yurt_types::nomad_job::from_nomad(inner) {
                Ok((job, _)) => match checked(job) {
                    Ok(job) => {
                        plan(&job);
                        // What the HTTP API answers for it reads back as the same job.
                        let shown = yurt_types::nomad_job::to_nomad(&job);
                        match yurt_types::nomad_job::from_nomad(&shown) {
                            Ok((again, _)) if again == job => Ok(()),
                            other => Err(format!("read back differently: {other:?}")),
                        }
                    }
                    Err(e) => sentence(&e),
                },
                Err(e) => sentence(&e.to_string()),
            }
        }
        Target::AgentConfig => match yurt_types::agentconfig::parse("fuzz.hcl", &text) {
            Ok(_) => Ok(()),
            Err(e) => sentence(&e.to_string()),
        },
        Target::AclPolicy => match yurt_types::acl::parse_policy("fuzz.hcl", &text) {
            Ok(p) => {
                // What a token of it may do is answered for any namespace and path.
                use yurt_types::acl::{Acl, Need, VAR_READ};
                let acl = Acl::of_policies([&p]);
                for (ns, path) in [("default", "a/b"), ("prod-1", ""), ("*", "*"), ("", "x*y")] {
                    let _ = acl.allows(Need::Variable(ns, path, VAR_READ));
                    let _ = acl.sees_namespace(ns);
                }
                Ok(())
            }
            Err(e) => sentence(&e.to_string()),
        },
        Target::Proto => {
            // As the gRPC edge decodes each request, then checks a job in it.
            let _ = v1::ClientAllocsRequest::decode(input);
            let _ = v1::UpdateAllocsRequest::decode(input);
            let _ = v1::NodeDrainRequest::decode(input);
            if let Ok(r) = v1::RegisterNodeRequest::decode(input) {
                if let Some(node) = r.node {
                    if let Err((_, e)) = yurt_types::limits::check_node(&node) {
                        sentence(&e)?;
                    }
                }
            }
            if let Ok(r) = v1::PutVariableRequest::decode(input) {
                if let Err(e) = yurt_types::variables::check(&r.variable.unwrap_or_default()) {
                    sentence(&e.to_string())?;
                }
            }
            if let Ok(r) = v1::RegisterJobRequest::decode(input) {
                if let Some(job) = r.job {
                    if let Err(e) = checked(job) {
                        sentence(&e)?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Values that have broken readers before, or might.
const TOKENS: &[&str] = &[
    "\0",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "=",
    "${",
    "\n",
    "#",
    "é",
    "-1",
    "0",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "18446744073709551616",
    "1e308",
    "\"9223372036854775807s\"",
    "\"-5s\"",
    "null",
    "true",
    "count = 100000000\n",
    "static = 70000\n",
    "resources = 5\n",
    "job \"j\" {\n",
    "group \"g\" {\n",
    "task \"t\" {\n",
];

/// The Nomad job corpus's files with this extension (`fixtures/nomad-jobs/`).
fn nomad_corpus(root: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("fixtures/nomad-jobs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// The seeds: the example job, the Nomad job corpus (variables, locals, functions, Nomad's
/// JSON), generated small jobs, and every saved regression of the target.
fn seeds(root: &Path, target: Target) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let web = std::fs::read(root.join("examples/web.hcl")).unwrap_or_default();
    let job = yurt_types::jobspec::parse_hcl("web.hcl", &String::from_utf8_lossy(&web)).ok();
    match target {
        Target::Hcl => {
            out.push(web.clone());
            out.extend(nomad_corpus(root, "hcl"));
        }
        Target::JobJson => {
            if let Some(j) = &job {
                out.push(serde_json::to_vec_pretty(j).unwrap_or_default());
            }
        }
        Target::NomadJson => {
            if let Some(j) = &job {
                let theirs = yurt_types::nomad_job::to_nomad(j);
                out.push(serde_json::to_vec(&serde_json::json!({ "Job": theirs })).unwrap_or_default());
            }
            out.extend(nomad_corpus(root, "json"));
        }
        Target::AgentConfig => out.push(
            b"data_dir = \"/tmp/x\"\nports {\n  rpc = 4647\n}\nserver {\n  enabled = true\n  bootstrap_expect = 3\n  server_join {\n    retry_join = [\"127.0.0.1\"]\n  }\n}\nclient {\n  enabled = true\n}\n"
                .to_vec(),
        ),
        Target::AclPolicy => {
            out.push(
                b"namespace \"default\" {\n  policy = \"read\"\n  capabilities = [\"read-logs\"]\n}\nnode {\n  policy = \"write\"\n}\n"
                    .to_vec(),
            );
            out.push(
                b"namespace \"prod-*\" {\n  policy = \"write\"\n  variables {\n    path \"db/*\" {\n      capabilities = [\"read\", \"list\"]\n    }\n    path \"*\" {\n      capabilities = [\"deny\"]\n    }\n  }\n}\n"
                    .to_vec(),
            );
        }
        Target::Proto => {
            if let Some(j) = job {
                out.push(
                    v1::RegisterJobRequest {
                        job: Some(j),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                );
            }
        }
    }
    out.extend(regressions(root, target.name()).into_iter().map(|(_, b)| b));
    out
}

/// The saved inputs of a target: `fixtures/fuzz/<target>/*`.
pub fn regressions(root: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root.join("fixtures/fuzz").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.path(), std::fs::read(e.path()).ok()?)))
        .collect();
    out.sort();
    out
}

/// One mutation of `input`, drawn from `rng`.
pub(crate) fn mutate(rng: &mut TestRng, input: &mut Vec<u8>) {
    let len = input.len();
    let at = if len == 0 {
        0
    } else {
        rng.random_range(0..=len)
    };
    match rng.random_range(0..7u8) {
        0 if len > 0 => {
            let end = (at + rng.random_range(1..=16)).min(len);
            input.drain(at.min(len)..end);
        }
        1 => {
            let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
            input.splice(at..at, t.iter().copied());
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = rng.random();
        }
        3 if len > 0 => {
            // A chunk again elsewhere (more groups, more tasks).
            let start = rng.random_range(0..len);
            let end = (start + rng.random_range(1..=200)).min(len);
            let chunk: Vec<u8> = input[start..end].to_vec();
            input.splice(at..at, chunk);
        }
        4 => {
            // A long value or deep nesting.
            let n = rng.random_range(1..=70_000);
            let fill: Vec<u8> = match rng.random_range(0..3u8) {
                0 => std::iter::repeat_n(b'x', n).collect(),
                1 => std::iter::repeat_n(b'{', n.min(5_000)).collect(),
                _ => std::iter::repeat_n(b'[', n.min(5_000)).collect(),
            };
            input.splice(at..at, fill);
        }
        5 if len > 0 => {
            // A digit run replaced by a large number.
            if let Some(i) = input.iter().position(|b| b.is_ascii_digit()) {
                let big = TOKENS[rng.random_range(13..18)].as_bytes();
                input.splice(i..i + 1, big.iter().copied());
            }
        }
        _ => input.truncate(at),
    }
}

/// What a run found: the count of inputs, and failures as (target, saved file, why).
pub struct Report {
    pub inputs: u64,
    pub elapsed: Duration,
    /// (what was fuzzed, the saved input, the rule it broke)
    pub failures: Vec<(&'static str, PathBuf, String)>,
}

/// A worker thread that runs inputs, so that a hang is seen (and the run stops) instead of
/// waiting forever.
struct Worker {
    tx: mpsc::Sender<(Target, Vec<u8>)>,
    rx: mpsc::Receiver<Result<(), String>>,
}

impl Worker {
    fn new() -> Worker {
        let (tx, work) = mpsc::channel::<(Target, Vec<u8>)>();
        let (done, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (target, input) in work {
                let r = std::panic::catch_unwind(|| run_one(target, &input)).unwrap_or_else(|p| {
                    Err(format!("panic: {}", yurt_types::limits::panic_text(&*p)))
                });
                if done.send(r).is_err() {
                    return;
                }
            }
        });
        Worker { tx, rx }
    }

    fn run(&self, target: Target, input: Vec<u8>) -> Result<(), String> {
        self.tx
            .send((target, input))
            .map_err(|_| "the worker is gone".to_string())?;
        match self.rx.recv_timeout(PER_INPUT) {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {PER_INPUT:?}: a hang")),
        }
    }
}

/// Saves an input that broke a rule, named by its content.
pub(crate) fn save(root: &Path, target: &str, input: &[u8]) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let dir = root.join("fixtures/fuzz").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{h:016x}"));
    let _ = std::fs::write(&path, input);
    path
}

/// Runs `n` generated inputs, spread over the targets, from `seed`; stops at the first hang.
pub fn fuzz(root: &Path, n: u64, seed: u64) -> Report {
    let started = Instant::now();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng.clone());
    let pools: Vec<Vec<Vec<u8>>> = TARGETS.iter().map(|t| seeds(root, *t)).collect();
    let generated = any::<(u8, u32, u16)>();
    let mut worker = Worker::new();
    let mut failures = Vec::new();
    let mut inputs = 0;
    while inputs < n {
        let t = (inputs % TARGETS.len() as u64) as usize;
        let target = TARGETS[t];
        let pool = &pools[t];
        let mut input = pool[rng.random_range(0..pool.len())].clone();
        // Stack a few mutations; the generator's draws decide how many.
        let (k, _, _) = generated
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        for _ in 0..=(k % 4) {
            mutate(&mut rng, &mut input);
        }
        inputs += 1;
        if let Err(why) = worker.run(target, input.clone()) {
            let path = save(root, target.name(), &input);
            let hang = why.contains("a hang");
            failures.push((target.name(), path, why));
            if hang {
                break;
            }
            worker = Worker::new();
        }
    }
    Report {
        inputs,
        elapsed: started.elapsed(),
        failures,
    }
}

/// Replays every saved regression; returns the ones that still break a rule.
pub fn replay(root: &Path) -> Vec<(PathBuf, String)> {
    let worker = Worker::new();
    let mut out = Vec::new();
    for target in TARGETS {
        for (path, input) in regressions(root, target.name()) {
            if let Err(why) = worker.run(target, input) {
                out.push((path, why));
            }
        }
    }
    out
}

/// The repository's root (for the seeds and `fixtures/fuzz/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `yurt-bench fuzz [N] [SEED]`.
pub fn main(n: u64, seed: u64) {
    let again = replay(&root());
    for (path, why) in &again {
        println!("  saved input {} still fails: {why}", path.display());
    }
    let r = fuzz(&root(), n, seed);
    let secs = r.elapsed.as_secs_f64();
    println!(
        "fuzz: {} inputs over {} targets in {secs:.1} s ({:.0} inputs/s), seed {seed}, {} failures",
        r.inputs,
        TARGETS.len(),
        r.inputs as f64 / secs.max(1e-9),
        r.failures.len()
    );
    for (t, path, why) in &r.failures {
        println!("  {t}: {why} (saved as {})", path.display());
    }
    if !r.failures.is_empty() || !again.is_empty() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_saved_regression_is_now_answered_in_one_sentence() {
        let failing = replay(&root());
        assert!(failing.is_empty(), "{failing:#?}");
    }

    #[test]
    fn a_short_fuzz_over_every_target_breaks_no_rule() {
        let seed = std::env::var("YURT_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let r = fuzz(&root(), 3_000, seed);
        assert_eq!(r.inputs, 3_000);
        assert!(r.failures.is_empty(), "seed {seed}: {:#?}", r.failures);
    }

    #[test]
    fn the_rules_catch_what_they_are_for() {
        assert!(sentence("job.json: id: bad").is_ok());
        assert!(sentence("two\nlines").is_err());
        assert!(sentence("").is_err());
        assert!(sentence(&"x".repeat(MAX_SENTENCE + 1)).is_err());
        // A refusal is fine; a valid job is planned.
        assert!(run_one(Target::Hcl, b"job {").is_ok());
        let web = std::fs::read(root().join("examples/web.hcl")).unwrap();
        assert!(run_one(Target::Hcl, &web).is_ok());
    }
}
