//! Search over HTTP, in Nomad's shape: `POST /v1/search` (`Prefix`, `Context`) answers
//! `{"Matches": {context: [ID...]}, "Truncations": {context: bool}}`, `POST /v1/search/fuzzy`
//! (`Text`, `Context`) the same with `{"ID", "Scope"}` matches.

use yurt_proto::v1::search_server::Search;

use super::*;

/// `/v1/search` and `/v1/search/fuzzy`.
pub(super) async fn search(api: &Api, rq: &Rq, fuzzy: bool, body: &Value) -> Answer {
    let svc = api.search();
    let context = string_field(body, "Context")?;
    if fuzzy {
        let text = string_field(body, "Text")?;
        let r = Search::fuzzy(&svc, rq.of(SearchRequest { text, context }))
            .await?
            .into_inner();
        let matches: serde_json::Map<String, Value> = r
            .matches
            .into_iter()
            .map(|(c, m)| {
                let list: Vec<Value> = m
                    .matches
                    .into_iter()
                    .map(|f| serde_json::json!({ "ID": f.id, "Scope": f.scope }))
                    .collect();
                (c, Value::from(list))
            })
            .collect();
        return Ok(serde_json::json!({ "Matches": matches, "Truncations": r.truncations }));
    }
    let text = string_field(body, "Prefix")?;
    let r = Search::prefix(&svc, rq.of(SearchRequest { text, context }))
        .await?
        .into_inner();
    let matches: serde_json::Map<String, Value> = r
        .matches
        .into_iter()
        .map(|(c, ids)| (c, Value::from(ids.ids)))
        .collect();
    Ok(serde_json::json!({ "Matches": matches, "Truncations": r.truncations }))
}
