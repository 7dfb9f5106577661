//! Character classes and tokenisation shared by the deterministic signal families.
//!
//! Owns only pure text helpers (Han/CJK detection, letter-digit runs, multilingual unit
//! counts, Levenshtein distance). No rule semantics live here.

/// True for a Han (Chinese character) code point (Unicode script Han, main blocks).
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2E99 | 0x2E9B..=0x2EF3 | 0x2F00..=0x2FD5 | 0x3005 | 0x3007 | 0x3021..=0x3029
        | 0x3038..=0x303B | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFA6D | 0xFA70..=0xFAD9
        | 0x16FE2 | 0x16FE3 | 0x16FF0..=0x16FF1 | 0x20000..=0x2A6DF | 0x2A700..=0x2EBE0
        | 0x2F800..=0x2FA1D | 0x30000..=0x323AF)
}

/// True for a Hiragana code point.
fn is_hiragana(c: char) -> bool {
    matches!(c as u32, 0x3041..=0x3096 | 0x309D..=0x309F | 0x1B001..=0x1B11F | 0x1B132 | 0x1B150..=0x1B152 | 0x1F200)
}

/// True for a Katakana code point.
fn is_katakana(c: char) -> bool {
    matches!(c as u32,
        0x30A1..=0x30FA | 0x30FD..=0x30FF | 0x31F0..=0x31FF | 0x32D0..=0x32FE | 0x3300..=0x3357
        | 0xFF66..=0xFF6F | 0xFF71..=0xFF9D | 0x1AFF0..=0x1AFFE | 0x1B000 | 0x1B120..=0x1B122
        | 0x1B155 | 0x1B164..=0x1B167)
}

/// True for a Hangul code point.
fn is_hangul(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF | 0x302E..=0x302F | 0x3131..=0x318E | 0x3200..=0x321E | 0x3260..=0x327E
        | 0xA960..=0xA97C | 0xAC00..=0xD7A3 | 0xD7B0..=0xD7C6 | 0xD7CB..=0xD7FB | 0xFFA0..=0xFFBE
        | 0xFFC2..=0xFFC7 | 0xFFCA..=0xFFCF | 0xFFD2..=0xFFD7 | 0xFFDA..=0xFFDC)
}

/// CJK as the upstream structure family defines it: Han, Hiragana, Katakana or Hangul.
pub fn is_cjk(c: char) -> bool {
    is_han(c) || is_hiragana(c) || is_katakana(c) || is_hangul(c)
}

/// True when the string holds a CJK character.
pub fn contains_cjk(s: &str) -> bool {
    s.chars().any(is_cjk)
}

/// A letter or digit (Rust's `is_alphanumeric`, close to Go's `IsLetter || IsDigit`).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Content-bearing units: each CJK character is one unit, each other run of letters or
/// digits is one unit (contract §3.10 density denominator).
pub fn multilingual_units(text: &str) -> usize {
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        if is_cjk(c) {
            count += 1;
            in_word = false;
        } else if is_word_char(c) {
            if !in_word {
                count += 1;
                in_word = true;
            }
        } else {
            in_word = false;
        }
    }
    count
}

/// Runs of letters and digits, lowercased (the fuzzy keyword tokeniser).
pub fn lower_words(text: &str) -> Vec<String> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Levenshtein distance over characters, giving up early once it exceeds `max`
/// (the returned value is then `max + 1`).
pub fn levenshtein_within(a: &[char], b: &[char], max: usize) -> usize {
    let (a, b) = if a.len() > b.len() { (b, a) } else { (a, b) };
    if b.len() - a.len() > max {
        return max + 1;
    }
    if a.is_empty() {
        return b.len();
    }
    let mut prev: Vec<usize> = (0..=a.len()).collect();
    let mut curr = vec![0; a.len() + 1];
    for (j, cb) in b.iter().enumerate() {
        curr[0] = j + 1;
        let mut row_min = curr[0];
        for (i, ca) in a.iter().enumerate() {
            let cost = usize::from(ca != cb);
            curr[i + 1] = (prev[i + 1] + 1).min(curr[i] + 1).min(prev[i] + cost);
            row_min = row_min.min(curr[i + 1]);
        }
        if row_min > max {
            return max + 1;
        }
        std::mem::swap(&mut prev, &mut curr);
    }
    prev[a.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_classes() {
        assert_eq!(multilingual_units("hello world"), 2);
        assert_eq!(multilingual_units("你好 world"), 3);
        assert_eq!(multilingual_units("a1-b2, c"), 3);
        assert_eq!(multilingual_units(""), 0);
        assert!(is_han('中') && is_cjk('か') && is_cjk('カ') && is_cjk('한') && !is_cjk('a'));
        assert_eq!(
            lower_words("Hello, WORLD-42!"),
            vec!["hello", "world", "42"]
        );
    }

    #[test]
    fn levenshtein() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(levenshtein_within(&c("kitten"), &c("sitting"), 5), 3);
        assert_eq!(levenshtein_within(&c("kitten"), &c("sitting"), 2), 3);
        assert_eq!(levenshtein_within(&c(""), &c("ab"), 2), 2);
        assert_eq!(levenshtein_within(&c("abc"), &c("abc"), 0), 0);
    }
}
