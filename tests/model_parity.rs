//! The transformer against Hugging Face transformers: logits of every family, and probe
//! gradients of the per-path graph against PyTorch autograd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{Kernels, LoadOptions, Model};
use common::{max_abs, max_abs_diff, nll, reference, Tiny};

const IDS: [u32; 10] = [5, 17, 22, 9, 40, 33, 12, 8, 27, 19];

#[test]
fn logits_and_probe_gradients_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in Tiny::ALL {
        let path = tiny.write(dir.path());
        let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let (p0, targets) = (6, IDS[7..].to_vec());
        let r = reference(
            "hf_model.py",
            &serde_json::json!({"model": path, "ids": IDS, "loss_from": p0, "targets": targets}),
        );

        // Logits, every kernel set, against transformers' own forward: |Δ| ≤ 1e-4.
        for kernels in [Kernels::Fast, Kernels::Differentiable, Kernels::FusedGrad] {
            let ours = model.forward_logits(&IDS, kernels).unwrap();
            let d = max_abs_diff(&ours, &r["logits"]);
            eprintln!("{tiny:?} {kernels:?}: max |Δlogit| = {d:e}");
            assert!(d <= 1e-4, "{tiny:?} {kernels:?}: max |Δlogit| = {d:e}");
        }
        // The reference per-path forward is the same function as transformers' forward.
        let d = max_abs_diff(&r["path_logits"], &r["logits"]);
        assert!(
            d <= 1e-5,
            "{tiny:?}: reference per-path forward differs by {d:e}"
        );

        // Probe gradients through the per-path copies: relative error ≤ 1e-4 per destination.
        let traced = model.trace(&IDS, p0..p0 + targets.len()).unwrap();
        let loss = nll(&traced.logits, &targets);
        let ref_loss = r["loss"].to_scalar::<f32>().unwrap();
        let our_loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (our_loss - ref_loss).abs() <= 1e-5,
            "{tiny:?}: loss {our_loss} vs {ref_loss}"
        );
        let grads = traced.gradients(&loss).unwrap();
        assert_eq!(grads.len(), 4 * 2 + 1);
        let scale = grads.iter().map(max_abs).fold(0.0, f64::max);
        for (j, g) in grads.iter().enumerate() {
            let want = &r[&format!("grad.{j}")];
            let err = max_abs_diff(g, want) / max_abs(want).max(1e-3 * scale);
            eprintln!("{tiny:?} destination {j}: gradient relative error {err:e}");
            assert!(
                err <= 1e-4,
                "{tiny:?} destination {j}: relative error {err:e}"
            );
        }
        for (i, s) in traced.sources.iter().enumerate() {
            let want = &r[&format!("source.{i}")];
            let err = max_abs_diff(s, want) / max_abs(want);
            assert!(err <= 1e-5, "{tiny:?} source {i}: relative error {err:e}");
        }
    }
}
