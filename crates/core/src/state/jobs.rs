//! Jobs in the state: registration (versions advance only on a change of spec; six kept, and
//! the newest stable one beyond them), deregistration and purge, and a job's status by Nomad's
//! rules, from the allocations of the job as registered now. Jobs are keyed by namespace and
//! ID ([`JobKey`]): `web` in `dev` and `web` in `prod` are two jobs.

use super::*;

/// How many versions of a job are kept (Nomad's `job_tracked_versions`).
pub const TRACKED_VERSIONS: usize = 6;

/// The key a job is stored under: its namespace and ID.
pub fn key_of(job: &Job) -> JobKey {
    job_key(&job.namespace, &job.id)
}

/// Whether an allocation belongs to `job` as registered now: a job registered again after a
/// purge is a new job (a new create index), and the allocations of the purged one are not its.
pub fn of_this_job(job: &Job, a: &Allocation) -> bool {
    a.job
        .as_ref()
        .is_none_or(|j| j.create_index == job.create_index)
}

/// A job's status by Nomad's rules: a stopped job is dead; otherwise it runs while any of its
/// allocations is not terminal, is pending while any of its evaluations is (pending or
/// blocked), and is dead once all of them are done (pending while it has had none at all).
pub fn job_status(stopped: bool, live_allocs: bool, open_evals: bool, any: bool) -> &'static str {
    if stopped {
        JOB_DEAD
    } else if live_allocs {
        JOB_RUNNING
    } else if open_evals || !any {
        JOB_PENDING
    } else {
        JOB_DEAD
    }
}

/// Keeps a job's [`TRACKED_VERSIONS`] newest versions (oldest first), dropping the oldest
/// beyond that, except the newest stable version: the one a revert or an auto-revert goes back
/// to is kept even when it is older than all the others (Nomad keeps it too).
pub fn trim_versions(versions: &mut Vec<Arc<Job>>) {
    while versions.len() > TRACKED_VERSIONS {
        let stable = versions.iter().rposition(|j| j.stable);
        let drop = if stable == Some(0) { 1 } else { 0 };
        versions.remove(drop);
    }
}

impl State {
    pub(crate) fn register_job(
        &mut self,
        index: u64,
        now: i64,
        r: crate::internal::JobRegister,
    ) -> Result<Applied, ApplyError> {
        let mut job = r.job.unwrap_or_default();
        job.namespace = yurt_types::acl::namespace_or_default(&job.namespace).to_string();
        if self.namespace(&job.namespace).is_none() {
            return Err(ApplyError::Refused(format!(
                "namespace {:?} does not exist: create it first (yurt namespace apply {})",
                job.namespace, job.namespace
            )));
        }
        let existing = self.jobs.get(&key_of(&job));
        if r.enforce_index {
            let n = r.job_modify_index;
            match existing {
                Some(_) if n == 0 => {
                    return Err(ApplyError::EnforceIndex(n, "job already exists".into()))
                }
                Some(e) if e.job_modify_index != n => {
                    return Err(ApplyError::EnforceIndex(
                        n,
                        format!(
                            "job exists with conflicting job modify index: {}",
                            e.job_modify_index
                        ),
                    ))
                }
                None if n != 0 => {
                    return Err(ApplyError::EnforceIndex(n, "job does not exist".into()))
                }
                _ => {}
            }
        }
        let key = key_of(&job);
        let mut applied = self.register_job_version(index, now, job);
        if let Some(e) = r.eval {
            applied.eval_id = e.id.clone();
            self.insert_eval(index, now, e);
        }
        if let Some(mut s) = r.scaling_event {
            (s.namespace, s.job_id) = key;
            if let Some(e) = s.event.as_mut().filter(|e| e.eval_id.is_empty()) {
                e.eval_id = applied.eval_id.clone();
            }
            // The job has the group: it was just registered with it.
            let _ = self.apply_scaling_event(index, now, &s);
        }
        Ok(applied)
    }

    /// Marks kept version `version` of a job stable or not; whether there is such a version.
    pub(crate) fn set_stable(
        &mut self,
        key: &JobKey,
        version: u64,
        stable: bool,
        index: u64,
    ) -> bool {
        let Some(v) = self
            .job_versions
            .get_mut(key)
            .and_then(|v| v.iter_mut().find(|j| j.version == version))
        else {
            return false;
        };
        Arc::make_mut(v).stable = stable;
        if let Some(j) = self.jobs.get_mut(key).filter(|j| j.version == version) {
            let j = Arc::make_mut(j);
            j.stable = stable;
            j.modify_index = index;
        }
        true
    }

    /// Makes `job` the job's current version: a new version when its spec changed.
    pub(crate) fn register_job_version(&mut self, index: u64, now: i64, mut job: Job) -> Applied {
        job.namespace = yurt_types::acl::namespace_or_default(&job.namespace).to_string();
        let key = key_of(&job);
        let existing = self.jobs.get(&key);
        let job_modify_index = match existing {
            Some(e) if same_spec(e, &job) => e.job_modify_index,
            _ => {
                job.version = existing.map_or(0, |e| e.version + 1);
                job.create_index = existing.map_or(index, |e| e.create_index);
                job.modify_index = index;
                job.job_modify_index = index;
                job.submit_time_unix_ms = now;
                job.stable = false;
                job.status = JOB_PENDING.into();
                let job = Arc::new(job);
                self.put_job_version(job.clone());
                self.jobs.insert(key.clone(), job);
                index
            }
        };
        self.refresh_job_status(&key, index);
        Applied {
            index,
            job_modify_index,
            eval_id: String::new(),
        }
    }

    pub(crate) fn put_job_version(&mut self, job: Arc<Job>) {
        let versions = self.job_versions.entry(key_of(&job)).or_default();
        versions.push(job);
        trim_versions(versions);
    }

    pub(crate) fn deregister_job(
        &mut self,
        index: u64,
        now: i64,
        d: &crate::internal::JobDeregister,
    ) -> Result<Applied, ApplyError> {
        let key = job_key(&d.namespace, &d.job_id);
        let Some(existing) = self.jobs.get(&key) else {
            return Err(ApplyError::JobNotFound(d.job_id.clone()));
        };
        let mut job_modify_index = existing.job_modify_index;
        if d.purge {
            self.jobs.remove(&key);
            self.job_versions.remove(&key);
            self.scaling_events.remove(&key);
            let gone: Vec<String> = self
                .deployments
                .of_job(&key.0, &key.1)
                .map(|d| d.id.clone())
                .collect();
            for id in gone {
                self.deployments.remove(&id);
            }
        } else if !existing.stop {
            // Stopping is a change of spec: a new version, as in Nomad.
            let mut job = Job::clone(existing);
            job.stop = true;
            job.version += 1;
            job.modify_index = index;
            job.job_modify_index = index;
            job.submit_time_unix_ms = now;
            job.stable = false;
            job_modify_index = index;
            let job = Arc::new(job);
            self.put_job_version(job.clone());
            self.jobs.insert(key.clone(), job);
        }
        let mut eval_id = String::new();
        if let Some(e) = &d.eval {
            eval_id = e.id.clone();
            self.insert_eval(index, now, e.clone());
        }
        self.refresh_job_status(&key, index);
        Ok(Applied {
            index,
            job_modify_index,
            eval_id,
        })
    }

    /// Recomputes a job's status from its allocations and evaluations (Nomad's rules).
    pub(crate) fn refresh_job_status(&mut self, key: &JobKey, index: u64) {
        let Some(current) = self.jobs.get(key) else {
            return;
        };
        let (ns, id) = (key.0.as_str(), key.1.as_str());
        let mine = || {
            self.allocs
                .of_job(ns, id)
                .filter(|a| of_this_job(current, a))
        };
        let live = mine().any(|a| !alloc_terminal(a));
        let any_alloc = mine().next().is_some();
        let waiting = self
            .evals
            .of_job(ns, id)
            .any(|e| e.status == EVAL_PENDING || e.status == EVAL_BLOCKED);
        let any = any_alloc || self.evals.of_job(ns, id).next().is_some();
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let status = job_status(job.stop, live, waiting, any);
        if job.status != status {
            let job = Arc::make_mut(job);
            job.status = status.into();
            job.modify_index = index;
            if let Some(v) = self.job_versions.get_mut(key).and_then(|v| v.last_mut()) {
                Arc::make_mut(v).status = status.into();
            }
        }
    }

    /// Allocations of job `job_id` in namespace `ns`, oldest first: of the job as registered
    /// now, not of an earlier job of the same ID that was purged (all of them while no job has
    /// the ID).
    pub fn job_allocs(&self, ns: &str, job_id: &str) -> Vec<&Allocation> {
        let job = self.job(ns, job_id);
        let mut v: Vec<&Allocation> = self
            .allocs
            .of_job(ns, job_id)
            .filter(|a| job.is_none_or(|j| of_this_job(j, a)))
            .collect();
        v.sort_by(|a, b| (a.create_index, &a.name).cmp(&(b.create_index, &b.name)));
        v
    }
}
