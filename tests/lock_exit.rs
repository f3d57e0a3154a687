//! An exit that skips the drops of the output locks (a second Ctrl-C exits from the signal
//! handler) first removes their lock files. Alone in its process: the list of held locks is
//! the process's.

use circuitdiff::lock::{remove_held_files, DirLock, LOCK_FILE};

#[test]
fn the_lock_files_held_are_removed_before_an_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let (outer, inner) = (tmp.path().join("demo"), tmp.path().join("demo/study"));
    let locks = [
        DirLock::acquire(&outer).unwrap(),
        DirLock::acquire(&inner).unwrap(),
    ];
    assert!(outer.join(LOCK_FILE).is_file() && inner.join(LOCK_FILE).is_file());
    remove_held_files();
    assert!(!outer.join(LOCK_FILE).exists());
    assert!(!inner.join(LOCK_FILE).exists());
    drop(locks);
}
