//! The bundled demo data, read from disk (found by [`crate::assets::dir`]): `demo/<pair>`
//! (study directories), `demo/<tuned>_trajectory` (the trajectory of one fine-tune's
//! checkpoints) and `zoo/<name>` (model folders with their training logs).

use crate::study::demo_dir::{DemoDir, PAIRS};
use crate::study::dir::StudyDir;
use crate::study::kind::Kind;
use std::path::{Path, PathBuf};

/// The bundled demo studies that are finished: the real pair's, then GRPO, PPO, DPO.
pub fn demo_studies(assets: &Path) -> Vec<(String, PathBuf)> {
    DemoDir::new(assets.join("demo"))
        .studies()
        .into_iter()
        .filter(|(_, dir)| StudyDir::new(dir).comparison_path().is_file())
        .collect()
}

/// The bundled trajectories, as (the fine-tune's name, folder): the real pair's, then the
/// zoo's GRPO run's.
pub fn demo_trajectories(assets: &Path) -> Vec<(String, PathBuf)> {
    DemoDir::new(assets.join("demo")).trajectories()
}

/// What a folder `circuitdiff demo` wrote holds (the bundled `demo/` or a user's run): each
/// pair's study, then the trajectory, as (name, folder); empty for any other folder.
pub fn demo_folder(dir: &Path) -> Vec<(String, PathBuf)> {
    DemoDir::new(dir).entries()
}

/// The folder `circuitdiff demo` wrote that is `dir` or holds it, with what it holds.
pub fn demo_run_of(dir: &Path) -> Option<(PathBuf, Vec<(String, PathBuf)>)> {
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| (d.to_owned(), demo_folder(d)))
        .find(|(_, entries)| !entries.is_empty())
}

/// The results to show for `dir`: `dir` itself, or the first study of a folder `demo` wrote.
pub fn results_to_open(dir: &Path) -> PathBuf {
    if Kind::detect(dir).is_some_and(Kind::is_results) {
        return dir.to_owned();
    }
    demo_folder(dir)
        .into_iter()
        .next()
        .map_or_else(|| dir.to_owned(), |(_, first)| first)
}

/// The zoo's demo pairs whose folders exist: (label, base, tuned).
pub fn zoo_pairs(assets: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let zoo = assets.join("zoo");
    let base = zoo.join("base");
    if !crate::model::is_model_folder(&base) {
        return Vec::new();
    }
    PAIRS
        .iter()
        .map(|name| (format!("base -> {name}"), base.clone(), zoo.join(name)))
        .filter(|(_, _, tuned)| crate::model::is_model_folder(tuned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::run::RunDir;
    use crate::study::demo_dir::TRAJECTORY;
    use crate::study::trajectory_dir::TrajectoryDir;

    #[test]
    fn demo_studies_and_pairs_are_found_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path();
        assert!(demo_studies(a).is_empty() && zoo_pairs(a).is_empty());
        assert_eq!(demo_trajectories(a), []);
        let demo = DemoDir::new(a.join("demo"));
        for (t, name) in [
            (demo.trajectory_dir(), "grpo"),
            (demo.real_trajectory_dir(), "smollm2_grpo"),
        ] {
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(TrajectoryDir::new(&t).config_path(), "{}").unwrap();
            assert_eq!(demo_trajectories(a)[0], (name.to_owned(), t));
        }
        assert_eq!(demo_trajectories(a).len(), 2);
        for name in ["dpo", "grpo", "smollm2_grpo", "ppo"] {
            let d = a.join("demo").join(name);
            let s = StudyDir::new(&d);
            std::fs::create_dir_all(s.run_dir(crate::side::Side::Base)).unwrap();
            std::fs::write(
                RunDir::new(s.run_dir(crate::side::Side::Base)).manifest_path(),
                "{}",
            )
            .unwrap();
            if name != "ppo" {
                std::fs::write(s.comparison_path(), "{}").unwrap();
            }
        }
        // The real pair first; a study without its comparison is not finished.
        let names: Vec<String> = demo_studies(a).into_iter().map(|x| x.0).collect();
        assert_eq!(names, ["smollm2_grpo", "grpo", "dpo"]);
        for name in ["base", "ppo"] {
            let d = a.join("zoo").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.json"), "{}").unwrap();
        }
        let pairs = zoo_pairs(a);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, "base -> ppo");
    }

    /// A folder `demo` wrote opens on its first study, and it is found from any of its
    /// studies; a folder without the demo's summary is none.
    #[test]
    fn a_demo_run_opens_on_its_first_study() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("circuitdiff-demo");
        for name in ["ppo", "dpo"] {
            let m = run.join(name).join("base");
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(crate::report::run::RunDir::new(&m).manifest_path(), "{}").unwrap();
        }
        let t = run.join(TRAJECTORY.1);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(TrajectoryDir::new(&t).config_path(), "{}").unwrap();
        assert!(demo_folder(&run).is_empty());
        assert_eq!(results_to_open(&run), run);
        std::fs::write(DemoDir::new(&run).summary_path(), "[]").unwrap();
        let names: Vec<String> = demo_folder(&run).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["ppo", "dpo", "grpo trajectory"]);
        assert_eq!(results_to_open(&run), run.join("ppo"));
        assert_eq!(results_to_open(&run.join("dpo")), run.join("dpo"));
        for dir in [&run, &run.join("dpo"), &t] {
            assert_eq!(demo_run_of(dir).map(|r| r.0), Some(run.clone()), "{dir:?}");
        }
        assert_eq!(demo_run_of(tmp.path()), None);
    }
}
