//! Deployments in a scheduler run: which deployment is current (others are cancelled), the one
//! created for a new version with work, how many allocations may be replaced now (Nomad's
//! rolling limit, held while one of the deployment's allocations is unhealthy or waits to be
//! rescheduled), and when the deployment is complete.

use super::*;

impl<'a> Run<'a, '_> {
    /// Ends the job's deployments that no longer apply (all of them when the job is stopped,
    /// those of older versions otherwise) and returns the current version's deployment, unless
    /// it succeeded (a later scale-up or replacement needs none) or was cancelled.
    pub(super) fn cancel_deployments(
        &mut self,
        key: &JobKey,
        job: Option<&Job>,
    ) -> Option<Deployment> {
        let mut current: Option<&Deployment> = None;
        for d in self.state.deployments.of_job(&key.0, &key.1) {
            let same = job.is_some_and(|j| {
                d.job_version == j.version && d.job_create_index == j.create_index
            });
            if same {
                if current.is_none_or(|c| c.create_index < d.create_index) {
                    current = Some(d);
                }
            } else if deployment_active(&d.status) {
                let why = if job.is_none() {
                    DESC_DEPLOYMENT_JOB_STOPPED
                } else {
                    DESC_DEPLOYMENT_NEWER_JOB
                };
                self.out.deployment_changes.push(DeploymentChange {
                    deployment_id: d.id.clone(),
                    status: DEPLOYMENT_CANCELLED.into(),
                    status_description: why.into(),
                    ..Default::default()
                });
            }
        }
        current
            .filter(|d| d.status != DEPLOYMENT_SUCCESSFUL && d.status != DEPLOYMENT_CANCELLED)
            .cloned()
    }

    /// The deployment's state for a group, if it has one.
    pub(super) fn group_state(&self, group: &str) -> Option<&DeploymentState> {
        self.deployment.as_ref()?.task_groups.get(group)
    }

    /// Whether the current deployment accepts new work (not paused or failed).
    pub(super) fn deployment_running(&self) -> bool {
        self.deployment
            .as_ref()
            .is_some_and(|d| d.status == DEPLOYMENT_RUNNING)
    }

    /// Creates the deployment of the job's version, or adds the group to the one this run
    /// created.
    pub(super) fn deploy_group(
        &mut self,
        job: &Job,
        g: &TaskGroup,
        u: &UpdateStrategy,
        canarying: bool,
    ) {
        if self.deployment.is_none() {
            let d = Deployment {
                id: (self.new_id)(),
                job_id: job.id.clone(),
                namespace: job.namespace.clone(),
                job_version: job.version,
                job_modify_index: job.job_modify_index,
                job_create_index: job.create_index,
                status: DEPLOYMENT_RUNNING.into(),
                eval_priority: job.priority,
                ..Default::default()
            };
            self.out.deployment = Some(d.clone());
            self.deployment = Some(d);
        }
        let created = self.out.deployment.is_some();
        let d = self.deployment.as_mut().expect("just set");
        if created && !d.task_groups.contains_key(&g.name) {
            d.task_groups.insert(
                g.name.clone(),
                DeploymentState {
                    auto_revert: u.auto_revert,
                    auto_promote: u.auto_promote,
                    progress_deadline_ms: u.progress_deadline_ms,
                    desired_canaries: if canarying { u.canary } else { 0 },
                    desired_total: g.count,
                    ..Default::default()
                },
            );
            d.status_description = crate::deploy::running_description(d).into();
            self.out.deployment = Some(d.clone());
        }
    }

    /// How many more allocations of a group may be replaced now (Nomad's rolling limit):
    /// `max_parallel` less the group's allocations in the deployment that are not yet healthy;
    /// none while one is unhealthy, the deployment is paused or failed, or canaries wait.
    pub(super) fn update_limit(
        &self,
        g: &TaskGroup,
        u: Option<&UpdateStrategy>,
        canarying: bool,
    ) -> usize {
        let Some(u) = u else { return usize::MAX };
        let max = u.max_parallel as usize;
        if canarying {
            return 0;
        }
        let Some(d) = &self.deployment else {
            return max;
        };
        if self.out.deployment.is_some() {
            return max;
        }
        if d.status != DEPLOYMENT_RUNNING {
            return 0;
        }
        // A failed allocation of the deployment not replaced yet (waiting for its reschedule,
        // or with no attempt left) holds the rollout: this run reschedules it at most.
        let failed_waiting = self.state.allocs.of_job(&d.namespace, &d.job_id).any(|a| {
            a.deployment_id == d.id && a.task_group == g.name && alloc_awaiting_replacement(a)
        });
        if failed_waiting {
            return 0;
        }
        let mut waiting = 0;
        for a in self.live_of_job_id(d, &g.name) {
            if a.deployment_id != d.id {
                continue;
            }
            match health(a) {
                Some(false) => return 0,
                Some(true) => {}
                None => waiting += 1,
            }
        }
        max.saturating_sub(waiting)
    }

    /// The job's live allocations in a group as this run leaves them so far.
    pub(super) fn live_of_job_id(&self, d: &Deployment, group: &str) -> Vec<&Allocation> {
        let touched: BTreeSet<&str> = self.out.allocs.iter().map(|a| a.id.as_str()).collect();
        let ns = Row::namespace(d);
        self.state
            .allocs
            .of_job(ns, &d.job_id)
            .filter(|a| !alloc_terminal(a) && !touched.contains(a.id.as_str()))
            .chain(self.out.allocs.iter().filter(|a| !alloc_terminal(a)))
            .filter(|a| a.job_id == d.job_id && a.task_group == group)
            .collect()
    }

    /// The current deployment is complete when no group has work left and each has its
    /// desired count of healthy allocations (after promotion, if it had canaries): it
    /// succeeds, which marks the job version stable.
    pub(super) fn finish_deployment(&mut self) {
        let Some(d) = self.deployment.as_ref().filter(|_| self.gates.deployments) else {
            return;
        };
        if self.out.deployment.is_some() || d.status != DEPLOYMENT_RUNNING {
            return;
        }
        let done = d.task_groups.iter().all(|(name, g)| {
            let busy = self.pending.contains(name)
                || self.out.desired.get(name).is_some_and(|u| {
                    u.place + u.destructive_update + u.canary + u.in_place_update > 0
                });
            let healthy = self
                .live_of_job_id(d, name)
                .iter()
                .filter(|a| a.deployment_id == d.id && health(a) == Some(true))
                .count() as u32;
            !busy && (g.desired_canaries == 0 || g.promoted) && healthy >= g.desired_total
        });
        if done {
            self.out.deployment_changes.push(DeploymentChange {
                deployment_id: d.id.clone(),
                status: DEPLOYMENT_SUCCESSFUL.into(),
                status_description: DESC_DEPLOYMENT_SUCCESSFUL.into(),
                ..Default::default()
            });
        }
    }

    /// The deployment new allocations of this run join: the current one while it runs.
    pub(super) fn active_deployment_id(&self) -> String {
        self.deployment
            .as_ref()
            .filter(|d| deployment_active(&d.status))
            .map(|d| d.id.clone())
            .unwrap_or_default()
    }
}
