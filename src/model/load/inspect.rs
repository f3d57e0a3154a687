//! What `circuitdiff inspect` reports about a checkpoint, computed from its configuration and
//! file headers without loading the weights.

use super::adapter::AdapterInfo;
use super::config::ModelConfig;
use super::gguf::GgufFile;
use super::memory::{MemoryEstimate, ScorePlan};
use super::source::Checkpoint;
use super::weights::safetensors_dtype;
use crate::model::error::Result;
use candle_core::DType;
use serde::Serialize;

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
    /// The LoRA adapter, when the checkpoint is one (configuration, dtype and sizes are its
    /// base's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterInfo>,
}

/// Describe a resolved checkpoint; `seq_len` sizes the memory estimate (f32 compute, block
/// level).
pub fn inspect(spec: &str, ckpt: &Checkpoint, seq_len: usize) -> Result<ModelInfo> {
    inspect_plan(spec, ckpt, &ScorePlan::block(seq_len), DType::F32)
}

/// Describe a resolved checkpoint, with the memory estimate of `plan` in the compute dtype
/// `dtype`.
pub fn inspect_plan(
    spec: &str,
    ckpt: &Checkpoint,
    plan: &ScorePlan,
    dtype: DType,
) -> Result<ModelInfo> {
    let (config, checkpoint_dtype) = describe(ckpt)?;
    let (source, adapter) = match ckpt {
        Checkpoint::Folder { dir, .. } => (dir.display().to_string(), None),
        Checkpoint::Gguf { file, .. } => (file.display().to_string(), None),
        Checkpoint::Adapter {
            adapter,
            base_spec,
            base,
        } => (
            adapter.dir.display().to_string(),
            Some(adapter.info(base_spec, super::open::fingerprint(&base.files())?)),
        ),
    };
    let memory = MemoryEstimate::new(&config, plan, dtype);
    Ok(ModelInfo {
        spec: spec.to_owned(),
        source,
        num_params: config.num_params(),
        num_edges: config.num_edges(),
        checkpoint_dtype,
        config,
        memory,
        adapter,
    })
}

/// A checkpoint's configuration and the dtype of its stored weights (an adapter's: its base's,
/// the adapter checked against it).
fn describe(ckpt: &Checkpoint) -> Result<(ModelConfig, String)> {
    match ckpt {
        Checkpoint::Folder { dir, weights } => {
            let cfg = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            let dtype = match weights.first() {
                Some(w) => safetensors_dtype(w)?,
                None => "unknown".into(),
            };
            Ok((cfg, dtype))
        }
        Checkpoint::Gguf { file, .. } => {
            let g = GgufFile::open(file)?;
            Ok((g.config()?, g.quantization()))
        }
        Checkpoint::Adapter { adapter, base, .. } => {
            let (cfg, dtype) = describe(base)?;
            adapter.check(&cfg)?;
            Ok((cfg, dtype))
        }
    }
}
