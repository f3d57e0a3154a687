//! LoRA updates attached to a loaded model for training: which linear layers they adapt, their
//! rank and scale, and their initial values (A small and random, B zero, as PEFT starts them).

use super::kernels::LoraPair;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// A kind of linear layer a LoRA update can adapt, named as PEFT's `target_modules` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
    LmHead,
}

/// A target module name that is not one of [`LoraTarget::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown LoRA target module `{0}`: use any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head (or all-linear)")]
pub struct UnknownTarget(pub String);

impl LoraTarget {
    /// Every kind, in model order.
    pub const ALL: [Self; 8] = [
        Self::QProj,
        Self::KProj,
        Self::VProj,
        Self::OProj,
        Self::GateProj,
        Self::UpProj,
        Self::DownProj,
        Self::LmHead,
    ];

    /// PEFT's name of the layer (`q_proj`, …, `lm_head`).
    pub fn name(self) -> &'static str {
        match self {
            Self::QProj => "q_proj",
            Self::KProj => "k_proj",
            Self::VProj => "v_proj",
            Self::OProj => "o_proj",
            Self::GateProj => "gate_proj",
            Self::UpProj => "up_proj",
            Self::DownProj => "down_proj",
            Self::LmHead => "lm_head",
        }
    }

    /// Parse one PEFT module name.
    pub fn parse(s: &str) -> Result<Self, UnknownTarget> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTarget(s.to_owned()))
    }

    /// Parse a comma-separated list; `all-linear` is every projection but the output layer (as
    /// PEFT reads it).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, UnknownTarget> {
        if s.trim() == "all-linear" {
            return Ok(Self::ALL[..7].to_vec());
        }
        let mut out: Vec<Self> = s
            .split(',')
            .map(|p| Self::parse(p.trim()))
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The LoRA updates to attach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    /// r ≥ 1.
    pub rank: usize,
    /// α.
    pub alpha: f64,
    /// rsLoRA: scale α/√r instead of α/r.
    pub rslora: bool,
    pub targets: Vec<LoraTarget>,
    /// Seed of A's initial values.
    pub seed: u64,
}

impl LoraSettings {
    /// s of W + s·B·A.
    pub fn scale(&self) -> f64 {
        let r = self.rank as f64;
        if self.rslora {
            self.alpha / r.sqrt()
        } else {
            self.alpha / r
        }
    }
}

/// A new update of an (`outputs`, `inputs`) layer: A uniform in ±1/√inputs (PEFT's Kaiming
/// initialisation with a = √5), B zero, so the adapted model starts as the base.
pub(super) fn init_pair(
    settings: &LoraSettings,
    (outputs, inputs): (usize, usize),
    rng: &mut rand::rngs::StdRng,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<LoraPair> {
    let bound = 1.0 / (inputs as f64).sqrt();
    let a: Vec<f32> = (0..settings.rank * inputs)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    let a = Tensor::from_vec(a, (settings.rank, inputs), device)?.to_dtype(dtype)?;
    let b = Tensor::zeros((outputs, settings.rank), dtype, device)?;
    Ok(LoraPair {
        a: Var::from_tensor(&a)?,
        b: Var::from_tensor(&b)?,
        scale: settings.scale(),
    })
}

/// A random generator for [`init_pair`] from the settings' seed.
pub(super) fn init_rng(settings: &LoraSettings) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(settings.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lists_parse_as_peft_names_them() {
        let all = LoraTarget::parse_list("all-linear").unwrap();
        assert_eq!(all.len(), 7);
        assert!(!all.contains(&LoraTarget::LmHead));
        assert_eq!(
            LoraTarget::parse_list("v_proj, q_proj,v_proj").unwrap(),
            [LoraTarget::QProj, LoraTarget::VProj]
        );
        let e = LoraTarget::parse_list("q_proj,c_attn").unwrap_err();
        assert!(e.to_string().contains("`c_attn`"), "{e}");
        for t in LoraTarget::ALL {
            assert_eq!(LoraTarget::parse(t.name()).unwrap(), t);
        }
    }

    #[test]
    fn the_scale_is_alpha_over_r_or_its_root() {
        let mut s = LoraSettings {
            rank: 4,
            alpha: 8.0,
            rslora: false,
            targets: vec![LoraTarget::QProj],
            seed: 0,
        };
        assert!((s.scale() - 2.0).abs() < 1e-12);
        s.rslora = true;
        assert!((s.scale() - 4.0).abs() < 1e-12);
    }
}
