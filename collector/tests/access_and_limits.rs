//! Write keys, origins, CORS, rate limits, gzip, batch dedup, dead letters, client IPs, overload
//! and the operational endpoints, through the real router on the embedded backend.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use common::{batch_of, json_of, now_ms, page_view, uuid_ending, DownSink, Embedded};
use http_body_util::BodyExt;
use retailmind_collector::{router, AppState, CollectorConfig, KeyKind, WriteKeyConfig};
use retailmind_connectors::{EventSink, StreamRecord};
use retailmind_schema::Event;
use serde_json::{json, Value};
use tower::ServiceExt;

const SHOP: &str = "https://shop.example";

fn keys() -> Vec<WriteKeyConfig> {
    vec![
        WriteKeyConfig {
            key: "pk_live_shop".into(),
            name: "shop web".into(),
            kind: KeyKind::Publishable,
            origins: vec![SHOP.into()],
        },
        WriteKeyConfig {
            key: "sk_live_shop".into(),
            name: "shop backend".into(),
            kind: KeyKind::Secret,
            origins: vec![],
        },
    ]
}

struct Harness {
    embedded: Embedded,
    app: Router,
}

impl Harness {
    fn new(config: CollectorConfig) -> Self {
        let embedded = Embedded::new();
        Harness {
            app: embedded.router(&config),
            embedded,
        }
    }

    fn with_keys() -> Self {
        Harness::new(CollectorConfig {
            keys: keys(),
            ..CollectorConfig::default()
        })
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn stored(&self) -> Vec<Event> {
        self.embedded.stored().await
    }

    /// The dead letters, as JSON.
    fn letters(&self) -> Vec<Value> {
        let letters = self.embedded.dead_letters();
        letters
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `n` page views whose ids differ from batch to batch (an event id is written only once).
fn batch(batch_id: &str, n: usize) -> String {
    let base = u64::from_str_radix(&batch_id[batch_id.len() - 4..], 16).unwrap_or(0) << 16;
    let events: Vec<Value> = (0..n)
        .map(|i| page_view(uuid_ending(base + i as u64 + 1), "anon-1", now_ms(), None))
        .collect();
    batch_of(batch_id, events)
}

const BATCH_ID: &str = "01936a1c-3b5e-7cc4-9a1e-0000000000aa";

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::CONTENT_TYPE, "text/plain")
}

#[tokio::test]
async fn keys_and_origins_decide_who_may_send() {
    let h = Harness::with_keys();
    let body = || Body::from(batch(BATCH_ID, 1));

    let r = h.send(post("/v1/batch").body(body()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(r).await["error"]["code"], "missing_key");

    let r = h
        .send(post("/v1/batch?key=pk_nope").body(body()).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = h
        .send(
            post("/v1/batch?key=pk_live_shop")
                .header(header::ORIGIN, "https://evil.example")
                .body(body())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json_of(r).await["error"]["message"],
        "origin \"https://evil.example\" is not allowed for this write key"
    );
    assert!(h.stored().await.is_empty());

    let r = h
        .send(
            post("/v1/batch?key=pk_live_shop")
                .header(header::ORIGIN, SHOP)
                .body(body())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        SHOP,
        "CORS answered for the key's origin"
    );
    // The secret key as Segment libraries send it: Basic auth with the key as user name.
    let r = h
        .send(
            post("/v1/batch")
                .header(header::AUTHORIZATION, "Basic c2tfbGl2ZV9zaG9wOg==")
                .body(Body::from(batch("01936a1c-3b5e-7cc4-9a1e-0000000000bb", 1)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Schemes are case-insensitive (RFC 7235).
    let r = h
        .send(
            post("/v1/batch")
                .header(header::AUTHORIZATION, "bearer sk_live_shop")
                .body(Body::from(batch("01936a1c-3b5e-7cc4-9a1e-0000000000bc", 1)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Credentials that cannot be read are said to be so, not taken for a missing key.
    for (authorization, reason) in [
        ("Basic not-base64!", "Basic credentials must be base64"),
        ("Bearer ", "Bearer must be followed by the key"),
    ] {
        let r = h
            .send(
                post("/v1/batch")
                    .header(header::AUTHORIZATION, authorization)
                    .body(Body::from(batch("01936a1c-3b5e-7cc4-9a1e-0000000000bd", 1)))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{authorization}");
        let body = json_of(r).await;
        assert_eq!(body["error"]["code"], "invalid_header", "{body}");
        assert_eq!(body["error"]["field"], "Authorization", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{body}"
        );
    }
    let r = h
        .send(
            post("/v1/batch")
                .header(
                    "x-write-key",
                    axum::http::HeaderValue::from_bytes("pk_shöp".as_bytes()).unwrap(),
                )
                .body(Body::from(batch("01936a1c-3b5e-7cc4-9a1e-0000000000be", 1)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(r).await["error"]["field"], "X-Write-Key");
}

/// analytics.js posts each call, as text/plain from the page, to the first letter of its type
/// and its batches to `b`, its write key in the `Authorization` header and the body, after a
/// preflight that carries neither. The preflight lets an origin some key lists through, every
/// call is taken and readable by the page, and the key still decides: another origin gets no
/// preflight and a 403.
#[tokio::test]
async fn analytics_js_calls_with_the_key_in_a_header_are_taken_and_readable_by_the_page() {
    let h = Harness::with_keys();
    let preflight = |path: &str, origin: &str| {
        Request::options(path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,x-retry-count",
            )
            .body(Body::empty())
            .unwrap()
    };
    let allowed = |r: &Response<Body>| {
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let message = |kind: &str, more: Value| {
        let mut m = json!({
            "type": kind, "messageId": format!("ajs-next-1-{kind}"), "anonymousId": "a-1",
            "userId": null, "writeKey": "pk_live_shop", "sentAt": "2026-12-07T05:00:00.000Z",
            "integrations": {}, "_metadata": {"bundled": ["Segment.io"]},
            "context": {"page": {"url": "https://shop.example/", "path": "/"}, "userAgent": "Mozilla/5.0",
                        "userAgentData": {"mobile": false}, "timezone": "UTC",
                        "library": {"name": "analytics.js", "version": "next-1.84.3"}},
        });
        m.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        m
    };
    let calls = [
        ("/v1/t", message("track", json!({"event": "Signed Up!"}))),
        ("/v1/p", message("page", json!({"name": "Home"}))),
        (
            "/v1/i",
            message(
                "identify",
                json!({"userId": "u-1", "traits": {"plan": "gold"}}),
            ),
        ),
        ("/v1/s", message("screen", json!({"name": "Home"}))),
        ("/v1/g", message("group", json!({"groupId": "g-1"}))),
        (
            "/v1/a",
            message("alias", json!({"userId": "u-1", "previousId": "a-1"})),
        ),
        (
            "/v1/b",
            json!({"writeKey": "pk_live_shop", "sentAt": "2026-12-07T05:00:00.000Z",
                   "batch": [message("track", json!({"event": "Batched", "messageId": "m-b"}))]}),
        ),
    ];
    // "pk_live_shop:" as the Basic-auth user, as analytics.js sends it.
    let basic = "Basic cGtfbGl2ZV9zaG9wOg==";
    for (path, body) in &calls {
        let r = h.send(preflight(path, SHOP)).await;
        assert_eq!(allowed(&r).as_deref(), Some(SHOP), "{path}: preflight");
        let r = h
            .send(
                post(path)
                    .header(header::ORIGIN, SHOP)
                    .header(header::AUTHORIZATION, basic)
                    .header("x-retry-count", "0")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            allowed(&r).as_deref(),
            Some(SHOP),
            "{path}: the page reads it"
        );
        assert_eq!(json_of(r).await["accepted"], 1, "{path}");
    }
    assert_eq!(h.stored().await.len(), calls.len());

    let elsewhere = "https://elsewhere.example";
    let r = h.send(preflight("/v1/t", elsewhere)).await;
    assert_eq!(allowed(&r), None, "no key lists that origin");
    let r = h
        .send(
            post("/v1/t")
                .header(header::ORIGIN, elsewhere)
                .header(header::AUTHORIZATION, basic)
                .body(Body::from(calls[0].1.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A secret key belongs on servers: whatever header carries it, no page reads its answers,
    // even from an origin a publishable key lists.
    let mut server_side = calls[0].1.clone();
    server_side["messageId"] = json!("ajs-next-1-server");
    for secret in ["Basic c2tfbGl2ZV9zaG9wOg==", "Bearer sk_live_shop"] {
        let r = h
            .send(
                post("/v1/t")
                    .header(header::ORIGIN, SHOP)
                    .header(header::AUTHORIZATION, secret)
                    .body(Body::from(server_side.to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{secret}");
        assert_eq!(allowed(&r), None, "{secret}: not readable by the page");
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_per_key() {
    let h = Harness::with_keys();
    let preflight = |origin: &str| {
        Request::options("/v1/batch?key=pk_live_shop")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let ok = h.send(preflight(SHOP)).await;
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    // The tracker percent-encodes the key (encodeURIComponent): CORS reads it decoded, as the
    // handlers do.
    let h = Harness::new(CollectorConfig {
        keys: vec![WriteKeyConfig {
            key: "pk/live+shop=".into(),
            name: "odd".into(),
            kind: KeyKind::Publishable,
            origins: vec![SHOP.into()],
        }],
        ..CollectorConfig::default()
    });
    let encoded = h
        .send(
            post("/v1/batch?key=pk%2Flive%2Bshop%3D")
                .header(header::ORIGIN, SHOP)
                .body(Body::from(batch(BATCH_ID, 1)))
                .unwrap(),
        )
        .await;
    assert_eq!(encoded.status(), StatusCode::OK);
    assert_eq!(encoded.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let h = Harness::with_keys();
    let refused = h.send(preflight("https://evil.example")).await;
    assert!(refused
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

#[tokio::test]
async fn gzip_bodies_are_accepted_by_header_or_flag_and_bombs_refused() {
    use std::io::Write;
    let h = Harness::new(CollectorConfig {
        max_body_bytes: 64 * 1024,
        ..CollectorConfig::default()
    });
    let gzip = |text: &str| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    };
    let r = h
        .send(
            post("/v1/batch")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(gzip(&batch(BATCH_ID, 2))))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .send(
            post("/v1/batch?compression=gzip")
                .body(Body::from(gzip(&batch(
                    "01936a1c-3b5e-7cc4-9a1e-0000000000cc",
                    1,
                ))))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.stored().await.len(), 3);

    // Two gzip members back to back are one body.
    let text = batch("01936a1c-3b5e-7cc4-9a1e-0000000000dd", 2);
    let (head, tail) = text.split_at(text.len() / 2);
    let mut members = gzip(head);
    members.extend(gzip(tail));
    let r = h
        .send(
            post("/v1/batch")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(members))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.stored().await.len(), 5);

    // 1 MiB of spaces compresses to about 1 KiB: small on the wire, too big once inflated.
    let bomb = gzip(&" ".repeat(1024 * 1024));
    assert!(bomb.len() < 64 * 1024);
    let r = h
        .send(
            post("/v1/batch")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(bomb))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_retried_batch_is_not_written_twice() {
    let h = Harness::new(CollectorConfig::default());
    let send_batch = || async {
        let request = post("/v1/batch")
            .body(Body::from(batch(BATCH_ID, 3)))
            .unwrap();
        json_of(h.send(request).await).await
    };
    let first = send_batch().await;
    let again = send_batch().await;
    assert_eq!(first["accepted"], 3);
    assert_eq!(again["accepted"], 3);
    assert_eq!(again["duplicate"], true);
    assert_eq!(h.stored().await.len(), 3);
}

#[tokio::test]
async fn rejected_events_are_kept_in_the_dead_letters_with_their_reasons() {
    let h = Harness::new(CollectorConfig::default());
    let mut body: Value = serde_json::from_str(&batch(BATCH_ID, 2)).unwrap();
    body["events"][1]["context"]["page"]["url"] = json!("ftp://nope");
    let r = h
        .send(
            post("/v1/batch")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(json_of(r).await["accepted"], 1);

    let letters = h.embedded.dead_letters();
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(&letters[0]).unwrap();
    assert_eq!(letter["index"], 1);
    assert_eq!(letter["errors"][0]["field"], "context.page.url");
    assert_eq!(letter["event"]["context"]["page"]["url"], "ftp://nope");
}

/// A body that is not a batch at all (cut short, not JSON, more events than allowed) has no
/// event to judge on its own: it is refused with a 400 and kept whole in the dead letters,
/// under the name of the key that sent it, so a sender's bug loses nothing for good. Only a key
/// from outside the body can be trusted here; without one nothing is kept, or anyone could
/// fill the dead letters.
#[tokio::test]
async fn a_body_refused_whole_is_kept_in_the_dead_letters_under_its_key() {
    let h = Harness::new(CollectorConfig {
        keys: keys(),
        max_events_per_batch: 3,
        ..CollectorConfig::default()
    });
    let send = |uri: &str, body: Vec<u8>| {
        let request = Request::post(uri)
            .header(header::ORIGIN, SHOP)
            .body(Body::from(body))
            .unwrap();
        h.send(request)
    };
    let cut = r#"{"batch_id":"01936a1c-3b5e-7cc4-9a1e-0000000000aa","events":[{"type":"#;
    let r = send("/v1/batch?key=pk_live_shop", cut.into()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(r).await["error"]["code"], "malformed_batch");
    let too_many = batch(BATCH_ID, 4);
    let r = send("/v1/batch?key=pk_live_shop", too_many.clone().into()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(r).await["error"]["code"], "too_many_events");
    // Not UTF-8 either, to a Segment endpoint.
    let r = send("/v1/track?key=pk_live_shop", b"{\"event\": \"\xff".to_vec()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // serde quotes the value at fault whole: the reason is clipped, the body cut, and a secret
    // key in the body does not reach the letters.
    let quoted = format!(
        r#"{{"writeKey":"sk_live_shop","batch_id":"{BATCH_ID}","events":"{}"}}"#,
        "x".repeat(200_000)
    );
    let quoted_len = quoted.len();
    let r = send("/v1/batch?key=pk_live_shop", quoted.into()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let message = json_of(r).await["error"]["message"].to_string();
    assert!(message.len() < 1100, "{} bytes", message.len());
    // No key outside the body, or an unknown one: refused, not kept.
    for uri in ["/v1/batch", "/v1/batch?key=pk_nobody"] {
        let r = send(uri, cut.into()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
    }
    assert!(h.stored().await.is_empty());

    let letters = h.letters();
    assert_eq!(letters.len(), 4, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter["sender"], "shop web");
        assert!(letter["received_at"].as_i64().unwrap() > 0);
        assert!(letter.get("index").is_none());
    }
    assert_eq!(letters[0]["body"], cut);
    assert_eq!(letters[0]["errors"][0]["field"], "body");
    let reason = letters[0]["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the body is not a valid batch: EOF while parsing"),
        "{reason}"
    );
    assert_eq!(letters[1]["errors"][0]["field"], "events");
    assert_eq!(
        letters[1]["errors"][0]["reason"],
        "the batch has 4 events, at most 3 are accepted per request"
    );
    // JSON stays JSON: the events are there to be replayed.
    assert_eq!(
        letters[1]["body"],
        serde_json::from_str::<Value>(&too_many).unwrap()
    );
    assert_eq!(letters[2]["body"], "{\"event\": \"\u{fffd}");
    let reason = letters[3]["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.len() < 1100 && reason.ends_with('…'), "{reason}");
    assert_eq!(letters[3]["truncated_from_bytes"], quoted_len);
    let kept = letters[3]["body"].as_str().unwrap();
    assert!(
        kept.starts_with(r#"{"writeKey":"[redacted]","batch_id""#),
        "{kept:.80}"
    );
    assert!(!letters[3].to_string().contains("sk_live"));
}

/// A gzip body that arrived whole but does not decompress (cut short, or corrupt) is refused
/// with a 400 naming the body and kept as it came, in base64, so its events can be recovered.
#[tokio::test]
async fn a_gzip_body_that_does_not_decompress_is_kept_as_it_came() {
    use base64::Engine as _;
    use std::io::Write;
    let h = Harness::new(CollectorConfig {
        keys: keys(),
        ..CollectorConfig::default()
    });
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(batch(BATCH_ID, 3).as_bytes()).unwrap();
    let whole = enc.finish().unwrap();
    let cut = whole[..whole.len() - 12].to_vec();
    let send = |uri: &str| {
        let request = Request::post(uri)
            .header(header::ORIGIN, SHOP)
            .body(Body::from(cut.clone()))
            .unwrap();
        h.send(request)
    };
    for uri in [
        "/v1/batch?compression=gzip&key=pk_live_shop",
        "/v1/track?compression=gzip&key=pk_live_shop",
        // Without a key from outside the body: refused, not kept.
        "/v1/batch?compression=gzip",
    ] {
        let r = send(uri).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        let body = json_of(r).await;
        assert_eq!(body["error"]["code"], "body_unreadable", "{uri}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("gzip"),
            "{body}"
        );
    }
    assert!(h.stored().await.is_empty());
    let letters = h.letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter["sender"], "shop web");
        assert_eq!(letter["errors"][0]["field"], "body");
        assert_eq!(letter["body_encoding"], "base64");
        let kept = base64::engine::general_purpose::STANDARD
            .decode(letter["body"].as_str().unwrap())
            .unwrap();
        assert!(kept == cut, "the bytes as they came");
    }
}

/// A compression the collector does not take is refused naming `compression`, and the body is
/// kept as it came, in base64: read as plain text it would be "not a batch", its bytes mangled.
#[tokio::test]
async fn an_unknown_compression_is_refused_by_name_and_the_body_kept_as_it_came() {
    use base64::Engine as _;
    let h = Harness::new(CollectorConfig {
        keys: keys(),
        ..CollectorConfig::default()
    });
    let compressed = vec![0x78, 0x9c, 0xff, 0x00, 0x10, 0x80];
    let request = Request::post("/v1/batch?compression=deflate&key=pk_live_shop")
        .header(header::ORIGIN, SHOP)
        .body(Body::from(compressed.clone()))
        .unwrap();
    let r = h.send(request).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
    assert_eq!(body["error"]["field"], "compression", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"deflate\""),
        "{body}"
    );
    let letters = h.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["body_encoding"], "base64");
    let kept = base64::engine::general_purpose::STANDARD
        .decode(letters[0]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept, compressed);

    // gzip, in any case, is taken.
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(batch(BATCH_ID, 2).as_bytes()).unwrap();
    let request = Request::post("/v1/batch?compression=GZIP&key=pk_live_shop")
        .header(header::ORIGIN, SHOP)
        .body(Body::from(enc.finish().unwrap()))
        .unwrap();
    assert_eq!(h.send(request).await.status(), StatusCode::OK);
    assert_eq!(h.stored().await.len(), 2);
}

/// When the dead letters cannot take a refused body, the sender hears 503 and sends it again
/// later, as for a rejected event's letter: the 400 comes only once the body is kept.
#[tokio::test]
async fn a_refused_body_the_dead_letters_cannot_take_answers_503() {
    let embedded = Embedded::new();
    let config = CollectorConfig::default();
    let app = router(
        AppState::new(embedded.backend.sink.clone(), Arc::new(DownSink), &config),
        &config,
    );
    let r = app
        .oneshot(Request::post("/v1/batch").body(Body::from("[]")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let mut config = CollectorConfig::default();
    config.rate_limit.per_ip_per_sec = 1;
    config.rate_limit.burst = 1;
    let h = Harness::new(config);
    let from = |ip: [u8; 4], id: &str| {
        let mut req = post("/v1/batch").body(Body::from(batch(id, 1))).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        req
    };
    assert_eq!(
        h.send(from([192, 0, 2, 1], BATCH_ID)).await.status(),
        StatusCode::OK
    );
    let limited = h
        .send(from([192, 0, 2, 1], "01936a1c-3b5e-7cc4-9a1e-0000000000dd"))
        .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        h.send(from([192, 0, 2, 2], "01936a1c-3b5e-7cc4-9a1e-0000000000ee"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_write_key_past_its_rate_gets_429_and_other_keys_do_not() {
    let mut config = CollectorConfig {
        keys: keys(),
        ..CollectorConfig::default()
    };
    config.rate_limit.per_key_per_sec = 1;
    config.rate_limit.burst = 1;
    let h = Harness::new(config);
    let with_key = |key: &str, batch_id: &str| {
        post("/v1/batch")
            .header("x-write-key", key)
            .header(header::ORIGIN, SHOP)
            .body(Body::from(batch(batch_id, 1)))
            .unwrap()
    };
    assert_eq!(
        h.send(with_key("sk_live_shop", BATCH_ID)).await.status(),
        StatusCode::OK
    );
    let limited = h
        .send(with_key(
            "sk_live_shop",
            "01936a1c-3b5e-7cc4-9a1e-0000000000dd",
        ))
        .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    assert_eq!(json_of(limited).await["error"]["code"], "rate_limited");
    assert_eq!(
        h.send(with_key(
            "pk_live_shop",
            "01936a1c-3b5e-7cc4-9a1e-0000000000ee"
        ))
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(h.stored().await.len(), 2);
}

#[tokio::test]
async fn client_ip_comes_from_the_trusted_hop_and_can_be_truncated() {
    let h = Harness::new(CollectorConfig {
        trusted_proxy_hops: 1,
        truncate_ip: true,
        ..CollectorConfig::default()
    });
    let mut req = post("/v1/batch")
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.77")
        .header(header::USER_AGENT, "Mozilla/5.0 test")
        .body(Body::from(batch(BATCH_ID, 1)))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 1234))));
    assert_eq!(h.send(req).await.status(), StatusCode::OK);
    let stored = h.stored().await;
    assert_eq!(stored[0].context.ip.as_deref(), Some("203.0.113.0"));
    assert_eq!(
        stored[0].context.user_agent.as_deref(),
        Some("Mozilla/5.0 test")
    );
}

/// A query axum cannot read is answered like every other refusal: JSON naming what is wrong.
#[tokio::test]
async fn an_unreadable_query_gets_a_json_error() {
    let h = Harness::with_keys();
    let req = post("/v1/batch?key=pk_live_shop&key=other")
        .body(Body::from(batch(BATCH_ID, 1)))
        .unwrap();
    let answer = h.send(req).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body = json_of(answer).await;
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
    assert_eq!(body["error"]["field"], "query", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("duplicate field `key`"), "{message}");
    assert!(h.stored().await.is_empty());
}

/// The User-Agent header goes into every event of its request without the body's validation:
/// cut to the schema's text limit, a header of a few hundred kilobytes on a batch of hundreds of
/// events neither multiplies in memory nor makes each event too large to store.
#[tokio::test]
async fn a_huge_user_agent_is_cut_to_the_text_limit() {
    let h = Harness::new(CollectorConfig::default());
    let agent = format!("Mozilla/5.0 {}", "x".repeat(300_000));
    let req = post("/v1/batch")
        .header(header::USER_AGENT, agent.as_str())
        .body(Body::from(batch(BATCH_ID, 3)))
        .unwrap();
    assert_eq!(h.send(req).await.status(), StatusCode::OK);
    let stored = h.stored().await;
    assert_eq!(stored.len(), 3);
    let limit = retailmind_schema::Limits::default().max_text_len;
    for event in &stored {
        assert_eq!(
            event.context.user_agent.as_deref(),
            Some(&agent[..limit]),
            "{}",
            event.event_id
        );
    }
}

/// A stream that holds every write until released: fills the collector to capacity.
#[derive(Default)]
struct StuckSink {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    appends: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl EventSink for StuckSink {
    async fn append(&self, _: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entered.notify_one();
        self.release.notified().await;
        Ok(())
    }
    async fn ready(&self) -> retailmind_connectors::Result<()> {
        Ok(())
    }
}

/// The collector on a [`StuckSink`] (its stream and its dead letters).
fn stuck_collector(config: &CollectorConfig) -> (Arc<StuckSink>, Router) {
    let stuck = Arc::new(StuckSink::default());
    let app = router(AppState::new(stuck.clone(), stuck.clone(), config), config);
    (stuck, app)
}

/// Behind API Gateway a request has 29 s: a stream that does not acknowledge within
/// `write_timeout_secs` gets the sender a 503 from the collector, not a gateway timeout. The
/// write goes on, its events still held, so the sender's retry does not write them again.
#[tokio::test]
async fn a_write_not_acknowledged_in_time_answers_503_and_its_retry_writes_nothing_again() {
    let config = CollectorConfig {
        write_timeout_secs: 1,
        ..CollectorConfig::default()
    };
    let (stuck, app) = stuck_collector(&config);
    let send = || {
        app.clone().oneshot(
            post("/v1/batch")
                .body(Body::from(batch(BATCH_ID, 2)))
                .unwrap(),
        )
    };
    let late = send().await.unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(late.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(json_of(late).await["error"]["code"], "write_timed_out");

    stuck.release.notify_one();
    let retried = send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let answer = json_of(retried).await;
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(
        stuck.appends.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "written once: {answer}"
    );
}

#[tokio::test]
async fn at_capacity_new_requests_are_refused_not_queued() {
    let config = CollectorConfig {
        max_in_flight_requests: 1,
        ..CollectorConfig::default()
    };
    let (stuck, app) = stuck_collector(&config);
    let first = tokio::spawn(
        app.clone().oneshot(
            post("/v1/batch")
                .body(Body::from(batch(BATCH_ID, 1)))
                .unwrap(),
        ),
    );
    stuck.entered.notified().await;

    let second = app
        .clone()
        .oneshot(
            post("/v1/batch")
                .body(Body::from(batch("01936a1c-3b5e-7cc4-9a1e-0000000000ff", 1)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(json_of(second).await["error"]["code"], "overloaded");
    // The limit is the service's, not each route's.
    for (uri, body) in [
        ("/v1/track", r#"{"event":"x","anonymousId":"a"}"#),
        ("/v1/transactions", "{}"),
    ] {
        let other = app
            .clone()
            .oneshot(post(uri).body(Body::from(body)).unwrap());
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), other)
            .await
            .unwrap_or_else(|_| panic!("{uri} was let in, and is stuck behind the sink"))
            .unwrap();
        assert_eq!(other.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(json_of(other).await["error"]["code"], "overloaded", "{uri}");
    }

    stuck.release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_and_metrics_are_served() {
    let h = Harness::new(CollectorConfig::default());
    let ready = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(ready.status(), StatusCode::OK);
    h.send(
        post("/v1/batch")
            .body(Body::from(batch(BATCH_ID, 2)))
            .unwrap(),
    )
    .await;
    let metrics = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("collector_events_accepted_total"), "{text}");
    assert!(text.contains("collector_sink_append_seconds"), "{text}");
    for of in ["batches", "events"] {
        let gauge = format!("collector_dedup_memory_seconds{{of=\"{of}\"}}");
        assert!(text.contains(&gauge), "{gauge} in {text}");
    }
}

/// With a spool, an outage of the stream is absorbed: the collector stays ready, so a load
/// balancer keeps sending it the writes the spool exists to take.
#[tokio::test]
async fn readiness_holds_while_a_spool_takes_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        spool_dir: Some(dir.path().to_owned()),
        ..CollectorConfig::default()
    };
    let (sink, dead_letters) =
        retailmind_collector::spooled_edges(Arc::new(DownSink), Arc::new(DownSink), &config)
            .unwrap();
    let (status, _) = readiness(sink, dead_letters, &config).await;
    assert_eq!(status, StatusCode::OK);
}

/// A path the collector does not serve gets a JSON error like every other refusal.
#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let h = Harness::new(CollectorConfig::default());
    let answer = h
        .send(Request::get("/v1/events").body(Body::empty()).unwrap())
        .await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let body = json_of(answer).await;
    assert_eq!(body["error"]["code"], "no_such_route", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET /v1/events"),
        "{body}"
    );
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_a_json_405_that_names_the_ones_it_does() {
    let h = Harness::new(CollectorConfig::default());
    let answer = h
        .send(Request::get("/v1/batch").body(Body::empty()).unwrap())
        .await;
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = answer.headers()[axum::http::header::ALLOW]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allow.contains("POST"), "Allow: {allow}");
    let body = json_of(answer).await;
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/batch takes no GET"),
        "{body}"
    );
    // The same for the routes outside ingestion.
    for (method, path) in [("POST", "/healthz"), ("GET", "/v1/transactions")] {
        let answer = h
            .send(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            answer.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body = json_of(answer).await;
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
}

/// `GET /readyz` of a collector over these edges: its status and text.
async fn readiness(
    sink: Arc<dyn EventSink>,
    dead_letters: Arc<dyn EventSink>,
    config: &CollectorConfig,
) -> (StatusCode, String) {
    let ready = router(AppState::new(sink, dead_letters, config), config)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = ready.status();
    let text = ready.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn readiness_fails_while_the_stream_is_unreachable() {
    let config = CollectorConfig::default();
    // The SDK's own words (stream ARN, account) stay in the log.
    assert_eq!(
        readiness(Arc::new(DownSink), Arc::new(DownSink), &config).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the event stream does not answer".to_owned()
        )
    );
}

/// Every instance shares the dead letters: one whose dead letters are down stays ready, since
/// it still takes every batch without a rejected event; the failures are counted instead.
#[tokio::test]
async fn readiness_holds_while_only_the_dead_letters_are_down_and_their_failures_are_counted() {
    let config = CollectorConfig::default();
    let up = Embedded::new();
    assert_eq!(
        readiness(up.backend.sink.clone(), Arc::new(DownSink), &config).await,
        (StatusCode::OK, "ready".to_owned())
    );
    let app = router(
        AppState::new(up.backend.sink.clone(), Arc::new(DownSink), &config),
        &config,
    );
    let failures = || async {
        let metrics = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = metrics.into_body().collect().await.unwrap().to_bytes();
        // Other tests of this binary count into the same process-wide recorder.
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix("collector_dead_letter_failures_total "))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let before = failures().await;
    let rejected = batch_of(
        &uuid_ending(901),
        vec![json!({"event_id": uuid_ending(902), "type": "page_view"})],
    );
    let request = post("/v1/batch").body(Body::from(rejected)).unwrap();
    let answer = app.clone().oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(failures().await > before);
    assert!(up.stored().await.is_empty(), "the batch had no good event");
}

#[tokio::test]
async fn the_openapi_document_describes_the_event_endpoints_and_their_bodies() {
    let h = Harness::new(CollectorConfig::default());
    let doc = json_of(
        h.send(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await,
    )
    .await;
    let batch = &doc["paths"]["/v1/batch"]["post"];
    assert!(batch["responses"]["200"].is_object(), "{doc}");
    assert!(batch["responses"]["429"].is_object());
    let single = [
        "/v1/track",
        "/v1/page",
        "/v1/identify",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        // analytics.js's paths
        "/v1/t",
        "/v1/p",
        "/v1/i",
        "/v1/s",
        "/v1/g",
        "/v1/a",
    ];
    let mut ids = std::collections::HashSet::new();
    for path in single.iter().chain(&["/v1/batch", "/v1/b"]) {
        let id = doc["paths"][path]["post"]["operationId"].as_str();
        assert!(
            id.is_some_and(|id| ids.insert(id.to_owned())),
            "{path}: {id:?} not unique"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/b"]["post"]["requestBody"],
        batch["requestBody"]
    );
    for path in single {
        let op = &doc["paths"][path]["post"];
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SegmentMessage",
            "{path}: {op}"
        );
        assert!(op["responses"]["200"].is_object(), "{path}: {op}");
    }
    let bodies = &batch["requestBody"]["content"]["text/plain"]["schema"]["$ref"];
    assert_eq!(bodies, "#/components/schemas/BatchBody", "{batch}");
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Batch",
        "Event",
        "Payload",
        "BatchResponse",
        "ErrorBody",
        "BatchBody",
        "SegmentBatch",
        "SegmentMessage",
    ] {
        assert!(
            schemas[name].is_object(),
            "schema {name} missing: {schemas}"
        );
    }
    let one_of: Vec<&str> = schemas["BatchBody"]["oneOf"]
        .as_array()
        .expect("the tracker's batch or Segment's")
        .iter()
        .filter_map(|s| s["$ref"].as_str())
        .collect();
    assert_eq!(
        one_of,
        [
            "#/components/schemas/Batch",
            "#/components/schemas/SegmentBatch"
        ]
    );
    let message = &schemas["SegmentMessage"]["properties"];
    for field in [
        "type",
        "event",
        "messageId",
        "anonymousId",
        "userId",
        "context",
    ] {
        assert!(message[field].is_object(), "{field} missing: {message}");
    }
}
