//! Writes decided on a follower's copy of the state wait until that copy has caught up with the
//! leader: a follower that was paused while a job was registered or a node joined through
//! another server still stops that job, and changes that node's eligibility and drain, instead
//! of answering from its old view ("not found").

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;

/// Runs `args` against a paused `agent` (the request waits in its socket) and resumes it after
/// a moment: the request is served before the leader's next replication reaches it, on a copy
/// of the state without what changed while it was paused.
fn sent_while_paused(agent: &Agent, args: &[&str]) -> std::process::Output {
    let pid = Pid::from_raw(agent.pid().unwrap());
    let mut cmd = std::process::Command::new(YURT);
    cmd.args(["-address", &agent.grpc]).args(args);
    let child = std::thread::spawn(move || cmd.output().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(pid, Signal::SIGCONT).unwrap();
    child.join().unwrap()
}

fn pause(agent: &Agent) {
    kill(Pid::from_raw(agent.pid().unwrap()), Signal::SIGSTOP).unwrap();
}

#[test]
fn writes_sent_to_a_lagging_follower_are_decided_on_the_leader_s_state() {
    let dir = TestDir::new();
    let servers = start_servers(&dir.path, 3, &[]);
    let l = leader(&servers, &[0, 1, 2], 3);
    let f = (l + 1) % 3;
    let other = (l + 2) % 3;

    // A job registered through another server while the follower is paused; stopped through
    // the follower.
    let job = sh_batch_job(&dir.path, "fresh", 1, "sleep 100");
    pause(&servers[f]);
    servers[other].ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let stop = sent_while_paused(&servers[f], &["job", "stop", "-detach", "fresh"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stderr(&stop));

    // A node that joins through another server while the follower is paused; its eligibility
    // and drain changed through the follower.
    pause(&servers[f]);
    let client = Agent::start(
        &dir.path.join("c1"),
        &["-client", "-servers", &servers[other].grpc, "-node", "c1"],
    );
    wait_for("c1 to be ready on the others", || {
        let out = servers[other].ok(&["node", "status"]);
        if out.contains(" c1 ") && out.contains("ready") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let ineligible = sent_while_paused(&servers[f], &["node", "eligibility", "-disable", "c1"]);
    assert_eq!(ineligible.status.code(), Some(0), "{}", stderr(&ineligible));
    servers[other].ok(&["node", "eligibility", "-enable", "c1"]);
    pause(&servers[f]);
    let drained = sent_while_paused(
        &servers[f],
        &["node", "drain", "-enable", "-yes", "-detach", "c1"],
    );
    assert_eq!(drained.status.code(), Some(0), "{}", stderr(&drained));
    let status = servers[l].ok(&["node", "status"]);
    let row: Vec<&str> = status
        .lines()
        .find(|l| l.contains(" c1 "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        row.contains(&"true") && row.contains(&"ineligible"),
        "{status}"
    );
    drop(client);
}

#[test]
fn reads_and_writes_sent_while_the_leader_is_gone_wait_for_the_next_one() {
    let dir = TestDir::new();
    let mut servers = start_servers(&dir.path, 3, &[]);
    let l = leader(&servers, &[0, 1, 2], 3);
    let f = (l + 1) % 3;
    let job = sh_batch_job(&dir.path, "during", 1, "true");
    // The leader dies; at once, before the others have elected a new one, a write and a
    // consistent read go to a follower: they wait for the election instead of failing.
    servers[l].kill9();
    let out = servers[f].yurt(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = servers[f].yurt(&["job", "status", "during"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let alive: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    leader(&servers, &alive, 3);
    // The leader paused rather than dead: a follower that forwarded to it gives up on it in
    // time and the write goes to the next leader.
    let l2 = leader(&servers, &alive, 3);
    let f2 = alive.iter().copied().find(|i| *i != l2).unwrap();
    pause(&servers[l2]);
    let job2 = sh_batch_job(&dir.path, "paused", 1, "true");
    // With one of three servers dead and one paused there is no quorum: the answer is a
    // sentence, within the harness's bounded wait rather than never.
    let mut cmd = std::process::Command::new(YURT);
    cmd.args(["-address", &servers[f2].grpc]).args([
        "job",
        "run",
        "-detach",
        job2.to_str().unwrap(),
    ]);
    let child = std::thread::spawn(move || cmd.output().unwrap());
    wait_for(
        "the write to a follower of a paused leader to return",
        || {
            if child.is_finished() {
                Ok(())
            } else {
                Err("still waiting".into())
            }
        },
    );
    kill(Pid::from_raw(servers[l2].pid().unwrap()), Signal::SIGCONT).unwrap();
    let out = child.join().unwrap();
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("no cluster leader") || err.contains("did not answer"),
            "{err}"
        );
    }
}
