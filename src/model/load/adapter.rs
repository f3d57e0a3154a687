//! PEFT LoRA adapters, as TRL's trainers save them in `checkpoint-N/`: `adapter_config.json` and
//! `adapter_model.safetensors`, often beside the tokenizer's files. An adapter is read and
//! checked when its spec is resolved, and merged into its base model's weights at load:
//! W' = W + s·B·A for every adapted linear layer, with s = α/r (α/√r with rsLoRA) and r, α per
//! layer from `rank_pattern` and `alpha_pattern`, matched as PEFT matches them. What is not plain
//! LoRA on linear layers (DoRA, trained biases, full copies of modules, embedding adapters, other
//! PEFT methods) is refused, with what to do instead.

use super::config::ModelConfig;
use super::weights::{Entries, TensorStore};
use crate::model::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The adapter's configuration, in its folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights, in its folder.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The prefix PEFT gives the tensor names of a causal language model's adapter.
const PREFIX: &str = "base_model.model.";

/// The kinds of layer an adapter may change, in model order: the layers the lab adapts
/// ([`crate::model::LoraTarget`]) and Phi-3's fused projections, merged into the fused weight before the
/// decoder splits it.
const KINDS: [&str; 10] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
    "lm_head",
];

/// The way out for adapters that are more than LoRA on linear layers.
const MERGE_WITH_PEFT: &str = "Merge it into its base with PEFT \
(`PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(out)`) and pass \
the merged folder instead";

/// What a model's adapter is, for `inspect`, the app and run manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// The adapter folder.
    pub dir: PathBuf,
    /// The base model's spec: `--adapter-base`, else `base_model_name_or_path` (a path relative
    /// to the adapter folder when it exists there).
    pub base: String,
    /// The fingerprint of the base checkpoint alone (the model's own covers the adapter too).
    pub base_fingerprint: String,
    /// `r`, the rank of the layers that `rank_pattern` does not name.
    pub rank: usize,
    /// `lora_alpha`, α of the layers that `alpha_pattern` does not name.
    pub alpha: f64,
    /// rsLoRA: the update is scaled by α/√r instead of α/r.
    pub rslora: bool,
    /// The kinds of layer the adapter changes (`q_proj`, …, `lm_head`), in model order.
    pub target_modules: Vec<String>,
}

impl AdapterInfo {
    /// One line: "LoRA adapter on BASE (rank 8, α 16, rsLoRA; q_proj, v_proj)".
    pub fn describe(&self) -> String {
        format!(
            "LoRA adapter on {} (rank {}, α {}{}; {})",
            self.base,
            self.rank,
            self.alpha,
            if self.rslora { ", rsLoRA" } else { "" },
            self.target_modules.join(", ")
        )
    }
}

/// A PEFT LoRA adapter folder, its configuration and tensor names checked; the weights are read
/// when they are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// The adapter folder.
    pub dir: PathBuf,
    /// `base_model_name_or_path`: a Hub id or a path, when the configuration names one.
    pub base: Option<String>,
    /// `r`, the rank of the layers that `rank_pattern` does not name.
    pub rank: usize,
    /// `lora_alpha`, α of the layers that `alpha_pattern` does not name.
    pub alpha: f64,
    /// rsLoRA: scale α/√r instead of α/r.
    pub rslora: bool,
    modules: Vec<Module>,
}

/// One adapted linear layer.
#[derive(Debug, Clone, PartialEq)]
struct Module {
    /// Its name in the model: `model.layers.0.self_attn.q_proj`, …, or `lm_head`.
    name: String,
    /// PEFT's name of its kind, one of [`KINDS`].
    kind: &'static str,
    /// A is (rank, inputs), B is (outputs, rank).
    rank: usize,
    inputs: usize,
    outputs: usize,
    /// s of W' = W + s·B·A.
    scale: f64,
    /// The adapter also stores the layer's base weight (PEFT does for `lm_head`).
    base_copy: bool,
}

impl Module {
    /// The name of one of its tensors in the adapter file (`lora_A.weight`, …).
    fn tensor(&self, part: &str) -> String {
        format!("{PREFIX}{}.{part}", self.name)
    }
}

/// Whether `dir` holds a PEFT adapter.
pub fn is_adapter(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

impl LoraAdapter {
    /// Read and check the adapter in `dir`: its configuration, and the names and shapes of its
    /// tensors (not yet their values).
    pub fn open(dir: &Path) -> Result<Self> {
        let settings = Settings::read(&dir.join(CONFIG_FILE))?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            let fix = if dir.join("adapter_model.bin").is_file() {
                "circuitdiff reads safetensors only: save the adapter again with PEFT's \
                 save_pretrained (safe_serialization=True, the default)"
            } else {
                "PEFT's save_pretrained writes it beside adapter_config.json: copy the whole \
                 adapter folder"
            };
            return Err(ModelError::Missing {
                path: weights,
                what: WEIGHTS_FILE.into(),
                fix: fix.into(),
            });
        }
        let store = TensorStore::from_safetensors(
            std::slice::from_ref(&weights),
            &weights,
            DType::F32,
            &Device::Cpu,
        )?;
        let modules = modules(&weights, &store, &settings)?;
        Ok(Self {
            dir: dir.to_owned(),
            base: settings.base,
            rank: settings.rank,
            alpha: settings.alpha,
            rslora: settings.rslora,
            modules,
        })
    }

    /// The adapter's files: configuration and weights.
    pub fn files(&self) -> [PathBuf; 2] {
        [self.dir.join(CONFIG_FILE), self.dir.join(WEIGHTS_FILE)]
    }

    /// The adapter folder when it holds a `tokenizer.json` (TRL saves the tokenizer there).
    pub fn tokenizer_dir(&self) -> Option<&Path> {
        self.dir
            .join("tokenizer.json")
            .is_file()
            .then_some(self.dir.as_path())
    }

    /// What the adapter is, on the base `base` whose fingerprint is `base_fingerprint`.
    pub fn info(&self, base: &str, base_fingerprint: String) -> AdapterInfo {
        let target_modules = KINDS
            .into_iter()
            .filter(|&k| self.modules.iter().any(|m| m.kind == k))
            .map(str::to_owned)
            .collect();
        AdapterInfo {
            dir: self.dir.clone(),
            base: base.to_owned(),
            base_fingerprint,
            rank: self.rank,
            alpha: self.alpha,
            rslora: self.rslora,
            target_modules,
        }
    }

    /// Check the adapter against its base's configuration: every adapted layer is one of the
    /// base's, with the inputs and outputs of A and B.
    pub fn check(&self, cfg: &ModelConfig) -> Result<()> {
        let shapes: HashMap<String, Vec<usize>> = cfg.tensor_shapes().into_iter().collect();
        let weights = self.dir.join(WEIGHTS_FILE);
        for m in &self.modules {
            let want = if m.kind == "lm_head" {
                vec![cfg.vocab_size, cfg.hidden_size]
            } else {
                let Some(shape) = shapes.get(&format!("{}.weight", m.name)) else {
                    let routed = cfg.moe.is_some() && m.name.contains(".mlp.");
                    return Err(ModelError::AdapterTensor {
                        path: weights,
                        name: m.tensor("lora_A.weight"),
                        message: if routed {
                            format!(
                                "`{}` is the MLP of a layer that routes to experts; LoRA inside \
                                 a mixture of experts is not supported (only the attention \
                                 projections and lm_head)",
                                m.name
                            )
                        } else {
                            format!(
                                "the base model has no layer `{}` (it has {} layers); the adapter \
                             belongs to another model",
                                m.name, cfg.num_layers
                            )
                        },
                    });
                };
                shape.clone()
            };
            if want != [m.outputs, m.inputs] {
                return Err(ModelError::AdapterTensor {
                    path: weights,
                    name: m.tensor("lora_A.weight"),
                    message: format!(
                        "the adapter changes `{}` as a {}×{} layer (out × in), but the base \
                         model's is {}×{}; the adapter was trained on another base model",
                        m.name, m.outputs, m.inputs, want[0], want[1]
                    ),
                });
            }
        }
        Ok(())
    }

    /// Merge the adapter into the base weights in `store`: each adapted weight is replaced by
    /// W + s·B·A, computed in f32 (f64 when the store's dtype is f64) and converted to the
    /// store's dtype. A tied output layer gets its own merged weight (the embeddings stay as
    /// they are, as in the adapter's own forward pass).
    pub fn merge(&self, cfg: &ModelConfig, store: &mut TensorStore) -> Result<()> {
        self.check(cfg)?;
        let weights = self.dir.join(WEIGHTS_FILE);
        let lora = TensorStore::from_safetensors(
            std::slice::from_ref(&weights),
            &weights,
            DType::F32,
            &Device::Cpu,
        )?;
        let dtype = if store.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        for m in &self.modules {
            let target = format!("{}.weight", m.name);
            let source = if m.kind == "lm_head" && !store.contains(&target) {
                "model.embed_tokens.weight"
            } else {
                target.as_str()
            };
            let base = store.read(source)?.to_device(&Device::Cpu)?;
            if m.base_copy {
                check_copy(&weights, &m.tensor("base_layer.weight"), &lora, &base)?;
            }
            let [a, b] = ["lora_A.weight", "lora_B.weight"].map(|part| {
                let t = lora.read(&m.tensor(part))?.to_dtype(dtype)?;
                match first_unusable(&t)? {
                    Some(value) => Err(ModelError::AdapterTensor {
                        path: weights.clone(),
                        name: m.tensor(part),
                        message: format!(
                            "holds {value}: the adapter file is damaged or its training diverged"
                        ),
                    }),
                    None => Ok(t),
                }
            });
            let (a, b) = (a?, b?);
            let merged = (base.to_dtype(dtype)? + (b.matmul(&a)? * m.scale)?)?;
            let merged = merged.to_dtype(store.dtype())?;
            if let Some(value) = first_unusable(&merged)? {
                return Err(ModelError::AdapterTensor {
                    path: weights,
                    name: m.tensor("lora_B.weight"),
                    message: format!(
                        "merged into `{target}` (W + s·B·A with s = {:e}) it gives a weight of \
                         {value} in {}; the forward pass would overflow: check lora_alpha and \
                         the adapter's training",
                        m.scale,
                        store.dtype().as_str()
                    ),
                });
            }
            store.put(&target, merged, &weights);
        }
        Ok(())
    }
}

/// The largest weight magnitude a merged layer may have: about √(f32::MAX), so that the product
/// of two projections of normalized activations (q·k, gate·up) cannot overflow f32.
const LARGEST_WEIGHT: f64 = 1.8e19;

/// The first value of `t` that is NaN, infinite or beyond [`LARGEST_WEIGHT`], read 1,024 rows at
/// a time; `None` when every value is usable.
fn first_unusable(t: &Tensor) -> Result<Option<f64>> {
    const ROWS: usize = 1024;
    let rows = t.dim(0)?;
    for start in (0..rows).step_by(ROWS) {
        let chunk = t.narrow(0, start, ROWS.min(rows - start))?;
        let values = chunk
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        if let Some(&v) = values
            .iter()
            .find(|v| !v.is_finite() || v.abs() > LARGEST_WEIGHT)
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// What a tensor of an adapter file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    A,
    B,
    /// A copy of the layer's base weight.
    BaseCopy,
}

/// The layer and the part a tensor name stands for; tensors of what circuitdiff does not merge
/// are refused.
fn classify<'a>(path: &Path, name: &'a str) -> Result<(&'a str, Part)> {
    let unsupported = |what: &str| ModelError::AdapterUnsupported {
        path: path.to_owned(),
        what: format!("tensor `{name}` is {what}"),
        fix: MERGE_WITH_PEFT.into(),
    };
    let unknown = |message: &str| ModelError::AdapterTensor {
        path: path.to_owned(),
        name: name.to_owned(),
        message: message.into(),
    };
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Err(unknown(
            "not a tensor of a PEFT adapter (its name does not start with `base_model.model.`); \
             save the adapter with PEFT's save_pretrained",
        ));
    };
    for (suffix, part) in [
        (".lora_A.weight", Part::A),
        (".lora_B.weight", Part::B),
        (".base_layer.weight", Part::BaseCopy),
    ] {
        if let Some(module) = rest.strip_suffix(suffix) {
            return Ok((module, part));
        }
    }
    if rest.ends_with(".lora_magnitude_vector") {
        Err(unsupported("a DoRA magnitude (`use_dora`)"))
    } else if rest.contains(".lora_embedding_") {
        Err(unsupported("part of an embedding adapter"))
    } else if rest.ends_with(".lora_B.bias") {
        Err(unsupported("a bias of lora_B (`lora_bias`)"))
    } else if rest.contains(".lora_") {
        Err(unknown(
            "a LoRA tensor of a kind circuitdiff does not know (it merges lora_A.weight and \
             lora_B.weight)",
        ))
    } else if rest.ends_with(".weight") || rest.ends_with(".bias") {
        Err(unsupported(
            "a full copy of a trained module (`modules_to_save`)",
        ))
    } else {
        Err(unknown(
            "not a LoRA tensor (lora_A.weight or lora_B.weight)",
        ))
    }
}

/// The kind of a linear layer `model.layers.N.self_attn.{q,k,v,qkv,o}_proj`,
/// `model.layers.N.mlp.{gate,up,gate_up,down}_proj` or `lm_head`; `None` for any other name.
fn linear_kind(module: &str) -> Option<&'static str> {
    let kind = if module == "lm_head" {
        module
    } else {
        let rest = module.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match rest.split_once('.')? {
            ("self_attn", k @ ("q_proj" | "k_proj" | "v_proj" | "qkv_proj" | "o_proj")) => k,
            ("mlp", k @ ("gate_proj" | "up_proj" | "gate_up_proj" | "down_proj")) => k,
            _ => return None,
        }
    };
    KINDS.into_iter().find(|&k| k == kind)
}

/// The tensors of one layer, by part.
#[derive(Default)]
struct Parts {
    a: Option<Vec<usize>>,
    b: Option<Vec<usize>>,
    base_copy: bool,
}

/// The adapted layers of the adapter file `path` (tensors in `store`), each with its rank and
/// scale from `settings`.
fn modules(path: &Path, store: &TensorStore, settings: &Settings) -> Result<Vec<Module>> {
    let mut tensors: Vec<(&str, &[usize])> = store.shapes().collect();
    tensors.sort_unstable();
    let mut classified = Vec::with_capacity(tensors.len());
    for &(name, shape) in &tensors {
        classified.push((name, classify(path, name)?, shape));
    }
    let mut layers: BTreeMap<&str, Parts> = BTreeMap::new();
    for (_, (module, part), shape) in classified {
        let parts = layers.entry(module).or_default();
        match part {
            Part::A => parts.a = Some(shape.to_vec()),
            Part::B => parts.b = Some(shape.to_vec()),
            Part::BaseCopy => parts.base_copy = true,
        }
    }
    if layers.is_empty() {
        return Err(ModelError::Missing {
            path: path.to_owned(),
            what: "LoRA tensors (lora_A.weight, lora_B.weight)".into(),
            fix: "the file holds no adapter: save the adapter again with PEFT's save_pretrained"
                .into(),
        });
    }
    layers
        .into_iter()
        .map(|(name, parts)| module(path, name, &parts, settings))
        .collect()
}

/// One adapted layer, its tensors' shapes checked against each other and against the rank the
/// configuration gives it.
fn module(path: &Path, name: &str, parts: &Parts, settings: &Settings) -> Result<Module> {
    let kind = linear_kind(name).ok_or_else(|| ModelError::AdapterTarget {
        path: path.to_owned(),
        module: name.to_owned(),
    })?;
    let tensor = |part: &str| format!("{PREFIX}{name}.{part}");
    let bad = |part: &str, message: String| ModelError::AdapterTensor {
        path: path.to_owned(),
        name: tensor(part),
        message,
    };
    let incomplete = |part: &str| {
        bad(
            part,
            "missing: the adapter file is incomplete; save the adapter again".into(),
        )
    };
    let a = parts
        .a
        .as_deref()
        .ok_or_else(|| incomplete("lora_A.weight"))?;
    let b = parts
        .b
        .as_deref()
        .ok_or_else(|| incomplete("lora_B.weight"))?;
    let (&[rank, inputs], &[outputs, rank_b]) = (a, b) else {
        return Err(bad(
            "lora_A.weight",
            format!("lora_A has shape {a:?} and lora_B {b:?}; both must be matrices"),
        ));
    };
    if rank != rank_b {
        return Err(bad(
            "lora_B.weight",
            format!("lora_B has rank {rank_b} but lora_A {rank}; the file is corrupt"),
        ));
    }
    let expected = settings.rank_of(name);
    if rank != expected {
        return Err(ModelError::AdapterRank {
            path: path.to_owned(),
            name: tensor("lora_A.weight"),
            module: name.to_owned(),
            found: rank,
            expected,
        });
    }
    let alpha = settings.alpha_of(name);
    let r = rank as f64;
    let scale = if settings.rslora {
        alpha / r.sqrt()
    } else {
        alpha / r
    };
    Ok(Module {
        name: name.to_owned(),
        kind,
        rank,
        inputs,
        outputs,
        scale,
        base_copy: parts.base_copy,
    })
}

/// Refuse an adapter's copy of a base weight (PEFT saves one of `lm_head`) that is not the
/// base's own up to the rounding of the two dtypes: the adapter was trained with other
/// embeddings (a resized or retrained vocabulary).
fn check_copy(path: &Path, name: &str, lora: &TensorStore, base: &Tensor) -> Result<()> {
    const ROWS: usize = 1024;
    let copy = lora.read(name)?;
    let differs = |message: String| ModelError::AdapterUnsupported {
        path: path.to_owned(),
        what: format!("tensor `{name}` {message}"),
        fix: MERGE_WITH_PEFT.into(),
    };
    if copy.dims() != base.dims() {
        return Err(differs(format!(
            "has shape {:?}, the base model's layer {:?} (a resized vocabulary)",
            copy.dims(),
            base.dims()
        )));
    }
    let eps = |d: DType| match d {
        DType::BF16 => 2f64.powi(-8),
        DType::F16 => 2f64.powi(-10),
        DType::F32 => 2f64.powi(-23),
        _ => 0.0,
    };
    let rel = eps(copy.dtype()).max(eps(base.dtype()));
    let rows = base.dim(0)?;
    for start in (0..rows).step_by(ROWS) {
        let len = ROWS.min(rows - start);
        let b = base.narrow(0, start, len)?.to_dtype(DType::F64)?;
        let c = copy.narrow(0, start, len)?.to_dtype(DType::F64)?;
        let bound = ((b.abs()? * rel)? + 2f64.powi(-24))?;
        let excess = ((c - &b)?.abs()? - bound)?.max_all()?.to_scalar::<f64>()?;
        if excess > 0.0 {
            return Err(differs(
                "differs from the base model's layer: the adapter was trained with other \
                 weights there (resized or trained embeddings)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// `adapter_config.json`, checked: plain LoRA, with its base, rank, α and per-layer patterns.
struct Settings {
    base: Option<String>,
    rank: usize,
    alpha: f64,
    rslora: bool,
    rank_pattern: Vec<(Pattern, usize)>,
    alpha_pattern: Vec<(Pattern, f64)>,
}

/// `rank_pattern` and `alpha_pattern` with their keys in file order (PEFT takes the first key
/// that matches).
#[derive(Deserialize)]
struct OrderedPatterns {
    #[serde(default)]
    rank_pattern: Option<Entries>,
    #[serde(default)]
    alpha_pattern: Option<Entries>,
}

impl Settings {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json_err = |source| ModelError::Json {
            path: path.to_owned(),
            source,
        };
        let json: Value = serde_json::from_str(&text).map_err(json_err)?;
        let Some(cfg) = json.as_object() else {
            return Err(ModelError::config(path, "(top level)", "not a JSON object"));
        };
        refuse_variants(path, cfg)?;
        check_targets(path, cfg.get("target_modules"))?;
        let rank = cfg
            .get("r")
            .and_then(Value::as_u64)
            .filter(|&r| r >= 1)
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| ModelError::config(path, "r", "expected a whole number ≥ 1"))?;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .filter(|a| a.is_finite())
            .ok_or_else(|| ModelError::config(path, "lora_alpha", "expected a finite number"))?;
        let rslora = match cfg.get("use_rslora") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ModelError::config(
                    path,
                    "use_rslora",
                    "expected true or false",
                ))
            }
        };
        let base = match cfg.get("base_model_name_or_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ModelError::config(
                    path,
                    "base_model_name_or_path",
                    "expected a Hub id or a path",
                ))
            }
        };
        let ordered: OrderedPatterns = serde_json::from_str(&text).map_err(json_err)?;
        let rank_pattern = patterns(path, "rank_pattern", ordered.rank_pattern, |v| {
            v.as_u64()
                .filter(|&r| r >= 1)
                .and_then(|r| usize::try_from(r).ok())
        })?;
        let alpha_pattern = patterns(path, "alpha_pattern", ordered.alpha_pattern, |v| {
            v.as_f64().filter(|a| a.is_finite())
        })?;
        Ok(Self {
            base,
            rank,
            alpha,
            rslora,
            rank_pattern,
            alpha_pattern,
        })
    }

    /// The rank PEFT gives the layer `module`: the first `rank_pattern` key that matches, else
    /// `r`.
    fn rank_of(&self, module: &str) -> usize {
        first_match(&self.rank_pattern, module).unwrap_or(self.rank)
    }

    /// α of the layer `module`: the first `alpha_pattern` key that matches, else `lora_alpha`.
    fn alpha_of(&self, module: &str) -> f64 {
        first_match(&self.alpha_pattern, module).unwrap_or(self.alpha)
    }
}

fn first_match<T: Copy>(patterns: &[(Pattern, T)], module: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(p, _)| p.matches(module))
        .map(|&(_, v)| v)
}

/// The entries of a pattern map, each key parsed and each value read by `value`.
fn patterns<T>(
    path: &Path,
    field: &str,
    entries: Option<Entries>,
    value: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<(Pattern, T)>> {
    let Some(Entries(entries)) = entries else {
        return Ok(Vec::new());
    };
    entries
        .into_iter()
        .map(|(key, v)| {
            let pattern = Pattern::parse(&key).ok_or_else(|| ModelError::AdapterUnsupported {
                path: path.to_owned(),
                what: format!("`{field}` key `{key}` is a regular expression beyond layer names"),
                fix: "Write the key as a layer name or a dotted suffix of one (`q_proj`, \
                      `layers.3.self_attn.q_proj`), optionally starting with `^`"
                    .into(),
            })?;
            let v = value(&v).ok_or_else(|| {
                ModelError::config(path, format!("{field}.{key}"), format!("{v} is not valid"))
            })?;
            Ok((pattern, v))
        })
        .collect()
}

/// Refuse the settings of adapters that are more than LoRA on linear layers.
fn refuse_variants(path: &Path, cfg: &serde_json::Map<String, Value>) -> Result<()> {
    const VARIANTS: [(&str, &str); 11] = [
        ("use_dora", "DoRA (`use_dora`)"),
        (
            "fan_in_fan_out",
            "`fan_in_fan_out` (weights stored transposed, as in Conv1D layers)",
        ),
        ("lora_bias", "a bias on lora_B (`lora_bias`)"),
        (
            "modules_to_save",
            "full copies of trained modules (`modules_to_save`)",
        ),
        (
            "trainable_token_indices",
            "trained embedding rows (`trainable_token_indices`)",
        ),
        (
            "layer_replication",
            "replicated layers (`layer_replication`)",
        ),
        (
            "target_parameters",
            "adapters on parameters rather than linear layers (`target_parameters`)",
        ),
        (
            "alora_invocation_tokens",
            "activated LoRA (`alora_invocation_tokens`)",
        ),
        ("use_qalora", "QA-LoRA (`use_qalora`)"),
        ("use_bdlora", "block-diagonal LoRA (`use_bdlora`)"),
        ("arrow_config", "Arrow routing (`arrow_config`)"),
    ];
    const NEW_BASE: [&str; 5] = ["pissa", "corda", "olora", "loftq", "lora_ga"];
    let refuse = |what: String, fix: &str| {
        Err(ModelError::AdapterUnsupported {
            path: path.to_owned(),
            what,
            fix: fix.into(),
        })
    };
    match cfg.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(t) => return refuse(format!("`peft_type` is {t}, not LORA"), MERGE_WITH_PEFT),
        None => return refuse("no `peft_type`".into(), MERGE_WITH_PEFT),
    }
    if let Some((_, what)) = VARIANTS
        .iter()
        .find(|(key, _)| cfg.get(*key).is_some_and(is_set))
    {
        return refuse((*what).into(), MERGE_WITH_PEFT);
    }
    match cfg.get("bias") {
        None | Some(Value::Null) => {}
        Some(Value::String(b)) if b == "none" => {}
        Some(b) => return refuse(format!("trained biases (`bias` is {b})"), MERGE_WITH_PEFT),
    }
    if let Some(Value::String(init)) = cfg.get("init_lora_weights") {
        let lower = init.to_lowercase();
        if NEW_BASE.iter().any(|p| lower.starts_with(p)) {
            return refuse(
                format!(
                    "`init_lora_weights` is \"{init}\": the adapter applies to its base with the \
                     initial adapter taken out, not to the base itself"
                ),
                "Convert it into a plain LoRA adapter of the base with PEFT \
                 (`save_pretrained(out, path_initial_model_for_weight_conversion=…)`)",
            );
        }
    }
    Ok(())
}

/// Whether a configuration value turns its option on.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(_) => true,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Refuse `target_modules` that name anything but the families' linear layers. A string
/// (`all-linear`, or a regular expression) is left to the tensors, which say what it matched.
fn check_targets(path: &Path, targets: Option<&Value>) -> Result<()> {
    let names = match targets {
        None | Some(Value::Null | Value::String(_)) => return Ok(()),
        Some(Value::Array(names)) => names,
        Some(_) => {
            return Err(ModelError::config(
                path,
                "target_modules",
                "expected a list of layer names or a regular expression",
            ))
        }
    };
    for name in names {
        let Some(name) = name.as_str() else {
            return Err(ModelError::config(
                path,
                "target_modules",
                format!("{name} is not a layer name"),
            ));
        };
        let kind = name.rsplit('.').next().unwrap_or(name);
        if kind == "embed_tokens" {
            return Err(ModelError::AdapterUnsupported {
                path: path.to_owned(),
                what: "an embedding adapter (target module `embed_tokens`)".into(),
                fix: MERGE_WITH_PEFT.into(),
            });
        }
        if !KINDS.contains(&kind) {
            return Err(ModelError::AdapterTarget {
                path: path.to_owned(),
                module: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// A key of `rank_pattern` or `alpha_pattern`. PEFT matches the regular expression
/// `(.*\.)?(KEY)$` at the start of a layer's name; keys made of literal characters, `.` (any
/// character), `\.` (a dot) and a leading `^` are matched here exactly that way, and
/// [`Pattern::parse`] refuses any other expression.
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    /// `^`: the key must match the whole name.
    anchored: bool,
    /// The characters to match; `None` matches any character.
    chars: Vec<Option<char>>,
}

impl Pattern {
    fn parse(key: &str) -> Option<Self> {
        let (anchored, body) = match key.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let body = body.strip_suffix('$').unwrap_or(body);
        let mut chars = Vec::with_capacity(body.len());
        let mut it = body.chars();
        while let Some(c) = it.next() {
            chars.push(match c {
                '\\' => match it.next() {
                    Some('.') => Some('.'),
                    _ => return None,
                },
                '.' => None,
                '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                    return None
                }
                c => Some(c),
            });
        }
        (!chars.is_empty()).then_some(Self { anchored, chars })
    }

    /// Whether PEFT's `re.match(rf"(.*\.)?({key})$", name)` matches.
    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let Some(split) = name.len().checked_sub(self.chars.len()) else {
            return false;
        };
        let (prefix, tail) = name.split_at(split);
        let body = tail
            .iter()
            .zip(&self.chars)
            .all(|(c, p)| p.is_none_or(|p| p == *c) && *c != '\n');
        let prefix_ok = if self.anchored {
            prefix.is_empty()
        } else {
            prefix.is_empty() || (prefix.last() == Some(&'.') && !prefix.contains(&'\n'))
        };
        body && prefix_ok
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn patterns_match_as_peft_does() {
        let p = |k: &str| Pattern::parse(k).unwrap();
        let q1 = "model.layers.1.self_attn.q_proj";
        assert!(p("q_proj").matches(q1));
        assert!(p("layers.1.self_attn.q_proj").matches(q1));
        assert!(p(q1).matches(q1));
        assert!(p("^model.layers.1.self_attn.q_proj").matches(q1));
        assert!(!p("^layers.1.self_attn.q_proj").matches(q1));
        assert!(!p("proj").matches(q1), "a key matches whole name parts");
        assert!(!p("layers.1.self_attn.q_proj").matches("model.layers.11.self_attn.q_proj"));
        assert!(p(r"layers\.1\.self_attn\.q_proj").matches(q1));
        assert!(!p(r"layers\.1\.self_attn\.q_proj").matches("model.layers_1.self_attn.q_proj"));
        assert!(p("1.self_attn.q_proj").matches(q1));
        assert!(!p("lm_head").matches(q1));
        for bad in ["q_proj|k_proj", ".*q_proj", "layers.[0-3].mlp", r"\d", ""] {
            assert!(Pattern::parse(bad).is_none(), "{bad}");
        }
    }
}
