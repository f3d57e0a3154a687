//! The study end to end: SmolLM2 against itself on the built-in arithmetic task (every file of
//! the output directory, resuming after a torn write), and the clear failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model;
use common::{circuitdiff, smollm2, Tiny, CHARS};

#[test]
fn smollm2_study_writes_every_output_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let m = smollm2();
    let args = study_args(m.to_str().unwrap(), &out);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("asked 10"), "{stdout}");
    for f in [
        "study.json",
        "answers.jsonl",
        "answers/base.jsonl",
        "answers/tuned.jsonl",
        "counts.json",
        "comparison.json",
        "comparison.csv",
        "report.md",
        "base/scores.npz",
        "tuned/metrics.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_stages_timed(&out, &stderr);
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("counts.json")).unwrap()).unwrap();
    assert_eq!(counts["asked"], 10);
    let both = counts["both_correct"].as_u64().unwrap();
    assert!(both >= 1, "{counts}");
    // The same model on both sides: identical answers, so every question correct for one is
    // correct for the other and the scores agree exactly.
    assert_eq!(counts["base"], counts["tuned"]);
    assert_eq!(
        counts["scored"],
        counts["after_filters"].as_u64().unwrap().min(4)
    );
    let base = std::fs::read(out.join("base/scores.safetensors")).unwrap();
    assert_eq!(
        base,
        std::fs::read(out.join("tuned/scores.safetensors")).unwrap()
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| both correct |") && report.contains("| kurtosis |"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("answers.jsonl"))
            .unwrap()
            .lines()
            .count(),
        10
    );

    // A process killed mid-write leaves a torn answer line; scores and aggregates are redone.
    let path = out.join("answers/tuned.jsonl");
    let text = std::fs::read(&path).unwrap();
    let cut = text.iter().position(|&b| b == b'\n').unwrap() + 40;
    std::fs::write(&path, &text[..cut]).unwrap();
    for d in ["base", "tuned"] {
        std::fs::remove_dir_all(out.join(d)).unwrap();
    }
    std::fs::remove_file(out.join("comparison.json")).unwrap();
    let before = std::fs::read_to_string(out.join("counts.json")).unwrap();
    let (ok, _, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        text,
        "answers regenerated differently"
    );
    assert_eq!(
        std::fs::read(out.join("base/scores.safetensors")).unwrap(),
        base
    );
    assert_eq!(
        std::fs::read_to_string(out.join("counts.json")).unwrap(),
        before
    );

    // A different study into the same directory is refused.
    let mut other = args;
    other[10] = "3".into();
    let (ok, _, stderr) = run(&other);
    assert!(
        !ok && stderr.contains("holds a different study"),
        "{stderr}"
    );
}

/// The study in `out` wrote each stage's wall time, in order, and said them (`stderr`).
fn assert_stages_timed(out: &std::path::Path, stderr: &str) {
    let times: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap()).unwrap();
    let stages: Vec<&str> = times["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["seconds"].as_f64().unwrap() >= 0.0, "{s}");
            s["stage"].as_str().unwrap()
        })
        .collect();
    assert_eq!(stages, ["answer", "select", "score", "check", "report"]);
    assert!(times["threads"].as_u64().unwrap() >= 1, "{times}");
    assert!(
        stderr.contains("time: ") && stderr.contains("scoring"),
        "{stderr}"
    );
}

#[test]
fn no_both_correct_and_mismatched_vocabularies_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Tiny::Llama.write(tmp.path());
    let b = Tiny::Llama.write_seeded(tmp.path(), 9);
    // A study that must fail; returns its error output.
    let failing = |tuned: &std::path::Path, dataset: &str, out: &str| -> String {
        let (ok, _, stderr) = circuitdiff(&[
            "study",
            "--base",
            a.to_str().unwrap(),
            "--tuned",
            tuned.to_str().unwrap(),
            "--dataset",
            dataset,
            "--max-new-tokens",
            "4",
            "--out",
            tmp.path().join(out).to_str().unwrap(),
        ]);
        assert!(!ok, "study into {out} succeeded");
        stderr
    };

    let stderr = failing(&b, "builtin:arith?n=3", "s1");
    assert!(
        stderr.contains("no question was answered correctly by both models"),
        "{stderr}"
    );
    assert!(stderr.contains("base accuracy 0.0 %"), "{stderr}");
    assert!(tmp.path().join("s1/counts.json").is_file());

    // Another tokenizer (same vocabulary size, different characters).
    let cfg = Tiny::Llama.config();
    let other_chars: String = CHARS.chars().rev().collect();
    let c = tmp.path().join("other-vocab");
    let w = model::random_weights(&cfg, 3, 0.2).unwrap();
    model::write_hf_folder(
        &c,
        &cfg,
        &w,
        &model::char_tokenizer_json(&other_chars),
        None,
    )
    .unwrap();
    let stderr = failing(&c, "builtin:arith?n=3", "s2");
    // Same size, other characters: the pair check names the first token that differs.
    let says = "cannot be compared: their vocabularies differ (";
    assert!(stderr.contains(says), "{stderr}");
    assert!(stderr.contains("; first difference at id "), "{stderr}");

    // An empty dataset file.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let stderr = failing(&b, empty.to_str().unwrap(), "s4");
    assert!(stderr.contains("empty.jsonl"), "{stderr}");

    // A dataset file without question fields.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"x\": 1}\n").unwrap();
    let stderr = failing(&b, bad.to_str().unwrap(), "s3");
    assert!(stderr.contains("bad.jsonl"), "{stderr}");
}

fn run(args: &[String]) -> (bool, String, String) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    circuitdiff(&refs)
}

/// SmolLM2 against itself on ten one-digit sums, 24 new tokens, 4 scored questions, answered in
/// batches of 5, without exact effects (tests/validation.rs checks those on tiny models).
fn study_args(m: &str, out: &std::path::Path) -> Vec<String> {
    [
        "study",
        "--base",
        m,
        "--tuned",
        m,
        "--dataset",
        "builtin:arith?n=10&max=9",
        "--max-new-tokens",
        "24",
        "--n",
        "4",
        "--batch",
        "5",
        "--exact-samples",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn same_results(a: &std::path::Path, b: &std::path::Path) {
    for f in [
        "base/scores.safetensors",
        "tuned/scores.safetensors",
        "counts.json",
        "answers.jsonl",
        "base/metrics.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

#[test]
fn sharded_and_killed_studies_equal_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let m = smollm2();
    let m = m.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let (ok, _, e) = run(&study_args(m, &whole));
    assert!(ok, "{e}");

    // Two shards answer half the questions each; merge joins them and finishes the study.
    let mut shards = Vec::new();
    for i in 0..2 {
        let dir = tmp.path().join(format!("shard{i}"));
        let mut args = study_args(m, &dir);
        args.extend(["--shard".to_owned(), format!("{i}/2")]);
        let (ok, out, e) = run(&args);
        assert!(ok && out.contains("shard answered 5 questions"), "{out}{e}");
        shards.push(dir);
    }
    let merged = tmp.path().join("merged");
    let (ok, _, e) = circuitdiff(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    same_results(&whole, &merged);
    let (ok, _, e) = circuitdiff(&[
        "merge",
        shards[0].to_str().unwrap(),
        "--out",
        tmp.path().join("m2").to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("do not cover"), "{e}");

    // SIGKILL at several points, then run to the end: the same results.
    let killed = tmp.path().join("killed");
    for wait_ms in [1500, 4000, 9000] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
            .args(study_args(m, &killed))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (ok, _, e) = run(&study_args(m, &killed));
    assert!(ok, "{e}");
    same_results(&whole, &killed);
}

#[test]
fn gsm8k_questions_are_answered_graded_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gsm8k");
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gsm8k/test.jsonl");
    let m = smollm2();
    let (ok, stdout, stderr) = circuitdiff(&[
        "study",
        "--base",
        m.to_str().unwrap(),
        "--tuned",
        m.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--limit",
        "3",
        "--max-new-tokens",
        "48",
        "--exact-samples",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    // A 135M model rarely solves GSM8K in 48 tokens: either the study finishes, or it stops with
    // the clear no-both-correct message. Both leave the answers and the counts.
    assert!(
        ok || stderr.contains("no question was answered correctly by both models"),
        "{stdout}{stderr}"
    );
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("counts.json")).unwrap()).unwrap();
    assert_eq!(counts["asked"], 3);
    assert_eq!(counts["dataset"]["question_field"], "question");
    assert_eq!(counts["base"]["answered"], counts["tuned"]["answered"]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("answers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["question"].as_str().unwrap().starts_with("Janet"));
    assert_eq!(lines[0]["base"]["grade"]["reference"], "18");
    assert!(lines[0]["base"]["prompt"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>user"));
}

/// A tiny Llama that always answers "1": every embedding row is the same vector, the blocks
/// add small random updates, and the unembedding favours the token "1" by a wide margin.
fn tiny_answering_one(dir: &std::path::Path, seed: u64) -> std::path::PathBuf {
    use candle_core::{Device, Tensor};
    let cfg = Tiny::Llama.config();
    let mut w = model::random_weights(&cfg, seed, 0.02).unwrap();
    let (v, d) = (cfg.vocab_size, cfg.hidden_size);
    w.insert(
        "model.embed_tokens.weight".into(),
        Tensor::ones((v, d), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let one = 3 + CHARS.find('1').unwrap();
    let head: Vec<f32> = (0..v * d)
        .map(|i| if i / d == one { 1.0 } else { 0.0 })
        .collect();
    w.insert(
        "lm_head.weight".into(),
        Tensor::from_vec(head, (v, d), &Device::Cpu).unwrap(),
    );
    let path = dir.join(format!("answers-one-{seed}"));
    model::write_hf_folder(&path, &cfg, &w, &model::char_tokenizer_json(CHARS), None).unwrap();
    path
}

#[test]
fn tiny_models_run_the_whole_study_on_the_builtin_task() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        tiny_answering_one(tmp.path(), 1),
        tiny_answering_one(tmp.path(), 2),
    );
    let out = tmp.path().join("study");
    let (ok, stdout, stderr) = circuitdiff(&[
        "study",
        "--base",
        a.to_str().unwrap(),
        "--tuned",
        b.to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=6&max=1&terms=1",
        "--template",
        "plain",
        "--max-new-tokens",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("both correct 6") && stdout.contains("scored 6"),
        "{stdout}"
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(c["n"], 6);
    // The runs inside the study are recorded relative to it, so that the folder can move.
    assert_eq!(
        (&c["base"]["dir"], &c["tuned"]["dir"]),
        (&"base".into(), &"tuned".into())
    );
    assert!(out.join("figures/heatmap.png").is_file() && out.join("report.md").is_file());
}
