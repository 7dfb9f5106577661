//! Compiles YAML rule trees into [`Condition`]s whose leaves hold resolved ids (§6.2, §3.11).

use crate::ctx::{suggest, Ctx};
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::RawRuleNode;

use super::predicate;

/// Where a tree sits, which decides the leaf types it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeKind {
    /// A decision's `rules`.
    Decision,
    /// A complexity rule's `composer`: only some families are evaluated there.
    Composer,
}

const COMPOSER_FAMILIES: [SignalFamily; 13] = [
    SignalFamily::Keyword,
    SignalFamily::Embedding,
    SignalFamily::Domain,
    SignalFamily::FactCheck,
    SignalFamily::UserFeedback,
    SignalFamily::Reask,
    SignalFamily::Preference,
    SignalFamily::Language,
    SignalFamily::Context,
    SignalFamily::Structure,
    SignalFamily::Modality,
    SignalFamily::Kb,
    SignalFamily::Conversation,
];

pub(crate) struct Resolver<'a> {
    pub(crate) signals: &'a Signals,
    pub(crate) outputs: &'a [OutputRef],
}

impl Resolver<'_> {
    pub(crate) fn compile_root(
        &self,
        node: Option<&RawRuleNode>,
        path: &YamlPath,
        kind: TreeKind,
        ctx: &mut Ctx<'_>,
    ) -> Condition {
        match node {
            None => Condition::Always,
            Some(n) if is_empty(n) => Condition::Always,
            Some(n) => self.compile(n, path, kind, ctx),
        }
    }

    fn compile(
        &self,
        n: &RawRuleNode,
        path: &YamlPath,
        kind: TreeKind,
        ctx: &mut Ctx<'_>,
    ) -> Condition {
        let is_leaf = n.kind.as_deref().is_some_and(|t| !t.trim().is_empty());
        if is_leaf {
            if n.operator.is_some() || !n.conditions.is_empty() {
                ctx.error(path, "a condition is either a leaf (type, name) or a composite (operator, conditions), not both");
            }
            return self.leaf(n, path, kind, ctx);
        }
        if is_empty(n) {
            ctx.error(
                path,
                "empty condition: write a leaf {type, name} or {operator, conditions}",
            );
            return Condition::Or(Vec::new());
        }
        if n.name.is_some() || n.label.is_some() || n.predicate.is_some() || n.on_error.is_some() {
            ctx.error(path, "a composite condition takes only operator and conditions; set type to make it a leaf");
        }
        let children: Vec<Condition> = n
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| self.compile(c, &path.key("conditions").index(i), kind, ctx))
            .collect();
        let op = n
            .operator
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        match op.as_str() {
            "AND" => Condition::And(children),
            "OR" => Condition::Or(children),
            "NOT" => {
                if children.len() != 1 {
                    ctx.error(
                        &path.key("conditions"),
                        format!("NOT takes exactly one condition, found {}", children.len()),
                    );
                    return Condition::Or(Vec::new());
                }
                let mut children = children;
                Condition::Not(Box::new(children.remove(0)))
            }
            "" => {
                ctx.warn(&path.key("operator"), "no operator given; the conditions are combined with OR (write operator: OR or AND)");
                Condition::Or(children)
            }
            other => {
                ctx.error(
                    &path.key("operator"),
                    format!("operator \"{other}\" is not one of AND, OR, NOT"),
                );
                Condition::Or(children)
            }
        }
    }

    fn leaf(
        &self,
        n: &RawRuleNode,
        path: &YamlPath,
        kind: TreeKind,
        ctx: &mut Ctx<'_>,
    ) -> Condition {
        let never = Condition::Or(Vec::new());
        let ty = n.kind.as_deref().unwrap_or("").trim().to_ascii_lowercase();
        let Some(name) = n.name.as_deref().filter(|s| !s.trim().is_empty()) else {
            ctx.error(&path.key("name"), format!("{ty} condition needs a name"));
            return never;
        };
        let family = SignalFamily::from_leaf_type(&ty);
        if family != Some(SignalFamily::Classifier) {
            if n.label.is_some() {
                ctx.error(
                    &path.key("label"),
                    "label is only allowed on classifier conditions",
                );
            }
            if n.on_error.is_some() {
                ctx.error(
                    &path.key("on_error"),
                    "on_error is only allowed on classifier conditions",
                );
            }
        }
        let match_on_error = match n.on_error.as_deref() {
            None | Some("no_match") => false,
            Some("match") => true,
            Some(other) => {
                ctx.error(
                    &path.key("on_error"),
                    format!("on_error \"{other}\" is not one of match, no_match"),
                );
                false
            }
        };
        let pred = n
            .predicate
            .as_ref()
            .map(|p| predicate(ctx, &path.key("predicate"), p));
        let target = if ty == "projection" {
            if kind == TreeKind::Composer {
                ctx.warn(path, "projection conditions are not evaluated inside a complexity composer and count as false");
                return never;
            }
            match self.outputs.iter().position(|o| o.name == name) {
                Some(i) => LeafTarget::Projection(i as u32),
                None => {
                    let names: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
                    ctx.error(path, unknown("projection output", name, &names));
                    return never;
                }
            }
        } else {
            let Some(family) = family else {
                let mut types: Vec<&str> =
                    SignalFamily::ALL.iter().map(|f| f.leaf_type()).collect();
                types.push("projection");
                let mut msg = format!("unknown condition type \"{ty}\"");
                match suggest(&ty, &types) {
                    Some(s) => msg.push_str(&format!("; did you mean \"{s}\"?")),
                    None => msg.push_str(&format!("; expected one of: {}", types.join(", "))),
                }
                ctx.error(&path.key("type"), msg);
                return never;
            };
            if kind == TreeKind::Composer && !COMPOSER_FAMILIES.contains(&family) {
                ctx.warn(path, format!("{ty} conditions are not evaluated inside a complexity composer and count as false"));
                return never;
            }
            match self.target(family, name, n, path, ctx) {
                Some(t) => t,
                None => return never,
            }
        };
        Condition::Leaf(Leaf {
            target,
            predicate: pred,
            match_on_error,
        })
    }

    fn target(
        &self,
        family: SignalFamily,
        name: &str,
        n: &RawRuleNode,
        path: &YamlPath,
        ctx: &mut Ctx<'_>,
    ) -> Option<LeafTarget> {
        let s = self.signals;
        match family {
            SignalFamily::Complexity => {
                let Some((rule, level)) = name.rsplit_once(':') else {
                    ctx.error(path, format!("complexity condition \"{name}\" needs a level: write \"{name}:easy\", \"{name}:medium\" or \"{name}:hard\""));
                    return None;
                };
                let Some(level) = ComplexityLevel::parse(level) else {
                    ctx.error(path, format!("complexity level \"{level}\" in \"{name}\" is not one of easy, medium, hard"));
                    return None;
                };
                let names = s.names(family);
                match names.iter().position(|n| *n == rule) {
                    Some(i) => Some(LeafTarget::Complexity {
                        rule: i as u32,
                        level,
                    }),
                    None => {
                        ctx.error(path, unknown("complexity signal", rule, &names));
                        None
                    }
                }
            }
            SignalFamily::Domain => {
                let names = s.names(family);
                match names.iter().position(|n| *n == name) {
                    Some(i) => Some(LeafTarget::Domain(i as u32)),
                    None => {
                        ctx.error(path, unknown("domain signal", name, &names));
                        None
                    }
                }
            }
            SignalFamily::Authz => {
                let role = s.roles.iter().position(|r| r == name).or_else(|| {
                    s.role_bindings
                        .iter()
                        .find(|b| b.name == name)
                        .and_then(|b| s.roles.iter().position(|r| *r == b.role))
                });
                match role {
                    Some(i) => Some(LeafTarget::Role(i as u32)),
                    None => {
                        let roles: Vec<&str> = s.roles.iter().map(String::as_str).collect();
                        ctx.error(path, unknown("authz role", name, &roles));
                        None
                    }
                }
            }
            SignalFamily::Classifier => {
                let names = s.names(family);
                let Some(i) = names.iter().position(|n| *n == name) else {
                    ctx.error(path, unknown("classifier signal", name, &names));
                    return None;
                };
                let rule = &s.classifiers[i];
                let Some(label) = n.label.as_deref() else {
                    ctx.error(
                        &path.key("label"),
                        format!("classifier condition \"{name}\" needs a label"),
                    );
                    return None;
                };
                let Some(li) = rule.labels.iter().position(|l| l == label) else {
                    ctx.error(
                        &path.key("label"),
                        format!(
                            "classifier \"{name}\" has no label \"{label}\"; labels: {}",
                            rule.labels.join(", ")
                        ),
                    );
                    return None;
                };
                match &n.predicate {
                    None => ctx.error(
                        &path.key("predicate"),
                        "a classifier condition needs a predicate, e.g. {gte: 0.7}",
                    ),
                    Some(p) if !rule.llm => {
                        let only_gte = p.gt.is_none() && p.lt.is_none() && p.lte.is_none();
                        if !only_gte || p.gte.is_none_or(|g| g < 0.5) {
                            ctx.error(&path.key("predicate"), "a local classifier condition only supports gte with a value of at least 0.5");
                        }
                    }
                    Some(_) => {}
                }
                Some(LeafTarget::Classifier {
                    rule: i as u32,
                    label: li as u32,
                })
            }
            _ => {
                let names = s.names(family);
                match names.iter().position(|n| *n == name) {
                    Some(i) => Some(LeafTarget::Signal(SignalRef {
                        family,
                        index: i as u32,
                    })),
                    None => {
                        ctx.error(
                            path,
                            unknown(&format!("{} signal", family.leaf_type()), name, &names),
                        );
                        None
                    }
                }
            }
        }
    }
}

fn is_empty(n: &RawRuleNode) -> bool {
    n.kind.as_deref().is_none_or(|t| t.trim().is_empty())
        && n.name.is_none()
        && n.operator.as_deref().is_none_or(|o| o.trim().is_empty())
        && n.conditions.is_empty()
        && n.label.is_none()
        && n.predicate.is_none()
}

/// "unknown keyword signal "x"" with a suggestion or the declared names.
pub(crate) fn unknown(what: &str, name: &str, declared: &[&str]) -> String {
    let mut msg = format!("unknown {what} \"{name}\"");
    if let Some(s) = suggest(name, declared) {
        msg.push_str(&format!("; did you mean \"{s}\"?"));
    } else if declared.is_empty() {
        msg.push_str(" (none are declared)");
    } else if declared.len() <= 12 {
        msg.push_str(&format!("; declared: {}", declared.join(", ")));
    }
    msg
}

/// Names of `domain` leaves anywhere in a tree (for auto-generated domains).
pub(crate) fn domain_leaf_names(n: &RawRuleNode, out: &mut Vec<String>) {
    if n.kind
        .as_deref()
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
        == Some("domain")
    {
        if let Some(name) = &n.name {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    for c in &n.conditions {
        domain_leaf_names(c, out);
    }
}
