//! Building blocks shared by the encoders: a linear layer that is either dense f32 or
//! q8-quantised, layer norm, GELU, and weight loading from a model directory.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::error::ModelError;

/// Numeric format of the big matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Plain f32 weights (exact).
    #[default]
    F32,
    /// Linear layers quantised to ggml `Q8_0` (8-bit blocks of 32) and run with candle's
    /// quantised matmul. Embeddings, norms and attention stay f32.
    Q8,
}

impl std::str::FromStr for Precision {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Self::F32),
            "q8" | "q8_0" | "int8" => Ok(Self::Q8),
            other => Err(ModelError::Invalid(format!(
                "unknown precision {other:?}: expected f32 or q8"
            ))),
        }
    }
}

/// `y = x W^T + b`, dense or quantised.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// Dense weight stored transposed and contiguous, `[in, out]`: gemm then reads it
    /// row-major instead of through a transposed view.
    Dense {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    /// Quantised weight.
    Quant {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Linear {
    pub(crate) fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let in_dim = weight.dim(1)?;
        // Q8_0 blocks are 32 wide; keep small or odd layers dense.
        if precision == Precision::Q8 && in_dim % 32 == 0 && weight.device().is_cpu() {
            let q = QTensor::quantize(&weight, GgmlDType::Q8_0)?;
            Ok(Self::Quant {
                weight: QMatMul::from_qtensor(q)?,
                bias,
            })
        } else {
            Ok(Self::Dense {
                weight_t: weight.t()?.contiguous()?,
                bias,
            })
        }
    }

    /// Loads `{prefix}.weight` `[out, in]` and, when present, `{prefix}.bias`.
    pub(crate) fn load(
        vb: &VarBuilder<'_>,
        in_dim: usize,
        out_dim: usize,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if vb.contains_tensor("bias") {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Self::new(weight, bias, precision)
    }

    /// Applies the layer and then GELU (erf form), with bias and activation fused on CPU.
    pub(crate) fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (y, bias) = self.matmul(x)?;
        crate::ops::bias_gelu(&y, bias)
    }

    /// `x W^T` reshaped like `x`, and the bias still to add.
    fn matmul(&self, x: &Tensor) -> candle_core::Result<(Tensor, Option<&Tensor>)> {
        let dims = x.dims().to_vec();
        let in_dim = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let (y, bias) = match self {
            Self::Dense { weight_t, bias } => (x2.matmul(weight_t)?, bias.as_ref()),
            Self::Quant { weight, bias } => (weight.forward(&x2)?, bias.as_ref()),
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        Ok((y.reshape(out_dims)?, bias))
    }

    /// The dense weight `[in, out]` row-major, the bias (zeros when absent), `in` and `out`,
    /// copied out for a forward pass that works on plain buffers.
    ///
    /// # Errors
    /// When the layer is quantised.
    #[cfg_attr(not(feature = "openblas"), allow(dead_code))]
    pub(crate) fn dense_parts(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>, usize, usize)> {
        let Self::Dense { weight_t, bias } = self else {
            candle_core::bail!("a quantised layer has no dense weight");
        };
        let (in_dim, out_dim) = weight_t.dims2()?;
        let bias = match bias {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; out_dim],
        };
        Ok((
            weight_t.flatten_all()?.to_vec1::<f32>()?,
            bias,
            in_dim,
            out_dim,
        ))
    }

    /// Applies the layer to `[.., in]`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let (y, bias) = match self {
            Self::Dense { weight_t, bias } => (x2.matmul(weight_t)?, bias),
            Self::Quant { weight, bias } => (weight.forward(&x2)?, bias),
        };
        let y = match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        y.reshape(out_dims)
    }
}

/// Layer norm over the last dimension with optional bias.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight`/`bias` (or the old `gamma`/`beta` names); a missing bias means zero.
    pub(crate) fn load(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> candle_core::Result<Self> {
        let (w, b) = if vb.contains_tensor("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        let weight = vb.get(dim, w)?;
        let bias = if vb.contains_tensor(b) {
            vb.get(dim, b)?
        } else {
            Tensor::zeros(dim, weight.dtype(), weight.device())?
        };
        #[expect(clippy::cast_possible_truncation, reason = "eps is a small constant")]
        let eps = eps as f32;
        Ok(Self { weight, bias, eps })
    }

    /// Weight, bias and epsilon, copied out for a forward pass that works on plain buffers.
    #[cfg_attr(not(feature = "openblas"), allow(dead_code))]
    pub(crate) fn parts(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>, f32)> {
        Ok((self.weight.to_vec1()?, self.bias.to_vec1()?, self.eps))
    }

    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps)
    }
}

/// Loads every tensor of a weights file into a [`VarBuilder`] without `unsafe` mmap.
///
/// # Errors
/// [`ModelError::Load`] if the file cannot be read.
pub(crate) fn load_weights(
    path: &Path,
    device: &Device,
) -> Result<VarBuilder<'static>, ModelError> {
    let is_pth = path.extension().is_some_and(|e| e == "bin");
    if is_pth {
        VarBuilder::from_pth(path, DType::F32, device).map_err(|e| ModelError::load(path, e))
    } else {
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| ModelError::load(path, e))?;
        Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
    }
}

/// L2-normalises rows of `[n, d]`.
pub(crate) fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f32::MAX)?;
    x.broadcast_div(&norm)
}
