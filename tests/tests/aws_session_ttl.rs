//! Session TTL on DynamoDB (moto): `provision` turns TTL on for `expires_at`, and every session
//! item carries it, `session_ttl_days` after the session's last event.

mod lease_support;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use lease_support::provisioned_aws_with;
use retailmind_schema::Session;
use retailmind_tests::moto::MotoServer;

#[tokio::test]
async fn session_items_expire_the_configured_days_after_their_last_event() {
    let moto = MotoServer::start().await;
    let (config, backend) = provisioned_aws_with(&moto, |c| c.session_ttl_days = Some(30)).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk_config());

    let ttl = dynamodb
        .describe_time_to_live()
        .table_name(&config.sessions_table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let end_ms = 1_764_066_600_000;
    let session = Session {
        session_id: "s-1".into(),
        anonymous_id: "ttl-visitor".into(),
        start_ms: end_ms - 60_000,
        end_ms,
        event_count: 2,
        version: 1,
        ..Session::default()
    };
    backend.sessions.put(&[session]).await.unwrap();
    let item = dynamodb
        .get_item()
        .table_name(&config.sessions_table)
        .key("anonymous_id", AttributeValue::S("ttl-visitor".into()))
        .key("start_ms", AttributeValue::N((end_ms - 60_000).to_string()))
        .send()
        .await
        .unwrap();
    let expires_at = item.item().and_then(|i| i.get("expires_at")).cloned();
    let expected = end_ms / 1000 + 30 * 86_400;
    assert_eq!(expires_at, Some(AttributeValue::N(expected.to_string())));
}
