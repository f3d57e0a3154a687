//! YaRN rotary scaling (`rope_type: yarn`), exactly as transformers computes it
//! (`_compute_yarn_parameters`): each frequency interpolated by `factor`, extrapolated, or
//! blended along a linear ramp between the dimensions that turn `beta_fast` and `beta_slow`
//! times over the original context, and cos and sin multiplied by an attention factor. The
//! arithmetic on frequencies runs in f32, as transformers' does. OLMo 3 rotates its
//! full-attention layers this way.

use super::limits::{in_range, MAX_POSITIONS};
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The parameters of a YaRN rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Yarn {
    /// How many times the context is stretched.
    pub factor: f64,
    /// The context the model was trained on before the stretch.
    pub original_max_position_embeddings: usize,
    /// Rotations over the original context above which a frequency is kept (default 32).
    pub beta_fast: f64,
    /// Rotations below which a frequency is interpolated (default 1).
    pub beta_slow: f64,
    /// What cos and sin are multiplied by: `attention_factor` where given, else
    /// 0.1·ln(factor) + 1 (or its ratio for `mscale` and `mscale_all_dim`).
    pub attention_factor: f64,
}

impl Yarn {
    /// Read the YaRN parameters `s` at `field` (named in errors).
    pub(super) fn from_hf_json(s: &Value, path: &Path, field: &str) -> Result<Self> {
        let num = |k: &str| -> Result<Option<f64>> {
            match s.get(k).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .map(Some)
                    .ok_or_else(|| {
                        ModelError::config(
                            path,
                            format!("{field}.{k}"),
                            format!("{v} is not a positive number"),
                        )
                    }),
            }
        };
        let factor = num("factor")?
            .ok_or_else(|| ModelError::config(path, format!("{field}.factor"), "missing"))?;
        let original = format!("{field}.original_max_position_embeddings");
        let n = s
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .ok_or_else(|| ModelError::config(path, &original, "missing or not a whole number"))?;
        let mscale = |scale: f64, m: f64| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        let attention_factor = match (
            num("attention_factor")?,
            num("mscale")?,
            num("mscale_all_dim")?,
        ) {
            (Some(a), _, _) => a,
            (None, Some(m), Some(all)) => mscale(factor, m) / mscale(factor, all),
            (None, _, _) => mscale(factor, 1.0),
        };
        Ok(Self {
            factor,
            original_max_position_embeddings: in_range(path, &original, n, 1, MAX_POSITIONS)?,
            // transformers takes `beta_fast or 32`, `beta_slow or 1`.
            beta_fast: num("beta_fast")?.unwrap_or(32.0),
            beta_slow: num("beta_slow")?.unwrap_or(1.0),
            attention_factor,
        })
    }

    /// The `rope_scaling` object transformers reads for this rotation.
    pub(super) fn to_hf_json(&self) -> Value {
        serde_json::json!({"rope_type": "yarn", "factor": self.factor,
            "original_max_position_embeddings": self.original_max_position_embeddings,
            "beta_fast": self.beta_fast, "beta_slow": self.beta_slow,
            "attention_factor": self.attention_factor})
    }

    /// The inverse frequencies of base `theta` for heads of `head_dim`.
    pub fn inv_freq(&self, theta: f64, head_dim: usize) -> Vec<f64> {
        let dim = head_dim as f64;
        let correction = |rotations: f64| {
            let orig = self.original_max_position_embeddings as f64;
            dim * (orig / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
        };
        let low = correction(self.beta_fast).floor().max(0.0);
        let mut high = correction(self.beta_slow).ceil().min(dim - 1.0);
        if low == high {
            high += 0.001; // transformers' guard against a zero-width ramp
        }
        let (low, high, factor) = (low as f32, high as f32, self.factor as f32);
        (0..head_dim / 2)
            .map(|i| {
                let pos = (theta as f32).powf((2 * i) as f32 / head_dim as f32);
                let (extrapolated, interpolated) = (1.0 / pos, 1.0 / (factor * pos));
                let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                let keep = 1.0 - ramp;
                f64::from(interpolated * (1.0 - keep) + extrapolated * keep)
            })
            .collect()
    }
}
