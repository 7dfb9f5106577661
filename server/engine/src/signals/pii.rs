//! The `pii` family (contract §3.15) with a deterministic PII and secret detector.
//!
//! Owns [`detect`], which finds emails, phone numbers, payment cards, IBANs, US SSNs, IP and
//! MAC addresses, API keys and tokens, private key blocks and password assignments, each
//! validated where a checksum or structure exists (Luhn, mod-97, SSN ranges, IP parsing), and
//! the rule matching over those entities. Confidence reflects validation strength: a passed
//! checksum or a vendor-prefixed secret ≈ 0.99, a strict format ≈ 0.9, heuristics lower.
//! Precision comes first: dates, prices, versions, UUIDs, hashes and ordinary numbers must
//! not be reported. Kinds follow upstream labels (`EMAIL_ADDRESS`, `PHONE_NUMBER`,
//! `CREDIT_CARD`, `IBAN_CODE`, `US_SSN`, `IP_ADDRESS`, `MAC_ADDRESS`) plus `API_KEY`,
//! `PRIVATE_KEY` and `PASSWORD`.
//!
//! A rule matches when an entity with confidence ≥ its threshold has a kind outside
//! `pii_types_allowed` (case-insensitive). The full text is scanned, plus the non-user
//! messages for rules with `include_history`. No confidence is written (reads as 1.0).

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;
use vllm_sr_config::model::PiiRule;

use crate::state::FamilyResult;

#[path = "pii_validate.rs"]
mod validate;
use validate::{iban_valid, luhn_valid, ssn_valid};

/// One detected entity.
#[derive(Debug, Clone, PartialEq)]
pub struct PiiEntity {
    /// Upstream-style label, e.g. `EMAIL_ADDRESS`.
    pub kind: &'static str,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// How sure the detector is, in [0, 1].
    pub confidence: f64,
}

struct Patterns {
    email: Regex,
    phone_intl: Regex,
    phone_us: Regex,
    phone_ctx: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ssn_ctx: Regex,
    ipv4: Regex,
    ipv6: Regex,
    mac: Regex,
    secrets: Vec<(Regex, f64)>,
    private_key: Regex,
    password: Regex,
    url_password: Regex,
    version_before: Regex,
    phone_words: Regex,
}

fn build() -> Result<Patterns, regex::Error> {
    let secrets = [
        (r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}\b", 0.99),
        (r"\bpk_(?:live|test)_[0-9A-Za-z]{10,247}\b", 0.9),
        (
            r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}",
            0.95,
        ),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.99),
        (r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", 0.99),
        (r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b", 0.99),
        (r"\bxox[baprs]-[A-Za-z0-9-]{10,}", 0.97),
        (r"\bAIza[0-9A-Za-z_-]{35}", 0.97),
        (
            r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
            0.95,
        ),
        (
            r"(?i)\baws_secret_access_key\b\s*[=:]\s*[\x22']?([A-Za-z0-9/+=]{40})\b",
            0.95,
        ),
    ];
    Ok(Patterns {
        email: Regex::new(
            r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
        )?,
        phone_intl: Regex::new(r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,2}(?:[ .-]?\d{2,4}){2,4}\b")?,
        phone_us: Regex::new(r"(?:\(\d{3}\)\s?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b")?,
        phone_ctx: Regex::new(
            r"(?i)\b(?:phone|tel|telephone|mobile|cell|call me at|whatsapp|电话|手机)\b\s*(?:number|no\.?|#)?\s*[:：]?\s*(\+?\d{10,15})\b",
        )?,
        card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b")?,
        iban: Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")?,
        ssn: Regex::new(r"\b\d{3}-\d{2}-\d{4}\b")?,
        ssn_ctx: Regex::new(
            r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\b\s*(?:is|:|#)?\s*(\d{3}[ -]?\d{2}[ -]?\d{4})\b",
        )?,
        ipv4: Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")?,
        ipv6: Regex::new(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:%[0-9a-z]+)?")?,
        mac: Regex::new(
            r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b|\b[0-9a-f]{2}(?:-[0-9a-f]{2}){5}\b|\b[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}\b",
        )?,
        secrets: secrets
            .iter()
            .map(|(p, c)| Regex::new(p).map(|r| (r, *c)))
            .collect::<Result<_, _>>()?,
        private_key: Regex::new(
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
        )?,
        password: Regex::new(
            r"(?i)(?:password|passwd|passphrase|\bpwd)[\x22']?\s*[:=]\s*[\x22']?([^\s\x22'`,;()\[\]{}<>]{4,128})",
        )?,
        url_password: Regex::new(
            r"(?i)\b[a-z][a-z0-9+.-]{1,15}://[^\s:/@]{1,64}:([^\s:/@]{3,128})@[a-z0-9.-]+",
        )?,
        version_before: Regex::new(r"(?i)(?:\bv|version|release|ver\.?)\s*$")?,
        phone_words: Regex::new(r"(?i)(?:phone|tel|call|mobile|cell|fax|contact|reach|电话|手机)")?,
    })
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| build().ok());

fn prev_char(text: &str, i: usize) -> Option<char> {
    text[..i].chars().next_back()
}
fn next_char(text: &str, i: usize) -> Option<char> {
    text[i..].chars().next()
}
/// Cheap necessary conditions, so patterns that cannot match never scan the text.
struct Gates {
    key: bool,
    password: bool,
    url: bool,
    at: bool,
    plus: bool,
    d4: bool,
    d9: bool,
    d10: bool,
    d13: bool,
    mac: bool,
    v6: bool,
}

impl Gates {
    fn of(text: &str) -> Self {
        let b = text.as_bytes();
        let count = |c: u8| b.iter().filter(|x| **x == c).count();
        let digits = b.iter().filter(|x| x.is_ascii_digit()).count();
        let colons = count(b':');
        let has_ci = |needle: &[u8]| {
            b.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
        };
        let at = b.contains(&b'@');
        Self {
            key: text.contains("-----BEGIN"),
            password: has_ci(b"pass") || has_ci(b"pwd"),
            url: at && text.contains("://"),
            at,
            plus: digits >= 8 && b.contains(&b'+'),
            d4: digits >= 4,
            d9: digits >= 9,
            d10: digits >= 10,
            d13: digits >= 13,
            mac: colons >= 5 || count(b'-') >= 5 || count(b'.') >= 2,
            v6: colons >= 3,
        }
    }
}

/// The text when the gate is open, else an empty haystack.
fn gated(on: bool, text: &str) -> &str {
    if on {
        text
    } else {
        ""
    }
}

/// Up to `n` bytes of `text` before byte `i` (widened to a character boundary).
fn before(text: &str, i: usize, n: usize) -> &str {
    let mut s = i.saturating_sub(n);
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    &text[s..i]
}
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}
/// True when a number-like span is glued to more digits, dots or dashes followed by digits
/// (part of a longer number, version or identifier).
fn glued(text: &str, start: usize, end: usize) -> bool {
    let before = prev_char(text, start);
    let after = next_char(text, end);
    let after2 = text[end..].chars().nth(1);
    before.is_some_and(|c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '/' || c == '+'
    }) || after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        || (matches!(after, Some('.' | '-' | '/' | ':'))
            && after2.is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// Finds PII and secrets in `text`; entities are sorted by start offset and do not overlap
/// (the more confident, then longer, entity wins).
pub fn detect(text: &str) -> Vec<PiiEntity> {
    let Some(p) = PATTERNS.as_ref() else {
        return Vec::new();
    };
    let g = Gates::of(text);
    let mut found = Vec::new();
    let mut push = |kind: &'static str, start: usize, end: usize, confidence: f64| {
        found.push(PiiEntity {
            kind,
            start,
            end,
            confidence,
        });
    };

    for m in p.private_key.find_iter(gated(g.key, text)) {
        push("PRIVATE_KEY", m.start(), m.end(), 0.99);
    }
    for (re, conf) in &p.secrets {
        for c in re.captures_iter(text) {
            let Some(m) = c.get(1).or_else(|| c.get(0)) else {
                continue;
            };
            let s = m.as_str();
            // Require some entropy: at least one digit and one letter in the token body.
            if s.chars().any(|ch| ch.is_ascii_digit())
                && s.chars().any(|ch| ch.is_ascii_alphabetic())
            {
                push("API_KEY", m.start(), m.end(), *conf);
            }
        }
    }
    for c in p.password.captures_iter(gated(g.password, text)) {
        let Some(v) = c.get(1) else { continue };
        if let Some(conf) = password_confidence(v.as_str()) {
            push("PASSWORD", v.start(), v.end(), conf);
        }
    }
    for c in p.url_password.captures_iter(gated(g.url, text)) {
        let Some(v) = c.get(1) else { continue };
        if password_confidence(v.as_str()).is_some() {
            push("PASSWORD", v.start(), v.end(), 0.9);
        }
    }
    for m in p.email.find_iter(gated(g.at, text)) {
        let s = m.as_str();
        let local = s.split('@').next().unwrap_or("");
        if !local.ends_with('.')
            && !local.contains("..")
            && !prev_char(text, m.start()).is_some_and(|c| matches!(c, '@' | '/' | ':'))
        {
            push("EMAIL_ADDRESS", m.start(), m.end(), 0.95);
        }
    }
    for m in p.card.find_iter(gated(g.d13, text)) {
        if let Some(conf) = card_confidence(m.as_str()) {
            if !glued(text, m.start(), m.end()) {
                push("CREDIT_CARD", m.start(), m.end(), conf);
            }
        }
    }
    for m in p.iban.find_iter(gated(g.d4, text)) {
        if iban_valid(m.as_str()) {
            push("IBAN_CODE", m.start(), m.end(), 0.99);
        }
    }
    for m in p.ssn.find_iter(gated(g.d9, text)) {
        if ssn_valid(&digits(m.as_str())) && !glued(text, m.start(), m.end()) {
            push("US_SSN", m.start(), m.end(), 0.85);
        }
    }
    for c in p.ssn_ctx.captures_iter(gated(g.d9, text)) {
        let Some(v) = c.get(1) else { continue };
        if ssn_valid(&digits(v.as_str())) {
            push("US_SSN", v.start(), v.end(), 0.95);
        }
    }
    for m in p.phone_intl.find_iter(gated(g.plus, text)) {
        let n = digits(m.as_str()).len();
        if (8..=15).contains(&n) && !glued(text, m.start(), m.end()) {
            let ctx = before(text, m.start(), 40);
            let conf = if p.phone_words.is_match(ctx) {
                0.95
            } else {
                0.9
            };
            push("PHONE_NUMBER", m.start(), m.end(), conf);
        }
    }
    for m in p.phone_us.find_iter(gated(g.d10, text)) {
        let d = digits(m.as_str());
        let s = m.as_str();
        let ok = d.len() == 10
            && matches!(d.as_bytes()[0], b'2'..=b'9')
            && matches!(d.as_bytes()[3], b'2'..=b'9');
        let seps: Vec<char> = s.chars().filter(|c| matches!(c, ' ' | '.' | '-')).collect();
        let parens = s.starts_with('(');
        let consistent = parens || seps.windows(2).all(|w| w[0] == w[1]);
        if ok && consistent && !glued(text, m.start(), m.end()) {
            let ctx = before(text, m.start(), 40);
            let conf = if p.phone_words.is_match(ctx) {
                Some(0.95)
            } else if parens || seps.first() == Some(&'-') || seps.first() == Some(&'.') {
                Some(0.85)
            } else {
                // Space-separated digit groups without context could be any three numbers.
                None
            };
            if let Some(conf) = conf {
                push("PHONE_NUMBER", m.start(), m.end(), conf);
            }
        }
    }
    for c in p.phone_ctx.captures_iter(gated(g.d10, text)) {
        if let Some(v) = c.get(1) {
            push("PHONE_NUMBER", v.start(), v.end(), 0.8);
        }
    }
    for m in p.ipv4.find_iter(gated(g.d4, text)) {
        if let Some(conf) = ipv4_confidence(text, m.start(), m.end(), p) {
            push("IP_ADDRESS", m.start(), m.end(), conf);
        }
    }
    for m in p.mac.find_iter(gated(g.mac, text)) {
        let s = m.as_str();
        let cisco = s.contains('.');
        if (!cisco || s.chars().any(|c| c.is_ascii_digit())) && !glued_hex(text, m.start(), m.end())
        {
            push(
                "MAC_ADDRESS",
                m.start(),
                m.end(),
                if cisco { 0.8 } else { 0.9 },
            );
        }
    }
    for m in p.ipv6.find_iter(gated(g.v6, text)) {
        let s = m.as_str();
        let addr = s.split('%').next().unwrap_or(s);
        let colons = addr.matches(':').count();
        if colons >= 3
            && addr.chars().any(|c| c.is_ascii_digit())
            && addr
                .parse::<Ipv6Addr>()
                .is_ok_and(|a| !a.is_loopback() && !a.is_unspecified())
            && !glued_hex(text, m.start(), m.end())
        {
            push("IP_ADDRESS", m.start(), m.end(), 0.9);
        }
    }
    resolve_overlaps(found)
}

fn glued_hex(text: &str, start: usize, end: usize) -> bool {
    prev_char(text, start).is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_')
        || next_char(text, end).is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_')
}

fn card_confidence(s: &str) -> Option<f64> {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || !luhn_valid(&d) {
        return None;
    }
    // Separators, when present, must be one kind and split the number into groups of 3-6.
    let seps: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    if let Some(first) = seps.first() {
        if seps.iter().any(|c| c != first) || s.split(*first).any(|g| !(3..=6).contains(&g.len())) {
            return None;
        }
    }
    if d.chars().all(|c| c == '0') {
        return None;
    }
    let b = d.as_bytes();
    let p2: u32 = d[..2].parse().ok()?;
    let p4: u32 = d[..4].parse().ok()?;
    let known = b[0] == b'4'
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || matches!(p2, 34 | 37 | 36 | 38 | 30 | 35 | 62 | 65)
        || p4 == 6011
        || (644..=649).contains(&(p4 / 10));
    known.then_some(0.99)
}

fn ipv4_confidence(text: &str, start: usize, end: usize, p: &Patterns) -> Option<f64> {
    let s = &text[start..end];
    let mut octets = Vec::with_capacity(4);
    for o in s.split('.') {
        if o.len() > 1 && o.starts_with('0') {
            return None;
        }
        octets.push(o.parse::<u16>().ok().filter(|v| *v <= 255)?);
    }
    if glued(text, start, end) {
        return None;
    }
    if p.version_before.is_match(before(text, start, 12)) {
        return None;
    }
    if octets.iter().all(|o| *o == 0) {
        return None;
    }
    // All single-digit octets usually spell a version number (1.2.3.4).
    Some(if octets.iter().all(|o| *o < 10) {
        0.4
    } else {
        0.9
    })
}

/// Confidence of a password value, or `None` for placeholders, types and code.
fn password_confidence(v: &str) -> Option<f64> {
    let lower = v.to_ascii_lowercase();
    const PLACEHOLDERS: [&str; 16] = [
        "null",
        "none",
        "true",
        "false",
        "string",
        "required",
        "optional",
        "password",
        "undefined",
        "your_password",
        "yourpassword",
        "changeme",
        "example",
        "redacted",
        "hidden",
        "secret",
    ];
    let first = v.chars().next()?;
    if PLACEHOLDERS.contains(&lower.as_str())
        || matches!(
            first,
            '$' | '%' | '*' | '#' | '.' | '/' | '&' | '@' | '!' | '?' | '-'
        )
        || v.chars().all(|c| c == v.chars().next().unwrap_or(' '))
        || lower.starts_with("os.")
        || lower.starts_with("env")
        || lower.starts_with("process.")
        || lower.starts_with("self.")
        || lower.starts_with("str")
        || lower.starts_with("option")
        || lower.starts_with("input")
        || lower.starts_with("getpass")
        || lower.contains("...")
        || lower.contains("xxxx")
    {
        return None;
    }
    // Identifiers and dotted paths are code (`password = user.password_hash`).
    let ident = |t: &str| {
        t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if v.contains('.') && v.split('.').all(ident) {
        return None;
    }
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_alpha = v.chars().any(char::is_alphabetic);
    let has_symbol = v.chars().any(|c| !c.is_alphanumeric());
    match (has_alpha, has_digit || has_symbol) {
        (true, true) => Some(0.9),
        (false, true) if has_digit => Some(0.8),
        _ if v.contains('_') => Some(0.6),
        _ => Some(0.55),
    }
}

fn resolve_overlaps(mut found: Vec<PiiEntity>) -> Vec<PiiEntity> {
    // Best first: confidence, then length, then position.
    found.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<PiiEntity> = Vec::with_capacity(found.len());
    for e in found {
        if kept.iter().all(|k| e.end <= k.start || e.start >= k.end) {
            kept.push(e);
        }
    }
    kept.sort_by_key(|e| e.start);
    kept
}

/// The pii rules of a recipe.
#[derive(Debug)]
pub struct PiiSignals {
    rules: Vec<PiiRule>,
    any_history: bool,
}

impl PiiSignals {
    /// Keeps the rules (allowed types uppercased).
    pub fn build(rules: &[PiiRule]) -> Self {
        let rules: Vec<PiiRule> = rules
            .iter()
            .map(|r| PiiRule {
                pii_types_allowed: r
                    .pii_types_allowed
                    .iter()
                    .map(|t| t.trim().to_ascii_uppercase())
                    .collect(),
                ..r.clone()
            })
            .collect();
        let any_history = rules.iter().any(|r| r.include_history);
        // Compile the shared patterns now rather than on the first request.
        LazyLock::force(&PATTERNS);
        Self { rules, any_history }
    }

    /// Scans `text` (and `history`, the non-user messages, for rules that include it).
    pub fn eval(&self, text: &str, history: &[String], out: &mut FamilyResult) {
        if self.rules.is_empty() {
            return;
        }
        let current = detect(text);
        let past: Vec<PiiEntity> = if self.any_history {
            history.iter().flat_map(|h| detect(h)).collect()
        } else {
            Vec::new()
        };
        for (i, r) in self.rules.iter().enumerate() {
            let hits = |e: &PiiEntity| {
                e.confidence >= r.threshold && !r.pii_types_allowed.iter().any(|a| a == e.kind)
            };
            if current.iter().any(hits) || (r.include_history && past.iter().any(hits)) {
                out.hit(i, None);
            }
        }
    }
}

#[cfg(test)]
#[path = "pii_tests.rs"]
mod tests;
