//! PEFT LoRA adapters as model specs: adapters made by PEFT itself on every family, merged at
//! load, against PEFT's own logits; the base found beside the adapter or given; the record in
//! the run manifest; and the adapters circuitdiff refuses, each with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{Device, Tensor};
use circuitdiff::message::chain;
use circuitdiff::model::{load_without_weights, HubOptions, Kernels, LoadOptions, Model};
use common::{circuitdiff, copy_dir, max_abs_diff, reference, set_first_value, tiny_gguf, Tiny};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const IDS: [u32; 10] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19];

/// Largest |Δlogit| allowed between circuitdiff's merged model and PEFT (f32 on both sides).
const TOLERANCE: f64 = 1e-4;

/// Make a LoRA adapter of `base` in `adapter` with PEFT (`lora`: `LoraConfig` arguments, lora_B
/// random); with `ids`, PEFT's logits of them: `peft_logits` (the adapter's forward pass),
/// `merged_logits` (after merge_and_unload) and `base_logits`.
fn peft(base: &Path, adapter: &Path, lora: Value, ids: Option<&[u32]>) -> HashMap<String, Tensor> {
    reference(
        "peft_model.py",
        &json!({"base": base, "adapter": adapter, "lora": lora, "seed": 3, "ids": ids}),
    )
}

fn load(spec: &Path, hub: HubOptions) -> Result<Model, String> {
    let opts = LoadOptions {
        hub,
        ..LoadOptions::default()
    };
    Model::load(spec.to_str().unwrap(), &opts).map_err(|e| chain(&e))
}

fn edit_config(adapter: &Path, edit: impl FnOnce(&mut Value)) {
    let path = adapter.join("adapter_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
}

/// Which of PEFT's passes circuitdiff must reproduce.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// `merge_and_unload()` (the same as the adapter's own pass).
    Merged,
    /// The adapter's own pass: an adapted output layer tied to the embeddings gets its own
    /// merged weight, while PEFT's merge also changes the shared input embeddings.
    Peft,
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of cases, then one check per case"
)]
fn adapters_merge_as_peft_does_on_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let all = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    let cases: [(&str, Tiny, Value, Pass, &[&str]); 10] = [
        (
            "llama, every linear layer and lm_head",
            Tiny::Llama,
            json!({"r": 4, "lora_alpha": 8, "target_modules":
                ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                 "lm_head"]}),
            Pass::Merged,
            &[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
                "lm_head",
            ],
        ),
        (
            "tied llama, q_proj and v_proj, rank and alpha patterns",
            Tiny::LlamaTied,
            json!({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                   "rank_pattern": {"layers.1.self_attn.q_proj": 2},
                   "alpha_pattern": {"v_proj": 3}}),
            Pass::Merged,
            &["q_proj", "v_proj"],
        ),
        (
            "mistral, rsLoRA, all-linear",
            Tiny::Mistral,
            json!({"r": 8, "lora_alpha": 4, "use_rslora": true, "target_modules": "all-linear"}),
            Pass::Merged,
            &all,
        ),
        (
            "qwen2, a regular expression",
            Tiny::Qwen2,
            json!({"r": 2, "lora_alpha": 16, "target_modules": r".*\.(q|v|down)_proj"}),
            Pass::Merged,
            &["q_proj", "v_proj", "down_proj"],
        ),
        (
            "qwen3, rsLoRA, layer 1 only",
            Tiny::Qwen3,
            json!({"r": 4, "lora_alpha": 8, "use_rslora": true,
                   "target_modules": ["q_proj", "k_proj", "o_proj", "up_proj"],
                   "layers_to_transform": [1]}),
            Pass::Merged,
            &["q_proj", "k_proj", "o_proj", "up_proj"],
        ),
        (
            "olmo2, every linear layer of the blocks",
            Tiny::Olmo2,
            json!({"r": 4, "lora_alpha": 8, "target_modules": all}),
            Pass::Merged,
            &all,
        ),
        (
            "olmo3, every linear layer of the blocks",
            Tiny::Olmo3,
            json!({"r": 4, "lora_alpha": 8, "target_modules": all}),
            Pass::Merged,
            &all,
        ),
        (
            "gemma3, every linear layer of the blocks",
            Tiny::Gemma3,
            json!({"r": 4, "lora_alpha": 8, "target_modules": all}),
            Pass::Merged,
            &all,
        ),
        (
            "phi3, its fused projections (q, k and v then split)",
            Tiny::Phi3,
            json!({"r": 4, "lora_alpha": 8, "target_modules": "all-linear"}),
            Pass::Merged,
            &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        ),
        (
            "tied llama, lm_head",
            Tiny::LlamaTied,
            json!({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "lm_head"]}),
            Pass::Peft,
            &["q_proj", "lm_head"],
        ),
    ];
    for (i, (name, tiny, lora, pass, targets)) in cases.into_iter().enumerate() {
        let base = tiny.write(dir.path());
        let adapter = dir.path().join(format!("adapter-{i}"));
        let r = peft(&base, &adapter, lora.clone(), Some(&IDS));
        let model = load(&adapter, HubOptions::default()).unwrap();
        let ours = model.forward_logits(&IDS, Kernels::Fast).unwrap();
        let want = match pass {
            Pass::Merged => &r["merged_logits"],
            Pass::Peft => &r["peft_logits"],
        };
        let d = max_abs_diff(&ours, want);
        let effect = max_abs_diff(&r["base_logits"], want);
        eprintln!("{name}: max |Δlogit| = {d:e} (the adapter moves the logits by {effect:.3})");
        assert!(d <= TOLERANCE, "{name}: max |Δlogit| = {d:e}");
        assert!(effect > 0.05, "{name}: the adapter changes too little");
        if let Pass::Peft = pass {
            let merged = max_abs_diff(&r["merged_logits"], &r["peft_logits"]);
            assert!(
                merged > 0.05,
                "{name}: PEFT's merge no longer changes the tied embeddings ({merged:e})"
            );
        }
        let info = model.adapter.as_ref().expect("adapter recorded");
        assert_eq!(info.target_modules, *targets, "{name}");
        assert_eq!(info.rank, lora["r"].as_u64().unwrap() as usize, "{name}");
        assert_eq!(info.alpha, lora["lora_alpha"].as_f64().unwrap(), "{name}");
        assert_eq!(info.rslora, lora.get("use_rslora").is_some(), "{name}");
        assert_eq!(info.base, base.display().to_string(), "{name}");
    }
}

/// The tiny tied Llama as `model.gguf` in its folder, with the folder's weights (Q and K rows in
/// llama.cpp's order).
fn tied_llama_gguf(dir: &Path) -> PathBuf {
    let folder = Tiny::LlamaTied.write(dir);
    let cfg = Tiny::LlamaTied.config();
    let hf =
        candle_core::safetensors::load(folder.join("model.safetensors"), &Device::Cpu).unwrap();
    tiny_gguf(dir, |_, tensors| {
        for (name, t) in tensors.iter_mut() {
            let hf_name = match name.as_str() {
                "token_embd.weight" => "model.embed_tokens.weight".to_owned(),
                "output_norm.weight" => "model.norm.weight".to_owned(),
                _ => {
                    let (layer, part) = name["blk.".len()..].split_once('.').unwrap();
                    let part = match part {
                        "attn_norm.weight" => "input_layernorm.weight",
                        "ffn_norm.weight" => "post_attention_layernorm.weight",
                        "attn_q.weight" => "self_attn.q_proj.weight",
                        "attn_k.weight" => "self_attn.k_proj.weight",
                        "attn_v.weight" => "self_attn.v_proj.weight",
                        "attn_output.weight" => "self_attn.o_proj.weight",
                        "ffn_gate.weight" => "mlp.gate_proj.weight",
                        "ffn_up.weight" => "mlp.up_proj.weight",
                        "ffn_down.weight" => "mlp.down_proj.weight",
                        other => panic!("unexpected GGUF tensor {other}"),
                    };
                    format!("model.layers.{layer}.{part}")
                }
            };
            let w = hf[&hf_name].clone();
            let heads = match name.rsplit('.').nth(1) {
                Some("attn_q") => cfg.num_heads,
                Some("attn_k") => cfg.num_kv_heads,
                _ => 0,
            };
            *t = if heads == 0 {
                w
            } else {
                // Each head's rows from (pair, half) to llama.cpp's (half, pair).
                let (rows, cols) = w.dims2().unwrap();
                w.reshape((heads, 2, rows / heads / 2, cols))
                    .and_then(|w| w.transpose(1, 2)?.contiguous()?.reshape((rows, cols)))
                    .unwrap()
            };
        }
    })
}

#[test]
fn an_adapter_merges_into_a_gguf_base_as_into_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = tied_llama_gguf(dir.path());
    let folder = gguf.parent().unwrap().to_owned();
    let logits = |spec: &Path, hub: HubOptions| {
        let model = load(spec, hub).unwrap();
        model.forward_logits(&IDS, Kernels::Fast).unwrap()
    };
    let d = max_abs_diff(
        &logits(&folder, HubOptions::default()),
        &logits(&gguf, HubOptions::default()),
    );
    assert!(d <= 1e-5, "the GGUF differs from its folder by {d:e}");
    let adapter = dir.path().join("adapter");
    let lora = json!({"r": 4, "lora_alpha": 8,
                      "target_modules": ["q_proj", "k_proj", "down_proj", "lm_head"]});
    let r = peft(&folder, &adapter, lora, Some(&IDS));
    let on_gguf = HubOptions {
        adapter_base: Some(gguf.display().to_string()),
        ..HubOptions::default()
    };
    let d = max_abs_diff(&logits(&adapter, on_gguf), &r["peft_logits"]);
    eprintln!("adapter on a GGUF base: max |Δlogit| = {d:e}");
    assert!(d <= TOLERANCE, "max |Δlogit| = {d:e}");
}

/// A PEFT adapter of the tiny Llama with q_proj and v_proj, r = 4, α = 8, in `dir/ckpt/adapter`;
/// returns (base, adapter).
fn llama_adapter(dir: &Path) -> (PathBuf, PathBuf) {
    let base = Tiny::Llama.write(dir);
    let adapter = dir.join("ckpt").join("adapter");
    peft(
        &base,
        &adapter,
        json!({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}),
        None,
    );
    (base, adapter)
}

#[test]
fn the_base_is_found_beside_the_adapter_or_given() {
    let dir = tempfile::tempdir().unwrap();
    let (base, adapter) = llama_adapter(dir.path());
    let base_model = load(&base, HubOptions::default()).unwrap();
    let merged = load(&adapter, HubOptions::default()).unwrap();
    let logits = merged.forward_logits(&IDS, Kernels::Fast).unwrap();
    let info = merged.adapter.clone().unwrap();
    assert_eq!(info.base_fingerprint, base_model.fingerprint);
    assert_ne!(merged.fingerprint, base_model.fingerprint);
    assert_eq!(
        merged.tokenizer.vocabulary(),
        base_model.tokenizer.vocabulary()
    );

    // A relative base_model_name_or_path is read from the adapter folder.
    edit_config(&adapter, |c| {
        c["base_model_name_or_path"] = json!("../../llama")
    });
    let relative = load(&adapter, HubOptions::default()).unwrap();
    assert_eq!(
        max_abs_diff(
            &relative.forward_logits(&IDS, Kernels::Fast).unwrap(),
            &logits
        ),
        0.0
    );

    // A base that is not there: the error names the adapter and the fix, and --adapter-base
    // gives it.
    edit_config(&adapter, |c| {
        c["base_model_name_or_path"] = json!("/nowhere/llama")
    });
    let e = load(&adapter, HubOptions::default()).err().expect("loaded");
    for want in [
        "adapter_config.json: cannot load its base model `/nowhere/llama`",
        "--adapter-base",
    ] {
        assert!(e.contains(want), "{e}");
    }
    let err = load_without_weights(adapter.to_str().unwrap(), &HubOptions::default())
        .err()
        .expect("resolved");
    assert!(chain(&err).contains("--adapter-base"), "{err}");
    let given = HubOptions {
        adapter_base: Some(base.display().to_string()),
        ..HubOptions::default()
    };
    let with_base = load(&adapter, given.clone()).unwrap();
    let d = max_abs_diff(
        &with_base.forward_logits(&IDS, Kernels::Fast).unwrap(),
        &logits,
    );
    assert_eq!(d, 0.0);
    let (config, tokenizer) = load_without_weights(adapter.to_str().unwrap(), &given).unwrap();
    assert_eq!(config, base_model.config);
    assert_eq!(tokenizer.vocabulary(), base_model.tokenizer.vocabulary());

    // No base named at all.
    edit_config(&adapter, |c| c["base_model_name_or_path"] = Value::Null);
    let e = load(&adapter, HubOptions::default()).err().expect("loaded");
    assert!(e.contains("missing `base_model_name_or_path`"), "{e}");
    assert!(e.contains("--adapter-base"), "{e}");

    // An adapter's base may not be an adapter.
    let on_adapter = HubOptions {
        adapter_base: Some(adapter.display().to_string()),
        ..HubOptions::default()
    };
    let e = load(&adapter, on_adapter).err().expect("loaded");
    assert!(e.contains("is itself an adapter"), "{e}");
}

#[test]
fn the_adapter_brings_its_own_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let (base, adapter) = llama_adapter(dir.path());
    std::fs::copy(base.join("tokenizer.json"), adapter.join("tokenizer.json")).unwrap();
    std::fs::write(
        adapter.join("tokenizer_config.json"),
        json!({"chat_template": "{{ messages[0]['content'] }}=", "eos_token": "</s>"}).to_string(),
    )
    .unwrap();
    let model = load(&adapter, HubOptions::default()).unwrap();
    assert!(model.tokenizer.chat_template.is_some());
    assert!(load(&base, HubOptions::default())
        .unwrap()
        .tokenizer
        .chat_template
        .is_none());
    // A tokenizer of more tokens than the base has embeddings is refused, naming its file.
    let mut big: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("tokenizer.json")).unwrap())
            .unwrap();
    big["model"]["vocab"]["@extra"] = json!(500);
    std::fs::write(adapter.join("tokenizer.json"), big.to_string()).unwrap();
    let e = load(&adapter, HubOptions::default()).err().expect("loaded");
    assert!(e.contains("adapter/tokenizer.json"), "{e}");
    assert!(e.contains("belongs to another model"), "{e}");
}

/// What a bad adapter is made of: an edit of a good one.
type Edit = Box<dyn Fn(&Path)>;

fn config_edit(edit: impl Fn(&mut Value) + 'static) -> Edit {
    Box::new(move |a: &Path| edit_config(a, &edit))
}

/// Bad configurations, and what their refusal says; `other_base`: a model of another shape.
fn bad_configurations(other_base: PathBuf) -> Vec<(&'static str, Edit, Vec<&'static str>)> {
    let weights = "adapter_model.safetensors";
    vec![
        (
            "rank",
            config_edit(|c| c["r"] = json!(8)),
            vec![weights, "has rank 4, but adapter_config.json sets r = 8"],
        ),
        (
            "rank_pattern",
            config_edit(|c| c["rank_pattern"] = json!({"layers.1.self_attn.v_proj": 2})),
            vec!["model.layers.1.self_attn.v_proj", "sets r = 2"],
        ),
        (
            "unknown target",
            config_edit(|c| c["target_modules"] = json!(["q_proj", "c_attn"])),
            vec!["adapter_config.json", "`c_attn` is not a linear layer"],
        ),
        (
            "unknown projection",
            config_edit(|c| c["target_modules"] = json!(["model.layers.0.mlp.foo_proj"])),
            vec!["`model.layers.0.mlp.foo_proj` is not a linear layer"],
        ),
        (
            "DoRA flag",
            config_edit(|c| c["use_dora"] = json!(true)),
            vec!["DoRA", "merge_and_unload"],
        ),
        (
            "modules_to_save",
            config_edit(|c| c["modules_to_save"] = json!(["lm_head"])),
            vec!["modules_to_save", "merge_and_unload"],
        ),
        (
            "fan_in_fan_out",
            config_edit(|c| c["fan_in_fan_out"] = json!(true)),
            vec!["fan_in_fan_out"],
        ),
        (
            "bias",
            config_edit(|c| c["bias"] = json!("all")),
            vec!["trained biases (`bias` is \"all\")"],
        ),
        (
            "lora_bias",
            config_edit(|c| c["lora_bias"] = json!(true)),
            vec!["lora_bias"],
        ),
        (
            "embeddings",
            config_edit(|c| c["target_modules"] = json!(["embed_tokens"])),
            vec!["embedding adapter"],
        ),
        (
            "peft_type",
            config_edit(|c| c["peft_type"] = json!("IA3")),
            vec!["`peft_type` is IA3, not LORA"],
        ),
        (
            "PiSSA",
            config_edit(|c| c["init_lora_weights"] = json!("pissa")),
            vec![
                "init_lora_weights",
                "path_initial_model_for_weight_conversion",
            ],
        ),
        (
            "regex pattern",
            config_edit(|c| c["alpha_pattern"] = json!({"q_proj|v_proj": 4})),
            vec!["`alpha_pattern` key `q_proj|v_proj`"],
        ),
        (
            "another base",
            config_edit(move |c| c["base_model_name_or_path"] = json!(other_base)),
            vec!["the base model's is 48×32", "trained on another base model"],
        ),
    ]
}

#[test]
fn bad_adapters_are_refused_with_the_reason_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = llama_adapter(dir.path());
    let weights = "adapter_model.safetensors";
    let mut cases = bad_configurations(Tiny::Qwen3.write(dir.path()));
    cases.extend::<[(&str, Edit, Vec<&str>); 3]>([
        (
            "config JSON",
            Box::new(|a: &Path| std::fs::write(a.join("adapter_config.json"), "{\"r\": ").unwrap()),
            vec!["adapter_config.json: invalid JSON"],
        ),
        (
            "truncated weights",
            Box::new(|a: &Path| {
                let path = a.join("adapter_model.safetensors");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
            }),
            vec![weights, "truncated or corrupt"],
        ),
        (
            "no weights",
            Box::new(|a: &Path| std::fs::remove_file(a.join("adapter_model.safetensors")).unwrap()),
            vec![weights, "missing adapter_model.safetensors"],
        ),
    ]);
    for (i, (name, edit, wants)) in cases.into_iter().enumerate() {
        let adapter = dir.path().join(format!("bad-{i}"));
        copy_dir(&good, &adapter);
        edit(&adapter);
        let e = load(&adapter, HubOptions::default()).err().expect(name);
        eprintln!("{name}: {e}");
        for want in wants {
            assert!(e.contains(want), "{name}: {e}");
        }
        // The study's pair check refuses it before any weight is read.
        assert!(load_without_weights(adapter.to_str().unwrap(), &HubOptions::default()).is_err());
    }
}

#[test]
fn adapters_made_with_dora_or_modules_to_save_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = Tiny::LlamaTied.write(dir.path());
    for (lora, want) in [
        (
            json!({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "use_dora": true}),
            "DoRA",
        ),
        (
            json!({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
                   "modules_to_save": ["lm_head"]}),
            "modules_to_save",
        ),
    ] {
        let adapter = dir.path().join(want);
        peft(&base, &adapter, lora, None);
        let e = load(&adapter, HubOptions::default()).err().expect(want);
        assert!(e.contains(want) && e.contains("adapter_config.json"), "{e}");
        // The tensors alone say it too.
        edit_config(&adapter, |c| {
            c["use_dora"] = json!(false);
            c["modules_to_save"] = Value::Null;
        });
        let e = load(&adapter, HubOptions::default()).err().expect(want);
        assert!(e.contains("adapter_model.safetensors"), "{e}");
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn the_cli_loads_adapters_on_a_given_base_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let (base, adapter) = llama_adapter(dir.path());
    edit_config(&adapter, |c| {
        c["base_model_name_or_path"] = json!("/nowhere/llama")
    });
    let (base_s, adapter_s) = (base.to_str().unwrap(), adapter.to_str().unwrap());

    let (ok, _, stderr) = circuitdiff(&["inspect", adapter_s]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot load its base model `/nowhere/llama`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--adapter-base") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = circuitdiff(&["inspect", adapter_s, "--adapter-base", base_s]);
    assert!(ok, "{stderr}");
    let line = format!("LoRA adapter on {base_s} (rank 4, α 8; q_proj, v_proj)");
    assert!(stdout.contains(&line), "{stdout}");

    let samples = dir.path().join("samples.json");
    let list = json!([{"id": "a", "prompt_ids": [1, 5, 17], "answer_ids": [9, 40, 33]}]);
    std::fs::write(&samples, list.to_string()).unwrap();
    let run = |model: &str, out: &Path| {
        let (ok, _, stderr) = circuitdiff(&[
            "score",
            "--model",
            model,
            "--adapter-base",
            base_s,
            "--samples",
            samples.to_str().unwrap(),
            "--cut",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["model"].clone()
    };
    let tuned = run(adapter_s, &dir.path().join("run-adapter"));
    let plain = run(base_s, &dir.path().join("run-base"));
    assert!(plain.get("adapter").is_none(), "{plain}");
    let a = &tuned["adapter"];
    assert_eq!(a["dir"], json!(adapter_s));
    assert_eq!(a["base"], json!(base_s));
    assert_eq!(a["base_fingerprint"], plain["fingerprint"]);
    assert_ne!(tuned["fingerprint"], plain["fingerprint"]);
    assert_eq!(a["rank"], 4);
    assert_eq!(a["alpha"], 8.0);
    assert_eq!(a["rslora"], false);
    assert_eq!(a["target_modules"], json!(["q_proj", "v_proj"]));
}

/// An adapter whose merge overflows (α = 1e30) or that holds NaN or infinity is refused at load,
/// naming the adapter file and the tensor, instead of scoring to edges that are all zero.
#[test]
fn adapters_with_values_that_are_not_finite_or_overflow_are_refused_at_load() {
    const WEIGHTS: &str = "adapter_model.safetensors";
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = llama_adapter(dir.path());
    let module = "base_model.model.model.layers.0.self_attn.q_proj";
    let cases: [(&str, Edit, Vec<String>); 3] = [
        (
            "lora_alpha 1e30",
            config_edit(|c| c["lora_alpha"] = json!(1e30)),
            vec![
                format!("{module}.lora_B.weight"),
                "merged into `model.layers.0.self_attn.q_proj.weight`".into(),
                "s = 2.5e29".into(),
                "check lora_alpha".into(),
            ],
        ),
        (
            "NaN in lora_A",
            Box::new(move |a: &Path| {
                set_first_value(
                    &a.join(WEIGHTS),
                    &format!("{module}.lora_A.weight"),
                    f32::NAN,
                )
            }),
            vec![format!("{module}.lora_A.weight`: holds NaN")],
        ),
        (
            "infinity in lora_B",
            Box::new(move |a: &Path| {
                let v_proj = module.replace("q_proj", "v_proj");
                set_first_value(
                    &a.join(WEIGHTS),
                    &format!("{v_proj}.lora_B.weight"),
                    f32::INFINITY,
                )
            }),
            vec!["v_proj.lora_B.weight`: holds inf".into()],
        ),
    ];
    for (i, (name, edit, wants)) in cases.into_iter().enumerate() {
        let adapter = dir.path().join(format!("bad-{i}"));
        copy_dir(&good, &adapter);
        edit(&adapter);
        let e = load(&adapter, HubOptions::default()).err().expect(name);
        let file = adapter.join("adapter_model.safetensors");
        assert!(e.contains(&file.display().to_string()), "{name}: {e}");
        for want in wants {
            assert!(e.contains(&want), "{name}: {e}");
        }
    }
}
