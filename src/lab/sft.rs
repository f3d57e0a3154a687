//! Supervised fine-tuning on worked solutions: the base model of the zoo.

use super::optim::Optimizer;
use super::policy::{masked_mean, token_logprobs, Policy, SeqBatch};
use super::task::{prompt_ids, worked_solution};
use super::{LabError, Result, StageContext};
use crate::model::Model;
use crate::study::dataset::Question;
use candle_core::Tensor;
use rand::seq::IndexedRandom as _;
use serde::{Deserialize, Serialize};

/// Supervised training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftConfig {
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
}

/// Mean negative log-likelihood of the answer tokens (prompt tokens masked out).
pub fn sft_loss(logp: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    masked_mean(logp, mask)?.neg()
}

/// A prompt and its answer, as token ids.
pub type Example = (Vec<u32>, Vec<u32>);

/// (prompt ids, solution ids + end of sequence) for each question.
pub fn examples(model: &Model, questions: &[Question]) -> Result<Vec<Example>> {
    let tok = &model.tokenizer;
    let eos = tok.eos_ids.first().copied();
    questions
        .iter()
        .map(|q| {
            let solution = worked_solution(&q.question)
                .ok_or_else(|| LabError::NoWorkedSolution(q.question.clone()))?;
            let mut answer = tok
                .encode(&solution, false)
                .map_err(|e| LabError::Tokenize {
                    text: solution.clone(),
                    message: e.to_string(),
                })?;
            answer.extend(eos);
            Ok((prompt_ids(tok, &q.question)?, answer))
        })
        .collect()
}

/// Train `policy` on worked solutions of `questions` for `cfg.steps` steps.
pub fn train(
    policy: &Policy,
    questions: &[Question],
    cfg: &SftConfig,
    cx: &mut StageContext,
) -> Result<()> {
    let data = examples(&policy.model, questions)?;
    let mut opt = Optimizer::new(policy.vars(), cfg.lr, cfg.warmup, cfg.steps)?;
    let mut log = cx.new_log(&[]);
    let dev = policy.model.device().clone();
    cx.begin(cfg.steps);
    for step in 0..cfg.steps {
        if cx.cancelled() {
            break;
        }
        let picks: Vec<&Example> = data.choose_multiple(&mut cx.rng, cfg.batch).collect();
        let pairs: Vec<(&[u32], &[u32])> = picks
            .iter()
            .map(|(p, a)| (p.as_slice(), a.as_slice()))
            .collect();
        let batch = SeqBatch::new(&pairs, &dev, policy.model.dtype())?;
        let (logp, _) = token_logprobs(&policy.model, &batch)?;
        let loss = sft_loss(&logp, &batch.mask)?;
        opt.step(&loss, step)?;
        let loss = f64::from(loss.to_scalar::<f32>()?);
        let row = vec![("loss", loss)];
        cx.end_step(step, policy, &mut log, row)?;
    }
    Ok(())
}
