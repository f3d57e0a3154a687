//! Exact edge effects and faithfulness (method.md §7) against an independent PyTorch
//! computation (masks applied through transformers' own modules), the identities F(∅) = 0 and
//! F(all) = 1, and block-level effects as the removal of all their head edges together.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use candle_core::{DType, Tensor};
use circuitdiff::attribution::exact::{Ablation, Agreement};
use circuitdiff::attribution::{score_sample, self_entropy_loss, Graph, Level};
use circuitdiff::model::{LoadOptions, Model};
use circuitdiff::node::{Destination, Node, Port};
use common::{reference, Tiny};

const PROMPT: [u32; 6] = [1, 5, 17, 22, 9, 40];
const ANSWER: [u32; 5] = [33, 12, 8, 27, 19];

fn f64_model(tiny: Tiny, dir: &std::path::Path) -> Model {
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    Model::load(tiny.write(dir).to_str().unwrap(), &opts).unwrap()
}

/// A dense keep matrix with `value` everywhere and `flip` set to `1 − value`.
fn keep_matrix(g: &Graph, value: f64, flip: &[(usize, usize)]) -> Vec<Vec<f64>> {
    let (ns, nd) = g.dense_shape();
    let mut m = vec![vec![value; nd]; ns];
    for &(s, d) in flip {
        m[s][d] = 1.0 - value;
    }
    m
}

/// One tiny checkpoint of every family.
const FAMILIES: [Tiny; 9] = [
    Tiny::Llama,
    Tiny::Mistral,
    Tiny::Qwen2,
    Tiny::Qwen3,
    Tiny::Olmo2,
    Tiny::Olmo3,
    Tiny::Phi3,
    Tiny::Gemma2,
    Tiny::Gemma3,
];

/// Tolerance: |ours − PyTorch| ≤ 1e-4 of the largest |ΔL|, and 1e-4 on F (f64 models on both
/// sides; the reference's attention softmax runs in f32, as transformers' eager attention does).
#[test]
fn exact_effects_and_faithfulness_equal_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in FAMILIES {
        let model = f64_model(tiny, dir.path());
        let g = Graph::new(&model.config, Level::Block);
        let k = 4;
        let s = score_sample(&model, &g, "0", &PROMPT, &ANSWER, k).unwrap();
        let ab = Ablation::new(&model, &g, "0", (&PROMPT, &ANSWER), k, 3).unwrap();
        let edges = g.edges();
        let exact = ab.edge_effects(&edges).unwrap();
        let curve = ab.faithfulness(&s.dense).unwrap();
        let ranked = circuitdiff::attribution::exact::by_magnitude(&g, &s.dense);

        // The reference: all masks 1 (clean), each edge removed, ∅, each top-k circuit.
        let mut masks = vec![keep_matrix(&g, 1.0, &[])];
        masks.extend(edges.iter().map(|&e| keep_matrix(&g, 1.0, &[e])));
        masks.push(keep_matrix(&g, 0.0, &[]));
        masks.extend(
            curve
                .edges
                .iter()
                .map(|&n| keep_matrix(&g, 0.0, &ranked[..n])),
        );
        let mut ids = PROMPT.to_vec();
        ids.extend_from_slice(&ANSWER[..k - 1]);
        let r = reference(
            "hf_model.py",
            &serde_json::json!({"model": tiny.write(dir.path()), "dtype": "float64", "ids": ids,
                "loss_from": PROMPT.len() - 1, "targets": &ANSWER[..k], "masks": masks}),
        );
        let want: Vec<f64> = r["masked_loss"].to_vec1().unwrap();
        let clean = want[0];
        // The reference's attention softmax runs in f32 (as transformers' eager attention).
        assert!(
            (ab.clean_loss() - clean).abs() <= 1e-5 * clean,
            "{tiny:?}: clean loss"
        );
        let want_exact: Vec<f64> = want[1..=edges.len()].iter().map(|l| l - clean).collect();
        let scale = want_exact.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = exact
            .iter()
            .zip(&want_exact)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        eprintln!(
            "{tiny:?}: max |ΔL − ΔL_ref| / max |ΔL_ref| = {:e}",
            err / scale
        );
        assert!(err <= 1e-4 * scale, "{tiny:?}: {err:e} of {scale:e}");

        let empty = want[edges.len() + 1];
        let ln_vocab = (model.config.vocab_size as f64).ln();
        assert!((curve.loss_empty - empty).abs() <= 1e-9, "{tiny:?}: L(∅)");
        assert!((empty - ln_vocab).abs() <= 1e-10, "{tiny:?}: L(∅) = ln V");
        for (i, &f) in curve.faithfulness.iter().enumerate() {
            let l = want[edges.len() + 2 + i];
            let f_ref = (empty - l) / (empty - clean);
            assert!(
                (f - f_ref).abs() <= 1e-4,
                "{tiny:?} k = {}: F {f} vs {f_ref}",
                curve.edges[i]
            );
        }
        assert_eq!(*curve.edges.last().unwrap(), g.num_edges());
        let all = *curve.faithfulness.last().unwrap();
        assert!((all - 1.0).abs() <= 1e-9, "{tiny:?}: F(all) = {all}");
        // F(∅) = 0 by definition: the empty circuit's loss is L(∅) itself.
        assert_eq!(ab.circuit_losses(&[&[]]).unwrap()[0], curve.loss_empty);

        let nd = g.dense_shape().1;
        let pairs: Vec<(f64, f64)> = edges
            .iter()
            .zip(&exact)
            .map(|(&(s_, d), &x)| (f64::from(s.dense[s_ * nd + d]), x))
            .collect();
        let a = Agreement::of(&pairs);
        eprintln!(
            "{tiny:?}: EAP vs exact over all {} edges: Pearson {:?}, Spearman {:?}, signs {:.2}; \
             F = {:?} at k = {:?}",
            a.n, a.pearson, a.spearman, a.sign_agreement, curve.faithfulness, curve.edges
        );
    }
}

/// Batches change nothing: one edge per pass and eight per pass give the same effects (f32).
#[test]
fn batch_size_does_not_change_effects() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(
        Tiny::Qwen3.write(dir.path()).to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let g = Graph::new(&model.config, Level::Block);
    let edges = g.edges();
    let one = Ablation::new(&model, &g, "0", (&PROMPT, &ANSWER), 5, 1).unwrap();
    let eight = Ablation::new(&model, &g, "0", (&PROMPT, &ANSWER), 5, 8).unwrap();
    let (a, b) = (
        one.edge_effects(&edges).unwrap(),
        eight.edge_effects(&edges).unwrap(),
    );
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * scale.max(1e-6), "{x} vs {y}");
    }
}

/// The loss of the head-level pass with `patches` (scored on the whole answer).
fn head_loss(model: &Model, ids: &[u32], patches: &[(Destination, Tensor)]) -> f64 {
    let t = model
        .trace_patched(ids, PROMPT.len() - 1..ids.len(), patches, true)
        .unwrap();
    self_entropy_loss(&t.logits, &ANSWER)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Removing a block-level attention edge is removing all of its head edges together: u → a1<q>
/// is every u → a1.h<q>, and a0 → v is every a0.h → v.
#[test]
fn a_block_edge_is_all_its_head_edges() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in [
        Tiny::Llama,
        Tiny::Qwen2,
        Tiny::Qwen3,
        Tiny::Olmo2,
        Tiny::Olmo3,
        Tiny::Gemma2,
    ] {
        let model = f64_model(tiny, dir.path());
        let g = Graph::new(&model.config, Level::Block);
        let ab = Ablation::new(&model, &g, "0", (&PROMPT, &ANSWER), 5, 4).unwrap();
        let mut ids = PROMPT.to_vec();
        ids.extend_from_slice(&ANSWER[..4]);
        let positions = PROMPT.len() - 1..ids.len();
        let clean = head_loss(&model, &ids, &[]);
        let blocks = model.trace(&ids, positions.clone()).unwrap().sources;
        let gh = Graph::new(&model.config, Level::Head);
        let head_sources = model
            .trace_patched(&ids, positions.clone(), &[], true)
            .unwrap()
            .sources;
        // Σ_h A_{a0.h}, from the head-level pass's own per-head sources.
        let a0_heads = gh
            .sources
            .iter()
            .zip(&head_sources)
            .filter(|(n, _)| {
                n.block()
                    == Node::Attention {
                        layer: 0,
                        head: None,
                    }
                    && **n != n.block()
            })
            .map(|(_, a)| a.clone())
            .reduce(|x, y| (x + y).unwrap())
            .unwrap();
        let n_heads = model.config.num_heads;
        // Source index of a block node in the block graph; its activation (t, d).
        let src = |n: Node| n.order(model.config.num_layers);
        let dst = |d: Destination| g.destinations.iter().position(|x| *x == d).unwrap();
        // m0 → a1<q>: the head-level probe of a1<q> holds one copy per query head; input →
        // a1<k>: one per key/value head; a0 → m1: a0's heads are the sources, summing to a0.
        let cases = [("m0", "a1<q>"), ("input", "a1<k>"), ("a0", "m1")].map(|(s, d)| {
            (
                s.parse::<Node>().unwrap(),
                d.parse::<Destination>().unwrap(),
            )
        });
        for (source, dest) in cases {
            let block = ab.edge_effects(&[(src(source), dst(dest))]).unwrap()[0];
            let a = match source {
                Node::Attention { .. } => &a0_heads,
                _ => &blocks[src(source)],
            };
            let delta = match dest {
                Destination::Attention { port, .. } => {
                    let copies = match port {
                        Port::Q => n_heads,
                        _ => model.config.num_kv_heads,
                    };
                    Tensor::stack(&vec![a.neg().unwrap(); copies], 0).unwrap()
                }
                _ => a.neg().unwrap(),
            };
            let heads = head_loss(&model, &ids, &[(dest, delta)]) - clean;
            eprintln!("{tiny:?} {source}->{dest}: block {block:e}, heads together {heads:e}");
            assert!(
                (block - heads).abs() <= 1e-9 * block.abs().max(1e-6),
                "{tiny:?} {source}->{dest}: {block:e} vs {heads:e}"
            );
        }
    }
}

/// Ctrl-C's token stops the exact effects before their next batch of ablated passes: a token
/// set before a call stops it at once (no batch runs), with the cancelled error, and a token
/// set between calls stops the next one; the same ablation runs in full without it.
#[test]
fn a_cancelled_ablation_stops_before_its_next_batch() {
    use circuitdiff::attribution::exact::AblationError;
    use circuitdiff::progress::CancelToken;
    let dir = tempfile::tempdir().unwrap();
    let model = f64_model(Tiny::Llama, dir.path());
    let g = Graph::new(&model.config, Level::Block);
    let s = score_sample(&model, &g, "0", &PROMPT, &ANSWER, 4).unwrap();
    let edges = g.edges();
    let cancel = CancelToken::new();
    let ab = Ablation::new(&model, &g, "0", (&PROMPT, &ANSWER), 4, 1)
        .unwrap()
        .cancelled_by(&cancel);
    assert_eq!(ab.edge_effects(&edges).unwrap().len(), edges.len());
    cancel.cancel();
    assert!(matches!(
        ab.edge_effects(&edges),
        Err(AblationError::Cancelled)
    ));
    assert!(matches!(
        ab.faithfulness(&s.dense),
        Err(AblationError::Cancelled)
    ));
}
