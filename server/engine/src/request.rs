//! The routing view of a chat request: messages flattened to text, tool and image facts, and
//! the texts each signal family reads (contract §2).
//!
//! Parsing is lenient: unknown fields are ignored (the proxy forwards the original body
//! untouched), unknown roles are kept, content may be a string, null or a list of parts.
//! Only a missing or non-list `messages` is an error.

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Why a request body cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not a JSON object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// `messages` is missing or not a list.
    #[error("`messages` is required and must be a list of chat messages")]
    MissingMessages,
}

/// A message role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `system`.
    System,
    /// `developer`.
    Developer,
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
    /// `tool` or legacy `function`.
    Tool,
    /// Anything else, kept as written.
    Other(String),
}

impl Role {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "system" => Self::System,
            "developer" => Self::Developer,
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "tool" | "function" => Self::Tool,
            other => Self::Other(other.to_string()),
        }
    }

    /// The role as written in the API.
    pub fn as_str(&self) -> &str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::Other(s) => s,
        }
    }
}

/// One message, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Role.
    pub role: Role,
    /// Text content; text parts joined with newlines.
    pub text: String,
    /// Image parts (`image_url`, `input_image`, `image`).
    pub images: usize,
    /// Assistant tool calls (`tool_calls` entries, or a legacy `function_call`).
    pub tool_calls: usize,
    /// Bytes of structured JSON (tool calls, non-text, non-image parts).
    pub json_bytes: usize,
}

/// A chat request as the router sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestView {
    /// The `model` field ("" when absent).
    pub model: String,
    /// Messages in order.
    pub messages: Vec<Message>,
    /// Tool definitions (`tools` plus legacy `functions`).
    pub tool_definitions: usize,
    /// Bytes of the tool definitions' JSON.
    pub tool_json_bytes: usize,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_output_tokens: Option<u64>,
    /// String values of the top-level `metadata` object (others are ignored).
    pub metadata: IndexMap<String, String>,
    /// Request headers, names lowercased.
    pub headers: Headers,
}

/// Request headers with lowercased names, kept in one buffer: two allocations per request
/// however many headers there are (this is copied on every routed request).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers {
    /// Every name and value, back to back.
    text: String,
    /// Per header: the end of its name and the end of its value in `text`.
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// `(name, value)` pairs in order; names are lowercased.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let pair = (&self.text[start..name_end], &self.text[name_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// The first value of a header (name case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The pairs, names lowercased; sized in a first pass so the buffer is allocated once.
    pub fn from_pairs<'a, I>(pairs: I) -> Self
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        let (count, bytes) = pairs
            .clone()
            .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()));
        let mut out = Headers {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        };
        for (name, value) in pairs {
            let start = out.text.len();
            out.text.push_str(name);
            if let Some(added) = out.text.get_mut(start..) {
                added.make_ascii_lowercase();
            }
            let name_end = out.text.len();
            out.text.push_str(value);
            out.ends.push((name_end, out.text.len()));
        }
        out
    }
}

/// Bytes of `v` as compact JSON, counted as it is written rather than built as text (tool
/// lists of agents run to tens of kilobytes per request).
pub(crate) fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).map_or(0, |()| count.0)
}

impl RequestView {
    /// Reads an OpenAI chat-completions body.
    pub fn from_json(body: &Value) -> Result<Self, RequestError> {
        let obj = body.as_object().ok_or(RequestError::NotAnObject)?;
        let messages = obj
            .get("messages")
            .filter(|m| m.is_array())
            .ok_or(RequestError::MissingMessages)?;
        Self::from_members(obj, &messages.to_string())
    }

    /// The view of a body whose `messages` is kept as JSON text (the proxy forwards the
    /// client's bytes of it and never parses it into a tree); `obj` holds the other members
    /// (a `messages` member in it is ignored).
    ///
    /// # Errors
    /// `messages` is not a list.
    pub fn from_members(obj: &Map<String, Value>, messages: &str) -> Result<Self, RequestError> {
        Ok(Self::from_parts(obj, crate::messages::parse(messages)?))
    }

    /// The view of a body whose messages were read as it was parsed ([`crate::MessagesSeed`]);
    /// `obj` holds the other members (a `messages` member in it is ignored).
    pub fn from_parts(obj: &Map<String, Value>, messages: Vec<Message>) -> Self {
        let mut view = Self {
            model: obj
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            messages,
            max_output_tokens: obj
                .get("max_completion_tokens")
                .and_then(Value::as_u64)
                .or_else(|| obj.get("max_tokens").and_then(Value::as_u64)),
            ..Self::default()
        };
        for key in ["tools", "functions"] {
            if let Some(tools) = obj.get(key).and_then(Value::as_array) {
                view.tool_definitions += tools.len();
                view.tool_json_bytes += tools.iter().map(json_len).sum::<usize>();
            }
        }
        if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
            // Contract §2: string values only, at most 32 entries, bounded key/value sizes.
            for (k, v) in meta.iter().take(32) {
                if let Some(s) = v.as_str() {
                    if k.len() <= 128 && s.len() <= 1024 {
                        view.metadata.insert(k.clone(), s.to_string());
                    }
                }
            }
        }
        view
    }

    /// A request with one user message (the eval API's `{"text": ...}` form).
    pub fn from_text(text: &str) -> Self {
        Self {
            messages: vec![Message {
                role: Role::User,
                text: text.to_string(),
                images: 0,
                tool_calls: 0,
                json_bytes: 0,
            }],
            ..Self::default()
        }
    }

    /// Attaches request headers (names are lowercased).
    pub fn with_headers<'a, I>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
        I::IntoIter: Clone,
    {
        self.headers = Headers::from_pairs(headers.into_iter());
        self
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// The texts and facts signal families read (contract §2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignalText {
    /// The newest non-empty user text; all non-user texts joined when there is none.
    pub text: String,
    /// Earlier user texts, newest first.
    pub prior_user: Vec<String>,
    /// System, developer and assistant texts in order.
    pub non_user: Vec<String>,
    /// Bytes of the non-user texts and the current user text joined with spaces (the
    /// `context` family's estimate reads only the length, so the text is never built).
    pub context_bytes: usize,
    /// An assistant message precedes the current user turn.
    pub assistant_before_user: bool,
    /// `text` bounded to 2048 characters (head, middle and tail thirds).
    pub bounded: String,
    /// Conversation facts for the `conversation` and `context` families.
    pub facts: ConversationFacts,
}

/// Messages per role: the API's roles counted in place, other roles by name (counting a
/// request's messages allocates nothing unless a role is unknown).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoleCounts {
    /// `system`, `developer`, `user`, `assistant`, `tool`.
    known: [usize; 5],
    /// Other roles as written, in order of appearance.
    other: Vec<(String, usize)>,
}

impl RoleCounts {
    fn slot(role: &str) -> Option<usize> {
        ["system", "developer", "user", "assistant", "tool"]
            .iter()
            .position(|r| *r == role)
    }

    /// Counts one message of `role`.
    pub fn add(&mut self, role: &Role) {
        let name = role.as_str();
        match Self::slot(name) {
            Some(i) => self.known[i] += 1,
            None => match self.other.iter_mut().find(|(r, _)| r == name) {
                Some((_, n)) => *n += 1,
                None => self.other.push((name.to_string(), 1)),
            },
        }
    }

    /// Messages of the role named `role` (`tool` counts legacy `function` messages too).
    pub fn get(&self, role: &str) -> usize {
        match Self::slot(role) {
            Some(i) => self.known[i],
            None => self
                .other
                .iter()
                .find(|(r, _)| r == role)
                .map_or(0, |(_, n)| *n),
        }
    }
}

/// Counts over roles, tools and images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationFacts {
    /// Messages per role name (`user`, `assistant`, ..., unknown roles as written).
    pub by_role: RoleCounts,
    /// All messages.
    pub messages: usize,
    /// Tool definitions.
    pub tool_definitions: usize,
    /// Assistant tool calls.
    pub assistant_tool_calls: usize,
    /// Tool results.
    pub tool_results: usize,
    /// A tool loop is in progress.
    pub active_tool_loop: bool,
    /// Image parts.
    pub images: usize,
    /// The request token floor of contract §3.9.
    pub token_floor: u64,
}

/// Maximum characters of the bounded view.
pub const BOUNDED_CHARS: usize = 2048;
const OMISSION: &str = " … ";

/// Keeps head, middle and tail thirds of a long text.
pub fn bound(text: &str) -> String {
    let n = text.chars().count();
    if n <= BOUNDED_CHARS {
        return text.to_string();
    }
    let third = BOUNDED_CHARS / 3;
    let chars: Vec<char> = text.chars().collect();
    let mid_start = n / 2 - third / 2;
    let head: String = chars[..third].iter().collect();
    let mid: String = chars[mid_start..mid_start + third].iter().collect();
    let tail: String = chars[n - third..].iter().collect();
    format!("{head}{OMISSION}{mid}{OMISSION}{tail}")
}

impl SignalText {
    /// Derives the signal inputs of a request.
    pub fn of(req: &RequestView) -> Self {
        let mut current: Option<usize> = None;
        for (i, m) in req.messages.iter().enumerate() {
            if m.role == Role::User && !m.text.trim().is_empty() {
                current = Some(i);
            }
        }
        let mut s = Self::default();
        let mut prior = Vec::new();
        for (i, m) in req.messages.iter().enumerate() {
            match m.role {
                Role::User if Some(i) != current => {
                    if !m.text.trim().is_empty() && current.is_some_and(|c| i < c) {
                        prior.push(m.text.clone());
                    }
                }
                Role::User => {}
                Role::System | Role::Developer | Role::Assistant => {
                    if !m.text.is_empty() {
                        s.non_user.push(m.text.clone());
                    }
                    if m.role == Role::Assistant && current.is_some_and(|c| i < c) {
                        s.assistant_before_user = true;
                    }
                }
                Role::Tool | Role::Other(_) => {}
            }
        }
        prior.reverse();
        s.prior_user = prior;
        s.text = match current {
            Some(c) => req.messages[c].text.clone(),
            None => s.non_user.join(" "),
        };
        let current_text = current.map(|_| s.text.len());
        let parts = s.non_user.iter().map(String::len).chain(current_text);
        let (count, bytes) = parts.fold((0usize, 0), |(n, b), len| (n + 1, b + len));
        s.context_bytes = bytes + count.saturating_sub(1);
        s.bounded = bound(&s.text);
        s.facts = facts(req);
        s
    }
}

fn facts(req: &RequestView) -> ConversationFacts {
    let mut f = ConversationFacts {
        messages: req.messages.len(),
        tool_definitions: req.tool_definitions,
        ..Default::default()
    };
    let mut text_bytes = 0usize;
    let mut json_bytes = req.tool_json_bytes;
    let mut framing = 8 * req.tool_definitions as u64;
    for m in &req.messages {
        f.by_role.add(&m.role);
        if m.role == Role::Assistant {
            f.assistant_tool_calls += m.tool_calls;
        }
        if m.role == Role::Tool {
            f.tool_results += 1;
        }
        f.images += m.images;
        text_bytes += m.text.len() + m.role.as_str().len();
        json_bytes += m.json_bytes;
        framing += 4 + 8 * m.tool_calls as u64;
    }
    let last_is_tool = req.messages.last().is_some_and(|m| m.role == Role::Tool);
    let user_after_tool = req
        .messages
        .windows(2)
        .last()
        .is_some_and(|w| w[0].role == Role::Tool && w[1].role == Role::User);
    f.active_tool_loop = last_is_tool || user_after_tool || f.assistant_tool_calls > f.tool_results;
    f.token_floor = (text_bytes as u64).div_ceil(4)
        + json_bytes as u64
        + 8192 * f.images as u64
        + framing
        + req.max_output_tokens.unwrap_or(0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_are_counted_by_name_and_function_counts_as_tool() {
        let mut counts = RoleCounts::default();
        for role in [
            "user",
            "assistant",
            "user",
            "function",
            "tool",
            "critic",
            "critic",
        ] {
            counts.add(&Role::parse(role));
        }
        assert_eq!(counts.get("user"), 2);
        assert_eq!(counts.get("assistant"), 1);
        assert_eq!(counts.get("tool"), 2);
        assert_eq!(counts.get("critic"), 2);
        assert_eq!(counts.get("system"), 0);
        assert_eq!(counts.get("nobody"), 0);
    }

    #[test]
    fn json_len_is_the_length_of_the_compact_text() {
        for v in [
            json!(null),
            json!("a \"quoted\" é\n"),
            json!([{"type": "function", "function": {"name": "f", "parameters": {"x": 1.5}}}]),
            json!({"k": [1, -2, true, {}, []]}),
        ] {
            assert_eq!(
                json_len(&v),
                serde_json::to_string(&v).unwrap().len(),
                "{v}"
            );
        }
    }

    #[test]
    fn headers_keep_their_order_with_lowercased_names() {
        let view = RequestView::default().with_headers([
            ("X-User", "Alice"),
            ("x-groups", "a,b"),
            ("", ""),
            ("X-User", "Bob"),
            ("x-empty", ""),
        ]);
        assert_eq!(
            view.headers.iter().collect::<Vec<_>>(),
            [
                ("x-user", "Alice"),
                ("x-groups", "a,b"),
                ("", ""),
                ("x-user", "Bob"),
                ("x-empty", "")
            ]
        );
        assert_eq!(view.header("X-USER"), Some("Alice"));
        assert_eq!(view.header("x-groups"), Some("a,b"));
        assert_eq!(view.header("x-empty"), Some(""));
        assert_eq!(view.header("x-missing"), None);
        assert_eq!(RequestView::default().header("x-user"), None);
    }

    #[test]
    fn picks_current_and_prior_user_turns() {
        let body = json!({"model": "auto", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "user", "content": ""}
        ]});
        let req = RequestView::from_json(&body).unwrap();
        let s = SignalText::of(&req);
        assert_eq!(s.text, "second");
        assert_eq!(s.prior_user, vec!["first"]);
        assert_eq!(s.non_user, vec!["be brief", "answer"]);
        assert_eq!(s.context_bytes, "be brief answer second".len());
        assert!(s.assistant_before_user);
        assert_eq!(s.facts.images, 1);
    }

    #[test]
    fn tool_loops_and_missing_user_text() {
        let body = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "result"}
        ], "tools": [{"type": "function", "function": {"name": "f"}}]});
        let req = RequestView::from_json(&body).unwrap();
        let s = SignalText::of(&req);
        assert_eq!(s.text, "sys");
        // Without a user turn, only the non-user texts count (as they did joined).
        assert_eq!(s.context_bytes, "sys".len());
        assert_eq!(SignalText::of(&RequestView::default()).context_bytes, 0);
        assert!(s.facts.active_tool_loop);
        assert_eq!(s.facts.assistant_tool_calls, 1);
        assert_eq!(s.facts.tool_results, 1);
        assert_eq!(s.facts.tool_definitions, 1);
    }

    #[test]
    fn bad_shapes() {
        assert_eq!(
            RequestView::from_json(&json!([1])),
            Err(RequestError::NotAnObject)
        );
        assert_eq!(
            RequestView::from_json(&json!({"model": "x"})),
            Err(RequestError::MissingMessages)
        );
        let odd = json!({"messages": [{"role": "wizard", "content": 5}, {"content": [{"type": "audio"}]}, 7]});
        let req = RequestView::from_json(&odd).unwrap();
        assert_eq!(req.messages.len(), 3);
        assert_eq!(SignalText::of(&req).text, "");
    }

    #[test]
    fn bound_keeps_thirds() {
        let long: String = "ab".repeat(3000);
        let b = bound(&long);
        assert!(b.chars().count() <= BOUNDED_CHARS + 2 * OMISSION.chars().count());
        assert!(b.starts_with("abab"));
    }
}
