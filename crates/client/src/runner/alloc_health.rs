//! Allocation health for deployments and migrations: checks and task states judged over
//! `min_healthy_time`, bounded by `healthy_deadline`.

use super::*;

impl Client {
    /// Decides an allocation's health once its tasks (and checks) allow, running its checks
    /// meanwhile; stops the checks once decided or when health no longer applies.
    pub(crate) fn track_health(&self, local: &mut LocalAlloc, now: i64) {
        let id = local.alloc.id.clone();
        // An allocation that failed or finished by itself is still judged (unhealthy: its tasks
        // ended); one the servers stopped is not.
        let decided = local.health.healthy.is_some() || local.stopping;
        let Some(spec) = health::spec_for(&local.alloc).filter(|_| !decided) else {
            self.inner
                .checkers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return;
        };
        if local.health.started_ms == 0 {
            local.health.started_ms = now;
        }
        let passing_since = if spec.use_checks {
            self.checks_passing_since(local)
        } else {
            None
        };
        let verdict = health::judge(
            &spec,
            &local.health,
            local.tasks.values().map(|t| &t.state),
            passing_since,
            now,
        );
        let healthy = match verdict {
            Verdict::Undecided => return,
            Verdict::Healthy => true,
            Verdict::Unhealthy(why) => {
                for t in local.tasks.values_mut() {
                    t.state.events.push(event("Alloc Unhealthy", why.clone()));
                }
                false
            }
        };
        tracing::info!(alloc = %id, healthy, "allocation health decided");
        local.health.healthy = Some(healthy);
        local.health.decided_ms = now;
        self.inner
            .checkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Since when all of an allocation's checks pass; starts its check loops the first time.
    pub(crate) fn checks_passing_since(&self, local: &LocalAlloc) -> Option<i64> {
        let mut checkers = self
            .inner
            .checkers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = checkers.entry(local.alloc.id.clone()).or_insert_with(|| {
            let host = self.host_ip();
            let targets = checks::targets(&local.alloc, &host, |task| {
                local
                    .tasks
                    .get(task)
                    .map(|t| t.exec_dir.clone())
                    .unwrap_or_default()
            })
            .map_err(|e| {
                tracing::warn!(alloc = %local.alloc.id, error = %e, "cannot run the allocation's checks");
            });
            // Checks that cannot run never pass: the healthy deadline decides.
            let runnable = targets.is_ok();
            let targets = targets.unwrap_or_default();
            let results = checks::Results::default();
            let handles = targets
                .iter()
                .map(|t| tokio::spawn(checks::run(t.clone(), results.clone(), now_ms)).abort_handle())
                .collect();
            Checkers {
                names: targets.into_iter().map(|t| t.name).collect(),
                runnable,
                results,
                handles,
            }
        });
        let results = entry.results.lock().unwrap_or_else(|e| e.into_inner());
        checks::all_passing_since(&entry.names, &results).filter(|_| entry.runnable)
    }
}
