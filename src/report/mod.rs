//! Results on disk: the run directory (manifest, scores, metrics, NumPy export) and the paired
//! comparison of two runs with the saturation of their samples, figures as data, training logs.

pub mod circuit;
pub mod comparison;
pub mod edge_change;
pub mod figures;
pub mod layout;
pub mod npz;
pub mod render;
pub mod run;
pub mod run_dir;
pub mod sample_file;
pub mod saturation;
pub mod span;
pub mod table;
pub mod train_log;
pub mod trajectory;
pub mod validation;
pub mod verdict;
