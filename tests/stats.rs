//! Metrics (method.md §5) and the paired comparison against hand-computed values and against
//! SciPy 1.17 (`tests/reference/stats.py`, run with the venv that `bash .ci/run` makes).
//!
//! Tolerances: statistics of the Wilcoxon test and edge counts must be equal; p-values,
//! kurtosis, entropies and the other float metrics agree to 1e-9 relative to max(1, |ref|)
//! (p-values: relative to |ref|). Hand-computed values are checked to 1e-12.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::attribution::compare::{
    mcnemar_exact, paired, wilcoxon, CompareError, CompareOptions, PMethod, PairedStat,
};
use circuitdiff::attribution::metrics::{metrics, Metric, MetricOptions, Metrics};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Run `tests/reference/stats.py` on `request` and return its JSON result.
fn reference(request: &Value) -> Value {
    let result: Value =
        serde_json::from_slice(&common::run_reference("stats.py", request)).unwrap();
    let version = result["versions"]["scipy"].as_str().unwrap();
    assert!(
        version.starts_with("1.17."),
        "the reference must be SciPy 1.17, found {version}"
    );
    result
}

/// A JSON number, or NaN for `null`.
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// |a − b| / max(1, |b|).
fn err_scaled(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tolerance {tol:e})"
    );
}

fn uniform(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>()).collect()
}

/// Integers in [lo, hi] as f64 (exact, so equal |x − y| are real ties).
fn integers(rng: &mut StdRng, n: usize, lo: i32, hi: i32) -> Vec<f64> {
    (0..n)
        .map(|_| f64::from(rng.random_range(lo..=hi)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metrics, by hand

#[test]
fn metrics_by_hand_small_vector() {
    // s = [1, −1, 2, 0]; |s| sorted = [2, 1, 1, 0], Σ|s| = 4, n = 4.
    let s = [1.0_f32, -1.0, 2.0, 0.0];
    let m = metrics(&s, 0.5, &MetricOptions::default());
    let ln2 = std::f64::consts::LN_2;
    let tol = 1e-12;
    // intensity = 4 / 4; relative to the loss 0.5: 2.
    assert_close("intensity", m.intensity, 1.0, tol);
    assert_close("relative_intensity", m.relative_intensity, 2.0, tol);
    // p = [.5, .25, .25, 0]: H = .5 ln 2 + 2 · .25 ln 4 = 1.5 ln 2; / ln 4 = 0.75.
    assert_close("entropy", m.entropy, 1.5 * ln2, tol);
    assert_close("entropy_normalized", m.entropy_normalized, 0.75, tol);
    // mean .5, deviations ±.5, ±1.5: m2 = 1.25, m4 = 10.25 / 4 = 2.5625, 2.5625 / 1.5625 − 3.
    assert_close("kurtosis", m.kurtosis, 1.64 - 3.0, tol);
    // Ascending [0, 1, 1, 2]: 2 · (0 + 2 + 3 + 8) / (4 · 4) − 5 / 4 = 0.375.
    assert_close("gini", m.gini, 0.375, tol);
    // ⌈p · 4⌉ = 1 edge for 1%, 5% and 10%: 2 / 4.
    for (name, v) in [("top1", m.top1), ("top5", m.top5), ("top10", m.top10)] {
        assert_close(name, v, 0.5, tol);
    }
    // Cumulative [2, 3, 4, 4]: 2 ≥ 2 → 1 edge; 3.6 first reached at 4 → 3 edges.
    assert_eq!((m.edges50, m.edges90), (1.0, 3.0));

    // Kurtosis of |s| = [1, 1, 2, 0]: mean 1, deviations 0, 0, 1, −1: m2 = m4 = .5 → 2 − 3.
    let abs = MetricOptions {
        kurtosis_of_abs: true,
        entropy_bins: None,
    };
    assert_close(
        "kurtosis of |s|",
        metrics(&s, 0.5, &abs).kurtosis,
        -1.0,
        tol,
    );

    // 3 bins over [−1, 2], edges −1, 0, 1, 2 (last bin closed): counts [1, 1, 2]:
    // H = 1.5 ln 2, normalised by ln 3. 2 bins, edges −1, .5, 2: counts [2, 2]: ln 2, 1.
    let hist = |bins| {
        metrics(
            &s,
            0.5,
            &MetricOptions {
                kurtosis_of_abs: false,
                entropy_bins: Some(bins),
            },
        )
    };
    assert_close("hist3 entropy", hist(3).entropy, 1.5 * ln2, tol);
    assert_close(
        "hist3 norm",
        hist(3).entropy_normalized,
        1.5 * ln2 / 3f64.ln(),
        tol,
    );
    assert_close("hist2 entropy", hist(2).entropy, ln2, tol);
    assert_close("hist2 norm", hist(2).entropy_normalized, 1.0, tol);
    // The histogram option changes only the entropy.
    assert_eq!(hist(3).gini, m.gini);
    assert_eq!(hist(3).kurtosis, m.kurtosis);
}

#[test]
fn metrics_by_hand_ramp_and_spike() {
    let tol = 1e-12;
    // s_k = (−1)^k · k, k = 1..100: Σ|s| = 5050.
    let ramp: Vec<f32> = (1..=100)
        .map(|k| if k % 2 == 0 { k as f32 } else { -(k as f32) })
        .collect();
    let m = metrics(&ramp, 2.0, &MetricOptions::default());
    assert_close("ramp intensity", m.intensity, 50.5, tol);
    assert_close("ramp relative_intensity", m.relative_intensity, 25.25, tol);
    // Gini of 1..n is (n − 1) / (3n) = 0.33.
    assert_close("ramp gini", m.gini, 0.33, tol);
    // Top 1, 5, 10 edges: 100; 100 + … + 96 = 490; 91 + … + 100 = 955.
    assert_close("ramp top1", m.top1, 100.0 / 5050.0, tol);
    assert_close("ramp top5", m.top5, 490.0 / 5050.0, tol);
    assert_close("ramp top10", m.top10, 955.0 / 5050.0, tol);
    // Top-k sum = 100k − k(k−1)/2: k = 29 → 2494 < 2525 ≤ 2565 (k = 30);
    // k = 68 → 4522 < 4545 ≤ 4554 (k = 69).
    assert_eq!((m.edges50, m.edges90), (30.0, 69.0));

    // One edge of 100 among 100: all mass on one edge.
    let mut spike = vec![0.0_f32; 100];
    spike[17] = -100.0;
    let m = metrics(&spike, 1.0, &MetricOptions::default());
    assert_close("spike intensity", m.intensity, 1.0, tol);
    assert_close("spike entropy", m.entropy, 0.0, tol);
    // Gini of one non-zero among n = (n − 1) / n.
    assert_close("spike gini", m.gini, 0.99, tol);
    assert_close("spike top1", m.top1, 1.0, tol);
    assert_eq!((m.edges50, m.edges90), (1.0, 1.0));
    // mean −1: deviations −99 (once), 1 (99 times): m2 = 99, m4 = (99⁴ + 99) / 100 = 960597,
    // 960597 / 99² − 3 = 95 + 1/99.
    assert_close("spike kurtosis", m.kurtosis, 95.0 + 1.0 / 99.0, 1e-10);
}

#[test]
fn metrics_edge_cases_are_defined() {
    let zero = Metrics {
        intensity: 0.0,
        relative_intensity: 0.0,
        entropy: 0.0,
        entropy_normalized: 0.0,
        kurtosis: 0.0,
        gini: 0.0,
        top1: 0.0,
        top5: 0.0,
        top10: 0.0,
        edges50: 0.0,
        edges90: 0.0,
    };
    for opts in [
        MetricOptions::default(),
        MetricOptions {
            kurtosis_of_abs: true,
            entropy_bins: Some(0),
        },
        MetricOptions {
            kurtosis_of_abs: false,
            entropy_bins: Some(7),
        },
    ] {
        assert_eq!(metrics(&[], 1.0, &opts), zero, "empty, {opts:?}");
        assert_eq!(metrics(&[0.0; 9], 1.0, &opts), zero, "all zero, {opts:?}");
        assert_eq!(
            metrics(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], 1.0, &opts),
            zero,
            "all non-finite, {opts:?}"
        );
        // Non-finite values are skipped.
        assert_eq!(
            metrics(&[1.0, f32::NAN, -1.0, 2.0, f32::INFINITY, 0.0], 1.0, &opts),
            metrics(&[1.0, -1.0, 2.0, 0.0], 1.0, &opts),
            "NaN/inf skipped, {opts:?}"
        );
        for v in metrics(&[3.0, 3.0, 3.0], 1.0, &opts).values() {
            assert!(v.is_finite(), "constant vector gives {v}");
        }
        // A loss of 0 (a saturated sample), a negative or a non-finite loss: relative intensity
        // 0, every other metric as with any loss.
        let with_loss = |loss| metrics(&[1.0, -1.0, 2.0, 0.0], loss, &opts);
        for loss in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let m = with_loss(loss);
            assert_eq!(m.relative_intensity, 0.0, "loss {loss}, {opts:?}");
            assert_eq!(
                Metrics {
                    relative_intensity: 0.0,
                    ..with_loss(1.0)
                },
                m,
                "loss {loss}, {opts:?}"
            );
        }
        // A tiny positive loss divides like any other, unless the quotient overflows.
        assert_close(
            "relative_intensity at 1e-300, / 1e300",
            with_loss(1e-300).relative_intensity / 1e300,
            1.0,
            1e-12,
        );
        assert_eq!(with_loss(f64::from_bits(1)).relative_intensity, 0.0);
    }
    // A constant vector: zero variance → kurtosis 0 (SciPy: NaN), Gini 0, entropy ln 3 (mass)
    // and 1 normalised; ⌈3%⌉ = 1 edge holds 1/3; 4.5 reached at 2 edges, 8.1 at 3.
    let m = metrics(&[3.0, 3.0, 3.0], 1.0, &MetricOptions::default());
    assert_eq!(m.kurtosis, 0.0);
    assert_close("constant gini", m.gini, 0.0, 1e-15);
    assert_close("constant entropy", m.entropy, 3f64.ln(), 1e-12);
    assert_close(
        "constant entropy_normalized",
        m.entropy_normalized,
        1.0,
        1e-12,
    );
    assert_close("constant top1", m.top1, 1.0 / 3.0, 1e-15);
    assert_eq!((m.edges50, m.edges90), (2.0, 3.0));
    // One value: nothing to spread or normalise.
    let m = metrics(&[-5.0], 4.0, &MetricOptions::default());
    assert_eq!(
        m.values(),
        [5.0, 1.25, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    );
}

#[test]
fn metric_names_values_and_options_serde() {
    let m = metrics(&[1.0, -1.0, 2.0, 0.0], 0.5, &MetricOptions::default());
    let as_json = serde_json::to_value(m).unwrap();
    for (metric, v) in Metric::ALL.into_iter().zip(m.values()) {
        let name = metric.name();
        assert_eq!(name.parse::<Metric>(), Ok(metric));
        assert_eq!(m.get(metric), v, "get({name})");
        assert_eq!(as_json[name].as_f64(), Some(v), "serialised field {name}");
    }
    assert!("nope".parse::<Metric>().is_err());
    assert_eq!(as_json.as_object().unwrap().len(), Metric::ALL.len());
    assert_eq!(
        Metric::ALL[..2],
        [Metric::Intensity, Metric::RelativeIntensity]
    );

    // Metrics written before relative intensity existed read it as 0.
    let mut old = as_json.clone();
    old.as_object_mut().unwrap().remove("relative_intensity");
    let back: Metrics = serde_json::from_value(old).unwrap();
    assert_eq!(
        back,
        Metrics {
            relative_intensity: 0.0,
            ..m
        }
    );

    let opts = MetricOptions {
        kurtosis_of_abs: true,
        entropy_bins: Some(12),
    };
    let back: MetricOptions = serde_json::from_str(&serde_json::to_string(&opts).unwrap()).unwrap();
    assert_eq!(back, opts);
    let default = MetricOptions::default();
    assert!(!default.kurtosis_of_abs && default.entropy_bins.is_none());
}

// ---------------------------------------------------------------------------------------------
// Against SciPy

/// The metric vectors sent to SciPy, as f32 (sent as their exact f64 values).
fn metric_cases() -> Vec<(&'static str, Vec<f32>, usize)> {
    let mut rng = StdRng::seed_from_u64(1);
    let gaussish: Vec<f32> = (0..1000)
        .map(|_| ((0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0) * 1e-3)
        .collect();
    // Heavy tails: tan of a uniform angle (Cauchy), clipped.
    let heavy: Vec<f32> = (0..3000)
        .map(|_| {
            (std::f32::consts::PI * (rng.random::<f32>() - 0.5))
                .tan()
                .clamp(-1e3, 1e3)
        })
        .collect();
    let skewed: Vec<f32> = (0..257).map(|_| rng.random::<f32>().powi(6)).collect();
    let ramp: Vec<f32> = (1..=100)
        .map(|k| if k % 2 == 0 { k as f32 } else { -(k as f32) })
        .collect();
    let mut spike = vec![0.0_f32; 100];
    spike[17] = -100.0;
    vec![
        ("hand", vec![1.0, -1.0, 2.0, 0.0], 3),
        ("ramp", ramp, 10),
        ("spike", spike, 4),
        ("gaussish", gaussish, 20),
        ("heavy", heavy, 50),
        ("skewed", skewed, 16),
    ]
}

#[test]
fn metrics_match_scipy() {
    let cases = metric_cases();
    let request = json!({
        "metrics": cases.iter().map(|(name, v, bins)| json!({
            "name": name,
            "values": v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            "bins": bins,
        })).collect::<Vec<_>>(),
    });
    let r = reference(&request);
    let mut worst = 0.0_f64;
    for (name, v, bins) in &cases {
        let want = &r["metrics"][name];
        let m = metrics(v, 1.0, &MetricOptions::default());
        let m_abs = metrics(
            v,
            1.0,
            &MetricOptions {
                kurtosis_of_abs: true,
                entropy_bins: Some(*bins),
            },
        );
        let pairs = [
            ("intensity", m.intensity),
            ("entropy", m.entropy),
            ("entropy_normalized", m.entropy_normalized),
            ("kurtosis", m.kurtosis),
            ("kurtosis_abs", m_abs.kurtosis),
            ("gini", m.gini),
            ("top1", m.top1),
            ("top5", m.top5),
            ("top10", m.top10),
            ("hist_entropy", m_abs.entropy),
            ("hist_entropy_normalized", m_abs.entropy_normalized),
        ];
        for (key, got) in pairs {
            let e = err_scaled(got, num(&want[key]));
            eprintln!(
                "{name}.{key}: ours {got:.17e}, scipy {}, err {e:.1e}",
                want[key]
            );
            worst = worst.max(e);
            // 1e-9 relative to max(1, |ref|).
            assert!(e <= 1e-9, "{name}.{key}: ours {got}, scipy {}", want[key]);
        }
        // Edge counts are integers: equal.
        assert_eq!(m.edges50, num(&want["edges50"]), "{name}.edges50");
        assert_eq!(m.edges90, num(&want["edges90"]), "{name}.edges90");
    }
    eprintln!("metrics vs SciPy/NumPy: max scaled error {worst:.2e}");
}

/// Pairs (x, y) for `wilcoxon(x, y)` and the method SciPy 1.17's `auto` picks for them.
fn wilcoxon_cases() -> Vec<(&'static str, Vec<f64>, Vec<f64>, PMethod)> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = Vec::new();
    let mut continuous = |name, n, shift: f64, method| {
        let x = uniform(&mut rng, n);
        let y: Vec<f64> = uniform(&mut rng, n).iter().map(|v| v + shift).collect();
        cases.push((name, x, y, method));
    };
    continuous("n5_exact", 5, 0.0, PMethod::Exact);
    continuous("n12_exact", 12, 0.2, PMethod::Exact);
    continuous("n50_exact", 50, 0.1, PMethod::Exact);
    continuous("n51_normal", 51, 0.1, PMethod::Normal);
    continuous("n80_normal", 80, -0.1, PMethod::Normal);
    continuous("n300_normal", 300, 0.02, PMethod::Normal);

    let mut rng = StdRng::seed_from_u64(8);
    // Integer data: ties among |d|, and zeros.
    let x = integers(&mut rng, 30, 0, 6);
    let y = integers(&mut rng, 30, 0, 6);
    cases.push(("n30_ties", x, y, PMethod::Normal));
    let x = integers(&mut rng, 120, 0, 9);
    let y = integers(&mut rng, 120, 1, 9);
    cases.push(("n120_ties_zeros", x, y, PMethod::Normal));
    // Ties without zeros: d ∈ {−3..3} \ {0}.
    for (name, n, method) in [
        ("n8_ties", 8, PMethod::Permutation),
        ("n13_ties", 13, PMethod::Permutation),
        ("n14_ties", 14, PMethod::Normal),
        ("n45_ties", 45, PMethod::Normal),
    ] {
        let d: Vec<f64> = (0..n)
            .map(|_| {
                let v = f64::from(rng.random_range(1..=3));
                if rng.random::<bool>() {
                    v
                } else {
                    -v
                }
            })
            .collect();
        let y = uniform(&mut rng, n)
            .iter()
            .map(|v| v.round() + 10.0)
            .collect::<Vec<_>>();
        let x = d.iter().zip(&y).map(|(d, y)| d + y).collect();
        cases.push((name, x, y, method));
    }
    // Zero differences without ties: the permutation test (n ≤ 13), else normal.
    for (name, n, zeros, method) in [
        ("n10_zeros", 10, 3, PMethod::Permutation),
        ("n20_zeros", 20, 4, PMethod::Normal),
        ("n60_zeros", 60, 5, PMethod::Normal),
    ] {
        let x = uniform(&mut rng, n);
        let mut y = uniform(&mut rng, n);
        y[..zeros].copy_from_slice(&x[..zeros]);
        cases.push((name, x, y, method));
    }
    // Extremes: every difference positive (exact p = 2 / 2⁵⁰; a tiny normal p).
    let up = |n: usize| -> (Vec<f64>, Vec<f64>) {
        ((1..=n).map(|k| k as f64 * 0.37).collect(), vec![0.0; n])
    };
    let (x, y) = up(50);
    cases.push(("n50_all_up", x, y, PMethod::Exact));
    let (x, y) = up(80);
    cases.push(("n80_all_up", x, y, PMethod::Normal));
    // R⁺ = R⁻ = 5: two-sided p = 2 · (≥ 1/2), capped at 1.
    cases.push((
        "capped",
        vec![1.0, -2.0, -3.0, 4.0],
        vec![0.0; 4],
        PMethod::Exact,
    ));
    cases.push(("n1", vec![2.5], vec![1.0], PMethod::Exact));
    // tuned vs base of `paired_by_hand`.
    cases.push((
        "hand_pair",
        vec![2.0, 2.0, 5.0, 3.0],
        vec![1.0, 2.0, 3.0, 4.0],
        PMethod::Permutation,
    ));
    // All differences zero: p = 1 (permutation, n ≤ 13) or NaN (normal, n > 13), as SciPy.
    cases.push(("zeros_n5", vec![1.5; 5], vec![1.5; 5], PMethod::Permutation));
    cases.push(("zeros_n20", vec![1.5; 20], vec![1.5; 20], PMethod::Normal));
    cases
}

#[test]
fn wilcoxon_matches_scipy() {
    let cases = wilcoxon_cases();
    let request = json!({
        "wilcoxon": cases.iter().map(|(name, x, y, _)| json!({"name": name, "x": x, "y": y}))
            .collect::<Vec<_>>(),
    });
    let r = reference(&request);
    let mut worst = 0.0_f64;
    for (name, x, y, method) in &cases {
        let want = &r["wilcoxon"][name];
        let got = wilcoxon(x, y).unwrap();
        let (stat, p) = (num(&want["statistic"]), num(&want["pvalue"]));
        let err = if p.is_nan() && got.p_value.is_nan() {
            0.0
        } else {
            (got.p_value - p).abs() / p.abs()
        };
        eprintln!(
            "{name}: statistic {} vs {stat}, p {:.17e} vs {p:.17e} ({}), rel err {err:.1e}",
            got.statistic,
            got.p_value,
            got.method.as_str()
        );
        assert_eq!(got.method, *method, "{name}: method");
        assert_eq!(got.exact, *method != PMethod::Normal, "{name}: exact flag");
        // Statistics are sums of (half-)integer ranks: equal.
        assert_eq!(got.statistic, stat, "{name}: statistic");
        // p-values: 1e-9 relative (NaN only where SciPy gives NaN).
        assert!(err <= 1e-9, "{name}: p {} vs SciPy {p}", got.p_value);
        worst = worst.max(err);
    }
    eprintln!("wilcoxon vs SciPy: max relative p-value error {worst:.2e}");
}

// ---------------------------------------------------------------------------------------------
// Paired comparison

fn opts(resamples: usize, seed: u64) -> CompareOptions {
    CompareOptions {
        bootstrap_resamples: resamples,
        confidence: 0.95,
        seed,
        ..CompareOptions::default()
    }
}

#[test]
fn paired_by_hand() {
    // d = tuned − base = [1, 0, 2, −1].
    let (base, tuned) = ([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 5.0, 3.0]);
    let s = paired(Metric::Intensity, &base, &tuned, &opts(2000, 42)).unwrap();
    assert_eq!(s.metric.name(), "intensity");
    assert_eq!(s.n, 4);
    assert_eq!((s.base_mean, s.tuned_mean, s.mean_diff), (2.5, 3.0, 0.5));
    // Medians: (2 + 3) / 2, sorted tuned [2, 2, 3, 5] → 2.5, sorted d [−1, 0, 1, 2] → 0.5.
    assert_eq!(
        (s.base_median, s.tuned_median, s.median_diff),
        (2.5, 2.5, 0.5)
    );
    // 0.5 / |2.5|; tuned > base at samples 0 and 2.
    assert_close("relative_change", s.relative_change, 0.2, 1e-15);
    assert_eq!(s.share_tuned_greater, 0.5);
    // Non-zero d = [1, 2, −1]: |d| ranks 1.5, 3, 1.5 → R⁺ = 4.5, R⁻ = 1.5. Sign flips of
    // ranks {1.5, 1.5, 3} give R⁺ ∈ {0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6}: ≥ 4.5 in 3 of 8 → p = 0.75.
    assert_eq!(s.wilcoxon_statistic, 1.5);
    assert_eq!(s.p_value, 0.75);
    assert_eq!(s.p_method, PMethod::Permutation);
    assert!(s.ci_low <= s.mean_diff && s.mean_diff <= s.ci_high);
    // A resample mean lies within [min d, max d].
    assert!(s.ci_low >= -1.0 && s.ci_high <= 2.0, "{s:?}");
}

#[test]
fn bootstrap_is_seeded_and_sensible() {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 100;
    let base = uniform(&mut rng, n);
    // d = 1 + (sum of 3 uniforms − 1.5): mean 1, sd 0.5.
    let tuned: Vec<f64> = base
        .iter()
        .map(|b| b + 1.0 + uniform(&mut rng, 3).iter().sum::<f64>() - 1.5)
        .collect();
    let a = paired(Metric::Entropy, &base, &tuned, &opts(10_000, 42)).unwrap();
    let b = paired(Metric::Entropy, &base, &tuned, &opts(10_000, 42)).unwrap();
    let c = paired(Metric::Entropy, &base, &tuned, &opts(10_000, 43)).unwrap();
    assert_eq!((a.ci_low, a.ci_high), (b.ci_low, b.ci_high), "same seed");
    assert_ne!((a.ci_low, a.ci_high), (c.ci_low, c.ci_high), "other seed");
    assert!(a.ci_low < a.mean_diff && a.mean_diff < a.ci_high, "{a:?}");
    // The percentile interval is close to the normal-theory one, mean ± 1.96 · sd / √n
    // (width within 10%; the two seeds agree to 5%).
    let diffs: Vec<f64> = tuned.iter().zip(&base).map(|(t, b)| t - b).collect();
    let sd = (diffs.iter().map(|d| (d - a.mean_diff).powi(2)).sum::<f64>() / n as f64).sqrt();
    let normal_width = 2.0 * 1.959_964 * sd / (n as f64).sqrt();
    let width = a.ci_high - a.ci_low;
    assert!(
        (width / normal_width - 1.0).abs() < 0.10,
        "width {width} vs {normal_width}"
    );
    assert!(((c.ci_high - c.ci_low) / width - 1.0).abs() < 0.05);
    // A lower confidence gives a narrower interval inside the wider one.
    let narrow = paired(
        Metric::Entropy,
        &base,
        &tuned,
        &CompareOptions {
            confidence: 0.5,
            ..opts(10_000, 42)
        },
    )
    .unwrap();
    assert!(
        narrow.ci_low > a.ci_low && narrow.ci_high < a.ci_high,
        "{narrow:?}"
    );

    // Constant differences: every resample mean is that difference.
    // (b + 0.5) − b is exactly 0.5 for these b (for b = 0.3 it would not be).
    let base = [1.0, 2.5, -2.0, 5.25, 0.0];
    let tuned: Vec<f64> = base.iter().map(|b| b + 0.5).collect();
    let s = paired(Metric::Gini, &base, &tuned, &opts(500, 1)).unwrap();
    assert_eq!((s.mean_diff, s.ci_low, s.ci_high), (0.5, 0.5, 0.5));
    assert_eq!(s.share_tuned_greater, 1.0);
    // One sample: the interval is the single difference.
    let s = paired(Metric::Gini, &[1.0], &[0.25], &opts(100, 1)).unwrap();
    assert_eq!((s.ci_low, s.ci_high, s.p_value), (-0.75, -0.75, 1.0));
}

#[test]
fn nan_fields_serialise_as_null() {
    // base mean 0 → relative change NaN; all 20 differences 0 → p-value NaN (normal method).
    let base = [0.0; 20];
    let s = paired(Metric::Kurtosis, &base, &base, &opts(10, 0)).unwrap();
    assert!(s.relative_change.is_nan() && s.p_value.is_nan(), "{s:?}");
    assert_eq!((s.wilcoxon_statistic, s.p_method.as_str()), (0.0, "normal"));
    let v = serde_json::to_value(&s).unwrap();
    assert!(
        v["relative_change"].is_null() && v["p_value"].is_null(),
        "{v}"
    );
    let back: PairedStat = serde_json::from_value(v).unwrap();
    assert!(back.relative_change.is_nan() && back.p_value.is_nan());
    assert_eq!((back.metric.name(), back.ci_low), ("kurtosis", 0.0));
    // Finite values round-trip (to 1e-15 relative: serde_json's default float parser may be
    // one ulp off).
    let s = paired(
        Metric::Top5,
        &[1.0, 2.0, 4.0],
        &[2.0, 2.5, 3.0],
        &opts(50, 0),
    )
    .unwrap();
    let back: PairedStat = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    let (a, b) = (
        serde_json::to_value(&s).unwrap(),
        serde_json::to_value(&back).unwrap(),
    );
    for (key, va) in a.as_object().unwrap() {
        let vb = &b[key];
        match (va.as_f64(), vb.as_f64()) {
            (Some(x), Some(y)) => assert_close(key, y, x, 1e-15 * x.abs()),
            _ => assert_eq!(va, vb, "{key}"),
        }
    }
}

#[test]
fn errors_name_the_metric_and_never_panic() {
    let o = CompareOptions::default();
    assert_eq!(o, opts(10_000, 42));

    let e = paired(Metric::Entropy, &[1.0, 2.0], &[1.0], &o).unwrap_err();
    assert_eq!(
        e,
        CompareError::LengthMismatch {
            metric: "entropy".into(),
            base: 2,
            tuned: 1
        }
    );
    assert!(e.to_string().contains("\"entropy\""), "{e}");

    let e = paired(Metric::Gini, &[1.0, 2.0], &[1.0, f64::NAN], &o).unwrap_err();
    assert!(
        matches!(&e, CompareError::NonFinite { metric, side: circuitdiff::side::Side::Tuned, index: 1, .. } if metric == "gini"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("\"gini\"") && e.to_string().contains("NaN"),
        "{e}"
    );
    let e = paired(Metric::Top1, &[f64::INFINITY], &[1.0], &o).unwrap_err();
    assert!(
        matches!(
            e,
            CompareError::NonFinite {
                side: circuitdiff::side::Side::Base,
                index: 0,
                ..
            }
        ),
        "{e:?}"
    );

    let e = paired(Metric::Kurtosis, &[], &[], &o).unwrap_err();
    assert_eq!(
        e,
        CompareError::Empty {
            metric: "kurtosis".into()
        }
    );
    assert!(e.to_string().contains("\"kurtosis\""), "{e}");

    for bad in [
        CompareOptions {
            bootstrap_resamples: 0,
            ..o.clone()
        },
        CompareOptions {
            confidence: 1.0,
            ..o.clone()
        },
        CompareOptions {
            confidence: f64::NAN,
            ..o.clone()
        },
    ] {
        let e = paired(Metric::Top5, &[1.0], &[2.0], &bad).unwrap_err();
        assert!(
            matches!(e, CompareError::InvalidOptions(_)),
            "{bad:?}: {e:?}"
        );
    }

    assert!(matches!(
        wilcoxon(&[1.0], &[1.0, 2.0]),
        Err(CompareError::LengthMismatch { .. })
    ));
    assert!(matches!(
        wilcoxon(&[], &[]),
        Err(CompareError::Empty { .. })
    ));
    assert!(matches!(
        wilcoxon(&[f64::NAN], &[1.0]),
        Err(CompareError::NonFinite { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The change in accuracy

/// McNemar's exact test of a change in accuracy equals SciPy's two-sided binomial test of the
/// discordant counts (to 1e-12 relative), from no discordant question to hundreds, balanced and
/// lopsided; and by hand: 12 against 2 gives 2·(1 + 14 + 91)/2¹⁴.
#[test]
fn mcnemar_matches_scipy() {
    let cases: Vec<(usize, usize)> = vec![
        (0, 0),
        (0, 1),
        (1, 0),
        (3, 3),
        (2, 12),
        (12, 2),
        (0, 9),
        (5, 6),
        (40, 61),
        (300, 250),
    ];
    let request = json!({
        "mcnemar": cases.iter().map(|(b, c)| json!({"name": format!("{b}-{c}"), "only_base": b, "only_tuned": c}))
            .collect::<Vec<_>>(),
    });
    let r = reference(&request);
    for (b, c) in &cases {
        let want = num(&r["mcnemar"][format!("{b}-{c}")]);
        let got = mcnemar_exact(*b, *c);
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "{b} vs {c}: {got} vs SciPy {want}"
        );
    }
    let by_hand = 2.0 * (1.0 + 14.0 + 91.0) / 16384.0;
    assert!((mcnemar_exact(2, 12) - by_hand).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------------------
// Correction for multiple comparisons

/// Adjusted p-values against `scipy.stats.false_discovery_control` (Benjamini–Hochberg) and a
/// NumPy Holm–Bonferroni (running maximum of (m − j)·p(j)), to 1e-12 relative: families of
/// seeded uniform p-values, ties, p-values of 1, a family of one, and the 11 p-values of a
/// comparison of the demo's size.
#[test]
fn adjusted_p_values_match_scipy() {
    use circuitdiff::attribution::correction::Correction;
    let mut rng = StdRng::seed_from_u64(11);
    let mut families: Vec<(String, Vec<f64>)> = vec![
        ("ties".into(), vec![0.01, 0.04, 0.01, 0.2, 0.04, 0.01]),
        ("ones".into(), vec![1.0, 0.5, 1.0]),
        ("one".into(), vec![0.03]),
    ];
    for (i, m) in [5, 11, 33, 200].into_iter().enumerate() {
        let p: Vec<f64> = (0..m)
            .map(|_| rng.random::<f64>().powi(3).max(1e-12))
            .collect();
        families.push((format!("uniform{i}"), p));
    }
    let request = json!({
        "adjust": families.iter().map(|(name, p)| json!({"name": name, "p": p}))
            .collect::<Vec<_>>(),
    });
    let r = reference(&request);
    for (name, p) in &families {
        for (correction, key) in [
            (Correction::BenjaminiHochberg, "bh"),
            (Correction::Holm, "holm"),
        ] {
            let got = correction.adjust(p);
            let want: Vec<f64> = r["adjust"][name][key]
                .as_array()
                .unwrap()
                .iter()
                .map(num)
                .collect();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
                    "{name} {key}: {got:?} vs {want:?}"
                );
            }
        }
    }
}
