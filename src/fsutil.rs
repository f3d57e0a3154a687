//! Atomic file writes: every result file is written to a temporary sibling and renamed into
//! place, so a reader never sees half a file and an interrupted run leaves the old one intact.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The temporary sibling used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// The first entry of `dir` other than the temporary file an interrupted first write of `file`
/// leaves; `None` when the directory is absent or holds nothing else (so it can be claimed).
pub fn foreign_entry(dir: &Path, file: &str) -> std::io::Result<Option<String>> {
    let ours = format!(".{file}.tmp");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&ours) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename). A write that fails (a full
/// disk) removes its temporary file and leaves `path` as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // The write's error is the one worth reporting; a file that cannot be removed either
        // is left for the next run to overwrite.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// Write `value` as pretty-printed JSON to `path` atomically (a value that cannot be serialised
/// is an `io::Error` of kind `Other`).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, text.as_bytes())
}
