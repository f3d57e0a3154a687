//! GRPO: groups of sampled answers per question, rewards from the grader, group-normalised
//! advantages, the clipped ratio objective and a KL penalty to the frozen base.

use super::optim::Optimizer;
use super::policy::{masked_mean, masked_row_mean, token_logprobs, Policy, SeqBatch};
use super::rollout::{rollouts, Rollout};
use super::{Result, StageContext};
use crate::model::Model;
use crate::study::dataset::Question;
use candle_core::Tensor;
use rand::seq::IndexedRandom as _;
use serde::{Deserialize, Serialize};

/// GRPO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoConfig {
    pub steps: usize,
    /// Questions per step.
    pub questions: usize,
    /// Sampled answers per question.
    pub group: usize,
    pub temperature: f64,
    pub lr: f64,
    /// Steps of linear learning-rate warm-up.
    pub warmup: usize,
    /// Clip range ε of the probability ratio.
    pub clip: f64,
    /// Weight β of the KL penalty.
    pub beta: f64,
    /// Gradient steps on each batch of samples.
    pub epochs: usize,
}

/// Advantages normalised within each group of `group` consecutive rewards:
/// (r − mean) / (std + 1e-6), with the population std; 0 for a group whose rewards are equal.
pub fn group_advantages(rewards: &[f64], group: usize) -> Vec<f64> {
    rewards
        .chunks(group.max(1))
        .flat_map(|g| {
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let std = (g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
            g.iter().map(move |r| {
                if std > 0.0 {
                    (r - mean) / (std + 1e-6)
                } else {
                    0.0
                }
            })
        })
        .collect()
}

/// The GRPO loss of a batch and its mean KL: per token, −min(ρ·A, clip(ρ, 1 ± ε)·A) + β·k3 with
/// ρ = exp(logp − old), k3 = exp(ref − logp) − (ref − logp) − 1; averaged over each answer's
/// tokens, then over answers. `logp`, `old`, `reference`, `mask`: (b, t); `adv`: (b,).
pub fn grpo_loss(
    logp: &Tensor,
    old: &Tensor,
    reference: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    clip: f64,
    beta: f64,
) -> candle_core::Result<(Tensor, f64)> {
    let adv = adv.unsqueeze(1)?;
    let ratio = (logp - old)?.exp()?;
    let surr = ratio.broadcast_mul(&adv)?;
    let clipped = ratio
        .clamp(1.0 - clip as f32, 1.0 + clip as f32)?
        .broadcast_mul(&adv)?;
    let d = (reference - logp)?;
    let kl = ((d.exp()? - &d)? - 1.0)?;
    let per_token = ((surr.minimum(&clipped)?.neg()?) + (&kl * beta)?)?;
    let loss = masked_row_mean(&per_token, mask)?.mean_all()?;
    let kl_mean = f64::from(masked_mean(&kl, mask)?.to_scalar::<f32>()?);
    Ok((loss, kl_mean))
}

/// Train `policy` with GRPO against the frozen `reference`.
pub fn train(
    policy: &Policy,
    reference: &Model,
    questions: &[Question],
    cfg: &GrpoConfig,
    cx: &mut StageContext,
) -> Result<()> {
    let mut opt = Optimizer::new(policy.vars(), cfg.lr, cfg.warmup, cfg.steps)?;
    let mut log = cx.new_log(&[]);
    let dev = policy.model.device().clone();
    cx.begin(cfg.steps);
    for step in 0..cfg.steps {
        if cx.cancelled() {
            break;
        }
        let picks: Vec<&Question> = questions
            .choose_multiple(&mut cx.rng, cfg.questions)
            .collect();
        let samples: Vec<Rollout> = rollouts(
            &policy.model,
            &picks,
            cfg.group,
            cfg.temperature,
            cx.max_new_tokens,
            &mut cx.rng,
        )?;
        let rewards: Vec<f64> = samples.iter().map(|r| r.reward).collect();
        let adv: Vec<f32> = group_advantages(&rewards, cfg.group)
            .into_iter()
            .map(|a| a as f32)
            .collect();
        let adv = Tensor::from_vec(adv, samples.len(), &dev)?;
        let pairs: Vec<(&[u32], &[u32])> = samples
            .iter()
            .map(|r| (r.prompt.as_slice(), r.answer.as_slice()))
            .collect();
        let batch = SeqBatch::new(&pairs, &dev, policy.model.dtype())?;
        let first = token_logprobs(&policy.model, &batch)?.0;
        let old = first.detach();
        let refp = token_logprobs(reference, &batch)?.0.detach();
        let (mut loss, mut kl) = (0.0, 0.0);
        // The first epoch reuses the forward pass that gave `old`.
        let mut fresh = Some(first);
        for _ in 0..cfg.epochs {
            let logp = match fresh.take() {
                Some(logp) => logp,
                None => token_logprobs(&policy.model, &batch)?.0,
            };
            let (l, k) = grpo_loss(&logp, &old, &refp, &adv, &batch.mask, cfg.clip, cfg.beta)?;
            opt.step(&l, step)?;
            loss = f64::from(l.to_scalar::<f32>()?);
            kl = k;
        }
        let reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
        let row = vec![("loss", loss), ("reward", reward), ("kl", kl)];
        cx.end_step(step, policy, &mut log, row)?;
    }
    Ok(())
}
