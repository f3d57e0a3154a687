//! The lock on an output folder, with real processes: a second `circuitdiff score` into the
//! same `--out` is refused at once naming the writer's pid while the writer's run comes out as
//! a lone run's, and the lock file of a killed run does not block the rerun.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use common::{circuitdiff, relative_files, Tiny};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lock file a writer holds in its output folder.
const LOCK_FILE: &str = circuitdiff::lock::LOCK_FILE;

/// Samples long enough that scoring them takes a few seconds.
const SAMPLES: usize = 48;

/// A sample file of [`SAMPLES`] samples of 120 prompt and 24 answer tokens.
fn samples_file(dir: &Path) -> PathBuf {
    let samples: Vec<serde_json::Value> = (0..SAMPLES)
        .map(|i| {
            let token = |j: usize| 3 + (i * 7 + j * 13) % 40;
            serde_json::json!({
                "id": format!("s{i}"),
                "prompt_ids": (0..120).map(token).collect::<Vec<_>>(),
                "answer_ids": (120..144).map(token).collect::<Vec<_>>(),
            })
        })
        .collect();
    let path = dir.join("samples.json");
    std::fs::write(&path, serde_json::Value::from(samples).to_string()).unwrap();
    path
}

fn score_args<'a>(model: &'a Path, samples: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let s = |p: &'a Path| p.to_str().unwrap();
    vec![
        "score",
        "--model",
        s(model),
        "--samples",
        s(samples),
        "--cut",
        "24",
        "--out",
        s(out),
    ]
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether `run` finished successfully, and its stderr.
fn finish(run: Child) -> (bool, String) {
    let out = run.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dir` holds what the lone run `lone` wrote: the same files, and the same bytes in every
/// sample's file.
fn assert_same_run(dir: &Path, lone: &Path) {
    let files = relative_files(lone);
    assert_eq!(relative_files(dir), files, "{}", dir.display());
    let samples: Vec<&PathBuf> = files.iter().filter(|f| f.starts_with("samples")).collect();
    assert_eq!(samples.len(), SAMPLES);
    for f in samples {
        assert!(
            std::fs::read(dir.join(f)).unwrap() == std::fs::read(lone.join(f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

#[test]
fn a_second_writer_is_refused_naming_the_first_and_a_killed_writers_lock_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Tiny::Llama.write(tmp.path());
    let samples = samples_file(tmp.path());
    let lone = tmp.path().join("lone");
    let (ok, _, stderr) = circuitdiff(&score_args(&model, &samples, &lone));
    assert!(ok, "{stderr}");
    assert!(!lone.join(LOCK_FILE).exists());

    // Two runs into one folder, started together: exactly one is refused, at once, naming
    // the other's pid; the other's run is the lone run's.
    let out = tmp.path().join("shared");
    let args = score_args(&model, &samples, &out);
    let mut runs = [spawn(&args), spawn(&args)];
    // The refused run ends while the other still runs.
    let ended = loop {
        if let Some(i) = (0..2).find(|&i| runs[i].try_wait().unwrap().is_some()) {
            break i;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let writer = 1 - ended;
    assert!(
        runs[writer].try_wait().unwrap().is_none(),
        "both runs ended"
    );
    let pid = runs[writer].id();
    let [first, second] = runs.map(finish);
    let (refused, written) = if ended == 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert!(written.0, "{}", written.1);
    assert!(!refused.0, "{}", refused.1);
    let message = format!(
        "{} is being written by another circuitdiff process (pid {pid}: circuitdiff score",
        out.display()
    );
    assert!(refused.1.contains(&message), "{}", refused.1);
    assert_same_run(&out, &lone);
    assert!(!out.join(LOCK_FILE).exists());

    // A run killed mid-way leaves its lock file, which does not block the rerun.
    let killed = tmp.path().join("killed");
    let args = score_args(&model, &samples, &killed);
    let mut run = spawn(&args);
    let deadline = Instant::now() + Duration::from_secs(120);
    while relative_files_or_none(&killed.join("samples")) < 2 {
        assert!(Instant::now() < deadline, "no sample was written");
        assert!(run.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(killed.join(LOCK_FILE).is_file());
    assert!(relative_files_or_none(&killed.join("samples")) < SAMPLES);
    let (ok, _, stderr) = circuitdiff(&args);
    assert!(ok, "{stderr}");
    assert_same_run(&killed, &lone);
    assert!(!killed.join(LOCK_FILE).exists());
}

/// The number of files in `dir`; 0 when it does not exist yet.
fn relative_files_or_none(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The study the app's worker runs (the library's `run_study`) is refused with the lock's
/// error while another writer holds the folder, before it writes anything there.
#[test]
fn a_study_into_a_locked_folder_is_refused_naming_the_holder() {
    use circuitdiff::lock::{DirLock, LockError};
    use circuitdiff::study::job::{run_study, StudyError};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let held = DirLock::acquire(&out).unwrap();
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    let cfg = circuitdiff::study::demo::config(&zoo, "grpo");
    let refused = run_study(
        &cfg,
        &circuitdiff::model::LoadOptions::default(),
        &out,
        &mut circuitdiff::progress::Silent,
        &circuitdiff::progress::CancelToken::new(),
    )
    .unwrap_err();
    let StudyError::Lock(LockError::Held { holder, .. }) = &refused else {
        panic!("{refused}");
    };
    assert_eq!(holder.pid, Some(std::process::id()));
    assert!(
        refused
            .to_string()
            .contains("is being written by another circuitdiff process"),
        "{refused}"
    );
    assert_eq!(relative_files(&out), [PathBuf::from(LOCK_FILE)]);
    drop(held);
    assert!(!out.exists());
}
