//! The nemesis (`yurt_nemesis`: loopback blocks cut with iptables, paused processes, small
//! disks) as the fault tests use it on the harness's agents. Needs root and `iptables` (the
//! README's test command installs it); without it these tests fail with one sentence naming
//! the package.

use crate::harness::Agent;

pub use yurt_nemesis::{Net, Paused, SmallDisk};

/// The host part of an agent's address (`127.A.B.k` of `127.A.B.k:port`).
pub fn host(agent: &Agent) -> String {
    yurt_nemesis::net::host_of(&agent.grpc)
}

/// Stops an agent's process (SIGSTOP) until the guard is dropped.
pub fn pause(agent: &Agent) -> Paused {
    Paused::new(agent.pid().expect("a running agent"))
}
