//! The study's questions (method.md §4 step 1): math test sets in JSON Lines, whose field names
//! are detected per file, and a built-in synthetic arithmetic task that needs no file.
//!
//! A dataset is named by a spec string ([`parse_spec`]): a path to a `.jsonl` file, or
//! `builtin:arith` with optional parameters (`builtin:arith?n=50&seed=3&max=999&terms=3&ops=+-*`).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// Question fields tried, in this order, on the first JSON object of a file.
pub const QUESTION_FIELDS: [&str; 5] = ["question", "problem", "prompt", "input", "query"];

/// Reference (answer or worked solution) fields tried, in this order, on the first JSON object.
pub const REFERENCE_FIELDS: [&str; 5] = ["answer", "final_answer", "solution", "target", "output"];

/// Id fields tried, in this order, on every line; without one the 0-based line number is the id.
pub const ID_FIELDS: [&str; 3] = ["id", "idx", "unique_id"];

/// Longest question kept, in characters (Unicode scalar values): a longer one is skipped before
/// it is tokenized and counted in [`LoadReport::skipped_too_long`]. Far above any model context.
pub const MAX_QUESTION_CHARS: usize = 100_000;

/// Longest line read, in bytes (4 MiB): a longer line is skipped without being kept in memory
/// or parsed, and counted in [`LoadReport::skipped_too_long`].
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// The operators the built-in arithmetic task can use.
pub const ARITH_OPS: &str = "+-*";

/// Most questions a built-in spec may ask for.
pub const ARITH_MAX_N: usize = 1_000_000;

/// Most operands per built-in question.
pub const ARITH_MAX_TERMS: usize = 10;

/// Largest operand a built-in spec may ask for.
pub const ARITH_MAX_OPERAND: u32 = 1_000_000;

/// One question of a test set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// The line's `id`/`idx`/`unique_id` (JSON text for numbers), else its 0-based line number.
    pub id: String,
    /// The question text, exactly as in the file.
    pub question: String,
    /// The raw reference field: a final answer or a worked solution, to be graded against.
    /// JSON numbers are kept as their JSON text (`27.0`).
    pub reference: String,
}

/// What [`load_jsonl`] read, and what it skipped and why.
///
/// `lines == loaded + skipped_blank + skipped_invalid_json + skipped_non_utf8 +
/// skipped_missing_fields + skipped_too_long` always holds; `loaded` counts the usable questions in the whole file,
/// before `offset` and `limit` are applied (the returned vector has the selected ones).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    /// Lines in the file (a final line without a newline counts; the empty tail after a final
    /// newline does not).
    pub lines: usize,
    /// Usable questions in the file, before offset and limit.
    pub loaded: usize,
    /// Empty or whitespace-only lines.
    pub skipped_blank: usize,
    /// Lines that are not valid JSON.
    pub skipped_invalid_json: usize,
    /// Lines that are not valid UTF-8.
    pub skipped_non_utf8: usize,
    /// Valid JSON lines that are not objects, or lack the detected question or reference field
    /// (missing, null, empty, or of the wrong type).
    pub skipped_missing_fields: usize,
    /// Lines over [`MAX_LINE_BYTES`] bytes, or whose question is over [`MAX_QUESTION_CHARS`]
    /// characters (left out of `counts.json` when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_too_long: usize,
    /// Questions whose id an earlier line already had, renamed `<id>#2`, `<id>#3`, …
    /// (left out of `counts.json` when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub renamed_duplicate_ids: usize,
    /// The detected question field (`question` for the built-in task).
    pub question_field: String,
    /// The detected reference field (`reference` for the built-in task).
    pub reference_field: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Everything that can go wrong while reading or naming a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{path}: cannot read the dataset: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The first JSON object of the file has no known question or reference field.
    #[error(
        "{path}: cannot find a question field ({}) and a reference field ({}); fields found: {}. \
         Rename the fields of the file to one of these names",
        QUESTION_FIELDS.join(", "),
        REFERENCE_FIELDS.join(", "),
        if .found.is_empty() { "(none)".to_owned() } else { .found.join(", ") }
    )]
    NoFields {
        /// The file.
        path: PathBuf,
        /// The fields of its first JSON object, sorted.
        found: Vec<String>,
    },

    /// The file holds no usable question at all.
    #[error(
        "{path}: no questions: the file is empty or no line holds a JSON object with a question \
         field (question, problem, …) and a reference field (answer, solution, …); expected JSON \
         Lines, one object per line"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// A question, reference or id field holding a JSON value of the wrong type.
    #[error("{path}: line {line}: field `{field}` is {found}; expected {expected}")]
    FieldType {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The field.
        field: String,
        /// The type found, with its article (`a number`, `an object`, …).
        found: &'static str,
        /// The type expected (`a string`, `a string or a number`).
        expected: &'static str,
    },

    /// Every line that could hold a question is over a length limit.
    #[error(
        "{path}: no questions: {count} line(s) are skipped as too long (over {MAX_LINE_BYTES} \
         bytes, or a question over {MAX_QUESTION_CHARS} characters) and no other line holds \
         a question"
    )]
    TooLong {
        /// The file.
        path: PathBuf,
        /// The lines skipped as too long.
        count: usize,
    },

    /// A `builtin:` spec that cannot be parsed or whose values are out of range.
    #[error("dataset `{spec}`: {message}")]
    InvalidSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong, and the accepted values.
        message: String,
    },
}

/// Read a JSON Lines test set.
///
/// The question field (first of [`QUESTION_FIELDS`] holding a string) and the reference field
/// (first of [`REFERENCE_FIELDS`] holding a string or number) are detected on the first line
/// that is a JSON object; a missing one is a [`DatasetError::NoFields`]. Ids come from the first
/// of [`ID_FIELDS`] holding a string or number, else the 0-based line number. Lines that are
/// blank, not UTF-8, not valid JSON, not objects, or lack the detected fields (absent, null, or
/// an empty string there) are skipped and counted in the [`LoadReport`]; so are lines over
/// [`MAX_LINE_BYTES`] (never held in memory whole) and questions over [`MAX_QUESTION_CHARS`].
/// A question field that is not a string, or a reference or id field that is neither a string
/// nor a number, refuses the file with [`DatasetError::FieldType`]. An id already seen on an
/// earlier line is made unique as `<id>#2` (`#3`, … for later repeats, skipping suffixes in use)
/// and counted in [`LoadReport::renamed_duplicate_ids`]. A UTF-8 byte-order mark and `\r\n`
/// line ends are accepted. `offset` questions are then dropped and at most `limit` kept; an
/// offset past the end gives an empty vector, not an error.
///
/// # Errors
/// [`DatasetError::Io`] when the file cannot be read, [`DatasetError::NoFields`] and
/// [`DatasetError::FieldType`] as above, [`DatasetError::TooLong`] when the only lines that
/// could hold a question are too long, and [`DatasetError::Empty`] when no line yields a
/// question.
pub fn load_jsonl(
    path: &Path,
    offset: usize,
    limit: Option<usize>,
) -> Result<(Vec<Question>, LoadReport), DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut report = LoadReport::default();
    let mut fields: Option<(String, String)> = None;
    let mut questions = Vec::new();
    let mut ids = HashSet::new();
    let mut buf = Vec::new();
    let mut number = 0;
    while let Some(too_long) =
        read_bounded_line(&mut reader, &mut buf, MAX_LINE_BYTES).map_err(io)?
    {
        report.lines += 1;
        let line = Line {
            path,
            number,
            raw: &buf,
        };
        number += 1;
        if too_long {
            report.skipped_too_long += 1;
            continue;
        }
        let Some(mut question) = line.question(&mut fields, &mut report)? else {
            continue;
        };
        if !ids.insert(question.id.clone()) {
            question.id = (2..)
                .map(|k| format!("{}#{k}", question.id))
                .find(|id| !ids.contains(id))
                .unwrap_or_default();
            ids.insert(question.id.clone());
            report.renamed_duplicate_ids += 1;
        }
        questions.push(question);
    }

    report.loaded = questions.len();
    if questions.is_empty() && report.skipped_too_long > 0 {
        return Err(DatasetError::TooLong {
            path: path.to_path_buf(),
            count: report.skipped_too_long,
        });
    }
    let (Some((question_field, reference_field)), false) = (fields, questions.is_empty()) else {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    };
    report.question_field = question_field;
    report.reference_field = reference_field;
    Ok((select(questions, offset, limit), report))
}

/// Read one line into `buf` without its `\n`, keeping at most `max` bytes: `None` at the end of
/// the file, else whether the line was longer than `max` (then its bytes are read and dropped,
/// and `buf` is left empty).
fn read_bounded_line(
    reader: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let end = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..end.unwrap_or(chunk.len())];
        if !too_long && buf.len() + part.len() > max {
            too_long = true;
            *buf = Vec::new();
        }
        if !too_long {
            buf.extend_from_slice(part);
        }
        let used = end.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if end.is_some() {
            return Ok(Some(too_long));
        }
    }
}

/// One line of a JSON Lines file, at most [`MAX_LINE_BYTES`] long.
struct Line<'a> {
    path: &'a Path,
    /// 0-based.
    number: usize,
    /// Without its `\n`.
    raw: &'a [u8],
}

impl Line<'_> {
    /// The line's question, or `None` when it is skipped (counted in `report`); detects the
    /// fields on the first JSON object.
    fn question(
        &self,
        fields: &mut Option<(String, String)>,
        report: &mut LoadReport,
    ) -> Result<Option<Question>, DatasetError> {
        let raw = self.raw.strip_suffix(b"\r").unwrap_or(self.raw);
        let Ok(text) = std::str::from_utf8(raw) else {
            report.skipped_non_utf8 += 1;
            return Ok(None);
        };
        let text = if self.number == 0 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            report.skipped_blank += 1;
            return Ok(None);
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            report.skipped_invalid_json += 1;
            return Ok(None);
        };
        let Some(object) = value.as_object() else {
            report.skipped_missing_fields += 1;
            return Ok(None);
        };
        let (question_field, reference_field) = match fields {
            Some(f) => f,
            None => fields.insert(self.detect_fields(object)?),
        };
        let question = self.field(object, question_field, false)?;
        let reference = self.field(object, reference_field, true)?;
        let (Some(question), Some(reference)) = (question, reference) else {
            report.skipped_missing_fields += 1;
            return Ok(None);
        };
        if question.chars().count() > MAX_QUESTION_CHARS {
            report.skipped_too_long += 1;
            return Ok(None);
        }
        let mut id = None;
        for f in ID_FIELDS {
            if id.is_none() {
                id = self.field(object, f, true)?;
            }
        }
        Ok(Some(Question {
            id: id.unwrap_or_else(|| self.number.to_string()),
            question,
            reference,
        }))
    }

    /// The text of `field` (a string, or also a number's JSON text when `numbers`): `None` when
    /// absent, null or blank, [`DatasetError::FieldType`] for any other type.
    fn field(
        &self,
        object: &serde_json::Map<String, serde_json::Value>,
        field: &str,
        numbers: bool,
    ) -> Result<Option<String>, DatasetError> {
        let Some(value) = object.get(field).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        match value {
            serde_json::Value::String(s) => Ok(Some(s.clone()).filter(|s| !s.trim().is_empty())),
            serde_json::Value::Number(n) if numbers => Ok(Some(n.to_string())),
            other => Err(DatasetError::FieldType {
                path: self.path.to_path_buf(),
                line: self.number + 1,
                field: field.to_owned(),
                found: json_type(other),
                expected: if numbers {
                    "a string or a number"
                } else {
                    "a string"
                },
            }),
        }
    }

    /// The question and reference fields of `object` (the first JSON object of the file):
    /// [`DatasetError::FieldType`] when no question field is a string but one is present with
    /// another type (likewise for the reference), else [`DatasetError::NoFields`].
    fn detect_fields(
        &self,
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, String), DatasetError> {
        let question = QUESTION_FIELDS
            .iter()
            .find(|f| object.get(**f).is_some_and(serde_json::Value::is_string));
        let reference = REFERENCE_FIELDS
            .iter()
            .find(|f| object.get(**f).and_then(json_text).is_some());
        if let (Some(q), Some(r)) = (question, reference) {
            return Ok(((*q).to_owned(), (*r).to_owned()));
        }
        if question.is_none() {
            for f in QUESTION_FIELDS {
                self.field(object, f, false)?;
            }
        }
        if reference.is_none() {
            for f in REFERENCE_FIELDS {
                self.field(object, f, true)?;
            }
        }
        let mut found: Vec<String> = object.keys().cloned().collect();
        found.sort();
        Err(DatasetError::NoFields {
            path: self.path.to_path_buf(),
            found,
        })
    }
}

/// A JSON value's type, with its article: `a number`, `an object`, …
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A string's contents, or a number's JSON text; `None` for other JSON values.
fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Drop `offset` questions, keep at most `limit`.
fn select(questions: Vec<Question>, offset: usize, limit: Option<usize>) -> Vec<Question> {
    questions
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// The built-in synthetic arithmetic task: `n` questions such as "What is 37 + 58 - 12?".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArithSpec {
    /// Number of questions (default 200).
    pub n: usize,
    /// Seed of the generator (default 42).
    pub seed: u64,
    /// Operands are drawn uniformly from `1..=max_operand` (default 99).
    pub max_operand: u32,
    /// Operands per question (default 2).
    pub terms: usize,
    /// The operators to draw from, uniformly: a subset of `+-*` (default `+-`).
    pub ops: String,
}

impl Default for ArithSpec {
    fn default() -> Self {
        Self {
            n: 200,
            seed: 42,
            max_operand: 99,
            terms: 2,
            ops: "+-".to_owned(),
        }
    }
}

impl ArithSpec {
    /// The spec string that [`parse_spec`] turns back into this spec.
    pub fn to_spec_string(&self) -> String {
        format!(
            "builtin:arith?n={}&seed={}&max={}&terms={}&ops={}",
            self.n, self.seed, self.max_operand, self.terms, self.ops
        )
    }

    /// Check every field is in range and that no answer can overflow.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSpec`] naming the field and its accepted values.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let invalid = |message: String| DatasetError::InvalidSpec {
            spec: self.to_spec_string(),
            message,
        };
        if !(1..=ARITH_MAX_N).contains(&self.n) {
            return Err(invalid(format!(
                "n={} is out of range: ask for 1 to {ARITH_MAX_N} questions",
                self.n
            )));
        }
        if !(1..=ARITH_MAX_TERMS).contains(&self.terms) {
            return Err(invalid(format!(
                "terms={} is out of range: use 1 to {ARITH_MAX_TERMS} operands",
                self.terms
            )));
        }
        if !(1..=ARITH_MAX_OPERAND).contains(&self.max_operand) {
            return Err(invalid(format!(
                "max={} is out of range: use 1 to {ARITH_MAX_OPERAND}",
                self.max_operand
            )));
        }
        let mut seen = BTreeSet::new();
        for c in self.ops.chars() {
            if !ARITH_OPS.contains(c) {
                return Err(invalid(format!(
                    "ops=`{}` has `{c}`: use a non-empty subset of `{ARITH_OPS}`",
                    self.ops
                )));
            }
            if !seen.insert(c) {
                return Err(invalid(format!(
                    "ops=`{}` repeats `{c}`: list each operator once",
                    self.ops
                )));
            }
        }
        if seen.is_empty() {
            return Err(invalid(format!(
                "ops is empty: use a non-empty subset of `{ARITH_OPS}`"
            )));
        }
        if seen.contains(&'*') {
            // |result| <= max(terms, max_operand^terms), so this bound rules out overflow.
            let fits = u32::try_from(self.terms)
                .ok()
                .and_then(|t| u128::from(self.max_operand).checked_pow(t))
                .is_some_and(|p| p <= i128::MAX as u128);
            if !fits {
                return Err(invalid(format!(
                    "with `*`, max^terms = {}^{} would overflow: lower max or terms",
                    self.max_operand, self.terms
                )));
            }
        }
        Ok(())
    }
}

/// Generate the built-in arithmetic questions of `spec`.
///
/// Deterministic for a spec: one `StdRng` seeded with `spec.seed` draws, per question, the
/// operands (`u32` in `1..=max_operand`) then the operators, so a smaller `n` gives a prefix of
/// a larger one. Only `u32` draws are made, so the questions are the same on every platform, but
/// they depend on the `rand` version (0.9: ChaCha12 and its uniform integer sampling); a `rand`
/// upgrade may change them. Ids are `arith-<seed>-<i>`; `reference` is the exact integer value
/// with the usual precedence (`*` before `+` and `-`), e.g. `"83"` or `"-46"`.
///
/// Call [`ArithSpec::validate`] first: this function does not check the spec; it ignores
/// characters of `ops` other than `+-*` (using `+` if none is left), treats `max_operand` 0 as 1
/// and `terms` 0 as 1, and leaves out a question whose value would overflow `i128`.
pub fn arithmetic(spec: &ArithSpec) -> Vec<Question> {
    use rand::{Rng as _, SeedableRng as _};

    let mut ops: Vec<char> = spec
        .ops
        .chars()
        .filter(|c| ARITH_OPS.contains(*c))
        .collect();
    if ops.is_empty() {
        ops.push('+');
    }
    let op_count = u32::try_from(ops.len()).unwrap_or(1);
    let max = spec.max_operand.max(1);
    let terms = spec.terms.max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut questions = Vec::with_capacity(spec.n.min(1 << 16));
    for i in 0..spec.n {
        let operands: Vec<u32> = (0..terms).map(|_| rng.random_range(1..=max)).collect();
        let operators: Vec<char> = (1..terms)
            .map(|_| {
                let k = rng.random_range(0..op_count) as usize;
                ops.get(k).copied().unwrap_or('+')
            })
            .collect();
        let Some(value) = evaluate(&operands, &operators) else {
            continue;
        };
        let mut expression = operands.first().map(u32::to_string).unwrap_or_default();
        for (op, x) in operators.iter().zip(operands.iter().skip(1)) {
            expression.push_str(&format!(" {op} {x}"));
        }
        questions.push(Question {
            id: format!("arith-{}-{i}", spec.seed),
            question: format!("What is {expression}?"),
            reference: value.to_string(),
        });
    }
    questions
}

/// `operands[0] operators[0] operands[1] …` with `*` before `+`/`-`; `None` on overflow.
fn evaluate(operands: &[u32], operators: &[char]) -> Option<i128> {
    let mut rest = operands.iter().map(|&x| i128::from(x));
    let mut sum: i128 = 0;
    let mut sign: i128 = 1;
    let mut product = rest.next()?;
    for (&op, x) in operators.iter().zip(rest) {
        match op {
            '*' => product = product.checked_mul(x)?,
            _ => {
                sum = sum.checked_add(sign.checked_mul(product)?)?;
                sign = if op == '-' { -1 } else { 1 };
                product = x;
            }
        }
    }
    sum.checked_add(sign.checked_mul(product)?)
}

/// Where the questions come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DatasetSpec {
    /// The built-in arithmetic task.
    Builtin(ArithSpec),
    /// A JSON Lines file.
    File(PathBuf),
}

impl std::fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(spec) => f.write_str(&spec.to_spec_string()),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Parse a dataset spec: `builtin:arith`, `builtin:arith?n=50&seed=3&max=999&terms=3&ops=+-*`
/// (any subset of the keys `n`, `seed`, `max`, `terms`, `ops`, each at most once; values are
/// taken literally, not URL-decoded), or else a file path. A file whose name starts with
/// `builtin:` can be given as `./builtin:…`. The file is not opened here.
///
/// # Errors
/// [`DatasetError::InvalidSpec`] for an empty spec, an unknown built-in, an unknown or repeated
/// key, or a value that does not parse or is out of range ([`ArithSpec::validate`]).
pub fn parse_spec(s: &str) -> Result<DatasetSpec, DatasetError> {
    let invalid = |message: String| DatasetError::InvalidSpec {
        spec: s.to_owned(),
        message,
    };
    if s.trim().is_empty() {
        return Err(invalid(
            "no dataset given: pass a JSON Lines file or `builtin:arith`".to_owned(),
        ));
    }
    let Some(rest) = s.strip_prefix("builtin:") else {
        return Ok(DatasetSpec::File(PathBuf::from(s)));
    };
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    if name != "arith" {
        return Err(invalid(format!(
            "unknown built-in dataset `{name}`: the only built-in is `builtin:arith` \
             (parameters n, seed, max, terms, ops, e.g. `builtin:arith?n=50&ops=+-*`)"
        )));
    }
    let mut spec = ArithSpec::default();
    let mut seen = BTreeSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(invalid(format!(
                "`{pair}` is not `key=value`; write e.g. `builtin:arith?n=50&seed=3`"
            )));
        };
        if !seen.insert(key) {
            return Err(invalid(format!("`{key}` is given twice; give it once")));
        }
        let bad = |what: &str| invalid(format!("`{key}={value}`: {key} must be {what}"));
        match key {
            "n" => {
                spec.n = value
                    .parse()
                    .map_err(|_| bad("a whole number of questions"))?
            }
            "seed" => spec.seed = value.parse().map_err(|_| bad("a whole number from 0"))?,
            "max" => {
                spec.max_operand = value
                    .parse()
                    .map_err(|_| bad("a whole number, the largest operand"))?;
            }
            "terms" => {
                spec.terms = value
                    .parse()
                    .map_err(|_| bad("a whole number of operands"))?;
            }
            "ops" => value.clone_into(&mut spec.ops),
            _ => {
                return Err(invalid(format!(
                    "unknown parameter `{key}`: use n, seed, max, terms or ops"
                )))
            }
        }
    }
    spec.validate().map_err(|e| match e {
        DatasetError::InvalidSpec { message, .. } => invalid(message),
        other => other,
    })?;
    Ok(DatasetSpec::Builtin(spec))
}

/// Load the questions of either kind of spec, applying `offset` then `limit`.
///
/// For the built-in task the report has `lines == loaded == n`, `question_field` `question`
/// and `reference_field` `reference`.
///
/// # Errors
/// Those of [`load_jsonl`], and [`DatasetError::InvalidSpec`] for a built-in spec that fails
/// [`ArithSpec::validate`].
pub fn load(
    spec: &DatasetSpec,
    offset: usize,
    limit: Option<usize>,
) -> Result<(Vec<Question>, LoadReport), DatasetError> {
    match spec {
        DatasetSpec::File(path) => load_jsonl(path, offset, limit),
        DatasetSpec::Builtin(arith) => {
            arith.validate()?;
            let questions = arithmetic(arith);
            let report = LoadReport {
                lines: questions.len(),
                loaded: questions.len(),
                question_field: "question".to_owned(),
                reference_field: "reference".to_owned(),
                ..LoadReport::default()
            };
            Ok((select(questions, offset, limit), report))
        }
    }
}
