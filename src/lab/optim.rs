//! AdamW with global gradient-norm clipping and a warm-up + cosine schedule, whose state (the
//! moments and the step count) can be saved and restored so that a resumed run continues
//! exactly where it stopped.

use super::{LabError, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// β₁, β₂ and ε of AdamW (candle-nn's and PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One parameter and its first and second moments.
struct Slot {
    var: Var,
    m: Var,
    v: Var,
}

/// AdamW without weight decay over a group of parameters sharing a peak learning rate; the
/// update is candle-nn's `AdamW::step`, term for term, with its moments kept here.
struct AdamW {
    slots: Vec<Slot>,
    peak_lr: f64,
}

impl AdamW {
    fn new(vars: Vec<Var>, peak_lr: f64) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| {
                let zeros = || Var::zeros(var.shape(), var.dtype(), var.device());
                Ok(Slot {
                    m: zeros()?,
                    v: zeros()?,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, peak_lr })
    }

    /// The update of step `t` (1-based) at learning rate `lr`.
    fn step(&self, grads: &GradStore, t: usize, lr: f64) -> Result<()> {
        let exponent = i32::try_from(t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - BETA1.powi(exponent));
        let scale_v = 1f64 / (1f64 - BETA2.powi(exponent));
        for s in &self.slots {
            let Some(g) = grads.get(&s.var) else {
                continue;
            };
            let next_m = ((s.m.as_tensor() * BETA1)? + (g * (1.0 - BETA1))?)?;
            let next_v = ((s.v.as_tensor() * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let theta = (s.var.as_tensor() * 1f64)?;
            let adjusted = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            let next = (theta - (adjusted * lr)?)?;
            s.m.set(&next_m)?;
            s.v.set(&next_v)?;
            s.var.set(&next)?;
        }
        Ok(())
    }
}

/// The optimiser of one training run: one AdamW per parameter group, each with its own peak
/// learning rate on the same schedule.
pub struct Optimizer {
    groups: Vec<AdamW>,
    vars: Vec<Var>,
    max_norm: f64,
    warmup: usize,
    steps: usize,
    /// Updates made so far.
    updates: usize,
}

impl Optimizer {
    /// AdamW over `vars` with peak learning rate `lr`, linear warm-up over `warmup` steps, then
    /// a cosine decay to a tenth of `lr` at step `steps`; gradients clipped to norm 1.
    pub fn new(vars: Vec<Var>, lr: f64, warmup: usize, steps: usize) -> Result<Self> {
        Ok(Self {
            groups: vec![AdamW::new(vars.clone(), lr)?],
            vars,
            max_norm: 1.0,
            warmup,
            steps,
            updates: 0,
        })
    }

    /// Add a parameter group with its own peak learning rate.
    pub fn with_group(mut self, vars: Vec<Var>, lr: f64) -> Result<Self> {
        self.groups.push(AdamW::new(vars.clone(), lr)?);
        self.vars.extend(vars);
        Ok(self)
    }

    /// The fraction of the peak learning rate at `step` (0-based).
    pub fn schedule(&self, step: usize) -> f64 {
        if step < self.warmup {
            return (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// One update from `loss` at `step`: backward, clip, AdamW step. Returns the gradient norm
    /// before clipping.
    pub fn step(&mut self, loss: &Tensor, step: usize) -> Result<f64> {
        let grads = loss.backward()?;
        self.apply(grads, step)
    }

    /// One update from the sum of `parts` losses, `part(i)` computing the i-th: each is
    /// differentiated before the next is computed, so that one part's graph is alive at a time
    /// (gradient accumulation). One part is [`Optimizer::step`] exactly.
    pub fn step_sum(
        &mut self,
        parts: usize,
        mut part: impl FnMut(usize) -> Result<Tensor>,
        step: usize,
    ) -> Result<f64> {
        let mut total: Option<GradStore> = None;
        for i in 0..parts {
            let grads = part(i)?.backward()?;
            let Some(sum) = total.as_mut() else {
                total = Some(grads);
                continue;
            };
            for v in &self.vars {
                if let Some(g) = grads.get(v.as_tensor()) {
                    let g = match sum.get(v.as_tensor()) {
                        Some(s) => (s + g)?,
                        None => g.clone(),
                    };
                    sum.insert(v.as_tensor(), g);
                }
            }
        }
        match total {
            Some(grads) => self.apply(grads, step),
            None => Ok(0.0),
        }
    }

    /// Clip the gradients `grads` and take the AdamW step; the norm before clipping.
    fn apply(&mut self, mut grads: GradStore, step: usize) -> Result<f64> {
        let mut sq = 0.0f64;
        for v in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(LabError::NonFiniteGradient { norm, step });
        }
        if norm > self.max_norm {
            let scale = self.max_norm / norm;
            for v in &self.vars {
                if let Some(g) = grads.get(v.as_tensor()) {
                    let g = (g * scale)?;
                    grads.insert(v.as_tensor(), g);
                }
            }
        }
        let f = self.schedule(step);
        self.updates += 1;
        for adam in &self.groups {
            adam.step(&grads, self.updates, adam.peak_lr * f)?;
        }
        Ok(norm)
    }

    /// The moments under `g<group>.<index>.m` / `.v`, and the update count, as tensors.
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (g, adam) in self.groups.iter().enumerate() {
            for (i, s) in adam.slots.iter().enumerate() {
                out.insert(format!("g{g}.{i}.m"), s.m.as_tensor().detach());
                out.insert(format!("g{g}.{i}.v"), s.v.as_tensor().detach());
            }
        }
        let updates = u32::try_from(self.updates).unwrap_or(u32::MAX);
        out.insert("updates".into(), Tensor::new(&[updates], &Device::Cpu)?);
        Ok(out)
    }

    /// Write the optimiser state (moments and update count) as safetensors to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state()?, path)?;
        Ok(())
    }

    /// Restore the state [`Optimizer::save`] wrote for an optimiser over the same parameters.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .vars
            .first()
            .map_or(Device::Cpu, |v| v.device().clone());
        let state = candle_core::safetensors::load(path, &dev)?;
        let get = |name: &str| {
            state.get(name).ok_or_else(|| LabError::NotThisRun {
                path: path.to_owned(),
                message: format!("no tensor `{name}`"),
            })
        };
        for (g, adam) in self.groups.iter().enumerate() {
            for (i, s) in adam.slots.iter().enumerate() {
                s.m.set(&get(&format!("g{g}.{i}.m"))?.to_dtype(s.m.dtype())?)?;
                s.v.set(&get(&format!("g{g}.{i}.v"))?.to_dtype(s.v.dtype())?)?;
            }
        }
        let updates = get("updates")?.to_vec1::<u32>()?;
        self.updates = updates.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}
