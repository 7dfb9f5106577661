//! PII detector cases: positives per kind, a negative corpus, rule matching, properties.

use super::*;
use proptest::prelude::*;

/// Kinds detected in `text`, with the matched substring.
fn kinds(text: &str) -> Vec<(&'static str, String)> {
    detect(text)
        .into_iter()
        .map(|e| (e.kind, text[e.start..e.end].to_string()))
        .collect()
}

fn check(text: &str, expected: &[(&str, &str)]) {
    let got = kinds(text);
    let want: Vec<(&str, String)> = expected.iter().map(|(k, s)| (*k, s.to_string())).collect();
    assert_eq!(got, want, "{text:?}");
}

#[test]
fn patterns_compile() {
    assert!(PATTERNS.is_some());
}

#[test]
fn positives() {
    check(
        "mail me at john.doe+x@example.co.uk today",
        &[("EMAIL_ADDRESS", "john.doe+x@example.co.uk")],
    );
    check(
        "Call +1 415-555-2671 or +44 20 7946 0958",
        &[
            ("PHONE_NUMBER", "+1 415-555-2671"),
            ("PHONE_NUMBER", "+44 20 7946 0958"),
        ],
    );
    check(
        "my number is (415) 555-2671.",
        &[("PHONE_NUMBER", "(415) 555-2671")],
    );
    check("phone: 4155552671", &[("PHONE_NUMBER", "4155552671")]);
    check(
        "card 4111 1111 1111 1111 exp 12/27",
        &[("CREDIT_CARD", "4111 1111 1111 1111")],
    );
    check(
        "amex 3782-822463-10005",
        &[("CREDIT_CARD", "3782-822463-10005")],
    );
    check(
        "pay 5555555555554444 now",
        &[("CREDIT_CARD", "5555555555554444")],
    );
    check(
        "IBAN GB82 WEST 1234 5698 7654 32 thanks",
        &[("IBAN_CODE", "GB82 WEST 1234 5698 7654 32")],
    );
    check(
        "to DE89370400440532013000.",
        &[("IBAN_CODE", "DE89370400440532013000")],
    );
    check("SSN 123-45-6789", &[("US_SSN", "123-45-6789")]);
    check(
        "my social security number is 123 45 6789",
        &[("US_SSN", "123 45 6789")],
    );
    check(
        "server at 192.168.10.25 is down",
        &[("IP_ADDRESS", "192.168.10.25")],
    );
    check(
        "ping 2001:db8:85a3::8a2e:370:7334 please",
        &[("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334")],
    );
    check(
        "link-local fe80::1ff:fe23:4567:890a%eth0",
        &[("IP_ADDRESS", "fe80::1ff:fe23:4567:890a%eth0")],
    );
    check(
        "mac 00:1A:2B:3C:4D:5E and 00-1a-2b-3c-4d-5f",
        &[
            ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
            ("MAC_ADDRESS", "00-1a-2b-3c-4d-5f"),
        ],
    );
    check(
        "STRIPE_KEY=sk_live_51HqT2eKX9abcdEFGH1234567",
        &[("API_KEY", "sk_live_51HqT2eKX9abcdEFGH1234567")],
    );
    check(
        "use sk-proj-abc123DEF456ghi789JKL012mno",
        &[("API_KEY", "sk-proj-abc123DEF456ghi789JKL012mno")],
    );
    check(
        "aws AKIAIOSFODNN7EXAMPLE key",
        &[("API_KEY", "AKIAIOSFODNN7EXAMPLE")],
    );
    check(
        "token ghp_1234567890abcdefghijklmnopqrstuvwxyz",
        &[("API_KEY", "ghp_1234567890abcdefghijklmnopqrstuvwxyz")],
    );
    check(
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        &[("API_KEY", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop")],
    );
    check(
        "slack xoxb-1234567890-abcdefghij",
        &[("API_KEY", "xoxb-1234567890-abcdefghij")],
    );
    check(
        "google AIzaSyA1234567890abcdefghijklmnopqrstuv",
        &[("API_KEY", "AIzaSyA1234567890abcdefghijklmnopqrstuv")],
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    check(&format!("Bearer {jwt}"), &[("API_KEY", jwt)]);
    check(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[("API_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
    );
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    check(&format!("here:\n{key}\nthanks"), &[("PRIVATE_KEY", key)]);
    check(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk",
        &[(
            "PRIVATE_KEY",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk",
        )],
    );
    check("db password: hunter2!", &[("PASSWORD", "hunter2!")]);
    check("DB_PASSWORD=S3cr3tP@ss", &[("PASSWORD", "S3cr3tP@ss")]);
    check(r#"{"passwd": "abc12345"}"#, &[("PASSWORD", "abc12345")]);
    check(
        "postgres://admin:Tr0ub4dor@db.internal:5432/app",
        &[("PASSWORD", "Tr0ub4dor")],
    );
}

/// Ordinary prose, code and numbers: nothing may be reported.
const NEGATIVES: &[&str] = &[
    "The meeting is on 2024-03-15 at 10:30:45 in room 301.",
    "Prices rose from $1,299.99 to $1,499.00 in 2023; revenue was 12,345,678 USD.",
    "Upgrade from version 1.2.3 to 2.10.0, or v1.2.3.4 if you are on the LTS branch.",
    "Release 10.0.19041.1 of Windows and python 3.11.4 are supported.",
    "request id 550e8400-e29b-41d4-a716-446655440000 failed",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it; see a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "fn main() { let v: Vec<u32> = (0..100).collect(); std::process::id(); }",
    "use std::collections::HashMap; impl Add for Foo { fn add(self) -> Self { Self::new() } }",
    "The population of Tokyo is 13960000 and of Japan 125700000 people.",
    "ISBN 978-3-16-148410-0 and order number 1234567890123.",
    "Timestamp 1700000000000 ms, epoch 1700000000 s.",
    "Scores were 300 400 5000 across the three rounds.",
    "Write a function that validates a password: it must have 8 characters.",
    "password = request.form.get",
    "password: str = Field(min_length=8)",
    "Set the password = ${DB_PASSWORD} from the environment.",
    "Contact the support team via the help page; use @user mentions in Slack.",
    "The ratio 16:9 and times 12:30:00 and 1:2:3 matter.",
    "IPv6 loopback ::1 and unspecified :: are fine; use localhost.",
    "Call the API with curl -X POST https://api.example.com/v1/items",
    "The task-manager and sk-learn libraries; risk-assessment-matrix.",
    "Matrix 4111 1111 rows and 5555 columns, 2+2=4, 1e10, 3.14159.",
    "Use coordinates 37.7749, -122.4194 for San Francisco.",
    "在2024年3月15日，我们发布了版本2.1.0，价格为1999元。",
    "The ssn field must be validated server-side.",
    "npm install @scope/package@1.2.3 then import x from 'y'.",
    "Call me maybe: that song is from 2012.",
    "The kubernetes pod 10.0.0 was restarted; build 2024.03.15.1 passed.",
];

#[test]
fn negative_corpus_is_clean() {
    for text in NEGATIVES {
        let found: Vec<_> = kinds(text);
        assert!(found.is_empty(), "false positive in {text:?}: {found:?}");
    }
}

#[test]
fn weak_heuristics_are_low_confidence() {
    let d = detect("node 1.2.3.4 joined");
    assert_eq!(d.len(), 1);
    assert!(d[0].confidence < 0.5);
    let d = detect("phone 415 555 2671");
    assert!(d[0].confidence >= 0.9);
    assert!(detect("values 415 555 2671").is_empty());
}

fn rule(name: &str, threshold: f64, allowed: &[&str], history: bool) -> PiiRule {
    PiiRule {
        name: name.into(),
        threshold,
        pii_types_allowed: allowed.iter().map(|s| s.to_string()).collect(),
        include_history: history,
    }
}

fn check_rules(rules: &[PiiRule], text: &str, history: &[&str], expected: &[&str]) {
    let s = PiiSignals::build(rules);
    let mut out = FamilyResult::new(rules.len());
    let h: Vec<String> = history.iter().map(|s| s.to_string()).collect();
    s.eval(text, &h, &mut out);
    let got: Vec<&str> = out
        .matched
        .iter()
        .map(|&i| rules[i as usize].name.as_str())
        .collect();
    assert_eq!(got, expected, "{text:?}");
    assert!(out.confidence.iter().all(Option::is_none));
}

#[test]
fn rule_matching() {
    let rules = [
        rule("any", 0.5, &[], false),
        rule("no_email", 0.5, &["email_address"], false),
        rule("strict", 0.96, &[], false),
        rule("hist", 0.5, &["EMAIL_ADDRESS"], true),
    ];
    check_rules(&rules, "write to a@b.io", &[], &["any"]);
    check_rules(
        &rules,
        "write to a@b.io, card 4111111111111111",
        &[],
        &["any", "no_email", "strict", "hist"],
    );
    check_rules(&rules, "hello", &["my ssn is 123-45-6789"], &["hist"]);
    check_rules(&rules, "hello", &[], &[]);
    check_rules(
        &[rule("zero", 0.0, &[], false)],
        "node 1.2.3.4",
        &[],
        &["zero"],
    );
    check_rules(&[rule("half", 0.5, &[], false)], "node 1.2.3.4", &[], &[]);
}

#[test]
fn rough_timing() {
    let text = "Hi, I'm debugging a service. The config has host 10.1.2.3, user admin and the logs show request ids like 550e8400-e29b-41d4-a716-446655440000. Can you help me figure out why responses are slow after version 2.3.1? ".repeat(3);
    let n = 200;
    // Warm up: compile the patterns and the regex caches once.
    std::hint::black_box(detect(&text));
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(detect(&text));
    }
    eprintln!(
        "pii detect ({} bytes): {:?}/call",
        text.len(),
        t.elapsed() / n
    );
}

proptest! {
    #[test]
    fn detect_never_panics_and_offsets_are_boundaries(text in "(?s).{0,300}") {
        for e in detect(&text) {
            prop_assert!(e.start < e.end && e.end <= text.len());
            prop_assert!(text.is_char_boundary(e.start) && text.is_char_boundary(e.end));
            prop_assert!((0.0..=1.0).contains(&e.confidence));
        }
    }

    #[test]
    fn digit_soup_never_panics(text in "[0-9a-fA-F:.\\- +@_=()]{0,120}") {
        let found = detect(&text);
        for w in found.windows(2) {
            prop_assert!(w[0].end <= w[1].start);
        }
    }
}
