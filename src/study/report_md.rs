//! `report.md`: the study's counts, accuracies, method choices and the paired metric table.

use super::dataset::{LoadReport, MAX_LINE_BYTES, MAX_QUESTION_CHARS};
use super::dir::{Counts, StudyConfig};
use super::trajectory_dir::{TrajectoryConfig, TrajectoryCounts};
use crate::attribution::metrics::Metric;
use crate::report::comparison::Comparison;
use crate::report::edge_change::{self, EdgeChanges};
use crate::report::saturation::Saturation;
use crate::report::span::ScoredSpan;
use crate::report::table::{Cell, Table};
use crate::report::trajectory::Trajectory;
use crate::report::validation::Validation;
use crate::report::verdict::{EdgeScope, MIN_CHECKED_QUESTIONS};
use std::fmt::Write as _;

/// The question limit in words.
fn limit_words(limit: Option<usize>) -> String {
    limit.map_or_else(
        || "no limit".to_owned(),
        |n| format!("at most {n} questions"),
    )
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

/// The dataset's rows of the counts table, each only when not 0 (a clean dataset adds none).
fn dataset_rows(s: &mut String, dataset: &LoadReport) {
    if dataset.skipped_too_long > 0 {
        let _ = writeln!(
            s,
            "| dataset lines skipped as too long (over {MAX_LINE_BYTES} bytes, or a question over {MAX_QUESTION_CHARS} characters) | {} |",
            dataset.skipped_too_long
        );
    }
    if dataset.renamed_duplicate_ids > 0 {
        let _ = writeln!(
            s,
            "| duplicate ids made unique (`<id>#2`, …) | {} |",
            dataset.renamed_duplicate_ids
        );
    }
}

/// The answer tokens every score covers (method.md §8), and the warning when they are few.
fn span_section(s: &mut String, span: &ScoredSpan) {
    let _ = writeln!(s, "**Scored**: {}.\n", span.describe());
    if let Some(w) = span.warning() {
        let _ = writeln!(s, "> **Warning**: {w}.\n");
    }
}

/// Both models' per-sample losses, the saturated share, and the warning when it is large.
fn saturation_section(s: &mut String, sat: &Saturation) {
    let _ = writeln!(
        s,
        "\n## Saturation\n\nEAP's gradients vanish as a model's probability of its own tokens \
         approaches 1 (method.md §7): a sample whose loss is below {:.0e} nats per answer token \
         counts as saturated. The metric `relative_intensity` above divides each sample's \
         intensity by its loss, which puts models of different confidence on one scale.\n\n\
         | model | samples | median loss (nats / token) | saturated |\n|---|---|---|---|",
        sat.threshold
    );
    for (name, l) in [("base", sat.base), ("tuned", sat.tuned)] {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} ({:.0} %) |",
            l.n,
            Cell::Value(l.median).text(),
            l.saturated,
            100.0 * l.share()
        );
    }
    if let Some(w) = sat.warning() {
        let _ = writeln!(s, "\n> **Warning**: {w}.");
    }
}

/// How the checked edges were chosen, in a sentence.
fn checked_edges(v: &Validation) -> String {
    let o = &v.options;
    match v.scope {
        EdgeScope::All { edges } => format!(
            "the graph has {edges} edges (at most {}), so both models removed every edge, one \
             at a time",
            o.all_edges_max
        ),
        EdgeScope::TopUnion { .. } => format!(
            "both models removed each of their top {} edges by |S|, the other model's top {}, \
             and {} random other edges, one at a time",
            o.top, o.top, o.random
        ),
    }
}

/// The agreement of EAP with the exact effects, per model and edge set.
fn agreement_table(s: &mut String, v: &Validation) {
    let _ = writeln!(
        s,
        "| model | edges | n | Pearson | Spearman | same sign | median abs(S − ΔL) / abs(ΔL) |\n\
         |---|---|---|---|---|---|---|"
    );
    let corr = |c: Option<f64>| c.map_or("—".to_owned(), |c| format!("{c:.3}"));
    let others = match v.scope {
        EdgeScope::All { .. } => "all the rest",
        EdgeScope::TopUnion { .. } => "random",
    };
    let pooled = match v.scope {
        EdgeScope::All { .. } => "all",
        EdgeScope::TopUnion { .. } => "top and random",
    };
    for (side, r) in v.runs.iter() {
        for (set, a) in [
            (pooled, &r.agreement),
            ("top", &r.agreement_top),
            (others, &r.agreement_random),
        ] {
            let _ = writeln!(
                s,
                "| {side} | {set} | {} | {} | {} | {:.0} % | {} |",
                a.n,
                corr(a.pearson),
                corr(a.spearman),
                100.0 * a.sign_agreement,
                a.median_relative_error
                    .map_or("—".to_owned(), |e| format!("{:.0} %", 100.0 * e))
            );
        }
    }
}

/// The verdict on each headline metric, with its reason, edge set and question count.
fn verdicts(s: &mut String, v: &Validation) {
    let level = v.significance_level;
    let _ = writeln!(
        s,
        "\n### Which conclusions the exact effects confirm\n\n{}.\n\n\
         The headline metrics over {}, from the EAP scores and from the exact effects, paired \
         over the same {} questions. A change is *confirmed* when EAP's adjusted p is below \
         {level} and the exact-effect Δ has the same sign with its interval excluding 0; \
         *contradicted* when the signs differ; *not confirmed* when EAP's change is \
         significant and the exact one is not; *not significant* when EAP's adjusted p is not \
         below {level} (nothing to confirm); *inconclusive* with fewer than {} checked \
         questions (method.md §8).\n\n\
         | metric | Δ from EAP | 95 % CI | p | adjusted p | Δ from exact effects | 95 % CI | p | adjusted p | verdict | reason |\n\
         |---|---|---|---|---|---|---|---|---|---|---|",
        v.brief().verdicts_heading(),
        v.scope,
        v.runs.base.samples.len(),
        MIN_CHECKED_QUESTIONS
    );
    for r in &v.robustness {
        let stat = |p: &crate::attribution::compare::PairedStat| {
            format!(
                "{} | {} | {} | {}",
                Cell::Change(p.mean_diff).text(),
                Cell::Interval(p.ci_low, p.ci_high).text(),
                Cell::P(p.p_value).text(),
                Cell::AdjustedP(p.p_adjusted).text()
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}** | {} |",
            r.metric,
            stat(&r.eap),
            stat(&r.exact),
            r.verdict,
            r.reason
        );
    }
}

/// The check of EAP against exact effects: agreement, the verdict on each headline
/// conclusion, and the faithfulness levels and summaries, paired.
fn validation_section(s: &mut String, v: &Validation) {
    let _ = writeln!(
        s,
        "\n## Is the circuit real? Exact effects and faithfulness\n\n\
         EAP's score S of an edge is a first-order estimate of the loss change ΔL of removing it \
         (method.md §7). For {} of the paired questions (seeded), {}; and every top-k circuit on \
         a grid of k was run alone (every other edge removed).\n",
        v.runs.base.samples.len(),
        checked_edges(v)
    );
    agreement_table(s, v);
    if !v.robustness.is_empty() {
        verdicts(s, v);
    }
    if !v.reach.is_empty() || !v.areas.is_empty() {
        let _ = writeln!(
            s,
            "\n### Faithfulness\n\nF(C) = (L(∅) − L(C)) / (L(∅) − L(all)); k50, k80, k90 are \
             the fewest edges (largest |S| first, on the grid of the curves: four points per \
             doubling and MIB's edge fractions) whose circuit reaches F ≥ 0.5, 0.8, 0.9. CPR = \
             ∫ f dx and CMD = ∫ abs(1 − f) dx (MIB, Mueller et al. 2025), f(x) = F of the top \
             max(1, ⌈x·|E|⌉) edges, by the trapezoid rule over x = 0.001, 0.002, 0.005, 0.01, \
             0.02, 0.05, 0.1, 0.2, 0.5, 1: a higher CPR and a lower CMD mean a smaller circuit \
             does the model's work. Adjusted p: {}.\n",
            v.faithfulness_family
        );
        let mut table = Table::paired(&v.reach);
        table.rows.extend(Table::paired(&v.areas).rows);
        s.push_str(&table.markdown());
    }
}

/// Render the report; `figures` are (caption, stem) pairs of `figures/<stem>.png` and `.svg`.
/// The answers brought from elsewhere: where from, how they were tokenised, and how often
/// circuitdiff's grade differs from the file's.
fn imported_section(s: &mut String, imported: &[crate::study::import_record::ImportSummary]) {
    if imported.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Answers brought from elsewhere\n\n| model | file | format | imported | token ids given | text tokenised here | prompt template | graded there | grades differ | questions missing | unmatched |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for i in imported {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i.side,
            i.file.display(),
            i.format.name(),
            i.imported,
            i.given_ids,
            i.retokenised,
            i.template.as_deref().unwrap_or("as given"),
            i.given_graded,
            i.disagreements,
            i.missing.len(),
            i.unmatched
        );
    }
    let _ = writeln!(
        s,
        "\nEvery answer is graded again by circuitdiff's grader; the file's grade is kept beside it (`given_correct` in answers.jsonl).\n"
    );
}

/// The counts from the questions asked to the pairs scored, and both accuracies with McNemar's
/// test of their change.
fn counts_section(s: &mut String, counts: &Counts) {
    let _ = writeln!(s, "## Counts\n\n| step | questions |\n|---|---|");
    dataset_rows(s, &counts.dataset);
    let rows = [
        ("asked", counts.asked),
        ("base answered", counts.models.base.answered),
        ("base correct", counts.models.base.correct),
        ("tuned answered", counts.models.tuned.answered),
        ("tuned correct", counts.models.tuned.correct),
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
        "\nAccuracy on the {} asked questions: base {:.1} %, tuned {:.1} %{}.\n",
        counts.asked,
        pct(counts.models.base.correct, counts.asked),
        pct(counts.models.tuned.correct, counts.asked),
        counts
            .discordant
            .map(|d| format!("; {}", d.words()))
            .unwrap_or_default()
    );
}

pub fn render(
    cfg: &StudyConfig,
    counts: &Counts,
    (cmp, edges): (&Comparison, &EdgeChanges),
    figures: &[(String, String)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# circuitdiff study\n");
    let _ = writeln!(
        s,
        "- base: `{}`\n- tuned: `{}`\n- dataset: `{}` (offset {}, {})",
        cfg.base,
        cfg.tuned,
        cfg.dataset,
        cfg.offset,
        limit_words(cfg.limit)
    );
    let _ = writeln!(
        s,
        "- graph: {}; loss on the first K = {} answer tokens (cut fraction α = {}, T̄ = {:.2}, {}); {} bootstrap resamples, seed {}\n",
        cfg.level.words(), counts.k, cfg.select.alpha, counts.t_bar, cfg.select.t_bar.words(), cfg.compare.bootstrap_resamples, cfg.compare.seed
    );
    counts_section(&mut s, counts);
    imported_section(&mut s, &counts.imported);
    if let Some(span) = &cmp.span {
        span_section(&mut s, span);
    }
    if cmp.identical {
        let _ = writeln!(s, "**{}**.\n", crate::report::figures::NO_DIFFERENCE);
    }
    let _ = writeln!(s, "## Metrics (paired over {} questions)\n", cmp.n);
    let mut table = Table::paired(&cmp.metrics);
    let methods = cmp
        .metrics
        .iter()
        .map(|m| Cell::Text(m.p_method.as_str().into()));
    table.push_column("p method", methods);
    s.push_str(&table.markdown());
    let _ = writeln!(
        s,
        "\np-value: two-sided Wilcoxon signed-rank; adjusted p: {}; conclusions read the \
         adjusted p at the significance level {}.",
        family_text(&cmp.family),
        cmp.options.significance_level()
    );
    if let Some(sat) = &cmp.saturation {
        saturation_section(&mut s, sat);
    }
    if let Some(v) = &cmp.validation {
        validation_section(&mut s, v);
    }
    edge_section(&mut s, edges);
    figures_section(&mut s, figures);
    s
}

/// The family of tests adjusted p-values are corrected over, or that none was recorded.
fn family_text(family: &str) -> &str {
    if family.is_empty() {
        "not recorded in these results"
    } else {
        family
    }
}

/// Rows of the most-changed-edges table in the report.
const EDGE_ROWS: usize = 20;

/// The edges whose importance changed most: what was tested, how many changed, the top rows.
fn edge_section(s: &mut String, edges: &EdgeChanges) {
    let _ = writeln!(
        s,
        "\n## Most changed edges\n\nΔ = S̄_tuned − S̄_base is the signed change of an edge's \
         mean score (which way it pushes); Δ|S| = |S̄_tuned| − |S̄_base| is the change in its \
         importance (method.md §8): an edge whose score goes from −3.1e-3 to −1.4e-3 has Δ > 0 \
         and Δ|S| < 0. The test is on the importance: {}. {}.\n\nThe first {} of the {} edges \
         with the smallest adjusted p (then the largest per-question Δ|S|) that \
         `most_changed_edges.csv` lists. Δ|S| is the change of the mean scores' magnitudes (as \
         the Importance change figures draw it); the tested quantity is the per-question Δ|S|, \
         the mean over the questions of |S_tuned| − |S_base|, with its bootstrap interval; the \
         two differ where an edge's score changes sign from question to question. p is the \
         Wilcoxon p-value, p (BH) the Benjamini–Hochberg adjusted one.\n",
        edge_change::TESTED,
        edges.summary_count(),
        EDGE_ROWS.min(edges.edges.len()),
        edges.edges.len()
    );
    let mut table = edges.table();
    table.rows.truncate(EDGE_ROWS);
    s.push_str(&table.markdown());
}

/// The figures' section: each PNG with a link to its SVG.
fn figures_section(s: &mut String, figures: &[(String, String)]) {
    let _ = writeln!(s, "\n## Figures\n");
    for (caption, stem) in figures {
        let _ = writeln!(
            s,
            "![{caption}](figures/{stem}.png)\n\n[{caption} (SVG)](figures/{stem}.svg)\n"
        );
    }
}

/// One row per checkpoint: step, model, the set's accuracy, the mean loss, the trainer's reward,
/// accuracy and KL where logged, and each headline metric with its interval and its change from
/// the first checkpoint.
fn checkpoint_table(s: &mut String, t: &Trajectory) {
    let mut header = "| step | model | set accuracy | mean loss |".to_owned();
    let mut rule = "|---|---|---|---|".to_owned();
    let train_cols: Vec<&str> = ["reward", "accuracy", "kl"]
        .into_iter()
        .filter(|c| t.points.iter().any(|p| p.train.contains_key(*c)))
        .collect();
    for c in &train_cols {
        header.push_str(&format!(" trainer {c} |"));
        rule.push_str("---|");
    }
    for m in Metric::HEADLINE {
        header.push_str(&format!(" {m} | {m} − first (p, adjusted p) |"));
        rule.push_str("---|---|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for p in &t.points {
        let mut row = format!(
            "| {} | `{}` | {} | {} |",
            p.step,
            p.model,
            p.accuracy
                .map_or("—".to_owned(), |a| format!("{:.1} %", 100.0 * a)),
            Cell::Value(p.mean_loss).text()
        );
        for c in &train_cols {
            let v = p
                .train
                .get(*c)
                .map_or("—".to_owned(), |v| Cell::Value(*v).text());
            row.push_str(&format!(" {v} |"));
        }
        for m in Metric::HEADLINE {
            let level = p.level(m).map_or("—".to_owned(), |l| {
                format!(
                    "{} {}",
                    Cell::Value(l.mean).text(),
                    Cell::Interval(l.ci_low, l.ci_high).text()
                )
            });
            let change = p.change(m).map_or("—".to_owned(), |c| {
                format!(
                    "{} {} (p {}, adjusted p {})",
                    Cell::Change(c.mean_diff).text(),
                    Cell::Interval(c.ci_low, c.ci_high).text(),
                    Cell::P(c.p_value).text(),
                    Cell::AdjustedP(c.p_adjusted).text()
                )
            });
            row.push_str(&format!(" {level} | {change} |"));
        }
        let _ = writeln!(s, "{row}");
    }
}

/// `report.md` of a trajectory: the checkpoints, the question set, each headline metric at
/// every checkpoint with its interval and its paired change from the first, the trainer's log
/// at each step, and the figures.
pub fn render_trajectory(
    cfg: &TrajectoryConfig,
    counts: &TrajectoryCounts,
    t: &Trajectory,
    figures: &[(String, String)],
) -> String {
    let mut s = String::new();
    let study = &cfg.study;
    let _ = writeln!(s, "# circuitdiff trajectory\n");
    let _ = writeln!(
        s,
        "- {} checkpoints from step {} to step {}\n- dataset: `{}` (offset {}, {})\n- question set: {} ({}); {}",
        t.points.len(),
        t.points.first().map_or(0, |p| p.step),
        t.points.last().map_or(0, |p| p.step),
        study.dataset,
        study.offset,
        limit_words(study.limit),
        t.questions.describe(),
        t.n,
        t.answers.describe(),
    );
    let _ = writeln!(
        s,
        "- graph: {}; loss on the first K = {} answer tokens (cut fraction α = {}, T̄ = {:.2}); {} bootstrap resamples, seed {}, {:.0} % intervals",
        study.level.words(), counts.k, study.select.alpha, counts.t_bar, study.compare.bootstrap_resamples, study.compare.seed, 100.0 * study.compare.confidence
    );
    if let Some(log) = &cfg.train_log {
        let _ = writeln!(
            s,
            "- trainer's log: `{}` (as `train_log.csv`)",
            log.path().display()
        );
    }
    let _ = writeln!(s, "\n## Counts\n\n| step | questions |\n|---|---|");
    dataset_rows(&mut s, &counts.dataset);
    for (k, v) in [
        ("asked", counts.asked),
        ("first checkpoint correct", counts.first.correct),
        ("last checkpoint correct", counts.last.correct),
        (
            "in the set before the length filters",
            counts.filters.both_correct,
        ),
        (
            "after the length filters",
            counts.filters.after_length_difference,
        ),
        ("sampled and scored at every checkpoint", counts.scored),
    ] {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(s);
    if let Some(span) = &t.span {
        span_section(&mut s, span);
    }
    let _ = writeln!(s, "## Checkpoints\n");
    checkpoint_table(&mut s, t);
    let _ = writeln!(
        s,
        "\nEach level is the mean over the question set with its bootstrap interval; each change \
         is paired question by question against the first checkpoint (mean difference, its \
         interval, and the Wilcoxon signed-rank p-value). Adjusted p: {}. Every metric is in \
         `summary.csv`. The figures `trajectory_<metric>` draw the paired change from the first \
         checkpoint with its paired interval (bands of levels overlap where the paired change is \
         clear); `trajectory_<metric>_levels` draw the levels.",
        family_text(&t.family)
    );
    figures_section(&mut s, figures);
    s
}
