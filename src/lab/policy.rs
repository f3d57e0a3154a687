//! A model being trained: its weights as variables, the training forward pass over batches of
//! prompt + answer sequences, and checkpoints written as Hugging Face folders.

use super::{LabError, Result};
use crate::model::{target_logprobs, write_hf_folder, LoadOptions, Model};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// A model whose weights are trainable variables.
pub struct Policy {
    pub model: Model,
    pub params: Vec<(String, Var)>,
    tokenizer_json: serde_json::Value,
}

impl Policy {
    /// Load a Hugging Face folder and make every weight trainable.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut model = load_frozen(dir)?;
        let params = model.trainable()?;
        let path = dir.join(crate::model::TOKENIZER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
        let tokenizer_json = serde_json::from_str(&text).map_err(|e| LabError::json(&path, e))?;
        Ok(Self {
            model,
            params,
            tokenizer_json,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Write the current weights as a Hugging Face folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect();
        Ok(write_hf_folder(
            dir,
            &self.model.config,
            &tensors,
            &self.tokenizer_json,
            self.model.tokenizer.chat_template.as_deref(),
        )?)
    }
}

/// Load a Hugging Face folder for inference only (a frozen reference).
pub fn load_frozen(dir: &Path) -> Result<Model> {
    Ok(Model::load(
        &dir.to_string_lossy(),
        &LoadOptions::default(),
    )?)
}

/// Prompt + answer sequences right-padded into one batch, and the window of positions that the
/// loss reads. Position j of a row predicts token j + 1; every row starts at position 0, so
/// that the rows share one rotary table and the causal mask (a row never attends to the
/// padding after it).
pub struct SeqBatch {
    /// Each row's prompt and answer, then padding up to the longest row.
    pub rows: Vec<Vec<u32>>,
    /// The positions whose next token belongs to some row's answer: from the shortest prompt's
    /// last token to the longest row's last but one.
    pub window: Range<usize>,
    /// Next-token ids over the window (b, w).
    pub targets: Tensor,
    /// 1 where the next token is an answer token, else 0 (b, w), in the model's dtype.
    pub mask: Tensor,
}

impl SeqBatch {
    /// `pairs` of (prompt ids, answer ids), both non-empty, for a model on `device` computing
    /// in `dtype` (the mask's dtype).
    pub fn new(pairs: &[(&[u32], &[u32])], device: &Device, dtype: DType) -> Result<Self> {
        if pairs.is_empty() || pairs.iter().any(|(p, a)| p.is_empty() || a.is_empty()) {
            return Err(LabError::EmptySequence);
        }
        let width = pairs
            .iter()
            .map(|(p, a)| p.len() + a.len())
            .max()
            .unwrap_or(0);
        let first = pairs.iter().map(|(p, _)| p.len()).min().unwrap_or(1) - 1;
        let window = first..width - 1;
        let mut rows = Vec::with_capacity(pairs.len());
        let mut targets = Vec::with_capacity(pairs.len() * window.len());
        let mut mask = Vec::with_capacity(pairs.len() * window.len());
        for (p, a) in pairs {
            let row: Vec<u32> = p
                .iter()
                .chain(a.iter())
                .copied()
                .chain(std::iter::repeat_n(p[0], width - p.len() - a.len()))
                .collect();
            let answer = p.len()..p.len() + a.len();
            for j in window.clone() {
                targets.push(row[j + 1]);
                mask.push(if answer.contains(&(j + 1)) { 1f32 } else { 0.0 });
            }
            rows.push(row);
        }
        let shape = (pairs.len(), window.len());
        Ok(Self {
            targets: Tensor::from_vec(targets, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)?,
            rows,
            window,
        })
    }
}

/// The training forward pass: log-probabilities of each row's next tokens over the batch's
/// window (b, w) and the normed hidden states that predict them (b, w, d), both
/// differentiable.
pub fn token_logprobs(model: &Model, batch: &SeqBatch) -> Result<(Tensor, Tensor)> {
    let (hidden, logits) = model.forward_batch(&batch.rows, batch.window.clone())?;
    Ok((target_logprobs(&logits, &batch.targets)?, hidden))
}

/// Σ over each row of `x · mask` divided by the row's mask count (b,).
pub fn masked_row_mean(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    (x * mask)?
        .sum(1)?
        .broadcast_div(&mask.sum(1)?.maximum(1.0)?)
}

/// Σ of `x · mask` over all cells divided by the mask count (scalar).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    (x * mask)?
        .sum_all()?
        .broadcast_div(&mask.sum_all()?.maximum(1.0)?)
}
