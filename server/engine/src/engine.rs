//! The engine: built once per config (every prototype bank embedded up front), then
//! `plan` → caller embeds → `evaluate` per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use vllm_sr_config::model::*;

use crate::bank::{BankOptions, Calibration, PrototypeBank};
use crate::deterministic::Deterministic;
use crate::embed::Embed;
use crate::kb::{self, KbBank, Manifest};
use crate::outcome::{Outcome, RouteKind};
use crate::pass::SignalPass;
use crate::request::{RequestView, SignalText};
use crate::route::MissingVectors;
use crate::semantic::{self, JailbreakScorer, LabelModel, Thresholds, Vectors};
use crate::state::{family_index, SignalState, FAMILIES};
use crate::{builtin, report, EngineError};

/// Characters per jailbreak scanning chunk (~384 tokens).
const CHUNK_CHARS: usize = 1500;
/// Overlap between chunks.
const CHUNK_OVERLAP: usize = 200;
/// Families that read the embedding of the (bounded) current text.
pub(crate) const QUERY_FAMILIES: [SignalFamily; 8] = [
    SignalFamily::Embedding,
    SignalFamily::Domain,
    SignalFamily::FactCheck,
    SignalFamily::UserFeedback,
    SignalFamily::Reask,
    SignalFamily::Preference,
    SignalFamily::Complexity,
    SignalFamily::Kb,
];
/// Prior probability of the `jailbreak` label of the built-in detector.
const JAILBREAK_PRIOR: f64 = 0.1;
/// Texts embedded per batch while building banks.
const BUILD_BATCH: usize = 64;

/// Per-request options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteOptions {
    /// Evaluate every declared family, not only those the decisions reference (eval API).
    pub evaluate_all: bool,
    /// How long the caller waits for the request's embeddings (`None`: the model runtime's
    /// default deadline). After it, embedding-backed families count as unmatched and the
    /// outcome lists them as skipped; the engine itself never waits (see `route`).
    pub signal_budget: Option<Duration>,
}

/// A request ready to be embedded and evaluated.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How the request's model was interpreted.
    pub kind: RouteKind,
    /// Recipe index for auto requests.
    pub recipe: usize,
    /// The explicit model, when named.
    pub explicit: Option<ModelId>,
    /// The request.
    pub request: RequestView,
    /// Signal inputs.
    pub text: SignalText,
    /// Texts the caller must embed, in this order (deduplicated).
    pub texts: Vec<String>,
    query: Option<usize>,
    prior: Vec<usize>,
    chunks: Vec<usize>,
    families: [bool; FAMILIES],
}

struct RecipeEngine {
    used: Vec<bool>,
    /// The outcome's `used_signals` (recipe-static; shared by every outcome).
    used_signals: Arc<IndexMap<String, Vec<String>>>,
    det: Deterministic,
    embedding: Vec<PrototypeBank>,
    complexity: Vec<(PrototypeBank, PrototypeBank)>,
    preference: Vec<PrototypeBank>,
    jailbreak: Vec<JailbreakScorer>,
}

/// A compiled recipe set.
pub struct Engine {
    config: Arc<RouterConfig>,
    recipes: Vec<RecipeEngine>,
    kbs: Vec<Option<KbBank>>,
    domain: Option<LabelModel>,
    fact_check: Option<LabelModel>,
    feedback: Option<LabelModel>,
    jailbreak: Option<LabelModel>,
    thresholds: Thresholds,
    warnings: Vec<String>,
    calibration: Calibration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("recipes", &self.recipes.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Deduplicated texts to embed at build time.
#[derive(Default)]
struct Pool {
    texts: Vec<String>,
    index: HashMap<String, usize>,
}

impl Pool {
    fn add(&mut self, t: &str) -> usize {
        if let Some(i) = self.index.get(t) {
            return *i;
        }
        self.texts.push(t.to_string());
        self.index.insert(t.to_string(), self.texts.len() - 1);
        self.texts.len() - 1
    }

    fn add_all(&mut self, ts: &[String]) -> Vec<usize> {
        ts.iter().map(|t| self.add(t)).collect()
    }
}

fn gather(vectors: &[Vec<f32>], ids: &[usize]) -> Vec<Vec<f32>> {
    ids.iter().map(|i| vectors[*i].clone()).collect()
}

/// Families a recipe's decisions reference, directly, through projections or composers.
fn used_families(recipe: &Recipe) -> Vec<bool> {
    let mut used = vec![false; SignalFamily::ALL.len()];
    let mut mark = |f: SignalFamily| used[family_index(f)] = true;
    let leaf = |l: &Leaf, mark: &mut dyn FnMut(SignalFamily)| match &l.target {
        LeafTarget::Signal(r) => mark(r.family),
        LeafTarget::Domain(_) => mark(SignalFamily::Domain),
        LeafTarget::Complexity { .. } => mark(SignalFamily::Complexity),
        LeafTarget::Role(_) => mark(SignalFamily::Authz),
        LeafTarget::Classifier { .. } => mark(SignalFamily::Classifier),
        LeafTarget::Projection(_) => {}
    };
    for d in &recipe.decisions {
        d.rules.for_each_leaf(&mut |l| leaf(l, &mut mark));
    }
    for r in &recipe.signals.complexity {
        if let Some(c) = &r.composer {
            c.for_each_leaf(&mut |l| leaf(l, &mut mark));
        }
    }
    for s in &recipe.projections.scores {
        for i in &s.inputs {
            match &i.source {
                InputSource::Signal(r) => mark(r.family),
                InputSource::Complexity { .. } => mark(SignalFamily::Complexity),
                InputSource::Role(_) => mark(SignalFamily::Authz),
                InputSource::KbMetric { .. } => mark(SignalFamily::Kb),
                InputSource::Score(_) | InputSource::Output(_) => {}
            }
        }
    }
    for p in &recipe.projections.partitions {
        for m in &p.members {
            mark(m.family);
        }
    }
    used
}

fn label_model(manifest: &Manifest, pool: &mut Pool) -> (Vec<String>, Vec<Vec<usize>>) {
    let labels = manifest.labels.keys().cloned().collect();
    let ids = manifest
        .labels
        .values()
        .map(|l| pool.add_all(&l.exemplars))
        .collect();
    (labels, ids)
}

fn finish_label_model(
    labels: Vec<String>,
    ids: &[Vec<usize>],
    vectors: &[Vec<f32>],
    texts: &Manifest,
    opts: BankOptions,
) -> LabelModel {
    let banks = texts
        .labels
        .values()
        .zip(ids)
        .map(|(l, ids)| PrototypeBank::build(&l.exemplars, &gather(vectors, ids), opts))
        .collect();
    LabelModel::new(labels, banks)
}

impl Engine {
    /// Compiles every recipe of `config` and embeds all prototype texts with `embedder`.
    pub fn build(config: Arc<RouterConfig>, embedder: &dyn Embed) -> Result<Self, EngineError> {
        let g = &config.global;
        let opts = BankOptions::from_config(
            &g.model_catalog
                .embeddings
                .semantic
                .embedding_config
                .prototype_scoring,
        );
        let mut warnings = Vec::new();
        let mut pool = Pool::default();
        for r in &config.recipes {
            for d in &r.decisions {
                if d.algorithm.kind != AlgorithmKind::Static {
                    return Err(EngineError::Unsupported(format!(
                        "decision \"{}\" of recipe \"{}\" uses algorithm \"{}\", which is not supported yet; use static (the first modelRef) or remove the algorithm",
                        d.name,
                        r.name,
                        d.algorithm.kind.as_str()
                    )));
                }
            }
        }
        let used: Vec<Vec<bool>> = config.recipes.iter().map(used_families).collect();
        // Models are built for every declared family: the eval API evaluates all of them.
        let any = |f: SignalFamily| config.recipes.iter().any(|r| r.signals.count(f) > 0);

        // Per-recipe text ids.
        struct Ids {
            embedding: Vec<Vec<usize>>,
            complexity: Vec<(Vec<usize>, Vec<usize>)>,
            preference: Vec<Vec<usize>>,
            jailbreak: Vec<Option<(Vec<usize>, Vec<usize>)>>,
        }
        let mut ids = Vec::new();
        for r in &config.recipes {
            let s = &r.signals;
            ids.push(Ids {
                embedding: s
                    .embeddings
                    .iter()
                    .map(|e| pool.add_all(&e.candidates))
                    .collect(),
                complexity: s
                    .complexity
                    .iter()
                    .map(|c| (pool.add_all(&c.hard), pool.add_all(&c.easy)))
                    .collect(),
                preference: s
                    .preferences
                    .iter()
                    .map(|p| {
                        let mut t = p.examples.clone();
                        if !p.description.trim().is_empty() {
                            t.push(p.description.clone());
                        }
                        pool.add_all(&t)
                    })
                    .collect(),
                jailbreak: s
                    .jailbreak
                    .iter()
                    .map(|j| {
                        (j.method == JailbreakMethod::Contrastive).then(|| {
                            (
                                pool.add_all(&j.jailbreak_patterns),
                                pool.add_all(&j.benign_patterns),
                            )
                        })
                    })
                    .collect(),
            });
        }

        // Knowledge bases referenced by any recipe.
        let mut kb_needed = vec![false; g.model_catalog.kbs.len()];
        for r in &config.recipes {
            for rule in &r.signals.kb {
                kb_needed[rule.kb as usize] = true;
            }
            for s in &r.projections.scores {
                for i in &s.inputs {
                    if let InputSource::KbMetric { kb, .. } = i.source {
                        kb_needed[kb as usize] = true;
                    }
                }
            }
        }
        let mut kb_inputs = Vec::new();
        for (k, needed) in kb_needed.iter().enumerate() {
            let kbc = &g.model_catalog.kbs[k];
            if !needed {
                kb_inputs.push(None);
                continue;
            }
            match kb::load_manifest(kbc, &config.base_dir) {
                Ok((m, source)) => {
                    let label_ids: Vec<Vec<usize>> = KbBank::exemplar_texts(&m)
                        .iter()
                        .map(|t| pool.add_all(t))
                        .collect();
                    kb_inputs.push(Some((m, source, label_ids)));
                }
                Err(e) => {
                    warnings.push(format!("{e}; its kb signals never match"));
                    kb_inputs.push(None);
                }
            }
        }

        let load = |f: fn() -> Result<Manifest, EngineError>,
                    needed: bool|
         -> Result<Option<Manifest>, EngineError> {
            if needed {
                f().map(Some)
            } else {
                Ok(None)
            }
        };
        let domain_m = load(builtin::domains, any(SignalFamily::Domain))?;
        let fact_m = load(builtin::fact_check, any(SignalFamily::FactCheck))?;
        let feedback_m = load(builtin::user_feedback, any(SignalFamily::UserFeedback))?;
        let jb_needed = config.recipes.iter().any(|r| {
            r.signals
                .jailbreak
                .iter()
                .any(|j| j.method == JailbreakMethod::Classifier)
        });
        let jb_m = load(builtin::jailbreak, jb_needed)?;
        let domain_ids = domain_m.as_ref().map(|m| label_model(m, &mut pool));
        let fact_ids = fact_m.as_ref().map(|m| label_model(m, &mut pool));
        let feedback_ids = feedback_m.as_ref().map(|m| label_model(m, &mut pool));
        let jb_ids = jb_m.as_ref().map(|m| label_model(m, &mut pool));

        // One pass over every distinct text.
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(pool.texts.len());
        for batch in pool.texts.chunks(BUILD_BATCH) {
            let v = embedder.embed(batch)?;
            if v.len() != batch.len() {
                return Err(EngineError::Embedding(format!(
                    "asked for {} vectors, got {}",
                    batch.len(),
                    v.len()
                )));
            }
            vectors.extend(v);
        }

        let mut recipes = Vec::new();
        for ((r, ids), used) in config.recipes.iter().zip(&ids).zip(used) {
            let s = &r.signals;
            let embedding = s
                .embeddings
                .iter()
                .zip(&ids.embedding)
                .map(|(e, i)| {
                    let o = if e.aggregation == Aggregation::Mean {
                        opts.mean()
                    } else {
                        opts
                    };
                    PrototypeBank::build(&e.candidates, &gather(&vectors, i), o)
                })
                .collect();
            let complexity = s
                .complexity
                .iter()
                .zip(&ids.complexity)
                .map(|(c, (h, e))| {
                    (
                        PrototypeBank::build(&c.hard, &gather(&vectors, h), opts),
                        PrototypeBank::build(&c.easy, &gather(&vectors, e), opts),
                    )
                })
                .collect();
            let preference = ids
                .preference
                .iter()
                .map(|i| {
                    let texts: Vec<String> = i.iter().map(|x| pool.texts[*x].clone()).collect();
                    PrototypeBank::build(&texts, &gather(&vectors, i), opts)
                })
                .collect();
            let jailbreak = s
                .jailbreak
                .iter()
                .zip(&ids.jailbreak)
                .map(|(j, i)| match i {
                    Some((jb, benign)) => JailbreakScorer::Contrastive(
                        PrototypeBank::build(&j.jailbreak_patterns, &gather(&vectors, jb), opts),
                        PrototypeBank::build(&j.benign_patterns, &gather(&vectors, benign), opts),
                    ),
                    None => JailbreakScorer::Classifier,
                })
                .collect();
            let det = Deterministic::build(r, g, &mut warnings)?;
            recipes.push(RecipeEngine {
                used,
                used_signals: Arc::new(report::used_signals(r)),
                det,
                embedding,
                complexity,
                preference,
                jailbreak,
            });
        }
        let kbs = kb_inputs
            .into_iter()
            .enumerate()
            .map(|(k, input)| match input {
                Some((m, source, label_ids)) => {
                    let v: Vec<Vec<Vec<f32>>> =
                        label_ids.iter().map(|i| gather(&vectors, i)).collect();
                    KbBank::build(&g.model_catalog.kbs[k], &m, source, &v, opts).map(Some)
                }
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Label models stand in for fine-tuned classifiers: every exemplar stays a prototype,
        // since a broad label (e.g. "benign") loses its coverage when squeezed into 8 medoids.
        let label_opts = BankOptions {
            clustering: false,
            max_prototypes: usize::MAX,
            ..opts
        };
        let lm = |m: Option<Manifest>, ids: Option<(Vec<String>, Vec<Vec<usize>>)>| match (m, ids) {
            (Some(m), Some((labels, ids))) => {
                Some(finish_label_model(labels, &ids, &vectors, &m, label_opts))
            }
            _ => None,
        };
        let domain = lm(domain_m, domain_ids);
        let fact_check = lm(fact_m, fact_ids);
        let feedback = lm(feedback_m, feedback_ids);
        // Jailbreak attempts are a small share of real traffic.
        let jailbreak = lm(jb_m, jb_ids).map(|m| m.with_prior("jailbreak", JAILBREAK_PRIOR));
        let calibration = Calibration::for_model(embedder.model_id());
        Ok(Self {
            calibration,
            thresholds: Thresholds::from_global(g),
            config,
            recipes,
            kbs,
            domain,
            fact_check,
            feedback,
            jailbreak,
            warnings,
        })
    }

    /// Problems found while building that do not stop routing (e.g. a KB that failed to load).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The config this engine was built from.
    pub fn config(&self) -> &Arc<RouterConfig> {
        &self.config
    }

    /// The request headers evaluation reads (lowercased): the `authz` identity headers when a
    /// recipe binds roles. A caller may give the engine only these headers
    /// ([`RequestView::with_headers`]) and route the same; every header-reading signal must
    /// list its headers here.
    pub fn read_headers(&self) -> Vec<String> {
        let binds = self
            .config
            .recipes
            .iter()
            .any(|r| !r.signals.role_bindings.is_empty());
        if !binds {
            return Vec::new();
        }
        let identity = &self.config.global.services.authz.identity;
        let mut names = vec![identity.user_id_header.to_ascii_lowercase()];
        let groups = identity.user_groups_header.to_ascii_lowercase();
        if !names.contains(&groups) {
            names.push(groups);
        }
        names
    }

    /// The signal names a recipe's decisions reference (the outcome's `used_signals`).
    pub(crate) fn used_signals(&self, recipe: usize) -> Arc<IndexMap<String, Vec<String>>> {
        self.recipes[recipe].used_signals.clone()
    }

    /// Interprets the request's model and lists the texts to embed.
    pub fn plan(&self, request: RequestView, opts: RouteOptions) -> Plan {
        let text = SignalText::of(&request);
        let (kind, recipe, explicit) = match self.config.recipe_for_model(&request.model) {
            Some(r) => (RouteKind::Auto, r, None),
            None => match self.config.model_by_name(&request.model) {
                Some(m) => (RouteKind::Explicit, 0, Some(m)),
                None => (RouteKind::Unknown, 0, None),
            },
        };
        let mut plan = Plan {
            kind,
            recipe,
            explicit,
            request,
            text,
            texts: Vec::new(),
            query: None,
            prior: Vec::new(),
            chunks: Vec::new(),
            families: [false; FAMILIES],
        };
        if kind != RouteKind::Auto {
            return plan;
        }
        let r = &self.config.recipes[recipe];
        let re = &self.recipes[recipe];
        for (on, f) in plan.families.iter_mut().zip(SignalFamily::ALL) {
            *on = r.signals.count(f) > 0 && (opts.evaluate_all || re.used[family_index(f)]);
        }
        let on = |f: SignalFamily| plan.families[family_index(f)];
        let mut texts: Vec<String> = Vec::new();
        let mut add = |t: &str| match texts.iter().position(|x| x == t) {
            Some(i) => i,
            None => {
                texts.push(t.to_string());
                texts.len() - 1
            }
        };
        if !plan.text.bounded.trim().is_empty() && QUERY_FAMILIES.iter().any(|f| on(*f)) {
            plan.query = Some(add(&plan.text.bounded));
        }
        if on(SignalFamily::Reask) && plan.query.is_some() {
            let look = r
                .signals
                .reasks
                .iter()
                .map(|x| x.lookback_turns as usize)
                .max()
                .unwrap_or(1);
            for p in plan.text.prior_user.iter().take(look.max(1)) {
                plan.prior.push(add(&crate::request::bound(p)));
            }
        }
        if on(SignalFamily::Jailbreak) {
            let history = r.signals.jailbreak.iter().any(|j| j.include_history);
            let mut sources = vec![plan.text.text.clone()];
            if history {
                sources.extend(plan.text.non_user.iter().cloned());
            }
            for src in sources {
                for c in chunks(&src) {
                    plan.chunks.push(add(&c));
                }
            }
        }
        plan.texts = texts;
        plan
    }

    /// Evaluates a planned request. `vectors` answer `plan.texts` in order; `None` means the
    /// caller has none (e.g. the embedding did not finish in time): embedding-backed families
    /// count as unmatched and the outcome lists them as skipped.
    pub fn evaluate(&self, plan: Plan, vectors: Option<&[Vec<f32>]>, embed_ms: f64) -> Outcome {
        let vectors = checked(&plan, vectors);
        self.evaluate_inner(plan, vectors, embed_ms)
    }

    /// Evaluates a planned request whose vectors are missing, recording why (the signal
    /// budget ran out, or the embedding failed) in `Outcome::skip_reason`.
    pub fn evaluate_missing(&self, plan: Plan, why: MissingVectors, embed_ms: f64) -> Outcome {
        self.evaluate_inner(plan, Err(why.to_string()), embed_ms)
    }

    fn evaluate_inner(
        &self,
        plan: Plan,
        vectors: Result<&[Vec<f32>], String>,
        embed_ms: f64,
    ) -> Outcome {
        match plan.kind {
            RouteKind::Auto => self.decide(self.signals(plan, vectors, embed_ms)),
            kind => report::direct(&self.config, &plan.request.model, kind, plan.explicit),
        }
    }

    /// Evaluates every signal family of an auto plan (the first half of `evaluate`).
    pub(crate) fn signals(
        &self,
        plan: Plan,
        vectors: Result<&[Vec<f32>], String>,
        embed_ms: f64,
    ) -> SignalPass {
        let start = Instant::now();
        let recipe = &self.config.recipes[plan.recipe];
        let re = &self.recipes[plan.recipe];
        let mut state = SignalState::new(&recipe.signals, self.kbs.len());
        let mut skipped = Vec::new();
        let mut missing = Vec::new();
        let on = |f: SignalFamily| plan.families.get(family_index(f)).copied().unwrap_or(false);

        let context_tokens = re
            .det
            .eval(&plan.request, &plan.text, &plan.families, &mut state);

        let (vecs, skip_reason) = match vectors {
            Ok(v) => (Some(v), None),
            Err(why) => (None, Some(why)),
        };
        let pick = |i: usize| vecs.map(|v| v[i].as_slice());
        let query = plan.query.and_then(pick);
        let prior: Vec<&[f32]> = plan.prior.iter().filter_map(|i| pick(*i)).collect();
        let chunks: Vec<&[f32]> = plan.chunks.iter().filter_map(|i| pick(*i)).collect();
        let v = Vectors {
            query,
            prior: &prior,
            chunks: &chunks,
        };
        let cfg = &self
            .config
            .global
            .model_catalog
            .embeddings
            .semantic
            .embedding_config;
        let s = &recipe.signals;
        let th = self.thresholds;
        let mut timed =
            |f: SignalFamily, state: &mut SignalState, run: &mut dyn FnMut(&mut SignalState)| {
                if !on(f) {
                    return;
                }
                let needs_chunks = f == SignalFamily::Jailbreak;
                if (needs_chunks && vecs.is_none() && !plan.chunks.is_empty())
                    || (!needs_chunks && v.query.is_none() && plan.query.is_some())
                {
                    skipped.push(f.leaf_type().to_string());
                    return;
                }
                let t = Instant::now();
                run(state);
                state.timings_ms[family_index(f)] += t.elapsed().as_secs_f64() * 1e3;
                state.evaluated[family_index(f)] = true;
            };
        if let Some(q) = v.query {
            timed(SignalFamily::Embedding, &mut state, &mut |st| {
                let fam = &mut st.families[family_index(SignalFamily::Embedding)];
                semantic::embeddings(
                    &s.embeddings,
                    &re.embedding,
                    q,
                    cfg,
                    self.calibration,
                    fam,
                    &mut st.extra_values,
                );
            });
            if let Some(m) = &self.domain {
                timed(SignalFamily::Domain, &mut state, &mut |st| {
                    semantic::domains(&s.domains, m, q, th.domain, st)
                });
            }
            if let Some(m) = &self.fact_check {
                timed(SignalFamily::FactCheck, &mut state, &mut |st| {
                    semantic::fact_check(
                        &s.fact_check,
                        m,
                        q,
                        th.fact_check,
                        st.family_mut(SignalFamily::FactCheck),
                    )
                });
            }
            if let Some(m) = &self.feedback {
                if plan.text.assistant_before_user {
                    timed(SignalFamily::UserFeedback, &mut state, &mut |st| {
                        semantic::user_feedback(
                            &s.user_feedbacks,
                            m,
                            q,
                            th.feedback,
                            st.family_mut(SignalFamily::UserFeedback),
                        )
                    });
                }
            }
            timed(SignalFamily::Reask, &mut state, &mut |st| {
                semantic::reask(&s.reasks, q, v.prior, st.family_mut(SignalFamily::Reask))
            });
            timed(SignalFamily::Preference, &mut state, &mut |st| {
                semantic::preferences(
                    &s.preferences,
                    &re.preference,
                    q,
                    th.preference_margin,
                    st.family_mut(SignalFamily::Preference),
                )
            });
            timed(SignalFamily::Complexity, &mut state, &mut |st| {
                semantic::complexity(&s.complexity, &re.complexity, q, st)
            });
            timed(SignalFamily::Kb, &mut state, &mut |st| {
                semantic::kb(&s.kb, &self.kbs, q, self.calibration, st)
            });
        } else if plan.query.is_some() {
            for f in QUERY_FAMILIES {
                // user_feedback only runs after an assistant turn (§3.5).
                let runs = f != SignalFamily::UserFeedback || plan.text.assistant_before_user;
                if on(f) && runs {
                    missing.push(f.leaf_type().to_string());
                }
            }
        }
        timed(SignalFamily::Jailbreak, &mut state, &mut |st| {
            semantic::jailbreak(
                &s.jailbreak,
                &re.jailbreak,
                self.jailbreak.as_ref(),
                v.chunks,
                st.family_mut(SignalFamily::Jailbreak),
            )
        });
        if on(SignalFamily::Classifier) {
            for (i, _) in s.classifiers.iter().enumerate() {
                state.classifier_errors[i] = true;
            }
            state.errors.insert("classifier".into(), "classifier models are not loaded by this build; leaves with on_error: match still match".into());
        }
        skipped.extend(missing);
        SignalPass {
            recipe: plan.recipe,
            request_model: plan.request.model,
            families: plan.families,
            state,
            skip_reason: (!skipped.is_empty()).then_some(skip_reason).flatten(),
            skipped,
            context_tokens,
            embed_ms,
            signals_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    }
}

/// The vectors of a plan when there is one per text; otherwise why not.
pub(crate) fn checked<'a>(
    plan: &Plan,
    vectors: Option<&'a [Vec<f32>]>,
) -> Result<&'a [Vec<f32>], String> {
    match vectors {
        Some(v) if v.len() == plan.texts.len() => Ok(v),
        Some(v) => Err(format!(
            "{} vectors were supplied for {} texts",
            v.len(),
            plan.texts.len()
        )),
        None => Err("no vectors were supplied for the request's texts".into()),
    }
}

/// Splits a text into overlapping chunks for jailbreak scanning.
fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    if chars.len() <= CHUNK_CHARS {
        return vec![text.to_string()];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let end = (start + CHUNK_CHARS).min(chars.len());
        out.push(chars[start..end].iter().collect());
        if end == chars.len() {
            break;
        }
        start = end - CHUNK_OVERLAP;
    }
    out
}
