//! The one decoder implementation behind every family and every use.
//!
//! Three kinds of kernels: [`Kernels::Fast`] (candle's fused rms-norm, softmax and rotary
//! kernels) for generation, [`Kernels::FusedGrad`] (the fused kernels with closed-form backward
//! passes, `fused.rs`, and on the CPU the whole attention core as one op, `attention.rs`) for
//! attribution and training, and [`Kernels::Differentiable`] (the `_slow` twins of candle's
//! fused kernels, exact by construction) as the reference the tests hold the others to:
//! candle's fused kernels are built without a backward pass and silently cut the graph.
//!
//! For attribution the same code runs with *probes* on every destination input (each block's
//! q, k and v inputs separately, each MLP input, and the final residual before the norm), so
//! that one backward pass yields ∂L/∂(input of every node): a zero-valued variable added to the
//! input, or, on the CPU, the input's norm keeping its gradient itself (a tap, [`Probe`]).

use super::kernels::composite::{gelu_tanh, soft_cap};
use super::kernels::fused::GradTap;
use super::kernels::{Linear, LoraPair};
use super::load::weights::TensorStore;
use super::load::{Activation, ModelConfig, NormPlacement, QkNorm, RopeScaling};
use super::lora::LoraSettings;
use super::masks::EdgeMasks;
use super::moe::{Ffn, Gated, MlpKernels};
use super::packing::Rows;
use crate::node::{self, Destination, Heads, Node, Port};
use candle_core::{DType, Device, Result, Tensor, Var, D};
use std::sync::Arc;

/// Which kernels a pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Fused kernels: fastest, no gradients.
    Fast,
    /// Composite kernels with exact gradients, for activations and weights alike: the
    /// reference for the others.
    Differentiable,
    /// Fused kernels with closed-form backward passes: exact gradients for activations, at a
    /// fraction of the composite kernels' cost. A norm weight that is a variable (training) takes
    /// the composite kernel.
    FusedGrad,
}

impl Kernels {
    #[expect(clippy::disallowed_methods, reason = "Kernels::Fast needs no gradient")]
    fn rms_norm(self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        match self {
            Self::Fast => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32),
            Self::FusedGrad if !w.track_op() => super::kernels::fused::rms_norm(x, w, eps),
            Self::Differentiable | Self::FusedGrad => {
                candle_nn::ops::rms_norm_slow(x, w, eps as f32)
            }
        }
    }

    /// [`Kernels::rms_norm`] of `x + p` (`p` of `x`'s shape).
    fn rms_norm_of_sum(self, x: &Tensor, p: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        match self {
            Self::FusedGrad if !w.track_op() => {
                super::kernels::fused::rms_norm_of_sum(x, p, w, eps)
            }
            _ => self.rms_norm(&(x + p)?, w, eps),
        }
    }

    /// The gated activation act(gate)⊙up of an MLP: SwiGLU or GeGLU (the tanh GeLU as a
    /// composite with exact gradients where gradients are wanted).
    fn gated(self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        match (act, self) {
            (Activation::Silu, Self::FusedGrad) => super::kernels::fused::swiglu(gate, up),
            (Activation::Silu, _) => candle_nn::ops::silu(gate)? * up,
            (Activation::GeluTanh, Self::Fast) => gate.gelu()? * up,
            (Activation::GeluTanh, _) => gelu_tanh(gate)? * up,
        }
    }

    /// Attention probabilities softmax(cap(scale·qk) + mask) over the last dimension, the scores
    /// soft-capped where `softcap` is given.
    #[expect(clippy::disallowed_methods, reason = "Kernels::Fast needs no gradient")]
    fn attention_probs(
        self,
        qk: &Tensor,
        scale: f64,
        mask: Option<&Tensor>,
        softcap: Option<f64>,
    ) -> Result<Tensor> {
        if let Some(c) = softcap {
            return self.attention_probs(&soft_cap(&(qk * scale)?, c)?, 1.0, mask, None);
        }
        if self == Self::FusedGrad {
            return super::kernels::fused::attention_softmax(qk, scale, mask);
        }
        let mut x = (qk * scale)?;
        if let Some(m) = mask {
            x = x.broadcast_add(m)?;
        }
        match self {
            Self::Fast => candle_nn::ops::softmax_last_dim(&x),
            // The shift by the row maximum only guards against overflow and cancels out of the
            // result, so it is kept out of the graph: the gradient stays exact and the backward
            // pass skips the maximum's mask computation.
            _ => {
                let max = x.max_keepdim(D::Minus1)?.detach();
                let e = x.broadcast_sub(&max)?.exp()?;
                e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
            }
        }
    }

    #[expect(clippy::disallowed_methods, reason = "Kernels::Fast needs no gradient")]
    pub(in crate::model) fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        // A partial rotation (Phi-3's `partial_rotary_factor`): the tables cover the leading
        // dimensions of each head, which rotate; the rest pass through.
        let (rot, hd) = (2 * cos.dim(D::Minus1)?, x.dim(D::Minus1)?);
        if rot < hd {
            let rotated = self.rope(&x.narrow(D::Minus1, 0, rot)?.contiguous()?, cos, sin)?;
            return Tensor::cat(&[&rotated, &x.narrow(D::Minus1, rot, hd - rot)?], D::Minus1);
        }
        match self {
            Self::Fast => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin),
            Self::FusedGrad if cos.rank() == 2 => super::kernels::fused::rope(x, cos, sin),
            // Per-row tables (b, t, half) of left-padded or packed rows: the same rotation,
            // broadcast over the heads.
            _ if cos.rank() == 3 => {
                let widen = |c: &Tensor| Tensor::cat(&[c, c], D::Minus1)?.unsqueeze(1);
                let (cos, sin) = (widen(cos)?, widen(sin)?);
                let half = x.dim(D::Minus1)? / 2;
                let rotated = Tensor::cat(
                    &[
                        &x.narrow(D::Minus1, half, half)?.neg()?,
                        &x.narrow(D::Minus1, 0, half)?,
                    ],
                    D::Minus1,
                )?;
                x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
            }
            _ => candle_nn::rotary_emb::rope_slow(x, cos, sin),
        }
    }
}

impl MlpKernels for Kernels {
    fn gated(self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        Kernels::gated(self, gate, up, act)
    }

    fn fused_mlp(self) -> bool {
        self == Self::FusedGrad
    }
}

/// Per-layer key/value cache for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Number of positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keep, as row i, the cached row `rows[i]` (rows repeat to share a prompt's keys and
    /// values).
    pub(crate) fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(rows, 0)?;
            *v = v.index_select(rows, 0)?;
        }
        Ok(())
    }
}

/// What one pass adds to every destination input, one probe per block-level destination in the
/// order of [`node::block_destinations`].
pub(crate) struct Probes {
    probes: Vec<Probe>,
    layers: usize,
}

/// A destination input's probe: what tells the gradient of that input.
pub(crate) enum Probe {
    /// A variable (1, t, d) added to the input, zero or a patch; with per-head probes, one copy
    /// per head of its port, (1, copies, t, d). Its gradient is the input's.
    Var(Var),
    /// The input's norm keeps the input's gradient itself
    /// ([`super::kernels::fused::rms_norm_tapped`]), with `patch` (1, t, d) added to the input where
    /// there is one: on the CPU, for a destination with a norm of its own (a block's q, k and v
    /// inputs, its MLP input).
    Tap {
        tap: Arc<GradTap>,
        patch: Option<Tensor>,
    },
}

impl Probes {
    /// Zero probes for a pass of `t` positions; `taps` where every norm of the pass can keep
    /// its input's gradient (the CPU in f32 or f64, norm weights that are not variables).
    pub fn zeros(
        cfg: &ModelConfig,
        t: usize,
        (heads, taps): (bool, bool),
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let (d, layers) = (cfg.hidden_size, cfg.num_layers);
        let counts = Heads {
            query: cfg.num_heads,
            kv: cfg.num_kv_heads,
        };
        let probes: Vec<Probe> = node::block_destinations(layers)
            .into_iter()
            .map(|dest| {
                Ok(match dest.port() {
                    Some(_) if heads => {
                        Probe::Var(Var::zeros((1, dest.copies(counts), t, d), dtype, dev)?)
                    }
                    _ if taps && dest != Destination::Logits => Probe::Tap {
                        tap: Arc::default(),
                        patch: None,
                    },
                    _ => Probe::Var(Var::zeros((1, t, d), dtype, dev)?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { probes, layers })
    }

    /// Shift destination `dest`'s input by `delta` (1, t, d), or (1, copies, t, d) for a
    /// per-head probe.
    pub fn patch(&mut self, dest: Destination, delta: Tensor) -> Result<()> {
        let layers = self.layers;
        match self.probes.get_mut(dest.block_index(layers)) {
            Some(Probe::Var(v)) => v.set(&delta),
            Some(Probe::Tap { patch, .. }) => {
                *patch = Some(delta);
                Ok(())
            }
            None => candle_core::bail!("no destination {dest} in a {layers}-layer model"),
        }
    }

    /// The probes in block-destination order.
    pub fn all(&self) -> &[Probe] {
        &self.probes
    }

    /// The probe of a block-level destination.
    fn get(&self, dest: Destination) -> &Probe {
        &self.probes[dest.block_index(self.layers)]
    }

    /// The embedded input `h` as the pass starts from it: a variable where some probe is a
    /// [`Probe::Tap`], so that candle records the pass for its backward pass (a tap adds
    /// nothing to the graph).
    fn root(&self, h: Tensor) -> Result<Tensor> {
        if self.probes.iter().any(|p| matches!(p, Probe::Tap { .. })) {
            return Ok(Var::from_tensor(&h)?.as_tensor().clone());
        }
        Ok(h)
    }
}

/// What one pass through the layers should do besides computing.
pub(crate) struct Pass<'a> {
    pub kernels: Kernels,
    pub probes: Option<&'a Probes>,
    pub cache: Option<&'a mut KvCache>,
    /// Collects source activations (b, t, d) in the order of [`Node::order`]: input, then each
    /// block's attention and MLP outputs.
    pub sources: Option<&'a mut Vec<Tensor>>,
    /// Collect attention sources per head instead, each (heads, t, d): the part of the block
    /// output that each head contributes through the output projection.
    pub head_sources: bool,
    /// How the rows lay out their tokens (positions and what each slot attends to).
    pub rows: Rows<'a>,
    /// Edge masks of an ablated batch: every destination reads its masked sum of the sources
    /// collected so far (needs `sources`).
    pub masks: Option<&'a EdgeMasks>,
}

impl<'a> Pass<'a> {
    /// Record a source activation.
    fn collect(&mut self, node: Node, x: &Tensor, layers: usize) {
        if let Some(s) = self.sources.as_deref_mut() {
            debug_assert_eq!(s.len(), node.order(layers), "{node}");
            s.push(x.clone());
        }
    }

    /// What destination `dest` reads, given the residual stream `h` that reaches it.
    fn input(&self, dest: Destination, h: &Tensor) -> Result<Input<'a>> {
        if let Some(p) = self.probes {
            return Ok(Input::Probed(p.get(dest)));
        }
        Ok(match (self.masks, self.sources.as_deref()) {
            (Some(m), Some(sources)) => {
                m.input(dest, h, sources)?.map_or(Input::Stream, Input::Own)
            }
            _ => Input::Stream,
        })
    }
}

/// What a destination reads: the residual stream itself, the stream with the destination's
/// probe, or a tensor of its own (its masked sum of sources).
enum Input<'a> {
    Stream,
    Probed(&'a Probe),
    Own(Tensor),
}

impl Input<'_> {
    /// The tensor read, given the residual stream `h`: with a probe variable added (of the
    /// stream's shape, or one copy per head). A tap keeps its gradient in a norm, so that a
    /// destination without one never has a tap ([`Probes::zeros`]).
    fn tensor(self, h: &Tensor) -> Result<Tensor> {
        match self {
            Self::Stream => Ok(h.clone()),
            Self::Probed(Probe::Var(p)) if p.rank() == 4 => h.unsqueeze(1)?.broadcast_add(p),
            Self::Probed(Probe::Var(p)) => h + p.as_tensor(),
            Self::Probed(Probe::Tap { .. }) => {
                candle_core::bail!("a tapped destination read without its norm")
            }
            Self::Own(x) => Ok(x),
        }
    }

    /// The tensor read, normed by `w` where the block has a norm before it: a probe of the
    /// stream's shape is added inside the norm, a tap's patch too, the tap keeping the gradient.
    fn normed(self, h: &Tensor, w: Option<&Tensor>, k: Kernels, eps: f64) -> Result<Tensor> {
        let Some(w) = w else {
            return self.tensor(h);
        };
        match self {
            Self::Probed(Probe::Tap { tap, patch }) => {
                let y = match k {
                    Kernels::FusedGrad => {
                        super::kernels::fused::rms_norm_tapped(h, patch.as_ref(), w, eps, tap)?
                    }
                    Kernels::Fast | Kernels::Differentiable => None,
                };
                y.ok_or_else(|| {
                    candle_core::Error::Msg(
                        "a tapped destination outside the CPU's fused rms-norm".into(),
                    )
                })
            }
            Self::Probed(Probe::Var(p)) if p.rank() == h.rank() => {
                k.rms_norm_of_sum(h, p.as_tensor(), w, eps)
            }
            input => k.rms_norm(&input.tensor(h)?, w, eps),
        }
    }
}

/// An attention block: its norm before or after it, projections and optional q/k norms.
#[derive(Clone)]
struct Attention {
    norm: BlockNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    window: Option<usize>,
    /// Which of the pass's rotary tables the layer takes ([`Transformer::inv_freqs`]).
    rope: usize,
}

/// An MLP block, dense or routed, with its norm before or after it.
#[derive(Clone)]
struct Mlp {
    norm: BlockNorm,
    ffn: Ffn,
}

#[derive(Clone)]
struct Block {
    attn: Attention,
    mlp: Mlp,
}

/// A block's RMS norms: on what it reads (before it), on what it adds (after it), or both
/// (Gemma's sandwich).
#[derive(Clone)]
struct BlockNorm {
    pre: Option<Tensor>,
    post: Option<Tensor>,
}

impl BlockNorm {
    /// Take the norm weights of size `d` named `prefix.name` for the names `[before, after]`
    /// that the configuration gives ([`ModelConfig::norm_names`]).
    fn take(
        store: &mut TensorStore,
        prefix: &str,
        [before, after]: [Option<&str>; 2],
        cfg: &ModelConfig,
    ) -> super::error::Result<Self> {
        let mut take = |name: Option<&str>| {
            name.map(|n| norm_weight(store, &format!("{prefix}.{n}.weight"), cfg.hidden_size, cfg))
                .transpose()
        };
        Ok(Self {
            pre: take(before)?,
            post: take(after)?,
        })
    }

    /// The weights before and after the block, where there are norms.
    fn weights_mut(&mut self) -> [Option<&mut Tensor>; 2] {
        [self.pre.as_mut(), self.post.as_mut()]
    }

    /// The norm before the block, if there is one.
    fn pre(&self) -> Option<&Tensor> {
        self.pre.as_ref()
    }

    /// The norm after the block, if there is one.
    fn post(&self) -> Option<&Tensor> {
        self.post.as_ref()
    }

    /// The block's output `y` as added to the residual stream: normed where there is a norm
    /// after the block.
    fn after(&self, y: Tensor, k: Kernels, eps: f64) -> Result<Tensor> {
        match self.post() {
            Some(w) => k.rms_norm(&y, w, eps),
            None => Ok(y),
        }
    }
}

/// The RMS norm weight `name` of `size`, as the norm applies it: 1 + w for a family whose
/// norms scale by 1 + w (Gemma), computed once here.
fn norm_weight(
    store: &mut TensorStore,
    name: &str,
    size: usize,
    cfg: &ModelConfig,
) -> super::error::Result<Tensor> {
    let w = store.take(name, &[size])?;
    Ok(if cfg.particulars.norm_offset {
        (w + 1.0)?
    } else {
        w
    })
}

/// What every layer of one pass shares, built once per pass: the rotary tables (cos, sin) of
/// each rotary base, and the attention mask of each distinct window.
struct PassTables {
    ropes: Vec<(Tensor, Tensor)>,
    masks: Vec<(Option<usize>, Option<Tensor>)>,
}

impl PassTables {
    fn mask(&self, window: Option<usize>) -> Option<&Tensor> {
        self.masks
            .iter()
            .find(|(w, _)| *w == window)
            .and_then(|(_, m)| m.as_ref())
    }
}

impl Attention {
    /// The normed inputs of the q, k and v paths, each from what its path reads (`h` itself,
    /// `h` plus a probe, or a masked sum of sources; (b, t, d), or one copy per head
    /// (b, n, t, d)).
    fn inputs(
        &self,
        h: &Tensor,
        reads: [Input; 3],
        k: Kernels,
        cfg: &ModelConfig,
    ) -> Result<[Tensor; 3]> {
        let eps = cfg.rms_norm_eps;
        let norm = self.norm.pre();
        if reads.iter().all(|r| matches!(r, Input::Stream)) {
            let x = match norm {
                Some(w) => k.rms_norm(h, w, eps)?,
                None => h.clone(),
            };
            return Ok([x.clone(), x.clone(), x]);
        }
        let [q, key, v] = reads.map(|r| r.normed(h, norm, k, eps));
        Ok([q?, key?, v?])
    }

    /// The block output (b, t, d) and the merged head outputs `z` (b, t, heads·head_dim) before
    /// the output projection.
    fn forward(
        &self,
        [xq, xk, xv]: [Tensor; 3],
        tables: &PassTables,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        k: Kernels,
        cfg: &ModelConfig,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t) = (xq.dim(0)?, xq.dim(D::Minus2)?);
        let hd = cfg.head_dim;
        // Project from one input (b, t, d) to (b, t, n·head_dim), or from one input per head
        // (1, n, t, d), when each head has its own probe, to (1, n, t, head_dim); q/k norms
        // apply per head or over the whole projection.
        let project = |x: &Tensor, lin: &Linear, n: usize, norm: Option<&Tensor>| {
            let eps = cfg.rms_norm_eps;
            match (x.rank(), norm, cfg.qk_norm) {
                (4, None, _) => lin.forward_heads(x, n),
                (4, Some(w), Some(QkNorm::PerHead)) => {
                    k.rms_norm(&lin.forward_heads(x, n)?, w, eps)
                }
                (4, Some(w), _) => whole_norm_per_head(x, lin, w, n, k, eps),
                (_, None, _) => lin.forward(x),
                (_, Some(w), Some(QkNorm::PerHead)) => k
                    .rms_norm(&lin.forward(x)?.reshape((b, t, n, hd))?, w, eps)?
                    .reshape((b, t, n * hd)),
                (_, Some(w), _) => k.rms_norm(&lin.forward(x)?, w, eps),
            }
        };
        let (nq, nkv) = (cfg.num_heads, cfg.num_kv_heads);
        let q = project(&xq, &self.q, nq, self.q_norm.as_ref())?;
        let key = project(&xk, &self.k, nkv, self.k_norm.as_ref())?;
        let val = project(&xv, &self.v, nkv, None)?;
        let scale = cfg.attention_scale();
        let softcap = cfg.particulars.attn_softcap;
        let mask = tables.mask(self.window);
        let (cos, sin) = &tables.ropes[self.rope];
        // The fused core has no soft-cap: a soft-capped layer takes the composite path.
        if k == Kernels::FusedGrad && cache.is_none() && softcap.is_none() {
            let core = super::kernels::attention::attention(
                &q,
                &key,
                &val,
                (nq, nkv),
                cos,
                sin,
                mask,
                scale,
            )?;
            if let Some(z) = core {
                return Ok((self.o.forward(&z)?, z));
            }
        }
        // The composite path, on (b, n, t, head_dim).
        let heads = |y: Tensor, n: usize| match y.rank() {
            4 => Ok(y),
            _ => y.reshape((b, t, n, hd))?.transpose(1, 2),
        };
        let (q, key, val) = (heads(q, nq)?, heads(key, nkv)?, heads(val, nkv)?);
        let q = k.rope(&q, cos, sin)?;
        let mut key = k.rope(&key, cos, sin)?;
        let mut val = val.contiguous()?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                key = Tensor::cat(&[pk, &key], 2)?;
                val = Tensor::cat(&[pv, &val], 2)?;
            }
            *slot = Some((key.clone(), val.clone()));
        }
        let rep = cfg.num_heads / cfg.num_kv_heads;
        let key = repeat_kv(&key, rep)?;
        let val = repeat_kv(&val, rep)?;
        let att = k.attention_probs(&q.contiguous()?.matmul(&key.t()?)?, scale, mask, softcap)?;
        let z = att
            .matmul(&val)?
            .transpose(1, 2)?
            .reshape((b, t, cfg.num_heads * hd))?;
        Ok((self.o.forward(&z)?, z))
    }

    /// Per-head contributions (heads, t, d) to the block output, from the merged head outputs
    /// `z` (1, t, heads·head_dim); they sum to the block output less any o bias. A norm after
    /// the block scales every head's contribution by the norm's weight and by the one factor
    /// 1/rms that the norm applies to the whole output, so that they still sum to it (less the
    /// bias's share).
    fn head_outputs(&self, z: &Tensor, cfg: &ModelConfig) -> Result<Tensor> {
        let heads = self.head_projections(z, cfg)?;
        let Some(w) = self.norm.post() else {
            return Ok(heads);
        };
        let y = self.o.forward(&z.detach())?;
        let rms = (y.sqr()?.mean_keepdim(D::Minus1)? + cfg.rms_norm_eps)?.sqrt()?;
        heads
            .broadcast_div(&rms.squeeze(0)?)?
            .broadcast_mul(&w.detach())
    }

    /// Each head's output through its slice of the output projection, (heads, t, d).
    fn head_projections(&self, z: &Tensor, cfg: &ModelConfig) -> Result<Tensor> {
        let (n, hd) = (cfg.num_heads, cfg.head_dim);
        let (_, t, _) = z.dims3()?;
        let z = z
            .detach()
            .reshape((t, n, hd))?
            .transpose(0, 1)?
            .contiguous()?;
        let w = self.o.weight().detach();
        let w = w
            .reshape((cfg.hidden_size, n, hd))?
            .transpose(0, 1)?
            .contiguous()?;
        z.matmul(&w.transpose(1, 2)?)
    }
}

impl Mlp {
    /// The block output (b, t, d) for what it reads, `input`, from the residual stream `h`.
    fn forward(&self, h: &Tensor, input: Input, k: Kernels, eps: f64) -> Result<Tensor> {
        let x = input.normed(h, self.norm.pre(), k, eps)?;
        let y = self.ffn.forward(&x, k)?;
        self.norm.after(y, k, eps)
    }
}

/// The weights of a decoder and its forward pass.
#[derive(Clone)]
pub struct Transformer {
    cfg: ModelConfig,
    embed: Tensor,
    layers: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    /// Rotary inverse frequencies: the global ones, then those of the local layers where
    /// these have a base of their own.
    inv_freqs: Vec<Rotation>,
    /// √hidden in the weights' dtype where the embedding is scaled (Gemma).
    embed_scale: Option<Tensor>,
    dtype: DType,
    device: Device,
}

impl Transformer {
    /// Take every weight the configuration calls for out of `store`.
    pub fn from_store(
        cfg: &ModelConfig,
        store: &mut TensorStore,
        dtype: DType,
        device: &Device,
    ) -> super::error::Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let embed = store.take("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            let ([q, k, v, o], ffn) = layer_projections(store, cfg, &p, l)?;
            let [attn_norm, mlp_norm] = cfg.norm_names();
            let qk = cfg.qk_norm_sizes();
            let qk_norm = |store: &mut TensorStore, name: &str, size: usize| {
                qk.map(|_| norm_weight(store, &format!("{p}.self_attn.{name}.weight"), size, cfg))
                    .transpose()
            };
            let window = cfg.sliding_window.get(l).copied().flatten();
            let attn = Attention {
                norm: BlockNorm::take(store, &p, attn_norm, cfg)?,
                q,
                k,
                v,
                o,
                q_norm: qk_norm(store, "q_norm", qk.map_or(hd, |(q, _)| q))?,
                k_norm: qk_norm(store, "k_norm", qk.map_or(hd, |(_, k)| k))?,
                window,
                rope: usize::from(window.is_some() && cfg.particulars.local_rope_theta.is_some()),
            };
            let mlp = Mlp {
                norm: BlockNorm::take(store, &p, mlp_norm, cfg)?,
                ffn,
            };
            layers.push(Block { attn, mlp });
        }
        let norm = norm_weight(store, "model.norm.weight", d, cfg)?;
        let lm_head = if cfg.tie_word_embeddings && !store.contains("lm_head.weight") {
            Linear::new(embed.clone(), None)
        } else {
            Linear::new(store.take("lm_head.weight", &[cfg.vocab_size, d])?, None)
        };
        let embed_scale = cfg
            .particulars
            .embed_scale
            .then(|| Tensor::new((d as f64).sqrt(), device)?.to_dtype(dtype))
            .transpose()?;
        Ok(Self {
            inv_freqs: inv_freqs(cfg),
            embed_scale,
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            dtype,
            device: device.clone(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether every norm of an attribution pass can keep its input's gradient (a
    /// [`Probe::Tap`]): the fused norm runs, on the CPU in f32 or f64, with weights that are not
    /// variables.
    pub(super) fn taps_gradients(&self) -> bool {
        self.cfg.norms != NormPlacement::Post
            && self.device.is_cpu()
            && matches!(self.dtype, DType::F32 | DType::F64)
            && !self.norm.is_variable()
    }

    /// The projections of every layer in the order a pass reaches them: q, k, v, o, then the
    /// MLP's ([`Ffn::projections`]).
    pub(super) fn projections(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|b| {
            let a = &b.attn;
            [&a.q, &a.k, &a.v, &a.o]
                .into_iter()
                .chain(b.mlp.ffn.projections())
        })
    }

    /// Turn every weight into a trainable variable, in place, and return the variables under
    /// their Hugging Face names (the names of [`ModelConfig::tensor_shapes`]). With tied
    /// embeddings the unembedding shares the embedding's variable.
    pub(crate) fn make_trainable(&mut self) -> Result<Vec<(String, Var)>> {
        if self.cfg.family.fused_projections() {
            candle_core::bail!(
                "{} fuses its q/k/v and gate/up projections into one tensor each; training \
                 (and saving) a model of this family is not supported",
                self.cfg.family.name()
            );
        }
        if self.cfg.particulars.norm_offset {
            candle_core::bail!(
                "{}'s norms scale by 1 + w; training (and saving) all weights of a model of \
                 this family is not supported (LoRA adapters are)",
                self.cfg.family.name()
            );
        }
        if self.cfg.moe.is_some() {
            candle_core::bail!(
                "{} routes its MLPs to experts; training (and saving) a mixture-of-experts model \
                 is not supported",
                self.cfg.family.name()
            );
        }
        let mut out = Vec::new();
        let mut var = |name: String, t: &mut Tensor| -> Result<()> {
            let v = Var::from_tensor(t)?;
            *t = v.as_tensor().clone();
            out.push((name, v));
            Ok(())
        };
        var("model.embed_tokens.weight".into(), &mut self.embed)?;
        for (l, b) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            let a = &mut b.attn;
            let Some(m) = b.mlp.ffn.dense_mut() else {
                candle_core::bail!("layer {l} routes its MLP: training it is not supported");
            };
            for (name, lin) in [
                ("self_attn.q_proj", &mut a.q),
                ("self_attn.k_proj", &mut a.k),
                ("self_attn.v_proj", &mut a.v),
                ("self_attn.o_proj", &mut a.o),
                ("mlp.gate_proj", &mut m.gate),
                ("mlp.up_proj", &mut m.up),
                ("mlp.down_proj", &mut m.down),
            ] {
                var(format!("{p}.{name}.weight"), &mut lin.weight)?;
                if let Some(bias) = lin.bias.as_mut() {
                    var(format!("{p}.{name}.bias"), bias)?;
                }
            }
            for (names, norm) in self
                .cfg
                .norm_names()
                .into_iter()
                .zip([&mut a.norm, &mut b.mlp.norm])
            {
                for (name, w) in names.into_iter().zip(norm.weights_mut()) {
                    if let (Some(name), Some(w)) = (name, w) {
                        var(format!("{p}.{name}.weight"), w)?;
                    }
                }
            }
            if let Some(n) = a.q_norm.as_mut() {
                var(format!("{p}.self_attn.q_norm.weight"), n)?;
            }
            if let Some(n) = a.k_norm.as_mut() {
                var(format!("{p}.self_attn.k_norm.weight"), n)?;
            }
        }
        var("model.norm.weight".into(), &mut self.norm)?;
        if self.cfg.tie_word_embeddings {
            self.lm_head = Linear::new(self.embed.clone(), None);
        } else {
            var("lm_head.weight".into(), &mut self.lm_head.weight)?;
        }
        Ok(out)
    }

    /// A copy sharing every weight but without the LoRA updates attached: the frozen base of a
    /// LoRA run, at no cost in memory.
    pub(crate) fn without_lora(&self) -> Self {
        let mut net = self.clone();
        for lin in net.linears_mut() {
            lin.lora = None;
        }
        net
    }

    /// The output layer and every dense projection (those LoRA can adapt).
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut linears: Vec<&mut Linear> = vec![&mut self.lm_head];
        for b in &mut self.layers {
            let a = &mut b.attn;
            linears.extend([&mut a.q, &mut a.k, &mut a.v, &mut a.o]);
            if let Some(m) = b.mlp.ffn.dense_mut() {
                linears.extend([&mut m.gate, &mut m.up, &mut m.down]);
            }
        }
        linears
    }

    /// The same model as constants, for passes that need no gradient (generation): trainable
    /// weights detached (sharing their storage, so later updates show), and each attached LoRA
    /// update merged into its weight, W + s·B·A, so that a step costs one product per
    /// projection and builds no graph.
    pub(crate) fn for_inference(&self) -> Result<Self> {
        let mut net = self.clone();
        net.embed = net.embed.detach();
        net.norm = net.norm.detach();
        for lin in net.linears_mut() {
            let w = lin.weight.detach();
            lin.weight = match lin.lora.take() {
                Some(l) => {
                    let delta = l.b.as_tensor().detach().matmul(&l.a.as_tensor().detach())?;
                    (w + (delta * l.scale)?)?
                }
                None => w,
            };
            lin.bias = lin.bias.as_ref().map(Tensor::detach);
        }
        for b in &mut net.layers {
            let a = &mut b.attn;
            for w in [&mut a.q_norm, &mut a.k_norm].into_iter().flatten() {
                *w = w.detach();
            }
            let norms = a.norm.weights_mut().into_iter();
            for w in norms.chain(b.mlp.norm.weights_mut()).flatten() {
                *w = w.detach();
            }
        }
        Ok(net)
    }

    /// Attach a new LoRA update to every layer of the kinds `settings` targets and return the
    /// updates under their layers' names (`model.layers.0.self_attn.q_proj`, …, `lm_head`).
    pub(crate) fn attach_lora(
        &mut self,
        settings: &LoraSettings,
    ) -> Result<Vec<(String, LoraPair)>> {
        use super::lora::LoraTarget as T;
        let mut rng = super::lora::init_rng(settings);
        let (dtype, device) = (self.dtype, self.device.clone());
        let mut out = Vec::new();
        let mut attach = |name: String, lin: &mut Linear| -> Result<()> {
            let pair =
                super::lora::init_pair(settings, lin.weight.dims2()?, &mut rng, dtype, &device)?;
            lin.lora = Some(pair.clone());
            out.push((name, pair));
            Ok(())
        };
        for (l, b) in self.layers.iter_mut().enumerate() {
            let a = &mut b.attn;
            let mut layers = vec![
                (T::QProj, "self_attn.q_proj", &mut a.q),
                (T::KProj, "self_attn.k_proj", &mut a.k),
                (T::VProj, "self_attn.v_proj", &mut a.v),
                (T::OProj, "self_attn.o_proj", &mut a.o),
            ];
            let mlp_kinds = [T::GateProj, T::UpProj, T::DownProj];
            match b.mlp.ffn.dense_mut() {
                Some(m) => layers.extend([
                    (T::GateProj, "mlp.gate_proj", &mut m.gate),
                    (T::UpProj, "mlp.up_proj", &mut m.up),
                    (T::DownProj, "mlp.down_proj", &mut m.down),
                ]),
                None if mlp_kinds.iter().any(|k| settings.targets.contains(k)) => {
                    candle_core::bail!(
                        "layer {l} routes its MLP to experts: LoRA on gate_proj, up_proj or \
                         down_proj inside experts is not supported (target the attention \
                         projections q_proj, k_proj, v_proj, o_proj)"
                    );
                }
                None => {}
            }
            for (kind, name, lin) in layers {
                if settings.targets.contains(&kind) {
                    attach(format!("model.layers.{l}.{name}"), lin)?;
                }
            }
        }
        if settings.targets.contains(&T::LmHead) {
            attach("lm_head".into(), &mut self.lm_head)?;
        }
        Ok(out)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// cos and sin tables (t, head_dim/2) of the inverse frequencies `inv_freq` for slots
    /// `pos0..pos0 + t`, or (b, t, head_dim/2) when the rows lay out their tokens each their own
    /// way (left-padded or packed rows).
    fn rope_tables(
        &self,
        rotation: &Rotation,
        pos0: usize,
        t: usize,
        rows: Rows,
    ) -> Result<(Tensor, Tensor)> {
        let (inv_freq, scale) = (&rotation.inv_freq, rotation.scale as f32);
        let half = inv_freq.len();
        let n = rows.distinct().unwrap_or(1);
        let mut cos = Vec::with_capacity(n * t * half);
        let mut sin = Vec::with_capacity(n * t * half);
        for row in 0..n {
            for slot in pos0..pos0 + t {
                let p = rows.position(row, slot);
                if let Some(n) = rotation.positions.filter(|&n| p >= n) {
                    candle_core::bail!(
                        "position {p} is past original_max_position_embeddings ({n}), where \
                         LongRoPE switches the whole sequence to its long factors; circuitdiff \
                         does not implement that switch: keep prompt and answer under {n} \
                         tokens"
                    );
                }
                for &f in inv_freq {
                    // Computed in f32 like the reference implementation, then widened.
                    let a = (p as f32) * (f as f32);
                    cos.push(f64::from(a.cos() * scale));
                    sin.push(f64::from(a.sin() * scale));
                }
            }
        }
        let mk = |v: Vec<f64>| -> Result<Tensor> {
            let t = match rows.distinct() {
                Some(n) => Tensor::from_vec(v, (n, t, half), &self.device)?,
                None => Tensor::from_vec(v, (t, half), &self.device)?,
            };
            t.to_dtype(self.dtype)
        };
        Ok((mk(cos)?, mk(sin)?))
    }

    /// Additive attention mask for queries at slots `pos0..pos0+t` over keys `0..pos0+t`:
    /// (t, s), or (b, 1, t, s) when the rows lay out their tokens each their own way; `None`
    /// when every key is visible.
    fn mask(
        &self,
        pos0: usize,
        t: usize,
        window: Option<usize>,
        rows: Rows,
    ) -> Result<Option<Tensor>> {
        let s = pos0 + t;
        let n = rows.distinct().unwrap_or(1);
        let visible = |row: usize, qi: usize, kj: usize| {
            rows.visible(row, qi, kj)
                && window.is_none_or(|w| {
                    rows.position(row, qi)
                        .saturating_sub(rows.position(row, kj))
                        < w
                })
        };
        if (0..n).all(|row| (pos0..s).all(|qi| (0..s).all(|kj| visible(row, qi, kj)))) {
            return Ok(None);
        }
        let m: Vec<f32> = (0..n)
            .flat_map(|row| {
                (pos0..s).flat_map(move |qi| {
                    (0..s).map(move |kj| {
                        if visible(row, qi, kj) {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
            })
            .collect();
        let m = match rows.distinct() {
            Some(n) => Tensor::from_vec(m, (n, 1, t, s), &self.device)?,
            None => Tensor::from_vec(m, (t, s), &self.device)?,
        };
        m.to_dtype(self.dtype).map(Some)
    }

    /// The rotary tables and the mask of each distinct attention window, for one pass.
    fn pass_tables(&self, pos0: usize, t: usize, rows: Rows) -> Result<PassTables> {
        let ropes = self
            .inv_freqs
            .iter()
            .map(|f| self.rope_tables(f, pos0, t, rows))
            .collect::<Result<_>>()?;
        let mut masks: Vec<(Option<usize>, Option<Tensor>)> = Vec::new();
        for block in &self.layers {
            let w = block.attn.window;
            if masks.iter().all(|(m, _)| *m != w) {
                masks.push((w, self.mask(pos0, t, w, rows)?));
            }
        }
        Ok(PassTables { ropes, masks })
    }

    /// Run the embedding and every block on `ids` (b, t) at positions `pos0..`; returns the final
    /// residual stream (b, t, d), before the final norm (as the logits read it: with its probe
    /// or its masked sum of sources).
    pub(crate) fn residual(&self, ids: &Tensor, pos0: usize, mut pass: Pass) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.cfg.hidden_size,
        ))?;
        // Gemma scales the embedding by √hidden in the weights' dtype; the scaled embedding is
        // the input source.
        let h = match &self.embed_scale {
            Some(s) => h.broadcast_mul(s)?,
            None => h,
        };
        let h = match pass.probes {
            Some(p) => p.root(h)?,
            None => h,
        };
        pass.collect(Node::Input, &h, self.cfg.num_layers);
        let first = Node::Attention {
            layer: 0,
            head: None,
        };
        self.blocks(h, first, pos0, pass)
    }

    /// Run the nodes from `first` on (an attention block, an MLP, or the logits alone) on the
    /// residual stream `h` (b, t, d) entering it, at positions `pos0..`; `pass.sources`, when
    /// given, already holds the sources before `first` (from an MLP on, its layer's attention
    /// output, which is not computed again). Returns the final residual stream as
    /// [`Transformer::residual`] does.
    pub(crate) fn blocks(
        &self,
        mut h: Tensor,
        first: Node,
        pos0: usize,
        mut pass: Pass,
    ) -> Result<Tensor> {
        let start = first.layer().unwrap_or(self.layers.len());
        let from_mlp = matches!(first, Node::Mlp { .. });
        let cfg = &self.cfg;
        let k = pass.kernels;
        let tables = self.pass_tables(pos0, h.dim(1)?, pass.rows)?;
        if let Some(c) = pass.cache.as_deref_mut() {
            c.layers.resize(self.layers.len(), None);
        }
        for (layer, block) in self.layers.iter().enumerate().skip(start) {
            if !(from_mlp && layer == start) {
                self.attention(block, layer, &mut h, &tables, &mut pass)?;
            }
            let input = pass.input(Destination::Mlp { layer }, &h)?;
            let m = block.mlp.forward(&h, input, k, cfg.rms_norm_eps)?;
            h = (h + &m)?;
            pass.collect(Node::Mlp { layer }, &m, cfg.num_layers);
        }
        if let Some(c) = pass.cache.as_deref_mut() {
            c.len = pos0 + h.dim(1)?;
        }
        pass.input(Destination::Logits, &h)?.tensor(&h)
    }

    /// Layer `layer`'s attention block on the residual stream `h`, added to it in place.
    fn attention(
        &self,
        block: &Block,
        layer: usize,
        h: &mut Tensor,
        tables: &PassTables,
        pass: &mut Pass,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let k = pass.kernels;
        let reads = Port::ALL.map(|port| {
            pass.input(
                Destination::Attention {
                    layer,
                    head: None,
                    port,
                },
                h,
            )
        });
        let [q, key, v] = reads;
        let inputs = block.attn.inputs(h, [q?, key?, v?], k, cfg)?;
        let cache = pass.cache.as_deref_mut().map(|c| &mut c.layers[layer]);
        let (a, z) = block.attn.forward(inputs, tables, cache, k, cfg)?;
        let a = block.attn.norm.after(a, k, cfg.rms_norm_eps)?;
        *h = (&*h + &a)?;
        let a = if pass.head_sources && pass.sources.is_some() {
            block.attn.head_outputs(&z, cfg)?
        } else {
            a
        };
        pass.collect(Node::Attention { layer, head: None }, &a, cfg.num_layers);
        Ok(())
    }

    /// Final norm and unembedding of a residual (…, d) → logits (…, vocab).
    pub(crate) fn logits(&self, resid: &Tensor, k: Kernels) -> Result<Tensor> {
        Ok(self.normed_and_logits(resid, k)?.1)
    }

    /// The normed final residual (…, d) and its logits (…, vocab).
    pub(crate) fn normed_and_logits(&self, resid: &Tensor, k: Kernels) -> Result<(Tensor, Tensor)> {
        let x = k.rms_norm(resid, &self.norm, self.cfg.rms_norm_eps)?;
        let logits = self.lm_head.forward(&x)?;
        let logits = match self.cfg.particulars.final_softcap {
            Some(c) => soft_cap(&logits, c)?,
            None => logits,
        };
        Ok((x, logits))
    }
}

/// The projections q, k, v, o and the MLP of the layer named `p` (layer `layer`): each its own
/// tensor, or for a family with fused projections (Phi-3) the rows of `qkv_proj` (q, then k,
/// then v) and of `gate_up_proj` (gate, then up), split here so that q, k and v stay separate
/// paths; a routed MLP's router and experts where the layer routes.
fn layer_projections(
    store: &mut TensorStore,
    cfg: &ModelConfig,
    p: &str,
    layer: usize,
) -> super::error::Result<([Linear; 4], Ffn)> {
    let (d, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (qd, kvd) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let mut lin = |name: &str, out: usize, inp: usize, bias: bool| {
        let w = store.take(&format!("{p}.{name}.weight"), &[out, inp])?;
        let b = store.take_if(bias, &format!("{p}.{name}.bias"), &[out])?;
        Ok::<_, super::error::ModelError>(Linear::new(w, b))
    };
    let o = lin("self_attn.o_proj", d, qd, cfg.o_bias)?;
    if let Some(moe) = cfg.moe.as_ref().filter(|m| m.routes(layer)) {
        let attn = [
            lin("self_attn.q_proj", qd, d, cfg.qkv_bias)?,
            lin("self_attn.k_proj", kvd, d, cfg.qkv_bias)?,
            lin("self_attn.v_proj", kvd, d, cfg.qkv_bias)?,
            o,
        ];
        return Ok((attn, Ffn::take_routed(store, cfg, moe, p)?));
    }
    let down = lin("mlp.down_proj", d, i, cfg.mlp_bias)?;
    // The dense MLP of this layer, from its gate and up projections.
    let dense = |gate, up| {
        Ffn::Dense(Gated {
            gate,
            up,
            down,
            act: cfg.particulars.activation,
        })
    };
    if !cfg.family.fused_projections() {
        let attn = [
            lin("self_attn.q_proj", qd, d, cfg.qkv_bias)?,
            lin("self_attn.k_proj", kvd, d, cfg.qkv_bias)?,
            lin("self_attn.v_proj", kvd, d, cfg.qkv_bias)?,
            o,
        ];
        let gate = lin("mlp.gate_proj", i, d, cfg.mlp_bias)?;
        let up = lin("mlp.up_proj", i, d, cfg.mlp_bias)?;
        return Ok((attn, dense(gate, up)));
    }
    let qkv = store.take(
        &format!("{p}.self_attn.qkv_proj.weight"),
        &[qd + 2 * kvd, d],
    )?;
    let gate_up = store.take(&format!("{p}.mlp.gate_up_proj.weight"), &[2 * i, d])?;
    let rows = |w: &Tensor, from: usize, n: usize| -> super::error::Result<Linear> {
        Ok(Linear::new(w.narrow(0, from, n)?.contiguous()?, None))
    };
    let attn = [
        rows(&qkv, 0, qd)?,
        rows(&qkv, qd, kvd)?,
        rows(&qkv, qd + kvd, kvd)?,
        o,
    ];
    let (gate, up) = (rows(&gate_up, 0, i)?, rows(&gate_up, i, i)?);
    Ok((attn, dense(gate, up)))
}

/// Queries or keys of `n` heads from one input per head `x` (1, n, t, d) under a q/k norm over
/// the whole projection: head `i`'s path projects its own input to every head, norms the whole
/// projection by `w`, and keeps its own slice, (1, n, t, head_dim). Exact for any inputs, so
/// that each head's probe gets the gradient of its own path.
fn whole_norm_per_head(
    x: &Tensor,
    lin: &Linear,
    w: &Tensor,
    n: usize,
    k: Kernels,
    eps: f64,
) -> Result<Tensor> {
    let (_, _, t, _) = x.dims4()?;
    let y = k.rms_norm(&lin.forward(x)?, w, eps)?;
    let hd = y.dim(D::Minus1)? / n;
    let y = y.reshape((1, n, t, n, hd))?;
    let eye = Tensor::eye(n, y.dtype(), y.device())?.reshape((1, n, 1, n, 1))?;
    y.broadcast_mul(&eye)?.sum(3)
}

/// Repeat each key/value head `n` times so grouped-query attention lines up with the queries
/// (head order kv0, kv0, …, kv1, kv1, … as in the reference implementation).
fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, s, hd) = x.dims4()?;
    Tensor::cat(&vec![x; n], 2)?.reshape((b, kvh * n, s, hd))
}

/// One rotary embedding: its inverse frequencies, and what its cos and sin are multiplied by
/// (YaRN's attention factor; else 1).
#[derive(Clone)]
struct Rotation {
    inv_freq: Vec<f64>,
    scale: f64,
    /// The positions the frequencies hold for (LongRoPE's short factors: up to
    /// `original_max_position_embeddings`); a pass reaching past them fails.
    positions: Option<usize>,
}

/// The rotations of the global layers and, where the local (sliding-window) layers have a
/// base of their own (Gemma 3, OLMo 3), of those, unscaled.
fn inv_freqs(cfg: &ModelConfig) -> Vec<Rotation> {
    let scaling = cfg.rope_scaling.as_ref();
    let positions = match scaling {
        Some(RopeScaling::LongRope(l)) => Some(l.original_max_position_embeddings),
        _ => None,
    };
    let mut out = vec![Rotation {
        inv_freq: inv_freq(cfg, cfg.rope_theta, scaling),
        scale: scaling.map_or(1.0, RopeScaling::attention_factor),
        positions,
    }];
    if let Some(local) = cfg.particulars.local_rope_theta {
        out.push(Rotation {
            inv_freq: inv_freq(cfg, local, None),
            scale: 1.0,
            positions: None,
        });
    }
    out
}

/// Rotary inverse frequencies of base `theta` over the rotated dimensions of each head, with
/// Llama-3, linear, YaRN or LongRoPE (short factors) scaling applied.
fn inv_freq(cfg: &ModelConfig, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f64> {
    let hd = cfg.particulars.rotary_dim.unwrap_or(cfg.head_dim);
    let base: Vec<f64> = (0..hd / 2)
        .map(|i| {
            let e = (2 * i) as f32 / hd as f32;
            f64::from(1.0f32 / (theta as f32).powf(e))
        })
        .collect();
    match scaling.cloned() {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Yarn(y)) => y.inv_freq(theta, hd),
        // transformers: 1 / (short · θ^(2i/d)) in f32 (the factors' count is checked at load).
        Some(RopeScaling::LongRope(l)) => (0..hd / 2)
            .zip(&l.short_factor)
            .map(|(i, &s)| {
                let e = (2 * i) as f32 / hd as f32;
                f64::from(1.0f32 / (s as f32 * (theta as f32).powf(e)))
            })
            .collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let old = original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}
