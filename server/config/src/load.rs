//! The loading pipeline (contract §1.1): read → parse → legacy shapes → environment
//! substitution → unknown keys → typed pieces → `global` overlay → validation.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::build::{self, BuildInput};
use crate::ctx::{kind_of, Ctx, Unknown};
use crate::defaults;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::env::{expand, EnvSource};
use crate::legacy;
use crate::model::RouterConfig;
use crate::path::YamlPath;
use crate::position::PositionIndex;
use crate::raw::*;

/// Largest config file accepted; recipes are tens of kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

const TOP_KEYS: &[&str] = &[
    "version",
    "listeners",
    "providers",
    "routing",
    "entrypoints",
    "recipes",
    "global",
    "setup",
];
const ROUTING_KEYS: &[&str] = &[
    "modelCards",
    "signals",
    "projections",
    "decisions",
    "strategy",
];
const RECIPE_ROUTING_KEYS: &[&str] = &[
    "modelCards",
    "signals",
    "projections",
    "decisions",
    "strategy",
];
const PROJECTION_KEYS: &[&str] = &["partitions", "scores", "mappings"];

/// Options for one load.
pub struct LoadOptions<'a> {
    /// Turn warnings into errors.
    pub strict: bool,
    /// Where `${VAR}` values come from.
    pub env: &'a dyn EnvSource,
    /// Directory that relative paths resolve against; default: the file's directory, or
    /// `VLLM_SR_CONFIG_BASE_DIR` read through `env`.
    pub base_dir: Option<PathBuf>,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("strict", &self.strict)
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

/// A successfully loaded recipe.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config.
    pub config: RouterConfig,
    /// The normalised document (serialise it for the effective config).
    pub document: RawDocument,
    /// Warnings (never errors: those make the load fail).
    pub diagnostics: Diagnostics,
    /// SHA-256 of the source bytes, hex.
    pub document_hash: String,
}

/// Why a recipe could not be loaded. Every variant converts to diagnostics for reporting.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory or another non-file.
    #[error("{path} is not a regular file (pass the recipe file, e.g. {path}/config.yaml)")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path} is {size} bytes; a recipe may be at most {limit} bytes")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The recipe has problems; `diagnostics` holds every error and warning.
    #[error("{} error(s) in the recipe", .diagnostics.errors().count())]
    Invalid {
        /// Errors and warnings, in source order.
        diagnostics: Diagnostics,
    },
}

impl LoadError {
    /// All problems as diagnostics (I/O failures become one error without a path).
    pub fn diagnostics(&self) -> Diagnostics {
        match self {
            Self::Invalid { diagnostics } => diagnostics.clone(),
            other => {
                let mut d = Diagnostics::default();
                d.push(Diagnostic {
                    severity: Severity::Error,
                    path: String::new(),
                    line: None,
                    column: None,
                    message: other.to_string(),
                });
                d
            }
        }
    }
}

/// Loads and validates the recipe at `path`.
pub fn load_path(path: &Path, opts: &LoadOptions<'_>) -> Result<Loaded, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = opts
        .base_dir
        .clone()
        .or_else(|| {
            opts.env
                .get("VLLM_SR_CONFIG_BASE_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| path.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let opts = LoadOptions {
        strict: opts.strict,
        env: opts.env,
        base_dir: Some(base_dir),
    };
    load_bytes(&bytes, &opts)
}

/// Loads and validates a recipe from memory.
pub fn load_bytes(bytes: &[u8], opts: &LoadOptions<'_>) -> Result<Loaded, LoadError> {
    let fail = |msg: String, line: Option<usize>, column: Option<usize>| {
        let mut d = Diagnostics::default();
        d.push(Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            line,
            column,
            message: msg,
        });
        LoadError::Invalid { diagnostics: d }
    };
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(
            format!(
                "the recipe is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                bytes.len()
            ),
            None,
            None,
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.valid_up_to();
            let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = bytes[..offset]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            // Columns count characters, as in every other diagnostic; the bytes before
            // `offset` are valid UTF-8.
            let column = std::str::from_utf8(&bytes[line_start..offset])
                .map_or(offset - line_start, |s| s.chars().count())
                + 1;
            return Err(fail(
                format!(
                    "the recipe is not valid UTF-8 (invalid byte 0x{:02x} at offset {offset})",
                    bytes[offset]
                ),
                Some(line),
                Some(column),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(fail(
            "the recipe is empty; a v0.3 recipe needs at least a `routing` or a `global` section"
                .into(),
            None,
            None,
        ));
    }
    let mut value: Value = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        fail(
            format!("invalid YAML: {msg}"),
            loc.as_ref().map(|l| l.line()),
            loc.as_ref().map(|l| l.column()),
        )
    })?;
    if let Err(e) = value.apply_merge() {
        return Err(fail(format!("invalid YAML merge key: {e}"), None, None));
    }
    let document_hash = hex(&Sha256::digest(bytes));
    let pos = PositionIndex::build(text);
    let mut ctx = Ctx::new(&pos);
    let Value::Mapping(mut root) = value else {
        return Err(fail(
            format!(
                "the recipe must be a mapping of sections, found {}",
                kind_of(&value)
            ),
            Some(1),
            Some(1),
        ));
    };

    legacy::normalize(&mut root, &mut ctx);
    for (k, item) in root.iter_mut() {
        let key = k.as_str().unwrap_or("?").to_string();
        expand_env(item, &YamlPath::root().key(&key), opts.env, &mut ctx);
    }

    if !root.contains_key("routing") && !root.contains_key("global") {
        let unexpected: Vec<&str> = root
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| !TOP_KEYS.contains(k))
            .collect();
        let mut msg =
            "not a v0.3 recipe: it has neither a `routing` nor a `global` section".to_string();
        if !unexpected.is_empty() {
            msg.push_str(&format!(
                " (unexpected top-level keys: {})",
                unexpected.join(", ")
            ));
        }
        msg.push_str("; `vllm-sr config migrate` converts older layouts");
        ctx.error(&YamlPath::root(), msg);
        return Err(LoadError::Invalid {
            diagnostics: finish(ctx.diags, opts.strict),
        });
    }
    ctx.check_keys(&root, &YamlPath::root(), TOP_KEYS, Unknown::Warn);

    let document = document(&root, &mut ctx);
    let global_tree = document.global.clone();
    let global = ctx.de(
        &global_tree,
        &YamlPath::root().key("global"),
        Unknown::Error,
    );
    let config = global.map(|global| {
        let base_dir = opts.base_dir.clone().unwrap_or_default();
        build::build(
            BuildInput {
                doc: &document,
                global,
                base_dir,
                env: opts.env,
            },
            &mut ctx,
        )
    });
    let diagnostics = finish(ctx.diags, opts.strict);
    match config {
        Some(config) if !diagnostics.has_errors() => Ok(Loaded {
            config,
            document,
            diagnostics,
            document_hash,
        }),
        _ => Err(LoadError::Invalid { diagnostics }),
    }
}

fn finish(mut d: Diagnostics, strict: bool) -> Diagnostics {
    if strict {
        d.escalate_warnings();
    }
    d.sort_by_position();
    d
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Expands `${VAR}` in every string value, warning once per key about unset variables.
fn expand_env(v: &mut Value, path: &YamlPath, env: &dyn EnvSource, ctx: &mut Ctx<'_>) {
    match v {
        Value::String(s) if s.contains('$') => {
            let e = expand(s, env);
            for var in &e.unset {
                ctx.warn(
                    path,
                    format!(
                        "environment variable {var} is not set; it expanded to an empty string"
                    ),
                );
            }
            *s = e.text;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &path.index(i), env, ctx);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?").to_string();
                expand_env(item, &path.key(&key), env, ctx);
            }
        }
        Value::Tagged(t) => expand_env(&mut t.value, path, env, ctx),
        _ => {}
    }
}

/// Deserialises the document piece by piece so each list element reports its own errors.
fn document(root: &Mapping, ctx: &mut Ctx<'_>) -> RawDocument {
    let top = YamlPath::root();
    let version = root.get("version").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    if let Some(v) = &version {
        if !v.starts_with('v') {
            ctx.warn(
                &top.key("version"),
                format!("version \"{v}\" does not look like v0.3"),
            );
        }
    }
    let listeners = ctx.seq(root.get("listeners"), &top.key("listeners"));
    let providers = providers(root.get("providers"), &top.key("providers"), ctx);
    let top_routing = routing(root.get("routing"), &top.key("routing"), ROUTING_KEYS, ctx);
    let entrypoints = ctx.seq(root.get("entrypoints"), &top.key("entrypoints"));
    let mut recipes = Vec::new();
    if let Some(list) = root.get("recipes") {
        match list {
            Value::Sequence(items) => {
                let mut kept = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let rp = top.key("recipes").index(i);
                    let Some(m) = ctx.mapping(Some(item), &rp) else {
                        continue;
                    };
                    ctx.check_keys(m, &rp, &["name", "description", "routing"], Unknown::Warn);
                    let Some(name) = m.get("name").and_then(Value::as_str) else {
                        ctx.error(&rp, "a recipe needs a name");
                        continue;
                    };
                    let description = m
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let routing = routing(
                        m.get("routing"),
                        &rp.key("routing"),
                        RECIPE_ROUTING_KEYS,
                        ctx,
                    );
                    recipes.push(RawRecipe {
                        name: name.to_string(),
                        description,
                        routing,
                    });
                    kept.push(i);
                }
                ctx.record_kept(&top.key("recipes"), kept, items.len());
            }
            Value::Null => {}
            other => ctx.error(
                &top.key("recipes"),
                format!("expected a list, found {}", kind_of(other)),
            ),
        }
    }
    let mut global = defaults::default_global();
    if let Some(user) = root.get("global").filter(|v| !v.is_null()) {
        if user.is_mapping() {
            let mut user = user.clone();
            defaults::check_unknown(&mut user, &global, &top.key("global"), "", ctx);
            defaults::overlay(&mut global, &user);
        } else {
            ctx.error(
                &top.key("global"),
                format!("expected a mapping, found {}", kind_of(user)),
            );
        }
    }
    let setup = root.get("setup").cloned();
    RawDocument {
        version,
        listeners,
        providers,
        routing: top_routing,
        entrypoints,
        recipes,
        global,
        setup,
    }
}

fn providers(v: Option<&Value>, p: &YamlPath, ctx: &mut Ctx<'_>) -> RawProviders {
    let Some(m) = ctx.mapping(v, p) else {
        return RawProviders::default();
    };
    ctx.check_keys(m, p, &["defaults", "models"], Unknown::Warn);
    let defaults = match m.get("defaults").filter(|v| !v.is_null()) {
        Some(d) => ctx
            .de(d, &p.key("defaults"), Unknown::Warn)
            .unwrap_or_default(),
        None => RawProviderDefaults::default(),
    };
    RawProviders {
        defaults,
        models: ctx.seq(m.get("models"), &p.key("models")),
    }
}

fn routing(v: Option<&Value>, p: &YamlPath, known: &[&str], ctx: &mut Ctx<'_>) -> RawRouting {
    let Some(m) = ctx.mapping(v, p) else {
        return RawRouting::default();
    };
    ctx.check_keys(m, p, known, Unknown::Warn);
    let mut r = RawRouting {
        model_cards: ctx.seq(m.get("modelCards"), &p.key("modelCards")),
        decisions: ctx.seq(m.get("decisions"), &p.key("decisions")),
        ..RawRouting::default()
    };
    match m.get("strategy") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => r.strategy = Some(s.clone()),
        Some(other) => ctx.error(
            &p.key("strategy"),
            format!("expected a string, found {}", kind_of(other)),
        ),
    }
    if let Some(sm) = ctx.mapping(m.get("signals"), &p.key("signals")) {
        r.signals = signals(sm, &p.key("signals"), ctx);
    }
    if let Some(pm) = ctx.mapping(m.get("projections"), &p.key("projections")) {
        let pp = p.key("projections");
        ctx.check_keys(pm, &pp, PROJECTION_KEYS, Unknown::Warn);
        r.projections = RawProjections {
            partitions: ctx.seq(pm.get("partitions"), &pp.key("partitions")),
            scores: ctx.seq(pm.get("scores"), &pp.key("scores")),
            mappings: ctx.seq(pm.get("mappings"), &pp.key("mappings")),
        };
    }
    r
}

fn signals(m: &Mapping, p: &YamlPath, ctx: &mut Ctx<'_>) -> RawSignals {
    use crate::model::SignalFamily;
    let known: Vec<&str> = SignalFamily::ALL.iter().map(|f| f.yaml_key()).collect();
    ctx.check_keys(m, p, &known, Unknown::Warn);
    RawSignals {
        keywords: ctx.seq(m.get("keywords"), &p.key("keywords")),
        embeddings: ctx.seq(m.get("embeddings"), &p.key("embeddings")),
        domains: ctx.seq(m.get("domains"), &p.key("domains")),
        fact_check: ctx.seq(m.get("fact_check"), &p.key("fact_check")),
        user_feedbacks: ctx.seq(m.get("user_feedbacks"), &p.key("user_feedbacks")),
        reasks: ctx.seq(m.get("reasks"), &p.key("reasks")),
        preferences: ctx.seq(m.get("preferences"), &p.key("preferences")),
        language: ctx.seq(m.get("language"), &p.key("language")),
        context: ctx.seq(m.get("context"), &p.key("context")),
        structure: ctx.seq(m.get("structure"), &p.key("structure")),
        complexity: ctx.seq(m.get("complexity"), &p.key("complexity")),
        modality: ctx.seq(m.get("modality"), &p.key("modality")),
        role_bindings: ctx.seq(m.get("role_bindings"), &p.key("role_bindings")),
        jailbreak: ctx.seq(m.get("jailbreak"), &p.key("jailbreak")),
        pii: ctx.seq(m.get("pii"), &p.key("pii")),
        kb: ctx.seq(m.get("kb"), &p.key("kb")),
        conversation: ctx.seq(m.get("conversation"), &p.key("conversation")),
        events: ctx.seq(m.get("events"), &p.key("events")),
        metadata: ctx.seq(m.get("metadata"), &p.key("metadata")),
        classifiers: ctx.seq(m.get("classifiers"), &p.key("classifiers")),
    }
}
