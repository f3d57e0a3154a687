//! The study pipeline (method.md §4): questions, prompts, generation, grading and selection.

pub mod dataset;
pub mod grade;
mod latex_eval;
pub mod prompt;
