//! The search both session-kNN strategies share: sample recent sessions that share an item with
//! the current one, score each with the strategy's similarity, keep the `k` most similar.

use std::cmp::Reverse;

use super::top_k;
use crate::model::ModelState;
use crate::query::QueryContext;
use crate::sessions::{SessionRecord, SessionSeq};

/// The `k` most similar of the `sample` most recent sessions sharing an item with `ctx.clicks`,
/// most similar first, each with its record; sessions with similarity 0 are left out.
pub(crate) fn nearest_sessions<'m>(
    model: &'m ModelState,
    ctx: &QueryContext,
    sample: usize,
    k: usize,
    similarity: impl Fn(&SessionRecord) -> f64,
) -> Vec<(&'m SessionRecord, f64)> {
    let mut distinct = ctx.clicks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let sessions = model.sessions();
    let scored: Vec<(Reverse<SessionSeq>, f64)> = sessions
        .recent_sessions_with(&distinct, ctx.session, sample)
        .into_iter()
        .filter_map(|seq| {
            let sim = similarity(sessions.record(seq)?);
            (sim > 0.0).then_some((Reverse(seq), sim))
        })
        .collect();
    top_k(scored, k)
        .into_iter()
        .filter_map(|(Reverse(seq), sim)| Some((sessions.record(seq)?, sim)))
        .collect()
}
