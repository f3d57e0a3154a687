//! The products of a frozen linear layer, whose backward pass computes the input gradient only.
//!
//! candle's stock matmul backward always computes the gradient of both operands, so a frozen
//! weight still gets a weight-sized gradient (10× slower and +1.8 GiB on a 0.5B model). Scoring
//! only needs gradients with respect to activations, so the projection here is a custom op whose
//! forward is the ordinary matmul and whose backward returns `grad · W` alone. On the CPU both
//! products call `gemm` directly, into outputs that are not zero-filled first.
//!
//! Training is the one use that wants weight gradients: a layer whose weight is a variable
//! ([`candle_core::Var`], see `Model::trainable`) takes candle's stock matmul instead, whose
//! backward fills in the weight's gradient too, and a frozen layer with a LoRA update the op of
//! `lora.rs`, whose backward fills in the update's (`layer.rs` picks).

use super::fused::storage_slice;
use super::matrix::MatRef;
use super::pool;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use std::ops::Range;

/// `x · wᵀ` for `x` (…, k) and `w` (n, k), or batched `x` (b, m, k) and `w` (b, n, k).
/// Backward returns the gradient of `x` only.
pub(crate) struct InputGradMatmul;

/// Batch, rows, columns and inner dimension of a matmul, as candle's backends take them.
type Bmnk = (usize, usize, usize, usize);

/// The operands of `x · w`, or of `x · wᵀ` when `transposed`: `x` (…, inner) with a weight
/// `w` of rank 2 (its rows flattened, which needs `x` contiguous unless it is a matrix), or
/// batched `x` (b, m, inner) and `w` (b, ·, ·). Returns the product's (b, m, n, k), `x` as a
/// (b, m, k) or (m, k) operand, `w` as a (…, k, n) operand, and the output shape (…, n).
fn operands(
    l1: &Layout,
    l2: &Layout,
    transposed: bool,
    what: &str,
) -> Result<(Bmnk, Layout, Layout, Shape)> {
    let (x, w) = (l1.dims(), l2.dims());
    let incompatible =
        || candle_core::Error::Msg(format!("{what}: incompatible shapes {x:?} and {w:?}"));
    let (&k, lead) = x.split_last().ok_or_else(incompatible)?;
    let (wk, n) = match (w, transposed) {
        ([.., a, b], false) => (*a, *b),
        ([.., a, b], true) => (*b, *a),
        _ => return Err(incompatible()),
    };
    if k != wk {
        return Err(incompatible());
    }
    let (b, m, xl) = match (lead, w.len()) {
        ([m], 2) => (1, *m, l1.clone()),
        (_, 2) if l1.is_contiguous() => {
            let m = lead.iter().product();
            (
                1,
                m,
                Layout::contiguous_with_offset((m, k), l1.start_offset()),
            )
        }
        (_, 2) => candle_core::bail!("{what}: a non-contiguous input of shape {x:?}"),
        ([b, m], 3) if w[0] == *b => (*b, *m, l1.clone()),
        _ => return Err(incompatible()),
    };
    let rank = w.len();
    let wl = if transposed {
        l2.transpose(rank - 2, rank - 1)?
    } else {
        l2.clone()
    };
    let mut shape = lead.to_vec();
    shape.push(n);
    Ok(((b, m, n, k), xl, wl, Shape::from(shape)))
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
        let (bmnk, xl, wl, shape) = operands(l1, l2, true, self.name())?;
        Ok((cpu_matmul(s1, &xl, s2, &wl, bmnk)?, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (bmnk, xl, wl, shape) = operands(l1, l2, true, self.name())?;
        Ok((s1.matmul(s2, bmnk, &xl, &wl)?, shape))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (bmnk, xl, wl, shape) = operands(l1, l2, true, self.name())?;
        Ok((s1.matmul(s2, bmnk, &xl, &wl)?, shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(input_gradient(grad, w)?), None))
    }
}

/// `grad · w`, the input gradient of [`InputGradMatmul`] for its output's gradient `grad`.
pub(super) fn input_gradient(grad: &Tensor, w: &Tensor) -> Result<Tensor> {
    match grad.device() {
        candle_core::Device::Cpu => grad.contiguous()?.apply_op2_no_bwd(w, &GradTimesWeight),
        _ => grad.broadcast_matmul(w),
    }
}

/// `g · w` for the output gradient `g` (…, n) and the weight `w` (n, k), or batched (b, m, n)
/// and (b, n, k): the input gradient of [`InputGradMatmul`], on the CPU.
struct GradTimesWeight;

impl CustomOp2 for GradTimesWeight {
    fn name(&self) -> &'static str {
        "grad-times-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bmnk, gl, wl, shape) = operands(l1, l2, false, self.name())?;
        Ok((cpu_matmul(s1, &gl, s2, &wl, bmnk)?, shape))
    }
}

/// `lhs · rhs` on the CPU for (b, m, n, k) as candle's backends take them, with `rhs_l` the
/// (…, k, n) view. f32 and f64 call `gemm` directly into an output that is never zero-filled
/// (gemm writes every element when told not to read the destination), which candle's matmul
/// does first; other dtypes take candle's matmul.
fn cpu_matmul(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    bmnk: Bmnk,
) -> Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(gemm_into(a, l1, b, l2, bmnk)?),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(gemm_into(a, l1, b, l2, bmnk)?),
        _ => s1.matmul(s2, bmnk, l1, l2)?,
    })
}

/// `dst = a · b`, or `dst += a · b` when `read_dst`, for `dst` the (a.rows, b.cols) matrix with
/// rows `dst_rs` elements apart, through `gemm`; f32 and f64 only.
///
/// The output's columns are split into up to `parts` blocks (one per thread of the [`pool`] for
/// the callers here), each block one gemm call on one thread of the pool: gemm copies (packs)
/// the part of `b` that its block reads, so each part of a weight is packed once, by the thread
/// that uses it. (gemm's own split divides the rows of `a` among its threads instead, which
/// packs all of `b` either on one thread while the others wait or on every thread.) A product
/// too small for gemm to split, and one inside work that is already on the pool, runs on its
/// caller's thread.
///
/// # Safety
/// `dst` is valid for writes of that matrix (dst_rs ≥ b.cols), and initialised when `read_dst`.
unsafe fn gemm_raw<T: WithDType>(
    dst: *mut T,
    dst_rs: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    read_dst: bool,
    parts: usize,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if !matches!(T::DTYPE, candle_core::DType::F32 | candle_core::DType::F64) {
        candle_core::bail!("gemm product: f32 or f64 only, not {:?}", T::DTYPE);
    }
    if b.rows != k || !a.fits() || !b.fits() {
        candle_core::bail!(
            "gemm product: operands ({m}, {k}) and ({}, {n}) do not fit together or reach past \
             their storage",
            b.rows
        );
    }
    if m * n == 0 {
        return Ok(());
    }
    // Below gemm's own threshold for threads (48·48·256 multiply-adds) a product runs on one.
    let small = m.saturating_mul(n).saturating_mul(k) < gemm::get_threading_threshold();
    let parts = if small {
        1
    } else {
        parts.min(n / SPLIT_COLUMNS).max(1)
    };
    let width = n.div_ceil(parts).next_multiple_of(SPLIT_COLUMNS);
    let dst = SendPtr(dst);
    let blocks = (0..n).step_by(width).map(|j| j..n.min(j + width)).collect();
    let by_columns = m <= FEW_ROWS && b.rs == 1 && b.cs != 1 && !read_dst;
    let conflicting = m > FEW_ROWS && conflicting_columns(b);
    pool::for_each(blocks, |cols: Range<usize>| {
        let start = cols.start;
        let block = b.columns(cols);
        debug_assert!(block.fits());
        // SAFETY: the blocks' columns are disjoint, so no two threads write one element; each
        // block lies inside `dst` and inside `b` (its first column is the start of its data, and
        // it reaches no further than b's last column did).
        unsafe {
            if by_columns {
                gemm_block_by_columns(dst.at(start), dst_rs, a, block);
            } else if conflicting {
                gemm_block_spaced(dst.at(start), dst_rs, a, block, read_dst);
            } else {
                gemm_block(dst.at(start), (1, dst_rs), a, block, read_dst);
            }
        };
    });
    Ok(())
}

/// Whether `b`'s columns are contiguous and a whole number of KiB apart. For a product with a
/// row-major output gemm copies such a `b` into its panels by reading 64 columns at once; at
/// those strides the 64 lie in at most four of the L1 cache's 64 sets and evict each other, and
/// the product runs 1.2–1.5× slower (BENCHMARKS.md). In f32 every weight read as its transpose
/// whose input width is a multiple of 256 is one (most models': 512, 1024, 1536, 3584, 4096), and
/// so are the keys of the attention core where the key heads are that wide together.
fn conflicting_columns<T>(b: MatRef<T>) -> bool {
    b.rs == 1
        && b.rows > 0
        && b.cols > 1
        && (b.cs * std::mem::size_of::<T>()).is_multiple_of(CONFLICT_STRIDE)
}

/// The column stride in bytes (and its multiples) at which [`conflicting_columns`] copies `b`.
const CONFLICT_STRIDE: usize = 1024;

/// Rows of `b` (the product's inner dimension) that [`gemm_block_spaced`] copies at a time: the
/// depth gemm itself takes at a time.
const SPACED_DEPTH: usize = 512;

/// Columns of `b` that [`gemm_block_spaced`] copies at a time: with [`SPACED_DEPTH`] a copy of
/// 2 MiB in f32, whatever the product's width (a transposed unembedding has 10⁵ columns), and
/// wide enough that gemm's copy of `a`, made again for each block, costs little beside it.
const SPACED_COLUMNS: usize = 1024;

/// [`gemm_block`] with a row-major output for `b` whose columns [conflict](conflicting_columns):
/// each block of up to [`SPACED_DEPTH`] rows by [`SPACED_COLUMNS`] columns of `b` is copied into
/// a scratch matrix whose columns lie a cache line further apart (64 bytes more than a whole
/// number of KiB: their lines then fall into every set), and gemm reads the copy. The copy costs
/// a read and a write of `b`; the conflicts cost more (BENCHMARKS.md).
///
/// # Safety
/// As for [`gemm_block`] with `(cs, rs)` = `(1, dst_rs)`.
unsafe fn gemm_block_spaced<T: WithDType>(
    dst: *mut T,
    dst_rs: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    read_dst: bool,
) {
    let pad = 64 / std::mem::size_of::<T>();
    let mut scratch: Vec<T> =
        Vec::with_capacity(b.cols.min(SPACED_COLUMNS) * (a.cols.min(SPACED_DEPTH) + pad));
    for start in (0..b.cols).step_by(SPACED_COLUMNS) {
        let columns = b.columns(start..b.cols.min(start + SPACED_COLUMNS));
        for (i, first) in (0..a.cols).step_by(SPACED_DEPTH).enumerate() {
            let depth = first..a.cols.min(first + SPACED_DEPTH);
            let block = columns.row_block(depth.clone());
            let cs = block.rows + pad;
            scratch.clear();
            for j in 0..block.cols {
                scratch.extend_from_slice(&block.data[j * block.cs..][..block.rows]);
                scratch.resize((j + 1) * cs, T::zero());
            }
            let spaced = MatRef {
                data: &scratch,
                rows: block.rows,
                cols: block.cols,
                rs: 1,
                cs,
            };
            // SAFETY: the caller's output, from its column `start` on; `a`'s columns `depth`
            // against the copy of the block, which holds it at (k, j) = k + j·cs; after the
            // first depth the output holds the sum so far and is read.
            unsafe {
                gemm_block(
                    dst.add(start),
                    (1, dst_rs),
                    a.columns(depth),
                    spaced,
                    read_dst || i > 0,
                )
            };
        }
    }
}

/// A product of at most this many rows whose right operand is a weight read as its transpose
/// (its columns contiguous) goes through [`gemm_block_by_columns`]: in the attribution pass, the
/// head's forward product, a dozen scored positions against the whole unembedding.
const FEW_ROWS: usize = 16;

/// [`gemm_block`] (`dst = a · b`) for `a` of few rows and `b` with contiguous columns, through
/// a column-major scratch matrix: gemm then reads `b` as it lies, where for a row-major output it
/// would first copy `b` into its panels by a strided gather, for a dozen multiply-adds per
/// element copied (BENCHMARKS.md); the scratch is then written into `dst` a column at a time.
///
/// # Safety
/// As for [`gemm_block`], with `read_dst` false.
unsafe fn gemm_block_by_columns<T: WithDType>(
    dst: *mut T,
    dst_rs: usize,
    a: MatRef<T>,
    b: MatRef<T>,
) {
    let (m, n) = (a.rows, b.cols);
    let mut scratch: Vec<T> = Vec::with_capacity(m * n);
    // SAFETY: the caller's operands; the scratch holds the (m, n) matrix column-major (element
    // (i, j) at j·m + i), and with `read_dst` false gemm writes every element of it.
    unsafe {
        gemm_block(scratch.as_mut_ptr(), (m, 1), a, b, false);
        scratch.set_len(m * n);
    }
    for (j, column) in scratch.chunks_exact(m.max(1)).enumerate() {
        for (i, &x) in column.iter().enumerate() {
            // SAFETY: (i, j) lies inside the caller's (m, n) matrix with rows dst_rs apart.
            unsafe { *dst.add(i * dst_rs + j) = x };
        }
    }
}

/// The narrowest block of columns [`gemm_raw`] gives a thread: a multiple of the widest SIMD
/// vector of f32 (AVX-512), so that every block but the last fills gemm's kernels.
const SPLIT_COLUMNS: usize = 16;

/// A pointer that threads writing disjoint parts of one buffer share.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only where each thread writes elements no other thread touches.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for Send.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer `offset` elements on.
    ///
    /// # Safety
    /// As for `pointer::add`.
    unsafe fn at(self, offset: usize) -> *mut T {
        // SAFETY: the caller's.
        unsafe { self.0.add(offset) }
    }
}

/// One gemm call on this thread: `dst = a · b` (or `+=` when `read_dst`) for `dst` the (a.rows,
/// b.cols) matrix whose element (i, j) lies at i·rs + j·cs for `(cs, rs)`.
///
/// # Safety
/// The operands passed [`gemm_raw`]'s checks; `dst` is valid for writes of that matrix and
/// initialised when `read_dst`.
unsafe fn gemm_block<T: WithDType>(
    dst: *mut T,
    (dst_cs, dst_rs): (usize, usize),
    a: MatRef<T>,
    b: MatRef<T>,
    read_dst: bool,
) {
    // SAFETY: the caller's; gemm supports f32 and f64, and with `read_dst` false it writes
    // every output element without reading it.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            read_dst,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if read_dst { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `a · b` into a new row-major (a.rows, b.cols) matrix, the output not zero-filled first.
pub(super) fn matmul<T: WithDType>(a: MatRef<T>, b: MatRef<T>) -> Result<Vec<T>> {
    matmul_beside(a, &[b])
}

/// The products `a · b` of every `b` side by side, [a·b₀ | a·b₁ | …], in a new row-major matrix
/// of a.rows rows, the output not zero-filled first.
pub(super) fn matmul_beside<T: WithDType>(a: MatRef<T>, bs: &[MatRef<T>]) -> Result<Vec<T>> {
    let width: usize = bs.iter().map(|b| b.cols).sum();
    let len = a.rows * width;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if a.cols == 0 || len == 0 {
        out.resize(len, T::zero());
        return Ok(out);
    }
    let mut start = 0;
    for b in bs {
        // SAFETY: `out` has room for the a.rows rows of `width` elements; this product's
        // columns start at `start` of each row and end at or before its `width`.
        unsafe {
            gemm_raw(
                out.as_mut_ptr().add(start),
                width,
                a,
                *b,
                false,
                pool::threads(),
            )?
        };
        start += b.cols;
    }
    // SAFETY: the products' columns tile every row, and gemm writes each element without
    // reading it (`read_dst` false), so all `len` elements are initialised.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`, for `dst` the row-major (a.rows, b.cols)
/// matrix.
pub(super) fn product<T: WithDType>(
    dst: &mut [T],
    a: MatRef<T>,
    b: MatRef<T>,
    accumulate: bool,
) -> Result<()> {
    if dst.len() != a.rows * b.cols {
        candle_core::bail!(
            "gemm product: {} output elements for a ({}, {}) product",
            dst.len(),
            a.rows,
            b.cols
        );
    }
    product_rows(dst, b.cols, a, b, accumulate)
}

/// [`product`] into the (a.rows, b.cols) matrix at the start of `dst` whose rows lie `dst_rs`
/// elements apart (columns of a wider matrix).
pub(super) fn product_rows<T: WithDType>(
    dst: &mut [T],
    dst_rs: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    accumulate: bool,
) -> Result<()> {
    let (m, n) = (a.rows, b.cols);
    if dst_rs < n || (m > 0 && dst.len() < (m - 1) * dst_rs + n) {
        candle_core::bail!(
            "gemm product: {} output elements do not hold ({m}, {n}) with rows {dst_rs} apart",
            dst.len()
        );
    }
    if a.cols == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs)
                .for_each(|row| row[..n].fill(T::zero()));
        }
        return Ok(());
    }
    // SAFETY: `dst` holds the (m, n) matrix with rows dst_rs apart, initialised.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst_rs, a, b, accumulate, pool::threads()) }
}

fn gemm_into<T: WithDType>(
    lhs: &[T],
    l1: &Layout,
    rhs: &[T],
    l2: &Layout,
    (b, m, n, k): Bmnk,
) -> Result<Vec<T>> {
    let len = b * m * n;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return Ok(out);
    }
    if k == 0 {
        out.resize(len, T::zero());
        return Ok(out);
    }
    for i in 0..b {
        let a = MatRef::of_batch(lhs, l1, (m, k), i)?;
        let w = MatRef::of_batch(rhs, l2, (k, n), i)?;
        // SAFETY: the output has room for b·m·n elements, matrix `i` at i·m·n.
        unsafe {
            gemm_raw(
                out.as_mut_ptr().add(i * m * n),
                n,
                a,
                w,
                false,
                pool::threads(),
            )?
        };
    }
    // SAFETY: gemm wrote all `len` elements above (with `read_dst` false, every element of
    // each matrix).
    unsafe { out.set_len(len) };
    Ok(out)
}

/// Elements of each operand read per chunk of [`inner_products`]: the chunks of all operands
/// fit a core's L2 cache together at the sizes of attribution (about 180 operands).
const INNER_PRODUCT_CHUNK: usize = 2048;

/// The (a.len(), b.len()) matrix of inner products ⟨aᵢ, bⱼ⟩ over all elements (every operand has
/// the same number), computed in `dtype`, f32 or f64: the score product of edge attribution.
///
/// On the CPU the operands are read in chunks of elements: each chunk of every operand is
/// copied into one small matrix per side, which stays in cache for its product, and chunks run
/// in parallel, each product on one thread; the (n, elements) stacks of all the operands, which
/// are tens of megabytes, are never built. Elsewhere, the stacks and one matmul.
pub fn inner_products(a: &[Tensor], b: &[Tensor], dtype: candle_core::DType) -> Result<Tensor> {
    let flat = |ts: &[Tensor]| -> Result<Vec<Tensor>> {
        ts.iter()
            .map(|t| t.to_dtype(dtype)?.flatten_all()?.contiguous())
            .collect()
    };
    let (a, b) = (flat(a)?, flat(b)?);
    let Some(first) = a.first().or(b.first()) else {
        return Tensor::zeros((0, 0), dtype, &candle_core::Device::Cpu);
    };
    if first.device().is_cpu() && !a.is_empty() && !b.is_empty() {
        match dtype {
            candle_core::DType::F32 => return chunked_inner_products::<f32>(&a, &b),
            candle_core::DType::F64 => return chunked_inner_products::<f64>(&a, &b),
            _ => {}
        }
    }
    let stack = |ts: &[Tensor]| match ts {
        [] => Tensor::zeros((0, first.elem_count()), dtype, first.device()),
        _ => Tensor::stack(ts, 0),
    };
    stack(&a)?.matmul(&stack(&b)?.t()?)
}

/// [`inner_products`] on the CPU, for flat contiguous operands of element type `T`.
fn chunked_inner_products<T: WithDType>(a: &[Tensor], b: &[Tensor]) -> Result<Tensor> {
    let guards: Vec<_> = a.iter().chain(b).map(Tensor::storage_and_layout).collect();
    let slices = guards
        .iter()
        .map(|(s, l)| storage_slice::<T>(s, l))
        .collect::<Result<Vec<&[T]>>>()?;
    let (sa, sb) = slices.split_at(a.len());
    let len = sa[0].len();
    if slices.iter().any(|s| s.len() != len) {
        candle_core::bail!("inner products: operands of different sizes");
    }
    let (na, nb) = (sa.len(), sb.len());
    let chunks = (0..len)
        .step_by(INNER_PRODUCT_CHUNK)
        .map(|c| c..len.min(c + INNER_PRODUCT_CHUNK))
        .collect();
    let parts = pool::try_map(chunks, |range: Range<usize>| {
        let stack = |xs: &[&[T]]| {
            let mut m = Vec::with_capacity(xs.len() * range.len());
            xs.iter()
                .for_each(|x| m.extend_from_slice(&x[range.clone()]));
            m
        };
        let (ma, mb) = (stack(sa), stack(sb));
        let mut out = vec![T::zero(); na * nb];
        let w = range.len();
        product(
            &mut out,
            MatRef::rows(&ma, na, w),
            MatRef::rows(&mb, nb, w).t(),
            false,
        )?;
        Ok::<_, candle_core::Error>(out)
    })?;
    let mut sum = vec![T::zero(); na * nb];
    for part in parts {
        sum.iter_mut().zip(&part).for_each(|(x, &y)| *x += y);
    }
    Tensor::from_vec(sum, (na, nb), &candle_core::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{assert_close, value_and_grad};
    use candle_core::{DType, Device};

    /// The chunked inner products equal one matmul of the stacked operands: over several chunks
    /// and a partial one, from a transposed and a half-precision operand, in f32 and f64.
    #[test]
    fn inner_products_equal_the_stacked_product() {
        let dev = Device::Cpu;
        let len = 2 * INNER_PRODUCT_CHUNK + 37;
        let rand = |n: usize| -> Vec<Tensor> {
            (0..n)
                .map(|_| Tensor::randn(0f32, 1.0, (len / 37, 37), &dev).unwrap())
                .collect()
        };
        let (mut a, b) = (rand(5), rand(3));
        a.push(a[0].t().unwrap());
        a.push(a[1].to_dtype(DType::F16).unwrap());
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let flat = |ts: &[Tensor]| {
                let ts: Vec<Tensor> = ts
                    .iter()
                    .map(|t| t.to_dtype(dtype).unwrap().flatten_all().unwrap())
                    .collect();
                Tensor::stack(&ts, 0).unwrap()
            };
            let want = flat(&a).matmul(&flat(&b).t().unwrap()).unwrap();
            let got = inner_products(&a, &b, dtype).unwrap();
            assert_eq!(got.dims(), [7, 3]);
            let v = |t: &Tensor| -> Vec<f64> {
                let t = t.to_dtype(DType::F64).unwrap();
                t.flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_close(
                &v(&got),
                &v(&want),
                tol,
                &format!("{dtype:?} inner products"),
            );
        }
        assert_eq!(inner_products(&a, &[], DType::F32).unwrap().dims(), [7, 0]);
        let other = Tensor::zeros(len + 1, DType::F32, &dev).unwrap();
        assert!(inner_products(&a, &[other], DType::F32).is_err());
    }

    /// A product split into blocks of columns equals the plain sum of products, written and
    /// accumulated, for splits into up to five blocks (a last block narrower than the others,
    /// and fewer columns than blocks), from a transposed operand, into rows that lie further
    /// apart than their length (leaving the elements between them alone), with many rows and
    /// with few ([`FEW_ROWS`]), f32 and f64.
    #[test]
    fn products_split_by_columns_equal_the_plain_product() {
        fn check<T: WithDType>(tol: f64) {
            // Large enough for gemm's threshold of threads where n > 16; every row of `a` and
            // every column of `b` differs from the others (k is not a multiple of 7 or 11).
            // Few rows (5) take the column-major path where the output is not read. A depth of
            // 5 KiB of elements puts b's columns a whole number of KiB apart: more than 16 rows
            // then take the spaced copy, in three depths (two for f64), and in two blocks of
            // columns where they are more than SPACED_COLUMNS on one thread.
            let spaced = 5 * 1024 / std::mem::size_of::<T>();
            for (m, n, k) in [
                (64, 1, 300),
                (64, 16, 300),
                (64, 33, 300),
                (64, 100, 300),
                (5, 1, 300),
                (5, 33, 300),
                (5, 400, 300),
                (64, 33, spaced),
                (20, 100, spaced),
                (20, SPACED_COLUMNS + 40, spaced),
                (5, 33, spaced),
            ] {
                let a: Vec<T> = (0..m * k)
                    .map(|i| T::from_f64((i % 7) as f64 - 3.0))
                    .collect();
                let b: Vec<T> = (0..k * n)
                    .map(|i| T::from_f64((i % 11) as f64 * 0.5))
                    .collect();
                let (a, b) = (MatRef::rows(&a, m, k), MatRef::rows(&b, n, k).t());
                assert_eq!(conflicting_columns(b), k == spaced && n > 1);
                let want = |init: f64, i: usize, j: usize| {
                    let dot: f64 = (0..k)
                        .map(|l| {
                            a.data[i * a.rs + l * a.cs].to_f64()
                                * b.data[l * b.rs + j * b.cs].to_f64()
                        })
                        .sum();
                    init + dot
                };
                for (parts, read_dst, gap) in
                    (1..=5).flat_map(|p| [(p, false, 0), (p, true, 0), (p, false, 3), (p, true, 3)])
                {
                    let (init, rs) = (if read_dst { 2.0 } else { f64::NAN }, n + gap);
                    // Elements between the rows (`gap` of them) hold -1 and must keep it.
                    let mut dst: Vec<T> = (0..m * rs)
                        .map(|e| T::from_f64(if e % rs < n { init } else { -1.0 }))
                        .collect();
                    // SAFETY: `dst` holds the (m, n) matrix with rows rs apart, initialised.
                    unsafe { gemm_raw(dst.as_mut_ptr(), rs, a, b, read_dst, parts).unwrap() };
                    let base = if read_dst { init } else { 0.0 };
                    for (e, &got) in dst.iter().enumerate() {
                        let w = if e % rs < n {
                            want(base, e / rs, e % rs)
                        } else {
                            -1.0
                        };
                        assert!(
                            (got.to_f64() - w).abs() <= tol * w.abs().max(1.0),
                            "{:?} n {n}, {parts} parts, read_dst {read_dst}, gap {gap}: element \
                             {e} is {} instead of {w}",
                            T::DTYPE,
                            got.to_f64()
                        );
                    }
                }
            }
        }
        check::<f32>(1e-6);
        check::<f64>(1e-14);
    }

    /// The product through `gemm` agrees with candle's matmul, in value and input gradient,
    /// for single and batched operands, rows of a rank-4 input, f32 and f64, and a strided
    /// (transposed) input.
    #[test]
    fn the_gemm_product_equals_candles_matmul() {
        let dev = Device::Cpu;
        let cases: [(&[usize], &[usize]); 4] = [
            (&[37, 19], &[23, 19]),
            (&[3, 37, 19], &[3, 23, 19]),
            (&[1, 130, 70], &[1, 65, 70]),
            (&[2, 3, 37, 19], &[23, 19]),
        ];
        for dtype in [DType::F32, DType::F64] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let rand = |s: &[usize]| {
                let t = Tensor::randn(0f64, 1.0, s, &dev).unwrap();
                t.to_dtype(dtype).unwrap()
            };
            for (xs, ws) in cases {
                let what = format!("{dtype:?} {xs:?}·{ws:?}ᵀ");
                let (x, w) = (rand(xs), rand(ws));
                let (a, b) = (x.rank() - 2, x.rank() - 1);
                let mut ys = xs.to_vec();
                ys[b] = ws[ws.len() - 2];
                let r = rand(&ys);
                let wt = w.transpose(w.rank() - 2, w.rank() - 1).unwrap();
                let (y0, g0) = value_and_grad(&x, &r, |x| x.broadcast_matmul(&wt));
                let (y, g) = value_and_grad(&x, &r, |x| x.apply_op2(&w, InputGradMatmul));
                assert_close(&y, &y0, tol, &format!("{what} value"));
                assert_close(&g, &g0, tol, &format!("{what} gradient"));
                let xt = x.transpose(a, b).unwrap().contiguous().unwrap();
                if x.rank() > w.rank() {
                    // Rows are flattened only from a contiguous input; another is refused.
                    let strided = xt.transpose(a, b).unwrap();
                    assert!(strided.apply_op2(&w, InputGradMatmul).is_err());
                    continue;
                }
                // The same input read through a transposed layout, against candle's matmul
                // on that layout (both gradients are with respect to the transposed copy).
                let (y0, g0) =
                    value_and_grad(&xt, &r, |xt| xt.transpose(a, b)?.broadcast_matmul(&wt));
                let (y, g) = value_and_grad(&xt, &r, |xt| {
                    let x = xt.transpose(a, b)?;
                    assert!(!x.is_contiguous());
                    x.apply_op2(&w, InputGradMatmul)
                });
                assert_close(&y, &y0, tol, &format!("{what} strided value"));
                assert_close(&g, &g0, tol, &format!("{what} strided gradient"));
            }
        }
    }
}
