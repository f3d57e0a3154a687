//! DPO preference pairs from a JSON Lines file: one `{"prompt", "chosen", "rejected"}` object
//! per line, the prompt rendered through the tokenizer's chat template and each answer ended by
//! the end-of-sequence token.

use super::dpo::Pair;
use super::task::prompt_ids;
use super::{LabError, Result};
use crate::model::Tokenizer;
use std::path::Path;

/// The pairs of the file at `path`, tokenized for `tokenizer`.
pub fn read_pairs(path: &Path, tokenizer: &Tokenizer) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| LabError::io(path, e))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| LabError::Pairs {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "no text field `{name}`: each line needs \"prompt\", \"chosen\" and \"rejected\""
                    ))
                })
        };
        let prompt = prompt_ids(tokenizer, field("prompt")?)?;
        let answer = |s: &str| -> Result<Vec<u32>> {
            let mut ids = tokenizer.encode(s, false).map_err(|e| LabError::Tokenize {
                text: s.to_owned(),
                message: e.to_string(),
            })?;
            ids.extend(tokenizer.eos_ids.first());
            Ok(ids)
        };
        pairs.push(Pair {
            prompt,
            chosen: answer(field("chosen")?)?,
            rejected: answer(field("rejected")?)?,
        });
    }
    if pairs.is_empty() {
        return Err(LabError::Pairs {
            path: path.to_owned(),
            line: 0,
            message: "no pairs in the file".into(),
        });
    }
    Ok(pairs)
}
