//! The effective config as YAML (`vllm-sr config show`): the normalised document with
//! defaults applied, secrets redacted on request, and `$` escaped so that loading the output
//! again yields the same `RouterConfig`.

use serde_norway::Value;

use crate::env::escape;
use crate::raw::RawDocument;

/// What to do with secret values (API keys, passwords, tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Replace them with `<redacted>`.
    Redact,
    /// Keep them (for round-trip tests and trusted tooling).
    Reveal,
}

/// The placeholder written in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// True for keys that hold secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "api_key" | "access_key" | "password" | "secret" | "token" | "bearer_token"
    ) || k.ends_with("_password")
        || k.ends_with("_secret")
        || k.ends_with("_api_key")
}

/// Serialises the effective config.
pub fn to_yaml(doc: &RawDocument, secrets: Secrets) -> Result<String, serde_norway::Error> {
    let mut v = serde_norway::to_value(doc)?;
    rewrite(&mut v, secrets, false);
    serde_norway::to_string(&v)
}

fn rewrite(v: &mut Value, secrets: Secrets, secret: bool) {
    match v {
        Value::String(s) => {
            if secret && secrets == Secrets::Redact && !s.is_empty() {
                *s = REDACTED.to_string();
            } else {
                *s = escape(s);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| rewrite(i, secrets, secret)),
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let is_secret = k.as_str().is_some_and(is_secret_key);
                rewrite(item, secrets, secret || is_secret);
            }
        }
        Value::Tagged(t) => rewrite(&mut t.value, secrets, secret),
        _ => {}
    }
}
