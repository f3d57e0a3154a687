//! The study pipeline (method.md §4): questions, prompts, generation, grading and selection.

pub mod answer_format;
pub mod answers;
pub mod dataset;
pub mod demo;
pub mod demo_dir;
pub mod demo_real;
pub mod dir;
pub mod error;
pub mod grade;
pub mod import_record;
pub mod imported;
pub mod job;
pub mod kind;
pub mod ladder;
mod latex_eval;
pub mod prompt;
mod report_md;
mod stage;
pub mod stage_times;
pub mod trajectory;
pub mod trajectory_dir;
