//! Router Learning, session-aware protection (runtime spec §4): after the semantic route, decide
//! whether a route change may take effect now for this conversation or session.
//!
//! Identity comes from `learning.protection.identity.headers`; without them a stable key is
//! derived from the conversation's first turns (system prompt + first user message) and the
//! trace says so. Per key the store keeps the current model, its decision confidence, turn
//! count, last activity, switch history, tool-loop state and the backend-reported token
//! totals (prompt, cached prompt, completion; fed back by [`UsageFeedback`] when a response
//! ends), bounded in size and evicted by TTL. The store lives outside the live state, so a
//! config reload does not reset running agents, and [`persist`] mirrors it to the state
//! directory's database so a restart does not either.
//!
//! Actions: `select` (new key or idle reset: take the base route), `stay`, `switch`,
//! `hard_lock` (`tool_loop`, `min_turns`) and `bypass` (decisions whose adaptations mode is
//! `bypass`; never softened). A switch needs
//! `gain ≥ switch_margin + stability_weight × switch_cost`, where gain is the new route's
//! confidence over the confidence that chose the current model, and switch cost estimates the
//! prefix-cache warmth lost plus a hand-off penalty (see [`switch_cost`]).

pub mod persist;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vllm_sr_config::model::{Decision, LearningMode, RouterConfig};
use vllm_sr_engine::request::Role;
use vllm_sr_engine::RequestView;
use vllm_sr_store::Usage;

/// Sessions kept at most (oldest evicted first).
const MAX_KEYS: usize = 50_000;
/// Hand-off penalty of any switch.
const HANDOFF_PENALTY: f64 = 0.05;
/// Weight of the prefix-cache warmth a switch throws away.
const PREFIX_CACHE_WEIGHT: f64 = 0.20;
/// Turns after which a conversation's prefix cache counts as fully warm (without provider
/// evidence).
const WARM_TURNS: f64 = 8.0;
/// Prompt length (tokens) at which a lost prefix cache costs one more full
/// [`PREFIX_CACHE_WEIGHT`]: longer contexts are dearer to re-prefill elsewhere.
const CONTEXT_TOKENS_PER_WEIGHT: f64 = 8192.0;
/// Cap of the context-length multiplier of the prefix-cache cost.
const MAX_CACHE_COST_MULTIPLIER: f64 = 2.5;
/// Switch history kept per key.
const HISTORY: usize = 16;

/// What learning did with the base route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// New conversation/session or idle reset: the base route is taken and remembered.
    Select,
    /// The current model is kept (the base route agrees, or a switch did not pay off).
    Stay,
    /// The base route replaces the current model.
    Switch,
    /// The current model is kept unconditionally (tool loop, minimum turns).
    HardLock,
    /// Learning is off for this decision.
    Bypass,
}

impl Action {
    /// Header spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Stay => "stay",
            Self::Switch => "switch",
            Self::HardLock => "hard_lock",
            Self::Bypass => "bypass",
        }
    }
}

/// The learning step's record, for headers and replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearningTrace {
    /// `session_aware`.
    pub method: &'static str,
    /// What happened.
    pub action: Action,
    /// Why.
    pub reason: String,
    /// `conversation` or `session`.
    pub scope: String,
    /// `apply`, `observe` or `bypass`.
    pub mode: &'static str,
    /// The semantic route's model.
    pub base_model: String,
    /// The model forwarded to.
    pub final_model: String,
    /// `header` or `derived` (from the first turns).
    pub identity: &'static str,
    /// Hash of the state key.
    pub key_hash: String,
    /// Estimated cost of switching away from the current model.
    pub switch_cost: f64,
    /// Turns seen on this key before this one.
    pub turn: u32,
    /// The model the key was on before this request.
    pub previous_model: Option<String>,
    /// Backend-reported tokens of this key before this request.
    pub tokens: TokenTotals,
    /// The state key itself (it may hold client session ids): used to feed usage back,
    /// never serialised.
    #[serde(skip)]
    pub key: String,
}

/// Backend-reported token totals of one learning key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTotals {
    /// Responses that reported usage.
    pub responses: u64,
    /// Prompt tokens.
    pub prompt: u64,
    /// Prompt tokens served from the backend's prefix cache.
    pub cached: u64,
    /// Completion tokens.
    pub completion: u64,
}

impl TokenTotals {
    fn add(&mut self, u: &Usage) {
        self.responses += 1;
        self.prompt += u.prompt_tokens;
        self.cached += u.cached_prompt_tokens.min(u.prompt_tokens);
        self.completion += u.completion_tokens;
    }
}

#[derive(Debug, Clone)]
struct KeyState {
    model: String,
    confidence: f64,
    turns: u32,
    last_seen: Instant,
    switches: Vec<(String, String)>,
    /// The latest request was a tool-loop turn.
    tool_loop: bool,
    totals: TokenTotals,
    /// The latest usage reported by the current model: `(prompt, cached)` tokens.
    last_usage: Option<(u64, u64)>,
    /// Changed since the last snapshot.
    dirty: bool,
}

/// Per-key learning state, shared by every listener and kept across reloads.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, KeyState>>,
}

/// Where a finished response's usage goes: the learning key and model it was routed to.
#[derive(Debug, Clone)]
pub struct UsageFeedback {
    sessions: Arc<Sessions>,
    key: String,
    model: String,
}

impl UsageFeedback {
    /// For the request `trace` describes.
    pub fn new(sessions: &Arc<Sessions>, trace: &LearningTrace) -> Self {
        Self {
            sessions: sessions.clone(),
            key: trace.key.clone(),
            model: trace.final_model.clone(),
        }
    }

    /// Adds the backend-reported `usage` to the key's totals.
    pub fn record(&self, usage: &Usage) {
        self.sessions.record_usage(&self.key, &self.model, usage);
    }
}

/// What learning needs from the request, taken before routing consumes it.
#[derive(Debug, Clone)]
pub struct Facts {
    key: String,
    derived: bool,
    tool_loop: bool,
}

/// First 8 bytes of the SHA-256 of `parts` (NUL-separated), as 16 hex digits: the opaque
/// identity hashes of learning state and replay records.
pub(crate) fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Facts {
    /// Identity and tool-loop state of a request; `None` when learning is off.
    pub fn of(config: &RouterConfig, view: &RequestView) -> Option<Self> {
        let l = &config.global.router.learning;
        if !l.enabled || !l.protection.enabled {
            return None;
        }
        let headers = &l.protection.identity.headers;
        let non_empty = |name: &str| view.header(name).map(str::trim).filter(|v| !v.is_empty());
        let session = non_empty(&headers.session);
        let conversation = non_empty(&headers.conversation);
        let first = |role: Role| {
            view.messages
                .iter()
                .find(|m| m.role == role)
                .map_or("", |m| m.text.as_str())
        };
        let derived_id = || short_hash(&[first(Role::System), first(Role::User)]);
        let (key, derived) = if l.protection.scope == "session" {
            match session {
                Some(s) => (format!("s:{s}"), false),
                None => (format!("d:{}", derived_id()), true),
            }
        } else {
            match (session, conversation) {
                (s, Some(c)) => (format!("c:{}/{c}", s.unwrap_or("")), false),
                (s, None) => (format!("d:{}/{}", s.unwrap_or(""), derived_id()), true),
            }
        };
        let last_assistant = view
            .messages
            .iter()
            .rposition(|m| m.role == Role::Assistant);
        let tool_loop = view.messages.last().is_some_and(|m| m.role == Role::Tool)
            && last_assistant.is_some_and(|i| view.messages[i].tool_calls > 0);
        Some(Self {
            key,
            derived,
            tool_loop,
        })
    }
}

/// The route learning starts from.
#[derive(Debug, Clone, Copy)]
pub struct BaseRoute<'a> {
    /// The winning decision, if any.
    pub decision: Option<&'a Decision>,
    /// The decision's model.
    pub model: &'a str,
    /// The decision's confidence.
    pub confidence: f64,
}

impl Sessions {
    /// Applies protection to a base route and updates the key's state.
    pub fn protect(
        &self,
        config: &RouterConfig,
        facts: &Facts,
        base: BaseRoute<'_>,
    ) -> LearningTrace {
        let l = &config.global.router.learning;
        let tuning = &l.protection.tuning;
        let adapt = base.decision.map(|d| &d.adaptations);
        let mode = match adapt {
            Some(a) if a.mode == LearningMode::Bypass || a.protection == LearningMode::Bypass => {
                LearningMode::Bypass
            }
            Some(a) if a.mode == LearningMode::Observe || a.protection == LearningMode::Observe => {
                LearningMode::Observe
            }
            _ => LearningMode::Apply,
        };
        let margin = adapt
            .and_then(|a| a.switch_margin)
            .unwrap_or(tuning.switch_margin);
        let stability = adapt
            .and_then(|a| a.stability_weight)
            .unwrap_or(tuning.stability_weight);
        let idle = idle_timeout(config);
        let now = Instant::now();
        let mut map = self.map.lock();
        let prev = map.get(&facts.key).cloned();
        let mut trace = LearningTrace {
            method: "session_aware",
            action: Action::Select,
            reason: String::new(),
            scope: l.protection.scope.clone(),
            mode: mode.as_str(),
            base_model: base.model.to_string(),
            final_model: base.model.to_string(),
            identity: if facts.derived { "derived" } else { "header" },
            key_hash: short_hash(&[&facts.key]),
            switch_cost: 0.0,
            turn: prev.as_ref().map_or(0, |s| s.turns),
            previous_model: prev.as_ref().map(|s| s.model.clone()),
            tokens: prev.as_ref().map(|s| s.totals).unwrap_or_default(),
            key: facts.key.clone(),
        };
        if mode == LearningMode::Bypass {
            trace.action = Action::Bypass;
            trace.reason = "decision_bypass".into();
            return trace;
        }
        let (action, reason, keep) = match &prev {
            None => (
                Action::Select,
                new_reason(&l.protection.scope, facts.derived),
                None,
            ),
            Some(s) if now.duration_since(s.last_seen) > idle => {
                (Action::Select, "idle_reset".into(), None)
            }
            Some(s) => {
                let cost = switch_cost(s);
                trace.switch_cost = cost;
                if facts.tool_loop {
                    (Action::HardLock, "tool_loop".into(), Some(s))
                } else if s.model == base.model {
                    (Action::Stay, "base_matches_current".into(), None)
                } else if l.protection.scope == "session" {
                    (Action::Stay, "session_scope".into(), Some(s))
                } else if s.turns < tuning.min_turns_before_switch {
                    (Action::HardLock, "min_turns".into(), Some(s))
                } else if base.confidence - s.confidence >= margin + stability * cost {
                    (Action::Switch, "switch_allowed".into(), None)
                } else {
                    (Action::Stay, "switch_margin_not_met".into(), Some(s))
                }
            }
        };
        trace.action = action;
        trace.reason = reason;
        let applied = mode == LearningMode::Apply;
        if let (Some(s), true) = (keep, applied) {
            trace.final_model = s.model.clone();
        }
        let kept = trace.final_model != base.model;
        let mut next = prev.unwrap_or(KeyState {
            model: trace.final_model.clone(),
            confidence: base.confidence,
            turns: 0,
            last_seen: now,
            switches: Vec::new(),
            tool_loop: false,
            totals: TokenTotals::default(),
            last_usage: None,
            dirty: true,
        });
        if action == Action::Select {
            next.turns = 0;
            next.switches.clear();
            next.totals = TokenTotals::default();
            next.last_usage = None;
        }
        if action == Action::Switch && applied {
            next.switches
                .push((next.model.clone(), base.model.to_string()));
            if next.switches.len() > HISTORY {
                next.switches.remove(0);
            }
        }
        if !kept {
            if next.model != trace.final_model {
                // The new model has not served this prefix yet.
                next.last_usage = None;
            }
            next.model = trace.final_model.clone();
            next.confidence = base.confidence;
        }
        next.turns += 1;
        next.last_seen = now;
        next.tool_loop = facts.tool_loop;
        next.dirty = true;
        map.insert(facts.key.clone(), next);
        evict(&mut map, now, idle);
        trace
    }

    /// Adds a finished response's usage to `key`'s totals; the prompt/cached split of a
    /// response from the key's current model is the prefix-cache evidence of its next switch
    /// cost. Unknown keys (evicted meanwhile) are ignored.
    pub fn record_usage(&self, key: &str, model: &str, usage: &Usage) {
        let mut map = self.map.lock();
        if let Some(s) = map.get_mut(key) {
            s.totals.add(usage);
            if s.model == model {
                s.last_usage = Some((usage.prompt_tokens, usage.cached_prompt_tokens));
            }
            s.dirty = true;
        }
    }

    /// Token totals of `key`, if held.
    pub fn totals(&self, key: &str) -> Option<TokenTotals> {
        self.map.lock().get(key).map(|s| s.totals)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// No keys held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The recipe's protection idle timeout (at least a second).
pub fn idle_timeout(config: &RouterConfig) -> Duration {
    let tuning = &config.global.router.learning.protection.tuning;
    Duration::from_secs(tuning.idle_timeout_seconds.max(1))
}

fn new_reason(scope: &str, derived: bool) -> String {
    let base = if scope == "session" {
        "new_session"
    } else {
        "new_conversation"
    };
    if derived {
        format!("{base}:derived_identity")
    } else {
        base.to_string()
    }
}

/// Hand-off penalty, plus the prefix-cache warmth a switch throws away, plus a penalty for
/// flapping.
///
/// Warmth is estimated from the turns served on the current model (fully warm after
/// [`WARM_TURNS`]); when the backend reported cached prompt tokens for the last response, the
/// cached share of that prompt counts as evidence and the larger of the two wins. The warmth
/// is weighted by the context it covers: `1 + prompt_tokens / CONTEXT_TOKENS_PER_WEIGHT`,
/// capped at [`MAX_CACHE_COST_MULTIPLIER`], so abandoning a long warm context costs more.
fn switch_cost(s: &KeyState) -> f64 {
    let by_turns = (f64::from(s.turns) / WARM_TURNS).min(1.0);
    let (warmth, multiplier) = match s.last_usage {
        Some((prompt, cached)) if prompt > 0 => {
            let evidence = cached.min(prompt) as f64 / prompt as f64;
            let size = 1.0 + prompt as f64 / CONTEXT_TOKENS_PER_WEIGHT;
            (by_turns.max(evidence), size.min(MAX_CACHE_COST_MULTIPLIER))
        }
        _ => (by_turns, 1.0),
    };
    let flapping = 0.04 * (s.switches.len() as f64 / 8.0).min(1.0);
    HANDOFF_PENALTY + PREFIX_CACHE_WEIGHT * warmth * multiplier + flapping
}

fn evict(map: &mut HashMap<String, KeyState>, now: Instant, idle: Duration) {
    if map.len() <= MAX_KEYS {
        return;
    }
    map.retain(|_, s| now.duration_since(s.last_seen) <= idle);
    while map.len() > MAX_KEYS {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(turns: u32, last_usage: Option<(u64, u64)>) -> KeyState {
        KeyState {
            model: "m".into(),
            confidence: 0.5,
            turns,
            last_seen: Instant::now(),
            switches: Vec::new(),
            tool_loop: false,
            totals: TokenTotals::default(),
            last_usage,
            dirty: false,
        }
    }

    #[test]
    fn switch_cost_counts_turns_cache_evidence_and_context_size() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // No usage: warmth from turns only.
        assert!(close(switch_cost(&on(0, None)), HANDOFF_PENALTY));
        assert!(close(
            switch_cost(&on(4, None)),
            HANDOFF_PENALTY + 0.5 * PREFIX_CACHE_WEIGHT
        ));
        // A backend that reports no cached tokens leaves the turn estimate.
        let short = switch_cost(&on(4, Some((100, 0))));
        assert!(close(
            short,
            HANDOFF_PENALTY + 0.5 * PREFIX_CACHE_WEIGHT * (1.0 + 100.0 / 8192.0)
        ));
        // Reported cache hits on turn 1 are evidence of warmth.
        let warm = switch_cost(&on(1, Some((1000, 900))));
        assert!(close(
            warm,
            HANDOFF_PENALTY + 0.9 * PREFIX_CACHE_WEIGHT * (1.0 + 1000.0 / 8192.0)
        ));
        // A long warm context costs more to abandon, up to the cap.
        let long = switch_cost(&on(8, Some((100_000, 100_000))));
        assert!(close(
            long,
            HANDOFF_PENALTY + PREFIX_CACHE_WEIGHT * MAX_CACHE_COST_MULTIPLIER
        ));
        assert!(long > warm && warm > short);
    }

    #[test]
    fn usage_feeds_totals_and_only_the_current_model_gives_cache_evidence() {
        let s = Sessions::default();
        s.map.lock().insert("k".into(), on(2, None));
        let u = |p, c, o| Usage {
            prompt_tokens: p,
            cached_prompt_tokens: c,
            completion_tokens: o,
        };
        s.record_usage("k", "m", &u(100, 40, 7));
        s.record_usage("k", "other", &u(50, 60, 3));
        s.record_usage("gone", "m", &u(1, 1, 1));
        assert_eq!(
            s.totals("k"),
            Some(TokenTotals {
                responses: 2,
                prompt: 150,
                cached: 90,
                completion: 10
            }),
            "cached is capped at the prompt"
        );
        assert_eq!(s.map.lock()["k"].last_usage, Some((100, 40)));
        assert_eq!(s.totals("gone"), None);
    }
}
