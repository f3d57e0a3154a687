//! What a decoder does beyond the shared Llama layout (Gemma 2 and Gemma 3; OLMo 3's sliding
//! layers' base; Phi-3's partial rotation): the gate's activation, the embedding scale, norms
//! that scale by 1 + w, soft-capped attention scores and logits, the attention scale, the
//! rotary base of sliding-window layers, and how much of each head rotates. Each is a typed
//! option of the one decoder; [`Particulars::default`] is the plain Llama layout.

use super::limits::{in_range, MAX_POSITIONS};
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The activation of a gated MLP's gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// silu(x) = x·σ(x) (SwiGLU: Llama, Mistral, Qwen, OLMo 2, Phi-3).
    #[default]
    Silu,
    /// The tanh form of GeLU, ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (GeGLU: Gemma's
    /// `gelu_pytorch_tanh`).
    GeluTanh,
}

/// A decoder's particulars beyond the Llama layout; the default has none of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Particulars {
    /// The MLP gate's activation.
    pub activation: Activation,
    /// The embedding is multiplied by √hidden, rounded to the weights' dtype, before the first
    /// block (Gemma): the input source is the scaled embedding.
    pub embed_scale: bool,
    /// Every RMS norm weight (block norms, q/k norms, the final norm) is stored as w and scales
    /// by 1 + w (Gemma).
    pub norm_offset: bool,
    /// Attention scores are soft-capped, c·tanh(s/c), after scaling and before the mask.
    pub attn_softcap: Option<f64>,
    /// The logits are soft-capped, c·tanh(z/c), before the loss and sampling.
    pub final_softcap: Option<f64>,
    /// Attention scores scale by 1/√s for this s (Gemma's `query_pre_attn_scalar`); `None`:
    /// by 1/√head_dim.
    pub query_pre_attn_scalar: Option<f64>,
    /// The rotary base of the sliding-window layers, which then rotate without scaling
    /// (Gemma 3's local layers, OLMo 3's sliding layers); `None`: every layer rotates with
    /// `rope_theta` and `rope_scaling`.
    pub local_rope_theta: Option<f64>,
    /// How many leading dimensions of each head rotate (Phi-3's `partial_rotary_factor` × the
    /// head size); the rest pass through unrotated. `None`: the whole head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary_dim: Option<usize>,
}

/// The attention kind of each layer, as `layer_types` names them.
pub(super) const SLIDING: &str = "sliding_attention";
pub(super) const FULL: &str = "full_attention";

/// What a Gemma `config.json` says beyond the shared fields.
pub(super) struct Gemma {
    pub particulars: Particulars,
    /// The window of each layer (`None`: a global layer).
    pub sliding_window: Vec<Option<usize>>,
    /// θ of the global layers.
    pub rope_theta: f64,
    /// The linear rotary scaling factor of the global layers, if any.
    pub linear_rope: Option<f64>,
    /// q, k, v and o carry biases (`attention_bias`).
    pub bias: bool,
    /// The unembedding is the embedding (the default).
    pub tie: bool,
}

/// Read a Gemma 2 (or, with `gemma3`, Gemma 3) `config.json` of `layers` layers beyond the
/// shared fields: activation, soft-caps, attention scale, sliding and global layers, rotary
/// bases and scaling, tied embeddings, biases. Any feature not implemented is refused naming
/// its field.
pub(super) fn gemma(json: &Value, path: &Path, gemma3: bool, layers: usize) -> Result<Gemma> {
    let act = json
        .get("hidden_activation")
        .or_else(|| json.get("hidden_act"))
        .and_then(Value::as_str)
        .unwrap_or("gelu_pytorch_tanh");
    if act != "gelu_pytorch_tanh" {
        return Err(ModelError::config(
            path,
            "hidden_activation",
            format!("`{act}` is not supported (only gelu_pytorch_tanh)"),
        ));
    }
    if json
        .get("use_bidirectional_attention")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(ModelError::config(
            path,
            "use_bidirectional_attention",
            "bidirectional attention is not supported (only causal decoders)",
        ));
    }
    // Gemma 2 caps by default (50 and 30, as transformers does when the key is absent);
    // Gemma 3 does not. `null` turns a cap off.
    let (attn_cap, final_cap) = if gemma3 {
        (None, None)
    } else {
        (Some(50.0), Some(30.0))
    };
    let (rope_theta, linear_rope, local) = gemma_rope(json, path, gemma3)?;
    let particulars = Particulars {
        activation: Activation::GeluTanh,
        embed_scale: true,
        norm_offset: true,
        attn_softcap: cap(json, path, "attn_logit_softcapping", attn_cap)?,
        final_softcap: cap(json, path, "final_logit_softcapping", final_cap)?,
        query_pre_attn_scalar: Some(positive(json, path, "query_pre_attn_scalar", 256.0)?),
        local_rope_theta: local,
        rotary_dim: None,
    };
    Ok(Gemma {
        particulars,
        sliding_window: windows(json, path, gemma3, layers)?,
        rope_theta,
        linear_rope,
        bias: json.get("attention_bias").and_then(Value::as_bool) == Some(true),
        tie: json
            .get("tie_word_embeddings")
            .map_or(Some(true), Value::as_bool)
            .unwrap_or(false),
    })
}

/// A positive number at `key`, `default` when absent.
fn positive(json: &Value, path: &Path, key: &str, default: f64) -> Result<f64> {
    match json.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| ModelError::config(path, key, format!("{v} is not a positive number"))),
    }
}

/// A soft-cap at `key`: `default` when absent, none when `null`, else a positive number.
fn cap(json: &Value, path: &Path, key: &str, default: Option<f64>) -> Result<Option<f64>> {
    match json.get(key) {
        None => Ok(default),
        Some(Value::Null) => Ok(None),
        Some(_) => positive(json, path, key, 0.0).map(Some),
    }
}

/// The window of each layer: `layer_types` where given, else Gemma 2's alternation (even
/// layers slide) or Gemma 3's `sliding_window_pattern` (every n-th layer is global, default 6).
fn windows(json: &Value, path: &Path, gemma3: bool, layers: usize) -> Result<Vec<Option<usize>>> {
    let window = match json.get("sliding_window") {
        None => Some(4096),
        Some(Value::Null) => None,
        Some(v) => Some(window_size(v, path)?),
    };
    let every = || {
        if !gemma3 {
            return Ok(2);
        }
        match json.get("sliding_window_pattern") {
            None | Some(Value::Null) => Ok(6),
            Some(v) => v.as_u64().filter(|&n| n >= 1).ok_or_else(|| {
                ModelError::config(path, "sliding_window_pattern", "not a positive integer")
            }),
        }
    };
    let sliding = sliding_layers(json, path, layers, every)?;
    Ok(sliding.into_iter().map(|s| window.filter(|_| s)).collect())
}

/// The window and `layer_types` that transformers reads for layers with these windows (`None`:
/// a full-attention layer).
pub(super) fn layer_kinds(windows: &[Option<usize>]) -> (Option<usize>, Vec<&'static str>) {
    let window = windows.iter().flatten().next().copied();
    let kinds = windows
        .iter()
        .map(|w| if w.is_some() { SLIDING } else { FULL })
        .collect();
    (window, kinds)
}

/// A `sliding_window` value: a whole number of tokens in [1, [`MAX_POSITIONS`]].
pub(super) fn window_size(v: &Value, path: &Path) -> Result<usize> {
    let w = v.as_u64().ok_or_else(|| {
        ModelError::config(path, "sliding_window", "expected a non-negative integer")
    })?;
    in_range(path, "sliding_window", w, 1, MAX_POSITIONS)
}

/// Which of `layers` layers slide: `layer_types` where given (each `sliding_attention` or
/// `full_attention`, anything else refused naming the field), else every layer but each n-th,
/// n = `every()` (read only then).
pub(super) fn sliding_layers(
    json: &Value,
    path: &Path,
    layers: usize,
    every: impl FnOnce() -> Result<u64>,
) -> Result<Vec<bool>> {
    match json.get("layer_types").filter(|v| !v.is_null()) {
        Some(Value::Array(kinds)) if kinds.len() == layers => kinds
            .iter()
            .map(|k| match k.as_str() {
                Some(SLIDING) => Ok(true),
                Some(FULL) => Ok(false),
                _ => Err(ModelError::config(
                    path,
                    "layer_types",
                    format!("{k} is not supported (only {SLIDING}, {FULL})"),
                )),
            })
            .collect(),
        Some(v) => Err(ModelError::config(
            path,
            "layer_types",
            format!("{v} is not a list of {layers} layer kinds"),
        )),
        None => {
            let every = every()?;
            Ok((0..layers as u64).map(|l| (l + 1) % every != 0).collect())
        }
    }
}

/// Gemma's rotary embedding: θ and scaling of the global layers (only linear scaling), and for
/// Gemma 3 the base of the local layers (plain rotation). transformers 5 nests both under
/// `rope_parameters` by layer kind; older files use `rope_theta`, `rope_scaling` and
/// `rope_local_base_freq`.
fn gemma_rope(json: &Value, path: &Path, gemma3: bool) -> Result<(f64, Option<f64>, Option<f64>)> {
    let params = json.get("rope_parameters").filter(|v| v.is_object());
    let nested = |kind: &str| params.and_then(|p| p.get(kind)).filter(|v| v.is_object());
    let (global, global_field) = match nested(FULL) {
        Some(g) => (Some(g), format!("rope_parameters.{FULL}")),
        None => match json.get("rope_scaling").filter(|v| v.is_object()) {
            Some(s) => (Some(s), "rope_scaling".to_owned()),
            None => (params, "rope_parameters".to_owned()),
        },
    };
    let theta_of = |v: Option<&Value>, field: &str, default: f64| -> Result<f64> {
        match v {
            None => Ok(default),
            Some(t) => t
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    ModelError::config(path, field, format!("{t} is not a positive number"))
                }),
        }
    };
    let default_theta = if gemma3 { 1e6 } else { 1e4 };
    let theta = theta_of(
        global
            .and_then(|g| g.get("rope_theta"))
            .or_else(|| json.get("rope_theta")),
        "rope_theta",
        default_theta,
    )?;
    let global_scaling = match global {
        Some(g) => scaling(g, path, &global_field)?,
        None => None,
    };
    if !gemma3 {
        return Ok((theta, global_scaling, None));
    }
    let local = nested(SLIDING);
    if let Some(l) = local {
        if scaling(l, path, &format!("rope_parameters.{SLIDING}"))?.is_some() {
            return Err(ModelError::config(
                path,
                format!("rope_parameters.{SLIDING}.rope_type"),
                "only the default rotation is supported on the local layers",
            ));
        }
    }
    let local_theta = theta_of(
        local
            .and_then(|l| l.get("rope_theta"))
            .or_else(|| json.get("rope_local_base_freq")),
        "rope_local_base_freq",
        1e4,
    )?;
    Ok((theta, global_scaling, Some(local_theta)))
}

/// The linear scaling factor of one rotary parameter set `s` (at `field`), or none; any other
/// type is refused naming `field.rope_type`.
fn scaling(s: &Value, path: &Path, field: &str) -> Result<Option<f64>> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "linear" => {
            let factor = s
                .get("factor")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    ModelError::config(
                        path,
                        format!("{field}.factor"),
                        "missing or not a positive number",
                    )
                })?;
            Ok(Some(factor))
        }
        other => Err(ModelError::config(
            path,
            format!("{field}.rope_type"),
            format!("`{other}` is not supported (default, linear)"),
        )),
    }
}

impl Gemma {
    /// These fields of the `config.json` that transformers reads, into `o`, for heads of
    /// `head_dim`.
    pub(super) fn write_hf_json(&self, o: &mut serde_json::Map<String, Value>, head_dim: usize) {
        let p = &self.particulars;
        let (window, kinds) = layer_kinds(&self.sliding_window);
        o.insert("hidden_act".into(), "gelu_pytorch_tanh".into());
        o.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
        o.insert("attention_bias".into(), self.bias.into());
        o.insert("attn_logit_softcapping".into(), p.attn_softcap.into());
        o.insert("final_logit_softcapping".into(), p.final_softcap.into());
        // transformers' configuration takes a whole number here.
        let scalar = p.query_pre_attn_scalar.unwrap_or(head_dim as f64);
        let scalar: Value = if scalar.fract() == 0.0 && scalar < 1e15 {
            (scalar as u64).into()
        } else {
            scalar.into()
        };
        o.insert("query_pre_attn_scalar".into(), scalar);
        o.insert("sliding_window".into(), window.unwrap_or(4096).into());
        o.insert("layer_types".into(), kinds.into());
        let rope = |theta: f64, factor: Option<f64>| match factor {
            Some(f) => serde_json::json!({"rope_type": "linear", "factor": f, "rope_theta": theta}),
            None => serde_json::json!({"rope_type": "default", "rope_theta": theta}),
        };
        let global = rope(self.rope_theta, self.linear_rope);
        let params = match p.local_rope_theta {
            Some(local) => serde_json::json!({FULL: global, SLIDING: rope(local, None)}),
            None => global,
        };
        o.insert("rope_parameters".into(), params);
        o.remove("rope_theta");
    }
}
