//! The HTTP handlers: pull the key, client and body out of the request, hand the events to the
//! ingestion core, and answer.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use retailmind_connectors::clock::now_ms;
use retailmind_schema::wire::{read_native_batch, BatchEnvelope, RawEvent};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::access::Caller;
use crate::body;
use crate::client_ip::{client_ip, PeerIp};
use crate::config::KeyKind;
use crate::error::{CollectorError, ErrorBody};
use crate::ingest::{self, beginning, BatchId, BatchResponse, Candidate, RequestMeta};
use crate::router::AppState;
use crate::segment;
use crate::segment_spec::{BatchBody, SegmentMessage};

/// Query parameters every ingestion endpoint understands.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// The write key, for senders that cannot set headers (a browser's `sendBeacon`).
    key: Option<String>,
    /// `gzip` when the body is gzip-compressed but Content-Encoding could not be set.
    compression: Option<String>,
}

/// Everything the handlers need from the request besides the body: the state, the query, the
/// headers and the peer as the front (TCP server or Lambda adapter) knows it.
pub struct Front {
    state: AppState,
    headers: HeaderMap,
    query: IngestQuery,
    peer: Option<PeerIp>,
}

impl FromRequestParts<AppState> for Front {
    type Rejection = CollectorError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A query axum cannot read (`?key=a&key=b`) is answered in the collector's JSON, not
        // with axum's plain-text 400.
        let Query(query) =
            Query::from_request_parts(parts, state)
                .await
                .map_err(|e: QueryRejection| CollectorError::InvalidParameter {
                    field: "query",
                    reason: e.body_text(),
                })?;
        // The Lambda adapter's request context first, then the TCP connection.
        let peer = parts.extensions.get::<PeerIp>().copied().or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| PeerIp(addr.ip()))
        });
        Ok(Front {
            state: state.clone(),
            headers: parts.headers.clone(),
            query,
            peer,
        })
    }
}

impl Front {
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// A header's text; one that is there but not visible ASCII is refused, naming it, rather
    /// than taken for absent.
    pub(crate) fn header(&self, name: &'static str) -> Result<Option<&str>, CollectorError> {
        match self.headers.get(name).map(|v| v.to_str()) {
            None => Ok(None),
            Some(Ok(text)) => Ok(Some(text)),
            Some(Err(_)) => Err(CollectorError::InvalidHeader {
                field: name,
                reason: "must be visible ASCII".into(),
            }),
        }
    }

    pub(crate) fn meta(&self) -> RequestMeta {
        RequestMeta {
            client_ip: client_ip(&self.headers, self.peer, self.state.trusted_proxy_hops),
            // The header is not validated as the body's fields are, yet goes into every event
            // of the request: cut to the schema's text limit, so that a header of hundreds of
            // kilobytes neither multiplies in memory nor makes each event too large to store.
            user_agent: self
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|agent| !agent.is_empty())
                .map(|agent| beginning(agent, self.state.limits.max_text_len).to_owned()),
        }
    }

    /// Checks the key (from the query, `X-Write-Key`, Basic or Bearer auth, or the body) for an
    /// endpoint that needs a key of kind `need`.
    pub(crate) fn admit(
        &self,
        body_key: Option<&str>,
        meta: &RequestMeta,
        need: KeyKind,
    ) -> Result<Caller, CollectorError> {
        let key = self
            .query
            .key
            .clone()
            .or_else(|| key_in_headers(&self.headers))
            .or_else(|| body_key.map(str::to_owned));
        // In open mode no key is needed, so none is missed either.
        if key.is_none() && !self.state.access.is_open() {
            if let Some(refusal) = unusable_key_header(&self.headers) {
                return Err(refusal);
            }
        }
        let origin = self
            .headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        self.state
            .access
            .admit(key.as_deref(), origin, meta.client_ip, need)
    }

    /// Admits the caller of an event endpoint whose body was `read` (`key_of` finds a key in
    /// it). A body that could not be read as a batch is refused with its own error (a 400 says
    /// more than a 401 about a body whose key could not be found), and kept in the dead letters
    /// when a key from outside the body was admitted.
    async fn admit_or_refuse<T>(
        &self,
        read: Result<T, CollectorError>,
        key_of: impl Fn(&T) -> Option<&str>,
        bytes: &[u8],
    ) -> Result<(RequestMeta, Caller, T), CollectorError> {
        let meta = self.meta();
        let body_key = read.as_ref().ok().and_then(&key_of);
        let admitted = self.admit(body_key, &meta, KeyKind::Publishable);
        match (read, admitted) {
            (Ok(read), admitted) => Ok((meta, admitted?, read)),
            (Err(refusal), Err(_)) => Err(refusal),
            (Err(refusal), Ok(caller)) => {
                let field = match refusal {
                    CollectorError::TooManyEvents { .. } => "events",
                    _ => "body",
                };
                ingest::keep_refused_body(&self.state, &caller, bytes, field, &refusal).await?;
                Err(refusal)
            }
        }
    }

    pub(crate) async fn body(&self, body: Body) -> Result<bytes::Bytes, CollectorError> {
        body::read(&self.headers, self.gzip()?, body, self.state.max_body_bytes).await
    }

    /// Whether `?compression=` says gzip. Any other compression is refused: read as it is, the
    /// body would be judged "not a batch", and its bytes mangled in the dead letters.
    fn gzip(&self) -> Result<bool, CollectorError> {
        match self.query.compression.as_deref().map(str::trim) {
            None | Some("") => Ok(false),
            Some(c) if c.eq_ignore_ascii_case("gzip") => Ok(true),
            Some(c) if c.eq_ignore_ascii_case("identity") || c.eq_ignore_ascii_case("none") => {
                Ok(false)
            }
            Some(other) => Err(CollectorError::InvalidParameter {
                field: "compression",
                reason: format!("is {other:?}: the only compression taken is gzip"),
            }),
        }
    }

    /// The body of an event endpoint. One that arrived whole but does not decompress is kept
    /// in the dead letters (its events may be recoverable) when a key from outside the body was
    /// admitted, as a body that is not a batch is.
    pub(crate) async fn event_body(&self, body: Body) -> Result<bytes::Bytes, CollectorError> {
        let read = match self.gzip() {
            Ok(gzip) => {
                body::read_keeping(&self.headers, gzip, body, self.state.max_body_bytes).await
            }
            // Kept as it came (base64), as a body that does not decompress.
            Err(refusal) => {
                match body::read(&self.headers, false, body, self.state.max_body_bytes).await {
                    Ok(raw) => Err((refusal, Some(raw))),
                    Err(_) => Err((refusal, None)),
                }
            }
        };
        match read {
            Ok(bytes) => Ok(bytes),
            Err((refusal, Some(compressed))) => {
                let meta = self.meta();
                if let Ok(caller) = self.admit(None, &meta, KeyKind::Publishable) {
                    ingest::keep_undecompressed_body(&self.state, &caller, &compressed, &refusal)
                        .await?;
                }
                Err(refusal)
            }
            Err((refusal, None)) => Err(refusal),
        }
    }
}

/// The write key in the request's headers: `X-Write-Key`, the Basic-auth user name, or a
/// Bearer token, in that order.
pub(crate) fn key_in_headers(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-write-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| basic_auth_user(headers))
        .or_else(|| bearer_token(headers))
}

/// The `Authorization` header's scheme, lower-cased (schemes are case-insensitive), and its
/// credentials.
fn authorization(headers: &HeaderMap) -> Option<(String, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    Some((scheme.to_ascii_lowercase(), credentials.trim()))
}

/// Server-to-server callers may send their secret key as `Authorization: Bearer <key>`.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let (scheme, token) = authorization(headers)?;
    (scheme == "bearer" && !token.is_empty()).then(|| token.to_owned())
}

/// Segment's libraries send the write key as the Basic auth user name.
fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let (scheme, encoded) = authorization(headers)?;
    if scheme != "basic" {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or_default().to_owned()).filter(|k| !k.is_empty())
}

/// Why an `X-Write-Key`, or a Basic or Bearer `Authorization` header, gave no key: said as it
/// is, rather than answered as if no key had been sent. Other schemes are someone else's (an
/// API Gateway's SigV4 signature) and left alone.
fn unusable_key_header(headers: &HeaderMap) -> Option<CollectorError> {
    if headers
        .get("x-write-key")
        .is_some_and(|v| v.to_str().is_err())
    {
        return Some(CollectorError::InvalidHeader {
            field: "X-Write-Key",
            reason: "must be visible ASCII".into(),
        });
    }
    let value = headers.get(header::AUTHORIZATION)?;
    let reason = match value.to_str().ok().map(str::trim) {
        None => "must be visible ASCII",
        Some(value) => {
            let scheme = value.split(' ').next().unwrap_or_default();
            if scheme.eq_ignore_ascii_case("basic") {
                "Basic credentials must be base64 of `<write key>:` (the key as the user name)"
            } else if scheme.eq_ignore_ascii_case("bearer") {
                "Bearer must be followed by the key"
            } else {
                return None;
            }
        }
    };
    Some(CollectorError::InvalidHeader {
        field: "Authorization",
        reason: reason.into(),
    })
}

/// The answers of every event endpoint, for the OpenAPI document (never built: the handlers
/// answer with [`BatchResponse`] or a [`CollectorError`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum IngestAnswers {
    #[response(status = 200, description = "Stored; rejected events listed")]
    Stored(BatchResponse),
    #[response(status = 400, description = "Not JSON, or not a batch")]
    Malformed(ErrorBody),
    #[response(status = 401, description = "Missing or unknown write key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "Origin not allowed for the key")]
    Forbidden(ErrorBody),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Unsupported content type or encoding")]
    UnsupportedMedia(ErrorBody),
    #[response(status = 429, description = "Rate limited; see Retry-After")]
    RateLimited(ErrorBody),
    #[response(
        status = 503,
        description = "Stream unavailable or at capacity; see Retry-After"
    )]
    Unavailable(ErrorBody),
}

/// Events from the tracker (`{batch_id, sent_at, events}`) or Segment (`{batch: [...]}`).
///
/// Each event is judged on its own: the answer lists how many were accepted and, for each
/// rejected one, its index, the field and the reason. 200 only after the stream stored them.
#[utoipa::path(
    post,
    path = "/v1/batch",
    params(IngestQuery),
    request_body(content = BatchBody, content_type = "text/plain",
        description = "JSON, as text/plain (no CORS preflight) or application/json; gzip allowed"),
    responses(IngestAnswers)
)]
pub async fn post_batch(front: Front, body: Body) -> Result<Json<BatchResponse>, CollectorError> {
    let bytes = front.event_body(body).await?;
    let read = read_batch(&front.state, &bytes);
    let (meta, caller, batch) = front
        .admit_or_refuse(read, |batch| batch.write_key.as_deref(), &bytes)
        .await?;
    Ok(Json(
        ingest::ingest(
            &front.state,
            &caller,
            &meta,
            batch.batch_id,
            batch.candidates,
        )
        .await?,
    ))
}

/// Segment's batch under the path its Ruby and Java libraries post to: the same as
/// [`post_batch`].
#[utoipa::path(
    post,
    path = "/v1/import",
    params(IngestQuery),
    request_body(content = BatchBody, content_type = "application/json",
        description = "Segment's `{batch: [...]}`, as `/v1/batch` takes it; gzip allowed"),
    responses(IngestAnswers)
)]
pub async fn post_import(front: Front, body: Body) -> Result<Json<BatchResponse>, CollectorError> {
    post_batch(front, body).await
}

/// A batch body as read, before any key is checked.
struct ReadBatch<'a> {
    batch_id: BatchId,
    write_key: Option<String>,
    candidates: Vec<Candidate<'a>>,
}

/// Reads a batch body: ours in one pass, anything else (Segment's, or a body with an error to
/// name) as a general envelope.
fn read_batch<'a>(state: &AppState, bytes: &'a [u8]) -> Result<ReadBatch<'a>, CollectorError> {
    if let Some(batch) = read_native_batch(bytes, state.max_events_per_batch) {
        return Ok(ReadBatch {
            batch_id: BatchId::Sent(batch.batch_id.ok_or_else(missing_batch_id)?),
            write_key: batch.write_key,
            candidates: batch.events.into_iter().map(Candidate::native).collect(),
        });
    }
    let parsed: BatchEnvelope =
        serde_json::from_slice(bytes).map_err(|e| CollectorError::MalformedBatch(e.to_string()))?;
    let now = now_ms();
    // Counted before anything is made of each element: a megabyte of `0,0,0,…` is half a
    // million elements, and a candidate is a kilobyte.
    let (batch_id, candidates) = match (parsed.events, parsed.batch) {
        (Some(_), Some(_)) => {
            return Err(CollectorError::MalformedBatch(
                "both `events` and `batch`: send our events or Segment messages, not both".into(),
            ))
        }
        (Some(events), None) => {
            ingest::within_batch_limit(state, events.len())?;
            (
                BatchId::Sent(parsed.batch_id.ok_or_else(missing_batch_id)?),
                events
                    .into_iter()
                    .map(|raw| Candidate::native(RawEvent::new(raw.get())))
                    .collect::<Vec<_>>(),
            )
        }
        (None, Some(messages)) => {
            ingest::within_batch_limit(state, messages.len())?;
            (
                // Segment batches carry no id; every message has its own, kept by `convert`.
                parsed.batch_id.map_or_else(BatchId::made, BatchId::Sent),
                messages
                    .into_iter()
                    .map(|raw| {
                        Candidate::converted(
                            raw,
                            segment::convert(raw, None, now, parsed.context, &state.segment),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        }
        (None, None) => {
            return Err(CollectorError::MalformedBatch(
                "missing field `events` (or `batch` for Segment messages)".into(),
            ))
        }
    };
    Ok(ReadBatch {
        batch_id,
        write_key: parsed.write_key,
        candidates,
    })
}

fn missing_batch_id() -> CollectorError {
    CollectorError::MalformedBatch("missing field `batch_id`".into())
}

/// A handler for one Segment message of a type, under its path. Each needs its own
/// `utoipa::path` for the OpenAPI document, hence one function per type.
macro_rules! segment_message_route {
    ($(#[doc = $doc:literal])* $name:ident, $kind:literal, $path:literal) => {
        $(#[doc = $doc])*
        /// Answered like `/v1/batch` (index 0 rejected when it is not valid).
        #[utoipa::path(post, path = $path, params(IngestQuery),
            request_body(content = SegmentMessage, content_type = "application/json"),
            responses(IngestAnswers))]
        pub async fn $name(
            front: Front,
            body: Body,
        ) -> Result<Json<BatchResponse>, CollectorError> {
            segment_message($kind, front, body).await
        }
    };
}

segment_message_route!(
    /// One Segment `track` message.
    post_track, "track", "/v1/track"
);
segment_message_route!(
    /// One Segment `page` message.
    post_page, "page", "/v1/page"
);
segment_message_route!(
    /// One Segment `identify` message.
    post_identify, "identify", "/v1/identify"
);
segment_message_route!(
    /// One Segment `screen` message (apps).
    post_screen, "screen", "/v1/screen"
);
segment_message_route!(
    /// One Segment `group` message.
    post_group, "group", "/v1/group"
);
segment_message_route!(
    /// One Segment `alias` message.
    post_alias, "alias", "/v1/alias"
);

/// One Segment message of `segment_type` (the message's own `type` wins).
async fn segment_message(
    segment_type: &'static str,
    front: Front,
    body: Body,
) -> Result<Json<BatchResponse>, CollectorError> {
    let bytes = front.event_body(body).await?;
    #[derive(Deserialize)]
    struct KeyOnly {
        #[serde(default, rename = "writeKey")]
        write_key: Option<String>,
    }
    let read = serde_json::from_slice::<&RawValue>(&bytes)
        .and_then(|raw| Ok((raw, serde_json::from_str::<KeyOnly>(raw.get())?)))
        .map_err(|e| CollectorError::MalformedBatch(e.to_string()));
    let (meta, caller, (raw, _)) = front
        .admit_or_refuse(read, |(_, key)| key.write_key.as_deref(), &bytes)
        .await?;
    let candidate = Candidate::converted(
        raw,
        segment::convert(
            raw,
            Some(segment_type),
            now_ms(),
            None,
            &front.state.segment,
        ),
    );
    Ok(Json(
        ingest::ingest(
            &front.state,
            &caller,
            &meta,
            BatchId::made(),
            vec![candidate],
        )
        .await?,
    ))
}

/// A path the collector does not serve: answered with a JSON error like every other refusal,
/// not an empty body.
pub async fn no_such_route(method: axum::http::Method, uri: axum::http::Uri) -> CollectorError {
    CollectorError::NoSuchRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// A known path asked with a method it does not take. axum adds the `Allow` header.
pub async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> CollectorError {
    CollectorError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

/// Readiness: the stream takes writes (with a spool, or the spool has room for them).
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "the stream (and the spool, if any) or the orders database cannot take writes; the dead letters are not asked")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.sink.ready().await {
        // The SDK's words name the stream's ARN and the account: the log only.
        tracing::warn!(error = %e, "event stream not ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the event stream does not answer".to_owned(),
        );
    }
    // Not the dead letters: every instance shares them, and one whose dead letters are down
    // still takes every batch without a rejected event (those with one are answered 503 and
    // counted in `collector_dead_letter_failures_total`). Failing readiness on them would take
    // the whole fleet out of service for the rare batch.
    if let Some(commerce) = &state.commerce {
        if let Err(e) = commerce.ready().await {
            tracing::warn!(error = %e, "orders database not ready");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the orders database does not answer".to_owned(),
            );
        }
    }
    (StatusCode::OK, "ready".to_owned())
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Read at the scrape: nothing on the request path, and always current.
    for (of, reach) in [
        ("batches", state.recent_batches.remembered_for()),
        ("events", state.recent_events.remembered_for()),
    ] {
        metrics::gauge!(crate::metrics::DEDUP_MEMORY_SECONDS, "of" => of).set(reach.as_secs_f64());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}
