//! Client garbage collection: which terminal allocations a client forgets (its state and its
//! alloc dir) so that a long-lived node does not keep every allocation it ever ran. As in
//! Nomad's `gc_max_allocs`, once the client tracks more allocations than the limit, the
//! terminal ones that finished longest ago go until it is back at the limit (running ones
//! always stay). Only allocations whose terminal status the servers already have are taken:
//! the servers then never hand them back to run.

use std::collections::BTreeMap;

use yurt_types::status::{alloc_client_terminal, TASK_DEAD};

use crate::runner::LocalAlloc;

/// Whether an allocation may be forgotten: terminal, every task dead, and its status already
/// with the servers.
pub fn collectable(a: &LocalAlloc) -> bool {
    alloc_client_terminal(&a.client_status)
        && !a.dirty
        && a.tasks.values().all(|t| t.state.state == TASK_DEAD)
}

/// The allocations to forget, oldest first: as many terminal, reported ones as it takes to
/// bring `allocs` down to `max_allocs`.
pub fn victims(allocs: &BTreeMap<String, LocalAlloc>, max_allocs: usize) -> Vec<String> {
    let excess = allocs.len().saturating_sub(max_allocs);
    if excess == 0 {
        return Vec::new();
    }
    let mut done: Vec<(i64, &String)> = allocs
        .iter()
        .filter(|(_, a)| collectable(a))
        .map(|(id, a)| {
            let finished = a
                .tasks
                .values()
                .map(|t| t.state.finished_at_unix_ms)
                .max()
                .unwrap_or(0);
            (finished, id)
        })
        .collect();
    done.sort();
    done.into_iter()
        .take(excess)
        .map(|(_, id)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::LocalTask;
    use yurt_proto::v1::{Allocation, TaskState};

    fn alloc(status: &str, task: &str, finished: i64, dirty: bool) -> LocalAlloc {
        LocalAlloc {
            alloc: Allocation::default(),
            tasks: BTreeMap::from([(
                "t".to_string(),
                LocalTask {
                    state: TaskState {
                        state: task.into(),
                        finished_at_unix_ms: finished,
                        ..TaskState::default()
                    },
                    exec_dir: "/nowhere".into(),
                    executor_pid: None,
                    restart_at_ms: None,
                    restarts_ms: vec![],
                    kill_at_ms: None,
                    starting: false,
                    restart_requested: false,
                },
            )]),
            client_status: status.into(),
            client_description: String::new(),
            stopping: false,
            dirty,
            health: Default::default(),
        }
    }

    #[test]
    fn the_oldest_reported_terminal_allocations_go_until_the_limit_is_met() {
        let allocs = BTreeMap::from([
            ("running".to_string(), alloc("running", "running", 0, false)),
            ("old".to_string(), alloc("complete", "dead", 100, false)),
            ("older".to_string(), alloc("failed", "dead", 50, false)),
            ("newest".to_string(), alloc("complete", "dead", 300, false)),
            // Not yet reported to the servers: kept, or they could hand it back to run.
            (
                "unreported".to_string(),
                alloc("complete", "dead", 10, true),
            ),
            // The servers call it lost but its task is still being stopped here.
            ("stopping".to_string(), alloc("lost", "running", 0, false)),
        ]);
        assert_eq!(victims(&allocs, 10), Vec::<String>::new());
        assert_eq!(victims(&allocs, 5), vec!["older".to_string()]);
        assert_eq!(victims(&allocs, 4), vec!["older", "old"]);
        // Never more than the terminal, reported ones, however low the limit.
        assert_eq!(victims(&allocs, 0), vec!["older", "old", "newest"]);
    }
}
