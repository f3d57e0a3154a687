//! Memory planning: what scoring one sequence costs, and whether it fits before any weight is
//! read.
//!
//! The differentiable pass keeps every intermediate tensor of the forward graph alive until the
//! backward pass ends, and candle's backward pass also keeps, until it returns, the gradient of
//! every operand that is not itself part of the graph (a broadcast bias gets a full-size
//! gradient). The estimate counts both, tensor by tensor, from the model code (`transformer.rs`,
//! `fused.rs`); BENCHMARKS.md compares it with the measured peak resident memory.

use super::config::{ModelConfig, NormPlacement, QkNorm};
use super::particulars::Activation;
use crate::model::error::{ModelError, Result};
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::Path;

/// What will be scored: the longest sequence (prompt + K − 1 answer tokens), the scored
/// positions K, and the graph level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScorePlan {
    pub seq_len: usize,
    pub scored: usize,
    pub heads: bool,
}

impl ScorePlan {
    /// A block-level plan for `seq_len` tokens scoring the last 5 % of them (as `inspect` and
    /// `bench` do).
    pub fn block(seq_len: usize) -> Self {
        Self {
            seq_len,
            scored: (seq_len / 20).max(1),
            heads: false,
        }
    }
}

/// Memory for scoring one sequence, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryEstimate {
    pub seq_len: usize,
    pub compute_dtype_bytes: usize,
    pub weights: u64,
    /// The forward graph kept for the backward pass, the gradients alive at its peak, the score
    /// product and the process itself.
    pub activations: u64,
    pub total: u64,
}

/// The process without any tensor: code, tokenizer and allocator (13 MB measured for `inspect`
/// of a small model; large vocabularies add tens of MB).
const RUNTIME_BYTES: u64 = 48 << 20;

impl MemoryEstimate {
    /// Estimate for `plan` in the compute dtype `dtype`, on the CPU.
    pub fn new(cfg: &ModelConfig, plan: &ScorePlan, dtype: DType) -> Self {
        Self::on(cfg, plan, dtype, &Device::Cpu)
    }

    /// Estimate for `plan` in the compute dtype `dtype` on `device`. The arithmetic saturates:
    /// sizes beyond any machine come out as `u64::MAX` bytes rather than overflowing.
    pub fn on(cfg: &ModelConfig, plan: &ScorePlan, dtype: DType, device: &Device) -> Self {
        let b = n(dtype.size_in_bytes());
        let (t, k) = (n(plan.seq_len), n(plan.scored));
        let (d, hd, l) = (n(cfg.hidden_size), n(cfg.head_dim), n(cfg.num_layers));
        let (h, kvh) = (n(cfg.num_heads), n(cfg.num_kv_heads));
        let (q, kv) = (h * hd, kvh * hd);
        // Residual copies feeding q, k and v: one each, or one per head at head level.
        let (nq, nkv) = if plan.heads { (h, kvh) } else { (n(1), n(1)) };
        let norms = nq + n(2) * nkv + n(1);
        // Forward, per token and layer, in bytes. A fused kernel with a closed-form backward
        // (`fused.rs`) keeps its input and its output, and where it runs candle's kernel (the
        // rotary embedding; the norms and the softmax on GPUs and in half precision) also the
        // copy that enters the graph. Each norm: the residual copy and its normed output (and
        // copy); q and k: projected, rotated, copied; v (copied to contiguous at block level);
        // repeated k/v for grouped queries; attention: scores and probabilities (and copy);
        // merged heads and their contiguous copy; block outputs and residual sums; MLP gate, up,
        // silu and product.
        let cpu_kernels = device.is_cpu() && matches!(dtype, DType::F32 | DType::F64);
        let fused = n(if cpu_kernels { 2 } else { 3 });
        // Post-norm blocks read the probed residual copies as they are and norm their two
        // outputs instead.
        let mut fwd = match cfg.norms {
            NormPlacement::Pre => norms * fused * b * d,
            NormPlacement::Post => norms * b * d + n(2) * fused * b * d,
            // Gemma norms both what a block reads and what it adds.
            NormPlacement::Sandwich => (norms + n(2)) * fused * b * d,
        };
        // Soft-capped scores keep three more tensors of the scores' size.
        if cfg.particulars.attn_softcap.is_some() {
            fwd = fwd + n(3) * b * h * t;
        }
        fwd = fwd + n(3) * b * (q + kv) + b * kv * n(if plan.heads { 1 } else { 2 });
        if cfg.num_heads != cfg.num_kv_heads {
            fwd = fwd + n(2) * b * q;
        }
        fwd = fwd + fused * b * h * t + n(2) * b * q + n(4) * b * d;
        if plan.heads {
            fwd = fwd + b * h * d;
        }
        match cfg.qk_norm {
            // At head level each head's path projects and norms the whole q (k) projection
            // and keeps its own slice.
            Some(QkNorm::Whole) if plan.heads => fwd = fwd + fused * b * (h * q + kvh * kv),
            Some(_) => fwd = fwd + (fused - 1) * b * (q + kv),
            None => {}
        }
        // Gradients of operands outside the graph, which candle's backward pass computes in
        // full and keeps to its end: the q/k/v biases.
        let mut kept = n(0);
        if cfg.qkv_bias {
            fwd = fwd + b * (q + n(2) * kv);
            kept = b * (q + n(2) * kv);
        }
        // Per token: every layer's graph and kept gradients, probes and their gradients, sources
        // and destinations stacked in f32 for the score product.
        let destinations = l * norms + n(1);
        let probes = n(2) * b * d * destinations;
        let sources = n(1) + l * (n(1) + if plan.heads { h } else { n(1) });
        let acc = if b.0 < 4 { b + n(4) } else { b };
        let stacks = acc * d * (sources + destinations);
        let per_token = l * (fwd + kept) + mlps(cfg, b) + probes + stacks;
        // Logits of the K scored positions, widened, log-softmax and its backward.
        let logits = n(6 * 4) * k * n(cfg.vocab_size);
        // The allocator's high-water mark exceeds the live tensors (backward temporaries,
        // fragmentation): count 10 %.
        let live = per_token * t + logits;
        // (At most u64::MAX / 10 before the runtime is added: no overflow.)
        let activations = (live * n(11)).0 / 10 + RUNTIME_BYTES;
        let weights = (n(cfg.num_params()) * b).0;
        Self {
            seq_len: plan.seq_len,
            compute_dtype_bytes: dtype.size_in_bytes(),
            weights,
            activations,
            total: weights.saturating_add(activations),
        }
    }
}

/// Bytes per token of every layer's MLP in a pass kept for the backward pass, `b` bytes an
/// element: gate, up, silu and product of a dense one (GeGLU, a composite of elementwise ops,
/// five intermediates of the gate's width more); a routed one's router and chosen experts
/// ([`super::moe::MoeConfig::activations_per_token`]).
fn mlps(cfg: &ModelConfig, b: Bytes) -> Bytes {
    let widths = n(if cfg.particulars.activation == Activation::GeluTanh {
        9
    } else {
        4
    });
    let dense_layer = widths * b * n(cfg.intermediate_size);
    let Some(moe) = &cfg.moe else {
        return n(cfg.num_layers) * dense_layer;
    };
    let routed = (0..cfg.num_layers).filter(|&l| moe.routes(l)).count();
    let dense = n(cfg.num_layers - routed) * dense_layer;
    dense + n(routed) * b * n(moe.activations_per_token(cfg.hidden_size))
}

/// A byte count whose arithmetic saturates at `u64::MAX`, a size no device has.
#[derive(Debug, Clone, Copy)]
struct Bytes(u64);

fn n(x: usize) -> Bytes {
    Bytes(u64::try_from(x).unwrap_or(u64::MAX))
}

impl std::ops::Add for Bytes {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::Sub<u64> for Bytes {
    type Output = Self;

    fn sub(self, rhs: u64) -> Self {
        Self(self.0.saturating_sub(rhs))
    }
}

impl std::ops::Mul for Bytes {
    type Output = Self;

    fn mul(self, rhs: Self) -> Self {
        Self(self.0.saturating_mul(rhs.0))
    }
}

/// Refuse, before reading any weight, a model whose weights (and, with a plan, one scoring pass)
/// exceed the memory available on the device: Linux's `MemAvailable` on the CPU, the free memory
/// of a CUDA device; elsewhere (other systems, Metal) nothing is checked.
pub(crate) fn check_fits(
    cfg: &ModelConfig,
    (dtype, device, plan): (DType, &Device, Option<&ScorePlan>),
    path: &Path,
) -> Result<()> {
    let Some(available) = available(device) else {
        return Ok(());
    };
    let dtype_name = dtype.as_str();
    let smaller = "a smaller model or a machine with more memory";
    let (needed, plan, fix) = match plan {
        Some(plan) => {
            let e = MemoryEstimate::on(cfg, plan, dtype, device);
            let what = format!(
                "scoring {} tokens in {dtype_name} needs {:.1} GiB ({:.1} GiB of weights + {:.1} GiB \
                 for the pass)",
                plan.seq_len,
                gib(e.total),
                gib(e.weights),
                gib(e.activations)
            );
            let fix = format!(
                "score shorter sequences (a smaller --cut or shorter prompts), run on a GPU \
                 (--device) with --dtype bf16, or use {smaller}"
            );
            (e.total, what, fix)
        }
        None => {
            let weights = (n(cfg.num_params()) * n(dtype.size_in_bytes())).0;
            let what = format!("the weights need {:.1} GiB in {dtype_name}", gib(weights));
            (weights, what, format!("use {smaller}"))
        }
    };
    if needed <= available {
        return Ok(());
    }
    Err(ModelError::TooLarge {
        path: path.to_owned(),
        needed,
        available,
        plan,
        fix,
    })
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The memory free for tensors on `device`, when it can be read.
pub fn available(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => cpu_available(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, _total) = d.cuda_stream().context().mem_get_info().ok()?;
            Some(free as u64)
        }
        _ => None,
    }
}

fn cpu_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}
