//! Generated answers on disk: one JSON line per answer, appended and synced as each completes,
//! so that a killed study loses at most the answer in progress.

use super::grade::Grade;
use crate::model::StopReason;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

/// One model's answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub id: String,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub answer_ids: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    pub grade: Grade,
}

/// Read the complete answers of a file; a torn last line (a process killed mid-write) is cut off
/// so that appending continues cleanly.
pub fn read_and_repair(path: &Path) -> std::io::Result<Vec<Answer>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut answers = Vec::new();
    let mut good = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        match serde_json::from_slice::<Answer>(line) {
            Ok(a) => {
                answers.push(a);
                good += line.len();
            }
            Err(_) => break,
        }
    }
    if good < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    Ok(answers)
}

/// Append one answer and sync it to disk.
pub fn append(path: &Path, answer: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}
