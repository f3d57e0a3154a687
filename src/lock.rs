//! The advisory lock on an output folder: one circuitdiff process writes a folder at a time.
//!
//! The writer holds an exclusive `flock(2)` on the folder's lock file [`LOCK_FILE`], which
//! records its pid and command line. A second writer is refused at once, naming the holder.
//! The kernel drops the lock when its process ends, however it ends, so the lock file a killed
//! process leaves behind is taken over silently; a writer that finishes removes it.
//!
//! A folder inside one that another process holds (a study's `base/` while the study runs) is
//! refused too. This process's own locks are kept in a list, so that its inner writers (the
//! studies of `demo`) are not refused, and so that an exit from a signal handler
//! ([`remove_held_files`]) leaves no lock file behind.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The lock file's name inside a folder being written (hidden, and skipped by the checks that
/// a folder to be claimed is empty).
pub const LOCK_FILE: &str = ".circuitdiff.lock";

/// An output folder that could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is being written by another circuitdiff process ({holder}); wait for it to finish or choose another output folder (--out)", dir.display())]
    Held { dir: PathBuf, holder: Holder },
    #[error("{} is inside {}, which is being written by another circuitdiff process ({holder}); wait for it to finish or choose another output folder (--out)", dir.display(), above.display())]
    HeldAbove {
        dir: PathBuf,
        above: PathBuf,
        holder: Holder,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The process holding a lock, as its lock file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `None` when the file records none (the holder is still writing it).
    pub pid: Option<u32>,
    /// The holder's command line; empty when unknown.
    pub command: String,
}

impl Holder {
    /// The record of `file`, a lock file another process locks.
    fn read(file: &mut File) -> Self {
        let mut text = String::new();
        // The holder writes its record right after taking the lock: wait briefly for it.
        for _ in 0..20 {
            text.clear();
            let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
            if read.is_ok() && text.ends_with('\n') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (pid, command) = text.split_once('\n').unwrap_or(("", ""));
        Self {
            pid: pid.trim().parse().ok(),
            command: command.trim().to_owned(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => write!(f, "pid unknown")?,
        }
        if !self.command.is_empty() {
            write!(f, ": {}", self.command)?;
        }
        Ok(())
    }
}

/// The lock on an output folder, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    /// The open lock file; closing it releases the lock.
    _file: File,
    path: PathBuf,
    /// The folder, when taking the lock created it (removed again if left empty).
    created: Option<PathBuf>,
}

impl DirLock {
    /// Lock `dir` (created when absent) for this process, or refuse at once when another
    /// process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LockError::Io { path, source }
        };
        check_above(dir)?;
        let created = (!dir.exists()).then(|| dir.to_owned());
        let path = std::path::absolute(dir).map_err(io(dir))?.join(LOCK_FILE);
        // A finishing holder removes the file it locked, so the file opened here may be gone
        // from the folder by the time it is locked: then lock the folder's new one.
        for _ in 0..100 {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let mut file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_owned(),
                        holder: Holder::read(&mut file),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
            if !is_at(&file, &path) {
                continue;
            }
            let record = format!("{}\n{}\n", std::process::id(), command_line());
            file.set_len(0)
                .and_then(|()| file.write_all(record.as_bytes()))
                .map_err(io(&path))?;
            held().push(path.clone());
            return Ok(Self {
                _file: file,
                path,
                created,
            });
        }
        Err(io(&path)(std::io::Error::other(
            "the lock file keeps being replaced",
        )))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Removed while still locked (the file is closed after this), so that no other
        // process locks a file that is no longer the folder's. A file that cannot be removed
        // is taken over by the next writer.
        let _ = std::fs::remove_file(&self.path);
        held().retain(|p| *p != self.path);
        if let Some(dir) = &self.created {
            // Only an empty folder is removed: a writer refused before writing anything.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The lock files this process holds (absolute paths).
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held() -> MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remove the lock files this process holds, for an exit that skips their owners' drops (a
/// second Ctrl-C); the kernel drops the locks themselves when the process ends.
pub fn remove_held_files() {
    for path in held().iter() {
        let _ = std::fs::remove_file(path);
    }
}

/// Refuse `dir` when a folder above it is locked by another process.
fn check_above(dir: &Path) -> Result<(), LockError> {
    let Ok(dir) = std::path::absolute(dir) else {
        return Ok(());
    };
    for above in dir.ancestors().skip(1) {
        let path = above.join(LOCK_FILE);
        if held().contains(&path) {
            continue;
        }
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        // A shared lock is refused only while a writer holds the file.
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::HeldAbove {
                    dir: dir.clone(),
                    above: above.to_owned(),
                    holder: Holder::read(&mut file),
                })
            }
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    Ok(())
}

/// Whether `file` is the file at `path` (not one removed from there since it was opened).
fn is_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// This process's command line, the program by its file name.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_this_process_and_a_released_one_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let held = DirLock::acquire(&dir).unwrap();
        assert!(dir.join(LOCK_FILE).is_file());
        let refused = DirLock::acquire(&dir).unwrap_err();
        let LockError::Held { holder, .. } = &refused else {
            panic!("{refused}");
        };
        assert_eq!(holder.pid, Some(std::process::id()));
        let message = refused.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(held);
        // The folder it created holds nothing else: both are gone.
        assert!(!dir.exists());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kept"), b"x").unwrap();
        let again = DirLock::acquire(&dir).unwrap();
        drop(again);
        assert!(!dir.join(LOCK_FILE).exists());
        assert!(dir.join("kept").is_file());
    }

    #[test]
    fn a_folder_inside_one_another_process_holds_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let study = tmp.path().join("study");
        std::fs::create_dir_all(&study).unwrap();
        // Another process's lock: a flock on another open file, not in this process's list.
        let other = File::create(study.join(LOCK_FILE)).unwrap();
        other.lock().unwrap();
        std::fs::write(study.join(LOCK_FILE), b"4242\ncircuitdiff study\n").unwrap();
        let refused = DirLock::acquire(&study.join("base")).unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, LockError::HeldAbove { .. }), "{message}");
        assert!(message.contains("base is inside"), "{message}");
        assert!(
            message.contains("(pid 4242: circuitdiff study)"),
            "{message}"
        );
        assert!(!study.join("base").exists(), "nothing is created");
        drop(other);
        // This process's own lock of the folder does not refuse its inner writers.
        let outer = DirLock::acquire(&study).unwrap();
        let inner = DirLock::acquire(&study.join("base")).unwrap();
        drop((inner, outer));
    }

    #[test]
    fn a_lock_file_nobody_holds_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(LOCK_FILE),
            b"999999999\ncircuitdiff score\n",
        )
        .unwrap();
        let lock = DirLock::acquire(tmp.path()).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(LOCK_FILE)).unwrap();
        assert!(
            text.starts_with(&format!("{}\n", std::process::id())),
            "{text}"
        );
        drop(lock);
    }
}
