//! `circuitdiff trajectory`: the study's metrics at every checkpoint of a training run, over one
//! fixed question set, beside the trainer's log.

use super::args::{at_least, shard};
use super::bars::{ctrl_c_token, Bars};
use super::device::{AdapterBaseArg, DeviceArgs};
use super::questions::{load_options, QuestionArgs};
use anyhow::Context as _;
use circuitdiff::attribution::metrics::Metric;
use circuitdiff::model::LoadOptions;
use circuitdiff::report::table::Cell;
use circuitdiff::report::train_log::LogSource;
use circuitdiff::report::trajectory::{AnswerSource, QuestionSet, Trajectory};
use circuitdiff::report::validation::{ExactConfig, SampleCount};
use circuitdiff::study::ladder;
use circuitdiff::study::trajectory::{merge_trajectory, run_trajectory, TrajectoryOutcome};
use circuitdiff::study::trajectory_dir::{TrajectoryConfig, TrajectoryDir};
use std::path::{Path, PathBuf};

/// Score one fixed question set at every checkpoint of a training run and pair each with the
/// first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The checkpoints: a TRL output folder (its checkpoint-N/, full weights or LoRA adapters),
    /// a lab stage folder (e.g. zoo/grpo: the base, checkpoints/grpo/step-N and the final
    /// model), a folder of step-N/ folders, or the checkpoints in order.
    #[arg(required = true, value_name = "CHECKPOINT")]
    checkpoints: Vec<String>,
    /// A model put first at step 0 (the base a TRL run started from, say).
    #[arg(long, value_name = "MODEL")]
    first: Option<String>,
    /// The training step of each checkpoint, in order (default: from their names, else their
    /// places).
    #[arg(long, value_delimiter = ',', value_parser = at_least(0))]
    steps: Option<Vec<usize>>,
    /// Score each checkpoint on its own answers (`own`) or all on the first checkpoint's
    /// answers (`first`).
    #[arg(long, default_value = "own", value_parser = ["own", "first"])]
    answers: String,
    /// The fixed question set: those the first and the last checkpoint both answer correctly
    /// (`ends`), or the first alone (`first`).
    #[arg(long, default_value = "ends", value_parser = ["ends", "first"])]
    questions: String,
    /// The trainer's log (a trainer_state.json or a train_log.csv), instead of the one found
    /// beside the checkpoints.
    #[arg(long, value_name = "FILE")]
    train_log: Option<PathBuf>,
    #[command(flatten)]
    study: QuestionArgs,
    /// Use only the local Hugging Face cache.
    #[arg(long)]
    offline: bool,
    /// Score only the checkpoints numbered i, i+n, i+2n, … (`i/n`, 0 ≤ i < n) and stop;
    /// `circuitdiff merge` joins the shards and finishes the trajectory.
    #[arg(long, value_name = "I/N", value_parser = shard)]
    shard: Option<(usize, usize)>,
    /// Output directory; re-running the same command continues an interrupted trajectory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let steps: Option<Vec<u64>> = args
        .steps
        .as_ref()
        .map(|s| s.iter().map(|&n| n as u64).collect());
    let found = ladder::discover(
        &args.checkpoints,
        args.first.as_deref(),
        steps.as_deref(),
        args.train_log.as_deref().map(LogSource::of_file),
    )?;
    let (first, last) = match (found.rungs.first(), found.rungs.last()) {
        (Some(f), Some(l)) => (f.spec.clone(), l.spec.clone()),
        _ => anyhow::bail!("no checkpoints"),
    };
    let mut study = args.study.config(&first, &last)?;
    study.adapter_base = args.adapter.base();
    study.exact = ExactConfig {
        samples: SampleCount::Count(0),
        ..ExactConfig::default()
    };
    let cfg = TrajectoryConfig {
        checkpoints: found.rungs,
        answers: match args.answers.as_str() {
            "first" => AnswerSource::First,
            _ => AnswerSource::Own,
        },
        questions: match args.questions.as_str() {
            "first" => QuestionSet::First,
            _ => QuestionSet::Ends,
        },
        train_log: found.log,
        shard: args.shard,
        study,
    };
    let load = load_options(args.adapter.hub(args.offline), &args.device)?;
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let outcome = run_trajectory(&cfg, &load, &args.out, &mut bars, &cancel)
        .with_context(|| format!("trajectory into {}", args.out.display()))?;
    drop(bars);
    finish(outcome, &args.out)
}

/// Join trajectory shards into `out` and finish the trajectory there.
pub fn merge(shards: &[PathBuf], load: &LoadOptions, out: &Path) -> anyhow::Result<()> {
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let outcome = merge_trajectory(shards, load, out, &mut bars, &cancel)
        .with_context(|| format!("merging into {}", out.display()))?;
    drop(bars);
    finish(outcome, out)
}

fn finish(outcome: TrajectoryOutcome, out: &Path) -> anyhow::Result<()> {
    match outcome {
        TrajectoryOutcome::ShardScored { checkpoints } => println!(
            "shard scored {checkpoints} checkpoints into {}; join the shards with `circuitdiff merge`",
            out.display()
        ),
        TrajectoryOutcome::Cancelled => {
            eprintln!("stopped; run the same command to continue");
            return Err(super::bars::Stopped.into());
        }
        TrajectoryOutcome::Finished(t) => {
            print!("{}", table(&t));
            print!("{}", super::score::span_lines(t.span.as_ref()));
            println!("wrote {}", TrajectoryDir::new(out).report_path().display());
        }
    }
    Ok(())
}

/// Each checkpoint's step, set accuracy and headline metrics, and their change from the first.
fn table(t: &Trajectory) -> String {
    let mut s = format!(
        "{} questions scored at each of {} checkpoints (K = {}):\n{:>8} {:>9}",
        t.n,
        t.points.len(),
        t.k,
        "step",
        "accuracy"
    );
    for m in Metric::HEADLINE {
        s.push_str(&format!(
            " {:>12} {:>12} {:>10}",
            m.name(),
            "change",
            "adjusted p"
        ));
    }
    s.push('\n');
    for p in &t.points {
        let acc = p
            .accuracy
            .map_or("—".to_owned(), |a| format!("{:.0} %", 100.0 * a));
        s.push_str(&format!("{:>8} {acc:>9}", p.step));
        for m in Metric::HEADLINE {
            let level = p.level(m).map_or(f64::NAN, |l| l.mean);
            let (change, adjusted) =
                p.change(m).map_or(("—".to_owned(), "—".to_owned()), |c| {
                    (
                        Cell::Change(c.mean_diff).text(),
                        Cell::AdjustedP(c.p_adjusted).text(),
                    )
                });
            s.push_str(&format!(
                " {:>12} {change:>12} {adjusted:>10}",
                Cell::Value(level).text()
            ));
        }
        s.push('\n');
    }
    s.push_str(&format!("adjusted p: {}\n", t.family));
    s
}
