//! Heartbeats: a silent client's node goes down and its allocations are replaced elsewhere;
//! a client restarted within the grace period keeps everything; a client's allocation watch
//! answers only for its own allocations; a leader election marks no live node down.

use crate::harness::*;

/// Short TTLs so that a node is down within a few seconds.
const FAST: [&str; 4] = ["-min-heartbeat-ttl", "1s", "-heartbeat-grace", "1s"];

#[test]
fn a_silent_client_goes_down_its_allocations_are_replaced_and_killed_when_it_returns() {
    let dir = TestDir::new();
    let mut args = vec!["-server"];
    args.extend(FAST);
    let server = Agent::start(&dir.path.join("server"), &args);
    let a = Agent::start(
        &dir.path.join("a"),
        &["-client", "-servers", &server.grpc, "-node", "node-a"],
    );
    let b = Agent::start(
        &dir.path.join("b"),
        &["-client", "-servers", &server.grpc, "-node", "node-b"],
    );
    wait_for("both nodes ready", || {
        if node_status(&server, "node-a") == "ready" && node_status(&server, "node-b") == "ready" {
            Ok(())
        } else {
            Err(server.ok(&["node", "status"]))
        }
    });
    server.ok(&["job", "run", web_job(&dir.path, "hello").to_str().unwrap()]);
    let first = server.wait_running("web", 2);
    // Bin packing puts both on one node; that node's client dies.
    let mut clients = [(a, "node-a"), (b, "node-b")];
    wait_for("both tasks to record their PIDs", || {
        let n = task_pids(&clients[0].0.data_dir).len() + task_pids(&clients[1].0.data_dir).len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} PIDs"))
        }
    });
    let v = if task_pids(&clients[0].0.data_dir).len() == 2 {
        0
    } else {
        1
    };
    let [(ref mut c0, n0), (ref mut c1, n1)] = clients;
    let ((victim, victim_name), (survivor, _)) = if v == 0 {
        ((c0, n0), (c1, n1))
    } else {
        ((c1, n1), (c0, n0))
    };
    assert_eq!(
        task_pids(&victim.data_dir).len(),
        2,
        "both allocations on one node"
    );
    let old_pids = task_pids(&victim.data_dir);
    victim.kill9();
    wait_node_status(&server, victim_name, "down");
    let replacements = server.wait_running("web", 2);
    assert!(replacements.iter().all(|r| !first.contains(r)));
    // The replacements run on the other node.
    wait_task_pids(&survivor.data_dir, 2);
    let lost = job_allocations(&server, "web")
        .iter()
        .filter(|a| a["client_status"] == "lost")
        .count();
    assert_eq!(lost, 2);
    assert!(
        old_pids.iter().all(|p| alive(*p)),
        "the old tasks outlive their client"
    );
    let verbose = server.ok(&["node", "status", "-verbose", victim_name]);
    assert!(
        verbose.contains("Cluster") && verbose.contains("Node heartbeat missed"),
        "{verbose}"
    );

    // The client comes back: its node is ready again and it stops the lost allocations' tasks.
    victim.restart(&["-client", "-servers", &server.grpc, "-node", victim_name]);
    wait_node_status(&server, victim_name, "ready");
    // A restarted agent registers again (one that had only lost touch would heartbeat again:
    // `Node reregistered by heartbeat`).
    let verbose = server.ok(&["node", "status", "-verbose", victim_name]);
    assert!(verbose.contains("Node re-registered"), "{verbose}");
    wait_gone(&old_pids);
    assert_eq!(
        server.wait_running("web", 2),
        replacements,
        "still exactly count running"
    );
    let lost = job_allocations(&server, "web")
        .iter()
        .filter(|a| a["client_status"] == "lost")
        .count();
    assert_eq!(lost, 2, "lost stays lost");
}

#[test]
fn a_client_restarted_within_the_grace_period_keeps_its_tasks_and_its_node_stays_ready() {
    let dir = TestDir::new();
    let server = Agent::start(
        &dir.path.join("server"),
        &[
            "-server",
            "-min-heartbeat-ttl",
            "2s",
            "-heartbeat-grace",
            "3s",
        ],
    );
    let args = ["-client", "-servers", &server.grpc, "-node", "node-a"];
    let mut client = Agent::start(&dir.path.join("client"), &args);
    server.wait_node_ready();
    server.ok(&["job", "run", web_job(&dir.path, "hello").to_str().unwrap()]);
    let allocs = server.wait_running("web", 2);
    let mut pids = wait_task_pids(&client.data_dir, 2);
    pids.sort();

    client.kill9();
    client.restart(&args);
    let after = server.wait_running("web", 2);
    assert_eq!(after, allocs, "same allocations");
    let verbose = server.ok(&["node", "status", "-verbose", "node-a"]);
    let ttl = verbose
        .lines()
        .find_map(|l| l.strip_prefix("Heartbeat TTL"))
        .and_then(|l| l.trim_start().strip_prefix("= "))
        .and_then(|v| yurt_types::duration::parse(v).ok())
        .unwrap_or_else(|| panic!("no heartbeat TTL in:\n{verbose}"));
    assert!(ttl >= std::time::Duration::from_secs(2), "{verbose}");
    assert!(verbose.contains("Last Heartbeat"), "{verbose}");
    let mut now = task_pids(&client.data_dir);
    now.sort();
    assert_eq!(now, pids, "same task processes");
    assert!(now.iter().all(|p| alive(*p)));
    // The restarted client has heartbeated again, renewing its deadline; had the node been
    // marked down before that, its allocations would now be `lost` (which is sticky).
    wait_for("the restarted client's first heartbeat", || {
        let info = client.ok(&["agent-info"]);
        if info.contains("last_heartbeat = never") {
            Err(info)
        } else {
            Ok(())
        }
    });
    assert_eq!(node_status(&server, "node-a"), "ready");
    let statuses: Vec<String> = job_allocations(&server, "web")
        .iter()
        .map(|a| a["client_status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(statuses, vec!["running", "running"]);
    let alloc = server.ok(&["alloc", "status", &allocs[0]]);
    assert!(!alloc.contains("Restarting"), "no task restarted:\n{alloc}");
}

/// The blocking query a client watches its allocations with answers for a change to that
/// node's allocations, not for every write the cluster applies, and with `changed_only` sends
/// only the allocations that changed.
#[test]
fn a_clients_allocation_watch_answers_only_for_its_own_allocations() {
    use yurt_proto::v1::nodes_client::NodesClient;
    use yurt_proto::v1::ClientAllocsRequest;

    let dir = TestDir::new();
    let agent = dev_agent(&dir);
    let job = |name: &str, memory: u64| {
        let path = dir.path.join(format!("{name}.hcl"));
        std::fs::write(
            &path,
            format!("job \"{name}\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        args = [\"3600\"]\n      }}\n      resources {{\n        memory = {memory}\n      }}\n    }}\n  }}\n}}\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    agent.ok(&["job", "run", web_job(&dir.path, "hello").to_str().unwrap()]);
    agent.ok(&["job", "run", "-detach", &job("one", 32)]);
    agent.wait_running("web", 2);
    agent.wait_running("one", 1);
    let nodes: serde_json::Value =
        serde_json::from_str(&agent.ok(&["node", "status", "-json"])).unwrap();
    let node_id = nodes["nodes"][0]["id"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut nodes = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        NodesClient::new(channel)
    });
    let mut watch = |min_index: u64, wait_ms: u64, changed_only: bool| {
        let req = ClientAllocsRequest {
            node_id: node_id.clone(),
            min_index,
            wait_ms,
            changed_only,
            ..Default::default()
        };
        rt.block_on(nodes.client_allocs(req)).unwrap().into_inner()
    };
    let first = watch(0, 0, true);
    assert_eq!(first.allocs.len(), 3, "{first:?}");
    assert!(first.index > 0);

    // A job that fits on no node: written through Raft, but no allocation of this node changes.
    let out = agent.yurt(&["job", "run", "-detach", &job("big", 100_000_000)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let quiet = watch(first.index, 1500, true);
    assert_eq!(quiet.index, first.index, "woken by another job's write");
    assert!(quiet.allocs.is_empty(), "{:?}", quiet.allocs);

    // Stopping a job changes this node's allocations: the watch answers with the one that
    // changed, or with all of them when asked.
    agent.ok(&["job", "stop", "-detach", "one"]);
    let stopped = watch(first.index, 30_000, true);
    assert!(stopped.index > first.index, "{stopped:?}");
    let changed: Vec<(&str, &str)> = stopped
        .allocs
        .iter()
        .map(|a| (a.job_id.as_str(), a.desired_status.as_str()))
        .collect();
    assert_eq!(changed, [("one", "stop")]);
    assert_eq!(watch(first.index, 0, false).allocs.len(), 3);
}

/// After a leader election every node gets the failover TTL: a live client is never marked
/// down by the election, and a client that died just before it is still caught, once that
/// TTL and the grace have passed (when exactly is `yurt_core::heartbeat`'s unit tests').
#[test]
fn after_an_election_live_nodes_stay_ready_and_a_dead_one_goes_down_after_the_failover_ttl() {
    let dir = TestDir::new();
    let mut extra = FAST.to_vec();
    extra.extend(["-failover-heartbeat-ttl", "3s"]);
    let mut servers = start_servers(&dir.path, 3, &extra);
    let first_leader = leader(&servers, &[0, 1, 2], 3);
    let list = grpc_list(&servers);
    let live = Agent::start(
        &dir.path.join("live"),
        &["-client", "-servers", &list, "-node", "live"],
    );
    let mut dead = Agent::start(
        &dir.path.join("dead"),
        &["-client", "-servers", &list, "-node", "dead"],
    );
    let ask = (first_leader + 1) % 3;
    wait_for("both nodes ready", || {
        if node_status(&servers[ask], "live") == "ready"
            && node_status(&servers[ask], "dead") == "ready"
        {
            Ok(())
        } else {
            Err(servers[ask].ok(&["node", "status"]))
        }
    });

    // One client dies, and the leader with it, before the client's TTL and grace are out.
    dead.kill9();
    servers[first_leader].kill9();
    let alive: Vec<usize> = (0..3).filter(|&i| i != first_leader).collect();
    leader(&servers, &alive, 3);

    // Until the dead node is down, the live one is never.
    wait_for("the dead node to be down", || {
        let text = stdout(&servers[ask].yurt(&["node", "status"]));
        assert_ne!(status_in(&text, "live"), "down", "{text}");
        if status_in(&text, "dead") == "down" {
            Ok(())
        } else {
            Err(text)
        }
    });
    assert_eq!(node_status(&servers[ask], "live"), "ready");
    drop(live);
}

/// A steady heartbeat renews the node's deadline in the leader's memory and writes nothing
/// to Raft.
#[test]
fn steady_heartbeats_write_nothing_to_raft() {
    let dir = TestDir::new();
    let mut args = vec!["-server"];
    args.extend(FAST);
    let server = Agent::start(&dir.path.join("server"), &args);
    let _client = Agent::start(
        &dir.path.join("client"),
        &["-client", "-servers", &server.grpc, "-node", "node-a"],
    );
    server.wait_node_ready();
    let deadline = || {
        let out = server.ok(&["node", "status", "-verbose", "-json", "node-a"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["heartbeat_deadline_unix_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("no heartbeat deadline in {out}"))
    };
    let last_log_index = || {
        let index = info_field(&server, "last_log_index");
        index
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("last_log_index {index:?}"))
    };
    // The first leader names the cluster in a write of its own, a moment after it leads;
    // once that is done, nothing is due to be written.
    wait_for("the cluster to be named", || {
        let id = info_field(&server, "cluster_id");
        if id.len() == 36 {
            Ok(())
        } else {
            Err(id)
        }
    });
    let index = last_log_index();
    let mut seen = deadline();
    for beat in 1..=5 {
        seen = wait_for(
            &format!("heartbeat {beat} to renew the deadline"),
            || match deadline() {
                d if d > seen => Ok(d),
                d => Err(d.to_string()),
            },
        );
    }
    assert_eq!(last_log_index(), index);
}

/// A client that can reach no server keeps its tasks running, retries with a growing pause
/// and says so in its log, and carries on with the same tasks once a server is back.
#[test]
fn a_client_that_reaches_no_server_keeps_its_tasks_and_carries_on_when_one_returns() {
    let dir = TestDir::new();
    let server_args = ["-server"];
    let mut server = Agent::start(&dir.path.join("server"), &server_args);
    let client = Agent::start(
        &dir.path.join("client"),
        &["-client", "-servers", &server.grpc, "-node", "node-a"],
    );
    server.wait_node_ready();
    server.ok(&["job", "run", web_job(&dir.path, "hello").to_str().unwrap()]);
    let allocs = server.wait_running("web", 2);
    let mut pids = wait_task_pids(&client.data_dir, 2);
    pids.sort();

    server.kill9();
    wait_for("the client to retry with a growing pause", || {
        let log = client.log_text();
        let pauses: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cannot reach a server; trying the next"))
            .filter_map(|l| l.split("retry_in=").nth(1))
            .collect();
        if pauses.len() >= 3 && pauses.windows(2).any(|w| w[0] != w[1]) {
            Ok(())
        } else {
            Err(format!("{pauses:?}"))
        }
    });
    let mut now = task_pids(&client.data_dir);
    now.sort();
    assert_eq!(now, pids);
    assert!(
        now.iter().all(|p| alive(*p)),
        "tasks run on without a server"
    );

    server.restart(&server_args);
    // The restarted server has heard no heartbeat until the client reaches it.
    wait_for("the client to heartbeat again", || {
        let out = server.ok(&["node", "status", "-verbose", "-json", "node-a"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["last_heartbeat_unix_ms"].as_i64().unwrap_or(0) > 0 && v["status"] == "ready" {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(server.wait_running("web", 2), allocs);
    let mut after = task_pids(&client.data_dir);
    after.sort();
    assert_eq!(after, pids, "the same task processes");
    assert!(after.iter().all(|p| alive(*p)));
}
