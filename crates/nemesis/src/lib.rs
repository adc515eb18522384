//! Faults beyond kill -9, shared by the fault tests (`integration/faults.rs`) and the soak
//! (`yurt-bench nemesis`): [`net`] gives each run its own loopback addresses and cuts, drops
//! or heals the links between them with `iptables` (and delays one through a [`delay`] proxy),
//! pauses processes and fills disks;
//! [`history`] runs concurrent clients on a compare-and-set register and judges what they saw
//! for linearizability, a decision [`check`] takes, and [`terms`] which servers led in which
//! term meanwhile; [`http`] is the plain HTTP/1.1 exchange
//! both use, bounded in time. Needs root and `iptables` (Debian's package of that name).

pub mod check;
pub mod delay;
pub mod history;
pub mod http;
pub mod net;
pub mod terms;

pub use net::{Net, Paused, SmallDisk};
