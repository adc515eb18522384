//! The `disconnect` block against real agents, with the nemesis cutting a client off from
//! every server: the node goes `disconnected` and its allocations `unknown` (replaced unless
//! `replace = false`) while their tasks run on; back in time, each `reconcile` strategy keeps
//! the allocation it names and exactly one runs per slot; past `lost_after` the node is down
//! and its allocations lost; `stop_on_client_after` makes the cut-off client stop its tasks by
//! itself (also after a restart while cut off), and their replacement starts only after. As in
//! every fault scenario, a compare-and-set workload on the servers is judged linearizable once
//! the fault is healed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::faults::{strs, Three};
use crate::harness::*;
use crate::nemesis::host;

/// Writes `DIR/NAME.hcl`: a service job of one allocation sleeping for an hour, with the
/// group's `disconnect` block as given.
fn job(dir: &Path, name: &str, disconnect: &str) -> PathBuf {
    let path = dir.join(format!("{name}.hcl"));
    let src = format!(
        "job {name:?} {{\n  group \"g\" {{\n    disconnect {{\n      {disconnect}\n    }}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        args    = [\"3600\"]\n      }}\n      kill_timeout = \"1s\"\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path
}

/// The job's allocations as `job status -json` gives them.
fn allocs(server: &Agent, job: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&server.ok(&["job", "status", "-json", job])).unwrap();
    v["allocations"].as_array().cloned().unwrap_or_default()
}

fn live(allocs: &[Value]) -> Vec<&Value> {
    allocs
        .iter()
        .filter(|a| a["desired_status"] == "run")
        .collect()
}

/// The PID of allocation `id`'s task on the client under `data_dir`, once it has one.
fn pid_of(data_dir: &Path, id: &str) -> i32 {
    let file = data_dir.join(format!("client/allocs/{id}/t/executor/pid"));
    wait_for(&format!("the PID of allocation {id}"), || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("no {}", file.display()))
    })
}

/// Runs each job on `c0` alone, then starts `c1`; the jobs' allocation IDs and task PIDs.
fn started_on_c0(c: &Three, jobs: &[(&str, &str)]) -> (Agent, Agent, Vec<(String, i32)>) {
    let (s, l) = (&c.s, c.l);
    let c0 = c.client(0);
    let mut originals = Vec::new();
    for (name, block) in jobs {
        let file = job(&c.dir.path, name, block);
        s[l].ok(&["job", "run", "-detach", file.to_str().unwrap()]);
        let id = s[l].wait_running(name, 1).remove(0);
        originals.push((id.clone(), pid_of(&c0.data_dir, &id)));
    }
    let c1 = c.client(1);
    (c0, c1, originals)
}

/// Waits until `job` has exactly one allocation desired `run` and running, and returns it.
fn wait_one_running(server: &Agent, job: &str) -> Value {
    wait_for(&format!("exactly one running allocation of {job}"), || {
        let all = allocs(server, job);
        let running: Vec<&Value> = live(&all)
            .into_iter()
            .filter(|a| a["client_status"] == "running")
            .collect();
        match (running.as_slice(), live(&all).len()) {
            ([one], 1) => Ok((*one).clone()),
            _ => Err(serde_json::to_string_pretty(&all).unwrap()),
        }
    })
}

#[test]
fn a_client_cut_off_with_lost_after_is_disconnected_and_each_reconcile_strategy_keeps_its_pick() {
    let c = Three::start(&["-min-heartbeat-ttl", "1s", "-heartbeat-grace", "1s"]);
    let work = c.workload("nemesis/disconnect");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let jobs = [
        (
            "orig",
            "lost_after = \"1h\"\n      reconcile = \"keep_original\"",
        ),
        (
            "repl",
            "lost_after = \"1h\"\n      reconcile = \"keep_replacement\"",
        ),
        (
            "long",
            "lost_after = \"1h\"\n      reconcile = \"longest_running\"",
        ),
        ("best", "lost_after = \"1h\""),
        ("kept", "lost_after = \"1h\"\n      replace = false"),
    ];
    let (c0, c1, originals) = started_on_c0(&c, &jobs);
    let servers: Vec<String> = s.iter().map(host).collect();
    net.partition(&[host(&c0).as_str()], &strs(&servers));

    // Disconnected, not down: its allocations are unknown and replaced on c1 (but `kept`'s).
    wait_node_status(&s[l], "c0", "disconnected");
    for (i, (name, _)) in jobs.iter().enumerate() {
        let original = &originals[i].0;
        let want_replacement = *name != "kept";
        wait_for(&format!("{name}'s allocation unknown and replaced"), || {
            let all = allocs(&s[l], name);
            let unknown = all
                .iter()
                .any(|a| a["id"] == original.as_str() && a["client_status"] == "unknown");
            let replaced = all.iter().any(|a| {
                a["node_name"] == "c1"
                    && a["client_status"] == "running"
                    && a["previous_allocation"] == original.as_str()
            });
            if unknown && replaced == want_replacement {
                Ok(())
            } else {
                Err(serde_json::to_string_pretty(&all).unwrap())
            }
        });
    }
    let shown = s[l].ok(&["alloc", "status", &originals[0].0]);
    assert!(shown.contains("unknown"), "{shown}");
    assert!(
        originals.iter().all(|(_, pid)| alive(*pid)),
        "the cut-off client's tasks run on"
    );
    assert_eq!(allocs(&s[l], "kept").len(), 1, "replace = false");

    // Back well within the hour: reconnected, and one allocation per job runs.
    let replacement_pids: Vec<(String, i32)> = jobs[..4]
        .iter()
        .map(|(name, _)| {
            let all = allocs(&s[l], name);
            let r = all.iter().find(|a| a["node_name"] == "c1").unwrap();
            let id = r["id"].as_str().unwrap().to_string();
            let pid = pid_of(&c1.data_dir, &id);
            (id, pid)
        })
        .collect();
    let scores: Vec<(f64, f64)> = jobs[..4]
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let all = allocs(&s[l], name);
            let score = |id: &str| {
                let a = all.iter().find(|a| a["id"] == id).unwrap();
                a["score"].as_f64().unwrap_or(0.0)
            };
            (score(&originals[i].0), score(&replacement_pids[i].0))
        })
        .collect();
    c.heal_and_judge(vec![work], c.l);
    wait_node_status(&s[l], "c0", "ready");
    let verbose = s[l].ok(&["node", "status", "-verbose", "c0"]);
    assert!(verbose.contains("Node reconnected"), "{verbose}");
    for (i, (name, _)) in jobs.iter().enumerate() {
        let winner = wait_one_running(&s[l], name);
        let keeps_original = match *name {
            "orig" | "long" | "kept" => true,
            "repl" => false,
            _ => scores[i].1 <= scores[i].0,
        };
        let (original, original_pid) = &originals[i];
        if keeps_original {
            assert_eq!(winner["id"], original.as_str(), "{name}");
            assert!(alive(*original_pid), "{name}'s original task runs on");
        } else {
            assert_eq!(winner["id"], replacement_pids[i].0.as_str(), "{name}");
            wait_gone(&[*original_pid]);
        }
        if let Some((loser, pid)) = replacement_pids.get(i).filter(|_| keeps_original) {
            wait_gone(&[*pid]);
            let all = allocs(&s[l], name);
            let a = all.iter().find(|a| a["id"] == loser.as_str()).unwrap();
            assert_eq!(
                a["desired_description"],
                "alloc not needed due to disconnected client reconnect"
            );
        }
    }
    assert_eq!(allocs(&s[l], "kept").len(), 1);
}

#[test]
fn past_lost_after_the_node_is_down_and_stop_on_client_after_stops_the_tasks_before_the_replacement(
) {
    let c = Three::start(&["-min-heartbeat-ttl", "1s", "-heartbeat-grace", "1s"]);
    let work = c.workload("nemesis/lost-after");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let jobs = [
        ("brief", "lost_after = \"4s\""),
        ("selfstop", "stop_on_client_after = \"3s\""),
    ];
    let (c0, c1, originals) = started_on_c0(&c, &jobs);
    let (brief_pid, selfstop_pid) = (originals[0].1, originals[1].1);
    let servers: Vec<String> = s.iter().map(host).collect();
    net.partition(&[host(&c0).as_str()], &strs(&servers));

    // Cut off, the client stops `selfstop` by itself; `brief` runs on.
    wait_gone(&[selfstop_pid]);
    // `brief`'s lost_after ends: its allocation is lost, the node down, and a replacement runs.
    wait_node_status(&s[l], "c0", "down");
    let brief = wait_one_running(&s[l], "brief");
    assert_eq!(brief["node_name"], "c1");
    let lost = allocs(&s[l], "brief")
        .into_iter()
        .find(|a| a["id"] == originals[0].0.as_str())
        .unwrap();
    assert_eq!(lost["client_status"], "lost", "{lost}");
    assert!(
        alive(brief_pid),
        "without stop_on_client_after the task runs on"
    );
    let verbose = s[l].ok(&["node", "status", "-verbose", "c0"]);
    assert_eq!(
        verbose.matches("Node heartbeat missed").count(),
        1,
        "{verbose}"
    );

    // `selfstop`'s replacement: only once its original's task had stopped.
    let replacement = wait_one_running(&s[l], "selfstop");
    assert_eq!(replacement["node_name"], "c1");
    let id = replacement["id"].as_str().unwrap();
    assert!(!alive(selfstop_pid));
    assert!(alive(pid_of(&c1.data_dir, id)));

    // Healed: back by heartbeat, it stops what was replaced; one of each runs, on c1.
    c.heal_and_judge(vec![work], c.l);
    wait_node_status(&s[l], "c0", "ready");
    wait_gone(&[brief_pid]);
    for name in ["brief", "selfstop"] {
        assert_eq!(wait_one_running(&s[l], name)["node_name"], "c1");
    }
}

#[test]
fn a_client_restarted_while_cut_off_still_stops_its_tasks_after_stop_on_client_after() {
    let c = Three::start(&["-min-heartbeat-ttl", "1s", "-heartbeat-grace", "1s"]);
    let work = c.workload("nemesis/restart");
    let (s, net) = (&c.s, &c.net);
    let (mut c0, _c1, originals) =
        started_on_c0(&c, &[("selfstop", "stop_on_client_after = \"6s\"")]);
    let servers: Vec<String> = s.iter().map(host).collect();
    net.partition(&[host(&c0).as_str()], &strs(&servers));
    // Killed and started again while still cut off: its task runs on through the restart, and
    // the client remembers when a server last answered it, so it stops the task by itself.
    c0.kill9();
    let args = c.client_args(0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c0.restart(&args);
    wait_gone(&[originals[0].1]);
    assert!(c0.log_text().contains("stop_on_client_after"));
    c.heal_and_judge(vec![work], c.l);
}
