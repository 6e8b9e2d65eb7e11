//! Getting batches from the outbox to the collector: one request at a time while the page
//! lives, everything at once when it goes away, and `flush()` for the page to wait on.

use js_sys::Promise;
use uuid::Uuid;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::backoff::{verdict_for_status, Verdict};
use crate::browser::{self, jitter, new_event_id, now_ms};
use crate::outbox::Settled;
use crate::tracker::{self, TrackerError};
use crate::transport;

/// Sends the next batch if one is due: nothing in flight and, unless `ignore_backoff`, the
/// retry wait after a failure over. Returns the promise of its outcome (see [`launch`]).
pub fn send_next(ignore_backoff: bool) -> Option<Promise> {
    let (endpoint, batch_id, body) = tracker::with(|t| {
        let batch = t
            .outbox
            .next_batch(now_ms(), ignore_backoff, new_event_id)?;
        Some((
            t.endpoint.clone(),
            batch.batch_id,
            transport::to_json(batch),
        ))
    })
    .ok()
    .flatten()?;
    Some(launch(&endpoint, batch_id, body))
}

/// The timer's tick: sends waiting events if nothing else is sending.
pub fn on_timer() {
    if tracker::with(|t| !t.outbox.is_empty()).unwrap_or(false) {
        send_next(false);
    }
}

/// The page is being hidden or left: starts a request for every batch not already in flight,
/// right now, with `keepalive` so they complete after the page is gone.
pub fn send_everything_now() {
    let Ok((endpoint, batches)) = tracker::with(|t| {
        let batches: Vec<_> = t
            .outbox
            .all_unsent_batches(now_ms(), new_event_id)
            .into_iter()
            .map(|b| (b.batch_id, transport::to_json(b)))
            .collect();
        (t.endpoint.clone(), batches)
    }) else {
        return;
    };
    for (batch_id, body) in batches {
        // Settled by its own task; nobody waits on a page that is going away.
        let _ = launch(&endpoint, batch_id, body);
    }
}

/// Sends everything queued and waits for the collector's answers. Fails, leaving the events
/// queued, at the first network error or retryable status; a refused (4xx) batch is dropped
/// and reported once the rest is sent.
pub async fn flush() -> Result<(), String> {
    let mut refused = None;
    loop {
        let in_flight = tracker::with(|t| t.sends.first().map(|(_, p)| p.clone()))
            .map_err(|e| e.to_string())?;
        if let Some(request) = in_flight {
            // Someone else's send: its outcome is settled by its own task; then look again.
            let _ = JsFuture::from(request).await;
            continue;
        }
        if tracker::with(|t| t.outbox.is_empty()).map_err(|e| e.to_string())? {
            break;
        }
        let Some(request) = send_next(true) else {
            return Err(TrackerError::Busy.to_string());
        };
        let outcome = JsFuture::from(request).await.unwrap_or_else(|e| e);
        let left = tracker::queued().to_string();
        let Some(status) = outcome.as_f64() else {
            let reason = outcome.as_string().unwrap_or_default();
            return Err([
                "retailmind: could not reach the collector (",
                &reason,
                "); ",
                &left,
                " events stay queued",
            ]
            .concat());
        };
        let status = status as u16;
        match verdict_for_status(status) {
            Verdict::Delivered => {}
            Verdict::Drop => refused = Some(refused_message(status)),
            Verdict::Retry => {
                return Err([
                    "retailmind: the collector answered HTTP ",
                    &status.to_string(),
                    "; ",
                    &left,
                    " events stay queued",
                ]
                .concat());
            }
        }
    }
    refused.map_or(Ok(()), Err)
}

/// Starts the request now and settles the batch in the outbox when its answer comes. The
/// returned promise always resolves (so timed sends leave no unhandled rejections): with the
/// HTTP status, or with a string saying why there was none.
fn launch(endpoint: &str, batch_id: Uuid, body: Result<String, JsValue>) -> Promise {
    let request = match (&body, tracker::with(|t| t.window.clone())) {
        (Ok(body), Ok(window)) => Ok(transport::post(&window, endpoint, body)),
        // Every event serialized when it was queued; a batch that does not never will.
        (Err(e), _) => Err((transport::describe(e), Verdict::Drop)),
        (_, Err(e)) => Err((e.to_string(), Verdict::Retry)),
    };
    let done = future_to_promise(async move {
        let (result, verdict) = match request {
            Ok(request) => match transport::status(request).await {
                Ok(status) => (Ok(status), verdict_for_status(status)),
                Err(reason) => (Err(reason), Verdict::Retry),
            },
            Err((reason, verdict)) => (Err(reason), verdict),
        };
        let settled = tracker::with(|t| {
            t.sends.retain(|(id, _)| *id != batch_id);
            let settled = t.outbox.settle(batch_id, verdict, now_ms(), jitter());
            (settled, t.outbox.has_full_batch())
        });
        match settled {
            Ok((Settled::Dropped { events }, _)) => {
                let status = result.as_ref().map_or(0, |s| *s);
                browser::warn(
                    &[
                        &refused_message(status),
                        " (",
                        &events.to_string(),
                        " events)",
                    ]
                    .concat(),
                );
            }
            // More than a batch waiting: no need to wait for the timer.
            Ok((Settled::Delivered { .. }, true)) => {
                send_next(false);
            }
            _ => {}
        }
        Ok(match result {
            Ok(status) => JsValue::from(status),
            Err(reason) => JsValue::from(reason),
        })
    });
    let _ = tracker::with(|t| t.sends.push((batch_id, done.clone())));
    done
}

fn refused_message(status: u16) -> String {
    [
        "retailmind: the collector refused a batch with HTTP ",
        &status.to_string(),
        "; its events were dropped",
    ]
    .concat()
}
