//! The router's own response headers (`x-vsr-*`, contract §3): their names, their values, and
//! [`HeaderCache`], the values of a recipe's names built once per live state.
//!
//! Most of a routed response's headers repeat the recipe's own names (recipe, decision, model,
//! algorithm). Building such a value per request validates and copies the text; a cached
//! value is cloned instead (a reference count), which is what keeps the header step cheap.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use vllm_sr_config::model::{AlgorithmKind, RouterConfig};
use vllm_sr_engine::RouteKind;

use crate::service::Routed;

/// A header value from arbitrary text: non-visible bytes and `%` are percent-encoded.
pub(crate) fn header_value(s: &str) -> HeaderValue {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if s.bytes().all(plain) {
        if let Ok(v) = HeaderValue::from_str(s) {
            return v;
        }
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Header values of the names a recipe defines: its recipes, decisions, logical models and
/// algorithm kinds. Built with the live state; other text goes through [`header_value`].
/// A value's bytes are shared by its clones (after the first clone, a reference count).
#[derive(Debug, Default)]
pub struct HeaderCache {
    values: HashMap<Box<str>, HeaderValue, foldhash::fast::RandomState>,
}

impl HeaderCache {
    /// The values of every name `config` defines.
    pub fn new(config: &RouterConfig) -> Self {
        let mut values = HashMap::default();
        let mut add = |name: &str| {
            if !values.contains_key(name) {
                values.insert(Box::from(name), header_value(name));
            }
        };
        for recipe in &config.recipes {
            add(&recipe.name);
            for d in &recipe.decisions {
                add(&d.name);
            }
        }
        for m in &config.models {
            add(&m.card.name);
        }
        for (_, name, _) in AlgorithmKind::TABLE {
            values
                .entry(Box::from(name))
                .or_insert_with(|| HeaderValue::from_static(name));
        }
        Self { values }
    }

    /// The value for `text`: the cached one when `text` is a recipe name, else built.
    pub fn value(&self, text: &str) -> HeaderValue {
        self.values
            .get(text)
            .cloned()
            .unwrap_or_else(|| header_value(text))
    }
}

/// `x-vsr-selected-confidence`: four decimals. A rule tree's confidence is most often exactly
/// 1 or 0, which need no formatting.
fn confidence_value(c: f64) -> HeaderValue {
    if c == 1.0 {
        HeaderValue::from_static("1.0000")
    } else if c == 0.0 {
        HeaderValue::from_static("0.0000")
    } else {
        header_value(&format!("{c:.4}"))
    }
}

/// `matched_signals` key → debug header suffix (contract §3.3).
fn matched_header(key: &str) -> String {
    match key {
        "preferences" => "preference".to_string(),
        "projection" => "projections".to_string(),
        other => other.replace('_', "-"),
    }
}

/// Fixed header names (the `x-vsr-*` response headers, those the gateway sets on requests and
/// those it reads), validated at compile time: `from_static` called at run time validates the
/// name on every request, a name parsed from `&str` is also copied, and a lookup by `&str`
/// parses the name first.
pub(crate) mod names {
    use axum::http::HeaderName;

    pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    /// Sent by a client that wants the matched-signal headers.
    pub(crate) const DEBUG: HeaderName = HeaderName::from_static("x-vsr-debug");
    /// Set on the upstream request: the logical model the router chose.
    pub(crate) const UPSTREAM_SELECTED_MODEL: HeaderName =
        HeaderName::from_static("x-selected-model");
    pub(crate) const CONTEXT_TOKEN_COUNT: HeaderName =
        HeaderName::from_static("x-vsr-context-token-count");
    pub(crate) const INJECTED_SYSTEM_PROMPT: HeaderName =
        HeaderName::from_static("x-vsr-injected-system-prompt");
    pub(crate) const LEARNING_ACTIONS: HeaderName =
        HeaderName::from_static("x-vsr-learning-actions");
    pub(crate) const LEARNING_METHODS: HeaderName =
        HeaderName::from_static("x-vsr-learning-methods");
    pub(crate) const LEARNING_MODES: HeaderName = HeaderName::from_static("x-vsr-learning-modes");
    pub(crate) const LEARNING_REASONS: HeaderName =
        HeaderName::from_static("x-vsr-learning-reasons");
    pub(crate) const LEARNING_SCOPES: HeaderName = HeaderName::from_static("x-vsr-learning-scopes");
    pub(crate) const FAST_RESPONSE: HeaderName = HeaderName::from_static("x-vsr-fast-response");
    pub(crate) const REPLAY_ID: HeaderName = HeaderName::from_static("x-vsr-replay-id");
    pub(crate) const RESPONSE_PATH: HeaderName = HeaderName::from_static("x-vsr-response-path");
    pub(crate) const SCHEMA_VERSION: HeaderName = HeaderName::from_static("x-vsr-schema-version");
    pub(crate) const SELECTED_ALGORITHM: HeaderName =
        HeaderName::from_static("x-vsr-selected-algorithm");
    pub(crate) const SELECTED_CATEGORY: HeaderName =
        HeaderName::from_static("x-vsr-selected-category");
    pub(crate) const SELECTED_CONFIDENCE: HeaderName =
        HeaderName::from_static("x-vsr-selected-confidence");
    pub(crate) const SELECTED_DECISION: HeaderName =
        HeaderName::from_static("x-vsr-selected-decision");
    pub(crate) const SELECTED_MODEL: HeaderName = HeaderName::from_static("x-vsr-selected-model");
    pub(crate) const SELECTED_REASONING: HeaderName =
        HeaderName::from_static("x-vsr-selected-reasoning");
    pub(crate) const SELECTED_RECIPE: HeaderName = HeaderName::from_static("x-vsr-selected-recipe");
    pub(crate) const SKIPPED_SIGNALS: HeaderName = HeaderName::from_static("x-vsr-skipped-signals");
}

/// Room for the headers [`add_headers`] puts on a routed response (at most 15 without the
/// debug ones, and the request id).
pub(crate) const ROUTER_HEADERS: usize = 16;

/// What a routed response's headers depend on besides the routing itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderContext<'a> {
    /// The client sent `x-vsr-debug: true`.
    pub debug: bool,
    /// `x-vsr-response-path`.
    pub path: &'static str,
    /// The replay record's id, when replay is on (the response names its record).
    pub replay_id: Option<&'a str>,
    /// The live state's cached values.
    pub cache: &'a HeaderCache,
}

/// The router's headers for one answer, kept beside the answer's own header map rather than
/// inserted into it: the HTTP/1.1 server writes them straight after the answer's headers
/// (no hashing, no map growth), and [`RouterHeaders::apply`] puts them into the map for every
/// other way out (h2, the router's routes).
///
/// A router header replaces a header of the same name the backend sent.
///
/// Each header is also written out as an HTTP/1.1 line when it is set: most are set while
/// the backend computes, so the answer's head then takes them in one copy.
#[derive(Debug, Default)]
pub struct RouterHeaders(Vec<(HeaderName, HeaderValue)>, Vec<u8>);

impl RouterHeaders {
    /// Room for the usual set.
    pub(crate) fn new() -> Self {
        Self(
            Vec::with_capacity(ROUTER_HEADERS),
            Vec::with_capacity(ROUTER_HEADERS * 48),
        )
    }

    /// Adds a header; the router sets each of its names once per answer.
    pub(crate) fn set(&mut self, name: HeaderName, value: HeaderValue) {
        debug_assert!(self.0.iter().all(|(n, _)| *n != name), "{name} set twice");
        let lines = &mut self.1;
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
        self.0.push((name, value));
    }

    /// The headers as HTTP/1.1 lines (`name: value` and CRLF each), in the order they were
    /// added.
    pub(crate) fn lines(&self) -> &[u8] {
        &self.1
    }

    /// Whether a header of the answer's own is replaced by one of these.
    pub(crate) fn replaces(&self, name: &HeaderName) -> bool {
        // The router's names all start with `x-`; most backend headers do not.
        name.as_str().starts_with("x-") && self.0.iter().any(|(n, _)| n == name)
    }

    /// [`Self::replaces`] for a name as a backend wrote it (any case).
    pub(crate) fn replaces_raw(&self, name: &[u8]) -> bool {
        name.get(..2).is_some_and(|x| x.eq_ignore_ascii_case(b"x-"))
            && self
                .0
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Puts the headers into `h`, replacing those of the same name.
    pub fn apply(self, h: &mut HeaderMap) {
        h.reserve(self.0.len());
        for (name, value) in self.0 {
            h.insert(name, value);
        }
    }
}

/// Adds the router's headers for a routed response to `h`.
pub(crate) fn add_headers(h: &mut RouterHeaders, r: &Routed, cx: HeaderContext<'_>) {
    let o = &r.outcome;
    // Fixed names are constants; only the debug family headers are named at run time.
    let mut put = |name: HeaderName, value: HeaderValue| {
        h.set(name, value);
    };
    put(names::SCHEMA_VERSION, HeaderValue::from_static("2"));
    if let Some(id) = cx.replay_id {
        put(names::REPLAY_ID, header_value(id));
    }
    put(names::RESPONSE_PATH, HeaderValue::from_static(cx.path));
    if let Some(m) = &o.model {
        put(names::SELECTED_MODEL, cx.cache.value(m));
    }
    if o.kind != RouteKind::Auto {
        return;
    }
    put(names::SELECTED_RECIPE, cx.cache.value(&o.recipe));
    if let Some(d) = &o.decision {
        put(names::SELECTED_DECISION, cx.cache.value(d));
        put(names::SELECTED_CONFIDENCE, confidence_value(o.confidence));
    }
    put(names::SELECTED_ALGORITHM, cx.cache.value(&o.algorithm));
    let reasoning = if r.applied.reasoning.unwrap_or(o.use_reasoning) {
        "on"
    } else {
        "off"
    };
    put(
        names::SELECTED_REASONING,
        HeaderValue::from_static(reasoning),
    );
    let injected = if r.applied.injected_system_prompt {
        "true"
    } else {
        "false"
    };
    put(
        names::INJECTED_SYSTEM_PROMPT,
        HeaderValue::from_static(injected),
    );
    if let Some(l) = &r.learning {
        let m = l.method;
        put(names::LEARNING_METHODS, HeaderValue::from_static(m));
        put(
            names::LEARNING_ACTIONS,
            header_value(&format!("{m}={}", l.action.as_str())),
        );
        put(
            names::LEARNING_SCOPES,
            header_value(&format!("{m}={}", l.scope)),
        );
        put(
            names::LEARNING_REASONS,
            header_value(&format!("{m}={}={}", l.action.as_str(), l.reason)),
        );
        put(
            names::LEARNING_MODES,
            header_value(&format!("{m}={}", l.mode)),
        );
    }
    if !cx.debug {
        return;
    }
    for (family, names) in &o.signals().matched_signals {
        if !names.is_empty() {
            let name = format!("x-vsr-matched-{}", matched_header(family));
            if let Ok(name) = HeaderName::try_from(name) {
                put(name, header_value(&names.join(",")));
            }
        }
    }
    if let Some(domains) = o
        .signals()
        .matched_signals
        .get("domains")
        .and_then(|d| d.first())
    {
        put(names::SELECTED_CATEGORY, header_value(domains));
    }
    put(
        names::CONTEXT_TOKEN_COUNT,
        header_value(&o.context_token_count.to_string()),
    );
    if !o.skipped_signals.is_empty() {
        put(
            names::SKIPPED_SIGNALS,
            header_value(&o.skipped_signals.join(",")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_headers_are_their_lines_and_their_map() {
        let mut router = RouterHeaders::new();
        router.set(names::SELECTED_MODEL, HeaderValue::from_static("fast"));
        router.set(names::REQUEST_ID, HeaderValue::from_static("r-1"));
        assert_eq!(
            router.lines(),
            b"x-vsr-selected-model: fast\r\nx-request-id: r-1\r\n"
        );
        assert!(router.replaces(&names::REQUEST_ID));
        assert!(router.replaces_raw(b"X-Request-ID"));
        assert!(!router.replaces_raw(b"x-other"));
        let mut map = HeaderMap::new();
        map.insert(names::REQUEST_ID, HeaderValue::from_static("theirs"));
        router.apply(&mut map);
        assert_eq!(map.len(), 2);
        assert_eq!(map[names::REQUEST_ID], "r-1");
    }

    #[test]
    fn confidence_is_written_with_four_decimals() {
        for (c, text) in [
            (1.0, "1.0000"),
            (0.0, "0.0000"),
            (0.5, "0.5000"),
            (0.123456, "0.1235"),
        ] {
            assert_eq!(confidence_value(c), text, "{c}");
            assert_eq!(format!("{c:.4}"), text);
        }
    }

    #[test]
    fn cached_values_equal_built_ones_and_other_text_is_encoded() {
        let config = crate::test_support::one_decision_config("café");
        let cache = HeaderCache::new(&config);
        for name in [
            "m",
            "default",
            "café",
            "static",
            "router_dc",
            "not in the recipe %",
        ] {
            assert_eq!(cache.value(name), header_value(name), "{name}");
        }
        assert_eq!(cache.value("café"), "caf%C3%A9");
        assert_eq!(cache.value("50%"), "50%25");
        assert!(cache.values.contains_key("café"));
        assert!(!cache.values.contains_key("50%"));
    }
}
