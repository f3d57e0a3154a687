//! The run directory: the one owner of its layout, every file name of a scoring run.
//!
//! ```text
//! DIR/manifest.json            model, method choices, K, graph, samples, software version
//! DIR/samples/NNNNNN.safetensors   per-sample scores (dense S×D f32), loss, K, and in the
//!                                  metadata id, K, shape, run identity and checksum
//!                                  (report::sample_file); written as each sample completes, so
//!                                  an interrupted run resumes, and verified when read
//! DIR/scores.safetensors       all_scores (N,S,D) f32, scores (S,D) mean, losses (N,)
//! DIR/scores.npz               the study's layout: scores, all_scores, real_edge_mask, losses
//! DIR/metrics.json             metrics of the mean vector and of every sample, overall and per layer
//! DIR/metrics.csv              one row per sample, then the mean vector
//! DIR/exact/NNNNNN.json        one model's exact effects and faithfulness curve on sample
//!                              NNNNNN (report::validation), written as each sample completes
//! DIR/validation.json          (`score`) the run's agreement of EAP with the exact effects
//! ```
//!
//! What the files hold is in [`super::run`] (manifest, scores, metrics) and
//! [`super::validation`] (exact effects).

use std::path::{Path, PathBuf};

/// The file that makes a folder a run directory, written first.
const MANIFEST: &str = "manifest.json";

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `dir` holds a run (its manifest).
    pub fn is_run(dir: &Path) -> bool {
        Self::new(dir).manifest_path().is_file()
    }

    /// The name of the manifest, the file a run claims its directory with.
    pub fn manifest_name() -> &'static str {
        MANIFEST
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }

    /// The folder of the per-sample score files.
    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// Sample `index`'s score file.
    pub fn sample_path(&self, index: usize) -> PathBuf {
        self.samples_dir().join(format!("{index:06}.safetensors"))
    }

    /// Every sample's scores, their mean and the losses, as safetensors.
    pub fn scores_path(&self) -> PathBuf {
        self.root.join("scores.safetensors")
    }

    /// The same arrays and the real-edge mask as a NumPy archive.
    pub fn npz_path(&self) -> PathBuf {
        self.root.join("scores.npz")
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.json")
    }

    pub fn metrics_csv_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// Sample `index`'s exact effects and faithfulness curve.
    pub fn exact_path(&self, index: usize) -> PathBuf {
        self.root.join("exact").join(format!("{index:06}.json"))
    }

    /// The run's check of EAP (`score --exact-samples`).
    pub fn validation_path(&self) -> PathBuf {
        self.root.join("validation.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_a_folder_with_a_manifest() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        assert!(!RunDir::is_run(t.path()));
        std::fs::write(run.manifest_path(), "{}").unwrap();
        assert!(RunDir::is_run(t.path()));
        assert_eq!(
            run.sample_path(7),
            t.path().join("samples").join("000007.safetensors")
        );
        assert_eq!(
            run.exact_path(12),
            t.path().join("exact").join("000012.json")
        );
    }
}
