//! The Lambda entry point: API Gateway proxy events (REST API payload 1.0, HTTP API payload 2.0)
//! parsed by `lambda_http` itself, answered by the service that `lambda::run` serves, against the
//! embedded stream in a temporary directory.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use common::{batch_of, now_ms, page_view, uuid_ending, Embedded};
use http_body_util::BodyExt;
use retailmind_collector::{lambda, AppState, BatchResponse, CollectorConfig};
use retailmind_schema::Event;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The address API Gateway saw the client connect from, in each fixture.
const REST_SOURCE_IP: &str = "198.51.100.23";
const HTTP_SOURCE_IP: &str = "203.0.113.77";
/// What a client wrote into `X-Forwarded-For` (and into the events' `context.ip`) itself.
const FORGED_IP: &str = "6.6.6.6";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Payload {
    /// API Gateway REST API, proxy integration (payload format 1.0), stage `prod`.
    RestV1,
    /// API Gateway HTTP API (payload format 2.0), stage `$default`.
    HttpV2,
}

impl Payload {
    const ALL: [Payload; 2] = [Payload::RestV1, Payload::HttpV2];

    fn source_ip(self) -> &'static str {
        match self {
            Payload::RestV1 => REST_SOURCE_IP,
            Payload::HttpV2 => HTTP_SOURCE_IP,
        }
    }

    fn fixture(self) -> Value {
        let name = match self {
            Payload::RestV1 => "apigw_rest_v1_post_batch.json",
            Payload::HttpV2 => "apigw_http_v2_post_batch.json",
        };
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }
}

/// A request body as API Gateway hands it over.
enum EventBody {
    Text(String),
    /// Binary bytes, which API Gateway base64-encodes and flags with `isBase64Encoded`.
    Binary(Vec<u8>),
}

/// One API Gateway event, made from a fixture by changing what the request was.
struct ApiEvent {
    payload: Payload,
    json: Value,
}

impl ApiEvent {
    fn new(payload: Payload) -> Self {
        ApiEvent {
            payload,
            json: payload.fixture(),
        }
    }

    fn post_batch(payload: Payload, body: EventBody) -> Self {
        ApiEvent::new(payload).body(body)
    }

    fn get(payload: Payload, path: &str) -> Self {
        ApiEvent::new(payload)
            .request("GET", path, &[])
            .without_header("content-type")
            .without_header("content-length")
    }

    /// Method, path (below the stage) and query parameters.
    fn request(mut self, method: &str, path: &str, query: &[(&str, &str)]) -> Self {
        let j = &mut self.json;
        match self.payload {
            Payload::RestV1 => {
                let stage = j["requestContext"]["stage"].as_str().unwrap().to_owned();
                j["httpMethod"] = json!(method);
                j["path"] = json!(path);
                j["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
                j["requestContext"]["httpMethod"] = json!(method);
                j["requestContext"]["path"] = json!(format!("/{stage}{path}"));
                if query.is_empty() {
                    j["queryStringParameters"] = Value::Null;
                    j["multiValueQueryStringParameters"] = Value::Null;
                } else {
                    j["queryStringParameters"] = query
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                    j["multiValueQueryStringParameters"] = query
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!([v])))
                        .collect();
                }
            }
            Payload::HttpV2 => {
                let raw_path = match j["requestContext"]["stage"].as_str().unwrap() {
                    "$default" => path.to_owned(),
                    stage => format!("/{stage}{path}"),
                };
                j["rawPath"] = json!(raw_path);
                j["requestContext"]["http"]["method"] = json!(method);
                j["requestContext"]["http"]["path"] = json!(raw_path);
                j["rawQueryString"] = json!(query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&"));
                if query.is_empty() {
                    j.as_object_mut().unwrap().remove("queryStringParameters");
                } else {
                    j["queryStringParameters"] = query
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                }
            }
        }
        self
    }

    /// An HTTP API stage other than `$default` (which API Gateway puts in `rawPath`).
    fn http_api_stage(mut self, stage: &str) -> Self {
        assert_eq!(self.payload, Payload::HttpV2);
        let path = self.json["rawPath"].as_str().unwrap().to_owned();
        let method = self.json["requestContext"]["http"]["method"]
            .as_str()
            .unwrap()
            .to_owned();
        self.json["requestContext"]["stage"] = json!(stage);
        self.request(&method, &path, &[])
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self = self.without_header(name);
        match self.payload {
            Payload::RestV1 => {
                self.json["headers"][name] = json!(value);
                self.json["multiValueHeaders"][name] = json!([value]);
            }
            Payload::HttpV2 => self.json["headers"][name.to_ascii_lowercase()] = json!(value),
        }
        self
    }

    fn without_header(mut self, name: &str) -> Self {
        for map in ["headers", "multiValueHeaders"] {
            if let Some(m) = self.json.get_mut(map).and_then(Value::as_object_mut) {
                m.retain(|k, _| !k.eq_ignore_ascii_case(name));
            }
        }
        self
    }

    fn body(mut self, body: EventBody) -> Self {
        let (text, base64, len) = match body {
            EventBody::Text(t) => {
                let len = t.len();
                (json!(t), false, len)
            }
            EventBody::Binary(b) => (
                json!(base64::engine::general_purpose::STANDARD.encode(&b)),
                true,
                b.len(),
            ),
        };
        self.json["body"] = text;
        self.json["isBase64Encoded"] = json!(base64);
        self.header("Content-Length", &len.to_string())
    }

    /// The request `lambda_http` makes of this event.
    fn into_request(self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.json.to_string())
            .expect("lambda_http parses the event")
    }
}

struct Harness {
    embedded: Embedded,
    config: CollectorConfig,
}

impl Harness {
    fn new() -> Self {
        Harness {
            embedded: Embedded::new(),
            config: CollectorConfig::default(),
        }
    }

    fn state(&self) -> AppState {
        self.embedded.state(&self.config)
    }

    /// Through the service `lambda::run` serves.
    async fn lambda(&self, event: ApiEvent) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = lambda::service(self.state(), &self.config)
            .oneshot(event.into_request())
            .await
            .unwrap();
        parts(response).await
    }

    /// Through the plain router, as the server answers.
    async fn server(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self
            .embedded
            .router(&self.config)
            .oneshot(request)
            .await
            .unwrap();
        parts(response).await
    }

    async fn stored(&self) -> Vec<Event> {
        self.embedded.stored().await
    }
}

async fn parts(response: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

/// A batch of two valid page views whose ids end in `n`, `n + 1`; the batch id ends in `n`.
fn batch_of_two(n: u64) -> String {
    let event = |id: u64| {
        page_view(
            uuid_ending(id),
            "anon-lambda",
            now_ms() - 1_000,
            Some(FORGED_IP),
        )
    };
    batch_of(&uuid_ending(n), vec![event(n), event(n + 1)])
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(body).into_owned()
        )
    })
}

/// Accepted 2, both stored with the fixture's `sourceIp` and not the forged address.
async fn assert_two_stored_from_source_ip(
    h: &Harness,
    payload: Payload,
    what: &str,
    answer: (StatusCode, HeaderMap, Vec<u8>),
) {
    let (status, _, body) = answer;
    let body = json_body(&body);
    assert_eq!(status, StatusCode::OK, "{payload:?} {what}: {body}");
    let answer: BatchResponse = serde_json::from_value(body).unwrap();
    assert_eq!(
        (answer.accepted, answer.rejected.len()),
        (2, 0),
        "{payload:?} {what}"
    );
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2, "{payload:?} {what}");
    for event in &stored {
        assert_eq!(
            event.context.ip.as_deref(),
            Some(payload.source_ip()),
            "{payload:?} {what}: the client IP is the request context's sourceIp, \
             not X-Forwarded-For ({FORGED_IP}) nor the event's own"
        );
    }
}

#[tokio::test]
async fn a_batch_is_stored_with_the_source_ip_of_the_request_context() {
    for payload in Payload::ALL {
        let h = Harness::new();
        let event = ApiEvent::post_batch(payload, EventBody::Text(batch_of_two(1)));
        assert_eq!(
            event.json["headers"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|(_, v)| v.clone()),
            Some(json!(FORGED_IP)),
            "the fixture carries a forged X-Forwarded-For"
        );
        let answer = h.lambda(event).await;
        assert_two_stored_from_source_ip(&h, payload, "plain", answer).await;
    }
}

#[tokio::test]
async fn a_base64_encoded_gzip_body_is_decompressed() {
    for payload in Payload::ALL {
        let h = Harness::new();
        let body = gzip(batch_of_two(1).as_bytes());
        let event = ApiEvent::post_batch(payload, EventBody::Binary(body))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip");
        assert_eq!(event.json["isBase64Encoded"], json!(true));
        let answer = h.lambda(event).await;
        assert_two_stored_from_source_ip(&h, payload, "Content-Encoding: gzip", answer).await;
    }
}

#[tokio::test]
async fn the_query_string_survives_the_stage_so_the_browser_gzip_flag_works() {
    // What the tracker sends: text/plain (no preflight), gzip flagged in the query string.
    for payload in Payload::ALL {
        let h = Harness::new();
        let body = gzip(batch_of_two(1).as_bytes());
        let event = ApiEvent::post_batch(payload, EventBody::Binary(body)).request(
            "POST",
            "/v1/batch",
            &[("compression", "gzip")],
        );
        let answer = h.lambda(event).await;
        assert_two_stored_from_source_ip(&h, payload, "?compression=gzip", answer).await;
    }
}

#[tokio::test]
async fn a_trusted_proxy_hop_makes_forwarded_for_count() {
    // The default (0 trusted hops) was checked above; with a hop trusted, the header is read as
    // configured, which is why it must stay 0 behind API Gateway alone.
    let mut h = Harness::new();
    h.config.trusted_proxy_hops = 1;
    let event = ApiEvent::post_batch(Payload::HttpV2, EventBody::Text(batch_of_two(1)));
    let (status, _, _) = h.lambda(event).await;
    assert_eq!(status, StatusCode::OK);
    let stored = h.stored().await;
    assert!(stored
        .iter()
        .all(|e| e.context.ip.as_deref() == Some(FORGED_IP)));
}

#[tokio::test]
async fn a_malformed_body_gets_the_same_answer_as_from_the_server() {
    let h = Harness::new();
    let malformed = r#"{"batch_id": "01936a1c-3b5e-7cc4-9a1e-000000000001", "events": [tru"#;
    let (server_status, server_headers, server_body) = h
        .server(
            Request::post("/v1/batch")
                .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Body::from(malformed))
                .unwrap(),
        )
        .await;
    assert_eq!(server_status, StatusCode::BAD_REQUEST);
    let server_json = json_body(&server_body);
    for payload in Payload::ALL {
        let event = ApiEvent::post_batch(payload, EventBody::Text(malformed.to_owned()));
        let (status, headers, body) = h.lambda(event).await;
        assert_eq!(status, server_status, "{payload:?}");
        assert_eq!(json_body(&body), server_json, "{payload:?}");
        assert_eq!(
            headers.get(header::CONTENT_TYPE),
            server_headers.get(header::CONTENT_TYPE),
            "{payload:?}"
        );
    }
    assert!(h.stored().await.is_empty());
}

#[tokio::test]
async fn healthz_answers_through_both_payload_versions_as_from_the_server() {
    let h = Harness::new();
    let server = h
        .server(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(server.0, StatusCode::OK);
    let events = [
        ApiEvent::get(Payload::RestV1, "/healthz"),
        ApiEvent::get(Payload::HttpV2, "/healthz"),
        ApiEvent::get(Payload::HttpV2, "/healthz").http_api_stage("prod"),
    ];
    for event in events {
        let what = format!(
            "{:?} {}",
            event.payload, event.json["requestContext"]["stage"]
        );
        let (status, _, body) = h.lambda(event).await;
        assert_eq!(status, server.0, "{what}");
        assert_eq!(body, server.2, "{what}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_not_found_as_on_the_server() {
    let h = Harness::new();
    let server = h
        .server(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!(server.0, StatusCode::NOT_FOUND);
    for payload in Payload::ALL {
        let (status, _, _) = h.lambda(ApiEvent::get(payload, "/nope")).await;
        assert_eq!(status, server.0, "{payload:?}");
    }
}

/// A stand-in for the Lambda Runtime API: hands out `events`, then makes `next` wait forever;
/// reports each posted response (or error) with its request id.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: mpsc::UnboundedSender<(String, Result<Value, Value>)>,
}

async fn next_invocation(State(api): State<RuntimeApi>) -> Response {
    let next = api.events.lock().unwrap().pop_front();
    let Some((id, event)) = next else {
        return std::future::pending().await;
    };
    let deadline = (now_ms() + 60_000).to_string();
    (
        [
            ("lambda-runtime-aws-request-id", id.as_str()),
            ("lambda-runtime-deadline-ms", deadline.as_str()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:retailmind-collector",
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-6720a1b2-0a1b2c3d4e5f60718293a4b5;Sampled=0",
            ),
        ],
        axum::Json(event),
    )
        .into_response()
}

async fn invocation_response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let _ = api.answers.send((id, Ok(json_body(&body))));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let _ = api.answers.send((id, Err(json_body(&body))));
    StatusCode::ACCEPTED
}

/// Set in the process [`run_answers_api_gateway_events_from_the_lambda_runtime_api`] starts to
/// run itself alone.
const ALONE: &str = "RETAILMIND_LAMBDA_RUNTIME_TEST_ALONE";

/// `lambda::run` reads the function's settings from the environment only, as Lambda sets them.
/// Setting variables while other tests of this binary run threads that may read the environment
/// (C code reading `TMPDIR`, say) is undefined behaviour with glibc, so the test runs again in a
/// process of its own, where nothing else runs yet when the variables are set.
#[test]
fn run_answers_api_gateway_events_from_the_lambda_runtime_api() {
    if std::env::var_os(ALONE).is_some() {
        return runtime_test_alone();
    }
    let name = "run_answers_api_gateway_events_from_the_lambda_runtime_api";
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs again");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "the test alone failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    // A filter that matched nothing would pass too.
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::main(flavor = "current_thread")]
async fn runtime_test_alone() {
    let events = [
        (
            "rest-batch",
            ApiEvent::post_batch(Payload::RestV1, EventBody::Text(batch_of_two(1))).json,
        ),
        (
            "http-batch-gzip",
            ApiEvent::post_batch(
                Payload::HttpV2,
                EventBody::Binary(gzip(batch_of_two(3).as_bytes())),
            )
            .header("Content-Encoding", "gzip")
            .json,
        ),
        (
            "http-healthz",
            ApiEvent::get(Payload::HttpV2, "/healthz").json,
        ),
    ];
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(
            events
                .iter()
                .map(|(id, e)| (id.to_string(), e.clone()))
                .collect(),
        )),
        answers: answers_tx,
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // What Lambda sets for a function. This process runs only this test: beside its thread
    // only libtest's main thread, waiting for it, and nothing that reads the environment (the
    // runtime is current-thread; this test's harness starts its threads below).
    std::env::set_var("AWS_LAMBDA_RUNTIME_API", addr.to_string());
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "retailmind-collector");
    std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
    std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");

    let h = Harness::new();
    let state = h.state();
    let config = h.config.clone();
    // `run` serves until the runtime stops the function; here, until every event is answered.
    let collect = async {
        let mut got = Vec::new();
        for _ in 0..events.len() {
            got.push(answers.recv().await.unwrap());
        }
        got
    };
    let got = tokio::select! {
        ended = lambda::run(state, &config) => panic!("run ended: {ended:?}"),
        got = tokio::time::timeout(Duration::from_secs(30), collect) => {
            got.expect("the function answers every event")
        }
    };
    server.abort();

    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["rest-batch", "http-batch-gzip", "http-healthz"]);
    let responses: Vec<&Value> = got
        .iter()
        .map(|(id, r)| r.as_ref().unwrap_or_else(|e| panic!("{id}: {e}")))
        .collect();
    for response in &responses[..2] {
        assert_eq!(response["statusCode"], json!(200), "{response}");
        assert_eq!(response["isBase64Encoded"], json!(false), "{response}");
        let body: BatchResponse = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!((body.accepted, body.rejected.len()), (2, 0), "{response}");
    }
    // Payload 1.0 responses carry headers in both maps; 2.0 in `headers`.
    assert_eq!(
        responses[0]["multiValueHeaders"]["content-type"],
        json!(["application/json"])
    );
    assert_eq!(
        responses[1]["headers"]["content-type"],
        json!("application/json")
    );
    assert_eq!(responses[2]["statusCode"], json!(200));
    assert_eq!(responses[2]["body"], json!("ok"));

    let mut ips: Vec<Option<String>> = h.stored().await.into_iter().map(|e| e.context.ip).collect();
    ips.sort();
    assert_eq!(
        ips,
        [
            Some(REST_SOURCE_IP.to_owned()),
            Some(REST_SOURCE_IP.to_owned()),
            Some(HTTP_SOURCE_IP.to_owned()),
            Some(HTTP_SOURCE_IP.to_owned()),
        ]
    );
}
