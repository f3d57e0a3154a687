//! Fused kernels with hand-written backward passes, for the attribution pass.
//!
//! candle's fused rms-norm, softmax and rotary kernels have no backward pass, and their
//! differentiable `_slow` twins spend most of the attribution pass outside the matrix products:
//! each is a chain of elementwise ops, and candle's backward pass also computes a full-size
//! gradient for every operand outside the graph (norm weights, rotary tables, the attention
//! mask). Here each op runs its fused kernel forward and takes its gradient from the closed
//! form, attached to the graph by [`WithGrad`]: gradients reach the activations only (a weight
//! that is a variable takes the composite path, which computes its gradient as well).
//!
//! `tests/model_gradients.rs` checks the gradients of the attribution pass against central
//! finite differences in f64 for every family, `tests/model_parity.rs` against PyTorch autograd.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

/// A backward pass: (input, output, gradient of the output) → gradient of the input.
type Backward = Box<dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// Records `y`, computed from `x` by a kernel without a backward pass, as a differentiable
/// function of `x` whose backward pass is `backward`. The forward pass copies `y`.
struct WithGrad {
    name: &'static str,
    backward: Backward,
}

fn copy_of<S: BackendStorage>(s: &S, l: &Layout) -> Result<(S, Shape)> {
    match l.contiguous_offsets() {
        Some((0, end)) if end == l.shape().elem_count() => Ok((s.try_clone(l)?, l.shape().clone())),
        _ => candle_core::bail!("with-grad: the output must be a fresh contiguous tensor"),
    }
}

impl CustomOp2 for WithGrad {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_of(y, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        y: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_of(y, l)
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        _: &candle_core::MetalStorage,
        _: &Layout,
        y: &candle_core::MetalStorage,
        l: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        copy_of(y, l)
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gx = (self.backward)(&x.detach(), &y.detach(), &grad.detach())?;
        Ok((Some(gx), None))
    }
}

fn with_grad(x: &Tensor, y: &Tensor, name: &'static str, backward: Backward) -> Result<Tensor> {
    x.apply_op2(&y.contiguous()?, WithGrad { name, backward })
}

/// The dtype a kernel computes in: half-precision inputs are widened to f32.
fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// RMS norm `x / sqrt(mean(x²) + eps) · w` over the last dimension, for a weight that is not a
/// variable.
///
/// Backward, with r = (mean(x²) + eps)^(−1/2) per row and n the row length:
/// ∂L/∂x = r·(g⊙w) − x·r³·⟨g⊙w, x⟩/n.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let y = if x.dtype() == DType::F64 {
        // candle's fused kernel accumulates in f32.
        candle_nn::ops::rms_norm_slow(&x.detach(), w, eps as f32)?
    } else {
        candle_nn::ops::rms_norm(&x.detach().contiguous()?, w, eps as f32)?
    };
    let w = w.detach();
    let backward = move |x: &Tensor, _: &Tensor, g: &Tensor| {
        let dtype = x.dtype();
        let c = compute_dtype(dtype);
        let (x, g, w) = (x.to_dtype(c)?, g.to_dtype(c)?, w.to_dtype(c)?);
        let n = x.dim(D::Minus1)? as f64;
        let r = ((x.sqr()?.sum_keepdim(D::Minus1)? / n)? + eps)?
            .sqrt()?
            .recip()?;
        let gw = g.broadcast_mul(&w)?;
        let dot = (&gw * &x)?.sum_keepdim(D::Minus1)?;
        let coef = (r.powf(3.0)? * dot)?.affine(1.0 / n, 0.0)?;
        (gw.broadcast_mul(&r)? - x.broadcast_mul(&coef)?)?.to_dtype(dtype)
    };
    with_grad(x, &y, "rms-norm-with-grad", Box::new(backward))
}

/// Attention probabilities softmax(scale·x + mask) over the last dimension, from the raw
/// query-key products `x`; `mask` is additive and broadcast against `x`.
///
/// Backward, with p the probabilities: ∂L/∂x = scale·(p⊙g − p·⟨p, g⟩).
pub(crate) fn attention_softmax(x: &Tensor, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    let mut s = (x.detach() * scale)?;
    if let Some(m) = mask {
        s = s.broadcast_add(m)?;
    }
    let p = candle_nn::ops::softmax_last_dim(&s)?;
    let backward = move |_: &Tensor, p: &Tensor, g: &Tensor| {
        let pg = (p * g)?;
        let dot = pg.sum_keepdim(D::Minus1)?;
        (pg - p.broadcast_mul(&dot)?)? * scale
    };
    with_grad(x, &p, "softmax-with-grad", Box::new(backward))
}

/// Rotary embedding (the halves convention) with tables `cos`, `sin` of shape (t, half), for
/// `x` (b, heads, t, head_dim).
///
/// The rotation is orthogonal: its backward pass is the rotation by the opposite angle,
/// ∂L/∂x = rope(g, cos, −sin).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    let (cos, neg_sin) = (cos.clone(), sin.neg()?);
    let backward = move |_: &Tensor, _: &Tensor, g: &Tensor| {
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &neg_sin)
    };
    with_grad(x, &y, "rope-with-grad", Box::new(backward))
}
