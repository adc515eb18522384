//! A table of the state (allocations, evaluations) with the secondary indexes the state machine
//! and the scheduler look rows up by: by job (its namespace and ID, a [`JobKey`]), by node, and
//! by the few *states* that are looked for while they last (pending and blocked evaluations),
//! in the order they are served (for evaluations: priority, then age), so that the eval loop
//! reads the head of the queue instead of sorting all of it each round; and each node's version
//! (the highest modify index among its rows), which a client's watch of its allocations waits
//! on. Without them every command and every scheduler run scanned every allocation and
//! evaluation ever kept.
//!
//! Reads go through the map-like getters (`get`, `values`, `iter`, `[id]`). Changes go
//! through [`Table::insert`], [`Table::update`] and [`Table::remove`], which keep the indexes
//! right; there is no `get_mut`.
//!
//! The map and its indexes are persistent (`imbl`), and each row is behind an `Arc`: a clone
//! of a table shares its rows and costs next to nothing, and a change to either copy copies
//! only the row it changes and the path to it (pointers, not rows). This is what lets the state
//! be snapshotted for long reads (an evaluation, a plan, a list) without holding the state
//! lock, and lets writes go on beside those snapshots at little extra cost.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use yurt_types::status::*;

use crate::v1::{Allocation, Deployment, Evaluation};

/// A job's namespace and ID: how the state keys jobs (a job's ID is unique in its namespace,
/// not across namespaces).
pub type JobKey = (String, String);

/// The key of job `id` in namespace `ns` (empty: `default`, as objects written before
/// namespaces existed name it).
pub fn job_key(ns: &str, id: &str) -> JobKey {
    (
        yurt_types::acl::namespace_or_default(ns).to_string(),
        id.to_string(),
    )
}

/// What a table indexes a row by.
pub trait Row {
    fn id(&self) -> &str;
    fn job_id(&self) -> &str;
    /// The namespace of the row's job.
    fn namespace(&self) -> &str;
    /// Empty when the row belongs to no node.
    fn node_id(&self) -> &str;
    /// The state the row is indexed under while it is in it (see [`Table::in_state`]), if any.
    fn state(&self) -> Option<&str>;
    /// Where the row comes among those of its state: lower first, then by ID.
    fn rank(&self) -> Rank {
        Rank::default()
    }
    /// What moves whenever the row changes (its modify index), for [`Table::node_version`].
    fn version(&self) -> u64 {
        0
    }
}

/// The order of rows within a state: `(first, second)`, lower first.
pub type Rank = (i64, u64);

impl Row for Allocation {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn namespace(&self) -> &str {
        yurt_types::acl::namespace_or_default(&self.namespace)
    }
    fn node_id(&self) -> &str {
        &self.node_id
    }
    fn state(&self) -> Option<&str> {
        None
    }
    fn version(&self) -> u64 {
        self.modify_index
    }
}

impl Row for Evaluation {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn namespace(&self) -> &str {
        yurt_types::acl::namespace_or_default(&self.namespace)
    }
    fn node_id(&self) -> &str {
        ""
    }
    fn state(&self) -> Option<&str> {
        let s = self.status.as_str();
        (s == EVAL_PENDING || s == EVAL_BLOCKED).then_some(s)
    }
    /// Higher priority first, then the older (lower create index) first.
    fn rank(&self) -> Rank {
        (-i64::from(self.priority), self.create_index)
    }
}

impl Row for Deployment {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn namespace(&self) -> &str {
        yurt_types::acl::namespace_or_default(&self.namespace)
    }
    fn node_id(&self) -> &str {
        ""
    }
    fn state(&self) -> Option<&str> {
        deployment_active(&self.status).then_some(self.status.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Table<T: Clone> {
    rows: OrdMap<String, Arc<T>>,
    by_job: OrdMap<JobKey, OrdSet<String>>,
    by_node: OrdMap<String, OrdSet<String>>,
    /// For each node, how many of its rows are at each version: the highest is the node's.
    node_versions: OrdMap<String, OrdMap<u64, usize>>,
    by_state: OrdMap<String, OrdSet<(Rank, String)>>,
}

impl<T: Clone> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: OrdMap::new(),
            by_job: OrdMap::new(),
            by_node: OrdMap::new(),
            node_versions: OrdMap::new(),
            by_state: OrdMap::new(),
        }
    }
}

/// Two tables are equal when their rows are: the indexes follow from them.
impl<T: PartialEq + Clone> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<T: Clone> Table<T> {
    /// The row with this ID.
    pub fn get(&self, id: &str) -> Option<&T> {
        self.rows.get(id).map(|r| &**r)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    /// Every row, in ID order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.rows.values().map(|r| &**r)
    }

    /// Every row with its ID, in ID order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &T)> + '_ {
        self.rows.iter().map(|(k, r)| (k, &**r))
    }

    /// The rows whose IDs start at `from`, in ID order.
    pub fn iter_from<'a>(&'a self, from: &str) -> impl Iterator<Item = (&'a String, &'a T)> + 'a {
        self.rows.range(from.to_string()..).map(|(k, r)| (k, &**r))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + '_ {
        self.rows.keys()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<T: Clone> std::ops::Index<&str> for Table<T> {
    type Output = T;
    /// The row with this ID; panics without one (as a map's index does).
    fn index(&self, id: &str) -> &T {
        self.get(id).expect("no row with this ID")
    }
}

impl<T: Row + Clone> FromIterator<T> for Table<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut t = Table::default();
        for row in iter {
            t.insert(row);
        }
        t
    }
}

fn add_key(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    if !key.is_empty() {
        index
            .entry(key.to_string())
            .or_default()
            .insert(id.to_string());
    }
}

fn remove_key<K, KQ, E, Q>(index: &mut OrdMap<K, OrdSet<E>>, key: &KQ, entry: &Q)
where
    K: Ord + Clone + std::borrow::Borrow<KQ>,
    KQ: Ord + ?Sized,
    E: Ord + Clone + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    if let Some(entries) = index.get_mut(key) {
        entries.remove(entry);
        if entries.is_empty() {
            index.remove(key);
        }
    }
}

impl<T: Row + Clone> Table<T> {
    fn index(&mut self, row: &T) {
        if !row.job_id().is_empty() {
            self.by_job
                .entry(job_key(row.namespace(), row.job_id()))
                .or_default()
                .insert(row.id().to_string());
        }
        add_key(&mut self.by_node, row.node_id(), row.id());
        if !row.node_id().is_empty() {
            *self
                .node_versions
                .entry(row.node_id().to_string())
                .or_default()
                .entry(row.version())
                .or_default() += 1;
        }
        if let Some(state) = row.state() {
            self.by_state
                .entry(state.to_string())
                .or_default()
                .insert((row.rank(), row.id().to_string()));
        }
    }

    fn unindex(&mut self, row: &T) {
        remove_key(
            &mut self.by_job,
            &job_key(row.namespace(), row.job_id()),
            row.id(),
        );
        remove_key(&mut self.by_node, row.node_id(), row.id());
        if let Some(versions) = self.node_versions.get_mut(row.node_id()) {
            if let Some(n) = versions.get_mut(&row.version()) {
                *n -= 1;
                if *n == 0 {
                    versions.remove(&row.version());
                }
            }
            if versions.is_empty() {
                self.node_versions.remove(row.node_id());
            }
        }
        if let Some(state) = row.state() {
            remove_key(
                &mut self.by_state,
                state,
                &(row.rank(), row.id().to_string()),
            );
        }
    }

    /// Inserts or replaces the row with the same ID; returns the replaced one.
    pub fn insert(&mut self, row: T) -> Option<T> {
        let old = self.rows.remove(row.id());
        if let Some(old) = &old {
            self.unindex(old);
        }
        self.index(&row);
        self.rows.insert(row.id().to_string(), Arc::new(row));
        old.map(Arc::unwrap_or_clone)
    }

    /// Changes the row `id` in place (a copy of it, if a snapshot shares it), if there is one;
    /// whether there was.
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut T)) -> bool {
        let Some(mut row) = self.rows.remove(id) else {
            return false;
        };
        self.unindex(&row);
        change(Arc::make_mut(&mut row));
        self.index(&row);
        self.rows.insert(row.id().to_string(), row);
        true
    }

    pub fn remove(&mut self, id: &str) -> Option<T> {
        let row = self.rows.remove(id)?;
        self.unindex(&row);
        Some(Arc::unwrap_or_clone(row))
    }

    fn lookup<'a>(&'a self, ids: Option<&'a OrdSet<String>>) -> impl Iterator<Item = &'a T> + 'a {
        ids.into_iter().flatten().filter_map(move |id| self.get(id))
    }

    /// The rows of job `job_id` in namespace `ns`, in ID order.
    pub fn of_job<'a>(&'a self, ns: &str, job_id: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.lookup(self.by_job.get(&job_key(ns, job_id)))
    }

    /// The rows placed on a node, in ID order.
    pub fn on_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.lookup(self.by_node.get(node_id))
    }

    /// The highest [`Row::version`] among the rows on a node (0 for none): it moves when one of
    /// them is added or changed, or the highest is removed.
    pub fn node_version(&self, node_id: &str) -> u64 {
        self.node_versions
            .get(node_id)
            .and_then(|v| v.get_max())
            .map(|(version, _)| *version)
            .unwrap_or(0)
    }

    /// The rows in a state (see [`Row::state`]), by [`Row::rank`], then by ID.
    pub fn in_state<'a>(&'a self, state: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.by_state
            .get(state)
            .into_iter()
            .flatten()
            .filter_map(move |(_, id)| self.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str, job: &str, node: &str) -> Allocation {
        Allocation {
            id: id.into(),
            job_id: job.into(),
            node_id: node.into(),
            ..Allocation::default()
        }
    }

    fn eval(id: &str, job: &str, status: &str) -> Evaluation {
        Evaluation {
            id: id.into(),
            job_id: job.into(),
            status: status.into(),
            ..Evaluation::default()
        }
    }

    fn ids<'a, T: Row + 'a>(rows: impl Iterator<Item = &'a T>) -> Vec<&'a str> {
        rows.map(|r| r.id()).collect()
    }

    #[test]
    fn indexes_follow_inserts_updates_and_removals() {
        let mut t: Table<Allocation> = [
            alloc("a1", "web", "n1"),
            alloc("a2", "web", "n2"),
            alloc("a3", "db", "n1"),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids(t.of_job("", "web")), ["a1", "a2"]);
        assert_eq!(ids(t.of_job("default", "web")), ["a1", "a2"]);
        assert_eq!(ids(t.of_job("prod", "web")), Vec::<&str>::new());
        let mut other = alloc("a9", "web", "n1");
        other.namespace = "prod".into();
        t.insert(other);
        assert_eq!(ids(t.of_job("prod", "web")), ["a9"]);
        assert!(t.remove("a9").is_some());
        assert_eq!(ids(t.on_node("n1")), ["a1", "a3"]);
        assert!(!t.update("nope", |_| panic!("no such row")));

        // A replacement on another node moves it between node indexes.
        t.insert(alloc("a2", "web", "n1"));
        assert_eq!(ids(t.on_node("n1")), ["a1", "a2", "a3"]);
        assert_eq!(ids(t.on_node("n2")), Vec::<&str>::new());

        assert!(t.remove("a3").is_some());
        assert_eq!(ids(t.of_job("", "db")), Vec::<&str>::new());
        assert_eq!(t.len(), 2);
        assert!(
            !t.by_job.contains_key(&job_key("", "db")) && !t.by_node.contains_key("n2"),
            "empty index entries are dropped"
        );
    }

    #[test]
    fn a_nodes_version_is_the_highest_among_its_rows() {
        let at = |id: &str, node: &str, modify_index: u64| Allocation {
            modify_index,
            ..alloc(id, "web", node)
        };
        let mut t: Table<Allocation> = [at("a1", "n1", 5), at("a2", "n1", 5), at("a3", "n2", 9)]
            .into_iter()
            .collect();
        assert_eq!((t.node_version("n1"), t.node_version("n2")), (5, 9));
        assert!(t.update("a1", |a| a.modify_index = 12));
        assert_eq!(t.node_version("n1"), 12);
        // The highest row gone, the next highest counts; two rows at one version count twice.
        t.remove("a1");
        assert_eq!(t.node_version("n1"), 5);
        t.insert(at("a2", "n2", 13));
        assert_eq!((t.node_version("n1"), t.node_version("n2")), (0, 13));
        assert!(
            !t.node_versions.contains_key("n1"),
            "empty entries are dropped"
        );
        assert_eq!(t.node_version("nope"), 0);
    }

    #[test]
    fn evaluations_are_found_by_state_while_pending_or_blocked() {
        let mut t: Table<Evaluation> = [
            eval("e1", "web", EVAL_PENDING),
            eval("e2", "web", EVAL_BLOCKED),
            eval("e3", "db", EVAL_COMPLETE),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["e1"]);
        assert_eq!(ids(t.in_state(EVAL_BLOCKED)), ["e2"]);
        assert_eq!(ids(t.in_state(EVAL_COMPLETE)), Vec::<&str>::new());

        // An update moves a row between states; a finished one leaves the index.
        assert!(t.update("e2", |e| e.status = EVAL_PENDING.into()));
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["e1", "e2"]);
        assert!(t.update("e1", |e| e.status = EVAL_COMPLETE.into()));
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["e2"]);
        assert!(!t.by_state.contains_key(EVAL_BLOCKED));
    }

    #[test]
    fn pending_evaluations_come_by_priority_then_age_and_move_when_they_change() {
        let ranked = |id: &str, priority: i32, create_index: u64| Evaluation {
            priority,
            create_index,
            ..eval(id, id, EVAL_PENDING)
        };
        let mut t: Table<Evaluation> = [
            ranked("a", 50, 9),
            ranked("b", 70, 12),
            ranked("c", 50, 3),
            ranked("d", 50, 3),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["b", "c", "d", "a"]);
        // A change of rank moves the row; the old place is gone.
        assert!(t.update("b", |e| e.priority = 10));
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["c", "d", "a", "b"]);
        assert!(t.remove("c").is_some());
        assert_eq!(ids(t.in_state(EVAL_PENDING)), ["d", "a", "b"]);
    }

    /// A table's indexes as they follow from its rows alone.
    fn recomputed(t: &Table<Evaluation>) -> Table<Evaluation> {
        t.values().cloned().collect()
    }

    fn same_indexes(a: &Table<Evaluation>, b: &Table<Evaluation>) -> bool {
        a.rows == b.rows
            && a.by_job == b.by_job
            && a.by_node == b.by_node
            && a.node_versions == b.node_versions
            && a.by_state == b.by_state
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u8, i32),
        Update(u8, u8, i32),
        Remove(u8),
        Copy,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..12, 0u8..3, 0u8..4, -2i32..3).prop_map(|(i, j, s, p)| Op::Insert(i, j, s, p)),
            (0u8..12, 0u8..4, -2i32..3).prop_map(|(i, s, p)| Op::Update(i, s, p)),
            (0u8..12).prop_map(Op::Remove),
            Just(Op::Copy),
        ]
    }

    const STATES: [&str; 4] = [EVAL_PENDING, EVAL_BLOCKED, EVAL_COMPLETE, EVAL_FAILED];

    proptest::proptest! {
        /// Any sequence of changes, with copies taken at any moment and changed on their own:
        /// every copy keeps exactly the rows it had, and every table's indexes are what its
        /// rows give (the persistent maps share structure, never contents).
        #[test]
        fn copies_are_snapshots_and_indexes_follow_the_rows(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let mut t: Table<Evaluation> = Table::default();
            let mut copies: Vec<(Table<Evaluation>, Vec<Evaluation>)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(i, j, st, p) => {
                        let mut e = eval(&format!("e{i}"), &format!("j{j}"), STATES[st as usize]);
                        e.priority = p;
                        e.create_index = n as u64;
                        t.insert(e);
                    }
                    Op::Update(i, st, p) => {
                        t.update(&format!("e{i}"), |e| {
                            e.status = STATES[st as usize].into();
                            e.priority = p;
                        });
                    }
                    Op::Remove(i) => {
                        t.remove(&format!("e{i}"));
                    }
                    Op::Copy => {
                        // The copy is changed too: neither side may see the other's change.
                        let mut copy = t.clone();
                        copy.remove("e0");
                        copy.insert(eval("copy-only", "j9", EVAL_PENDING));
                        let rows = copy.values().cloned().collect();
                        copies.push((copy, rows));
                    }
                }
                proptest::prop_assert!(!t.contains_key("copy-only"));
                proptest::prop_assert!(same_indexes(&t, &recomputed(&t)));
            }
            for (copy, rows) in &copies {
                let now: Vec<Evaluation> = copy.values().cloned().collect();
                proptest::prop_assert_eq!(&now, rows);
                proptest::prop_assert!(same_indexes(copy, &recomputed(copy)));
            }
        }
    }
}
