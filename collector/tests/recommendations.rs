//! `GET /v1/recommendations` through the real router on the embedded backend: parameters, keys
//! and origins, freshness through the session memory, and the business rules.

mod common;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use common::{batch_of, json_of, now_ms, uuid_ending, Embedded};
use retailmind_collector::{router, AppState, CollectorConfig, KeyKind, WriteKeyConfig};
use retailmind_recommend::{ModelConfig, ModelState};
use serde_json::{json, Value};
use tower::ServiceExt;

const SHOP: &str = "https://shop.example";
const MODEL: &str = "recommendations";

/// A model where `a` is followed by `b`, `c` by `d`, `x` and `y` are bought together and `pop`
/// is the most viewed item. The processor also folded (and this collector never saw) session
/// `earlier`, which viewed `c` and bought `y`, an order the shop's server sent for visitor
/// `anon-7` (no session: keyed by the visitor) with `x`, another for customer `cust-9`, and a
/// view naming `b`'s category.
fn seeded_model() -> ModelState {
    let mut model = ModelState::new(ModelConfig::default());
    let t = now_ms() as f64 / 1000.0 - 3600.0;
    for i in 0..5 {
        let s = format!("history-{i}");
        model.observe_click(&s, "a", t + i as f64 * 100.0);
        model.observe_click(&s, "b", t + i as f64 * 100.0 + 10.0);
        let s = format!("other-{i}");
        model.observe_click(&s, "c", t + i as f64 * 100.0);
        model.observe_click(&s, "d", t + i as f64 * 100.0 + 10.0);
        model.observe_order(&["x", "y"]);
    }
    for i in 0..20 {
        model.observe_click(&format!("pop-{i}"), "pop", t + i as f64);
    }
    model.observe_click("xy", "x", t);
    model.observe_click("xy", "y", t + 1.0);
    model.observe_view("earlier", "c", t + 600.0, None);
    model.observe_purchase("earlier", &["y"], t + 700.0);
    model.observe_purchase("anon-7", &["x"], t + 800.0);
    // An order with a customer id and no anonymous id goes on the stream under the customer id.
    model.observe_purchase("cust-9", &["x"], t + 850.0);
    model.observe_view("hats", "b", t + 900.0, Some("hats"));
    model
}

struct Harness {
    _embedded: Embedded,
    app: Router,
}

impl Harness {
    /// The router over the embedded backend, serving the seeded model (saved as version 1 and
    /// loaded before the first request).
    async fn new(config: CollectorConfig) -> Self {
        let embedded = Embedded::new();
        let store = embedded.backend.models.clone();
        store
            .save(MODEL, 1, &seeded_model().to_snapshot(), &Default::default())
            .await
            .unwrap();
        let state: AppState = embedded.state(&config);
        let loaded = state
            .recommender
            .live
            .reload(store.as_ref(), MODEL)
            .await
            .unwrap();
        assert!(loaded, "the stored model is loaded");
        Harness {
            app: router(state, &config),
            _embedded: embedded,
        }
    }

    async fn open() -> Self {
        Harness::new(CollectorConfig::default()).await
    }

    async fn get(&self, query: &str) -> Response<Body> {
        let request = Request::get(format!("/v1/recommendations?{query}"))
            .body(Body::empty())
            .unwrap();
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// The answer's product ids, checking it is a 200.
    async fn items(&self, query: &str) -> Vec<String> {
        let r = self.get(query).await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        let body = json_of(r).await;
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The items the strategy itself chose (not the popularity fill).
    async fn chosen(&self, query: &str) -> Vec<String> {
        let body = json_of(self.get(query).await).await;
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["fallback"] == false)
            .map(|i| i["product_id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn post_events(&self, batch: u64, events: Vec<Value>) {
        let request = Request::post("/v1/batch")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(batch_of(&uuid_ending(0xb000 + batch), events)))
            .unwrap();
        let r = self.app.clone().oneshot(request).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(json_of(r).await["accepted"], 1);
    }
}

fn event(n: u64, kind: &str, session: &str, properties: Value) -> Value {
    json!({
        "event_id": uuid_ending(n), "type": kind, "anonymous_id": "anon-1",
        "session_id": session, "timestamp": now_ms(),
        "context": {"page": {"url": "https://shop.example/p"}}, "properties": properties
    })
}

fn product_view(n: u64, session: &str, product: &str) -> Value {
    event(n, "product_view", session, json!({"product_id": product}))
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_field() {
    let h = Harness::open().await;
    let base = "anonymous_id=anon-1&session_id=s-1";
    let cases = [
        (
            "session_id=s-1&placement=home",
            "anonymous_id",
            "is required",
        ),
        (
            "anonymous_id=anon-1&placement=home",
            "session_id",
            "is required",
        ),
        (base, "placement", "is required"),
        (
            &format!("{base}&placement=footer") as &str,
            "placement",
            "not one of",
        ),
        (&format!("{base}&placement=home&n=0"), "n", "from 1 to 50"),
        (&format!("{base}&placement=home&n=51"), "n", "from 1 to 50"),
        (&format!("{base}&placement=home&n=ten"), "n", "from 1 to 50"),
        (
            &format!("{base}&placement=cart&cart=a,,b"),
            "cart",
            "must not be empty",
        ),
        (
            &format!("{base}&placement=product&context_item="),
            "context_item",
            "must not be empty",
        ),
        // Not run past: it would answer ten items, unfiltered.
        (
            &format!("{base}&placement=home&limit=5"),
            "query",
            "unknown field `limit`, expected one of",
        ),
    ];
    for (query, field, reason) in cases {
        let r = h.get(query).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = json_of(r).await;
        assert_eq!(body["error"]["code"], "invalid_parameter", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains(reason),
            "{query}: {message}"
        );
    }
    let ok = h.get(&format!("{base}&placement=home&n=3")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body = json_of(ok).await;
    assert_eq!(body["strategy"], "trending");
    assert_eq!(body["model_version"], 1);
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert_eq!(body["items"][0]["product_id"], "pop");
    let id = body["recommendation_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn keys_and_origins_apply_as_for_ingestion() {
    let h = Harness::new(CollectorConfig {
        keys: vec![
            WriteKeyConfig {
                key: "pk_shop".into(),
                name: "shop web".into(),
                kind: KeyKind::Publishable,
                origins: vec![SHOP.into()],
            },
            WriteKeyConfig {
                key: "sk_shop".into(),
                name: "shop backend".into(),
                kind: KeyKind::Secret,
                origins: vec![],
            },
        ],
        ..CollectorConfig::default()
    })
    .await;
    let query = "anonymous_id=anon-1&session_id=s-1&placement=home";
    let send = |key: Option<&str>, origin: Option<&str>| {
        let uri = match key {
            Some(key) => format!("/v1/recommendations?{query}&key={key}"),
            None => format!("/v1/recommendations?{query}"),
        };
        let mut request = Request::get(uri);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        h.app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let r = send(None, Some(SHOP)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(r).await["error"]["code"], "missing_key");
    let r = send(Some("pk_other"), Some(SHOP)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(Some("pk_shop"), Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(r).await["error"]["code"], "origin_not_allowed");
    let r = send(Some("pk_shop"), Some(SHOP)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    // The key also travels as a header (server-side rendering with the secret key).
    let r = h
        .app
        .clone()
        .oneshot(
            Request::get(format!("/v1/recommendations?{query}"))
                .header("x-write-key", "sk_shop")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The preflight a browser may send is answered for the key's origin only.
    let preflight = |origin: &str| {
        Request::options(format!("/v1/recommendations?{query}&key=pk_shop"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap()
    };
    let r = h.app.clone().oneshot(preflight(SHOP)).await.unwrap();
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let r = h
        .app
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(r
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

#[tokio::test]
async fn a_sessions_product_views_change_its_next_recommendations() {
    let h = Harness::open().await;
    let query =
        |session: &str| format!("anonymous_id=anon-1&session_id={session}&placement=product&n=3");
    let before = h.items(&query("s-1")).await;
    assert!(
        h.chosen(&query("s-1")).await.is_empty(),
        "no clicks: popularity only"
    );

    // The item that follows it in other sessions now ranks first; the product just viewed is
    // the one on screen, so it is not recommended even when the page does not name it.
    h.post_events(1, vec![product_view(1, "s-1", "a")]).await;
    let after = h.chosen(&query("s-1")).await;
    assert_eq!(after.first().map(String::as_str), Some("b"), "{after:?}");
    assert!(!after.contains(&"a".to_owned()), "{after:?}");
    assert_eq!(
        h.items(&query("s-2")).await,
        before,
        "another session is unchanged"
    );

    // The next view moves them on at once.
    h.post_events(2, vec![product_view(2, "s-1", "c")]).await;
    let next = h.chosen(&query("s-1")).await;
    assert_eq!(next.first().map(String::as_str), Some("d"), "{next:?}");
    // On a product page the product on screen is never recommended.
    let on_page = h.chosen(&format!("{}&context_item=c", query("s-1"))).await;
    assert_eq!(
        on_page.first().map(String::as_str),
        Some("d"),
        "{on_page:?}"
    );
    assert!(!on_page.contains(&"c".to_owned()), "{on_page:?}");
}

#[tokio::test]
async fn cart_and_purchased_items_are_excluded() {
    let h = Harness::open().await;
    let cart = "anonymous_id=anon-1&session_id=s-1&placement=cart&n=5&cart=x";
    let r = h.get(cart).await;
    let body = json_of(r).await;
    assert_eq!(body["strategy"], "bought-together");
    assert_eq!(body["items"][0]["product_id"], "y");
    assert_eq!(body["items"][0]["fallback"], false);
    let items = h.items(cart).await;
    assert!(!items.contains(&"x".to_owned()), "the cart is excluded");

    // y is bought in this session: it is not recommended to it again.
    h.post_events(
        3,
        vec![event(
            3,
            "purchase",
            "s-1",
            json!({"order_id": "o-1", "revenue_minor": 500, "currency": "EUR",
                   "items": [{"product_id": "y", "quantity": 1}]}),
        )],
    )
    .await;
    let items = h.items(cart).await;
    assert!(!items.contains(&"y".to_owned()), "{items:?}");
    assert!(!items.contains(&"x".to_owned()), "{items:?}");
    assert!(
        h.items(&cart.replace("s-1", "s-2"))
            .await
            .contains(&"y".to_owned()),
        "another session still gets it"
    );

    // Added to the cart through events: excluded without the cart parameter too.
    h.post_events(
        4,
        vec![event(
            4,
            "add_to_cart",
            "s-3",
            json!({"product_id": "pop", "quantity": 1}),
        )],
    )
    .await;
    let home = "anonymous_id=anon-1&session_id=s-3&placement=home&n=5";
    assert!(!h.items(home).await.contains(&"pop".to_owned()));
}

#[tokio::test]
async fn what_the_model_holds_of_a_session_counts_where_this_instance_never_saw_it() {
    let h = Harness::open().await;
    // Its clicks: on a product page without a named product, `c` is on screen, so `d` follows.
    let product = "anonymous_id=anon-1&session_id=earlier&placement=product&n=3";
    assert_eq!(
        h.chosen(product).await.first().map(String::as_str),
        Some("d")
    );
    // Its purchase: `y`, bought with `x`, is not recommended to it.
    let cart = "anonymous_id=anon-1&session_id=earlier&placement=cart&n=5&cart=x";
    assert!(!h.items(cart).await.contains(&"y".to_owned()));
    assert!(h
        .chosen(&cart.replace("earlier", "s-5"))
        .await
        .contains(&"y".to_owned()));
    // The server's order of visitor anon-7 counts for any session of theirs.
    let cart = "anonymous_id=anon-7&session_id=s-6&placement=cart&n=5&cart=y";
    assert!(!h.items(cart).await.contains(&"x".to_owned()));
    assert!(h
        .chosen(&cart.replace("anon-7", "anon-1"))
        .await
        .contains(&"x".to_owned()));
    // And that of customer cust-9, signed in on a browser the order did not name.
    let signed_in = cart.replace("anon-7", "anon-2") + "&user_id=cust-9";
    assert!(!h.items(&signed_in).await.contains(&"x".to_owned()));
    // The category the model learned.
    let hats = "anonymous_id=anon-1&session_id=s-1&placement=home&category=hats";
    assert_eq!(h.items(hats).await, ["b"]);
}

#[tokio::test]
async fn an_order_sent_without_a_session_is_excluded_for_its_visitor() {
    let h = Harness::open().await;
    let cart = "anonymous_id=anon-1&session_id=s-8&placement=cart&n=5&cart=x";
    assert!(h.chosen(cart).await.contains(&"y".to_owned()));
    // As `POST /v1/transactions` puts an order on the stream: the visitor, no session.
    let mut order = event(
        8,
        "purchase",
        "",
        json!({"order_id": "o-8", "revenue_minor": 500, "currency": "EUR",
               "items": [{"product_id": "y", "quantity": 1}]}),
    );
    order.as_object_mut().unwrap().remove("session_id");
    h.post_events(8, vec![order]).await;
    assert!(!h.items(cart).await.contains(&"y".to_owned()));
}

#[tokio::test]
async fn category_filter_keeps_only_that_category() {
    let h = Harness::open().await;
    h.post_events(
        5,
        vec![event(
            5,
            "product_view",
            "s-9",
            json!({"product_id": "d", "category": "shoes"}),
        )],
    )
    .await;
    let items = h
        .items("anonymous_id=anon-1&session_id=s-1&placement=home&category=shoes")
        .await;
    assert_eq!(items, ["d"]);
}

#[tokio::test]
async fn the_openapi_document_describes_the_endpoint() {
    let h = Harness::open().await;
    let r = h
        .app
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let doc = json_of(r).await;
    let op = &doc["paths"]["/v1/recommendations"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["anonymous_id", "session_id", "placement", "cart", "n"] {
        assert!(params.contains(&name), "{params:?}");
    }
    assert!(doc["components"]["schemas"]["RecommendationsResponse"].is_object());
}
