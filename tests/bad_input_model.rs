//! Hostile model files: every number read from a `config.json`, a GGUF header or a safetensors
//! header is checked before anything is allocated from it, and the weights must match the
//! configuration exactly. Each case breaks a tiny real checkpoint in one way and expects a clean
//! error naming the file and the field or tensor, from the library and from the CLI, never a
//! panic. The unbroken checkpoints load (`the_unbroken_checkpoints_load`), so each case fails
//! only through its one edit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use circuitdiff::model::{limits, LoadOptions, MemoryEstimate, Model, ModelConfig, ScorePlan};
use common::{circuitdiff, gguf_set, tiny_gguf, Tiny};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which command of the binary must refuse the checkpoint too: `inspect` reads the configuration
/// and the first weight file's header, `score` loads the weights.
#[derive(Debug, Clone, Copy)]
enum Cli {
    Inspect,
    Score,
}

struct Case {
    name: &'static str,
    /// Write the broken checkpoint under the given folder; returns the model's path.
    make: fn(&Path) -> PathBuf,
    /// The file (or folder) the message names.
    file: &'static str,
    /// What else the message must say: the field or tensor, and the cause.
    expect: &'static [&'static str],
    cli: Cli,
}

const HUGE: u64 = 1_000_000_000_000;

const CASES: &[Case] = &[
    // config.json: sizes out of bounds.
    Case {
        name: "a trillion layers",
        make: |d| config(d, |j| j["num_hidden_layers"] = HUGE.into()),
        file: "config.json",
        expect: &["`num_hidden_layers` is 1000000000000", "1..=1024"],
        cli: Cli::Inspect,
    },
    Case {
        name: "no layers",
        make: |d| config(d, |j| j["num_hidden_layers"] = 0.into()),
        file: "config.json",
        expect: &["`num_hidden_layers` is 0"],
        cli: Cli::Inspect,
    },
    Case {
        name: "absurd hidden size",
        make: |d| config(d, |j| j["hidden_size"] = HUGE.into()),
        file: "config.json",
        expect: &["`hidden_size` is 1000000000000"],
        cli: Cli::Inspect,
    },
    Case {
        name: "absurd vocabulary",
        make: |d| config(d, |j| j["vocab_size"] = (1u64 << 40).into()),
        file: "config.json",
        expect: &["`vocab_size` is 1099511627776"],
        cli: Cli::Inspect,
    },
    Case {
        name: "absurd head count",
        make: |d| config(d, |j| j["num_attention_heads"] = HUGE.into()),
        file: "config.json",
        expect: &["`num_attention_heads` is 1000000000000"],
        cli: Cli::Inspect,
    },
    Case {
        name: "absurd MLP width",
        make: |d| config(d, |j| j["intermediate_size"] = u64::MAX.into()),
        file: "config.json",
        expect: &["`intermediate_size` is 18446744073709551615"],
        cli: Cli::Inspect,
    },
    Case {
        name: "absurd context",
        make: |d| config(d, |j| j["max_position_embeddings"] = HUGE.into()),
        file: "config.json",
        expect: &["`max_position_embeddings` is 1000000000000"],
        cli: Cli::Inspect,
    },
    Case {
        name: "negative layer count",
        make: |d| config(d, |j| j["num_hidden_layers"] = (-2).into()),
        file: "config.json",
        expect: &["`num_hidden_layers`", "non-negative integer"],
        cli: Cli::Inspect,
    },
    Case {
        name: "fractional head count",
        make: |d| config(d, |j| j["num_attention_heads"] = 2.5.into()),
        file: "config.json",
        expect: &["`num_attention_heads`", "non-negative integer"],
        cli: Cli::Inspect,
    },
    Case {
        name: "key/value heads that do not divide the heads",
        make: |d| config(d, |j| j["num_key_value_heads"] = 3.into()),
        file: "config.json",
        expect: &[
            "`num_key_value_heads`",
            "3 does not divide num_attention_heads = 4",
        ],
        cli: Cli::Inspect,
    },
    Case {
        name: "odd head size",
        make: |d| config(d, |j| j["head_dim"] = 7.into()),
        file: "config.json",
        expect: &["`head_dim`", "must be even"],
        cli: Cli::Inspect,
    },
    Case {
        name: "zero norm epsilon",
        make: |d| config(d, |j| j["rms_norm_eps"] = 0.0.into()),
        file: "config.json",
        expect: &["`rms_norm_eps`", "outside (0, 1)"],
        cli: Cli::Inspect,
    },
    Case {
        name: "negative rope theta",
        make: |d| config(d, |j| j["rope_theta"] = (-1.0).into()),
        file: "config.json",
        expect: &["`rope_theta`", "not a positive number"],
        cli: Cli::Inspect,
    },
    Case {
        name: "llama3 rope scaling with equal frequency factors",
        make: |d| config(d, |j| j["rope_scaling"]["high_freq_factor"] = 1.0.into()),
        file: "config.json",
        expect: &[
            "`rope_scaling.high_freq_factor`",
            "not above low_freq_factor",
        ],
        cli: Cli::Inspect,
    },
    Case {
        name: "llama3 rope scaling with an absurd original context",
        make: |d| {
            config(d, |j| {
                j["rope_scaling"]["original_max_position_embeddings"] = HUGE.into();
            })
        },
        file: "config.json",
        expect: &["`rope_scaling.original_max_position_embeddings` is 1000000000000"],
        cli: Cli::Inspect,
    },
    Case {
        name: "Phi-3 with longrope factors of the wrong count",
        make: |d| {
            let p = Tiny::Phi3.write(d);
            edit_json(&p.join("config.json"), |j| {
                j["original_max_position_embeddings"] = 8.into();
                j["rope_scaling"] = json!({"type": "longrope", "short_factor": [1.0, 1.0, 1.0], "long_factor": [2.0, 2.0, 2.0]});
            });
            p
        },
        file: "config.json",
        expect: &[
            "`rope_scaling.short_factor`",
            "3 factors for the 4 rotated frequencies",
        ],
        cli: Cli::Inspect,
    },
    Case {
        name: "a rotation of part of each head",
        make: |d| config(d, |j| j["partial_rotary_factor"] = 0.75.into()),
        file: "config.json",
        expect: &["`partial_rotary_factor`", "0.75 is not supported"],
        cli: Cli::Inspect,
    },
    Case {
        name: "a family not implemented (multimodal Gemma 3)",
        make: |d| config(d, |j| j["model_type"] = "gemma3".into()),
        file: "config.json",
        expect: &["`gemma3`", "`model_type`", "Gemma 3 text"],
        cli: Cli::Inspect,
    },
    Case {
        name: "OLMo 2 weights with a norm before the block",
        make: |d| {
            weights(d, Tiny::Olmo2, |w| {
                w.insert(
                    "model.layers.0.input_layernorm.weight".into(),
                    zeros(&[32], DType::F32),
                );
            })
        },
        file: "model.safetensors",
        expect: &["tensor `model.layers.0.input_layernorm.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "Phi-3 weights with separate q, k and v projections",
        make: |d| {
            weights(d, Tiny::Phi3, |w| {
                let qkv = w
                    .remove("model.layers.1.self_attn.qkv_proj.weight")
                    .unwrap();
                w.insert("model.layers.1.self_attn.q_proj.weight".into(), qkv);
            })
        },
        file: "model.safetensors",
        expect: &["tensor `model.layers.1.self_attn.q_proj.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "end-of-sequence id outside the vocabulary",
        make: |d| config(d, |j| j["eos_token_id"] = json!([2, 4294967298u64])),
        file: "config.json",
        expect: &["`eos_token_id`", "4294967298 is not a token id"],
        cli: Cli::Inspect,
    },
    Case {
        name: "zero sliding window",
        make: |d| {
            let p = Tiny::Mistral.write(d);
            edit_json(&p.join("config.json"), |j| j["sliding_window"] = 0.into());
            p
        },
        file: "config.json",
        expect: &["`sliding_window` is 0"],
        cli: Cli::Inspect,
    },
    // tokenizer.json: a syntax error in the decoder made the tokenizers library panic (found by
    // tests/fuzz.rs); a decoder of no known shape is its error.
    Case {
        name: "a tokenizer.json with a key that is not a string",
        make: |d| {
            let p = Tiny::Llama.write(d);
            let file = p.join("tokenizer.json");
            let text = std::fs::read_to_string(&file).unwrap();
            let broken = text.replacen("\"decoder\": {", "\"decoder\": {7: 1, ", 1);
            assert_ne!(text, broken, "the tiny tokenizer has a decoder");
            std::fs::write(&file, broken).unwrap();
            p
        },
        file: "tokenizer.json",
        expect: &["key must be a string"],
        cli: Cli::Score,
    },
    Case {
        name: "a tokenizer.json that is not UTF-8",
        make: |d| {
            let p = Tiny::Llama.write(d);
            let file = p.join("tokenizer.json");
            let text = std::fs::read_to_string(&file).unwrap();
            let mut bytes = text
                .replacen("\"decoder\": {", "\"decoder\": {\"\u{1}\": 1, ", 1)
                .into_bytes();
            let at = bytes.iter().position(|&b| b == 1).unwrap();
            bytes[at] = 0x80;
            std::fs::write(&file, bytes).unwrap();
            p
        },
        file: "tokenizer.json",
        expect: &["not UTF-8 text"],
        cli: Cli::Score,
    },
    Case {
        name: "a tokenizer.json whose decoder has no known shape",
        make: |d| {
            let p = Tiny::Llama.write(d);
            edit_json(&p.join("tokenizer.json"), |j| {
                j["decoder"] = serde_json::json!({"type": 5});
            });
            p
        },
        file: "tokenizer.json",
        expect: &["did not match any variant"],
        cli: Cli::Score,
    },
    Case {
        name: "a tokenizer larger than the vocabulary",
        make: |d| config(d, |j| j["vocab_size"] = 40.into()),
        file: "tokenizer.json",
        expect: &["tokens, but the model's vocabulary has 40"],
        cli: Cli::Score,
    },
    Case {
        name: "the largest configuration allowed",
        make: |d| {
            config(d, |j| {
                j["num_hidden_layers"] = limits::MAX_LAYERS.into();
                j["hidden_size"] = limits::MAX_HIDDEN.into();
                j["intermediate_size"] = limits::MAX_INTERMEDIATE.into();
                j["vocab_size"] = limits::MAX_VOCAB.into();
                j["num_attention_heads"] = 512.into();
                j["num_key_value_heads"] = 512.into();
            })
        },
        file: "llama",
        expect: &["GiB of memory is available"],
        cli: Cli::Score,
    },
    // Weights that do not match the configuration.
    Case {
        name: "fewer layers in config.json than in the weights",
        make: |d| config(d, |j| j["num_hidden_layers"] = 1.into()),
        file: "model.safetensors",
        expect: &["tensor `model.layers.1.input_layernorm.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "more layers in config.json than in the weights",
        make: |d| config(d, |j| j["num_hidden_layers"] = 3.into()),
        file: "llama",
        expect: &["missing tensor `model.layers.2.self_attn.q_proj.weight`"],
        cli: Cli::Score,
    },
    Case {
        name: "a tensor of another model",
        make: |d| {
            weights(d, Tiny::Llama, |w| {
                w.insert("vision.proj.weight".into(), zeros(&[4, 4], DType::F32));
            })
        },
        file: "model.safetensors",
        expect: &["tensor `vision.proj.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "a missing attention bias",
        make: |d| {
            weights(d, Tiny::Qwen2, |w| {
                w.remove("model.layers.0.self_attn.v_proj.bias");
            })
        },
        file: "qwen2",
        expect: &["missing tensor `model.layers.0.self_attn.v_proj.bias`"],
        cli: Cli::Score,
    },
    Case {
        name: "a mis-shaped norm",
        make: |d| {
            weights(d, Tiny::Llama, |w| {
                w.insert("model.norm.weight".into(), zeros(&[33], DType::F32));
            })
        },
        file: "model.safetensors",
        expect: &["tensor `model.norm.weight` has shape [33], expected [32]"],
        cli: Cli::Score,
    },
    Case {
        name: "a tensor in two shards",
        make: two_shards,
        file: "b.safetensors",
        expect: &[
            "tensor `model.norm.weight` is also stored in",
            "a.safetensors",
        ],
        cli: Cli::Score,
    },
    // safetensors headers.
    Case {
        name: "an integer tensor",
        make: |d| {
            header(d, |h| {
                h["model.norm.weight"]["dtype"] = "I32".into();
            })
        },
        file: "model.safetensors",
        expect: &["tensor `model.norm.weight` holds i32 values"],
        cli: Cli::Inspect,
    },
    Case {
        name: "a tensor listed twice in the header",
        make: |d| {
            header_entries(d, |entries| {
                let twin = entries
                    .iter()
                    .find(|(name, _)| name == "model.norm.weight")
                    .cloned()
                    .unwrap();
                entries.push(twin);
            })
        },
        file: "model.safetensors",
        expect: &["lists tensor `model.norm.weight` twice"],
        cli: Cli::Inspect,
    },
    Case {
        name: "overlapping byte ranges",
        make: |d| {
            header(d, |h| {
                let a = "model.layers.0.input_layernorm.weight";
                let b = "model.layers.0.post_attention_layernorm.weight";
                let (lo, hi) = if offsets(&h[a]) < offsets(&h[b]) {
                    (a, b)
                } else {
                    (b, a)
                };
                let shared = h[hi]["data_offsets"].clone();
                h[lo]["data_offsets"] = shared;
            })
        },
        file: "model.safetensors",
        expect: &[
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "share bytes",
        ],
        cli: Cli::Inspect,
    },
    Case {
        name: "a shape whose size overflows",
        make: |d| {
            header(d, |h| {
                h["model.norm.weight"]["shape"] = json!([1u64 << 40, 1u64 << 40, 32]);
            })
        },
        file: "model.safetensors",
        expect: &[
            "tensor `model.norm.weight`",
            "byte range does not match its shape",
        ],
        cli: Cli::Inspect,
    },
    // GGUF files.
    Case {
        name: "GGUF alignment zero",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "general.alignment", gguf_file::Value::U32(0))
            })
        },
        file: "model.gguf",
        expect: &["`general.alignment` is 0"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF alignment not a power of two",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "general.alignment", gguf_file::Value::U64(48))
            })
        },
        file: "model.gguf",
        expect: &["`general.alignment`", "48 is not a power of two"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF tensor data past the end of the file",
        make: |d| {
            let path = tiny_gguf(d, |_, _| {});
            let len = std::fs::metadata(&path).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(len - 64).unwrap();
            path
        },
        file: "model.gguf",
        expect: &["run past the end of the file"],
        cli: Cli::Score,
    },
    Case {
        name: "GGUF tensors sharing bytes",
        make: |d| {
            let path = tiny_gguf(d, |_, _| {});
            gguf_offset(&path, "blk.1.ffn_down.weight", 0);
            path
        },
        file: "model.gguf",
        expect: &["blk.1.ffn_down.weight", "share bytes"],
        cli: Cli::Score,
    },
    Case {
        name: "GGUF block count 2^40",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "llama.block_count", gguf_file::Value::U64(1 << 40))
            })
        },
        file: "model.gguf",
        expect: &["`llama.block_count` is 1099511627776"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF absurd embedding length",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "llama.embedding_length", gguf_file::Value::U64(HUGE));
            })
        },
        file: "model.gguf",
        expect: &["`llama.embedding_length` is 1000000000000"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF negative context length",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "llama.context_length", gguf_file::Value::I32(-1))
            })
        },
        file: "model.gguf",
        expect: &["`llama.context_length`", "non-negative integer"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF key/value heads that do not divide the heads",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "llama.attention.head_count_kv", gguf_file::Value::U32(3));
            })
        },
        file: "model.gguf",
        expect: &["`llama.attention.head_count_kv`", "3 does not divide"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF beginning-of-sequence id outside the vocabulary",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "tokenizer.ggml.bos_token_id", gguf_file::Value::U32(999));
            })
        },
        file: "model.gguf",
        expect: &["`tokenizer.ggml.bos_token_id`", "not a token id"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF tensor listed twice",
        make: |d| {
            tiny_gguf(d, |_, t| {
                t.push(("output_norm.weight".into(), zeros(&[32], DType::F32)));
            })
        },
        file: "model.gguf",
        expect: &["lists tensor `output_norm.weight` twice"],
        cli: Cli::Inspect,
    },
    Case {
        name: "GGUF with fewer blocks in the metadata than in the tensors",
        make: |d| {
            tiny_gguf(d, |m, _| {
                gguf_set(m, "llama.block_count", gguf_file::Value::U32(1))
            })
        },
        file: "model.gguf",
        expect: &["tensor `blk.1.attn_k.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "GGUF with a tensor circuitdiff does not use",
        make: |d| {
            tiny_gguf(d, |_, t| {
                t.push(("rope_freqs.weight".into(), zeros(&[4], DType::F32)));
            })
        },
        file: "model.gguf",
        expect: &["tensor `rope_freqs.weight` is not part of the model"],
        cli: Cli::Score,
    },
    Case {
        name: "GGUF mis-shaped tensor",
        make: |d| {
            tiny_gguf(d, |_, t| {
                for (name, w) in t.iter_mut() {
                    if name == "blk.0.ffn_up.weight" {
                        *w = zeros(&[47, 32], DType::F32);
                    }
                }
            })
        },
        file: "model.gguf",
        expect: &["tensor `blk.0.ffn_up.weight` has shape [47, 32], expected [48, 32]"],
        cli: Cli::Score,
    },
];

#[test]
fn bad_model_files_are_refused_with_a_message_naming_the_file_and_field() {
    assert!(CASES.len() >= 25, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        eprintln!("case: {}", case.name);
        let dir = tempfile::tempdir().unwrap();
        let model = (case.make)(dir.path());
        let spec = model.to_str().unwrap();
        let names_it =
            |msg: &str| case.expect.iter().all(|e| msg.contains(e)) && msg.contains(case.file);
        match Model::load(spec, &LoadOptions::default()) {
            Ok(_) => failures.push(format!("{}: loaded", case.name)),
            Err(e) if !names_it(&e.to_string()) => {
                failures.push(format!("{}: library said: {e}", case.name));
            }
            Err(_) => {}
        }
        let (ok, _, stderr) = run_cli(case.cli, spec, dir.path());
        if ok || stderr.contains("panicked") || !names_it(&stderr) {
            failures.push(format!(
                "{} ({:?}): ok = {ok}, stderr: {stderr}",
                case.name, case.cli
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_unbroken_checkpoints_load() {
    let dir = tempfile::tempdir().unwrap();
    for model in [
        Tiny::Llama.write(dir.path()),
        Tiny::Mistral.write(dir.path()),
        Tiny::Qwen2.write(dir.path()),
        tiny_gguf(&dir.path().join("g"), |_, _| {}),
        header(&dir.path().join("h"), |_| {}),
        header_entries(&dir.path().join("e"), |_| {}),
    ] {
        let spec = model.to_str().unwrap();
        if let Err(e) = Model::load(spec, &LoadOptions::default()) {
            panic!("{spec}: {e}");
        }
        let run = tempfile::tempdir().unwrap();
        let (ok, _, stderr) = run_cli(Cli::Score, spec, run.path());
        assert!(ok, "{spec}: {stderr}");
    }
}

#[test]
fn memory_estimates_saturate_instead_of_overflowing() {
    let cfg = ModelConfig::llama(usize::MAX, usize::MAX, usize::MAX, 3, (usize::MAX, 1), 8);
    assert_eq!(cfg.num_params(), usize::MAX);
    let e = MemoryEstimate::new(&cfg, &ScorePlan::block(usize::MAX), DType::F32);
    assert_eq!(e.total, u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    let seq_len = usize::MAX.to_string();
    let (ok, stdout, stderr) = circuitdiff(&[
        "inspect",
        p.to_str().unwrap(),
        "--json",
        "--seq-len",
        &seq_len,
    ]);
    assert!(ok, "{stderr}");
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert!(j["memory"]["total"].as_u64().unwrap() > 1 << 60, "{stdout}");
}

fn run_cli(cli: Cli, spec: &str, dir: &Path) -> (bool, String, String) {
    match cli {
        Cli::Inspect => circuitdiff(&["inspect", spec]),
        Cli::Score => {
            let samples = dir.join("samples.json");
            let one = json!([{"id": "q1", "prompt_ids": [1, 5, 17], "answer_ids": [9, 40]}]);
            std::fs::write(&samples, one.to_string()).unwrap();
            let out = dir.join("run");
            circuitdiff(&[
                "score",
                "--model",
                spec,
                "--samples",
                samples.to_str().unwrap(),
                "--cut",
                "1",
                "--out",
                out.to_str().unwrap(),
            ])
        }
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut j: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut j);
    std::fs::write(path, j.to_string()).unwrap();
}

/// The tiny Llama with its `config.json` edited.
fn config(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let p = Tiny::Llama.write(dir);
    edit_json(&p.join("config.json"), edit);
    p
}

fn zeros(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(shape, dtype, &Device::Cpu).unwrap()
}

/// A tiny model with its weights edited (saved again through candle).
fn weights(dir: &Path, tiny: Tiny, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let p = tiny.write(dir);
    let file = p.join("model.safetensors");
    let mut w = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    edit(&mut w);
    candle_core::safetensors::save(&w, &file).unwrap();
    p
}

/// The tiny Llama with the header of its `model.safetensors` rewritten entry by entry (in file
/// order, repeats allowed) over the same data bytes.
fn header_entries(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> PathBuf {
    let p = Tiny::Llama.write(dir);
    let file = p.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    edit(&mut entries);
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    let text = format!("{{{}}}", body.join(","));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&file, out).unwrap();
    p
}

/// [`header_entries`] with the header as one JSON object.
fn header(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    header_entries(dir, |entries| {
        let mut j = Value::Object(entries.drain(..).collect());
        edit(&mut j);
        let Value::Object(map) = j else {
            unreachable!()
        };
        entries.extend(map);
    })
}

fn offsets(v: &Value) -> u64 {
    v["data_offsets"][0].as_u64().unwrap()
}

/// The tiny Llama split into two shards that both hold `model.norm.weight`.
fn two_shards(dir: &Path) -> PathBuf {
    let p = Tiny::Llama.write(dir);
    let all = candle_core::safetensors::load(p.join("model.safetensors"), &Device::Cpu).unwrap();
    std::fs::remove_file(p.join("model.safetensors")).unwrap();
    let norm = "model.norm.weight";
    let b: HashMap<_, _> = [(norm.to_owned(), all[norm].clone())].into();
    candle_core::safetensors::save(&all, p.join("a.safetensors")).unwrap();
    candle_core::safetensors::save(&b, p.join("b.safetensors")).unwrap();
    let mut map: serde_json::Map<String, Value> = all
        .keys()
        .map(|k| (k.clone(), "a.safetensors".into()))
        .collect();
    map.insert(norm.into(), "b.safetensors".into());
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(p.join("model.safetensors.index.json"), index.to_string()).unwrap();
    p
}

/// Set the data offset of the 2-D tensor `name` in the GGUF file at `path`: its entry in the
/// tensor table is the name, then the dimension count (u32), two dimensions (u64), the type
/// (u32) and the offset (u64).
fn gguf_offset(path: &Path, name: &str, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap()
        + name.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 2);
    let field = at + 4 + 16 + 4;
    bytes[field..field + 8].copy_from_slice(&offset.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// An end id the model can never produce is left out with a warning naming the file; the model
/// loads and stops at its other end ids.
#[test]
fn end_ids_outside_the_vocabulary_are_ignored_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(tmp.path());
    let generation = json!({"eos_token_id": [2, 999]}).to_string();
    std::fs::write(p.join("generation_config.json"), generation).unwrap();
    let m = Model::load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(m.tokenizer.eos_ids.contains(&2));
    assert!(!m.tokenizer.eos_ids.contains(&999));
    let samples = tmp.path().join("samples.json");
    std::fs::write(
        &samples,
        r#"[{"prompt_ids": [1, 5, 6], "answer_ids": [7, 8]}]"#,
    )
    .unwrap();
    let out = tmp.path().join("run");
    let (ok, _, stderr) = circuitdiff(&[
        "score",
        "--model",
        p.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--cut",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("generation_config.json: `eos_token_id` [999] outside the vocabulary"),
        "{stderr}"
    );
}
