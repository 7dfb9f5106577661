//! The deterministic families of one recipe, compiled once and evaluated per request:
//! keyword, structure, context, conversation, event, metadata, authz, language, pii, modality.

use vllm_sr_config::model::global::GlobalConfig;
use vllm_sr_config::model::{Recipe, SignalFamily};

use crate::request::{RequestView, SignalText};
use crate::signals::{
    authz, context, conversation, event, keyword, language, metadata, modality, pii, structure,
};
use crate::state::{family_index, SignalState};
use crate::EngineError;

pub(crate) struct Deterministic {
    keyword: keyword::KeywordSignals,
    structure: structure::StructureSignals,
    context: context::ContextSignals,
    conversation: conversation::ConversationSignals,
    event: event::EventSignals,
    metadata: metadata::MetadataSignals,
    authz: authz::AuthzSignals,
    language: language::LanguageSignals,
    pii: pii::PiiSignals,
    modality: modality::ModalitySignals,
}

impl Deterministic {
    pub(crate) fn build(
        recipe: &Recipe,
        global: &GlobalConfig,
        warnings: &mut Vec<String>,
    ) -> Result<Self, EngineError> {
        let s = &recipe.signals;
        let language = language::LanguageSignals::build(&s.language);
        for code in language.unsupported() {
            warnings.push(format!("recipe {}: language \"{code}\" is not compiled into this build; its rule never matches", recipe.name));
        }
        if !s.language.is_empty() {
            // Load the detector's models now rather than on the first request.
            language::warm_up();
        }
        Ok(Self {
            keyword: keyword::KeywordSignals::build(&s.keywords)?,
            structure: structure::StructureSignals::build(&s.structure)?,
            context: context::ContextSignals::build(&s.context),
            conversation: conversation::ConversationSignals::build(&s.conversation),
            event: event::EventSignals::build(&s.events)?,
            metadata: metadata::MetadataSignals::build(&s.metadata),
            authz: authz::AuthzSignals::build(&s.role_bindings, &s.roles, &global.services.authz),
            language,
            pii: pii::PiiSignals::build(&s.pii),
            modality: modality::ModalitySignals::build(&s.modality),
        })
    }

    /// Evaluates the enabled deterministic families; returns the context token count (always
    /// computed: the proxy reports it in a header).
    pub(crate) fn eval(
        &self,
        req: &RequestView,
        text: &SignalText,
        on: &[bool],
        state: &mut SignalState,
    ) -> u64 {
        let enabled = |f: SignalFamily| on.get(family_index(f)).copied().unwrap_or(false);
        let timed =
            |f: SignalFamily, state: &mut SignalState, run: &mut dyn FnMut(&mut SignalState)| {
                if !enabled(f) {
                    return;
                }
                let t = std::time::Instant::now();
                run(state);
                state.timings_ms[family_index(f)] += t.elapsed().as_secs_f64() * 1e3;
                state.evaluated[family_index(f)] = true;
            };
        timed(SignalFamily::Keyword, state, &mut |st| {
            self.keyword
                .eval(&text.text, st.family_mut(SignalFamily::Keyword))
        });
        timed(SignalFamily::Structure, state, &mut |st| {
            self.structure
                .eval(&text.text, st.family_mut(SignalFamily::Structure))
        });
        let tokens = context::token_count(text);
        timed(SignalFamily::Context, state, &mut |st| {
            self.context
                .eval_count(tokens, st.family_mut(SignalFamily::Context))
        });
        timed(SignalFamily::Conversation, state, &mut |st| {
            self.conversation
                .eval(&text.facts, st.family_mut(SignalFamily::Conversation))
        });
        timed(SignalFamily::Event, state, &mut |st| {
            self.event
                .eval(&text.bounded, st.family_mut(SignalFamily::Event))
        });
        timed(SignalFamily::Metadata, state, &mut |st| {
            self.metadata
                .eval(&req.metadata, st.family_mut(SignalFamily::Metadata))
        });
        timed(SignalFamily::Authz, state, &mut |st| {
            let mut roles = std::mem::take(&mut st.roles);
            if let Err(e) = self
                .authz
                .eval(req, st.family_mut(SignalFamily::Authz), &mut roles)
            {
                st.errors.insert("authz".into(), e);
            }
            st.roles = roles;
        });
        timed(SignalFamily::Language, state, &mut |st| {
            let (code, conf) = self
                .language
                .eval(&text.bounded, st.family_mut(SignalFamily::Language));
            st.extra_values
                .insert(format!("language:detected:{code}"), conf);
        });
        timed(SignalFamily::Pii, state, &mut |st| {
            self.pii
                .eval(&text.text, &text.non_user, st.family_mut(SignalFamily::Pii))
        });
        timed(SignalFamily::Modality, state, &mut |st| {
            self.modality
                .eval(&text.bounded, st.family_mut(SignalFamily::Modality));
        });
        tokens
    }
}
