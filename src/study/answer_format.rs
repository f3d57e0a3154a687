//! The formats of answers brought from elsewhere and how each line of them is read: the one
//! owner of their field names.
//!
//! | format | one line | answer | given grade |
//! |---|---|---|---|
//! | `study` | `math_eval.py` output: `idx`, `question`, `gt`, `code`, `pred`, `score` | `code[0]` | `score[0]` |
//! | `lm-eval` | lm-evaluation-harness `samples_*.jsonl`: `doc_id`, `doc`, `arguments`, `resps`, `filtered_resps`, `target` | `resps[0][0]` | `exact_match` |
//! | `vllm` | a vLLM `RequestOutput`: `prompt`, `prompt_token_ids`, `outputs[0].text`, `outputs[0].token_ids` | `outputs[0]` | none |
//! | `circuitdiff` | circuitdiff's `answers.jsonl` (both models) or `answers/<side>.jsonl` | the side's answer | its grade |

use super::answers::Answer;
use crate::side::Side;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A format of answers brought from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerFormat {
    /// The study's own evaluation output (`math_eval.py`).
    Study,
    /// lm-evaluation-harness sample dumps (`--log_samples`).
    LmEval,
    /// vLLM `RequestOutput`s written as JSON.
    Vllm,
    /// circuitdiff's `answers.jsonl` or `answers/<side>.jsonl`.
    Circuitdiff,
}

impl std::str::FromStr for AnswerFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown answers format `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl AnswerFormat {
    /// Every format.
    pub const ALL: [Self; 4] = [Self::Study, Self::LmEval, Self::Vllm, Self::Circuitdiff];

    /// The format's name, as `--answers-format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Study => "study",
            Self::LmEval => "lm-eval",
            Self::Vllm => "vllm",
            Self::Circuitdiff => "circuitdiff",
        }
    }

    /// The format whose fields the JSON object `line` has.
    pub fn detect(line: &Value) -> Option<Self> {
        let has = |k: &str| line.get(k).is_some();
        if (has("base") || has("tuned")) && has("reference") || has("answer") && has("sha256") {
            Some(Self::Circuitdiff)
        } else if has("resps") && has("doc") {
            Some(Self::LmEval)
        } else if has("outputs") && (has("prompt") || has("prompt_token_ids")) {
            Some(Self::Vllm)
        } else if has("code") && has("pred") && (has("gt") || has("question")) {
            Some(Self::Study)
        } else {
            None
        }
    }

    /// Whether a file of this format holds both models' answers.
    pub fn holds_both(self) -> bool {
        self == Self::Circuitdiff
    }
}

/// One answer read from a file, before it is matched to a question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForeignAnswer {
    /// The question's id (`idx`, `doc_id`, `id`), as JSON text for numbers.
    pub id: Option<String>,
    /// The question's text.
    pub question: Option<String>,
    /// The prompt the model was given, when the file has it.
    pub prompt: Option<String>,
    pub prompt_ids: Option<Vec<u32>>,
    pub answer_ids: Option<Vec<u32>>,
    pub text: String,
    /// The grade the file gives the answer.
    pub given_correct: Option<bool>,
    /// The model's fingerprint, when the file records one.
    pub fingerprint: Option<String>,
    /// circuitdiff's whole answer, when the file is circuitdiff's.
    pub native: Option<Answer>,
}

/// Why one line could not be read as an answer of its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no field `{0}`")]
    Missing(&'static str),
    #[error("not circuitdiff's answer line ({0})")]
    Native(String),
}

/// A JSON value as an id: strings as they are, numbers as their JSON text.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON array of token ids.
fn ids(v: Option<&Value>) -> Option<Vec<u32>> {
    v?.as_array()?
        .iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect()
}

/// A grade given as a boolean or a number (1 correct, 0 not).
fn given(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|x| x > 0.5),
        _ => None,
    }
}

/// The first string of a value that is a string or a (nested) list whose first item is one.
fn first_string(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Array(a) => a.first().and_then(first_string),
        _ => None,
    }
}

/// The question text of a document: the fields a dataset's question is read from.
fn question_of(doc: &Value) -> Option<String> {
    super::dataset::QUESTION_FIELDS
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

impl AnswerFormat {
    /// Read `line` as an answer of this format for `side` (`None`: a circuitdiff row without
    /// that side's answer).
    pub fn read(self, line: &Value, side: Side) -> Result<Option<ForeignAnswer>, LineError> {
        Ok(Some(match self {
            Self::Study => study(line)?,
            Self::LmEval => lm_eval(line)?,
            Self::Vllm => vllm(line)?,
            Self::Circuitdiff => return circuitdiff(line, side),
        }))
    }
}

fn study(line: &Value) -> Result<ForeignAnswer, LineError> {
    let text = line
        .get("code")
        .and_then(first_string)
        .ok_or(LineError::Missing("code"))?;
    Ok(ForeignAnswer {
        id: line.get("idx").and_then(id_text),
        question: line
            .get("question")
            .or_else(|| line.get("problem"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        text: text.to_owned(),
        given_correct: given(line.get("score").and_then(|s| s.get(0).or(Some(s)))),
        fingerprint: line
            .get("fingerprint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..ForeignAnswer::default()
    })
}

fn lm_eval(line: &Value) -> Result<ForeignAnswer, LineError> {
    let text = line
        .get("resps")
        .and_then(first_string)
        .ok_or(LineError::Missing("resps"))?;
    let doc = line.get("doc").ok_or(LineError::Missing("doc"))?;
    // Older harnesses write `arguments: [[prompt, gen_kwargs]]`, newer ones
    // `arguments: {"gen_args_0": {"arg_0": prompt, …}}`.
    let prompt = line.get("arguments").and_then(|a| match a {
        Value::Object(m) => m
            .values()
            .next()
            .and_then(|g| g.get("arg_0"))
            .and_then(Value::as_str),
        other => first_string(other),
    });
    Ok(ForeignAnswer {
        id: doc
            .get("id")
            .or_else(|| doc.get("idx"))
            .or_else(|| doc.get("unique_id"))
            .or_else(|| line.get("doc_id"))
            .and_then(id_text),
        question: question_of(doc),
        prompt: prompt.map(str::to_owned),
        text: text.to_owned(),
        given_correct: given(line.get("exact_match").or_else(|| line.get("acc"))),
        ..ForeignAnswer::default()
    })
}

fn vllm(line: &Value) -> Result<ForeignAnswer, LineError> {
    let output = line
        .get("outputs")
        .and_then(|o| o.get(0))
        .ok_or(LineError::Missing("outputs"))?;
    let text = output
        .get("text")
        .and_then(Value::as_str)
        .ok_or(LineError::Missing("outputs[0].text"))?;
    Ok(ForeignAnswer {
        id: line
            .get("request_id")
            .or_else(|| line.get("id"))
            .and_then(id_text),
        question: line
            .get("question")
            .and_then(Value::as_str)
            .map(str::to_owned),
        prompt: line
            .get("prompt")
            .and_then(Value::as_str)
            .map(str::to_owned),
        prompt_ids: ids(line.get("prompt_token_ids")),
        answer_ids: ids(output.get("token_ids")),
        text: text.to_owned(),
        ..ForeignAnswer::default()
    })
}

/// A line of `answers.jsonl` (a row of both sides) or of `answers/<side>.jsonl`.
fn circuitdiff(line: &Value, side: Side) -> Result<Option<ForeignAnswer>, LineError> {
    let native = |v: &Value| {
        serde_json::from_value::<Answer>(v.clone()).map_err(|e| LineError::Native(e.to_string()))
    };
    let (answer, question) = if let Some(inner) = line.get("answer") {
        (native(inner)?, None)
    } else {
        // A row of answers.jsonl: `id`, `question`, `reference` and each side's answer.
        let answer = line
            .get(side.name())
            .ok_or(LineError::Missing("base/tuned"))?;
        if answer.is_null() {
            return Ok(None);
        }
        let question = line.get("question").and_then(Value::as_str);
        (native(answer)?, question.map(str::to_owned))
    };
    Ok(Some(ForeignAnswer {
        id: Some(answer.id.clone()),
        question,
        prompt: Some(answer.prompt.clone()),
        prompt_ids: Some(answer.prompt_ids.clone()),
        answer_ids: Some(answer.answer_ids.clone()),
        text: answer.text.clone(),
        given_correct: Some(answer.grade.correct),
        fingerprint: None,
        native: Some(answer),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_are_told_by_their_fields() {
        let study = json!({"idx": 3, "question": "1+1?", "gt": "2", "code": ["2"], "pred": ["2"], "score": [true]});
        let lm = json!({"doc_id": 0, "doc": {"question": "q"}, "resps": [["a"]], "filtered_resps": ["a"], "target": "t"});
        let vllm = json!({"prompt": "p", "outputs": [{"text": "a"}]});
        let row =
            json!({"id": "x", "question": "q", "reference": "r", "base": null, "tuned": null});
        let found = [&study, &lm, &vllm, &row].map(AnswerFormat::detect);
        assert_eq!(
            found,
            [
                Some(AnswerFormat::Study),
                Some(AnswerFormat::LmEval),
                Some(AnswerFormat::Vllm),
                Some(AnswerFormat::Circuitdiff)
            ]
        );
        assert_eq!(AnswerFormat::detect(&json!({"question": "q"})), None);
        let a = AnswerFormat::Study
            .read(&study, Side::Base)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.id.as_deref(), a.text.as_str(), a.given_correct),
            (Some("3"), "2", Some(true))
        );
        let a = AnswerFormat::LmEval.read(&lm, Side::Base).unwrap().unwrap();
        assert_eq!(
            (a.id.as_deref(), a.question.as_deref()),
            (Some("0"), Some("q"))
        );
        let none = AnswerFormat::Circuitdiff.read(&row, Side::Tuned).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn vllm_outputs_keep_their_token_ids() {
        let line = json!({"request_id": "7", "prompt": "Q", "prompt_token_ids": [1, 2],
            "outputs": [{"text": "ab", "token_ids": [3, 4], "finish_reason": "stop"}]});
        let a = AnswerFormat::Vllm
            .read(&line, Side::Tuned)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.id.as_deref(), a.prompt_ids, a.answer_ids, a.given_correct),
            (Some("7"), Some(vec![1, 2]), Some(vec![3, 4]), None)
        );
        let no_text = json!({"prompt": "Q", "outputs": [{"token_ids": [3]}]});
        assert_eq!(
            AnswerFormat::Vllm.read(&no_text, Side::Base),
            Err(LineError::Missing("outputs[0].text"))
        );
        assert_eq!("lm-eval".parse(), Ok(AnswerFormat::LmEval));
        assert!("csv"
            .parse::<AnswerFormat>()
            .unwrap_err()
            .contains("study, lm-eval"));
    }

    #[test]
    fn lm_eval_prompts_of_both_argument_shapes() {
        for arguments in [
            json!([["the prompt", {"until": ["\n"]}]]),
            json!({"gen_args_0": {"arg_0": "the prompt", "arg_1": {}}}),
        ] {
            let line = json!({"doc": {"problem": "p"}, "arguments": arguments, "resps": [["x"]], "exact_match": 0.0});
            let a = AnswerFormat::LmEval
                .read(&line, Side::Base)
                .unwrap()
                .unwrap();
            assert_eq!(a.prompt.as_deref(), Some("the prompt"));
            assert_eq!(a.given_correct, Some(false));
        }
    }
}
