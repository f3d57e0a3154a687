//! Pins the study directory of one fixed command on the bundled zoo: its file list, and the
//! bytes of every file whose content does not depend on floating-point summation order (the
//! answers, the grades, the counts, the study and run manifests), with the checkout and output
//! paths replaced by placeholders. A change to how the pipeline names, lays out or writes these
//! files fails here; the scores and metrics are held by `tests/demo.rs` and `tests/study.rs`
//! to a tolerance, since their last bits depend on the matrix kernel's blocking, which follows
//! the CPU's cache sizes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use sha2::{Digest, Sha256};
use std::path::Path;

/// Every file of the study directory, sorted.
const FILES: [&str; 74] = [
    "answers.jsonl",
    "answers/base.jsonl",
    "answers/tuned.jsonl",
    "base/exact/000000.json",
    "base/exact/000001.json",
    "base/exact/000002.json",
    "base/exact/000003.json",
    "base/manifest.json",
    "base/metrics.csv",
    "base/metrics.json",
    "base/samples/000000.safetensors",
    "base/samples/000001.safetensors",
    "base/samples/000002.safetensors",
    "base/samples/000003.safetensors",
    "base/scores.npz",
    "base/scores.safetensors",
    "comparison.csv",
    "comparison.json",
    "counts.json",
    "figures/circuit_base.png",
    "figures/circuit_base.svg",
    "figures/circuit_difference.png",
    "figures/circuit_difference.svg",
    "figures/circuit_importance_change.png",
    "figures/circuit_importance_change.svg",
    "figures/circuit_tuned.png",
    "figures/circuit_tuned.svg",
    "figures/cumulative_share.png",
    "figures/cumulative_share.svg",
    "figures/exact_vs_eap.png",
    "figures/exact_vs_eap.svg",
    "figures/faithfulness.png",
    "figures/faithfulness.svg",
    "figures/heatmap.png",
    "figures/heatmap.svg",
    "figures/heatmap_importance_change.png",
    "figures/heatmap_importance_change.svg",
    "figures/length_difference.png",
    "figures/length_difference.svg",
    "figures/lengths.png",
    "figures/lengths.svg",
    "figures/losses.png",
    "figures/losses.svg",
    "figures/per_layer_entropy.png",
    "figures/per_layer_entropy.svg",
    "figures/per_layer_entropy_difference.png",
    "figures/per_layer_entropy_difference.svg",
    "figures/per_layer_intensity.png",
    "figures/per_layer_intensity.svg",
    "figures/per_layer_intensity_difference.png",
    "figures/per_layer_intensity_difference.svg",
    "figures/per_layer_kurtosis.png",
    "figures/per_layer_kurtosis.svg",
    "figures/per_layer_kurtosis_difference.png",
    "figures/per_layer_kurtosis_difference.svg",
    "figures/sorted_abs.png",
    "figures/sorted_abs.svg",
    "most_changed_edges.csv",
    "report.md",
    "study.json",
    "timings.json",
    "tuned/exact/000000.json",
    "tuned/exact/000001.json",
    "tuned/exact/000002.json",
    "tuned/exact/000003.json",
    "tuned/manifest.json",
    "tuned/metrics.csv",
    "tuned/metrics.json",
    "tuned/samples/000000.safetensors",
    "tuned/samples/000001.safetensors",
    "tuned/samples/000002.safetensors",
    "tuned/samples/000003.safetensors",
    "tuned/scores.npz",
    "tuned/scores.safetensors",
];

/// SHA-256 of the path-normalised files whose bytes are exact on every CPU.
const EXACT: [(&str, &str); 7] = [
    (
        "answers.jsonl",
        "4d71d165250ed1ad30c79ee3d1202043dcfcf805910242bdb7b420a13a3e9225",
    ),
    (
        "answers/base.jsonl",
        "cebdc8f0d15b9270f22cb54b9097d14b3a58842df855e72b061b2afacf94a246",
    ),
    (
        "answers/tuned.jsonl",
        "1b1655e1b31fa65b89f24e9922f96d89e85acecab38dbc7c83daef8840e49396",
    ),
    (
        "counts.json",
        "bef56d38b2c40d9695855112b81f9409b5edc06d3a043a576852ff18b28b24ef",
    ),
    (
        "study.json",
        "69e61def867508ce44e86bb1bfc5520c496a30d280b9dee0e263082896eab44a",
    ),
    (
        "base/manifest.json",
        "abc29ba9936aedb889b701c03a5bc77ed0f70f09dc81ed9214cedc641a962af1",
    ),
    (
        "tuned/manifest.json",
        "60fe1357773ac185fa27bf0fe7cccb336ad71ff1430cd020376162a938740ea7",
    ),
];

fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap();
            out.push(rel.to_str().unwrap().replace('\\', "/"));
        }
    }
}

#[test]
fn fixed_study_writes_the_pinned_files() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let (ok, _, stderr) = common::zoo_study("builtin:arith?n=12", &out);
    assert!(ok, "{stderr}");
    let mut found = Vec::new();
    files(&out, &out, &mut found);
    found.sort();
    assert_eq!(found, FILES);
    let mut wrong = Vec::new();
    for (file, expected) in EXACT {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let text = text
            .replace(out.to_str().unwrap(), "<out>")
            .replace(repo.to_str().unwrap(), "<repo>");
        let hash = format!("{:x}", Sha256::digest(text.as_bytes()));
        if hash != expected {
            wrong.push(format!("{file}: {hash}"));
        }
    }
    assert!(wrong.is_empty(), "changed bytes:\n{}", wrong.join("\n"));
    svg_figures_name_the_nodes(&out);
}

/// The 4-layer zoo's SVG figures are well-formed, with the node names, the colour bar and the
/// saturation value as text, and report.md links each figure as PNG and SVG.
fn svg_figures_name_the_nodes(out: &Path) {
    let figures = out.join("figures");
    let read = |name: &str| std::fs::read_to_string(figures.join(name)).unwrap();
    for name in FILES.iter().filter_map(|f| f.strip_prefix("figures/")) {
        if let Some(stem) = name.strip_suffix(".svg") {
            common::svg_texts(&read(name));
            let report = std::fs::read_to_string(out.join("report.md")).unwrap();
            for ext in ["png", "svg"] {
                let link = format!("(figures/{stem}.{ext})");
                assert!(report.contains(&link), "report.md lacks {link}");
            }
        }
    }
    for mode in ["base", "tuned", "difference", "importance_change"] {
        let texts = common::svg_texts(&read(&format!("circuit_{mode}.svg")));
        for node in ["input", "a0", "m0", "a3", "m3", "logits"] {
            assert!(
                texts.iter().any(|t| t == node),
                "circuit_{mode}.svg: {node}"
            );
        }
    }
    let texts = common::svg_texts(&read("heatmap.svg"));
    let saturation = texts
        .iter()
        .filter(|t| t.starts_with("colours saturate at ±"));
    assert_eq!(saturation.count(), 3, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| *t == "not an edge").count(), 3);
    for node in ["a0", "m3", "logits"] {
        assert!(texts.iter().any(|t| t == node), "heatmap.svg: {node}");
    }
}
