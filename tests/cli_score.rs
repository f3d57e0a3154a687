//! `circuitdiff score` and `circuitdiff compare` end to end: the run directory, the NumPy
//! export, resuming, and the errors for bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use common::{circuitdiff, python_snippet, Tiny};
use std::path::Path;

fn samples_file(dir: &Path, samples: &serde_json::Value) -> String {
    let p = dir.join(format!(
        "samples-{}.json",
        samples.as_array().unwrap().len()
    ));
    std::fs::write(&p, samples.to_string()).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `circuitdiff score --model MODEL --samples SAMPLES --cut CUT [EXTRA…] --out OUT`.
fn score(
    model: &str,
    samples: &str,
    cut: &str,
    out: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "score",
        "--model",
        model,
        "--samples",
        samples,
        "--cut",
        cut,
    ];
    args.extend_from_slice(extra);
    args.extend(["--out", out]);
    circuitdiff(&args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn samples() -> serde_json::Value {
    serde_json::json!([
        {"id": "q1", "prompt_ids": [1, 5, 17, 22], "answer_ids": [9, 40, 33, 12, 8]},
        {"id": "q2", "prompt_ids": [1, 7, 7, 30, 11], "answer_ids": [3, 4]},
        {"id": "q3", "prompt_ids": [1, 20, 21], "answer_ids": [22, 23, 24, 25, 26, 27]},
        {"id": "q4", "prompt_ids": [1, 9], "answer_ids": [14, 15, 16, 2]}
    ])
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn score_writes_a_resumable_run_and_compare_pairs_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = Tiny::Llama.write(dir);
    let tuned = Tiny::Llama.write_seeded(dir, 8);
    let file = samples_file(dir, &samples());
    let run_b = dir.join("run-base");
    let run_t = dir.join("run-tuned");
    for (model, out) in [(&base, &run_b), (&tuned, &run_t)] {
        let (ok, stdout, stderr) = score(
            model.to_str().unwrap(),
            &file,
            "3",
            out.to_str().unwrap(),
            &[],
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("scored 4 samples (23 edges)"), "{stdout}");
        assert!(
            stdout.contains("1 answers were shorter than K=3"),
            "{stdout}"
        );
    }
    for f in [
        "manifest.json",
        "scores.safetensors",
        "scores.npz",
        "metrics.json",
        "metrics.csv",
    ] {
        assert!(run_b.join(f).is_file(), "{f} missing");
    }
    let manifest = read_json(&run_b.join("manifest.json"));
    assert_eq!(manifest["method"]["cut"], 3);
    assert_eq!(manifest["method"]["graph_level"], "block");
    assert_eq!(manifest["method"]["accumulation"], "f32");
    assert_eq!(manifest["num_edges"], 23);
    assert_eq!(manifest["samples"][1]["id"], "q2");
    assert_eq!(manifest["samples"][1]["k"], 2);
    assert_eq!(manifest["samples"][0]["k"], 3);
    assert_eq!(manifest["software"]["name"], "circuitdiff");
    let csv = std::fs::read_to_string(run_b.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 + 1);
    assert!(csv.lines().nth(2).unwrap().starts_with("q2,") && csv.contains(",2,"));

    // The study's layout, read by numpy.
    let out = python_snippet(
        "import sys, numpy as np\nz = np.load(sys.argv[1])\nm = z['real_edge_mask']\n\
         print(z['scores'].shape, z['all_scores'].shape, m.dtype, int(m.sum()), z['losses'].shape,\n\
         bool(np.allclose(z['all_scores'].mean(0), z['scores'], atol=1e-6)), bool((z['all_scores'][:, ~m] == 0).all()))",
        &[run_b.join("scores.npz").to_str().unwrap()],
    );
    assert_eq!(out.trim(), "(5, 9) (4, 5, 9) bool 23 (4,) True True");

    // Resume: remove one sample and the aggregates, run again, get identical bytes.
    let before = std::fs::read(run_b.join("scores.safetensors")).unwrap();
    std::fs::remove_file(run_b.join("samples/000002.safetensors")).unwrap();
    std::fs::remove_file(run_b.join("scores.safetensors")).unwrap();
    let (ok, _, stderr) = score(
        base.to_str().unwrap(),
        &file,
        "3",
        run_b.to_str().unwrap(),
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(run_b.join("scores.safetensors")).unwrap(),
        before
    );

    // Another run into the same directory is refused.
    let (ok, _, stderr) = score(
        base.to_str().unwrap(),
        &file,
        "2",
        run_b.to_str().unwrap(),
        &[],
    );
    assert!(!ok && stderr.contains("holds a different run"), "{stderr}");

    // An f64 run records its accumulation as f64.
    let run_f64 = dir.join("run-f64");
    let (ok, _, stderr) = score(
        base.to_str().unwrap(),
        &file,
        "3",
        run_f64.to_str().unwrap(),
        &["--f64"],
    );
    assert!(ok, "{stderr}");
    let manifest = read_json(&run_f64.join("manifest.json"));
    assert_eq!(manifest["method"]["accumulation"], "f64");
    assert_eq!(manifest["model"]["compute_dtype"], "f64");

    // Compare, paired by id.
    let cmp = dir.join("cmp");
    let (ok, stdout, stderr) = circuitdiff(&[
        "compare",
        run_b.to_str().unwrap(),
        run_t.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("4 paired samples")
            && stdout.contains("kurtosis")
            && stdout.contains("adjusted p")
            && stdout
                .contains("adjusted p: Holm–Bonferroni over the 11 metrics of this comparison"),
        "{stdout}"
    );
    let c = read_json(&cmp.join("comparison.json"));
    assert_eq!(c["n"], 4);
    assert_eq!(c["metrics"].as_array().unwrap().len(), 11);
    assert_eq!(c["options"]["correction"], "holm");
    // Benjamini–Hochberg on request, recorded in the comparison; its adjusted p-values are
    // never above Holm's.
    let bh = dir.join("cmp-bh");
    let (ok, _, stderr) = circuitdiff(&[
        "compare",
        run_b.to_str().unwrap(),
        run_t.to_str().unwrap(),
        "--out",
        bh.to_str().unwrap(),
        "--correction",
        "bh",
    ]);
    assert!(ok, "{stderr}");
    let b = read_json(&bh.join("comparison.json"));
    assert_eq!(b["options"]["correction"], "benjamini_hochberg");
    assert!(b["family"]
        .as_str()
        .unwrap()
        .starts_with("Benjamini–Hochberg over the 11 metrics"));
    for (h, f) in c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["metrics"].as_array().unwrap())
    {
        if let (Some(h), Some(f)) = (h["p_adjusted"].as_f64(), f["p_adjusted"].as_f64()) {
            assert!(f <= h + 1e-15, "BH {f} vs Holm {h}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(cmp.join("comparison.csv"))
            .unwrap()
            .lines()
            .count(),
        12
    );

    // Runs over different samples cannot be paired: the error lists the ids.
    let other = samples_file(
        dir,
        &serde_json::json!([samples()[0], samples()[1], {"id": "q9", "prompt_ids": [1, 2], "answer_ids": [3]}]),
    );
    let run_o = dir.join("run-other");
    let (ok, _, stderr) = score(
        tuned.to_str().unwrap(),
        &other,
        "3",
        run_o.to_str().unwrap(),
        &[],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = circuitdiff(&[
        "compare",
        run_b.to_str().unwrap(),
        run_o.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(!ok, "mismatched runs compared");
    assert!(
        stderr.contains("[q3, q4]") && stderr.contains("[q9]"),
        "{stderr}"
    );
}

#[test]
fn score_rejects_bad_sample_files() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Tiny::Qwen2.write(tmp.path());
    let m = model.to_str().unwrap();
    let out = tmp.path().join("run");
    let o = out.to_str().unwrap();
    let empty = samples_file(
        tmp.path(),
        &serde_json::json!([{"id": "a", "prompt_ids": [1, 2], "answer_ids": []}]),
    );
    let (ok, _, e) = score(m, &empty, "2", o, &[]);
    assert!(
        !ok && e.contains("sample `a`") && e.contains("empty answer"),
        "{e}"
    );
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"prompt_ids\": 3}").unwrap();
    let (ok, _, e) = score(m, bad.to_str().unwrap(), "2", o, &[]);
    assert!(
        !ok && e.contains("bad.json") && e.contains("expected a JSON list"),
        "{e}"
    );
    let oov = samples_file(
        tmp.path(),
        &serde_json::json!([{"prompt_ids": [1, 2], "answer_ids": [5000]}, {"prompt_ids": [1], "answer_ids": [3]}]),
    );
    let (ok, _, e) = score(m, &oov, "2", o, &[]);
    assert!(
        !ok && e.contains("5000") && e.contains("outside the vocabulary"),
        "{e}"
    );
}

/// `bench --score-only` sets the pass beside its weight products run alone: each projection's
/// forward product and its input gradient's, 4·rows·(the projections' weights) operations.
#[test]
fn bench_sets_the_pass_beside_its_weight_products() {
    let (ok, out, err) = circuitdiff(&[
        "bench",
        "--model",
        "assets/zoo/base",
        "--score-only",
        "--seq-len",
        "33",
        "--repeat",
        "1",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let num = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("no {key} in {r}"));
    // The zoo's base: hidden 128, 4 layers, 4 query and 2 key/value heads of 32, MLP 384.
    let (d, layers, hd, heads, kv, mlp) = (128.0, 4.0, 32.0, 4.0, 2.0, 384.0);
    let weights = layers * (d * (heads + 2.0 * kv) * hd + heads * hd * d + 3.0 * d * mlp);
    let flops = num("weight_products_gflop_per_s") * num("weight_products_s_per_sample") * 1e9;
    assert!((flops / (4.0 * 32.0 * weights) - 1.0).abs() < 1e-9, "{r}");
    let share = num("weight_products_share_of_score_time");
    assert!(share > 0.0 && share.is_finite(), "{r}");
}

/// `bench --write-random-llama` writes a tokenizer no larger than the model's vocabulary at any
/// size, so that `score` accepts the model it wrote (a 64-token vocabulary once got a 98-token
/// tokenizer); a vocabulary with no room for a character is refused.
#[test]
fn random_llama_of_a_small_vocabulary_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("llama64");
    let model = model.to_str().unwrap();
    let shape = ["--random-shape", "32,2,4,2,48,64"];
    let (ok, _, err) =
        circuitdiff(&[&["bench", "--write-random-llama", model], &shape[..]].concat());
    assert!(ok, "{err}");
    let tokenizer = read_json(&Path::new(model).join("tokenizer.json"));
    let vocab = tokenizer["model"]["vocab"].as_object().unwrap().len();
    assert_eq!(vocab, 64);
    let samples = samples_file(dir.path(), &samples());
    let out = dir.path().join("run");
    let exact = [
        "--exact-samples",
        "2",
        "--exact-top",
        "4",
        "--exact-random",
        "4",
    ];
    let (ok, stdout, err) = score(model, &samples, "2", out.to_str().unwrap(), &exact);
    assert!(ok, "{err}");
    assert!(stdout.contains("scored 4 samples"), "{stdout}");
    // Scoring and the exact effects share one Ctrl-C handler, and standard error (a pipe, as
    // in a log file) gets plain progress lines.
    assert!(!err.contains("Ctrl-C"), "{err}");
    for line in [
        "score: 4 to do",
        "score: 4/4 (100 %)",
        "exact effects: 2/2 (100 %)",
    ] {
        assert!(err.contains(line), "no `{line}` in {err}");
    }
    let tiny = dir.path().join("llama3");
    let (ok, _, err) = circuitdiff(&[
        "bench",
        "--write-random-llama",
        tiny.to_str().unwrap(),
        "--random-shape",
        "32,2,4,2,48,3",
    ]);
    assert!(!ok && err.contains("use at least 4"), "{err}");
}
