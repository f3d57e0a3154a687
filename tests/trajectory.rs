//! Trajectories along a TRL-style run that the tests write: the bundled base model and three
//! `checkpoint-N/` LoRA adapters on it (as TRL's trainers save them, naming a base path of the
//! training machine, so that `--adapter-base` points at the base) with a `trainer_state.json`. Every checkpoint's scores equal scoring that checkpoint alone; a run
//! killed mid-way and re-run, and shards joined by `merge`, give the same files as one run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use common::{assert_same_files, circuitdiff};
use rand::{Rng as _, SeedableRng as _};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STEPS: [u64; 3] = [10, 20, 30];

fn zoo_base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo/base")
}

/// A LoRA adapter on the zoo base (hidden 128, 2 key/value heads of 32) of rank 4 on q_proj and
/// v_proj, whose update grows with `step`, written as PEFT saves it.
fn write_adapter(dir: &Path, step: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        // Where the training machine kept the base: not here, so `--adapter-base` says.
        "base_model_name_or_path": "/cluster/models/zoo-base",
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "inference_mode": true
    });
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(step);
    let size = 0.02 * (step as f32 / 10.0).sqrt();
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for layer in 0..4 {
        for (module, out) in [("q_proj", 128), ("v_proj", 64)] {
            let prefix = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            for (name, shape) in [("lora_A", vec![4, 128]), ("lora_B", vec![out, 4])] {
                let n: usize = shape.iter().product();
                let bytes: Vec<u8> = (0..n)
                    .flat_map(|_| (size * (rng.random::<f32>() * 2.0 - 1.0)).to_le_bytes())
                    .collect();
                data.insert(format!("{prefix}.{name}.weight"), (shape, bytes));
            }
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, (shape, bytes))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("adapter_model.safetensors")).unwrap();
}

/// A TRL output folder: `checkpoint-N/` adapters and the last one's `trainer_state.json`.
fn write_run(root: &Path) {
    for step in STEPS {
        write_adapter(&root.join(format!("checkpoint-{step}")), step);
    }
    let history: Vec<serde_json::Value> = STEPS
        .iter()
        .flat_map(|&s| {
            [5, 10].map(|d| {
                let step = s - 10 + d;
                serde_json::json!({"step": step, "loss": 0.1, "reward": step as f64 / 40.0, "kl": 0.001 * step as f64})
            })
        })
        .collect();
    let state = serde_json::json!({"global_step": 30, "log_history": history});
    std::fs::write(
        root.join("checkpoint-30/trainer_state.json"),
        state.to_string(),
    )
    .unwrap();
}

fn args(run: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "trajectory",
        run.to_str().unwrap(),
        "--first",
        zoo_base().to_str().unwrap(),
        "--adapter-base",
        zoo_base().to_str().unwrap(),
        "--limit",
        "24",
        "--n",
        "5",
        "--alpha",
        "0.99",
        "--max-new-tokens",
        "32",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

/// Score `checkpoint` alone (`circuitdiff score`) on the samples that the trajectory in `whole`
/// scored at place `j`, with its K; returns the run directory.
fn score_alone(whole: &Path, j: usize, checkpoint: &Path) -> PathBuf {
    let point = whole.join(format!("points/{j:03}"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(point.join("manifest.json")).unwrap()).unwrap();
    let answers = std::fs::read_to_string(whole.join(format!("answers/{j:03}.jsonl"))).unwrap();
    let by_id: BTreeMap<String, serde_json::Value> = answers
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|a| (a["id"].as_str().unwrap().to_owned(), a))
        .collect();
    let samples: Vec<serde_json::Value> = manifest["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let a = &by_id[s["id"].as_str().unwrap()];
            serde_json::json!({"id": s["id"], "prompt_ids": a["prompt_ids"], "answer_ids": a["answer_ids"]})
        })
        .collect();
    let dir = whole.parent().unwrap();
    let samples_file = dir.join(format!("samples{j}.json"));
    std::fs::write(&samples_file, serde_json::to_string(&samples).unwrap()).unwrap();
    let alone = dir.join(format!("alone{j}"));
    common::circuitdiff_ok(&[
        "score".into(),
        "--model".into(),
        checkpoint.display().to_string(),
        "--samples".into(),
        samples_file.display().to_string(),
        "--cut".into(),
        manifest["method"]["cut"].as_u64().unwrap().to_string(),
        "--out".into(),
        alone.display().to_string(),
        "--adapter-base".into(),
        zoo_base().display().to_string(),
    ]);
    alone
}

/// Every metric of every later checkpoint against the first is one family, Holm-adjusted, and
/// the summary names it.
fn assert_one_family(summary: &serde_json::Value) {
    let points = summary["points"].as_array().unwrap();
    let stats: Vec<&serde_json::Value> = points
        .iter()
        .flat_map(|p| p["vs_first"].as_array().unwrap())
        .collect();
    let raw: Vec<f64> = stats
        .iter()
        .map(|s| s["p_value"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let want = circuitdiff::attribution::correction::Correction::Holm.adjust(&raw);
    for (s, w) in stats.iter().zip(want) {
        let got = s["p_adjusted"].as_f64().unwrap_or(f64::NAN);
        assert!((got.is_nan() && w.is_nan()) || got == w, "{got} vs {w}");
    }
    assert_eq!(
        summary["family"],
        format!(
            "Holm–Bonferroni over the {} tests of this trajectory (11 metrics at each of 3 checkpoints against the first)",
            raw.iter().filter(|p| !p.is_nan()).count()
        )
    );
}

#[test]
fn a_trl_ladder_of_adapters_is_scored_checkpoint_by_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let whole = tmp.path().join("whole");
    let stdout = common::circuitdiff_ok(&args(&run, &whole, &[]));
    assert!(stdout.contains("at each of 4 checkpoints"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("summary.json")).unwrap()).unwrap();
    let points = summary["points"].as_array().unwrap();
    let steps: Vec<u64> = points.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 10, 20, 30]);
    assert!(points[0]["vs_first"].as_array().unwrap().is_empty());
    assert_eq!(points[3]["vs_first"].as_array().unwrap().len(), 11);
    assert_one_family(&summary);
    // The trainer's log at each checkpoint's step.
    assert_eq!(points[2]["train"]["reward"].as_f64(), Some(0.5));
    assert!(points[0]["train"].as_object().unwrap().is_empty());
    for file in ["report.md", "summary.csv", "train_log.csv", "counts.json"] {
        assert!(whole.join(file).is_file(), "{file}");
    }
    for stem in ["trajectory_entropy", "training_reward"] {
        for ext in ["png", "svg"] {
            assert!(whole.join(format!("figures/{stem}.{ext}")).is_file());
        }
    }
    let report = std::fs::read_to_string(whole.join("report.md")).unwrap();
    assert!(
        report.contains("| 20 |") && report.contains("trainer reward"),
        "{report}"
    );

    // Every checkpoint's scores equal scoring that checkpoint alone on the same tokens.
    for (j, step) in [(1, 10), (3, 30)] {
        let alone = score_alone(&whole, j, &run.join(format!("checkpoint-{step}")));
        assert!(
            std::fs::read(alone.join("scores.npz")).unwrap()
                == std::fs::read(whole.join(format!("points/{j:03}/scores.npz"))).unwrap(),
            "checkpoint {step}: scores differ from scoring it alone"
        );
    }

    // Killed once its second checkpoint has scored a sample, then run again: the same files.
    let killed = tmp.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(args(&run, &killed, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let marker = killed.join("points/001/samples");
    while std::fs::read_dir(&marker).map_or(true, |d| d.count() == 0) {
        assert!(
            started.elapsed().as_secs() < 300,
            "no sample of step 10 scored"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("summary.json").exists());
    common::circuitdiff_ok(&args(&run, &killed, &[]));
    assert_same_files(&whole, &killed);

    // Two shards of the checkpoints, joined by merge: the same files as one run.
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| tmp.path().join(format!("shard{i}")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let stdout = common::circuitdiff_ok(&args(&run, shard, &["--shard", &format!("{i}/2")]));
        assert!(stdout.contains("shard scored 2 checkpoints"), "{stdout}");
    }
    // The adapters' base is recorded with the trajectory: merge needs no --adapter-base.
    let recorded = std::fs::read_to_string(shards[0].join("trajectory.json")).unwrap();
    assert!(recorded.contains("\"adapter_base\""), "{recorded}");
    let merged = tmp.path().join("merged");
    let mut merge = vec!["merge".to_owned()];
    merge.extend(shards.iter().map(|s| s.display().to_string()));
    merge.extend(["--out".to_owned(), merged.display().to_string()]);
    common::circuitdiff_ok(&merge);
    assert_same_files(&whole, &merged);
}

#[test]
fn a_ladder_that_cannot_be_followed_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp.path().join("out");
    let (ok, _, e) = circuitdiff(&[
        "trajectory",
        empty.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("no checkpoints in it"), "{e}");
    let base = zoo_base();
    let b = base.to_str().unwrap();
    let (ok, _, e) = circuitdiff(&[
        "trajectory",
        b,
        b,
        "--steps",
        "5,5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("must increase"), "{e}");
    let other = common::Tiny::Llama.write(&tmp.path().join("other"));
    let (ok, _, e) = circuitdiff(&[
        "trajectory",
        b,
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    // The pair check's words, naming each checkpoint by its step and spec.
    let says = format!(
        "step 0 ({b}) and step 1 ({}) cannot be compared: their vocabularies differ (",
        other.display()
    );
    assert!(!ok && e.contains(&says), "{e}");
    assert!(
        !out.exists(),
        "nothing is written before the ladder is checked"
    );
}

#[test]
fn a_trainer_log_with_nan_is_read_before_any_checkpoint_is_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let state = run.join("checkpoint-30/trainer_state.json");

    // A checkpoint with NaN weights is refused naming it (its adapter file and tensor).
    let last = run.join("checkpoint-30/adapter_model.safetensors");
    let bytes = std::fs::read(&last).unwrap();
    let tensor = "base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight";
    common::set_first_value(&last, tensor, f32::NAN);
    let out = tmp.path().join("nan");
    let refs = args(&run, &out, &[]);
    let (ok, _, e) = circuitdiff(&refs.iter().map(String::as_str).collect::<Vec<_>>());
    let says = format!("{}: tensor `{tensor}`: holds NaN", last.display());
    assert!(!ok && e.contains(&says), "{e}");
    std::fs::write(&last, bytes).unwrap();

    // Not a trainer state: refused before the first checkpoint is loaded, naming the file.
    std::fs::write(&state, "{\"log_history\": [").unwrap();
    let out = tmp.path().join("bad");
    let refs = args(&run, &out, &[]);
    let (ok, _, e) = circuitdiff(&refs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && e.contains("trainer_state.json"), "{e}");
    assert!(!out.exists(), "nothing is written before the log is read");

    // As HF's Trainer writes a diverged run: bare NaN and Infinity are values not measured.
    std::fs::write(
        &state,
        r#"{"global_step": 30, "log_history": [
            {"step": 10, "loss": NaN, "reward": 0.25},
            {"step": 20, "loss": 0.5, "reward": -Infinity, "grad_norm": Infinity},
            {"step": 30, "loss": 0.25, "reward": 0.75, "grad_norm": 1.5}
        ]}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    common::circuitdiff_ok(&args(&run, &out, &[]));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let train: Vec<&serde_json::Value> = summary["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["train"])
        .collect();
    assert_eq!(train[1]["loss"].as_f64(), None, "NaN is not measured");
    assert_eq!(train[2]["loss"].as_f64(), Some(0.5));
    assert_eq!(
        train[2]["reward"].as_f64(),
        Some(0.25),
        "the last finite value"
    );
    assert_eq!(train[3]["grad_norm"].as_f64(), Some(1.5));
    let csv = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    assert_eq!(
        csv,
        "step,loss,reward,grad_norm\n10,,0.250000,\n20,0.500000,,\n30,0.250000,0.750000,1.500000\n"
    );
}
