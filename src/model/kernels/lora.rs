//! A frozen projection with a LoRA update as one node of candle's graph:
//! y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ.
//!
//! Written as candle ops (the frozen product, x·Aᵀ, ·Bᵀ, the scaling and the sum), every step
//! keeps its output for the backward pass: three tensors of the projection's output size per
//! projection, most of a LoRA training step's activation memory when every linear layer is
//! adapted. Here the forward pass computes y from detached operands and the node keeps only
//! x, A and B; the backward pass recomputes the rank-r product and returns, with g the output's
//! gradient and L = x·Aᵀ,
//!
//! ∂/∂B = s·gᵀ·L, ∂/∂A = (s·g·B)ᵀ·x, ∂/∂x = g·W + (s·g·B)·A.
//!
//! `tests/lab.rs` checks the gradients against central finite differences in f64.

use super::fused::copy_of;
use super::linear::{input_gradient, InputGradMatmul};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::Mutex;

/// A trainable low-rank update beside a frozen weight (LoRA): `y += s · (x · Aᵀ) · Bᵀ` with `A`
/// (rank, in) and `B` (out, rank) variables, so that only they receive gradients.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: candle_core::Var,
    pub b: candle_core::Var,
    /// s: α/r, or α/√r with rsLoRA.
    pub scale: f64,
}

/// x·Wᵀ + s·(x·Aᵀ)·Bᵀ for `x` (…, in) and a frozen `weight` W (out, in); gradients reach x and
/// the update's A and B.
pub(super) fn lora_matmul(x: &Tensor, weight: &Tensor, lora: &LoraPair) -> Result<Tensor> {
    let (a, b) = (lora.a.as_tensor(), lora.b.as_tensor());
    let xd = x.detach().contiguous()?;
    let lead = &x.dims()[..x.rank() - 1];
    let rows = lead.iter().product::<usize>();
    let x2 = xd.reshape((rows, x.dim(candle_core::D::Minus1)?))?;
    let low = x2.matmul(&a.detach().t()?)?;
    let delta = (low.matmul(&b.detach().t()?)? * lora.scale)?;
    let y = (x2.apply_op2_no_bwd(weight, &InputGradMatmul)? + delta)?;
    let mut out_shape = lead.to_vec();
    out_shape.push(weight.dim(0)?);
    let op = LoraMatmul {
        weight: weight.clone(),
        scale: lora.scale,
        y: Mutex::new(Some(y)),
    };
    x.apply_op3(a, b, op)?.reshape(out_shape)
}

/// The node: (x, A, B) → y, with y computed before the op and taken by its forward pass.
struct LoraMatmul {
    weight: Tensor,
    scale: f64,
    y: Mutex<Option<Tensor>>,
}

impl LoraMatmul {
    /// The product computed before the op; taken, so that only the op's output (its copy)
    /// outlives the forward pass.
    fn take(&self) -> Result<Tensor> {
        self.y
            .lock()
            .map_err(|_| candle_core::Error::Msg("lora-matmul: poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("lora-matmul: forward run twice".into()))
    }
}

/// The storage of `y` on one device, copied.
macro_rules! copy_product {
    ($self:ident, $variant:ident) => {{
        let y = $self.take()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::$variant(s) => copy_of(s, layout),
            _ => candle_core::bail!("lora-matmul: the product is on another device"),
        }
    }};
}

impl CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_product!(self, Cpu)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_product!(self, Cuda)
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        _: &candle_core::MetalStorage,
        _: &Layout,
        _: &candle_core::MetalStorage,
        _: &Layout,
        _: &candle_core::MetalStorage,
        _: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        copy_product!(self, Metal)
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (a, b) = (a.detach(), b.detach());
        let (rows, out) = grad.dims2()?;
        let x2 = x.detach().reshape((rows, ()))?;
        let g = grad.detach().reshape((rows, out))?;
        let low = x2.matmul(&a.t()?)?;
        let gs = (&g * self.scale)?;
        let db = gs.t()?.matmul(&low)?;
        let dlow = gs.matmul(&b)?;
        let da = dlow.t()?.matmul(&x2)?;
        let dx = (input_gradient(&g, &self.weight)? + dlow.matmul(&a)?)?.reshape(x.shape())?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}
