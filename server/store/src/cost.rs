//! Pricing: turning backend-reported usage into an actual and a baseline cost.
//!
//! Pure arithmetic, no I/O and no config types: the gateway builds a [`PriceTable`] from the
//! recipe's model pricing when it loads a recipe and calls [`PriceTable::cost`] once per
//! finished request. The baseline is "the same tokens priced at the most expensive model"
//! (upstream runtime spec §5.2); here that means the model, among those priced in the same
//! currency, whose pricing gives the highest cost *for this request's usage*, so the
//! baseline is never below the actual cost and savings are never negative. An operator may
//! name a fixed baseline model instead (`serve --baseline-model`): then the baseline is that
//! model's price for the same tokens, and a request routed to a dearer model shows negative
//! savings.

use crate::rows::{Cost, Usage};

/// Prices of one model, per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// ISO currency code, e.g. `USD`.
    pub currency: String,
    /// Uncached prompt tokens, per million.
    pub prompt_per_million: f64,
    /// Prompt tokens served from the prefix cache, per million (often cheaper).
    pub cached_prompt_per_million: f64,
    /// Completion tokens, per million.
    pub completion_per_million: f64,
}

impl Pricing {
    /// What `usage` costs at these prices. Cached prompt tokens beyond `prompt_tokens` are
    /// ignored (a backend that reports more cached than total is treated as all cached).
    #[must_use]
    pub fn price(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        (uncached as f64 * self.prompt_per_million
            + cached as f64 * self.cached_prompt_per_million
            + usage.completion_tokens as f64 * self.completion_per_million)
            / 1_000_000.0
    }
}

/// Pricing of every priced model of a recipe.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: Vec<(String, Pricing)>,
}

impl PriceTable {
    /// A table of `(model name, pricing)` pairs; models without pricing are simply absent.
    #[must_use]
    pub fn new(models: impl IntoIterator<Item = (String, Pricing)>) -> Self {
        Self {
            models: models.into_iter().collect(),
        }
    }

    /// The pricing of `model`, if it has one.
    #[must_use]
    pub fn get(&self, model: &str) -> Option<&Pricing> {
        self.models.iter().find(|(m, _)| m == model).map(|(_, p)| p)
    }

    /// Names of the priced models, in recipe order.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|(m, _)| m.as_str())
    }

    /// Actual and baseline cost of `usage` served by `model`; `None` if `model` has no
    /// pricing.
    ///
    /// With `fixed_baseline` naming a model priced in the same currency, the baseline is
    /// that model's price for `usage`. Otherwise (no fixed baseline, or it has no pricing in
    /// this currency) the baseline model is the priced model, in the same currency, for
    /// which `usage` costs most (ties go to the first listed).
    #[must_use]
    pub fn cost(&self, model: &str, usage: &Usage, fixed_baseline: Option<&str>) -> Option<Cost> {
        let pricing = self.get(model)?;
        let actual = pricing.price(usage);
        if let Some((name, p)) = fixed_baseline
            .and_then(|b| self.models.iter().find(|(m, _)| m == b))
            .filter(|(_, p)| p.currency == pricing.currency)
        {
            return Some(Cost {
                actual,
                baseline: p.price(usage),
                currency: pricing.currency.clone(),
                baseline_model: Some(name.clone()),
            });
        }
        let mut baseline = actual;
        let mut baseline_model = model;
        for (name, p) in &self.models {
            if p.currency != pricing.currency {
                continue;
            }
            let c = p.price(usage);
            if c > baseline {
                baseline = c;
                baseline_model = name;
            }
        }
        Some(Cost {
            actual,
            baseline,
            currency: pricing.currency.clone(),
            baseline_model: Some(baseline_model.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(prompt: f64, cached: f64, completion: f64) -> Pricing {
        Pricing {
            currency: "USD".into(),
            prompt_per_million: prompt,
            cached_prompt_per_million: cached,
            completion_per_million: completion,
        }
    }

    #[test]
    fn prices_cached_and_uncached_prompt_tokens_separately() {
        let usage = Usage {
            prompt_tokens: 1_000_000,
            cached_prompt_tokens: 400_000,
            completion_tokens: 500_000,
        };
        let p = usd(2.0, 0.5, 10.0);
        // 0.6M × 2 + 0.4M × 0.5 + 0.5M × 10
        assert!((p.price(&usage) - (1.2 + 0.2 + 5.0)).abs() < 1e-12);
    }

    #[test]
    fn baseline_is_the_most_expensive_model_for_this_usage() {
        let table = PriceTable::new([
            ("small".to_owned(), usd(0.1, 0.1, 0.4)),
            // Expensive prompts, cheap completions.
            ("prompt-heavy".to_owned(), usd(10.0, 10.0, 1.0)),
            // Cheap prompts, expensive completions.
            ("completion-heavy".to_owned(), usd(1.0, 1.0, 30.0)),
            (
                "euro".to_owned(),
                Pricing {
                    currency: "EUR".into(),
                    ..usd(100.0, 100.0, 100.0)
                },
            ),
        ]);
        let long_prompt = Usage {
            prompt_tokens: 10_000,
            cached_prompt_tokens: 0,
            completion_tokens: 10,
        };
        let c = table.cost("small", &long_prompt, None).unwrap();
        assert_eq!(c.baseline_model.as_deref(), Some("prompt-heavy"));
        assert!(c.baseline > c.actual);
        let long_answer = Usage {
            prompt_tokens: 10,
            cached_prompt_tokens: 0,
            completion_tokens: 10_000,
        };
        let c = table.cost("small", &long_answer, None).unwrap();
        assert_eq!(c.baseline_model.as_deref(), Some("completion-heavy"));
        assert_eq!(c.currency, "USD");
        // The most expensive model is its own baseline: zero savings.
        let c = table.cost("completion-heavy", &long_answer, None).unwrap();
        assert_eq!(c.savings(), 0.0);
        assert!(table.cost("unpriced", &long_answer, None).is_none());
        // A fixed baseline prices the same tokens at that model, even when it is cheaper.
        let c = table
            .cost("completion-heavy", &long_answer, Some("small"))
            .unwrap();
        assert_eq!(c.baseline_model.as_deref(), Some("small"));
        assert!((c.baseline - usd(0.1, 0.1, 0.4).price(&long_answer)).abs() < 1e-15);
        assert!(c.savings() < 0.0, "routing to a dearer model costs money");
        // A fixed baseline in another currency (or unpriced) falls back to the maximum.
        for other in ["euro", "unpriced"] {
            let c = table.cost("small", &long_answer, Some(other)).unwrap();
            assert_eq!(c.baseline_model.as_deref(), Some("completion-heavy"));
        }
        assert_eq!(
            table.models().collect::<Vec<_>>(),
            ["small", "prompt-heavy", "completion-heavy", "euro"]
        );
    }
}
