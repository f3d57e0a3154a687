//! AdamW (candle-nn's) with global gradient-norm clipping and a warm-up + cosine schedule.

use super::Result;
use candle_core::{Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer as _, ParamsAdamW};

/// The optimiser of one training run: one AdamW per parameter group, each with its own peak
/// learning rate on the same schedule.
pub struct Optimizer {
    groups: Vec<(AdamW, f64)>,
    vars: Vec<Var>,
    max_norm: f64,
    warmup: usize,
    steps: usize,
}

fn adam(vars: Vec<Var>, lr: f64) -> Result<AdamW> {
    let params = ParamsAdamW {
        lr,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    Ok(AdamW::new(vars, params)?)
}

impl Optimizer {
    /// AdamW over `vars` with peak learning rate `lr`, linear warm-up over `warmup` steps, then
    /// a cosine decay to a tenth of `lr` at step `steps`; gradients clipped to norm 1.
    pub fn new(vars: Vec<Var>, lr: f64, warmup: usize, steps: usize) -> Result<Self> {
        Ok(Self {
            groups: vec![(adam(vars.clone(), lr)?, lr)],
            vars,
            max_norm: 1.0,
            warmup,
            steps,
        })
    }

    /// Add a parameter group with its own peak learning rate.
    pub fn with_group(mut self, vars: Vec<Var>, lr: f64) -> Result<Self> {
        self.groups.push((adam(vars.clone(), lr)?, lr));
        self.vars.extend(vars);
        Ok(self)
    }

    /// The fraction of the peak learning rate at `step` (0-based).
    fn schedule(&self, step: usize) -> f64 {
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
        let mut grads = loss.backward()?;
        let mut sq = 0.0f64;
        for v in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(super::LabError::NonFiniteGradient { norm, step });
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
        for (adam, lr) in &mut self.groups {
            adam.set_learning_rate(*lr * f);
            adam.step(&grads)?;
        }
        Ok(norm)
    }
}
