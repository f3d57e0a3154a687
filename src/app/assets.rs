//! The bundled demo data, read from disk (found by [`crate::assets::dir`]): `demo/<pair>`
//! (study directories), `demo/<tuned>_trajectory` (the trajectory of one fine-tune's
//! checkpoints) and `zoo/<name>` (model folders with their training logs).

use crate::study::demo::{PAIRS, TRAJECTORY};
use crate::study::trajectory_dir::TrajectoryDir;
use std::path::{Path, PathBuf};

/// The demo studies that exist, in the order GRPO, PPO, DPO.
pub fn demo_studies(assets: &Path) -> Vec<(String, PathBuf)> {
    PAIRS
        .iter()
        .map(|name| ((*name).to_owned(), assets.join("demo").join(name)))
        .filter(|(_, dir)| dir.join("comparison.json").is_file())
        .collect()
}

/// The demo trajectory's name (its fine-tune) and folder, when it exists.
pub fn demo_trajectory(assets: &Path) -> Option<(String, PathBuf)> {
    let (tuned, folder) = TRAJECTORY;
    let dir = assets.join("demo").join(folder);
    TrajectoryDir::is_trajectory(&dir).then(|| (tuned.to_owned(), dir))
}

/// The zoo's demo pairs whose folders exist: (label, base, tuned).
pub fn zoo_pairs(assets: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let zoo = assets.join("zoo");
    let base = zoo.join("base");
    if !base.join("config.json").is_file() {
        return Vec::new();
    }
    PAIRS
        .iter()
        .map(|name| (format!("base -> {name}"), base.clone(), zoo.join(name)))
        .filter(|(_, _, tuned)| tuned.join("config.json").is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_studies_and_pairs_are_found_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path();
        assert!(demo_studies(a).is_empty() && zoo_pairs(a).is_empty());
        assert_eq!(demo_trajectory(a), None);
        let t = a.join("demo").join(TRAJECTORY.1);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("trajectory.json"), "{}").unwrap();
        assert_eq!(demo_trajectory(a), Some((TRAJECTORY.0.to_owned(), t)));
        for name in ["dpo", "grpo"] {
            let d = a.join("demo").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("comparison.json"), "{}").unwrap();
        }
        let names: Vec<String> = demo_studies(a).into_iter().map(|x| x.0).collect();
        assert_eq!(names, ["grpo", "dpo"]);
        for name in ["base", "ppo"] {
            let d = a.join("zoo").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.json"), "{}").unwrap();
        }
        let pairs = zoo_pairs(a);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, "base -> ppo");
    }
}
