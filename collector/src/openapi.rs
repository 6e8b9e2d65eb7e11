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

pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
