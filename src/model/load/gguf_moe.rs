//! Mixture-of-experts MLPs in GGUF files, under the names llama.cpp's `convert_hf_to_gguf.py`
//! writes for `qwen3moe`, `olmoe` and Mixtral (architecture `llama` with experts): the router
//! `blk.N.ffn_gate_inp` (experts × d), the experts' projections stacked into 3-D tensors
//! `blk.N.ffn_gate_exps` and `ffn_up_exps` (experts × width × d; Mixtral's `w1` and `w3`) and
//! `ffn_down_exps` (experts × d × width; `w2`), and the metadata `<arch>.expert_count`,
//! `<arch>.expert_used_count` and, for Qwen3-MoE, `<arch>.expert_feed_forward_length`.
//!
//! The routing is llama.cpp's for these architectures: the chosen weights renormalised for
//! Qwen3-MoE and Mixtral, not for OLMoE. Metadata that asks for something else (shared experts,
//! sigmoid gating, scaled or grouped routing, another normalisation) is refused naming its key,
//! and so are tensors that hold another number of experts than `<arch>.expert_count`.

use super::config::Family;
use super::limits::{in_range, MAX_INTERMEDIATE};
use super::moe::{ExpertNames, MoeConfig, MAX_EXPERTS};
use super::weights::Stored;
use crate::model::error::{ModelError, Result};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A tensor of a routed MLP, by its GGUF name.
enum Part<'a> {
    /// `blk.N.ffn_gate_inp.weight`.
    Router { layer: &'a str },
    /// `blk.N.ffn_{gate,up,down}_exps.weight`, index 0, 1, 2 of [`ExpertNames::projections`].
    Stacked { layer: &'a str, projection: usize },
}

impl<'a> Part<'a> {
    fn of(gguf: &'a str) -> Option<Self> {
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let projection = match rest {
            "ffn_gate_inp.weight" => return Some(Self::Router { layer }),
            "ffn_gate_exps.weight" => 0,
            "ffn_up_exps.weight" => 1,
            "ffn_down_exps.weight" => 2,
            _ => return None,
        };
        Some(Self::Stacked { layer, projection })
    }

    /// The Hugging Face names it stands for: the router's, or each of `experts` experts'.
    fn hf_names(&self, moe: &MoeConfig, experts: usize) -> Vec<String> {
        let m = moe.names.module();
        match *self {
            Self::Router { layer } => vec![format!("model.layers.{layer}.{m}.gate.weight")],
            Self::Stacked { layer, projection } => {
                let p = moe.names.projections()[projection];
                (0..experts)
                    .map(|e| format!("model.layers.{layer}.{m}.experts.{e}.{p}.weight"))
                    .collect()
            }
        }
    }
}

/// The checked entries of GGUF tensor `name` of shape `dims` if it belongs to a routed MLP:
/// the router as it is, a stacked tensor as one 2-D tensor per expert.
pub(super) fn stored<'a>(
    name: &'a str,
    dims: &'a [usize],
    moe: &MoeConfig,
    file: &'a Path,
) -> Option<Vec<Stored<'a>>> {
    let part = Part::of(name)?;
    let (experts, shape) = match part {
        Part::Router { .. } => (1, dims),
        Part::Stacked { .. } => (dims.first().copied().unwrap_or(0), dims.get(1..)?),
    };
    Some(
        part.hf_names(moe, experts)
            .into_iter()
            .map(|hf| Stored {
                hf_name: Some(hf),
                name,
                shape,
                file,
            })
            .collect(),
    )
}

/// Refusals: a metadata key whose value (when present) must pass the test, and why.
type Refusal = (&'static str, &'static str, fn(&Value) -> bool);

/// What a GGUF file's header says, read with its path at hand for errors.
pub(super) struct Header<'a> {
    pub meta: &'a HashMap<String, Value>,
    pub tensors: &'a HashMap<String, TensorInfo>,
    pub arch: &'a str,
    pub path: &'a Path,
}

impl Header<'_> {
    fn meta(&self, key: &str) -> Option<&Value> {
        self.meta.get(key)
    }

    /// `<arch>.<key>`, a non-negative integer, when present.
    fn arch_u(&self, key: &str) -> Result<Option<u64>> {
        let full = format!("{}.{key}", self.arch);
        let Some(v) = self.meta(&full) else {
            return Ok(None);
        };
        v.to_u64()
            .ok()
            .or_else(|| v.to_u32().ok().map(u64::from))
            .or_else(|| v.to_i32().ok().and_then(|x| u64::try_from(x).ok()))
            .map(Some)
            .ok_or_else(|| ModelError::config(self.path, full, "not a non-negative integer"))
    }

    fn arch_req(&self, key: &str) -> Result<u64> {
        self.arch_u(key)?.ok_or_else(|| {
            let full = format!("{}.{key}", self.arch);
            ModelError::config(self.path, full, "missing from the GGUF metadata")
        })
    }

    /// Whether a `llama` file holds Mixtral's experts.
    pub(super) fn has_experts(&self) -> Result<bool> {
        Ok(self.arch_u("expert_count")?.is_some_and(|n| n > 0))
    }

    /// The routed MLPs of a file of `family` with `layers` layers whose dense MLPs are
    /// `intermediate` wide; `None` for a family without experts. A layer routes where its
    /// router is stored.
    pub(super) fn moe(
        &self,
        family: Family,
        layers: usize,
        intermediate: usize,
    ) -> Result<Option<MoeConfig>> {
        let key = |k: &str| format!("{}.{k}", self.arch);
        if !family.routed() {
            return Ok(None);
        }
        self.refuse_unimplemented()?;
        let n = self.arch_req("expert_count")?;
        let num_experts = in_range(self.path, &key("expert_count"), n, 1, MAX_EXPERTS)?;
        let k = self.arch_req("expert_used_count")?;
        let top_k = in_range(self.path, &key("expert_used_count"), k, 1, num_experts)?;
        let (expert_intermediate_size, norm_topk_prob, names) = match family {
            Family::Qwen3Moe => {
                let field = key("expert_feed_forward_length");
                let w = self.arch_req("expert_feed_forward_length")?;
                let w = in_range(self.path, &field, w, 1, MAX_INTERMEDIATE)?;
                (w, true, ExpertNames::Mlp)
            }
            Family::Olmoe => (intermediate, false, ExpertNames::Mlp),
            _ => (intermediate, true, ExpertNames::BlockSparse),
        };
        let norm_key = key("expert_weights_norm");
        if let Some(v) = self.meta(&norm_key) {
            if v.to_bool().ok() != Some(norm_topk_prob) {
                return Err(ModelError::config(
                    self.path,
                    norm_key,
                    format!(
                        "{v:?}: llama.cpp's {} renormalises the chosen experts' weights: {}",
                        self.arch,
                        if norm_topk_prob { "always" } else { "never" }
                    ),
                ));
            }
        }
        let routed = (0..layers)
            .map(|l| {
                let router = format!("blk.{l}.ffn_gate_inp.weight");
                self.tensors.contains_key(&router)
            })
            .collect();
        Ok(Some(MoeConfig {
            num_experts,
            top_k,
            expert_intermediate_size,
            norm_topk_prob,
            routed,
            names,
        }))
    }

    /// Refuse the metadata of routing features not implemented here.
    fn refuse_unimplemented(&self) -> Result<()> {
        let zero = |v: &Value| v.to_u32().ok() == Some(0) || v.to_u64().ok() == Some(0);
        let checks: [Refusal; 6] = [
            (
                "expert_shared_count",
                "shared experts are not supported",
                zero,
            ),
            (
                "expert_shared_feed_forward_length",
                "shared experts are not supported",
                zero,
            ),
            (
                "expert_gating_func",
                "only softmax gating (1) is supported",
                |v| v.to_u32().ok() == Some(1),
            ),
            ("expert_weights_scale", "only 1.0 is supported", |v| {
                v.to_f32().ok() == Some(1.0)
            }),
            (
                "expert_group_count",
                "grouped top-k routing is not supported",
                |v| v.to_u32().is_ok_and(|n| n <= 1),
            ),
            (
                "expert_group_used_count",
                "grouped top-k routing is not supported",
                |v| v.to_u32().is_ok_and(|n| n <= 1),
            ),
        ];
        for (k, why, fine) in checks {
            let full = format!("{}.{k}", self.arch);
            if let Some(v) = self.meta(&full) {
                if !fine(v) {
                    return Err(ModelError::config(self.path, full, format!("{v:?}: {why}")));
                }
            }
        }
        Ok(())
    }

    /// Refuse a router or stacked expert tensor that holds another number of experts than the
    /// metadata's `<arch>.expert_count`.
    pub(super) fn check_expert_counts(&self, moe: &MoeConfig) -> Result<()> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            if Part::of(name).is_none() {
                continue;
            }
            let dims = self.tensors[name].shape.dims();
            let held = dims.first().copied().unwrap_or(0);
            if held != moe.num_experts {
                return Err(ModelError::config(
                    self.path,
                    format!("{}.expert_count", self.arch),
                    format!(
                        "{} experts, but `{name}` (shape {dims:?}) holds {held}: the expert \
                         count does not match the weights",
                        moe.num_experts
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The routers and every expert's projections of the file `path` (read as `content`),
/// dequantised to f32, under their Hugging Face names.
pub(super) fn expert_tensors(
    content: &Content,
    file: &mut std::fs::File,
    path: &Path,
    moe: &MoeConfig,
) -> Result<Vec<(String, Tensor)>> {
    let names: Vec<&String> = content
        .tensor_infos
        .keys()
        .filter(|n| Part::of(n).is_some())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let bad = |e: candle_core::Error| ModelError::Weights {
            path: PathBuf::from(path),
            message: format!("tensor `{name}`: {e}"),
        };
        let t = content
            .tensor(file, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(bad)?;
        match Part::of(name) {
            Some(part @ Part::Router { .. }) => {
                out.extend(part.hf_names(moe, 1).into_iter().map(|n| (n, t.clone())));
            }
            Some(part @ Part::Stacked { .. }) => {
                for (e, hf) in part.hf_names(moe, moe.num_experts).into_iter().enumerate() {
                    out.push((hf, t.get(e)?.contiguous()?));
                }
            }
            None => {}
        }
    }
    Ok(out)
}
