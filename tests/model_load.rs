//! Loading variants: sharded checkpoints, f16/bf16 weights, and `inspect`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Device};
use circuitdiff::model::{Kernels, LoadOptions, Model};
use common::{max_abs, max_abs_diff, Tiny};

const IDS: [u32; 6] = [4, 9, 14, 21, 30, 3];

#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Qwen2.write(dir.path());
    let base = Model::load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let want = base.forward_logits(&IDS, Kernels::Fast).unwrap();

    // Two shards plus an index, in bf16 and f16.
    let all = candle_core::safetensors::load(p.join("model.safetensors"), &Device::Cpu).unwrap();
    std::fs::remove_file(p.join("model.safetensors")).unwrap();
    let mut names: Vec<_> = all.keys().cloned().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (shard, list, dtype) in [
        ("s1.safetensors", a, DType::BF16),
        ("s2.safetensors", b, DType::F16),
    ] {
        let part: std::collections::HashMap<_, _> = list
            .iter()
            .map(|n| (n.clone(), all[n].to_dtype(dtype).unwrap()))
            .collect();
        candle_core::safetensors::save(&part, p.join(shard)).unwrap();
        for n in list {
            map.insert(n.clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(p.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let m = Model::load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let got = m.forward_logits(&IDS, Kernels::Fast).unwrap();
    let rel = max_abs_diff(&got, &want) / max_abs(&want);
    assert!(rel < 0.05, "half-precision weights moved logits by {rel}");
    assert!(rel > 0.0, "weights were not rounded");
}

#[test]
fn inspect_reports_shape_params_and_edges() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(["inspect", p.to_str().unwrap(), "--json", "--seq-len", "64"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tensors =
        candle_core::safetensors::load(p.join("model.safetensors"), &Device::Cpu).unwrap();
    let numel: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(j["num_params"], numel);
    assert_eq!(j["num_edges"], 4 * 2 * 2 + 3 * 2 + 1);
    assert_eq!(j["config"]["family"], "llama");
    assert_eq!(j["config"]["num_kv_heads"], 2);
    assert_eq!(j["checkpoint_dtype"], "f32");
    assert_eq!(j["memory"]["seq_len"], 64);
    assert!(j["memory"]["total"].as_u64().unwrap() > j["memory"]["weights"].as_u64().unwrap());

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(["inspect", dir.path().join("missing").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error:"));
}

/// The llama.cpp name of a Hugging Face OLMo 2 tensor.
fn olmo2_gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return (*g).to_owned();
    }
    let rest = hf.strip_prefix("model.layers.").expect("a layer tensor");
    let (layer, rest) = rest.split_once('.').expect("layer.part");
    let part = rest.strip_suffix(".weight").expect("a weight");
    let g = match part {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "post_attention_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no llama.cpp name for {other}"),
    };
    format!("blk.{layer}.{g}.weight")
}

/// OLMo 2 under llama.cpp's tensor names (`post_attention_norm`, `post_ffw_norm`, q/k norms
/// over the whole projections; rotate-half rows, which its converter does not permute) gives
/// the logits of the Hugging Face folder it was written from (f32 tensors, |Δ| ≤ 1e-5).
#[test]
fn an_olmo2_gguf_equals_its_folder() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use gguf_file::Value as V;
    let dir = tempfile::tempdir().unwrap();
    let folder = Tiny::Olmo2.write(dir.path());
    let cfg = Tiny::Olmo2.config();
    let weights =
        candle_core::safetensors::load(folder.join("model.safetensors"), &Device::Cpu).unwrap();
    let u = |n: usize| V::U32(n as u32);
    let meta = [
        ("general.architecture", V::String("olmo2".into())),
        ("olmo2.embedding_length", u(cfg.hidden_size)),
        ("olmo2.feed_forward_length", u(cfg.intermediate_size)),
        ("olmo2.block_count", u(cfg.num_layers)),
        ("olmo2.attention.head_count", u(cfg.num_heads)),
        ("olmo2.attention.head_count_kv", u(cfg.num_kv_heads)),
        ("olmo2.context_length", u(cfg.max_position_embeddings)),
        ("olmo2.attention.layer_norm_rms_epsilon", V::F32(1e-6)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
    ];
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(n, t)| {
            let q = QTensor::quantize(t, GgmlDType::F32).unwrap();
            (olmo2_gguf_name(n), q)
        })
        .collect();
    let path = folder.join("model.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &meta.iter().map(|(k, v)| (*k, v)).collect::<Vec<_>>(),
        &tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    drop(f);
    let ids = [5, 17, 22, 9, 40, 33, 12, 8];
    let opts = LoadOptions::default();
    let from_folder = Model::load(folder.to_str().unwrap(), &opts).unwrap();
    let from_gguf = Model::load(path.to_str().unwrap(), &opts).unwrap();
    assert_eq!(from_gguf.config.norms, from_folder.config.norms);
    assert_eq!(from_gguf.config.qk_norm, from_folder.config.qk_norm);
    let a = from_folder.forward_logits(&ids, Kernels::Fast).unwrap();
    let b = from_gguf.forward_logits(&ids, Kernels::Fast).unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(d <= 1e-5, "max |Δlogit| = {d:e}");
    assert!(max_abs(&a) > 0.1);
}
