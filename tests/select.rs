//! Selection of the both-correct questions, the study's length filters, T̄, K and sampling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::attribution::select::{select, Candidate, SelectError, SelectOptions, TBar};

fn c(bp: usize, tp: usize, bl: usize, tl: usize, bc: bool, tc: bool) -> Candidate {
    Candidate {
        base_prompt_len: bp,
        tuned_prompt_len: tp,
        base_answer_len: bl,
        tuned_answer_len: tl,
        base_correct: bc,
        tuned_correct: tc,
    }
}

#[test]
fn filters_counts_t_bar_and_k() {
    let cands = vec![
        c(10, 10, 100, 120, true, true), // 0 kept
        c(10, 10, 90, 80, true, false),  // 1 tuned wrong
        c(10, 11, 100, 100, true, true), // 2 prompt lengths differ
        c(12, 12, 10, 20, true, true),   // 3 pair mean 15 < 0.5·T̄
        c(12, 12, 60, 140, true, true),  // 4 mean 100 ok, |Δ|/mean = 0.8 > 0.6
        c(9, 9, 110, 100, true, true),   // 5 kept
    ];
    // Both-correct: 0,2,3,4,5 → base mean (100+100+10+60+110)/5 = 76, tuned mean
    // (120+100+20+140+100)/5 = 96; T̄ = min = 76; K = ⌊0.05·76⌋ = 3.
    let s = select(&cands, &SelectOptions::default()).unwrap();
    assert_eq!(s.t_bar, 76.0);
    assert_eq!(s.k, 3);
    assert_eq!(s.counts.both_correct, 5);
    assert_eq!(s.counts.after_equal_prompt_length, 4);
    assert_eq!(s.counts.after_pair_mean_window, 3);
    assert_eq!(s.counts.after_length_difference, 2);
    assert_eq!(s.indices, vec![0, 5]);
    assert_eq!(s.counts.sampled, 2);

    // Pooled T̄ = (76 + 96) / 2 = 86, K = ⌊0.1·86⌋ = 8; without filters all 5 remain.
    let opts = SelectOptions {
        t_bar: TBar::Pooled,
        alpha: 0.1,
        equal_prompt_length: false,
        pair_mean_window: None,
        max_relative_length_difference: None,
        ..SelectOptions::default()
    };
    let s = select(&cands, &opts).unwrap();
    assert_eq!((s.t_bar, s.k, s.indices.len()), (86.0, 8, 5));

    // K is at least 1.
    let s = select(
        &cands,
        &SelectOptions {
            alpha: 0.001,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(s.k, 1);

    // A cut gives K itself, whatever α; T̄ is still the pairs' (86, pooled).
    let s = select(
        &cands,
        &SelectOptions {
            cut: Some(12),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!((s.t_bar, s.k), (86.0, 12));
}

#[test]
fn sampling_is_seeded_sorted_and_bounded() {
    let cands: Vec<_> = (0..50)
        .map(|i| c(5, 5, 40 + i % 5, 42, true, true))
        .collect();
    let opts = SelectOptions {
        n: 10,
        ..SelectOptions::default()
    };
    let a = select(&cands, &opts).unwrap();
    let b = select(&cands, &opts).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.indices.len(), 10);
    assert!(a.indices.windows(2).all(|w| w[0] < w[1]));
    let other = select(&cands, &SelectOptions { seed: 7, ..opts }).unwrap();
    assert_ne!(a.indices, other.indices);
}

#[test]
fn no_both_correct_names_the_accuracies() {
    let cands = vec![
        c(5, 5, 10, 10, true, false),
        c(5, 5, 10, 10, false, false),
        c(5, 5, 10, 10, false, true),
        c(5, 5, 10, 10, true, false),
    ];
    let e = select(&cands, &SelectOptions::default()).unwrap_err();
    assert!(matches!(e, SelectError::NoneBothCorrect { asked: 4, .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("base accuracy 50.0 %") && msg.contains("tuned accuracy 25.0 %"),
        "{msg}"
    );
    let filtered = vec![c(5, 6, 10, 10, true, true)];
    let e = select(&filtered, &SelectOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("removed all 1"), "{e}");
}
