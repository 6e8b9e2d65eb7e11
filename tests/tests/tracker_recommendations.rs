//! "Recommended for you" on the demo storefront, end to end in real Chromium: other shoppers'
//! product views go through the collector and the processor into the model, the tracker's
//! `recommendations()` brings them to a product page, and the impression and the click are
//! tracked with the recommendation id so the lake can attribute them.

mod common;
mod tracker_support;

use std::time::Duration;

use fantoccini::Locator;
use retailmind_connectors::clock::now_ms;
use retailmind_schema::{Event, Payload};
use retailmind_tests::wait_for;
use serde_json::{json, Value};
use tracker_support::{named, Lab};

/// Five other shoppers who looked at the shoes and then at the bottle.
async fn other_shoppers_view_shoes_then_bottle(collector: &str) {
    let t = now_ms() - 60_000;
    let mut events = Vec::new();
    for shopper in 0..5 {
        for (step, product) in ["P1001", "P1004"].into_iter().enumerate() {
            events.push(json!({
                "event_id": uuid::Uuid::now_v7(), "type": "product_view",
                "anonymous_id": format!("other-{shopper}"), "session_id": format!("other-session-{shopper}"),
                "timestamp": t + shopper * 1_000 + step as i64 * 100,
                "context": {"page": {"url": format!("https://shop.example/product.html?id={product}")}},
                "properties": {"product_id": product}
            }));
        }
    }
    let answer = common::post_batch(collector, events).await;
    assert_eq!(answer["accepted"], 10, "{answer}");
}

/// Other shoppers' views go through the processor into the model, which the collector reloads.
async fn teach_shoes_then_bottle(lab: &Lab) {
    other_shoppers_view_shoes_then_bottle(&lab.gate.url).await;
    let client = reqwest::Client::new();
    wait_for("the model to learn shoes → bottle", Duration::from_secs(10), || {
        let url = format!(
            "{}/v1/recommendations?anonymous_id=probe&session_id=probe&placement=product&context_item=P1001",
            lab.gate.url
        );
        let client = client.clone();
        async move {
            let answer: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let first = &answer["items"][0];
            (first["product_id"] == "P1004" && first["fallback"] == false).then_some(())
        }
    })
    .await;
}

/// `retailmind.recommendations(...)` in the page, for a product page without a context item:
/// whatever the shopper's own session says.
async fn session_recommendations(lab: &Lab) -> Value {
    lab.browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.retailmind.recommendations({placement: 'product', n: 4})
               .then((r) => done(r), (e) => done({error: String(e)}));",
            vec![],
        )
        .await
        .unwrap()
}

/// The bottle, learnt from other shoppers, is the first pick for a session that saw the shoes.
fn follows_the_shoes(answer: &Value) -> bool {
    let first = &answer["items"][0];
    first["product_id"] == "P1004" && first["fallback"] == false
}

fn props(e: &Event) -> &serde_json::Map<String, Value> {
    match &e.payload {
        Payload::Custom(c) => &c.props,
        other => panic!("not a custom event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommended_products_are_shown_and_their_impression_and_click_attributed() {
    let lab = Lab::start().await;
    teach_shoes_then_bottle(&lab).await;

    let browser = &lab.browser.client;
    browser
        .goto(&format!("{}/product.html?id=P1001", lab.site))
        .await
        .unwrap();
    lab.wait_ready().await;
    let shown = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("recommended-P1004"))
        .await
        .expect("the bottle recommended on the shoes' page");
    assert!(browser
        .find(Locator::Id("recommended"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    let impressions = named(&events, "recommendation_impression");
    assert_eq!(impressions.len(), 1, "{impressions:?}");
    let impression = props(impressions[0]);
    let recommendation_id = impression["recommendation_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&recommendation_id).is_ok());
    assert_eq!(impression["placement"], "product");
    assert_eq!(impression["product_ids"][0], "P1004");

    // Following the recommendation: the click carries the same id, then the bottle's page.
    shown.click().await.unwrap();
    lab.wait_ready().await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    let clicks = named(&events, "recommendation_click");
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    let click = props(clicks[0]);
    assert_eq!(click["recommendation_id"], recommendation_id.as_str());
    assert_eq!(
        (click["product_id"].clone(), click["position"].clone()),
        (json!("P1004"), json!(0))
    );
    assert!(events.iter().any(|e| matches!(&e.payload,
        Payload::ProductView(p) if p.product_id == "P1004")));
    lab.stop().await;
}

/// The collector remembers a session's clicks before it answers their batch, so the first
/// recommendations asked for after the tracker's flush already follow the click, with no wait
/// for the processor (which this lab also runs) to fold it into a saved model. How long the
/// answer took is printed, not judged: a timed assertion would judge the CI machine's load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shoppers_own_click_changes_their_very_next_recommendations() {
    let lab = Lab::start().await;
    teach_shoes_then_bottle(&lab).await;
    let browser = &lab.browser.client;
    browser.goto(&format!("{}/", lab.site)).await.unwrap();
    lab.wait_ready().await;
    let before = session_recommendations(&lab).await;
    assert!(before.get("error").is_none(), "{before}");
    assert!(
        !follows_the_shoes(&before),
        "nothing of the session yet: {before}"
    );

    // The shopper opens the shoes; the tracker sends the product view.
    browser
        .goto(&format!("{}/product.html?id=P1001", lab.site))
        .await
        .unwrap();
    lab.wait_ready().await;
    assert_eq!(lab.flush().await, "ok");
    let acknowledged = std::time::Instant::now();
    let answer = session_recommendations(&lab).await;
    println!(
        "own click reflected in recommendations after {:?}",
        acknowledged.elapsed()
    );
    assert!(
        follows_the_shoes(&answer),
        "the first answer after the flush: {answer}"
    );
    lab.stop().await;
}
