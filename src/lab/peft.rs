//! LoRA adapters written as PEFT writes them (`save_pretrained`): `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.<layer>.lora_A.weight`, `….lora_B.weight`), so that
//! `PeftModel.from_pretrained(base, dir)` and circuitdiff's own adapter loading read them.

use super::{LabError, Result};
use crate::model::{LoraPair, LoraSettings, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// PEFT's prefix of a causal language model's adapter tensors.
const PREFIX: &str = "base_model.model.";

/// The adapter's `adapter_config.json` for a base model named `base` (a path or Hub id).
pub fn adapter_config(settings: &LoraSettings, base: &str) -> serde_json::Value {
    let targets: Vec<&str> = settings.targets.iter().map(|t| t.name()).collect();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "use_rslora": settings.rslora,
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    })
}

/// The adapter tensors of `pairs` (layer name, update) under PEFT's names, in f32.
pub fn adapter_tensors(pairs: &[(String, LoraPair)]) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, pair) in pairs {
        for (part, v) in [("lora_A", &pair.a), ("lora_B", &pair.b)] {
            let t = v.as_tensor().detach().to_dtype(DType::F32)?;
            out.insert(format!("{PREFIX}{name}.{part}.weight"), t);
        }
    }
    Ok(out)
}

/// Write the adapter of `pairs` on the base `base` into `dir`.
pub fn write_adapter(
    dir: &Path,
    settings: &LoraSettings,
    base: &str,
    pairs: &[(String, LoraPair)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let cfg = adapter_config(settings, base);
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| LabError::json(&path, e))?;
    std::fs::write(&path, text).map_err(|e| LabError::io(&path, e))?;
    candle_core::safetensors::save(&adapter_tensors(pairs)?, dir.join(ADAPTER_WEIGHTS_FILE))?;
    Ok(())
}

/// Set the updates `pairs` to the values of the adapter in `dir` that [`write_adapter`] wrote.
pub fn read_adapter(dir: &Path, pairs: &[(String, LoraPair)]) -> Result<()> {
    let path = dir.join(ADAPTER_WEIGHTS_FILE);
    let Some(first) = pairs.first() else {
        return Ok(());
    };
    let dev = first.1.a.device().clone();
    let tensors = candle_core::safetensors::load(&path, &dev)?;
    for (name, pair) in pairs {
        for (part, v) in [("lora_A", &pair.a), ("lora_B", &pair.b)] {
            let key = format!("{PREFIX}{name}.{part}.weight");
            let t = tensors.get(&key).ok_or_else(|| LabError::NotThisRun {
                path: path.clone(),
                message: format!("no tensor `{key}`"),
            })?;
            v.set(&t.to_dtype(v.dtype())?)?;
        }
    }
    Ok(())
}
