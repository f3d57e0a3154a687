//! The study pipeline (method.md §4): questions, prompts, generation, grading and selection.

pub mod answers;
pub mod dataset;
pub mod demo;
pub mod dir;
pub mod grade;
pub mod job;
pub mod ladder;
mod latex_eval;
pub mod prompt;
mod report_md;
pub mod trajectory;
pub mod trajectory_dir;
