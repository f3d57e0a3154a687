//! llama.cpp `.gguf` files: configuration from the metadata keys, tensors dequantised to f32 and
//! renamed to Hugging Face names, Q/K rows un-permuted for Llama, tokenizer from the vocabulary.

use super::config::{Family, ModelConfig};
use super::gguf_header;
use super::gguf_moe::{self, Header};
use super::limits::{in_range, DimNames, Dims, MAX_POSITIONS};
use super::particulars::{Activation, Particulars};
use super::rope::{LongRope, RopeScaling};
use super::tokenizer::{GgufBpe, Tokenizer};
use super::weights::{check_tensors, Stored};
use crate::model::error::{ModelError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// An opened GGUF file: metadata read, tensors not yet.
pub struct GgufFile {
    content: Content,
    file: std::fs::File,
    path: std::path::PathBuf,
    arch: String,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        gguf_header::check(path)?;
        let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let content = Content::read(&mut file).map_err(|source| ModelError::Gguf {
            path: path.to_owned(),
            source,
        })?;
        let arch = match content.metadata.get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(ModelError::config(
                    path,
                    "general.architecture",
                    "missing from the GGUF metadata",
                ))
            }
        };
        Ok(Self {
            content,
            file,
            path: path.to_owned(),
            arch,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn family(&self) -> Result<Family> {
        Ok(match self.arch.as_str() {
            "llama" if self.header().has_experts()? => Family::Mixtral,
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "qwen3moe" => Family::Qwen3Moe,
            "olmoe" => Family::Olmoe,
            "olmo2" => Family::Olmo2,
            "gemma2" => Family::Gemma2,
            "gemma3" => Family::Gemma3,
            "phi3" => Family::Phi3,
            other => {
                return Err(ModelError::Unsupported {
                    path: self.path.clone(),
                    found: other.to_owned(),
                    hint: "`general.architecture` in the GGUF metadata".into(),
                })
            }
        })
    }

    /// The header as the mixture-of-experts reader sees it.
    fn header(&self) -> Header<'_> {
        Header {
            meta: &self.content.metadata,
            tensors: &self.content.tensor_infos,
            arch: &self.arch,
            path: &self.path,
        }
    }

    fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn arch_u(&self, key: &str) -> Result<Option<u64>> {
        let full = format!("{}.{key}", self.arch);
        match self.meta(&full) {
            None => Ok(None),
            Some(v) => v
                .to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .ok()
                .or_else(|| v.to_i32().ok().and_then(|x| u64::try_from(x).ok()))
                .map(Some)
                .ok_or_else(|| ModelError::config(&self.path, full, "not a non-negative integer")),
        }
    }

    fn arch_req(&self, key: &str) -> Result<u64> {
        self.arch_u(key)?.ok_or_else(|| {
            ModelError::config(
                &self.path,
                format!("{}.{key}", self.arch),
                "missing from the GGUF metadata",
            )
        })
    }

    /// A positive float, `default` when absent.
    fn arch_f(&self, key: &str, default: f64) -> Result<f64> {
        let full = format!("{}.{key}", self.arch);
        let x = match self.meta(&full) {
            None => default,
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .or_else(|_| v.to_f64())
                .unwrap_or(f64::NAN),
        };
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(ModelError::config(
                &self.path,
                full,
                format!("{x} is not a positive number"),
            ))
        }
    }

    /// A token id from the metadata, inside the vocabulary of `vocab` tokens.
    fn token_id(&self, key: &str, vocab: usize) -> Result<Option<u32>> {
        match self.meta(key) {
            None => Ok(None),
            Some(v) => v
                .to_u32()
                .ok()
                .filter(|&id| (id as usize) < vocab)
                .map(Some)
                .ok_or_else(|| {
                    ModelError::config(
                        &self.path,
                        key,
                        format!("not a token id of the vocabulary ({vocab} tokens)"),
                    )
                }),
        }
    }

    /// The end-of-sequence id, left out with a warning when it lies outside the vocabulary.
    fn eos_ids(&self, vocab: usize) -> Result<Vec<u32>> {
        const KEY: &str = "tokenizer.ggml.eos_token_id";
        let Some(v) = self.meta(KEY) else {
            return Ok(Vec::new());
        };
        let id = v
            .to_u32()
            .map_err(|_| ModelError::config(&self.path, KEY, "not a token id".to_owned()))?;
        if (id as usize) < vocab {
            return Ok(vec![id]);
        }
        log::warn!(
            "{}: `{KEY}` {id} outside the vocabulary ({vocab} tokens) ignored; generation stops \
             at the tokenizer's end tokens",
            self.path.display()
        );
        Ok(Vec::new())
    }

    /// The ids that end a chat turn besides the end-of-sequence id, as llama.cpp stops at them:
    /// `tokenizer.ggml.eot_token_id`, else Gemma's `<end_of_turn>` where the vocabulary has it
    /// (a Gemma GGUF names only `<eos>`, which its chat turns never reach; the model's own
    /// generation config stops at both).
    pub fn turn_end_ids(&self, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
        const KEY: &str = "tokenizer.ggml.eot_token_id";
        match self.meta(KEY) {
            Some(v) => {
                let id = v.to_u32().map_err(|_| {
                    ModelError::config(&self.path, KEY, "not a token id".to_owned())
                })?;
                if (id as usize) < tokenizer.vocab_size() {
                    Ok(vec![id])
                } else {
                    Err(ModelError::config(
                        &self.path,
                        KEY,
                        format!(
                            "not a token id of the vocabulary ({} tokens)",
                            tokenizer.vocab_size()
                        ),
                    ))
                }
            }
            None => Ok(tokenizer.token_to_id("<end_of_turn>").into_iter().collect()),
        }
    }

    /// The vocabulary size: the metadata's, else the embedding's rows.
    fn vocab(&self) -> Result<u64> {
        if let Some(v) = self.arch_u("vocab_size")? {
            return Ok(v);
        }
        self.content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first())
            .map(|&rows| rows as u64)
            .ok_or_else(|| ModelError::config(&self.path, "token_embd.weight", "missing tensor"))
    }

    fn meta_u32(&self, key: &str) -> Option<u32> {
        self.meta(key).and_then(|v| v.to_u32().ok())
    }

    /// The configuration the metadata describes, every size checked against
    /// [`super::limits`].
    pub fn config(&self) -> Result<ModelConfig> {
        let family = self.family()?;
        let dims = Dims {
            vocab: self.vocab()?,
            hidden: self.arch_req("embedding_length")?,
            intermediate: self.arch_req("feed_forward_length")?,
            layers: self.arch_req("block_count")?,
            heads: self.arch_req("attention.head_count")?,
            kv_heads: self.arch_u("attention.head_count_kv")?,
            head_dim: self.arch_u("attention.key_length")?,
            positions: self.arch_u("context_length")?.unwrap_or(4096),
        }
        .check(&self.path, &DimNames::gguf(&self.arch))?;
        let rope_scaling = match self.meta(&format!("{}.rope.scaling.type", self.arch)) {
            Some(Value::String(s)) if s == "linear" => Some(RopeScaling::Linear {
                factor: self.arch_f("rope.scaling.factor", 1.0)?,
            }),
            Some(Value::String(s)) if s != "none" => {
                return Err(ModelError::config(
                    &self.path,
                    "rope.scaling.type",
                    format!("`{s}` is not supported"),
                ))
            }
            _ => None,
        };
        let window = match self.arch_u("attention.sliding_window")? {
            Some(w) if family == Family::Mistral => Some(in_range(
                &self.path,
                &format!("{}.attention.sliding_window", self.arch),
                w,
                1,
                MAX_POSITIONS,
            )?),
            _ => None,
        };
        let has = |name: &str| self.content.tensor_infos.contains_key(name);
        let cfg = ModelConfig {
            rms_norm_eps: self.arch_f("attention.layer_norm_rms_epsilon", 1e-5)?,
            rope_theta: self.arch_f("rope.freq_base", 10_000.0)?,
            rope_scaling,
            sliding_window: vec![window; dims.layers],
            qkv_bias: has("blk.0.attn_q.bias"),
            o_bias: has("blk.0.attn_output.bias"),
            qk_norm: family.qk_norm().filter(|_| has("blk.0.attn_q_norm.weight")),
            tie_word_embeddings: !has("output.weight"),
            bos_token_id: self.token_id("tokenizer.ggml.bos_token_id", dims.vocab)?,
            eos_token_ids: self.eos_ids(dims.vocab)?,
            moe: self.header().moe(family, dims.layers, dims.intermediate)?,
            ..ModelConfig::shaped(family, dims)
        };
        if family.is_gemma() {
            return self.gemma(cfg);
        }
        if family == Family::Olmo2 && self.arch_u("attention.sliding_window")?.is_some() {
            return self.olmo3(cfg);
        }
        if family == Family::Phi3 {
            return self.phi3(cfg);
        }
        Ok(cfg)
    }

    /// Phi-3 as llama.cpp writes it: `rope.dimension_count` rotated dimensions of each head
    /// (fewer than the head for Phi-4-mini), `attention.sliding_window` on every layer (0: none,
    /// as Phi-4's files have it), and LongRoPE as the tensors `rope_factors_short` and
    /// `rope_factors_long` with `rope.scaling.attn_factor` and
    /// `rope.scaling.original_context_length`.
    fn phi3(&self, mut cfg: ModelConfig) -> Result<ModelConfig> {
        let key = |k: &str| format!("{}.{k}", self.arch);
        let head = cfg.head_dim;
        if let Some(dim) = self.arch_u("rope.dimension_count")? {
            let name = key("rope.dimension_count");
            let dim = in_range(&self.path, &name, dim, 2, head)?;
            if !dim.is_multiple_of(2) {
                let why = format!("{dim} of {head} dimensions: not an even number");
                return Err(ModelError::config(&self.path, name, why));
            }
            cfg.particulars.rotary_dim = (dim < head).then_some(dim);
        }
        let window = match self.arch_u("attention.sliding_window")? {
            None | Some(0) => None,
            Some(w) => {
                let name = key("attention.sliding_window");
                Some(in_range(&self.path, &name, w, 1, MAX_POSITIONS)?)
            }
        };
        cfg.sliding_window = vec![window; cfg.num_layers];
        let (short, long) = (self.factors("short")?, self.factors("long")?);
        let (short_factor, long_factor) = match (short, long) {
            (None, None) => return Ok(cfg),
            (Some(s), Some(l)) => (s, l),
            _ => {
                let why = "present without rope_factors_long.weight, or the other way round";
                return Err(ModelError::config(
                    &self.path,
                    "rope_factors_short.weight",
                    why,
                ));
            }
        };
        let original = self.arch_req("rope.scaling.original_context_length")?;
        let original = in_range(
            &self.path,
            &key("rope.scaling.original_context_length"),
            original,
            2,
            MAX_POSITIONS,
        )?;
        let attn = key("rope.scaling.attn_factor");
        let attention_factor = match self.meta(&attn) {
            Some(_) => self.arch_f("rope.scaling.attn_factor", 1.0)?,
            None => {
                return Err(ModelError::config(
                    &self.path,
                    attn,
                    "missing beside the LongRoPE factors",
                ))
            }
        };
        let l = LongRope {
            short_factor,
            long_factor,
            attention_factor,
            original_max_position_embeddings: original,
        };
        l.check_counts(cfg.particulars.rotary_dim.unwrap_or(head))
            .map_err(|(which, why)| {
                ModelError::config(&self.path, format!("rope_factors_{which}.weight"), why)
            })?;
        cfg.rope_scaling = Some(RopeScaling::LongRope(l));
        Ok(cfg)
    }

    /// The LongRoPE factors of the tensor `rope_factors_{which}.weight`, when present: positive
    /// and finite.
    fn factors(&self, which: &str) -> Result<Option<Vec<f64>>> {
        let name = format!("rope_factors_{which}.weight");
        if !self.content.tensor_infos.contains_key(&name) {
            return Ok(None);
        }
        let bad = |why: String| ModelError::config(&self.path, &name, why);
        let t = self
            .content
            .tensor(&mut &self.file, &name, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let v = t
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        if let Some(f) = v.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
            return Err(bad(format!("{f} is not a positive factor")));
        }
        Ok(Some(v))
    }

    /// OLMo 3 as llama.cpp writes it: architecture `olmo2` with `attention.sliding_window` and
    /// `attention.sliding_window_pattern`, one boolean per layer (true: the layer slides; by
    /// default every fourth layer attends to everything). One base `rope.freq_base` serves
    /// both kinds, the sliding layers rotating without scaling, as llama.cpp runs them.
    fn olmo3(&self, mut cfg: ModelConfig) -> Result<ModelConfig> {
        let key = |k: &str| format!("{}.{k}", self.arch);
        let window_key = key("attention.sliding_window");
        let window = in_range(
            &self.path,
            &window_key,
            self.arch_req("attention.sliding_window")?,
            1,
            MAX_POSITIONS,
        )?;
        let pattern_key = key("attention.sliding_window_pattern");
        let layers = cfg.num_layers;
        let sliding: Vec<bool> = match self.meta(&pattern_key) {
            None => (0..layers).map(|l| (l + 1) % 4 != 0).collect(),
            Some(Value::Array(a)) if a.len() == layers => a
                .iter()
                .map(|v| v.to_bool().ok())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ModelError::config(&self.path, &pattern_key, "not a list of booleans")
                })?,
            Some(_) => {
                return Err(ModelError::config(
                    &self.path,
                    pattern_key,
                    format!("not a list of {layers} booleans, one per layer"),
                ))
            }
        };
        cfg.family = Family::Olmo3;
        cfg.sliding_window = sliding.into_iter().map(|s| s.then_some(window)).collect();
        cfg.particulars.local_rope_theta = Some(cfg.rope_theta);
        Ok(cfg)
    }

    /// Gemma's particulars as llama.cpp reads them: soft-caps from the metadata, windows on
    /// every other layer (Gemma 2) or on five layers of six (Gemma 3, or
    /// `attention.sliding_window_pattern`), a rotary base of 10,000 on Gemma 3's local layers
    /// and 1,000,000 by default on its global ones, and the attention scale 1/√head_dim, or
    /// 1/√(hidden/heads) for the 27B models (46 layers of Gemma 2, 62 of Gemma 3).
    fn gemma(&self, mut cfg: ModelConfig) -> Result<ModelConfig> {
        let gemma3 = cfg.family == Family::Gemma3;
        let window = match self.arch_u("attention.sliding_window")? {
            Some(w) => in_range(
                &self.path,
                &format!("{}.attention.sliding_window", self.arch),
                w,
                1,
                MAX_POSITIONS,
            )?,
            None => 4096,
        };
        let every = match self.arch_u("attention.sliding_window_pattern")? {
            Some(0) => {
                return Err(ModelError::config(
                    &self.path,
                    format!("{}.attention.sliding_window_pattern", self.arch),
                    "0 is not a layer pattern",
                ))
            }
            Some(n) => n as usize,
            None if gemma3 => 6,
            None => 2,
        };
        cfg.sliding_window = (0..cfg.num_layers)
            .map(|l| ((l + 1) % every != 0).then_some(window))
            .collect();
        let cap = |key: &str| {
            let present = self.meta(&format!("{}.{key}", self.arch)).is_some();
            present.then(|| self.arch_f(key, 1.0)).transpose()
        };
        let large = cfg.num_layers == if gemma3 { 62 } else { 46 };
        let scalar = if large {
            (cfg.hidden_size / cfg.num_heads) as f64
        } else {
            cfg.head_dim as f64
        };
        if gemma3 {
            cfg.rope_theta = self.arch_f("rope.freq_base", 1e6)?;
        }
        cfg.particulars = Particulars {
            activation: Activation::GeluTanh,
            embed_scale: true,
            norm_offset: true,
            attn_softcap: cap("attn_logit_softcapping")?,
            final_softcap: cap("final_logit_softcapping")?,
            query_pre_attn_scalar: Some(scalar),
            local_rope_theta: gemma3.then_some(10_000.0),
            rotary_dim: None,
        };
        cfg.rms_norm_eps = self.arch_f("attention.layer_norm_rms_epsilon", 1e-6)?;
        Ok(cfg)
    }

    /// The tokenizer stored in the metadata (byte-level BPE and SentencePiece models).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let err = |message: String| ModelError::Tokenizer {
            path: self.path.clone(),
            message,
        };
        let model = match self.meta("tokenizer.ggml.model") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(err("no `tokenizer.ggml.model` in the metadata; put the model's tokenizer.json next to the .gguf file".into())),
        };
        if model == "llama" {
            return super::gguf_spm::tokenizer(&self.content.metadata, &self.arch, &self.path);
        }
        if model != "gpt2" {
            return Err(ModelError::config(&self.path, "tokenizer.ggml.model", format!("`{model}` is not supported (only byte-level BPE, `gpt2`, and SentencePiece, `llama`); put the model's tokenizer.json next to the .gguf file")));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            match self.meta(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.to_string().cloned())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| err(format!("`{key}`: {e}"))),
                _ => Err(err(format!("`{key}` missing from the metadata"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let special_ids = match self.meta("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v.to_i32(), Ok(3 | 4)))
                .map(|(i, _)| i as u32)
                .collect(),
            _ => Vec::new(),
        };
        let pre = match self.meta("tokenizer.ggml.pre") {
            Some(Value::String(s)) => s.clone(),
            _ => "default".into(),
        };
        let chat_template = match self.meta("tokenizer.chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let add_bos = self
            .meta("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        Tokenizer::from_gguf_bpe(
            GgufBpe {
                tokens,
                merges,
                pre,
                special_ids,
                bos_id: self.meta_u32("tokenizer.ggml.bos_token_id"),
                eos_id: self.meta_u32("tokenizer.ggml.eos_token_id"),
                add_bos,
                chat_template,
            },
            &self.path,
        )
    }

    /// Refuse tensors whose data is not whole blocks of their type, runs past the end of the
    /// file, or overlaps another tensor's.
    fn check_ranges(&self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| ModelError::io(&self.path, e))?
            .len();
        let bad = |name: &str, message: String| ModelError::Weights {
            path: self.path.clone(),
            message: format!("tensor `{name}`: {message}"),
        };
        let mut ranges = Vec::with_capacity(self.content.tensor_infos.len());
        for (name, info) in &self.content.tensor_infos {
            let (elements, block) = (info.shape.elem_count(), info.ggml_dtype.block_size());
            if elements % block != 0 {
                let dtype = info.ggml_dtype;
                return Err(bad(
                    name,
                    format!("{elements} values are not whole {dtype:?} blocks of {block}"),
                ));
            }
            let bytes = (elements / block) as u64 * info.ggml_dtype.type_size() as u64;
            let start = self.content.tensor_data_offset.checked_add(info.offset);
            match start.and_then(|s| s.checked_add(bytes).map(|e| (s, e))) {
                Some((start, end)) if end <= len => ranges.push((start, end, name)),
                _ => {
                    return Err(bad(
                        name,
                        format!("its {bytes} bytes run past the end of the file ({len} bytes)"),
                    ))
                }
            }
        }
        ranges.sort();
        for pair in ranges.windows(2) {
            if let [(_, a_end, a), (b_start, _, b)] = pair {
                if a_end > b_start {
                    return Err(ModelError::OverlappingTensors {
                        path: self.path.clone(),
                        name: (*a).clone(),
                        other: (*b).clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every tensor dequantised to f32 under its Hugging Face name, once the file is checked to
    /// hold exactly the tensors `cfg` calls for, with their shapes.
    pub fn tensors(&mut self, cfg: &ModelConfig) -> Result<HashMap<String, Tensor>> {
        let family = cfg.family;
        let moe = cfg.moe.as_ref();
        if let Some(moe) = moe {
            self.header().check_expert_counts(moe)?;
        }
        // Phi-3's LongRoPE factors are read with the configuration (`phi3`).
        let read = |name: &str| family == Family::Phi3 && name.starts_with("rope_factors_");
        let weights = self.content.tensor_infos.iter();
        let stored = weights.filter(|(n, _)| !read(n)).flat_map(|(name, info)| {
            let dims = info.shape.dims();
            moe.and_then(|m| gguf_moe::stored(name, dims, m, &self.path))
                .unwrap_or_else(|| {
                    vec![Stored {
                        hf_name: hf_name(name, family),
                        name,
                        shape: dims,
                        file: &self.path,
                    }]
                })
        });
        check_tensors(cfg, &self.path, stored)?;
        self.check_ranges()?;
        let mut out = HashMap::with_capacity(self.content.tensor_infos.len());
        if let Some(moe) = moe {
            out.extend(gguf_moe::expert_tensors(
                &self.content,
                &mut self.file,
                &self.path,
                moe,
            )?);
        }
        let names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        let unpermute = matches!(self.arch.as_str(), "llama" | "mistral");
        for name in names {
            let Some(hf) = hf_name(&name, family) else {
                continue;
            };
            let q = self
                .content
                .tensor(&mut self.file, &name, &Device::Cpu)
                .map_err(|e| ModelError::Weights {
                    path: self.path.clone(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            let mut t = q.dequantize(&Device::Cpu)?;
            if unpermute {
                if name.ends_with("attn_q.weight") || name.ends_with("attn_q.bias") {
                    t = unpermute_rows(&t, cfg.num_heads)?;
                } else if name.ends_with("attn_k.weight") || name.ends_with("attn_k.bias") {
                    t = unpermute_rows(&t, cfg.num_kv_heads)?;
                }
            }
            // llama.cpp stores Gemma's norm weights as 1 + w; the model reads w.
            if cfg.particulars.norm_offset && hf.ends_with("norm.weight") {
                t = (t - 1.0)?;
            }
            out.insert(hf, t);
        }
        Ok(out)
    }
}

/// Undo llama.cpp's reordering of each head's rows from (half, pair) to (pair, half), which it
/// applies so that its interleaved rotary kernel matches the Hugging Face rotate-half layout.
fn unpermute_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let Some((&rows, rest)) = dims.split_first() else {
        candle_core::bail!("a scalar where attention rows were expected");
    };
    let rest: usize = rest.iter().product();
    let half = rows / heads.max(1) / 2;
    t.reshape((heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// The Hugging Face name of GGUF tensor `gguf` in a model of `family`. Gemma's `ffn_norm` is
/// the norm before the MLP (`pre_feedforward_layernorm`) beside one after the attention block;
/// Phi-3's `ffn_up` holds gate and up projections as one (`gate_up_proj`).
fn hf_name(gguf: &str, family: Family) -> Option<String> {
    let sandwich = family.is_gemma();
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" if sandwich => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        // OLMo 2's norms after the attention block and the MLP.
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "attn_qkv" => "self_attn.qkv_proj",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" if family.fused_projections() => "mlp.gate_up_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

impl GgufFile {
    /// The quantisation of the attention query weights, as a name (`q4_1`, `f16`, …).
    pub fn quantization(&self) -> String {
        self.content
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .or_else(|| self.content.tensor_infos.get("token_embd.weight"))
            .map(|t| format!("{:?}", t.ggml_dtype).to_lowercase())
            .unwrap_or_else(|| "unknown".into())
    }
}
