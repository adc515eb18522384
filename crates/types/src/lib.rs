//! Yurt's shared vocabulary and job specification.
//!
//! - [`jobspec`] turns an HCL or JSON job file into a validated [`v1::Job`] with Nomad's defaults
//!   applied; every error names the file, the line and the field.
//! - [`acl`]: ACL policies (Nomad's rule language) and what a token may do.
//! - [`agentconfig`] reads agent configuration files (`-config`), Nomad's layout.
//! - [`limits`]: how much one job may ask for, and the rule for IDs and names.
//! - [`diff`] compares two versions of a job (for `job plan` and `job history -p`).
//! - [`feed`]: a client's allocations in pages, each job version once (the fetch's size is bounded).
//! - [`duration`] reads and writes Go-style durations (`10s`, `5m0s`).
//! - [`nomad_json`]: the messages in Nomad's JSON shape, for the HTTP API.
//! - [`status`] holds the exact status strings used across proto, CLI and docs.
//! - [`version`]: build versions and which agents of different versions work together.
//! - [`variables`]: the rules of Nomad Variables (paths, items, size).
//! - [`tls`]: the `tls` block and the role names agent certificates carry (dialling is
//!   `yurt-tls`'s).
//!
//! The domain objects are the generated `yurt.v1` messages themselves (see
//! `docs/ARCHITECTURE.md`, "One model"): this crate gives them their rules.

pub mod acl;
pub mod agentconfig;
pub mod constraint;
pub mod diff;
pub mod duration;
pub mod feed;
mod hcl;
pub mod jobspec;
pub mod limits;
pub mod nomad_job;
pub mod nomad_json;
pub mod status;
pub mod tls;
pub mod variables;
pub mod version;

pub use yurt_proto::v1;

/// The build version of this binary, shown by `yurt version` and stored in snapshots.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
