//! The `modality` family (contract §3.12): a small rule-based classifier of the bounded
//! text into `AR` (text generation), `DIFFUSION` (image generation) or `BOTH`.
//!
//! Owns the heuristic (upstream's detector internals are unspecified):
//! 1. An **image request** is an imperative drawing verb (`draw`, `sketch`, `paint`,
//!    `illustrate`) not used figuratively (`draw a conclusion`, `paint a picture of the
//!    situation`), or a production verb (`generate`, `create`, `make`, `render`, `design`,
//!    `produce`, `give me`, …) followed within a few words by an image noun (`image`,
//!    `picture`, `photo`, `illustration`, `logo`, `wallpaper`, …), or a Chinese or Japanese
//!    equivalent (`画一张`, `生成…图片`, `帮我画`, `絵を描いて`, …). Asking *about* images
//!    ("what is in this image", "how do I resize an image") is not a request: the image noun
//!    must follow a production verb, and the verb must stand in request position (start of
//!    the text or of a sentence, or after `please`, `can you`, `help me`, …).
//! 2. **BOTH** when an image request also asks for text: `and/then/also` followed by
//!    `explain`, `describe`, `write`, `tell`, `list`, `summarize`, `caption`, or
//!    `with an explanation/description/story/caption`, or Chinese `并/然后/再 + 解释/说明/描述/写`.
//! 3. Otherwise **AR**.
//!
//! The rule whose name equals the result (case-insensitive) matches, without confidence.

use std::sync::LazyLock;

use regex::Regex;
use vllm_sr_config::model::NamedRule;

use crate::state::FamilyResult;

/// The detected output modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Autoregressive text.
    Ar,
    /// Image generation.
    Diffusion,
    /// An image plus a text answer.
    Both,
}

impl Modality {
    /// `AR`, `DIFFUSION` or `BOTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ar => "AR",
            Self::Diffusion => "DIFFUSION",
            Self::Both => "BOTH",
        }
    }
}

struct Patterns {
    draw: Regex,
    figurative: Regex,
    produce: Regex,
    cjk_image: Regex,
    text_too: Regex,
}

/// A request position: start of text or sentence, or after a polite request phrase.
const REQUEST_START: &str = r"(?:^\s*|[.!?;:\n]\s*|\b(?:please|pls|can you|could you|would you|will you|i want you to|i'd like you to|i need you to|help me|let's|now|just)\s+)";
const IMAGE_NOUNS: &str = r"(?:image|picture|pic|photo|photograph|illustration|drawing|painting|portrait|sketch|logo|icon|wallpaper|poster|artwork|art|render|rendering|avatar|meme|banner|thumbnail|cartoon|comic|scene|landscape|selfie|headshot|mockup|infographic|diagram)s?";

fn build() -> Result<Patterns, regex::Error> {
    Ok(Patterns {
        draw: Regex::new(&format!(
            r"(?i){REQUEST_START}(?:draw|sketch|paint|illustrate|doodle)\b"
        ))?,
        figurative: Regex::new(
            r"(?i)\b(?:draw|paint|sketch)\s+(?:a\s+|the\s+|any\s+|some\s+)?(?:conclusions?|comparisons?|parallels?|distinctions?|attention|inspiration|lessons?|the line|a line between|blood|(?:rosy|clear|vivid|bleak|grim|full|broad) picture|picture of (?:the|what|how|our|my|your) (?:situation|market|economy|state|future|problem)|a blank|up (?:a )?(?:plans?|contracts?|lists?))",
        )?,
        produce: Regex::new(&format!(
            r"(?i){REQUEST_START}(?:generate|create|make|render|design|produce|give me|show me|paint me|draw me|craft|imagine|visuali[sz]e)\b(?:\s+\w+){{0,4}}?\s+{IMAGE_NOUNS}\b"
        ))?,
        cjk_image: Regex::new(
            r"画一(?:张|幅|个|只|下)|(?:帮我|给我|请|为我)画|(?:生成|创作|制作|做|设计)(?:一张|一幅|一个|张|幅)?[^。，！？]{0,10}?(?:图片|图像|照片|插画|海报|头像|壁纸|画像|图)|絵を描いて|画像を(?:生成|作成|作って)|イラストを(?:描いて|作成|生成)",
        )?,
        text_too: Regex::new(
            r"(?i)\b(?:and|then|also|plus|after that)\b[^.!?\n]{0,40}?\b(?:explain|describe|write|tell me|list|summari[sz]e|caption|narrate)\b|\bwith (?:an? |some )?(?:short |brief |detailed )?(?:explanation|description|story|caption|poem|summary)\b|(?:并且?|然后|再|同时)(?:解释|说明|描述|写)",
        )?,
    })
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| build().ok());

/// Classifies a text's requested output modality.
pub fn classify(text: &str) -> Modality {
    let Some(p) = PATTERNS.as_ref() else {
        return Modality::Ar;
    };
    let draw = p
        .draw
        .find_iter(text)
        .any(|m| !p.figurative.is_match(&text[m.start()..]));
    let image = draw || p.produce.is_match(text) || p.cjk_image.is_match(text);
    match (image, image && p.text_too.is_match(text)) {
        (false, _) => Modality::Ar,
        (true, false) => Modality::Diffusion,
        (true, true) => Modality::Both,
    }
}

/// The modality rules of a recipe.
#[derive(Debug)]
pub struct ModalitySignals {
    names: Vec<String>,
}

impl ModalitySignals {
    /// Keeps the rule names.
    pub fn build(rules: &[NamedRule]) -> Self {
        LazyLock::force(&PATTERNS);
        Self {
            names: rules.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Classifies the bounded text and matches the rule named by the result.
    pub fn eval(&self, bounded: &str, out: &mut FamilyResult) -> Modality {
        let m = classify(bounded);
        for (i, n) in self.names.iter().enumerate() {
            if n.eq_ignore_ascii_case(m.as_str()) {
                out.hit(i, None);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Modality) {
        assert_eq!(classify(text), expected, "{text:?}");
    }

    use Modality::{Ar, Both, Diffusion};

    #[test]
    fn patterns_compile() {
        assert!(PATTERNS.is_some());
    }

    #[test]
    fn diffusion() {
        check("Draw a cat wearing a space helmet", Diffusion);
        check(
            "please paint a sunset over the ocean in watercolor",
            Diffusion,
        );
        check("Generate an image of a futuristic city at night", Diffusion);
        check("Can you create a logo for my coffee shop?", Diffusion);
        check("make me a wallpaper with mountains", Diffusion);
        check(
            "Render a photorealistic picture of a red sports car",
            Diffusion,
        );
        check("画一张猫的图片", Diffusion);
        check("帮我画一只可爱的小狗", Diffusion);
        check("生成一张赛博朋克风格的城市海报", Diffusion);
        check("猫の絵を描いてください", Diffusion);
    }

    #[test]
    fn both() {
        check(
            "Draw a diagram of the water cycle and explain each stage",
            Both,
        );
        check(
            "Generate an image of a dragon, then write a short story about it",
            Both,
        );
        check(
            "Create a poster for the event with a short description",
            Both,
        );
        check("画一张太阳系的图并解释每个行星", Both);
    }

    #[test]
    fn text_generation() {
        check("Explain how diffusion models generate images", Ar);
        check("What is in this image?", Ar);
        check("How do I resize an image in Python?", Ar);
        check("Can you draw a conclusion from these results?", Ar);
        check("Let's draw a comparison between Rust and Go", Ar);
        check("The report paints a bleak picture of the economy", Ar);
        check("Write a function that renders a React component", Ar);
        check("Summarize this article about painting techniques", Ar);
        check("", Ar);
        check("这张图片里有什么？", Ar);
    }

    #[test]
    fn rule_matching_is_case_insensitive() {
        let rules: Vec<NamedRule> = ["ar", "DIFFUSION", "Both"]
            .iter()
            .map(|n| NamedRule {
                name: n.to_string(),
                description: String::new(),
            })
            .collect();
        let s = ModalitySignals::build(&rules);
        let mut out = FamilyResult::new(3);
        assert_eq!(s.eval("draw a horse", &mut out), Diffusion);
        assert_eq!(out.matched, vec![1]);
        let mut out = FamilyResult::new(3);
        s.eval("hello", &mut out);
        assert_eq!(out.matched, vec![0]);
    }
}
