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
