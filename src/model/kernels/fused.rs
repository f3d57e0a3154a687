//! Fused kernels with hand-written backward passes, for the attribution pass.
//!
//! candle's fused rms-norm, softmax and rotary kernels have no backward pass, and their
//! differentiable `_slow` twins spend most of the attribution pass outside the matrix products:
//! each is a chain of elementwise ops, and candle's backward pass also computes a full-size
//! gradient for every operand outside the graph (norm weights, rotary tables, the attention
//! mask). Here each op runs fused forward and takes its gradient from the closed form; gradients
//! reach the activations only (a weight that is a variable takes the composite path, which
//! computes its gradient as well).
//!
//! On the CPU in f32 and f64, the rms-norm and the MLP's gated activation are custom ops with
//! one-pass kernels both ways ([`RmsNorm`], [`SwiGlu`]; the activation as an op of its own for
//! MLPs with biases, and inside the whole MLP's op, `mlp.rs`, otherwise), and the attention
//! core is one op (`attention.rs`) whose softmax rows are here; their f32 exponential is a
//! polynomial that compiles to the CPU's widest vector instructions (chosen at run time by
//! `pulp`). Elsewhere
//! (GPUs, half precision), candle's fused kernel runs forward and [`WithGrad`] attaches the
//! backward pass, written with candle ops, so that every device has it.
//!
//! `tests/model_gradients.rs` checks the gradients of the attribution pass against central
//! finite differences in f64 for every family, `tests/model_parity.rs` against PyTorch autograd,
//! and the unit test below holds the CPU kernels and the fallback against each other.

use super::matrix::MatRef;
use super::pool;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType, D,
};
use num_traits::Float;
use std::sync::{Arc, Mutex};

/// A backward pass: (input, output, gradient of the output) → gradient of the input.
type Backward = Box<dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// Records `y`, computed from `x` by a kernel without a backward pass, as a differentiable
/// function of `x` whose backward pass is `backward`. The forward pass copies `y`.
struct WithGrad {
    name: &'static str,
    backward: Backward,
}

/// A copy of a fresh contiguous storage.
pub(super) fn copy_of<S: BackendStorage>(s: &S, l: &Layout) -> Result<(S, Shape)> {
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
    if cpu_kernels(x) {
        return x
            .contiguous()?
            .apply_op2(&w.contiguous()?, RmsNorm { eps, tap: None });
    }
    rms_norm_attached(x, w, eps)
}

/// [`rms_norm`] of `x + p` (`p` of `x`'s shape; a destination's copy of the residual stream
/// plus its probe) as one op on the CPU, the sum formed row by row: one node of candle's graph
/// where the sum and the norm were two, so that its backward pass keeps one gradient (a
/// zero-filled tensor and a sum) fewer. Both `x` and `p` get the input's gradient.
pub(crate) fn rms_norm_of_sum(x: &Tensor, p: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if cpu_kernels(x) && p.shape() == x.shape() && p.dtype() == x.dtype() {
        let (x, p) = (x.contiguous()?, p.contiguous()?);
        return x.apply_op3(&p, &w.contiguous()?, RmsNormOfSum { eps, tap: None });
    }
    rms_norm(&(x + p)?, w, eps)
}

/// The gradient of a norm's input, kept by the norm's backward pass for whoever reads it: the
/// attribution pass's destinations read theirs here, where a probe variable added to each
/// input would cost a zero-filled tensor forward, and a zero-filled gradient and a sum
/// backward.
#[derive(Default)]
pub(crate) struct GradTap(Mutex<Option<Tensor>>);

impl GradTap {
    fn put(&self, g: Tensor) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
    }

    /// The gradient of the last backward pass through the norm, taken out (`None` before one).
    pub(crate) fn take(&self) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// [`rms_norm`] of `x`, or of `x + patch` (a constant of `x`'s shape), whose backward pass
/// keeps the gradient of that input in `tap`; on the CPU in f32 and f64 for a weight that is not
/// a variable, `None` elsewhere. `x` must be part of the differentiable graph (the tap is
/// filled only by a backward pass that reaches the norm).
pub(crate) fn rms_norm_tapped(
    x: &Tensor,
    patch: Option<&Tensor>,
    w: &Tensor,
    eps: f64,
    tap: &Arc<GradTap>,
) -> Result<Option<Tensor>> {
    let fits = |p: &Tensor| p.shape() == x.shape() && p.dtype() == x.dtype();
    if !cpu_kernels(x) || w.track_op() || !patch.is_none_or(fits) {
        return Ok(None);
    }
    if !x.track_op() {
        candle_core::bail!("a tapped rms-norm: its input is outside the differentiable graph");
    }
    let (x, w, tap) = (x.contiguous()?, w.contiguous()?, Some(Arc::clone(tap)));
    let y = match patch {
        Some(p) => x.apply_op3(&p.contiguous()?, &w, RmsNormOfSum { eps, tap })?,
        None => x.apply_op2(&w, RmsNorm { eps, tap })?,
    };
    Ok(Some(y))
}

/// [`rms_norm`] on any device: candle's fused kernel forward, the backward in candle ops.
#[expect(
    clippy::disallowed_methods,
    reason = "the fused kernel runs forward on a detached input; with_grad attaches the gradient"
)]
fn rms_norm_attached(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
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
#[expect(
    clippy::disallowed_methods,
    reason = "the fused kernel runs forward on a detached input; with_grad attaches the gradient"
)]
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
#[expect(
    clippy::disallowed_methods,
    reason = "the fused kernel runs forward on a detached input; with_grad attaches the gradient"
)]
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    let (cos, neg_sin) = (cos.clone(), sin.neg()?);
    let backward = move |_: &Tensor, _: &Tensor, g: &Tensor| {
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &neg_sin)
    };
    with_grad(x, &y, "rope-with-grad", Box::new(backward))
}

/// The gated activation silu(g)⊙u of a gated MLP, for `gate` and `up` of one shape.
///
/// Backward, with σ = sigmoid(g): ∂L/∂g = dy⊙u⊙σ⊙(1 + g⊙(1 − σ)) and ∂L/∂u = dy⊙g⊙σ.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if cpu_kernels(gate) && gate.dtype() == up.dtype() && gate.shape() == up.shape() {
        return gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu);
    }
    candle_nn::ops::silu(gate)? * up
}

/// Whether the one-pass CPU kernels apply: f32 or f64 on the CPU.
pub(super) fn cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Rows of at most this many elements (or this many elements of an elementwise kernel) go to
/// one task of the [`pool`] together.
const ROWS_PER_TASK_ELEMENTS: usize = 1 << 14;

pub(super) fn rows_per_task(row: usize) -> usize {
    (ROWS_PER_TASK_ELEMENTS / row.max(1)).max(1)
}

/// A kernel's output as CPU storage.
pub(super) trait IntoStorage {
    fn into_storage(self) -> CpuStorage;
}

impl<T: WithDType> IntoStorage for Vec<T> {
    fn into_storage(self) -> CpuStorage {
        T::to_cpu_storage_owned(self)
    }
}

/// Run a kernel on f32 or f64 storage: `$body` with the type alias `$t` set to the storage's
/// element type; its `Vec` becomes the output storage.
macro_rules! by_float {
    ($storage:expr, $op:literal, |$t:ident| $body:block) => {
        match $storage {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body.into_storage()
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body.into_storage()
            }
            _ => candle_core::bail!(concat!($op, ": f32 or f64 only")),
        }
    };
}
pub(super) use by_float;

/// The contiguous elements of a CPU tensor in f32 or f64.
pub(super) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("fused kernel: operand is not contiguous"),
    }
}

/// A contiguous operand as the matrix of rows of its last dimension.
fn rows<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<MatRef<'a, T>> {
    let data = slice(s, l)?;
    let cols = l.dims().last().copied().unwrap_or(1);
    Ok(MatRef::rows(data, data.len() / cols.max(1), cols))
}

/// The contiguous elements of a tensor's storage on the CPU, read through its guard
/// ([`Tensor::storage_and_layout`]).
pub(super) fn storage_slice<'a, T: WithDType>(s: &'a Storage, l: &Layout) -> Result<&'a [T]> {
    match s {
        Storage::Cpu(c) => slice(c, l),
        _ => candle_core::bail!("fused kernel: CPU tensors only"),
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension, as candle's fused kernel computes it,
/// in the input's precision; backward by [`norm_gradient`].
struct RmsNorm {
    eps: f64,
    tap: Option<Arc<GradTap>>,
}

#[inline(always)]
fn rms<T: Float>(x: &[T], eps: f64) -> T {
    let n = T::from(x.len()).unwrap_or_else(T::one);
    (dot(x, x) / n + T::from(eps).unwrap_or_else(T::zero)).sqrt()
}

/// Partial sums that [`dot`] and [`dot3`] keep: one AVX-512 register of f32.
const LANES: usize = 16;

/// ⟨a, b⟩ in [`LANES`] interleaved partial sums, an order that the compiler turns into vector
/// instructions (a single running sum it may not reorder, and leaves scalar). Inline it into
/// code that `pulp` dispatches, so that it is compiled for the CPU's vector width.
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = (ca.remainder().iter().zip(cb.remainder())).fold(T::zero(), |s, (&a, &b)| s + a * b);
    let mut acc = [T::zero(); LANES];
    for (a, b) in ca.zip(cb) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *acc = *acc + a * b;
        }
    }
    acc.iter().fold(tail, |s, &a| s + a)
}

/// Σ a⊙b⊙c in the order of [`dot`].
#[inline(always)]
fn dot3<T: Float>(a: &[T], b: &[T], c: &[T]) -> T {
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail = (ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder()))
    .fold(T::zero(), |s, ((&a, &b), &c)| s + a * b * c);
    let mut acc = [T::zero(); LANES];
    for ((a, b), c) in ca.zip(cb).zip(cc) {
        for (((acc, &a), &b), &c) in acc.iter_mut().zip(a).zip(b).zip(c) {
            *acc = *acc + a * b * c;
        }
    }
    acc.iter().fold(tail, |s, &a| s + a)
}

/// The rows that a norm reads: those of `x`, or of the sum `x + p`, formed a row at a time.
#[derive(Clone, Copy)]
struct Summands<'a, T> {
    x: &'a [T],
    p: Option<&'a [T]>,
}

impl<'a, T: Float> Summands<'a, T> {
    fn of(x: &'a [T], p: Option<&'a [T]>) -> Self {
        Self { x, p }
    }

    /// Row `i` of `n` elements: x's own, or the sum written into `scratch` (n elements).
    #[inline(always)]
    fn row<'s>(&self, i: usize, n: usize, scratch: &'s mut [T]) -> &'s [T]
    where
        'a: 's,
    {
        let x = &self.x[i * n..][..n];
        let Some(p) = self.p else {
            return x;
        };
        let sums = scratch.iter_mut().zip(x).zip(&p[i * n..][..n]);
        sums.for_each(|((s, &x), &p)| *s = x + p);
        scratch
    }

    /// A row's scratch space: none where there is nothing to add.
    fn scratch(&self, n: usize) -> Vec<T> {
        vec![T::zero(); if self.p.is_some() { n } else { 0 }]
    }
}

fn rms_norm_rows<T: WithDType + Float>(x: Summands<T>, w: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let per_task = rows_per_task(n);
    pool::filled(x.x.len(), per_task * n.max(1), |i, [y]| {
        let mut scratch = x.scratch(n);
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for (r, y) in y.chunks_exact_mut(n).enumerate() {
                    let x = x.row(i * per_task + r, n, &mut scratch);
                    let m = rms(x, eps);
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = x / m * w;
                    }
                }
            },
        )
    })
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        norm_storage(self.eps, (s1, l1), None, (s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gx = norm_gradient(self.eps, x, None, w, g)?;
        Ok((Some(kept(self.tap.as_deref(), gx)), None))
    }
}

/// `g`, also put into `tap` where there is one.
fn kept(tap: Option<&GradTap>, g: Tensor) -> Tensor {
    if let Some(tap) = tap {
        tap.put(g.clone());
    }
    g
}

/// The forward pass of [`RmsNorm`] or [`RmsNormOfSum`] on storages: the norm of `x`, or of
/// `x + p`, by the weight `w`.
fn norm_storage(
    eps: f64,
    (sx, lx): (&CpuStorage, &Layout),
    p: Option<(&CpuStorage, &Layout)>,
    (sw, lw): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    let y = by_float!(sx, "rms-norm-cpu", |T| {
        let p = p.map(|(s, l)| slice::<T>(s, l)).transpose()?;
        rms_norm_rows(Summands::of(slice(sx, lx)?, p), slice(sw, lw)?, eps)
    });
    Ok((y, lx.shape().clone()))
}

/// The input gradient of [`RmsNorm`] or [`RmsNormOfSum`] (contiguous operands on the CPU)
/// from the output's gradient `g`, by [`rms_norm_backward_rows`].
fn norm_gradient(
    eps: f64,
    x: &Tensor,
    p: Option<&Tensor>,
    w: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    /// The storage guard of a tensor and its layout.
    type Guard<'a> = (candle_core::StorageRef<'a>, &'a Layout);
    fn rows<T: WithDType + Float>(
        eps: f64,
        [x, w, g]: &[Guard<'_>; 3],
        p: Option<&Guard<'_>>,
    ) -> Result<Vec<T>> {
        let p = p.map(|(s, l)| storage_slice::<T>(s, l)).transpose()?;
        let x = Summands::of(storage_slice(&x.0, x.1)?, p);
        let (w, g) = (storage_slice(&w.0, w.1)?, storage_slice(&g.0, g.1)?);
        Ok(rms_norm_backward_rows(x, w, g, eps))
    }
    let g = g.contiguous()?;
    let guards = [x, w, &g].map(Tensor::storage_and_layout);
    let p = p.map(Tensor::storage_and_layout);
    match x.dtype() {
        DType::F32 => Tensor::from_vec(
            rows::<f32>(eps, &guards, p.as_ref())?,
            x.shape(),
            x.device(),
        ),
        DType::F64 => Tensor::from_vec(
            rows::<f64>(eps, &guards, p.as_ref())?,
            x.shape(),
            x.device(),
        ),
        d => candle_core::bail!("rms-norm backward: f32 or f64 only, not {d:?}"),
    }
}

/// [`RmsNorm`] of the sum of its first two operands (contiguous, of one shape), the weight
/// third; backward by [`norm_gradient`], the same gradient for both summands (for the second
/// only where it is part of the graph: a constant patch gets none).
struct RmsNormOfSum {
    eps: f64,
    tap: Option<Arc<GradTap>>,
}

impl CustomOp3 for RmsNormOfSum {
    fn name(&self) -> &'static str {
        "rms-norm-of-sum-cpu"
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
        norm_storage(self.eps, (s1, l1), Some((s2, l2)), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gx = kept(
            self.tap.as_deref(),
            norm_gradient(self.eps, x, Some(p), w, g)?,
        );
        let gp = p.track_op().then(|| gx.clone());
        Ok((Some(gx), gp, None))
    }
}

/// ∂L/∂x of [`RmsNorm`] from (x, w, g), one pass per row: with m the row's rms and n its length,
/// ∂L/∂x = (g⊙w)/m − x·⟨g⊙w, x⟩/(n·m³); x is the sum of its summands for [`RmsNormOfSum`].
fn rms_norm_backward_rows<T: WithDType + Float>(
    x: Summands<T>,
    w: &[T],
    g: &[T],
    eps: f64,
) -> Vec<T> {
    let n = w.len();
    let nt = T::from(n).unwrap_or_else(T::one);
    let per_task = rows_per_task(n);
    let task = per_task * n.max(1);
    pool::filled(x.x.len(), task, |i, [dx]| {
        let g = &g[i * task..][..dx.len()];
        let mut scratch = x.scratch(n);
        let rows = dx.chunks_exact_mut(n).zip(g.chunks_exact(n)).enumerate();
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for (r, (dx, g)) in rows {
                    let x = x.row(i * per_task + r, n, &mut scratch);
                    let r = rms(x, eps).recip();
                    let c = r * r * r * dot3(x, g, w) / nt;
                    for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                        *dx = r * g * w - x * c;
                    }
                }
            },
        )
    })
}

/// silu(g)⊙u elementwise, one pass; backward by [`SwiGluBackward`].
struct SwiGlu;

/// The exponential the one-pass kernels use: in f32 a polynomial in plain arithmetic, which
/// the compiler turns into vector instructions (libm's `expf` is one scalar call per element);
/// in f64 the standard library's.
pub(super) trait KernelExp: Float {
    fn kernel_exp(self) -> Self;
}

impl KernelExp for f64 {
    #[inline(always)]
    fn kernel_exp(self) -> f64 {
        self.exp()
    }
}

impl KernelExp for f32 {
    /// e^x = 2ⁿ·eʳ with n = round(x/ln 2) and |r| ≤ ln 2 / 2, eʳ from a degree-7 polynomial
    /// (Cephes' `expf` coefficients); within 2 ulp of e^x, 0 below the smallest normal result
    /// (e^−87.3), and saturating at e^88 above.
    #[inline(always)]
    fn kernel_exp(self) -> f32 {
        const LOW: f32 = -87.336_55;
        const HIGH: f32 = 88.0;
        // Adding and subtracting 1.5·2²³ rounds to the nearest integer in any rounding-free
        // vector code.
        const ROUND: f32 = 12_582_912.0;
        let x = self.clamp(LOW, HIGH);
        let k = x * std::f32::consts::LOG2_E + ROUND;
        let n = k - ROUND;
        // ln 2 in two parts, so that n·ln 2 is exact in the first.
        let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
        let p = 1.987_569_1e-4;
        let p = p * r + 1.398_199_9e-3;
        let p = p * r + 8.333_452e-3;
        let p = p * r + 4.166_579_6e-2;
        let p = p * r + 1.666_666_5e-1;
        let p = p * r + 0.5;
        let e = p * r * r + r + 1.0;
        // k's low mantissa bits hold n (two's complement): biased and shifted into the
        // exponent field in integer arithmetic, they give 2ⁿ. This vectorizes, where the cast
        // `n as i32` (saturating, per lane) does not.
        let scale = f32::from_bits(k.to_bits().wrapping_add(127) << 23);
        if self < LOW {
            0.0
        } else {
            e * scale
        }
    }
}

#[inline(always)]
fn sigmoid<T: KernelExp>(g: T) -> T {
    (T::one() + (-g).kernel_exp()).recip()
}

/// silu(g)⊙u for the (rows, cols) matrices `g` and `u` (rows of each contiguous, perhaps the
/// two halves of one matrix's rows), as a contiguous (rows, cols) matrix.
pub(super) fn swiglu_elements<T: WithDType + KernelExp>(g: MatRef<T>, u: MatRef<T>) -> Vec<T> {
    let cols = g.cols;
    let per_task = rows_per_task(cols);
    pool::filled(g.rows * cols, per_task * cols.max(1), |i, [y]| {
        for (r, y) in y.chunks_exact_mut(cols).enumerate() {
            let (g, u) = (g.row(i * per_task + r), u.row(i * per_task + r));
            pulp::Arch::new().dispatch(
                #[inline(always)]
                || {
                    for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                        *y = g * sigmoid(g) * u;
                    }
                },
            )
        }
    })
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = by_float!(s1, "swiglu-cpu", |T| {
            swiglu_elements(rows::<T>(s1, l1)?, rows(s2, l2)?)
        });
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both =
            gate.detach()
                .apply_op3_no_bwd(&up.detach(), &dy.contiguous()?, &SwiGluBackward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// The gradients of [`SwiGlu`] with respect to the gate and the up projection, from
/// (g, u, dy) in one pass, stacked as (2, …).
struct SwiGluBackward;

pub(super) fn swiglu_backward_elements<T: WithDType + KernelExp>(
    g: MatRef<T>,
    u: MatRef<T>,
    dy: &[T],
) -> Vec<T> {
    let (n, cols) = (g.rows * g.cols, g.cols);
    let per_task = rows_per_task(cols);
    let task = per_task * cols.max(1);
    pool::filled(n, task, |i, [dg, du]| {
        let dy = &dy[i * task..][..dg.len()];
        let rows = dg
            .chunks_exact_mut(cols)
            .zip(du.chunks_exact_mut(cols))
            .zip(dy.chunks_exact(cols));
        for (r, ((dg, du), dy)) in rows.enumerate() {
            let row = i * per_task + r;
            let (g, u) = (g.row(row), u.row(row));
            pulp::Arch::new().dispatch(
                #[inline(always)]
                || {
                    let elements = dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dy);
                    for ((((dg, du), &g), &u), &dy) in elements {
                        let s = sigmoid(g);
                        *dg = dy * u * s * (T::one() + g * (T::one() - s));
                        *du = dy * g * s;
                    }
                },
            )
        }
    })
}

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward-cpu"
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
        let both = by_float!(s1, "swiglu-backward-cpu", |T| {
            swiglu_backward_elements(rows::<T>(s1, l1)?, rows(s2, l2)?, slice(s3, l3)?)
        });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((both, Shape::from(dims)))
    }
}

/// softmax(scale·x + mask) of one row of scores `x`, in place, with the row's additive mask.
pub(super) fn softmax_row<T: WithDType + KernelExp>(x: &mut [T], mask: Option<&[T]>, scale: T) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            match mask {
                Some(m) => x.iter_mut().zip(m).for_each(|(x, &m)| *x = scale * *x + m),
                None => x.iter_mut().for_each(|x| *x = scale * *x),
            }
            let mut lanes = [T::neg_infinity(); LANES];
            let rows = x.chunks_exact(LANES);
            let tail = rows
                .remainder()
                .iter()
                .fold(T::neg_infinity(), |a, &v| Float::max(a, v));
            for row in rows {
                lanes
                    .iter_mut()
                    .zip(row)
                    .for_each(|(a, &v)| *a = Float::max(*a, v));
            }
            let max = lanes.iter().fold(tail, |a, &v| Float::max(a, v));
            let mut lanes = [T::zero(); LANES];
            let mut rows = x.chunks_exact_mut(LANES);
            for row in &mut rows {
                for (a, x) in lanes.iter_mut().zip(row) {
                    *x = (*x - max).kernel_exp();
                    *a += *x;
                }
            }
            let mut sum = T::zero();
            for x in rows.into_remainder() {
                *x = (*x - max).kernel_exp();
                sum += *x;
            }
            let sum = lanes.iter().fold(sum, |s, &a| s + a);
            for x in x.iter_mut() {
                *x /= sum;
            }
        },
    );
}

/// The gradient of the scores of one row of [`softmax_row`] from its probabilities `p` and
/// the gradient `g` of them, in place of `g`: scale·p⊙(g − ⟨p, g⟩).
pub(super) fn softmax_backward_row<T: Float>(p: &[T], g: &mut [T], scale: T) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            let dot = dot(p, g);
            for (g, &p) in g.iter_mut().zip(p) {
                *g = scale * p * (*g - dot);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::value_and_grad;
    use candle_core::Device;

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        crate::model::kernels::test_support::assert_close(a, b, 1e-12, what);
    }

    /// The CPU kernels and the device fallback (candle's fused kernels with the backward in
    /// candle ops) agree in value and gradient; the CPU kernels are checked against finite
    /// differences by `tests/model_gradients.rs`.
    /// Rows of 37: two blocks of the kernels' partial sums and a remainder. The norm of a sum
    /// against the norm of the sum formed first.
    #[test]
    fn cpu_kernels_equal_the_device_fallback() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (2, 3, 5, 37), &dev).unwrap();
        let r = Tensor::randn(0f64, 1.0, (2, 3, 5, 37), &dev).unwrap();
        let w = Tensor::randn(1f64, 0.3, 37, &dev).unwrap();
        // candle's composite rms-norm takes its epsilon as an f32: one that f32 holds exactly
        // keeps the two paths equal to rounding (1e-5 would differ by 2.5e-13 inside the root,
        // up to 1e-12 relative on a row of small values).
        const EPS: f64 = 1.0 / 65536.0;
        let (a, b) = (
            value_and_grad(&x, &r, |x| rms_norm(x, &w, EPS)),
            value_and_grad(&x, &r, |x| rms_norm_attached(x, &w, EPS)),
        );
        assert_close(&a.0, &b.0, "rms-norm value");
        assert_close(&a.1, &b.1, "rms-norm gradient");
        // The norm of a sum, differentiated with respect to each summand.
        let p = Tensor::randn(0f64, 0.5, (2, 3, 5, 37), &dev).unwrap();
        for x_first in [true, false] {
            let of_sum = |y: &Tensor, fused: bool| {
                let (a, b) = if x_first { (y, &p) } else { (&p, y) };
                if fused {
                    rms_norm_of_sum(a, b, &w, EPS)
                } else {
                    rms_norm_attached(&(a + b)?, &w, EPS)
                }
            };
            let (a, b) = (
                value_and_grad(&x, &r, |x| of_sum(x, true)),
                value_and_grad(&x, &r, |x| of_sum(x, false)),
            );
            assert_close(&a.0, &b.0, "rms-norm of a sum: value");
            assert_close(&a.1, &b.1, "rms-norm of a sum: gradient");
        }
        // A tapped norm, with and without a patch: its value and gradient, the gradient also in
        // its tap; an input outside the graph is refused.
        let tap = Arc::new(GradTap::default());
        for patch in [Some(&p), None] {
            let tapped = value_and_grad(&x, &r, |x| {
                let y = rms_norm_tapped(x, patch, &w, EPS, &tap)?;
                Ok(y.expect("the CPU kernel applies"))
            });
            let composite = value_and_grad(&x, &r, |x| match patch {
                Some(p) => rms_norm_attached(&(x + p)?, &w, EPS),
                None => rms_norm_attached(x, &w, EPS),
            });
            assert_close(&tapped.0, &composite.0, "tapped rms-norm: value");
            assert_close(&tapped.1, &composite.1, "tapped rms-norm: gradient");
            let kept = tap.take().expect("the backward pass filled the tap");
            let kept = kept.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert_close(&kept, &composite.1, "tapped rms-norm: the tap's gradient");
        }
        assert!(rms_norm_tapped(&x, None, &w, EPS, &tap).is_err());
        // The gated activation, differentiated with respect to the gate and to the up input.
        let other = Tensor::randn(0f64, 1.0, (2, 3, 5, 37), &dev).unwrap();
        let x = (x * 4.0).unwrap();
        for x_is_gate in [true, false] {
            let gated = |x: &Tensor, fused: bool| {
                let (g, u) = if x_is_gate { (x, &other) } else { (&other, x) };
                if fused {
                    swiglu(g, u)
                } else {
                    candle_nn::ops::silu(g)? * u
                }
            };
            let (a, b) = (
                value_and_grad(&x, &r, |x| gated(x, true)),
                value_and_grad(&x, &r, |x| gated(x, false)),
            );
            assert_close(&a.0, &b.0, "swiglu value");
            assert_close(&a.1, &b.1, "swiglu gradient");
        }
    }

    /// The f32 exponential of the kernels: within 2 ulp of the exact value wherever e^x is a
    /// normal f32, 0 below, and NaN for NaN.
    #[test]
    fn the_f32_kernel_exponential_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=2_000_000 {
            let x = -87.3f32 + (88.0 + 87.3) * i as f32 / 2e6;
            let exact = (x as f64).exp();
            let err = (x.kernel_exp() as f64 - exact).abs() / exact;
            worst = worst.max(err);
        }
        assert!(
            worst <= 2.0 * f32::EPSILON as f64,
            "relative error {worst:e}"
        );
        assert_eq!((-88.0f32).kernel_exp(), 0.0);
        assert_eq!(f32::NEG_INFINITY.kernel_exp(), 0.0);
        assert!(f32::NAN.kernel_exp().is_nan());
        assert_eq!(0.0f32.kernel_exp(), 1.0);
    }
}
