//! Where the bundled data lives: the demo model zoo (`zoo/`) and the demo study results
//! (`demo/`). Looked up, in order, in `$CIRCUITDIFF_ASSETS`, in `../share/circuitdiff` next to
//! the executable (a .deb or the tarball), in `../Resources/assets` (a macOS `.app` bundle), and
//! in the source tree the binary was built from.

use std::path::{Path, PathBuf};

/// The assets directory, if one of the places holds a `zoo/` folder.
pub fn dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("CIRCUITDIFF_ASSETS").map(PathBuf::from);
    let prefix = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    let installed = prefix.as_ref().map(|p| p.join("share/circuitdiff"));
    let app_bundle = prefix.map(|p| p.join("Resources/assets"));
    let source = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"));
    [from_env, installed, app_bundle, source]
        .into_iter()
        .flatten()
        .find(|d| d.join("zoo").is_dir())
}

/// The assets directory, or an error saying where it was looked for and how to point at it.
pub fn require() -> Result<PathBuf, String> {
    dir().ok_or_else(|| {
        format!(
            "the demo model zoo was not found (looked in $CIRCUITDIFF_ASSETS, ../share/circuitdiff \
             and ../Resources/assets next to the executable, and {}/assets): set CIRCUITDIFF_ASSETS to the folder that \
             holds zoo/ and demo/",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

/// `path` relative to the current directory when it lies below it, else unchanged (so that
/// recorded model paths read `assets/zoo/base` rather than a machine's absolute path).
pub fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}
