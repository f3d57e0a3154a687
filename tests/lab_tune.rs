//! `lab tune`: the GRPO and DPO losses against TRL's own loss code on a fixed batch; a LoRA
//! checkpoint that PEFT loads with circuitdiff's logits; a run killed with SIGKILL that resumes
//! to the same weights; a short run whose folder `trajectory` reads end to end; and the
//! configurations refused, each with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Device, Tensor};
use circuitdiff::lab::dpo::dpo_loss;
use circuitdiff::lab::grpo::{grpo_loss_with, trl_advantages, Aggregation, LossInputs};
use circuitdiff::model::{Kernels, LoadOptions, Model};
use common::{max_abs_diff, reference};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Largest difference allowed from TRL's losses (f32 here, f64 in TRL).
const TRL_TOLERANCE: f64 = 1e-5;
/// Largest |Δlogit| allowed between PEFT's adapter and circuitdiff's merged model (f32).
const PEFT_TOLERANCE: f64 = 1e-4;

fn zoo_base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo/base")
}

fn matrix(rows: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(rows.clone()).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
}

fn vector(v: &Value) -> Tensor {
    let v: Vec<f32> = serde_json::from_value(v.clone()).unwrap();
    Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// The fixed batch: six GRPO answers in two groups of three, three DPO pairs.
fn trl_request() -> Value {
    json!({
        "grpo": {
            "logp": [[-0.7, -2.0, -1.1], [-0.8, -3.0, -0.4], [-1.2, -0.3, -0.9], [-0.5, -0.6, -2.2],
                     [-0.9, -0.1, -1.5], [-2.0, -0.7, -0.3]],
            "old":  [[-1.0, -1.8, -1.0], [-0.5, -2.0, -0.5], [-1.0, -0.4, -0.8], [-0.6, -0.6, -2.0],
                     [-0.8, -0.3, -1.4], [-1.7, -0.9, -0.2]],
            "ref":  [[-0.9, -2.0, -1.2], [-0.7, -3.0, -0.6], [-1.1, -0.2, -1.0], [-0.4, -0.8, -2.1],
                     [-1.0, -0.2, -1.6], [-1.9, -0.6, -0.5]],
            "mask": [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]],
            // Groups of three: rewards 1 0 0, then 1 1 0.
            "rewards": [1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
            "group": 3, "clip": 0.2, "beta": 0.04, "max_completion_length": 5
        },
        "dpo": {
            "chosen": [[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5], [-0.1, 0.0, 0.0]],
            "rejected": [[-3.0, 0.0, 0.0], [-0.2, -1.0, -0.3], [-2.5, -0.5, 0.0]],
            "ref_chosen": [-3.5, -1.2, -0.4], "ref_rejected": [-2.5, -1.8, -2.0], "beta": 0.1
        }
    })
}

#[test]
fn grpo_and_dpo_losses_equal_trls_on_a_fixed_batch() {
    let request = trl_request();
    let trl = reference("trl_loss.py", &request);
    let g = &request["grpo"];
    let rewards: Vec<f64> = serde_json::from_value(g["rewards"].clone()).unwrap();
    let adv = trl_advantages(&rewards, 3);
    let want: Vec<f64> = trl["grpo_advantages"].to_vec1().unwrap();
    for (a, w) in adv.iter().zip(&want) {
        assert!(
            (a - w).abs() <= TRL_TOLERANCE,
            "advantages {adv:?} vs TRL's {want:?}"
        );
    }
    let adv_t = Tensor::new(
        adv.iter().map(|&a| a as f32).collect::<Vec<_>>().as_slice(),
        &Device::Cpu,
    )
    .unwrap();
    let (logp, old, refp, mask) = (
        matrix(&g["logp"]),
        matrix(&g["old"]),
        matrix(&g["ref"]),
        matrix(&g["mask"]),
    );
    let inputs = LossInputs {
        logp: &logp,
        old: &old,
        reference: &refp,
        adv: &adv_t,
        mask: &mask,
    };
    let cases = [
        ("grpo_loss", Aggregation::PerAnswer),
        (
            "dr_grpo_loss",
            Aggregation::LengthUnbiased { max_new_tokens: 5 },
        ),
    ];
    for (name, how) in cases {
        let (loss, kl) = grpo_loss_with(&inputs, 0.2, 0.04, how).unwrap();
        let (ours, theirs) = (scalar(&loss), scalar(&trl[name]));
        eprintln!("{name}: {ours} vs TRL {theirs}");
        assert!(
            (ours - theirs).abs() <= TRL_TOLERANCE,
            "{name}: {ours} vs TRL {theirs}"
        );
        let kl_trl = scalar(&trl["grpo_kl"]);
        assert!(
            (kl - kl_trl).abs() <= TRL_TOLERANCE,
            "kl {kl} vs TRL {kl_trl}"
        );
    }

    let d = &request["dpo"];
    let answer_sum = |m: &Value| matrix(m).sum(1).unwrap();
    let l = dpo_loss(
        &answer_sum(&d["chosen"]),
        &answer_sum(&d["rejected"]),
        &vector(&d["ref_chosen"]),
        &vector(&d["ref_rejected"]),
        0.1,
    )
    .unwrap();
    let (ours, theirs) = (scalar(&l.loss), scalar(&trl["dpo_loss"]));
    eprintln!("dpo: {ours} vs TRL {theirs}");
    assert!(
        (ours - theirs).abs() <= TRL_TOLERANCE,
        "dpo {ours} vs TRL {theirs}"
    );
}

/// The LoRA settings of the tests' runs.
const LORA: [&str; 4] = [
    "--lora-rank",
    "2",
    "--lora-targets",
    "q_proj,v_proj,down_proj",
];

/// `lab tune` arguments for a short GRPO run of the zoo base into `out` (`extra` adds LoRA or
/// `--full`).
fn tune_args(out: &Path, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "lab",
        "tune",
        zoo_base().to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=60",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        &steps.to_string(),
        "--save-every",
        "2",
        "--questions",
        "2",
        "--group",
        "4",
        "--max-new-tokens",
        "32",
        "--eval-questions",
        "8",
        "--lr",
        "0.005",
        "--seed",
        "3",
    ]
    .map(str::to_owned)
    .to_vec();
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

#[test]
fn a_lora_checkpoint_loads_in_peft_with_the_merged_models_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    common::circuitdiff_ok(&tune_args(
        &out,
        2,
        &[&LORA[..], &["--rslora", "--lora-alpha", "4"]].concat(),
    ));
    let checkpoint = out.join("checkpoint-2");
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
    ] {
        assert!(checkpoint.join(file).is_file(), "{file}");
    }
    let ids: Vec<u32> = vec![1, 20, 5, 10, 8, 4, 22];
    let r = reference(
        "peft_model.py",
        &json!({"base": zoo_base(), "adapter": checkpoint, "lora": null, "ids": ids}),
    );
    let model = Model::load(checkpoint.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let info = model.adapter.as_ref().unwrap();
    assert_eq!((info.rank, info.rslora), (2, true));
    assert_eq!(info.target_modules, ["q_proj", "v_proj", "down_proj"]);
    let ours = model.forward_logits(&ids, Kernels::Fast).unwrap();
    let d = max_abs_diff(&ours, &r["peft_logits"]);
    let effect = max_abs_diff(&r["base_logits"], &r["peft_logits"]);
    eprintln!("max |Δlogit| vs PEFT = {d:e}; the adapter moves the logits by {effect:.4}");
    assert!(d <= PEFT_TOLERANCE, "max |Δlogit| = {d:e}");
    assert!(
        effect > 1e-3,
        "two steps left the adapter at zero ({effect:e})"
    );
}

/// The tensors of a safetensors file, by name, as bytes.
fn tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_run_killed_mid_way_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    common::circuitdiff_ok(&tune_args(&whole, 6, &LORA));

    let killed = tmp.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(tune_args(&killed, 6, &LORA))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !killed.join("checkpoint-2").is_dir() {
        assert!(started.elapsed().as_secs() < 300, "no checkpoint-2");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SIGKILL, between checkpoints.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("checkpoint-6").exists());
    let stdout = common::circuitdiff_ok(&tune_args(&killed, 6, &LORA));
    assert!(stdout.contains("3 checkpoints"), "{stdout}");
    for step in [2, 4, 6] {
        let file = format!("checkpoint-{step}/adapter_model.safetensors");
        assert!(
            tensor_bytes(&whole.join(&file)) == tensor_bytes(&killed.join(&file)),
            "{file}: the resumed run's weights differ"
        );
    }
    let history = |dir: &Path| -> Value {
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.join("trainer_state.json")).unwrap())
                .unwrap();
        state["log_history"].clone()
    };
    assert_eq!(history(&whole), history(&killed));
    assert_eq!(history(&whole).as_array().unwrap().len(), 6);
}

#[test]
fn a_full_dpo_run_writes_hugging_face_folders_and_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let started = std::time::Instant::now();
    // DPO of every weight: full Hugging Face folders.
    common::circuitdiff_ok(&tune_args(
        &out,
        4,
        &[
            "--method",
            "dpo",
            "--batch",
            "2",
            "--samples",
            "4",
            "--full",
        ],
    ));
    eprintln!("4 DPO steps in {:.1} s", started.elapsed().as_secs_f64());
    let state: Value =
        serde_json::from_slice(&std::fs::read(out.join("trainer_state.json")).unwrap()).unwrap();
    let rows = state["log_history"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for key in ["step", "loss", "kl", "rewards/margins"] {
        assert!(
            rows.iter().all(|r| r.get(key).is_some()),
            "{key} in {rows:?}"
        );
    }
    assert!(rows[3].get("accuracy").is_some(), "{:?}", rows[3]);
    let full = out.join("checkpoint-4");
    assert!(full.join("config.json").is_file() && full.join("model.safetensors").is_file());
    let ids = [1u32, 20, 5, 10, 8];
    let logits = |spec: &Path| {
        Model::load(spec.to_str().unwrap(), &LoadOptions::default())
            .unwrap()
            .forward_logits(&ids, Kernels::Fast)
            .unwrap()
    };
    let moved = max_abs_diff(&logits(&full), &logits(&zoo_base()));
    assert!(
        moved > 1e-4,
        "four DPO steps left the weights unchanged ({moved:e})"
    );
}

/// Micro-batches of 3 rows, their gradients accumulated, are the same step as one pass over
/// all 8: the same sampled answers, the same loss and KL (both near 0 at the first step, where
/// the ratio is 1 and the policy is the reference: to 1e-6 absolute), and adapters within a
/// thousandth of the largest weight (only the order of summation differs).
#[test]
fn micro_batches_accumulate_to_the_whole_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    common::circuitdiff_ok(&tune_args(&whole, 1, &[]));
    common::circuitdiff_ok(&tune_args(&parts, 1, &["--micro-batch", "3"]));
    let row = |dir: &Path| -> Value {
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.join("trainer_state.json")).unwrap())
                .unwrap();
        state["log_history"][0].clone()
    };
    let (a, b) = (row(&whole), row(&parts));
    assert_eq!(a["reward"], b["reward"], "{a} vs {b}");
    for key in ["loss", "kl"] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        assert!(
            (x - y).abs() <= 1e-6 + 1e-5 * x.abs().max(y.abs()),
            "{key}: {x} vs {y}"
        );
    }
    let weights = |dir: &Path| {
        tensor_bytes(
            &dir.join("checkpoint-1")
                .join(circuitdiff::model::ADAPTER_WEIGHTS_FILE),
        )
    };
    let (wa, wb) = (weights(&whole), weights(&parts));
    assert_eq!(wa.len(), wb.len());
    let mut moved = 0.0f32;
    let mut apart = 0.0f32;
    for ((na, ba), (nb, bb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let f = |b: &[u8]| -> Vec<f32> {
            b.chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        for (x, y) in f(ba).iter().zip(f(bb)) {
            moved = moved.max(x.abs());
            apart = apart.max((x - y).abs());
        }
    }
    eprintln!("micro-batches vs one pass: adapters apart by {apart:e}, largest weight {moved:e}");
    assert!(
        moved > 0.0 && apart <= 1e-3 * moved,
        "adapters differ by {apart} of {moved}"
    );
}

#[test]
fn a_short_run_writes_a_ladder_that_trajectory_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let grpo = tmp.path().join("grpo");
    common::circuitdiff_ok(&tune_args(
        &grpo,
        4,
        &[&LORA[..], &["--length-unbiased"]].concat(),
    ));
    let traj = tmp.path().join("traj");
    let a: Vec<String> = [
        "trajectory",
        grpo.to_str().unwrap(),
        "--first",
        zoo_base().to_str().unwrap(),
        "--dataset",
        "builtin:arith",
        "--limit",
        "12",
        "--n",
        "4",
        "--alpha",
        "0.99",
        "--max-new-tokens",
        "32",
        "--out",
        traj.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    let stdout = common::circuitdiff_ok(&a);
    assert!(stdout.contains("at each of 3 checkpoints"), "{stdout}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(traj.join("summary.json")).unwrap()).unwrap();
    let points = summary["points"].as_array().unwrap();
    let steps: Vec<u64> = points.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 2, 4]);
    for key in ["reward", "kl", "loss", "accuracy"] {
        assert!(
            points[2]["train"][key].is_number(),
            "{key}: {}",
            points[2]["train"]
        );
    }
}

#[test]
fn bad_configurations_are_refused_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let with = |flag: &str, value: &str| {
        let mut a = tune_args(&out, 2, &LORA);
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.to_owned();
        a
    };
    let e = common::circuitdiff_err(&with("--lora-rank", "0"));
    assert!(e.contains("LoRA rank 0"), "{e}");
    let e = common::circuitdiff_err(&with("--lora-targets", "q_proj,qkv"));
    assert!(e.contains("unknown LoRA target module `qkv`"), "{e}");

    let no_answers = tmp.path().join("questions.jsonl");
    std::fs::write(&no_answers, "{\"question\": \"What is 1 + 1?\"}\n").unwrap();
    let mut a = tune_args(&out, 2, &[]);
    a[4] = no_answers.display().to_string();
    let e = common::circuitdiff_err(&a);
    assert!(
        e.contains("cannot find a question field") && e.contains("reference field"),
        "{e}"
    );

    // Held out means never trained on: a dataset whose later questions all repeat held-out
    // ones leaves nothing to train on.
    let repeats = tmp.path().join("repeats.jsonl");
    let line = |q: u32| {
        format!(
            "{{\"question\": \"What is {q} + 1?\", \"answer\": \"{}\"}}\n",
            q + 1
        )
    };
    let text: String = (0..8).chain(0..8).map(line).collect();
    std::fs::write(&repeats, text).unwrap();
    let mut a = tune_args(&out, 2, &[]);
    a[4] = repeats.display().to_string();
    let e = common::circuitdiff_err(&a);
    assert!(e.contains("repeats one of them"), "{e}");

    // A model far too large for memory is refused from its configuration, before any weight.
    let huge = tmp.path().join("huge");
    common::copy_dir(&zoo_base(), &huge);
    let path = huge.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["hidden_size"] = json!(65536);
    cfg["intermediate_size"] = json!(262_144);
    cfg["num_hidden_layers"] = json!(256);
    std::fs::write(&path, cfg.to_string()).unwrap();
    let mut a = tune_args(&out, 2, &[]);
    a[2] = huge.display().to_string();
    let e = common::circuitdiff_err(&a);
    assert!(e.contains("of memory is available"), "{e}");
    assert!(
        !out.join("tune.json").exists(),
        "a refused run claimed its folder"
    );
}

#[test]
fn the_lora_pass_equals_its_merged_adapter_and_trains_a_and_b_only() {
    use circuitdiff::model::{LoraSettings, LoraTarget};
    let tmp = tempfile::tempdir().unwrap();
    let mut model = Model::load(zoo_base().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let settings = LoraSettings {
        rank: 1,
        alpha: 3.0,
        rslora: false,
        targets: vec![LoraTarget::QProj, LoraTarget::DownProj, LoraTarget::LmHead],
        seed: 1,
    };
    let pairs = model.attach_lora(&settings).unwrap();
    assert_eq!(
        pairs.len(),
        4 + 4 + 1,
        "q_proj and down_proj of 4 layers, and lm_head"
    );
    let ids: Vec<u32> = vec![1, 20, 5, 10, 8, 4, 22];
    let before = model.forward_logits(&ids, Kernels::Fast).unwrap();
    for (_, p) in &pairs {
        p.b.set(&Tensor::randn(0f32, 0.1, p.b.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let packing = circuitdiff::model::Packing::new(&[(&ids[..1], &ids[1..])]);
    let at = Tensor::arange(0u32, ids.len() as u32, &Device::Cpu).unwrap();
    let (_, logits) = model.forward_packed(&packing, &at).unwrap();
    let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, p) in &pairs {
        assert!(
            grads.get(&p.a).is_some() && grads.get(&p.b).is_some(),
            "{name}"
        );
    }
    let adapter = tmp.path().join("adapter");
    circuitdiff::lab::peft::write_adapter(
        &adapter,
        &settings,
        zoo_base().to_str().unwrap(),
        &pairs,
    )
    .unwrap();
    let merged = Model::load(adapter.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let want = merged.forward_logits(&ids, Kernels::Fast).unwrap();
    let ours = logits.squeeze(0).unwrap();
    let d = max_abs_diff(&ours, &want);
    let effect = max_abs_diff(&before, &want);
    eprintln!(
        "LoRA pass vs merged adapter: max |Δlogit| = {d:e} (the update moves them by {effect:.3})"
    );
    assert!(d <= PEFT_TOLERANCE, "max |Δlogit| = {d:e}");
    assert!(effect > 0.01, "{effect}");
}

#[test]
fn dpo_pairs_can_come_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    let lines = [
        json!({"prompt": "What is 1 + 2?", "chosen": "1+2=\\boxed{3}", "rejected": "1+2=\\boxed{4}"}),
        json!({"prompt": "What is 5 + 4?", "chosen": "5+4=\\boxed{9}", "rejected": "5+4=\\boxed{8}"}),
    ];
    std::fs::write(&pairs, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let out = tmp.path().join("run");
    let file = pairs.to_str().unwrap();
    let dpo = ["--method", "dpo", "--batch", "2", "--pairs", file];
    common::circuitdiff_ok(&tune_args(&out, 2, &[&LORA[..], &dpo].concat()));
    let state: Value =
        serde_json::from_slice(&std::fs::read(out.join("trainer_state.json")).unwrap()).unwrap();
    let rows = state["log_history"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Both pairs in every batch: the margin grows from 0 at the first step.
    assert_eq!(rows[0]["rewards/margins"].as_f64(), Some(0.0));
    assert!(
        rows[1]["rewards/margins"].as_f64().unwrap() > 0.0,
        "{rows:?}"
    );

    std::fs::write(&pairs, "{\"prompt\": \"What is 1 + 2?\"}\n").unwrap();
    let e = common::circuitdiff_err(&tune_args(
        &tmp.path().join("bad"),
        2,
        &[&LORA[..], &dpo].concat(),
    ));
    assert!(e.contains("line 1: no text field `chosen`"), "{e}");
}
