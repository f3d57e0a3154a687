//! Writing checkpoints as standard Hugging Face folders (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`), and random
//! initialisation for models trained from scratch.

use super::config::ModelConfig;
use crate::model::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng as _;
use rand_distr::Distribution as _;
use std::collections::HashMap;
use std::path::Path;

/// The configuration file of a Hugging Face model folder.
pub const CONFIG_FILE: &str = "config.json";
/// Its tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Its weights, when they are one file.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Random weights for `cfg`: linear and embedding weights ~ N(0, std²), biases ~ N(0, std²),
/// norm weights 1 + N(0, (std/2)²) as the norm applies them (stored as N(0, (std/2)²) where
/// norms scale by 1 + w). Deterministic for a seed.
pub fn random_weights(cfg: &ModelConfig, seed: u64, std: f64) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0, std)
        .map_err(|e| ModelError::config("random_weights", "std", e.to_string()))?;
    let mut out = HashMap::new();
    for (name, shape) in cfg.tensor_shapes() {
        let n: usize = shape.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let x: f64 = normal.sample(&mut rng);
                if is_norm && cfg.particulars.norm_offset {
                    (x / 2.0) as f32
                } else if is_norm {
                    (1.0 + x / 2.0) as f32
                } else {
                    x as f32
                }
            })
            .collect();
        out.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// A character-level tokenizer: one token per character of `chars` after the special tokens
/// `<unk>`, `<s>`, `</s>` (ids 0, 1, 2). Returns the `tokenizer.json` document.
pub fn char_tokenizer_json(chars: &str) -> serde_json::Value {
    let specials = ["<unk>", "<s>", "</s>"];
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert((*s).to_owned(), i.into());
    }
    for c in chars.chars() {
        let n = vocab.len();
        vocab.entry(c.to_string()).or_insert(n.into());
    }
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

/// Write a Hugging Face folder. `tensors` must hold every name of [`ModelConfig::tensor_shapes`];
/// they are stored as f32. `chat_template` goes into `tokenizer_config.json`.
pub fn write_hf_folder(
    dir: &Path,
    cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    tokenizer_json: &serde_json::Value,
    chat_template: Option<&str>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let write = |name: &str, value: &serde_json::Value| {
        let path = dir.join(name);
        crate::fsutil::write_json(&path, value).map_err(|e| ModelError::io(&path, e))
    };
    write(CONFIG_FILE, &cfg.to_hf_json())?;
    write(TOKENIZER_FILE, tokenizer_json)?;
    let tok_name = |id: Option<u32>| {
        id.and_then(|i| {
            tokenizer_json["added_tokens"]
                .as_array()?
                .iter()
                .find(|t| t["id"].as_u64() == Some(u64::from(i)))?
                .get("content")
                .cloned()
        })
    };
    let mut tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok_name(cfg.bos_token_id),
        "eos_token": tok_name(cfg.eos_token_ids.first().copied()),
        "unk_token": "<unk>",
        "model_max_length": cfg.max_position_embeddings,
    });
    if let Some(t) = chat_template {
        tc["chat_template"] = t.into();
    }
    write("tokenizer_config.json", &tc)?;
    write(
        "generation_config.json",
        &serde_json::json!({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_ids}),
    )?;
    let mut stored = HashMap::new();
    for (name, shape) in cfg.tensor_shapes() {
        let t = tensors.get(&name).ok_or_else(|| ModelError::Missing {
            path: dir.to_owned(),
            what: format!("tensor `{name}`"),
            fix: "pass every tensor of the configuration".into(),
        })?;
        if t.dims() != shape.as_slice() {
            return Err(ModelError::Shape {
                path: dir.to_owned(),
                name,
                found: t.dims().to_vec(),
                expected: shape,
            });
        }
        stored.insert(name, t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
    }
    let path = dir.join(WEIGHTS_FILE);
    let bytes = safetensors::serialize(&stored, None).map_err(|e| ModelError::Weights {
        path: path.clone(),
        message: format!("cannot serialise the weights: {e}"),
    })?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| ModelError::io(&path, e))
}
