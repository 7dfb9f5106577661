//! The forwarded body, rewritten as upstream does (contract §9, §8): the `model` alias, the
//! reasoning-family injection, then the `system_prompt`, `request_params` and `tools` plugins.
//! Fields the router does not know pass through untouched.

use serde_json::{json, Map, Value};
use vllm_sr_config::model::{
    Backend, Decision, Plugin, ReasoningFamily, RequestParams, RouterConfig, SystemPrompt, Tools,
    ToolsMode,
};
use vllm_sr_engine::Outcome;

use crate::body::ChatBody;

/// What the rewrite did, for response headers and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The `system_prompt` plugin changed the messages.
    pub injected_system_prompt: bool,
    /// Reasoning on/off as injected (`None`: the model has no reasoning family).
    pub reasoning: Option<bool>,
    /// Plugin types that changed the body.
    pub plugins: Vec<&'static str>,
}

/// The `model` value a backend expects for a logical model (contract §1.4, §9.1).
pub fn model_id_for(
    config: &RouterConfig,
    card: &str,
    lora: Option<&str>,
    backend: &Backend,
) -> String {
    if let Some(l) = lora {
        return l.to_string();
    }
    let Some(m) = config.model_by_name(card).map(|id| config.model(id)) else {
        return card.to_string();
    };
    let Some(p) = &m.provider else {
        return card.to_string();
    };
    p.external_model_ids
        .get(&backend.kind)
        .or_else(|| p.external_model_ids.get("default"))
        .cloned()
        .or_else(|| p.provider_model_id.clone())
        .unwrap_or_else(|| card.to_string())
}

/// How a backend speaks reasoning parameters (contract §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// vLLM and other self-hosted servers.
    Vllm,
    /// api.openai.com and openrouter.ai.
    OpenAi,
    /// api.deepseek.com.
    DeepSeek,
}

impl Dialect {
    /// The dialect of a backend.
    pub fn of(b: &Backend) -> Self {
        if b.provider.as_deref() != Some("openai") {
            return Self::Vllm;
        }
        match b.host.as_str() {
            "api.openai.com" | "openrouter.ai" => Self::OpenAi,
            "api.deepseek.com" => Self::DeepSeek,
            _ => Self::Vllm,
        }
    }
}

/// Rewrites an auto-routed body for the chosen decision and model (everything but `model`,
/// which depends on the backend and is set per attempt).
pub fn apply_routed(
    body: &mut ChatBody,
    config: &RouterConfig,
    outcome: &Outcome,
    decision: Option<&Decision>,
    dialect: Dialect,
) -> Applied {
    let mut applied = Applied::default();
    if decision.is_some() {
        applied.reasoning = reasoning(body.members_mut(), config, outcome, dialect);
    }
    let Some(d) = decision else {
        return applied;
    };
    for p in &d.plugins {
        match p {
            Plugin::SystemPrompt(sp) if sp.enabled && !sp.prompt.is_empty() => {
                system_prompt(body, sp);
                applied.injected_system_prompt = true;
                applied.plugins.push("system_prompt");
            }
            _ => {}
        }
    }
    for p in &d.plugins {
        let changed = match p {
            Plugin::RequestParams(rp) => {
                request_params(body.members_mut(), rp).then_some("request_params")
            }
            Plugin::Tools(t) if t.enabled => tools(body, t).then_some("tools"),
            _ => None,
        };
        applied.plugins.extend(changed);
    }
    applied
}

fn reasoning(
    body: &mut Map<String, Value>,
    config: &RouterConfig,
    outcome: &Outcome,
    dialect: Dialect,
) -> Option<bool> {
    let client_effort = body.remove("reasoning_effort");
    let card = outcome.model.as_deref()?;
    let family_name = config
        .model_by_name(card)
        .and_then(|id| config.model(id).provider.as_ref())
        .and_then(|p| p.reasoning_family.clone())?;
    let family = config.defaults.reasoning_families.get(&family_name)?;
    let on = outcome.use_reasoning;
    let effort = Value::String(outcome.reasoning_effort.clone());
    let restore = |body: &mut Map<String, Value>| {
        if let Some(e) = client_effort.clone() {
            body.insert("reasoning_effort".into(), e);
        }
    };
    if dialect == Dialect::DeepSeek {
        body.remove("chat_template_kwargs");
        if on {
            body.insert("thinking".into(), json!({"type": "enabled"}));
            body.insert("reasoning_effort".into(), effort);
        } else {
            body.insert("thinking".into(), json!({"type": "disabled"}));
            body.remove("reasoning_effort");
        }
        return Some(on);
    }
    match family {
        ReasoningFamily::ChatTemplateKwargs(param) => {
            set_kwarg(body, param, Value::Bool(on));
        }
        ReasoningFamily::ReasoningEffort(param) => match (dialect, on) {
            (Dialect::OpenAi, true) => {
                body.insert(param.clone(), effort);
            }
            (Dialect::OpenAi, false) => restore(body),
            (_, true) => {
                set_kwarg(body, param, effort);
            }
            (_, false) => {
                let v = client_effort.clone().unwrap_or_else(|| json!("low"));
                set_kwarg(body, param, v);
            }
        },
        ReasoningFamily::TopLevelReasoningEffort => {
            if on {
                body.insert("reasoning_effort".into(), effort);
                if let Some(Value::Object(k)) = body.get_mut("chat_template_kwargs") {
                    k.remove("reasoning_effort");
                }
            } else {
                restore(body);
            }
        }
    }
    Some(on)
}

/// Sets `chat_template_kwargs[key]`, keeping existing entries (the map is created, or replaces
/// a non-object value, as needed).
fn set_kwarg(body: &mut Map<String, Value>, key: &str, v: Value) {
    match body.get_mut("chat_template_kwargs") {
        Some(Value::Object(m)) => {
            m.insert(key.to_string(), v);
        }
        _ => {
            let mut m = Map::new();
            m.insert(key.to_string(), v);
            body.insert("chat_template_kwargs".into(), Value::Object(m));
        }
    }
}

/// Text of a message's content: a string, or text parts joined with newlines.
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn system_prompt(body: &mut ChatBody, sp: &SystemPrompt) {
    let Some(messages) = body.messages_mut() else {
        return;
    };
    let is_system = |m: &Value| m.get("role").and_then(Value::as_str) == Some("system");
    let target = if sp.replace {
        messages.iter().position(is_system)
    } else {
        messages.first().filter(|m| is_system(m)).map(|_| 0)
    };
    match target {
        Some(i) => {
            let existing = content_text(messages[i].get("content"));
            let text = if sp.replace || existing.is_empty() {
                sp.prompt.clone()
            } else {
                format!("{}\n\n{existing}", sp.prompt)
            };
            messages[i]["content"] = Value::String(text);
        }
        None => messages.insert(0, json!({"role": "system", "content": sp.prompt})),
    }
}

/// Chat-completions request fields (for `strip_unknown`).
const KNOWN_PARAMS: &[&str] = &[
    "model",
    "messages",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "functions",
    "function_call",
    "reasoning_effort",
    "chat_template_kwargs",
    "metadata",
    "store",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "thinking",
];

fn request_params(body: &mut Map<String, Value>, rp: &RequestParams) -> bool {
    let mut changed = false;
    for p in &rp.blocked_params {
        changed |= body.remove(p).is_some();
    }
    let mut cap = |key: &str, limit: Option<u64>| {
        if let (Some(limit), Some(v)) = (limit, body.get(key).and_then(Value::as_u64)) {
            if v > limit {
                body.insert(key.to_string(), json!(limit));
                changed = true;
            }
        }
    };
    cap("max_tokens", rp.max_tokens_limit);
    cap("max_completion_tokens", rp.max_tokens_limit);
    cap("n", rp.max_n);
    if rp.strip_unknown {
        let before = body.len();
        body.retain(|k, _| KNOWN_PARAMS.contains(&k.as_str()));
        changed |= body.len() != before;
    }
    changed
}

fn tool_name(t: &Value) -> Option<&str> {
    t.pointer("/function/name")
        .or_else(|| t.get("name"))
        .and_then(Value::as_str)
}

/// Applies the `tools` plugin: whether it changed the body.
fn tools(body: &mut ChatBody, t: &Tools) -> bool {
    match t.mode {
        ToolsMode::Passthrough => false,
        ToolsMode::None => {
            let mut changed = false;
            let members = body.members_mut();
            for k in [
                "tools",
                "tool_choice",
                "functions",
                "function_call",
                "parallel_tool_calls",
            ] {
                changed |= members.remove(k).is_some();
            }
            let messages = t.strip_tool_history && strip_tool_history(body);
            changed || messages
        }
        ToolsMode::Filtered => {
            let members = body.members_mut();
            let Some(Value::Array(list)) = members.get_mut("tools") else {
                return false;
            };
            let before = list.len();
            list.retain(|tool| {
                let name = tool_name(tool).unwrap_or_default();
                (t.allow_tools.is_empty() || t.allow_tools.iter().any(|a| a == name))
                    && !t.block_tools.iter().any(|b| b == name)
            });
            let changed = list.len() != before;
            if list.is_empty() {
                members.remove("tools");
                members.remove("tool_choice");
                members.remove("parallel_tool_calls");
            }
            changed
        }
    }
}

fn strip_tool_history(body: &mut ChatBody) -> bool {
    let Some(messages) = body.messages_mut() else {
        return false;
    };
    let before = messages.len();
    let mut changed = false;
    messages.retain_mut(|m| {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role == "tool" || role == "function" {
            return false;
        }
        if let Some(obj) = m.as_object_mut() {
            let had = obj.remove("tool_calls").is_some() | obj.remove("function_call").is_some();
            changed |= had;
            if had && content_text(obj.get("content")).is_empty() {
                return false;
            }
        }
        true
    });
    changed || messages.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> ChatBody {
        match v {
            Value::Object(m) => ChatBody::from(m),
            _ => ChatBody::default(),
        }
    }

    #[test]
    fn system_prompt_insert_prepends_to_an_existing_system_message() {
        let mut b = body(
            json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        );
        system_prompt(
            &mut b,
            &SystemPrompt {
                enabled: true,
                prompt: "P".into(),
                replace: false,
            },
        );
        assert_eq!(b.members()["messages"][0]["content"], "P\n\nbe brief");
        assert_eq!(b.members()["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn system_prompt_insert_adds_a_message_when_the_first_is_not_system() {
        let mut b = body(json!({"messages": [{"role": "user", "content": "hi"}]}));
        system_prompt(
            &mut b,
            &SystemPrompt {
                enabled: true,
                prompt: "P".into(),
                replace: false,
            },
        );
        assert_eq!(
            b.members()["messages"][0],
            json!({"role": "system", "content": "P"})
        );
    }

    #[test]
    fn system_prompt_replace_flattens_parts() {
        let mut b = body(
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "text", "text": "old"}]}]}),
        );
        system_prompt(
            &mut b,
            &SystemPrompt {
                enabled: true,
                prompt: "P".into(),
                replace: true,
            },
        );
        assert_eq!(b.members()["messages"][1]["content"], "P");
    }

    #[test]
    fn request_params_caps_and_strips() {
        let mut b = body(
            json!({"model": "m", "messages": [], "max_tokens": 9000, "n": 5, "logit_bias": {}, "x_custom": 1}),
        );
        let rp = RequestParams {
            blocked_params: vec!["logit_bias".into()],
            max_tokens_limit: Some(1000),
            max_n: Some(1),
            strip_unknown: true,
        };
        assert!(request_params(b.members_mut(), &rp));
        assert_eq!(b.members()["max_tokens"], 1000);
        assert_eq!(b.members()["n"], 1);
        assert!(!b.members().contains_key("logit_bias") && !b.members().contains_key("x_custom"));
    }

    #[test]
    fn tools_filtered_and_none() {
        let t = |name: &str| json!({"type": "function", "function": {"name": name}});
        let mut b =
            body(json!({"tools": [t("read"), t("exec"), t("write")], "tool_choice": "auto"}));
        let cfg = Tools {
            enabled: true,
            mode: ToolsMode::Filtered,
            semantic_selection: false,
            allow_tools: vec![],
            block_tools: vec!["exec".into()],
            strip_tool_history: false,
        };
        assert!(tools(&mut b, &cfg));
        assert_eq!(b.members()["tools"].as_array().map(Vec::len), Some(2));
        let mut b = body(json!({"tools": [t("read")], "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "content": "r", "tool_call_id": "1"}]}));
        let cfg = Tools {
            mode: ToolsMode::None,
            strip_tool_history: true,
            ..cfg
        };
        let before = b.members()["messages"].clone();
        assert!(tools(&mut b, &cfg), "tool history stripped");
        assert!(!b.members().contains_key("tools"));
        assert_eq!(b.members()["messages"].as_array().map(Vec::len), Some(1));
        assert_ne!(b.members()["messages"], before);
        // Nothing to strip: the messages are left as they were.
        let text = r#"{"tools": [{"function": {"name": "read"}}], "messages": [{"role": "user", "content": "q"}]}"#;
        let mut b = ChatBody::parse(&bytes::Bytes::from_static(text.as_bytes())).unwrap();
        assert!(tools(&mut b, &cfg), "the tools were removed");
        assert!(!b.members().contains_key("tools"));
        assert_eq!(b.view().unwrap().messages.len(), 1);
        assert_eq!(
            b.members()["messages"],
            json!([{"role": "user", "content": "q"}])
        );
    }
}
