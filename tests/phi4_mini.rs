//! Phi-4-mini's partial rotation (`model_type` phi3 with `partial_rotary_factor` < 1) and its
//! LongRoPE scaling against Hugging Face transformers: logits in f64 and f32 and edge scores;
//! factors the decoder cannot run, and positions past LongRoPE's short factors, refused naming
//! the field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Tensor};
use circuitdiff::attribution::{score_sample, Graph, Level};
use circuitdiff::model::{Kernels, LoadOptions, LongRope, Model, ModelConfig, RopeScaling};
use common::{max_abs, max_abs_diff, reference, Tiny};
use serde_json::{json, Value};

/// Twelve tokens: three times the tiny Phi-3's window of 4.
const IDS: [u32; 12] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19, 3, 44];

/// The tiny Phi-3 with half of each head (4 of 8 dimensions) rotating.
fn partial() -> ModelConfig {
    let mut cfg = Tiny::Phi3.config();
    cfg.particulars.rotary_dim = Some(4);
    cfg
}

/// [`partial`] with LongRoPE as Phi-4-mini has it, in miniature: short factors 1.5 and 3, long
/// ones 4 and 8, a pretraining context of 16 extended to 128.
fn long_rope(attention_factor: f64) -> ModelConfig {
    let mut cfg = partial();
    cfg.max_position_embeddings = 128;
    cfg.rope_scaling = Some(RopeScaling::LongRope(LongRope {
        short_factor: vec![1.5, 3.0],
        long_factor: vec![4.0, 8.0],
        attention_factor,
        original_max_position_embeddings: 16,
    }));
    cfg
}

/// Logits equal transformers' to 1e-5 in f64 and 1e-4 in f32 with every kernel set, and differ
/// from those of the whole head rotating (so the check would catch a model ignoring the
/// factor); edge scores equal a plain-PyTorch computation to 1e-4 of the largest.
#[test]
fn a_partial_rotation_equals_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = partial();
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    let path = dir.path().join("phi4-mini-like");
    common::write_folder(&path, &cfg, &weights);
    let whole = dir.path().join("whole-head");
    common::write_folder(&whole, &Tiny::Phi3.config(), &weights);
    common::assert_logits_match_transformers(&path, &IDS, "partial rotation", |model, _| {
        assert_eq!(model.config.particulars.rotary_dim, Some(4));
    });
    let opts = LoadOptions::default();
    let model = Model::load(path.to_str().unwrap(), &opts).unwrap();
    let rotated = Model::load(whole.to_str().unwrap(), &opts).unwrap();
    let ours = model.forward_logits(&IDS, Kernels::FusedGrad).unwrap();
    let d = max_abs_diff(
        &ours,
        &rotated.forward_logits(&IDS, Kernels::FusedGrad).unwrap(),
    );
    assert!(d > 1e-3, "the partial rotation makes no difference: {d:e}");
    let (prompt, answer) = (&IDS[..6], &IDS[6..10]);
    let g = Graph::new(&model.config, Level::Block);
    let s = score_sample(&model, &g, "0", prompt, answer, answer.len()).unwrap();
    let r = reference(
        "hf_model.py",
        &json!({"model": path, "ids": &IDS[..9], "loss_from": 5, "targets": answer}),
    );
    let want = r["scores"].to_dtype(DType::F32).unwrap();
    let ours = Tensor::from_slice(&s.dense, want.shape(), &candle_core::Device::Cpu).unwrap();
    let err = max_abs_diff(&ours, &want) / max_abs(&want);
    eprintln!("partial rotation: max |ΔS| / max |S| = {err:e}");
    assert!(err <= 1e-4, "{err:e}");
}

/// LongRoPE as Phi-4-mini has it, in miniature: half of each head rotating, short factors 1.5
/// and 3, a pretraining context of 16 extended to 128. With the attention factor left for the
/// reader to derive (√(1 + ln 8 / ln 16)), logits equal transformers' to 1e-5 in f64 and 1e-4 in
/// f32 with every kernel set and differ from the unscaled rotation's; a pass reaching position
/// 16 (where transformers would switch to the long factors) fails naming the field.
#[test]
fn long_rope_equals_transformers_within_the_short_factors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = long_rope(1.0);
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    let path = dir.path().join("long-rope");
    common::write_folder(&path, &cfg, &weights);
    let file = path.join("config.json");
    let mut j: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    j["rope_scaling"]
        .as_object_mut()
        .unwrap()
        .remove("attention_factor");
    std::fs::write(&file, j.to_string()).unwrap();
    let plain = dir.path().join("plain");
    common::write_folder(&plain, &partial(), &weights);
    common::assert_logits_match_transformers(&path, &IDS, "LongRoPE", |model, _| {
        let Some(RopeScaling::LongRope(l)) = &model.config.rope_scaling else {
            panic!("no LongRoPE read: {:?}", model.config.rope_scaling);
        };
        let want = (1.0 + 8f64.ln() / 16f64.ln()).sqrt();
        assert!(
            (l.attention_factor - want).abs() < 1e-12,
            "{}",
            l.attention_factor
        );
    });
    let opts = LoadOptions::default();
    let model = Model::load(path.to_str().unwrap(), &opts).unwrap();
    let unscaled = Model::load(plain.to_str().unwrap(), &opts).unwrap();
    let ours = model.forward_logits(&IDS, Kernels::FusedGrad).unwrap();
    let d = max_abs_diff(
        &ours,
        &unscaled.forward_logits(&IDS, Kernels::FusedGrad).unwrap(),
    );
    assert!(d > 1e-3, "LongRoPE makes no difference: {d:e}");
    let long: Vec<u32> = IDS.iter().chain(&IDS).copied().collect();
    let err = model
        .forward_logits(&long[..17], Kernels::FusedGrad)
        .expect_err("position 16 is past the short factors")
        .to_string();
    assert!(err.contains("original_max_position_embeddings"), "{err}");
    assert!(model
        .forward_logits(&long[..16], Kernels::FusedGrad)
        .is_ok());
}

/// `partial_rotary_factor` is read as transformers reads it (⌊head_dim × factor⌋ leading
/// dimensions, from `rope_parameters` before the top level, 1 = the whole head); a factor
/// outside (0, 1], one that rotates an odd number of dimensions, and LongRoPE factors of the
/// wrong count or sign, or without the pretraining context, are refused naming the field.
#[test]
fn partial_rotary_factors_are_read_or_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Phi3.write(dir.path());
    let file = path.join("config.json");
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let read = |edit: &dyn Fn(&mut Value)| {
        let mut j = base.clone();
        edit(&mut j);
        ModelConfig::from_hf_json(&j, &file)
    };
    let dim = |edit: &dyn Fn(&mut Value)| read(edit).unwrap().particulars.rotary_dim;
    assert_eq!(dim(&|j| j["partial_rotary_factor"] = 0.75.into()), Some(6));
    assert_eq!(dim(&|j| j["partial_rotary_factor"] = 1.0.into()), None);
    assert_eq!(
        dim(&|j| {
            j["partial_rotary_factor"] = 0.75.into();
            j["rope_parameters"] = json!({"rope_type": "default", "partial_rotary_factor": 0.5});
        }),
        Some(4)
    );
    let long_rope = |short: Vec<f64>, long: Vec<f64>, original: Option<usize>| {
        move |j: &mut Value| {
            j["partial_rotary_factor"] = 0.75.into();
            j["rope_scaling"] = json!({"type": "longrope", "short_factor": short,
                "long_factor": long});
            if let Some(n) = original {
                j["original_max_position_embeddings"] = n.into();
            }
        }
    };
    let read_long = read(&long_rope(vec![1.0; 3], vec![2.0; 3], Some(8))).unwrap();
    assert!(matches!(
        read_long.rope_scaling,
        Some(RopeScaling::LongRope(LongRope {
            original_max_position_embeddings: 8,
            ..
        }))
    ));
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit); 7] = [
        (
            "partial_rotary_factor",
            Box::new(|j| j["partial_rotary_factor"] = 1.5.into()),
        ),
        (
            "partial_rotary_factor",
            Box::new(|j| j["partial_rotary_factor"] = 0.375.into()),
        ),
        (
            "partial_rotary_factor",
            Box::new(|j| j["partial_rotary_factor"] = 0.0.into()),
        ),
        (
            "rope_scaling.short_factor",
            Box::new(long_rope(vec![1.0; 2], vec![2.0; 2], Some(8))),
        ),
        (
            "rope_scaling.long_factor",
            Box::new(long_rope(vec![1.0; 3], vec![2.0, -1.0, 2.0], Some(8))),
        ),
        (
            "rope_scaling.original_max_position_embeddings",
            Box::new(long_rope(vec![1.0; 3], vec![2.0; 3], None)),
        ),
        (
            "rope_scaling.rope_type",
            Box::new(|j| j["rope_scaling"] = json!({"type": "dynamic", "factor": 2.0})),
        ),
    ];
    for (field, edit) in cases {
        let err = read(&*edit).expect_err("read").to_string();
        eprintln!("{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// Writes the GGUF of the Hugging Face folder `argv[1]` to `argv[2]` with llama.cpp's `gguf`
/// package, as llama.cpp's converter does for `Phi3ForCausalLM`: architecture `phi3`, the fused
/// `attn_qkv` and `ffn_up` under the package's own names, `rope.dimension_count` rotated
/// dimensions, the window (0 for none), and LongRoPE as the tensors `rope_factors_short` and
/// `rope_factors_long` with `rope.scaling.attn_factor` and the pretraining context. `argv[3]`
/// spoils it: `short3` writes three short factors, `noattn` leaves out the attention factor.
const WRITE_PHI3_GGUF: &str = r#"
import json, math, sys
import gguf, numpy as np
from safetensors.numpy import load_file
folder, out = sys.argv[1], sys.argv[2]
spoil = sys.argv[3] if len(sys.argv) > 3 else ""
c = json.load(open(folder + "/config.json"))
rope = c.get("rope_scaling") or {}
n, embd, heads = c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"]
longest = c["max_position_embeddings"]
original = c.get("original_max_position_embeddings", longest)
w = gguf.GGUFWriter(out, "phi3")
w.add_context_length(longest)
w.add_rope_scaling_orig_ctx_len(original)
w.add_embedding_length(embd)
w.add_feed_forward_length(c["intermediate_size"])
w.add_block_count(n)
w.add_head_count(heads)
w.add_head_count_kv(c["num_key_value_heads"])
w.add_layer_norm_rms_eps(c["rms_norm_eps"])
w.add_rope_dimension_count(int(c.get("partial_rotary_factor", 1.0) * embd) // heads)
w.add_rope_freq_base(c.get("rope_parameters", {}).get("rope_theta", c.get("rope_theta", 1e4)))
w.add_sliding_window(c.get("sliding_window") or 0)
if rope.get("long_factor"):
    scale = longest / original
    if spoil != "noattn":
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)))
    short = rope["short_factor"] + ([1.0] if spoil == "short3" else [])
    w.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], dtype=np.float32))
    w.add_tensor("rope_factors_short.weight", np.array(short, dtype=np.float32))
names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, n)
for name, t in load_file(folder + "/model.safetensors").items():
    w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.astype(np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
"#;

/// A Phi-4-mini-like GGUF (half of each head rotating, LongRoPE, the window of 4, fused
/// projections) written under llama.cpp's names and metadata gives its folder's configuration
/// and logits (f32 tensors, |Δ| ≤ 1e-5); LongRoPE factors of the wrong count, or without the
/// attention factor, are refused naming the tensor or key.
#[test]
fn a_phi3_gguf_equals_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = long_rope((1.0 + 8f64.ln() / 16f64.ln()).sqrt());
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    let folder = dir.path().join("phi3");
    common::write_folder(&folder, &cfg, &weights);
    let gguf = |name: &str, spoil: &str| {
        let path = folder.join(name);
        let (f, p) = (folder.to_str().unwrap(), path.to_str().unwrap());
        common::python_snippet(WRITE_PHI3_GGUF, &[f, p, spoil]);
        path
    };
    let path = gguf("model.gguf", "");
    let opts = LoadOptions::default();
    let from_folder = Model::load(folder.to_str().unwrap(), &opts).unwrap();
    let from_gguf = Model::load(path.to_str().unwrap(), &opts).unwrap();
    let (a, b) = (&from_folder.config, &from_gguf.config);
    assert_eq!(b.family, a.family);
    assert_eq!(b.sliding_window, a.sliding_window);
    assert_eq!(b.particulars, a.particulars);
    let (Some(RopeScaling::LongRope(x)), Some(RopeScaling::LongRope(y))) =
        (&a.rope_scaling, &b.rope_scaling)
    else {
        panic!("{:?} vs {:?}", a.rope_scaling, b.rope_scaling);
    };
    assert_eq!(
        (
            &x.short_factor,
            &x.long_factor,
            x.original_max_position_embeddings
        ),
        (
            &y.short_factor,
            &y.long_factor,
            y.original_max_position_embeddings
        )
    );
    assert!((x.attention_factor - y.attention_factor).abs() < 1e-6);
    let want = from_folder
        .forward_logits(&IDS, Kernels::FusedGrad)
        .unwrap();
    let got = from_gguf.forward_logits(&IDS, Kernels::FusedGrad).unwrap();
    let d = max_abs_diff(&want, &got);
    eprintln!("Phi-3: GGUF against folder, max |Δlogit| = {d:e}");
    assert!(d <= 1e-5, "max |Δlogit| = {d:e}");
    assert!(max_abs(&want) > 0.1);
    for (spoil, named) in [
        ("short3", "rope_factors_short"),
        ("noattn", "rope.scaling.attn_factor"),
    ] {
        let bad = gguf(&format!("{spoil}.gguf"), spoil);
        let err = Model::load(bad.to_str().unwrap(), &opts)
            .err()
            .expect("a spoilt GGUF loaded")
            .to_string();
        assert!(err.contains(named), "{spoil}: {err}");
    }
}
