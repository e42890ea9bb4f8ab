//! Adapter tests: exact requests and reply decoding against a local server.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::provider::http::test_server::{Canned, TestServer};
use crate::provider::Secret;

const KEY: &str = "KEY-SHOULD-NOT-LEAK";

fn etelecom(server: &TestServer, kind: ProviderKind) -> Etelecom {
    let settings =
        ProviderSettings::new(kind, format!("{}/v1/shop", server.base), Secret::new(KEY))
            .with_timeout(Duration::from_secs(2));
    Etelecom::new(http::client(Duration::from_secs(2)).unwrap(), settings)
}

fn token() -> JourneyToken {
    JourneyToken {
        journey_id: "55".into(),
        provider_ref: None,
        token: None,
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(6),
        status: None,
    }
}

async fn send_with_reply(reply: Canned) -> ProviderError {
    let server = TestServer::start(reply).await;
    let t = token();
    let req = SendRequest {
        oa_id: "4097311281936189049",
        phone: "84987654321",
        template_id: "217489",
        template_data: &[("name", "An")],
        tracking_id: "row-1",
        token: Some(&t),
        campaign: "c",
    };
    let e = etelecom(&server, ProviderKind::Etelecom)
        .send(&req)
        .await
        .unwrap_err();
    let r = server.only_request();
    assert_eq!(r.path, "/v1/shop.Zalo/SendZNSJourney");
    assert_eq!(r.json()["template_id"], json!(217489));
    assert!(!format!("{e:?}").contains(KEY));
    e
}

fn twirp_400(body: serde_json::Value) -> Canned {
    let mut c = Canned::json(body);
    c.status = 400;
    c
}

#[tokio::test]
async fn an_invalid_field_stops_the_campaign_or_fails_the_row() {
    use ErrorClass::{AbortConfig, FailRow};
    for (body, class) in [
        // Twirp's InvalidArgumentError: the field in meta and in the message.
        // The template or the OA: the campaign's setup.
        (
            json!({"code": "invalid_argument", "msg": "template_id is invalid",
                   "meta": {"argument": "template_id"}}),
            AbortConfig,
        ),
        (
            json!({"code": "invalid_argument", "msg": "invalid template_id: 12a"}),
            AbortConfig,
        ),
        (
            json!({"code": "invalid_argument", "msg": "must be a number",
                   "meta": {"argument": "template_id"}}),
            AbortConfig,
        ),
        (
            json!({"code": "malformed", "msg": "oa_id: not an int64"}),
            AbortConfig,
        ),
        // The row's own fields.
        (
            json!({"code": "invalid_argument", "msg": "phone is invalid",
                   "meta": {"argument": "phone"}}),
            FailRow,
        ),
        (
            json!({"code": "invalid_argument", "msg": "template_data.name: too long"}),
            FailRow,
        ),
        (
            json!({"code": "out_of_range", "msg": "value out of range"}),
            FailRow,
        ),
    ] {
        let e = send_with_reply(twirp_400(body.clone())).await;
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (class, "http_400", false),
            "{body}"
        );
    }
}

#[tokio::test]
async fn other_refusals_go_by_their_code() {
    let e = send_with_reply(twirp_400(json!({"code": "unauthenticated", "msg": "?"}))).await;
    assert_eq!(e.class, ErrorClass::AbortAuth);
    // A relayed Zalo code in a 400 body goes by the table.
    let e = send_with_reply(twirp_400(
        json!({"error_code": -109, "error_message": "template invalid"}),
    ))
    .await;
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::AbortConfig, "-109")
    );
    // An unlisted code naming the template id: a campaign stop, not a token check.
    let e = send_with_reply(Canned::json(
        json!({"error_code": -2001, "error_message": "template_id does not belong to this OA"}),
    ))
    .await;
    assert_eq!(e.class, ErrorClass::AbortConfig);
    let e = send_with_reply(Canned::json(
        json!({"error_code": -2001, "error_message": "something else"}),
    ))
    .await;
    assert_eq!(e.class, ErrorClass::CheckToken);
}

#[tokio::test]
async fn a_refused_oa_stops_token_buying_too() {
    let server = TestServer::start(twirp_400(json!({
        "code": "invalid_argument", "msg": "oa_id: OA not connected to this shop"
    })))
    .await;
    let req = TokenRequest {
        oa_id: "1",
        phone: "84987654321",
        token_type: "token_logistics_30",
    };
    let e = etelecom(&server, ProviderKind::Etelecom)
        .create_token(&req)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::AbortConfig);
}

#[tokio::test]
async fn no_template_info_or_quota_and_no_request() {
    let server = TestServer::start(Canned::json(json!({}))).await;
    for kind in [ProviderKind::Etelecom, ProviderKind::Sandbox] {
        let p = etelecom(&server, kind);
        assert_eq!(p.template_info("1", "217489").await.unwrap(), None);
        assert_eq!(p.quota("1").await.unwrap(), None);
        assert_eq!(p.capabilities(), kind.capabilities());
    }
    assert!(server.requests().is_empty());
    let caps = etelecom(&server, ProviderKind::Etelecom).capabilities();
    assert!(!caps.lookup_by_tracking_id && !caps.template_info && !caps.quota_query);
    assert!(etelecom(&server, ProviderKind::Etelecom)
        .find_by_tracking_id("1", "row-1")
        .await
        .unwrap()
        .is_none());
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn get_journey_expiry_decides_the_verdict() {
    let server = TestServer::start(Canned::json(json!({
        "error_code": 0, "id": "9", "journey_id": "55", "expired_at": "1641269384", "status": "P"
    })))
    .await;
    let check = etelecom(&server, ProviderKind::Etelecom)
        .check_token("4097311281936189049", &token())
        .await
        .unwrap();
    assert_eq!(check, TokenCheck::Expired);
    let r = server.only_request();
    assert_eq!(r.path, "/v1/shop.Zalo/GetJourney");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}
