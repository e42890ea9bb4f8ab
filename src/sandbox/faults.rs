//! Injectable faults: what they are, and how a control request changes them.

use std::time::Duration;

use serde_json::{Map, Value};

/// Injectable faults. Probabilities in 0.0..=1.0, drawn per request from
/// the sandbox's seeded RNG.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Answer 500/502/503 (in rotation) without processing the request.
    pub http_5xx: f64,
    /// Answer 429 without processing the request.
    pub http_429: f64,
    /// If set, 429s carry `Retry-After: N`.
    pub retry_after_secs: Option<u64>,
    /// Sends only: accept the message, then break the reply off.
    pub drop_reply: f64,
    /// Hang for `hang`, then answer 504, without processing the request.
    pub timeout: f64,
    pub hang: Duration,
    /// Sends only: accept the message, then answer 200 with a truncated body.
    pub malformed: f64,
    /// Sends only: accept the message, then wait `hang` before answering —
    /// a reply later than the client's timeout for a message that went out.
    pub slow_reply: f64,
    /// 5xx/429/timeout also hit non-send calls (token, check, lookup, quota).
    pub apply_to_tokens: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            http_5xx: 0.0,
            http_429: 0.0,
            retry_after_secs: None,
            drop_reply: 0.0,
            timeout: 0.0,
            hang: Duration::from_secs(30),
            malformed: 0.0,
            slow_reply: 0.0,
            apply_to_tokens: true,
        }
    }
}

impl Faults {
    /// The first probability outside 0..=1, named, if any.
    pub(crate) fn invalid_probability(&self) -> Option<(&'static str, f64)> {
        [
            ("http_5xx", self.http_5xx),
            ("http_429", self.http_429),
            ("drop_reply", self.drop_reply),
            ("timeout", self.timeout),
            ("malformed", self.malformed),
            ("slow_reply", self.slow_reply),
        ]
        .into_iter()
        .find(|(_, p)| !(0.0..=1.0).contains(p))
    }
}

/// Apply the given fault fields over `base`; absent fields keep their value.
pub(crate) fn merge_faults(mut f: Faults, m: &Map<String, Value>) -> Result<Faults, String> {
    for (k, v) in m {
        let prob = || {
            v.as_f64()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("faults.{k}: expected a probability in 0..=1"))
        };
        match k.as_str() {
            "http_5xx" => f.http_5xx = prob()?,
            "http_429" => f.http_429 = prob()?,
            "drop_reply" => f.drop_reply = prob()?,
            "timeout" => f.timeout = prob()?,
            "malformed" => f.malformed = prob()?,
            "slow_reply" => f.slow_reply = prob()?,
            "retry_after_secs" => {
                f.retry_after_secs = match v {
                    Value::Null => None,
                    _ => Some(
                        v.as_u64()
                            .ok_or("faults.retry_after_secs: expected an integer or null")?,
                    ),
                }
            }
            "hang_ms" => {
                f.hang =
                    Duration::from_millis(v.as_u64().ok_or("faults.hang_ms: expected an integer")?)
            }
            "apply_to_tokens" => {
                f.apply_to_tokens = v
                    .as_bool()
                    .ok_or("faults.apply_to_tokens: expected a boolean")?
            }
            other => return Err(format!("unknown fault field `{other}`")),
        }
    }
    Ok(f)
}
