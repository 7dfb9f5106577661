//! A record's fields that filters and insights read, decoded without the rest.
//!
//! Deserialising a whole [`ReplayRecord`] builds its maps, strings, eval trace and learning
//! detail; a [`View`] borrows the few strings it needs from the JSON and skips everything
//! else, so filtering and aggregating thousands of records stays cheap. The field names and
//! defaults are the record's own (tested against it).

use std::borrow::Cow;

use serde::Deserialize;

use crate::insights::InsightsRow;
use crate::query::ReplayFilter;
use crate::rows::{Lifecycle, Timings, Usage};

/// The filterable and aggregated fields of a record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct View<'a> {
    pub timestamp_ms: i64,
    #[serde(borrow)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub final_model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub session_hash: Option<Cow<'a, str>>,
    pub status: Option<u16>,
    pub lifecycle: Lifecycle,
    pub usage: Option<Usage>,
    #[serde(borrow)]
    pub cost: Option<CostView<'a>>,
    pub timings: Timings,
    pub cache_hit: bool,
}

/// The cost fields insights read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CostView<'a> {
    pub actual: f64,
    pub baseline: f64,
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
}

impl View<'_> {
    /// Whether the record matches `filter`'s fields other than time.
    pub(crate) fn matches(&self, filter: &ReplayFilter) -> bool {
        fn same(want: Option<&String>, got: Option<&Cow<'_, str>>) -> bool {
            want.is_none_or(|w| got.is_some_and(|g| g == w))
        }
        same(filter.decision.as_ref(), self.decision.as_ref())
            && same(filter.model.as_ref(), self.final_model.as_ref())
            && same(filter.session.as_ref(), self.session_hash.as_ref())
            && filter.status.is_none_or(|s| self.status == Some(s))
            && filter.lifecycle.is_none_or(|l| self.lifecycle == l)
    }

    /// The row insights aggregate.
    pub(crate) fn insights_row(self) -> InsightsRow {
        let usage = self.usage.unwrap_or_default();
        let cost = self.cost.as_ref();
        InsightsRow {
            timestamp_ms: self.timestamp_ms,
            status: self.status,
            lifecycle: self.lifecycle,
            prompt_tokens: usage.prompt_tokens,
            cached_prompt_tokens: usage.cached_prompt_tokens,
            completion_tokens: usage.completion_tokens,
            actual_cost: cost.map(|c| c.actual),
            baseline_cost: cost.map(|c| c.baseline),
            currency: cost.map(|c| c.currency.clone().into_owned()),
            total_ms: Some(self.timings.total_ms),
            cache_hit: self.cache_hit,
            decision: self.decision.map(Cow::into_owned),
            model: self.final_model.map(Cow::into_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Cost, ReplayRecord};

    fn record() -> ReplayRecord {
        ReplayRecord {
            decision: Some("math \"fast\"".into()),
            final_model: Some("m".into()),
            session_hash: Some("s:1".into()),
            status: Some(429),
            lifecycle: Lifecycle::Aborted,
            usage: Some(Usage {
                prompt_tokens: 10,
                cached_prompt_tokens: 4,
                completion_tokens: 3,
            }),
            cost: Some(Cost {
                actual: 0.5,
                baseline: 2.0,
                currency: "EUR".into(),
                baseline_model: Some("big".into()),
            }),
            timings: Timings {
                total_ms: 12.5,
                ..Timings::default()
            },
            cache_hit: true,
            ..ReplayRecord::new(1_763_700_000_000)
        }
    }

    #[test]
    fn a_view_reads_what_the_record_holds() {
        for r in [record(), ReplayRecord::new(5)] {
            let json = serde_json::to_vec(&r).unwrap();
            let view: View<'_> = serde_json::from_slice(&json).unwrap();
            assert_eq!(view.timestamp_ms, r.timestamp_ms);
            assert_eq!(view.decision.as_deref(), r.decision.as_deref());
            assert_eq!(view.final_model.as_deref(), r.final_model.as_deref());
            assert_eq!(view.session_hash.as_deref(), r.session_hash.as_deref());
            assert_eq!((view.status, view.lifecycle), (r.status, r.lifecycle));
            assert_eq!((view.usage, view.timings), (r.usage, r.timings));
            assert_eq!(view.cache_hit, r.cache_hit);
            assert_eq!(
                view.cost
                    .as_ref()
                    .map(|c| (c.actual, c.baseline, c.currency.to_string())),
                r.cost
                    .as_ref()
                    .map(|c| (c.actual, c.baseline, c.currency.clone()))
            );
        }
    }

    #[test]
    fn a_view_matches_a_filter_as_the_record_does() {
        let r = record();
        let json = serde_json::to_vec(&r).unwrap();
        let view: View<'_> = serde_json::from_slice(&json).unwrap();
        let filters = [
            ReplayFilter::default(),
            ReplayFilter {
                decision: Some("math \"fast\"".into()),
                ..ReplayFilter::default()
            },
            ReplayFilter {
                decision: Some("math".into()),
                ..ReplayFilter::default()
            },
            ReplayFilter {
                model: Some("m".into()),
                session: Some("s:1".into()),
                status: Some(429),
                lifecycle: Some(Lifecycle::Aborted),
                ..ReplayFilter::default()
            },
            ReplayFilter {
                status: Some(200),
                ..ReplayFilter::default()
            },
            ReplayFilter {
                lifecycle: Some(Lifecycle::Completed),
                ..ReplayFilter::default()
            },
            ReplayFilter {
                session: Some("s:2".into()),
                ..ReplayFilter::default()
            },
        ];
        let verdicts: Vec<bool> = filters.iter().map(|f| view.matches(f)).collect();
        assert_eq!(verdicts, [true, true, false, true, false, false, false]);
        for f in &filters {
            assert_eq!(view.matches(f), f.matches(&r), "{f:?}");
        }
    }
}
