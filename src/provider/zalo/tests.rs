//! Adapter tests: exact requests and reply decoding against a local server.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::provider::http::test_server::{
    assert_transport_failures, template_info_from, Canned, TestServer,
};
use crate::provider::{Dedup, Secret};

const KEY: &str = "KEY-SHOULD-NOT-LEAK";

fn settings(base: &str) -> ProviderSettings {
    ProviderSettings::new(ProviderKind::Zalo, base, Secret::new(KEY))
        .with_timeout(Duration::from_secs(2))
}

fn zalo(server: &TestServer) -> Zalo {
    let client = http::client(Duration::from_secs(2)).unwrap();
    Zalo::new(client, settings(&server.base))
}

fn token() -> JourneyToken {
    JourneyToken {
        journey_id: "123456789".into(),
        provider_ref: None,
        token: Some("JT-abc=".into()),
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(6),
        status: None,
    }
}

fn send_req<'a>(token: &'a JourneyToken, data: &'a [(&'a str, &'a str)]) -> SendRequest<'a> {
    SendRequest {
        oa_id: "3886651700907664415",
        phone: "84987654321",
        template_id: "217489",
        template_data: data,
        tracking_id: "row-7",
        token: Some(token),
        campaign: "c1",
    }
}

fn assert_no_leak(err: &ProviderError) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY), "key leaked: {shown}");
}

async fn send_with_reply(reply: Canned) -> Result<SendOutcome, ProviderError> {
    let server = TestServer::start(reply).await;
    let t = token();
    let out = zalo(&server).send(&send_req(&t, &[("name", "An")])).await;
    if let Err(e) = &out {
        assert_no_leak(e);
    }
    out
}

#[tokio::test]
async fn create_token_posts_phone_with_access_token_header() {
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "message": "Success", "token": "JT-new", "journey_id": "123456789"
    })))
    .await;
    let provider = super::super::build(settings(&server.base)).unwrap();
    assert_eq!(provider.kind(), ProviderKind::Zalo);
    let req = TokenRequest {
        oa_id: "3886651700907664415",
        phone: "84987654321",
        token_type: "token_logistics_30",
    };
    let t = provider.create_token(&req).await.unwrap();

    let r = server.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/journey/get-token");
    assert_eq!(r.header("access_token"), Some(KEY));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Only the phone: no oa_id, no token_type.
    assert_eq!(r.json(), json!({ "phone": "84987654321" }));

    assert_eq!(t.journey_id, "123456789");
    assert_eq!(t.token.as_deref(), Some("JT-new"));
    assert_eq!(t.provider_ref, None);
    assert_eq!(t.status, None);
    let left = t.expires_at - OffsetDateTime::now_utc();
    assert!(left > time::Duration::days(7) - time::Duration::minutes(1) && left <= TOKEN_LIFETIME);
}

#[tokio::test]
async fn create_token_numeric_journey_id_and_errors() {
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "message": "Success", "token": "JT", "journey_id": 42
    })))
    .await;
    let req = TokenRequest {
        oa_id: "1",
        phone: "84987654321",
        token_type: "",
    };
    assert_eq!(
        zalo(&server).create_token(&req).await.unwrap().journey_id,
        "42"
    );

    // An unknown code cannot mean "check the token" while buying one.
    let server = TestServer::start(Canned::json(json!({"error": -999, "message": "?"}))).await;
    let e = zalo(&server).create_token(&req).await.unwrap_err();
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::FailRow, "-999"));

    // Success without a token: possibly charged, so in doubt.
    let server = TestServer::start(Canned::json(json!({"error": 0, "journey_id": "1"}))).await;
    let e = zalo(&server).create_token(&req).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Retry);
    assert!(e.in_doubt);
}

#[tokio::test]
async fn send_request_shape_and_string_quota() {
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "message": "Success",
        "data": {
            "sent_time": "1640144305350",
            "quota": { "remainingQuota": "480", "dailyQuota": "500" },
            "msg_id": "6e84304c259208ce5181"
        }
    })))
    .await;
    let t = token();
    let data = [("order_code", "A-1"), ("amount", "150000")];
    let out = zalo(&server).send(&send_req(&t, &data)).await.unwrap();

    let r = server.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/message/template");
    assert_eq!(r.header("access_token"), Some(KEY));
    assert_eq!(r.header("journey_token"), Some("JT-abc="));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "phone": "84987654321",
            // A JSON number, as in seed 003's example.
            "template_id": 217489,
            "template_data": { "order_code": "A-1", "amount": "150000" },
            "tracking_id": "row-7"
        })
    );

    assert_eq!(out.msg_id.as_deref(), Some("6e84304c259208ce5181"));
    assert_eq!(
        out.quota,
        Some(QuotaInfo {
            remaining: 480,
            daily: 500
        })
    );
    assert!(!out.duplicate);
}

#[tokio::test]
async fn quota_as_numbers_and_non_numeric_template_id() {
    let server = TestServer::start(Canned::json(json!({
        "error": 0,
        "data": { "msg_id": "m1", "quota": { "remainingQuota": 7, "dailyQuota": 5000 } }
    })))
    .await;
    let t = token();
    let mut req = send_req(&t, &[]);
    req.template_id = "7895417a7d3f9461cd2e";
    let out = zalo(&server).send(&req).await.unwrap();
    assert_eq!(
        out.quota,
        Some(QuotaInfo {
            remaining: 7,
            daily: 5000
        })
    );
    let body = server.only_request().json();
    assert_eq!(body["template_id"], json!("7895417a7d3f9461cd2e"));
    assert_eq!(body["template_data"], json!({}));
}

#[tokio::test]
async fn error_codes_are_classified_by_the_table() {
    for (code, class) in [
        (-124, ErrorClass::AbortAuth),
        (-118, ErrorClass::FailRow),
        (-144, ErrorClass::PauseQuota),
        (-100, ErrorClass::Retry),
        (-999, ErrorClass::CheckToken),
    ] {
        let e = send_with_reply(Canned::json(json!({"error": code, "message": "nope"})))
            .await
            .unwrap_err();
        assert_eq!(e.class, class, "code {code}");
        assert_eq!(e.code, code.to_string());
        assert_eq!(e.message, "nope");
        assert!(!e.in_doubt);
    }
    // The code may come as a string too.
    let e = send_with_reply(Canned::json(json!({"error": "-118"})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::FailRow);
}

#[tokio::test]
async fn transport_failures() {
    assert_transport_failures(send_with_reply).await;

    let e = send_with_reply(Canned::raw(401, "")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::AbortAuth);
}

#[tokio::test]
async fn echoed_keys_are_blanked() {
    let e = send_with_reply(Canned::json(json!({
        "error": -124, "message": format!("access token {KEY} is invalid")
    })))
    .await
    .unwrap_err();
    assert_eq!(e.message, "access token *** is invalid");

    let e = send_with_reply(Canned::raw(502, &format!("upstream said {KEY}")))
        .await
        .unwrap_err();
    assert!(e.message.contains("***"));
}

#[tokio::test]
async fn check_token_request_and_verdicts() {
    let future = (OffsetDateTime::now_utc() + time::Duration::days(3)).unix_timestamp() * 1000;
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "message": "Success",
        "data": { "appId": "1", "oaId": "2", "createdAt": "1641269204370", "expiredAt": future.to_string() }
    })))
    .await;
    let check = zalo(&server)
        .check_token("ignored", &token())
        .await
        .unwrap();
    assert_eq!(
        check,
        TokenCheck::Valid {
            expires_at: OffsetDateTime::from_unix_timestamp(future / 1000).unwrap()
        }
    );
    let r = server.only_request();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/journey/check-token");
    assert_eq!(r.header("access_token"), Some(KEY));
    assert_eq!(r.header("journey_token"), Some("JT-abc="));
    assert!(r.body.is_empty());

    // The seed's own example: long expired, as a number here.
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "data": { "expiredAt": 1641269384370_i64 }
    })))
    .await;
    assert_eq!(
        zalo(&server).check_token("", &token()).await.unwrap(),
        TokenCheck::Expired
    );

    for (code, verdict) in [
        (-118, Some(TokenCheck::NotFound)),
        (-999, Some(TokenCheck::NotFound)),
    ] {
        let server = TestServer::start(Canned::json(json!({"error": code}))).await;
        assert_eq!(zalo(&server).check_token("", &token()).await.ok(), verdict);
    }
    for (reply, class) in [
        (Canned::json(json!({"error": -124})), ErrorClass::AbortAuth),
        (
            Canned::json(json!({"error": -101})),
            ErrorClass::AbortConfig,
        ),
        (Canned::raw(503, ""), ErrorClass::Retry),
        (Canned::raw(200, "not json"), ErrorClass::Retry),
    ] {
        let server = TestServer::start(reply).await;
        let e = zalo(&server).check_token("", &token()).await.unwrap_err();
        assert_eq!(e.class, class);
        assert_no_leak(&e);
    }
}

#[tokio::test]
async fn refusals_without_a_request() {
    let server = TestServer::start(Canned::json(json!({"error": 0}))).await;
    let z = zalo(&server);
    let t = token();
    let no_token = SendRequest {
        token: None,
        ..send_req(&t, &[])
    };
    assert_eq!(
        z.send(&no_token).await.unwrap_err().class,
        ErrorClass::RefreshToken
    );

    let mut tokenless = token();
    tokenless.token = None;
    assert_eq!(
        z.check_token("", &tokenless).await.unwrap(),
        TokenCheck::NotFound
    );

    let e = z.get_message("", "m1").await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::AbortConfig, "unsupported")
    );
    assert!(server.requests().is_empty());
    assert_eq!(z.capabilities(), ProviderKind::Zalo.capabilities());
    assert!(z.capabilities().tokens);
    assert_eq!(z.capabilities().dedup, Dedup::Inferred);
}

#[tokio::test]
async fn template_info_request_and_reply() {
    // The shape of template/info/v2 (spec, "Zalo — quota and template info").
    let (server, info) = template_info_from(
        zalo,
        json!({
            "error": 0, "message": "Success",
            "data": {
                "templateId": 217489, "templateName": "Order", "status": "ENABLE",
                "listParams": [
                    {"name": "customer_name", "require": true, "type": "STRING",
                     "maxLength": 30, "minLength": 0, "acceptNull": false},
                    {"name": "note", "require": false, "type": "STRING",
                     "maxLength": "100", "minLength": "0", "acceptNull": true}
                ],
                "listButtons": [], "timeout": 7200000, "previewUrl": "https://x.test/p",
                "templateQuality": "HIGH", "templateTag": "TRANSACTION", "price": "300"
            }
        }),
        "ignored",
        "217489",
    )
    .await;
    let r = server.only_request();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/template/info/v2");
    assert_eq!(r.query.as_deref(), Some("template_id=217489"));
    assert_eq!(r.header("access_token"), Some(KEY));
    assert!(r.body.is_empty());

    assert_eq!(info.template_id, "217489");
    assert!(info.enabled);
    assert_eq!(info.status_raw, "ENABLE");
    assert_eq!(info.params.len(), 2);
    assert_eq!(info.params[0].name, "customer_name");
    assert_eq!(
        (
            info.params[0].required,
            info.params[0].max_length,
            info.params[0].accept_null
        ),
        (true, Some(30), false)
    );
    assert_eq!(
        (
            info.params[1].required,
            info.params[1].max_length,
            info.params[1].accept_null
        ),
        (false, Some(100), true)
    );
}

#[tokio::test]
async fn template_info_refusals() {
    let (_, info) = template_info_from(
        zalo,
        json!({
            "error": 0, "data": {"status": "PENDING_REVIEW", "listParams": []}
        }),
        "",
        "1",
    )
    .await;
    assert!(!info.enabled);
    assert_eq!(info.status_raw, "PENDING_REVIEW");

    for (reply, class) in [
        // Template id invalid (Zalo's -109) and an unlisted code alike
        // refuse the campaign, not a row.
        (
            Canned::json(json!({"error": -109, "message": "template id is invalid"})),
            ErrorClass::AbortConfig,
        ),
        (
            Canned::json(json!({"error": -1123, "message": "?"})),
            ErrorClass::AbortConfig,
        ),
        (
            Canned::json(json!({"error": -124, "message": format!("token {KEY} invalid")})),
            ErrorClass::AbortAuth,
        ),
        (Canned::raw(404, ""), ErrorClass::AbortConfig),
        (Canned::raw(503, ""), ErrorClass::Retry),
        (Canned::json(json!({"error": 0})), ErrorClass::Retry),
    ] {
        let server = TestServer::start(reply).await;
        let e = zalo(&server).template_info("", "1").await.unwrap_err();
        assert_eq!(e.class, class, "{e}");
        assert!(!e.in_doubt);
        assert_no_leak(&e);
    }
}

#[tokio::test]
async fn quota_request_strings_and_numbers() {
    let server = TestServer::start(Canned::json(json!({
        "error": 0, "message": "Success",
        "data": {
            "dailyQuota": "500", "remainingQuota": "480",
            "dailyQuotaPromotion": null, "remainingQuotaPromotion": null,
            "monthlyPromotionQuota": 0
        }
    })))
    .await;
    let q = zalo(&server).quota("ignored").await.unwrap();
    assert_eq!(
        q,
        Some(QuotaInfo {
            remaining: 480,
            daily: 500
        })
    );
    let r = server.only_request();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/message/quota");
    assert_eq!(r.query, None);
    assert_eq!(r.header("access_token"), Some(KEY));

    let server = TestServer::start(Canned::json(json!({
        "error": 0, "data": {"dailyQuota": 5000, "remainingQuota": 0}
    })))
    .await;
    assert_eq!(
        zalo(&server).quota("").await.unwrap(),
        Some(QuotaInfo {
            remaining: 0,
            daily: 5000
        })
    );

    for (reply, class) in [
        (
            Canned::json(json!({"error": 0, "data": {"dailyQuota": "5"}})),
            ErrorClass::Retry,
        ),
        (Canned::json(json!({"error": -124})), ErrorClass::AbortAuth),
        (Canned::raw(401, ""), ErrorClass::AbortAuth),
    ] {
        let server = TestServer::start(reply).await;
        let e = zalo(&server).quota("").await.unwrap_err();
        assert_eq!((e.class, e.in_doubt), (class, false));
    }
}
