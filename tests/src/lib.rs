//! Harness for RetailMind's end-to-end tests: starts the real parts (moto for the AWS wire
//! protocols, chromedriver with headless Chromium) on free loopback ports and stops them when
//! dropped, and an in-process fake of Kinesis, Firehose and DynamoDB BatchWriteItem for the faults
//! moto cannot make.
//!
//! A missing part is a test failure with a message saying how to install it (`cargo xtask test`
//! installs everything), never a silent skip.

pub mod browser;
pub mod fake_aws;
pub mod moto;
pub mod postgres;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
/// SDK configuration for a local stand-in of AWS at `endpoint` (moto, the fake), in `us-east-1`,
/// with throw-away credentials: neither checks signatures, and fixed ones keep the default chain
/// from looking for real ones in the environment or on an instance.
pub fn local_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "local",
        )))
        .build()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_for_port(what: &str, port: u16, timeout: Duration) {
    wait_for(what, timeout, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await
}

/// Environment variable or a default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A build output the tests need, from `env` (set by `cargo xtask test`) or its usual place in
/// the workspace; fails naming the command that builds it.
fn built(env: &str, default: &str, file: &str, command: &str) -> std::path::PathBuf {
    let dir = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    assert!(
        dir.join(file).exists(),
        "no {file} in {}: run `{command}` (or `cargo xtask test`)",
        dir.display()
    );
    dir
}

/// The tracker package (web target) the demo storefront loads through its stub.
pub fn tracker_package() -> std::path::PathBuf {
    built(
        "RETAILMIND_DEMO_PKG",
        "../demo-site/pkg",
        "retailmind_sdk.js",
        "cargo xtask build-wasm",
    )
}

/// The demo storefront's tracker bundled by webpack from the npm package.
pub fn tracker_bundle() -> std::path::PathBuf {
    built(
        "RETAILMIND_DEMO_BUNDLE",
        "../demo-site/bundled/dist",
        "storefront.js",
        "cargo xtask build-npm",
    )
}

/// Segment's browser library (analytics-next) from npm (`npm ci` in `tests/analytics-js`).
pub fn analytics_js() -> std::path::PathBuf {
    built(
        "RETAILMIND_ANALYTICS_JS",
        "analytics-js",
        "node_modules/@segment/analytics-next/dist/umd/index.js",
        "npm ci --prefix tests/analytics-js",
    )
}

/// The dashboard's page with its chart library (`npm ci` in `analytics/dashboard`).
pub fn dashboard_assets() -> std::path::PathBuf {
    built(
        "RETAILMIND_DASHBOARD_ASSETS",
        "../analytics/dashboard",
        "node_modules/chart.js/dist/chart.umd.min.js",
        "npm ci --prefix analytics/dashboard",
    )
}
