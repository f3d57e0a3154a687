//! What kind of results folder a path is: the one detector, for the app and the CLI alike.
//! Each kind's layout has its own owner ([`RunDir`], [`StudyDir`], [`TrajectoryDir`],
//! [`DemoDir`], `report::comparison`); this asks each of them in turn.

use super::demo_dir::DemoDir;
use super::dir::StudyDir;
use super::trajectory_dir::TrajectoryDir;
use crate::report::comparison;
use crate::report::run::RunDir;
use std::path::Path;

/// The kinds of folder circuitdiff writes results into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A trajectory: one question set scored along a training run's checkpoints.
    Trajectory,
    /// A single scoring run (`score`).
    Run,
    /// A study: both models' runs, answers, comparison and report.
    Study,
    /// A comparison of two runs (`compare --out`), naming both run directories.
    Comparison,
    /// The folder `circuitdiff demo` wrote: studies and a trajectory, with their summary.
    Demo,
}

impl Kind {
    /// What kind of results folder `dir` is, `None` for any other folder (a study or
    /// trajectory not started yet, a model folder). A folder that would qualify as two kinds is
    /// the first of trajectory, run, study, comparison, demo.
    pub fn detect(dir: &Path) -> Option<Self> {
        if TrajectoryDir::is_trajectory(dir) {
            Some(Self::Trajectory)
        } else if RunDir::is_run(dir) {
            Some(Self::Run)
        } else if StudyDir::is_study(dir) {
            Some(Self::Study)
        } else if comparison::path(dir).is_file() {
            Some(Self::Comparison)
        } else if DemoDir::is_demo(dir) {
            Some(Self::Demo)
        } else {
            None
        }
    }

    /// Whether the folder holds results to show by itself (a demo folder holds several).
    pub fn is_results(self) -> bool {
        self != Self::Demo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_s_mark_gives_its_kind() {
        let t = tempfile::tempdir().unwrap();
        let at = |name: &str| {
            let d = t.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let touch = |p: std::path::PathBuf| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "{}").unwrap();
        };
        let empty = at("empty");
        assert_eq!(Kind::detect(&empty), None);
        let run = at("run");
        touch(RunDir::new(&run).manifest_path());
        assert_eq!(Kind::detect(&run), Some(Kind::Run));
        let study = StudyDir::new(at("study"));
        touch(RunDir::new(study.run_dir(crate::side::Side::Base)).manifest_path());
        touch(study.comparison_path());
        assert_eq!(Kind::detect(study.root()), Some(Kind::Study));
        let cmp = at("cmp");
        touch(comparison::path(&cmp));
        assert_eq!(Kind::detect(&cmp), Some(Kind::Comparison));
        let trajectory = TrajectoryDir::new(at("trajectory"));
        touch(trajectory.config_path());
        assert_eq!(Kind::detect(trajectory.root()), Some(Kind::Trajectory));
        let demo = DemoDir::new(at("demo"));
        touch(demo.summary_path());
        assert_eq!(Kind::detect(demo.root()), Some(Kind::Demo));
        assert!(!Kind::Demo.is_results() && Kind::Study.is_results());
        // A study started but not scored yet is no results folder.
        let started = StudyDir::new(at("started"));
        touch(started.config_path());
        assert_eq!(Kind::detect(started.root()), None);
    }
}
