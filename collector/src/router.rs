//! The collector's HTTP surface and its shared state.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use retailmind_connectors::EventSink;
use retailmind_schema::Limits;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::config::CollectorConfig;
use crate::ingest;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub sink: Arc<dyn EventSink>,
    pub limits: Arc<Limits>,
    pub max_body_bytes: usize,
    pub max_events_per_batch: usize,
}

impl AppState {
    pub fn new(sink: Arc<dyn EventSink>, config: &CollectorConfig) -> Self {
        AppState {
            sink,
            limits: Arc::new(Limits::default()),
            max_body_bytes: config.max_body_bytes,
            max_events_per_batch: config.max_events_per_batch,
        }
    }
}

pub fn router(state: AppState, config: &CollectorConfig) -> Router {
    Router::new()
        .route("/v1/batch", post(ingest::post_batch))
        .route("/healthz", get(healthz))
        // The handler reads the body itself, with its own limit and error.
        .layer(DefaultBodyLimit::disable())
        .layer(cors(config))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

fn cors(config: &CollectorConfig) -> CorsLayer {
    let origins = if config.allowed_origins.is_empty() {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::CONTENT_ENCODING])
        .max_age(std::time::Duration::from_secs(3600))
}
