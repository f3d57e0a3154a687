//! What `circuitdiff inspect` reports about a checkpoint, computed from its configuration and
//! file headers without loading the weights.

use super::config::ModelConfig;
use super::error::Result;
use super::gguf::GgufFile;
use super::source::Checkpoint;
use super::weights::safetensors_dtype;
use serde::Serialize;

/// Memory for scoring one sequence, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryEstimate {
    pub seq_len: usize,
    pub compute_dtype_bytes: usize,
    pub weights: u64,
    /// Activations kept for the backward pass plus the gradients alive at its peak.
    pub activations: u64,
    pub total: u64,
}

impl MemoryEstimate {
    /// Estimate for a sequence of `t` tokens in a dtype of `bytes` bytes, scoring `k` answer
    /// positions.
    pub fn new(cfg: &ModelConfig, t: usize, k: usize, bytes: usize) -> Self {
        let (d, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (h, kvh) = (cfg.num_heads, cfg.num_kv_heads);
        // Per layer, values kept by the graph: 4 probed residual copies and their norms (8·d),
        // q/k/v before and after rotary (2·(h+2·kvh)·hd), repeated k/v (2·h·hd), scores,
        // softmax and mask sum (3·h·t), attention output and o-proj (h·hd + d), residual sums
        // (2·d), MLP norm, gate, up, silu, product (d + 4·i), down (d).
        let per_token =
            8 * d + 2 * (h + 2 * kvh) * hd + 2 * h * hd + 3 * h * t + h * hd + 4 * d + 4 * i;
        let saved = (cfg.num_layers * per_token * t) as u64;
        // Backward transients: gradients of one layer's tensors, plus 4 probe gradients per
        // layer and the logits (k × vocab, three copies).
        let backward = (per_token * t + 4 * cfg.num_layers * t * d + 3 * k * cfg.vocab_size) as u64;
        let activations = (saved + backward) * bytes as u64;
        let weights = (cfg.num_params() * bytes) as u64;
        Self {
            seq_len: t,
            compute_dtype_bytes: bytes,
            weights,
            activations,
            total: weights + activations,
        }
    }
}

/// A checkpoint's vital statistics.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub spec: String,
    pub source: String,
    pub config: ModelConfig,
    /// dtype of the stored weights (`f32`, `bf16`, …, or the GGUF quantisation of the
    /// embedding).
    pub checkpoint_dtype: String,
    pub num_params: usize,
    pub num_edges: usize,
    pub memory: MemoryEstimate,
}

/// Describe a resolved checkpoint; `seq_len` sizes the memory estimate (f32 compute).
pub fn inspect(spec: &str, ckpt: &Checkpoint, seq_len: usize) -> Result<ModelInfo> {
    let (config, checkpoint_dtype, source) = match ckpt {
        Checkpoint::Folder { dir, weights } => {
            let cfg = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            let dtype = match weights.first() {
                Some(w) => safetensors_dtype(w)?,
                None => "unknown".into(),
            };
            (cfg, dtype, dir.display().to_string())
        }
        Checkpoint::Gguf { file, .. } => {
            let g = GgufFile::open(file)?;
            (g.config()?, g.quantization(), file.display().to_string())
        }
    };
    let memory = MemoryEstimate::new(&config, seq_len, (seq_len / 20).max(1), 4);
    Ok(ModelInfo {
        spec: spec.to_owned(),
        source,
        num_params: config.num_params(),
        num_edges: config.num_edges(),
        checkpoint_dtype,
        config,
        memory,
    })
}
