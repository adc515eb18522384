//! Leadership as one lifecycle: the leader's loops run on the leader only; a leader that loses
//! its leadership (paused past an election) stops them when it comes back, and the new leader
//! starts its own and goes on scheduling.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;

#[test]
fn a_server_that_loses_leadership_stops_its_loops_and_the_new_leader_runs_them() {
    let dir = TestDir::new();
    let servers = start_servers(&dir.path, 3, &[]);
    let old = leader(&servers, &[0, 1, 2], 3);
    wait_for("the leader to start its loops", || {
        let log = servers[old].log_text();
        if log.contains("leader loops started") {
            Ok(())
        } else {
            Err(log)
        }
    });
    // A follower runs none (one that led for a moment while the cluster formed stopped them).
    for (i, s) in servers.iter().enumerate() {
        if i != old {
            let log = s.log_text();
            assert_eq!(
                log.matches("leader loops started").count(),
                log.matches("leader loops stopped").count(),
                "a follower runs them:\n{log}"
            );
        }
    }
    // Paused past several election timeouts: the others elect a new leader.
    let pid = Pid::from_raw(servers[old].pid().unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = leader(&servers, &others, 3);
    kill(pid, Signal::SIGCONT).unwrap();
    wait_for("the old leader to stop its loops", || {
        let log = servers[old].log_text();
        if log.contains("leader loops stopped") {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert!(servers[new].log_text().contains("leader loops started"));
    // The new leader's loops schedule: a job runs through any server.
    let job = sh_batch_job(&dir.path, "after", 1, "true");
    let run = servers[old].ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert!(run.contains("Evaluation ID"), "{run}");
    wait_for("the evaluation to be scheduled by the new leader", || {
        let out = servers[new].ok(&["eval", "list", "-job", "after"]);
        if out.contains("complete") || out.contains("blocked") {
            Ok(())
        } else {
            Err(out)
        }
    });
}
