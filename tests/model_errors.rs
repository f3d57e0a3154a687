//! Bad input gives a clear error naming the file and the fix, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use circuitdiff::model::{self, HubOptions, LoadOptions, Model};
use common::Tiny;
use std::path::Path;

fn load_err(path: &Path) -> String {
    match Model::load(path.to_str().unwrap(), &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    std::fs::remove_file(p.join("config.json")).unwrap();
    let e = load_err(&p);
    assert!(e.contains("config.json") && e.contains("missing"), "{e}");
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    let w = p.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated or corrupt"),
        "{e}"
    );
}

#[test]
fn tensor_with_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Qwen2.write(dir.path());
    let w = p.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    let name = "model.layers.1.self_attn.k_proj.weight";
    tensors.insert(
        name.into(),
        Tensor::zeros((5, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &w).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains(name) && e.contains("[5, 32]") && e.contains("[16, 32]"),
        "{e}"
    );
}

#[test]
fn unknown_model_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    let cfg = p.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(&cfg, text).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("gpt_neox") && e.contains("unsupported architecture"),
        "{e}"
    );
}

#[test]
fn missing_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Mistral.write(dir.path());
    std::fs::remove_file(p.join("tokenizer.json")).unwrap();
    let e = load_err(&p);
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn hub_id_not_cached_while_offline() {
    let cache = tempfile::tempdir().unwrap();
    let hub = HubOptions {
        offline: true,
        cache_dir: Some(cache.path().to_owned()),
        ..HubOptions::default()
    };
    let e = model::resolve("acme/not-there", &hub, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("acme/not-there") && e.contains("not in the local cache"),
        "{e}"
    );
}

#[test]
fn hub_id_cached_loads_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-qwen3");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    let folder = Tiny::Qwen3.write(cache.path());
    for f in std::fs::read_dir(&folder).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, snap.join(f.file_name().unwrap())).unwrap();
    }
    let opts = LoadOptions {
        hub: HubOptions {
            offline: true,
            cache_dir: Some(cache.path().to_owned()),
            ..HubOptions::default()
        },
        ..LoadOptions::default()
    };
    let m = Model::load("acme/tiny-qwen3", &opts).unwrap();
    assert_eq!(m.config, Tiny::Qwen3.config());
    let m2 = Model::load(&format!("acme/tiny-qwen3@{commit}"), &opts).unwrap();
    assert_eq!(m.fingerprint, m2.fingerprint);
}

#[test]
fn gguf_of_unsupported_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    let arch = gguf_file::Value::String("gpt2".into());
    let t = candle_core::quantized::QTensor::quantize(
        &Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
    drop(f);
    let e = load_err(&path);
    assert!(
        e.contains("gpt2") && e.contains("gpt2.gguf") && e.contains("unsupported"),
        "{e}"
    );
}

#[test]
fn not_a_model_path() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    assert!(load_err(&txt).contains("is not a model"));
    assert!(load_err(&dir.path().join("nothing/here.gguf")).contains("check the path"));
}

#[test]
fn token_ids_outside_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    let m = Model::load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let e = m
        .trace(&[1, 2, 999], 1..3)
        .err()
        .expect("error")
        .to_string();
    assert!(
        e.contains("999") && e.contains("outside the vocabulary"),
        "{e}"
    );
}

#[test]
fn model_too_large_for_memory_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let p = Tiny::Llama.write(dir.path());
    // A config claiming 4 TiB of f32 weights over the tiny checkpoint's files.
    let cfg = p.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    json["hidden_size"] = 65536.into();
    json["intermediate_size"] = 262144.into();
    json["num_hidden_layers"] = 20.into();
    json["num_attention_heads"] = 512.into();
    json["num_key_value_heads"] = 512.into();
    json["head_dim"] = 128.into();
    std::fs::write(&cfg, json.to_string()).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("GiB of memory is available") && e.contains(p.to_str().unwrap()),
        "{e}"
    );
}
