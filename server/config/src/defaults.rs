//! Built-in `global` defaults and the overlay rule (contract §1.7): the user's `global` is
//! laid over the default tree, mappings merging key by key and sequences replacing.
//!
//! The default tree is also the schema for unknown-key warnings under `global`: a key that is
//! not in the tree is unknown, except below a mapping whose default is empty (`{}`), which is
//! free-form (provider blocks, header maps, role tables).

use serde_norway::{Mapping, Value};

use crate::ctx::{Ctx, Unknown};
use crate::path::YamlPath;

const DEFAULTS_YAML: &str = include_str!("global_defaults.yaml");

/// Keys accepted even though the default tree leaves them out.
const OPTIONAL_KEYS: &[&str] = &[
    "auto_model_names",
    "similarity_threshold",
    "advanced_filtering",
];

/// Free-form mappings whose default is not empty.
const FREE_FORM: &[&str] = &["model_catalog.system"];

/// Subtrees where unknown keys are errors, as upstream.
const STRICT: &[&str] = &["router.learning"];

/// The default `global` tree.
pub fn default_global() -> Value {
    // The embedded file is checked by a unit test; an unreadable copy degrades to no defaults
    // rather than a panic, and the typed extraction then reports the missing keys.
    serde_norway::from_str(DEFAULTS_YAML).unwrap_or(Value::Mapping(Mapping::new()))
}

/// Lays `user` over `base`: mappings merge key by key, everything else replaces.
pub fn overlay(base: &mut Value, user: &Value) {
    match (base, user) {
        (Value::Mapping(b), Value::Mapping(u)) => {
            for (k, uv) in u {
                match b.get_mut(k) {
                    Some(bv) => overlay(bv, uv),
                    None => {
                        b.insert(k.clone(), uv.clone());
                    }
                }
            }
        }
        (b, u) => *b = u.clone(),
    }
}

/// Reports (and removes) keys of `user` that the default tree does not know.
pub(crate) fn check_unknown(
    user: &mut Value,
    defaults: &Value,
    path: &YamlPath,
    rel: &str,
    ctx: &mut Ctx<'_>,
) {
    let (Value::Mapping(u), Value::Mapping(d)) = (user, defaults) else {
        return;
    };
    if d.is_empty() || FREE_FORM.contains(&rel) {
        return;
    }
    let known: Vec<&str> = d
        .keys()
        .filter_map(Value::as_str)
        .chain(OPTIONAL_KEYS.iter().copied())
        .collect();
    let strict = STRICT
        .iter()
        .any(|s| rel == *s || rel.starts_with(&format!("{s}.")));
    let how = if strict {
        Unknown::Error
    } else {
        Unknown::Warn
    };
    let mut unknown = Vec::new();
    for (k, v) in u.iter_mut() {
        let Some(key) = k.as_str() else { continue };
        match d.get(key) {
            Some(dv) => {
                let child = if rel.is_empty() {
                    key.to_string()
                } else {
                    format!("{rel}.{key}")
                };
                check_unknown(v, dv, &path.key(key), &child, ctx);
            }
            None if OPTIONAL_KEYS.contains(&key) => {}
            None => unknown.push(key.to_string()),
        }
    }
    for key in unknown {
        ctx.unknown_key(path, &key, &known, how);
        u.remove(key.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let v: Value = serde_norway::from_str(DEFAULTS_YAML).unwrap();
        assert!(v.get("router").is_some());
        assert!(v.get("model_catalog").and_then(|m| m.get("kbs")).is_some());
    }

    #[test]
    fn overlay_merges_maps_and_replaces_lists() {
        let mut base: Value = serde_norway::from_str("a: {x: 1, y: 2}\nl: [1, 2]").unwrap();
        let user: Value = serde_norway::from_str("a: {y: 3}\nl: [9]").unwrap();
        overlay(&mut base, &user);
        let want: Value = serde_norway::from_str("a: {x: 1, y: 3}\nl: [9]").unwrap();
        assert_eq!(base, want);
    }
}
