//! Insights: aggregation of replay rows into request counts, tokens, cost, savings and
//! latency percentiles, overall and by decision, model, day and hour.
//!
//! Pure Rust over rows the query side selected (no SQL here), so the arithmetic is exact and
//! testable: every group's sums are sums over exactly the rows in it, and the totals are the
//! sums over all rows. Time buckets are UTC.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rows::Lifecycle;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Latency percentiles (nearest rank) of `total_ms`, over records not `in_progress`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Records measured.
    pub samples: u64,
    /// Median; `None` without samples.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Slowest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place; NaN sorts last).
    #[must_use]
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |p: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            samples.get(r.clamp(1, n) - 1).copied()
        };
        Self {
            samples: n as u64,
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: samples.last().copied(),
        }
    }
}

/// Aggregates of one group of records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupStats {
    /// Records.
    pub requests: u64,
    /// Records with lifecycle `failed` or an HTTP status ≥ 400.
    pub errors: u64,
    /// Records served from the semantic cache.
    pub cache_hits: u64,
    /// Prompt tokens (cached included).
    pub prompt_tokens: u64,
    /// Cached prompt tokens.
    pub cached_prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Records that carry a cost (the sums below are over these).
    pub cost_records: u64,
    /// Sum of actual costs.
    pub actual_cost: f64,
    /// Sum of baseline costs (the same tokens at the most expensive model).
    pub baseline_cost: f64,
    /// `baseline_cost − actual_cost`.
    pub savings: f64,
    /// `savings / baseline_cost × 100` (0 when the baseline is 0).
    pub savings_pct: f64,
    /// Latency of `total_ms`.
    pub latency_ms: Percentiles,
}

/// A group keyed by a name (decision or model); `key` is `None` for records without one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Decision or model name.
    pub key: Option<String>,
    /// Its aggregates.
    pub stats: GroupStats,
}

/// A UTC time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeBucket {
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
    /// `YYYY-MM-DD` for days, `YYYY-MM-DDTHH:00Z` for hours.
    pub label: String,
    /// Its aggregates.
    pub stats: GroupStats,
}

/// Aggregates over a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insights {
    /// The range asked for (inclusive start).
    pub since_ms: Option<i64>,
    /// The range asked for (exclusive end).
    pub until_ms: Option<i64>,
    /// Over every record.
    pub totals: GroupStats,
    /// Per lifecycle state name.
    pub lifecycle: BTreeMap<String, u64>,
    /// By decision, most requests first.
    pub by_decision: Vec<Group>,
    /// By final model, most requests first.
    pub by_model: Vec<Group>,
    /// By UTC day, oldest first.
    pub by_day: Vec<TimeBucket>,
    /// By UTC hour, oldest first.
    pub by_hour: Vec<TimeBucket>,
    /// The currency of every costed record, if they all share one.
    pub currency: Option<String>,
    /// Costed records came in more than one currency: cost sums mix them.
    pub mixed_currencies: bool,
}

/// The columns insights read from one record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InsightsRow {
    pub(crate) timestamp_ms: i64,
    pub(crate) decision: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) status: Option<u16>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) prompt_tokens: u64,
    pub(crate) cached_prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) actual_cost: Option<f64>,
    pub(crate) baseline_cost: Option<f64>,
    pub(crate) currency: Option<String>,
    pub(crate) total_ms: Option<f64>,
    pub(crate) cache_hit: bool,
}

/// Sums plus the latency samples still to be reduced to percentiles.
#[derive(Debug, Default)]
struct Acc {
    stats: GroupStats,
    latencies: Vec<f64>,
}

impl Acc {
    fn add(&mut self, row: &InsightsRow) {
        let s = &mut self.stats;
        s.requests += 1;
        if row.lifecycle == Lifecycle::Failed || row.status.is_some_and(|c| c >= 400) {
            s.errors += 1;
        }
        s.cache_hits += u64::from(row.cache_hit);
        s.prompt_tokens += row.prompt_tokens;
        s.cached_prompt_tokens += row.cached_prompt_tokens;
        s.completion_tokens += row.completion_tokens;
        if row.actual_cost.is_some() || row.baseline_cost.is_some() {
            s.cost_records += 1;
            s.actual_cost += row.actual_cost.unwrap_or(0.0);
            s.baseline_cost += row.baseline_cost.unwrap_or(0.0);
        }
        if row.lifecycle != Lifecycle::InProgress {
            if let Some(ms) = row.total_ms {
                self.latencies.push(ms);
            }
        }
    }

    fn finish(mut self) -> GroupStats {
        let mut s = self.stats;
        s.savings = s.baseline_cost - s.actual_cost;
        s.savings_pct = if s.baseline_cost > 0.0 {
            s.savings / s.baseline_cost * 100.0
        } else {
            0.0
        };
        s.latency_ms = Percentiles::of(&mut self.latencies);
        s
    }
}

/// Folds rows into [`Insights`].
#[derive(Debug)]
pub(crate) struct InsightsBuilder {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    totals: Acc,
    lifecycle: BTreeMap<String, u64>,
    by_decision: BTreeMap<Option<String>, Acc>,
    by_model: BTreeMap<Option<String>, Acc>,
    by_day: BTreeMap<i64, Acc>,
    by_hour: BTreeMap<i64, Acc>,
    currencies: BTreeMap<String, u64>,
}

impl InsightsBuilder {
    pub(crate) fn new(since_ms: Option<i64>, until_ms: Option<i64>) -> Self {
        Self {
            since_ms,
            until_ms,
            totals: Acc::default(),
            lifecycle: BTreeMap::new(),
            by_decision: BTreeMap::new(),
            by_model: BTreeMap::new(),
            by_day: BTreeMap::new(),
            by_hour: BTreeMap::new(),
            currencies: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, row: &InsightsRow) {
        self.totals.add(row);
        *self
            .lifecycle
            .entry(row.lifecycle.as_str().to_owned())
            .or_default() += 1;
        self.by_decision
            .entry(row.decision.clone())
            .or_default()
            .add(row);
        self.by_model.entry(row.model.clone()).or_default().add(row);
        let day = row.timestamp_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY;
        self.by_day.entry(day).or_default().add(row);
        let hour = row.timestamp_ms.div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
        self.by_hour.entry(hour).or_default().add(row);
        if row.actual_cost.is_some() || row.baseline_cost.is_some() {
            if let Some(c) = &row.currency {
                *self.currencies.entry(c.clone()).or_default() += 1;
            }
        }
    }

    pub(crate) fn finish(self) -> Insights {
        let groups = |m: BTreeMap<Option<String>, Acc>| {
            let mut v: Vec<Group> = m
                .into_iter()
                .map(|(key, acc)| Group {
                    key,
                    stats: acc.finish(),
                })
                .collect();
            // Stable sort keeps key order among equal counts.
            v.sort_by_key(|g| std::cmp::Reverse(g.stats.requests));
            v
        };
        let buckets = |m: BTreeMap<i64, Acc>, hourly: bool| -> Vec<TimeBucket> {
            m.into_iter()
                .map(|(start_ms, acc)| TimeBucket {
                    start_ms,
                    label: label(start_ms, hourly),
                    stats: acc.finish(),
                })
                .collect()
        };
        let mixed_currencies = self.currencies.len() > 1;
        let currency = match self.currencies.len() {
            1 => self.currencies.into_keys().next(),
            _ => None,
        };
        Insights {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            totals: self.totals.finish(),
            lifecycle: self.lifecycle,
            by_decision: groups(self.by_decision),
            by_model: groups(self.by_model),
            by_day: buckets(self.by_day, false),
            by_hour: buckets(self.by_hour, true),
            currency,
            mixed_currencies,
        }
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:00Z` of a UTC bucket start.
fn label(start_ms: i64, hourly: bool) -> String {
    let days = start_ms.div_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if hourly {
        let h = start_ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR;
        format!("{y:04}-{m:02}-{d:02}T{h:02}:00Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-11-21
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
        assert_eq!(
            label(20_778 * MS_PER_DAY + 13 * MS_PER_HOUR, true),
            "2026-11-21T13:00Z"
        );
        assert_eq!(label(20_778 * MS_PER_DAY, false), "2026-11-21");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max),
            (Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        assert_eq!(p.samples, 100);
        let p = Percentiles::of(&mut [7.0]);
        assert_eq!((p.p50, p.p99), (Some(7.0), Some(7.0)));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn savings_and_groups() {
        let row = |decision: &str, actual: f64, baseline: f64, ms: f64| InsightsRow {
            timestamp_ms: 20_778 * MS_PER_DAY + 5,
            decision: Some(decision.into()),
            model: Some("m".into()),
            status: Some(200),
            lifecycle: Lifecycle::Completed,
            prompt_tokens: 10,
            cached_prompt_tokens: 2,
            completion_tokens: 5,
            actual_cost: Some(actual),
            baseline_cost: Some(baseline),
            currency: Some("USD".into()),
            total_ms: Some(ms),
            cache_hit: false,
        };
        let mut b = InsightsBuilder::new(None, None);
        b.add(&row("a", 1.0, 4.0, 10.0));
        b.add(&row("a", 1.0, 4.0, 30.0));
        b.add(&row("b", 2.0, 2.0, 20.0));
        let i = b.finish();
        assert_eq!(i.totals.requests, 3);
        assert_eq!(i.totals.prompt_tokens, 30);
        assert!((i.totals.savings - 6.0).abs() < 1e-12);
        assert!((i.totals.savings_pct - 60.0).abs() < 1e-9);
        assert_eq!(i.by_decision[0].key.as_deref(), Some("a"));
        assert_eq!(i.by_decision[0].stats.latency_ms.p50, Some(10.0));
        assert_eq!(i.by_decision[1].stats.savings_pct, 0.0);
        assert_eq!(i.by_day.len(), 1);
        assert_eq!(i.by_day[0].label, "2026-11-21");
        assert_eq!(i.currency.as_deref(), Some("USD"));
        assert!(!i.mixed_currencies);
    }
}
