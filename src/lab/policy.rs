//! A model being trained: its weights as variables, the training forward pass over batches of
//! prompt + answer sequences, and checkpoints written as Hugging Face folders.

use super::{LabError, Result};
use crate::model::{target_logprobs, write_hf_folder, LoadOptions, Model, Packing};
use candle_core::{DType, Device, Tensor, Var};
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

/// Prompt + answer sequences as one batch: packed for the training pass (answers to the same
/// prompt share one copy of it, [`Packing`]), and laid out for the loss as one row per
/// sequence whose column k is answer token k.
pub struct SeqBatch {
    pub packing: Packing,
    /// Per sequence and answer token: the slot of the packed rows (laid end to end) whose
    /// next-token prediction it is (b, w), w the longest answer; 0 past a sequence's answer.
    pub at: Tensor,
    /// The answer tokens (b, w), 0 past a sequence's answer.
    pub targets: Tensor,
    /// 1 where column k is an answer token, else 0 (b, w), in the model's dtype.
    pub mask: Tensor,
}

impl SeqBatch {
    /// `pairs` of (prompt ids, answer ids), both non-empty, for a model on `device` computing
    /// in `dtype` (the mask's dtype).
    pub fn new(pairs: &[(&[u32], &[u32])], device: &Device, dtype: DType) -> Result<Self> {
        if pairs.is_empty() || pairs.iter().any(|(p, a)| p.is_empty() || a.is_empty()) {
            return Err(LabError::EmptySequence);
        }
        let packing = Packing::new(pairs);
        let width = packing.rows()[0].len();
        let w = pairs.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
        let mut at = Vec::with_capacity(pairs.len() * w);
        let mut targets = Vec::with_capacity(pairs.len() * w);
        let mut mask = Vec::with_capacity(pairs.len() * w);
        for ((_, answer), place) in pairs.iter().zip(packing.placements()) {
            for k in 0..w {
                let inside = k < answer.len();
                let slot = place.row * width + place.predictor(k);
                at.push(if inside { slot as u32 } else { 0 });
                targets.push(answer.get(k).copied().unwrap_or(0));
                mask.push(if inside { 1f32 } else { 0.0 });
            }
        }
        let shape = (pairs.len(), w);
        Ok(Self {
            packing,
            at: Tensor::from_vec(at, shape, device)?,
            targets: Tensor::from_vec(targets, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)?,
        })
    }
}

/// The training forward pass: log-probabilities of each sequence's answer tokens (b, w) and
/// the normed hidden states that predict them (b, w, d), both differentiable.
pub fn token_logprobs(model: &Model, batch: &SeqBatch) -> Result<(Tensor, Tensor)> {
    let (hidden, logits) = model.forward_packed(&batch.packing, &batch.at)?;
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
