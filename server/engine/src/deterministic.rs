//! The deterministic families of one recipe, compiled once and evaluated per request.

use vllm_sr_config::model::global::GlobalConfig;
use vllm_sr_config::model::{Recipe, SignalFamily};

use crate::request::{RequestView, SignalText};
use crate::signals::keyword::KeywordSignals;
use crate::state::{family_index, SignalState};
use crate::EngineError;

pub(crate) struct Deterministic {
    keyword: KeywordSignals,
}

impl Deterministic {
    pub(crate) fn build(
        recipe: &Recipe,
        _global: &GlobalConfig,
        _warnings: &mut Vec<String>,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            keyword: KeywordSignals::build(&recipe.signals.keywords)?,
        })
    }

    /// Evaluates the enabled deterministic families; returns the context token count.
    pub(crate) fn eval(
        &self,
        _req: &RequestView,
        text: &SignalText,
        on: &[bool],
        _global: &GlobalConfig,
        state: &mut SignalState,
    ) -> u64 {
        let enabled = |f: SignalFamily| on.get(family_index(f)).copied().unwrap_or(false);
        if enabled(SignalFamily::Keyword) {
            self.keyword
                .eval(&text.text, state.family_mut(SignalFamily::Keyword));
        }
        0
    }
}
