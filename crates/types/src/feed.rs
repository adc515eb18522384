//! What a client is sent of its allocations, a page at a time (pure): allocations changed after
//! a cursor, in order of (modify index, ID), with each job version once beside them instead of
//! once per allocation, and no more than a byte budget per page. So a client's fetch never
//! depends on how large one job is, nor on how many allocations of it the node runs.

use prost::Message;

use crate::v1::{Allocation, Job};

/// A page's size, well under the 4 MiB of a gRPC message: one more allocation and its job
/// (at most 1 MiB, [`crate::limits::MAX_JOB_BYTES`]) still fit.
pub const PAGE_BYTES: usize = 2 << 20;

/// Where a page starts: after this allocation (by modify index, then ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub index: u64,
    pub alloc_id: String,
}

impl Cursor {
    /// The cursor a request carries when it asks for the next page of an answer (`None`: it
    /// asks afresh).
    pub fn continued(index: u64, alloc_id: &str) -> Option<Cursor> {
        (index > 0 || !alloc_id.is_empty()).then(|| Cursor {
            index,
            alloc_id: alloc_id.to_string(),
        })
    }

    /// Where a client's request starts: after the page it was given (`after`, when it has one),
    /// else after `min_index` for the changes since, or at the start for all of them.
    pub fn of_request(after: Option<Cursor>, min_index: u64, all: bool) -> Cursor {
        match (after, all) {
            (Some(c), _) => c,
            (None, true) => Cursor::default(),
            (None, false) => Cursor {
                index: min_index,
                alloc_id: String::new(),
            },
        }
    }
}

/// One page: the allocations (each job replaced by its identity: ID, version, modify index),
/// the job versions they run (each once), and the cursor of the next page if there is more.
#[derive(Debug, Default)]
pub struct Page {
    pub allocs: Vec<Allocation>,
    pub jobs: Vec<Job>,
    pub next: Option<Cursor>,
}

/// The identity of a job version, all a paged allocation carries of it.
pub fn job_stub(job: &Job) -> Job {
    Job {
        id: job.id.clone(),
        version: job.version,
        job_modify_index: job.job_modify_index,
        ..Default::default()
    }
}

/// The page of `allocs` (a node's, any order) after `after`, within `budget` bytes (one
/// allocation at least).
pub fn page<'a>(
    allocs: impl IntoIterator<Item = &'a Allocation>,
    after: &Cursor,
    budget: usize,
) -> Page {
    let mut todo: Vec<&Allocation> = allocs
        .into_iter()
        .filter(|a| (a.modify_index, a.id.as_str()) > (after.index, after.alloc_id.as_str()))
        .collect();
    todo.sort_by(|a, b| (a.modify_index, &a.id).cmp(&(b.modify_index, &b.id)));
    let mut out = Page::default();
    let mut used = 0;
    for (i, a) in todo.iter().enumerate() {
        let mut stripped = (*a).clone();
        let job = stripped.job.take();
        let new_job = job.as_ref().filter(|j| {
            !out.jobs
                .iter()
                .any(|k| k.id == j.id && k.job_modify_index == j.job_modify_index)
        });
        stripped.job = job.as_ref().map(job_stub);
        let cost = stripped.encoded_len() + new_job.map_or(0, |j| j.encoded_len());
        if i > 0 && used + cost > budget {
            let last = out.allocs.last().expect("one at least");
            out.next = Some(Cursor {
                index: last.modify_index,
                alloc_id: last.id.clone(),
            });
            break;
        }
        used += cost;
        if let Some(j) = new_job {
            out.jobs.push(j.clone());
        }
        out.allocs.push(stripped);
    }
    out
}

/// Gives each allocation of a page its job back (the client's side of [`page`]); allocations
/// that came with their whole job (from a server that does not page) keep it.
pub fn rejoin(allocs: &mut [Allocation], jobs: &[Job]) {
    for a in allocs {
        let Some(stub) = a.job.as_ref() else { continue };
        let whole = jobs
            .iter()
            .find(|j| j.id == stub.id && j.job_modify_index == stub.job_modify_index);
        if let Some(j) = whole {
            a.job = Some(j.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn job(id: &str, index: u64, meta_bytes: usize) -> Job {
        Job {
            id: id.into(),
            job_modify_index: index,
            meta: BTreeMap::from([("big".to_string(), "x".repeat(meta_bytes))]),
            ..Default::default()
        }
    }

    fn alloc(id: &str, modify_index: u64, job: &Job) -> Allocation {
        Allocation {
            id: id.into(),
            job_id: job.id.clone(),
            modify_index,
            job: Some(job.clone()),
            ..Default::default()
        }
    }

    #[test]
    fn pages_carry_each_job_once_stay_within_budget_and_cover_everything_once() {
        // Twelve allocations of three 900 KB jobs: 10.8 MB sent whole, far over one message.
        let jobs = [
            job("a", 5, 900_000),
            job("b", 6, 900_000),
            job("c", 7, 900_000),
        ];
        let allocs: Vec<Allocation> = (0..12u64)
            .map(|i| alloc(&format!("x{i:02}"), 10 + i % 4, &jobs[(i % 3) as usize]))
            .collect();
        let mut after = Cursor::default();
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(&allocs, &after, PAGE_BYTES);
            pages += 1;
            let size: usize = p.allocs.iter().map(|x| x.encoded_len()).sum::<usize>()
                + p.jobs.iter().map(|j| j.encoded_len()).sum::<usize>();
            assert!(size <= PAGE_BYTES + 1_000_000, "a page of {size} bytes");
            assert!(p.jobs.len() <= 3);
            let mut got = p.allocs.clone();
            rejoin(&mut got, &p.jobs);
            for g in &got {
                let want = allocs.iter().find(|x| x.id == g.id).unwrap();
                assert_eq!(g, want, "rejoined whole");
            }
            seen.extend(got.into_iter().map(|g| g.id));
            match p.next {
                Some(c) => after = c,
                None => break,
            }
        }
        seen.sort();
        let mut all: Vec<String> = allocs.iter().map(|x| x.id.clone()).collect();
        all.sort();
        assert_eq!(seen, all, "each once");
        assert!(pages >= 2, "{pages} pages");
    }

    #[test]
    fn a_page_resumes_inside_one_modify_index_and_one_huge_allocation_still_goes() {
        let a = job("a", 5, 10);
        let allocs: Vec<Allocation> = (0..4).map(|i| alloc(&format!("x{i}"), 7, &a)).collect();
        let p = page(
            &allocs,
            &Cursor {
                index: 7,
                alloc_id: "x1".into(),
            },
            PAGE_BYTES,
        );
        let ids: Vec<&str> = p.allocs.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["x2", "x3"]);
        let huge = job("h", 9, 1_000_000);
        let p = page(&[alloc("h1", 9, &huge)], &Cursor::default(), 10);
        assert_eq!((p.allocs.len(), p.jobs.len(), p.next), (1, 1, None));
    }

    #[test]
    fn a_request_starts_after_its_page_its_index_or_at_the_start() {
        let c = Cursor {
            index: 7,
            alloc_id: "x".into(),
        };
        assert_eq!(Cursor::of_request(Some(c.clone()), 3, true), c);
        assert_eq!(Cursor::of_request(None, 3, true), Cursor::default());
        assert_eq!(Cursor::of_request(None, 3, false).index, 3);
        assert_eq!(Cursor::continued(7, "x"), Some(c));
        assert_eq!(Cursor::continued(0, ""), None, "a fresh request");
    }
}
