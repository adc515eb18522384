//! Black-box tests: real `yurt` processes on loopback, ephemeral ports, temp dirs.
//!
//! - `harness`: start/stop agents, run the CLI, wait for conditions, clean up task processes;
//! - `acl`: bootstrap, policies and tokens decide what the CLI and the HTTP API may do;
//! - `client_fs`: an allocation's files over HTTP: ls, stat, cat, readat, stream and logs
//!   followed; paths out of the directory and secrets refused;
//! - `cluster`: three to five servers: bootstrap, leader loss, restarts, joins, removals;
//! - `damage`: every file of a data dir damaged in turn: refused in a sentence or survived, never empty;
//! - `deployments`: rolling updates, canaries, promotion, deadlines, auto-revert, `job revert`;
//! - `docker`: the docker driver against a private dockerd (`dockerd`): ports, logs, OOM,
//!   client restart, daemon loss, missing image, drain, leftovers, image GC;
//! - `search_join`: search by prefix and name, reconcile, `server join`/`/v1/agent/join` and
//!   force-leave over HTTP;
//! - `seed_docker`: seed 004's rolling upgrade and auto-revert with real images;
//! - `docs`: the docs' hcl examples parse, and their jobs plan;
//! - `drivers`: exec isolation and enforced resources (OOM, pids, CPU weight), a child that
//!   left its group killed on stop, missing drivers as placement failures, `alloc exec`;
//! - `driver_faults`: tasks outliving a client restart in their cgroup, lost tasks' cgroups
//!   removed, tasks killed at random moments leaving nothing behind;
//! - `drain`: node drain: metered migrations, deadlines, batch and system jobs, eligibility;
//! - `health`: service checks and task states decide allocation health;
//! - `heartbeat`: silent clients go down and are replaced; quick restarts change nothing; a
//!   client's allocation watch answers only for its own allocations;
//! - `hostile`: hostile and careless input refused with the field and the limit, agent responsive;
//! - `http_routes`: job summaries, allocations by node, evaluation and deployment, the agent's
//!   servers; 405s, Go booleans, typed fields;
//! - `http`: the Nomad-shaped HTTP API: writes, reads, blocking queries, bad input;
//! - `job_actions`: job evaluate, stable and scale, node evaluate, node stubs over HTTP; `job scale`,
//!   `job eval`;
//! - `jobs`: the job lifecycle from the CLI (run, plan, history, stop, logs);
//! - `namespaces`: namespaces over HTTP and the CLI: jobs, allocations, evaluations, events and
//!   variables kept apart for reads and tokens; deletion refused while they hold anything;
//! - `nomad_jobs`: Nomad's job files and job JSON over plain HTTP: registered, read back unchanged,
//!   warnings for what Yurt does not implement, `job validate`/`job inspect`;
//! - `leadership`: the leader's loops run on the leader only, and move with leadership;
//! - `restart`: an agent killed with SIGKILL comes back with its state and its tasks; a task
//!   whose PID another process took meanwhile is lost, and that process is left alone;
//! - `rollouts`: failing rollouts keep the old allocations serving; history keeps the stable version;
//! - `scheduling`: constraints on node meta, placement failures, blocked evaluations;
//! - `status`: job status by Nomad's rules, purged jobs' allocations, `agent-info`'s sections;
//! - `event_stream`: `/v1/event/stream`: a drain's event, resume, topic filters, the CLI;
//! - `errors`: bad input gives one clear sentence and changes nothing;
//! - `nemesis`: the `yurt-nemesis` crate on the harness's agents: the fault tests' own loopback
//!   addresses per test, links cut with iptables (one way or both), processes paused, small
//!   disks; always undone (the crate's `history` judges what concurrent clients saw);
//! - `faults`: named fault scenarios (leader isolated, follower isolated and healed, leader
//!   paused, a leader's packets to the followers lost, a lossy link, full disks, a client cut
//!   off from every server, a leader cut off during a rollout) under that workload;
//! - `disconnect`: the `disconnect` block with a client cut off: `disconnected` and `unknown`,
//!   each `reconcile` strategy, `lost_after` running out, `stop_on_client_after`;
//! - `follower_writes`: writes sent to a lagging follower are decided on the leader's state;
//! - `variables`: Nomad Variables over HTTP (compare-and-set, pages, ACL rules, rotation) and
//!   on three servers (keys fetched, restarts, sealed at rest);
//! - `upgrade`: the seed upgrade guides from the previous release (built from `RELEASES`);
//! - `tls`: mutual TLS between servers, clients, the CLI and HTTPS; wrong certificates refused;
//! - `tidy`: rules about the source tree itself.

mod acl;
mod browser;
mod client_fs;
mod cluster;
mod damage;
mod deployments;
mod disconnect;
mod docker;
mod dockerd;
mod docs;
mod drain;
mod driver_faults;
mod drivers;
mod errors;
mod event_stream;
mod faults;
mod follower_writes;
mod harness;
mod health;
mod heartbeat;
mod hostile;
mod http;
mod http_routes;
mod job_actions;
mod jobs;
mod leadership;
mod namespaces;
mod nemesis;
mod nomad_jobs;
mod restart;
mod rollouts;
mod scheduling;
mod search_join;
mod seed_docker;
mod status;
mod tidy;
mod tls;
mod ui;
mod upgrade;
mod variables;
