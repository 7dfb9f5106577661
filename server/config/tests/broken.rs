//! Table-driven broken-config suite: every case is a small edit of one valid base recipe and
//! must fail with an error at an exact YAML path and source line.
//!
//! The expected lines are written literally (counted in the edited YAML, not computed), so a
//! position regression fails the test. Run one case's YAML by hand with
//! `cargo test -p vllm-sr-config --test broken -- --nocapture` and read the dump printed on
//! failure.
#![expect(
    clippy::panic,
    reason = "the helpers shared by the tests report a failed expectation by panicking"
)]

use std::collections::HashMap;
use std::path::Path;

use vllm_sr_config::{load_bytes, load_path, Diagnostic, LoadError, LoadOptions, Loaded};

/// A valid recipe that every case edits. Line numbers in `CASES` refer to the edited text.
const BASE: &str = r#"version: v0.3
listeners:
  - name: http
    address: 0.0.0.0
    port: 8899
    timeout: 1200s
providers:
  defaults:
    default_model: m1
    reasoning_families:
      qwen3:
        type: chat_template_kwargs
        parameter: enable_thinking
  models:
    - name: m1
      reasoning_family: qwen3
      backend_refs:
        - endpoint: localhost:8000
routing:
  modelCards:
    - name: m1
      loras:
        - name: m1-lora
    - name: m2
  signals:
    keywords:
      - name: kw
        operator: OR
        keywords: [hello]
    domains:
      - name: math
        mmlu_categories: [math]
    complexity:
      - name: cx
        threshold: 0.1
        hard: {candidates: [prove it]}
        easy: {candidates: [hi]}
  projections:
    scores:
      - name: s1
        method: weighted_sum
        inputs:
          - {type: keyword, name: kw, weight: 1.0}
    mappings:
      - name: band
        source: s1
        outputs:
          - {name: high, gte: 0.5}
          - {name: low, lt: 0.5}
  decisions:
    - name: d1
      priority: 10
      rules:
        operator: AND
        conditions:
          - type: keyword
            name: kw
          - type: domain
            name: math
      modelRefs:
        - model: m1
          use_reasoning: true
    - name: d2
      priority: 5
      rules:
        operator: OR
        conditions:
          - type: projection
            name: high
      modelRefs:
        - model: m2
      plugins:
        - type: system_prompt
          configuration:
            system_prompt: be brief
    - name: fallback
      priority: 0
      modelRefs:
        - model: m1
"#;

/// One `(find, replace)` edit of `BASE`; `find` must occur exactly once.
type Edit = (&'static str, &'static str);

struct Case {
    name: &'static str,
    /// Edits turning `BASE` into the broken recipe, applied in order.
    yaml: &'static [Edit],
    path: &'static str,
    line: usize,
    message_contains: &'static str,
}

// Anchors used by several cases.
const DOMAIN_LEAF: &str = "          - type: domain\n            name: math\n";
const BEFORE_PROJECTIONS: &str = "  projections:\n";
const D3_PRIORITY: &str = "      priority: 0\n";
const KEYWORD_OPERATOR: &str = "        operator: OR\n        keywords: [hello]\n";
/// The last line of `BASE` (line 79), for appending top-level sections.
const TAIL: &str = "      priority: 0\n      modelRefs:\n        - model: m1\n";
const SYSTEM_PROMPT_PLUGIN: &str =
    "        - type: system_prompt\n          configuration:\n            system_prompt: be brief\n";

const CASES: &[Case] = &[
    // ---- decision conditions -------------------------------------------------------------
    Case {
        name: "unknown keyword signal in a condition",
        yaml: &[("            name: kw\n", "            name: kww\n")],
        path: "routing.decisions[0].rules.conditions[0]",
        line: 56,
        message_contains: "unknown keyword signal \"kww\"",
    },
    Case {
        name: "unknown domain signal in a condition",
        yaml: &[("            name: math\n", "            name: maths\n")],
        path: "routing.decisions[0].rules.conditions[1]",
        line: 58,
        message_contains: "unknown domain signal \"maths\"",
    },
    Case {
        name: "unknown embedding signal in a condition",
        yaml: &[(
            DOMAIN_LEAF,
            "          - type: embedding\n            name: coding\n",
        )],
        path: "routing.decisions[0].rules.conditions[1]",
        line: 58,
        message_contains: "unknown embedding signal \"coding\" (none are declared)",
    },
    Case {
        name: "complexity leaf without a level",
        yaml: &[(
            DOMAIN_LEAF,
            "          - type: complexity\n            name: cx\n",
        )],
        path: "routing.decisions[0].rules.conditions[1]",
        line: 58,
        message_contains: "write \"cx:easy\", \"cx:medium\" or \"cx:hard\"",
    },
    Case {
        name: "complexity leaf with a bad level",
        yaml: &[(
            DOMAIN_LEAF,
            "          - type: complexity\n            name: cx:extreme\n",
        )],
        path: "routing.decisions[0].rules.conditions[1]",
        line: 58,
        message_contains: "complexity level \"extreme\"",
    },
    Case {
        name: "complexity leaf naming an unknown rule",
        yaml: &[(
            DOMAIN_LEAF,
            "          - type: complexity\n            name: cy:hard\n",
        )],
        path: "routing.decisions[0].rules.conditions[1]",
        line: 58,
        message_contains: "unknown complexity signal \"cy\"",
    },
    Case {
        name: "unknown condition type",
        yaml: &[("          - type: keyword\n", "          - type: keywords\n")],
        path: "routing.decisions[0].rules.conditions[0].type",
        line: 56,
        message_contains: "unknown condition type \"keywords\"; did you mean \"keyword\"",
    },
    Case {
        name: "NOT with two children",
        yaml: &[("        operator: AND\n", "        operator: NOT\n")],
        path: "routing.decisions[0].rules.conditions",
        line: 55,
        message_contains: "NOT takes exactly one condition, found 2",
    },
    Case {
        name: "unknown composite operator",
        yaml: &[("        operator: AND\n", "        operator: XOR\n")],
        path: "routing.decisions[0].rules.operator",
        line: 54,
        message_contains: "operator \"XOR\" is not one of AND, OR, NOT",
    },
    Case {
        name: "projection leaf naming an unknown output",
        yaml: &[("            name: high\n", "            name: higher\n")],
        path: "routing.decisions[1].rules.conditions[0]",
        line: 68,
        message_contains: "unknown projection output \"higher\"",
    },
    // ---- model cards, model refs, providers ----------------------------------------------
    Case {
        name: "modelRef to an undeclared model",
        yaml: &[("        - model: m2\n", "        - model: m3\n")],
        path: "routing.decisions[1].modelRefs[0].model",
        line: 71,
        message_contains: "unknown model \"m3\"",
    },
    Case {
        name: "unknown lora_name",
        yaml: &[(
            "          use_reasoning: true\n",
            "          lora_name: m2-lora\n",
        )],
        path: "routing.decisions[0].modelRefs[0].lora_name",
        line: 62,
        message_contains: "model \"m1\" has no LoRA \"m2-lora\"",
    },
    Case {
        name: "duplicate decision name",
        yaml: &[("    - name: fallback\n", "    - name: d1\n")],
        path: "routing.decisions[2].name",
        line: 76,
        message_contains: "duplicate decision name \"d1\"",
    },
    Case {
        name: "duplicate signal name",
        yaml: &[(
            "        keywords: [hello]\n",
            "        keywords: [hello]\n      - name: kw\n        operator: AND\n        keywords: [bye]\n",
        )],
        path: "routing.signals.keywords[1].name",
        line: 30,
        message_contains: "duplicate name \"kw\"",
    },
    Case {
        name: "duplicate model card",
        yaml: &[("    - name: m2\n", "    - name: m1\n")],
        path: "routing.modelCards[1].name",
        line: 24,
        message_contains: "duplicate model card \"m1\"",
    },
    Case {
        name: "default_model names no card",
        yaml: &[("    default_model: m1\n", "    default_model: m9\n")],
        path: "providers.defaults.default_model",
        line: 9,
        message_contains: "unknown model \"m9\"",
    },
    Case {
        name: "providers.models entry without a card",
        yaml: &[(
            "    - name: m1\n      reasoning_family",
            "    - name: mx\n      reasoning_family",
        )],
        path: "providers.models[0].name",
        line: 15,
        message_contains: "needs a routing.modelCards entry",
    },
    Case {
        name: "unknown reasoning_family",
        yaml: &[(
            "      reasoning_family: qwen3\n",
            "      reasoning_family: qwen4\n",
        )],
        path: "providers.models[0].reasoning_family",
        line: 16,
        message_contains: "unknown reasoning family \"qwen4\"",
    },
    Case {
        name: "bad reasoning family type",
        yaml: &[(
            "        type: chat_template_kwargs\n",
            "        type: chat_template\n",
        )],
        path: "providers.defaults.reasoning_families.qwen3.type",
        line: 12,
        message_contains: "type \"chat_template\" is not one of",
    },
    Case {
        name: "backend_ref without endpoint",
        yaml: &[(
            "        - endpoint: localhost:8000\n",
            "        - name: primary\n",
        )],
        path: "providers.models[0].backend_refs[0]",
        line: 18,
        message_contains: "needs endpoint or base_url",
    },
    // ---- signal rules --------------------------------------------------------------------
    Case {
        name: "embedding threshold above 1",
        yaml: &[(
            "    domains:\n",
            "    embeddings:\n      - name: emb\n        threshold: 1.5\n        candidates: [x]\n    domains:\n",
        )],
        path: "routing.signals.embeddings[0].threshold",
        line: 32,
        message_contains: "threshold must be between 0 and 1, found 1.5",
    },
    Case {
        name: "keyword operator missing",
        yaml: &[(KEYWORD_OPERATOR, "        keywords: [hello]\n")],
        path: "routing.signals.keywords[0].operator",
        line: 27,
        message_contains: "operator is required: AND, OR or NOR",
    },
    Case {
        name: "keyword operator invalid",
        yaml: &[(
            KEYWORD_OPERATOR,
            "        operator: XOR\n        keywords: [hello]\n",
        )],
        path: "routing.signals.keywords[0].operator",
        line: 28,
        message_contains: "operator \"XOR\" is not one of AND, OR, NOR",
    },
    Case {
        name: "invalid regex with method: regex",
        yaml: &[(
            "        keywords: [hello]\n",
            "        method: regex\n        keywords: [\"(unclosed\"]\n",
        )],
        path: "routing.signals.keywords[0].keywords[0]",
        line: 30,
        message_contains: "invalid regex \"(unclosed\"",
    },
    Case {
        name: "context min_tokens greater than max_tokens",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    context:\n      - name: long\n        min_tokens: 8K\n        max_tokens: 1K\n  projections:\n",
        )],
        path: "routing.signals.context[0]",
        line: 39,
        message_contains: "min_tokens (8000) is greater than max_tokens (1000)",
    },
    Case {
        name: "context bad token count",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    context:\n      - name: long\n        min_tokens: lots\n        max_tokens: 1K\n  projections:\n",
        )],
        path: "routing.signals.context[0].min_tokens",
        line: 40,
        message_contains: "\"lots\" is not a token count",
    },
    Case {
        name: "structure sequence with one marker",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    structure:\n      - name: steps\n        feature:\n          type: sequence\n          source:\n            type: sequence\n            sequences: [[first]]\n  projections:\n",
        )],
        path: "routing.signals.structure[0].feature.source.sequences[0]",
        line: 44,
        message_contains: "each sequence needs at least two markers",
    },
    Case {
        name: "metadata predicate with two comparators",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    metadata:\n      - name: tenant\n        key: x-tenant\n        predicate: {equals: a, exists: true}\n  projections:\n",
        )],
        path: "routing.signals.metadata[0].predicate",
        line: 41,
        message_contains: "exactly one of equals, in, exists",
    },
    Case {
        name: "kb rule on an unknown knowledge base",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    kb:\n      - name: priv\n        kb: nope_kb\n        target: {kind: group, value: private}\n  projections:\n",
        )],
        path: "routing.signals.kb[0].kb",
        line: 40,
        message_contains: "unknown knowledge base \"nope_kb\"",
    },
    Case {
        name: "kb rule on an unknown group",
        yaml: &[(
            BEFORE_PROJECTIONS,
            "    kb:\n      - name: priv\n        kb: privacy_kb\n        target: {kind: group, value: privat}\n  projections:\n",
        )],
        path: "routing.signals.kb[0].target.value",
        line: 41,
        message_contains: "has no group \"privat\"",
    },
    Case {
        name: "language code not ISO 639-1",
        yaml: &[(BEFORE_PROJECTIONS, "    language:\n      - name: english\n  projections:\n")],
        path: "routing.signals.language[0].name",
        line: 39,
        message_contains: "\"english\" is not a lowercase ISO 639-1 language code",
    },
    Case {
        name: "domain with an unknown MMLU category",
        yaml: &[(
            "        mmlu_categories: [math]\n",
            "        mmlu_categories: [math, maths]\n",
        )],
        path: "routing.signals.domains[0].mmlu_categories[1]",
        line: 32,
        message_contains: "\"maths\" is not an MMLU category",
    },
    // ---- projections ---------------------------------------------------------------------
    Case {
        name: "mapping source names an unknown score",
        yaml: &[("        source: s1\n", "        source: s2\n")],
        path: "routing.projections.mappings[0].source",
        line: 46,
        message_contains: "unknown score \"s2\"",
    },
    Case {
        name: "score cycle",
        yaml: &[
            (
                "          - {type: keyword, name: kw, weight: 1.0}\n",
                "          - {type: keyword, name: kw, weight: 1.0}\n          - {type: projection, name: s2, weight: 1.0}\n",
            ),
            (
                "    mappings:\n",
                "      - name: s2\n        method: weighted_sum\n        inputs:\n          - {type: projection, name: s1, weight: 1.0}\n    mappings:\n",
            ),
        ],
        path: "routing.projections.scores[0]",
        line: 40,
        message_contains: "scores depend on each other in a cycle: s1 -> s2",
    },
    Case {
        name: "duplicate mapping output",
        yaml: &[(
            "          - {name: low, lt: 0.5}\n",
            "          - {name: high, lt: 0.5}\n",
        )],
        path: "routing.projections.mappings[0].outputs[1].name",
        line: 49,
        message_contains: "duplicate mapping output \"high\"",
    },
    Case {
        name: "partition default not a member",
        yaml: &[(
            "    scores:\n",
            "    partitions:\n      - name: subject\n        semantics: exclusive\n        members: [math]\n        default: physics\n    scores:\n",
        )],
        path: "routing.projections.partitions[0].default",
        line: 43,
        message_contains: "default \"physics\" is not one of the partition's members",
    },
    Case {
        name: "softmax partition without temperature",
        yaml: &[(
            "    scores:\n",
            "    partitions:\n      - name: subject\n        semantics: softmax_exclusive\n        members: [math]\n        default: math\n    scores:\n",
        )],
        path: "routing.projections.partitions[0].temperature",
        line: 40,
        message_contains: "softmax_exclusive needs a temperature greater than 0",
    },
    // ---- plugins -------------------------------------------------------------------------
    Case {
        name: "unknown plugin type",
        yaml: &[("        - type: system_prompt\n", "        - type: system_promt\n")],
        path: "routing.decisions[1].plugins[0].type",
        line: 73,
        message_contains: "unknown plugin type \"system_promt\"; did you mean \"system_prompt\"",
    },
    Case {
        name: "plugin without configuration",
        yaml: &[(SYSTEM_PROMPT_PLUGIN, "        - type: system_prompt\n")],
        path: "routing.decisions[1].plugins[0].configuration",
        line: 73,
        message_contains: "plugin \"system_prompt\" needs a configuration block",
    },
    Case {
        name: "duplicate plugin",
        yaml: &[(
            "            system_prompt: be brief\n",
            "            system_prompt: be brief\n        - type: system_prompt\n          configuration:\n            system_prompt: again\n",
        )],
        path: "routing.decisions[1].plugins[1].type",
        line: 76,
        message_contains: "plugin \"system_prompt\" appears more than once",
    },
    Case {
        name: "tools filtered without allow or block lists",
        yaml: &[(
            SYSTEM_PROMPT_PLUGIN,
            "        - type: tools\n          configuration:\n            mode: filtered\n",
        )],
        path: "routing.decisions[1].plugins[0].configuration",
        line: 74,
        message_contains: "mode: filtered needs allow_tools or block_tools",
    },
    // ---- algorithms ----------------------------------------------------------------------
    Case {
        name: "static algorithm with a multi_factor block",
        yaml: &[(
            D3_PRIORITY,
            "      priority: 0\n      algorithm:\n        type: static\n        multi_factor: {weights: {quality: 1}}\n",
        )],
        path: "routing.decisions[2].algorithm.multi_factor",
        line: 80,
        message_contains: "algorithm type \"static\" takes no configuration block, found \"multi_factor\"",
    },
    Case {
        name: "uppercase algorithm type",
        yaml: &[(
            D3_PRIORITY,
            "      priority: 0\n      algorithm:\n        type: Static\n",
        )],
        path: "routing.decisions[2].algorithm.type",
        line: 79,
        message_contains: "algorithm type must be lowercase: write \"static\"",
    },
    Case {
        name: "removed algorithm type elo",
        yaml: &[(
            D3_PRIORITY,
            "      priority: 0\n      algorithm:\n        type: elo\n",
        )],
        path: "routing.decisions[2].algorithm.type",
        line: 79,
        message_contains: "algorithm type \"elo\" was removed; Router Learning is configured under global.router.learning",
    },
    // ---- legacy shapes -------------------------------------------------------------------
    Case {
        name: "legacy routing.models",
        yaml: &[(
            "routing:\n  modelCards:\n",
            "routing:\n  models:\n    - name: old\n  modelCards:\n",
        )],
        path: "routing.models",
        line: 20,
        message_contains: "declare the models as routing.modelCards",
    },
    Case {
        name: "legacy flat keyword_rules next to routing",
        yaml: &[(
            "version: v0.3\n",
            "version: v0.3\nkeyword_rules:\n  - name: old\n",
        )],
        path: "keyword_rules",
        line: 2,
        message_contains: "move it to routing.signals.keywords",
    },
    Case {
        name: "legacy providers.default_model",
        yaml: &[(
            "providers:\n  defaults:\n",
            "providers:\n  default_model: m1\n  defaults:\n",
        )],
        path: "providers.default_model",
        line: 8,
        message_contains: "write it as providers.defaults.default_model",
    },
    Case {
        name: "unknown key under global.router.learning",
        yaml: &[(
            TAIL,
            "      priority: 0\n      modelRefs:\n        - model: m1\nglobal:\n  router:\n    learning:\n      enabeld: true\n",
        )],
        path: "global.router.learning.enabeld",
        line: 83,
        message_contains: "unknown key \"enabeld\"; did you mean \"enabled\"?",
    },
    Case {
        name: "blog spelling global.router.learning.adaptations",
        yaml: &[(
            TAIL,
            "      priority: 0\n      modelRefs:\n        - model: m1\nglobal:\n  router:\n    learning:\n      adaptations:\n        session_aware: {enabled: true}\n",
        )],
        path: "global.router.learning.adaptations",
        line: 83,
        message_contains: "write global.router.learning.protection",
    },
    // ---- entrypoints, listeners, types ---------------------------------------------------
    Case {
        name: "entrypoint to an unknown recipe",
        yaml: &[(
            TAIL,
            "      priority: 0\n      modelRefs:\n        - model: m1\nentrypoints:\n  - model_names: [fast]\n    recipe: nope\n",
        )],
        path: "entrypoints[0].recipe",
        line: 82,
        message_contains: "unknown recipe \"nope\"",
    },
    Case {
        name: "listener with a bad timeout",
        yaml: &[("    timeout: 1200s\n", "    timeout: 20 minutes\n")],
        path: "listeners[0].timeout",
        line: 6,
        message_contains: "\"20 minutes\" is not a duration",
    },
    Case {
        name: "type error: priority is a string",
        yaml: &[("      priority: 5\n", "      priority: \"high\"\n")],
        path: "routing.decisions[1].priority",
        line: 64,
        message_contains: "invalid type: string \"high\"",
    },
    Case {
        name: "negative tier",
        yaml: &[("      priority: 5\n", "      priority: 5\n      tier: -1\n")],
        path: "routing.decisions[1].tier",
        line: 65,
        message_contains: "tier must not be negative, found -1",
    },
    Case {
        name: "a type error in one decision does not shift the paths of the next",
        yaml: &[
            ("      priority: 10\n", "      priority: [10]\n"),
            ("        - model: m2\n", "        - model: m3\n"),
        ],
        path: "routing.decisions[1].modelRefs[0].model",
        line: 71,
        message_contains: "unknown model \"m3\"",
    },
    Case {
        name: "a type error in one signal does not shift the paths of the next",
        yaml: &[(
            "        keywords: [hello]\n",
            "        keywords: [hello]\n        case_sensitive: maybe\n      - name: kw2\n        operator: XOR\n        keywords: [bye]\n",
        )],
        path: "routing.signals.keywords[1].operator",
        line: 32,
        message_contains: "operator \"XOR\" is not one of AND, OR, NOR",
    },
    Case {
        name: "a recipe without a name does not shift the paths of the next",
        yaml: &[(
            TAIL,
            "      priority: 0\n      modelRefs:\n        - model: m1\nrecipes:\n  - description: nameless\n  - name: fast\n    routing:\n      decisions:\n        - name: a\n          modelRefs:\n            - model: zz\n",
        )],
        path: "recipes[1].routing.decisions[0].modelRefs[0].model",
        line: 87,
        message_contains: "unknown model \"zz\"",
    },
    Case {
        name: "recipe leaf naming a signal declared only at the top level",
        yaml: &[(
            TAIL,
            "      priority: 0\n      modelRefs:\n        - model: m1\nrecipes:\n  - name: fast\n    routing:\n      decisions:\n        - name: a\n          rules: {type: keyword, name: kw}\n",
        )],
        path: "recipes[0].routing.decisions[0].rules",
        line: 85,
        message_contains: "unknown keyword signal \"kw\" (none are declared)",
    },
    Case {
        name: "unknown key under decisions[].adaptations",
        yaml: &[(
            D3_PRIORITY,
            "      priority: 0\n      adaptations:\n        mode: observe\n        protecton: {mode: bypass}\n",
        )],
        path: "routing.decisions[2].adaptations.protecton",
        line: 80,
        message_contains: "unknown key \"protecton\"; did you mean \"protection\"?",
    },
    Case {
        name: "unknown key under decisions[].adaptations.protection",
        yaml: &[(
            D3_PRIORITY,
            "      priority: 0\n      adaptations:\n        protection:\n          switch_margn: 0.2\n",
        )],
        path: "routing.decisions[2].adaptations.protection.switch_margn",
        line: 80,
        message_contains: "unknown key \"switch_margn\"; did you mean \"switch_margin\"?",
    },
];

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn load(yaml: &str, strict: bool, env: &HashMap<String, String>) -> Result<Loaded, LoadError> {
    load_bytes(
        yaml.as_bytes(),
        &LoadOptions {
            strict,
            env,
            base_dir: None,
        },
    )
}

fn apply(case: &Case) -> String {
    let mut yaml = BASE.to_string();
    for (find, replace) in case.yaml {
        let n = yaml.matches(find).count();
        assert_eq!(
            n, 1,
            "case {:?}: edit anchor {find:?} occurs {n} times, expected once",
            case.name
        );
        yaml = yaml.replacen(find, replace, 1);
    }
    yaml
}

fn numbered(yaml: &str) -> String {
    yaml.lines()
        .enumerate()
        .map(|(i, l)| format!("{:>4} | {l}\n", i + 1))
        .collect()
}

fn dump(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| format!("  {:?} {d}\n", d.severity))
        .collect()
}

fn check(case: &Case) {
    let yaml = apply(case);
    let env = no_env();
    let diags = match load(&yaml, false, &env) {
        Ok(loaded) => panic!(
            "case {:?}: expected the load to fail, it succeeded with warnings:\n{}\nYAML:\n{}",
            case.name,
            dump(loaded.diagnostics.all()),
            numbered(&yaml)
        ),
        Err(e) => e.diagnostics(),
    };
    let found = diags.errors().any(|d| {
        d.path == case.path
            && d.line == Some(case.line)
            && d.message.contains(case.message_contains)
    });
    assert!(
        found,
        "case {:?}: no error at {} (line {}) containing {:?}; diagnostics:\n{}\nYAML:\n{}",
        case.name,
        case.path,
        case.line,
        case.message_contains,
        dump(diags.all()),
        numbered(&yaml)
    );
}

#[test]
fn base_recipe_loads_cleanly() {
    let env = no_env();
    match load(BASE, true, &env) {
        Ok(loaded) => assert!(
            loaded.diagnostics.all().is_empty(),
            "{}",
            dump(loaded.diagnostics.all())
        ),
        Err(e) => panic!("base recipe fails:\n{}", dump(e.diagnostics().all())),
    }
}

#[test]
fn broken_cases() {
    assert!(CASES.len() >= 35, "only {} cases", CASES.len());
    let mut names = std::collections::HashSet::new();
    for case in CASES {
        assert!(
            names.insert(case.name),
            "duplicate case name {:?}",
            case.name
        );
    }
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = std::panic::catch_unwind(|| check(case)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

// ---- several errors in one file ------------------------------------------------------------

#[test]
fn reports_every_error_in_one_file() {
    let case = Case {
        name: "five errors",
        yaml: &[
            ("    default_model: m1\n", "    default_model: m9\n"),
            ("            name: kw\n", "            name: kww\n"),
            ("        - model: m2\n", "        - model: m3\n"),
            ("        source: s1\n", "        source: s2\n"),
            ("    timeout: 1200s\n", "    timeout: soon\n"),
            ("    - name: fallback\n", "    - name: d1\n"),
        ],
        path: "",
        line: 0,
        message_contains: "",
    };
    let yaml = apply(&case);
    let env = no_env();
    let Err(e) = load(&yaml, false, &env) else {
        panic!("expected failure:\n{}", numbered(&yaml));
    };
    let diags = e.diagnostics();
    let want = [
        ("listeners[0].timeout", 6),
        ("providers.defaults.default_model", 9),
        ("routing.projections.mappings[0].source", 46),
        ("routing.decisions[0].rules.conditions[0]", 56),
        ("routing.decisions[1].modelRefs[0].model", 71),
        ("routing.decisions[2].name", 76),
    ];
    for (path, line) in want {
        assert!(
            diags
                .errors()
                .any(|d| d.path == path && d.line == Some(line)),
            "missing error at {path} (line {line}):\n{}",
            dump(diags.all())
        );
    }
    // Reported in source order.
    let lines: Vec<usize> = diags.all().iter().filter_map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "{}", dump(diags.all()));
}

// ---- warnings --------------------------------------------------------------------------------

#[test]
fn unknown_key_warns_with_suggestion_and_still_loads() {
    let yaml = BASE.replace("      priority: 5\n", "      priorty: 5\n");
    let env = no_env();
    let loaded = match load(&yaml, false, &env) {
        Ok(l) => l,
        Err(e) => panic!("should load:\n{}", dump(e.diagnostics().all())),
    };
    let warnings: Vec<&Diagnostic> = loaded.diagnostics.warnings().collect();
    assert!(
        warnings
            .iter()
            .any(|d| d.path == "routing.decisions[1].priorty"
                && d.line == Some(64)
                && d.message.contains("did you mean \"priority\"")),
        "{}",
        dump(loaded.diagnostics.all())
    );

    let Err(e) = load(&yaml, true, &env) else {
        panic!("strict mode must reject an unknown key");
    };
    let diags = e.diagnostics();
    assert!(
        diags
            .errors()
            .any(|d| d.path == "routing.decisions[1].priorty" && d.message.contains("did you mean")),
        "{}",
        dump(diags.all())
    );
}

#[test]
fn unknown_top_level_and_signal_family_keys_warn() {
    let yaml = BASE
        .replace("version: v0.3\n", "version: v0.3\nlisteners_extra: 1\n")
        .replace("    domains:\n", "    domain:\n");
    let env = no_env();
    // `domain:` instead of `domains:` drops the declared domain, so the `domain` leaf is
    // served by an auto-generated domain and the recipe still loads.
    let loaded = match load(&yaml, false, &env) {
        Ok(l) => l,
        Err(e) => panic!("should load:\n{}", dump(e.diagnostics().all())),
    };
    let w: Vec<String> = loaded
        .diagnostics
        .warnings()
        .map(|d| d.to_string())
        .collect();
    assert!(
        loaded
            .diagnostics
            .warnings()
            .any(|d| d.path == "listeners_extra" && d.line == Some(2)),
        "{w:#?}"
    );
    assert!(
        loaded
            .diagnostics
            .warnings()
            .any(|d| d.path == "routing.signals.domain"
                && d.line == Some(31)
                && d.message.contains("did you mean \"domains\"")),
        "{w:#?}"
    );
}

#[test]
fn unset_env_var_warns_at_the_key() {
    let yaml = BASE.replace(
        "    - name: m2\n",
        "    - name: m2\n      description: ${VSR_TEST_UNSET_DESCRIPTION}\n",
    );
    let env = no_env();
    let loaded = match load(&yaml, false, &env) {
        Ok(l) => l,
        Err(e) => panic!("should load:\n{}", dump(e.diagnostics().all())),
    };
    assert!(
        loaded
            .diagnostics
            .warnings()
            .any(|d| d.path == "routing.modelCards[1].description"
                && d.line == Some(25)
                && d.message.contains("VSR_TEST_UNSET_DESCRIPTION is not set")),
        "{}",
        dump(loaded.diagnostics.all())
    );

    let mut env = no_env();
    env.insert(
        "VSR_TEST_UNSET_DESCRIPTION".into(),
        "the second model".into(),
    );
    let loaded = load(&yaml, true, &env).map_err(|e| dump(e.diagnostics().all()));
    assert!(loaded.is_ok(), "{loaded:?}");
}

#[test]
fn semantic_cache_store_is_a_deprecated_alias() {
    let yaml = format!("{BASE}global:\n  stores:\n    semantic_cache:\n      enabled: false\n");
    let env = no_env();
    let loaded = match load(&yaml, false, &env) {
        Ok(l) => l,
        Err(e) => panic!("should load:\n{}", dump(e.diagnostics().all())),
    };
    assert!(
        loaded
            .diagnostics
            .warnings()
            .any(|d| d.path == "global.stores.semantic_cache"
                && d.line == Some(82)
                && d.message.contains("deprecated")),
        "{}",
        dump(loaded.diagnostics.all())
    );
    assert!(!loaded.config.global.stores.response_cache.enabled);

    // Both spellings at once is an error.
    let yaml = format!(
        "{BASE}global:\n  stores:\n    semantic_cache:\n      enabled: false\n    response_cache:\n      enabled: true\n"
    );
    let Err(e) = load(&yaml, false, &env) else {
        panic!("semantic_cache next to response_cache must fail");
    };
    assert!(
        e.diagnostics()
            .errors()
            .any(|d| d.path == "global.stores.semantic_cache" && d.line == Some(82)),
        "{}",
        dump(e.diagnostics().all())
    );
}

// ---- robustness ------------------------------------------------------------------------------

/// The single error of a load that must fail.
fn only_error(bytes: &[u8]) -> Diagnostic {
    let env = no_env();
    let res = load_bytes(
        bytes,
        &LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        },
    );
    let Err(e) = res else {
        panic!("expected a failure");
    };
    let diags = e.diagnostics();
    let errors: Vec<&Diagnostic> = diags.errors().collect();
    assert!(!errors.is_empty(), "no error: {}", dump(diags.all()));
    errors[0].clone()
}

#[test]
fn malformed_yaml_reports_position() {
    let d = only_error(b"version: v0.3\nrouting:\n  decisions: [\n    {name: a\n");
    assert!(d.message.contains("invalid YAML"), "{d}");
    assert!(d.line.is_some(), "{d}");
}

#[test]
fn scalar_or_list_document_is_rejected() {
    for doc in ["just a string\n", "42\n", "- a\n- b\n"] {
        let d = only_error(doc.as_bytes());
        assert!(
            d.message.contains("must be a mapping of sections"),
            "{doc:?}: {d}"
        );
        assert_eq!(d.line, Some(1), "{doc:?}: {d}");
    }
}

#[test]
fn empty_and_whitespace_files_are_rejected() {
    for doc in ["", "   \n\n\t\n", "\u{feff}", "# only a comment\n"] {
        let d = only_error(doc.as_bytes());
        assert!(
            d.message.contains("empty") || d.message.contains("mapping"),
            "{doc:?}: {d}"
        );
    }
}

#[test]
fn non_utf8_bytes_are_rejected_with_position() {
    let d = only_error(b"version: v0.3\nrouting:\n  x: \"caf\xe9\"\n");
    assert!(d.message.contains("UTF-8"), "{d}");
    assert_eq!((d.line, d.column), (Some(3), Some(10)), "{d}");
    // Columns count characters, not bytes, like every other diagnostic.
    let bytes = [
        b"version: v0.3\nrouting:\n  x: \"".as_slice(),
        "日本".as_bytes(),
        b"\xff\"\n",
    ]
    .concat();
    let d = only_error(&bytes);
    assert_eq!((d.line, d.column), (Some(3), Some(9)), "{d}");
}

#[test]
fn document_without_routing_or_global_is_rejected() {
    let d = only_error(b"version: v0.3\nkeyword_rulez:\n  - name: a\n");
    assert!(
        d.message
            .contains("it has neither a `routing` nor a `global` section"),
        "{d}"
    );
    assert!(d.message.contains("keyword_rulez"), "{d}");
}

fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let env = no_env();
    load_path(
        path,
        &LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        },
    )
}

#[test]
fn load_path_rejects_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = load_file(dir.path()) else {
        panic!("a directory must not load");
    };
    assert!(matches!(e, LoadError::NotAFile { .. }), "{e}");
    assert!(e.to_string().contains("is not a regular file"), "{e}");
}

#[test]
fn load_path_reports_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = load_file(&dir.path().join("nope.yaml")) else {
        panic!("a missing file must not load");
    };
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
    let d = e.diagnostics();
    assert!(
        d.errors().any(|d| d.message.contains("cannot read")),
        "{}",
        dump(d.all())
    );
}

#[test]
fn load_path_rejects_a_huge_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(50 * 1024 * 1024).unwrap();
    drop(f);
    let Err(e) = load_file(&path) else {
        panic!("a 50 MB file must not load");
    };
    assert!(matches!(e, LoadError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("a recipe may be at most"), "{e}");

    // The in-memory entry point has the same limit.
    let big = vec![b' '; 17 * 1024 * 1024];
    let d = only_error(&big);
    assert!(d.message.contains("the limit is"), "{d}");
}

#[test]
fn deeply_nested_yaml_does_not_crash() {
    let env = no_env();
    for depth in [40, 200, 5_000] {
        let lists = format!("routing: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        // A rule tree `depth` NOTs deep, in flow style.
        let rules = format!(
            "routing:\n  decisions:\n    - name: deep\n      rules: {}{{type: keyword, name: kw}}{}\n",
            "{operator: NOT, conditions: [".repeat(depth),
            "]}".repeat(depth)
        );
        let maps = format!("global: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth));
        for doc in [lists, rules, maps] {
            let res = load(&doc, false, &env);
            // Shallow documents may load (the nested `global` keys only warn); deep ones hit
            // the parser's recursion limit and fail with a positioned error.
            if depth > 100 {
                let Err(e) = res else {
                    panic!("depth {depth}: expected an error");
                };
                let diags = e.diagnostics();
                assert!(
                    diags
                        .errors()
                        .any(|d| d.message.contains("recursion limit") && d.line.is_some()),
                    "depth {depth}: {}",
                    dump(diags.all())
                );
            }
        }
    }
}
