//! The OpenAPI document served at `/openapi.json`, generated from the handlers' annotations and
//! the shared schema types, so it cannot drift from what the collector accepts.

use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::handlers;
use crate::ingest::{BatchResponse, RejectedEvent, RejectedField};
use crate::recs::{Placement, RecommendationsResponse, RecommendedItem};
use crate::segment_spec::{BatchBody, SegmentBatch, SegmentMessage};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RetailMind collector",
        description = "Ingestion of shop clickstream events (RetailMind tracker and Segment spec), orders and customer profiles, and product recommendations."
    ),
    paths(
        handlers::post_batch,
        handlers::post_import,
        handlers::post_track,
        handlers::post_page,
        handlers::post_identify,
        handlers::post_screen,
        handlers::post_group,
        handlers::post_alias,
        crate::recs::handler::get_recommendations,
        crate::commerce::post_transaction,
        crate::commerce::get_transaction,
        crate::commerce::post_transaction_status,
        crate::commerce::get_customer,
        crate::commerce::put_customer_traits,
        crate::commerce::delete_customer,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics
    ),
    components(schemas(
        BatchBody,
        SegmentBatch,
        SegmentMessage,
        BatchResponse,
        RejectedEvent,
        RejectedField,
        ErrorBody,
        ErrorDetail,
        RecommendationsResponse,
        RecommendedItem,
        Placement
    ))
)]
pub struct ApiDoc;

/// analytics.js posts each call to the first letter of its type, and its batches to `b`: the
/// same operations as under the full names (`router` serves both).
const ANALYTICS_JS_PATHS: [(&str, &str); 7] = [
    ("/v1/t", "/v1/track"),
    ("/v1/p", "/v1/page"),
    ("/v1/i", "/v1/identify"),
    ("/v1/s", "/v1/screen"),
    ("/v1/g", "/v1/group"),
    ("/v1/a", "/v1/alias"),
    ("/v1/b", "/v1/batch"),
];

/// The document: the annotated operations, and analytics.js's short paths as copies of theirs
/// (with operation ids of their own, which OpenAPI requires to be unique).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (short, full) in ANALYTICS_JS_PATHS {
        let Some(mut item) = doc.paths.paths.get(full).cloned() else {
            continue;
        };
        if let Some(op) = item.post.as_mut() {
            op.operation_id = op
                .operation_id
                .as_ref()
                .map(|id| format!("{id}_{}", short.trim_start_matches("/v1/")));
            op.description = Some(format!("As `{full}`: the path analytics.js posts to."));
        }
        doc.paths.paths.insert(short.to_owned(), item);
    }
    doc
}

pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}
