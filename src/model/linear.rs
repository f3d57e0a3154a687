//! Linear layers whose backward pass computes the input gradient only.
//!
//! candle's stock matmul backward always computes the gradient of both operands, so a frozen
//! weight still gets a weight-sized gradient (10× slower and +1.8 GiB on a 0.5B model). Scoring
//! only needs gradients with respect to activations, so the projection here is a custom op whose
//! forward is the ordinary matmul and whose backward returns `grad · W` alone.
//!
//! Training is the one use that wants weight gradients: a layer whose weight is a variable
//! ([`candle_core::Var`], see `Model::trainable`) takes candle's stock matmul instead, whose
//! backward fills in the weight's gradient too.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `y = x · Wᵀ (+ b)` with `W` of shape (out, in).
#[derive(Debug, Clone)]
pub struct Linear {
    pub(super) weight: Tensor,
    pub(super) bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Apply to `x` of shape (…, in); returns (…, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (lead, k) = dims.split_at(dims.len() - 1);
        let m: usize = lead.iter().product();
        let x = x.reshape((m, k[0]))?;
        let y = if self.weight.is_variable() {
            x.matmul(&self.weight.t()?)?
        } else {
            x.apply_op2(&self.weight, InputGradMatmul)?
        };
        let mut out_shape = lead.to_vec();
        out_shape.push(self.weight.dim(0)?);
        let y = y.reshape(out_shape)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Linear {
    /// Apply head by head: `x` (1, n, t, in) holds one input per head; head `i` uses rows
    /// `i·out/n ..` of the weight. Returns (1, n, t, out/n). For attribution only: the weight
    /// never gets a gradient here.
    pub fn forward_heads(&self, x: &Tensor, n: usize) -> Result<Tensor> {
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

/// `x · wᵀ` for `x` (m, k) and `w` (n, k), or batched `x` (b, m, k) and `w` (b, n, k).
/// Backward returns the gradient of `x` only.
pub(crate) struct InputGradMatmul;

/// Batch, rows, columns and inner dimension of a matmul, as candle's backends take them.
type Bmnk = (usize, usize, usize, usize);

impl InputGradMatmul {
    fn bmnk(l1: &Layout, l2: &Layout) -> Result<(Bmnk, Layout, Shape)> {
        let (x, w) = (l1.dims(), l2.dims());
        let (b, m, k, n, wk) = match (x, w) {
            ([m, k], [n, wk]) => (1, *m, *k, *n, *wk),
            ([b, m, k], [wb, n, wk]) if wb == b => (*b, *m, *k, *n, *wk),
            _ => {
                return Err(candle_core::Error::Msg(format!(
                    "input-grad matmul: incompatible shapes {x:?} and {w:?}"
                )))
            }
        };
        if k != wk {
            return Err(candle_core::Error::Msg(format!(
                "input-grad matmul: inner dimensions differ: {x:?} and {w:?}"
            )));
        }
        let rank = w.len();
        let wt = l2.transpose(rank - 2, rank - 1)?;
        let mut shape = x[..x.len() - 1].to_vec();
        shape.push(n);
        Ok(((b, m, n, k), wt, Shape::from(shape)))
    }
}

impl CustomOp2 for InputGradMatmul {
    fn name(&self) -> &'static str {
        "input-grad-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bmnk, wt, shape) = Self::bmnk(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, &wt)?, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (bmnk, wt, shape) = Self::bmnk(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, &wt)?, shape))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (bmnk, wt, shape) = Self::bmnk(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, &wt)?, shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(w)?), None))
    }
}
