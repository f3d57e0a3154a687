//! The routed mixture-of-experts MLP of Qwen3-MoE, OLMoE and Mixtral as a configuration: how
//! many experts, how many each token uses, whether their weights are renormalised, which layers
//! route, and the names their weights have in a checkpoint.
//!
//! Every family routes the same way (transformers 5): router logits `x·Wᵀ`, a softmax over all
//! experts, the `top_k` largest probabilities, and (Mixtral always, the others where
//! `norm_topk_prob`) those divided by their sum. Settings that would change this forward pass
//! and are not implemented (shared experts, other scoring functions, grouped or biased top-k,
//! clipped projections) are refused naming their field.

use super::limits::{in_range, MAX_INTERMEDIATE};
use crate::model::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Most experts per routed MLP (`num_experts`, `num_local_experts`); published models have at
/// most a few hundred.
pub const MAX_EXPERTS: usize = 4096;

/// How a family's routed MLP is written in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpertNames {
    /// `mlp.gate`, `mlp.experts.N.{gate,up,down}_proj` (Qwen3-MoE, OLMoE).
    Mlp,
    /// `block_sparse_moe.gate`, `block_sparse_moe.experts.N.{w1,w3,w2}` (Mixtral).
    BlockSparse,
}

impl ExpertNames {
    /// The module holding the router and the experts, after `model.layers.N.`.
    pub fn module(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::BlockSparse => "block_sparse_moe",
        }
    }

    /// The names of an expert's gate, up and down projections, after `experts.N.`.
    pub fn projections(self) -> [&'static str; 3] {
        match self {
            Self::Mlp => ["gate_proj", "up_proj", "down_proj"],
            Self::BlockSparse => ["w1", "w3", "w2"],
        }
    }
}

/// A decoder's routed MLPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Experts per routed MLP.
    pub num_experts: usize,
    /// Experts each token uses (`num_experts_per_tok`).
    pub top_k: usize,
    /// Width of each expert's gated MLP.
    pub expert_intermediate_size: usize,
    /// Divide the chosen experts' probabilities by their sum.
    pub norm_topk_prob: bool,
    /// Per layer: whether its MLP routes (else it is the dense MLP of `intermediate_size`).
    pub routed: Vec<bool>,
    /// Where the weights sit in a checkpoint.
    pub names: ExpertNames,
}

impl MoeConfig {
    /// Whether layer `layer` routes its MLP.
    pub fn routes(&self, layer: usize) -> bool {
        self.routed.get(layer).copied().unwrap_or(false)
    }

    /// Every weight of layer `prefix`'s routed MLP (`prefix` = `model.layers.N`) with its shape,
    /// for a residual stream of width `d`: the router, then each expert's gate, up and down.
    pub fn tensor_shapes(&self, prefix: &str, d: usize) -> Vec<(String, Vec<usize>)> {
        let (m, i) = (self.names.module(), self.expert_intermediate_size);
        let [g, u, dn] = self.names.projections();
        let mut out = vec![(
            format!("{prefix}.{m}.gate.weight"),
            vec![self.num_experts, d],
        )];
        for e in 0..self.num_experts {
            let p = format!("{prefix}.{m}.experts.{e}");
            out.push((format!("{p}.{g}.weight"), vec![i, d]));
            out.push((format!("{p}.{u}.weight"), vec![i, d]));
            out.push((format!("{p}.{dn}.weight"), vec![d, i]));
        }
        out
    }

    /// Parameters of one routed MLP for a residual stream of width `d` (saturating).
    pub fn params_per_layer(&self, d: usize) -> usize {
        let e = self.num_experts;
        e.saturating_mul(d)
            .saturating_mul(self.expert_intermediate_size)
            .saturating_mul(3)
            .saturating_add(e.saturating_mul(d))
    }

    /// Elements one token keeps alive in one routed MLP of a pass kept for the backward pass,
    /// for a residual stream of width `d`: the router's logits, their shifted copy, its
    /// exponential and the probabilities (4 per expert); the chosen weights, gathered and
    /// renormalised (3 per choice); per chosen expert its copy of the input, gate, up, their
    /// activation and product (4 per expert unit, as a dense MLP), its output and the output
    /// scaled by its weight (3·d with the input copy); and the concatenated outputs and their
    /// sum into the residual's shape (2·d).
    pub fn activations_per_token(&self, d: usize) -> usize {
        let (k, e, i) = (self.top_k, self.num_experts, self.expert_intermediate_size);
        let per_choice = i
            .saturating_mul(4)
            .saturating_add(d.saturating_mul(3))
            .saturating_add(3);
        e.saturating_mul(4)
            .saturating_add(k.saturating_mul(per_choice))
            .saturating_add(d.saturating_mul(2))
    }

    /// The expert index of a tensor named like an expert's weight of this layout
    /// (`model.layers.N.mlp.experts.E.…`), if it is one.
    pub fn expert_of(&self, name: &str) -> Option<usize> {
        let rest = name.strip_prefix("model.layers.")?;
        let (_, rest) = rest.split_once('.')?;
        let rest = rest.strip_prefix(self.names.module())?;
        let rest = rest.strip_prefix(".experts.")?;
        rest.split_once('.')?.0.parse().ok()
    }

    /// The error for a checkpoint whose experts do not match the expert count, where `name`, a
    /// tensor at fault (extra, missing or of another shape), is a router's or an expert's.
    pub(crate) fn count_mismatch(&self, path: &Path, name: &str) -> Option<ModelError> {
        let router = format!(".{}.gate.weight", self.names.module());
        if self.expert_of(name).is_none() && !name.ends_with(&router) {
            return None;
        }
        let field = match self.names {
            ExpertNames::Mlp => "num_experts",
            ExpertNames::BlockSparse => "num_local_experts",
        };
        Some(ModelError::config(
            path,
            field,
            format!(
                "{} experts per layer, but the weights disagree at `{name}`: the expert count \
                 does not match the weights",
                self.num_experts
            ),
        ))
    }

    /// The routed MLPs of a `config.json` of `family_type` (`qwen3_moe`, `olmoe`, `mixtral`)
    /// with `layers` layers.
    pub(crate) fn from_hf_json(
        json: &Value,
        path: &Path,
        family_type: &str,
        layers: usize,
        intermediate: usize,
    ) -> Result<Self> {
        let f = MoeFields { json, path };
        f.refuse_unimplemented()?;
        let num_experts = f.experts(family_type)?;
        let top_k = f.required("num_experts_per_tok")?;
        let top_k = in_range(path, "num_experts_per_tok", top_k, 1, num_experts)?;
        let (expert_intermediate_size, norm_topk_prob, routed, names) = match family_type {
            "qwen3_moe" => {
                let i = f.required("moe_intermediate_size")?;
                let i = in_range(path, "moe_intermediate_size", i, 1, MAX_INTERMEDIATE)?;
                (
                    i,
                    f.flag("norm_topk_prob")?,
                    f.qwen_routed(layers)?,
                    ExpertNames::Mlp,
                )
            }
            "olmoe" => (
                intermediate,
                f.flag("norm_topk_prob")?,
                vec![true; layers],
                ExpertNames::Mlp,
            ),
            _ => (
                intermediate,
                true,
                vec![true; layers],
                ExpertNames::BlockSparse,
            ),
        };
        Ok(Self {
            num_experts,
            top_k,
            expert_intermediate_size,
            norm_topk_prob,
            routed,
            names,
        })
    }

    /// The fields of a `config.json` that describe the routed MLPs `moe` (none without), for
    /// `family_type`.
    pub fn hf_fields(moe: Option<&Self>, family_type: &str) -> Vec<(String, Value)> {
        let Some(moe) = moe else {
            return Vec::new();
        };
        moe.hf_fields_of(family_type)
    }

    fn hf_fields_of(&self, family_type: &str) -> Vec<(String, Value)> {
        let mut out = vec![("num_experts_per_tok", self.top_k.into())];
        match family_type {
            "qwen3_moe" => {
                let dense: Vec<usize> = (0..self.routed.len())
                    .filter(|&l| !self.routes(l))
                    .collect();
                out.extend([
                    ("num_experts", self.num_experts.into()),
                    (
                        "moe_intermediate_size",
                        self.expert_intermediate_size.into(),
                    ),
                    ("norm_topk_prob", self.norm_topk_prob.into()),
                    ("decoder_sparse_step", 1.into()),
                    ("mlp_only_layers", dense.into()),
                ]);
            }
            "olmoe" => out.extend([
                ("num_experts", self.num_experts.into()),
                ("norm_topk_prob", self.norm_topk_prob.into()),
            ]),
            _ => out.push(("num_local_experts", self.num_experts.into())),
        }
        out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// A field that must be absent or have a value the test accepts, and why.
type Refusal = (&'static str, &'static str, fn(&Value) -> bool);

/// The MoE fields of a `config.json`, read with its path at hand for errors.
struct MoeFields<'a> {
    json: &'a Value,
    path: &'a Path,
}

impl MoeFields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    ModelError::config(self.path, key, "expected a non-negative integer")
                })
            })
            .transpose()
    }

    fn required(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| ModelError::config(self.path, key, "missing"))
    }

    /// A boolean field, false when absent.
    fn flag(&self, key: &str) -> Result<bool> {
        self.get(key).map_or(Ok(false), |v| {
            v.as_bool()
                .ok_or_else(|| ModelError::config(self.path, key, "expected true or false"))
        })
    }

    /// The expert count: `num_experts` (Qwen3-MoE, OLMoE) or `num_local_experts` (Mixtral;
    /// transformers 5 also writes it for Qwen3-MoE); both present must agree.
    fn experts(&self, family_type: &str) -> Result<usize> {
        let (a, b) = (
            self.opt_u64("num_experts")?,
            self.opt_u64("num_local_experts")?,
        );
        let (field, n) = match (a, b) {
            (Some(a), Some(b)) if a != b => {
                return Err(ModelError::config(
                    self.path,
                    "num_local_experts",
                    format!("{b} differs from num_experts {a}"),
                ))
            }
            (Some(a), _) => ("num_experts", a),
            (None, Some(b)) => ("num_local_experts", b),
            (None, None) if family_type == "mixtral" => {
                ("num_local_experts", self.required("num_local_experts")?)
            }
            (None, None) => ("num_experts", self.required("num_experts")?),
        };
        in_range(self.path, field, n, 1, MAX_EXPERTS)
    }

    /// Qwen3-MoE's routed layers: every `decoder_sparse_step`-th (1-based), except
    /// `mlp_only_layers`.
    fn qwen_routed(&self, layers: usize) -> Result<Vec<bool>> {
        let step = self.opt_u64("decoder_sparse_step")?.unwrap_or(1);
        let step = in_range(self.path, "decoder_sparse_step", step, 1, layers.max(1))?;
        let only = match self.get("mlp_only_layers") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|&n| (n as usize) < layers)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            ModelError::config(
                                self.path,
                                "mlp_only_layers",
                                format!("{v} is not a layer index below {layers}"),
                            )
                        })
                })
                .collect::<Result<_>>()?,
            Some(v) => {
                return Err(ModelError::config(
                    self.path,
                    "mlp_only_layers",
                    format!("{v} is not a list of layer indices"),
                ))
            }
        };
        Ok((0..layers)
            .map(|l| !only.contains(&l) && (l + 1) % step == 0)
            .collect())
    }

    /// Refuse the settings, of these families or of related ones, that change the routed
    /// forward pass in ways not implemented here.
    fn refuse_unimplemented(&self) -> Result<()> {
        let zero = |v: &Value| v.as_f64() == Some(0.0);
        let checks: [Refusal; 9] = [
            (
                "shared_expert_intermediate_size",
                "shared experts are not supported",
                zero,
            ),
            ("n_shared_experts", "shared experts are not supported", zero),
            (
                "num_shared_experts",
                "shared experts are not supported",
                zero,
            ),
            (
                "moe_shared_expert_intermediate_size",
                "shared experts are not supported",
                zero,
            ),
            ("scoring_func", "only softmax routing is supported", |v| {
                v.as_str() == Some("softmax")
            }),
            (
                "topk_method",
                "only greedy top-k routing is supported",
                |v| v.as_str() == Some("greedy"),
            ),
            ("routed_scaling_factor", "only 1.0 is supported", |v| {
                v.as_f64() == Some(1.0)
            }),
            ("n_group", "grouped top-k routing is not supported", |v| {
                v.as_u64() == Some(1)
            }),
            (
                "clip_qkv",
                "clipped q/k/v projections are not supported",
                |_| false,
            ),
        ];
        for (key, why, fine) in checks {
            if let Some(v) = self.get(key) {
                if !fine(v) {
                    return Err(ModelError::config(self.path, key, format!("{v}: {why}")));
                }
            }
        }
        Ok(())
    }
}
