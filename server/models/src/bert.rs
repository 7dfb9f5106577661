//! BERT encoder forward pass, written for CPU inference.
//!
//! Reads the standard Hugging Face BERT weights layout (with or without a `bert.` prefix) and
//! differs from `candle_transformers::models::bert` in ways that matter for speed: Q, K and V
//! are one fused matmul, the attention scale is folded into the query weights, each linear can be
//! q8-quantised ([`Precision::Q8`]), and the padding mask bias is built once per batch.
//! The optional `pooler` (tanh over `[CLS]`) is loaded for sequence-classification heads.

use candle_core::{DType, Tensor};
use candle_nn::{Embedding, Module, VarBuilder};
use serde::Deserialize;

use crate::bert_fast::{Dense, FastBert, FastLayer, Norm};
use crate::gemm::CpuKernel;
use crate::layers::{LayerNorm, Linear, Precision};

/// The subset of BERT's `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Position table size.
    pub max_position_embeddings: usize,
    /// Token-type table size.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

#[derive(Debug, Clone)]
struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// Embeddings and layers as candle tensors (any device, any precision).
#[derive(Debug, Clone)]
struct CandleBody {
    word: Embedding,
    position: Tensor,
    token_type0: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Which forward pass runs the encoder body.
#[derive(Debug, Clone)]
enum Body {
    Candle(CandleBody),
    /// Plain buffers and our GEMM kernels: CPU, f32.
    Fast(Box<FastBert>),
}

/// A loaded BERT encoder.
#[derive(Debug, Clone)]
pub struct Bert {
    body: Body,
    pooler: Option<Linear>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    act: Act,
}

impl Bert {
    /// Loads the encoder from `vb` (root of the checkpoint).
    ///
    /// # Errors
    /// A candle error naming the missing or mis-shaped tensor.
    pub fn load(
        vb: &VarBuilder<'_>,
        cfg: &BertConfig,
        precision: Precision,
        kernel: CpuKernel,
    ) -> candle_core::Result<Self> {
        let root = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb.clone()
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not divisible by num_attention_heads");
        }
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let act = match cfg.hidden_act.as_str() {
            "gelu" | "gelu_python" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => candle_core::bail!("unsupported hidden_act {other:?}"),
        };
        let emb = root.pp("embeddings");
        let word = Embedding::new(emb.get((cfg.vocab_size, h), "word_embeddings.weight")?, h);
        let position = emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type0 = emb
            .get(
                (cfg.type_vocab_size.max(1), h),
                "token_type_embeddings.weight",
            )?
            .get(0)?;
        let emb_norm = LayerNorm::load(&emb.pp("LayerNorm"), h, cfg.layer_norm_eps)?;

        #[expect(clippy::cast_precision_loss, reason = "head_dim is small")]
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = root.pp(format!("encoder.layer.{i}"));
            let sa = l.pp("attention.self");
            let q_w = (sa.get((h, h), "query.weight")? * scale)?;
            let q_b = (sa.get(h, "query.bias")? * scale)?;
            let qkv_w = Tensor::cat(
                &[
                    q_w,
                    sa.get((h, h), "key.weight")?,
                    sa.get((h, h), "value.weight")?,
                ],
                0,
            )?;
            let qkv_b = Tensor::cat(&[q_b, sa.get(h, "key.bias")?, sa.get(h, "value.bias")?], 0)?;
            layers.push(Layer {
                qkv: Linear::new(qkv_w, Some(qkv_b), precision)?,
                attn_out: Linear::load(&l.pp("attention.output.dense"), h, h, precision)?,
                attn_norm: LayerNorm::load(
                    &l.pp("attention.output.LayerNorm"),
                    h,
                    cfg.layer_norm_eps,
                )?,
                inter: Linear::load(
                    &l.pp("intermediate.dense"),
                    h,
                    cfg.intermediate_size,
                    precision,
                )?,
                out: Linear::load(&l.pp("output.dense"), cfg.intermediate_size, h, precision)?,
                out_norm: LayerNorm::load(&l.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        let pooler = if root.contains_tensor("pooler.dense.weight") {
            Some(Linear::load(
                &root.pp("pooler.dense"),
                h,
                h,
                Precision::F32,
            )?)
        } else {
            None
        };
        let candle = CandleBody {
            word,
            position,
            token_type0,
            emb_norm,
            layers,
        };
        let kernel = kernel.resolve();
        let fast = kernel != CpuKernel::Candle
            && precision == Precision::F32
            && candle.position.device().is_cpu();
        let body = if fast {
            Body::Fast(Box::new(to_fast(&candle, heads, head_dim, h, act, kernel)?))
        } else {
            Body::Candle(candle)
        };
        Ok(Self {
            body,
            pooler,
            heads,
            head_dim,
            hidden: h,
            act,
        })
    }

    /// Token states `[b, s, h]` for ids `[b, s]` (u32) and mask `[b, s]` (u32, 1 = real token).
    ///
    /// # Errors
    /// A candle error (shape mismatch, sequence longer than the position table).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let c = match &self.body {
            Body::Candle(c) => c,
            Body::Fast(m) => return m.forward(ids, mask),
        };
        let (b, s) = ids.dims2()?;
        let positions = c.position.narrow(0, 0, s)?;
        let x = c
            .word
            .forward(ids)?
            .broadcast_add(&positions)?
            .broadcast_add(&c.token_type0)?;
        let mut x = c.emb_norm.forward(&x)?;
        // Additive key mask [b, 1, 1, s]: 0 for tokens, a large negative for padding.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e30)?.reshape((b, 1, 1, s))?;
        for layer in &c.layers {
            x = self.layer_forward(layer, &x, &bias, b, s)?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        bias: &Tensor,
        b: usize,
        s: usize,
    ) -> candle_core::Result<Tensor> {
        let h = self.hidden;
        let qkv = layer
            .qkv
            .forward(x)?
            .reshape((b, s, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let q = qkv.get(0)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, h))?;
        let attn = layer.attn_out.forward(&ctx)?;
        let x = layer.attn_norm.forward(&(attn + x)?)?;
        let inter = match self.act {
            Act::GeluErf => layer.inter.forward_gelu(&x)?,
            Act::GeluTanh => layer.inter.forward(&x)?.gelu()?,
            Act::Relu => layer.inter.forward(&x)?.relu()?,
        };
        let out = layer.out.forward(&inter)?;
        layer.out_norm.forward(&(out + x)?)
    }

    /// Whether the checkpoint has BERT's pooler layer.
    #[must_use]
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// BERT's pooler: `tanh(W h_cls + b)`, for checkpoints that have one.
    ///
    /// # Errors
    /// A candle error; `Ok(None)` when the checkpoint has no pooler.
    pub fn pool(&self, states: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match &self.pooler {
            None => Ok(None),
            Some(p) => {
                let cls = states.narrow(1, 0, 1)?.squeeze(1)?;
                Ok(Some(p.forward(&cls)?.tanh()?))
            }
        }
    }
}

/// Copies the candle body into plain buffers for the fast forward pass.
fn to_fast(
    c: &CandleBody,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    act: Act,
    kernel: CpuKernel,
) -> candle_core::Result<FastBert> {
    let layers = c
        .layers
        .iter()
        .map(|l| {
            Ok(FastLayer {
                qkv: Dense::from_linear(&l.qkv, kernel)?,
                attn_out: Dense::from_linear(&l.attn_out, kernel)?,
                attn_norm: Norm::from_layer(&l.attn_norm)?,
                inter: Dense::from_linear(&l.inter, kernel)?,
                out: Dense::from_linear(&l.out, kernel)?,
                out_norm: Norm::from_layer(&l.out_norm)?,
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(FastBert {
        word: c.word.embeddings().flatten_all()?.to_vec1()?,
        position: c.position.flatten_all()?.to_vec1()?,
        token_type0: c.token_type0.to_vec1()?,
        emb_norm: Norm::from_layer(&c.emb_norm)?,
        layers,
        heads,
        head_dim,
        hidden,
        act,
        kernel,
    })
}
