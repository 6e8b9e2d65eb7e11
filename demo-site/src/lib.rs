//! Hosts the demo storefront: the static pages in `static/`, the tracker package built by
//! wasm-pack under `/pkg/`, and `/config.js`, which tells the pages where the collector is.

use std::path::{Path, PathBuf};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

/// Where the storefront's own files are, next to this crate's manifest.
pub fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
}

/// The storefront's routes. `pkg_dir` holds `retailmind_sdk.js` and its wasm.
pub fn router(pkg_dir: &Path, collector_url: &str, write_key: &str) -> Router {
    let config_js = format!(
        "window.RETAILMIND_CONFIG = {};\n",
        serde_json::json!({ "collectorUrl": collector_url, "writeKey": write_key })
    );
    Router::new()
        .route(
            "/config.js",
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    config_js.clone(),
                )
                    .into_response()
            }),
        )
        .nest_service("/pkg", ServeDir::new(pkg_dir))
        .fallback_service(ServeDir::new(static_dir()))
}
