//! Template info, the quota query and declared-template enforcement, per
//! protocol, over raw HTTP on 127.0.0.1.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::tests::{
    client, esms_send_body, etelecom_journey, etelecom_send, reply_json, start, zalo_send, PHONE,
};
use super::*;

/// "Huyền" with ề precomposed (5 chars) and decomposed (e + ̂ + ̀: 7 chars).
const COMPOSED: &str = "Huy\u{1EC1}n";
const DECOMPOSED: &str = "Huye\u{0302}\u{0300}n";

fn declared(flags: &[&str]) -> HashMap<String, TemplateSpec> {
    flags
        .iter()
        .map(|f| TemplateSpec::parse_flag(f).expect("valid flag"))
        .collect()
}

fn cfg(protocol: ProviderKind) -> SandboxConfig {
    with_quota(protocol, SandboxConfig::default().daily_quota)
}

/// [`cfg`] with the OA's daily quota at `daily_quota`.
fn with_quota(protocol: ProviderKind, daily_quota: u64) -> SandboxConfig {
    SandboxConfig {
        protocol,
        daily_quota,
        templates: declared(&[
            "217489=customer_name:1-5,amount:1-20:number,note?:0-50",
            "300@disable=x",
        ]),
        ..SandboxConfig::default()
    }
}

async fn zalo_get(sb: &Sandbox, path: &str) -> Value {
    let req = client()
        .get(format!("{}{path}", sb.base_url()))
        .header("access_token", DEFAULT_API_KEY);
    reply_json(req).await
}

#[tokio::test]
async fn zalo_template_info_and_quota_query() {
    let sb = start(with_quota(ProviderKind::Zalo, 10)).await;
    let v = zalo_get(&sb, "/template/info/v2?template_id=217489").await;
    assert_eq!(v["error"], 0, "{v}");
    let d = &v["data"];
    assert_eq!(
        (&d["templateId"], &d["status"]),
        (&json!(217489), &json!("ENABLE"))
    );
    assert_eq!(
        d["listParams"][0],
        json!({"name": "customer_name", "require": true, "type": "STRING",
               "maxLength": 5, "minLength": 1, "acceptNull": false})
    );
    assert_eq!(d["listParams"][1]["type"], "NUMBER");
    assert_eq!(d["listParams"][2]["require"], false);
    let v = zalo_get(&sb, "/template/info/v2?template_id=300").await;
    assert_eq!(v["data"]["status"], "DISABLE");
    let v = zalo_get(&sb, "/template/info/v2?template_id=999").await;
    assert_eq!(v["error"], -109, "{v}");

    let v = zalo_get(&sb, "/message/quota").await;
    assert_eq!(
        v["data"],
        json!({"dailyQuota": "10", "remainingQuota": "10"})
    );
    let ok = json!({"customer_name": "An", "amount": "12000"});
    assert_eq!(zalo_send(&sb, 217489, ok, "q1").await["error"], 0);
    let v = zalo_get(&sb, "/message/quota").await;
    assert_eq!(v["data"]["remainingQuota"], "9", "{v}");
    sb.stop().await;
}

#[tokio::test]
async fn zalo_enforces_declared_limits_counting_nfc_characters() {
    let sb = start(cfg(ProviderKind::Zalo)).await;
    let send = |data: Value, t: &'static str| {
        let sb = &sb;
        async move { zalo_send(sb, 217489, data, t).await["error"].clone() }
    };
    // Composed and decomposed "Huyền" are both 5 characters after NFC.
    assert_eq!(
        send(json!({"customer_name": COMPOSED, "amount": "1"}), "a").await,
        0
    );
    assert_eq!(
        send(json!({"customer_name": DECOMPOSED, "amount": "1"}), "b").await,
        0
    );
    let six = format!("{DECOMPOSED}x");
    assert_eq!(
        send(json!({"customer_name": six, "amount": "1"}), "c").await,
        -1121
    );
    assert_eq!(send(json!({"amount": "1"}), "d").await, -1122);
    assert_eq!(
        send(json!({"customer_name": "An", "amount": "abc"}), "e").await,
        -1124
    );
    // An undeclared template has no limits; a disabled one refuses every send.
    let long = json!({"customer_name": "x".repeat(500)});
    assert_eq!(zalo_send(&sb, 42, long, "f").await["error"], 0);
    assert_eq!(
        zalo_send(&sb, 300, json!({"x": "1"}), "g").await["error"],
        -117
    );
    let st = sb.stats();
    assert_eq!((st.accepted, st.param_rejections), (3, 4));
    assert!(!st.deliveries.contains_key("c"));
    sb.stop().await;
}

#[tokio::test]
async fn etelecom_relays_zalo_codes_for_declared_limits() {
    let sb = start(cfg(ProviderKind::Etelecom)).await;
    let j = etelecom_journey(&sb).await;
    let send = |name: String, t: &'static str| {
        let body = json!({
            "oa_id": "1", "journey_id": j["journey_id"], "phone": PHONE, "template_id": 217489,
            "template_data": { "customer_name": name, "amount": "5" }, "tracking_id": t,
        });
        reply_json::<Value>(etelecom_send(&sb, &body))
    };
    let v = send(DECOMPOSED.to_string(), "ok").await;
    assert!(v["msg_id"].is_string() || v["id"].is_string(), "{v}");
    let v = send("toolong".to_string(), "bad").await;
    assert_eq!(v["error_code"], -1121, "{v}");
    assert_eq!(sb.stats().param_rejections, 1);
    sb.stop().await;
}

async fn esms_post(sb: &Sandbox, path: &str, body: Value) -> Value {
    reply_json(
        client()
            .post(format!("{}{path}", sb.base_url()))
            .json(&body),
    )
    .await
}

/// An eSMS send of template `temp` without a callback.
async fn esms_send(sb: &Sandbox, temp: &str, params: Value, request_id: &str) -> Value {
    let body = esms_send_body(temp, params, request_id, "");
    esms_post(sb, "/SendZaloMessage_V4_post_json", body).await
}

/// eSMS refused the send (code 110), its message naming `what`.
#[track_caller]
fn assert_refused(v: &Value, what: &str) {
    assert_eq!(v["CodeResult"], "110", "{v}");
    assert!(
        v["ErrorMessage"].as_str().is_some_and(|m| m.contains(what)),
        "{v}"
    );
}

#[tokio::test]
async fn esms_template_info_quota_and_enforcement() {
    let sb = start(with_quota(ProviderKind::Esms, 7)).await;
    let keys = json!({
        "ApiKey": DEFAULT_API_KEY, "SecretKey": DEFAULT_SECRET_KEY,
        "OAID": "4097311281936189049", "TemplateId": "217489",
    });
    let v = esms_post(&sb, "/GetZnsTemplateInfo", keys.clone()).await;
    assert_eq!(
        (&v["CodeResult"], &v["Status"]),
        (&json!("100"), &json!("ENABLE")),
        "{v}"
    );
    assert_eq!(
        v["ListParams"][0],
        json!({"Name": "customer_name", "Require": true, "Type": "STRING",
               "MaxLength": 5, "MinLength": 1, "AcceptNull": false})
    );
    let mut unknown = keys.clone();
    unknown["TemplateId"] = json!("999");
    assert_eq!(
        esms_post(&sb, "/GetZnsTemplateInfo", unknown).await["CodeResult"],
        "110"
    );
    let mut bad_key = keys.clone();
    bad_key["SecretKey"] = json!("nope");
    assert_eq!(
        esms_post(&sb, "/GetZnsTemplateInfo", bad_key).await["CodeResult"],
        "101"
    );

    let ok = json!([DECOMPOSED, "12000"]);
    assert_eq!(
        esms_send(&sb, "217489", ok, "r1").await["CodeResult"],
        "100"
    );
    let v = esms_send(&sb, "217489", json!(["toolong", "1"]), "r2").await;
    assert_refused(&v, "customer_name");
    let missing = esms_send(&sb, "217489", json!(["An"]), "r3").await;
    assert_eq!(missing["CodeResult"], "110");
    let disabled = esms_send(&sb, "300", json!(["1"]), "r4").await;
    assert_eq!(disabled["CodeResult"], "110");

    let quota_req = json!({
        "ApiKey": DEFAULT_API_KEY, "SecretKey": DEFAULT_SECRET_KEY,
        "OAID": "4097311281936189049",
    });
    let q = esms_post(&sb, "/ZNS/GetQuota", quota_req).await;
    assert_eq!(
        (&q["CodeResult"], &q["DailyQuota"], &q["RemainingQuota"]),
        (&json!("100"), &json!(7), &json!(6)),
        "{q}"
    );
    let st = sb.stats();
    assert_eq!((st.accepted, st.param_rejections), (1, 3));
    sb.stop().await;
}

#[test]
fn template_flag_parses_and_names_the_mistake() {
    let (id, spec) = TemplateSpec::parse_flag(
        "217489@pending_review=customer_name:1-30,amount:1-20:number,note?:0-50",
    )
    .expect("valid");
    assert_eq!(
        (id.as_str(), spec.status),
        ("217489", TemplateStatus::PendingReview)
    );
    assert_eq!(spec.params.len(), 3);
    assert_eq!(spec.params[1].kind, ParamKind::Number);
    let note = &spec.params[2];
    assert!(!note.required && note.accept_null && note.max_length == 50);
    for (bad, says) in [
        ("217489", "expected ID"),
        ("abc=x", "not a number"),
        ("1@maybe=x", "status `maybe`"),
        ("1=x:9-2", "exceeds maximum"),
        ("1=x:money", "neither MIN-MAX nor a type"),
    ] {
        let err = TemplateSpec::parse_flag(bad).expect_err(bad);
        assert!(
            err.contains(says) && err.contains("--template"),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        crate::model::template_spec::char_len(COMPOSED),
        crate::model::template_spec::char_len(DECOMPOSED)
    );
}

/// With a known list, a template id the OA does not have is refused on
/// send and by template info, as each provider refuses one; a known id
/// passes without limits; `any` lifts the list.
#[tokio::test]
async fn an_unknown_template_id_is_refused_as_the_provider_refuses_it() {
    let known = known_templates_from(None);
    assert_eq!(
        known.as_deref(),
        Some(
            &SAMPLE_TEMPLATES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()[..]
        )
    );
    assert_eq!(known_templates_from(Some("any")), None);
    assert_eq!(
        known_templates_from(Some(" 12, 34 ,")),
        Some(vec!["12".to_string(), "34".to_string()])
    );

    let zalo = start(SandboxConfig {
        protocol: ProviderKind::Zalo,
        known_templates: Some(vec!["246810".into()]),
        ..SandboxConfig::default()
    })
    .await;
    let v = zalo_send(&zalo, 555, json!({"a": "b"}), "u1").await;
    assert_eq!(v["error"], -109, "{v}");
    let v = zalo_send(&zalo, 246810, json!({"a": "b"}), "u2").await;
    assert_eq!(v["error"], 0, "{v}");
    let v = zalo_get(&zalo, "/template/info/v2?template_id=555").await;
    assert_eq!(v["error"], -109, "{v}");
    let v = zalo_get(&zalo, "/template/info/v2?template_id=246810").await;
    assert_eq!(v["data"]["status"], "ENABLE", "{v}");
    let st = zalo.stats();
    assert_eq!((st.accepted, st.unknown_template_rejections), (1, 1));
    zalo.stop().await;

    let esms = start(SandboxConfig {
        protocol: ProviderKind::Esms,
        known_templates: Some(vec!["246810".into()]),
        ..SandboxConfig::default()
    })
    .await;
    let v = esms_send(&esms, "555", json!(["x"]), "e1").await;
    assert_refused(&v, "not a template of this OA");
    esms.stop().await;
}
