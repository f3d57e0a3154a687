//! The rotary scaling of a configuration ([`RopeScaling`]) and how `config.json` gives it.

use super::limits::{in_range, MAX_POSITIONS};
use super::yarn::Yarn;
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Llama-3 style frequency scaling of rotary embeddings (`rope_scaling` with `rope_type: llama3`),
/// plain linear position interpolation, YaRN (read for OLMo 3's full-attention layers only), or
/// Phi-3's LongRoPE.
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
    LongRope(LongRope),
}

/// Phi-3's LongRoPE (`rope_type: longrope`) as transformers runs it: every rotated frequency
/// divided by its short factor and cos and sin multiplied by the attention factor while the
/// sequence stays within `original_max_position_embeddings`; past it transformers switches the
/// whole sequence to the long factors, which circuitdiff refuses (a pass reaching a position
/// there fails naming the field) rather than approximate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongRope {
    pub short_factor: Vec<f64>,
    pub long_factor: Vec<f64>,
    pub attention_factor: f64,
    pub original_max_position_embeddings: usize,
}

impl LongRope {
    /// Why these factors cannot scale the `rotated` dimensions of a head (one factor per pair
    /// of them, in each list), if they cannot: `Err((the list at fault, why))`.
    pub(super) fn check_counts(
        &self,
        rotated: usize,
    ) -> std::result::Result<(), (&'static str, String)> {
        let half = rotated / 2;
        for (which, factors) in [("short", &self.short_factor), ("long", &self.long_factor)] {
            if factors.len() != half {
                let n = factors.len();
                return Err((
                    which,
                    format!("{n} factors for the {half} rotated frequencies of each head"),
                ));
            }
        }
        Ok(())
    }
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
            Self::LongRope(ref l) => serde_json::json!({"rope_type": "longrope",
                "short_factor": l.short_factor, "long_factor": l.long_factor,
                "attention_factor": l.attention_factor,
                "original_max_position_embeddings": l.original_max_position_embeddings}),
        }
    }

    /// The top-level fields of `config.json` that give this scaling: `rope_scaling`, and for
    /// LongRoPE the pretraining context, which Phi-3 keeps at the top level.
    pub(super) fn hf_fields(&self) -> serde_json::Map<String, Value> {
        let mut o = serde_json::Map::new();
        if let Self::LongRope(l) = self {
            let n = l.original_max_position_embeddings;
            o.insert("original_max_position_embeddings".into(), n.into());
        }
        o.insert("rope_scaling".into(), self.to_hf_json());
        o
    }

    /// What the rotation's cos and sin are multiplied by (YaRN's attention factor; else 1).
    pub fn attention_factor(&self) -> f64 {
        match self {
            Self::Yarn(y) => y.attention_factor,
            Self::LongRope(l) => l.attention_factor,
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
        "longrope" => Some(RopeScaling::LongRope(long_rope(s, path, field)?)),
        other => {
            return Err(ModelError::config(
                path,
                format!("{field}.rope_type"),
                format!("`{other}` is not supported (default, linear, llama3, longrope)"),
            ))
        }
    })
}

/// LongRoPE's parameters at `field` as transformers' `_compute_longrope_parameters` reads them:
/// the short and long factors (positive, as many of each), the pretraining context, and the
/// attention factor, given or else √(1 + ln f / ln original) for the extension factor f
/// (`factor`, else `max_position_embeddings` / original), 1 where f ≤ 1. The caller puts the
/// top level's `original_max_position_embeddings` and `max_position_embeddings` into `s` where
/// `s` lacks them, as transformers does.
fn long_rope(s: &Value, path: &Path, field: &str) -> Result<LongRope> {
    let factors = |k: &str| {
        let v = s.get(k).and_then(Value::as_array).filter(|a| !a.is_empty());
        let v = v.and_then(|a| {
            a.iter()
                .map(|x| x.as_f64().filter(|x| x.is_finite() && *x > 0.0))
                .collect::<Option<Vec<f64>>>()
        });
        v.ok_or_else(|| {
            ModelError::config(
                path,
                format!("{field}.{k}"),
                "missing, empty or not all positive",
            )
        })
    };
    let (short_factor, long_factor) = (factors("short_factor")?, factors("long_factor")?);
    if long_factor.len() != short_factor.len() {
        return Err(ModelError::config(
            path,
            format!("{field}.long_factor"),
            format!(
                "{} factors, short_factor has {}",
                long_factor.len(),
                short_factor.len()
            ),
        ));
    }
    let original = original_context(s, path, field)?;
    let positive = |k: &str| {
        let v = s.get(k).filter(|v| !v.is_null())?;
        Some(
            v.as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    ModelError::config(path, format!("{field}.{k}"), "not a positive number")
                }),
        )
    };
    let attention_factor = match positive("attention_factor").transpose()? {
        Some(a) => a,
        None => {
            let factor = match positive("factor").transpose()? {
                Some(f) => f,
                None => {
                    let max = positive("max_position_embeddings")
                        .transpose()?
                        .ok_or_else(|| {
                            ModelError::config(path, "max_position_embeddings", "missing")
                        })?;
                    max / original as f64
                }
            };
            if factor <= 1.0 {
                1.0
            } else {
                (1.0 + factor.ln() / (original as f64).ln()).sqrt()
            }
        }
    };
    Ok(LongRope {
        short_factor,
        long_factor,
        attention_factor,
        original_max_position_embeddings: original,
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
