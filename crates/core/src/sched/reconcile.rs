//! The reconciler's part of a scheduler run: a group's live allocations sorted into what to
//! ignore, update in place, replace (destructive), migrate, stop, lose or place; canaries;
//! failed allocations rescheduled per the `reschedule` block; allocations on nodes that went
//! away lost, or `unknown` while their node is `disconnected` (the `disconnect` block), and
//! reconciled with their replacements when it is back; system groups one per node.

use super::place::Placement;
use super::*;
use crate::disconnect::{self, Keep};

/// Where an allocation's node stands, for the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Away {
    /// Its node is ready (or only ineligible): nothing to do here.
    No,
    /// Its node is down or gone, or disconnected past the group's `lost_after`.
    Lost,
    /// Its node is disconnected: `unknown` until then (Unix ms).
    Unknown(i64),
    /// Its node is back but its client has not said yet how the allocation fares.
    Reconnecting,
}

/// Keeps in `at` the sooner of what it holds and `t`.
fn sooner(at: &mut Option<i64>, t: i64) {
    *at = Some(at.map_or(t, |held| held.min(t)));
}

impl<'a> Run<'a, '_> {
    pub(super) fn desired(&mut self, group: &str) -> &mut DesiredUpdates {
        self.out.desired.entry(group.to_string()).or_default()
    }

    /// Gives back what a live allocation this run stops had taken on its node.
    pub(super) fn release(&mut self, a: &Allocation) {
        if !alloc_terminal(a) {
            if let Some(u) = self.usage.get_mut(&a.node_id) {
                u.remove(a);
            }
        }
    }

    /// Writes an allocation stopped (`why`) and gives back its room, counting nothing: the
    /// callers count it as a stop, a destructive update or a migration.
    pub(super) fn retire(&mut self, a: &Allocation, why: &str) {
        self.release(a);
        let mut s = a.clone();
        s.desired_status = ALLOC_DESIRED_STOP.into();
        s.desired_description = why.into();
        s.eval_id = self.eval_id.into();
        self.out.allocs.push(s);
    }

    pub(super) fn stop(&mut self, a: &Allocation, why: &str) {
        self.retire(a, why);
        self.desired(&a.task_group).stop += 1;
    }

    /// Moves an allocation to the job's version in place (it keeps its ID).
    pub(super) fn update_in_place(&mut self, a: &Allocation) {
        let mut u = a.clone();
        u.job = None;
        u.eval_id = self.eval_id.into();
        self.desired(&a.task_group).in_place_update += 1;
        self.out.allocs.push(u);
    }

    /// Marks an allocation on a node that went away as lost.
    pub(super) fn lose(&mut self, a: &Allocation) {
        self.stop(a, DESC_LOST);
        if let Some(s) = self.out.allocs.last_mut() {
            s.client_status = ALLOC_LOST.into();
        }
    }

    /// Where allocation `a` of group `g` stands with its node.
    pub(super) fn away(&self, a: &Allocation, g: &TaskGroup) -> Away {
        let Some(node) = self.state.nodes.get(&a.node_id) else {
            return Away::Lost;
        };
        match node.status.as_str() {
            NODE_DOWN => Away::Lost,
            // One that had not started yet is lost at once (Nomad's rule).
            NODE_DISCONNECTED if a.client_status == ALLOC_PENDING => Away::Lost,
            NODE_DISCONNECTED => match disconnect::unknown_until(node, g) {
                Some(until) if until > self.now => Away::Unknown(until),
                _ => Away::Lost,
            },
            _ if a.client_status == ALLOC_UNKNOWN => Away::Reconnecting,
            _ => Away::No,
        }
    }

    /// Writes an allocation `unknown` (once) and asks for an evaluation when its `lost_after`
    /// ends.
    fn mark_unknown(&mut self, a: &Allocation, until: i64) {
        if a.client_status != ALLOC_UNKNOWN {
            let mut u = a.clone();
            u.client_status = ALLOC_UNKNOWN.into();
            u.client_description = DESC_UNKNOWN.into();
            u.eval_id = self.eval_id.into();
            self.out.allocs.push(u);
        }
        sooner(&mut self.out.disconnect_at, until);
    }

    /// A lost allocation of a group with `stop_on_client_after` (lost at `lost_at`): its client
    /// stops it by itself after that long without the servers, so its slot stays empty until
    /// then and its tasks' kill timeout after, lest both run at once.
    fn await_client_stop(
        &mut self,
        g: &TaskGroup,
        idx: u32,
        lost_at: i64,
        taken: &mut BTreeSet<u32>,
    ) {
        let stop_after = disconnect::stop_on_client_after_ms(g);
        if stop_after == 0 || idx >= g.count {
            return;
        }
        let kill = g.tasks.iter().map(|t| t.kill_timeout_ms).max().unwrap_or(0);
        let due = lost_at + (stop_after + kill) as i64;
        if due > self.now {
            taken.insert(idx);
            sooner(&mut self.out.followup_at, due);
        }
    }

    /// The allocations that lose to another of their slot after their node came back: for each
    /// slot held twice at the job's version in a group with `lost_after`, the original (placed
    /// first) against its replacement, per the group's `reconcile`.
    fn reconnect_losers(&self, job: &Job, g: &TaskGroup, live: &[&Allocation]) -> BTreeSet<String> {
        let mut losers = BTreeSet::new();
        if disconnect::lost_after_ms(g) == 0 {
            return losers;
        }
        let mut slots: BTreeMap<u32, Vec<&Allocation>> = BTreeMap::new();
        for a in live {
            if at_version(a, job) && !is_canary(a) && self.away(a, g) == Away::No {
                if let Some(i) = name_index(&a.name) {
                    slots.entry(i).or_default().push(a);
                }
            }
        }
        for mut held in slots.into_values().filter(|v| v.len() > 1) {
            held.sort_by_key(|a| a.create_index);
            let mut keep = held[0];
            for r in &held[1..] {
                match disconnect::pick(g, keep, r) {
                    Keep::Original => losers.insert(r.id.clone()),
                    Keep::Replacement => losers.insert(std::mem::replace(&mut keep, r).id.clone()),
                };
            }
        }
        losers
    }

    /// Brings an existing allocation to the new job version: ignore, in place or replace.
    /// Returns false when it must be replaced (it has been stopped).
    pub(super) fn update_existing(&mut self, job: &Job, a: &Allocation) -> bool {
        match change_of(a, job) {
            Change::None => self.desired(&a.task_group).ignore += 1,
            Change::InPlace => self.update_in_place(a),
            Change::Destructive => {
                self.retire(a, DESC_UPDATING);
                self.desired(&a.task_group).destructive_update += 1;
                return false;
            }
        }
        true
    }

    pub(super) fn count_group(&mut self, job: &Job, g: &TaskGroup, allocs: &[&Allocation]) {
        let u = strategy(job, g).filter(|_| self.gates.deployments);
        let promoted = self.group_state(&g.name).is_some_and(|s| s.promoted);
        let current_id = self
            .deployment
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_default();
        let mut taken: BTreeSet<u32> = BTreeSet::new();
        // Batch allocations that finished successfully are done: their slot stays filled.
        if job.r#type == JOB_TYPE_BATCH {
            for a in allocs {
                // So are those a drain stopped: they are not replaced elsewhere.
                let drained = a.desired_status == ALLOC_DESIRED_STOP && crate::drain::marked(a);
                if a.client_status == ALLOC_COMPLETE || drained {
                    if let Some(i) = name_index(&a.name) {
                        taken.insert(i);
                    }
                }
            }
        }
        let mut live: Vec<&Allocation> = allocs
            .iter()
            .copied()
            .filter(|a| !alloc_terminal(a))
            .collect();
        // For one name, the allocation at the job's version keeps the slot (a promoted canary
        // over the old allocation it replaces).
        live.sort_by_key(|a| {
            (
                name_index(&a.name).unwrap_or(u32::MAX),
                !at_version(a, job),
                a.create_index,
            )
        });
        let mut canaries = Vec::new();
        let mut migrating: Vec<(u32, &Allocation)> = Vec::new();
        let mut destructive: Vec<(u32, &Allocation)> = Vec::new();
        let mut in_place: Vec<&Allocation> = Vec::new();
        let losers = self.reconnect_losers(job, g, &live);
        // Slots whose allocation is `unknown` and replaced: the replacement names it.
        let mut stand_ins: BTreeMap<u32, &str> = BTreeMap::new();
        for a in live {
            let idx = name_index(&a.name).unwrap_or(u32::MAX);
            match self.away(a, g) {
                Away::No => {}
                Away::Lost => {
                    self.lose(a);
                    self.await_client_stop(g, idx, self.now, &mut taken);
                    continue;
                }
                away => {
                    if let Away::Unknown(until) = away {
                        self.mark_unknown(a, until);
                    }
                    self.desired(&g.name).ignore += 1;
                    if !disconnect::replaces(g) {
                        taken.insert(idx);
                    } else if away != Away::Reconnecting {
                        stand_ins.insert(idx, &a.id);
                    }
                    continue;
                }
            }
            if losers.contains(&a.id) {
                self.stop(a, DESC_RECONNECT);
                continue;
            }
            // A canary whose deployment has not promoted it (a promoted one is a member).
            let waiting_canary = is_canary(a)
                && self
                    .state
                    .deployments
                    .get(&a.deployment_id)
                    .and_then(|d| d.task_groups.get(&g.name))
                    .is_none_or(|s| !s.promoted);
            if crate::drain::marked(a) && waiting_canary {
                // A canary on a draining node: a new one is placed elsewhere (below).
                self.stop(a, DESC_MIGRATING);
                continue;
            }
            if waiting_canary {
                // Canaries of the current deployment wait beside the allocations they will
                // replace (also while it is paused); those of an older or failed one go.
                let current = a.deployment_id == current_id
                    && self
                        .deployment
                        .as_ref()
                        .is_some_and(|d| deployment_active(&d.status));
                if current {
                    canaries.push(a);
                    self.desired(&g.name).ignore += 1;
                } else {
                    self.stop(a, DESC_NOT_NEEDED);
                }
                continue;
            }
            if idx >= g.count || taken.contains(&idx) {
                self.stop(a, DESC_NOT_NEEDED);
                continue;
            }
            taken.insert(idx);
            if crate::drain::marked(a) {
                migrating.push((idx, a));
                continue;
            }
            match change_of(a, job) {
                Change::None => self.desired(&g.name).ignore += 1,
                Change::Destructive => destructive.push((idx, a)),
                Change::InPlace => in_place.push(a),
            }
        }
        for a in allocs.iter().filter(|a| a.client_status == ALLOC_LOST) {
            let idx = name_index(&a.name).unwrap_or(u32::MAX);
            if !taken.contains(&idx) {
                self.await_client_stop(g, idx, a.modify_time_unix_ms, &mut taken);
            }
        }
        let missing = (0..g.count).filter(|i| !taken.contains(i)).count();
        // Canaries are wanted for destructive changes, and the deployment waits for their
        // promotion even when the allocations they would replace are gone meanwhile.
        let waiting_promotion = self
            .group_state(&g.name)
            .is_some_and(|s| s.desired_canaries > 0 && !s.promoted);
        let canarying = !promoted
            && u.is_some_and(|u| u.canary > 0)
            && (!destructive.is_empty() || waiting_promotion);
        if let Some(u) = u {
            let had_running = allocs.iter().any(|a| at_version(a, job));
            let updating = !destructive.is_empty() || !in_place.is_empty();
            let wanted = (missing > 0 && !had_running) || updating;
            let new_one = self.deployment.is_none() || self.out.deployment.is_some();
            if wanted && new_one {
                self.deploy_group(job, g, u, canarying);
            }
        }
        let mut limit = self.update_limit(g, u, canarying);
        // In-place updates join the deployment without counting against the limit.
        let deployment_id = self.active_deployment_id();
        for a in in_place {
            self.update_in_place(a);
            let up = self.out.allocs.last_mut().expect("just pushed");
            if up.deployment_id != deployment_id {
                up.deployment_id = deployment_id.clone();
                up.deployment_status = None;
            }
        }
        // Allocations the drainer marked move: stopped here, placed again elsewhere (the
        // drainer meters how many at a time).
        for (idx, a) in migrating {
            self.retire(a, DESC_MIGRATING);
            self.desired(&g.name).migrate += 1;
            self.place(Placement::new(job, g, idx).replacing(&a.id).not_counted());
        }
        if canarying {
            self.pending.insert(g.name.clone());
            let want = u.map_or(0, |u| u.canary).min(g.count) as usize;
            if self.deployment_running() {
                for i in canaries.len()..want {
                    // Canaries take the names of the allocations they will replace.
                    let idx = match destructive.len() {
                        0 => i as u32,
                        n => destructive[i % n].0,
                    };
                    if let Some(at) = self.place(Placement::new(job, g, idx).not_counted()) {
                        self.out.allocs[at].deployment_status = Some(AllocDeploymentStatus {
                            canary: true,
                            ..Default::default()
                        });
                        self.desired(&g.name).canary += 1;
                    }
                }
            }
        }
        self.reschedule_failed(job, g, allocs, &mut taken);
        // While canaries prove the new version, a missing allocation (its node went down) comes
        // back at the version the others run, not as an unproven one of the new version.
        let downgrade: Option<Job> = canarying
            .then(|| {
                allocs
                    .iter()
                    .filter(|a| !at_version(a, job) && !is_canary(a))
                    .filter_map(|a| a.job.as_ref())
                    .max_by_key(|j| j.version)
                    .cloned()
            })
            .flatten();
        let mut placed = 0;
        for idx in 0..g.count {
            if taken.contains(&idx) {
                continue;
            }
            placed += 1;
            let old = downgrade
                .as_ref()
                .and_then(|j| Some((j, j.task_groups.iter().find(|og| og.name == g.name)?)));
            match old {
                Some((old_job, old_group)) => {
                    if let Some(at) = self.place(Placement::new(old_job, old_group, idx)) {
                        let a = &mut self.out.allocs[at];
                        a.job = Some(old_job.clone());
                        a.deployment_id.clear();
                    }
                }
                None => {
                    let p = Placement::new(job, g, idx);
                    match stand_ins.get(&idx) {
                        Some(prev) => self.place(p.replacing(prev)),
                        None => self.place(p),
                    };
                }
            }
        }
        limit = limit.saturating_sub(placed);
        for (n, (idx, a)) in destructive.into_iter().enumerate() {
            if n >= limit {
                // Held back by max_parallel (or canaries): a later run replaces it.
                self.desired(&g.name).ignore += 1;
                self.pending.insert(g.name.clone());
                continue;
            }
            self.retire(a, DESC_UPDATING);
            self.desired(&g.name).destructive_update += 1;
            // A replacement is counted as the destructive update, not as a new placement.
            self.place(Placement::new(job, g, idx).replacing(&a.id).not_counted());
        }
    }

    /// Failed allocations not yet replaced: each takes its slot back with a replacement when
    /// the `reschedule` policy allows it now, waits for a follow-up evaluation when the policy
    /// wants a delay, and keeps its slot empty when no attempts are left.
    pub(super) fn reschedule_failed(
        &mut self,
        job: &Job,
        g: &TaskGroup,
        allocs: &[&Allocation],
        taken: &mut BTreeSet<u32>,
    ) {
        // Allocations of a failed deployment are not replaced: the rollout has stopped.
        let failed_deployment = self
            .deployment
            .as_ref()
            .filter(|d| d.status == DEPLOYMENT_FAILED)
            .map(|d| d.id.clone());
        let failed = allocs.iter().filter(|a| alloc_awaiting_replacement(a));
        for a in failed {
            let Some(idx) = name_index(&a.name).filter(|i| *i < g.count) else {
                continue;
            };
            if !taken.insert(idx) || failed_deployment.as_deref() == Some(a.deployment_id.as_str())
            {
                continue;
            }
            if !at_version(a, job) {
                // It failed at an older version: the new version gets its own chance there.
                if let Some(i) = self.place(Placement::new(job, g, idx).replacing(&a.id)) {
                    self.rescheduled(a, i);
                }
                continue;
            }
            let delay = g
                .reschedule
                .as_ref()
                .and_then(|p| crate::reschedule::next_delay(p, &a.reschedule_events, self.now));
            let Some(delay) = delay else { continue };
            let due = a.modify_time_unix_ms + delay as i64;
            if due > self.now {
                sooner(&mut self.out.followup_at, due);
                continue;
            }
            // Nodes it already failed on come last (Nomad's reschedule penalty).
            let mut avoid: Vec<String> = a
                .reschedule_events
                .iter()
                .map(|e| e.prev_node_id.clone())
                .collect();
            avoid.push(a.node_id.clone());
            let Some(i) = self.place(
                Placement::new(job, g, idx)
                    .replacing(&a.id)
                    .avoiding(&avoid),
            ) else {
                continue;
            };
            let mut events = a.reschedule_events.clone();
            events.push(RescheduleEvent {
                time_unix_ms: self.now,
                prev_alloc_id: a.id.clone(),
                prev_node_id: a.node_id.clone(),
                delay_ms: delay,
            });
            // Only the last few matter for the policy.
            let keep = events.len().saturating_sub(5);
            self.out.allocs[i].reschedule_events = events.split_off(keep);
            self.rescheduled(a, i);
        }
    }

    /// Writes a failed allocation replaced by this run's allocation at `replacement`: told to
    /// stop (as Nomad does), naming its replacement.
    fn rescheduled(&mut self, a: &Allocation, replacement: usize) {
        let mut old = a.clone();
        old.next_allocation = self.out.allocs[replacement].id.clone();
        old.desired_status = ALLOC_DESIRED_STOP.into();
        old.desired_description = DESC_RESCHEDULED.into();
        old.eval_id = self.eval_id.into();
        self.out.allocs.push(old);
    }

    pub(super) fn system_group(&mut self, job: &Job, g: &TaskGroup, allocs: &[&Allocation]) {
        let mut on_node: BTreeMap<&str, &Allocation> = BTreeMap::new();
        for a in allocs.iter().filter(|a| !alloc_terminal(a)) {
            // On a disconnected node it is `unknown` until `lost_after` ends, and stays
            // there: a system job has one allocation per node.
            match self.away(a, g) {
                Away::Lost => {
                    self.lose(a);
                    continue;
                }
                Away::Unknown(until) => self.mark_unknown(a, until),
                Away::No | Away::Reconnecting => {}
            }
            if on_node.insert(&a.node_id, a).is_some() {
                self.stop(a, DESC_NOT_NEEDED);
            }
        }
        // A destructive update replaces `max_parallel` allocations per run, the next ones
        // `stagger` later (Nomad's system rolling update); max_parallel = 0: all at once.
        let rolling = g.update.as_ref().filter(|u| u.max_parallel > 0);
        let mut limit = rolling.map_or(usize::MAX, |u| u.max_parallel as usize);
        let nodes: Vec<&Node> = self.state.nodes.values().collect();
        for node in nodes {
            let feasible = g.count > 0 && self.filter(job, g, node).is_ok();
            match (on_node.get(node.id.as_str()), feasible) {
                (Some(a), true) => {
                    let destructive = change_of(a, job) == Change::Destructive;
                    if destructive && limit == 0 {
                        self.desired(&g.name).ignore += 1;
                        let at = self.now + rolling.map_or(0, |u| u.stagger_ms as i64);
                        sooner(&mut self.out.rolling_at, at);
                        continue;
                    }
                    if destructive {
                        limit -= 1;
                    }
                    if !self.update_existing(job, a) {
                        let prev = a.id.clone();
                        self.place(
                            Placement::new(job, g, 0)
                                .replacing(&prev)
                                .on(node)
                                .not_counted(),
                        );
                    }
                }
                // On a node that is only ineligible or draining it keeps running (the drainer
                // stops it last); one whose node no longer matches goes.
                (Some(_), false) if self.constraints(job, g, node).is_ok() => {
                    self.desired(&g.name).ignore += 1;
                }
                (Some(a), false) => self.stop(a, DESC_NOT_NEEDED),
                (None, true) => {
                    self.place(Placement::new(job, g, 0).on(node));
                }
                (None, false) => {}
            }
        }
    }
}
