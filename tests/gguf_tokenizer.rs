//! SentencePiece vocabularies read from GGUF metadata (Llama 2 and Gemma styles) tokenize as
//! transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=...)` does, with no
//! tokenizer.json beside the file; what would be built differently is refused naming the key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::quantized::gguf_file;
use circuitdiff::model::{load_without_weights, HubOptions};
use common::gguf_tokenizer::{check, transformers, CHAT};
use std::path::{Path, PathBuf};

/// A Llama 2-style and a Gemma-style vocabulary (written with the `gguf` package: byte tokens,
/// control and user-defined tokens, scores in ties; for Gemma tokens of spaces stored as
/// spaces and newlines user-defined) encode, decode and render the chat template as
/// transformers does.
#[test]
fn sentencepiece_ggufs_tokenize_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "gemma3"] {
        let path = dir.path().join(arch).join("model.gguf");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let r = transformers(&path, Some(arch));
        let (_, tokenizer) =
            load_without_weights(path.to_str().unwrap(), &HubOptions::default()).unwrap();
        assert_eq!(tokenizer.chat_template.as_deref(), Some(CHAT));
        check(&tokenizer, &r, arch);
        let gemma = arch == "gemma3";
        // Generation stops at a chat turn's end (both test vocabularies have `<end_of_turn>` and
        // name no `tokenizer.ggml.eot_token_id`) as at the end of the sequence.
        let turn_end = tokenizer.token_to_id("<end_of_turn>").unwrap();
        let eos = tokenizer
            .token_to_id(if gemma { "<eos>" } else { "</s>" })
            .unwrap();
        assert_eq!(tokenizer.eos_ids, [eos, turn_end], "{arch}");
        // Refusals, each on a copy of the file with one metadata entry changed.
        type Edit = fn(&mut Vec<(String, gguf_file::Value)>);
        let cases: [(&str, Edit); 4] = [
            ("tokenizer.ggml.pre", |m| {
                common::gguf_set(m, "tokenizer.ggml.pre", str_value("llama-bpe"));
            }),
            ("tokenizer.ggml.model", |m| {
                common::gguf_set(m, "tokenizer.ggml.model", str_value("bert"));
            }),
            ("tokenizer.ggml.tokens", |m| {
                // The class's default `<unk>` renamed: transformers would append it.
                let key = "tokenizer.ggml.tokens";
                let mut tokens = strings(m, key);
                let unk = tokens.iter().position(|t| t == "<unk>").unwrap();
                tokens[unk] = "<unknown>".into();
                let list = tokens.into_iter().map(gguf_file::Value::String).collect();
                common::gguf_set(m, key, gguf_file::Value::Array(list));
            }),
            ("tokenizer.ggml.tokens", |m| {
                // A token too long to recover merges from in reasonable time.
                let key = "tokenizer.ggml.tokens";
                let mut tokens = strings(m, key);
                let last = tokens.len() - 1;
                tokens[last] = "a".repeat(2000);
                let list = tokens.into_iter().map(gguf_file::Value::String).collect();
                common::gguf_set(m, key, gguf_file::Value::Array(list));
            }),
        ];
        for (i, (key, edit)) in cases.into_iter().enumerate() {
            let bad = rewritten(&path, &dir.path().join(arch).join(i.to_string()), edit);
            let e = load_without_weights(bad.to_str().unwrap(), &HubOptions::default())
                .err()
                .unwrap_or_else(|| panic!("{arch} {key}: loaded"))
                .to_string();
            eprintln!("{arch} {key}: {e}");
            assert!(
                e.contains(&format!("`{key}`")),
                "{arch} {key} (gemma {gemma}): {e}"
            );
        }
    }
}

fn str_value(s: &str) -> gguf_file::Value {
    gguf_file::Value::String(s.into())
}

fn strings(meta: &[(String, gguf_file::Value)], key: &str) -> Vec<String> {
    let (_, v) = meta.iter().find(|(k, _)| k == key).unwrap();
    v.to_vec()
        .unwrap()
        .iter()
        .map(|s| s.to_string().unwrap().clone())
        .collect()
}

/// A copy of the tensor-less GGUF `path` as `folder/model.gguf`, its metadata edited.
fn rewritten(
    path: &Path,
    folder: &Path,
    edit: impl FnOnce(&mut Vec<(String, gguf_file::Value)>),
) -> PathBuf {
    let content = gguf_file::Content::read(&mut std::fs::File::open(path).unwrap()).unwrap();
    assert!(content.tensor_infos.is_empty());
    let mut meta: Vec<(String, gguf_file::Value)> = content.metadata.into_iter().collect();
    edit(&mut meta);
    std::fs::create_dir_all(folder).unwrap();
    let out = folder.join("model.gguf");
    let mut f = std::fs::File::create(&out).unwrap();
    let meta: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &meta, &[]).unwrap();
    out
}
