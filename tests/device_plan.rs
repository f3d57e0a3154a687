//! Devices by name, the memory planner, and bf16 scoring with f32 accumulation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::DType;
use circuitdiff::attribution::{score_sample, Graph, Level};
use circuitdiff::model::{open_device, LoadOptions, MemoryEstimate, Model, ModelConfig, ScorePlan};
use common::{circuitdiff, Tiny};

/// The random Llama of `circuitdiff bench --write-random-llama` (default --random-shape).
fn bench_llama() -> ModelConfig {
    ModelConfig::llama(32_000, 512, 1376, 8, (8, 8), 4096)
}

#[test]
fn estimate_is_pinned_and_near_the_measured_peak() {
    let e = MemoryEstimate::new(&bench_llama(), &ScorePlan::block(512), DType::F32);
    assert_eq!(e.weights, 232_294_400);
    assert_eq!(e.total, 887_383_449, "{e:?}");
    // Peak RSS of `circuitdiff score` on this model at 512 tokens (BENCHMARKS.md).
    let measured = 800_240u64 * 1024;
    let err = (e.total as f64 - measured as f64).abs() / measured as f64;
    assert!(err < 0.2, "estimate {} vs measured {measured}", e.total);
    // bf16 halves the weights; the score product stays in f32.
    let half = MemoryEstimate::new(&bench_llama(), &ScorePlan::block(512), DType::BF16);
    assert_eq!(half.weights * 2, e.weights);
    assert!(half.total < e.total * 3 / 4, "{half:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_plan_that_does_not_fit_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Llama.write(dir.path());
    let opts = LoadOptions {
        plan: Some(ScorePlan::block(5_000_000)),
        ..LoadOptions::default()
    };
    let err = match Model::load(path.to_str().unwrap(), &opts) {
        Ok(_) => panic!("a 5M-token scoring plan was accepted"),
        Err(e) => e.to_string(),
    };
    for part in [
        "GiB of weights",
        "scoring 5000000 tokens in f32 needs",
        "of memory is available",
        "--cut",
    ] {
        assert!(err.contains(part), "{err}");
    }
    let fits = LoadOptions {
        plan: Some(ScorePlan::block(64)),
        ..LoadOptions::default()
    };
    assert!(Model::load(path.to_str().unwrap(), &fits).is_ok());
}

#[test]
fn devices_by_name() {
    assert!(open_device("cpu").unwrap().is_cpu());
    let err = open_device("tpu").unwrap_err().to_string();
    assert!(err.contains("expected cpu, cuda, cuda:N, metal"), "{err}");
    let err = open_device("cuda:x").unwrap_err().to_string();
    assert!(err.contains("`x` is not a device number"), "{err}");
    for (name, feature) in [("cuda:1", "cuda"), ("metal", "metal")] {
        let compiled = match feature {
            "cuda" => candle_core::utils::cuda_is_available(),
            _ => candle_core::utils::metal_is_available(),
        };
        if !compiled {
            let err = open_device(name).unwrap_err().to_string();
            assert!(err.contains(&format!("--features {feature}")), "{err}");
        }
    }
    if !candle_core::utils::cuda_is_available() {
        let (ok, _, stderr) = circuitdiff(&["bench", "--model", "x", "--device", "cuda"]);
        assert!(!ok && stderr.contains("--features cuda"), "{stderr}");
    }
}

#[test]
fn bf16_scores_follow_f32_scores() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Llama.write(dir.path());
    let prompt = [1, 5, 17, 22, 9, 40];
    let answer = [33, 12, 8, 27, 19];
    let scores = |dtype| {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let model = Model::load(path.to_str().unwrap(), &opts).unwrap();
        let g = Graph::new(&model.config, Level::Block);
        score_sample(&model, &g, "0", &prompt, &answer, 4).unwrap()
    };
    let (full, half) = (scores(DType::F32), scores(DType::BF16));
    let scale = full.dense.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = full
        .dense
        .iter()
        .zip(&half.dense)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 0.05 * scale, "max |Δ| {worst} vs max |s| {scale}");
    assert!(
        (full.loss - half.loss).abs() <= 0.02 * full.loss.abs(),
        "{} vs {}",
        full.loss,
        half.loss
    );
}
