//! The check of EAP against exact effects (method.md §7) as a study and `score` run it: a
//! seeded subset of the pairs, the same questions and edges for both models, written as each
//! sample completes and resumed, summarised in the comparison, the report and the figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::attribution::exact::Ablation;
use circuitdiff::attribution::{Graph, Level};
use circuitdiff::model::{LoadOptions, Model};
use common::{circuitdiff, zoo_study, Tiny};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The names of a check file's edges of one set.
fn edges(check: &Value, sets: &[&str]) -> BTreeSet<String> {
    check["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| sets.contains(&e["set"].as_str().unwrap()))
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// k50/k80/k90 and CPR/CMD paired; every verdict judged on all 77 edges of the zoo's graph and
/// inconclusive on four questions; the comparison's family named.
fn assert_summaries(c: &Value) {
    let v = &c["validation"];
    let reach: Vec<&str> = v["reach"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    assert_eq!(reach, ["k50", "k80", "k90"]);
    let areas: Vec<&str> = v["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    assert_eq!(areas, ["cpr", "cmd"]);
    assert_eq!(v["scope"], serde_json::json!({"kind": "all", "edges": 77}));
    for r in v["robustness"].as_array().unwrap() {
        assert_eq!(r["verdict"], "inconclusive", "{r}");
        assert!(r["eap"]["p_adjusted"].as_f64().unwrap() >= r["eap"]["p_value"].as_f64().unwrap());
    }
    assert!(c["family"]
        .as_str()
        .unwrap()
        .starts_with("Holm–Bonferroni over the 11 metrics"));
}

#[test]
fn a_study_checks_eap_on_the_same_questions_and_edges_for_both_models() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let (ok, stdout, e) = zoo_study("builtin:arith?n=12", &out);
    assert!(ok, "{e}");
    // The zoo's graph is small (77 edges): every edge gets its exact effect, and the verdicts
    // are judged on all of them; four questions are too few to tell.
    assert!(
        stdout.contains("EAP vs exact effects, base: Pearson")
            && stdout.contains("Verdicts on all 77 edges over 4 checked questions")
            && stdout.contains("intensity on all 77 edges, 4 questions: inconclusive (only 4 questions were checked")
            && !stdout.contains("robust"),
        "{stdout}"
    );
    let c = read_json(&out.join("comparison.json"));
    let v = &c["validation"];
    let n = c["n"].as_u64().unwrap() as usize;
    assert_eq!(v["runs"]["base"]["samples"], v["runs"]["tuned"]["samples"]);
    assert_eq!(v["runs"]["base"]["samples"].as_array().unwrap().len(), n);
    assert_eq!(v["robustness"].as_array().unwrap().len(), 3);
    assert_summaries(&c);

    // The same questions and edges on both sides: the union of both top sets, then every
    // other edge.
    let names = files(&out.join("base/exact"));
    assert_eq!(names, files(&out.join("tuned/exact")));
    assert_eq!(names.len(), n);
    for name in &names {
        let b = read_json(&out.join("base/exact").join(name));
        let t = read_json(&out.join("tuned/exact").join(name));
        assert_eq!(b["id"], t["id"]);
        let union = ["top", "other_top"];
        assert_eq!(edges(&b, &union), edges(&t, &union), "{name}");
        assert_eq!(edges(&b, &["rest"]), edges(&t, &["rest"]), "{name}");
        assert_eq!(edges(&b, &["top"]).len(), 32);
        assert_eq!(edges(&b, &["top", "other_top", "rest"]).len(), 77);
        assert!(edges(&b, &["random"]).is_empty());
        // F(all) = 1: the last circuit keeps every edge.
        let f = b["curve"]["faithfulness"].as_array().unwrap();
        let last = f.last().unwrap().as_f64().unwrap();
        assert!((last - 1.0).abs() < 1e-3, "{name}: F(all) = {last}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Is the circuit real?")
            && report.contains("| k50 |")
            && report.contains("| CPR |")
            && report.contains("**inconclusive**")
            && !report.contains("Some(")
            && !report.contains("MinOfMeans")
            && report.contains("figures/exact_vs_eap.png")
            && report.contains("figures/faithfulness.svg"),
        "{report}"
    );
    for f in ["exact_vs_eap.png", "exact_vs_eap.svg", "faithfulness.png"] {
        assert!(out.join("figures").join(f).is_file(), "{f}");
    }

    // A lost check file is computed again; the others are read back unchanged.
    let lost = out.join("tuned/exact").join(&names[0]);
    let kept = std::fs::read(out.join("base/exact").join(&names[1])).unwrap();
    let comparison = std::fs::read(out.join("comparison.json")).unwrap();
    std::fs::remove_file(&lost).unwrap();
    std::fs::remove_file(out.join("comparison.json")).unwrap();
    let (ok, _, e) = zoo_study("builtin:arith?n=12", &out);
    assert!(ok, "{e}");
    assert!(lost.is_file());
    assert_eq!(
        std::fs::read(out.join("base/exact").join(&names[1])).unwrap(),
        kept
    );
    assert!(
        std::fs::read(out.join("comparison.json")).unwrap() == comparison,
        "the comparison changed on resuming"
    );
}

/// A damaged exact file of the run `out` (one number changed, still valid JSON) is recomputed
/// when `score` resumes it, with a warning naming it, and the check is the undamaged one.
fn a_damaged_exact_file_is_recomputed(
    out: &Path,
    score: impl Fn(&Path, &[&str]) -> (bool, String, String),
) {
    let damaged = out.join("exact/000001.json");
    let (before, summary_before) = (
        std::fs::read(&damaged).unwrap(),
        std::fs::read(out.join("validation.json")).unwrap(),
    );
    let mut check = read_json(&damaged);
    let exact = check["effects"][0]["exact"].as_f64().unwrap();
    check["effects"][0]["exact"] = serde_json::json!(exact + 1.0);
    std::fs::write(&damaged, serde_json::to_vec_pretty(&check).unwrap()).unwrap();
    let (ok, _, e) = score(out, &["--exact-samples", "all", "--exact-top", "4"]);
    assert!(ok, "{e}");
    let warning = format!(
        "{}: checksum mismatch (damaged); recomputing",
        damaged.display()
    );
    assert!(e.contains(&warning), "{e}");
    assert!(!e.contains("000000.json"), "the intact file is reused: {e}");
    assert!(std::fs::read(&damaged).unwrap() == before);
    assert!(std::fs::read(out.join("validation.json")).unwrap() == summary_before);
}

#[test]
fn score_writes_exact_effects_equal_to_ablating_the_model_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model_dir = Tiny::Qwen2.write(dir);
    let samples = serde_json::json!([
        {"id": "q1", "prompt_ids": [1, 5, 17, 22], "answer_ids": [9, 40, 33, 12, 8]},
        {"id": "q2", "prompt_ids": [1, 7, 7, 30, 11], "answer_ids": [3, 4]}
    ]);
    let file = dir.join("samples.json");
    std::fs::write(&file, samples.to_string()).unwrap();
    let out = dir.join("run");
    let score = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "score",
            "--model",
            model_dir.to_str().unwrap(),
            "--samples",
            file.to_str().unwrap(),
            "--cut",
            "3",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        circuitdiff(&args)
    };
    let (ok, stdout, e) = score(&out, &["--exact-samples", "all", "--exact-top", "4"]);
    assert!(ok, "{e}");
    assert!(stdout.contains("EAP vs exact effects: Pearson"), "{stdout}");
    let summary = read_json(&out.join("validation.json"));
    assert_eq!(summary["samples"], serde_json::json!(["q1", "q2"]));

    let model = Model::load(model_dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let g = Graph::new(&model.config, Level::Block);
    for (i, s) in samples.as_array().unwrap().iter().enumerate() {
        let ids = |k: &str| -> Vec<u32> { serde_json::from_value(s[k].clone()).unwrap() };
        let (prompt, answer) = (ids("prompt_ids"), ids("answer_ids"));
        let ab = Ablation::new(&model, &g, "x", (&prompt, &answer), 3, 8).unwrap();
        let check = read_json(&out.join(format!("exact/{i:06}.json")));
        let effects = check["effects"].as_array().unwrap();
        // A small graph: four top edges and every other one.
        assert_eq!(edges(&check, &["top"]).len(), 4);
        assert_eq!(effects.len(), g.num_edges(), "sample {i}: every edge");
        for e in effects {
            let edge = (
                e["source"].as_u64().unwrap() as usize,
                e["destination"].as_u64().unwrap() as usize,
            );
            let want = ab.edge_effects(&[edge]).unwrap()[0];
            let got = e["exact"].as_f64().unwrap();
            // One pass, or a batch of eight: the same up to the f32 rounding of the losses.
            assert!((got - want).abs() <= 1e-6 * ab.clean_loss(), "{e}: {want}");
        }
    }

    a_damaged_exact_file_is_recomputed(&out, score);

    // Above the all-edges threshold: the top edges and a random sample of 5 others.
    let sampled = dir.join("sampled");
    let (ok, _, e) = score(
        &sampled,
        &[
            "--exact-samples",
            "all",
            "--exact-top",
            "4",
            "--exact-random",
            "5",
            "--exact-all-edges-max",
            "0",
        ],
    );
    assert!(ok, "{e}");
    let check = read_json(&sampled.join("exact/000000.json"));
    assert_eq!(edges(&check, &["top"]).len(), 4);
    assert_eq!(edges(&check, &["random"]).len(), 5);
    assert!(edges(&check, &["rest"]).is_empty());

    // No check unless asked; none at head level.
    let plain = dir.join("plain");
    let (ok, _, e) = score(&plain, &[]);
    assert!(ok, "{e}");
    assert!(!plain.join("exact").exists() && !plain.join("validation.json").exists());
    let (ok, _, e) = score(&dir.join("heads"), &["--heads", "--exact-samples", "1"]);
    assert!(!ok && e.contains("block-level graph"), "{e}");
}
