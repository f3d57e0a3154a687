//! The attention core of the attribution pass as one op on the CPU: the rotary embedding of
//! queries and keys, grouped-query scores, the masked softmax and the weighted sum of values,
//! with the head outputs merged, forward and backward in closed form.
//!
//! Written with candle ops, the core is about twenty nodes per layer (reshapes, transposes,
//! copies, the key/value repeat, two products, rope and softmax), and candle's backward pass
//! gives each a zero-filled gradient and a sum, and each product the gradients of both of its
//! operands through transposed copies. Here the forward pass keeps the rotated queries and keys
//! and the probabilities, and the backward pass is, per head with P the probabilities, S the
//! scaled scores and dz the gradient of the head's output:
//!
//! dP = dz·vᵀ, dS = scale·P⊙(dP − ⟨P, dP⟩ per row), dq = rope⁻¹(dS·k), dk = rope⁻¹(dSᵀ·q),
//! dv = Pᵀ·dz,
//!
//! with the key and value gradients summed over the query heads that share them. The products
//! with the scores go by blocks of rows (and of keys), each reaching only the keys its rows see:
//! under a causal mask that skips about half of them, and of the softmax. Each block of each
//! head is one task on the pool (each product on one thread), the costliest first; the key and
//! value gradients go by blocks of keys of each key/value head, summed over its query heads
//! within the task. The rows of a batch may each have their own rotary tables and mask (packed
//! or padded rows). Elsewhere (GPUs, half precision, a key/value cache) the composite path
//! runs, which `tests/model_parity.rs` and `tests/model_gradients.rs` also cover; the unit test
//! below holds the two together.

use super::fused::{
    cpu_kernels, rows_per_task, softmax_backward_row, softmax_row, storage_slice, KernelExp,
};
use super::linear::{product, product_rows};
use super::matrix::MatRef;
use super::pool;
use candle_core::{
    CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType,
};
use num_traits::Float;
use std::ops::Range;
use std::sync::OnceLock;

/// The merged head outputs z (b, t, heads·head_dim) of
/// softmax(scale·rope(q)·rope(k)ᵀ + mask)·v for `q` with `heads` = (query heads, key/value
/// heads) and `k`, `v` with the second, each either (b, t, n·head_dim) as the projections give
/// it or (b, n, t, head_dim), in any layout; rotary tables (t, head_dim/2) shared by the rows,
/// or (b, t, head_dim/2) one per row, and an additive mask (t, t), or (b, 1, t, t) one per row
/// (rows packed or padded each their own way). `None` where the op does not apply and the
/// caller takes the composite path.
#[expect(
    clippy::too_many_arguments,
    reason = "the operands and parameters of one attention"
)]
pub(in crate::model) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (nq, nkv): (usize, usize),
    cos: &Tensor,
    sin: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Option<Tensor>> {
    let (Some(qd), Some(kd), Some(vd)) = (
        head_dims(q.dims(), nq),
        head_dims(k.dims(), nkv),
        head_dims(v.dims(), nkv),
    ) else {
        return Ok(None);
    };
    let [b, _, t, hd] = qd;
    let applies = cpu_kernels(q)
        && [k, v, cos, sin].iter().all(|x| x.dtype() == q.dtype())
        && kd == [b, nkv, t, hd]
        && vd == kd
        && nq % nkv == 0
        && hd % 2 == 0
        && (cos.dims() == [t, hd / 2] || cos.dims() == [b, t, hd / 2])
        && sin.dims() == cos.dims()
        && mask.is_none_or(|m| {
            m.dtype() == q.dtype() && (m.dims() == [t, t] || m.dims() == [b, 1, t, t])
        });
    if !applies {
        return Ok(None);
    }
    let op = AttentionCore {
        heads: (nq, nkv),
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        mask: mask.map(Tensor::contiguous).transpose()?,
        scale,
        saved: OnceLock::new(),
    };
    q.apply_op3(k, v, op).map(Some)
}

/// (b, n, t, head_dim) of an operand of `n` heads given as (b, t, n·head_dim) or as
/// (b, n, t, head_dim); `None` for any other shape, or no heads.
fn head_dims(dims: &[usize], n: usize) -> Option<[usize; 4]> {
    match *dims {
        [b, t, w] if n > 0 && w % n == 0 => Some([b, n, t, w / n]),
        [b, m, t, hd] if m == n && n > 0 => Some([b, n, t, hd]),
        _ => None,
    }
}

/// The op behind [`attention`]; the forward pass keeps what the backward pass reads.
struct AttentionCore {
    heads: (usize, usize),
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
    scale: f64,
    saved: OnceLock<Saved>,
}

/// The rotated queries (b, heads, t, hd) and keys (b, kv_heads, t, hd) and the probabilities
/// (b, heads, t, t) of a forward pass, and the keys each row sees (one [`Visible`] for every
/// batch row, or one per row when each has its own mask).
struct Saved {
    q: CpuStorage,
    k: CpuStorage,
    p: CpuStorage,
    visible: Vec<Visible>,
}

/// Sizes of one call: batch, query heads, key/value heads, positions, head dimension.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    nq: usize,
    nkv: usize,
    t: usize,
    hd: usize,
}

impl Dims {
    fn of(q: &Shape, (nq, nkv): (usize, usize)) -> Result<Self> {
        let Some([b, _, t, hd]) = head_dims(q.dims(), nq) else {
            candle_core::bail!("attention core: a query of shape {q:?} for {nq} heads");
        };
        Ok(Self { b, nq, nkv, t, hd })
    }

    /// The key/value head of query head `h` (of a batch row's heads).
    fn kv_of(&self, h: usize) -> usize {
        h / (self.nq / self.nkv)
    }
}

/// An operand of `n` heads read through its layout as (b, n, t, hd): head `i` of the flattened
/// (b·n) heads as a (t, hd) matrix.
struct Heads<'a, T> {
    data: &'a [T],
    offset: usize,
    stride: [usize; 4],
    n: usize,
}

impl<'a, T> Heads<'a, T> {
    fn new(s: &'a CpuStorage, l: &Layout, n: usize) -> Result<Self>
    where
        T: WithDType,
    {
        let (dims, stride) = match (head_dims(l.dims(), n), l.stride()) {
            (Some(dims), &[sb, st, sc]) => (dims, [sb, dims[3] * sc, st, sc]),
            (Some(dims), &[sb, sh, st, sc]) => (dims, [sb, sh, st, sc]),
            _ => candle_core::bail!(
                "attention core: an operand of shape {:?} for {n} heads",
                l.dims()
            ),
        };
        let data = s.as_slice::<T>()?;
        let reach: usize = dims
            .iter()
            .zip(stride)
            .map(|(&n, s)| n.saturating_sub(1) * s)
            .sum();
        if dims.contains(&0) || l.start_offset() + reach >= data.len() {
            candle_core::bail!("attention core: an empty operand, or strides past its storage");
        }
        Ok(Self {
            data,
            offset: l.start_offset(),
            stride,
            n,
        })
    }

    fn head(&self, i: usize, t: usize, hd: usize) -> MatRef<'a, T> {
        let [sb, sh, st, sd] = self.stride;
        let start = self.offset + (i / self.n) * sb + (i % self.n) * sh;
        MatRef {
            data: self.data.get(start..).unwrap_or_default(),
            rows: t,
            cols: hd,
            rs: st,
            cs: sd,
        }
    }
}

/// Rows, and keys, of the scores that one product computes: a block of rows reads the keys up
/// to the furthest one any of its rows sees, so that under a causal mask about half of every
/// product of the scores is skipped.
const BLOCK: usize = 64;

/// Which keys the rows of a (t, t) additive mask see (those whose mask is finite), in blocks of
/// [`BLOCK`] rows and of as many keys.
struct Visible {
    /// Per row: one past the last key it sees (t for a row that sees none, which is then
    /// computed in full, as without blocks).
    reach: Vec<usize>,
}

impl Visible {
    fn of<T: Float>(mask: Option<&[T]>, t: usize) -> Self {
        let reach = match mask {
            Some(m) => m
                .chunks_exact(t.max(1))
                .map(|row| row.iter().rposition(|m| m.is_finite()).map_or(t, |j| j + 1))
                .collect(),
            None => vec![t; t],
        };
        Self { reach }
    }

    /// One per batch row of a mask (b, 1, t, t) (`per_row`), or one for all rows.
    fn of_rows<T: Float>(mask: Option<&[T]>, t: usize, per_row: bool) -> Vec<Self> {
        match mask {
            Some(m) if per_row => m
                .chunks_exact((t * t).max(1))
                .map(|m| Self::of(Some(m), t))
                .collect(),
            _ => vec![Self::of(mask, t)],
        }
    }

    fn blocks(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let t = self.reach.len();
        (0..t).step_by(BLOCK).map(move |s| s..t.min(s + BLOCK))
    }

    /// Blocks of rows, each with one past the furthest key any of its rows sees.
    fn rows(&self) -> impl Iterator<Item = (Range<usize>, usize)> + '_ {
        self.blocks().map(|rows| {
            let seen = self.reach[rows.clone()].iter().copied().max().unwrap_or(0);
            (rows, seen)
        })
    }

    /// Blocks of keys, each with the first row that sees any of them (t when none does).
    fn keys(&self) -> impl Iterator<Item = (Range<usize>, usize)> + '_ {
        let t = self.reach.len();
        self.blocks().map(move |keys| {
            let first = self.reach.iter().position(|&r| r > keys.start);
            (keys, first.unwrap_or(t))
        })
    }
}

/// One head's operands in the backward pass, each (t, hd) but the probabilities P (t, t): the
/// rotated queries and keys, the values and the gradient dz of the head's output.
struct HeadOperands<'a, T> {
    p: MatRef<'a, T>,
    query: MatRef<'a, T>,
    key: MatRef<'a, T>,
    value: MatRef<'a, T>,
    dz: MatRef<'a, T>,
}

/// One pool task: a block of rows (or of keys) of one head of the flattened (b·n) heads, the
/// block's reach as [`Visible`] gives it, and the block's rows of each of `N` outputs.
struct Task<'a, T, const N: usize> {
    head: usize,
    block: Range<usize>,
    reach: usize,
    out: [&'a mut [T]; N],
}

/// The tasks of every block of every one of `heads` heads: each takes its block's rows of every
/// output (output i holds `t` rows of `widths[i]` elements per head, heads one after another).
/// `blocks` holds the blocks of every batch row, or one list per batch row of `per_row` heads
/// (the same ranges, their own reach). The costliest (by `cost` of a block and its reach) go
/// first, so that the pool's threads end together.
fn tasks<'a, T, const N: usize>(
    blocks: &[Vec<(Range<usize>, usize)>],
    (heads, per_row, t): (usize, usize, usize),
    outputs: [&'a mut [T]; N],
    widths: [usize; N],
    cost: impl Fn(&Range<usize>, usize) -> usize,
) -> Vec<Task<'a, T, N>> {
    let mut parts: Vec<_> = outputs
        .into_iter()
        .zip(widths)
        .map(|(o, w)| {
            let w = w.max(1);
            o.chunks_mut(t * w)
                .flat_map(move |head| head.chunks_mut(BLOCK * w))
        })
        .collect();
    let mut out = Vec::with_capacity(heads * blocks[0].len());
    for head in 0..heads {
        let row = if blocks.len() == 1 {
            0
        } else {
            head / per_row.max(1)
        };
        for (block, reach) in &blocks[row] {
            out.push(Task {
                head,
                block: block.clone(),
                reach: *reach,
                out: std::array::from_fn(|i| parts[i].next().unwrap_or_default()),
            });
        }
    }
    out.sort_by_key(|task| std::cmp::Reverse(cost(&task.block, task.reach)));
    out
}

/// A block of rows of one head's gradients: dS = scale·P⊙(dP − ⟨P, dP⟩ per row) for
/// dP = dz·vᵀ into `ds` (the block's rows of the head's (t, t) dS; past `seen` P, and so dS,
/// is 0), and the queries' gradient rope⁻¹(dS·k) into `dq`; `cos` and `sin` from the block's
/// first row on.
fn row_gradients<T: WithDType + Float>(
    h: &HeadOperands<T>,
    (rows, seen): (Range<usize>, usize),
    scale: T,
    [ds, dq]: [&mut [T]; 2],
    (cos, sin): (&[T], &[T]),
) -> Result<()> {
    let (n, t, hd) = (rows.len(), h.p.cols, h.key.cols);
    let dz = h.dz.row_block(rows.clone());
    product_rows(ds, t, dz, h.value.row_block(0..seen).t(), false)?;
    for (r, g) in ds.chunks_exact_mut(t).enumerate() {
        softmax_backward_row(&h.p.row(rows.start + r)[..seen], &mut g[..seen], scale);
    }
    let mut rotated = vec![T::zero(); n * hd];
    let dsr = MatRef::rows(ds, n, t).columns(0..seen);
    product(&mut rotated, dsr, h.key.row_block(0..seen), false)?;
    rotate(dq, MatRef::rows(&rotated, n, hd), cos, sin, true);
    Ok(())
}

/// A block of keys of one key/value head's gradients, summed over the query heads `group` that
/// share it (each with its (t, t) dS), each read from the first row that sees the block (`first`) on: the values'
/// Pᵀ·dz into `dv` and the keys' rope⁻¹(dSᵀ·q) into `dk`; `cos` and `sin` from the block's
/// first key on.
fn key_gradients<'a, T: WithDType + Float + 'a>(
    group: impl Iterator<Item = (HeadOperands<'a, T>, MatRef<'a, T>)>,
    (keys, first): (Range<usize>, usize),
    [dk, dv]: [&mut [T]; 2],
    (cos, sin): (&[T], &[T]),
) -> Result<()> {
    let (n, hd) = (keys.len(), dk.len() / keys.len().max(1));
    let mut rotated = vec![T::zero(); n * hd];
    for (i, (h, ds)) in group.enumerate() {
        let seen = first..h.p.rows;
        let pt = h.p.row_block(seen.clone()).columns(keys.clone()).t();
        product(dv, pt, h.dz.row_block(seen.clone()), i > 0)?;
        let dst = ds.row_block(seen.clone()).columns(keys.clone()).t();
        product(&mut rotated, dst, h.query.row_block(seen), i > 0)?;
    }
    rotate(dk, MatRef::rows(&rotated, n, hd), cos, sin, true);
    Ok(())
}

/// Rotate the (t, hd) matrix `x` into `out` (row-major) by the rotary tables, halves
/// convention: (x₁, x₂) → (x₁·cos − x₂·sin, x₂·cos + x₁·sin); `inverse` rotates back (−sin).
fn rotate<T: Float>(out: &mut [T], x: MatRef<T>, cos: &[T], sin: &[T], inverse: bool) {
    let half = x.cols / 2;
    for (i, row) in out.chunks_exact_mut(x.cols).enumerate() {
        let (c, s) = (&cos[i * half..][..half], &sin[i * half..][..half]);
        let at = |j: usize| x.data[i * x.rs + j * x.cs];
        for j in 0..half {
            let (x1, x2) = (at(j), at(j + half));
            let s = if inverse { -s[j] } else { s[j] };
            row[j] = x1 * c[j] - x2 * s;
            row[j + half] = x2 * c[j] + x1 * s;
        }
    }
}

/// Heads (b, n, t, hd) merged into rows (b, t, n·hd): out[b, i, h·hd + j] = x[b, h, i, j].
fn merge_heads<T: Copy + Send + Sync>(x: &[T], n: usize, t: usize, hd: usize) -> Vec<T> {
    let mut out = x.to_vec();
    let rows = rows_per_task(n * hd);
    let tasks = out.chunks_mut(rows * n * hd).enumerate().collect();
    pool::for_each(tasks, |(task, out): (usize, &mut [T])| {
        for (r, out) in out.chunks_exact_mut(n * hd).enumerate() {
            let row = task * rows + r;
            let (b, i) = (row / t, row % t);
            for (h, out) in out.chunks_exact_mut(hd).enumerate() {
                out.copy_from_slice(&x[((b * n + h) * t + i) * hd..][..hd]);
            }
        }
    });
    out
}

/// A gradient (b, n, t, hd) in the shape of its operand `x`: heads merged into rows for a
/// (b, t, n·hd) one.
fn shaped<T: WithDType>(g: Vec<T>, x: &Tensor, n: usize, hd: usize) -> Result<Tensor> {
    let g = if x.rank() == 3 {
        merge_heads(&g, n, x.dim(1)?, hd)
    } else {
        g
    };
    Tensor::from_vec(g, x.shape(), x.device())
}

/// The contiguous f32 or f64 elements of a tensor on the CPU.
fn elements<T: WithDType>(x: &Tensor) -> Result<Vec<T>> {
    x.flatten_all()?.to_vec1::<T>()
}

/// The rotary tables, each (t, hd/2) or (b, t, hd/2), as rows of f32 or f64.
struct Rotary<T> {
    cos: Vec<T>,
    sin: Vec<T>,
    half: usize,
    /// Elements of one batch row's table (0: one table for every row).
    per_row: usize,
}

impl<T: WithDType> Rotary<T> {
    fn of(op: &AttentionCore, hd: usize) -> Result<Self> {
        let (cos, sin) = (elements(&op.cos)?, elements(&op.sin)?);
        let per_row = match op.cos.dims() {
            [_, t, half] => t * half,
            _ => 0,
        };
        Ok(Self {
            cos,
            sin,
            half: hd / 2,
            per_row,
        })
    }

    /// Batch row `b`'s tables from position `row` on, as [`rotate`] reads them for a block from
    /// that row.
    fn from(&self, b: usize, row: usize) -> (&[T], &[T]) {
        let at = b * self.per_row + row * self.half;
        (
            self.cos.get(at..).unwrap_or_default(),
            self.sin.get(at..).unwrap_or_default(),
        )
    }
}

impl AttentionCore {
    fn forward<T: WithDType + KernelExp>(
        &self,
        (sq, lq): (&CpuStorage, &Layout),
        (sk, lk): (&CpuStorage, &Layout),
        (sv, lv): (&CpuStorage, &Layout),
    ) -> Result<(Vec<T>, Saved)> {
        let d = Dims::of(lq.shape(), self.heads)?;
        let Dims { b, nq, nkv, t, hd } = d;
        let rotary = Rotary::<T>::of(self, hd)?;
        let mask = self.mask.as_ref().map(elements::<T>).transpose()?;
        let (q, k, v) = (
            Heads::<T>::new(sq, lq, nq)?,
            Heads::<T>::new(sk, lk, nkv)?,
            Heads::<T>::new(sv, lv, nkv)?,
        );
        let per_row = self.mask.as_ref().is_some_and(|m| m.rank() == 4);
        let visible = Visible::of_rows(mask.as_deref(), t, per_row);
        let mstride = if per_row { t * t } else { 0 };
        let mut kr = vec![T::zero(); b * nkv * t * hd];
        let all: Vec<_> = visible[0].blocks().map(|rows| (rows, t)).collect();
        let rotations = tasks(&[all], (b * nkv, nkv, t), [&mut kr], [hd], |_, _| 0);
        pool::for_each(
            rotations,
            |Task {
                 head,
                 block,
                 out: [kr],
                 ..
             }| {
                let (c, s) = rotary.from(head / nkv, block.start);
                rotate(kr, k.head(head, t, hd).row_block(block), c, s, false);
            },
        );
        let mut qr = vec![T::zero(); b * nq * t * hd];
        // Keys past a block's reach keep probability 0 (the buffer starts zeroed).
        let mut p = vec![T::zero(); b * nq * t * t];
        let mut zh = vec![T::zero(); b * nq * t * hd];
        let scale = T::from(self.scale).unwrap_or_else(T::one);
        let blocks: Vec<Vec<_>> = visible.iter().map(|v| v.rows().collect()).collect();
        let outputs = [&mut qr[..], &mut p[..], &mut zh[..]];
        let work = tasks(
            &blocks,
            (b * nq, nq, t),
            outputs,
            [hd, t, hd],
            |rows, seen| rows.len() * seen,
        );
        pool::try_map(work, |task: Task<T, 3>| {
            let Task {
                head: i,
                block: rows,
                reach: seen,
                out: [qr, p, z],
            } = task;
            let (r0, n) = (rows.start, rows.len());
            let (c, s) = rotary.from(i / nq, r0);
            rotate(qr, q.head(i, t, hd).row_block(rows), c, s, false);
            let g = (i / nq) * nkv + d.kv_of(i % nq);
            let key = MatRef::rows(&kr[g * t * hd..][..seen * hd], seen, hd);
            product_rows(p, t, MatRef::rows(qr, n, hd), key.t(), false)?;
            for (r, row) in p.chunks_exact_mut(t).enumerate() {
                let m = mask
                    .as_ref()
                    .map(|m| &m[(i / nq) * mstride + (r0 + r) * t..][..seen]);
                softmax_row(&mut row[..seen], m, scale);
            }
            let probs = MatRef::rows(p, n, t).columns(0..seen);
            product(z, probs, v.head(g, t, hd).row_block(0..seen), false)
        })?;
        let z = merge_heads(&zh, nq, t, hd);
        let saved = Saved {
            q: T::to_cpu_storage_owned(qr),
            k: T::to_cpu_storage_owned(kr),
            p: T::to_cpu_storage_owned(p),
            visible,
        };
        Ok((z, saved))
    }

    /// The gradients of q, k and v (each contiguous, in the shape of its operand) from the
    /// gradient `dz` of the merged output: dS and the queries' gradient by blocks of rows of
    /// each query head, then the keys' and values' by blocks of keys of each key/value head.
    fn backward<T: WithDType + Float>(
        &self,
        [q, k, v]: [&Tensor; 3],
        dz: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let saved = self.saved.get().ok_or_else(|| {
            candle_core::Error::Msg("attention core: backward pass before the forward pass".into())
        })?;
        let d = Dims::of(q.shape(), self.heads)?;
        let Dims { b, nq, nkv, t, hd } = d;
        let rotary = Rotary::<T>::of(self, hd)?;
        let dz = dz.contiguous()?;
        let (dz_storage, dz_layout) = dz.storage_and_layout();
        let dz_all = storage_slice::<T>(&dz_storage, dz_layout)?;
        let (v_storage, v_layout) = v.storage_and_layout();
        let Storage::Cpu(v_s) = &*v_storage else {
            candle_core::bail!("attention core: CPU tensors only");
        };
        let v_heads = Heads::<T>::new(v_s, v_layout, nkv)?;
        let [qr, kr, p] = [&saved.q, &saved.k, &saved.p].map(CpuStorage::as_slice::<T>);
        let (qr, kr, p) = (qr?, kr?, p?);
        let scale = T::from(self.scale).unwrap_or_else(T::one);
        let operands = |i: usize| {
            let (bi, h) = (i / nq, i % nq);
            let g = bi * nkv + d.kv_of(h);
            HeadOperands {
                p: MatRef::rows(&p[i * t * t..][..t * t], t, t),
                query: MatRef::rows(&qr[i * t * hd..][..t * hd], t, hd),
                key: MatRef::rows(&kr[g * t * hd..][..t * hd], t, hd),
                value: v_heads.head(g, t, hd),
                dz: MatRef {
                    data: dz_all.get((bi * t * nq + h) * hd..).unwrap_or_default(),
                    rows: t,
                    cols: hd,
                    rs: nq * hd,
                    cs: 1,
                },
            }
        };
        let mut ds = vec![T::zero(); b * nq * t * t];
        let mut dq = vec![T::zero(); b * nq * t * hd];
        let blocks: Vec<Vec<_>> = saved.visible.iter().map(|v| v.rows().collect()).collect();
        let outputs = [&mut ds[..], &mut dq[..]];
        let work = tasks(&blocks, (b * nq, nq, t), outputs, [t, hd], |rows, seen| {
            rows.len() * seen
        });
        pool::try_map(work, |task: Task<T, 2>| {
            let tables = rotary.from(task.head / nq, task.block.start);
            row_gradients(
                &operands(task.head),
                (task.block, task.reach),
                scale,
                task.out,
                tables,
            )
        })?;
        let mut dk = vec![T::zero(); b * nkv * t * hd];
        let mut dv = vec![T::zero(); b * nkv * t * hd];
        let blocks: Vec<Vec<_>> = saved.visible.iter().map(|v| v.keys().collect()).collect();
        let outputs = [&mut dk[..], &mut dv[..]];
        let work = tasks(
            &blocks,
            (b * nkv, nkv, t),
            outputs,
            [hd, hd],
            |keys, first| keys.len() * (t - first),
        );
        let group = nq / nkv;
        pool::try_map(work, |task: Task<T, 2>| {
            let (bi, j) = (task.head / nkv, task.head % nkv);
            let heads = (j * group..(j + 1) * group).map(|h| {
                let i = bi * nq + h;
                (operands(i), MatRef::rows(&ds[i * t * t..][..t * t], t, t))
            });
            let tables = rotary.from(bi, task.block.start);
            key_gradients(heads, (task.block, task.reach), task.out, tables)
        })?;
        Ok((
            shaped(dq, q, nq, hd)?,
            shaped(dk, k, nkv, hd)?,
            shaped(dv, v, nkv, hd)?,
        ))
    }
}

impl CustomOp3 for AttentionCore {
    fn name(&self) -> &'static str {
        "attention-core-cpu"
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
        let (z, saved) = match s1 {
            CpuStorage::F32(_) => {
                let (z, saved) = self.forward::<f32>((s1, l1), (s2, l2), (s3, l3))?;
                (CpuStorage::F32(z), saved)
            }
            CpuStorage::F64(_) => {
                let (z, saved) = self.forward::<f64>((s1, l1), (s2, l2), (s3, l3))?;
                (CpuStorage::F64(z), saved)
            }
            _ => candle_core::bail!("attention-core-cpu: f32 or f64 only"),
        };
        if self.saved.set(saved).is_err() {
            candle_core::bail!("attention-core-cpu: one op ran forward twice");
        }
        let Dims { b, nq, t, hd, .. } = Dims::of(l1.shape(), self.heads)?;
        Ok((z, Shape::from((b, t, nq * hd))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        dz: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = match q.dtype() {
            DType::F32 => self.backward::<f32>([q, k, v], dz)?,
            DType::F64 => self.backward::<f64>([q, k, v], dz)?,
            d => candle_core::bail!("attention-core-cpu: f32 or f64 only, not {d:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{assert_close, value_and_grad};
    use crate::model::Kernels;
    use candle_core::{Device, D};

    /// The core written with candle's differentiable ops.
    fn composite(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        scale: f64,
    ) -> Result<Tensor> {
        let (b, nq, t, hd) = q.dims4()?;
        let rep = nq / k.dim(1)?;
        // The composite rotation: candle's `rope_slow`, or per row for tables (b, t, hd/2).
        let rope = |x: &Tensor| Kernels::Differentiable.rope(&x.contiguous()?, cos, sin);
        let (q, k) = (rope(q)?, rope(k)?);
        let repeat = |x: &Tensor| -> Result<Tensor> {
            let (b, n, t, hd) = x.dims4()?;
            Tensor::cat(&vec![x; rep], 2)?.reshape((b, n * rep, t, hd))
        };
        let (k, v) = (repeat(&k)?, repeat(&v.contiguous()?)?);
        let mut s = (q.matmul(&k.t()?)? * scale)?;
        if let Some(m) = mask {
            s = s.broadcast_add(m)?;
        }
        let e = s
            .broadcast_sub(&s.max_keepdim(D::Minus1)?.detach())?
            .exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        p.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nq * hd))
    }

    /// Masks (2, 1, t, t), one per row: row 0 the causal `full`, row 1 two sequences packed
    /// after a shared prefix of 2 (the second sees the prefix and itself).
    fn per_row_masks(full: &Tensor) -> Tensor {
        let t = full.dim(0).unwrap();
        let second = (t + 2) / 2;
        let sees = |r: usize, c: usize| c <= r && (c < 2 || r < second || c >= second);
        let m: Vec<f64> = (0..t * t)
            .map(|i| {
                if sees(i / t, i % t) {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let m = Tensor::from_vec(m, (1, 1, t, t), full.device()).unwrap();
        let m = m.to_dtype(full.dtype()).unwrap();
        Tensor::cat(&[&full.reshape((1, 1, t, t)).unwrap(), &m], 0).unwrap()
    }

    /// The op equals the composite in value and in the gradient of each of q, k and v: grouped
    /// and plain heads, with and without a (windowed causal) mask, with a mask and rotary tables
    /// for each row (packed rows), a batch of two, operands as
    /// the projections give them (b, t, n·hd) and per head (b, n, t, hd), contiguous and
    /// through a transposed layout, in f64 and f32.
    #[test]
    fn the_attention_core_equals_the_composite() {
        let dev = Device::Cpu;
        let (b, hd) = (2, 8);
        // 150 tokens: blocks of rows and keys, the last one partial.
        for (t, dtype) in [(6, DType::F64), (6, DType::F32), (150, DType::F64)] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
            let rand = |s: &[usize]| {
                let x = Tensor::randn(0f64, 1.0, s, &dev).unwrap();
                x.to_dtype(dtype).unwrap()
            };
            let angles: Vec<f64> = (0..t * hd / 2)
                .map(|i| (i / (hd / 2)) as f64 * 0.7f64.powi((i % (hd / 2)) as i32))
                .collect();
            let angles = Tensor::from_vec(angles, (t, hd / 2), &dev).unwrap();
            let cos = angles.cos().unwrap().to_dtype(dtype).unwrap();
            let sin = angles.sin().unwrap().to_dtype(dtype).unwrap();
            // Causal, attending to at most the `w` latest keys.
            let causal = |w: usize| {
                let m: Vec<f64> = (0..t * t)
                    .map(|i| {
                        let (r, c) = (i / t, i % t);
                        if c <= r && r - c < w {
                            0.0
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let m = Tensor::from_vec(m, (t, t), &dev).unwrap();
                m.to_dtype(dtype).unwrap()
            };
            let (window, full) = (causal(4), causal(t));
            let packed = per_row_masks(&full);
            let rows_angles = Tensor::cat(&[&angles, &(&angles * 0.5).unwrap()], 0)
                .unwrap()
                .reshape((2, t, hd / 2))
                .unwrap();
            let row_cos = rows_angles.cos().unwrap().to_dtype(dtype).unwrap();
            let row_sin = rows_angles.sin().unwrap().to_dtype(dtype).unwrap();
            for (nq, nkv) in [(4, 2), (3, 3)] {
                // q as a projection gives it, (b, t, heads·hd); k per head, (b, heads, t, hd);
                // v per head through a transposed layout of (b, t, heads, hd).
                let q = rand(&[b, t, nq * hd]);
                let k = rand(&[b, nkv, t, hd]);
                let v = rand(&[b, t, nkv, hd]);
                let r = rand(&[b, t, nq * hd]);
                for (mask, kind, (cos, sin)) in [
                    (None, "none", (&cos, &sin)),
                    (Some(&window), "window", (&cos, &sin)),
                    (Some(&full), "causal", (&cos, &sin)),
                    (Some(&packed), "per row", (&row_cos, &row_sin)),
                ] {
                    let what = format!("{dtype:?} t {t}, {nq}/{nkv} heads, mask {kind}");
                    let run = |q: &Tensor, k: &Tensor, v: &Tensor, fused: bool| {
                        let v = v.transpose(1, 2)?;
                        if fused {
                            let z = attention(q, k, &v, (nq, nkv), cos, sin, mask, 0.4)?;
                            Ok(z.expect("the op applies"))
                        } else {
                            let q = q.reshape((b, t, nq, hd))?.transpose(1, 2)?;
                            composite(&q, k, &v, (cos, sin), mask, 0.4)
                        }
                    };
                    for (x, name) in [(&q, "q"), (&k, "k"), (&v, "v")] {
                        let with = |x: &Tensor, fused: bool| match name {
                            "q" => run(x, &k, &v, fused),
                            "k" => run(&q, x, &v, fused),
                            _ => run(&q, &k, x, fused),
                        };
                        let (y, g) = value_and_grad(x, &r, |x| with(x, true));
                        let (y0, g0) = value_and_grad(x, &r, |x| with(x, false));
                        assert_close(&y, &y0, tol, &format!("{what}: value"));
                        assert_close(&g, &g0, tol, &format!("{what}: gradient of {name}"));
                    }
                }
            }
        }
    }

    /// Where the op does not apply it says so, and the caller takes the composite path.
    #[test]
    fn the_attention_core_declines_what_it_does_not_cover() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        let tables = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
        let per_row = Tensor::zeros((2, 3, 2), DType::F32, &dev).unwrap();
        let mask = Tensor::zeros((3, 5), DType::F32, &dev).unwrap();
        let half = x.to_dtype(DType::F16).unwrap();
        let half_tables = tables.to_dtype(DType::F16).unwrap();
        let run = |x: &Tensor, heads, tables: &Tensor, mask| {
            attention(x, x, x, heads, tables, tables, mask, 1.0)
                .unwrap()
                .is_some()
        };
        assert!(run(&x, (2, 2), &tables, None));
        assert!(!run(&x, (2, 2), &per_row, None));
        assert!(!run(&x, (2, 2), &tables, Some(&mask)));
        assert!(!run(&half, (2, 2), &half_tables, None));
        assert!(!run(&x, (3, 3), &tables, None));
        let rows = Tensor::zeros((1, 3, 8), DType::F32, &dev).unwrap();
        assert!(run(&rows, (2, 2), &tables, None));
        assert!(!run(&rows, (3, 3), &tables, None));
    }
}
