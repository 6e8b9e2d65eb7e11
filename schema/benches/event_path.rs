//! `cargo bench -p retailmind-schema --bench event_path`: CPU cost per event of what the
//! collector does to every event it takes (decode, validate, make the stream record), on one
//! core, printed as ns/event. Figures, not a test. `-- WORD` measures only what names WORD.

use std::hint::black_box;
use std::time::Instant;

use retailmind_schema::record::{enrich, ServerFields};
use retailmind_schema::wire::{decode_event, decode_located, read_native_batch, BatchEnvelope};
use retailmind_schema::{validate, Event, Limits};
use serde_json::value::RawValue;

/// A product view as the tracker sends it (about 800 bytes; its fields in the tracker's order).
fn sample(now_ms: i64) -> String {
    let event: Event = serde_json::from_value(serde_json::json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f", "type": "product_view",
        "anonymous_id": "4b8f6a2e-9c1d-4e7f-8a3b-2d5c6e7f8a9b",
        "session_id": "01936a1c-0000-7000-8000-000000000001", "timestamp": now_ms,
        "context": {
            "page": {"url": "https://shop.example/p/trail-runner-shoes?utm_source=newsletter&utm_medium=email",
                     "referrer": "https://www.search.example/?q=trail+shoes", "title": "Trail Runner Shoes · Shop"},
            "utm": {"source": "newsletter", "medium": "email", "campaign": "autumn-sale"},
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
            "screen": {"width": 1920, "height": 1080}, "locale": "de-CH", "timezone": "Europe/Zurich",
            "library": "retailmind-sdk/0.1.0"
        },
        "properties": {"product_id": "P1001", "name": "Trail Runner Shoes", "category": "Shoes/Running",
                       "price_minor": 8990, "currency": "EUR"}
    }))
    .unwrap();
    serde_json::to_string(&event).unwrap()
}

// The collector's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn per_event(what: &str, n: u32, f: impl FnMut()) {
    per_events(what, n, 1, f)
}

/// As [`per_event`], for `f` handling `events` events a call.
fn per_events(what: &str, n: u32, events: u32, mut f: impl FnMut()) {
    // `cargo bench --bench event_path -- WORD` measures only what names WORD (to count its
    // instructions under `perf stat`, say).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.is_some_and(|word| !what.contains(&word)) {
        return;
    }
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n * events);
    println!(
        "  {what:<40} {ns:>8.0} ns/event  ({:.0} events/s)",
        1e9 / ns
    );
}

fn main() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let text = sample(now);
    let raw = RawValue::from_string(text.clone()).unwrap();
    let event: Event = decode_event(&raw).unwrap();
    let at = decode_located(raw.get())
        .unwrap()
        .1
        .expect("the sample's context is located");
    let limits = Limits::default();
    let n = 200_000;
    println!("one core, a {}-byte product view:", text.len());
    per_event("decode (wire::decode_event)", n, || {
        black_box(decode_event(black_box(&raw)).unwrap());
    });
    per_event("decode (serde_json, no field paths)", n, || {
        black_box(serde_json::from_str::<Event>(black_box(raw.get())).unwrap());
    });
    per_event("validate", n, || {
        black_box(validate(black_box(&event), &limits, now)).unwrap();
    });
    per_event("encode for the stream (serde_json::to_vec)", n, || {
        black_box(serde_json::to_vec(black_box(&event)).unwrap());
    });
    per_event("all three (decode_event, validate, encode)", n, || {
        let e = decode_event(black_box(&raw)).unwrap();
        validate(&e, &limits, now).unwrap();
        black_box(serde_json::to_vec(&e).unwrap());
    });
    let server = ServerFields {
        received_at: now,
        ip: Some("203.0.113.7"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)"),
    };
    per_event("decode (wire::decode_located)", n, || {
        black_box(decode_located(black_box(raw.get())).unwrap());
    });
    per_event("record written into the text (enrich)", n, || {
        let mut e = event.clone();
        black_box(enrich(&mut e, raw.get(), Some(&at), &server));
    });
    per_event("record encoded (enrich, place unknown)", n, || {
        let mut e = event.clone();
        black_box(enrich(&mut e, raw.get(), None, &server));
    });
    per_event(
        "what the collector does (decode_located, validate, enrich)",
        n,
        || {
            let (mut e, at) = decode_located(black_box(raw.get())).unwrap();
            validate(&e, &limits, now).unwrap();
            black_box(enrich(&mut e, raw.get(), at.as_ref(), &server));
        },
    );

    // A request: 20 such events in one body, read as the collector reads it.
    let body = format!(
        r#"{{"batch_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","sent_at":{now},"events":[{}]}}"#,
        vec![text.as_str(); 20].join(",")
    );
    let n = n / 20;
    println!("a batch of 20 such events ({} bytes), decoded:", body.len());
    per_events(
        "  body read, then each event (BatchEnvelope)",
        n,
        20,
        || {
            let batch: BatchEnvelope = serde_json::from_slice(black_box(body.as_bytes())).unwrap();
            for raw in batch.events.unwrap() {
                black_box(decode_located(raw.get()).unwrap());
            }
        },
    );
    per_events("  in one pass (read_native_batch)", n, 20, || {
        let batch = read_native_batch(black_box(body.as_bytes()), 500).unwrap();
        for mut event in batch.events {
            black_box(event.decode().unwrap());
        }
    });
}
