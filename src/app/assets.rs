//! The bundled demo data, read from disk: `assets/demo/<name>` (study directories) and
//! `assets/zoo/<name>` (model folders with their training logs).
//!
//! The assets folder is the first of: `$CIRCUITDIFF_ASSETS`; `assets/` next to the executable;
//! `../share/circuitdiff/assets` from the executable's folder (`/usr/bin` → `/usr/share`,
//! `~/.local/bin` → `~/.local/share`); the source tree the binary was built from.

use std::path::{Path, PathBuf};

/// The demo model pairs of the zoo: base → each tuned model.
pub const DEMO_PAIRS: [&str; 3] = ["grpo", "ppo", "dpo"];

/// The assets folder, when one exists.
pub fn dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("CIRCUITDIFF_ASSETS") {
        candidates.push(PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        candidates.push(exe_dir.join("assets"));
        candidates.push(exe_dir.join("../share/circuitdiff/assets"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"));
    candidates.into_iter().find(|d| d.is_dir())
}

/// The demo studies that exist, newest first (by the time of their `comparison.json`).
pub fn demo_studies(assets: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(std::time::SystemTime, String, PathBuf)> = DEMO_PAIRS
        .iter()
        .filter_map(|name| {
            let dir = assets.join("demo").join(name);
            let time = std::fs::metadata(dir.join("comparison.json"))
                .and_then(|m| m.modified())
                .ok()?;
            Some((time, (*name).to_owned(), dir))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, n, d)| (n, d)).collect()
}

/// The zoo's demo pairs whose folders exist: (label, base, tuned).
pub fn zoo_pairs(assets: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let zoo = assets.join("zoo");
    let base = zoo.join("base");
    if !base.join("config.json").is_file() {
        return Vec::new();
    }
    DEMO_PAIRS
        .iter()
        .map(|name| (format!("base -> {name}"), base.clone(), zoo.join(name)))
        .filter(|(_, _, tuned)| tuned.join("config.json").is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_studies_and_pairs_are_found_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path();
        assert!(demo_studies(a).is_empty() && zoo_pairs(a).is_empty());
        for (i, name) in ["dpo", "grpo"].iter().enumerate() {
            let d = a.join("demo").join(name);
            std::fs::create_dir_all(&d).unwrap();
            let f = std::fs::File::create(d.join("comparison.json")).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1000 * (i as u64 + 1));
            f.set_modified(t).unwrap();
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
