//! PPO: a value head on the policy's last hidden state, per-token rewards (the grader's reward
//! at the last answer token, a KL penalty to the frozen base at every token), GAE advantages,
//! and the clipped policy and value losses.

use super::optim::Optimizer;
use super::policy::{masked_mean, token_logprobs, Policy, SeqBatch};
use super::rollout::{rollouts, Rollout};
use super::{Result, StageContext};
use crate::model::Model;
use crate::study::dataset::Question;
use candle_core::{DType, Tensor, Var, D};
use rand::seq::IndexedRandom as _;
use serde::{Deserialize, Serialize};

/// PPO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoConfig {
    pub steps: usize,
    /// Questions per step.
    pub questions: usize,
    /// Sampled answers per question.
    pub samples: usize,
    pub temperature: f64,
    pub lr: f64,
    /// Steps of linear learning-rate warm-up.
    pub warmup: usize,
    /// Clip range ε of the probability ratio (and of the value change).
    pub clip: f64,
    /// Weight β of the per-token KL penalty in the reward.
    pub beta: f64,
    pub gamma: f64,
    pub lambda: f64,
    /// Weight of the value loss.
    pub value_coef: f64,
    /// Peak learning rate of the value head.
    pub value_lr: f64,
    /// Gradient steps on each batch of samples.
    pub epochs: usize,
}

/// A linear value head `v = h·w + b` on the normed last hidden state. The trainer feeds it
/// detached hidden states, so the value loss trains the head alone and never pulls the
/// policy's weights.
pub struct ValueHead {
    w: Var,
    b: Var,
}

impl ValueHead {
    pub fn new(hidden: usize, dev: &candle_core::Device) -> Result<Self> {
        Ok(Self {
            w: Var::zeros((hidden, 1), DType::F32, dev)?,
            b: Var::zeros(1, DType::F32, dev)?,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        vec![self.w.clone(), self.b.clone()]
    }

    /// Values (b, t) of hidden states (b, t, d).
    pub fn forward(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        hidden
            .to_dtype(DType::F32)?
            .broadcast_matmul(self.w.as_tensor())?
            .squeeze(D::Minus1)?
            .broadcast_add(self.b.as_tensor())
    }
}

/// Generalised advantage estimation over one answer's tokens: `rewards[i]` and `values[i]` at
/// each token, the value after the last token 0. Returns (advantages, returns = adv + values).
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for i in (0..n).rev() {
        let next_value = if i + 1 < n { values[i + 1] } else { 0.0 };
        let delta = rewards[i] + gamma * next_value - values[i];
        next_adv = delta + gamma * lambda * next_adv;
        adv[i] = next_adv;
    }
    let ret = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// Loss terms of one PPO update.
pub struct PpoLoss {
    pub loss: Tensor,
    pub policy: f64,
    pub value: f64,
}

/// The PPO loss over answer tokens (all tensors (b, t), averaged over the tokens of `mask`):
/// policy −min(ρ·A, clip(ρ, 1 ± ε)·A) with ρ = exp(logp − old); value
/// ½·max((V − R)², (clip(V, V_old ± ε) − R)²); loss = policy + `value_coef`·value.
#[allow(clippy::too_many_arguments)]
pub fn ppo_loss(
    logp: &Tensor,
    old: &Tensor,
    adv: &Tensor,
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip: f64,
    value_coef: f64,
) -> candle_core::Result<PpoLoss> {
    let ratio = (logp - old)?.exp()?;
    let surr = (&ratio * adv)?;
    let clipped = (ratio.clamp(1.0 - clip as f32, 1.0 + clip as f32)? * adv)?;
    let policy = masked_mean(&surr.minimum(&clipped)?.neg()?, mask)?;
    let v_clipped = (old_values + (values - old_values)?.clamp(-clip as f32, clip as f32)?)?;
    let err = (values - returns)?.sqr()?;
    let err_clipped = (v_clipped - returns)?.sqr()?;
    let value = (masked_mean(&err.maximum(&err_clipped)?, mask)? * 0.5)?;
    let loss = (&policy + (&value * value_coef)?)?;
    Ok(PpoLoss {
        policy: f64::from(policy.to_scalar::<f32>()?),
        value: f64::from(value.to_scalar::<f32>()?),
        loss,
    })
}

/// Per-token advantages (GAE along each answer of the per-token rewards −β·KL plus the final
/// reward, whitened over the answer tokens) and returns, each (b, t) row-major; computed on the
/// host.
fn advantages(
    samples: &[Rollout],
    mask: &[Vec<f32>],
    kl_tok: &[Vec<f32>],
    vals: &[Vec<f32>],
    cfg: &PpoConfig,
) -> (Vec<f32>, Vec<f32>) {
    let (b, t) = (mask.len(), mask.first().map_or(0, Vec::len));
    let (mut adv, mut ret) = (vec![0f32; b * t], vec![0f32; b * t]);
    for (r, sample) in samples.iter().enumerate() {
        let cols: Vec<usize> = (0..t).filter(|&j| mask[r][j] > 0.0).collect();
        let mut rewards: Vec<f64> = cols
            .iter()
            .map(|&j| -cfg.beta * f64::from(kl_tok[r][j]))
            .collect();
        if let Some(last) = rewards.last_mut() {
            *last += sample.reward;
        }
        let values: Vec<f64> = cols.iter().map(|&j| f64::from(vals[r][j])).collect();
        let (a, g) = gae(&rewards, &values, cfg.gamma, cfg.lambda);
        for (k, &j) in cols.iter().enumerate() {
            adv[r * t + j] = a[k] as f32;
            ret[r * t + j] = g[k] as f32;
        }
    }
    let n: f32 = mask.iter().flatten().sum::<f32>().max(1.0);
    let flat_mask: Vec<f32> = mask.concat();
    let mean = adv.iter().zip(&flat_mask).map(|(a, m)| a * m).sum::<f32>() / n;
    let var = adv
        .iter()
        .zip(&flat_mask)
        .map(|(a, m)| m * (a - mean).powi(2))
        .sum::<f32>()
        / n;
    let adv = adv
        .iter()
        .zip(&flat_mask)
        .map(|(a, m)| m * (a - mean) / (var.sqrt() + 1e-6))
        .collect();
    (adv, ret)
}

/// Train `policy` with PPO against the frozen `reference`.
pub fn train(
    policy: &Policy,
    reference: &Model,
    questions: &[Question],
    cfg: &PpoConfig,
    cx: &mut StageContext,
) -> Result<()> {
    let dev = policy.model.device().clone();
    let head = ValueHead::new(policy.model.config.hidden_size, &dev)?;
    let mut opt = Optimizer::new(policy.vars(), cfg.lr, cfg.warmup, cfg.steps)?
        .with_group(head.vars(), cfg.value_lr)?;
    let mut log = cx.new_log(&["policy_loss", "value_loss"]);
    cx.begin(cfg.steps);
    for step in 0..cfg.steps {
        if cx.cancelled() {
            break;
        }
        let picks: Vec<&Question> = questions
            .choose_multiple(&mut cx.rng, cfg.questions)
            .collect();
        let samples = rollouts(
            &policy.model,
            &picks,
            cfg.samples,
            cfg.temperature,
            cx.max_new_tokens,
            &mut cx.rng,
        )?;
        let pairs: Vec<(&[u32], &[u32])> = samples
            .iter()
            .map(|r| (r.prompt.as_slice(), r.answer.as_slice()))
            .collect();
        let batch = SeqBatch::new(&pairs, &dev, policy.model.dtype())?;
        let first = token_logprobs(&policy.model, &batch)?;
        let old = first.0.detach();
        let old_values = head.forward(&first.1.detach())?.detach();
        let refp = token_logprobs(reference, &batch)?.0.detach();
        let mask = batch.mask.to_vec2::<f32>()?;
        let (b, t) = (mask.len(), mask.first().map_or(0, Vec::len));
        let kl_tok = (&old - &refp)?.to_vec2::<f32>()?;
        let vals = old_values.to_vec2::<f32>()?;
        let (adv, ret) = advantages(&samples, &mask, &kl_tok, &vals, cfg);
        let adv = Tensor::from_vec(adv, (b, t), &dev)?;
        let ret = Tensor::from_vec(ret, (b, t), &dev)?;
        let mut last = None;
        // The first epoch reuses the forward pass that gave `old` and `old_values`.
        let mut fresh = Some(first);
        for _ in 0..cfg.epochs {
            let (logp, hidden) = match fresh.take() {
                Some(pass) => pass,
                None => token_logprobs(&policy.model, &batch)?,
            };
            let values = head.forward(&hidden.detach())?;
            let l = ppo_loss(
                &logp,
                &old,
                &adv,
                &values,
                &old_values,
                &ret,
                &batch.mask,
                cfg.clip,
                cfg.value_coef,
            )?;
            opt.step(&l.loss, step)?;
            last = Some(l);
        }
        let reward = samples.iter().map(|r| r.reward).sum::<f64>() / samples.len().max(1) as f64;
        let kl = f64::from(masked_mean(&(&old - &refp)?, &batch.mask)?.to_scalar::<f32>()?);
        let mut row = vec![("reward", reward), ("kl", kl)];
        if let Some(l) = &last {
            row.push(("loss", l.loss.to_scalar::<f32>().map(f64::from)?));
            row.push(("policy_loss", l.policy));
            row.push(("value_loss", l.value));
        }
        cx.end_step(step, policy, &mut log, row)?;
    }
    Ok(())
}
