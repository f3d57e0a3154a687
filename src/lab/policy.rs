//! A model being trained: its weights as variables, the training forward pass over batches of
//! prompt + answer sequences, and checkpoints written as Hugging Face folders.

use super::{LabError, Result};
use crate::model::{write_hf_folder, LoadOptions, Model};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;
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

/// Prompt + answer sequences left-padded into one batch. Position j of a row predicts token
/// j + 1; `mask` marks the positions whose next token belongs to the answer.
pub struct SeqBatch {
    pub rows: Vec<Vec<u32>>,
    pub pads: Vec<usize>,
    /// Next-token ids (b, t − 1).
    pub targets: Tensor,
    /// 1 where the next token is an answer token, else 0 (b, t − 1), in the model's dtype.
    pub mask: Tensor,
}

impl SeqBatch {
    /// `pairs` of (prompt ids, answer ids), both non-empty, for a model on `device` computing
    /// in `dtype` (the mask's dtype).
    pub fn new(pairs: &[(&[u32], &[u32])], device: &Device, dtype: DType) -> Result<Self> {
        let width = pairs
            .iter()
            .map(|(p, a)| p.len() + a.len())
            .max()
            .unwrap_or(0);
        if width < 2 || pairs.iter().any(|(p, a)| p.is_empty() || a.is_empty()) {
            return Err(LabError::EmptySequence);
        }
        let mut rows = Vec::with_capacity(pairs.len());
        let mut pads = Vec::with_capacity(pairs.len());
        let mut targets = Vec::with_capacity(pairs.len() * (width - 1));
        let mut mask = Vec::with_capacity(pairs.len() * (width - 1));
        for (p, a) in pairs {
            let pad = width - p.len() - a.len();
            let row: Vec<u32> = std::iter::repeat_n(p[0], pad)
                .chain(p.iter().copied())
                .chain(a.iter().copied())
                .collect();
            let answer_start = pad + p.len();
            for j in 0..width - 1 {
                targets.push(row[j + 1]);
                mask.push(if j + 1 >= answer_start { 1f32 } else { 0.0 });
            }
            rows.push(row);
            pads.push(pad);
        }
        let shape = (pairs.len(), width - 1);
        Ok(Self {
            targets: Tensor::from_vec(targets, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)?,
            rows,
            pads,
        })
    }
}

/// The training forward pass: log-probabilities of each row's next tokens (b, t − 1) and the
/// normed hidden states that predict them (b, t − 1, d), both differentiable.
pub fn token_logprobs(model: &Model, batch: &SeqBatch) -> Result<(Tensor, Tensor)> {
    let (hidden, logits) = model.forward_batch(&batch.rows, &batch.pads)?;
    let t = logits.dim(1)?;
    let logits = logits.narrow(1, 0, t - 1)?;
    let logp = log_softmax(&logits)?
        .gather(&batch.targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?;
    Ok((logp, hidden.narrow(1, 0, t - 1)?))
}

/// Log-softmax over the last dimension; the shift by the maximum is kept out of the graph (it
/// cancels out of the result, so the gradient stays exact).
pub fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
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
