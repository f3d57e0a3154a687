//! A study that cannot write (the file-size limit of the process stands in for a full disk: a
//! write past it fails with EFBIG, as one past the free space fails with ENOSPC) stops with a
//! message naming the file, loses nothing it had written, and the same command run again with
//! room to write finishes with the results of an uninterrupted study.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

const DATASET: &str = "builtin:arith?n=12";

/// `circuitdiff study` of the bundled zoo into `out`, every file the process writes limited to
/// `limit` bytes; returns (success, stderr).
fn limited_study(out: &Path, limit: u64) -> (bool, String) {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_circuitdiff"));
    cmd.args(["study", "--base"])
        .arg(zoo.join("base"))
        .arg("--tuned")
        .arg(zoo.join("grpo"))
        .args(["--dataset", DATASET, "--n", "4", "--max-new-tokens", "32"])
        .arg("--out")
        .arg(out);
    // SAFETY: between fork and exec the closure calls only `setrlimit` and `signal`, which are
    // async-signal-safe, and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Without this the kernel ends the process at the limit instead of failing the write.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = cmd.output().expect("run circuitdiff");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every complete line of the answer files is a JSON object (a torn last line is allowed: the
/// write that failed may have stopped inside it).
fn answer_lines_intact(out: &Path) -> usize {
    let mut lines = 0;
    for side in ["base", "tuned"] {
        let Ok(text) = std::fs::read_to_string(out.join("answers").join(format!("{side}.jsonl")))
        else {
            continue;
        };
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        for line in complete.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{side}: damaged line {line:?}: {e}"));
            lines += 1;
        }
    }
    lines
}

/// Temporary files of atomic writes left anywhere under `dir`.
fn temporary_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().contains(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_study_that_cannot_write_names_the_file_and_resumes_to_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let (ok, _, stderr) = common::zoo_study(DATASET, &clean);
    assert!(ok, "{stderr}");
    // Small limits stop the answers, larger ones the scores, the figures or the report.
    for limit in [600, 3_000, 10_000, 20_000, 60_000] {
        let out = tmp.path().join(format!("limited-{limit}"));
        let (ok, stderr) = limited_study(&out, limit);
        assert!(!ok, "limit {limit}: the study fitted; {stderr}");
        assert!(!stderr.contains("panicked"), "limit {limit}: {stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("limit {limit}: no error line: {stderr}"));
        assert!(
            error.contains(out.to_str().unwrap()) && error.contains("File too large"),
            "limit {limit}: the error names no file of the study: {error}"
        );
        assert_eq!(
            error.matches("File too large").count(),
            1,
            "limit {limit}: the cause is said twice: {error}"
        );
        eprintln!("limit {limit}: {error}");
        let kept = answer_lines_intact(&out);
        let leftovers = temporary_files(&out);
        assert!(leftovers.is_empty(), "limit {limit}: left {leftovers:?}");
        let (ok, _, stderr) = common::zoo_study(DATASET, &out);
        assert!(ok, "limit {limit}: the resumed study failed: {stderr}");
        for file in [
            "answers.jsonl",
            "counts.json",
            "comparison.csv",
            "base/scores.safetensors",
        ] {
            assert_eq!(
                std::fs::read(clean.join(file)).unwrap(),
                std::fs::read(out.join(file)).unwrap(),
                "limit {limit} ({kept} answers kept): {file} differs from an uninterrupted study"
            );
        }
    }
}
