//! A failed study leaves nothing that blocks its retry: a study of other settings replaces it,
//! while a finished study is still never overwritten. The same model given as base and tuned
//! answers and is scored once, and the study says there is no difference.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;

/// `study` of the zoo's base and GRPO on 8 questions with `max_new_tokens` into `out`.
fn study(out: &Path, max_new_tokens: &str) -> (bool, String, String) {
    study_of("grpo", out, max_new_tokens, "0")
}

/// `study` of the zoo's base and `tuned` on 8 questions with `max_new_tokens` into `out`,
/// `exact` of them checked with exact effects.
fn study_of(tuned: &str, out: &Path, max_new_tokens: &str, exact: &str) -> (bool, String, String) {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    common::circuitdiff(&[
        "study",
        "--base",
        zoo.join("base").to_str().unwrap(),
        "--tuned",
        zoo.join(tuned).to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=8",
        "--n",
        "4",
        "--exact-samples",
        exact,
        "--max-new-tokens",
        max_new_tokens,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn a_failed_study_is_replaced_by_its_retry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    // One new token: no answer is complete, so nothing can be selected.
    let (ok, _, err) = study(&out, "1");
    assert!(!ok, "{err}");
    assert!(err.contains("no question was answered correctly"), "{err}");
    let failed = std::fs::read_to_string(out.join("failed.txt")).unwrap();
    assert!(
        failed.contains("no question was answered correctly"),
        "{failed}"
    );
    // The same command again is a retry of the same study (and fails the same way).
    let (ok, _, err) = study(&out, "1");
    assert!(!ok && !err.contains("holds a different study"), "{err}");
    // Other settings take the folder over.
    let (ok, stdout, err) = study(&out, "32");
    assert!(ok, "{err}");
    assert!(err.contains("replacing the failed study"), "{err}");
    assert!(stdout.contains("scored: K = "), "{stdout}");
    assert!(!out.join("failed.txt").exists());
    // A finished study is not replaced by another.
    let (ok, _, err) = study(&out, "1");
    assert!(!ok && err.contains("holds a different study"), "{err}");
    assert!(out.join("report.md").is_file());
}

#[test]
fn one_model_as_base_and_tuned_is_answered_and_scored_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let (ok, stdout, err) = study_of("base", &out, "32", "2");
    assert!(ok, "{err}");
    // One stage per kind of work, each finished (the plain progress lines of a pipe).
    assert!(err.contains("answer base: 8/8 (100 %)"), "{err}");
    assert!(err.contains("score base: 4/4 (100 %)"), "{err}");
    assert!(err.contains("exact effects base: 2/2 (100 %)"), "{err}");
    for stage in ["answer tuned", "score tuned", "exact effects tuned"] {
        assert!(!err.contains(stage), "{err}");
    }
    // Both sides' files are there, and equal.
    let read = |f: &str| std::fs::read(out.join(f)).unwrap();
    assert_eq!(read("answers/base.jsonl"), read("answers/tuned.jsonl"));
    assert_eq!(read("base/metrics.csv"), read("tuned/metrics.csv"));
    assert_eq!(
        read("base/exact/000000.json"),
        read("tuned/exact/000000.json")
    );
    let no_difference = "no difference: the two models' scores are identical";
    assert!(stdout.contains(no_difference), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(no_difference));
    // The figures of tuned − base say so instead of a colour scale of ±1e-38.
    for figure in [
        "heatmap.svg",
        "heatmap_importance_change.svg",
        "circuit_difference.svg",
        "circuit_importance_change.svg",
    ] {
        let svg = std::fs::read_to_string(out.join("figures").join(figure)).unwrap();
        let said = svg.contains("no difference: the two models&apos; scores are identical");
        assert!(said, "{figure}");
        assert!(!svg.contains("e-38"), "{figure} labels a scale of zeros");
    }
    let comparison = std::fs::read_to_string(out.join("comparison.json")).unwrap();
    assert!(comparison.contains("\"identical\": true"), "{comparison}");
}

/// `trajectory` from the zoo's base to its GRPO model on 8 questions with `max_new_tokens`.
fn trajectory(out: &Path, max_new_tokens: &str) -> (bool, String, String) {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    common::circuitdiff(&[
        "trajectory",
        zoo.join("base").to_str().unwrap(),
        zoo.join("grpo").to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=8",
        "--n",
        "4",
        "--max-new-tokens",
        max_new_tokens,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn a_failed_trajectory_is_replaced_by_its_retry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trajectory");
    let (ok, _, err) = trajectory(&out, "1");
    assert!(
        !ok && err.contains("no question was answered correctly"),
        "{err}"
    );
    let failed = std::fs::read_to_string(out.join("failed.txt")).unwrap();
    assert!(
        failed.contains("no question was answered correctly"),
        "{failed}"
    );
    // The same command again is a retry of the same trajectory.
    let (ok, _, err) = trajectory(&out, "1");
    assert!(
        !ok && !err.contains("holds a different trajectory"),
        "{err}"
    );
    // Other settings take the folder over.
    let (ok, _, err) = trajectory(&out, "32");
    assert!(ok, "{err}");
    assert!(err.contains("replacing the failed trajectory"), "{err}");
    assert!(!out.join("failed.txt").exists());
    // A finished trajectory is not replaced by another.
    let (ok, _, err) = trajectory(&out, "1");
    assert!(!ok && err.contains("holds a different trajectory"), "{err}");
    assert!(out.join("report.md").is_file());
}
