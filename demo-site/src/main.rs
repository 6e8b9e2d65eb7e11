//! `retailmind-demo-site`: serves the demo storefront.
//!
//! `RETAILMIND_DEMO_LISTEN` (default 127.0.0.1:8701), `RETAILMIND_DEMO_COLLECTOR_URL` (default
//! http://127.0.0.1:8700), `RETAILMIND_DEMO_PKG` (default `demo-site/pkg`), and
//! `RETAILMIND_DEMO_BUNDLE`: when set, the webpack bundle of the npm package replaces the stub.

use std::path::PathBuf;

use anyhow::Context;
use retailmind_connectors::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let listen = env_or("RETAILMIND_DEMO_LISTEN", "127.0.0.1:8701");
    let collector = env_or("RETAILMIND_DEMO_COLLECTOR_URL", "http://127.0.0.1:8700");
    let pkg = std::env::var_os("RETAILMIND_DEMO_PKG")
        .map(PathBuf::from)
        .unwrap_or_else(|| retailmind_demo_site::static_dir().join("../pkg"));
    if !pkg.join("retailmind_sdk.js").exists() {
        anyhow::bail!(
            "the tracker package is missing in {}: run `cargo xtask build-wasm`",
            pkg.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let app = match std::env::var_os("RETAILMIND_DEMO_BUNDLE") {
        Some(bundle) => {
            tracing::info!(bundle = %PathBuf::from(&bundle).display(), "tracker from the npm package, bundled");
            retailmind_demo_site::bundled_router(
                &PathBuf::from(bundle),
                &collector,
                "demo-publishable-key",
            )
        }
        None => retailmind_demo_site::router(&pkg, &collector, "demo-publishable-key"),
    };
    tracing::info!(%listen, %collector, "demo storefront listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(service::shutdown_signal())
        .await?;
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}
