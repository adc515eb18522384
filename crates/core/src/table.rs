//! A table of the state (allocations, evaluations) with the secondary indexes the state machine
//! and the scheduler look rows up by: by job, by node, and by a few *states* that matter while
//! they last (live allocations; pending, blocked evaluations). Without them every command and
//! every scheduler run scanned every allocation and evaluation ever kept.
//!
//! Reads go through `Deref` to the map by ID. Changes go through [`Table::insert`],
//! [`Table::update`] and [`Table::remove`], which keep the indexes right; there is no `get_mut`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use yurt_types::status::*;

use crate::v1::{Allocation, Evaluation};

/// What a table indexes a row by.
pub trait Row {
    fn id(&self) -> &str;
    fn job_id(&self) -> &str;
    /// Empty when the row belongs to no node.
    fn node_id(&self) -> &str;
    /// The state the row is indexed under while it needs attention (see [`Table::in_state`]),
    /// if any: finished rows are not.
    fn state(&self) -> Option<&'static str>;
}

/// [`Row::state`] of a live allocation.
pub const LIVE: &str = "live";

impl Row for Allocation {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn node_id(&self) -> &str {
        &self.node_id
    }
    fn state(&self) -> Option<&'static str> {
        (!alloc_terminal(self)).then_some(LIVE)
    }
}

impl Row for Evaluation {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn node_id(&self) -> &str {
        ""
    }
    fn state(&self) -> Option<&'static str> {
        match self.status.as_str() {
            EVAL_PENDING => Some(EVAL_PENDING),
            EVAL_BLOCKED => Some(EVAL_BLOCKED),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: BTreeMap<String, T>,
    by_job: BTreeMap<String, BTreeSet<String>>,
    by_node: BTreeMap<String, BTreeSet<String>>,
    by_state: BTreeMap<&'static str, BTreeSet<String>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            by_job: BTreeMap::new(),
            by_node: BTreeMap::new(),
            by_state: BTreeMap::new(),
        }
    }
}

/// Two tables are equal when their rows are: the indexes follow from them.
impl<T: PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<T> Deref for Table<T> {
    type Target = BTreeMap<String, T>;
    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl<T: Row> FromIterator<T> for Table<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut t = Table::default();
        for row in iter {
            t.insert(row);
        }
        t
    }
}

fn add_key(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if !key.is_empty() {
        index
            .entry(key.to_string())
            .or_default()
            .insert(id.to_string());
    }
}

fn remove_key(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

impl<T: Row> Table<T> {
    fn index(&mut self, row: &T) {
        add_key(&mut self.by_job, row.job_id(), row.id());
        add_key(&mut self.by_node, row.node_id(), row.id());
        if let Some(state) = row.state() {
            self.by_state
                .entry(state)
                .or_default()
                .insert(row.id().to_string());
        }
    }

    fn unindex(&mut self, row: &T) {
        remove_key(&mut self.by_job, row.job_id(), row.id());
        remove_key(&mut self.by_node, row.node_id(), row.id());
        if let Some(ids) = row.state().and_then(|s| self.by_state.get_mut(s)) {
            ids.remove(row.id());
        }
    }

    /// Inserts or replaces the row with the same ID; returns the replaced one.
    pub fn insert(&mut self, row: T) -> Option<T> {
        let old = self.rows.remove(row.id());
        if let Some(old) = &old {
            self.unindex(old);
        }
        self.index(&row);
        self.rows.insert(row.id().to_string(), row);
        old
    }

    /// Changes the row `id` in place, if there is one; whether there was.
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut T)) -> bool {
        let Some(mut row) = self.rows.remove(id) else {
            return false;
        };
        self.unindex(&row);
        change(&mut row);
        self.index(&row);
        self.rows.insert(row.id().to_string(), row);
        true
    }

    pub fn remove(&mut self, id: &str) -> Option<T> {
        let row = self.rows.remove(id)?;
        self.unindex(&row);
        Some(row)
    }

    fn lookup<'a>(&'a self, ids: Option<&'a BTreeSet<String>>) -> impl Iterator<Item = &'a T> + 'a {
        ids.into_iter()
            .flatten()
            .filter_map(move |id| self.rows.get(id))
    }

    /// The rows of a job, in ID order.
    pub fn of_job<'a>(&'a self, job_id: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.lookup(self.by_job.get(job_id))
    }

    /// The rows placed on a node, in ID order.
    pub fn on_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.lookup(self.by_node.get(node_id))
    }

    /// The rows in a state (see [`Row::state`]), in ID order.
    pub fn in_state<'a>(&'a self, state: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.lookup(self.by_state.get(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str, job: &str, node: &str, client_status: &str) -> Allocation {
        Allocation {
            id: id.into(),
            job_id: job.into(),
            node_id: node.into(),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: client_status.into(),
            ..Allocation::default()
        }
    }

    fn ids<'a>(rows: impl Iterator<Item = &'a Allocation>) -> Vec<&'a str> {
        rows.map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn indexes_follow_inserts_updates_and_removals() {
        let mut t: Table<Allocation> = [
            alloc("a1", "web", "n1", ALLOC_RUNNING),
            alloc("a2", "web", "n2", ALLOC_PENDING),
            alloc("a3", "db", "n1", ALLOC_COMPLETE),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids(t.of_job("web")), ["a1", "a2"]);
        assert_eq!(ids(t.on_node("n1")), ["a1", "a3"]);
        assert_eq!(ids(t.in_state(LIVE)), ["a1", "a2"]);

        // An update that ends the allocation takes it out of the live rows only.
        assert!(t.update("a1", |a| a.client_status = ALLOC_FAILED.into()));
        assert_eq!(ids(t.in_state(LIVE)), ["a2"]);
        assert_eq!(ids(t.on_node("n1")), ["a1", "a3"]);
        assert!(!t.update("nope", |_| panic!("no such row")));

        // A replacement with another node moves it between node indexes.
        t.insert(alloc("a2", "web", "n1", ALLOC_RUNNING));
        assert_eq!(ids(t.on_node("n1")), ["a1", "a2", "a3"]);
        assert_eq!(ids(t.on_node("n2")), Vec::<&str>::new());

        assert!(t.remove("a3").is_some());
        assert_eq!(ids(t.of_job("db")), Vec::<&str>::new());
        assert_eq!(t.len(), 2);
        assert!(
            !t.by_job.contains_key("db"),
            "empty index entries are dropped"
        );
    }
}
