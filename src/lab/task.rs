//! The lab's environment: the built-in arithmetic task (`builtin:arith`, two operands up to 99,
//! `+` and `-`), its worked solutions, its prompt and its reward.
//!
//! The held-out evaluation split is the first [`EVAL_N`] questions of the default
//! `builtin:arith` stream (seed 42), so a study run with `--dataset builtin:arith` asks only
//! questions the zoo never trained on. Training questions come from another seed's stream with
//! every evaluation question removed.

use super::{LabError, Result};
use crate::model::{char_tokenizer_json, Tokenizer};
use crate::study::dataset::{arithmetic, ArithSpec, Question};
use crate::study::grade::grade;
use crate::study::prompt::{render, Template};
use std::collections::HashSet;

/// Questions in the held-out evaluation split.
pub const EVAL_N: usize = 500;

/// The characters of the zoo's tokenizer (after `<unk>`, `<s>`, `</s>`).
pub const CHARS: &str = "0123456789+-=?,:. \nQAWhatisboxed{}\\";

/// The zoo's chat template: `<s>Q: What is 47 + 38?\nA: `.
pub const CHAT_TEMPLATE: &str =
    "{{ bos_token }}{% for message in messages %}{{ 'Q: ' + message['content'] + '\\nA: ' }}{% endfor %}";

/// The zoo's `tokenizer.json`.
pub fn tokenizer_json() -> serde_json::Value {
    char_tokenizer_json(CHARS)
}

/// The held-out evaluation questions: the first `n` (at most [`EVAL_N`]) of `builtin:arith`.
pub fn eval_questions(n: usize) -> Vec<Question> {
    arithmetic(&ArithSpec {
        n: n.min(EVAL_N),
        ..ArithSpec::default()
    })
}

/// `n` training questions from the stream of `seed` (offset so that it never equals the
/// evaluation seed), distinct, none of them in the evaluation split.
pub fn train_questions(n: usize, seed: u64) -> Vec<Question> {
    let held_out: HashSet<String> = eval_questions(EVAL_N)
        .into_iter()
        .map(|q| q.question)
        .collect();
    let spec = ArithSpec {
        n: (4 * n).max(1000),
        seed: seed.wrapping_add(1_000_003),
        ..ArithSpec::default()
    };
    let mut seen = HashSet::new();
    arithmetic(&spec)
        .into_iter()
        .filter(|q| !held_out.contains(&q.question) && seen.insert(q.question.clone()))
        .take(n)
        .collect()
}

/// The prompt ids of a question, through the tokenizer's chat template (as a study renders it).
pub fn prompt_ids(tokenizer: &Tokenizer, question: &str) -> Result<Vec<u32>> {
    let text = render(
        &Template::ChatTemplate,
        question,
        tokenizer.chat_template.as_deref(),
        tokenizer.bos_token.as_deref(),
        tokenizer.eos_token.as_deref(),
    )?;
    tokenizer
        .encode(&text, false)
        .map_err(|e| LabError::Tokenize {
            message: e.to_string(),
            text,
        })
}

/// 1 when `answer` is graded correct against the question's reference, else 0.
pub fn reward(answer: &str, question: &Question) -> f64 {
    if grade(answer, &question.reference).correct {
        1.0
    } else {
        0.0
    }
}

/// A worked solution of `What is a ± b ± …?`: each operand is applied in two steps, its tens
/// then its units, and the last result is boxed, e.g. `47+30=77, 77+8=\boxed{85}` for
/// `47 + 38`. `None` for a question that is not a `+`/`-` chain of integers.
pub fn worked_solution(question: &str) -> Option<String> {
    let expr = question.strip_prefix("What is ")?.strip_suffix('?')?;
    let mut tokens = expr.split_whitespace();
    let mut value: i64 = tokens.next()?.parse().ok()?;
    let mut steps: Vec<String> = Vec::new();
    while let Some(op) = tokens.next() {
        let sign = match op {
            "+" => 1,
            "-" => -1,
            _ => return None,
        };
        let b: i64 = tokens.next()?.parse().ok()?;
        let (tens, units) = (b - b % 10, b % 10);
        let parts: Vec<i64> = [tens, units].into_iter().filter(|&x| x != 0).collect();
        for part in if parts.is_empty() { vec![0] } else { parts } {
            let next = value + sign * part;
            steps.push(format!("{value}{op}{part}={next}"));
            value = next;
        }
    }
    let last = steps.pop()?;
    let (lhs, result) = last.rsplit_once('=')?;
    steps.push(format!("{lhs}=\\boxed{{{result}}}"));
    Some(steps.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_solutions_step_through_tens_and_units() {
        let w = |q: &str| worked_solution(q).unwrap();
        assert_eq!(w("What is 47 + 38?"), "47+30=77, 77+8=\\boxed{85}");
        assert_eq!(w("What is 23 - 58?"), "23-50=-27, -27-8=\\boxed{-35}");
        assert_eq!(w("What is 5 + 40?"), "5+40=\\boxed{45}");
        assert_eq!(w("What is 5 - 7?"), "5-7=\\boxed{-2}");
        assert_eq!(w("What is 9 + 1 - 20?"), "9+1=10, 10-20=\\boxed{-10}");
        assert_eq!(worked_solution("What is 3 * 4?"), None);
        assert_eq!(worked_solution("hello"), None);
    }

    #[test]
    fn every_solution_grades_correct_and_splits_are_disjoint() {
        let eval = eval_questions(EVAL_N);
        let train = train_questions(3000, 7);
        assert_eq!(train.len(), 3000);
        let held: HashSet<_> = eval.iter().map(|q| &q.question).collect();
        assert!(train.iter().all(|q| !held.contains(&q.question)));
        for q in eval.iter().chain(&train) {
            let s = worked_solution(&q.question).unwrap();
            assert_eq!(reward(&s, q), 1.0, "{} -> {s}", q.question);
            assert!(s.chars().all(|c| CHARS.contains(c)), "{s}");
        }
    }
}
