//! Sampling answers from the policy and rewarding them with the grader.

use super::task::{prompt_ids, reward};
use super::Result;
use crate::model::{GenerateOptions, Model, Sampling, StopReason};
use crate::study::dataset::Question;

/// One sampled answer.
pub struct Rollout {
    /// Index of the question in the slice given to [`rollouts`].
    pub question: usize,
    pub prompt: Vec<u32>,
    /// The generated ids, with the end-of-sequence id when the model chose to stop.
    pub answer: Vec<u32>,
    pub text: String,
    pub reward: f64,
}

/// `per_question` answers to each question, sampled at `temperature` (answers to the same
/// question in a row, question by question), each with its own seed drawn from `rng`.
pub fn rollouts(
    model: &Model,
    questions: &[&Question],
    per_question: usize,
    temperature: f64,
    max_new_tokens: usize,
    rng: &mut impl rand::Rng,
) -> Result<Vec<Rollout>> {
    let eos = model.tokenizer.eos_ids.first().copied();
    let mut prompts = Vec::with_capacity(questions.len() * per_question);
    for q in questions {
        let ids = prompt_ids(&model.tokenizer, &q.question)?;
        prompts.extend(std::iter::repeat_n(ids, per_question));
    }
    let seeds: Vec<u64> = prompts.iter().map(|_| rng.random()).collect();
    let opts = GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Sample {
            temperature,
            top_p: 1.0,
            seed: 0,
        },
        ..GenerateOptions::default()
    };
    let gens = model.generate_batch_seeded(&prompts, &opts, &seeds)?;
    Ok(gens
        .into_iter()
        .zip(prompts)
        .enumerate()
        .map(|(i, (g, prompt))| {
            let question = i / per_question;
            let mut answer = g.tokens;
            if let (StopReason::EndOfSequence, Some(eos)) = (g.stop, eos) {
                answer.push(eos);
            }
            Rollout {
                question,
                reward: reward(&g.text, questions[question]),
                prompt,
                answer,
                text: g.text,
            }
        })
        .filter(|r| !r.answer.is_empty())
        .collect())
}
