//! One configuration type for every supported family, read from a Hugging Face `config.json`
//! (or built from GGUF metadata by [`crate::model::gguf`]).

use super::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The decoder families circuitdiff runs. They share one transformer; the differences are
/// attention biases, q/k norms and sliding windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    /// The `model_type` string of `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    fn from_model_type(s: &str) -> Option<Self> {
        Some(match s {
            "llama" => Self::Llama,
            "mistral" => Self::Mistral,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            _ => return None,
        })
    }
}

/// Llama-3 style frequency scaling of rotary embeddings (`rope_scaling` with `rope_type: llama3`),
/// or plain linear position interpolation.
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
    /// Per-head RMS norms on queries and keys (Qwen3).
    pub qk_norm: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
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

    /// Parse the JSON value of a `config.json`; `path` is used in error messages.
    pub fn from_hf_json(json: &Value, path: &Path) -> Result<Self> {
        let field = Fields { json, path };
        let model_type = field.str("model_type")?;
        let family =
            Family::from_model_type(&model_type).ok_or_else(|| ModelError::Unsupported {
                path: path.to_owned(),
                found: model_type.clone(),
                hint: "`model_type` in config.json".into(),
            })?;
        let hidden_act = field.opt_str("hidden_act").unwrap_or_else(|| "silu".into());
        if hidden_act != "silu" {
            return Err(ModelError::config(
                path,
                "hidden_act",
                format!("`{hidden_act}` is not supported (only silu)"),
            ));
        }
        let hidden_size = field.usize("hidden_size")?;
        let num_heads = field.usize("num_attention_heads")?;
        let num_kv_heads = field.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        let num_layers = field.usize("num_hidden_layers")?;
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(ModelError::config(
                path,
                "num_key_value_heads",
                format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
            ));
        }
        let head_dim = match field.opt_usize("head_dim")? {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(ModelError::config(
                    path,
                    "head_dim",
                    "missing, and hidden_size is not a multiple of num_attention_heads",
                ))
            }
        };
        // transformers 5 nests rope settings under `rope_parameters`; older files use
        // top-level `rope_theta` and `rope_scaling`.
        let rope_params = json.get("rope_parameters").filter(|v| v.is_object());
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or_else(|| json.get("rope_theta").and_then(Value::as_f64))
            .unwrap_or(10_000.0);
        let scaling = json
            .get("rope_scaling")
            .filter(|v| v.is_object())
            .or(rope_params);
        let rope_scaling = match scaling {
            Some(s) => parse_rope_scaling(s, path)?,
            None => None,
        };
        let max_position_embeddings = field.opt_usize("max_position_embeddings")?.unwrap_or(4096);
        let window = field.opt_usize("sliding_window")?;
        let sliding_window = (0..num_layers)
            .map(|layer| match family {
                Family::Mistral => window,
                Family::Qwen2 | Family::Qwen3 => {
                    let used = json
                        .get("use_sliding_window")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let from = json
                        .get("max_window_layers")
                        .and_then(Value::as_u64)
                        .unwrap_or(0) as usize;
                    window.filter(|_| used && layer >= from)
                }
                Family::Llama => None,
            })
            .collect();
        let attention_bias = json
            .get("attention_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let eos_token_ids = ids_field(json.get("eos_token_id"));
        Ok(Self {
            family,
            vocab_size: field.usize("vocab_size")?,
            hidden_size,
            intermediate_size: field.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: json
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            sliding_window,
            qkv_bias: family == Family::Qwen2 || attention_bias,
            o_bias: matches!(family, Family::Llama | Family::Qwen3) && attention_bias,
            mlp_bias: family == Family::Llama
                && json
                    .get("mlp_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            qk_norm: family == Family::Qwen3,
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bos_token_id: json
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|v| v as u32),
            eos_token_ids,
        })
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
        Self {
            family: Family::Llama,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim: hidden / heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: max_positions,
            sliding_window: vec![None; layers],
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// Number of edges of the block-level graph: 4L² + 3L + 1.
    pub fn num_edges(&self) -> usize {
        let l = self.num_layers;
        4 * l * l + 3 * l + 1
    }

    /// Number of parameters (embedding counted once when tied).
    pub fn num_params(&self) -> usize {
        let (d, hd) = (self.hidden_size, self.head_dim);
        let (q, kv) = (self.num_heads * hd, self.num_kv_heads * hd);
        let mut attn = d * q + 2 * d * kv + q * d;
        if self.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.o_bias {
            attn += d;
        }
        if self.qk_norm {
            attn += 2 * hd;
        }
        let mut mlp = 3 * d * self.intermediate_size;
        if self.mlp_bias {
            mlp += 2 * self.intermediate_size + d;
        }
        let per_layer = attn + mlp + 2 * d;
        let embed = self.vocab_size * d;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_layers * per_layer + d
    }
}

/// `eos_token_id` may be a number or a list of numbers.
pub(crate) fn ids_field(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_rope_scaling(s: &Value, path: &Path) -> Result<Option<RopeScaling>> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| {
        s.get(k).and_then(Value::as_f64).ok_or_else(|| {
            ModelError::config(path, format!("rope_scaling.{k}"), "missing or not a number")
        })
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => {
            return Err(ModelError::config(
                path,
                "rope_scaling.rope_type",
                format!("`{other}` is not supported (default, linear, llama3)"),
            ))
        }
    })
}

struct Fields<'a> {
    json: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
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

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| ModelError::config(self.path, key, "missing"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
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
            lin("self_attn.q_proj", qd, d, self.qkv_bias);
            lin("self_attn.k_proj", kvd, d, self.qkv_bias);
            lin("self_attn.v_proj", kvd, d, self.qkv_bias);
            lin("self_attn.o_proj", d, qd, self.o_bias);
            lin("mlp.gate_proj", i, d, self.mlp_bias);
            lin("mlp.up_proj", i, d, self.mlp_bias);
            lin("mlp.down_proj", d, i, self.mlp_bias);
            out.push((format!("{p}.input_layernorm.weight"), vec![d]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
            if self.qk_norm {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
            }
        }
        out.push(("model.norm.weight".to_owned(), vec![d]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), vec![self.vocab_size, d]));
        }
        out
    }

    /// The `config.json` that Hugging Face transformers reads for this configuration.
    pub fn to_hf_json(&self) -> Value {
        let arch = match self.family {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        };
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
        let o = j.as_object_mut().expect("json object");
        match self.family {
            Family::Llama | Family::Qwen3 => {
                o.insert("attention_bias".into(), self.o_bias.into());
            }
            _ => {}
        }
        if self.family == Family::Llama {
            o.insert("mlp_bias".into(), self.mlp_bias.into());
        }
        match self.family {
            Family::Mistral => {
                o.insert("sliding_window".into(), window.into());
            }
            Family::Qwen2 | Family::Qwen3 => {
                let from = self.sliding_window.iter().position(Option::is_some);
                o.insert("use_sliding_window".into(), window.is_some().into());
                o.insert("sliding_window".into(), window.into());
                o.insert(
                    "max_window_layers".into(),
                    from.unwrap_or(self.num_layers).into(),
                );
            }
            Family::Llama => {}
        }
        if let Some(s) = &self.rope_scaling {
            let v = match *s {
                RopeScaling::Linear { factor } => {
                    serde_json::json!({"rope_type": "linear", "factor": factor})
                }
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                } => serde_json::json!({"rope_type": "llama3", "factor": factor,
                    "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings}),
            };
            o.insert("rope_scaling".into(), v);
        }
        j
    }
}
