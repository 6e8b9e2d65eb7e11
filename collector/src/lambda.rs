//! The collector as an AWS Lambda function behind Amazon API Gateway, from the same code as the
//! server: `lambda_http` turns each API Gateway proxy event (REST API, payload 1.0, or HTTP API,
//! payload 2.0) into an HTTP request, the same [`router`] answers it, and `lambda_http` turns the
//! answer into the proxy response. [`ApiGatewayLayer`] adapts the request in between.
//!
//! # Client IP
//!
//! API Gateway ends the client's connection, so the address in the request context
//! (`requestContext.identity.sourceIp` for a REST API, `requestContext.http.sourceIp` for an HTTP
//! API) is the client's, as the TCP peer is for the server. The layer puts it in the request as
//! [`PeerIp`], which the handlers prefer to any header.
//!
//! Keep `trusted_proxy_hops` at 0 (the default) behind API Gateway. `X-Forwarded-For` arrives
//! with whatever the client wrote into it, followed by entries that depend on the endpoint type (an
//! edge-optimized REST API also appends its CloudFront hop), so reading it is how a forged or
//! wrong address gets in. Only with a proxy of your own in front of API Gateway (whose address is
//! then the `sourceIp`) set it, to the number of entries that API Gateway and your proxies append
//! after the client's, checked against a real request.
//!
//! # Bodies
//!
//! API Gateway sends binary bodies base64-encoded (`isBase64Encoded: true`); `lambda_http` decodes
//! them, so a gzip body reaches the handlers as the gzip bytes and is decompressed as on the
//! server (`Content-Encoding: gzip` or `?compression=gzip`). An HTTP API needs nothing for this.
//! A REST API passes a binary body intact only when its content type is one of the API's binary
//! media types: set them to `*/*`, or the gzip bytes are mangled before they get here.
//!
//! # Stage
//!
//! `lambda_http` puts a named stage in front of the path (`/prod/v1/batch`) and an HTTP API's
//! `rawPath` already starts with it; the routes have no stage, so the layer routes on the path
//! below the stage (`/v1/batch`), whatever the stage is called. Map the API at the root of a
//! custom domain (an empty base path).

use std::net::IpAddr;
use std::task::{Context, Poll};

use axum::http::uri::PathAndQuery;
use axum::http::Uri;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tower::{Layer, Service};

use crate::client_ip::PeerIp;
use crate::config::CollectorConfig;
use crate::router::{router, AppState};

/// Answers API Gateway events from the Lambda Runtime API until the runtime stops the function.
///
/// Reads the Runtime API's address and the function's settings from the variables Lambda sets
/// (`AWS_LAMBDA_RUNTIME_API`, ...) and panics without them, as `lambda_http` does. The future is
/// not `Send` (`lambda_http` holds the response type in it): await it, don't spawn it.
pub async fn run(state: AppState, config: &CollectorConfig) -> Result<(), lambda_http::Error> {
    if state.access.is_open() {
        tracing::warn!("no write keys configured: accepting events from anyone (development mode)");
    }
    if config.trusted_proxy_hops > 0 {
        tracing::warn!(
            trusted_proxy_hops = config.trusted_proxy_hops,
            "client IPs are read from X-Forwarded-For; behind API Gateway alone set \
             trusted_proxy_hops to 0, as the request context's sourceIp is the client"
        );
    }
    tracing::info!("collector running as a Lambda function behind API Gateway");
    lambda_http::run(service(state, config)).await
}

/// The collector's router behind [`ApiGatewayLayer`]: what [`run`] hands to `lambda_http`.
pub fn service(state: AppState, config: &CollectorConfig) -> ApiGateway<axum::Router> {
    ApiGatewayLayer.layer(router(state, config))
}

/// Adapts requests made from API Gateway events for the collector's router: the client IP from
/// the request context as [`PeerIp`], the path below the stage, and an axum body.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiGatewayLayer;

impl<S> Layer<S> for ApiGatewayLayer {
    type Service = ApiGateway<S>;

    fn layer(&self, inner: S) -> ApiGateway<S> {
        ApiGateway { inner }
    }
}

/// The service [`ApiGatewayLayer`] makes.
#[derive(Clone, Debug)]
pub struct ApiGateway<S> {
    inner: S,
}

impl<S> Service<lambda_http::Request> for ApiGateway<S>
where
    S: Service<axum::extract::Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: lambda_http::Request) -> S::Future {
        self.inner.call(adapt(request))
    }
}

fn adapt(request: lambda_http::Request) -> axum::extract::Request {
    let peer = source_ip(&request);
    let uri = path_below_stage(&request);
    let mut request = request.map(axum::body::Body::new);
    // Replaces anything else: only the request context says who connected.
    request.extensions_mut().remove::<PeerIp>();
    match peer {
        Some(ip) => {
            request.extensions_mut().insert(PeerIp(ip));
        }
        None => tracing::debug!("no client IP in the API Gateway request context"),
    }
    if let Some(uri) = uri {
        *request.uri_mut() = uri;
    }
    request
}

/// The address that connected to API Gateway. Not an address where API Gateway has none (its
/// console's test invocations say `test-invoke-source-ip`).
fn source_ip(request: &lambda_http::Request) -> Option<IpAddr> {
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        _ => None,
    }?;
    ip.trim().parse().ok()
}

/// The request's URI with the event's path below the stage, keeping the query; `None` keeps the
/// URI `lambda_http` made (not an API Gateway event, or a path that is not a valid URI path).
fn path_below_stage(request: &lambda_http::Request) -> Option<Uri> {
    let raw = request.raw_http_path();
    if raw.is_empty() {
        return None;
    }
    let path = match request.request_context_ref()? {
        // A REST API's `path` has no stage (its `requestContext.path` does).
        RequestContext::ApiGatewayV1(_) => raw,
        // An HTTP API's `rawPath` starts with a named stage; `$default` is not in it.
        RequestContext::ApiGatewayV2(context) => match context.stage.as_deref() {
            Some(stage) if stage != "$default" => strip_stage(raw, stage),
            _ => raw,
        },
        _ => return None,
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let path_and_query = PathAndQuery::try_from(path_and_query).ok()?;
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

fn strip_stage<'a>(path: &'a str, stage: &str) -> &'a str {
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_stage;

    #[test]
    fn the_stage_is_stripped_only_as_a_whole_first_segment() {
        assert_eq!(strip_stage("/prod/v1/batch", "prod"), "/v1/batch");
        assert_eq!(strip_stage("/prod", "prod"), "/");
        assert_eq!(strip_stage("/production/v1", "prod"), "/production/v1");
        assert_eq!(strip_stage("/v1/batch", "prod"), "/v1/batch");
        assert_eq!(strip_stage("/v1/v1/batch", "v1"), "/v1/batch");
    }
}
