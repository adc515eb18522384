//! The `Search` gRPC service (`/v1/search`, `/v1/search/fuzzy`): `yurt_core::search` over a
//! snapshot of the state, after a consistent read, showing what the caller's token may see
//! (`list-jobs` in a namespace, `node:read`, the namespace, `variables` `list`).

use tonic::{Request, Response, Status};
use yurt_core::search::{self, Visible};
use yurt_proto::v1::search_server::Search;
use yurt_proto::v1::*;
use yurt_types::acl::{Acl, Level, Need, LIST_JOBS, VAR_LIST};

use crate::read::{stale, Reads};

type Reply<T> = Result<Response<T>, Status>;

#[derive(Clone)]
pub struct SearchService {
    pub reads: Reads,
}

/// A token's view (none: ACLs off, everything visible).
struct Caller(Option<Acl>);

impl Visible for Caller {
    fn object(&self, namespace: Option<&str>) -> bool {
        self.0.as_ref().is_none_or(|a| match namespace {
            Some(ns) => a.allows(Need::Namespace(
                yurt_types::acl::namespace_or_default(ns),
                LIST_JOBS,
            )),
            None => a.allows(Need::Node(Level::Read)),
        })
    }

    fn variable(&self, namespace: &str, path: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|a| a.allows(Need::Variable(namespace, path, VAR_LIST)))
    }

    fn namespace(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|a| a.sees_namespace(name))
    }
}

#[tonic::async_trait]
impl Search for SearchService {
    async fn prefix(&self, req: Request<SearchRequest>) -> Reply<SearchResponse> {
        self.reads.barrier(stale(&req)).await?;
        let caller = Caller(self.reads.acl_of(&req)?);
        let r = req.get_ref();
        let state = self.reads.state.snapshot();
        let found = search::prefix(&state, &r.text, &r.context, &caller)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(SearchResponse {
            matches: found
                .matches
                .into_iter()
                .map(|(c, ids)| (c, SearchIds { ids }))
                .collect(),
            truncations: found.truncated.into_iter().collect(),
            index: state.index,
        }))
    }

    async fn fuzzy(&self, req: Request<SearchRequest>) -> Reply<FuzzySearchResponse> {
        self.reads.barrier(stale(&req)).await?;
        let caller = Caller(self.reads.acl_of(&req)?);
        let r = req.get_ref();
        let state = self.reads.state.snapshot();
        let found = search::fuzzy(&state, &r.text, &r.context, &caller)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(FuzzySearchResponse {
            matches: found
                .matches
                .into_iter()
                .map(|(c, ms)| {
                    let matches = ms
                        .into_iter()
                        .map(|m| FuzzyMatch {
                            id: m.id,
                            scope: m.scope,
                        })
                        .collect();
                    (c, FuzzyMatches { matches })
                })
                .collect(),
            truncations: found.truncated.into_iter().collect(),
            index: state.index,
        }))
    }
}
