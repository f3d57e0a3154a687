//! Checkpoints and the transformer: load a model from a folder, a `.gguf` file, the Hub or a
//! PEFT LoRA adapter on any of them, run it for generation, or run it differentiably to get the
//! activations and gradients that edge attribution needs.

mod ablate;
mod adapter;
mod attention;
mod config;
mod device;
mod download;
mod error;
mod fused;
mod generate;
mod gguf;
mod gguf_header;
mod inspect;
pub mod limits;
mod linear;
mod lora;
mod masks;
mod matrix;
mod memory;
mod mlp;
mod pool;
mod save;
mod source;
#[cfg(test)]
mod test_support;
mod tokenizer;
mod transformer;
mod weights;

pub use ablate::CleanPass;
pub use adapter::{AdapterInfo, LoraAdapter};
pub use config::{Family, ModelConfig, RopeScaling};
pub use device::open_device;
pub use download::DownloadProgress;
pub use error::{ModelError, Result};
pub use generate::{GenerateOptions, Generation, Sampling, StopReason};
pub use inspect::{inspect, inspect_plan, ModelInfo};
pub use linear::{inner_products, Linear, LoraPair};
pub use lora::{LoraSettings, LoraTarget, UnknownTarget};
pub use masks::EdgeMasks;
pub use memory::{available as available_memory, MemoryEstimate, ScorePlan};
pub use save::{char_tokenizer_json, random_weights, write_hf_folder};
pub use source::{resolve, Checkpoint, HubOptions};
pub use tokenizer::Tokenizer;
pub use transformer::{Kernels, KvCache};

use crate::node::Destination;
use candle_core::{DType, Device, Tensor};
use sha2::Digest as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use transformer::{Pass, Probe, Probes, Transformer};
use weights::TensorStore;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype; weights are converted on load. f32 by default (f64 for exact checks).
    pub dtype: DType,
    pub device: Device,
    pub hub: HubOptions,
    /// What will be scored: with a plan, loading refuses a model whose weights plus one scoring
    /// pass do not fit; without, one whose weights do not.
    pub plan: Option<ScorePlan>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            hub: HubOptions::default(),
            plan: None,
        }
    }
}

/// A loaded model: configuration, tokenizer and weights, whatever the source.
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
    net: Transformer,
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

    fn ids_tensor(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
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
            pads: None,
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
            pads: Some(pads),
            masks: None,
        };
        let h = self.net.residual(&x, pos0, pass)?;
        let last = h.narrow(1, t - 1, 1)?;
        self.net.logits(&last, Kernels::Fast)?.squeeze(1)
    }

    /// The training pass: runs a left-padded batch (row r padded by `pads[r]` slots) with
    /// differentiable kernels and returns the final hidden states after the norm (b, t, d) and
    /// the logits of every position (b, t, vocab). Weight gradients flow only to the weights
    /// made trainable by [`Model::trainable`].
    pub fn forward_batch(
        &self,
        rows: &[Vec<u32>],
        pads: &[usize],
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let t = rows.first().map_or(0, Vec::len);
        if t == 0 || rows.iter().any(|r| r.len() != t) || pads.len() != rows.len() {
            candle_core::bail!("forward_batch: rows must be non-empty, equally long, one pad each");
        }
        let x = self.ids_tensor(&rows.concat())?.reshape((rows.len(), t))?;
        let pass = Pass {
            kernels: Kernels::Differentiable,
            probes: None,
            cache: None,
            sources: None,
            head_sources: false,
            pads: Some(pads),
            masks: None,
        };
        let h = self.net.residual(&x, 0, pass)?;
        self.net.normed_and_logits(&h, Kernels::Differentiable)
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
            pads: None,
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

/// Configuration, tokenizer and the store of the weights of a checkpoint (an adapter merged into
/// them), checked against each other.
fn open(
    checkpoint: &Checkpoint,
    opts: &LoadOptions,
) -> Result<(ModelConfig, Tokenizer, TensorStore)> {
    match checkpoint {
        Checkpoint::Folder { dir, weights } => {
            let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            memory::check_fits(&config, opts, dir)?;
            let tokenizer = folder_tokenizer(dir, &config)?;
            let store = TensorStore::from_safetensors(weights, dir, opts.dtype, &opts.device)?;
            store.check(&config)?;
            Ok((config, tokenizer, store))
        }
        Checkpoint::Gguf {
            file,
            tokenizer_json,
        } => {
            let mut g = gguf::GgufFile::open(file)?;
            let config = g.config()?;
            memory::check_fits(&config, opts, file)?;
            let tokenizer = gguf_tokenizer(&g, tokenizer_json.as_deref(), &config)?;
            let tensors = g.tensors(&config)?;
            let store = TensorStore::from_map(tensors, file, opts.dtype, &opts.device);
            Ok((config, tokenizer, store))
        }
        Checkpoint::Adapter { adapter, base, .. } => {
            let (config, tokenizer, mut store) = open(base, opts)?;
            adapter.merge(&config, &mut store)?;
            let tokenizer = adapter_tokenizer(adapter, base, &config)?.unwrap_or(tokenizer);
            Ok((config, tokenizer, store))
        }
    }
}

/// The configuration and tokenizer of a model, without loading its weights (to check that two
/// models share a vocabulary and a graph before any long work). An adapter is checked against
/// its base's configuration.
pub fn load_without_weights(spec: &str, hub: &HubOptions) -> Result<(ModelConfig, Tokenizer)> {
    heads(&resolve(spec, hub, None)?)
}

fn heads(checkpoint: &Checkpoint) -> Result<(ModelConfig, Tokenizer)> {
    match checkpoint {
        Checkpoint::Folder { dir, .. } => {
            let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            let tokenizer = folder_tokenizer(dir, &config)?;
            Ok((config, tokenizer))
        }
        Checkpoint::Gguf {
            file,
            tokenizer_json,
        } => {
            let g = gguf::GgufFile::open(file)?;
            let config = g.config()?;
            let tokenizer = gguf_tokenizer(&g, tokenizer_json.as_deref(), &config)?;
            Ok((config, tokenizer))
        }
        Checkpoint::Adapter { adapter, base, .. } => {
            let (config, tokenizer) = heads(base)?;
            adapter.check(&config)?;
            let tokenizer = adapter_tokenizer(adapter, base, &config)?.unwrap_or(tokenizer);
            Ok((config, tokenizer))
        }
    }
}

/// An adapter's own tokenizer, when its folder has one (TRL saves it there), with the
/// end-of-sequence ids of its base's generation config; `None`: the base's tokenizer.
fn adapter_tokenizer(
    adapter: &LoraAdapter,
    base: &Checkpoint,
    config: &ModelConfig,
) -> Result<Option<Tokenizer>> {
    let Some(dir) = adapter.tokenizer_dir() else {
        return Ok(None);
    };
    let mut tokenizer = folder_tokenizer(dir, config)?;
    if let Checkpoint::Folder { dir: base_dir, .. } = base {
        tokenizer.add_eos_ids(&generation_eos(base_dir, config.vocab_size)?);
    }
    Ok(Some(tokenizer))
}

fn folder_tokenizer(dir: &Path, config: &ModelConfig) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_folder(dir)?;
    fits_vocabulary(&tokenizer, config, &dir.join("tokenizer.json"))?;
    tokenizer.add_eos_ids(&generation_eos(dir, config.vocab_size)?);
    tokenizer.add_eos_ids(&config.eos_token_ids);
    Ok(tokenizer)
}

/// Refuse a tokenizer (read from `path`) with more tokens than the model has embeddings.
fn fits_vocabulary(tokenizer: &Tokenizer, config: &ModelConfig, path: &Path) -> Result<()> {
    let n = tokenizer.vocab_size();
    if n <= config.vocab_size {
        return Ok(());
    }
    Err(ModelError::TokenizerTooLarge {
        path: path.to_owned(),
        tokens: n,
        vocab: config.vocab_size,
    })
}

fn gguf_tokenizer(
    g: &gguf::GgufFile,
    tokenizer_json: Option<&Path>,
    config: &ModelConfig,
) -> Result<Tokenizer> {
    let mut tokenizer = match tokenizer_json {
        Some(t) => Tokenizer::from_folder(t.parent().unwrap_or(Path::new(".")))?,
        None => g.tokenizer()?,
    };
    fits_vocabulary(&tokenizer, config, tokenizer_json.unwrap_or(g.path()))?;
    tokenizer.add_eos_ids(&config.eos_token_ids);
    Ok(tokenizer)
}

/// End-of-sequence ids from `generation_config.json`, if the folder has one; each must lie in the
/// vocabulary of `vocab` tokens.
fn generation_eos(dir: &Path, vocab: usize) -> Result<Vec<u32>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
    config::eos_ids(&path, "eos_token_id", json.get("eos_token_id"), vocab)
}

/// The fingerprint [`Model::load`] gives `spec` (its `fingerprint`), without reading the
/// weights: two specs with the same fingerprint are the same model.
pub fn fingerprint_of(spec: &str, hub: &HubOptions) -> Result<String> {
    fingerprint(&resolve(spec, hub, None)?.files())
}

/// sha256 over each file's name, size, and first and last MiB (whole file when smaller).
fn fingerprint(files: &[PathBuf]) -> Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const CHUNK: u64 = 1 << 20;
    let mut h = sha2::Sha256::new();
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
        h.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(len.to_le_bytes());
        let mut buf = Vec::new();
        (&mut f)
            .take(CHUNK)
            .read_to_end(&mut buf)
            .map_err(|e| ModelError::io(path, e))?;
        if len > 2 * CHUNK {
            f.seek(SeekFrom::End(-(CHUNK as i64)))
                .map_err(|e| ModelError::io(path, e))?;
        }
        f.take(CHUNK)
            .read_to_end(&mut buf)
            .map_err(|e| ModelError::io(path, e))?;
        h.update(&buf);
    }
    Ok(format!("{:x}", h.finalize()))
}
