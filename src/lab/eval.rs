//! Task accuracy of a model on held-out questions, with greedy decoding.

use super::task::{prompt_ids, reward};
use super::Result;
use crate::model::{GenerateOptions, Model, Sampling};
use crate::study::dataset::Question;

/// Answers generated at once.
const BATCH: usize = 64;

/// Fraction of `questions` that `model` answers correctly (greedy, at most `max_new_tokens`).
pub fn accuracy(model: &Model, questions: &[Question], max_new_tokens: usize) -> Result<f64> {
    if questions.is_empty() {
        return Ok(0.0);
    }
    let opts = GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        ..GenerateOptions::default()
    };
    let mut correct = 0.0;
    for chunk in questions.chunks(BATCH) {
        let prompts = chunk
            .iter()
            .map(|q| prompt_ids(&model.tokenizer, &q.question))
            .collect::<Result<Vec<_>>>()?;
        for (g, q) in model.generate_batch(&prompts, &opts)?.iter().zip(chunk) {
            correct += reward(&g.text, q);
        }
    }
    Ok(correct / questions.len() as f64)
}
