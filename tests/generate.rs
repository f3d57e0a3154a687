//! Generation with the key/value cache: equal to full recomputation (including sliding
//! windows), stop tokens and strings, seeded sampling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{GenerateOptions, Kernels, LoadOptions, Model, Sampling, StopReason};
use common::{max_abs_diff, Tiny};

fn greedy_by_recomputation(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut ids = prompt.to_vec();
    for _ in 0..n {
        let logits = model.forward_logits(&ids, Kernels::Differentiable).unwrap();
        let last = logits.get(ids.len() - 1).unwrap();
        ids.push(last.argmax(0).unwrap().to_scalar::<u32>().unwrap());
    }
    ids[prompt.len()..].to_vec()
}

#[test]
fn cached_greedy_generation_equals_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in Tiny::ALL {
        let model = Model::load(
            tiny.write(dir.path()).to_str().unwrap(),
            &LoadOptions::default(),
        )
        .unwrap();
        let prompt = [1, 7, 12, 30];
        let opts = GenerateOptions {
            max_new_tokens: 12,
            stop_ids: vec![],
            ..GenerateOptions::default()
        };
        let gen = model.generate(&prompt, &opts).unwrap();
        let n = gen.tokens.len();
        assert_eq!(
            gen.tokens,
            greedy_by_recomputation(&model, &prompt, n),
            "{tiny:?}"
        );
        // Cached step logits equal the full pass at every position (window 4 < 16 tokens for
        // Mistral).
        let mut all = prompt.to_vec();
        all.extend(&gen.tokens);
        let full = model.forward_logits(&all, Kernels::Fast).unwrap();
        let mut cache = circuitdiff::model::KvCache::default();
        model.step(&prompt, &mut cache).unwrap();
        for (i, &t) in gen.tokens.iter().enumerate() {
            let l = model.step(&[t], &mut cache).unwrap();
            let d = max_abs_diff(&l, &full.get(prompt.len() + i).unwrap());
            assert!(
                d <= 1e-5,
                "{tiny:?} position {}: |Δ| = {d:e}",
                prompt.len() + i
            );
        }
    }
}

#[test]
fn stop_ids_strings_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(
        Tiny::Qwen2.write(dir.path()).to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let prompt = [1, 9, 9, 9];
    let free = model
        .generate(
            &prompt,
            &GenerateOptions {
                max_new_tokens: 10,
                ..GenerateOptions::default()
            },
        )
        .unwrap();
    assert_eq!(free.stop, StopReason::MaxTokens);
    assert_eq!(free.tokens.len(), 10);

    // A stop id: generation ends before it, without it.
    let third = free.tokens[2];
    let first_hit = free.tokens.iter().position(|&t| t == third).unwrap();
    let g = model
        .generate(
            &prompt,
            &GenerateOptions {
                max_new_tokens: 10,
                stop_ids: vec![third],
                ..GenerateOptions::default()
            },
        )
        .unwrap();
    assert_eq!(g.stop, StopReason::EndOfSequence);
    assert_eq!(g.tokens, free.tokens[..first_hit]);

    // A stop string: the text is cut before it, the tokens keep the one that completed it.
    let piece = model.tokenizer.decode(&free.tokens[3..5]).unwrap();
    let g = model
        .generate(
            &prompt,
            &GenerateOptions {
                max_new_tokens: 10,
                stop_strings: vec![piece.clone()],
                ..GenerateOptions::default()
            },
        )
        .unwrap();
    assert_eq!(g.stop, StopReason::StopString);
    assert!(!g.text.contains(&piece));
    assert!(free.text.starts_with(&g.text));

    // Seeded sampling is reproducible and differs across seeds.
    let sample = |seed| {
        model
            .generate(
                &prompt,
                &GenerateOptions {
                    max_new_tokens: 10,
                    sampling: Sampling::Sample {
                        temperature: 1.5,
                        top_p: 0.95,
                        seed,
                    },
                    ..GenerateOptions::default()
                },
            )
            .unwrap()
            .tokens
    };
    assert_eq!(sample(1), sample(1));
    assert_ne!(sample(1), sample(2));
}

#[test]
fn batched_generation_equals_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 7, 12, 30],
        vec![1, 5],
        vec![1, 9, 9, 9, 4, 22, 31, 8],
        vec![1, 40, 3],
    ];
    for tiny in Tiny::ALL {
        let model = Model::load(
            tiny.write(dir.path()).to_str().unwrap(),
            &LoadOptions::default(),
        )
        .unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 10,
            ..GenerateOptions::default()
        };
        let batch = model.generate_batch(&prompts, &opts).unwrap();
        for (p, b) in prompts.iter().zip(&batch) {
            let single = model.generate(p, &opts).unwrap();
            assert_eq!(&single, b, "{tiny:?} prompt {p:?}");
        }
    }
}

/// The text that generation searches for stop strings, decoded as ids arrive
/// (`Tokenizer::text_stream`), is at every id the whole decode of the ids so far, but for a
/// character whose bytes are not all in yet, and at the end exactly the whole decode: on
/// SmolLM2's byte-level BPE (from its GGUF) and the tiny models' vocabularies, over text with
/// multi-byte characters, digits, newlines and runs of spaces.
#[test]
fn the_text_stream_adds_up_to_the_whole_decode() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Hello, wörld! 3 + 4 = 7 ✓ 日本語 🙂\n  next line:\tend ½";
    let mut specs = vec![common::smollm2()];
    specs.extend([Tiny::Qwen2, Tiny::Gemma3].map(|t| t.write(dir.path())));
    for spec in specs {
        let (_, tok) = circuitdiff::model::load_without_weights(
            spec.to_str().unwrap(),
            &circuitdiff::model::HubOptions::default(),
        )
        .unwrap();
        let ids = tok.encode(text, false).unwrap();
        let mut stream = tok.text_stream();
        for i in 0..ids.len() {
            stream.push(ids[i]).unwrap();
            let whole = tok.decode(&ids[..=i]).unwrap();
            let shown = stream.text();
            assert!(
                whole.starts_with(shown),
                "{spec:?} at {i}: {shown:?} vs {whole:?}"
            );
            let held = &whole[shown.len()..];
            assert!(
                held.is_empty() || held.ends_with('\u{FFFD}'),
                "{spec:?} at {i}: holds back {held:?}"
            );
        }
        assert_eq!(stream.text(), tok.decode(&ids).unwrap(), "{spec:?}");
    }
}
