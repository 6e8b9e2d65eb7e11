//! The collector's HTTP surface and its shared state.

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use retailmind_commerce::CommerceStore;
use retailmind_connectors::{EventSink, ModelStore, SessionStore, StreamRecord};
use retailmind_schema::Limits;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::access::Access;
use crate::config::{CollectorConfig, UnknownFields};
use crate::dedup::{RecentBatches, RecentEvents};
use crate::error::CollectorError;
use crate::handlers;
use crate::recs::Recommender;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub sink: Arc<dyn EventSink>,
    pub dead_letters: Arc<dyn EventSink>,
    pub access: Arc<Access>,
    pub recent_batches: Arc<RecentBatches>,
    pub recent_events: Arc<RecentEvents>,
    pub limits: Arc<Limits>,
    pub max_body_bytes: usize,
    pub max_events_per_batch: usize,
    /// Writes under way, bounded like the requests: a write goes on after its client left (see
    /// `ingest`), and the request's own permit goes with the request.
    pub writes_in_flight: Arc<tokio::sync::Semaphore>,
    /// How long a request waits for its write ([`CollectorConfig::write_timeout_secs`]).
    pub write_timeout: Duration,
    pub max_event_bytes: usize,
    pub trusted_proxy_hops: usize,
    pub truncate_ip: bool,
    pub unknown_fields: UnknownFields,
    /// `GET /v1/recommendations`: the live model and the session memory fed by ingestion.
    pub recommender: Arc<Recommender>,
    /// Orders and customer profiles; `None` answers their endpoints with 503.
    pub commerce: Option<Arc<dyn CommerceStore>>,
    /// The session store, where forgetting a customer deletes their sessions.
    pub sessions: Option<Arc<dyn SessionStore>>,
    /// Page URL of an order's purchase event when the order names none.
    pub commerce_page_url: Arc<str>,
    /// How Segment messages are read ([`crate::config::SegmentConfig`]).
    pub segment: Arc<retailmind_segment::Options>,
}

impl AppState {
    /// Appends `record` to `sink` if it is acknowledged within the write timeout, else
    /// [`CollectorError::WriteTimedOut`]: the append is dropped (what it stored stays stored;
    /// the sender's retry writes it again under the same id, which consumers drop as a repeat).
    /// For writes a request can leave undone; a batch's write, which holds claims, runs to its
    /// end in a task of its own instead.
    pub(crate) async fn append_in_time(
        &self,
        sink: &Arc<dyn EventSink>,
        record: StreamRecord,
    ) -> Result<(), CollectorError> {
        match tokio::time::timeout(self.write_timeout, sink.append(vec![record])).await {
            Ok(appended) => appended.map_err(CollectorError::SinkUnavailable),
            Err(_) => Err(self.write_timed_out()),
        }
    }

    pub(crate) fn write_timed_out(&self) -> CollectorError {
        CollectorError::WriteTimedOut {
            secs: self.write_timeout.as_secs(),
        }
    }

    pub fn new(
        sink: Arc<dyn EventSink>,
        dead_letters: Arc<dyn EventSink>,
        config: &CollectorConfig,
    ) -> Self {
        // Install the metrics recorder before the first event is counted.
        crate::metrics::handle();
        AppState {
            sink,
            dead_letters,
            access: Arc::new(Access::new(config)),
            recent_batches: Arc::new(RecentBatches::new(
                Duration::from_secs(config.dedup_window_secs),
                config.dedup_max_batches,
            )),
            recent_events: Arc::new(RecentEvents::new(
                Duration::from_secs(config.dedup_window_secs),
                config.dedup_max_events,
            )),
            limits: Arc::new(Limits::from(&config.validation)),
            max_body_bytes: config.max_body_bytes,
            max_events_per_batch: config.max_events_per_batch,
            writes_in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.max_in_flight_requests.max(1),
            )),
            write_timeout: Duration::from_secs(config.write_timeout_secs.max(1)),
            max_event_bytes: config.max_event_bytes,
            trusted_proxy_hops: config.trusted_proxy_hops,
            truncate_ip: config.truncate_ip,
            unknown_fields: config.unknown_fields,
            recommender: Arc::new(Recommender::new(&config.recommendations)),
            commerce: None,
            sessions: None,
            commerce_page_url: config.commerce.default_page_url.as_str().into(),
            segment: Arc::new(retailmind_segment::Options {
                default_currency: config.segment.default_currency.clone(),
            }),
        }
    }

    /// Opens the orders database the configuration names (by default SQLite in the embedded
    /// backend's folder) and serves it; without one (AWS backend, no `commerce.database_url`)
    /// those endpoints answer 503.
    pub async fn with_configured_commerce(
        self,
        config: &CollectorConfig,
        sessions: Arc<dyn SessionStore>,
    ) -> Result<Self, retailmind_commerce::CommerceError> {
        match config
            .commerce
            .open(config.backend.embedded_data_dir())
            .await?
        {
            Some(store) => Ok(self.with_commerce(store, sessions)),
            None => {
                tracing::warn!(
                    "commerce.database_url is not set: /v1/transactions and /v1/customers answer 503"
                );
                Ok(self)
            }
        }
    }

    /// Serves `/v1/transactions` and `/v1/customers` from `store`; forgetting a customer also
    /// deletes their sessions from `sessions`.
    pub fn with_commerce(
        mut self,
        store: Arc<dyn CommerceStore>,
        sessions: Arc<dyn SessionStore>,
    ) -> Self {
        self.commerce = Some(store);
        self.sessions = Some(sessions);
        self
    }

    /// Serves the model saved in `store`: loads it now and polls its version from then on (in a
    /// task that ends when the last clone of this state is dropped). Without it the endpoint
    /// answers from the session memory and an empty model.
    pub fn with_model_store(self, store: Arc<dyn ModelStore>) -> Self {
        let recs = &self.recommender;
        recs.live
            .spawn_reloader(store, recs.model_name.clone(), recs.reload_interval);
        self
    }
}

pub fn router(state: AppState, config: &CollectorConfig) -> Router {
    // Past this many requests at once, new ones are refused with 503 instead of queueing: memory
    // stays bounded under overload and senders keep their events for a retry. One count for the
    // whole service: a router layer is made once per route, and a plain concurrency limit
    // would count each route apart.
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            CollectorError::Overloaded.into_response()
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_in_flight_requests.max(1),
        ));
    let ingestion = Router::new()
        .route("/v1/batch", post(handlers::post_batch))
        .route("/v1/import", post(handlers::post_import))
        .route("/v1/track", post(handlers::post_track))
        .route("/v1/page", post(handlers::post_page))
        .route("/v1/identify", post(handlers::post_identify))
        .route("/v1/screen", post(handlers::post_screen))
        .route("/v1/group", post(handlers::post_group))
        .route("/v1/alias", post(handlers::post_alias))
        // analytics.js posts each call to its type's first letter, and batches to `b`.
        .route("/v1/t", post(handlers::post_track))
        .route("/v1/p", post(handlers::post_page))
        .route("/v1/i", post(handlers::post_identify))
        .route("/v1/s", post(handlers::post_screen))
        .route("/v1/g", post(handlers::post_group))
        .route("/v1/a", post(handlers::post_alias))
        .route("/v1/b", post(handlers::post_batch))
        .route("/v1/recommendations", get(crate::recs::get_recommendations))
        // Before the layers, so that CORS still answers a preflight (OPTIONS) of these routes.
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // The handlers read the body themselves, with their own limit and error.
        .layer(DefaultBodyLimit::disable())
        .layer(shed.clone())
        .layer(cors(state.access.clone()));
    // Server-to-server only (secret keys), so no CORS layer: browsers must not call these.
    let commerce = Router::new()
        .route("/v1/transactions", post(crate::commerce::post_transaction))
        .route(
            "/v1/transactions/{order_id}",
            get(crate::commerce::get_transaction).patch(crate::commerce::post_transaction_status),
        )
        .route(
            "/v1/transactions/{order_id}/status",
            post(crate::commerce::post_transaction_status),
        )
        .route(
            "/v1/customers/{customer_id}",
            get(crate::commerce::get_customer).delete(crate::commerce::delete_customer),
        )
        .route(
            "/v1/customers/{customer_id}/traits",
            put(crate::commerce::put_customer_traits),
        )
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(shed);
    Router::new()
        .merge(ingestion)
        .merge(commerce)
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        // Set on the routes registered so far, so after them.
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::no_such_route)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The request's span names its method and path only: the query string can carry a write key
/// (`?key=`), and keys stay out of logs at every level.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// CORS answered per write key: a page may read the answer only if its origin is one of the
/// key's origins, the key found as admission finds it (query, then headers). The tracker sends
/// the key in the query string (`?key=`), where the preflight sees it. analytics.js sends it in
/// the `Authorization` header (and the body), which a preflight does not carry: a request with
/// no key in its query or headers (such a preflight) is let through for an origin that some
/// publishable key lists. The request that follows carries its key and is judged by it: a
/// publishable key's answer is readable where that key's origins allow (elsewhere admission
/// answers 403), a secret key's never.
fn cors(access: Arc<Access>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, parts: &axum::http::request::Parts| {
                // Decoded as the handlers decode it: the tracker percent-encodes the key.
                #[derive(serde::Deserialize)]
                struct KeyParam {
                    key: Option<String>,
                }
                let key = axum::extract::Query::<KeyParam>::try_from_uri(&parts.uri)
                    .ok()
                    .and_then(|q| q.0.key)
                    .or_else(|| handlers::key_in_headers(&parts.headers));
                origin
                    .to_str()
                    .is_ok_and(|o| access.cors_allows(key.as_deref(), o))
            },
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-write-key"),
            // analytics.js counts its retries in this header.
            header::HeaderName::from_static("x-retry-count"),
        ])
        // The tracker reads Retry-After to pace its retries.
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}
