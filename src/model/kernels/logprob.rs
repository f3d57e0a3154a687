//! The log-probability of each row's target token, log softmax(x)[target], as one op on the
//! CPU: the training passes' loss reads nothing else of the logits.
//!
//! Written as candle ops (shift, exp, sum, log, subtract, gather), each step keeps a copy of the
//! logits for the backward pass, and the backward pass adds a zero-filled gradient and a sum per
//! step: about ten vocabulary-wide tensors per position, most of a training step's memory on a
//! model with a large vocabulary. Here the forward pass keeps nothing but its inputs, and the
//! backward pass writes the one gradient, per row with g the row's output gradient,
//!
//! ∂L/∂x_j = g·([j = target] − softmax(x)_j),
//!
//! recomputing each row's maximum and sum of exponentials. Elsewhere (GPUs, half precision) the
//! composite path runs; the unit test below holds the two together and against central finite
//! differences.

use super::fused::{by_float, cpu_kernels, rows_per_task, slice, IntoStorage, KernelExp};
use super::pool;
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType, D,
};
use num_traits::Float;

/// log softmax(`logits`)[`targets`] over the last dimension: `logits` (…, vocab), `targets` (…)
/// of u32 ids; returns (…). Differentiable with respect to `logits`.
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if cpu_kernels(logits) && targets.dtype() == DType::U32 {
        let lead = targets.dims().to_vec();
        let vocab = logits.dim(D::Minus1)?;
        let x = logits.contiguous()?.reshape(((), vocab))?;
        let t = targets.contiguous()?.flatten_all()?;
        return x.apply_op2(&t, TargetLogprobs)?.reshape(lead);
    }
    composite(logits, targets)
}

/// [`target_logprobs`] in candle ops; the shift by the row maximum is kept out of the graph
/// (it cancels out of the result, so the gradient stays exact).
fn composite(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    logp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)
}

/// The row's maximum and Σ exp(x − max).
#[inline]
fn max_and_sum<T: Float + KernelExp>(row: &[T]) -> (T, T) {
    let m = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    let s = row.iter().fold(T::zero(), |s, &v| s + (v - m).kernel_exp());
    (m, s)
}

/// The target's index in a row of `vocab`, or an error naming it.
fn target(t: u32, vocab: usize) -> Result<usize> {
    let t = t as usize;
    if t >= vocab {
        candle_core::bail!("target-logprobs: target {t} outside a vocabulary of {vocab}");
    }
    Ok(t)
}

fn forward<T: WithDType + Float + KernelExp>(x: &[T], ids: &[u32], vocab: usize) -> Vec<T> {
    let per_task = rows_per_task(vocab);
    pool::filled(ids.len(), per_task, |i, [out]| {
        for (r, o) in out.iter_mut().enumerate() {
            let row = i * per_task + r;
            let xs = &x[row * vocab..][..vocab];
            let (m, s) = max_and_sum(xs);
            // Checked by the caller: every target is inside the vocabulary.
            *o = xs[ids[row] as usize] - m - s.ln();
        }
    })
}

fn backward<T: WithDType + Float + KernelExp>(
    x: &[T],
    ids: &[u32],
    g: &[T],
    vocab: usize,
) -> Vec<T> {
    let per_task = rows_per_task(vocab);
    pool::filled(x.len(), per_task * vocab, |i, [out]| {
        for (r, o) in out.chunks_exact_mut(vocab).enumerate() {
            let row = i * per_task + r;
            let xs = &x[row * vocab..][..vocab];
            let (m, s) = max_and_sum(xs);
            let scale = -g[row] / s;
            for (o, &v) in o.iter_mut().zip(xs) {
                *o = scale * (v - m).kernel_exp();
            }
            o[ids[row] as usize] += g[row];
        }
    })
}

/// (logits (rows, vocab), targets (rows) u32) → (rows).
struct TargetLogprobs;

impl CustomOp2 for TargetLogprobs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, vocab) = l1.shape().dims2()?;
        let ids = slice::<u32>(s2, l2)?;
        if ids.len() != rows {
            candle_core::bail!("target-logprobs: {} targets for {rows} rows", ids.len());
        }
        for &t in ids {
            target(t, vocab)?;
        }
        let y = by_float!(s1, "target-logprobs", |T| {
            forward(slice::<T>(s1, l1)?, ids, vocab)
        });
        Ok((y, Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.detach().apply_op3_no_bwd(
            targets,
            &grad.contiguous()?,
            &TargetLogprobsBackward,
        )?;
        Ok((Some(g), None))
    }
}

/// (logits (rows, vocab), targets (rows), output gradient (rows)) → the logits' gradient.
struct TargetLogprobsBackward;

impl CustomOp3 for TargetLogprobsBackward {
    fn name(&self) -> &'static str {
        "target-logprobs-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, vocab) = l1.shape().dims2()?;
        let ids = slice::<u32>(s2, l2)?;
        let gx = by_float!(s1, "target-logprobs-backward", |T| {
            backward(slice::<T>(s1, l1)?, ids, slice(s3, l3)?, vocab)
        });
        Ok((gx, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{assert_close, value_and_grad};
    use candle_core::Device;

    fn case(dtype: DType) -> (Tensor, Tensor, Tensor) {
        let dev = Device::Cpu;
        // Fixed values, large enough that the shift by the maximum matters (up to 30), spread
        // enough that no row's softmax is one-hot.
        let x: Vec<f64> = (0..2 * 3 * 41)
            .map(|i| 30.0 * (0.37 * i as f64 + 0.1).sin() * (0.05 * i as f64).cos())
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 41), &dev).unwrap();
        let t = Tensor::new(&[[0u32, 40, 7], [13, 13, 21]], &dev).unwrap();
        let r = Tensor::new(&[[0.7f64, -1.3, 0.2], [1.1, -0.4, 0.9]], &dev).unwrap();
        (x.to_dtype(dtype).unwrap(), t, r.to_dtype(dtype).unwrap())
    }

    /// The op equals the composite in value and gradient (f64 to 1e-12 of the largest, f32 to
    /// 1e-5: the f32 exponential is a polynomial within 2 ulp).
    #[test]
    fn the_op_equals_the_composite() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let (x, t, r) = case(dtype);
            let a = value_and_grad(&x, &r, |x| target_logprobs(x, &t));
            let b = value_and_grad(&x, &r, |x| composite(x, &t));
            assert_close(&a.0, &b.0, tol, "value");
            assert_close(&a.1, &b.1, tol, "gradient");
        }
    }

    /// The op's gradient equals central finite differences of its value (f64).
    #[test]
    fn the_gradient_equals_finite_differences() {
        let (x, t, r) = case(DType::F64);
        let (_, grad) = value_and_grad(&x, &r, |x| target_logprobs(x, &t));
        let flat = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let loss = |v: &[f64]| {
            let x = Tensor::from_vec(v.to_vec(), x.shape(), x.device()).unwrap();
            let y = target_logprobs(&x, &t).unwrap();
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let h = 1e-6;
        // A target (row 0's id 0, row 4's id 13) and two others.
        for i in [0, 4 * 41 + 13, 5, 100] {
            let mut up = flat.clone();
            up[i] += h;
            let mut down = flat.clone();
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h);
            // Rounding of a loss of magnitude ~100 over 2h bounds the difference's accuracy.
            assert!((fd - grad[i]).abs() <= 1e-7, "[{i}]: {} vs {fd}", grad[i]);
        }
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() {
        let (x, _, _) = case(DType::F32);
        let t = Tensor::new(&[[0u32, 41, 0], [0, 0, 0]], &Device::Cpu).unwrap();
        let e = target_logprobs(&x, &t).unwrap_err().to_string();
        assert!(e.contains("target 41 outside a vocabulary of 41"), "{e}");
    }
}
