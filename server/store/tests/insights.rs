//! Insights totals and groups equal the sums over the records written (property test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests (and, in crash.rs, the child process a test runs)"
)]

mod common;

use common::{options, random_record};
use proptest::prelude::*;
use vllm_sr_store::{GroupStats, Lifecycle, ReplayFilter, ReplayRecord, Store};

const HOUR: i64 = 3_600_000;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// Sums computed straight from the records, independently of the store.
fn expected(records: &[&ReplayRecord]) -> GroupStats {
    let mut s = GroupStats {
        requests: records.len() as u64,
        ..GroupStats::default()
    };
    let mut latencies = Vec::new();
    for r in records {
        s.errors += u64::from(r.is_error());
        s.cache_hits += u64::from(r.cache_hit);
        if let Some(u) = r.usage {
            s.prompt_tokens += u.prompt_tokens;
            s.cached_prompt_tokens += u.cached_prompt_tokens;
            s.completion_tokens += u.completion_tokens;
        }
        if let Some(c) = &r.cost {
            s.cost_records += 1;
            s.actual_cost += c.actual;
            s.baseline_cost += c.baseline;
        }
        if r.lifecycle != Lifecycle::InProgress {
            latencies.push(r.timings.total_ms);
        }
    }
    s.savings = s.baseline_cost - s.actual_cost;
    latencies.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let n = latencies.len();
        (n > 0).then(|| latencies[(((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1])
    };
    s.latency_ms.samples = latencies.len() as u64;
    s.latency_ms.p50 = rank(50.0);
    s.latency_ms.p95 = rank(95.0);
    s.latency_ms.p99 = rank(99.0);
    s.latency_ms.max = latencies.last().copied();
    s
}

fn assert_stats(got: &GroupStats, want: &GroupStats, what: &str) {
    assert_eq!(
        (got.requests, got.errors, got.cache_hits, got.cost_records),
        (
            want.requests,
            want.errors,
            want.cache_hits,
            want.cost_records
        ),
        "{what}"
    );
    assert_eq!(
        (
            got.prompt_tokens,
            got.cached_prompt_tokens,
            got.completion_tokens
        ),
        (
            want.prompt_tokens,
            want.cached_prompt_tokens,
            want.completion_tokens
        ),
        "{what}"
    );
    assert!(
        close(got.actual_cost, want.actual_cost),
        "{what}: {got:?} vs {want:?}"
    );
    assert!(close(got.baseline_cost, want.baseline_cost), "{what}");
    assert!(close(got.savings, want.savings), "{what}");
    if want.baseline_cost > 0.0 {
        assert!(
            close(got.savings_pct, want.savings / want.baseline_cost * 100.0),
            "{what}"
        );
    }
    assert_eq!(got.latency_ms, want.latency_ms, "{what}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn insights_equal_the_sums_over_records(
        seed in any::<u64>(),
        n in 0usize..300,
        since_h in 0i64..60,
        span_h in 1i64..60,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &options()).unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        // Spread over ~2.5 days so days and hours each have several buckets.
        let base = 1_763_683_200_000; // 2025-11-21T00:00Z
        let records: Vec<ReplayRecord> = (0..n)
            .map(|_| {
                let ts = base + rng.i64(0..60 * HOUR);
                random_record(&mut rng, ts)
            })
            .collect();
        for r in &records {
            prop_assert!(store.sink().record(r.clone()));
        }
        store.sink().flush().unwrap();
        let reader = store.reader();

        // Everything.
        let all = reader.insights(&ReplayFilter::default()).unwrap();
        let refs: Vec<&ReplayRecord> = records.iter().collect();
        assert_stats(&all.totals, &expected(&refs), "totals");
        let lifecycle_sum: u64 = all.lifecycle.values().sum();
        prop_assert_eq!(lifecycle_sum, n as u64);
        for g in &all.by_decision {
            let rs: Vec<&ReplayRecord> = records.iter().filter(|r| r.decision == g.key).collect();
            assert_stats(&g.stats, &expected(&rs), &format!("decision {:?}", g.key));
        }
        for g in &all.by_model {
            let rs: Vec<&ReplayRecord> = records.iter().filter(|r| r.final_model == g.key).collect();
            assert_stats(&g.stats, &expected(&rs), &format!("model {:?}", g.key));
        }
        for (buckets, width) in [(&all.by_day, 24 * HOUR), (&all.by_hour, HOUR)] {
            let mut covered = 0;
            for b in buckets {
                let rs: Vec<&ReplayRecord> = records
                    .iter()
                    .filter(|r| r.timestamp_ms >= b.start_ms && r.timestamp_ms < b.start_ms + width)
                    .collect();
                assert_stats(&b.stats, &expected(&rs), &b.label);
                covered += rs.len();
            }
            prop_assert_eq!(covered, n);
        }
        let group_requests: u64 = all.by_decision.iter().map(|g| g.stats.requests).sum();
        prop_assert_eq!(group_requests, n as u64);

        // A time range.
        let filter = ReplayFilter {
            since_ms: Some(base + since_h * HOUR),
            until_ms: Some(base + (since_h + span_h) * HOUR),
            ..ReplayFilter::default()
        };
        let ranged = reader.insights(&filter).unwrap();
        let rs: Vec<&ReplayRecord> = records
            .iter()
            .filter(|r| {
                filter.since_ms.is_none_or(|t| r.timestamp_ms >= t)
                    && filter.until_ms.is_none_or(|t| r.timestamp_ms < t)
            })
            .collect();
        assert_stats(&ranged.totals, &expected(&rs), "range");
        prop_assert_eq!(ranged.since_ms, filter.since_ms);
        if ranged.totals.cost_records > 0 {
            prop_assert_eq!(ranged.currency.as_deref(), Some("USD"));
        }
    }
}
