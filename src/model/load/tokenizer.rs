//! The tokenizer of a model: a `tokenizers` tokenizer plus what `tokenizer_config.json` and
//! `generation_config.json` add (chat template, special tokens, end-of-sequence ids).

use super::limits::MAX_TOKENIZER_BYTES;
use crate::model::error::{ModelError, Result};
use serde_json::{json, Value};
use std::path::Path;

/// tokenizers' incremental decoder of a [`tokenizers::Tokenizer`].
type DecodeStream<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Text decoded as ids arrive ([`Tokenizer::text_stream`]): tokenizers' own incremental decoder
/// (`DecodeStream`, which holds back the bytes of a character split across ids and decodes only
/// a window of the last ids), whose chunks add up to what [`Tokenizer::decode`] gives for all
/// the ids (`tests/generate.rs`). Where the decoder cannot extend its text (a decoder that
/// rewrites earlier text), the stream falls back to decoding all the ids at each push.
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    /// `None` once the stream fell back to decoding every id.
    stream: Option<DecodeStream<'t>>,
    ids: Vec<u32>,
    text: String,
}

impl TextStream<'_> {
    /// Add `id`; the text may not show it yet (a partial character).
    pub fn push(&mut self, id: u32) -> Result<(), tokenizers::Error> {
        self.ids.push(id);
        if let Some(stream) = &mut self.stream {
            match stream.step(id) {
                Ok(Some(chunk)) => {
                    self.text.push_str(&chunk);
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(_) => self.stream = None,
            }
        }
        self.text = self.tokenizer.decode(&self.ids)?;
        Ok(())
    }

    /// The text of the ids pushed so far (all but a trailing partial character).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A loaded tokenizer with its chat template and stop ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Jinja chat template from `tokenizer_config.json` or the GGUF metadata.
    pub chat_template: Option<String>,
    /// Token ids that end generation (from the generation config, the tokenizer config and
    /// the model config, deduplicated).
    pub eos_ids: Vec<u32>,
    /// The beginning-of-sequence token, when the model has one.
    pub bos_token: Option<String>,
    /// The end-of-sequence token's text.
    pub eos_token: Option<String>,
    /// Prepend this id when encoding with special tokens (GGUF `add_bos_token`; tokenizer.json
    /// files express the same through their post-processor).
    prepend_bos: Option<u32>,
}

/// The bytes of the tokenizer file at `path`, refusing one over [`MAX_TOKENIZER_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .map_err(|e| ModelError::io(path, e))?
        .len();
    if size > MAX_TOKENIZER_BYTES {
        return Err(ModelError::Tokenizer {
            path: path.to_owned(),
            message: format!(
                "{size} bytes, over the limit of {MAX_TOKENIZER_BYTES}: not a tokenizer file"
            ),
        });
    }
    std::fs::read(path).map_err(|e| ModelError::io(path, e))
}

/// Parse a `tokenizer.json` document read from `path`. UTF-8 and the JSON syntax are checked
/// first: the tokenizers library panics on either error inside the decoder instead of returning
/// an error.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<tokenizers::Tokenizer> {
    let failed = |message: String| ModelError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| failed(format!("not UTF-8 text: {e}")))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|source| ModelError::Json {
        path: path.to_owned(),
        source,
    })?;
    text.parse()
        .map_err(|e: tokenizers::Error| failed(e.to_string()))
}

impl Tokenizer {
    /// Load `tokenizer.json` (required) and `tokenizer_config.json` (optional) from a folder.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::Missing {
                path,
                what: "tokenizer.json".into(),
                fix: "copy the model's tokenizer.json into the folder (circuitdiff does not read tokenizer.model files)".into(),
            });
        }
        let inner = parse(&read_bounded(&path)?, &path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() {
            let text =
                std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: cfg_path.clone(),
                source,
            })?
        } else {
            Value::Null
        };
        let token_text = |key: &str| match cfg.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let chat_template = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        let eos_token = token_text("eos_token");
        let eos_ids = eos_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .into_iter()
            .collect();
        Ok(Self {
            inner,
            chat_template,
            eos_ids,
            bos_token: token_text("bos_token"),
            eos_token,
            prepend_bos: None,
        })
    }

    /// Build a byte-level BPE tokenizer from GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf_bpe(spec: GgufBpe, path: &Path) -> Result<Self> {
        let vocab: serde_json::Map<String, Value> = spec
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<Value> = spec
            .special_ids
            .iter()
            .filter_map(|&id| spec.tokens.get(id as usize).map(|t| (id, t)))
            .map(|(id, t)| {
                json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match spec.pre.as_str() {
            "gpt2" | "default" => byte_level,
            "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            "llama-bpe" | "llama3" | "qwen2" | "deepseek-llm" => {
                let pattern = if spec.pre == "qwen2" {
                    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                } else {
                    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                };
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})
            }
            other => {
                return Err(ModelError::Tokenizer {
                    path: path.to_owned(),
                    message: format!("GGUF pre-tokenizer `{other}` is not supported (gpt2, smollm, llama-bpe, qwen2); put the model's tokenizer.json next to the .gguf file"),
                })
            }
        };
        let doc = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": spec.merges},
        });
        let inner = parse(doc.to_string().as_bytes(), path)?;
        let text = |id: Option<u32>| id.and_then(|i| spec.tokens.get(i as usize).cloned());
        Ok(Self {
            inner,
            chat_template: spec.chat_template,
            eos_ids: spec.eos_id.into_iter().collect(),
            bos_token: text(spec.bos_id),
            eos_token: text(spec.eos_id),
            prepend_bos: spec.bos_id.filter(|_| spec.add_bos),
        })
    }

    /// A tokenizer built elsewhere (a GGUF's SentencePiece vocabulary) whose post-processor adds
    /// its special tokens.
    pub(super) fn assembled(
        inner: tokenizers::Tokenizer,
        chat_template: Option<String>,
        eos_ids: Vec<u32>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Self {
        Self {
            inner,
            chat_template,
            eos_ids,
            bos_token,
            eos_token,
            prepend_bos: None,
        }
    }

    /// Add end-of-sequence ids from the model or generation config.
    pub(crate) fn add_eos_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.eos_ids.contains(&id) {
                self.eos_ids.push(id);
            }
        }
    }

    /// Encode text. With `add_special`, the tokenizer's own BOS/post-processing is applied.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, tokenizers::Error> {
        let enc = self.inner.encode(text, add_special)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_special {
            ids.extend(self.prepend_bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decode ids to text, keeping special tokens visible.
    pub fn decode(&self, ids: &[u32]) -> Result<String, tokenizers::Error> {
        self.inner.decode(ids, false)
    }

    /// The text of ids given one at a time, decoded as [`Tokenizer::decode`] decodes them all
    /// but without decoding them all again at each id.
    pub fn text_stream(&self) -> TextStream<'_> {
        TextStream {
            tokenizer: self,
            stream: Some(self.inner.decode_stream(false)),
            ids: Vec::new(),
            text: String::new(),
        }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The full vocabulary as (token, id), sorted by id; two models may be compared only when
    /// these agree.
    pub fn vocabulary(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = self.inner.get_vocab(true).into_iter().collect();
        v.sort_by_key(|(_, id)| *id);
        v
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// What a GGUF file says about its byte-level BPE tokenizer.
pub struct GgufBpe {
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub pre: String,
    pub special_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}
