//! Faults beyond kill -9, each a named scenario with the nemesis (`nemesis`): three servers on
//! their own loopback addresses under concurrent reads and compare-and-set writes
//! (`yurt_nemesis::history`),
//! whose history must be linearizable once the faults are healed (nothing acknowledged lost,
//! no read of the past). A leader cut off from the majority acknowledges nothing and stops
//! acting as leader; a leader whose packets to the followers are lost is replaced; a write sent
//! to a follower while its leader is paused is answered as soon as another leader is elected,
//! never held; a server whose disk fills up stays up, refuses writes in one sentence while it
//! leads, and catches up once space is freed; a lossy or slow link loses nothing acknowledged; a client
//! cut off from every server keeps its tasks, goes down alone and comes back by heartbeat; a
//! rolling deployment whose leader is cut off is carried on by the next, never below its floor.

use std::time::Duration;

use crate::harness::*;
use crate::nemesis::{host, pause, Net, SmallDisk};
use yurt_nemesis::history::{Entry, Object, Ret, Workload};

/// Three servers on `net`'s first three addresses, and their leader. Fields drop in order:
/// the servers, then the nemesis's rules, then the directory.
pub(crate) struct Three {
    pub s: Vec<Agent>,
    pub net: Net,
    pub dir: TestDir,
    /// The leader when they started.
    pub l: usize,
    /// Their HTTP addresses.
    pub http: Vec<String>,
}

impl Three {
    pub fn start(extra: &[&str]) -> Three {
        Three::start_in(TestDir::new(), extra)
    }

    /// In `dir` (a test may mount a server's data dir there first).
    fn start_in(dir: TestDir, extra: &[&str]) -> Three {
        let net = Net::new();
        let mut s: Vec<Agent> = Vec::new();
        for i in 0..3u8 {
            let ip = net.ip(i + 1);
            let mut flags = vec!["-bind", &ip];
            flags.extend(extra);
            let args = server_args(i.into(), 3, s.first(), &flags);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            s.push(Agent::start(&dir.path.join(format!("s{i}")), &args));
        }
        let l = leader(&s, &[0, 1, 2], 3);
        let http = s.iter().map(|a| a.http.clone().unwrap()).collect();
        Three {
            s,
            net,
            dir,
            l,
            http,
        }
    }

    /// The workload on variable `path`, through every server, after a second of it.
    pub fn workload(&self, path: &str) -> Workload {
        self.workload_on(Object::Variable(path.into()))
    }

    /// The workload on `object`, through every server, after a second of it.
    fn workload_on(&self, object: Object) -> Workload {
        let work = Workload::start(&self.http, 6, object);
        run_for(Duration::from_secs(1));
        work
    }

    /// `n` clients `c0`, `c1`, ... on their own addresses, knowing every server, once ready.
    fn clients(&self, n: u8) -> Vec<Agent> {
        (0..n).map(|i| self.client(i)).collect()
    }

    /// Client `c<i>` on its own address, knowing every server, once ready.
    pub fn client(&self, i: u8) -> Agent {
        let args = self.client_args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = format!("c{i}");
        let agent = Agent::start(&self.dir.path.join(&name), &args);
        wait_node_status(&self.s[self.l], &name, "ready");
        agent
    }

    /// The flags of client `c<i>` (to start it again).
    pub fn client_args(&self, i: u8) -> Vec<String> {
        let list: Vec<String> = self.s.iter().map(|a| a.grpc.clone()).collect();
        let (name, ip) = (format!("c{i}"), self.net.ip(11 + i));
        [
            "-client",
            "-servers",
            &list.join(","),
            "-node",
            &name,
            "-bind",
            &ip,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    /// Makes `s2` a follower if it leads: paused past an election, it comes back as one.
    fn make_s2_a_follower(&mut self) {
        if self.l == 2 {
            let paused = pause(&self.s[2]);
            self.l = leader(&self.s, &[0, 1], 3);
            drop(paused);
            converged(&self.s, &[0, 1, 2]);
        }
    }

    /// The addresses of the servers but `i`.
    fn others_of(&self, i: usize) -> Vec<String> {
        (0..3)
            .filter(|j| *j != i)
            .map(|j| host(&self.s[j]))
            .collect()
    }

    /// Heals every fault, stops the workloads, waits for the servers to converge, and judges
    /// each history with a final read through server `via`.
    pub fn heal_and_judge(&self, mut works: Vec<Workload>, via: usize) {
        self.net.heal();
        for w in &mut works {
            w.stop();
        }
        converged(&self.s, &[0, 1, 2]);
        for w in works {
            let log = w.finish(&self.http[via]);
            assert!(
                log.iter().any(|e| e.ret == Some(Ret::Written)),
                "the workload wrote"
            );
        }
    }
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Lets the workload run for `d`.
fn run_for(d: Duration) {
    std::thread::sleep(d);
}

/// The operations sent to `server` (an HTTP address) invoked after `after` that returned an
/// answer (a value, a write, a conflict).
fn answered_by<'a>(log: &'a [Entry], server: &str, after: Duration) -> Vec<&'a Entry> {
    log.iter()
        .filter(|e| e.server == server && e.at > after && e.ret.is_some())
        .collect()
}

/// Writes acknowledged by any server, invoked after `after`.
fn written_after(log: &[Entry], after: Duration) -> usize {
    log.iter()
        .filter(|e| e.at > after && e.ret == Some(Ret::Written))
        .count()
}

#[test]
fn a_leader_isolated_from_both_followers_stops_acknowledging_and_nothing_acknowledged_is_lost() {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let work = c.workload("nemesis/isolated-leader");
    // Job registrations with -check-index too: the same register, through the job API.
    let jobs = c.workload_on(Object::Job("cas-isolated".into()));

    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    c.net
        .partition(&[host(&s[l]).as_str()], &strs(&c.others_of(l)));
    let (cut_at, jobs_cut_at) = (work.now(), jobs.now());
    // The majority elects a leader of its own and carries on.
    assert_ne!(leader(s, &others, 3), l);
    // The isolated leader counts itself cut off (check-quorum): its loops stop, and a write
    // sent to it is refused at once, not proposed.
    let job = sh_batch_job(&c.dir.path, "cut-off", 1, "true");
    let job = job.to_str().unwrap();
    let refused = wait_for("the isolated leader to stop acting as leader", || {
        let out = s[l].yurt(&["job", "run", "-detach", job]);
        let err = stderr(&out);
        if err.contains("has lost contact with a majority of the servers and commits nothing: the write was not applied") {
            Ok(err)
        } else {
            Err(format!("{}{err}", stdout(&out)))
        }
    });
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert!(s[l].log_text().contains("it stops acting as leader"));
    run_for(Duration::from_secs(2));
    let during = work.log();
    // It acknowledged nothing asked of it after the cut: no write, no read, of either.
    let late = answered_by(&during, &c.http[l], cut_at);
    assert!(late.is_empty(), "the isolated leader answered: {late:#?}");
    let job_log = jobs.log();
    let late = answered_by(&job_log, &c.http[l], jobs_cut_at);
    assert!(late.is_empty(), "the isolated leader answered: {late:#?}");
    assert!(
        written_after(&during, cut_at) > 0,
        "the majority carried on"
    );

    c.heal_and_judge(vec![work, jobs], l);
    // The old leader's view is the new leader's once it hears from it.
    assert_eq!(leader(s, &[0, 1, 2], 3), leader(s, &others, 3));
}

#[test]
fn a_follower_isolated_then_healed_catches_up_with_every_write() {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let f = (l + 1) % 3;
    let work = c.workload("nemesis/isolated-follower");

    c.net
        .partition(&[host(&s[f]).as_str()], &strs(&c.others_of(f)));
    let cut_at = work.now();
    run_for(Duration::from_secs(3));
    // The leader kept it: the two others carry on; the follower answers no read meanwhile.
    assert_eq!(leader(s, &[l, (l + 2) % 3], 3), l);
    let log = work.log();
    let late = answered_by(&log, &c.http[f], cut_at + Duration::from_secs(1));
    assert!(
        late.iter().all(|e| !matches!(e.ret, Some(Ret::Value(..)))),
        "the isolated follower answered a read: {late:#?}"
    );
    // The final read goes through the follower that was cut off.
    c.heal_and_judge(vec![work], f);
}

#[test]
fn a_leader_paused_past_several_elections_loses_nothing_and_a_write_sent_meanwhile_is_answered() {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let f = (l + 1) % 3;
    let work = c.workload("nemesis/paused-leader");
    let jobs = c.workload_on(Object::Job("cas-paused".into()));

    let mut paused = pause(&s[l]);
    // A job sent to a follower at once is forwarded to the paused leader; the follower stops
    // waiting for it as soon as another leader is elected, and says what happened (or the new
    // leader took it): never the forward's 15 s deadline.
    let job = sh_batch_job(&c.dir.path, "while-paused", 1, "true");
    let out = s[f].yurt(&["job", "run", "-detach", job.to_str().unwrap()]);
    if !out.status.success() {
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("stopped answering and") && err.contains("was elected"),
            "{err}"
        );
    }
    assert_ne!(leader(s, &[f, (l + 2) % 3], 3), l);
    // Several election timeouts of writes without it.
    run_for(Duration::from_secs(2));
    paused.resume();
    c.heal_and_judge(vec![work, jobs], l);
}

#[test]
fn a_leader_whose_packets_to_the_followers_are_dropped_is_replaced_and_nothing_acknowledged_is_lost(
) {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let work = c.workload("nemesis/one-way");

    // One way only: what the leader sends the followers is lost; what they send it arrives.
    for other in c.others_of(l) {
        c.net.cut(&host(&s[l]), &other);
    }
    let cut_at = work.now();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    assert_ne!(leader(s, &others, 3), l);
    run_for(Duration::from_secs(3));
    let log = work.log();
    let late = answered_by(&log, &c.http[l], cut_at + Duration::from_secs(1));
    assert!(
        late.iter().all(|e| e.ret != Some(Ret::Written)),
        "the cut-off leader acknowledged a write: {late:#?}"
    );
    c.heal_and_judge(vec![work], l);
}

#[test]
fn a_follower_whose_disk_fills_up_stays_up_and_catches_up_once_space_is_freed() {
    let dir = TestDir::new();
    // s2's data dir is a small file system of its own.
    let disk = SmallDisk::mount(&dir.path.join("s2"), 256);
    let mut c = Three::start_in(dir, &[]);
    c.make_s2_a_follower();
    let s = &c.s;
    let work = c.workload("nemesis/full-disk");

    disk.fill();
    let full_at = work.now();
    run_for(Duration::from_secs(3));
    // The others carry on; the full server is still up, and says why it lags.
    assert_ne!(leader(s, &[0, 1], 3), 2);
    assert!(written_after(&work.log(), full_at) > 0);
    let info = s[2].yurt(&["agent-info"]);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(s[2].log_text().contains("no space left on device"));
    disk.free();
    // The final read goes through the server that was full.
    c.heal_and_judge(vec![work], 2);
}

#[test]
fn a_leader_whose_disk_fills_up_refuses_writes_in_one_sentence_and_takes_them_once_freed() {
    let dir = TestDir::new();
    let data = dir.path.join("s0");
    let disk = SmallDisk::mount(&data, 256);
    let s = Agent::start(&data, &["-server", "-bootstrap-expect", "1"]);
    let job = sh_batch_job(&dir.path, "before", 1, "true");
    s.ok(&["job", "run", "-detach", job.to_str().unwrap()]);

    disk.fill();
    let job = sh_batch_job(&dir.path, "while-full", 1, "true");
    let out = s.yurt(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no space left on device for the data dir")
            && err.contains(data.to_str().unwrap()),
        "{err}"
    );
    // Still up: reads are answered.
    assert!(s.ok(&["job", "status"]).contains("before"));

    disk.free();
    s.ok(&["job", "run", "-detach", job.to_str().unwrap()]);
    let jobs = s.ok(&["job", "status"]);
    assert!(
        jobs.contains("before") && jobs.contains("while-full"),
        "{jobs}"
    );
}

#[test]
fn a_lossy_link_between_the_leader_and_a_follower_loses_nothing_acknowledged() {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let f = (l + 1) % 3;
    let work = c.workload("nemesis/lossy");

    // A third of the packets between the leader and one follower are lost, both ways.
    c.net.lossy(&host(&s[l]), &host(&s[f]), 0.3);
    c.net.lossy(&host(&s[f]), &host(&s[l]), 0.3);
    let lossy_at = work.now();
    run_for(Duration::from_secs(4));
    assert!(
        written_after(&work.log(), lossy_at) > 0,
        "writes go on over a lossy link"
    );
    c.heal_and_judge(vec![work], f);
}

#[test]
fn a_slow_link_from_the_leader_to_a_follower_loses_nothing_acknowledged_and_it_catches_up() {
    let c = Three::start(&[]);
    let (s, l) = (&c.s, c.l);
    let f = (l + 1) % 3;
    let work = c.workload("nemesis/slow");
    let follower: std::net::SocketAddr = s[f].grpc.parse().unwrap();

    // What the leader sends the follower arrives late: first by less than an election timeout
    // (200 to 300 ms here), then by twice the longest, so that the follower stands for election.
    for (by, hold) in [(150, 3), (600, 3)] {
        c.net
            .delay(&host(&s[l]), follower, Duration::from_millis(by));
        let slow_at = work.now();
        run_for(Duration::from_secs(hold));
        assert!(
            written_after(&work.log(), slow_at) > 0,
            "writes go on while the link is delayed by {by} ms"
        );
        assert!(
            c.net.delayed() > 0,
            "the leader's messages went through the delay"
        );
        c.net.heal();
    }
    c.heal_and_judge(vec![work], f);
}

#[test]
fn a_client_cut_off_from_every_server_keeps_its_tasks_goes_down_alone_and_returns_by_heartbeat() {
    let c = Three::start(&["-min-heartbeat-ttl", "1s", "-heartbeat-grace", "1s"]);
    let work = c.workload("nemesis/client-cut");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let clients = c.clients(2);
    s[l].ok(&[
        "job",
        "run",
        web_job(&c.dir.path, "hello").to_str().unwrap(),
    ]);
    let first = s[l].wait_running("web", 2);
    let placed = |c: &Agent| task_pids(&c.data_dir).len();
    wait_for("both tasks to record their PIDs", || {
        match placed(&clients[0]) + placed(&clients[1]) {
            2 => Ok(()),
            n => Err(format!("{n} PIDs")),
        }
    });
    // Bin packing puts both on one node: that client is cut off from every server.
    let v = if placed(&clients[0]) == 2 { 0 } else { 1 };
    let (victim, other) = (format!("c{v}"), format!("c{}", 1 - v));
    let old_pids = task_pids(&clients[v].data_dir);
    let servers: Vec<String> = s.iter().map(host).collect();
    net.partition(&[host(&clients[v]).as_str()], &strs(&servers));

    wait_node_status(&s[l], &victim, "down");
    // Its allocations are replaced on the other node, which stays ready; its tasks run on.
    let replacements = s[l].wait_running("web", 2);
    assert!(replacements.iter().all(|r| !first.contains(r)));
    wait_task_pids(&clients[1 - v].data_dir, 2);
    assert_eq!(node_status(&s[l], &other), "ready");
    assert!(
        old_pids.iter().all(|p| alive(*p)),
        "the cut-off client's tasks run on"
    );

    // Healed: it heartbeats again (no restart), its node is ready, and it stops the tasks of
    // the allocations that were replaced; exactly two run.
    c.heal_and_judge(vec![work], l);
    wait_node_status(&s[l], &victim, "ready");
    let verbose = s[l].ok(&["node", "status", "-verbose", &victim]);
    assert!(
        verbose.contains("Node reregistered by heartbeat"),
        "{verbose}"
    );
    wait_gone(&old_pids);
    assert_eq!(s[l].wait_running("web", 2), replacements);
}

/// The fewest tasks seen running on some clients, sampled every 50 ms until asked.
struct Floor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<usize>,
}

impl Floor {
    /// Starts sampling the tasks of the clients under `dirs`.
    fn watch(dirs: &[std::path::PathBuf]) -> Floor {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dirs, flag) = (dirs.to_vec(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let mut least = usize::MAX;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                least = least.min(live_tasks(&dirs));
                std::thread::sleep(Duration::from_millis(50));
            }
            least
        });
        Floor { stop, sampler }
    }

    /// Stops sampling; the fewest tasks seen running at once.
    fn least(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.sampler.join().unwrap()
    }
}

/// Runs `web` (three allocations, one replaced at a time: at least two run throughout) at
/// version 0 on `clients` until its deployment succeeds, starts sampling their tasks, runs
/// version 1 and waits until its rollout has placed an allocation. The sampler and the
/// clients' data dirs.
fn rollout_under_way(c: &Three, clients: &[Agent]) -> (Floor, Vec<std::path::PathBuf>) {
    use crate::deployments::{job_file, wait_deployment, FOREVER};
    let leader = &c.s[c.l];
    let update = "max_parallel = 1\n    min_healthy_time = \"1s\"\n    healthy_deadline = \"20s\"\n    progress_deadline = \"60s\"";
    let v0 = job_file(&c.dir.path, 3, "v0", FOREVER, update);
    leader.ok(&["job", "run", "-detach", v0.to_str().unwrap()]);
    wait_deployment(leader, 0, "successful");
    let dirs: Vec<std::path::PathBuf> = clients.iter().map(|a| a.data_dir.clone()).collect();
    let floor = Floor::watch(&dirs);
    let v1 = job_file(&c.dir.path, 3, "v1", FOREVER, update);
    leader.ok(&["job", "run", "-detach", v1.to_str().unwrap()]);
    wait_for("the rollout to place a new allocation", || {
        let v = crate::deployments::status(leader);
        let new = crate::deployments::live(&v)
            .iter()
            .filter(|(version, _)| *version == 1)
            .count();
        if new > 0 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    (floor, dirs)
}

/// How many tasks run now on the clients under `dirs` (their processes, as the host sees them).
fn live_tasks(dirs: &[std::path::PathBuf]) -> usize {
    dirs.iter()
        .flat_map(|d| task_pids(d))
        .filter(|p| alive(*p))
        .count()
}

#[test]
fn a_leader_isolated_during_a_rolling_deployment_never_takes_the_service_below_its_floor() {
    use crate::deployments::{status, wait_deployment};
    let c = Three::start(&[]);
    let work = c.workload("nemesis/rollout");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let clients = c.clients(2);
    let (floor, dirs) = rollout_under_way(&c, &clients);
    // The leader is cut off from both followers (the clients still reach every server).
    net.partition(&[host(&s[l]).as_str()], &strs(&c.others_of(l)));
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let new = leader(s, &others, 3);
    assert_ne!(new, l);
    // The new leader's deployment watcher carries the rollout to its end.
    wait_deployment(&s[new], 1, "successful");
    let least = floor.least();
    assert!(
        least >= 2,
        "only {least} tasks ran at one moment of the rollout"
    );

    c.heal_and_judge(vec![work], l);
    converged(s, &[0, 1, 2]);
    let v = status(&s[l]);
    let live = crate::deployments::live(&v);
    assert_eq!(live.len(), 3, "{v}");
    assert!(live.iter().all(|(version, _)| *version == 1), "{v}");
    assert_eq!(live_tasks(&dirs), 3);
}

#[test]
fn a_promotion_sent_to_a_cut_off_leader_never_takes_effect_beside_the_majority_s_failure() {
    use crate::deployments::{deployment_of, job_file, latest, live, status, FOREVER};
    let c = Three::start(&[]);
    let work = c.workload("nemesis/canary");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let _clients = c.clients(2);
    let update = "max_parallel = 1\n    canary = 1\n    min_healthy_time = \"1s\"\n    healthy_deadline = \"20s\"\n    progress_deadline = \"60s\"";
    let v0 = job_file(&c.dir.path, 2, "v0", FOREVER, update);
    s[l].ok(&["job", "run", "-detach", v0.to_str().unwrap()]);
    crate::deployments::wait_deployment(&s[l], 0, "successful");
    let v1 = job_file(&c.dir.path, 2, "v1", FOREVER, update);
    s[l].ok(&["job", "run", "-detach", v1.to_str().unwrap()]);
    wait_for("the canary to be healthy", || {
        let allocs = live(&status(&s[l]));
        if allocs.contains(&(1, Some(true))) {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
    let d = deployment_of(&s[l], 1);

    // The leader is cut off from both followers (the clients still reach every server). Asked
    // to promote, it must not: it cannot commit. The majority's leader fails the deployment.
    net.partition(&[host(&s[l]).as_str()], &strs(&c.others_of(l)));
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let new = leader(s, &others, 3);
    let promote = s[l].yurt(&["deployment", "promote", &d]);
    assert_ne!(promote.status.code(), Some(0), "{}", stdout(&promote));
    s[new].ok(&["deployment", "fail", &d]);

    // Healed, every server holds one outcome: failed, never promoted; the canary stopped and
    // the two allocations of version 0 run.
    c.heal_and_judge(vec![work], l);
    converged(s, &[0, 1, 2]);
    for server in s {
        let (version, state, _) = latest(&status(server));
        assert_eq!((version, state.as_str()), (1, "failed"));
        let shown: serde_json::Value =
            serde_json::from_str(&server.ok(&["deployment", "status", "-json", &d])).unwrap();
        assert_eq!(shown["task_groups"]["app"]["promoted"], false, "{shown}");
    }
    wait_for("only version 0 to run", || {
        let allocs = live(&status(&s[new]));
        if allocs.len() == 2 && allocs.iter().all(|(v, _)| *v == 0) {
            Ok(())
        } else {
            Err(format!("{allocs:?}"))
        }
    });
}

#[test]
fn clients_cut_off_from_the_leader_alone_carry_a_rolling_deployment_through_the_followers() {
    use crate::deployments::{live, status, wait_deployment};
    let c = Three::start(&[]);
    let work = c.workload("nemesis/clients-cut");
    let (s, l, net) = (&c.s, c.l, &c.net);
    let clients = c.clients(2);
    let (floor, dirs) = rollout_under_way(&c, &clients);
    // Both clients lose the leader and still reach the followers, which forward their
    // heartbeats and reports; the leader keeps its majority and carries the rollout on.
    let client_hosts: Vec<String> = clients.iter().map(host).collect();
    net.partition(&[host(&s[l]).as_str()], &strs(&client_hosts));
    wait_deployment(&s[l], 1, "successful");
    let least = floor.least();
    assert!(
        least >= 2,
        "only {least} tasks ran at one moment of the rollout"
    );
    for name in ["c0", "c1"] {
        let shown = s[l].ok(&["node", "status", "-verbose", name]);
        assert!(!shown.contains("Node heartbeat missed"), "{shown}");
        assert_eq!(node_status(&s[l], name), "ready");
    }
    c.heal_and_judge(vec![work], l);
    let v = status(&s[l]);
    let allocs = live(&v);
    assert_eq!(allocs.len(), 3, "{v}");
    assert!(allocs.iter().all(|(version, _)| *version == 1), "{v}");
    assert_eq!(live_tasks(&dirs), 3);
}

#[test]
fn a_snapshot_that_does_not_fit_on_a_follower_s_disk_waits_for_room_and_it_catches_up() {
    let dir = TestDir::new();
    let disk = SmallDisk::mount(&dir.path.join("s2"), 128);
    let mut c = Three::start_in(dir, &["-raft-snapshot-threshold", "50"]);
    c.make_s2_a_follower();
    let s = &c.s;
    // About 10 MiB of state (170 variables of 60 KB): its snapshot no longer fits once the
    // disk is nearly full, while the log (whose reserve is 8 MiB) goes on.
    let big = "x".repeat(60_000);
    for i in 0..170 {
        let body = serde_json::json!({ "Items": { "v": big } }).to_string();
        let (code, v) = http_json(&c.http[c.l], "PUT", &format!("/v1/var/big/{i}"), &body);
        assert_eq!(code, 200, "{v}");
    }
    converged(s, &[0, 1, 2]);
    let work = c.workload("nemesis/snapshot");
    disk.fill_leaving(9 << 20);
    // A snapshot is due every 50 entries: s2's waits for room, and s2 stays up.
    wait_for("s2's snapshot to wait for room", || {
        let log = s[2].log_text();
        if log.contains("no space left on device for the snapshot") {
            Ok(())
        } else {
            Err("no word of it in s2's log".to_string())
        }
    });
    let info = s[2].yurt(&["agent-info"]);
    assert!(info.status.success(), "{}", stderr(&info));
    disk.free();
    // s2 writes its snapshot, catches up, and the final read goes through it.
    c.heal_and_judge(vec![work], 2);
    wait_for("s2's snapshot to be written", || {
        let log = s[2].log_text();
        let freed = log.rfind("space freed").ok_or("space not freed yet")?;
        if log[freed..].contains("snapshot written") {
            Ok(())
        } else {
            Err("no snapshot written since".to_string())
        }
    });
}
