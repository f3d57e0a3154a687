//! The gated MLP of the attribution pass as one op on the CPU: y = down(silu(gate(x)) ⊙ up(x)),
//! forward and backward in closed form.
//!
//! Written as candle nodes it is three projections and the gated activation, and candle's
//! backward pass gives each node a zero-filled gradient and a sum: three of (t, intermediate)
//! and two of (t, hidden) per layer, besides the two input gradients of x summed. Here the
//! forward pass keeps the gate and up projections, and the backward pass is, with g and u
//! those projections and dy the output's gradient,
//!
//! da = dy·W_down, (dg, du) from the activation's closed form, dx = dg·W_gate + du·W_up,
//!
//! the last sum accumulated inside the second product. Every product is split across
//! candle's threads. Biases, weights that are variables (training), GPUs and half precision
//! take the composite path, which `tests/model_parity.rs` and `tests/model_gradients.rs` also
//! cover; the unit test below holds the two together.

use super::fused::{
    cpu_kernels, storage_slice, swiglu_backward_elements, swiglu_elements, KernelExp,
};
use super::layer::Linear;
use super::linear::{matmul, matmul_beside, product};
use super::matrix::MatRef;
use candle_core::{
    CpuStorage, CustomOp1, DType, Layout, Result, Shape, StorageRef, Tensor, WithDType,
};
use std::sync::OnceLock;

/// down(silu(gate(x)) ⊙ up(x)) for `x` (…, hidden); `None` where the op does not apply and the
/// caller takes the composite path.
pub(in crate::model) fn gated_mlp(
    x: &Tensor,
    gate: &Linear,
    up: &Linear,
    down: &Linear,
) -> Result<Option<Tensor>> {
    let weights = [gate.weight(), up.weight(), down.weight()];
    let hidden = x.dim(candle_core::D::Minus1)?;
    let inter = gate.weight().dim(0)?;
    let applies = cpu_kernels(x)
        && [gate, up, down]
            .iter()
            .all(|l| l.bias().is_none() && !l.has_lora())
        && weights
            .iter()
            .all(|w| w.dtype() == x.dtype() && !w.track_op() && w.is_contiguous())
        && gate.weight().dims() == [inter, hidden]
        && up.weight().dims() == [inter, hidden]
        && down.weight().dims() == [hidden, inter];
    if !applies {
        return Ok(None);
    }
    let op = GatedMlp {
        gate: gate.weight().clone(),
        up: up.weight().clone(),
        down: down.weight().clone(),
        saved: OnceLock::new(),
    };
    x.contiguous()?.apply_op1(op).map(Some)
}

/// The op behind [`gated_mlp`]; the forward pass keeps the gate and up projections side by
/// side, as the (rows, 2·intermediate) matrix [G | U].
struct GatedMlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    saved: OnceLock<CpuStorage>,
}

impl GatedMlp {
    /// The storage guards of the three weights, each (out, in) and contiguous, to read with
    /// [`storage_slice`].
    fn weights(&self) -> [(StorageRef<'_>, &Layout); 3] {
        [&self.gate, &self.up, &self.down].map(Tensor::storage_and_layout)
    }

    fn forward<T: WithDType + KernelExp>(
        &self,
        x: &[T],
        hidden: usize,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let rows = x.len() / hidden;
        let inter = self.gate.dim(0)?;
        let [wg, wu, wd] = &self.weights();
        let (wg, wu, wd) = (
            storage_slice::<T>(&wg.0, wg.1)?,
            storage_slice::<T>(&wu.0, wu.1)?,
            storage_slice::<T>(&wd.0, wd.1)?,
        );
        let x = MatRef::rows(x, rows, hidden);
        let weights = [wg, wu].map(|w| MatRef::rows(w, inter, hidden).t());
        let gu = matmul_beside(x, &weights)?;
        let (g, u) = halves(&gu, rows, inter);
        let a = swiglu_elements(g, u);
        let y = matmul(
            MatRef::rows(&a, rows, inter),
            MatRef::rows(wd, hidden, inter).t(),
        )?;
        Ok((y, gu))
    }

    fn backward<T: WithDType + KernelExp>(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let saved = self.saved.get().ok_or_else(|| {
            candle_core::Error::Msg("gated MLP: backward pass before the forward pass".into())
        })?;
        let inter = self.gate.dim(0)?;
        let hidden = x.dim(candle_core::D::Minus1)?;
        let rows = x.elem_count() / hidden;
        let dy = dy.contiguous()?;
        let [wg, wu, wd] = &self.weights();
        let (wg, wu, wd) = (
            storage_slice::<T>(&wg.0, wg.1)?,
            storage_slice::<T>(&wu.0, wu.1)?,
            storage_slice::<T>(&wd.0, wd.1)?,
        );
        let (dy_storage, dy_layout) = dy.storage_and_layout();
        let dy = storage_slice::<T>(&dy_storage, dy_layout)?;
        let (g, u) = halves(saved.as_slice::<T>()?, rows, inter);
        let da = matmul(
            MatRef::rows(dy, rows, hidden),
            MatRef::rows(wd, hidden, inter),
        )?;
        let dgu = swiglu_backward_elements(g, u, &da);
        let (dg, du) = dgu.split_at(rows * inter);
        let mut dx = matmul(
            MatRef::rows(dg, rows, inter),
            MatRef::rows(wg, inter, hidden),
        )?;
        product(
            &mut dx,
            MatRef::rows(du, rows, inter),
            MatRef::rows(wu, inter, hidden),
            true,
        )?;
        Tensor::from_vec(dx, x.shape(), x.device())
    }
}

/// The gate and up projections G and U in the kept (rows, 2·intermediate) matrix [G | U].
fn halves<T>(gu: &[T], rows: usize, inter: usize) -> (MatRef<'_, T>, MatRef<'_, T>) {
    let both = MatRef::rows(gu, rows, 2 * inter);
    (both.columns(0..inter), both.columns(inter..2 * inter))
}

impl CustomOp1 for GatedMlp {
    fn name(&self) -> &'static str {
        "gated-mlp-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("gated-mlp-cpu: the input is not contiguous");
        };
        let hidden = l.dims().last().copied().unwrap_or(0);
        let (y, saved) = match s {
            CpuStorage::F32(x) => {
                let (y, gu) = self.forward::<f32>(&x[start..end], hidden)?;
                (CpuStorage::F32(y), CpuStorage::F32(gu))
            }
            CpuStorage::F64(x) => {
                let (y, gu) = self.forward::<f64>(&x[start..end], hidden)?;
                (CpuStorage::F64(y), CpuStorage::F64(gu))
            }
            _ => candle_core::bail!("gated-mlp-cpu: f32 or f64 only"),
        };
        if self.saved.set(saved).is_err() {
            candle_core::bail!("gated-mlp-cpu: one op ran forward twice");
        }
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, dy)?,
            DType::F64 => self.backward::<f64>(x, dy)?,
            d => candle_core::bail!("gated-mlp-cpu: f32 or f64 only, not {d:?}"),
        };
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{assert_close, value_and_grad};
    use candle_core::Device;

    /// The op equals the composite (the projections and candle's silu and product) in value and
    /// input gradient, for a batch of rows, in f64 and f32; a bias or a weight that is a
    /// variable leaves it to the composite.
    #[test]
    fn the_gated_mlp_equals_the_composite() {
        let dev = Device::Cpu;
        let (hidden, inter) = (24, 40);
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
            let rand = |s: &[usize], std: f64| {
                let x = Tensor::randn(0f64, std, s, &dev).unwrap();
                x.to_dtype(dtype).unwrap()
            };
            let lin = |out, inp| Linear::new(rand(&[out, inp], 0.3), None);
            let (gate, up, down) = (lin(inter, hidden), lin(inter, hidden), lin(hidden, inter));
            let x = rand(&[2, 7, hidden], 1.0);
            let r = rand(&[2, 7, hidden], 1.0);
            let composite = |x: &Tensor| {
                let a = (candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?)?;
                down.forward(&a)
            };
            let fused = |x: &Tensor| Ok(gated_mlp(x, &gate, &up, &down)?.expect("the op applies"));
            let (y, g) = value_and_grad(&x, &r, fused);
            let (y0, g0) = value_and_grad(&x, &r, composite);
            assert_close(&y, &y0, tol, &format!("{dtype:?} value"));
            assert_close(&g, &g0, tol, &format!("{dtype:?} gradient"));
        }
        let w = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let wt = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let plain = |w: &Tensor| Linear::new(w.clone(), None);
        let applies = |g: &Linear| gated_mlp(&x, g, &plain(&w), &plain(&wt)).unwrap().is_some();
        assert!(applies(&plain(&w)));
        let bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(!applies(&Linear::new(w.clone(), Some(bias))));
        let var = candle_core::Var::from_tensor(&w).unwrap();
        assert!(!applies(&plain(var.as_tensor())));
    }
}
