//! The embedded default: `circuitdiff demo` runs the three studies on the committed zoo with no
//! network, reports how intensity, entropy and kurtosis moved, and reproduces the committed
//! demo results (`assets/demo/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;

#[test]
fn demo_reproduces_the_committed_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (ok, stdout, stderr) =
        common::circuitdiff(&["demo", "--no-gui", "--out", out.to_str().unwrap()]);
    assert!(ok, "demo failed: {stderr}");
    for pair in ["grpo", "ppo", "dpo"] {
        assert!(stdout.contains(&format!("base → {pair}")), "{stdout}");
        for file in [
            "comparison.json",
            "report.md",
            "counts.json",
            "base/scores.npz",
            "figures/heatmap.png",
            "figures/heatmap.svg",
            "figures/circuit_difference.png",
            "figures/circuit_difference.svg",
        ] {
            assert!(out.join(pair).join(file).is_file(), "{pair}/{file} missing");
        }
    }
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p.join("summary.json")).unwrap()).unwrap()
    };
    let fresh = read(&out);
    let committed = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo"));
    let pairs = fresh.as_array().unwrap();
    let committed = committed.as_array().unwrap();
    assert_eq!(pairs.len(), 4);
    // Without --real the real pair's shipped results are copied, and the demo says how to
    // recompute them.
    assert_eq!(pairs[0]["tuned"], "smollm2_grpo");
    assert_eq!(pairs[0], committed[0]);
    assert!(out.join("smollm2_grpo/comparison.json").is_file());
    assert!(out.join("smollm2_grpo_trajectory/report.md").is_file());
    assert!(stderr.contains("demo --real"), "{stderr}");
    for (f, c) in pairs[1..].iter().zip(&committed[1..]) {
        for key in ["tuned", "base_accuracy", "tuned_accuracy", "n", "k"] {
            assert_eq!(f[key], c[key], "{key}: fresh {f} vs committed {c}");
        }
        assert!(f["n"].as_u64().unwrap() >= 20, "{f}");
        let stats = f["stats"].as_array().unwrap();
        let names: Vec<&str> = stats
            .iter()
            .map(|s| s["metric"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["intensity", "entropy", "kurtosis"]);
        for (fs, cs) in stats.iter().zip(c["stats"].as_array().unwrap()) {
            // Means and p-values to 1e-5 of themselves, differences and their interval to 1e-5
            // of the metric (a difference of nearly equal means keeps only their rounding): an
            // f32 score sums ~10⁵ products, and a change of kernels moves the metrics by ~1e-6.
            let value = |s: &serde_json::Value, key: &str| s[key].as_f64().unwrap();
            let metric = value(cs, "base_mean")
                .abs()
                .max(value(cs, "tuned_mean").abs());
            for key in [
                "base_mean",
                "tuned_mean",
                "mean_diff",
                "p_value",
                "ci_low",
                "ci_high",
            ] {
                let (a, b) = (value(fs, key), value(cs, key));
                let scale = match key {
                    "mean_diff" | "ci_low" | "ci_high" => metric,
                    _ => a.abs().max(b.abs()),
                };
                assert!(
                    (a - b).abs() <= 1e-5 * scale.max(1e-12),
                    "{} {key}: fresh {a} vs committed {b}",
                    fs["metric"]
                );
            }
        }
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("## SmolLM2-135M-Instruct → GRPO (LoRA)")
            && md.contains("McNemar exact p")
            && md.contains("## base → dpo")
            && md.contains("95 % CI")
            && md.contains("(dpo/figures/circuit_difference.png)"),
        "{md}"
    );
}
