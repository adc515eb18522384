//! Feature gating across server versions (pure): what a cluster may use while its servers run
//! different versions during a rolling upgrade.
//!
//! A feature that writes a new kind of Raft command, or new fields an older server would
//! silently drop, is used only when every server of the cluster (failed ones counted: they come
//! back with their old binary) runs at least the version that introduced it. Until then the
//! request that needs it is refused with one sentence naming the servers that hold it back, and
//! writes nothing; the scheduler rolls out without deployments. Older servers refuse commands
//! they cannot decode (an unknown kind) loudly, and snapshots are written in the oldest format
//! that holds the state (`State::to_snapshot`).

use yurt_types::version::at_least;

/// One gated feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    /// The first version that has it.
    pub since: &'static str,
}

/// Deployments: `ApplyPlan.deployment(_changes)`, `DeploymentChange`, allocation health
/// counters; without them updates replace allocations as 0.1 did (all at once).
pub const DEPLOYMENTS: Feature = Feature {
    name: "deployments",
    since: "0.2.0",
};

/// Node drain: `NodeDrainUpdate`, `DrainProgress`, allocations' desired transitions.
pub const NODE_DRAIN: Feature = Feature {
    name: "node drain",
    since: "0.2.0",
};

/// `alloc stop`: an allocation marked to migrate with the drainer's `DrainProgress` command,
/// so it comes with node drain.
pub const ALLOC_STOP: Feature = Feature {
    name: "alloc stop",
    since: NODE_DRAIN.since,
};

/// ACLs: `AclUpdate` (bootstrap, policies, tokens).
pub const ACL: Feature = Feature {
    name: "ACL support",
    since: "0.2.0",
};

/// Node events of registration and heartbeats (`Node registered`, `Node heartbeat missed`,
/// ...): state that Yurt 0.1 cannot read in a snapshot.
pub const NODE_EVENTS: Feature = Feature {
    name: "node events",
    since: "0.2.0",
};

/// Memory oversubscription: `SchedulerConfiguration.memory_oversubscription_enabled` and
/// `Allocation.memory_oversubscription`, fields an older server would drop.
pub const MEMORY_OVERSUBSCRIPTION: Feature = Feature {
    name: "memory oversubscription",
    since: "0.2.0",
};

/// Nomad Variables and the keyring: `VariableWrite` and `KeyringUpdate` commands. The first key
/// is made with the first variable (or rotation), so a cluster that still has an older server
/// writes neither.
pub const VARIABLES: Feature = Feature {
    name: "variables",
    since: "0.2.0",
};

/// Namespaces: `NamespaceUpdate`.
pub const NAMESPACES: Feature = Feature {
    name: "namespaces",
    since: "0.2.0",
};

/// `job eval`, `/v1/job/:id/stable`, `/v1/node/:id/evaluate` and scaling events:
/// `EvalsCreate`, `JobStability`, `JobScalingEvent` and `JobRegister.scaling_event`.
pub const JOB_ACTIONS: Feature = Feature {
    name: "job eval, job stability, node evaluate and scaling events",
    since: "0.2.0",
};

/// The `disconnect` block: the `disconnected` node status and `unknown` allocations, which an
/// older server would take for a live node and live allocations. Until every server has it a
/// silent node goes `down`, as before.
pub const DISCONNECT: Feature = Feature {
    name: "the disconnect block",
    since: "0.2.0",
};

/// Every gated feature, oldest first.
pub const FEATURES: &[Feature] = &[
    DEPLOYMENTS,
    NODE_DRAIN,
    ALLOC_STOP,
    ACL,
    NODE_EVENTS,
    MEMORY_OVERSUBSCRIPTION,
    VARIABLES,
    NAMESPACES,
    JOB_ACTIONS,
    DISCONNECT,
];

/// A server as the gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub version: String,
}

/// Whether every server runs a version with `feature`; the error is the user's sentence.
pub fn check(feature: &Feature, servers: &[Server]) -> Result<(), String> {
    let older: Vec<String> = servers
        .iter()
        .filter(|s| !at_least(&s.version, feature.since))
        .map(|s| {
            let v = if s.version.is_empty() {
                "unknown version"
            } else {
                s.version.as_str()
            };
            format!("{} ({v})", s.name)
        })
        .collect();
    if older.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} requires all servers at version {}; these are older: {}",
            feature.name,
            feature.since,
            older.join(", ")
        ))
    }
}

/// What the leader may write, from the servers' versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gates {
    pub deployments: bool,
    pub node_drain: bool,
    pub node_events: bool,
    pub disconnect: bool,
}

impl Gates {
    /// Everything this build has (a cluster of this version only).
    pub const ALL: Gates = Gates {
        deployments: true,
        node_drain: true,
        node_events: true,
        disconnect: true,
    };

    pub fn of(servers: &[Server]) -> Gates {
        Gates {
            deployments: check(&DEPLOYMENTS, servers).is_ok(),
            node_drain: check(&NODE_DRAIN, servers).is_ok(),
            node_events: check(&NODE_EVENTS, servers).is_ok(),
            disconnect: check(&DISCONNECT, servers).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, version: &str) -> Server {
        Server {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn a_feature_waits_for_every_server() {
        let mixed = [
            server("s1", "0.2.0 (abc1234)"),
            server("s2", "0.1.0"),
            server("s3", ""),
        ];
        assert_eq!(
            check(&NODE_DRAIN, &mixed).unwrap_err(),
            "node drain requires all servers at version 0.2.0; these are older: s2 (0.1.0), s3 (unknown version)"
        );
        assert_eq!(
            Gates::of(&mixed),
            Gates {
                deployments: false,
                node_drain: false,
                node_events: false,
                disconnect: false,
            }
        );
        let upgraded = [server("s1", "0.2.0"), server("s2", "0.2.1")];
        assert!(check(&NODE_DRAIN, &upgraded).is_ok());
        assert_eq!(Gates::of(&upgraded), Gates::ALL);
        for f in FEATURES {
            assert!(yurt_types::version::parse(f.since).is_ok(), "{f:?}");
            assert!(
                at_least(yurt_types::VERSION, f.since),
                "this build has {f:?}"
            );
        }
    }
}
