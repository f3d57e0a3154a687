//! Generated answers on disk: one JSON line per answer with the SHA-256 of its fields, appended
//! and synced as each completes, so that a killed study loses at most the answer in progress and
//! a damaged line is found.

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
    /// The grade of an answer brought from elsewhere, as its file gives it (its `grade` is
    /// circuitdiff's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_correct: Option<bool>,
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
    let stored: Stored =
        serde_json::from_slice(line).map_err(|e| format!("not a complete answer ({e})"))?;
    let a = stored.answer;
    match stored.sha256 {
        None => return Err("no checksum (written by an older version)".into()),
        Some(sum) if sum != checksum(&a).map_err(|e| e.to_string())? => {
            return Err("checksum mismatch (damaged)".into())
        }
        Some(_) => {}
    }
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

/// An answer as a line of an answers file stores it: its fields and the SHA-256 of their JSON.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    answer: &'a Answer,
    sha256: String,
}

/// A line as read back (an older file has no checksum).
#[derive(Deserialize)]
struct Stored {
    #[serde(flatten)]
    answer: Answer,
    sha256: Option<String>,
}

/// The hex SHA-256 of `answer`'s compact JSON.
fn checksum(answer: &Answer) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    Ok(Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The line of an answers file that stores `answer`, newline included.
pub fn line(answer: &Answer) -> std::io::Result<Vec<u8>> {
    let stored = Line {
        answer,
        sha256: checksum(answer)?,
    };
    let mut line = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Append one answer and sync it to disk.
pub fn append(path: &Path, answer: &Answer) -> std::io::Result<()> {
    let line = line(answer)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}
