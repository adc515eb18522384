//! Reads of the state the servers and the leader's loops share: a node's allocations and their
//! index, the jobs a node concerns, the evaluations to schedule, and lookups by ID prefix.

use super::*;

use yurt_types::acl::namespace_or_default;
use yurt_types::limits::shown;

/// Why an ID (prefix) named nothing: `what` is the kind of object, for the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    NotFound,
    Ambiguous,
}

impl PrefixError {
    /// The sentence a user sees, for both APIs.
    pub fn sentence(self, what: &str, id: &str) -> String {
        match self {
            PrefixError::NotFound => format!("{what} {} not found", shown(id)),
            PrefixError::Ambiguous => format!(
                "{what} ID prefix {} matches more than one {what}: give more characters",
                shown(id)
            ),
        }
    }
}

impl State {
    /// Allocations placed on a node.
    pub fn node_allocs(&self, node_id: &str) -> Vec<&Allocation> {
        self.allocs.on_node(node_id).collect()
    }

    /// The highest modify index among the allocations on `node_id` (0 for none): it moves
    /// when one of them is placed or changed (or the newest is removed) and with no other
    /// write, so a client waits on it instead of on every entry the cluster applies.
    pub fn node_allocs_index(&self, node_id: &str) -> u64 {
        self.allocs.node_version(node_id)
    }

    /// The jobs a change of `node_id`'s status concerns: those with allocations on it that are
    /// still meant to run, and every system job.
    pub fn jobs_affected_by_node(&self, node_id: &str) -> Vec<&Job> {
        let on_node: BTreeSet<JobKey> = self
            .allocs
            .on_node(node_id)
            .filter(|a| !alloc_terminal(a))
            .map(|a| job_key(&a.namespace, &a.job_id))
            .collect();
        self.jobs
            .iter()
            .filter(|(key, j)| j.r#type == JOB_TYPE_SYSTEM || on_node.contains(*key))
            .map(|(_, j)| j.as_ref())
            .collect()
    }

    /// What the scheduler should work on now (Nomad's eval broker, pure): at most `jobs` jobs
    /// with due pending evaluations, in the order of the queue (higher priority first, then
    /// the job waiting longest); for each, its newest due evaluation with the older ones it
    /// supersedes. One evaluation per job at a time, duplicates coalesced. It reads the head
    /// of the pending queue (kept in that order by the table) and the chosen jobs' own
    /// evaluations, not the whole queue: under a backlog of thousands the eval loop took a
    /// full scan and sort for every few jobs it scheduled.
    pub fn evals_to_schedule(&self, now: i64, jobs: usize) -> Vec<(&Evaluation, Vec<&Evaluation>)> {
        let mut chosen: Vec<(&str, &str)> = Vec::new();
        let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
        for e in self.evals.in_state(EVAL_PENDING) {
            if chosen.len() == jobs {
                break;
            }
            let job = (crate::table::Row::namespace(e), e.job_id.as_str());
            if e.wait_until_unix_ms <= now && seen.insert(job) {
                chosen.push(job);
            }
        }
        chosen
            .into_iter()
            .filter_map(|(ns, job)| {
                let mut due: Vec<&Evaluation> = self
                    .evals
                    .of_job(ns, job)
                    .filter(|e| e.status == EVAL_PENDING && e.wait_until_unix_ms <= now)
                    .collect();
                due.sort_by_key(|e| e.create_index);
                let newest = due.pop()?;
                Some((newest, due))
            })
            .collect()
    }

    /// When the next delayed evaluation (a pending one waiting for its `wait_until`) comes
    /// due, if one waits.
    pub fn next_delayed_eval(&self, now: i64) -> Option<i64> {
        self.evals
            .in_state(EVAL_PENDING)
            .map(|e| e.wait_until_unix_ms)
            .filter(|at| *at > now)
            .min()
    }

    /// Evaluations due at `now`, in the queue's order (higher priority first, then older).
    /// Delayed ones wait until their `wait_until`.
    pub fn pending_evals(&self, now: i64) -> Vec<&Evaluation> {
        self.evals
            .in_state(EVAL_PENDING)
            .filter(|e| e.wait_until_unix_ms <= now)
            .collect()
    }

    /// Finds an object by full ID or unique prefix.
    pub fn find_by_prefix<'a, T: 'a, M: ById<T>>(
        map: &'a M,
        prefix: &str,
    ) -> Result<&'a T, PrefixError> {
        if let Some(v) = map.by_id(prefix) {
            return Ok(v);
        }
        let mut hits = map
            .ids_from(prefix)
            .take_while(|(k, _)| k.starts_with(prefix));
        match (hits.next(), hits.next()) {
            (Some((_, v)), None) if !prefix.is_empty() => Ok(v),
            (None, _) | (Some(_), None) => Err(PrefixError::NotFound),
            (Some(_), Some(_)) => Err(PrefixError::Ambiguous),
        }
    }

    /// The jobs a user's `id` names in namespace `ns` (`None`: in every namespace): the jobs
    /// with exactly that ID if there are any (one per namespace), else the one job whose ID
    /// starts with it.
    pub fn find_jobs(&self, ns: Option<&str>, id: &str) -> Result<Vec<&Job>, PrefixError> {
        let in_scope = |key: &JobKey| ns.is_none_or(|ns| key.0 == namespace_or_default(ns));
        let exact: Vec<&Job> = match ns {
            Some(ns) => self.job(ns, id).into_iter().collect(),
            None => self
                .jobs
                .iter()
                .filter(|(key, _)| key.1 == id)
                .map(|(_, j)| j.as_ref())
                .collect(),
        };
        if !exact.is_empty() {
            return Ok(exact);
        }
        let mut hits = self
            .jobs
            .iter()
            .filter(|(key, _)| in_scope(key) && key.1.starts_with(id))
            .map(|(_, j)| j.as_ref());
        match (hits.next(), hits.next()) {
            (Some(j), None) if !id.is_empty() => Ok(vec![j]),
            (None, _) | (Some(_), None) => Err(PrefixError::NotFound),
            (Some(_), Some(_)) => Err(PrefixError::Ambiguous),
        }
    }

    /// A node by full ID, unique ID prefix, or else exact name.
    pub fn find_node(&self, key: &str) -> Result<&Node, PrefixError> {
        // An exact ID, then a node of exactly that name, then an ID prefix: the node named
        // `c1` is never taken for another whose random ID starts with `c1`.
        if let Some(n) = self.nodes.get(key) {
            return Ok(n);
        }
        let mut named = self.nodes.values().filter(|n| n.name == key);
        if let (Some(n), None) = (named.next(), named.next()) {
            return Ok(n);
        }
        State::find_by_prefix(&self.nodes, key)
    }
}

/// What objects are kept in by ID: a map of the state or a table.
pub trait ById<T> {
    fn by_id(&self, id: &str) -> Option<&T>;
    /// The objects whose IDs come at or after `from`, in ID order.
    fn ids_from<'a>(&'a self, from: &str) -> Box<dyn Iterator<Item = (&'a String, &'a T)> + 'a>
    where
        T: 'a;
}

impl<T: Clone> ById<T> for imbl::OrdMap<String, T> {
    fn by_id(&self, id: &str) -> Option<&T> {
        self.get(id)
    }
    fn ids_from<'a>(&'a self, from: &str) -> Box<dyn Iterator<Item = (&'a String, &'a T)> + 'a>
    where
        T: 'a,
    {
        Box::new(self.range(from.to_string()..))
    }
}

impl<T: Clone> ById<T> for crate::table::Table<T> {
    fn by_id(&self, id: &str) -> Option<&T> {
        self.get(id)
    }
    fn ids_from<'a>(&'a self, from: &str) -> Box<dyn Iterator<Item = (&'a String, &'a T)> + 'a>
    where
        T: 'a,
    {
        Box::new(self.iter_from(from))
    }
}
