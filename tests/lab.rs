//! The lab: each trainer's loss against hand-computed values, a few steps of each algorithm on
//! a tiny model (the loss on a fixed batch goes down), weight gradients of the training pass
//! against finite differences, checkpoints that round-trip, and the shortened `lab train`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Device, Tensor};
use circuitdiff::lab::dpo::dpo_loss;
use circuitdiff::lab::grpo::{group_advantages, grpo_loss};
use circuitdiff::lab::optim::Optimizer;
use circuitdiff::lab::policy::{token_logprobs, Policy, SeqBatch};
use circuitdiff::lab::ppo::{gae, ppo_loss, ValueHead};
use circuitdiff::lab::sft::{examples, sft_loss, Example};
use circuitdiff::lab::task::{tokenizer_json, train_questions, CHAT_TEMPLATE};
use circuitdiff::lab::LabConfig;
use circuitdiff::model::{random_weights, write_hf_folder, Kernels, LoadOptions, Model};
use std::path::{Path, PathBuf};

fn t2(v: &[[f32; 2]]) -> Tensor {
    Tensor::new(v.concat().as_slice(), &Device::Cpu)
        .unwrap()
        .reshape((v.len(), 2))
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: {got} vs hand-computed {want}"
    );
}

#[test]
fn losses_match_hand_computed_values() {
    // SFT: answer tokens 1 and 2 of one row: (0.5·0 + 1.0 + 2.0) / 2.
    let loss = sft_loss(
        &Tensor::new(&[[-0.5f32, -1.0, -2.0]], &Device::Cpu).unwrap(),
        &Tensor::new(&[[0f32, 1.0, 1.0]], &Device::Cpu).unwrap(),
    )
    .unwrap();
    close(scalar(&loss), 1.5, "sft");

    // GRPO, ε = 0.2, β = 0.1; row 0 has A = +1 (two tokens), row 1 A = −1 (one token).
    // row 0, t0: ρ = e^0.3 = 1.349859 → clipped 1.2 → −1.2; k3(−0.2) = e^−0.2 + 0.2 − 1 = 0.0187308
    // row 0, t1: ρ = e^−0.2 = 0.8187308 (inside) → −0.8187308; k3(0) = 0
    // row 1, t0: ρ = e^−0.3 = 0.7408182, A = −1: min(−0.7408182, −0.8) = −0.8 → +0.8;
    //            k3(0.1) = e^0.1 − 1.1 = 0.0051709
    // loss = ((−1.2 + 0.00187308 − 0.8187308) / 2 + 0.8 + 0.00051709) / 2 = −0.10395588
    let (loss, kl) = grpo_loss(
        &t2(&[[-0.7, -2.0], [-0.8, -3.0]]),
        &t2(&[[-1.0, -1.8], [-0.5, -2.0]]),
        &t2(&[[-0.9, -2.0], [-0.7, -3.0]]),
        &Tensor::new(&[1f32, -1.0], &Device::Cpu).unwrap(),
        &t2(&[[1.0, 1.0], [1.0, 0.0]]),
        0.2,
        0.1,
    )
    .unwrap();
    close(scalar(&loss), -0.103_955_88, "grpo loss");
    close(kl, (0.018_730_75 + 0.005_170_92) / 3.0, "grpo kl");

    // Group advantages: rewards 1, 0, 0, 1 → mean 0.5, std 0.5 → ±0.5 / (0.5 + 1e-6).
    let a = group_advantages(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 4);
    let u = 0.5 / (0.5 + 1e-6);
    assert_eq!(a, vec![u, -u, -u, u, 0.0, 0.0]);

    // GAE, γ = 1, λ = 0.9: δ = (0.1 + 0.4 − 0.5, −0.2 + 0.8 − 0.4, 1.0 − 0.8) = (0, 0.2, 0.2);
    // A2 = 0.2, A1 = 0.2 + 0.9·0.2 = 0.38, A0 = 0.9·0.38 = 0.342; returns = A + V.
    let (adv, ret) = gae(&[0.1, -0.2, 1.0], &[0.5, 0.4, 0.8], 1.0, 0.9);
    for (g, w) in adv
        .iter()
        .zip([0.342, 0.38, 0.2])
        .chain(ret.iter().zip([0.842, 0.78, 1.0]))
    {
        close(*g, w, "gae");
    }

    // PPO, ε = 0.2, value weight 0.5, one row of two tokens.
    // policy: t0 ρ = e^0.1, A = 0.5 → −0.5526854; t1 ρ = e^−0.2, A = −1 → +0.8187308;
    //         mean 0.1330227
    // value: t0 V = 0.3 clipped to 0.2 around V_old = 0: max(0.7², 0.8²)/2 = 0.32;
    //        t1 V = 0.9 (inside): 0.4²/2 = 0.08; mean 0.2. loss = 0.1330227 + 0.5·0.2
    let l = ppo_loss(
        &t2(&[[-1.0, -2.0]]),
        &t2(&[[-1.1, -1.8]]),
        &t2(&[[0.5, -1.0]]),
        &t2(&[[0.3, 0.9]]),
        &t2(&[[0.0, 1.0]]),
        &t2(&[[1.0, 0.5]]),
        &t2(&[[1.0, 1.0]]),
        0.2,
        0.5,
    )
    .unwrap();
    let policy = (-0.5 * 0.1f64.exp() + (-0.2f64).exp()) / 2.0;
    close(l.policy, policy, "ppo policy");
    close(l.value, 0.2, "ppo value");
    close(scalar(&l.loss), policy + 0.1, "ppo loss");

    // DPO, β = 0.5: margins 0.5·((−1 + 1.5) − (−2 + 1.5)) = 0.5 and 0.5·((−4 + 3) − (−3 + 3.5))
    // = −0.75; loss = (ln(1 + e^−0.5) + ln(1 + e^0.75)) / 2.
    let v = |x: [f32; 2]| Tensor::new(&x, &Device::Cpu).unwrap();
    let l = dpo_loss(
        &v([-1.0, -4.0]),
        &v([-2.0, -3.0]),
        &v([-1.5, -3.0]),
        &v([-1.5, -3.5]),
        0.5,
    )
    .unwrap();
    let want = ((-0.5f64).exp().ln_1p() + 0.75f64.exp().ln_1p()) / 2.0;
    close(scalar(&l.loss), want, "dpo loss");
    close(l.margin, -0.125, "dpo margin");
    close(l.accuracy, 0.5, "dpo pair accuracy");
}

/// A tiny zoo-style model (the lab's tokenizer and template) written as an HF folder.
fn tiny_model(dir: &Path) -> PathBuf {
    let tok = tokenizer_json();
    let vocab = tok["model"]["vocab"].as_object().unwrap().len();
    let cfg = LabConfig::quick(1).shape.config(vocab);
    let path = dir.join("tiny");
    write_hf_folder(
        &path,
        &cfg,
        &random_weights(&cfg, 3, 0.1).unwrap(),
        &tok,
        Some(CHAT_TEMPLATE),
    )
    .unwrap();
    path
}

/// Four sequences: two worked solutions and the same prompts with each other's answers.
fn fixed_batch(policy: &Policy) -> (SeqBatch, Vec<Example>) {
    let ex = examples(&policy.model, &train_questions(2, 5)).unwrap();
    let seqs = vec![
        ex[0].clone(),
        ex[1].clone(),
        (ex[0].0.clone(), ex[1].1.clone()),
        (ex[1].0.clone(), ex[0].1.clone()),
    ];
    let pairs: Vec<(&[u32], &[u32])> = seqs
        .iter()
        .map(|(p, a)| (p.as_slice(), a.as_slice()))
        .collect();
    (
        SeqBatch::new(&pairs, &Device::Cpu, DType::F32).unwrap(),
        seqs,
    )
}

/// Run `steps` updates of `loss_of` on one policy; returns the first and last loss.
fn descend(
    policy: &Policy,
    extra: Vec<candle_core::Var>,
    steps: usize,
    mut loss_of: impl FnMut() -> Tensor,
) -> (f64, f64) {
    let mut vars = policy.vars();
    vars.extend(extra);
    let mut opt = Optimizer::new(vars, 3e-3, 0, steps).unwrap();
    let first = scalar(&loss_of());
    for step in 0..steps {
        let loss = loss_of();
        opt.step(&loss, step).unwrap();
    }
    (first, scalar(&loss_of()))
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn each_algorithm_lowers_its_loss_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path());
    let reference = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();

    let policy = Policy::load(&path).unwrap();
    let (batch, seqs) = fixed_batch(&policy);
    let (a, b) = descend(&policy, vec![], 10, || {
        sft_loss(
            &token_logprobs(&policy.model, &batch).unwrap().0,
            &batch.mask,
        )
        .unwrap()
    });
    eprintln!("sft: {a:.4} -> {b:.4}");
    assert!(b < 0.8 * a, "sft loss {a} -> {b}");

    // The trained weights survive a save and a reload through the public loader.
    let saved = dir.path().join("saved");
    policy.save(&saved).unwrap();
    let reloaded = Model::load(saved.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let ids: Vec<u32> = seqs[0].0.iter().chain(&seqs[0].1).copied().collect();
    let d = common::max_abs_diff(
        &reloaded.forward_logits(&ids, Kernels::Fast).unwrap(),
        &policy.model.forward_logits(&ids, Kernels::Fast).unwrap(),
    );
    assert!(d == 0.0, "reloaded logits differ by {d}");

    let policy = Policy::load(&path).unwrap();
    let old = token_logprobs(&policy.model, &batch).unwrap().0.detach();
    let refp = token_logprobs(&reference, &batch).unwrap().0.detach();
    let adv = Tensor::new(&[1f32, 1.0, -1.0, -1.0], &Device::Cpu).unwrap();
    let (a, b) = descend(&policy, vec![], 10, || {
        let logp = token_logprobs(&policy.model, &batch).unwrap().0;
        grpo_loss(&logp, &old, &refp, &adv, &batch.mask, 0.2, 0.04)
            .unwrap()
            .0
    });
    eprintln!("grpo: {a:.4} -> {b:.4}");
    assert!(b < a - 0.05, "grpo loss {a} -> {b}");

    let policy = Policy::load(&path).unwrap();
    let head = ValueHead::new(policy.model.config.hidden_size, &Device::Cpu).unwrap();
    let adv = batch
        .mask
        .broadcast_mul(&adv.unsqueeze(1).unwrap())
        .unwrap();
    let returns = batch.mask.clone();
    let old_values = batch.mask.zeros_like().unwrap();
    let (a, b) = descend(&policy, head.vars(), 10, || {
        let (logp, hidden) = token_logprobs(&policy.model, &batch).unwrap();
        let values = head.forward(&hidden).unwrap();
        ppo_loss(
            &logp,
            &old,
            &adv,
            &values,
            &old_values,
            &returns,
            &batch.mask,
            0.2,
            0.5,
        )
        .unwrap()
        .loss
    });
    eprintln!("ppo: {a:.4} -> {b:.4}");
    assert!(b < a - 0.05, "ppo loss {a} -> {b}");

    let policy = Policy::load(&path).unwrap();
    let sums = |m: &Model| {
        (token_logprobs(m, &batch).unwrap().0 * &batch.mask)
            .unwrap()
            .sum(1)
            .unwrap()
    };
    let r = sums(&reference).detach();
    let (rc, rr) = (r.narrow(0, 0, 2).unwrap(), r.narrow(0, 2, 2).unwrap());
    let (a, b) = descend(&policy, vec![], 10, || {
        let p = sums(&policy.model);
        dpo_loss(
            &p.narrow(0, 0, 2).unwrap(),
            &p.narrow(0, 2, 2).unwrap(),
            &rc,
            &rr,
            0.1,
        )
        .unwrap()
        .loss
    });
    eprintln!("dpo: {a:.4} -> {b:.4}");
    assert!(
        (a - std::f64::consts::LN_2).abs() < 1e-6 && b < a - 0.05,
        "dpo loss {a} -> {b}"
    );
}

/// The tiny model in f64, and a batch of three sequences: two whose prompts and lengths differ,
/// and a third answering the first's prompt (packing, padding and the masked loss are all on
/// the training path then).
fn f64_model_and_batch(dir: &Path) -> (Model, Vec<Example>) {
    let path = tiny_model(dir);
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    let model = Model::load(path.to_str().unwrap(), &opts).unwrap();
    let ex = examples(&model, &train_questions(16, 9)).unwrap();
    let total = |e: &Example| e.0.len() + e.1.len();
    let other = ex
        .iter()
        .find(|e| e.0.len() != ex[0].0.len() && total(e) != total(&ex[0]))
        .expect("two examples whose prompts and lengths differ")
        .clone();
    // The second answers the first's prompt: the packed batch gives them one copy of it.
    let shared = (ex[0].0.clone(), other.1.clone());
    (model, vec![ex[0].clone(), shared, other])
}

fn batch_of(ex: &[Example]) -> SeqBatch {
    let pairs: Vec<(&[u32], &[u32])> = ex
        .iter()
        .map(|(p, a)| (p.as_slice(), a.as_slice()))
        .collect();
    SeqBatch::new(&pairs, &Device::Cpu, DType::F64).unwrap()
}

/// The gradient of the masked mean log-probability of `batch` with respect to each of `vars`
/// equals central finite differences (f64, 1e-5 relative) at its largest entry and one more.
fn assert_gradients_match_finite_differences(
    model: &Model,
    vars: &[(String, candle_core::Var)],
    batch: &SeqBatch,
) {
    let loss = |m: &Model| sft_loss(&token_logprobs(m, batch).unwrap().0, &batch.mask).unwrap();
    let grads = loss(model).backward().unwrap();
    let h = 1e-5;
    let mut checked = 0;
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let w0 = var.as_tensor().copy().unwrap();
        let flat = w0.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let top = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        for i in [top, g.len() / 3] {
            let at = |delta: f64| {
                let mut v = flat.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, w0.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                scalar(&loss(model))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            var.set(&w0).unwrap();
            let err = (fd - g[i]).abs() / g[i].abs().max(1e-6);
            assert!(
                err <= 1e-5 || (fd - g[i]).abs() <= 1e-9,
                "{name}[{i}]: autograd {} vs finite difference {fd}",
                g[i]
            );
            checked += 1;
        }
    }
    eprintln!("{checked} gradients agree with central differences");
}

#[test]
fn weight_gradients_of_the_training_pass_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, ex) = f64_model_and_batch(dir.path());
    let params = model.trainable().unwrap();
    assert_gradients_match_finite_differences(&model, &params, &batch_of(&ex));
}

/// With LoRA the base weights are frozen, so the training pass runs the fused kernels with
/// closed-form backward passes (norms, rotary embedding, attention core, gated activation, the
/// targets' log-probabilities): the updates' gradients against finite differences, and each
/// sequence's log-probabilities in the packed batch (two of them sharing one prompt) against
/// the sequence's alone (1e-12).
#[test]
fn lora_gradients_of_the_training_pass_match_finite_differences() {
    use circuitdiff::model::{LoraSettings, LoraTarget};
    let dir = tempfile::tempdir().unwrap();
    let (mut model, ex) = f64_model_and_batch(dir.path());
    let settings = LoraSettings {
        rank: 2,
        alpha: 4.0,
        rslora: false,
        targets: LoraTarget::ALL.to_vec(),
        seed: 1,
    };
    let pairs = model.attach_lora(&settings).unwrap();
    let mut vars = Vec::new();
    for (name, p) in &pairs {
        // B = 0 at the start would leave A without a gradient.
        p.b.set(&Tensor::randn(0f64, 0.1, p.b.shape(), &Device::Cpu).unwrap())
            .unwrap();
        vars.push((format!("{name}.lora_A"), p.a.clone()));
        vars.push((format!("{name}.lora_B"), p.b.clone()));
    }
    let batch = batch_of(&ex);
    assert_gradients_match_finite_differences(&model, &vars, &batch);
    let together = token_logprobs(&model, &batch)
        .unwrap()
        .0
        .to_vec2::<f64>()
        .unwrap();
    let mask = batch.mask.to_vec2::<f64>().unwrap();
    for (r, row) in ex.iter().enumerate() {
        let alone = batch_of(std::slice::from_ref(row));
        let own = token_logprobs(&model, &alone)
            .unwrap()
            .0
            .to_vec2::<f64>()
            .unwrap();
        for k in 0..row.1.len() {
            let (a, b) = (together[r][k], own[0][k]);
            assert_eq!(mask[r][k], 1.0);
            assert!(
                (a - b).abs() <= 1e-12,
                "row {r} answer token {k}: {a} vs {b}"
            );
        }
        assert!(mask[r][row.1.len()..].iter().all(|&m| m == 0.0));
    }
}

#[test]
fn quick_lab_run_trains_every_stage_resumes_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        let (ok, stdout, stderr) = common::circuitdiff(&[
            "lab",
            "train",
            "--quick",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "lab train failed: {stderr}");
        stdout
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let stdout = run(&a);
    assert!(stdout.contains("held-out accuracy"), "{stdout}");
    let times = std::fs::read(a.join("train_seconds.json")).unwrap();
    // Re-running finds every stage done and only re-evaluates.
    run(&a);
    assert_eq!(std::fs::read(a.join("train_seconds.json")).unwrap(), times);
    run(&b);
    let zoo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("zoo.json")).unwrap()).unwrap();
    for stage in ["base", "grpo", "ppo", "dpo"] {
        // Same seed, same threads: the same weights, byte for byte.
        let weights = |d: &Path| std::fs::read(d.join(stage).join("model.safetensors")).unwrap();
        assert!(
            weights(&a) == weights(&b),
            "{stage}: weights differ between two runs"
        );
        let acc = zoo["accuracy"][stage].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{stage}: accuracy {acc}");
        let log = std::fs::read_to_string(a.join(stage).join("train_log.csv")).unwrap();
        assert!(
            log.starts_with("step,loss,reward,accuracy,kl"),
            "{stage}: {log}"
        );
        assert!(log.lines().count() >= 3, "{stage}: {log}");
        Model::load(a.join(stage).to_str().unwrap(), &LoadOptions::default()).unwrap();
    }
    assert!(a
        .join("checkpoints/base/step-000000/model.safetensors")
        .is_file());
    // Another setting into the same directory is refused.
    let (ok, _, stderr) = common::circuitdiff(&[
        "lab",
        "train",
        "--quick",
        "--seed",
        "4",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("other settings"), "{stderr}");
}

/// The committed zoo: every model loads in transformers with the same logits, its chat
/// template renders the same prompt there, and `zoo.json` records the accuracies that
/// `assets/README.md` reports.
#[test]
fn committed_zoo_matches_transformers() {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    let question = "What is 47 + 38?";
    for stage in circuitdiff::lab::STAGES {
        let dir = zoo.join(stage);
        let model = Model::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let prompt = circuitdiff::lab::task::prompt_ids(&model.tokenizer, question).unwrap();
        let answer = model
            .tokenizer
            .encode("47+30=77, 77+8=\\boxed{85}", false)
            .unwrap();
        let ids: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
        let r = common::reference(
            "hf_model.py",
            &serde_json::json!({"model": dir, "ids": ids, "chat": question}),
        );
        let chat: Vec<i64> = r["chat_ids"].to_vec1().unwrap();
        let prompt_i64: Vec<i64> = prompt.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(
            chat, prompt_i64,
            "{stage}: the chat template renders differently"
        );
        let d = common::max_abs_diff(
            &model.forward_logits(&ids, Kernels::Fast).unwrap(),
            &r["logits"],
        );
        eprintln!("{stage}: max |Δlogit| vs transformers = {d:e}");
        assert!(d <= 1e-4, "{stage}: max |Δlogit| = {d:e}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(zoo.join("zoo.json")).unwrap()).unwrap();
    let acc = |s: &str| report["accuracy"][s].as_f64().unwrap();
    assert!(
        acc("base") > 0.0 && acc("base") < 1.0,
        "base accuracy {}",
        acc("base")
    );
    assert!(
        acc("grpo") > acc("base") && acc("ppo") > acc("base"),
        "{report}"
    );
}
