//! Hosts the demo storefront: the static pages in `static/`, the tracker package built by
//! wasm-pack under `/pkg/`, and `/config.js`, which tells the pages where the collector is.

use std::path::PathBuf;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

/// Where the storefront's own files are, next to this crate's manifest.
pub fn static_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
}

/// The storefront's routes. `pkg_dir` holds `retailmind_sdk.js` and its wasm, loaded through
/// the script-tag stub.
pub fn router(pkg_dir: &std::path::Path, collector_url: &str, write_key: &str) -> Router {
    config_route(collector_url, write_key)
        .nest_service("/pkg", ServeDir::new(pkg_dir))
        .fallback_service(ServeDir::new(static_dir()))
}

/// The same storefront with the tracker from its npm package, bundled by webpack into
/// `bundle_dir` (`cargo xtask build-npm`): the pages load the bundle instead of the stub and
/// `/app.js`, which the bundle imports once the tracker is ready.
pub fn bundled_router(
    bundle_dir: &std::path::Path,
    collector_url: &str,
    write_key: &str,
) -> Router {
    let mut router = config_route(collector_url, write_key)
        .nest_service("/bundled", ServeDir::new(bundle_dir))
        .route("/", get(|| bundled_page("index.html")));
    for page in STOREFRONT_PAGES {
        router = router.route(&format!("/{page}"), get(move || bundled_page(page)));
    }
    router.fallback_service(ServeDir::new(static_dir()))
}

/// The pages that load the tracker through the script-tag stub.
const STOREFRONT_PAGES: [&str; 3] = ["index.html", "product.html", "cart.html"];

const SCRIPT_TAG_LOADER: &str = r#"<script src="/stub.js" data-pkg="/pkg/retailmind_sdk.js"></script>
  <script type="module" src="/app.js"></script>"#;
const BUNDLE_LOADER: &str = r#"<script type="module" src="/bundled/storefront.js"></script>"#;

/// A storefront page with the script-tag loader swapped for the bundle.
async fn bundled_page(page: &'static str) -> Response {
    match tokio::fs::read_to_string(static_dir().join(page)).await {
        Ok(html) if html.contains(SCRIPT_TAG_LOADER) => {
            Html(html.replace(SCRIPT_TAG_LOADER, BUNDLE_LOADER)).into_response()
        }
        // A page whose tags changed would silently keep the stub: say so instead.
        Ok(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{page} no longer has the script-tag loader this server swaps"),
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/config.js`: where the collector is and the write key, for the pages.
fn config_route(collector_url: &str, write_key: &str) -> Router {
    let config_js = format!(
        "window.RETAILMIND_CONFIG = {};\n",
        serde_json::json!({ "collectorUrl": collector_url, "writeKey": write_key })
    );
    Router::new().route(
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
}
