//! Segment's official Python library (`segment-analytics-python` from PyPI) sends to the
//! collector unchanged: its `{batch: [...]}` posts to `/v1/batch` are converted to our events, and
//! a resend of the same messages maps to the same event ids.
//!
//! The library is installed (idempotently) into the Python named by `RETAILMIND_PYTHON`
//! (default `python3`). If that fails the test fails, saying why; it never skips.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use retailmind_connectors::embedded;
use retailmind_schema::{
    CartLine, Context, Custom, Event, Page, PageView, Payload, Product, Purchase,
};
use serde_json::json;

use common::{stream_events, Pipeline};

/// The PyPI package and the module it provides.
const PACKAGE: &str = "segment-analytics-python>=2.4,<3";
const MODULE: &str = "segment.analytics";

/// The sender's script: four calls with fixed message ids and times (`argv[2]`, ms since the
/// epoch), then flush. It fails (exit 1) when the library reports an error through `on_error`,
/// or when the collector's answer lists rejected events: Segment's library only looks at the
/// status code, so the answer body is watched by wrapping its HTTP session.
const SCRIPT: &str = r#"
import copy, datetime, json, sys
import segment.analytics as analytics
from segment.analytics import request as segment_request

host, base_ms = sys.argv[1], int(sys.argv[2])
problems = []
answers = []

def on_error(error, items):
    problems.append("library error: %r (%d messages)" % (error, len(items)))

original_post = segment_request._session.post
def watched_post(url, **kwargs):
    response = original_post(url, **kwargs)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answers.append(response.status_code)
    if response.status_code != 200 or not answer or answer.get("rejected"):
        problems.append("collector answered %s: %s" % (response.status_code, response.text))
    return response
segment_request._session.post = watched_post

analytics.write_key = "e2e-segment-key"
analytics.host = host
analytics.on_error = on_error
analytics.max_retries = 1

def at(offset_s):
    return datetime.datetime.fromtimestamp(base_ms // 1000 + offset_s, tz=datetime.timezone.utc)

ctx = {
    "page": {"url": "https://shop.example/p/mug-42", "title": "Mug", "referrer": "https://search.example/"},
    "userAgent": "Mozilla/5.0 (e2e)",
    "locale": "de-CH",
}
# The library adds `library` to the context dict it is given, so each call gets its own copy.
analytics.track(anonymous_id="anon-1", event="Product Viewed", message_id="seg-msg-1",
    properties={"product_id": "mug-42", "name": "Mug", "price": 19.99, "currency": "EUR"},
    context=copy.deepcopy(ctx), timestamp=at(0))
# As server libraries do: the page in the properties, no context.page.
analytics.page(anonymous_id="anon-1", category="product", name="Mug", message_id="seg-msg-2",
    properties={"url": "https://shop.example/p/mug-42", "title": "Mug"},
    context={"userAgent": "Mozilla/5.0 (e2e)", "locale": "de-CH"}, timestamp=at(1))
# As a shop's backend does: no page at all.
analytics.identify(user_id="user-7", anonymous_id="anon-1", message_id="seg-msg-3",
    traits={"email": "shopper@example.com", "plan": "gold"},
    context={"userAgent": "Mozilla/5.0 (e2e)", "locale": "de-CH"}, timestamp=at(2))
# The total as arithmetic on floats gives it: 43.730000000000004.
analytics.track(user_id="user-7", anonymous_id="anon-1", event="Order Completed", message_id="seg-msg-4",
    properties={"order_id": "o-1001", "total": 19.99 * 2 + 3.75, "revenue": 39.98, "currency": "EUR",
                "products": [{"product_id": "mug-42", "name": "Mug", "price": 19.99, "quantity": 2},
                             {"sku": "tea-7", "price": 3.75}]},
    context=copy.deepcopy(ctx), timestamp=at(3))
analytics.flush()
analytics.shutdown()

if not answers:
    problems.append("no answer from the collector was seen (did the library post?)")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("sent 4 messages in %d posts" % len(answers))
"#;

fn python() -> String {
    std::env::var("RETAILMIND_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `cmd` to completion or kills it after `limit`; returns (success, stdout + stderr).
fn run(mut cmd: Command, limit: Duration, dir: &Path) -> (bool, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out_path = dir.join(format!("run-{}.log", RUNS.fetch_add(1, Ordering::Relaxed)));
    let out = std::fs::File::create(&out_path).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut child = match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(child) => child,
        Err(e) => return (false, format!("cannot start {cmd:?}: {e}")),
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut log = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.is_none() {
        log.push_str(&format!("\n(killed after {limit:?})"));
    }
    (status.is_some_and(|s| s.success()), log)
}

/// Installs the library unless `import segment.analytics` already works; `Err` says why not.
fn ensure_segment_library(dir: &Path) -> Result<(), String> {
    let python = python();
    let importable = || {
        let mut cmd = Command::new(&python);
        cmd.args(["-c", &format!("import {MODULE}")]);
        run(cmd, Duration::from_secs(60), dir)
    };
    if importable().0 {
        return Ok(());
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        PACKAGE,
    ]);
    let (installed, log) = run(pip, Duration::from_secs(600), dir);
    match importable() {
        (true, _) => Ok(()),
        (false, import_log) => Err(format!(
            "Segment's Python library is needed and could not be installed into {python} \
             (set RETAILMIND_PYTHON to another interpreter, or run `{python} -m pip install '{PACKAGE}'`).\n\
             pip install {}:\n{log}\nimport {MODULE}:\n{import_log}",
            if installed { "succeeded" } else { "failed" },
        )),
    }
}

/// Sends the script's four messages once.
async fn send_with_segment_library(dir: &Path, collector_url: &str, base_ms: i64) {
    let script = dir.join("send.py");
    std::fs::write(&script, SCRIPT).expect("write script");
    let mut cmd = Command::new(python());
    cmd.arg(&script).arg(collector_url).arg(base_ms.to_string());
    let dir = dir.to_path_buf();
    let (ok, log) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(120), &dir))
        .await
        .expect("runner thread");
    assert!(ok, "the Segment library script failed:\n{log}");
}

/// What the four messages must become (ids, server-side fields and the library name aside).
fn expected(base_ms: i64) -> Vec<Event> {
    let context = |url: &str, title: Option<String>, referrer: Option<&str>| Context {
        page: Page {
            url: url.into(),
            referrer: referrer.map(Into::into),
            title,
        },
        user_agent: Some("Mozilla/5.0 (e2e)".into()),
        locale: Some("de-CH".into()),
        ..Context::default()
    };
    let shop = context(
        "https://shop.example/p/mug-42",
        Some("Mug".into()),
        Some("https://search.example/"),
    );
    let mug = Product {
        product_id: "mug-42".into(),
        name: Some("Mug".into()),
        category: None,
        price_minor: Some(1999),
        currency: Some("EUR".into()),
    };
    let event = |i: i64, user: Option<&str>, context: &Context, payload| Event {
        event_id: uuid::Uuid::nil(),
        anonymous_id: "anon-1".into(),
        user_id: user.map(Into::into),
        session_id: None,
        timestamp: base_ms + i * 1000,
        received_at: None,
        context: context.clone(),
        payload,
    };
    let traits = json!({"email": "shopper@example.com", "plan": "gold"});
    vec![
        event(0, None, &shop, Payload::ProductView(mug.clone())),
        event(
            1,
            None,
            &context("https://shop.example/p/mug-42", Some("Mug".into()), None),
            Payload::PageView(PageView {
                category: Some("product".into()),
                ..PageView::default()
            }),
        ),
        event(
            2,
            Some("user-7"),
            &context(retailmind_collector::NO_PAGE_URL, None, None),
            Payload::Custom(Custom {
                name: "identify".into(),
                props: traits.as_object().cloned().unwrap_or_default(),
            }),
        ),
        event(
            3,
            Some("user-7"),
            &shop,
            Payload::Purchase(Purchase {
                order_id: "o-1001".into(),
                revenue_minor: 4373,
                currency: "EUR".into(),
                items: vec![
                    CartLine {
                        product: mug,
                        quantity: 2,
                    },
                    CartLine {
                        product: Product {
                            product_id: "tea-7".into(),
                            price_minor: Some(375),
                            currency: Some("EUR".into()),
                            ..Product::default()
                        },
                        quantity: 1,
                    },
                ],
            }),
        ),
    ]
}

/// Checks the parts the expectation leaves out, then blanks them so events compare whole.
fn normalized(mut e: Event) -> (uuid::Uuid, Event) {
    assert_eq!(e.event_id.get_version_num(), 7, "{e:?}");
    assert!(e.received_at.is_some(), "stamped by the collector: {e:?}");
    let library = e.context.library.take().unwrap_or_default();
    assert!(library.starts_with("analytics-python/"), "{library}");
    let id = std::mem::replace(&mut e.event_id, uuid::Uuid::nil());
    e.received_at = None;
    e.context.ip = None;
    (id, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_python_library_events_become_ours() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let installed = tokio::task::spawn_blocking(move || ensure_segment_library(&dir))
        .await
        .expect("installer thread");
    if let Err(why) = installed {
        panic!("{why}");
    }

    let backend = embedded::open(&data.path().join("data")).unwrap();
    let pipeline = Pipeline::start(backend).await;
    // Whole seconds, a minute ago: inside the collector's accepted window, exact in ISO-8601.
    let now_ms = retailmind_connectors::clock::now_ms();
    let base_ms = (now_ms / 1000 - 60) * 1000;

    send_with_segment_library(data.path(), &pipeline.collector_url, base_ms).await;
    let first: Vec<_> = stream_events(pipeline.backend.reader.as_ref())
        .await
        .into_iter()
        .map(normalized)
        .collect();
    let events: Vec<Event> = first.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(events, expected(base_ms));

    // The same messages again (as a library retry would send them): they map to the same event
    // ids, so the collector recognises every one and stores nothing twice (different ids would
    // add four more events).
    send_with_segment_library(data.path(), &pipeline.collector_url, base_ms).await;
    let all: Vec<_> = stream_events(pipeline.backend.reader.as_ref())
        .await
        .into_iter()
        .map(normalized)
        .collect();
    assert_eq!(all, first, "a resend is recognised by its event ids");
    let mut ids: Vec<_> = first.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "distinct ids per message: {ids:?}");

    pipeline.stop().await;
}
