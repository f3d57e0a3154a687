//! The bounds every number read from a model file must meet before anything is built from it.
//!
//! A configuration (`config.json` or GGUF metadata) sizes every allocation that follows: the
//! per-layer tables, the memory plan, the weights. Each size is checked here first, so that a
//! corrupt or hostile file is refused with a message naming its field instead of aborting on a
//! multi-terabyte allocation or overflowing arithmetic. The bounds are generous: the largest
//! published decoders (hidden 16,384, 126 layers, 256k vocabularies, 128k contexts) sit well
//! inside them.

use crate::model::error::{ModelError, Result};
use std::path::Path;

/// Most decoder layers (`num_hidden_layers`, GGUF `block_count`).
pub const MAX_LAYERS: usize = 1024;

/// Widest residual stream (`hidden_size`, GGUF `embedding_length`).
pub const MAX_HIDDEN: usize = 65_536;

/// Widest MLP (`intermediate_size`, GGUF `feed_forward_length`).
pub const MAX_INTERMEDIATE: usize = 1 << 20;

/// Largest vocabulary (`vocab_size`).
pub const MAX_VOCAB: usize = 4 << 20;

/// Most attention heads, query or key/value (`num_attention_heads`, `num_key_value_heads`).
pub const MAX_HEADS: usize = 1024;

/// Largest attention head (`head_dim`, GGUF `attention.key_length`); it must also be even, as
/// the rotary embedding rotates half of it.
pub const MAX_HEAD_DIM: usize = 1024;

/// Longest context (`max_position_embeddings`, the rope scaling's original context, sliding
/// windows).
pub const MAX_POSITIONS: usize = 16 << 20;

/// Largest GGUF data alignment (`general.alignment`, a power of two).
pub const MAX_GGUF_ALIGNMENT: u64 = 1 << 16;

/// Most elements of one GGUF metadata array (the vocabulary and its merges are the largest).
pub const MAX_GGUF_ARRAY: u64 = 4 * MAX_VOCAB as u64;

/// Most tensors in one GGUF file (a layer has at most 16).
pub const MAX_GGUF_TENSORS: u64 = 16 * MAX_LAYERS as u64 + 16;

/// Largest `tokenizer.json` read (the largest of real models are tens of MiB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// The names under which a source stores the numbers that size a decoder: `config.json` keys or
/// GGUF metadata keys.
pub(crate) struct DimNames {
    pub vocab: String,
    pub hidden: String,
    pub intermediate: String,
    pub layers: String,
    pub heads: String,
    pub kv_heads: String,
    pub head_dim: String,
    pub positions: String,
}

impl DimNames {
    /// The keys of a Hugging Face `config.json`.
    pub fn hf() -> Self {
        Self {
            vocab: "vocab_size".into(),
            hidden: "hidden_size".into(),
            intermediate: "intermediate_size".into(),
            layers: "num_hidden_layers".into(),
            heads: "num_attention_heads".into(),
            kv_heads: "num_key_value_heads".into(),
            head_dim: "head_dim".into(),
            positions: "max_position_embeddings".into(),
        }
    }

    /// The metadata keys of a GGUF file of architecture `arch`.
    pub fn gguf(arch: &str) -> Self {
        Self {
            vocab: format!("{arch}.vocab_size"),
            hidden: format!("{arch}.embedding_length"),
            intermediate: format!("{arch}.feed_forward_length"),
            layers: format!("{arch}.block_count"),
            heads: format!("{arch}.attention.head_count"),
            kv_heads: format!("{arch}.attention.head_count_kv"),
            head_dim: format!("{arch}.attention.key_length"),
            positions: format!("{arch}.context_length"),
        }
    }
}

/// The numbers that size a decoder, as read, before anything is allocated from them.
pub(crate) struct Dims {
    pub vocab: u64,
    pub hidden: u64,
    pub intermediate: u64,
    pub layers: u64,
    pub heads: u64,
    /// `None`: as many as query heads.
    pub kv_heads: Option<u64>,
    /// `None`: hidden / heads.
    pub head_dim: Option<u64>,
    pub positions: u64,
}

/// [`Dims`] once checked: every value within its bound and consistent with the others.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedDims {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub positions: usize,
}

impl Dims {
    /// Check every value against its bound and the attention shape against itself; `names` says
    /// what to call each value in the error.
    pub fn check(&self, path: &Path, names: &DimNames) -> Result<CheckedDims> {
        let vocab = in_range(path, &names.vocab, self.vocab, 1, MAX_VOCAB)?;
        let hidden = in_range(path, &names.hidden, self.hidden, 1, MAX_HIDDEN)?;
        let intermediate = in_range(
            path,
            &names.intermediate,
            self.intermediate,
            1,
            MAX_INTERMEDIATE,
        )?;
        let layers = in_range(path, &names.layers, self.layers, 1, MAX_LAYERS)?;
        let heads = in_range(path, &names.heads, self.heads, 1, MAX_HEADS)?;
        let kv_heads = match self.kv_heads {
            Some(n) => in_range(path, &names.kv_heads, n, 1, MAX_HEADS)?,
            None => heads,
        };
        if heads % kv_heads != 0 {
            return Err(ModelError::config(
                path,
                names.kv_heads.as_str(),
                format!("{kv_heads} does not divide {} = {heads}", names.heads),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => in_range(path, &names.head_dim, d, 2, MAX_HEAD_DIM)?,
            None if hidden % heads == 0 => hidden / heads,
            None => {
                return Err(ModelError::config(
                    path,
                    names.head_dim.as_str(),
                    format!(
                        "missing, and {} = {hidden} is not a multiple of {} = {heads}",
                        names.hidden, names.heads
                    ),
                ))
            }
        };
        if head_dim % 2 != 0 || head_dim > MAX_HEAD_DIM {
            return Err(ModelError::config(
                path,
                names.head_dim.as_str(),
                format!(
                    "the attention head size {head_dim} must be even and at most {MAX_HEAD_DIM}"
                ),
            ));
        }
        let positions = in_range(path, &names.positions, self.positions, 1, MAX_POSITIONS)?;
        Ok(CheckedDims {
            vocab,
            hidden,
            intermediate,
            layers,
            heads,
            kv_heads,
            head_dim,
            positions,
        })
    }
}

/// `value` as a `usize` when it lies in `min..=max`.
pub(crate) fn in_range(
    path: &Path,
    field: &str,
    value: u64,
    min: usize,
    max: usize,
) -> Result<usize> {
    match usize::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ModelError::OutOfRange {
            path: path.to_owned(),
            field: field.to_owned(),
            value,
            min: min as u64,
            max: max as u64,
        }),
    }
}
