//! The console's two languages stay whole: every key in one locale file is
//! in the other (with the same `%{…}` blanks), and every `t!("key")` the code
//! uses exists in both. rust-i18n would otherwise show a missing key as the
//! key itself, silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LANGS: [&str; 2] = ["vi", "en"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `a: {b: x}` → `a.b = x`.
fn flatten(prefix: &str, v: &serde_yaml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().expect("locale keys are strings");
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_yaml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => panic!("`{prefix}`: a text is expected, found {other:?}"),
    }
}

fn locale(lang: &str) -> BTreeMap<String, String> {
    let path = root().join("locales").join(format!("{lang}.yml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    out
}

/// The `%{name}` blanks of a text.
fn blanks(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = s;
    while let Some(i) = rest.find("%{") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find('}') {
            out.insert(rest[..j].to_string());
            rest = &rest[j + 1..];
        }
    }
    out
}

#[test]
fn both_languages_have_the_same_keys_and_blanks() {
    let vi = locale("vi");
    let en = locale("en");
    assert!(
        vi.len() > 50,
        "the Vietnamese file looks cut short: {}",
        vi.len()
    );
    let only_vi: Vec<_> = vi.keys().filter(|k| !en.contains_key(*k)).collect();
    let only_en: Vec<_> = en.keys().filter(|k| !vi.contains_key(*k)).collect();
    assert!(
        only_vi.is_empty() && only_en.is_empty(),
        "keys in vi.yml only: {only_vi:?}; keys in en.yml only: {only_en:?}"
    );
    for (k, v) in &vi {
        let e = &en[k];
        assert!(
            !v.trim().is_empty() && !e.trim().is_empty(),
            "`{k}` is empty"
        );
        assert_eq!(
            blanks(v),
            blanks(e),
            "`{k}`: the blanks differ: vi `{v}`, en `{e}`"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `t!("key"` in a source text.
fn keys_used(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("t!(") {
        // `t!(`, not the end of another macro's name (`format!(`).
        let before = rest[..i].chars().last();
        rest = &rest[i + 3..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let args = rest.trim_start();
        let Some(args) = args.strip_prefix('"') else {
            panic!(
                "t! with a key that is not a literal: `t!({}`",
                &args[..args.len().min(40)]
            );
        };
        if let Some(end) = args.find('"') {
            out.push(args[..end].to_string());
        }
    }
    out
}

#[test]
fn every_key_the_code_uses_is_in_both_languages() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let locales: Vec<_> = LANGS.iter().map(|l| (*l, locale(l))).collect();
    let mut used = 0;
    let mut missing = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        for key in keys_used(&src) {
            used += 1;
            for (lang, keys) in &locales {
                if !keys.contains_key(&key) {
                    missing.push(format!("{}: `{key}` not in {lang}.yml", f.display()));
                }
            }
        }
    }
    assert!(
        used > 50,
        "found only {used} t!(…) uses: is the scan broken?"
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_scan_sees_keys_and_refuses_computed_ones() {
    assert_eq!(
        keys_used(r#"x(t!("a.b", locale = l)); format!("{}", 1); t!( "c" )"#),
        ["a.b", "c"]
    );
    let computed = std::panic::catch_unwind(|| keys_used("t!(key, locale = l)"));
    assert!(computed.is_err());
}

/// Every code a reject reason or a console error can carry has its words
/// in both languages, and those words use only the code's parameters.
#[test]
fn every_reason_and_error_code_has_words_in_both_languages() {
    // Each code with the parameters its words may use.
    type Codes = &'static [(&'static str, &'static [&'static str])];
    let sets: [(&str, Codes); 2] = [
        ("reject", zns_batch::campaign::REJECT_CODES),
        ("error", zns_batch::serve::words::ERROR_CODES),
    ];
    let locales: Vec<_> = LANGS.iter().map(|l| (*l, locale(l))).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (prefix, codes) in sets {
        for (code, params) in codes {
            let key = format!("{prefix}.{code}");
            for (lang, keys) in &locales {
                checked += 1;
                let Some(words) = keys.get(&key) else {
                    problems.push(format!("`{key}` not in {lang}.yml"));
                    continue;
                };
                let extra: Vec<_> = blanks(words)
                    .into_iter()
                    .filter(|b| !params.contains(&b.as_str()))
                    .collect();
                if !extra.is_empty() {
                    problems.push(format!(
                        "`{key}` in {lang}.yml uses {extra:?}, not parameters of the code"
                    ));
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} codes checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The code literals a source text passes to `Reason::new(`, `refused(`
/// or `coded(` (the three ways a coded refusal is made).
fn codes_used(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for call in ["Reason::new(", "refused(", "coded("] {
        let mut rest = src;
        while let Some(i) = rest.find(call) {
            let before = rest[..i].chars().last();
            rest = &rest[i + call.len()..];
            // `refused(`, not the end of another name (`is_refused(`).
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(args) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            if let Some(end) = args.find('"') {
                out.push(args[..end].to_string());
            }
        }
    }
    out
}

/// Every code the core makes a refusal with is listed (so the check above
/// covers its words); the list is only checked at run time otherwise.
#[test]
fn every_code_the_code_uses_is_listed() {
    assert_eq!(
        codes_used(
            "Reason::new(\"a.b\", x); refused(\n  \"c.d\", y); coded(name); is_refused(\"z\")"
        ),
        ["a.b", "c.d"]
    );
    let listed: BTreeSet<&str> = zns_batch::campaign::REJECT_CODES
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut used = BTreeSet::new();
    let mut unlisted = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        for code in codes_used(&src) {
            if !listed.contains(code.as_str()) {
                unlisted.push(format!("{}: `{code}`", f.display()));
            }
            used.insert(code);
        }
    }
    // The request's codes (issue 23) are among them.
    for code in [
        "campaign.name_separator",
        "preflight.missing_columns",
        "test_phones.bad",
        "start_at.past",
        "zalo.state_unknown",
    ] {
        assert!(used.contains(code), "`{code}` no longer made anywhere?");
    }
    assert!(unlisted.is_empty(), "{}", unlisted.join("\n"));
}
