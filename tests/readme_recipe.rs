//! The README's real-model recipe (the SmolLM2 `study` under "Quick start") as printed, on
//! fewer questions: some answers are right and K, the answer tokens scored, is at least 4; and
//! the model given as base and as tuned answers and is scored once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;

/// The arguments after `--` of the README's SmolLM2 `study` command, split as a shell would
/// (single quotes kept together), `$M` replaced by the test model.
fn readme_study_args() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- study --base $M"))
        .expect("the README's SmolLM2 study command");
    let (_, args) = line.split_once(" -- ").expect("cargo run -- …");
    let mut out = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    for c in args.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => out.extend((!word.is_empty()).then(|| std::mem::take(&mut word))),
            _ => word.push(c),
        }
    }
    out.push(word);
    let model = common::smollm2().display().to_string();
    out.into_iter()
        .map(|a| if a == "$M" { model.clone() } else { a })
        .collect()
}

/// The value after `flag` in `args`.
fn value<'a>(args: &'a mut [String], flag: &str) -> &'a mut String {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the README's command has no {flag}"));
    &mut args[i + 1]
}

#[test]
fn readme_smollm2_recipe_gets_answers_right_and_scores_four_tokens() {
    let mut args = readme_study_args();
    // The README's settings on 16 of its questions, without exact effects (they do not change
    // what is answered or how many tokens are scored), into a temporary folder.
    let dataset = value(&mut args, "--dataset");
    let (builtin, params) = dataset.split_once('?').expect("builtin:arith?…");
    let params: Vec<&str> = params.split('&').filter(|p| !p.starts_with("n=")).collect();
    *dataset = format!("{builtin}?n=16&{}", params.join("&"));
    *value(&mut args, "--exact-samples") = "0".into();
    let dir = tempfile::tempdir().unwrap();
    *value(&mut args, "--out") = dir.path().join("study-out").display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = common::circuitdiff(&args);
    assert!(ok, "{args:?}\n{stdout}\n{stderr}");
    let counts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("study-out/counts.json")).unwrap(),
    )
    .unwrap();
    let correct = counts["base"]["correct"].as_u64().unwrap();
    let k = counts["k"].as_u64().unwrap();
    assert!(correct > 0, "{counts}");
    assert!(k >= 4, "{counts}");
    assert!(
        stdout.contains(&format!("scored: K = {k} answer tokens")),
        "{stdout}"
    );
    assert!(!stdout.contains("warning: K ="), "{stdout}");
    // One model as both: answered and scored once, and the difference said to be none.
    for stage in ["answer base: 16 to do", "score base: "] {
        assert!(stderr.contains(stage), "{stderr}");
    }
    for stage in ["answer tuned", "score tuned"] {
        assert!(!stderr.contains(stage), "{stderr}");
    }
    assert!(
        stdout.contains("no difference: the two models' scores are identical"),
        "{stdout}"
    );
}
