//! OLMo 3's fields beyond OLMo 2's: sliding-window layers beside full-attention ones
//! (`layer_types`, `sliding_window`) and a rotary embedding per layer kind
//! (`rope_parameters.full_attention`, `rope_parameters.sliding_attention`), read exactly as
//! transformers' `Olmo3Config` reads them. The sliding layers' base is
//! [`super::Particulars::local_rope_theta`], the machinery Gemma 3's local layers use.

use super::particulars::{layer_kinds, sliding_layers, window_size, FULL, SLIDING};
use super::rope::{parse_rope_scaling, RopeScaling};
use super::yarn::Yarn;
use crate::model::error::{ModelError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// transformers' `Olmo3Config.default_theta`: the rotary base of a layer kind whose
/// parameters give none. A top-level `rope_theta` sets only the full-attention layers' base
/// (transformers consumes it there), so the sliding layers keep this one unless
/// `rope_parameters.sliding_attention` names another.
const DEFAULT_THETA: f64 = 500_000.0;

/// With no `layer_types`, every fourth layer attends to everything and the others slide.
const FULL_EVERY: u64 = 4;

/// What an OLMo 3 `config.json` says beyond the shared fields.
pub(super) struct Olmo3 {
    /// The window of each layer (`None`: a full-attention layer).
    pub sliding_window: Vec<Option<usize>>,
    /// θ of the full-attention layers.
    pub rope_theta: f64,
    /// The scaling of the full-attention layers' rotation.
    pub rope_scaling: Option<RopeScaling>,
    /// θ of the sliding layers, which rotate unscaled (`None`: as the full layers).
    pub local_rope_theta: Option<f64>,
}

impl Olmo3 {
    /// These fields of the `config.json` that transformers reads, into `o`: the layer kinds,
    /// the window, and the rotary parameters of each kind.
    pub(super) fn write_hf_json(&self, o: &mut Map<String, Value>) {
        let (window, kinds) = layer_kinds(&self.sliding_window);
        o.insert("layer_types".into(), kinds.into());
        // transformers requires a window even where no layer slides.
        o.insert("sliding_window".into(), window.unwrap_or(4096).into());
        let params = |theta: f64, scaling: Option<&RopeScaling>| {
            let mut p = scaling.map_or_else(
                || serde_json::json!({"rope_type": "default"}),
                RopeScaling::to_hf_json,
            );
            p["rope_theta"] = theta.into();
            p
        };
        let full = params(self.rope_theta, self.rope_scaling.as_ref());
        let sliding = match self.local_rope_theta {
            Some(local) => params(local, None),
            None => full.clone(),
        };
        o.insert(
            "rope_parameters".into(),
            serde_json::json!({FULL: full, SLIDING: sliding}),
        );
        o.remove("rope_theta");
    }
}

/// Read an OLMo 3 `config.json` of `layers` layers beyond the shared fields: each layer's
/// window and the rotary base and scaling of each layer kind. A layer kind, a rotary type or a
/// missing window that the decoder cannot run exactly is refused naming its field.
pub(super) fn read(json: &Value, path: &Path, layers: usize) -> Result<Olmo3> {
    let sliding = sliding_layers(json, path, layers, || Ok(FULL_EVERY))?;
    let window = match json.get("sliding_window") {
        Some(v) if !v.is_null() => Some(window_size(v, path)?),
        _ => None,
    };
    if let (None, Some(layer)) = (window, sliding.iter().position(|&s| s)) {
        return Err(ModelError::config(
            path,
            "sliding_window",
            format!("missing, but layer {layer} is a {SLIDING} layer and needs a window"),
        ));
    }
    let (rope_theta, rope_scaling, local) = rope(json, path)?;
    Ok(Olmo3 {
        sliding_window: sliding.iter().map(|&s| window.filter(|_| s)).collect(),
        rope_theta,
        rope_scaling,
        local_rope_theta: Some(local),
    })
}

/// The rotary parameters of the full-attention layers (θ and scaling: linear, Llama-3 or
/// YaRN) and the base of the sliding layers (which rotate without scaling), as transformers
/// derives them: the nested `rope_parameters` by layer kind, a top-level `rope_scaling` merged
/// into the full layers', a top-level `rope_theta` for the full layers only, [`DEFAULT_THETA`]
/// otherwise. A rotation of part of each head is refused.
fn rope(json: &Value, path: &Path) -> Result<(f64, Option<RopeScaling>, f64)> {
    let params = json.get("rope_parameters").filter(|v| !v.is_null());
    refuse_partial_rotation(json, params, path)?;
    if let Some(p) = params {
        let by_kind = p
            .as_object()
            .is_some_and(|o| o.is_empty() || o.contains_key(FULL) || o.contains_key(SLIDING));
        if !by_kind {
            return Err(ModelError::config(
                path,
                "rope_parameters",
                format!(
                    "not given per layer kind: OLMo 3 reads rope_parameters.{FULL} and \
                     rope_parameters.{SLIDING} (transformers ignores a flat set)"
                ),
            ));
        }
    }
    let kind = |k: &str| -> Result<Option<Map<String, Value>>> {
        match params.and_then(|p| p.get(k)).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(v) => Err(ModelError::config(
                path,
                format!("rope_parameters.{k}"),
                format!("{v} is not an object"),
            )),
        }
    };
    let mut full = kind(FULL)?.unwrap_or_default();
    let field = match json.get("rope_scaling").filter(|v| !v.is_null()) {
        Some(Value::Object(s)) => {
            full.extend(s.clone());
            // The older key `type` names the rotation where `rope_type` is absent.
            if let (Some(t), false) = (s.get("type"), s.contains_key("rope_type")) {
                full.insert("rope_type".into(), t.clone());
            }
            "rope_scaling".to_owned()
        }
        Some(v) => {
            return Err(ModelError::config(
                path,
                "rope_scaling",
                format!("{v} is not an object"),
            ))
        }
        None => format!("rope_parameters.{FULL}"),
    };
    let theta = match full.get("rope_theta") {
        Some(t) => positive(t, path, &format!("{field}.rope_theta"))?,
        None => match json.get("rope_theta") {
            Some(t) => positive(t, path, "rope_theta")?,
            None => DEFAULT_THETA,
        },
    };
    let scaling = full_scaling(&Value::Object(full), path, &field)?;
    let local = match kind(SLIDING)? {
        None => DEFAULT_THETA,
        Some(s) => {
            let field = format!("rope_parameters.{SLIDING}");
            let s = Value::Object(s);
            if parse_rope_scaling(&s, path, &field)?.is_some() {
                return Err(ModelError::config(
                    path,
                    format!("{field}.rope_type"),
                    "only the default rotation is supported on the sliding layers",
                ));
            }
            match s.get("rope_theta") {
                Some(t) => positive(t, path, &format!("{field}.rope_theta"))?,
                None => DEFAULT_THETA,
            }
        }
    };
    Ok((theta, scaling, local))
}

/// The scaling of the full layers' rotary parameters `full` (read at `field`): none, linear,
/// Llama-3 or YaRN; any other type is refused naming `field.rope_type`.
fn full_scaling(full: &Value, path: &Path, field: &str) -> Result<Option<RopeScaling>> {
    match full.get("rope_type").and_then(Value::as_str) {
        Some("yarn") => Ok(Some(RopeScaling::Yarn(Yarn::from_hf_json(
            full, path, field,
        )?))),
        None | Some("default" | "linear" | "llama3") => parse_rope_scaling(full, path, field),
        Some(other) => Err(ModelError::config(
            path,
            format!("{field}.rope_type"),
            format!("`{other}` is not supported (default, linear, llama3, yarn)"),
        )),
    }
}

/// Refuse `partial_rotary_factor` ≠ 1, at the top level or in either kind's parameters.
fn refuse_partial_rotation(json: &Value, params: Option<&Value>, path: &Path) -> Result<()> {
    let partial = [
        ("partial_rotary_factor".to_owned(), Some(json)),
        (
            format!("rope_parameters.{FULL}.partial_rotary_factor"),
            params.and_then(|p| p.get(FULL)),
        ),
        (
            format!("rope_parameters.{SLIDING}.partial_rotary_factor"),
            params.and_then(|p| p.get(SLIDING)),
        ),
    ];
    for (field, at) in partial {
        let f = at.and_then(|v| v.get("partial_rotary_factor"));
        if let Some(f) = f.filter(|f| !f.is_null() && f.as_f64() != Some(1.0)) {
            return Err(ModelError::config(
                path,
                field,
                format!("{f} is not supported (only 1.0: the whole head rotates)"),
            ));
        }
    }
    Ok(())
}

/// A positive number `v` at `field`.
fn positive(v: &Value, path: &Path, field: &str) -> Result<f64> {
    v.as_f64()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| ModelError::config(path, field, format!("{v} is not a positive number")))
}
