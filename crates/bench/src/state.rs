//! `yurt-bench state`: the CPU each server spends on one job registration's pure work, in
//! one process and on one thread (no Raft, no I/O), so that changes to the state machine
//! and the scheduler can be compared without the noise of three servers on two cores.
//!
//! Every server decodes and applies the registration and the scheduler's plan; the leader
//! also encodes the registration and runs the scheduler.

use std::time::{Duration, Instant};

use prost::Message;
use yurt_core::evals::new_eval;
use yurt_core::internal::{command, Command, JobRegister};
use yurt_core::sched::{plan_command, schedule};
use yurt_core::state::State;
use yurt_types::status::TRIGGER_JOB_REGISTER;

use crate::job;

const JOBS: usize = 5000;

fn per_job(d: Duration) -> String {
    format!("{:>6.1} µs", d.as_secs_f64() * 1e6 / JOBS as f64)
}

pub fn state() {
    let jobs: Vec<_> = (0..JOBS).map(|i| job(&format!("state-{i}"))).collect();
    let mut n = 0u64;
    let mut new_id = move || {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    };
    let commands: Vec<Command> = jobs
        .into_iter()
        .map(|j| Command {
            now_unix_ms: 1,
            ignore_if_unknown: false,
            kind: Some(command::Kind::JobRegister(JobRegister {
                eval: Some(new_eval(&j, new_id(), TRIGGER_JOB_REGISTER)),
                job: Some(j),
                enforce_index: false,
                job_modify_index: 0,
                scaling_event: None,
            })),
        })
        .collect();

    let t = Instant::now();
    let encoded: Vec<Vec<u8>> = commands.iter().map(Message::encode_to_vec).collect();
    let encode = t.elapsed();
    drop(commands);

    let t = Instant::now();
    let decoded: Vec<Command> = encoded
        .iter()
        .map(|b| Command::decode(b.as_slice()).unwrap())
        .collect();
    let decode = t.elapsed();

    let mut state = State::default();
    let t = Instant::now();
    for (i, c) in decoded.into_iter().enumerate() {
        state.apply_owned(i as u64 + 1, c).unwrap();
    }
    let apply = t.elapsed();

    // The leader's eval loop: rounds of 32 jobs, each plan applied before the next round.
    let mut index = JOBS as u64;
    let mut plans: Vec<Vec<u8>> = Vec::new();
    let mut scheduling = Duration::ZERO;
    let mut plan_apply = Duration::ZERO;
    loop {
        let t = Instant::now();
        let round: Vec<Vec<u8>> = state
            .evals_to_schedule(10, 32)
            .into_iter()
            .map(|(eval, superseded)| {
                let outcome = schedule(
                    &state,
                    &yurt_core::state::job_key(&eval.namespace, &eval.job_id),
                    &eval.id,
                    10,
                    &mut new_id,
                );
                plan_command(eval, &superseded, outcome, 10, &mut new_id).encode_to_vec()
            })
            .collect();
        scheduling += t.elapsed();
        if round.is_empty() {
            break;
        }
        let t = Instant::now();
        for p in &round {
            index += 1;
            let cmd = Command::decode(p.as_slice()).unwrap();
            state.apply_owned(index, cmd).unwrap();
        }
        plan_apply += t.elapsed();
        plans.extend(round);
    }

    println!(
        "one registration of a {}-byte job, per server, over {JOBS} jobs (no nodes: each plan blocks its evaluation):",
        encoded[0].len()
    );
    let rows = [
        ("encode the registration (leader)".to_string(), encode),
        ("decode the registration".to_string(), decode),
        ("apply the registration".to_string(), apply),
        ("schedule, encode the plan (leader)".to_string(), scheduling),
        (
            format!("decode, apply the plan ({} bytes)", plans[0].len()),
            plan_apply,
        ),
    ];
    for (what, took) in rows {
        println!("  {what:<38}{}", per_job(took));
    }
    let follower = decode + apply + plan_apply;
    let leader = encode + follower + scheduling;
    println!(
        "  leader {}, each follower {}, three servers {}",
        per_job(leader),
        per_job(follower),
        per_job(leader + follower * 2)
    );
}
