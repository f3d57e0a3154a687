//! Answers brought from elsewhere (`study --answers`, `--base-answers`, `--tuned-answers`): a
//! study run from its own answers.jsonl reproduces the generating run's comparison byte for
//! byte; answers in the study's math_eval.py format and in lm-evaluation-harness's sample
//! format are read, graded again and scored; answers of another model are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use common::circuitdiff;
use std::path::{Path, PathBuf};

/// The bundled zoo models' folder.
fn zoo(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/zoo")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

/// A fixture of answers brought from elsewhere.
fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/answers")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

/// `circuitdiff study` of the zoo's base against `tuned` on 12 built-in questions (4 scored,
/// 32 new tokens, 2 exact checks) into `out`, with `extra` arguments.
fn study(tuned: &str, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let (base, tuned) = (zoo("base"), zoo(tuned));
    let mut args = vec![
        "study",
        "--base",
        &base,
        "--tuned",
        &tuned,
        "--dataset",
        "builtin:arith?n=12",
        "--n",
        "4",
        "--max-new-tokens",
        "32",
        "--exact-samples",
        "2",
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    circuitdiff(&args)
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
}

#[test]
fn a_study_from_its_own_answers_equals_the_generating_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (generated, brought) = (tmp.path().join("gen"), tmp.path().join("brought"));
    let (ok, _, e) = study("grpo", &generated, &[]);
    assert!(ok, "{e}");
    let answers = generated.join("answers.jsonl");
    let (ok, stdout, e) = study("grpo", &brought, &["--answers", answers.to_str().unwrap()]);
    assert!(ok, "{e}");
    assert_eq!(
        std::fs::read(generated.join("comparison.json")).unwrap(),
        std::fs::read(brought.join("comparison.json")).unwrap(),
        "comparison.json differs"
    );
    assert!(
        stdout.contains("base: 12 answers imported")
            && stdout.contains("differs from the file's on 0 of 12"),
        "{stdout}"
    );
    let counts = json(brought.join("counts.json"));
    let imported = counts["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 2, "{counts}");
    for i in imported {
        assert_eq!(
            (
                &i["format"],
                &i["given_ids"],
                &i["retokenised"],
                &i["disagreements"]
            ),
            (&"circuitdiff".into(), &12.into(), &0.into(), &0.into())
        );
    }
    let report = std::fs::read_to_string(brought.join("report.md")).unwrap();
    assert!(
        report.contains("## Answers brought from elsewhere"),
        "{report}"
    );
}

#[test]
fn answers_of_another_model_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let answers = fixture("zoo_study/answers.jsonl");
    // The answers of a study whose tuned run scored the zoo's GRPO model, for its DPO model:
    // refused by the fingerprint in that study's tuned/manifest.json.
    let (ok, _, e) = study("dpo", &tmp.path().join("dpo"), &["--answers", &answers]);
    assert!(
        !ok && e.contains("answers of another model") && e.contains("scored tuned assets/zoo/grpo"),
        "{e}"
    );

    // Outside a study directory: token ids that decode to other text (reversed), or fall
    // outside the vocabulary (38 ids), are refused.
    let rows = std::fs::read_to_string(&answers).unwrap();
    type Damage = fn(&mut Vec<serde_json::Value>);
    let cases: [(&str, Damage, &str); 2] = [
        ("reversed", |ids| ids.reverse(), "do not decode to its text"),
        (
            "outside",
            |ids| ids[0] = 38.into(),
            "token id 38 is outside the vocabulary",
        ),
    ];
    for (name, damage, message) in cases {
        let damaged: String = rows
            .lines()
            .map(|l| {
                let mut row: serde_json::Value = serde_json::from_str(l).unwrap();
                damage(row["tuned"]["answer_ids"].as_array_mut().unwrap());
                format!("{row}\n")
            })
            .collect();
        let file = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, damaged).unwrap();
        let out = tmp.path().join(name);
        let (ok, _, e) = study("grpo", &out, &["--answers", file.to_str().unwrap()]);
        assert!(
            !ok && e.contains(message) && e.contains("another model or tokenizer"),
            "{name}: {e}"
        );
    }

    // One model's answers cannot serve both sides.
    let one = fixture("math_eval_base.jsonl");
    let (ok, _, e) = study("grpo", &tmp.path().join("one"), &["--answers", &one]);
    assert!(!ok && e.contains("holds one model's answers"), "{e}");
}

#[test]
fn math_eval_and_lm_eval_answers_are_graded_and_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let (base, tuned) = (
        fixture("math_eval_base.jsonl"),
        fixture("lm_eval_samples_tuned.jsonl"),
    );
    let (ok, stdout, e) = study(
        "grpo",
        &out,
        &["--base-answers", &base, "--tuned-answers", &tuned],
    );
    assert!(ok, "{e}");
    let counts = json(out.join("counts.json"));
    assert_eq!(counts["scored"], 4, "{counts}");
    // The base file: matched by question text (its idx is not the builtin id), one question
    // left out, one answer to a question not asked, and one grade (question 0) given as wrong
    // where circuitdiff's grader finds \boxed{67} = 67 right.
    let [b, t] = [0, 1].map(|j| &counts["imported"][j]);
    assert_eq!(
        (&b["side"], &b["format"], &b["imported"], &b["retokenised"]),
        (&"base".into(), &"study".into(), &11.into(), &11.into())
    );
    assert_eq!(
        (&b["given_graded"], &b["disagreements"], &b["unmatched"]),
        (&11.into(), &1.into(), &1.into())
    );
    assert_eq!(b["missing"], serde_json::json!(["arith-42-7"]));
    assert!(b["template"].is_string(), "{b}");
    assert_eq!(
        (
            &t["format"],
            &t["imported"],
            &t["disagreements"],
            &t["template"]
        ),
        (
            &"lm-eval".into(),
            &12.into(),
            &0.into(),
            &serde_json::Value::Null
        )
    );
    assert_eq!(
        (
            counts["base"]["answered"].clone(),
            counts["base"]["correct"].clone()
        ),
        (11.into(), 8.into())
    );
    assert!(
        stdout.contains("1 questions not answered there (arith-42-7)"),
        "{stdout}"
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("answers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &rows[0];
    assert_eq!(
        (
            &first["base"]["given_correct"],
            &first["base"]["grade"]["correct"]
        ),
        (&false.into(), &true.into())
    );
    // The lm-eval prompt (the chat template applied) tokenised here is the prompt rendered here,
    // and the re-tokenised answers are the ids the model generated (a character tokenizer).
    let generated: Vec<serde_json::Value> =
        std::fs::read_to_string(fixture("zoo_study/answers.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for (row, gen) in rows.iter().zip(&generated) {
        assert_eq!(row["tuned"]["prompt_ids"], gen["tuned"]["prompt_ids"]);
        assert_eq!(row["tuned"]["answer_ids"], gen["tuned"]["answer_ids"]);
        assert_eq!(row["base"]["prompt_ids"], gen["base"]["prompt_ids"]);
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| base | `") && report.contains("| study | 11 |"),
        "{report}"
    );
}
