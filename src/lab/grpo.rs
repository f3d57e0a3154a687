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
    /// Rows (sampled answers) per forward and backward pass, their gradients summed
    /// (accumulated) into one update; `None`: every row of the step in one pass.
    pub micro_batch: Option<usize>,
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

/// How the per-token GRPO loss is averaged into one number (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Over each answer's tokens, then over answers (TRL's `grpo`).
    PerAnswer,
    /// The length-unbiased loss of Dr. GRPO: the sum over every answer token divided by the
    /// answers times the new-token budget (TRL's `dr_grpo`).
    LengthUnbiased { max_new_tokens: usize },
}

/// How a group's rewards become advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advantages {
    /// [`group_advantages`]: population std, + 1e-6, 0 for a group of equal rewards (the zoo's).
    Population,
    /// [`trl_advantages`]: TRL's `scale_rewards="group"`.
    Trl,
}

impl Advantages {
    /// The advantages of `rewards` in groups of `group`.
    pub fn of(self, rewards: &[f64], group: usize) -> Vec<f64> {
        match self {
            Self::Population => group_advantages(rewards, group),
            Self::Trl => trl_advantages(rewards, group),
        }
    }
}

/// TRL's group-normalised advantages (`GRPOTrainer._generate_and_score_completions` with
/// `scale_rewards="group"`): (r − group mean) / (group std + 1e-4), with the sample standard
/// deviation (n − 1 in the denominator; 0 for a group of one).
pub fn trl_advantages(rewards: &[f64], group: usize) -> Vec<f64> {
    rewards
        .chunks(group.max(1))
        .flat_map(|g| {
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let var = if g.len() > 1 {
                g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            let std = var.sqrt();
            g.iter().map(move |r| (r - mean) / (std + 1e-4))
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
    let inputs = LossInputs {
        logp,
        old,
        reference,
        adv,
        mask,
    };
    grpo_loss_with(&inputs, clip, beta, Aggregation::PerAnswer)
}

/// The tensors of one GRPO loss: `logp`, `old`, `reference`, `mask` (b, t); `adv` (b,).
pub struct LossInputs<'a> {
    pub logp: &'a Tensor,
    pub old: &'a Tensor,
    pub reference: &'a Tensor,
    pub adv: &'a Tensor,
    pub mask: &'a Tensor,
}

/// [`grpo_loss`] with the averaging `how` (TRL's `GRPOTrainer._compute_loss`, token-level
/// importance sampling, ε_low = ε_high = `clip`).
pub fn grpo_loss_with(
    x: &LossInputs,
    clip: f64,
    beta: f64,
    how: Aggregation,
) -> candle_core::Result<(Tensor, f64)> {
    let adv = x.adv.unsqueeze(1)?;
    let ratio = (x.logp - x.old)?.exp()?;
    let surr = ratio.broadcast_mul(&adv)?;
    let clipped = ratio
        .clamp(1.0 - clip as f32, 1.0 + clip as f32)?
        .broadcast_mul(&adv)?;
    let d = (x.reference - x.logp)?;
    let kl = ((d.exp()? - &d)? - 1.0)?;
    let per_token = ((surr.minimum(&clipped)?.neg()?) + (&kl * beta)?)?;
    let loss = match how {
        Aggregation::PerAnswer => masked_row_mean(&per_token, x.mask)?.mean_all()?,
        Aggregation::LengthUnbiased { max_new_tokens } => {
            let denom = (x.mask.dim(0)? * max_new_tokens.max(1)) as f64;
            ((&per_token * x.mask)?.sum_all()? / denom)?
        }
    };
    let kl_mean = f64::from(masked_mean(&kl, x.mask)?.to_scalar::<f32>()?);
    Ok((loss, kl_mean))
}

/// What one GRPO step measured.
pub struct StepStats {
    /// The loss of the last epoch.
    pub loss: f64,
    /// The mean reward of the samples.
    pub reward: f64,
    /// The mean per-token KL to the reference.
    pub kl: f64,
}

/// The objective of a GRPO run besides [`GrpoConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Objective {
    pub advantages: Advantages,
    pub aggregation: Aggregation,
    pub max_new_tokens: usize,
}

/// One GRPO step of `policy` against the frozen `reference` on the questions `picks`: a group
/// of samples per question (generated in one batch), rewards from the grader, advantages, and
/// `cfg.epochs` updates of `opt`.
pub fn step(
    policy: &Model,
    reference: &Model,
    picks: &[&Question],
    cfg: &GrpoConfig,
    objective: Objective,
    opt: &mut Optimizer,
    (step, rng): (usize, &mut rand::rngs::StdRng),
) -> Result<StepStats> {
    let dev = policy.device().clone();
    let samples: Vec<Rollout> = rollouts(
        policy,
        picks,
        cfg.group,
        cfg.temperature,
        objective.max_new_tokens,
        rng,
    )?;
    // Sampling leaves the heap fragmented by its key/value caches; so do the reference passes
    // below: their freed memory goes back before the training passes allocate theirs.
    crate::runtime::release_freed_memory();
    let rewards: Vec<f64> = samples.iter().map(|r| r.reward).collect();
    let adv: Vec<f32> = objective
        .advantages
        .of(&rewards, cfg.group)
        .into_iter()
        .map(|a| a as f32)
        .collect();
    let adv = Tensor::from_vec(adv, samples.len(), &dev)?;
    let rows = samples.len();
    let micro = cfg.micro_batch.unwrap_or(rows).clamp(1, rows.max(1));
    let mut parts = Vec::new();
    for (c, chunk) in samples.chunks(micro).enumerate() {
        let pairs: Vec<(&[u32], &[u32])> = chunk
            .iter()
            .map(|r| (r.prompt.as_slice(), r.answer.as_slice()))
            .collect();
        let batch = SeqBatch::new(&pairs, &dev, policy.dtype())?;
        let reference = token_logprobs(reference, &batch)?.0.detach();
        let adv = adv.narrow(0, c * micro, chunk.len())?;
        parts.push(Part {
            batch,
            reference,
            adv,
            old: None,
        });
    }
    crate::runtime::release_freed_memory();
    let (mut loss, mut kl) = (0.0, 0.0);
    for _ in 0..cfg.epochs {
        let mut sums = (0.0, 0.0, 0.0);
        let many = parts.len() > 1;
        opt.step_sum(
            parts.len(),
            |i| {
                let p = &mut parts[i];
                let logp = token_logprobs(policy, &p.batch)?.0;
                // The first epoch's forward pass gives the old log-probabilities.
                let old = p.old.get_or_insert_with(|| logp.detach()).clone();
                let inputs = LossInputs {
                    logp: &logp,
                    old: &old,
                    reference: &p.reference,
                    adv: &p.adv,
                    mask: &p.batch.mask,
                };
                let (l, k) = grpo_loss_with(&inputs, cfg.clip, cfg.beta, objective.aggregation)?;
                // Each part's mean enters with its share of the rows, so that the sum is the
                // whole step's loss (per-answer mean, or Dr. GRPO's sum over rows·budget).
                let l = if many {
                    (l * (p.adv.dim(0)? as f64 / rows as f64))?
                } else {
                    l
                };
                let tokens = f64::from(p.batch.mask.sum_all()?.to_scalar::<f32>()?);
                sums.0 += f64::from(l.to_scalar::<f32>()?);
                sums.1 += k * tokens;
                sums.2 += tokens;
                if !many {
                    sums.1 = k;
                    sums.2 = 1.0;
                }
                Ok(l)
            },
            step,
        )?;
        loss = sums.0;
        kl = sums.1 / sums.2.max(f64::MIN_POSITIVE);
    }
    // And the training passes': the next step samples in other shapes.
    drop(parts);
    crate::runtime::release_freed_memory();
    let reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
    Ok(StepStats { loss, reward, kl })
}

/// One micro-batch of a GRPO step: its rows, their advantages, and the frozen reference's and
/// (after the first epoch's pass) the policy's old per-token log-probabilities.
struct Part {
    batch: SeqBatch,
    reference: Tensor,
    adv: Tensor,
    old: Option<Tensor>,
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
    let objective = Objective {
        advantages: Advantages::Population,
        aggregation: Aggregation::PerAnswer,
        max_new_tokens: cx.max_new_tokens,
    };
    cx.begin(cfg.steps);
    for s in 0..cfg.steps {
        if cx.cancelled() {
            break;
        }
        let picks: Vec<&Question> = questions
            .choose_multiple(&mut cx.rng, cfg.questions)
            .collect();
        let stats = step(
            &policy.model,
            reference,
            &picks,
            cfg,
            objective,
            &mut opt,
            (s, &mut cx.rng),
        )?;
        let row = vec![
            ("loss", stats.loss),
            ("reward", stats.reward),
            ("kl", stats.kl),
        ];
        cx.end_step(s, policy, &mut log, row)?;
    }
    Ok(())
}
