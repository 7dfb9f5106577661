//! The `conversation` family (contract §3.17): counts over message roles, tool definitions,
//! tool calls and results, the active tool loop and image parts.
//!
//! Owns turning [`ConversationFacts`] into per-rule values and matches. `exists` matches when
//! the value is positive; `count` matches when the predicate holds, or always without one.
//! Matched rules get confidence 1.0; every rule records its value (the count).
//! Role `non_user` counts every message whose role is not `user` (tool results included);
//! an empty role counts all messages.

use vllm_sr_config::model::{ConversationRule, ConversationSource};

use crate::request::ConversationFacts;
use crate::state::FamilyResult;

/// The conversation rules of a recipe.
#[derive(Debug)]
pub struct ConversationSignals {
    rules: Vec<ConversationRule>,
}

/// The value a source measures.
pub fn source_value(source: &ConversationSource, f: &ConversationFacts) -> f64 {
    let n = match source {
        ConversationSource::Message(None) => f.messages,
        ConversationSource::Message(Some(role)) => {
            let role = role.trim().to_ascii_lowercase();
            match role.as_str() {
                "" => f.messages,
                "non_user" => f.messages.saturating_sub(f.by_role.get("user")),
                r => f.by_role.get(r),
            }
        }
        ConversationSource::ToolDefinition => f.tool_definitions,
        ConversationSource::AssistantToolCall => f.assistant_tool_calls,
        ConversationSource::AssistantToolCycle => f.tool_results,
        ConversationSource::ActiveToolLoop => usize::from(f.active_tool_loop),
        ConversationSource::ImageContent => f.images,
    };
    n as f64
}

impl ConversationSignals {
    /// Keeps the rules.
    pub fn build(rules: &[ConversationRule]) -> Self {
        Self {
            rules: rules.to_vec(),
        }
    }

    /// Evaluates every rule over the request's conversation facts.
    pub fn eval(&self, facts: &ConversationFacts, out: &mut FamilyResult) {
        for (i, r) in self.rules.iter().enumerate() {
            let v = source_value(&r.source, facts);
            let matched = if r.exists {
                v > 0.0
            } else {
                r.predicate.as_ref().is_none_or(|p| p.holds(v))
            };
            out.set_value(i, v);
            if matched {
                out.hit(i, Some(1.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{RequestView, SignalText};
    use serde_json::{json, Value};
    use vllm_sr_config::model::Predicate;

    fn rule(exists: bool, source: ConversationSource, gte: Option<f64>) -> ConversationRule {
        ConversationRule {
            name: "r".into(),
            exists,
            source,
            predicate: gte.map(|g| Predicate {
                gt: None,
                gte: Some(g),
                lt: None,
                lte: None,
            }),
        }
    }

    fn check(r: ConversationRule, body: Value, expected: Option<f64>) {
        let facts = SignalText::of(&RequestView::from_json(&body).unwrap()).facts;
        let mut out = FamilyResult::new(1);
        ConversationSignals::build(std::slice::from_ref(&r)).eval(&facts, &mut out);
        assert_eq!(
            out.is_matched(0).then(|| out.value[0].unwrap()),
            expected,
            "{r:?} on {body}"
        );
        if out.is_matched(0) {
            assert_eq!(out.confidence[0], Some(1.0));
        }
    }

    fn msgs(roles: &[&str]) -> Value {
        json!({"messages": roles.iter().map(|r| json!({"role": r, "content": "x"})).collect::<Vec<_>>()})
    }

    fn tool_loop(last_user: bool) -> Value {
        let mut m = vec![
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "1", "content": "sunny"}),
        ];
        if last_user {
            m.push(json!({"role": "user", "content": "thanks"}));
        } else {
            m.push(json!({"role": "assistant", "content": "It is sunny."}));
        }
        json!({"messages": m, "tools": [{"type": "function", "function": {"name": "w"}}]})
    }

    use ConversationSource::*;

    #[test]
    fn messages_by_role() {
        check(
            rule(false, Message(Some("user".into())), Some(2.0)),
            msgs(&["user", "assistant", "user"]),
            Some(2.0),
        );
        check(
            rule(false, Message(Some("user".into())), Some(2.0)),
            msgs(&["system", "user"]),
            None,
        );
        check(
            rule(false, Message(Some("non_user".into())), Some(2.0)),
            msgs(&["system", "user", "assistant"]),
            Some(2.0),
        );
        check(rule(false, Message(None), None), msgs(&[]), Some(0.0));
        check(
            rule(true, Message(Some("system".into())), None),
            msgs(&["user"]),
            None,
        );
        check(
            rule(true, Message(Some("developer".into())), None),
            msgs(&["developer", "user"]),
            Some(1.0),
        );
    }

    #[test]
    fn tools_and_images() {
        check(
            rule(true, ToolDefinition, None),
            tool_loop(false),
            Some(1.0),
        );
        check(
            rule(false, AssistantToolCall, Some(1.0)),
            tool_loop(false),
            Some(1.0),
        );
        check(
            rule(false, AssistantToolCycle, Some(2.0)),
            tool_loop(false),
            None,
        );
        // A user message directly after a tool result: the loop is active.
        check(rule(true, ActiveToolLoop, None), tool_loop(true), Some(1.0));
        // The assistant answered after the tool result: not active.
        check(rule(true, ActiveToolLoop, None), tool_loop(false), None);
        // More calls than results.
        let pending = json!({"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [{"id": "1"}, {"id": "2"}]}, {"role": "tool", "content": "r1"}, {"role": "assistant", "content": "wait"}]});
        check(rule(true, ActiveToolLoop, None), pending, Some(1.0));
        let img = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "u"}}, {"type": "input_image"}]}]});
        check(rule(false, ImageContent, Some(2.0)), img, Some(2.0));
    }
}
