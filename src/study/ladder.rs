//! A training run's checkpoints in order of their step: found in a TRL output folder
//! (`checkpoint-N/`, full weights or LoRA adapters, with `trainer_state.json`), in a lab stage
//! (`base/`, `checkpoints/<stage>/step-N/`, `<stage>/` with its `train_log.csv`), or listed
//! one by one.

use crate::lab::layout::LabDir;
use crate::report::train_log::{self, LogSource};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One checkpoint of a trajectory: its training step and its model spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub step: u64,
    pub spec: String,
}

/// The checkpoints found and the training log beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    pub rungs: Vec<Rung>,
    pub log: Option<LogSource>,
}

/// Why no ladder could be made of the given paths.
#[derive(Debug, thiserror::Error)]
pub enum LadderError {
    #[error("no checkpoints given: name a TRL output folder (checkpoint-N/), a lab stage folder (e.g. zoo/grpo) or the checkpoints in order")]
    Empty,
    #[error("{}: no checkpoints in it (TRL's checkpoint-N/ or the lab's step-N/ folders): name the checkpoints one by one instead", dir.display())]
    NoCheckpoints { dir: PathBuf },
    #[error("--steps gives {given} steps for {rungs} checkpoints: give one step per checkpoint")]
    StepCount { given: usize, rungs: usize },
    #[error("a trajectory needs at least two checkpoints; found {found}: {}", specs.join(", "))]
    TooShort { found: usize, specs: Vec<String> },
    #[error("the steps must increase along the trajectory: step {step} of {spec} follows step {previous}; order the checkpoints or give --steps")]
    Order {
        step: u64,
        previous: u64,
        spec: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The step of a checkpoint folder named `checkpoint-N`, `step-N` or `…-N`.
pub fn step_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let (_, n) = name.rsplit_once('-')?;
    n.parse().ok()
}

/// The subfolders of `dir` whose name gives a step (`step_of_name`), by step.
fn numbered(
    dir: &Path,
    step_of_name: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<(u64, PathBuf)>, LadderError> {
    let io = |source| LadderError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = step_of_name(name) {
            if path.is_dir() {
                found.push((n, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn rung(step: u64, path: &Path) -> Rung {
    Rung {
        step,
        spec: path.display().to_string(),
    }
}

/// A TRL output folder: its `checkpoint-N/` in order, and the most complete trainer state (the
/// folder's own, else the last checkpoint's).
fn trl_run(dir: &Path) -> Result<Option<Ladder>, LadderError> {
    let found = numbered(dir, train_log::trl_step)?;
    let Some((_, last)) = found.last() else {
        return Ok(None);
    };
    let log = [
        dir.join(train_log::TRAINER_STATE),
        last.join(train_log::TRAINER_STATE),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .map(LogSource::TrainerState);
    let rungs = found.iter().map(|(n, p)| rung(*n, p)).collect();
    Ok(Some(Ladder { rungs, log }))
}

/// A lab stage folder `LAB/<stage>`: the base `LAB/base` at step 0, the stage's intermediate
/// checkpoints `LAB/checkpoints/<stage>/step-N`, and the stage's final model at its last logged
/// step.
fn lab_stage(dir: &Path) -> Result<Option<Ladder>, LadderError> {
    let Some((lab, stage)) = LabDir::of_stage(dir) else {
        return Ok(None);
    };
    let steps_dir = lab.checkpoints_dir(&stage);
    let csv = dir.join(train_log::FILE_NAME);
    if !steps_dir.is_dir() || !csv.is_file() || !crate::model::is_model_folder(dir) {
        return Ok(None);
    }
    let found = numbered(&steps_dir, LabDir::checkpoint_step)?;
    let last_logged = std::fs::read_to_string(&csv)
        .ok()
        .and_then(|text| {
            let log = train_log::TrainLog::parse("", &text, &csv).ok()?;
            log.rows.last().map(|(step, _)| *step as u64)
        })
        .unwrap_or_else(|| found.last().map_or(1, |(n, _)| n + 1));
    let mut rungs = Vec::new();
    let base = lab.base_dir();
    if crate::model::is_model_folder(&base) && base != dir {
        rungs.push(rung(0, &base));
    }
    rungs.extend(found.iter().map(|(n, p)| rung(*n, p)));
    rungs.push(rung(last_logged, dir));
    Ok(Some(Ladder {
        rungs,
        log: Some(LogSource::LabCsv(csv)),
    }))
}

/// The ladder of `paths`:
/// - one folder holding TRL's `checkpoint-N/` folders: those, by step, with its trainer state;
/// - one lab stage folder (`zoo/grpo`): the base at step 0, the stage's kept checkpoints and the
///   stage's final model, with its `train_log.csv`;
/// - one folder holding `step-N/` folders (`checkpoints/<stage>`): those, by step;
/// - otherwise each path is a checkpoint, at the step its name ends in (`checkpoint-40`,
///   `step-000040`), else at its place in the list.
///
/// `first` (a base model, say) is put before them at step 0; `steps` replaces the steps, one per
/// checkpoint (`first` included); `log` replaces the training log found. The steps must
/// increase, and there must be at least two checkpoints.
pub fn discover(
    paths: &[String],
    first: Option<&str>,
    steps: Option<&[u64]>,
    log: Option<LogSource>,
) -> Result<Ladder, LadderError> {
    let mut ladder = match paths {
        [] => return Err(LadderError::Empty),
        [one] if Path::new(one).is_dir() => {
            folder(Path::new(one))?.unwrap_or_else(|| listed(paths))
        }
        _ => listed(paths),
    };
    if let Some(first) = first {
        ladder.rungs.insert(
            0,
            Rung {
                step: 0,
                spec: first.to_owned(),
            },
        );
    }
    if let Some(steps) = steps {
        if steps.len() != ladder.rungs.len() {
            return Err(LadderError::StepCount {
                given: steps.len(),
                rungs: ladder.rungs.len(),
            });
        }
        for (r, &s) in ladder.rungs.iter_mut().zip(steps) {
            r.step = s;
        }
    }
    if log.is_some() {
        ladder.log = log;
    }
    check(&ladder.rungs)?;
    Ok(ladder)
}

/// At least two checkpoints, at increasing steps.
pub fn check(rungs: &[Rung]) -> Result<(), LadderError> {
    if rungs.len() < 2 {
        return Err(LadderError::TooShort {
            found: rungs.len(),
            specs: rungs.iter().map(|r| r.spec.clone()).collect(),
        });
    }
    for pair in rungs.windows(2) {
        if pair[1].step <= pair[0].step {
            return Err(LadderError::Order {
                step: pair[1].step,
                previous: pair[0].step,
                spec: pair[1].spec.clone(),
            });
        }
    }
    Ok(())
}

/// The ladder a single folder holds (a TRL run, a lab stage, a folder of `step-N/`); `None`
/// when the folder is itself a checkpoint (a model or an adapter that is not a lab stage).
fn folder(dir: &Path) -> Result<Option<Ladder>, LadderError> {
    let stage = lab_stage(dir)?;
    let model = crate::model::is_model_folder(dir);
    if model && stage.is_none() {
        return Ok(None);
    }
    if let Some(l) = trl_run(dir)? {
        return Ok(Some(l));
    }
    if stage.is_some() {
        return Ok(stage);
    }
    let found = numbered(dir, LabDir::checkpoint_step)?;
    if found.is_empty() {
        return Err(LadderError::NoCheckpoints {
            dir: dir.to_owned(),
        });
    }
    Ok(Some(Ladder {
        rungs: found.iter().map(|(n, p)| rung(*n, p)).collect(),
        log: None,
    }))
}

/// Each path a checkpoint, at the step its name ends in, else at its place in the list.
fn listed(paths: &[String]) -> Ladder {
    Ladder {
        rungs: paths
            .iter()
            .enumerate()
            .map(|(i, p)| Rung {
                step: step_of(Path::new(p)).unwrap_or(i as u64),
                spec: p.clone(),
            })
            .collect(),
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "{}").unwrap();
    }

    #[test]
    fn a_trl_folder_is_read_in_step_order_with_its_trainer_state() {
        let t = tempfile::tempdir().unwrap();
        for n in [100, 20, 5] {
            touch(&t.path().join(format!("checkpoint-{n}/adapter_config.json")));
        }
        touch(&t.path().join("checkpoint-100/trainer_state.json"));
        let dir = t.path().display().to_string();
        let l = discover(std::slice::from_ref(&dir), None, None, None).unwrap();
        let steps: Vec<u64> = l.rungs.iter().map(|r| r.step).collect();
        assert_eq!(steps, [5, 20, 100]);
        assert_eq!(
            l.log,
            Some(LogSource::TrainerState(
                t.path().join("checkpoint-100/trainer_state.json")
            ))
        );
        let with_base = discover(&[dir], Some("org/base"), None, None).unwrap();
        assert_eq!(with_base.rungs[0].step, 0);
        assert_eq!(with_base.rungs.len(), 4);
    }

    #[test]
    fn a_lab_stage_runs_from_the_base_to_its_final_model() {
        let t = tempfile::tempdir().unwrap();
        let lab = t.path();
        touch(&lab.join("base/config.json"));
        touch(&lab.join("grpo/config.json"));
        std::fs::write(
            lab.join("grpo/train_log.csv"),
            "step,loss\n1,0.5\n120,0.1\n",
        )
        .unwrap();
        for n in [40, 80] {
            touch(
                &LabDir::new(lab)
                    .checkpoint_dir("grpo", n)
                    .join("config.json"),
            );
        }
        let l = discover(&[lab.join("grpo").display().to_string()], None, None, None).unwrap();
        let steps: Vec<u64> = l.rungs.iter().map(|r| r.step).collect();
        assert_eq!(steps, [0, 40, 80, 120]);
        assert!(l.rungs[0].spec.ends_with("base"));
        assert!(matches!(l.log, Some(LogSource::LabCsv(_))));
    }

    #[test]
    fn listed_checkpoints_take_the_steps_of_their_names_or_places() {
        let named = [
            "run/checkpoint-10".to_owned(),
            "run/checkpoint-30".to_owned(),
        ];
        let l = discover(&named, None, None, None).unwrap();
        assert_eq!(l.rungs[1].step, 30);
        let plain = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let l = discover(&plain, None, None, None).unwrap();
        assert_eq!(l.rungs[2].step, 2);
        let l = discover(&plain, None, Some(&[0, 50, 100]), None).unwrap();
        assert_eq!(l.rungs[1].step, 50);
        let err = discover(&plain, None, Some(&[0, 50]), None).unwrap_err();
        assert!(err.to_string().contains("one step per checkpoint"), "{err}");
        let err = discover(&plain, None, Some(&[0, 50, 50]), None).unwrap_err();
        assert!(err.to_string().contains("must increase"), "{err}");
        let err = discover(&plain[..1], None, None, None).unwrap_err();
        assert!(err.to_string().contains("at least two"), "{err}");
    }
}
