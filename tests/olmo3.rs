//! OLMo 3 against Hugging Face transformers in f64 and f32, with a sequence longer than the
//! sliding window and a rotary base of its own on the sliding layer; its configuration read as
//! transformers reads it, what is not implemented refused naming the field, a GGUF written with
//! llama.cpp's `gguf` package equal to its folder, and its chat template and generation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{Family, Kernels, LoadOptions, Model, ModelConfig, RopeScaling};
use common::{max_abs, max_abs_diff, python_snippet, reference, Tiny};
use serde_json::{json, Value};
use std::path::Path;

/// Twelve tokens: three times the tiny model's window of 4.
const IDS: [u32; 12] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19, 3, 44];

/// Logits equal transformers' (eager attention) to 1e-5 in f64 (the differentiable kernels;
/// candle's fused ones have no f64) and to 1e-4 in f32 with every kernel set.
#[test]
fn olmo3_logits_equal_transformers_in_f64_and_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Olmo3.write(dir.path());
    common::assert_logits_match_transformers(&path, &IDS, "OLMo 3", |_, _| {});
}

/// The window, the sliding layers' rotary base and the full layers' scaling each change the
/// logits: the check above would catch a model that ignored any of them.
#[test]
fn the_window_and_each_kinds_rotary_embedding_matter() {
    let dir = tempfile::tempdir().unwrap();
    let base = Tiny::Olmo3.config();
    let logits = |cfg: &ModelConfig, name: &str| {
        let weights = circuitdiff::model::random_weights(cfg, 7, 0.2).unwrap();
        let path = dir.path().join(name);
        common::write_folder(&path, cfg, &weights);
        let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(&model.config, cfg, "{name}: the config does not read back");
        model.forward_logits(&IDS, Kernels::FusedGrad).unwrap()
    };
    let ours = logits(&base, "base");
    let mut wide = base.clone();
    wide.sliding_window = vec![Some(64), None];
    let mut local = base.clone();
    local.particulars.local_rope_theta = Some(base.rope_theta);
    let mut unscaled = base.clone();
    unscaled.rope_scaling = None;
    for (what, cfg) in [
        ("window", wide),
        ("sliding base", local),
        ("full scaling", unscaled),
    ] {
        let d = max_abs_diff(&ours, &logits(&cfg, what));
        eprintln!("{what}: max |Δlogit| = {d:e}");
        assert!(d > 1e-3, "{what} makes no difference: {d:e}");
    }
}

/// The tiny OLMo 3 folder's `config.json` with `edit` applied, written to `dir/<name>.json`.
fn edited(dir: &Path, name: &str, edit: impl Fn(&mut Value)) -> std::path::PathBuf {
    let folder = dir.join("olmo3");
    if !folder.exists() {
        Tiny::Olmo3.write(dir);
    }
    let mut j: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    edit(&mut j);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, j.to_string()).unwrap();
    file
}

/// Each layer's window, the full layers' θ, scaling, inverse frequencies and attention factor
/// and the sliding layers' θ, as transformers' `Olmo3Config` and rotary embedding derive them
/// from each file, and the parameter count of `Olmo3ForCausalLM` of the first; one JSON line
/// per file.
const HF_READS: &str = r#"
import json, sys
from transformers import Olmo3Config, Olmo3ForCausalLM
from transformers.models.olmo3.modeling_olmo3 import Olmo3RotaryEmbedding
for i, f in enumerate(sys.argv[1:]):
    c = Olmo3Config.from_json_file(f)
    full, sliding = c.rope_parameters["full_attention"], c.rope_parameters["sliding_attention"]
    assert sliding["rope_type"] == "default"
    r = Olmo3RotaryEmbedding(c)
    out = {"windows": [c.sliding_window if t == "sliding_attention" else None for t in c.layer_types],
           "theta": full["rope_theta"], "type": full["rope_type"], "factor": full.get("factor"),
           "local": sliding["rope_theta"], "inv_freq": r.full_attention_inv_freq.tolist(),
           "attention_factor": r.full_attention_attention_scaling}
    if i == 0:
        out["params"] = sum(p.numel() for p in Olmo3ForCausalLM(c).parameters())
    print(json.dumps(out))
"#;

/// `config.json` is read as transformers reads it: the nested `rope_parameters` by layer kind;
/// the older top-level `rope_theta` and `rope_scaling`, which set the full layers' rotation
/// only (the sliding layers keep θ = 500,000); a missing sliding kind; `layer_types` defaulting
/// to every fourth layer full. The parameter count is transformers'.
#[test]
fn olmo3_configs_read_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = [
        edited(d, "as-written", |_| {}),
        edited(d, "top-level", |j| {
            let o = j.as_object_mut().unwrap();
            o.remove("rope_parameters");
            o.remove("layer_types");
            o.insert("num_hidden_layers".into(), 6.into());
            o.insert("rope_theta".into(), 2e4.into());
            o.insert(
                "rope_scaling".into(),
                json!({"rope_type": "linear", "factor": 4.0}),
            );
        }),
        edited(d, "full-only", |j| {
            j["rope_parameters"] = json!({"full_attention": {"rope_type": "linear", "factor": 3.0, "rope_theta": 50.0}});
        }),
        edited(d, "theta-outside", |j| {
            j["rope_parameters"] = json!({"full_attention": {"rope_type": "default"},
                "sliding_attention": {"rope_type": "default", "rope_theta": 70.0}});
            j["rope_theta"] = 123.0.into();
        }),
        // OLMo 3 7B's rotation, as its config.json gives it.
        edited(d, "olmo3-7b-yarn", |j| {
            j.as_object_mut().unwrap().remove("rope_parameters");
            j["rope_theta"] = 5e5.into();
            j["rope_scaling"] = json!({"attention_factor": 1.2079441541679836, "beta_fast": 32,
                "beta_slow": 1, "factor": 8.0, "original_max_position_embeddings": 8192,
                "rope_type": "yarn"});
        }),
        edited(d, "yarn-mscale", |j| {
            j["rope_parameters"]["full_attention"] = json!({"rope_type": "yarn", "factor": 16.0,
                "original_max_position_embeddings": 32, "beta_fast": 8, "mscale": 0.7,
                "mscale_all_dim": 0.4, "rope_theta": 1e3});
        }),
    ];
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let hf = python_snippet(HF_READS, &args);
    for (i, (file, line)) in files.iter().zip(hf.lines()).enumerate() {
        let want: Value = serde_json::from_str(line).unwrap();
        let j: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let c = ModelConfig::from_hf_json(&j, file).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: transformers {want}", file.display());
        assert_eq!(c.family, Family::Olmo3);
        let windows: Vec<Option<u64>> = c
            .sliding_window
            .iter()
            .map(|w| w.map(|w| w as u64))
            .collect();
        assert_eq!(json!(windows), want["windows"], "{}", file.display());
        assert_eq!(c.rope_theta, want["theta"].as_f64().unwrap());
        assert_rotation_like(&c, &want, file);
        let local = want["local"].as_f64().unwrap();
        assert_eq!(c.particulars.local_rope_theta, Some(local));
        if i == 0 {
            assert_eq!(c.num_params() as u64, want["params"].as_u64().unwrap());
        }
    }
}

/// The full layers' rotation of `c` (read from `file`) is transformers' `want`: the same type
/// and factor, inverse frequencies to 1e-6 (relative) and the attention factor.
fn assert_rotation_like(c: &ModelConfig, want: &Value, file: &Path) {
    match (want["type"].as_str().unwrap(), &c.rope_scaling) {
        ("default", None) => {}
        ("linear", Some(RopeScaling::Linear { factor })) => {
            assert_eq!(*factor, want["factor"].as_f64().unwrap());
        }
        ("yarn", Some(RopeScaling::Yarn(y))) => {
            let ours = y.inv_freq(c.rope_theta, c.head_dim);
            let theirs: Vec<f64> = serde_json::from_value(want["inv_freq"].clone()).unwrap();
            eprintln!("YaRN inverse frequencies: ours {ours:?}");
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() <= 1e-6 * b.abs(), "{ours:?} vs {theirs:?}");
            }
            assert_eq!(ours.len(), theirs.len());
        }
        (kind, ours) => panic!("{}: transformers {kind}, ours {ours:?}", file.display()),
    }
    let factor = c
        .rope_scaling
        .as_ref()
        .map_or(1.0, RopeScaling::attention_factor);
    let want_factor = want["attention_factor"].as_f64().unwrap();
    assert!(
        (factor - want_factor).abs() <= 1e-12,
        "{factor} vs {want_factor}"
    );
}

/// What the decoder cannot run exactly is refused, naming the field: a layer kind it does not
/// know, a rotary type it does not implement (however it is given), YaRN without its original
/// context, scaling on the sliding layers, a partial rotation, a window missing where layers
/// slide, rotary parameters not given per layer kind.
#[test]
fn olmo3_features_not_implemented_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 10] = [
        ("layer_types", |j| {
            j["layer_types"] = json!(["sliding_attention", "chunked_attention"]);
        }),
        ("layer_types", |j| {
            j["layer_types"] = json!(["sliding_attention"]);
        }),
        ("rope_parameters.full_attention.rope_type", |j| {
            j["rope_parameters"]["full_attention"]["rope_type"] = "longrope".into();
        }),
        (
            "rope_parameters.full_attention.original_max_position_embeddings",
            |j| {
                let full = j["rope_parameters"]["full_attention"]
                    .as_object_mut()
                    .unwrap();
                full.remove("original_max_position_embeddings");
            },
        ),
        ("partial_rotary_factor", |j| {
            j["partial_rotary_factor"] = 0.5.into();
        }),
        ("rope_parameters.sliding_attention.rope_type", |j| {
            j["rope_parameters"]["sliding_attention"] =
                json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4});
        }),
        ("sliding_window", |j| {
            j["sliding_window"] = Value::Null;
        }),
        ("sliding_window", |j| {
            j.as_object_mut().unwrap().remove("sliding_window");
        }),
        ("rope_parameters", |j| {
            j["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e4});
        }),
        ("rope_scaling.rope_type", |j| {
            j.as_object_mut().unwrap().remove("rope_parameters");
            j["rope_scaling"] = json!({"rope_type": "dynamic", "factor": 2.0});
        }),
    ];
    for (i, (field, edit)) in cases.into_iter().enumerate() {
        let file = edited(dir.path(), &format!("case-{i}"), edit);
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let err = ModelConfig::from_hf_json(&j, &file)
            .err()
            .unwrap_or_else(|| panic!("{field}: read"))
            .to_string();
        eprintln!("{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// Writes the GGUF of the Hugging Face folder `argv[1]` to `argv[2]` with llama.cpp's `gguf`
/// package, as llama.cpp's converter does for `Olmo3ForCausalLM`: architecture `olmo2`, the
/// window and one sliding flag per layer, the full layers' θ and linear scaling (YaRN with
/// `argv[3]`), tensor names from the package's own map.
const WRITE_GGUF: &str = r#"
import json, sys
import gguf, numpy as np
from safetensors.numpy import load_file
folder, out = sys.argv[1], sys.argv[2]
c = json.load(open(folder + "/config.json"))
full = c["rope_parameters"]["full_attention"]
n = c["num_hidden_layers"]
w = gguf.GGUFWriter(out, "olmo2")
w.add_context_length(c["max_position_embeddings"])
w.add_embedding_length(c["hidden_size"])
w.add_feed_forward_length(c["intermediate_size"])
w.add_block_count(n)
w.add_head_count(c["num_attention_heads"])
w.add_head_count_kv(c["num_key_value_heads"])
w.add_key_length(c["head_dim"])
w.add_value_length(c["head_dim"])
w.add_layer_norm_rms_eps(c["rms_norm_eps"])
w.add_rope_freq_base(full["rope_theta"])
w.add_rope_scaling_type(gguf.RopeScalingType.YARN if len(sys.argv) > 3 else gguf.RopeScalingType.LINEAR)
w.add_rope_scaling_factor(full["factor"])
w.add_sliding_window(c["sliding_window"])
w.add_sliding_window_pattern([t == "sliding_attention" for t in c["layer_types"]])
names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.OLMO2, n)
for name, t in load_file(folder + "/model.safetensors").items():
    w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.astype(np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
"#;

/// A GGUF of the tiny OLMo 3 written under llama.cpp's names and metadata gives the folder's
/// configuration and logits (f32 tensors, |Δ| ≤ 1e-5). A GGUF holds one rotary base, which
/// llama.cpp uses on the sliding layers unscaled, so this folder's two kinds share θ. A GGUF
/// with YaRN is refused naming the key (llama.cpp's YaRN is not checked against transformers').
#[test]
fn an_olmo3_gguf_equals_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Tiny::Olmo3.config();
    cfg.particulars.local_rope_theta = Some(cfg.rope_theta);
    cfg.rope_scaling = Some(RopeScaling::Linear { factor: 2.0 });
    let folder = dir.path().join("olmo3");
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    common::write_folder(&folder, &cfg, &weights);
    let path = folder.join("model.gguf");
    python_snippet(
        WRITE_GGUF,
        &[folder.to_str().unwrap(), path.to_str().unwrap()],
    );
    let opts = LoadOptions::default();
    let from_folder = Model::load(folder.to_str().unwrap(), &opts).unwrap();
    let from_gguf = Model::load(path.to_str().unwrap(), &opts).unwrap();
    let (a, b) = (&from_folder.config, &from_gguf.config);
    assert_eq!(b.family, Family::Olmo3);
    assert_eq!(a.sliding_window, b.sliding_window);
    assert_eq!(a.particulars, b.particulars);
    assert_eq!(a.rope_scaling, b.rope_scaling);
    let x = from_folder.forward_logits(&IDS, Kernels::Fast).unwrap();
    let y = from_gguf.forward_logits(&IDS, Kernels::Fast).unwrap();
    let d = max_abs_diff(&x, &y);
    eprintln!("OLMo 3: GGUF against folder, max |Δlogit| = {d:e}");
    assert!(d <= 1e-5, "max |Δlogit| = {d:e}");
    assert!(max_abs(&x) > 0.1);
    let yarn = folder.join("yarn.gguf");
    python_snippet(
        WRITE_GGUF,
        &[folder.to_str().unwrap(), yarn.to_str().unwrap(), "yarn"],
    );
    let err = Model::load(yarn.to_str().unwrap(), &opts)
        .err()
        .expect("a YaRN GGUF loaded")
        .to_string();
    assert!(
        err.contains("rope.scaling.type") && err.contains("yarn"),
        "{err}"
    );
}

/// A template written for this test with the Jinja features OLMo 3's instruct template uses: a
/// default system message unless one is given (`selectattr`), optional `functions` read with
/// `get`, and a generation prompt that opens the thinking. Its markers use only the tiny
/// vocabulary's characters: the reference generates with pad id 0, the unknown token's id, so
/// transformers would mask unknown characters out of the prompt.
const OLMO3_STYLE_CHAT: &str = "{% set has_system = messages|selectattr('role', 'equalto', 'system')|list|length > 0 %}{% if not has_system %}{{ '#system\\nyou are a tiny model.#\\n' }}{% endif %}{% for message in messages %}{{ '#' + message['role'] + '\\n' + message['content'] }}{% if message.get('functions', none) is not none %}{{ ' (' + message['functions'] + ')' }}{% endif %}{{ '#\\n' }}{% if loop.last and add_generation_prompt %}{{ '#assistant\\nthink:' }}{% endif %}{% endfor %}";

/// The template renders the prompt transformers renders, and greedy generation (with the
/// key/value cache, past the window) gives transformers' tokens.
#[test]
fn olmo3_chat_and_generation_equal_transformers() {
    use circuitdiff::model::GenerateOptions;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Tiny::Olmo3.config();
    let path = dir.path().join("olmo3-chat");
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    circuitdiff::model::write_hf_folder(
        &path,
        &cfg,
        &weights,
        &circuitdiff::model::char_tokenizer_json(common::CHARS),
        Some(OLMO3_STYLE_CHAT),
    )
    .unwrap();
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let question = "what is 4 + 5?";
    let prompt = circuitdiff::lab::task::prompt_ids(&model.tokenizer, question).unwrap();
    let n = 8;
    let r = reference(
        "hf_model.py",
        &json!({"model": path, "ids": prompt, "chat": question, "generate": n}),
    );
    let to_u32 = |t: &candle_core::Tensor| -> Vec<u32> {
        t.to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    assert_eq!(
        prompt,
        to_u32(&r["chat_ids"]),
        "the chat template renders differently"
    );
    let d = max_abs_diff(
        &model.forward_logits(&prompt, Kernels::Fast).unwrap(),
        &r["logits"],
    );
    eprintln!(
        "OLMo 3 prompt of {} tokens: max |Δlogit| = {d:e}",
        prompt.len()
    );
    assert!(d <= 1e-4, "prompt logits: max |Δlogit| = {d:e}");
    let opts = GenerateOptions {
        max_new_tokens: n,
        ..GenerateOptions::default()
    };
    let ours = model.generate_ignoring_eos(&prompt, &opts).unwrap().tokens;
    assert_eq!(ours, to_u32(&r["generated"]), "greedy tokens");
}

/// Writes a random OLMo 3 of three layers (sliding, full, sliding; window 4; a linear-scaled
/// full rotation and a sliding one of its own) to `argv[1]` with transformers itself: bf16
/// weights in shards of at most 20 kB, every weight (norms included) drawn from N(0, 0.2²).
const HF_WRITES: &str = r#"
import sys, torch
from transformers import Olmo3Config, Olmo3ForCausalLM
torch.manual_seed(0)
c = Olmo3Config(vocab_size=int(sys.argv[2]), hidden_size=32, intermediate_size=48,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=256, sliding_window=4,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 500.0}},
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
m = Olmo3ForCausalLM(c)
with torch.no_grad():
    for p in m.parameters():
        p.normal_(0.0, 0.2)
m.to(torch.bfloat16).save_pretrained(sys.argv[1], max_shard_size="20KB")
"#;

/// A checkpoint transformers writes itself (its own `config.json`, bf16 weights in several
/// shards) loads and gives transformers' logits in f32 (|Δ| ≤ 1e-4; both read the same bf16
/// values).
#[test]
fn a_sharded_bf16_checkpoint_transformers_writes_equals_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("olmo3-hf");
    let vocab = Tiny::Olmo3.config().vocab_size.to_string();
    python_snippet(HF_WRITES, &[path.to_str().unwrap(), &vocab]);
    let shards = std::fs::read_dir(&path)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_str().unwrap().ends_with(".safetensors")
        })
        .count();
    assert!(shards > 1, "{shards} shard(s)");
    let tokenizer = circuitdiff::model::char_tokenizer_json(common::CHARS);
    std::fs::write(
        path.join(circuitdiff::model::TOKENIZER_FILE),
        tokenizer.to_string(),
    )
    .unwrap();
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(model.config.sliding_window, [Some(4), None, Some(4)]);
    assert_eq!(model.config.particulars.local_rope_theta, Some(500.0));
    let r = reference(
        "hf_model.py",
        &json!({"model": path, "ids": IDS, "dtype": "float32"}),
    );
    let d = max_abs_diff(
        &model.forward_logits(&IDS, Kernels::Fast).unwrap(),
        &r["logits"],
    );
    eprintln!("OLMo 3 written by transformers ({shards} bf16 shards): max |Δlogit| = {d:e}");
    assert!(d <= 1e-4, "max |Δlogit| = {d:e}");
}
