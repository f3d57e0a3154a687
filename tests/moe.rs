//! Mixture-of-experts MLPs (Qwen3-MoE, OLMoE, Mixtral) against Hugging Face transformers:
//! logits in f32 and f64, probe gradients and sources of the per-path graph, the routing
//! itself; and what is refused (configurations that do not match their weights or ask for
//! routing features not implemented, LoRA inside experts, training).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::DType;
use candle_core::Tensor;
use circuitdiff::model::{GenerateOptions, Kernels, LoadOptions, LoraSettings, LoraTarget, Model};
use common::{max_abs, max_abs_diff, nll, reference, Tiny};
use std::collections::HashMap;
use std::path::Path;

/// Twelve tokens: enough that the routers choose every expert somewhere.
const IDS: [u32; 12] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19, 44, 3];

fn load(path: &Path, dtype: DType) -> Model {
    let opts = LoadOptions {
        dtype,
        ..LoadOptions::default()
    };
    Model::load(path.to_str().unwrap(), &opts).unwrap()
}

#[test]
fn moe_logits_and_probe_gradients_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in Tiny::MOE {
        let path = tiny.write(dir.path());
        let (p0, targets) = (7, IDS[8..].to_vec());
        let request = |dtype: &str| {
            serde_json::json!({"model": path, "ids": IDS, "loss_from": p0, "targets": targets,
                               "dtype": dtype, "generate": 8})
        };
        let r = reference("hf_model.py", &request("float32"));
        // The routers choose every expert for some token, and not all tokens alike.
        let moe = tiny.config().moe.unwrap();
        for l in (0..2).filter(|&l| moe.routes(l)) {
            let chosen = r[&format!("routing.{l}")].to_vec2::<i64>().unwrap();
            for e in 0..moe.num_experts as i64 {
                assert!(
                    chosen.iter().any(|c| c.contains(&e)),
                    "{tiny:?} layer {l} expert {e}"
                );
            }
        }
        let model = load(&path, DType::F32);
        for kernels in [Kernels::Fast, Kernels::Differentiable, Kernels::FusedGrad] {
            let ours = model.forward_logits(&IDS, kernels).unwrap();
            let d = max_abs_diff(&ours, &r["logits"]);
            eprintln!("{tiny:?} f32 {kernels:?}: max |Δlogit| = {d:e}");
            assert!(d <= 1e-4, "{tiny:?} {kernels:?}: max |Δlogit| = {d:e}");
        }
        check_pass(tiny, &model, &r, p0, &targets);

        // f64: transformers' routers take their softmax in f32, which bounds the agreement.
        let r = reference("hf_model.py", &request("float64"));
        let model = load(&path, DType::F64);
        for kernels in [Kernels::Differentiable, Kernels::FusedGrad] {
            let ours = model.forward_logits(&IDS, kernels).unwrap();
            let d = max_abs_diff(&ours, &r["logits"]);
            eprintln!("{tiny:?} f64 {kernels:?}: max |Δlogit| = {d:e}");
            assert!(d <= 1e-5, "{tiny:?} f64 {kernels:?}: max |Δlogit| = {d:e}");
        }
    }
}

/// The f32 model's generation, loss, probe gradients and sources against the reference `r`.
fn check_pass(tiny: Tiny, model: &Model, r: &HashMap<String, Tensor>, p0: usize, targets: &[u32]) {
    // Greedy generation through the key/value cache: transformers' tokens, up to an end token
    // (where circuitdiff stops and transformers, told of none, goes on).
    let opts = GenerateOptions {
        max_new_tokens: 8,
        stop_ids: vec![],
        ..GenerateOptions::default()
    };
    let ours = model.generate(&IDS, &opts).unwrap().tokens;
    let want = r["generated"].to_vec1::<i64>().unwrap();
    let n = ours.len();
    let same = ours.iter().zip(&want).all(|(&a, &b)| i64::from(a) == b);
    let stopped = n == want.len() || want[n] == 2;
    assert!(same && stopped, "{tiny:?} generation {ours:?} vs {want:?}");
    let d = max_abs_diff(&r["path_logits"], &r["logits"]);
    assert!(
        d <= 1e-5,
        "{tiny:?}: reference per-path forward differs by {d:e}"
    );

    let traced = model.trace(&IDS, p0..p0 + targets.len()).unwrap();
    let loss = nll(&traced.logits, targets);
    let (ours, want) = (
        loss.to_scalar::<f32>().unwrap(),
        r["loss"].to_scalar::<f32>().unwrap(),
    );
    assert!(
        (ours - want).abs() <= 1e-5,
        "{tiny:?}: loss {ours} vs {want}"
    );
    let grads = traced.gradients(&loss).unwrap();
    let scale = grads.iter().map(max_abs).fold(0.0, f64::max);
    for (j, g) in grads.iter().enumerate() {
        let want = &r[&format!("grad.{j}")];
        let err = max_abs_diff(g, want) / max_abs(want).max(1e-3 * scale);
        eprintln!("{tiny:?} destination {j}: gradient relative error {err:e}");
        assert!(
            err <= 1e-4,
            "{tiny:?} destination {j}: relative error {err:e}"
        );
    }
    for (i, s) in traced.sources.iter().enumerate() {
        let want = &r[&format!("source.{i}")];
        let err = max_abs_diff(s, want) / max_abs(want);
        assert!(err <= 1e-5, "{tiny:?} source {i}: relative error {err:e}");
    }
}

/// Write `tiny` into `dir`, change its `config.json` with `edit`, and return the load error.
fn refused(tiny: Tiny, dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> String {
    let path = tiny.write(dir);
    let file = path.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&file, json.to_string()).unwrap();
    match Model::load(path.to_str().unwrap(), &LoadOptions::default()) {
        Ok(_) => panic!("{tiny:?}: {json} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn moe_configs_that_do_not_match_or_are_not_implemented_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(Tiny, &str, serde_json::Value); 12] = [
        // Expert counts that do not match the weights.
        (Tiny::Qwen3Moe, "num_experts", 5.into()),
        (Tiny::Olmoe, "num_experts", 3.into()),
        (Tiny::Mixtral, "num_local_experts", 4.into()),
        (Tiny::Mixtral, "num_local_experts", 2.into()),
        (Tiny::Olmoe, "num_experts_per_tok", 5.into()),
        (Tiny::Qwen3Moe, "num_local_experts", 8.into()),
        // Routing features that change the forward pass and are not implemented.
        (Tiny::Qwen3Moe, "shared_expert_intermediate_size", 8.into()),
        (Tiny::Qwen3Moe, "scoring_func", "sigmoid".into()),
        (Tiny::Mixtral, "routed_scaling_factor", 2.5.into()),
        (Tiny::Olmoe, "clip_qkv", 8.0.into()),
        (Tiny::Qwen3Moe, "mlp_only_layers", vec![2].into()),
        (Tiny::Qwen3Moe, "decoder_sparse_step", 0.into()),
    ];
    for (i, (tiny, field, value)) in cases.into_iter().enumerate() {
        let e = refused(tiny, &dir.path().join(i.to_string()), |j| {
            j[field] = value.clone();
        });
        eprintln!("{tiny:?}: {e}");
        assert!(e.contains(&format!("`{field}`")), "{tiny:?}: {e}");
    }
}

#[test]
fn lora_reaches_the_attention_of_a_moe_model_and_refuses_its_experts() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Olmoe.write(dir.path());
    let lora = |targets: Vec<LoraTarget>| LoraSettings {
        rank: 2,
        alpha: 4.0,
        rslora: false,
        targets,
        seed: 1,
    };
    let mut model = load(&path, DType::F32);
    let pairs = model
        .attach_lora(&lora(vec![LoraTarget::QProj, LoraTarget::VProj]))
        .unwrap();
    assert_eq!(pairs.len(), 4);
    let mut model = load(&path, DType::F32);
    let e = model
        .attach_lora(&lora(vec![LoraTarget::QProj, LoraTarget::UpProj]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("experts") && e.contains("up_proj"), "{e}");
    let mut model = load(&path, DType::F32);
    let e = model.trainable().unwrap_err().to_string();
    assert!(e.contains("mixture-of-experts"), "{e}");
}

/// The memory planner counts every expert's weights and, per token, the router and the chosen
/// experts' activations, against the dense model of the same shape, by hand: Tiny::Mixtral has
/// 2 routed layers of 3 experts (2 chosen) of width 48 on a residual of 32.
#[test]
fn the_memory_plan_counts_experts_by_hand() {
    let moe = Tiny::Mixtral.config();
    let dense = circuitdiff::model::ModelConfig {
        moe: None,
        ..moe.clone()
    };
    let plan = circuitdiff::model::ScorePlan::block(100);
    let (m, d) = (
        circuitdiff::model::MemoryEstimate::new(&moe, &plan, DType::F32),
        circuitdiff::model::MemoryEstimate::new(&dense, &plan, DType::F32),
    );
    // Per layer: 3 experts × 3 × 32 × 48 + a 3 × 32 router, instead of 3 × 32 × 48.
    let params = 2 * (3 * 3 * 32 * 48 + 3 * 32 - 3 * 32 * 48);
    assert_eq!(moe.num_params() - dense.num_params(), params);
    assert_eq!(m.weights - d.weights, 4 * params as u64);
    // Per token and layer: 4 × 3 (router) + 2 × (4 × 48 + 3 × 32 + 3) (chosen experts)
    // + 2 × 32 (their sum) = 658 elements, instead of 4 × 48; f32, 2 layers, 100 tokens, the
    // planner's 10 % allocator margin.
    assert_eq!(4 * 3 + 2 * (4 * 48 + 3 * 32 + 3) + 2 * 32, 658);
    let want = (658 - 4 * 48) as f64 * 4.0 * 2.0 * 100.0 * 1.1;
    let got = (m.activations - d.activations) as f64;
    assert!((got - want).abs() <= 1.0, "{got} vs {want}");
}

/// llama.cpp's architecture name of a mixture-of-experts family.
fn gguf_arch(tiny: Tiny) -> &'static str {
    match tiny {
        Tiny::Qwen3Moe => "qwen3moe",
        Tiny::Olmoe => "olmoe",
        _ => "llama",
    }
}

/// The llama.cpp name of a Hugging Face tensor outside the routed MLPs.
fn gguf_name(hf: &str) -> String {
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
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no llama.cpp name for {other}"),
    };
    format!("blk.{layer}.{g}.weight")
}

/// llama.cpp's reordering of each head's q/k rows for its `llama` architecture (the inverse
/// of the loader's).
fn permute_rows(t: &Tensor, heads: usize) -> Tensor {
    let dims = t.dims().to_vec();
    let half = dims[0] / heads / 2;
    t.reshape((heads, 2, half, dims[1]))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(dims)
        .unwrap()
}

/// The tensors of `weights` (of `cfg`) under llama.cpp's names: every routed layer's router as
/// `ffn_gate_inp` and its experts' projections stacked into `ffn_{gate,up,down}_exps`.
fn gguf_tensors(
    tiny: Tiny,
    cfg: &circuitdiff::model::ModelConfig,
    weights: &HashMap<String, Tensor>,
) -> Vec<(String, Tensor)> {
    let moe = cfg.moe.as_ref().unwrap();
    let m = moe.names.module();
    let mut out = Vec::new();
    for (n, t) in weights {
        if n.contains(&format!(".{m}.experts.")) || n.ends_with(&format!(".{m}.gate.weight")) {
            continue;
        }
        let t = match n.as_str() {
            _ if tiny == Tiny::Mixtral && n.ends_with("q_proj.weight") => {
                permute_rows(t, cfg.num_heads)
            }
            _ if tiny == Tiny::Mixtral && n.ends_with("k_proj.weight") => {
                permute_rows(t, cfg.num_kv_heads)
            }
            _ => t.clone(),
        };
        out.push((gguf_name(n), t));
    }
    for l in (0..cfg.num_layers).filter(|&l| moe.routes(l)) {
        let p = format!("model.layers.{l}.{m}");
        out.push((
            format!("blk.{l}.ffn_gate_inp.weight"),
            weights[&format!("{p}.gate.weight")].clone(),
        ));
        for (proj, g) in moe
            .names
            .projections()
            .into_iter()
            .zip(["gate", "up", "down"])
        {
            let experts: Vec<&Tensor> = (0..moe.num_experts)
                .map(|e| &weights[&format!("{p}.experts.{e}.{proj}.weight")])
                .collect();
            out.push((
                format!("blk.{l}.ffn_{g}_exps.weight"),
                Tensor::stack(&experts, 0).unwrap(),
            ));
        }
    }
    out
}

/// Write `weights` of `cfg` as `folder/model.gguf` in llama.cpp's layout (tensors in `dtype`),
/// with `edit` applied to the metadata.
fn write_moe_gguf(
    tiny: Tiny,
    cfg: &circuitdiff::model::ModelConfig,
    weights: &HashMap<String, Tensor>,
    dtype: candle_core::quantized::GgmlDType,
    folder: &Path,
    edit: impl FnOnce(&mut Vec<(String, candle_core::quantized::gguf_file::Value)>),
) -> std::path::PathBuf {
    use candle_core::quantized::{gguf_file, QTensor};
    use gguf_file::Value as V;
    let arch = gguf_arch(tiny);
    let moe = cfg.moe.as_ref().unwrap();
    let u = |n: usize| V::U32(n as u32);
    let mut meta: Vec<(String, V)> = [
        ("general.architecture", V::String(arch.into())),
        ("embedding_length", u(cfg.hidden_size)),
        ("feed_forward_length", u(cfg.intermediate_size)),
        ("block_count", u(cfg.num_layers)),
        ("attention.head_count", u(cfg.num_heads)),
        ("attention.head_count_kv", u(cfg.num_kv_heads)),
        ("attention.key_length", u(cfg.head_dim)),
        ("context_length", u(cfg.max_position_embeddings)),
        (
            "attention.layer_norm_rms_epsilon",
            V::F32(cfg.rms_norm_eps as f32),
        ),
        ("rope.freq_base", V::F32(cfg.rope_theta as f32)),
        ("expert_count", u(moe.num_experts)),
        ("expert_used_count", u(moe.top_k)),
        (
            "expert_feed_forward_length",
            u(moe.expert_intermediate_size),
        ),
    ]
    .into_iter()
    .filter(|(k, _)| tiny == Tiny::Qwen3Moe || *k != "expert_feed_forward_length")
    .map(|(k, v)| {
        let k = if k.starts_with("general.") {
            k.to_owned()
        } else {
            format!("{arch}.{k}")
        };
        (k, v)
    })
    .collect();
    edit(&mut meta);
    let tensors: Vec<(String, QTensor)> = gguf_tensors(tiny, cfg, weights)
        .into_iter()
        .map(|(n, t)| (n, QTensor::quantize(&t, dtype).unwrap()))
        .collect();
    let path = folder.join("model.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &meta
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect::<Vec<_>>(),
        &tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    path
}

/// Qwen3-MoE (a dense layer 0 beside a routed layer 1), OLMoE and Mixtral (architecture
/// `llama` with experts, q/k rows permuted) written under llama.cpp's names, with f32 and f16
/// tensors, give the logits of the Hugging Face folder of the same weights (f16 ones rounded
/// in both) to 1e-5 in f64 and 1e-4 in f32, read the same routing configuration, and are
/// planned in memory as the folder is.
#[test]
fn moe_ggufs_equal_their_folders() {
    use candle_core::quantized::GgmlDType;
    let dir = tempfile::tempdir().unwrap();
    for tiny in Tiny::MOE {
        let mut cfg = tiny.config();
        // llama.cpp's `llama` architecture has no sliding window.
        cfg.sliding_window = vec![None; cfg.num_layers];
        let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
        for (ggml, name) in [(GgmlDType::F32, "f32"), (GgmlDType::F16, "f16")] {
            let weights: HashMap<String, Tensor> = weights
                .iter()
                .map(|(n, t)| {
                    let t = match ggml {
                        GgmlDType::F16 => t.to_dtype(DType::F16).unwrap().to_dtype(DType::F32),
                        _ => Ok(t.clone()),
                    };
                    (n.clone(), t.unwrap())
                })
                .collect();
            let folder = dir.path().join(format!("{tiny:?}-{name}"));
            common::write_folder(&folder, &cfg, &weights);
            let path = write_moe_gguf(tiny, &cfg, &weights, ggml, &folder, |_| {});
            for (dtype, kernels, tol) in [
                (DType::F64, Kernels::Differentiable, 1e-5),
                (DType::F32, Kernels::Fast, 1e-4),
            ] {
                let (a, b) = (load(&folder, dtype), load(&path, dtype));
                assert_eq!(a.config.moe, b.config.moe, "{tiny:?}");
                assert_eq!(a.config.family, b.config.family, "{tiny:?}");
                let plan = circuitdiff::model::ScorePlan::block(64);
                let (ma, mb) = (
                    circuitdiff::model::MemoryEstimate::new(&a.config, &plan, dtype),
                    circuitdiff::model::MemoryEstimate::new(&b.config, &plan, dtype),
                );
                assert_eq!((ma.weights, ma.total), (mb.weights, mb.total), "{tiny:?}");
                let x = a.forward_logits(&IDS, kernels).unwrap();
                let y = b.forward_logits(&IDS, kernels).unwrap();
                let d = max_abs_diff(&x, &y);
                eprintln!(
                    "{tiny:?} {name} tensors, {dtype:?}: GGUF against folder, max |Δlogit| = {d:e}"
                );
                assert!(d <= tol, "{tiny:?} {name} {dtype:?}: max |Δlogit| = {d:e}");
                assert!(max_abs(&x) > 0.1);
            }
        }
    }
}

/// Expert metadata that does not match the tensors, or asks for routing not implemented, is
/// refused naming the key.
#[test]
fn moe_gguf_metadata_that_does_not_match_is_refused_naming_the_key() {
    use candle_core::quantized::{gguf_file::Value as V, GgmlDType};
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut Vec<(String, V)>);
    let cases: [(Tiny, &str, Edit); 6] = [
        (Tiny::Qwen3Moe, "expert_count", |m| {
            common::gguf_set(m, "qwen3moe.expert_count", V::U32(5))
        }),
        (Tiny::Mixtral, "expert_count", |m| {
            common::gguf_set(m, "llama.expert_count", V::U32(2))
        }),
        (Tiny::Olmoe, "expert_used_count", |m| {
            common::gguf_set(m, "olmoe.expert_used_count", V::U32(5))
        }),
        (Tiny::Mixtral, "expert_shared_count", |m| {
            common::gguf_set(m, "llama.expert_shared_count", V::U32(1))
        }),
        (Tiny::Olmoe, "expert_weights_norm", |m| {
            common::gguf_set(m, "olmoe.expert_weights_norm", V::Bool(true))
        }),
        (Tiny::Qwen3Moe, "expert_gating_func", |m| {
            common::gguf_set(m, "qwen3moe.expert_gating_func", V::U32(2))
        }),
    ];
    for (i, (tiny, key, edit)) in cases.into_iter().enumerate() {
        let cfg = tiny.config();
        let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
        let folder = dir.path().join(i.to_string());
        common::write_folder(&folder, &cfg, &weights);
        let path = write_moe_gguf(tiny, &cfg, &weights, GgmlDType::F32, &folder, edit);
        let e = Model::load(path.to_str().unwrap(), &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{tiny:?} {key}: loaded"))
            .to_string();
        eprintln!("{tiny:?} {key}: {e}");
        let full = format!("`{}.{key}`", gguf_arch(tiny));
        assert!(e.contains(&full), "{tiny:?}: {e}");
    }
}

/// transformers' own GGUF reader, given a Qwen3-MoE GGUF written as above (every layer routed
/// and experts 768 wide: transformers 5.24 reads neither `mlp_only_layers` nor
/// `expert_feed_forward_length` from a GGUF, and takes 768 by default), gives our logits for it
/// (f32, ≤ 1e-4): the router and the stacked experts are named and laid out as an independent
/// reader of llama.cpp's files expects.
#[test]
fn transformers_reads_a_qwen3_moe_gguf_as_we_do() {
    use candle_core::quantized::{gguf_file::Value as V, GgmlDType};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Tiny::Qwen3Moe.config();
    let moe = cfg.moe.as_mut().unwrap();
    moe.routed = vec![true; cfg.num_layers];
    moe.expert_intermediate_size = 768;
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    let folder = dir.path().join("folder");
    common::write_folder(&folder, &cfg, &weights);
    let gguf_dir = dir.path().join("gguf");
    std::fs::create_dir_all(&gguf_dir).unwrap();
    std::fs::copy(
        folder.join("tokenizer.json"),
        gguf_dir.join("tokenizer.json"),
    )
    .unwrap();
    let vocab = V::U32(cfg.vocab_size as u32);
    let path = write_moe_gguf(
        Tiny::Qwen3Moe,
        &cfg,
        &weights,
        GgmlDType::F32,
        &gguf_dir,
        |m| {
            common::gguf_set(m, "qwen3moe.vocab_size", vocab);
        },
    );
    let r = reference(
        "hf_model.py",
        &serde_json::json!({"model": gguf_dir, "gguf_file": "model.gguf", "ids": IDS}),
    );
    let ours = load(&path, DType::F32)
        .forward_logits(&IDS, Kernels::Fast)
        .unwrap();
    let d = max_abs_diff(&ours, &r["logits"]);
    eprintln!("Qwen3-MoE GGUF, ours against transformers' reading: max |Δlogit| = {d:e}");
    assert!(d <= 1e-4, "max |Δlogit| = {d:e}");
    assert!(max_abs(&ours) > 0.1);
}
