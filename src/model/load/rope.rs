//! The rotary scaling of a configuration ([`RopeScaling`]) and how `config.json` gives it.

use super::limits::{in_range, MAX_POSITIONS};
use super::yarn::Yarn;
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Llama-3 style frequency scaling of rotary embeddings (`rope_scaling` with `rope_type: llama3`),
/// plain linear position interpolation, or YaRN (read for OLMo 3's full-attention layers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    Yarn(Yarn),
}

impl RopeScaling {
    /// The `rope_scaling` object transformers reads for this scaling.
    pub(super) fn to_hf_json(&self) -> Value {
        match *self {
            Self::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => serde_json::json!({"rope_type": "llama3", "factor": factor,
                "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings}),
            Self::Yarn(ref y) => y.to_hf_json(),
        }
    }

    /// What the rotation's cos and sin are multiplied by (YaRN's attention factor; else 1).
    pub fn attention_factor(&self) -> f64 {
        match self {
            Self::Yarn(y) => y.attention_factor,
            Self::Linear { .. } | Self::Llama3 { .. } => 1.0,
        }
    }
}

/// The scaling of one set of rotary parameters `s`, read at `field` (named in errors): none, or
/// linear or Llama-3 scaling; any other type is refused naming `field.rope_type`.
pub(super) fn parse_rope_scaling(
    s: &Value,
    path: &Path,
    field: &str,
) -> Result<Option<RopeScaling>> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| {
        s.get(k)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| {
                ModelError::config(
                    path,
                    format!("{field}.{k}"),
                    "missing or not a positive number",
                )
            })
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => {
            let (low_freq_factor, high_freq_factor) =
                (num("low_freq_factor")?, num("high_freq_factor")?);
            if high_freq_factor <= low_freq_factor {
                return Err(ModelError::config(
                    path,
                    format!("{field}.high_freq_factor"),
                    format!("{high_freq_factor} is not above low_freq_factor {low_freq_factor}"),
                ));
            }
            Some(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: original_context(s, path, field)?,
            })
        }
        other => {
            return Err(ModelError::config(
                path,
                format!("{field}.rope_type"),
                format!("`{other}` is not supported (default, linear, llama3)"),
            ))
        }
    })
}

/// `original_max_position_embeddings` of the rotary parameters at `field`: the context the
/// model was trained on.
fn original_context(s: &Value, path: &Path, field: &str) -> Result<usize> {
    let field = format!("{field}.original_max_position_embeddings");
    let n = s
        .get("original_max_position_embeddings")
        .and_then(Value::as_u64)
        .ok_or_else(|| ModelError::config(path, &field, "missing or not a whole number"))?;
    in_range(path, &field, n, 1, MAX_POSITIONS)
}
