//! Environment substitution over every string value of a recipe (upstream contract §1.8).
//!
//! `$VAR` and `${VAR}` expand to the value or to the empty string when unset; `${VAR:-def}`
//! uses `def` when the variable is unset or empty; `${VAR-def}` only when unset; `$$` is a
//! literal `$`; a `$` not followed by a name (`\d+$`, `$1`, `${` without a closing brace) is
//! kept as written. The environment is read through [`EnvSource`] so tests inject a map.

use std::collections::HashMap;

/// Where variable values come from.
pub trait EnvSource {
    /// The value of `name`, or `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The result of expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text.
    pub text: String,
    /// Variables referenced without a default that were unset (expanded to "").
    pub unset: Vec<String>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands `${...}` and `$NAME` references in `s`.
pub fn expand(s: &str, env: &dyn EnvSource) -> Expanded {
    let mut out = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => match braced(&chars[i + 2..]) {
                Some((name, default, consumed)) => {
                    out.push_str(&resolve(name.as_str(), default, env, &mut unset));
                    i += 2 + consumed;
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            },
            Some(&n) if is_name_start(n) => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && is_name_char(chars[end]) {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                out.push_str(&resolve(&name, Default::None, env, &mut unset));
                i = end;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Expanded { text: out, unset }
}

/// Escapes `s` so that [`expand`] gives it back unchanged: only `$` that would start a
/// reference is doubled, so regexes like `\d+$` stay readable.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        out.push(c);
        if c == '$' {
            if let Some(&n) = it.peek() {
                if n == '$' || n == '{' || is_name_start(n) {
                    out.push('$');
                }
            }
        }
    }
    out
}

enum Default {
    None,
    /// `${VAR:-def}`: used when unset or empty.
    UnsetOrEmpty(String),
    /// `${VAR-def}`: used only when unset.
    Unset(String),
}

/// Parses the inside of `${...}` starting after the brace. Returns the name, the default and
/// how many chars were consumed including the closing brace.
fn braced(rest: &[char]) -> Option<(String, Default, usize)> {
    let close = rest.iter().position(|&c| c == '}')?;
    let body: String = rest[..close].iter().collect();
    let name_len = body.chars().take_while(|&c| is_name_char(c)).count();
    let name: String = body.chars().take(name_len).collect();
    if name.is_empty() || !name.starts_with(is_name_start) {
        return None;
    }
    let tail: String = body.chars().skip(name_len).collect();
    let default = if tail.is_empty() {
        Default::None
    } else if let Some(d) = tail.strip_prefix(":-") {
        Default::UnsetOrEmpty(d.to_string())
    } else if let Some(d) = tail.strip_prefix('-') {
        Default::Unset(d.to_string())
    } else {
        return None;
    };
    Some((name, default, close + 1))
}

fn resolve(name: &str, default: Default, env: &dyn EnvSource, unset: &mut Vec<String>) -> String {
    let value = env.get(name);
    match (value, default) {
        (Some(v), Default::UnsetOrEmpty(d)) if v.is_empty() => d,
        (Some(v), _) => v,
        (None, Default::UnsetOrEmpty(d) | Default::Unset(d)) => d,
        (None, Default::None) => {
            if !unset.iter().any(|u| u == name) {
                unset.push(name.to_string());
            }
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("HOST".to_string(), "vllm".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    fn x(s: &str) -> (String, Vec<String>) {
        let e = expand(s, &env());
        (e.text, e.unset)
    }

    #[test]
    fn forms() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("$HOST:8000", "vllm:8000", &[]),
            ("${HOST}:8000", "vllm:8000", &[]),
            ("${MISSING}", "", &["MISSING"]),
            ("$MISSING/x", "/x", &["MISSING"]),
            ("${MISSING:-d}", "d", &[]),
            ("${EMPTY:-d}", "d", &[]),
            ("${MISSING-d}", "d", &[]),
            ("${EMPTY-d}", "", &[]),
            ("${HOST:-d}", "vllm", &[]),
            ("$$HOST", "$HOST", &[]),
            (r"\d+$", r"\d+$", &[]),
            ("cost $5", "cost $5", &[]),
            ("${unclosed", "${unclosed", &[]),
            ("${1BAD}", "${1BAD}", &[]),
            ("a$", "a$", &[]),
            ("(?i)^\\s*$", "(?i)^\\s*$", &[]),
            ("本地$HOST处理", "本地vllm处理", &[]),
        ];
        for (input, want, unset) in cases {
            let (got, u) = x(input);
            assert_eq!(&got, want, "input {input:?}");
            assert_eq!(
                u,
                unset.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn escape_round_trips() {
        for s in ["$HOST", "a$$b", r"\d+$", "${X:-y}", "plain", "$", "$1"] {
            assert_eq!(expand(&escape(s), &HashMap::new()).text, s, "{s:?}");
        }
        assert_eq!(escape(r"\d+$"), r"\d+$");
    }
}
