//! The scoring engine: a run's samples scored into its run directory, each persisted as it
//! completes, so that an interrupted run resumes where it stopped.

use crate::attribution::SampleScores;
use crate::model::Model;
use crate::progress::{CancelToken, Progress};
use crate::report::run::{
    finish, read_manifest, read_sample, write_manifest, write_sample, Manifest, Run, RunDir,
    RunError, ScoreSample,
};
use std::path::Path;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How a scoring run ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Box<Run>),
    Cancelled { scored: usize, total: usize },
}

/// Score `samples` with `model` into `dir`: each sample's scores are persisted as they complete,
/// samples already on disk are not recomputed unless their file fails verification (then with a
/// warning naming the file and the reason), and the aggregate files are written at the end.
/// A directory holding a different run (other model, method or samples) is refused. Progress is
/// reported as the stage `stage`.
pub fn score_run(
    stage: &str,
    dir: &Path,
    model: &Model,
    manifest: &Manifest,
    samples: &[ScoreSample],
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Outcome, RunError> {
    for (sample, entry) in samples.iter().zip(&manifest.samples) {
        crate::attribution::score::check_sample(
            model,
            &entry.id,
            &sample.prompt_ids,
            &sample.answer_ids,
        )?;
    }
    if let Some(existing) = read_manifest(dir)? {
        if existing != *manifest {
            return Err(RunError::Invalid {
                path: dir.to_owned(),
                message: "holds a different run (model, method or samples differ); choose another output directory or delete this one".into(),
            });
        }
    } else if let Some(first) =
        crate::fsutil::foreign_entry(dir, RunDir::manifest_name()).map_err(io(dir))?
    {
        return Err(RunError::Invalid {
            path: dir.to_owned(),
            message: format!(
                "holds other files ({first}, …) and no {}: a scoring run writes into a new or empty directory; choose another output directory",
                RunDir::manifest_name()
            ),
        });
    } else {
        write_manifest(dir, manifest)?;
    }
    // A run killed mid-write (of a sample, or of the manifest of a directory it was claiming)
    // left its temporary files; this one writes its own.
    for d in [dir.to_owned(), RunDir::new(dir).samples_dir()] {
        crate::fsutil::remove_stale_temps(&d).map_err(io(&d))?;
    }
    progress.start(stage, samples.len() as u64);
    let mut scores = Vec::with_capacity(samples.len());
    for (i, (sample, entry)) in samples.iter().zip(&manifest.samples).enumerate() {
        if let Some(done) = reusable(dir, i, manifest, progress)? {
            scores.push(done);
        } else {
            if cancel.is_cancelled() {
                return Ok(Outcome::Cancelled {
                    scored: i,
                    total: samples.len(),
                });
            }
            let s = crate::attribution::score_sample(
                model,
                &manifest.graph,
                &entry.id,
                &sample.prompt_ids,
                &sample.answer_ids,
                manifest.method.cut,
            )?;
            write_sample(dir, i, manifest, &s)?;
            scores.push(s);
        }
        progress.set(i as u64 + 1);
    }
    finish(dir, manifest, scores).map(|r| Outcome::Finished(Box::new(r)))
}

/// Sample `index`'s scores when its file holds them and passes every check; a file that fails
/// one is reported with a warning (a progress note), to be recomputed.
fn reusable(
    dir: &Path,
    index: usize,
    manifest: &Manifest,
    progress: &mut dyn Progress,
) -> Result<Option<SampleScores>, RunError> {
    Ok(match read_sample(dir, index, manifest)? {
        Some(Ok(s)) => Some(s),
        Some(Err(defect)) => {
            progress.note(&format!(
                "warning: {}: {defect}; recomputing",
                RunDir::new(dir).sample_path(index).display()
            ));
            None
        }
        None => None,
    })
}
