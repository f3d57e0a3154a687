//! The embedded default: the study on the demo zoo's three pairs (base → GRPO, base → PPO,
//! base → DPO) on the held-out built-in task, a summary of how intensity, entropy and
//! kurtosis moved under each algorithm, and the GRPO run's trajectory along its checkpoints.

pub use super::demo_dir::{DemoDir, PAIRS, TRAJECTORY};
use super::dir::StudyConfig;
use super::job::{run_study, StudyError, StudyOutcome};
use super::ladder::Rung;
use super::trajectory::{run_trajectory, TrajectoryOutcome};
use super::trajectory_dir::TrajectoryConfig;
use crate::attribution::compare::{CompareOptions, PairedStat};
use crate::attribution::metrics::Metric;
use crate::model::LoadOptions;
use crate::progress::{CancelToken, Progress};
use crate::report::comparison::Comparison;
use crate::report::saturation::Saturation;
use crate::report::span::ScoredSpan;
use crate::report::table::{Cell, Table};
use crate::report::train_log::LogSource;
use crate::report::trajectory::{AnswerSource, QuestionSet};
use crate::report::validation::{Brief, SampleCount, Validation};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// α of the demo: the whole answer (K = ⌊0.99 · T̄⌋, about 24 of the zoo's 25-token answers).
/// The first tokens copy the question's operands, and a model is nearly certain of them: with
/// only those (the study's α = 0.05 scores one token; 0.25 scores six) almost every sample is
/// saturated (method.md §7), while the sums it works out keep the loss of whole answers above
/// the threshold.
pub const ALPHA: f64 = 0.99;

/// The study of the pair base → `tuned` of the zoo in `zoo`.
pub fn config(zoo: &Path, tuned: &str) -> StudyConfig {
    let spec = |name: &str| {
        crate::assets::display_path(&zoo.join(name))
            .display()
            .to_string()
    };
    let mut cfg = StudyConfig::new(spec("base"), spec(tuned));
    cfg.generation.max_new_tokens = 40;
    cfg.select.alpha = ALPHA;
    cfg.batch = 32;
    cfg
}

/// The demo's trajectory: the pair's study settings along the zoo's ladder of `tuned` (the
/// base, the kept checkpoints, the final model), each checkpoint scored on its own answers.
pub fn trajectory_config(zoo: &Path, tuned: &str) -> Result<TrajectoryConfig, StudyError> {
    let found =
        super::ladder::discover(&[zoo.join(tuned).display().to_string()], None, None, None)?;
    let shown = |p: &str| {
        crate::assets::display_path(Path::new(p))
            .display()
            .to_string()
    };
    let checkpoints = found
        .rungs
        .into_iter()
        .map(|r| Rung {
            spec: shown(&r.spec),
            ..r
        })
        .collect();
    let train_log = found
        .log
        .map(|l| LogSource::LabCsv(crate::assets::display_path(l.path())));
    let mut study = config(zoo, tuned);
    study.exact.samples = SampleCount::Count(0);
    Ok(TrajectoryConfig {
        checkpoints,
        answers: AnswerSource::Own,
        questions: QuestionSet::Ends,
        train_log,
        shard: None,
        study,
    })
}

/// One pair's headline: accuracies and the paired statistics of [`Metric::HEADLINE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairSummary {
    pub tuned: String,
    pub base_accuracy: f64,
    pub tuned_accuracy: f64,
    pub n: usize,
    pub k: usize,
    pub stats: Vec<PairedStat>,
    /// Both models' losses and the saturated share of their samples.
    #[serde(default)]
    pub saturation: Option<Saturation>,
    /// The family the stats' adjusted p-values are corrected over (all the comparison's
    /// metrics, not only these), in words; empty in summaries written before it existed.
    #[serde(default)]
    pub family: String,
    /// The check of EAP against exact effects, in brief.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Brief>,
    /// The answer tokens scored: K, T̄ and how K was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<ScoredSpan>,
}

/// Run the three studies into `out/<pair>/` (each resumable) and write `out/summary.md` and
/// `out/summary.json`. `None` when cancelled.
pub fn run_demo(
    zoo: &Path,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Vec<PairSummary>>, StudyError> {
    // The root's own files (the summaries) are this run's too: a second demo is refused at once.
    let _lock = crate::lock::DirLock::acquire(out)?;
    let mut summaries = Vec::new();
    for tuned in PAIRS {
        progress.note(&format!("study: base → {tuned}"));
        let outcome = run_study(
            &config(zoo, tuned),
            &LoadOptions::default(),
            &DemoDir::new(out).study_dir(tuned),
            progress,
            cancel,
        )?;
        let (cmp, counts) = match outcome {
            StudyOutcome::Finished(r) => *r,
            StudyOutcome::Cancelled | StudyOutcome::ShardAnswered { .. } => return Ok(None),
        };
        let acc = |c: usize| c as f64 / counts.asked.max(1) as f64;
        summaries.push(PairSummary {
            tuned: tuned.to_owned(),
            base_accuracy: acc(counts.models.base.correct),
            tuned_accuracy: acc(counts.models.tuned.correct),
            n: cmp.n,
            k: counts.k,
            stats: headline(&cmp),
            family: cmp.family.clone(),
            check: cmp.validation.as_ref().map(Validation::brief),
            saturation: cmp.saturation,
            span: cmp.span,
        });
    }
    let (tuned, _) = TRAJECTORY;
    progress.note(&format!("trajectory: base → {tuned} along its checkpoints"));
    let outcome = run_trajectory(
        &trajectory_config(zoo, tuned)?,
        &LoadOptions::default(),
        &DemoDir::new(out).trajectory_dir(),
        progress,
        cancel,
    )?;
    if !matches!(outcome, TrajectoryOutcome::Finished(_)) {
        return Ok(None);
    }
    let demo = DemoDir::new(out);
    super::dir::write_json(&demo.summary_path(), &summaries)?;
    super::dir::write_text(&demo.summary_md_path(), &render(&summaries))?;
    Ok(Some(summaries))
}

/// The scored span's line and its warning, when the summary records them.
fn span_lines(s: &mut String, span: Option<&ScoredSpan>) {
    if let Some(span) = span {
        let _ = writeln!(s, "Scored: {}.\n", span.describe());
        if let Some(w) = span.warning() {
            let _ = writeln!(s, "> **Warning**: {w}.\n");
        }
    }
}

fn headline(cmp: &Comparison) -> Vec<PairedStat> {
    Metric::HEADLINE
        .iter()
        .filter_map(|&metric| cmp.metrics.iter().find(|m| m.metric == metric).cloned())
        .collect()
}

/// How a metric moved: up or down when its adjusted p is below the significance level of the
/// demo's comparisons, else unchanged.
fn change(s: &PairedStat) -> &'static str {
    let significant = s.p_adjusted < CompareOptions::default().significance_level();
    match (significant, s.mean_diff > 0.0) {
        (false, _) => "no significant change",
        (true, true) => "rose",
        (true, false) => "fell",
    }
}

/// `summary.md`: per pair, accuracies, how each headline metric moved, and links to the pair's
/// figures and report.
pub fn render(summaries: &[PairSummary]) -> String {
    let mut s = String::from(
        "# circuitdiff demo: what each fine-tune changed\n\n\
         Block-level edge attribution on the held-out built-in task (`builtin:arith`), each \
         fine-tune against the SFT base of the demo zoo, paired over the questions both models \
         answered correctly. p: two-sided Wilcoxon signed-rank; adjusted p: corrected for \
         multiple comparisons over all the metrics of each comparison (named under each table); \
         a change is read from the adjusted p at the significance level 0.05; CI: bootstrap \
         95 % interval of the mean difference.\n",
    );
    for p in summaries {
        let _ = writeln!(
            s,
            "\n## base → {}\n\nAccuracy {:.1} % → {:.1} %; {} paired questions, K = {}.\n",
            p.tuned,
            100.0 * p.base_accuracy,
            100.0 * p.tuned_accuracy,
            p.n,
            p.k
        );
        span_lines(&mut s, p.span.as_ref());
        let mut table = Table::paired(&p.stats);
        let changes = p.stats.iter().map(|m| Cell::Text(change(m).into()));
        table.push_column("change (adjusted p)", changes);
        s.push_str(&table.markdown());
        if !p.family.is_empty() {
            let _ = writeln!(s, "\nAdjusted p: {}.", p.family);
        }
        if let Some(sat) = &p.saturation {
            let _ = writeln!(s, "\n{}.", sat.line());
            if let Some(w) = sat.warning() {
                let _ = writeln!(s, "\n> **Warning**: {w}.");
            }
        }
        if let Some(check) = &p.check {
            s.push('\n');
            for line in check.lines() {
                let _ = writeln!(s, "- {line}.");
            }
        }
        let figures = format!("{}/figures", p.tuned);
        let _ = writeln!(
            s,
            "\n![circuit graph, tuned − base]({figures}/circuit_difference.png)\n\n\
             Figures: circuit graph of [base]({figures}/circuit_base.svg), \
             [tuned]({figures}/circuit_tuned.svg) and \
             [tuned − base]({figures}/circuit_difference.svg); \
             [mean-score heatmaps]({figures}/heatmap.svg); all of them in [{}/report.md]({}/report.md).",
            p.tuned, p.tuned
        );
    }
    let (tuned, folder) = TRAJECTORY;
    let _ = writeln!(
        s,
        "\n## base → {tuned}, checkpoint by checkpoint\n\n\
         The same study along the {tuned} run's kept checkpoints, one fixed question set (those \
         the base and the final model both answer correctly) scored at every step beside the \
         trainer's reward: [{folder}/report.md]({folder}/report.md).\n\n\
         ![entropy over training]({folder}/figures/trajectory_entropy.png)"
    );
    s
}
