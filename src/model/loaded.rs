//! A loaded model: configuration, tokenizer and weights, run for generation, training, or
//! differentiably for attribution.

use super::error::Result;
use super::kernels::LoraPair;
use super::load::open::{fingerprint, open};
use super::load::{
    resolve, AdapterInfo, Checkpoint, DownloadProgress, LoadOptions, ModelConfig, Tokenizer,
};
use super::lora::LoraSettings;
use super::packing::{Packing, Rows};
use super::transformer::{Kernels, KvCache, Pass, Probe, Probes, Transformer};
use crate::node::Destination;
use candle_core::{DType, Device, Tensor};
use std::ops::Range;

/// A loaded model: configuration, tokenizer and weights, whatever the source.
#[derive(Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The spec it was loaded from (path or Hub id).
    pub spec: String,
    /// The checkpoint on disk.
    pub checkpoint: Checkpoint,
    /// A fingerprint of config and weight files (sha256 over their sizes, config bytes and the
    /// first and last MiB of each weight file), the adapter's as well as the base's.
    pub fingerprint: String,
    /// The LoRA adapter merged into the weights, when the spec is an adapter.
    pub adapter: Option<AdapterInfo>,
    pub(super) net: Transformer,
}

impl Model {
    /// Load a model from a folder, a `.gguf` file or a Hub id.
    pub fn load(spec: &str, opts: &LoadOptions) -> Result<Self> {
        Self::load_with_progress(spec, opts, None)
    }

    /// Like [`Model::load`], reporting Hub downloads.
    pub fn load_with_progress(
        spec: &str,
        opts: &LoadOptions,
        progress: Option<&mut dyn DownloadProgress>,
    ) -> Result<Self> {
        let checkpoint = resolve(spec, &opts.hub, progress)?;
        Self::from_checkpoint(spec, checkpoint, opts)
    }

    /// Load a resolved checkpoint.
    pub fn from_checkpoint(spec: &str, checkpoint: Checkpoint, opts: &LoadOptions) -> Result<Self> {
        let (config, tokenizer, mut store) = open(&checkpoint, opts)?;
        let net = Transformer::from_store(&config, &mut store, opts.dtype, &opts.device)?;
        let adapter = match &checkpoint {
            Checkpoint::Adapter {
                adapter,
                base_spec,
                base,
            } => Some(adapter.info(base_spec, fingerprint(&base.files())?)),
            Checkpoint::Folder { .. } | Checkpoint::Gguf { .. } => None,
        };
        Ok(Self {
            fingerprint: fingerprint(&checkpoint.files())?,
            adapter,
            config,
            tokenizer,
            spec: spec.to_owned(),
            checkpoint,
            net,
        })
    }

    pub fn dtype(&self) -> DType {
        self.net.dtype()
    }

    pub fn device(&self) -> &Device {
        self.net.device()
    }

    pub(super) fn ids_tensor(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary (size {})",
                self.config.vocab_size
            );
        }
        Tensor::new(ids, self.device())?.unsqueeze(0)
    }

    /// Logits (t, vocab) for every position of `ids`, computed without a cache.
    pub fn forward_logits(&self, ids: &[u32], kernels: Kernels) -> candle_core::Result<Tensor> {
        let ids = self.ids_tensor(ids)?;
        let pass = Pass {
            kernels,
            probes: None,
            cache: None,
            sources: None,
            head_sources: false,
            rows: Rows::Aligned,
            masks: None,
        };
        let h = self.net.residual(&ids, 0, pass)?;
        self.net.logits(&h, kernels)?.squeeze(0)
    }

    /// Feed a batch after what `cache` holds: one equally long row of ids per sequence, row r
    /// left-padded by `pads[r]` slots (counted from the start of the cache). Returns the logits
    /// of each row's last position (rows, vocab).
    pub fn step_batch(
        &self,
        rows: &[Vec<u32>],
        pads: &[usize],
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let t = rows.first().map_or(0, Vec::len);
        if t == 0 || rows.iter().any(|r| r.len() != t) || pads.len() != rows.len() {
            candle_core::bail!("step_batch: rows must be non-empty, equally long, one pad each");
        }
        let flat: Vec<u32> = rows.concat();
        let x = self.ids_tensor(&flat)?.reshape((rows.len(), t))?;
        let pos0 = cache.len();
        let pass = Pass {
            kernels: Kernels::Fast,
            probes: None,
            cache: Some(cache),
            sources: None,
            head_sources: false,
            rows: Rows::LeftPadded(pads),
            masks: None,
        };
        let h = self.net.residual(&x, pos0, pass)?;
        let last = h.narrow(1, t - 1, 1)?;
        self.net.logits(&last, Kernels::Fast)?.squeeze(1)
    }

    /// The training pass: runs the rows of `packing` with the kernels whose backward passes
    /// are closed forms, and returns, for the slots `at` (any shape, indices into the rows'
    /// slots laid end to end), the final hidden states after the norm (…, d) and the logits
    /// (…, vocab). Weight gradients flow only to the weights made trainable by
    /// [`Model::trainable`] or to attached LoRA updates.
    pub fn forward_packed(
        &self,
        packing: &Packing,
        at: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let rows = packing.rows();
        let t = rows.first().map_or(0, Vec::len);
        if t == 0 {
            candle_core::bail!("forward_packed: no tokens");
        }
        let x = self.ids_tensor(&rows.concat())?.reshape((rows.len(), t))?;
        let pass = Pass {
            kernels: Kernels::FusedGrad,
            probes: None,
            cache: None,
            sources: None,
            head_sources: false,
            rows: Rows::Packed(packing),
            masks: None,
        };
        let h = self.net.residual(&x, 0, pass)?;
        let d = h.dim(2)?;
        let mut shape = at.dims().to_vec();
        shape.push(d);
        let h = h
            .reshape((rows.len() * t, d))?
            .index_select(&at.flatten_all()?, 0)?
            .reshape(shape)?;
        self.net.normed_and_logits(&h, Kernels::FusedGrad)
    }

    /// Make every weight a trainable variable (for the lab's trainers) and return them under
    /// their Hugging Face names. From then on the training pass computes their gradients;
    /// attribution still never does (its probes' projections use the activation-only matmul).
    pub fn trainable(&mut self) -> candle_core::Result<Vec<(String, candle_core::Var)>> {
        self.net.make_trainable()
    }

    /// Attach new LoRA updates (B = 0, so the model is unchanged until they are trained) to
    /// the layers `settings` targets, keeping every base weight frozen: the training pass then
    /// computes gradients for A and B alone. Returns them under their layers' names.
    pub fn attach_lora(
        &mut self,
        settings: &LoraSettings,
    ) -> candle_core::Result<Vec<(String, LoraPair)>> {
        self.net.attach_lora(settings)
    }

    /// The model without its attached LoRA updates, sharing every weight (no copy): the frozen
    /// reference of a LoRA fine-tune.
    pub fn without_lora(&self) -> Model {
        Model {
            net: self.net.without_lora(),
            ..self.clone()
        }
    }

    /// The model as constants for passes that need no gradient: trainable weights detached,
    /// attached LoRA updates merged into their weights (a copy of those weights).
    pub fn for_inference(&self) -> candle_core::Result<Model> {
        Ok(Model {
            net: self.net.for_inference()?,
            ..self.clone()
        })
    }

    /// Feed `ids` after what `cache` holds; returns the logits of the last position (vocab).
    pub fn step(&self, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        self.step_batch(&[ids.to_vec()], &[0], cache)?.squeeze(0)
    }

    /// The differentiable pass: runs `ids` with a probe on every destination input and returns
    /// the logits at `positions` (for the caller's loss) together with every source activation.
    /// Call [`Traced::gradients`] with a scalar loss built from those logits.
    pub fn trace(&self, ids: &[u32], positions: Range<usize>) -> candle_core::Result<Traced> {
        self.trace_patched(ids, positions, &[], false)
    }

    /// [`Model::trace`] with some destination inputs shifted: each `(destination, delta)` adds
    /// `delta` (t, d) to that destination's input only. Removing a fraction ε of source `u`'s
    /// contribution to destination `v` is the patch `(v, −ε·A_u)`. With `heads`, attention is
    /// split per head: one residual copy per query head and per key/value head, and one source
    /// per head (see [`Traced`]); a patch then addresses a probe (1, n, t, d) as (n, t, d).
    pub fn trace_patched(
        &self,
        ids: &[u32],
        positions: Range<usize>,
        patches: &[(Destination, Tensor)],
        heads: bool,
    ) -> candle_core::Result<Traced> {
        let t = ids.len();
        if positions.is_empty() || positions.end > t {
            candle_core::bail!("logit positions {positions:?} outside a sequence of {t} tokens");
        }
        let x = self.ids_tensor(ids)?;
        let taps = self.net.taps_gradients();
        let mut probes =
            Probes::zeros(&self.config, t, (heads, taps), self.dtype(), self.device())?;
        for &(dest, ref delta) in patches {
            probes.patch(dest, delta.to_dtype(self.dtype())?.unsqueeze(0)?)?;
        }
        let mut sources = Vec::with_capacity(1 + 2 * self.config.num_layers);
        let pass = Pass {
            kernels: Kernels::FusedGrad,
            probes: Some(&probes),
            cache: None,
            sources: Some(&mut sources),
            head_sources: heads,
            rows: Rows::Aligned,
            masks: None,
        };
        let h = self.net.residual(&x, 0, pass)?;
        let h = h.narrow(1, positions.start, positions.len())?;
        let logits = self.net.logits(&h, Kernels::FusedGrad)?.squeeze(0)?;
        let mut flat = Vec::with_capacity(sources.len());
        for s in sources {
            let s = s.detach();
            if s.rank() == 3 && s.dim(0)? > 1 {
                // Per-head sources (heads, t, d).
                flat.extend(s.chunk(s.dim(0)?, 0)?.into_iter().map(|h| h.squeeze(0)));
            } else {
                flat.push(s.squeeze(0));
            }
        }
        let sources = flat.into_iter().collect::<candle_core::Result<_>>()?;
        Ok(Traced {
            logits,
            sources,
            probes,
        })
    }

    /// The weight products of one attribution pass of `rows` tokens, and nothing else: every
    /// layer projection's forward product and its input gradient's product, in the order of
    /// the pass and with its kernels, on constant inputs. Returns their floating-point
    /// operations. `bench` sets a pass's time beside these products' own: the products stream
    /// every weight from memory, which the 1024³ product that the matmul rate is measured on
    /// does not.
    pub fn weight_products(&self, rows: usize) -> candle_core::Result<f64> {
        let mut inputs: Vec<Tensor> = Vec::new();
        let mut input = |n: usize| -> candle_core::Result<Tensor> {
            match inputs.iter().find(|x| x.dim(1).ok() == Some(n)) {
                Some(x) => Ok(x.clone()),
                None => {
                    let x = Tensor::ones((rows, n), self.dtype(), self.device())?;
                    inputs.push(x.clone());
                    Ok(x)
                }
            }
        };
        let mut flops = 0.0;
        for lin in self.net.projections() {
            let (out, inp) = lin.weight().dims2()?;
            lin.pass_products(&input(inp)?, &input(out)?)?;
            flops += 4.0 * (rows * out * inp) as f64;
        }
        Ok(flops)
    }
}

/// The result of [`Model::trace`].
pub struct Traced {
    /// Logits (positions, vocab) at the requested positions, differentiable.
    pub logits: Tensor,
    /// Source activations (t, d) in the study's source order ([`crate::node::sources`]): input,
    /// a0, m0, a1, m1, … (with heads: input, a0.h0, …, a0.h{H−1}, m0, …).
    pub sources: Vec<Tensor>,
    probes: Probes,
}

impl Traced {
    /// One backward pass of `loss`; returns ∂loss/∂(input of each destination), each (t, d), in
    /// the study's destination order ([`crate::node::destinations`]): a0<q>, a0<k>, a0<v>, m0,
    /// a1<q>, …, logits (with heads: a0.h0<q> … a0.h{H−1}<q>, a0.h0<k> …, a0.h0<v> …, m0, …).
    pub fn gradients(&self, loss: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let probes = self.probes.all();
        // A tap holds what the last backward pass through its norm left.
        for p in probes {
            if let Probe::Tap { tap, .. } = p {
                tap.take();
            }
        }
        let grads = loss.backward()?;
        let mut out = Vec::with_capacity(probes.len());
        for p in probes {
            let g = match p {
                Probe::Var(v) => match grads.get(v.as_tensor()) {
                    Some(g) => g.squeeze(0)?,
                    None => v.as_tensor().zeros_like()?.squeeze(0)?,
                },
                Probe::Tap { tap, .. } => match tap.take() {
                    Some(g) => g.squeeze(0)?,
                    // The input source is (t, d), as every destination input.
                    None => self.sources[0].zeros_like()?,
                },
            };
            if g.rank() == 3 {
                for h in g.chunk(g.dim(0)?, 0)? {
                    out.push(h.squeeze(0)?);
                }
            } else {
                out.push(g);
            }
        }
        Ok(out)
    }
}
