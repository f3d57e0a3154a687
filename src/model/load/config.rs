//! One configuration type for every supported family, read from a Hugging Face `config.json`
//! (or built from GGUF metadata by [`super::gguf`]).

use super::limits::{in_range, CheckedDims, DimNames, Dims, MAX_POSITIONS};
use super::moe::MoeConfig;
use super::olmo3::{self, Olmo3};
use super::particulars::{self, Particulars};
use super::rope::{parse_rope_scaling, RopeScaling};
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The decoder families circuitdiff runs. They share one transformer; the differences are
/// attention biases, q/k norms, sliding windows and where the norms sit ([`NormPlacement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    /// OLMo 2: norms after each block (none before it) and q/k norms over whole projections.
    Olmo2,
    /// OLMo 3: OLMo 2's layout with sliding-window layers beside full-attention ones, each kind
    /// with its own rotary embedding ([`Particulars::local_rope_theta`]).
    Olmo3,
    /// Phi-3: fused qkv and gate-up projections, a sliding window on every layer.
    Phi3,
    /// Gemma 2: norms before and after each block, GeGLU, soft-capped attention and logits,
    /// sliding-window layers alternating with global ones ([`Particulars`]).
    Gemma2,
    /// Gemma 3 text (`gemma3_text`): Gemma 2's layout with per-head q/k norms, five local
    /// layers to a global one and a rotary base of their own for the local layers.
    Gemma3,
    /// Qwen3-MoE: Qwen3 attention, routed MLPs ([`MoeConfig`]).
    #[serde(rename = "qwen3_moe")]
    Qwen3Moe,
    /// OLMoE: pre-norms, q/k norms over whole projections, routed MLPs.
    Olmoe,
    /// Mixtral: Mistral attention, routed MLPs.
    Mixtral,
}

impl Family {
    /// The `model_type` string of `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Olmo2 => "olmo2",
            Self::Olmo3 => "olmo3",
            Self::Phi3 => "phi3",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3_text",
            Self::Qwen3Moe => "qwen3_moe",
            Self::Olmoe => "olmoe",
            Self::Mixtral => "mixtral",
        }
    }

    /// The family's q/k norms, if it has them.
    pub fn qk_norm(self) -> Option<QkNorm> {
        match self {
            Self::Qwen3 | Self::Gemma3 | Self::Qwen3Moe => Some(QkNorm::PerHead),
            Self::Olmo2 | Self::Olmo3 | Self::Olmoe => Some(QkNorm::Whole),
            Self::Llama
            | Self::Mistral
            | Self::Qwen2
            | Self::Phi3
            | Self::Gemma2
            | Self::Mixtral => None,
        }
    }

    /// Where the family's block norms sit.
    pub fn norms(self) -> NormPlacement {
        match self {
            Self::Olmo2 | Self::Olmo3 => NormPlacement::Post,
            Self::Gemma2 | Self::Gemma3 => NormPlacement::Sandwich,
            Self::Llama
            | Self::Mistral
            | Self::Qwen2
            | Self::Qwen3
            | Self::Phi3
            | Self::Qwen3Moe
            | Self::Olmoe
            | Self::Mixtral => NormPlacement::Pre,
        }
    }

    /// The `architectures` entry of `config.json`.
    fn architecture(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Olmo2 => "Olmo2ForCausalLM",
            Self::Olmo3 => "Olmo3ForCausalLM",
            Self::Phi3 => "Phi3ForCausalLM",
            Self::Gemma2 => "Gemma2ForCausalLM",
            Self::Gemma3 => "Gemma3ForCausalLM",
            Self::Qwen3Moe => "Qwen3MoeForCausalLM",
            Self::Olmoe => "OlmoeForCausalLM",
            Self::Mixtral => "MixtralForCausalLM",
        }
    }

    /// Whether the family is Gemma 2 or Gemma 3, whose particulars `particulars::gemma` reads.
    pub fn is_gemma(self) -> bool {
        matches!(self, Self::Gemma2 | Self::Gemma3)
    }

    /// Whether the checkpoint stores q, k and v as one `qkv_proj` and gate and up as one
    /// `gate_up_proj` (Phi-3).
    pub fn fused_projections(self) -> bool {
        self == Self::Phi3
    }

    /// Whether the family's MLPs route each token to some of their experts ([`MoeConfig`]).
    pub fn routed(self) -> bool {
        matches!(self, Self::Qwen3Moe | Self::Olmoe | Self::Mixtral)
    }

    fn from_model_type(s: &str) -> Option<Self> {
        Some(match s {
            "llama" => Self::Llama,
            "mistral" => Self::Mistral,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            "olmo2" => Self::Olmo2,
            "olmo3" => Self::Olmo3,
            "phi3" => Self::Phi3,
            "gemma2" => Self::Gemma2,
            "gemma3_text" => Self::Gemma3,
            "qwen3_moe" => Self::Qwen3Moe,
            "olmoe" => Self::Olmoe,
            "mixtral" => Self::Mixtral,
            _ => return None,
        })
    }
}

/// Where a decoder block's RMS norm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormPlacement {
    /// On what the block reads, before it (Llama, Mistral, Qwen): every destination input
    /// passes through a norm.
    Pre,
    /// On what the block adds, after it, with none before (OLMo 2): a destination reads the
    /// residual stream as it is.
    Post,
    /// Both (Gemma): a norm on what the block reads and another on what it adds.
    Sandwich,
}

/// What a q/k norm normalises: each head's vector (Qwen3) or the whole projection, all heads
/// together (OLMo 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QkNorm {
    PerHead,
    Whole,
}

/// The shape and numerics of a decoder, independent of where it was loaded from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    /// Attention window per layer (`None` = full causal attention).
    pub sliding_window: Vec<Option<usize>>,
    /// q, k and v projections carry a bias (Qwen2, or `attention_bias`).
    pub qkv_bias: bool,
    /// The output projection carries a bias (`attention_bias` in Llama/Qwen3).
    pub o_bias: bool,
    /// gate/up/down carry a bias (`mlp_bias` in Llama).
    pub mlp_bias: bool,
    /// RMS norms on queries and keys (Qwen3 per head, OLMo 2 over the whole projection).
    pub qk_norm: Option<QkNorm>,
    /// Where each block's norm sits.
    pub norms: NormPlacement,
    /// What the decoder does beyond the Llama layout (Gemma's particulars); none by default.
    #[serde(default)]
    pub particulars: Particulars,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The routed MLPs of a mixture-of-experts family (`None`: every MLP is dense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeConfig>,
}

impl ModelConfig {
    /// Parse a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hf_json(&json, path)
    }

    /// Parse the JSON value of a `config.json`; `path` is used in error messages. Every size is
    /// checked against [`super::limits`] before anything is built from it.
    pub fn from_hf_json(json: &Value, path: &Path) -> Result<Self> {
        let field = Fields { json, path };
        let family = field.family()?;
        let hidden_act = field.opt_str("hidden_act").unwrap_or_else(|| "silu".into());
        if hidden_act != "silu" && !family.is_gemma() {
            return Err(ModelError::config(
                path,
                "hidden_act",
                format!("`{hidden_act}` is not supported (only silu)"),
            ));
        }
        let dims = field.dims(family)?;
        // OLMo 3 rotates each layer kind by its own parameters, read by `olmo3::read`.
        let (rope_theta, rope_scaling) = if family == Family::Olmo3 {
            (10_000.0, None)
        } else {
            field.rope(family)?
        };
        let attention_bias = field.flag("attention_bias");
        let mut cfg = Self {
            rms_norm_eps: field.positive_f64("rms_norm_eps", 1e-6, 1.0)?,
            rope_theta,
            rope_scaling,
            sliding_window: field.sliding_window(family, dims.layers)?,
            qkv_bias: family == Family::Qwen2 || (attention_bias && !family.fused_projections()),
            o_bias: matches!(
                family,
                Family::Llama
                    | Family::Qwen3
                    | Family::Olmo2
                    | Family::Olmo3
                    | Family::Qwen3Moe
                    | Family::Olmoe
            ) && attention_bias,
            mlp_bias: family == Family::Llama && field.flag("mlp_bias"),
            qk_norm: family.qk_norm(),
            norms: family.norms(),
            tie_word_embeddings: field.flag("tie_word_embeddings"),
            bos_token_id: token_ids(path, "bos_token_id", json.get("bos_token_id"), dims.vocab)?
                .first()
                .copied(),
            eos_token_ids: eos_ids(path, "eos_token_id", json.get("eos_token_id"), dims.vocab)?,
            moe: field.moe(family, &dims)?,
            ..Self::shaped(family, dims)
        };
        if family.is_gemma() {
            let g = particulars::gemma(json, path, family == Family::Gemma3, dims.layers)?;
            cfg.o_bias = g.bias;
            cfg.qkv_bias = g.bias;
            cfg.tie_word_embeddings = g.tie;
            cfg.sliding_window = g.sliding_window;
            cfg.rope_theta = g.rope_theta;
            cfg.rope_scaling = g.linear_rope.map(|factor| RopeScaling::Linear { factor });
            cfg.particulars = g.particulars;
        }
        if family == Family::Phi3 {
            cfg.particulars.rotary_dim = field.rotary_dim(cfg.head_dim)?;
        }
        if let Some(RopeScaling::LongRope(l)) = &cfg.rope_scaling {
            let rotated = cfg.particulars.rotary_dim.unwrap_or(cfg.head_dim);
            l.check_counts(rotated).map_err(|(which, why)| {
                ModelError::config(path, format!("rope_scaling.{which}_factor"), why)
            })?;
        }
        if family == Family::Olmo3 {
            let o = olmo3::read(json, path, dims.layers)?;
            cfg.sliding_window = o.sliding_window;
            cfg.rope_theta = o.rope_theta;
            cfg.rope_scaling = o.rope_scaling;
            cfg.particulars.local_rope_theta = o.local_rope_theta;
        }
        Ok(cfg)
    }

    /// A decoder of `family` with the checked shape `dims`, the family's norm placement and q/k
    /// norms, and plain defaults for the rest: no biases, no rope scaling, full attention,
    /// untied embeddings, rope θ 10,000, ε 1e-5, no special tokens.
    pub(crate) fn shaped(family: Family, dims: CheckedDims) -> Self {
        Self {
            family,
            vocab_size: dims.vocab,
            hidden_size: dims.hidden,
            intermediate_size: dims.intermediate,
            num_layers: dims.layers,
            num_heads: dims.heads,
            num_kv_heads: dims.kv_heads,
            head_dim: dims.head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: dims.positions,
            sliding_window: vec![None; dims.layers],
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: family.qk_norm(),
            norms: family.norms(),
            particulars: Particulars::default(),
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            moe: None,
        }
    }

    /// A plain Llama (no biases, untied embeddings, rope θ 10,000, ε 1e-5, `<s>` = 1,
    /// `</s>` = 2) of the given shape; head size `hidden / heads`.
    pub fn llama(
        vocab: usize,
        hidden: usize,
        intermediate: usize,
        layers: usize,
        (heads, kv_heads): (usize, usize),
        max_positions: usize,
    ) -> Self {
        let dims = CheckedDims {
            vocab,
            hidden,
            intermediate,
            layers,
            heads,
            kv_heads,
            head_dim: hidden / heads.max(1),
            positions: max_positions,
        };
        Self {
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            ..Self::shaped(Family::Llama, dims)
        }
    }

    /// Number of edges of the block-level graph: 4L² + 3L + 1 (saturating).
    pub fn num_edges(&self) -> usize {
        let l = self.num_layers;
        sum(&[prod(&[4, l, l]), prod(&[3, l]), 1])
    }

    /// The sizes of the q and k norm weights, where there are q/k norms.
    pub fn qk_norm_sizes(&self) -> Option<(usize, usize)> {
        let hd = self.head_dim;
        self.qk_norm.map(|scope| match scope {
            QkNorm::PerHead => (hd, hd),
            QkNorm::Whole => (prod(&[self.num_heads, hd]), prod(&[self.num_kv_heads, hd])),
        })
    }

    /// The names of each layer's norm weights (after `model.layers.N.`): for the attention
    /// block and for the MLP, the norm before it and the norm after it, where
    /// [`ModelConfig::norms`] puts one.
    pub fn norm_names(&self) -> [[Option<&'static str>; 2]; 2] {
        match self.norms {
            NormPlacement::Pre => [
                [Some("input_layernorm"), None],
                [Some("post_attention_layernorm"), None],
            ],
            NormPlacement::Post => [
                [None, Some("post_attention_layernorm")],
                [None, Some("post_feedforward_layernorm")],
            ],
            NormPlacement::Sandwich => [
                [Some("input_layernorm"), Some("post_attention_layernorm")],
                [
                    Some("pre_feedforward_layernorm"),
                    Some("post_feedforward_layernorm"),
                ],
            ],
        }
    }

    /// The scale of the attention scores: 1/√`query_pre_attn_scalar` where the family has one,
    /// else 1/√head_dim.
    pub fn attention_scale(&self) -> f64 {
        let s = self
            .particulars
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64);
        1.0 / s.sqrt()
    }

    /// Number of parameters (embedding counted once when tied), saturating at `usize::MAX` for
    /// sizes no machine holds.
    pub fn num_params(&self) -> usize {
        let (d, hd, i) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let (q, kv) = (prod(&[self.num_heads, hd]), prod(&[self.num_kv_heads, hd]));
        let mut attn = sum(&[prod(&[d, q]), prod(&[2, d, kv]), prod(&[q, d])]);
        if self.qkv_bias {
            attn = sum(&[attn, q, prod(&[2, kv])]);
        }
        if self.o_bias {
            attn = sum(&[attn, d]);
        }
        attn = sum(&[attn, self.qk_norm_sizes().map_or(0, |(q, k)| q + k)]);
        let mut mlp = prod(&[3, d, i]);
        if self.mlp_bias {
            mlp = sum(&[mlp, prod(&[2, i]), d]);
        }
        let norms = self.norm_names().iter().flatten().flatten().count();
        let routed_layers = (0..self.num_layers)
            .filter(|&l| self.moe.as_ref().is_some_and(|m| m.routes(l)))
            .count();
        let routed = self.moe.as_ref().map_or(0, |m| m.params_per_layer(d));
        let (dense, routed) = (
            self.num_layers - routed_layers,
            prod(&[routed_layers, routed]),
        );
        let per_layer = sum(&[attn, prod(&[norms, d])]);
        let embed = prod(&[self.vocab_size, d]);
        let head = if self.tie_word_embeddings { 0 } else { embed };
        let layers = sum(&[
            prod(&[self.num_layers, per_layer]),
            prod(&[dense, mlp]),
            routed,
        ]);
        sum(&[embed, head, layers, d])
    }
}

/// The rotary parameters `s`, and for LongRoPE the top level's
/// `original_max_position_embeddings` and `max_position_embeddings` where `s` lacks them
/// (Phi-3 keeps them at the top level; transformers reads them into its rope parameters).
fn with_context(s: &Value, json: &Value) -> Value {
    let mut s = s.clone();
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str);
    if kind == Some("longrope") {
        if let Some(o) = s.as_object_mut() {
            for k in [
                "original_max_position_embeddings",
                "max_position_embeddings",
            ] {
                if let Some(v) = json.get(k).filter(|v| !v.is_null()) {
                    o.entry(k).or_insert_with(|| v.clone());
                }
            }
        }
    }
    s
}

/// The product of `xs`, saturating.
fn prod(xs: &[usize]) -> usize {
    xs.iter().fold(1, |a, &x| a.saturating_mul(x))
}

/// The sum of `xs`, saturating.
fn sum(xs: &[usize]) -> usize {
    xs.iter().fold(0, |a, &x| a.saturating_add(x))
}

/// The token ids of `field` (one id or a list) in `path`: each must be a whole number that
/// fits a token id, and lie in the vocabulary.
pub(crate) fn token_ids(
    path: &Path,
    field: &str,
    v: Option<&Value>,
    vocab: usize,
) -> Result<Vec<u32>> {
    let ids = parse_ids(path, field, v)?;
    match ids.iter().find(|&&n| n as usize >= vocab) {
        Some(n) => Err(ModelError::config(
            path,
            field,
            format!("{n} is not a token id of the vocabulary (vocab_size {vocab})"),
        )),
        None => Ok(ids),
    }
}

/// The end-of-sequence ids of `field` in `path`: ids outside the vocabulary (which the model
/// can never produce) are left out with a warning naming the file; the others stop generation.
pub(crate) fn eos_ids(
    path: &Path,
    field: &str,
    v: Option<&Value>,
    vocab: usize,
) -> Result<Vec<u32>> {
    let (inside, outside): (Vec<u32>, Vec<u32>) = parse_ids(path, field, v)?
        .into_iter()
        .partition(|&n| (n as usize) < vocab);
    if !outside.is_empty() {
        log::warn!(
            "{}: `{field}` {outside:?} outside the vocabulary (vocab_size {vocab}) ignored; \
             generation stops at {inside:?} and the tokenizer's end tokens",
            path.display()
        );
    }
    Ok(inside)
}

/// The whole numbers of `field` (one or a list), each a possible token id.
fn parse_ids(path: &Path, field: &str, v: Option<&Value>) -> Result<Vec<u32>> {
    let values = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    values
        .into_iter()
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ModelError::config(path, field, format!("{v} is not a token id")))
        })
        .collect()
}

/// The fields of a `config.json`, read with the file's path at hand for errors.
struct Fields<'a> {
    json: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn family(&self) -> Result<Family> {
        let model_type = self.str("model_type")?;
        Family::from_model_type(&model_type).ok_or_else(|| ModelError::Unsupported {
            path: self.path.to_owned(),
            found: model_type,
            hint: "`model_type` in config.json".into(),
        })
    }

    /// The sizes of the decoder, checked against [`super::limits`].
    fn dims(&self, family: Family) -> Result<CheckedDims> {
        let dims = Dims {
            vocab: self.u64("vocab_size")?,
            hidden: self.u64("hidden_size")?,
            intermediate: self.u64("intermediate_size")?,
            layers: self.u64("num_hidden_layers")?,
            heads: self.u64("num_attention_heads")?,
            kv_heads: self.opt_u64("num_key_value_heads")?,
            // transformers' Gemma configurations default to heads of 256.
            head_dim: self
                .opt_u64("head_dim")?
                .or_else(|| family.is_gemma().then_some(256)),
            positions: self.opt_u64("max_position_embeddings")?.unwrap_or(4096),
        };
        dims.check(self.path, &DimNames::hf())
    }

    /// θ and scaling of the rotary embedding. transformers 5 nests them under `rope_parameters`;
    /// older files use top-level `rope_theta` and `rope_scaling`.
    fn rope(&self, family: Family) -> Result<(f64, Option<RopeScaling>)> {
        let json = self.json;
        let rope_params = json.get("rope_parameters").filter(|v| v.is_object());
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or_else(|| json.get("rope_theta").and_then(Value::as_f64))
            .unwrap_or(10_000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(ModelError::config(
                self.path,
                "rope_theta",
                format!("{rope_theta} is not a positive number"),
            ));
        }
        // A rotation of part of each head is implemented for Phi-3 (Phi-4-mini;
        // `Fields::rotary_dim`); elsewhere refuse it rather than rotate the whole head.
        let partial = json.get("partial_rotary_factor").filter(|v| !v.is_null());
        if let Some(f) = partial.filter(|_| family != Family::Phi3) {
            if f.as_f64() != Some(1.0) {
                return Err(ModelError::config(
                    self.path,
                    "partial_rotary_factor",
                    format!("{f} is not supported (only 1.0: the whole head rotates)"),
                ));
            }
        }
        let scaling = json
            .get("rope_scaling")
            .filter(|v| v.is_object())
            .or(rope_params);
        let rope_scaling = match scaling {
            Some(s) => parse_rope_scaling(&with_context(s, json), self.path, "rope_scaling")?,
            None => None,
        };
        Ok((rope_theta, rope_scaling))
    }

    /// How many leading dimensions of each head of `head_dim` rotate, as transformers' Phi-3
    /// derives it: ⌊head_dim × `partial_rotary_factor`⌋ (from `rope_parameters`, else the top
    /// level); `None` for the whole head. A factor outside (0, 1] or an odd or empty rotated
    /// part is refused naming the field.
    fn rotary_dim(&self, head_dim: usize) -> Result<Option<usize>> {
        let field = "partial_rotary_factor";
        let v = self
            .json
            .get("rope_parameters")
            .and_then(|p| p.get(field))
            .or_else(|| self.json.get(field))
            .filter(|v| !v.is_null());
        let Some(v) = v else { return Ok(None) };
        let f = v
            .as_f64()
            .filter(|f| *f > 0.0 && *f <= 1.0)
            .ok_or_else(|| ModelError::config(self.path, field, format!("{v} is not in (0, 1]")))?;
        // transformers takes int(head_dim * factor).
        let dim = (head_dim as f64 * f).floor() as usize;
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(ModelError::config(
                self.path,
                field,
                format!("{f} rotates {dim} of {head_dim} dimensions (not a positive even number)"),
            ));
        }
        Ok((dim < head_dim).then_some(dim))
    }

    /// The attention window of each of `layers` layers.
    fn sliding_window(&self, family: Family, layers: usize) -> Result<Vec<Option<usize>>> {
        let window = self.opt_u64("sliding_window")?;
        let from = match family {
            // Gemma's windows are read with its other particulars.
            // OLMo 3's windows are read with its rotary embeddings (`olmo3::read`).
            Family::Llama
            | Family::Olmo2
            | Family::Olmo3
            | Family::Olmoe
            | Family::Gemma2
            | Family::Gemma3 => return Ok(vec![None; layers]),
            Family::Mistral | Family::Phi3 | Family::Mixtral => 0,
            // Qwen3-MoE windows every layer (it has no `max_window_layers`).
            Family::Qwen3Moe if self.flag("use_sliding_window") => 0,
            Family::Qwen2 | Family::Qwen3 if self.flag("use_sliding_window") => self
                .json
                .get("max_window_layers")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => return Ok(vec![None; layers]),
        };
        let window = window
            .map(|w| in_range(self.path, "sliding_window", w, 1, MAX_POSITIONS))
            .transpose()?;
        Ok((0..layers)
            .map(|layer| window.filter(|_| layer as u64 >= from))
            .collect())
    }

    /// The routed MLPs of a mixture-of-experts family.
    fn moe(&self, family: Family, dims: &CheckedDims) -> Result<Option<MoeConfig>> {
        if !family.routed() {
            return Ok(None);
        }
        MoeConfig::from_hf_json(
            self.json,
            self.path,
            family.name(),
            dims.layers,
            dims.intermediate,
        )
        .map(Some)
    }

    /// A boolean field; absent or not a boolean is false.
    fn flag(&self, key: &str) -> bool {
        self.json.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A number in (0, `below`), `default` when absent or not a number.
    fn positive_f64(&self, key: &str, default: f64, below: f64) -> Result<f64> {
        let x = self
            .json
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(default);
        if x.is_finite() && x > 0.0 && x < below {
            Ok(x)
        } else {
            Err(ModelError::config(
                self.path,
                key,
                format!("{x} is outside (0, {below})"),
            ))
        }
    }

    fn str(&self, key: &str) -> Result<String> {
        self.opt_str(key)
            .ok_or_else(|| ModelError::config(self.path, key, "missing or not a string"))
    }

    fn opt_str(&self, key: &str) -> Option<String> {
        self.json
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| ModelError::config(self.path, key, "missing"))
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ModelError::config(self.path, key, "expected a non-negative integer")
            }),
        }
    }
}

impl ModelConfig {
    /// Every weight tensor of a Hugging Face checkpoint of this configuration, with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, hd, i) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let (qd, kvd) = (self.num_heads * hd, self.num_kv_heads * hd);
        let mut out = vec![(
            "model.embed_tokens.weight".to_owned(),
            vec![self.vocab_size, d],
        )];
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            let mut lin = |name: &str, o: usize, inp: usize, bias: bool| {
                out.push((format!("{p}.{name}.weight"), vec![o, inp]));
                if bias {
                    out.push((format!("{p}.{name}.bias"), vec![o]));
                }
            };
            if self.family.fused_projections() {
                lin("self_attn.qkv_proj", qd + 2 * kvd, d, false);
            } else {
                lin("self_attn.q_proj", qd, d, self.qkv_bias);
                lin("self_attn.k_proj", kvd, d, self.qkv_bias);
                lin("self_attn.v_proj", kvd, d, self.qkv_bias);
            }
            lin("self_attn.o_proj", d, qd, self.o_bias);
            match &self.moe {
                Some(m) if m.routes(l) => out.extend(m.tensor_shapes(&p, d)),
                _ if self.family.fused_projections() => {
                    lin("mlp.gate_up_proj", 2 * i, d, false);
                    lin("mlp.down_proj", d, i, false);
                }
                _ => {
                    lin("mlp.gate_proj", i, d, self.mlp_bias);
                    lin("mlp.up_proj", i, d, self.mlp_bias);
                    lin("mlp.down_proj", d, i, self.mlp_bias);
                }
            }
            for name in self.norm_names().iter().flatten().flatten() {
                out.push((format!("{p}.{name}.weight"), vec![d]));
            }
            if let Some((qn, kn)) = self.qk_norm_sizes() {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![qn]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![kn]));
            }
        }
        out.push(("model.norm.weight".to_owned(), vec![d]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), vec![self.vocab_size, d]));
        }
        out
    }

    /// Gemma's fields beyond the shared ones, as `config.json` holds them.
    fn gemma(&self) -> particulars::Gemma {
        particulars::Gemma {
            particulars: self.particulars.clone(),
            sliding_window: self.sliding_window.clone(),
            rope_theta: self.rope_theta,
            linear_rope: match self.rope_scaling {
                Some(RopeScaling::Linear { factor }) => Some(factor),
                _ => None,
            },
            bias: self.o_bias,
            tie: self.tie_word_embeddings,
        }
    }

    /// The `config.json` that Hugging Face transformers reads for this configuration.
    pub fn to_hf_json(&self) -> Value {
        let arch = self.family.architecture();
        let window = self.sliding_window.iter().flatten().next().copied();
        let mut j = serde_json::json!({
            "architectures": [arch],
            "model_type": self.family.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids.first(),
            "torch_dtype": "float32",
        });
        #[expect(clippy::expect_used, reason = "json! of a map literal is an object")]
        let o = j.as_object_mut().expect("json object");
        match self.family {
            Family::Llama
            | Family::Qwen3
            | Family::Olmo2
            | Family::Olmo3
            | Family::Qwen3Moe
            | Family::Olmoe => {
                o.insert("attention_bias".into(), self.o_bias.into());
            }
            _ => {}
        }
        if self.family == Family::Llama {
            o.insert("mlp_bias".into(), self.mlp_bias.into());
        }
        match self.family {
            Family::Mistral | Family::Mixtral => {
                o.insert("sliding_window".into(), window.into());
            }
            Family::Phi3 => {
                o.insert("sliding_window".into(), window.into());
                o.insert("pad_token_id".into(), Value::Null);
                if let Some(dim) = self.particulars.rotary_dim {
                    let factor = dim as f64 / self.head_dim as f64;
                    o.insert("partial_rotary_factor".into(), factor.into());
                }
            }
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => {
                let from = self.sliding_window.iter().position(Option::is_some);
                o.insert("use_sliding_window".into(), window.is_some().into());
                o.insert("sliding_window".into(), window.into());
                o.insert(
                    "max_window_layers".into(),
                    from.unwrap_or(self.num_layers).into(),
                );
            }
            Family::Llama | Family::Olmo2 | Family::Olmoe => {}
            Family::Olmo3 => {
                let olmo3 = Olmo3 {
                    sliding_window: self.sliding_window.clone(),
                    rope_theta: self.rope_theta,
                    rope_scaling: self.rope_scaling.clone(),
                    local_rope_theta: self.particulars.local_rope_theta,
                };
                olmo3.write_hf_json(o);
                return j;
            }
            Family::Gemma2 | Family::Gemma3 => {
                self.gemma().write_hf_json(o, self.head_dim);
                return j;
            }
        }
        o.extend(MoeConfig::hf_fields(self.moe.as_ref(), self.family.name()));
        if let Some(s) = &self.rope_scaling {
            o.extend(s.hf_fields());
        }
        j
    }
}
