//! The `event` family (contract §3.18): event types, severities, action codes and temporal
//! urgency markers found in the bounded user text.
//!
//! Owns compiling each rule once and scoring it. Each configured criterion is one check;
//! blank event types and action codes are skipped and unknown severities are dropped (a
//! criterion left with nothing is not configured). A rule matches when at least one
//! criterion passes, with confidence `0.5 + 0.5·passed/configured`.

use regex::{Regex, RegexBuilder};
use vllm_sr_config::model::EventRule;

use crate::error::EngineError;
use crate::state::FamilyResult;

const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const TEMPORAL: &str =
    r"(?i)\b(urgent|immediate|asap|deadline|time.sensitive|now|critical.window)\b";

#[derive(Debug)]
struct Compiled {
    /// Any event type as a word.
    event_types: Option<Regex>,
    /// Any configured severity word.
    severities: Option<Regex>,
    /// Any action code as a word.
    action_codes: Option<Regex>,
    temporal: bool,
}

/// The event rules of a recipe, compiled.
#[derive(Debug)]
pub struct EventSignals {
    rules: Vec<Compiled>,
    temporal: Regex,
}

fn words_regex(
    name: &str,
    words: impl Iterator<Item = String>,
) -> Result<Option<Regex>, EngineError> {
    let alts: Vec<String> = words
        .map(|w| format!(r"\b{}\b", regex::escape(&w)))
        .collect();
    if alts.is_empty() {
        return Ok(None);
    }
    RegexBuilder::new(&alts.join("|"))
        .case_insensitive(true)
        .build()
        .map(Some)
        .map_err(|e| EngineError::Compile {
            family: "event",
            name: name.to_string(),
            message: e.to_string(),
        })
}

fn trimmed(v: &[String]) -> impl Iterator<Item = String> + '_ {
    v.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl EventSignals {
    /// Compiles every rule.
    pub fn build(rules: &[EventRule]) -> Result<Self, EngineError> {
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let sev = r
                .severities
                .iter()
                .map(|s| s.trim().to_lowercase())
                .filter(|s| SEVERITIES.contains(&s.as_str()));
            out.push(Compiled {
                event_types: words_regex(&r.name, trimmed(&r.event_types))?,
                severities: words_regex(&r.name, sev)?,
                action_codes: words_regex(&r.name, trimmed(&r.action_codes))?,
                temporal: r.temporal,
            });
        }
        let temporal = Regex::new(TEMPORAL).map_err(|e| EngineError::Compile {
            family: "event",
            name: "temporal".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            rules: out,
            temporal,
        })
    }

    /// Evaluates every rule against the bounded user text.
    pub fn eval(&self, bounded: &str, out: &mut FamilyResult) {
        let mut temporal_hit: Option<bool> = None;
        for (i, r) in self.rules.iter().enumerate() {
            let mut configured = 0u32;
            let mut passed = 0u32;
            for re in [&r.event_types, &r.severities, &r.action_codes]
                .into_iter()
                .flatten()
            {
                configured += 1;
                passed += u32::from(re.is_match(bounded));
            }
            if r.temporal {
                configured += 1;
                passed +=
                    u32::from(*temporal_hit.get_or_insert_with(|| self.temporal.is_match(bounded)));
            }
            if configured > 0 && passed > 0 {
                out.hit(
                    i,
                    Some(0.5 + 0.5 * f64::from(passed) / f64::from(configured)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(types: &[&str], sev: &[&str], codes: &[&str], temporal: bool) -> EventRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        EventRule {
            name: "e".into(),
            event_types: v(types),
            severities: v(sev),
            action_codes: v(codes),
            temporal,
        }
    }

    fn check(r: EventRule, text: &str, expected: Option<f64>) {
        let mut out = FamilyResult::new(1);
        EventSignals::build(&[r]).unwrap().eval(text, &mut out);
        let got = out.is_matched(0).then(|| out.confidence[0].unwrap());
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn confidence_formula() {
        let r = || {
            rule(
                &["outage", "incident"],
                &["critical", "high"],
                &["P1", "SEV-1"],
                true,
            )
        };
        check(
            r(),
            "Major OUTAGE, severity critical, P1, respond asap",
            Some(1.0),
        );
        check(r(), "there is an incident", Some(0.625));
        check(r(), "incident with high load", Some(0.75));
        check(r(), "incident high SEV-1", Some(0.875));
        check(r(), "all good here", None);
        check(r(), "", None);
        check(rule(&[], &[], &[], true), "need this now", Some(1.0));
        check(rule(&[], &[], &[], true), "nowhere urgently", None);
        check(rule(&[], &[], &[], true), "time-sensitive fix", Some(1.0));
        check(rule(&[], &[], &[], false), "urgent outage", None);
    }

    #[test]
    fn words_and_normalisation() {
        // Unknown severities and blank types do not count as configured criteria.
        check(
            rule(&["  ", "deploy"], &["severe", " HIGH "], &[], false),
            "deploy failed",
            Some(0.75),
        );
        check(rule(&[""], &["severe"], &[], false), "anything", None);
        check(rule(&["deploy"], &[], &[], false), "redeployment", None);
        check(rule(&[], &["low"], &[], false), "lower", None);
        check(
            rule(&[], &[], &["ERR-42"], false),
            "got err-42 again",
            Some(1.0),
        );
    }
}
