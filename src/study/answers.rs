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

/// Read the answers of a file written for the questions `ids`, in order: answers are appended in
/// question order, so line j must be the complete answer to question `ids[j]`. From the first
/// line that is not (torn by a killed process, damaged, an answer to another question or a
/// repeated one) the file is cut, with a warning naming the file, the line and the reason, so
/// that those questions are answered again and appending continues cleanly.
pub fn read_and_repair(path: &Path, ids: &[&str]) -> std::io::Result<Vec<Answer>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut answers = Vec::new();
    let mut good = 0;
    for (j, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        match check_line(line, ids.get(j).copied()) {
            Ok(a) => {
                answers.push(a);
                good += line.len();
            }
            Err(reason) => {
                log::warn!(
                    "{}: line {}: {reason}; answering again from this question on",
                    path.display(),
                    j + 1
                );
                break;
            }
        }
    }
    if good < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    Ok(answers)
}

/// The answer on one line of an answers file where question `expected` belongs, or why it is
/// not that answer.
fn check_line(line: &[u8], expected: Option<&str>) -> Result<Answer, String> {
    if !line.ends_with(b"\n") {
        return Err("incomplete (an interrupted write)".into());
    }
    let a: Answer =
        serde_json::from_slice(line).map_err(|e| format!("not a complete answer ({e})"))?;
    match expected {
        Some(id) if a.id == id => Ok(a),
        Some(id) => Err(format!(
            "the answer to question `{}` where `{id}` belongs (damaged, repeated, or not of this study)",
            a.id
        )),
        None => Err(format!(
            "an answer to question `{}` after the study's last question",
            a.id
        )),
    }
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
