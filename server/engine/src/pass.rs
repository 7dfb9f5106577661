//! The second half of evaluation: a request's finished signal results ([`SignalPass`]) →
//! partitions, top-k, projections, every decision tree and the ranking ([`Selection`]) → the
//! [`Outcome`] report.
//!
//! Selecting evaluates the rule trees without recording them (no allocation per node); the
//! outcome's signal report records every tree for the eval trace when first read, which by
//! construction reaches the same results. Split from signal evaluation so the decision half can be measured and reused on
//! its own (`benches/decide.rs` times it with precomputed signals).

use std::time::Instant;

use crate::decide::{self, Candidate, Facts, ProjectionState};
use crate::engine::{checked, Engine, Plan};
use crate::outcome::{Outcome, RouteKind, Timings};
use crate::report;
use crate::state::{SignalState, FAMILIES};

/// One auto request's signal results, before projections and decisions.
#[derive(Debug, Clone)]
pub struct SignalPass {
    pub(crate) recipe: usize,
    pub(crate) request_model: String,
    pub(crate) families: [bool; FAMILIES],
    pub(crate) state: SignalState,
    pub(crate) skipped: Vec<String>,
    pub(crate) skip_reason: Option<String>,
    pub(crate) context_tokens: u64,
    pub(crate) embed_ms: f64,
    pub(crate) signals_ms: f64,
}

impl SignalPass {
    /// The per-family results.
    pub fn state(&self) -> &SignalState {
        &self.state
    }
}

/// Projections, decision traces and the ranked matches of one request.
#[derive(Debug, Clone)]
pub struct Selection {
    pass: SignalPass,
    projections: ProjectionState,
    ranked: Vec<Candidate>,
    started: Instant,
    decide_ms: f64,
}

impl Selection {
    /// Index of the winning decision in its recipe, if any matched.
    pub fn winner(&self) -> Option<usize> {
        self.ranked.first().map(|c| c.index)
    }
}

impl Engine {
    /// Evaluates the signals of a plan. `None` for plans that are not auto-routed (explicit
    /// or unknown models have no signals). `vectors` as in [`Engine::evaluate`].
    pub fn signal_pass(
        &self,
        plan: Plan,
        vectors: Option<&[Vec<f32>]>,
        embed_ms: f64,
    ) -> Option<SignalPass> {
        if plan.kind != RouteKind::Auto {
            return None;
        }
        let vectors = checked(&plan, vectors);
        Some(self.signals(plan, vectors, embed_ms))
    }

    /// Partitions, top-k, projections, every decision tree and the ranking: the decision
    /// itself, without building the outcome report.
    pub fn select(&self, mut pass: SignalPass) -> Selection {
        let started = Instant::now();
        let config = self.config();
        let recipe = &config.recipes[pass.recipe];
        let top_k = config
            .global
            .model_catalog
            .embeddings
            .semantic
            .embedding_config
            .top_k as usize;
        let projections = crate::post::run(recipe, &mut pass.state, top_k, &|k| k as usize);
        let facts = Facts {
            recipe,
            state: &pass.state,
            projections: &projections,
        };
        let matched = recipe
            .decisions
            .iter()
            .enumerate()
            .filter_map(|(index, d)| {
                let (matched, confidence) = decide::eval(facts, &d.rules);
                matched.then_some(Candidate { index, confidence })
            })
            .collect();
        let ranked = decide::rank(recipe, matched);
        Selection {
            decide_ms: started.elapsed().as_secs_f64() * 1e3,
            pass,
            projections,
            ranked,
            started,
        }
    }

    /// The outcome of a selection: model choice, reasoning settings, and the signal state its
    /// signal maps and traces are built from when read ([`Outcome::signals`]).
    pub fn report(&self, selection: Selection) -> Outcome {
        let Selection {
            pass,
            projections,
            ranked,
            started,
            decide_ms,
        } = selection;
        let timings = Timings {
            embed_ms: pass.embed_ms,
            signals_ms: pass.signals_ms,
            decide_ms,
            total_ms: pass.embed_ms + pass.signals_ms + started.elapsed().as_secs_f64() * 1e3,
        };
        report::auto(report::AutoInput {
            config: self.config(),
            recipe: pass.recipe,
            request_model: &pass.request_model,
            state: pass.state,
            projections,
            winner: ranked.first().copied(),
            families: pass.families,
            used_signals: self.used_signals(pass.recipe),
            skipped: pass.skipped,
            skip_reason: pass.skip_reason,
            context_tokens: pass.context_tokens,
            timings,
        })
    }

    /// [`Engine::select`] then [`Engine::report`].
    pub fn decide(&self, pass: SignalPass) -> Outcome {
        self.report(self.select(pass))
    }
}
