//! The shipped real pair (method.md's study on a real language model): SmolLM2-135M-Instruct
//! against its GRPO LoRA fine-tune. Its numbers in `assets/README.md` are recomputed here from
//! the shipped files: the held-out accuracies and McNemar's p from both models' graded answers,
//! the headline table from the comparison, and the adapter ladder's size and log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::attribution::compare::mcnemar_exact;
use circuitdiff::attribution::metrics::Metric;
use circuitdiff::report::table::Table;
use circuitdiff::study::demo_dir::{DemoDir, REAL};
use circuitdiff::study::demo_real;
use circuitdiff::study::dir::StudyDir;
use circuitdiff::study::trajectory_dir::TrajectoryDir;
use std::path::{Path, PathBuf};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The accuracies and McNemar's test, recounted from the graded answers, are the study's and
/// the README's; the fine-tune's gain is significant.
#[test]
fn held_out_accuracy_and_mcnemar_are_recomputed() {
    let demo = DemoDir::new(assets().join("demo"));
    let study = StudyDir::new(demo.real_study_dir());
    let rows = study.read_rows().unwrap();
    assert_eq!(rows.len(), demo_real::HELD_OUT);
    let right = |a: Option<&circuitdiff::study::answers::Answer>| {
        a.is_some_and(|a| a.grade.correct && !a.answer_ids.is_empty())
    };
    let (mut base, mut tuned, mut only_base, mut only_tuned) = (0, 0, 0, 0);
    for r in &rows {
        let (b, t) = (right(r.base.as_ref()), right(r.tuned.as_ref()));
        base += usize::from(b);
        tuned += usize::from(t);
        only_base += usize::from(b && !t);
        only_tuned += usize::from(t && !b);
    }
    let counts = study.read_counts().unwrap().unwrap();
    assert_eq!(
        (counts.models.base.correct, counts.models.tuned.correct),
        (base, tuned)
    );
    let d = counts.discordant.unwrap();
    assert_eq!((d.only_base, d.only_tuned), (only_base, only_tuned));
    let p = mcnemar_exact(only_base, only_tuned);
    assert!(
        p < 0.05 && tuned > base,
        "not a significant gain: {base} → {tuned}, p = {p}"
    );
    let readme = std::fs::read_to_string(assets().join("README.md")).unwrap();
    let n = rows.len();
    let line = format!("base {base}/{n}, tuned {tuned}/{n}; {}", d.words());
    assert!(readme.contains(&line), "assets/README.md lacks `{line}`");
}

/// The README's table of the headline metrics is the shipped comparison's, with its corrected
/// p-values, K and the saturation line.
#[test]
fn the_finding_in_the_readme_is_the_shipped_comparison() {
    let study = StudyDir::new(DemoDir::new(assets().join("demo")).real_study_dir());
    let cmp = study.read_comparison().unwrap().unwrap();
    let headline: Vec<_> = cmp
        .metrics
        .iter()
        .filter(|m| Metric::HEADLINE.contains(&m.metric))
        .cloned()
        .collect();
    assert_eq!(headline.len(), Metric::HEADLINE.len());
    let table = Table::paired(&headline).markdown();
    for readme in ["assets/README.md", "README.md"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(readme)).unwrap();
        assert!(text.contains(&table), "{readme} lacks the table:\n{table}");
        let span = cmp.span.as_ref().unwrap().describe();
        assert!(text.contains(&span), "{readme} lacks `{span}`");
        let saturation = cmp.saturation.as_ref().unwrap().line();
        assert!(text.contains(&saturation), "{readme} lacks `{saturation}`");
    }
}

/// Every kept checkpoint is a small PEFT adapter, the trainer log has the held-out accuracy at
/// each, and the trajectory along them ships.
#[test]
fn the_adapter_ladder_and_trajectory_ship() {
    let run = assets().join("zoo").join(REAL.name);
    assert!(run.join(demo_real::DATASET).is_file());
    let mut checkpoints = 0;
    for entry in std::fs::read_dir(&run).unwrap() {
        let dir = entry.unwrap().path();
        if !dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("checkpoint-")
        {
            continue;
        }
        checkpoints += 1;
        assert!(dir.join(circuitdiff::model::ADAPTER_CONFIG_FILE).is_file());
        let weights =
            std::fs::metadata(dir.join(circuitdiff::model::ADAPTER_WEIGHTS_FILE)).unwrap();
        assert!(
            weights.len() < 5 << 20,
            "{}: {} bytes",
            dir.display(),
            weights.len()
        );
    }
    assert!(checkpoints >= 3, "{checkpoints} checkpoints");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join(circuitdiff::report::train_log::TRAINER_STATE)).unwrap(),
    )
    .unwrap();
    let accuracies = state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("accuracy").is_some())
        .count();
    assert_eq!(accuracies, checkpoints);
    let trajectory = DemoDir::new(assets().join("demo")).real_trajectory_dir();
    assert!(TrajectoryDir::is_trajectory(&trajectory));
    assert!(TrajectoryDir::new(&trajectory).report_path().is_file());
}
