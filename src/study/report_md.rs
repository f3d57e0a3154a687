//! `report.md`: the study's counts, accuracies, method choices and the paired metric table.

use super::job::{Counts, StudyConfig};
use crate::report::comparison::Comparison;
use std::fmt::Write as _;

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

/// Render the report.
pub fn render(
    cfg: &StudyConfig,
    counts: &Counts,
    cmp: &Comparison,
    figures: &[(String, String)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# circuitdiff study\n");
    let _ = writeln!(
        s,
        "- base: `{}`\n- tuned: `{}`\n- dataset: `{}` (offset {}, limit {:?})",
        cfg.base, cfg.tuned, cfg.dataset, cfg.offset, cfg.limit
    );
    let _ = writeln!(
        s,
        "- graph: {:?} level; loss on the first K = {} answer tokens (α = {}, T̄ = {:.2}, {:?}); {} bootstrap resamples, seed {}\n",
        cfg.level, counts.k, cfg.select.alpha, counts.t_bar, cfg.select.t_bar, cfg.compare.bootstrap_resamples, cfg.compare.seed
    );
    let _ = writeln!(s, "## Counts\n\n| step | questions |\n|---|---|");
    let rows = [
        ("asked", counts.asked),
        ("base answered", counts.base.answered),
        ("base correct", counts.base.correct),
        ("tuned answered", counts.tuned.answered),
        ("tuned correct", counts.tuned.correct),
        ("both correct", counts.both_correct),
        (
            "equal prompt length",
            counts.filters.after_equal_prompt_length,
        ),
        (
            "pair mean length in window",
            counts.filters.after_pair_mean_window,
        ),
        (
            "length difference within bound",
            counts.filters.after_length_difference,
        ),
        ("sampled and scored", counts.scored),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "\nAccuracy: base {:.1} %, tuned {:.1} %.\n",
        pct(counts.base.correct, counts.asked),
        pct(counts.tuned.correct, counts.asked)
    );
    let _ = writeln!(s, "## Metrics (paired over {} questions)\n", cmp.n);
    let _ = writeln!(s, "| metric | base | tuned | Δ (tuned − base) | relative | tuned > base | Wilcoxon p | 95 % CI of Δ |\n|---|---|---|---|---|---|---|---|");
    for m in &cmp.metrics {
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.5} | {:+.5} | {:+.1} % | {:.0} % | {:.3e} ({}) | [{:+.5}, {:+.5}] |",
            m.metric,
            m.base_mean,
            m.tuned_mean,
            m.mean_diff,
            100.0 * m.relative_change,
            100.0 * m.share_tuned_greater,
            m.p_value,
            m.p_method.as_str(),
            m.ci_low,
            m.ci_high
        );
    }
    let _ = writeln!(s, "\n## Figures\n");
    for (caption, file) in figures {
        let _ = writeln!(s, "![{caption}](figures/{file})\n");
    }
    s
}
