//! A linear layer: a frozen weight (or a trainable one), an optional bias and an optional LoRA
//! update, each product taking the op whose backward pass computes what the use needs
//! (`linear.rs`: the input gradient only; `lora.rs`: the update's gradients as well; candle's
//! stock matmul for a weight that is a variable).

use super::linear::{input_gradient, InputGradMatmul};
use super::lora::{lora_matmul, LoraPair};
use candle_core::{Result, Tensor};

/// `y = x · Wᵀ (+ b)` with `W` of shape (out, in), plus a LoRA update when one is attached.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(in crate::model) weight: Tensor,
    pub(in crate::model) bias: Option<Tensor>,
    pub(in crate::model) lora: Option<LoraPair>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// Whether a LoRA update is attached (the fused kernels and the per-head pass then do not
    /// apply).
    pub fn has_lora(&self) -> bool {
        self.lora.is_some()
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Apply to `x` of shape (…, in); returns (…, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.weight.is_variable() {
            let dims = x.dims();
            let (lead, k) = dims.split_at(dims.len() - 1);
            let mut out_shape = lead.to_vec();
            out_shape.push(self.weight.dim(0)?);
            let y = x
                .reshape((lead.iter().product::<usize>(), k[0]))?
                .matmul(&self.weight.t()?)?
                .reshape(out_shape)?;
            match &self.lora {
                Some(lora) => (y + lora_delta(x, lora)?)?,
                None => y,
            }
        } else if let Some(lora) = &self.lora {
            lora_matmul(x, &self.weight, lora)?
        } else {
            // One node in the backward graph: the op reads (…, in) as rows itself, where
            // reshapes around it would each cost the backward pass a zero-filled gradient
            // and a sum of activation size.
            x.contiguous()?.apply_op2(&self.weight, InputGradMatmul)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// s · (x · Aᵀ) · Bᵀ for `x` (…, in), with candle's matmul (gradients to A and B).
fn lora_delta(x: &Tensor, lora: &LoraPair) -> Result<Tensor> {
    let dims = x.dims();
    let (lead, k) = dims.split_at(dims.len() - 1);
    let rows = lead.iter().product::<usize>();
    let mut out_shape = lead.to_vec();
    out_shape.push(lora.b.dim(0)?);
    let low = x.reshape((rows, k[0]))?.matmul(&lora.a.as_tensor().t()?)?;
    (low.matmul(&lora.b.as_tensor().t()?)? * lora.scale)?.reshape(out_shape)
}

impl Linear {
    /// Apply head by head: `x` (1, n, t, in) holds one input per head; head `i` uses rows
    /// `i·out/n ..` of the weight. Returns (1, n, t, out/n). For attribution only: the weight
    /// never gets a gradient here.
    pub fn forward_heads(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        if self.lora.is_some() {
            candle_core::bail!("a layer with a LoRA update attached has no per-head pass");
        }
        let (_, _, t, k) = x.dims4()?;
        let per = self.weight.dim(0)? / n;
        let w = self.weight.reshape((n, per, k))?;
        let y = x.reshape((n, t, k))?.apply_op2(&w, InputGradMatmul)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((n, 1, per))?)?,
            None => y,
        };
        y.unsqueeze(0)
    }
}

impl Linear {
    /// The two products an attribution pass computes with this weight, and nothing else: the
    /// forward `x · Wᵀ` for `x` (rows, in) and the input gradient's `g · W` for `g` (rows, out),
    /// with the pass's kernels.
    pub(in crate::model) fn pass_products(&self, x: &Tensor, g: &Tensor) -> Result<()> {
        x.apply_op2_no_bwd(&self.weight, &InputGradMatmul)?;
        input_gradient(g, &self.weight)?;
        Ok(())
    }
}
