//! Language detection cases and a timing/accuracy comparison of lingua's modes.

use super::*;

fn rules(spec: &[(&str, f64)]) -> Vec<LanguageRule> {
    spec.iter()
        .map(|(n, t)| LanguageRule {
            name: n.to_string(),
            threshold: *t,
        })
        .collect()
}

fn check(spec: &[(&str, f64)], text: &str, expected: &[&str]) {
    let r = rules(spec);
    let s = LanguageSignals::build(&r);
    let mut out = FamilyResult::new(r.len());
    s.eval(text, &mut out);
    let got: Vec<&str> = out
        .matched
        .iter()
        .map(|&i| r[i as usize].name.as_str())
        .collect();
    assert_eq!(got, expected, "{text:?} detected as {:?}", s.detect(text));
}

const ALL: &[(&str, f64)] = &[
    ("en", 0.0),
    ("zh", 0.0),
    ("es", 0.0),
    ("fr", 0.0),
    ("de", 0.0),
    ("ja", 0.0),
    ("ru", 0.0),
    ("ko", 0.0),
];

#[test]
fn detects_common_languages() {
    check(
        ALL,
        "How do I sort a list of dictionaries by a key in Python?",
        &["en"],
    );
    check(
        ALL,
        "请帮我写一个快速排序算法，并解释它的时间复杂度。",
        &["zh"],
    );
    check(
        ALL,
        "¿Cómo puedo mejorar el rendimiento de mi base de datos?",
        &["es"],
    );
    check(
        ALL,
        "Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?",
        &["fr"],
    );
    check(
        ALL,
        "Wie kann ich meine Steuererklärung online einreichen?",
        &["de"],
    );
    check(ALL, "東京でおすすめのラーメン屋を教えてください。", &["ja"]);
    check(
        ALL,
        "Объясни, пожалуйста, как работает квантовый компьютер.",
        &["ru"],
    );
    check(ALL, "오늘 날씨가 어때요? 우산이 필요할까요?", &["ko"]);
}

#[test]
fn fallback_to_english() {
    let s = LanguageSignals::build(&rules(&[("en", 0.0)]));
    assert_eq!(s.detect(""), ("en".to_string(), 0.5));
    assert_eq!(s.detect("   "), ("en".to_string(), 0.5));
    assert_eq!(s.detect("12345 !!! ???"), ("en".to_string(), 0.5));
    check(&[("en", 0.0)], "", &["en"]);
    // A threshold above the fallback confidence: the fallback does not match.
    check(&[("en", 0.6)], "", &[]);
    check(&[("en", 0.5)], "", &["en"]);
    // Rules whose code was not detected never match.
    check(&[("fr", 0.0)], "", &[]);
}

#[test]
fn thresholds_and_min_confidence() {
    let s = LanguageSignals::build(&rules(&[("en", 0.9), ("zh", 0.2), ("de", 0.0)]));
    assert!((s.min_confidence - 0.2).abs() < 1e-12);
    assert!((LanguageSignals::build(&rules(&[("en", 0.0)])).min_confidence - 0.3).abs() < 1e-12);
    // Exact match on an ISO code; a too-high threshold blocks it.
    check(
        &[("en", 1.01)],
        "The quick brown fox jumps over the lazy dog.",
        &[],
    );
    check(
        &[("en", 0.0), ("EN", 0.0)],
        "The quick brown fox jumps over the lazy dog.",
        &["en"],
    );
}

#[test]
fn unsupported_languages_are_listed() {
    let s = LanguageSignals::build(&rules(&[("en", 0.0), ("sw", 0.0), ("fi", 0.0)]));
    assert_eq!(s.unsupported(), &["sw".to_string(), "fi".to_string()]);
    assert_eq!(supported_codes().len(), 16);
}

/// Compares high- and low-accuracy modes on ~100-token prompts. Low accuracy calls short
/// English prompts French (0.93 confidence for "How do I sort a list of dictionaries by a key
/// in Python?"), so the engine uses high accuracy.
#[test]
fn mode_timing_and_agreement() {
    let prompts = [
        "I am building a web service in Rust that routes chat requests to different language models depending on the content of the prompt. Could you explain how I should structure the configuration so that rules are compiled once at startup, evaluated quickly for each request, and reloaded safely when the file changes? Please include an example with keyword rules, a language rule and a context length rule, and describe the trade-offs between regular expressions and embedding similarity for this kind of routing.",
        "我正在用Rust构建一个网络服务，它会根据提示的内容把聊天请求路由到不同的语言模型。你能解释一下我应该如何组织配置，使规则在启动时只编译一次、每个请求都能快速评估，并且在文件变化时可以安全地重新加载吗？请给出一个包含关键词规则、语言规则和上下文长度规则的例子。",
        "Estoy construyendo un servicio web en Rust que enruta solicitudes de chat a distintos modelos de lenguaje según el contenido del mensaje. ¿Podrías explicar cómo estructurar la configuración para que las reglas se compilen una sola vez al inicio y se evalúen rápidamente?",
        "Short question: what time is it in Tokyo?",
        "你好，今天天气怎么样？",
    ];
    let expected = ["en", "zh", "es", "en", "zh"];
    let high = &*DETECTOR;
    let low = &build_detector(true);
    let mut low_right = 0;
    for (p, e) in prompts.iter().zip(expected) {
        assert_eq!(
            detect_with(high, p).map(|d| d.0).as_deref(),
            Some(e),
            "high: {p}"
        );
        low_right += usize::from(detect_with(low, p).map(|d| d.0).as_deref() == Some(e));
    }
    eprintln!("low-accuracy mode: {low_right}/{} right", prompts.len());
    let time = |d: &LanguageDetector| {
        let n = 20u32;
        let t = std::time::Instant::now();
        for _ in 0..n {
            for p in &prompts[..2] {
                std::hint::black_box(detect_with(d, p));
            }
        }
        t.elapsed() / (2 * n)
    };
    eprintln!(
        "language detect per 100-token prompt: high-accuracy {:?}, low-accuracy {:?}",
        time(high),
        time(low)
    );
}
