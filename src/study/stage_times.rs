//! Where a study's time went: the wall time of each stage in one run of it, written beside its
//! results (`timings.json`) and said at the end, so that a researcher sees what to speed up
//! (answers, scoring or the exact check) and a benchmark can split a real study by stage.

use crate::runtime::CpuInfo;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The stages of a study, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Generating both models' answers and grading each as it is written.
    Answer,
    /// The per-model counts and the choice of questions and scored span.
    Select,
    /// Edge attribution patching on both models.
    Score,
    /// The exact effects and the saturation check (method.md §7).
    Check,
    /// The comparison, the figures and the report.
    Report,
}

impl Stage {
    /// How the stage is named in the summary line.
    fn label(self) -> &'static str {
        match self {
            Self::Answer => "answers (generation and grading)",
            Self::Select => "selection",
            Self::Score => "scoring",
            Self::Check => "exact check",
            Self::Report => "report",
        }
    }
}

/// One stage's wall time in this run.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: Stage,
    pub seconds: f64,
}

/// The stages a run of a study went through, timed. A resumed run times what it did, so a
/// stage whose results were already on disk takes next to nothing.
#[derive(Debug, Clone, Serialize)]
pub struct StageTimes {
    pub stages: Vec<StageTime>,
    /// The threads the run's kernels had.
    pub threads: usize,
    pub cpu: CpuInfo,
    #[serde(skip)]
    since: Instant,
}

impl StageTimes {
    /// Start timing the first stage now.
    pub fn start() -> Self {
        Self {
            stages: Vec::new(),
            threads: candle_core::utils::get_num_threads(),
            cpu: CpuInfo::detect(),
            since: Instant::now(),
        }
    }

    /// `stage` ended now; the next one starts.
    pub fn end(&mut self, stage: Stage) {
        let now = Instant::now();
        let took: Duration = now - self.since;
        self.since = now;
        self.stages.push(StageTime {
            stage,
            seconds: took.as_secs_f64(),
        });
    }

    /// One line: each stage's seconds and share of the total.
    pub fn summary(&self) -> String {
        let total: f64 = self.stages.iter().map(|s| s.seconds).sum();
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let share = if total > 0.0 { s.seconds / total } else { 0.0 };
                format!(
                    "{} {:.1} s ({:.0} %)",
                    s.stage.label(),
                    s.seconds,
                    share * 100.0
                )
            })
            .collect();
        format!(
            "time: {total:.1} s on {} threads: {}",
            self.threads,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_each_stage_its_seconds_and_share() {
        let mut t = StageTimes::start();
        t.end(Stage::Answer);
        t.stages[0].seconds = 3.0;
        t.stages.push(StageTime {
            stage: Stage::Score,
            seconds: 1.0,
        });
        let s = t.summary();
        assert!(s.starts_with("time: 4.0 s on "), "{s}");
        assert!(
            s.ends_with("answers (generation and grading) 3.0 s (75 %), scoring 1.0 s (25 %)"),
            "{s}"
        );
    }
}
