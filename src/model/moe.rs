//! The MLP slot of a decoder block: one gated MLP (dense), or a router choosing, per token, a
//! few gated MLPs (experts) and mixing their outputs (routed; Qwen3-MoE, OLMoE, Mixtral).
//!
//! The routed mixture is one node of the graph, the router inside it. Its forward pass follows
//! transformers 5: logits `x·W_routerᵀ`, a softmax over all experts, the `top_k` largest
//! probabilities (on a tie the lower expert index), optionally divided by their sum; each chosen
//! expert runs on its tokens only and its output, scaled by its weight, is added to theirs. The
//! choice is piecewise constant in the input, so the exact gradient flows through the chosen
//! experts' outputs and through their weights (the softmax and the renormalisation reach every
//! router logit); the choice itself, made on detached values, has none. Everything is written
//! as differentiable candle ops (the attribution pass's fused gated MLP runs each expert), so
//! the backward pass is exact, never an approximation.

use super::kernels::{mlp, Linear};
use super::load::weights::TensorStore;
use super::load::{Activation, ModelConfig, MoeConfig};
use candle_core::{DType, Result, Tensor, D};

/// The kernels an MLP runs with (the decoder's kernel choice).
pub(super) trait MlpKernels: Copy {
    /// The gated activation act(gate)⊙up.
    fn gated(self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor>;
    /// Whether the CPU's fused gated MLP with its closed-form backward may run.
    fn fused_mlp(self) -> bool;
}

/// A gated MLP down(act(gate(x)) ⊙ up(x)): SwiGLU (SiLU), or GeGLU (tanh GeLU; Gemma).
#[derive(Clone)]
pub(super) struct Gated {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
}

impl Gated {
    /// The output for `x` (…, d).
    pub fn forward(&self, x: &Tensor, k: impl MlpKernels) -> Result<Tensor> {
        // The fused MLP is SwiGLU's; GeGLU takes the composite path.
        if k.fused_mlp() && self.act == Activation::Silu {
            if let Some(y) = mlp::gated_mlp(x, &self.gate, &self.up, &self.down)? {
                return Ok(y);
            }
        }
        self.down
            .forward(&k.gated(&self.gate.forward(x)?, &self.up.forward(x)?, self.act)?)
    }
}

/// A router and its experts.
#[derive(Clone)]
pub(super) struct Routed {
    pub router: Linear,
    pub experts: Vec<Gated>,
    top_k: usize,
    renormalise: bool,
}

/// What fills a block's MLP slot.
#[derive(Clone)]
pub(super) enum Ffn {
    Dense(Gated),
    Routed(Routed),
}

impl Ffn {
    /// The output for `x` (…, d).
    pub fn forward(&self, x: &Tensor, k: impl MlpKernels) -> Result<Tensor> {
        match self {
            Self::Dense(g) => g.forward(x, k),
            Self::Routed(r) => r.forward(x, k),
        }
    }

    /// Every projection in the order a pass reaches it: gate, up, down; routed: the router, then
    /// each expert's gate, up and down.
    pub fn projections(&self) -> Vec<&Linear> {
        match self {
            Self::Dense(g) => vec![&g.gate, &g.up, &g.down],
            Self::Routed(r) => std::iter::once(&r.router)
                .chain(r.experts.iter().flat_map(|g| [&g.gate, &g.up, &g.down]))
                .collect(),
        }
    }

    /// The dense MLP, where the slot holds one.
    pub fn dense_mut(&mut self) -> Option<&mut Gated> {
        match self {
            Self::Dense(g) => Some(g),
            Self::Routed(_) => None,
        }
    }

    /// Take layer `p`'s (`model.layers.N`) routed MLP out of `store`.
    pub fn take_routed(
        store: &mut TensorStore,
        cfg: &ModelConfig,
        moe: &MoeConfig,
        p: &str,
    ) -> super::error::Result<Self> {
        let mut lins = moe
            .tensor_shapes(p, cfg.hidden_size)
            .into_iter()
            .map(|(name, shape)| Ok(Linear::new(store.take(&name, &shape)?, None)))
            .collect::<super::error::Result<Vec<_>>>()?
            .into_iter();
        // The router, then gate, up and down of each expert, as `tensor_shapes` lists them.
        let mut next = || {
            lins.next().ok_or_else(|| {
                super::error::ModelError::config(p, "num_experts", "fewer tensors than experts")
            })
        };
        let router = next()?;
        let mut experts = Vec::with_capacity(moe.num_experts);
        for _ in 0..moe.num_experts {
            experts.push(Gated {
                gate: next()?,
                up: next()?,
                down: next()?,
                act: cfg.particulars.activation,
            });
        }
        Ok(Self::Routed(Routed {
            router,
            experts,
            top_k: moe.top_k,
            renormalise: moe.norm_topk_prob,
        }))
    }
}

impl Routed {
    /// The mixture for `x` (…, d).
    fn forward(&self, x: &Tensor, k: impl MlpKernels) -> Result<Tensor> {
        let shape = x.shape().clone();
        let d = x.dim(D::Minus1)?;
        let x = x.reshape(((), d))?;
        let weights = self.routing(&x)?;
        let Choice { pairs, by_expert } = self.choose(&weights)?;
        let weights = self.chosen_weights(&weights, &pairs)?;
        let dev = x.device();
        let mut outputs = Vec::new();
        let mut rows = Vec::new();
        for (expert, picks) in self.experts.iter().zip(by_expert) {
            if picks.is_empty() {
                continue;
            }
            let (tokens, slots): (Vec<u32>, Vec<u32>) = picks.into_iter().unzip();
            let tokens = Tensor::new(tokens, dev)?;
            let w = weights.index_select(&Tensor::new(slots, dev)?, 0)?;
            let y = expert.forward(&x.index_select(&tokens, 0)?, k)?;
            outputs.push(y.broadcast_mul(&w.unsqueeze(1)?)?);
            rows.push(tokens);
        }
        let zeros = x.zeros_like()?;
        let out = if outputs.is_empty() {
            zeros
        } else {
            zeros.index_add(&Tensor::cat(&rows, 0)?, &Tensor::cat(&outputs, 0)?, 0)?
        };
        out.reshape(shape)
    }

    /// The router's probabilities (n, experts): a softmax over the router logits, shifted by
    /// their (detached) row maximum, which cancels out of the result and of its gradient.
    fn routing(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.router.forward(x)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let e = logits.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    /// The `top_k` experts of every token, from the probabilities `p` (n, experts) read without
    /// their graph.
    fn choose(&self, p: &Tensor) -> Result<Choice> {
        let rows = p.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let mut pairs = Vec::with_capacity(rows.len() * self.top_k);
        let mut by_expert = vec![Vec::new(); self.experts.len()];
        for (t, row) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // Largest first; on a tie the lower index, as torch.topk on the CPU.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for &e in order.iter().take(self.top_k) {
                let slot = pairs.len();
                pairs.push((t, e));
                by_expert[e].push((t as u32, slot as u32));
            }
        }
        Ok(Choice { pairs, by_expert })
    }

    /// The weights (n·top_k) of the chosen `pairs` (token-major, `top_k` per token): their
    /// probabilities, divided by their sum per token where the family renormalises.
    fn chosen_weights(&self, p: &Tensor, pairs: &[(usize, usize)]) -> Result<Tensor> {
        let (n, e) = p.dims2()?;
        let index: Vec<u32> = pairs.iter().map(|&(t, x)| (t * e + x) as u32).collect();
        let w = p
            .flatten_all()?
            .index_select(&Tensor::new(index, p.device())?, 0)?;
        if !self.renormalise {
            return Ok(w);
        }
        let w = w.reshape((n, self.top_k))?;
        w.broadcast_div(&w.sum_keepdim(1)?)?.flatten_all()
    }
}

/// The experts chosen for every token.
struct Choice {
    /// (token, expert), `top_k` per token, token-major.
    pairs: Vec<(usize, usize)>,
    /// Per expert: (token, index into `pairs`) of each token it serves, in token order.
    by_expert: Vec<Vec<(u32, u32)>>,
}
