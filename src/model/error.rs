//! Errors raised while loading or running a model. Every message names the file or field at
//! fault and, where one exists, the fix.

use std::path::PathBuf;

/// Everything that can go wrong between a path on disk and a ready [`crate::model::Model`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} is not a model: expected a folder with config.json, a .gguf file, or a Hugging Face id such as `HuggingFaceTB/SmolLM2-135M-Instruct`")]
    NotAModel { path: PathBuf },

    #[error("{path}: missing {what}. {fix}")]
    Missing {
        path: PathBuf,
        what: String,
        fix: String,
    },

    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("{path}: field `{field}`: {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },

    #[error("{path}: unsupported architecture `{found}`; circuitdiff reads Llama, Mistral, Qwen2, Qwen3, OLMo 2, Phi-3, Gemma 2, Gemma 3 text, Qwen3-MoE, OLMoE and Mixtral models ({hint})")]
    Unsupported {
        path: PathBuf,
        found: String,
        hint: String,
    },

    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}; the weights do not match config.json")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error("{path}: `{field}` is {value}, outside {min}..={max}; the file is corrupt, or beyond the bounds circuitdiff reads")]
    OutOfRange {
        path: PathBuf,
        field: String,
        value: u64,
        min: u64,
        max: u64,
    },

    #[error("{path}: tensor `{name}` is not part of the model its configuration describes (another family, or more layers than configured)")]
    ExtraTensor { path: PathBuf, name: String },

    #[error(
        "{path}: the header lists tensor `{name}` twice; the file is corrupt: download it again"
    )]
    DuplicateTensor { path: PathBuf, name: String },

    #[error("{path}: tensor `{name}` is also stored in {first}; the shards overlap: download the model again")]
    TensorInTwoFiles {
        path: PathBuf,
        name: String,
        first: PathBuf,
    },

    #[error("{path}: tensors `{name}` and `{other}` share bytes; the header is corrupt: download the file again")]
    OverlappingTensors {
        path: PathBuf,
        name: String,
        other: String,
    },

    #[error("{path}: tensor `{name}` holds {dtype} values; model weights must be floats (f16, bf16, f32 or f64)")]
    TensorDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    #[error("{path}: not a readable GGUF file ({source}); download it again")]
    Gguf {
        path: PathBuf,
        source: candle_core::Error,
    },

    #[error("{path}: cannot read weights ({message}); the file is truncated or corrupt: download it again")]
    Weights { path: PathBuf, message: String },

    #[error("{path}: {tokens} tokens, but the model's vocabulary has {vocab}; the tokenizer belongs to another model")]
    TokenizerTooLarge {
        path: PathBuf,
        tokens: usize,
        vocab: usize,
    },

    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("Hugging Face id `{id}`: {message}")]
    Hub { id: String, message: String },

    #[error("Hugging Face id `{id}`: download of `{file}` cancelled after {kept} bytes; {part} keeps them and the next download resumes from there")]
    Cancelled {
        id: String,
        file: String,
        /// Bytes of the file on disk, in `part`.
        kept: u64,
        part: PathBuf,
    },

    #[error("{path}: {plan}, but only {:.1} GiB of memory is available; {fix}", *available as f64 / GIB)]
    TooLarge {
        path: PathBuf,
        needed: u64,
        available: u64,
        /// What was counted: the weights, and the scoring pass when planned.
        plan: String,
        fix: String,
    },

    #[error("{path}: {what}: circuitdiff merges plain LoRA adapters only. {fix}")]
    AdapterUnsupported {
        path: PathBuf,
        what: String,
        fix: String,
    },

    #[error("{path}: target module `{module}` is not a linear layer of the families circuitdiff reads (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head); the adapter was trained for another architecture")]
    AdapterTarget { path: PathBuf, module: String },

    #[error("{path}: tensor `{name}` has rank {found}, but adapter_config.json sets r = {expected} for `{module}` (`r`, `rank_pattern`); the weights and the configuration belong to different adapters")]
    AdapterRank {
        path: PathBuf,
        name: String,
        module: String,
        found: usize,
        expected: usize,
    },

    #[error("{path}: tensor `{name}`: {message}")]
    AdapterTensor {
        path: PathBuf,
        name: String,
        message: String,
    },

    #[error("{adapter}: cannot load its base model `{base}`: {source}. {fix}")]
    AdapterBase {
        adapter: PathBuf,
        base: String,
        source: Box<ModelError>,
        fix: String,
    },

    #[error("device `{spec}`: {message}")]
    Device { spec: String, message: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

const GIB: f64 = (1u64 << 30) as f64;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Result alias for model loading.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
