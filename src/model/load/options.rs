//! How to load a model: the compute dtype and device, the Hub's options, and the scoring plan
//! the loaded model must fit.

use super::memory::ScorePlan;
use super::source::HubOptions;
use candle_core::{DType, Device};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype; weights are converted on load. f32 by default (f64 for exact checks).
    pub dtype: DType,
    pub device: Device,
    pub hub: HubOptions,
    /// What will be scored: with a plan, loading refuses a model whose weights plus one scoring
    /// pass do not fit; without, one whose weights do not.
    pub plan: Option<ScorePlan>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            hub: HubOptions::default(),
            plan: None,
        }
    }
}

impl LoadOptions {
    /// What the memory check weighs: dtype, device and plan.
    pub(super) fn fits(&self) -> (DType, &Device, Option<&ScorePlan>) {
        (self.dtype, &self.device, self.plan.as_ref())
    }
}
