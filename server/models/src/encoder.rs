//! The encoder behind every model: BERT (our own forward pass, see [`crate::bert`]) or
//! ModernBERT (candle-transformers), loaded from a [`ModelSpec`], plus the optional
//! classification "head" transform each architecture puts between the encoder and the
//! classifier layer.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::modernbert;

use crate::bert::{Bert, BertConfig};
use crate::error::ModelError;
use crate::gemm::CpuKernel;
use crate::layers::{load_weights, LayerNorm, Linear, Precision};
use crate::spec::{Architecture, ModelSpec};

/// A loaded encoder.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    kind: Kind,
    device: Device,
    hidden: usize,
}

#[derive(Clone)]
enum Kind {
    Bert(Box<Bert>),
    ModernBert(Box<modernbert::ModernBert>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bert(_) => f.write_str("Bert"),
            Self::ModernBert(_) => f.write_str("ModernBert"),
        }
    }
}

/// The per-architecture transform applied to a pooled or token state before `classifier`.
#[derive(Debug, Clone)]
pub(crate) enum HeadTransform {
    /// BERT sequence classification: the encoder's pooler (tanh) over `[CLS]`.
    BertPooler,
    /// Nothing (BERT token classification, or a BERT checkpoint without a pooler).
    Identity,
    /// ModernBERT: `norm(gelu(dense(x)))`.
    ModernBert { dense: Linear, norm: LayerNorm },
}

impl Encoder {
    /// Loads the encoder weights of `spec` on `device`, returning the root [`VarBuilder`] too so
    /// heads can be loaded from the same checkpoint.
    pub(crate) fn load(
        spec: &ModelSpec,
        device: &Device,
        precision: Precision,
        kernel: CpuKernel,
    ) -> Result<(Self, VarBuilder<'static>), ModelError> {
        let vb = load_weights(&spec.weights, device)?;
        let cfg_path = spec.dir.join("config.json");
        let kind = match spec.architecture {
            Architecture::Bert => {
                let cfg: BertConfig = serde_json::from_value(spec.config.clone())
                    .map_err(|e| ModelError::load(&cfg_path, e))?;
                Kind::Bert(Box::new(
                    Bert::load(&vb, &cfg, precision, kernel)
                        .map_err(|e| ModelError::load(&spec.weights, e))?,
                ))
            }
            Architecture::ModernBert => {
                let cfg: modernbert::Config = serde_json::from_value(spec.config.clone())
                    .map_err(|e| ModelError::load(&cfg_path, e))?;
                let mvb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
                    vb.clone()
                } else {
                    // Bare `ModernBertModel` checkpoints (embedding models) have no `model.` prefix.
                    vb.clone().rename_f(|name: &str| {
                        name.strip_prefix("model.").unwrap_or(name).to_owned()
                    })
                };
                Kind::ModernBert(Box::new(
                    modernbert::ModernBert::load(mvb, &cfg)
                        .map_err(|e| ModelError::load(&spec.weights, e))?,
                ))
            }
        };
        Ok((
            Self {
                kind,
                device: device.clone(),
                hidden: spec.hidden_size,
            },
            vb,
        ))
    }

    /// Device of the weights.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Token states `[b, s, h]`.
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match &self.kind {
            Kind::Bert(m) => m.forward(ids, mask),
            Kind::ModernBert(m) => m.forward(ids, mask),
        }
    }

    /// Loads the transform a classifier head applies before its final linear layer.
    pub(crate) fn head_transform(
        &self,
        spec: &ModelSpec,
        vb: &VarBuilder<'static>,
        sequence: bool,
    ) -> Result<HeadTransform, ModelError> {
        match (&self.kind, sequence) {
            (Kind::Bert(m), true) if m.has_pooler() => Ok(HeadTransform::BertPooler),
            (Kind::Bert(_), _) => Ok(HeadTransform::Identity),
            (Kind::ModernBert(_), _) => {
                let eps = spec
                    .config
                    .get("norm_eps")
                    .or_else(|| spec.config.get("layer_norm_eps"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(1e-5);
                let h = self.hidden;
                let err = |e: candle_core::Error| ModelError::load(&spec.weights, e);
                Ok(HeadTransform::ModernBert {
                    dense: Linear::load(&vb.pp("head.dense"), h, h, Precision::F32).map_err(err)?,
                    norm: LayerNorm::load(&vb.pp("head.norm"), h, eps).map_err(err)?,
                })
            }
        }
    }

    /// Applies `transform` to `[n, h]` (sequence heads, `states` = token states for the pooler)
    /// or `[b, s, h]` (token heads).
    pub(crate) fn apply_head(
        &self,
        transform: &HeadTransform,
        x: &Tensor,
        states: &Tensor,
    ) -> candle_core::Result<Tensor> {
        match transform {
            HeadTransform::Identity => Ok(x.clone()),
            HeadTransform::BertPooler => match &self.kind {
                Kind::Bert(m) => match m.pool(states)? {
                    Some(p) => Ok(p),
                    None => Ok(x.clone()),
                },
                Kind::ModernBert(_) => Ok(x.clone()),
            },
            HeadTransform::ModernBert { dense, norm } => {
                norm.forward(&dense.forward(x)?.gelu_erf()?)
            }
        }
    }
}
