//! What one request may cost in memory, measured as the process's peak resident set: a test
//! binary of its own, so no other test's allocations share the figure.

mod common;

use std::io::Write;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{json_of, Embedded};
use retailmind_collector::CollectorConfig;
use tower::ServiceExt;

/// Peak resident set of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

/// A body of a few kilobytes gzipped that unpacks to millions of tiny elements must be refused
/// for its count before anything is made of each element: as candidates (a kilobyte each) or
/// converted Segment messages, one such request took gigabytes, and no key was needed.
#[tokio::test]
async fn a_batch_of_millions_of_tiny_elements_is_counted_before_it_is_read() {
    let embedded = Embedded::new();
    let config = CollectorConfig {
        max_body_bytes: 4 * 1024 * 1024,
        ..CollectorConfig::default()
    };
    let app = embedded.router(&config);
    let elements = "0,".repeat(2 * 1024 * 1024 - 64);
    for (field, prefix) in [
        (
            "events",
            r#"{"batch_id":"01936a1c-3b5e-7cc4-9a1e-0000000000aa","events":["#,
        ),
        ("batch", r#"{"batch":["#),
    ] {
        let body = format!("{prefix}{elements}0]}}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(body.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 * 1024, "{} bytes gzipped", gz.len());
        drop(body);

        let before = peak_rss();
        let response = app
            .clone()
            .oneshot(
                Request::post("/v1/batch?compression=gzip")
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(Body::from(gz))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let answer = json_of(response).await;
        assert_eq!(answer["error"]["code"], "too_many_events", "{field}");
        let grown = peak_rss().saturating_sub(before);
        // The body (4 MiB) and one pointer pair per element (32 MiB) at most.
        assert!(
            grown < 128 * 1024 * 1024,
            "{field}: the peak grew by {} MiB",
            grown >> 20
        );
    }
}
