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

/// The process id in the name of a temporary file as [`temp_path`] names them,
/// `.{file}.tmp{pid}`; `None` for any other name.
fn temp_writer(name: &str) -> Option<&str> {
    let (file, pid) = name.strip_prefix('.')?.rsplit_once(".tmp")?;
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (!file.is_empty() && digits).then_some(pid)
}

/// The first entry of `dir` other than the temporary file an interrupted first write of `file`
/// leaves and the folder's lock file ([`crate::lock::LOCK_FILE`]); `None` when the directory is
/// absent or holds nothing else (so it can be claimed).
pub fn foreign_entry(dir: &Path, file: &str) -> std::io::Result<Option<String>> {
    let ours = format!(".{file}.tmp");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&ours) && name != crate::lock::LOCK_FILE {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Remove from `dir` the temporary files that writers other than this process left there: a
/// run killed between writing a file's temporary sibling and renaming it into place. For a
/// directory one process writes at a time (a run's output being resumed); an absent `dir` holds
/// none.
pub fn remove_stale_temps(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let ours = std::process::id().to_string();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = temp_writer(&name).is_some_and(|pid| pid != ours);
        if stale && entry.file_type()?.is_file() {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let ours = temp_path(&dir.path().join("b.json"));
        let keep = [
            "a.safetensors",
            ".hidden",
            ".a.tmp",
            ".a.tmpx1",
            "notes.tmp12",
        ];
        for name in keep
            .iter()
            .chain(&[".a.safetensors.tmp4725", ".c.json.tmp1"])
        {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(&ours, b"x").unwrap();
        remove_stale_temps(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.push(ours.file_name().unwrap().to_string_lossy().into_owned());
        want.sort();
        assert_eq!(left, want);
        remove_stale_temps(&dir.path().join("absent")).unwrap();
    }
}
