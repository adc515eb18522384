//! Plans and clients' reports in the state: a plan's allocations written (those that no longer
//! fit the node refused, one rule with the scheduler's), and what clients report of their
//! allocations (status, task states, health), never rolled back by a plan.

use super::*;

impl State {
    /// Commits a scheduler's plan after checking its new placements against the state as it
    /// is now (the plan was computed from an earlier one): a node that went away or is no
    /// longer eligible, or that the placements would over-commit (resources or ports), gets
    /// none of them. Stops and updates always apply. A plan that lost placements leaves its
    /// evaluation pending, to be scheduled again on fresh state (failed after
    /// [`MAX_PLAN_REJECTIONS`]).
    pub(crate) fn apply_plan(&mut self, index: u64, now: i64, p: &crate::internal::ApplyPlan) {
        // An evaluation is planned once: a plan for one that another plan already ended (a
        // leader that scheduled it again on state that had not applied its predecessor's
        // plan) changes nothing.
        let ended = p
            .eval
            .as_ref()
            .and_then(|e| self.evals.get(&e.id))
            .is_some_and(|e| {
                [EVAL_COMPLETE, EVAL_CANCELED, EVAL_FAILED].contains(&e.status.as_str())
            });
        if ended {
            return;
        }
        let refused = self.refused_nodes(p);
        if let Some(d) = &p.deployment {
            if !self.deployments.contains_key(&d.id) {
                let mut d = d.clone();
                d.create_index = index;
                d.modify_index = index;
                d.create_time_unix_ms = now;
                d.modify_time_unix_ms = now;
                // The plan's job, or its evaluation's, names the namespace.
                let ns = p.job.as_ref().map(|j| j.namespace.as_str());
                let ns = ns.or(p.eval.as_ref().map(|e| e.namespace.as_str()));
                d.namespace = yurt_types::acl::namespace_or_default(ns.unwrap_or_default()).into();
                self.deployments.insert(d);
            }
        }
        let allocs: Vec<&Allocation> = p
            .allocs
            .iter()
            .filter(|a| self.allocs.contains_key(&a.id) || !refused.contains_key(&a.node_id))
            .collect();
        let mut jobs = Vec::new();
        let mut freed = false;
        for a in allocs {
            let mut a = a.clone();
            if a.job.is_none() {
                a.job = p.job.clone();
            }
            let old = self.allocs.get(&a.id);
            if a.namespace.is_empty() {
                let ns = a.job.as_ref().map(|j| j.namespace.as_str());
                let ns = ns.or(old.map(|o| o.namespace.as_str()));
                a.namespace = yurt_types::acl::namespace_or_default(ns.unwrap_or_default()).into();
            }
            let was_live = old.is_some_and(|o| !alloc_terminal(o));
            a.create_index = old.map_or(index, |o| o.create_index);
            a.create_time_unix_ms = old.map_or(now, |o| o.create_time_unix_ms);
            if let Some(old) = old {
                // The client owns what it reports; a plan computed before its last report must
                // not roll that back. The scheduler only ever sets `lost`, and `unknown` while
                // the node is still disconnected.
                let disconnected = self
                    .nodes
                    .get(&a.node_id)
                    .is_some_and(|n| n.status == NODE_DISCONNECTED);
                let verdict = a.client_status == ALLOC_LOST
                    || (a.client_status == ALLOC_UNKNOWN && disconnected);
                if !verdict {
                    a.client_status = old.client_status.clone();
                    a.client_description = old.client_description.clone();
                }
                a.task_states = old.task_states.clone();
                // Health belongs to a deployment: one updated in place into a new deployment
                // is judged afresh.
                if old.deployment_id == a.deployment_id {
                    a.deployment_status = old.deployment_status;
                }
            }
            a.modify_index = index;
            a.modify_time_unix_ms = now;
            jobs.push(crate::state::job_key(&a.namespace, &a.job_id));
            freed |= was_live && alloc_terminal(&a);
            let old = self.allocs.get(&a.id).cloned();
            self.track_deployment(index, now, old.as_ref(), &a);
            self.allocs.insert(a);
        }
        for c in &p.deployment_changes {
            // Lenient: a deployment another command ended meanwhile stays as it is.
            let _ = self.change_deployment(index, now, c, false);
        }
        // Before this plan's own evaluations: a blocked one it creates saw the room already.
        if freed {
            self.unblock_evals(index, now);
        }
        if refused.is_empty() {
            if let Some(e) = &p.eval {
                jobs.push(crate::state::job_key(&e.namespace, &e.job_id));
                self.insert_eval(index, now, e.clone());
            }
            for e in &p.new_evals {
                self.insert_eval(index, now, e.clone());
            }
        } else if let Some(e) = p.eval.as_ref().and_then(|e| self.evals.get(&e.id)) {
            // What the plan concluded (blocked evaluations, follow-ups) came from stale state.
            let mut e = e.clone();
            e.plan_rejections += 1;
            let why: Vec<String> = refused.iter().map(|(n, w)| format!("{n}: {w}")).collect();
            if e.plan_rejections >= MAX_PLAN_REJECTIONS {
                e.status = EVAL_FAILED.into();
                e.status_description = format!(
                    "plan refused {} times, last because {}",
                    e.plan_rejections,
                    why.join("; ")
                );
            } else {
                e.status = EVAL_PENDING.into();
                e.status_description = format!("plan refused because {}", why.join("; "));
            }
            jobs.push(crate::state::job_key(&e.namespace, &e.job_id));
            self.insert_eval(index, now, e);
        }
        self.refresh_job_statuses(jobs, index);
    }

    /// The nodes that cannot take a plan's new placements, with the reason.
    pub(crate) fn refused_nodes(&self, p: &crate::internal::ApplyPlan) -> BTreeMap<String, String> {
        let in_plan: BTreeMap<&str, &Allocation> =
            p.allocs.iter().map(|a| (a.id.as_str(), a)).collect();
        let placing: BTreeSet<&str> = p
            .allocs
            .iter()
            .filter(|a| !self.allocs.contains_key(&a.id) && a.desired_status == ALLOC_DESIRED_RUN)
            .map(|a| a.node_id.as_str())
            .collect();
        let mut refused = BTreeMap::new();
        for node_id in placing {
            let Some(node) = self.nodes.get(node_id) else {
                refused.insert(node_id.to_string(), "the node is gone".to_string());
                continue;
            };
            if !takes_placements(node) {
                refused.insert(
                    node_id.to_string(),
                    "the node is not ready for placements".into(),
                );
                continue;
            }
            // What will run on the node: its live allocations, as the plan leaves them.
            let staying = self
                .node_allocs(node_id)
                .into_iter()
                .map(|a| in_plan.get(a.id.as_str()).copied().unwrap_or(a))
                .chain(
                    p.allocs
                        .iter()
                        .filter(|a| a.node_id == node_id && !self.allocs.contains_key(&a.id)),
                )
                .filter(|a| !alloc_terminal(a));
            let cap = node.resources.unwrap_or_default();
            let (mut cpu, mut mem) = (0u64, 0u64);
            let mut ports = BTreeSet::new();
            let mut clash = None;
            for a in staying {
                let r = a.resources.unwrap_or_default();
                cpu += u64::from(r.cpu);
                mem += u64::from(r.memory_mb);
                for port in &a.ports {
                    if !ports.insert(port.value) {
                        clash = Some(port.value);
                    }
                }
            }
            if !fits(&cap, cpu, mem) {
                refused.insert(
                    node_id.to_string(),
                    "the node would be over-committed".into(),
                );
            } else if let Some(port) = clash {
                refused.insert(
                    node_id.to_string(),
                    format!("port {port} would be taken twice"),
                );
            }
        }
        refused
    }

    pub(crate) fn update_allocs_from_client(
        &mut self,
        index: u64,
        now: i64,
        u: &crate::internal::AllocClientUpdates,
    ) {
        let mut jobs = Vec::new();
        let mut freed = false;
        for up in &u.updates {
            // A client may only report on its own allocations.
            if self.allocs.get(&up.alloc_id).map(|a| a.node_id.as_str()) != Some(&u.node_id) {
                continue;
            }
            let before = self.allocs.get(&up.alloc_id).cloned();
            self.allocs.update(&up.alloc_id, |a| {
                let was_live = !alloc_terminal(a);
                // `lost` is the servers' verdict on an allocation whose node went down; what
                // the client says when it comes back does not undo it.
                if a.client_status != ALLOC_LOST {
                    a.client_status = up.client_status.clone();
                    a.client_description = up.client_description.clone();
                }
                a.task_states = up.task_states.clone();
                if let Some(h) = up.deployment_status.as_ref().and_then(|d| d.healthy) {
                    let status = a.deployment_status.get_or_insert_with(Default::default);
                    if status.healthy != Some(h) {
                        status.healthy = Some(h);
                        status.timestamp_unix_ms = up
                            .deployment_status
                            .as_ref()
                            .map_or(now, |d| d.timestamp_unix_ms);
                        status.modify_index = index;
                    }
                }
                a.modify_index = index;
                a.modify_time_unix_ms = now;
                jobs.push(crate::state::job_key(&a.namespace, &a.job_id));
                freed |= was_live && alloc_terminal(a);
            });
            if let (Some(before), Some(after)) = (before, self.allocs.get(&up.alloc_id).cloned()) {
                self.track_deployment(index, now, Some(&before), &after);
            }
        }
        self.settle(index, now, freed, &u.evals, jobs);
    }

    /// The jobs of `unknown` allocations these client reports say something else of (their node
    /// is back): each once, to reconcile them with their replacements.
    pub fn jobs_reconnecting(&self, updates: &[crate::v1::AllocClientUpdate]) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = updates
            .iter()
            .filter(|u| u.client_status != ALLOC_UNKNOWN)
            .filter_map(|u| self.allocs.get(&u.alloc_id))
            .filter(|a| a.client_status == ALLOC_UNKNOWN)
            .filter_map(|a| self.job(&a.namespace, &a.job_id))
            .collect();
        jobs.sort_by_key(|j| key_of(j));
        jobs.dedup_by_key(|j| key_of(j));
        jobs
    }

    /// The jobs whose allocations these client reports newly mark failed (each once): they
    /// need an evaluation to reschedule.
    pub fn jobs_with_new_failures(&self, updates: &[crate::v1::AllocClientUpdate]) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = updates
            .iter()
            .filter(|u| u.client_status == ALLOC_FAILED)
            .filter_map(|u| self.allocs.get(&u.alloc_id))
            .filter(|a| a.desired_status == ALLOC_DESIRED_RUN && a.client_status != ALLOC_FAILED)
            .filter_map(|a| self.job(&a.namespace, &a.job_id))
            .collect();
        jobs.sort_by_key(|j| key_of(j));
        jobs.dedup_by_key(|j| key_of(j));
        jobs
    }
}
