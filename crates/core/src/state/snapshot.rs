//! The state's snapshot format: encoded as protobuf with `format_version` (the oldest that holds
//! it) and the writing binary's version; a newer format is refused.

use super::*;

/// Version of the snapshot format ([`StateSnapshot::format_version`]). Bump it on every change
/// an older binary could misread, and teach [`State::from_snapshot`] to migrate the old one.
/// 2 (Yurt 0.2): deployments, node drains and allocations' desired transitions, ACLs,
/// variables and the keyring's metadata.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// A snapshot that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot format {found} was written by Yurt {written_by}, but this binary (Yurt {ours}) reads formats up to {SNAPSHOT_FORMAT}: downgrades are not supported")]
    TooNew {
        found: u32,
        written_by: String,
        ours: &'static str,
    },
}

impl State {
    /// The oldest snapshot format that holds this state: while a cluster still has servers of
    /// an older version (features gated), its snapshots stay readable by them, and a state that
    /// an older server would misread is refused by it loudly (its format is too new).
    pub fn snapshot_format(&self) -> u32 {
        let format_2 = !self.deployments.is_empty()
            || !self.variables.is_empty()
            || !self.root_keys.is_empty()
            || !self.namespaces.is_empty()
            || !self.scaling_events.is_empty()
            || self.acl_bootstrap_index != 0
            || !self.acl_policies.is_empty()
            || !self.acl_tokens.is_empty()
            || self
                .nodes
                .values()
                .any(|n| n.drain_strategy.is_some() || !n.events.is_empty())
            || self
                .allocs
                .values()
                .any(|a| a.desired_transition.is_some() || !a.deployment_id.is_empty());
        if format_2 {
            2
        } else {
            1
        }
    }

    /// Encodes the whole state for a snapshot file.
    pub fn to_snapshot(&self, written_by: &str) -> Vec<u8> {
        let snap = StateSnapshot {
            format_version: self.snapshot_format(),
            written_by: written_by.into(),
            index: self.index,
            jobs: self.jobs.values().map(|j| Job::clone(j)).collect(),
            job_versions: self
                .job_versions
                .values()
                .flatten()
                .map(|j| Job::clone(j))
                .collect(),
            nodes: self.nodes.values().cloned().collect(),
            allocs: self.allocs.values().cloned().collect(),
            evals: self.evals.values().cloned().collect(),
            cluster_id: self.cluster_id.clone(),
            scheduler_config: Some(self.scheduler_config.clone()),
            deployments: self.deployments.values().cloned().collect(),
            acl_policies: self.acl_policies.values().cloned().collect(),
            acl_tokens: self.acl_tokens.values().cloned().collect(),
            acl_bootstrap_index: self.acl_bootstrap_index,
            variables: self.variables.values().cloned().collect(),
            root_keys: self.root_keys.values().cloned().collect(),
            namespaces: self.namespaces.values().cloned().collect(),
            scaling_events: self.scaling_events.values().cloned().collect(),
        };
        snap.encode_to_vec()
    }

    /// Decodes a snapshot written by [`State::to_snapshot`] of this or an older version.
    pub fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let snap =
            StateSnapshot::decode(bytes).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if snap.format_version > SNAPSHOT_FORMAT {
            return Err(SnapshotError::TooNew {
                found: snap.format_version,
                written_by: snap.written_by,
                ours: yurt_types::VERSION,
            });
        }
        let mut job_versions: BTreeMap<JobKey, Vec<Arc<Job>>> = BTreeMap::new();
        for j in snap.job_versions {
            job_versions
                .entry(key_of(&j))
                .or_default()
                .push(Arc::new(j));
        }
        for v in job_versions.values_mut() {
            v.sort_by_key(|j| j.version);
        }
        Ok(State {
            index: snap.index,
            jobs: snap
                .jobs
                .into_iter()
                .map(|j| (key_of(&j), Arc::new(j)))
                .collect(),
            job_versions: job_versions.into(),
            nodes: snap.nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            allocs: snap.allocs.into_iter().collect(),
            evals: snap.evals.into_iter().collect(),
            cluster_id: snap.cluster_id,
            scheduler_config: snap.scheduler_config.unwrap_or_default(),
            deployments: snap.deployments.into_iter().collect(),
            acl_policies: snap
                .acl_policies
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            acl_tokens: snap
                .acl_tokens
                .into_iter()
                .map(|t| (t.secret_id.clone(), t))
                .collect(),
            acl_bootstrap_index: snap.acl_bootstrap_index,
            variables: snap
                .variables
                .into_iter()
                .map(|v| {
                    let m = v.meta.clone().unwrap_or_default();
                    ((m.namespace, m.path), v)
                })
                .collect(),
            root_keys: snap
                .root_keys
                .into_iter()
                .map(|k| (k.key_id.clone(), k))
                .collect(),
            namespaces: snap
                .namespaces
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect(),
            scaling_events: snap
                .scaling_events
                .into_iter()
                .map(|e| (job_key(&e.namespace, &e.job_id), e))
                .collect(),
        })
    }
}
