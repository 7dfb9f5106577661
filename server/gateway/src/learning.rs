//! Router Learning, session-aware protection (runtime spec §4): after the semantic route, decide
//! whether a route change may take effect now for this conversation or session.
//!
//! Identity comes from `learning.protection.identity.headers`; without them a stable key is
//! derived from the conversation's first turns (system prompt + first user message) and the
//! trace says so. Per key the store keeps the current model, its decision confidence, turn
//! count, last activity, switch history and tool-loop state, bounded in size and evicted by
//! TTL. The store lives outside the live state, so a config reload does not reset running
//! agents.
//!
//! Actions: `select` (new key or idle reset: take the base route), `stay`, `switch`,
//! `hard_lock` (`tool_loop`, `min_turns`) and `bypass` (decisions whose adaptations mode is
//! `bypass`; never softened). A switch needs
//! `gain ≥ switch_margin + stability_weight × switch_cost`, where gain is the new route's
//! confidence over the confidence that chose the current model, and switch cost estimates the
//! prefix-cache warmth lost plus a hand-off penalty.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use vllm_sr_config::model::{Decision, LearningMode, RouterConfig};
use vllm_sr_engine::request::Role;
use vllm_sr_engine::RequestView;

/// Sessions kept at most (oldest evicted first).
const MAX_KEYS: usize = 50_000;
/// Hand-off penalty of any switch.
const HANDOFF_PENALTY: f64 = 0.05;
/// Weight of the prefix-cache warmth a switch throws away.
const PREFIX_CACHE_WEIGHT: f64 = 0.20;
/// Turns after which a conversation's prefix cache counts as fully warm.
const WARM_TURNS: f64 = 8.0;
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
}

#[derive(Debug, Clone)]
struct KeyState {
    model: String,
    confidence: f64,
    turns: u32,
    last_seen: Instant,
    switches: Vec<(String, String)>,
}

/// Per-key learning state, shared by every listener and kept across reloads.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, KeyState>>,
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
        let idle = Duration::from_secs(tuning.idle_timeout_seconds.max(1));
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
        let mut next = prev.clone().unwrap_or(KeyState {
            model: trace.final_model.clone(),
            confidence: base.confidence,
            turns: 0,
            last_seen: now,
            switches: Vec::new(),
        });
        if action == Action::Select {
            next.turns = 0;
            next.switches.clear();
        }
        if action == Action::Switch && applied {
            next.switches
                .push((next.model.clone(), base.model.to_string()));
            if next.switches.len() > HISTORY {
                next.switches.remove(0);
            }
        }
        if !kept {
            next.model = trace.final_model.clone();
            next.confidence = base.confidence;
        }
        next.turns += 1;
        next.last_seen = now;
        map.insert(facts.key.clone(), next);
        evict(&mut map, now, idle);
        trace
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

/// Hand-off penalty plus the prefix-cache warmth lost (estimated from the turns on the model)
/// and a penalty for flapping.
fn switch_cost(s: &KeyState) -> f64 {
    let warmth = (f64::from(s.turns) / WARM_TURNS).min(1.0);
    let flapping = 0.04 * (s.switches.len() as f64 / 8.0).min(1.0);
    HANDOFF_PENALTY + PREFIX_CACHE_WEIGHT * warmth + flapping
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
