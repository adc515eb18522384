//! A table of the state (allocations, evaluations) with the secondary indexes the state machine
//! and the scheduler look rows up by: by job, by node, and by the few *states* that are looked
//! for while they last (pending and blocked evaluations). Without them every command and every
//! scheduler run scanned every allocation and evaluation ever kept.
//!
//! Reads go through `Deref` to the map by ID. Changes go through [`Table::insert`],
//! [`Table::update`] and [`Table::remove`], which keep the indexes right; there is no `get_mut`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use yurt_types::status::*;

use crate::v1::{Allocation, Deployment, Evaluation};

/// What a table indexes a row by.
pub trait Row {
    fn id(&self) -> &str;
    fn job_id(&self) -> &str;
    /// Empty when the row belongs to no node.
    fn node_id(&self) -> &str;
    /// The state the row is indexed under while it is in it (see [`Table::in_state`]), if any.
    fn state(&self) -> Option<&str>;
}

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
    fn state(&self) -> Option<&str> {
        None
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
    fn state(&self) -> Option<&str> {
        let s = self.status.as_str();
        (s == EVAL_PENDING || s == EVAL_BLOCKED).then_some(s)
    }
}

impl Row for Deployment {
    fn id(&self) -> &str {
        &self.id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn node_id(&self) -> &str {
        ""
    }
    fn state(&self) -> Option<&str> {
        deployment_active(&self.status).then_some(self.status.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: BTreeMap<String, T>,
    by_job: BTreeMap<String, BTreeSet<String>>,
    by_node: BTreeMap<String, BTreeSet<String>>,
    by_state: BTreeMap<String, BTreeSet<String>>,
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
        add_key(
            &mut self.by_state,
            row.state().unwrap_or_default(),
            row.id(),
        );
    }

    fn unindex(&mut self, row: &T) {
        remove_key(&mut self.by_job, row.job_id(), row.id());
        remove_key(&mut self.by_node, row.node_id(), row.id());
        remove_key(
            &mut self.by_state,
            row.state().unwrap_or_default(),
            row.id(),
        );
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
        assert_eq!(ids(t.of_job("web")), ["a1", "a2"]);
        assert_eq!(ids(t.on_node("n1")), ["a1", "a3"]);
        assert!(!t.update("nope", |_| panic!("no such row")));

        // A replacement on another node moves it between node indexes.
        t.insert(alloc("a2", "web", "n1"));
        assert_eq!(ids(t.on_node("n1")), ["a1", "a2", "a3"]);
        assert_eq!(ids(t.on_node("n2")), Vec::<&str>::new());

        assert!(t.remove("a3").is_some());
        assert_eq!(ids(t.of_job("db")), Vec::<&str>::new());
        assert_eq!(t.len(), 2);
        assert!(
            !t.by_job.contains_key("db") && !t.by_node.contains_key("n2"),
            "empty index entries are dropped"
        );
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
}
