//! Edge attribution: the graph, scores against finite differences (f64) and against an
//! independent PyTorch computation, and block scores as sums of head scores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Tensor};
use circuitdiff::attribution::{score_sample, self_entropy_loss, Graph, Level};
use circuitdiff::model::{LoadOptions, Model};
use circuitdiff::node::Destination;
use common::{max_abs, reference, Tiny};

const PROMPT: [u32; 6] = [1, 5, 17, 22, 9, 40];
const ANSWER: [u32; 5] = [33, 12, 8, 27, 19];

#[test]
fn graph_names_layout_and_edge_count() {
    for layers in [1, 2, 28, 32] {
        let mut cfg = Tiny::Llama.config();
        cfg.num_layers = layers;
        let g = Graph::new(&cfg, Level::Block);
        let l = layers;
        assert_eq!(g.dense_shape(), (1 + 2 * l, 4 * l + 1));
        assert_eq!(g.num_edges(), 4 * l * l + 3 * l + 1);
        assert_eq!(g.mask().iter().filter(|&&m| m).count(), g.num_edges());
    }
    assert_eq!(
        Graph::new(
            &{
                let mut c = Tiny::Llama.config();
                c.num_layers = 28;
                c
            },
            Level::Block
        )
        .num_edges(),
        3221
    );
    let g = Graph::new(&Tiny::Llama.config(), Level::Block);
    let names: Vec<_> = g.destinations.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        ["a0<q>", "a0<k>", "a0<v>", "m0", "a1<q>", "a1<k>", "a1<v>", "m1", "logits"]
    );
    let src: Vec<_> = g.sources.iter().map(ToString::to_string).collect();
    assert_eq!(src, ["input", "a0", "m0", "a1", "m1"]);
    // Study layout: a_l → a_l<q> is not an edge, a_l → m_l is, m0 → a1<k> is.
    assert!(!g.is_edge(1, 0) && g.is_edge(1, 3) && g.is_edge(2, 5) && !g.is_edge(3, 3));
    assert_eq!(g.edge_name(2, 5), "m0->a1<k>");
    let h = Graph::new(&Tiny::Llama.config(), Level::Head);
    assert_eq!(h.sources.len(), 1 + 2 * (4 + 1));
    assert_eq!(h.destinations.len(), 2 * (4 + 2 + 2 + 1) + 1);
    assert!(h.destinations.iter().any(|d| d.to_string() == "a1.h1<k>"));
    assert!(h.sources.iter().any(|d| d.to_string() == "a1.h3"));
}

fn loss_with(model: &Model, patch: Option<(usize, Tensor)>) -> f64 {
    let p = PROMPT.len();
    let k = ANSWER.len();
    let mut ids = PROMPT.to_vec();
    ids.extend_from_slice(&ANSWER[..k - 1]);
    let dests = circuitdiff::node::block_destinations(model.config.num_layers);
    let patches: Vec<_> = patch.into_iter().map(|(d, x)| (dests[d], x)).collect();
    let t = model
        .trace_patched(&ids, p - 1..p + k - 1, &patches, false)
        .unwrap();
    self_entropy_loss(&t.logits, &ANSWER)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn scores_equal_finite_differences_of_edge_removal_f64() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    for tiny in [
        Tiny::Llama,
        Tiny::Mistral,
        Tiny::Qwen2,
        Tiny::Qwen3,
        Tiny::Olmo2,
        Tiny::Olmo3,
        Tiny::Phi3,
        Tiny::Gemma2,
        Tiny::Gemma3,
        Tiny::Qwen3Moe,
        Tiny::Olmoe,
        Tiny::Mixtral,
    ] {
        let model = Model::load(tiny.write(dir.path()).to_str().unwrap(), &opts).unwrap();
        let g = Graph::new(&model.config, Level::Block);
        let s = score_sample(&model, &g, "0", &PROMPT, &ANSWER, ANSWER.len()).unwrap();
        let (_, nd) = g.dense_shape();
        let p = PROMPT.len();
        let mut ids = PROMPT.to_vec();
        ids.extend_from_slice(&ANSWER[..ANSWER.len() - 1]);
        let sources = model.trace(&ids, p - 1..ids.len()).unwrap().sources;
        let clean = loss_with(&model, None);
        // One edge of each type: q, k, v (into layer 1), mlp (m1), logits.
        for (src, dst) in [(2, 4), (1, 5), (0, 6), (3, 7), (4, 8), (0, 8), (1, 3)] {
            let eps = 1e-6;
            let delta = (&sources[src] * -eps).unwrap();
            let removed = loss_with(&model, Some((dst, delta)));
            let score = f64::from(s.dense[src * nd + dst]);
            let fd = (removed - clean) / eps;
            let err = (fd - score).abs() / score.abs().max(1e-9);
            eprintln!(
                "{tiny:?} {}: S = {score:.6e}, ΔL/ε = {fd:.6e}",
                g.edge_name(src, dst)
            );
            assert!(
                err <= 1e-3,
                "{tiny:?} {}: relative error {err:e}",
                g.edge_name(src, dst)
            );
        }
    }
}

/// method.md §7: every destination input passes through an RMS norm, which ignores the scale
/// of its input up to ε, so the scores into one destination sum to −in_v·G_v ≈ 0.
#[test]
fn the_scores_into_each_destination_sum_to_about_zero() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [
        Tiny::Llama,
        Tiny::Mistral,
        Tiny::Qwen2,
        Tiny::Qwen3,
        Tiny::Gemma2,
        Tiny::Gemma3,
    ] {
        let sums = destination_sums(tiny, &dir);
        let worst = sums
            .iter()
            .fold(sums[0], |a, &b| if b.0 > a.0 { b } else { a });
        eprintln!(
            "{tiny:?}: max over destinations of |Σ_u S_uv| / max |S| = {:.2e} ({})",
            worst.0, worst.1
        );
        assert!(worst.0 <= SUM_BOUND, "{tiny:?} {}: {:e}", worst.1, worst.0);
    }
}

/// |Σ_u S_uv| / max |S| for every destination v of `tiny` (f64), with v.
fn destination_sums(tiny: Tiny, dir: &tempfile::TempDir) -> Vec<(f64, Destination)> {
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    let model = Model::load(tiny.write(dir.path()).to_str().unwrap(), &opts).unwrap();
    let g = Graph::new(&model.config, Level::Block);
    let s = score_sample(&model, &g, "0", &PROMPT, &ANSWER, ANSWER.len()).unwrap();
    let (ns, nd) = g.dense_shape();
    let max = s.dense.iter().fold(0f32, |m, v| m.max(v.abs()));
    (0..nd)
        .map(|d| {
            let sum: f64 = (0..ns)
                .filter(|&u| g.is_edge(u, d))
                .map(|u| f64::from(s.dense[u * nd + d]))
                .sum();
            (sum.abs() / f64::from(max), g.destinations[d])
        })
        .collect()
}

/// OLMo 2 and 3 have no norm before their blocks: §7's property holds only where something
/// still ignores the scale of the destination's input. Their q and k paths (a bias-free
/// projection, then a q/k norm over the whole projection), their v paths (linear up to the
/// norm after the block) and the logits (the final norm) sum to about zero; their MLPs
/// (silu(gate)⊙up, then the norm) do not.
#[test]
fn without_pre_norms_only_the_mlp_scores_fail_to_sum_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [Tiny::Olmo2, Tiny::Olmo3] {
        let sums = destination_sums(tiny, &dir);
        let (mut invariant, mut mlp) = (0f64, f64::INFINITY);
        for (sum, dest) in sums {
            eprintln!("{tiny:?} {dest}: |Σ_u S_uv| / max |S| = {sum:.2e}");
            match dest {
                Destination::Mlp { .. } => mlp = mlp.min(sum),
                _ => invariant = invariant.max(sum),
            }
        }
        assert!(
            invariant <= SUM_BOUND,
            "{tiny:?} q, k, v and logits: {invariant:e}"
        );
        assert!(mlp > 1e-2, "{tiny:?} MLPs: {mlp:e}");
    }
}

/// Bound on |Σ_u S_uv| / max |S| (f64 models; what remains is the norms' ε). Measured:
/// 1.1e-5 (Llama), 1.9e-5 (Mistral), 4.6e-5 (Qwen2), 4.8e-5 (Qwen3).
const SUM_BOUND: f64 = 2e-4;

#[test]
fn scores_match_an_independent_pytorch_computation() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [
        Tiny::Llama,
        Tiny::Mistral,
        Tiny::Qwen2,
        Tiny::Olmo2,
        Tiny::Olmo3,
        Tiny::Phi3,
        Tiny::Gemma2,
        Tiny::Gemma3,
        Tiny::Qwen3Moe,
        Tiny::Olmoe,
        Tiny::Mixtral,
    ] {
        let path = tiny.write(dir.path());
        let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let g = Graph::new(&model.config, Level::Block);
        let s = score_sample(&model, &g, "0", &PROMPT, &ANSWER, 4).unwrap();
        let mut ids = PROMPT.to_vec();
        ids.extend_from_slice(&ANSWER[..3]);
        let r = reference(
            "hf_model.py",
            &serde_json::json!({"model": path, "ids": ids, "loss_from": PROMPT.len() - 1, "targets": &ANSWER[..4]}),
        );
        let want = r["scores"].to_dtype(DType::F32).unwrap();
        let ours = Tensor::from_slice(&s.dense, want.shape(), &candle_core::Device::Cpu).unwrap();
        let scale = max_abs(&want);
        let err = common::max_abs_diff(&ours, &want) / scale;
        eprintln!("{tiny:?}: max |ΔS| / max |S| = {err:e}");
        assert!(err <= 1e-4, "{tiny:?}: {err:e}");
        assert!((s.loss - f64::from(r["loss"].to_scalar::<f32>().unwrap())).abs() < 1e-5);
    }
}

#[test]
fn block_scores_are_sums_of_head_scores() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [
        Tiny::Llama,
        Tiny::Qwen2,
        Tiny::Qwen3,
        Tiny::Olmo2,
        Tiny::Olmo3,
        Tiny::Phi3,
        Tiny::Gemma2,
        Tiny::Gemma3,
        Tiny::Qwen3Moe,
        Tiny::Olmoe,
        Tiny::Mixtral,
    ] {
        let model = Model::load(
            tiny.write(dir.path()).to_str().unwrap(),
            &LoadOptions::default(),
        )
        .unwrap();
        let cfg = &model.config;
        let gb = Graph::new(cfg, Level::Block);
        let gh = Graph::new(cfg, Level::Head);
        let b = score_sample(&model, &gb, "0", &PROMPT, &ANSWER, 3).unwrap();
        let h = score_sample(&model, &gh, "0", &PROMPT, &ANSWER, 3).unwrap();
        assert!((b.loss - h.loss).abs() < 1e-6);
        // Map each head-level node to its block-level node by name.
        let block_of = |name: &str| -> String {
            match name.split_once(".h") {
                Some((a, rest)) => match rest.split_once('<') {
                    Some((_, p)) => format!("{a}<{p}"),
                    None => a.to_owned(),
                },
                None => name.to_owned(),
            }
        };
        let (bs, bd) = gb.dense_shape();
        let mut summed = vec![0f64; bs * bd];
        let (_, hd) = gh.dense_shape();
        for (i, s) in gh.sources.iter().enumerate() {
            let bi = gb
                .sources
                .iter()
                .position(|x| x.to_string() == block_of(&s.to_string()))
                .unwrap();
            for (j, d) in gh.destinations.iter().enumerate() {
                let bj = gb
                    .destinations
                    .iter()
                    .position(|x| x.to_string() == block_of(&d.to_string()))
                    .unwrap();
                summed[bi * bd + bj] += f64::from(h.dense[i * hd + j]);
            }
        }
        let scale = b.dense.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (i, (&x, &y)) in b.dense.iter().zip(&summed).enumerate() {
            assert!(
                (f64::from(x) - y).abs() <= 1e-4 * scale,
                "{tiny:?} {}: block {x} vs sum of heads {y}",
                gb.edge_name(i / bd, i % bd)
            );
        }
    }
}

#[test]
fn bad_samples_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(
        Tiny::Llama.write(dir.path()).to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let g = Graph::new(&model.config, Level::Block);
    let e = score_sample(&model, &g, "q7", &PROMPT, &[], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("q7") && e.contains("empty answer"), "{e}");
    let e = score_sample(&model, &g, "q8", &PROMPT, &[999], 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("q8") && e.contains("999") && e.contains("outside the vocabulary"),
        "{e}"
    );
    // K longer than the answer is clamped and reported.
    let s = score_sample(&model, &g, "q9", &PROMPT, &ANSWER[..2], 10).unwrap();
    assert_eq!(s.k, 2);
}
