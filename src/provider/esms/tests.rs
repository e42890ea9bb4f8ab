//! Adapter tests: exact requests and reply decoding against a local server.

use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::*;
use crate::provider::http::test_server::{
    assert_transport_failures, template_info_from, Canned, TestServer,
};
use crate::provider::{Dedup, TemplateParam};

const KEY: &str = "KEY-SHOULD-NOT-LEAK";
const SECRET: &str = "SECRET-SHOULD-NOT-LEAK";

fn settings(base: &str) -> ProviderSettings {
    ProviderSettings::new(
        ProviderKind::Esms,
        format!("{base}/MainService.svc/json"),
        Secret::new(KEY),
    )
    .with_secret_key(Some(Secret::new(SECRET)))
    .with_timeout(Duration::from_secs(2))
}

fn esms(server: &TestServer) -> Esms {
    Esms::new(
        http::client(Duration::from_secs(2)).unwrap(),
        settings(&server.base),
    )
}

// Keys deliberately out of alphabetical order: Params must keep CSV order.
const DATA: &[(&str, &str)] = &[("ten", "An"), ("ma_don", "A-1"), ("amount", "150000")];

fn send_req() -> SendRequest<'static> {
    SendRequest {
        oa_id: "4097311281936189049",
        phone: "84987654321",
        template_id: "217489",
        template_data: DATA,
        tracking_id: "row-7",
        token: None,
        campaign: "july",
    }
}

fn assert_no_leak(err: &ProviderError) {
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(KEY) && !shown.contains(SECRET),
        "key leaked: {shown}"
    );
}

async fn send_with_reply(reply: Canned) -> Result<SendOutcome, ProviderError> {
    let server = TestServer::start(reply).await;
    let out = esms(&server).send(&send_req()).await;
    if let Err(e) = &out {
        assert_no_leak(e);
    }
    out
}

const SEND_PATH: &str = "/MainService.svc/json/SendZaloMessage_V4_post_json/";

/// The one request was a read: a JSON POST to `path` with `body`, the
/// keys in the body and never in the URL.
fn assert_read_request(server: &TestServer, path: &str, body: Value) {
    let r = server.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, path);
    assert_eq!(r.query, None, "keys must not travel in the URL");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), body);
}

/// The body `send_req()` sends (no callback URL set).
fn send_body() -> Value {
    json!({
        "ApiKey": KEY,
        "SecretKey": SECRET,
        "Phone": "84987654321",
        "Params": ["An", "A-1", "150000"],
        "TempID": "217489",
        "OAID": "4097311281936189049",
        "IsJourney": "true",
        "OrderId": "row-7",
        "campaignid": "july",
        "RequestId": "row-7",
        "Sandbox": "0"
    })
}

#[tokio::test]
async fn send_request_shape() {
    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "100", "SMSID": "b1e2-77", "ErrorMessage": ""
    })))
    .await;
    let out = esms(&server).send(&send_req()).await.unwrap();

    let r = server.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, SEND_PATH);
    assert_eq!(r.query, None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body, send_body());
    // Every field a string, Params an array of strings (seed 004).
    for (k, v) in body.as_object().unwrap() {
        match k.as_str() {
            "Params" => assert!(v.as_array().unwrap().iter().all(Value::is_string)),
            _ => assert!(v.is_string(), "{k} is not a string"),
        }
    }
    assert_eq!(
        out,
        SendOutcome {
            msg_id: Some("b1e2-77".into()),
            ..SendOutcome::default()
        }
    );
}

#[tokio::test]
async fn callback_url_is_sent_when_set_and_numeric_code() {
    let server = TestServer::start(Canned::json(json!({"CodeResult": 100, "SMSID": 991}))).await;
    let s = settings(&server.base).with_callback_url(Some(crate::provider::Secret::new(
        "https://example.test/cb?c=july",
    )));
    let e = Esms::new(http::client(Duration::from_secs(2)).unwrap(), s);
    let out = e.send(&send_req()).await.unwrap();
    assert_eq!(out.msg_id.as_deref(), Some("991"));
    let r = server.only_request();
    assert_eq!(r.path, SEND_PATH);
    let mut want = send_body();
    want["CallbackUrl"] = json!("https://example.test/cb?c=july");
    assert_eq!(r.json(), want);
}

#[tokio::test]
async fn codes_are_classified_and_124_is_a_replay() {
    for (code, class) in [
        ("101", ErrorClass::AbortAuth),
        ("103", ErrorClass::PauseQuota),
        ("99", ErrorClass::FailRow),
        ("204", ErrorClass::AbortConfig),
        ("777", ErrorClass::FailRow),
    ] {
        let e = send_with_reply(Canned::json(json!({
            "CodeResult": code, "ErrorMessage": "no luck"
        })))
        .await
        .unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (class, code));
        assert_eq!(e.message, "no luck");
        assert!(!e.in_doubt);
    }

    let out = send_with_reply(Canned::json(json!({
        "CodeResult": "124", "ErrorMessage": "Duplicate RequestId"
    })))
    .await
    .unwrap();
    assert!(out.duplicate);
    assert_eq!(out.msg_id, None);

    let out = send_with_reply(Canned::json(json!({"CodeResult": 124, "SMSID": "s-1"})))
        .await
        .unwrap();
    assert!(out.duplicate);
    assert_eq!(out.msg_id.as_deref(), Some("s-1"));
}

#[tokio::test]
async fn transport_failures() {
    assert_transport_failures(send_with_reply).await;

    // JSON, but no code: the message may have been accepted.
    let e = send_with_reply(Canned::json(json!({"SMSID": "x"})))
        .await
        .unwrap_err();
    assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, true));
}

#[tokio::test]
async fn echoed_keys_are_blanked() {
    let e = send_with_reply(Canned::json(json!({
        "CodeResult": "101",
        "ErrorMessage": format!("ApiKey {KEY} / SecretKey {SECRET} rejected")
    })))
    .await
    .unwrap_err();
    assert_eq!(e.message, "ApiKey *** / SecretKey *** rejected");

    let e = send_with_reply(Canned::raw(
        400,
        &format!("bad body {{\"SecretKey\":\"{SECRET}\"}}"),
    ))
    .await
    .unwrap_err();
    assert!(e.message.contains("***"));
}

#[tokio::test]
async fn an_echoed_callback_url_never_shows_its_webhook_token() {
    let url = "https://zns.example.vn/webhooks/esms/TOKEN-DO-NOT-LEAK-5e1";
    let server = TestServer::start(Canned::raw(
        400,
        &format!("bad body {{\"CallbackUrl\":\"{url}\"}}"),
    ))
    .await;
    let provider = Esms::new(
        http::client(Duration::from_secs(2)).unwrap(),
        settings(&server.base).with_callback_url(Some(Secret::new(url))),
    );
    let e = provider.send(&send_req()).await.unwrap_err();
    assert!(!e.message.contains("TOKEN-DO-NOT-LEAK"), "{e}");
    assert!(e.message.contains("***"), "{e}");
}

#[tokio::test]
async fn refusals_without_a_request() {
    let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
    let mut s = settings(&server.base);
    s.secret_key = None;
    let no_secret = Esms::new(http::client(Duration::from_secs(2)).unwrap(), s);
    let e = no_secret.send(&send_req()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::AbortConfig);
    assert!(e.message.contains("--secret-key"));
    let e = no_secret.quota("1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::AbortConfig);
    let e = no_secret.template_info("1", "217489").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::AbortConfig);

    let e = esms(&server);
    let long = "x".repeat(51);
    let req = SendRequest {
        tracking_id: &long,
        ..send_req()
    };
    let err = e.send(&req).await.unwrap_err();
    assert_eq!((err.class, err.in_doubt), (ErrorClass::FailRow, false));

    let token = JourneyToken {
        journey_id: "1".into(),
        provider_ref: None,
        token: None,
        expires_at: OffsetDateTime::now_utc(),
        status: None,
    };
    let tr = TokenRequest {
        oa_id: "1",
        phone: "84987654321",
        token_type: "",
    };
    for err in [
        e.create_token(&tr).await.unwrap_err(),
        e.check_token("1", &token).await.unwrap_err(),
    ] {
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::AbortConfig, "unsupported")
        );
    }
    assert!(server.requests().is_empty());

    let caps = e.capabilities();
    assert_eq!(caps, ProviderKind::Esms.capabilities());
    assert!(!caps.tokens);
    assert_eq!(caps.dedup, Dedup::Documented);
    assert!(!caps.lookup_by_tracking_id);

    // Exactly 50 characters is allowed.
    let fifty = "y".repeat(50);
    let req = SendRequest {
        tracking_id: &fifty,
        ..send_req()
    };
    e.send(&req).await.unwrap();
    assert_eq!(server.only_request().json()["RequestId"], json!(fifty));
}

#[tokio::test]
async fn message_status_request_and_replies() {
    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "100",
        "Data": {"delivery_time": "2026-11-24T08:00:01Z", "message": "Success", "status": 1}
    })))
    .await;
    let m = esms(&server)
        .get_message("4097311281936189049", "sms-77")
        .await
        .unwrap();
    assert_eq!(m.delivery_status.as_deref(), Some("received"));
    assert_eq!(m.delivery_time.as_deref(), Some("2026-11-24T08:00:01Z"));
    assert_read_request(
        &server,
        "/MainService.svc/json/GetZaloMessageStatus",
        json!({ "ApiKey": KEY, "SecretKey": SECRET, "OAID": "4097311281936189049", "MessageId": "sms-77" }),
    );

    for (status, word) in [("-1", "failed_delivery"), ("0", "unknown")] {
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "100", "Data": {"delivery_time": "", "message": "x", "status": status}
        })))
        .await;
        let m = esms(&server).get_message("1", "m").await.unwrap();
        assert_eq!(m.delivery_status.as_deref(), Some(word));
        assert_eq!(m.delivery_time, None);
    }

    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "101", "ErrorMessage": "Authorize Failed"
    })))
    .await;
    let e = esms(&server).get_message("1", "m").await.unwrap_err();
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::AbortAuth, "101"));
    assert_no_leak(&e);

    let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
    let e = esms(&server).get_message("1", "m").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Retry, "no Data");
}

#[tokio::test]
async fn get_quota_request_and_replies() {
    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "100", "ErrorMessage": "success",
        "DailyQuota": 5000, "DailyQuotaPromotion": 0, "RemainingQuota": 4992
    })))
    .await;
    let q = esms(&server)
        .quota("4097311281936189049")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        q,
        QuotaInfo {
            remaining: 4992,
            daily: 5000
        }
    );
    assert_read_request(
        &server,
        "/MainService.svc/json/ZNS/GetQuota",
        json!({ "ApiKey": KEY, "SecretKey": SECRET, "OAID": "4097311281936189049" }),
    );

    // The documented type is string.
    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "100", "DailyQuota": "500", "RemainingQuota": "480"
    })))
    .await;
    let q = esms(&server).quota("1").await.unwrap().unwrap();
    assert_eq!(
        q,
        QuotaInfo {
            remaining: 480,
            daily: 500
        }
    );

    let server = TestServer::start(Canned::json(json!({
        "CodeResult": "101", "ErrorMessage": "Authorize Failed"
    })))
    .await;
    let e = esms(&server).quota("1").await.unwrap_err();
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::AbortAuth, "101"));
    assert_no_leak(&e);

    let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
    let e = esms(&server).quota("1").await.unwrap_err();
    assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, false));
}

#[tokio::test]
async fn quota_refusals_are_campaign_level() {
    // An unlisted code, or a 404, would fail one row on a send; on the
    // quota read it refuses the setup.
    for reply in [
        Canned::json(json!({"CodeResult": "777", "ErrorMessage": "?"})),
        Canned::raw(404, "no such method"),
    ] {
        let server = TestServer::start(reply).await;
        let e = esms(&server).quota("1").await.unwrap_err();
        assert_eq!((e.class, e.in_doubt), (ErrorClass::AbortConfig, false));
    }
    let server = TestServer::start(Canned::raw(503, "")).await;
    let e = esms(&server).quota("1").await.unwrap_err();
    assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, false));
}

#[tokio::test]
async fn template_info_request_and_reply() {
    let (server, info) = template_info_from(
        esms,
        json!({
            "CodeResult": "100",
            "ErrorMessage": "",
            "Status": "ENABLE",
            "ListParams": [
                {"Name": "ten", "Require": true, "Type": "STRING",
                 "MaxLength": 30, "MinLength": 1, "AcceptNull": false},
                {"Name": "ma_don", "Require": "false", "Type": "STRING",
                 "MaxLength": "20", "MinLength": "0", "AcceptNull": "true"}
            ]
        }),
        "4097311281936189049",
        "217489",
    )
    .await;
    assert_read_request(
        &server,
        "/MainService.svc/json/GetZnsTemplateInfo",
        json!({
            "ApiKey": KEY, "SecretKey": SECRET,
            "OAID": "4097311281936189049", "TemplateId": "217489"
        }),
    );
    assert_eq!(
        info,
        TemplateInfo {
            template_id: "217489".into(),
            status_raw: "ENABLE".into(),
            enabled: true,
            params: vec![
                TemplateParam::bounded("ten", true, "STRING", 1, 30, false),
                TemplateParam::bounded("ma_don", false, "STRING", 0, 20, true),
            ],
        }
    );
}

#[tokio::test]
async fn template_info_errors() {
    // A disabled template is an answer, not an error.
    let (_, info) = template_info_from(
        esms,
        json!({
            "CodeResult": 100, "Status": "DISABLE", "ListParams": []
        }),
        "1",
        "9",
    )
    .await;
    assert!(!info.enabled);
    assert_eq!(info.status_raw, "DISABLE");

    for (reply, class) in [
        (
            Canned::json(json!({"CodeResult": "101", "ErrorMessage": format!("bad {KEY}")})),
            ErrorClass::AbortAuth,
        ),
        // An unknown template: whatever the code, the campaign stops.
        (
            Canned::json(json!({"CodeResult": "146", "ErrorMessage": "Template not found"})),
            ErrorClass::AbortConfig,
        ),
        (
            Canned::raw(400, &format!("{{\"SecretKey\":\"{SECRET}\"}}")),
            ErrorClass::AbortConfig,
        ),
        (
            Canned::json(json!({"CodeResult": "100"})),
            ErrorClass::Retry,
        ),
        (Canned::raw(200, "<html>"), ErrorClass::Retry),
    ] {
        let server = TestServer::start(reply).await;
        let e = esms(&server).template_info("1", "9").await.unwrap_err();
        assert_eq!(e.class, class, "{e}");
        assert!(!e.in_doubt);
        assert_no_leak(&e);
    }
}
