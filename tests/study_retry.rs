//! A failed study leaves nothing that blocks its retry: a study of other settings replaces it,
//! while a finished study is still never overwritten.

mod common;

use std::path::Path;

/// `study` of the zoo's base and GRPO on 8 questions with `max_new_tokens` into `out`.
fn study(out: &Path, max_new_tokens: &str) -> (bool, String, String) {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    common::circuitdiff(&[
        "study",
        "--base",
        zoo.join("base").to_str().unwrap(),
        "--tuned",
        zoo.join("grpo").to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=8",
        "--n",
        "4",
        "--exact-samples",
        "0",
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
