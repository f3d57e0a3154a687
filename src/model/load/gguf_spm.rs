//! SentencePiece vocabularies in GGUF metadata (`tokenizer.ggml.model` = `llama`, as Llama 2,
//! Mistral and Gemma files carry them), built into the `tokenizers` tokenizer that transformers'
//! GGUF integration builds (`integrations/gguf/gguf_tokenizer_mapping.py`, transformers 5.24):
//! a byte-fallback BPE whose merges are recovered from the vocabulary (ordered by the scores,
//! or for Gemma by the tokens' order in the file), the `▁` space of `LlamaTokenizer` or
//! `GemmaTokenizer`, control tokens special and user-defined tokens whole, and the BOS/EOS the
//! metadata asks for added by a template post-processor.
//!
//! What transformers would build differently (another pre-tokenizer, Phi-3's normalizer, special
//! tokens it would append to the vocabulary) is refused naming the metadata key.

use super::tokenizer::{parse, Tokenizer};
use crate::model::error::{ModelError, Result};
use candle_core::quantized::gguf_file::Value as Meta;
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The token type llama.cpp gives a control token (`<bos>`, `<start_of_turn>`).
const CONTROL: i32 = 3;
/// The token type of a user-defined token, matched whole in the text (`<think>`, Gemma's `\n`).
const USER_DEFINED: i32 = 4;

/// Longest token read, in characters: recovering the merges costs the square of a token's
/// length (Gemma 3's longest token has 31).
const MAX_TOKEN_CHARS: usize = 1024;

/// Which transformers tokenizer class a SentencePiece GGUF vocabulary becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `LlamaTokenizer`: `▁` prepended to the first word by the pre-tokenizer, stripped again
    /// when decoding; merges ordered by the scores.
    Llama,
    /// `GemmaTokenizer`: spaces become `▁` in the normalizer, nothing prepended; tokens of
    /// spaces spelled with `▁`; merges ordered by the tokens' positions.
    Gemma,
}

impl Style {
    /// The special tokens the class declares by default, which transformers adds to the
    /// vocabulary when they are not in it.
    fn defaults(self) -> &'static [&'static str] {
        match self {
            Self::Llama => &["<unk>", "<s>", "</s>"],
            Self::Gemma => &["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
        }
    }
}

/// The GGUF metadata of one file, read with its path at hand for errors.
struct Metadata<'a> {
    meta: &'a HashMap<String, Meta>,
    path: &'a Path,
}

impl Metadata<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> ModelError {
        ModelError::config(self.path, key, message)
    }

    fn array(&self, key: &str) -> Result<Option<&Vec<Meta>>> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(Meta::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.bad(key, "not an array")),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.array(key)?
            .map(|a| {
                a.iter()
                    .map(|v| v.to_string().cloned())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| self.bad(key, format!("not a list of strings: {e}")))
            })
            .transpose()
    }

    /// A number per token, `n` tokens.
    fn per_token<T>(
        &self,
        key: &str,
        n: usize,
        read: impl Fn(&Meta) -> Option<T>,
    ) -> Result<Vec<T>> {
        let a = self
            .array(key)?
            .ok_or_else(|| self.bad(key, "missing from the metadata"))?;
        if a.len() != n {
            return Err(self.bad(key, format!("{} values for {n} tokens", a.len())));
        }
        a.iter()
            .map(|v| read(v).ok_or_else(|| self.bad(key, format!("{v:?} is not a number"))))
            .collect()
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool> {
        self.meta.get(key).map_or(Ok(default), |v| {
            v.to_bool().map_err(|_| self.bad(key, "not true or false"))
        })
    }

    /// A token id inside the vocabulary of `n` tokens.
    fn id(&self, key: &str, n: usize) -> Result<Option<usize>> {
        self.meta
            .get(key)
            .map(|v| {
                v.to_u32()
                    .ok()
                    .map(|id| id as usize)
                    .filter(|&id| id < n)
                    .ok_or_else(|| self.bad(key, format!("not a token id below {n}")))
            })
            .transpose()
    }
}

/// The SentencePiece tokenizer of a GGUF file of architecture `arch` whose metadata is `meta`.
pub(super) fn tokenizer(
    meta: &HashMap<String, Meta>,
    arch: &str,
    path: &Path,
) -> Result<Tokenizer> {
    let m = Metadata { meta, path };
    let style =
        match arch {
            "gemma" | "gemma2" | "gemma3" => Style::Gemma,
            "phi3" => return Err(m.bad(
                "general.architecture",
                "Phi-3's SentencePiece tokenizer (a normalizer instead of the pre-tokenizer) is \
                 not implemented; put the model's tokenizer.json next to the .gguf file",
            )),
            _ => Style::Llama,
        };
    match meta.get("tokenizer.ggml.pre") {
        None => {}
        Some(Meta::String(s)) if s == "default" => {}
        Some(v) => {
            return Err(m.bad(
                "tokenizer.ggml.pre",
                format!(
                    "{v:?}: only `default` is implemented for a SentencePiece vocabulary; put \
                     the model's tokenizer.json next to the .gguf file"
                ),
            ))
        }
    }
    let tokens = read_tokens(&m)?;
    let n = tokens.len();
    let types = m.per_token("tokenizer.ggml.token_type", n, |v| {
        v.to_i32()
            .ok()
            .or_else(|| v.to_u32().ok().and_then(|x| i32::try_from(x).ok()))
    })?;
    let spelled: Vec<String> = match style {
        Style::Llama => tokens.clone(),
        Style::Gemma => tokens.iter().map(|t| respell(t)).collect(),
    };
    let vocab = Vocab::new(&spelled);
    let merges = match m.strings("tokenizer.ggml.merges")? {
        Some(list) => given_merges(&m, list)?,
        None => {
            let scores: Vec<f64> = match style {
                // The position in the file, best first.
                Style::Gemma => (0..n).map(|i| -(i as f64)).collect(),
                Style::Llama => m.per_token("tokenizer.ggml.scores", n, |v| {
                    v.to_f32().ok().map(f64::from).filter(|x| x.is_finite())
                })?,
            };
            derived_merges(&vocab, &scores)
        }
    };
    let ids = SpecialIds {
        bos: m.id("tokenizer.ggml.bos_token_id", n)?,
        eos: m.id("tokenizer.ggml.eos_token_id", n)?,
        unk: m.id("tokenizer.ggml.unknown_token_id", n)?,
        pad: m.id("tokenizer.ggml.padding_token_id", n)?,
    };
    let added = added_tokens(&m, style, &tokens, &types, &vocab, &ids)?;
    let text = |id: Option<usize>| id.map(|i| tokens[i].clone());
    // transformers adds BOS unless the file says otherwise, EOS only where it says so.
    let add_bos = m.flag("tokenizer.ggml.add_bos_token", true)?;
    let add_eos = m.flag("tokenizer.ggml.add_eos_token", false)?;
    let bos = text(ids.bos).filter(|_| add_bos);
    let eos = text(ids.eos).filter(|_| add_eos);
    let doc = document(style, &vocab, &merges, added, template(&vocab, bos, eos));
    let inner = parse(doc.to_string().as_bytes(), path)?;
    let chat_template = match meta.get("tokenizer.chat_template") {
        None => None,
        Some(Meta::String(s)) => Some(s.clone()),
        Some(_) => return Err(m.bad("tokenizer.chat_template", "not a string")),
    };
    Ok(Tokenizer::assembled(
        inner,
        chat_template,
        ids.eos
            .map(|i| vocab.id(&tokens[i]) as u32)
            .into_iter()
            .collect(),
        text(ids.bos),
        text(ids.eos),
    ))
}

/// `tokenizer.ggml.tokens`, each at most [`MAX_TOKEN_CHARS`] long.
fn read_tokens(m: &Metadata) -> Result<Vec<String>> {
    let key = "tokenizer.ggml.tokens";
    let tokens = m
        .strings(key)?
        .ok_or_else(|| m.bad(key, "missing from the metadata"))?;
    if let Some(long) = tokens.iter().find(|t| t.chars().count() > MAX_TOKEN_CHARS) {
        return Err(m.bad(
            key,
            format!(
                "a token of {} characters (at most {MAX_TOKEN_CHARS} are read): `{}…`",
                long.chars().count(),
                long.chars().take(20).collect::<String>()
            ),
        ));
    }
    Ok(tokens)
}

/// Gemma's tokens of two or more spaces (stored as spaces) spelled with `▁`, as
/// transformers' `gemma_tokenizer` does: every token of whitespace that holds a space becomes
/// one `▁` per character.
fn respell(token: &str) -> String {
    if token.contains(' ') && token.chars().all(python_space) {
        "\u{2581}".repeat(token.chars().count())
    } else {
        token.to_owned()
    }
}

/// Python's `str.isspace` for one character: Unicode's White_Space and the four separators
/// U+001C–U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The vocabulary as transformers' dict holds it: each token's last id, tokens in the order of
/// their first appearance.
struct Vocab<'a> {
    ids: HashMap<&'a str, usize>,
    order: Vec<&'a str>,
}

impl<'a> Vocab<'a> {
    fn new(tokens: &'a [String]) -> Self {
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut order = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if ids.insert(t.as_str(), i).is_none() {
                order.push(t.as_str());
            }
        }
        Self { ids, order }
    }

    fn get(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    /// The id of a token known to be in the vocabulary.
    fn id(&self, token: &str) -> usize {
        self.get(token).unwrap_or_default()
    }
}

/// `tokenizer.ggml.merges` as pairs.
fn given_merges(m: &Metadata, list: Vec<String>) -> Result<Vec<(String, String)>> {
    list.into_iter()
        .map(|s| {
            let mut parts = s.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => Ok((a.to_owned(), b.to_owned())),
                _ => Err(m.bad(
                    "tokenizer.ggml.merges",
                    format!("`{s}` is not two tokens separated by a space"),
                )),
            }
        })
        .collect()
}

/// The merges a vocabulary implies (transformers' `generate_merges` with scores): every split of
/// every token into two tokens of the vocabulary, a token's splits ordered by the ids of their
/// halves, then all of them ordered by the token's score, the left half's length and the right
/// half's length, largest first, ties kept in order.
fn derived_merges(vocab: &Vocab, scores: &[f64]) -> Vec<(String, String)> {
    let len = |s: &str| s.chars().count();
    let mut merges: Vec<(f64, usize, usize, &str, &str)> = Vec::new();
    for &token in &vocab.order {
        let score = scores[vocab.id(token)];
        let mut local: Vec<(usize, usize, &str, &str)> = token
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = token.split_at(at);
                Some((vocab.get(l)?, vocab.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|&(a, b, _, _)| (a, b));
        merges.extend(
            local
                .into_iter()
                .map(|(_, _, l, r)| (score, len(l), len(r), l, r)),
        );
    }
    merges.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| (b.1, b.2).cmp(&(a.1, a.2)))
    });
    merges
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// The ids the metadata names.
struct SpecialIds {
    bos: Option<usize>,
    eos: Option<usize>,
    unk: Option<usize>,
    pad: Option<usize>,
}

/// The added tokens transformers gives the tokenizer: special ones (the class's defaults, the
/// tokens the metadata names, the control tokens), then the user-defined tokens whose text is
/// in the vocabulary, each with its vocabulary id, sorted by id. A special token missing from
/// the vocabulary (transformers would append it) is refused.
fn added_tokens(
    m: &Metadata,
    style: Style,
    tokens: &[String],
    types: &[i32],
    vocab: &Vocab,
    ids: &SpecialIds,
) -> Result<Vec<Value>> {
    let named = [ids.bos, ids.eos, ids.unk, ids.pad];
    let special: Vec<&str> = style
        .defaults()
        .iter()
        .copied()
        .chain(named.iter().flatten().map(|&i| tokens[i].as_str()))
        .chain(
            tokens
                .iter()
                .zip(types)
                .filter(|&(_, &t)| t == CONTROL)
                .map(|(s, _)| s.as_str()),
        )
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for text in special {
        let id = vocab.get(text).ok_or_else(|| {
            m.bad(
                "tokenizer.ggml.tokens",
                format!(
                    "no token `{text}`, which transformers would append to the vocabulary as a \
                     special token"
                ),
            )
        })?;
        if seen.insert(text) {
            out.push((id, text, true));
        }
    }
    for (text, _) in tokens
        .iter()
        .zip(types)
        .filter(|&(_, &t)| t == USER_DEFINED)
    {
        if let Some(id) = vocab.get(text) {
            if seen.insert(text) {
                out.push((id, text, false));
            }
        }
    }
    out.sort_by_key(|&(id, _, _)| id);
    Ok(out
        .into_iter()
        .map(|(id, text, special)| {
            json!({"id": id, "content": text, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect())
}

/// The post-processor `update_post_processor` writes: `bos` before and `eos` after each
/// sequence, where given.
fn template(vocab: &Vocab, bos: Option<String>, eos: Option<String>) -> Value {
    let special = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |t: &str, type_id: u32| json!({"Sequence": {"id": t, "type_id": type_id}});
    let wrap = |seq: &str, type_id: u32| {
        let mut v: Vec<Value> = bos.iter().map(|b| special(b, type_id)).collect();
        v.push(sequence(seq, type_id));
        v.extend(eos.iter().map(|e| special(e, type_id)));
        v
    };
    let single = wrap("A", 0);
    let mut pair = single.clone();
    pair.extend(wrap("B", 1));
    let tokens: serde_json::Map<String, Value> = bos
        .iter()
        .chain(eos.iter())
        .map(|t| {
            let entry = json!({"id": t, "ids": [vocab.id(t)], "tokens": [t]});
            (t.clone(), entry)
        })
        .collect();
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": tokens})
}

/// The `tokenizer.json` document of the tokenizer.
fn document(
    style: Style,
    vocab: &Vocab,
    merges: &[(String, String)],
    added: Vec<Value>,
    post_processor: Value,
) -> Value {
    let bpe_vocab: serde_json::Map<String, Value> = vocab
        .ids
        .iter()
        .map(|(t, &i)| ((*t).to_owned(), json!(i)))
        .collect();
    let space = "\u{2581}";
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": space}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    let (normalizer, pre_tokenizer, unk) = match style {
        Style::Llama => {
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            let pre = json!({"type": "Metaspace", "replacement": space,
                             "prepend_scheme": "first", "split": false});
            (Value::Null, pre, Value::Null)
        }
        Style::Gemma => (
            json!({"type": "Replace", "pattern": {"String": " "}, "content": space}),
            json!({"type": "Split", "pattern": {"String": " "},
                   "behavior": "MergedWithPrevious", "invert": false}),
            json!("<unk>"),
        ),
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": bpe_vocab, "merges": merges},
    })
}
