//! Probe gradients against central finite differences in f64, for every destination of every
//! family: the differentiable path must carry exact gradients through norms, rotary embeddings
//! and softmax.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Device, Tensor};
use circuitdiff::model::{LoadOptions, Model};
use common::{nll, Tiny};

const IDS: [u32; 9] = [5, 17, 22, 9, 40, 33, 12, 8, 27];

fn loss_at(model: &Model, patches: &[(usize, Tensor)], targets: &[u32]) -> f64 {
    let p0 = IDS.len() - targets.len();
    let dests = circuitdiff::node::block_destinations(model.config.num_layers);
    let patches: Vec<_> = patches
        .iter()
        .map(|(d, x)| (dests[*d], x.clone()))
        .collect();
    let traced = model
        .trace_patched(&IDS, p0..IDS.len(), &patches, false)
        .unwrap();
    nll(&traced.logits, targets).to_scalar::<f64>().unwrap()
}

#[test]
fn probe_gradients_equal_finite_differences_f64() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    let targets = [12u32, 8, 27, 3];
    let p0 = IDS.len() - targets.len();
    for tiny in Tiny::ALL {
        let path = tiny.write(dir.path());
        let model = Model::load(path.to_str().unwrap(), &opts).unwrap();
        let traced = model.trace(&IDS, p0..IDS.len()).unwrap();
        let grads = traced.gradients(&nll(&traced.logits, &targets)).unwrap();
        let (t, d) = grads[0].dims2().unwrap();
        for (j, g) in grads.iter().enumerate() {
            // A fixed pseudo-random direction, so the check is reproducible.
            let v: Vec<f64> = (0..t * d)
                .map(|i| ((i * 7919 + j * 104729) as f64 * 0.618).sin())
                .collect();
            let dir = Tensor::from_vec(v, (t, d), &Device::Cpu).unwrap();
            let analytic = (g * &dir)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            // Central differences: truncation ~ε², rounding ~1e-16/ε.
            let eps = 1e-6;
            let plus = loss_at(&model, &[(j, (&dir * eps).unwrap())], &targets);
            let minus = loss_at(&model, &[(j, (&dir * -eps).unwrap())], &targets);
            let numeric = (plus - minus) / (2.0 * eps);
            let err = (analytic - numeric).abs() / numeric.abs().max(1e-8);
            eprintln!("{tiny:?} destination {j}: analytic {analytic:.9e} numeric {numeric:.9e}");
            assert!(
                err <= 1e-6,
                "{tiny:?} destination {j}: relative error {err:e}"
            );
        }
    }
}

#[test]
fn logits_gradient_is_zero_outside_the_scored_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = Tiny::Llama.write(dir.path());
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let traced = model.trace(&IDS, 6..9).unwrap();
    let grads = traced.gradients(&nll(&traced.logits, &[8, 27, 3])).unwrap();
    let g = grads
        .last()
        .unwrap()
        .abs()
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(g[..6].iter().all(|&x| x == 0.0), "{g:?}");
    assert!(g[6..].iter().all(|&x| x > 0.0), "{g:?}");
}
