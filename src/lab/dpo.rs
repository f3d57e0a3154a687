//! DPO: preference pairs from the base model's own samples (a correct answer chosen over an
//! incorrect one to the same question) and the DPO loss against the frozen base.

use super::optim::Optimizer;
use super::policy::{token_logprobs, Policy, SeqBatch};
use super::rollout::rollouts;
use super::sft::examples;
use super::{Result, StageContext};
use crate::model::Model;
use crate::study::dataset::Question;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};

/// DPO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoConfig {
    /// Questions the base answers to build pairs from.
    pub questions: usize,
    /// Answers sampled per question.
    pub samples: usize,
    pub temperature: f64,
    /// Passes over the pairs.
    pub epochs: usize,
    /// Pairs per step.
    pub batch: usize,
    pub lr: f64,
    /// Steps of linear learning-rate warm-up.
    pub warmup: usize,
    /// Inverse temperature β of the DPO loss.
    pub beta: f64,
    /// For a question the base never answers correctly, take its worked solution as the
    /// chosen answer (off by default: pairs are the base's own answers).
    pub solution_fallback: bool,
}

/// One preference pair.
pub struct Pair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// Loss terms of one DPO step.
pub struct DpoLoss {
    pub loss: Tensor,
    /// Mean of β·((π_c − ref_c) − (π_r − ref_r)).
    pub margin: f64,
    /// Share of pairs whose margin is positive.
    pub accuracy: f64,
}

/// −log σ(β·((π_c − ref_c) − (π_r − ref_r))) averaged over pairs; each argument (b,) holds the
/// summed log-probability of a whole answer.
pub fn dpo_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> candle_core::Result<DpoLoss> {
    let margin = (((chosen - ref_chosen)? - (rejected - ref_rejected)?)? * beta)?;
    // −log σ(z) = softplus(−z) = max(−z, 0) + log(1 + exp(−|z|)).
    let z = margin.neg()?;
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let m = margin.to_vec1::<f32>()?;
    let n = m.len().max(1) as f64;
    Ok(DpoLoss {
        loss: softplus.mean_all()?,
        margin: m.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
        accuracy: m.iter().filter(|&&x| x > 0.0).count() as f64 / n,
    })
}

/// Pairs from `model`'s own samples: per question, the first correct answer over the first
/// incorrect one; questions without both are skipped (with `solution_fallback`, a question
/// without a correct answer takes its worked solution instead).
pub fn build_pairs(
    model: &Model,
    questions: &[Question],
    cfg: &DpoConfig,
    max_new_tokens: usize,
    rng: &mut rand::rngs::StdRng,
) -> Result<Vec<Pair>> {
    let picks: Vec<&Question> = questions.iter().take(cfg.questions).collect();
    let mut pairs = Vec::new();
    for chunk in picks.chunks(16) {
        let samples = rollouts(
            model,
            chunk,
            cfg.samples,
            cfg.temperature,
            max_new_tokens,
            rng,
        )?;
        for (q, question) in chunk.iter().enumerate() {
            let of_q = || samples.iter().filter(move |r| r.question == q);
            let Some(rejected) = of_q().find(|r| r.reward == 0.0) else {
                continue;
            };
            let chosen = match of_q().find(|r| r.reward > 0.0) {
                Some(c) => c.answer.clone(),
                None if cfg.solution_fallback => {
                    examples(model, &[(*question).clone()])?.remove(0).1
                }
                None => continue,
            };
            pairs.push(Pair {
                prompt: rejected.prompt.clone(),
                chosen,
                rejected: rejected.answer.clone(),
            });
        }
    }
    Ok(pairs)
}

/// Summed log-probabilities (b,) of each (prompt, answer) pair's answer.
pub fn answer_logprobs(model: &Model, pairs: &[(&[u32], &[u32])], dev: &Device) -> Result<Tensor> {
    let batch = SeqBatch::new(pairs, dev, model.dtype())?;
    let (logp, _) = token_logprobs(model, &batch)?;
    Ok((logp * &batch.mask)?.sum(1)?)
}

/// What one DPO step measured.
pub struct StepStats {
    pub loss: f64,
    /// Mean per-token log-ratio to the reference on the chosen answers.
    pub kl: f64,
    pub margin: f64,
    /// Share of pairs whose margin is positive.
    pub pair_accuracy: f64,
}

/// One DPO update of `policy` against the frozen `reference` on `batch`.
pub fn step(
    policy: &Model,
    reference: &Model,
    batch: &[&Pair],
    beta: f64,
    opt: &mut Optimizer,
    step: usize,
) -> Result<StepStats> {
    let dev = policy.device().clone();
    let chosen: Vec<(&[u32], &[u32])> = batch
        .iter()
        .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
        .collect();
    let rejected: Vec<(&[u32], &[u32])> = batch
        .iter()
        .map(|p| (p.prompt.as_slice(), p.rejected.as_slice()))
        .collect();
    let rc = answer_logprobs(reference, &chosen, &dev)?.detach();
    let rr = answer_logprobs(reference, &rejected, &dev)?.detach();
    let pc = answer_logprobs(policy, &chosen, &dev)?;
    let pr = answer_logprobs(policy, &rejected, &dev)?;
    let l = dpo_loss(&pc, &pr, &rc, &rr, beta)?;
    opt.step(&l.loss, step)?;
    let tokens: usize = batch.iter().map(|p| p.chosen.len()).sum();
    let kl = f64::from((&pc - &rc)?.sum_all()?.to_scalar::<f32>()?) / tokens.max(1) as f64;
    Ok(StepStats {
        loss: f64::from(l.loss.to_scalar::<f32>()?),
        kl,
        margin: l.margin,
        pair_accuracy: l.accuracy,
    })
}

/// Train `policy` with DPO on pairs sampled from `reference` (the frozen base).
pub fn train(
    policy: &Policy,
    reference: &Model,
    questions: &[Question],
    cfg: &DpoConfig,
    cx: &mut StageContext,
) -> Result<()> {
    let max_new_tokens = cx.max_new_tokens;
    let pairs = build_pairs(reference, questions, cfg, max_new_tokens, &mut cx.rng)?;
    if pairs.is_empty() {
        return Err(super::LabError::NoPreferencePairs);
    }
    cx.note(&format!("DPO: {} preference pairs", pairs.len()));
    let per_epoch = pairs.len().div_ceil(cfg.batch.max(1));
    let steps = per_epoch * cfg.epochs;
    let mut opt = Optimizer::new(policy.vars(), cfg.lr, cfg.warmup, steps)?;
    let mut log = cx.new_log(&["margin", "pair_accuracy"]);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    cx.begin(steps);
    let mut s = 0;
    'epochs: for _ in 0..cfg.epochs {
        order.shuffle(&mut cx.rng);
        for idx in order.chunks(cfg.batch.max(1)) {
            if cx.cancelled() {
                break 'epochs;
            }
            let batch: Vec<&Pair> = idx.iter().map(|&i| &pairs[i]).collect();
            let stats = step(&policy.model, reference, &batch, cfg.beta, &mut opt, s)?;
            let row = vec![
                ("loss", stats.loss),
                ("kl", stats.kl),
                ("margin", stats.margin),
                ("pair_accuracy", stats.pair_accuracy),
            ];
            cx.end_step(s, policy, &mut log, row)?;
            s += 1;
        }
    }
    Ok(())
}
