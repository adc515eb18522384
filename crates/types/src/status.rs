//! The exact strings Yurt uses for states and triggers, shared by proto fields, CLI and docs.
//! They are Nomad's, so operators and scripts carry over.

pub const JOB_PENDING: &str = "pending";
pub const JOB_RUNNING: &str = "running";
pub const JOB_DEAD: &str = "dead";

pub const JOB_TYPE_SERVICE: &str = "service";
pub const JOB_TYPE_BATCH: &str = "batch";
pub const JOB_TYPE_SYSTEM: &str = "system";

/// Scheduler algorithms (`operator scheduler set-config -scheduler-algorithm`).
pub const SCHEDULER_BINPACK: &str = "binpack";
pub const SCHEDULER_SPREAD: &str = "spread";

pub const ALLOC_DESIRED_RUN: &str = "run";
pub const ALLOC_DESIRED_STOP: &str = "stop";

pub const ALLOC_PENDING: &str = "pending";
pub const ALLOC_RUNNING: &str = "running";
pub const ALLOC_COMPLETE: &str = "complete";
pub const ALLOC_FAILED: &str = "failed";
pub const ALLOC_LOST: &str = "lost";
/// On a `disconnected` node: nobody knows, it may still run (`disconnect.lost_after`).
pub const ALLOC_UNKNOWN: &str = "unknown";

pub const TASK_PENDING: &str = "pending";
pub const TASK_RUNNING: &str = "running";
pub const TASK_DEAD: &str = "dead";

pub const NODE_INIT: &str = "initializing";
pub const NODE_READY: &str = "ready";
pub const NODE_DOWN: &str = "down";
/// Silent past its TTL, but running allocations whose groups wait for it (`disconnect`).
pub const NODE_DISCONNECTED: &str = "disconnected";
pub const NODE_ELIGIBLE: &str = "eligible";
pub const NODE_INELIGIBLE: &str = "ineligible";

pub const EVAL_PENDING: &str = "pending";
pub const EVAL_BLOCKED: &str = "blocked";
pub const EVAL_COMPLETE: &str = "complete";
pub const EVAL_FAILED: &str = "failed";
pub const EVAL_CANCELED: &str = "canceled";

pub const TRIGGER_JOB_REGISTER: &str = "job-register";
pub const TRIGGER_JOB_DEREGISTER: &str = "job-deregister";
pub const TRIGGER_NODE_UPDATE: &str = "node-update";
pub const TRIGGER_QUEUED_ALLOCS: &str = "queued-allocs";

pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_UPDATING: &str = "alloc is being updated due to job update";
pub const DESC_JOB_STOPPED: &str = "alloc not needed since job was stopped";
pub const DESC_BLOCKED_EVAL: &str = "created to place remaining allocations";
pub const DESC_DELAYED_EVAL: &str = "created for delayed rescheduling";
pub const DESC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
pub const TRIGGER_ALLOC_FAILURE: &str = "alloc-failure";
pub const TRIGGER_ALLOC_RESCHEDULE: &str = "alloc-reschedule";
/// A client back from `disconnected` reported allocations that were `unknown`.
pub const TRIGGER_RECONNECT: &str = "reconnect";
/// An `unknown` allocation's `disconnect.lost_after` is over: it is lost now.
pub const TRIGGER_MAX_DISCONNECT_TIMEOUT: &str = "max-disconnect-timeout";
pub const DESC_UNKNOWN: &str = "alloc is unknown since its node is disconnected";
pub const DESC_LOST: &str = "alloc is lost since its node is down";
pub const DESC_RECONNECT: &str = "alloc not needed due to disconnected client reconnect";

/// Whether a client status is terminal (the allocation will not run again).
pub fn alloc_client_terminal(client_status: &str) -> bool {
    matches!(client_status, ALLOC_COMPLETE | ALLOC_FAILED | ALLOC_LOST)
}

/// Whether an allocation failed and was not replaced yet: the scheduler may reschedule it, and
/// while it waits a rollout holds (a replaced one is told to stop and names its replacement;
/// `next_allocation` also covers those an older server left `run`).
pub fn alloc_awaiting_replacement(alloc: &crate::v1::Allocation) -> bool {
    alloc.client_status == ALLOC_FAILED
        && alloc.desired_status == ALLOC_DESIRED_RUN
        && alloc.next_allocation.is_empty()
}

/// Whether an allocation is done: the servers want it stopped or it has stopped by itself.
pub fn alloc_terminal(alloc: &crate::v1::Allocation) -> bool {
    alloc.desired_status != ALLOC_DESIRED_RUN || alloc_client_terminal(&alloc.client_status)
}

pub const TRIGGER_DEPLOYMENT_WATCHER: &str = "deployment-watcher";
pub const TRIGGER_ROLLING_UPDATE: &str = "rolling-update";

pub const DEPLOYMENT_RUNNING: &str = "running";
pub const DEPLOYMENT_PAUSED: &str = "paused";
pub const DEPLOYMENT_SUCCESSFUL: &str = "successful";
pub const DEPLOYMENT_FAILED: &str = "failed";
pub const DEPLOYMENT_CANCELLED: &str = "cancelled";

/// Whether a deployment still acts: running or paused.
pub fn deployment_active(status: &str) -> bool {
    matches!(status, DEPLOYMENT_RUNNING | DEPLOYMENT_PAUSED)
}

pub const DESC_DEPLOYMENT_RUNNING: &str = "Deployment is running";
pub const DESC_DEPLOYMENT_NEEDS_PROMOTION: &str =
    "Deployment is running but requires manual promotion";
pub const DESC_DEPLOYMENT_AUTO_PROMOTION: &str =
    "Deployment is running pending automatic promotion";
pub const DESC_DEPLOYMENT_PAUSED: &str = "Deployment is paused";
pub const DESC_DEPLOYMENT_SUCCESSFUL: &str = "Deployment completed successfully";
pub const DESC_DEPLOYMENT_JOB_STOPPED: &str = "Cancelled because job is stopped";
pub const DESC_DEPLOYMENT_NEWER_JOB: &str = "Cancelled due to newer version of job";
pub const DESC_DEPLOYMENT_FAILED_ALLOCS: &str = "Failed due to unhealthy allocations";
pub const DESC_DEPLOYMENT_PROGRESS_DEADLINE: &str = "Failed due to progress deadline";
pub const DESC_DEPLOYMENT_FAILED_BY_USER: &str = "Deployment marked as failed";

pub const TRIGGER_NODE_DRAIN: &str = "node-drain";
/// `job scale`: the job registered again with a group's count changed.
pub const TRIGGER_JOB_SCALING: &str = "job-scaling";
/// An `alloc stop`: the allocation is stopped and placed again.
pub const TRIGGER_ALLOC_STOP: &str = "alloc-stop";
pub const DESC_MIGRATING: &str = "alloc is being migrated";
pub const DESC_NODE_TAINTED: &str = "alloc not needed as node is tainted";

pub const NODE_EVENT_DRAIN_SET: &str = "Node drain strategy set";
pub const NODE_EVENT_DRAIN_UPDATED: &str = "Node drain strategy updated";
pub const NODE_EVENT_DRAIN_DISABLED: &str = "Node drain disabled";
pub const NODE_EVENT_DRAIN_COMPLETE: &str = "Node drain complete";
pub const NODE_EVENT_DRAIN_DEADLINE: &str = "Node drain deadline reached";
/// The subsystems node events belong to.
pub const NODE_EVENT_SUBSYSTEM_DRAIN: &str = "Drain";
pub const NODE_EVENT_SUBSYSTEM_CLUSTER: &str = "Cluster";
/// Node events of the `Cluster` subsystem: registration and heartbeats.
pub const NODE_EVENT_REGISTERED: &str = "Node registered";
pub const NODE_EVENT_REREGISTERED: &str = "Node re-registered";
pub const NODE_EVENT_HEARTBEAT_MISSED: &str = "Node heartbeat missed";
pub const NODE_EVENT_REREGISTERED_BY_HEARTBEAT: &str = "Node reregistered by heartbeat";
pub const NODE_EVENT_RECONNECTED: &str = "Node reconnected";

/// `disconnect.reconcile`: which of an allocation back from a disconnected node and its
/// replacement runs on.
pub const RECONCILE_BEST_SCORE: &str = "best_score";
pub const RECONCILE_KEEP_ORIGINAL: &str = "keep_original";
pub const RECONCILE_KEEP_REPLACEMENT: &str = "keep_replacement";
pub const RECONCILE_LONGEST_RUNNING: &str = "longest_running";
pub const RECONCILE_STRATEGIES: &[&str] = &[
    RECONCILE_BEST_SCORE,
    RECONCILE_KEEP_ORIGINAL,
    RECONCILE_KEEP_REPLACEMENT,
    RECONCILE_LONGEST_RUNNING,
];
