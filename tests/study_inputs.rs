//! The study's inputs (method.md §4 steps 1–2): the six shared math test sets
//! (`../shared/data/*/test.jsonl`, counts from its README), malformed JSON Lines, the built-in
//! arithmetic task and its spec strings, the fixed prompt templates (checked against the text of
//! `../shared/docs/method.md`) and Hugging Face chat templates rendered with minijinja (expected
//! strings produced with Python jinja2 3.1.6 configured as `transformers` does: sandboxed,
//! `trim_blocks`, `lstrip_blocks`, loop controls).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::study::dataset::{
    arithmetic, load, load_jsonl, parse_spec, ArithSpec, DatasetError, DatasetSpec, LoadReport,
    Question,
};
use circuitdiff::study::prompt::{render, PromptError, Template};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `../shared/<rel>` next to the crate.
fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

/// The test file of shared data set `name`.
fn shared_data(name: &str) -> PathBuf {
    let path = shared(&format!("data/{name}/test.jsonl"));
    assert!(
        path.is_file(),
        "{} is missing: the shared math data sets must sit next to the crate",
        path.display()
    );
    path
}

/// Write `bytes` to a fresh temporary file and return it (kept alive by the returned guard).
fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut f = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("create temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush temp file");
    f
}

/// Evaluate "a op b op c …" with `*` before `+`/`-`, independently of the library: collapse the
/// products on a stack, then add the signed terms.
fn eval_expression(expr: &str) -> i128 {
    let tokens: Vec<&str> = expr.split_whitespace().collect();
    assert!(tokens.len() % 2 == 1, "malformed expression {expr:?}");
    let num = |t: &str| -> i128 { t.parse().unwrap_or_else(|_| panic!("bad operand {t:?}")) };
    let mut terms: Vec<i128> = vec![num(tokens[0])];
    for pair in tokens[1..].chunks(2) {
        let x = num(pair[1]);
        match pair[0] {
            "*" => {
                let last = terms.pop().expect("a term");
                terms.push(last * x);
            }
            "+" => terms.push(x),
            "-" => terms.push(-x),
            op => panic!("unknown operator {op:?} in {expr:?}"),
        }
    }
    terms.iter().sum()
}

/// The expression of "What is <expr>?".
fn expression(q: &Question) -> &str {
    q.question
        .strip_prefix("What is ")
        .and_then(|s| s.strip_suffix('?'))
        .unwrap_or_else(|| panic!("unexpected question text {:?}", q.question))
}

// ---------------------------------------------------------------------------------------------
// The shared data sets

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn shared_datasets_load_with_detected_fields_and_readme_counts() {
    // (folder, lines in the README table, question field, reference field, first id,
    //  start of the first question, end of the first reference)
    let cases = [
        (
            "gsm8k",
            1319,
            "question",
            "answer",
            "0",
            "Janet\u{2019}s ducks lay 16 eggs",
            "#### 18",
        ),
        (
            "math500",
            500,
            "problem",
            "answer",
            "test/precalculus/807.json",
            "Convert the point $(0,3)$",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        (
            "minerva_math",
            272,
            "problem",
            "solution",
            "0",
            "Each of the two Magellan telescopes",
            "\\boxed{1.6} \\mathrm{~cm}\n\\]",
        ),
        (
            "college_math",
            2818,
            "question",
            "answer",
            "0",
            "Simplify: $-10-4(n-5)$",
            "$10-4 n$",
        ),
        (
            "aime24",
            30,
            "question",
            "answer",
            "60",
            "Every morning Aya goes for",
            "204",
        ),
        (
            "amc23",
            40,
            "question",
            "answer",
            "0",
            "Cities $A$ and $B$ are $45$ miles apart",
            "27.0",
        ),
    ];
    for (name, lines, qf, rf, first_id, q_start, r_end) in cases {
        let (questions, report) =
            load_jsonl(&shared_data(name), 0, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = LoadReport {
            lines,
            loaded: lines,
            question_field: qf.to_owned(),
            reference_field: rf.to_owned(),
            ..LoadReport::default()
        };
        assert_eq!(report, expected, "{name}: load report");
        assert_eq!(questions.len(), lines, "{name}: number of questions");
        let first = &questions[0];
        assert_eq!(first.id, first_id, "{name}: first id");
        assert!(
            first.question.starts_with(q_start),
            "{name}: first question {:?} should start with {q_start:?}",
            first.question
        );
        assert!(
            first.reference.ends_with(r_end),
            "{name}: first reference {:?} should end with {r_end:?}",
            first.reference
        );
        let mut ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), lines, "{name}: ids are unique");
        assert!(
            questions
                .iter()
                .all(|q| !q.question.trim().is_empty() && !q.reference.trim().is_empty()),
            "{name}: every question and reference is non-empty"
        );
    }
}

#[test]
fn college_math_ids_are_line_numbers() {
    let (questions, _) = load_jsonl(&shared_data("college_math"), 0, None).expect("load");
    for (i, q) in questions.iter().enumerate() {
        assert_eq!(q.id, i.to_string(), "college_math has no id field");
    }
}

#[test]
fn offset_and_limit_select_a_window_of_loaded_questions() {
    let path = shared_data("gsm8k");
    let (all, full_report) = load_jsonl(&path, 0, None).expect("load all");

    let (window, report) = load_jsonl(&path, 10, Some(5)).expect("load window");
    assert_eq!(window, all[10..15].to_vec(), "offset 10, limit 5");
    assert_eq!(
        report, full_report,
        "the report counts the whole file, not the window"
    );

    let (head, _) = load_jsonl(&path, 0, Some(3)).expect("limit only");
    assert_eq!(head, all[..3].to_vec(), "limit 3");

    let (tail, _) = load_jsonl(&path, 1315, Some(10)).expect("window past the end");
    assert_eq!(
        tail,
        all[1315..].to_vec(),
        "only 4 questions are left after 1315"
    );

    let (none, _) = load_jsonl(&path, 5000, None).expect("offset past the end");
    assert!(none.is_empty(), "an offset past the end gives no questions");

    let (zero, _) = load_jsonl(&path, 0, Some(0)).expect("limit 0");
    assert!(zero.is_empty(), "limit 0 gives no questions");

    let spec = parse_spec(path.to_str().expect("utf-8 path")).expect("file spec");
    assert_eq!(spec, DatasetSpec::File(path.clone()));
    let (via_spec, _) = load(&spec, 10, Some(5)).expect("load via spec");
    assert_eq!(via_spec, window, "load(File) is load_jsonl");
}

// ---------------------------------------------------------------------------------------------
// Malformed input

#[test]
fn empty_and_blank_files_are_empty_errors() {
    for (what, bytes) in [
        ("empty", &b""[..]),
        ("blank lines", &b"\n  \n\t\n"[..]),
        ("only invalid JSON", &b"{oops\nnot json\n"[..]),
        ("only non-objects", &b"[1, 2]\n\"text\"\n3\n"[..]),
    ] {
        let f = temp_file(bytes);
        let err = load_jsonl(f.path(), 0, None).expect_err(what);
        assert!(
            matches!(&err, DatasetError::Empty { path } if path == f.path()),
            "{what}: expected Empty, got {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&f.path().display().to_string()) && msg.contains("question field"),
            "{what}: message names the file and what is expected: {msg}"
        );
    }
}

#[test]
fn missing_fields_are_reported_with_the_fields_found() {
    let f = temp_file(
        b"{\"text\": \"What is 1+1?\", \"foo\": 2}\n{\"question\": \"q\", \"answer\": \"a\"}\n",
    );
    let err = load_jsonl(f.path(), 0, None).expect_err("no question field on the first object");
    match &err {
        DatasetError::NoFields { path, found } => {
            assert_eq!(path, f.path());
            assert_eq!(found, &["foo".to_owned(), "text".to_owned()]);
        }
        other => panic!("expected NoFields, got {other:?}"),
    }
    let msg = err.to_string();
    for needle in [
        f.path().display().to_string().as_str(),
        "question field",
        "problem",
        "reference field",
        "solution",
        "fields found: foo, text",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }

    // A question field but no reference field (a null answer does not count).
    let f = temp_file(b"{\"question\": \"q\", \"answer\": null, \"note\": \"x\"}\n");
    match load_jsonl(f.path(), 0, None) {
        Err(DatasetError::NoFields { found, .. }) => {
            assert_eq!(found, ["answer", "note", "question"]);
        }
        other => panic!("expected NoFields, got {other:?}"),
    }
}

#[test]
fn unreadable_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.jsonl");
    let err = load_jsonl(&path, 0, None).expect_err("missing file");
    assert!(
        matches!(&err, DatasetError::Io { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn mixed_file_skips_and_counts_every_bad_line() {
    let mut bytes: Vec<u8> = Vec::new();
    // 0: valid, behind a byte-order mark; detects problem/solution.
    bytes.extend_from_slice("\u{feff}{\"problem\": \"P0\", \"solution\": \"S0\"}\n".as_bytes());
    // 1, 2: blank.
    bytes.extend_from_slice(b"\n   \t\n");
    // 3: invalid JSON.
    bytes.extend_from_slice(b"{\"problem\": \"P3\", \n");
    // 4: not UTF-8.
    bytes.extend_from_slice(b"\xff\xfe{\"problem\": \"P4\", \"solution\": \"S4\"}\n");
    // 5: no solution.
    bytes.extend_from_slice(b"{\"problem\": \"P5\"}\n");
    // 6: a question field, but not the detected `problem`.
    bytes.extend_from_slice(b"{\"question\": \"Q6\", \"solution\": \"S6\"}\n");
    // 7: valid JSON, not an object.
    bytes.extend_from_slice(b"[1, 2]\n");
    // 8: valid; a number as reference and its own id.
    bytes.extend_from_slice(b"{\"problem\": \"P8\", \"solution\": 42, \"id\": \"custom-8\"}\n");
    // 9: null reference.
    bytes.extend_from_slice(b"{\"problem\": \"P9\", \"solution\": null}\n");
    // 10: empty question.
    bytes.extend_from_slice(b"{\"problem\": \"  \", \"solution\": \"S10\"}\n");
    // 11: valid, CRLF line end, numeric idx.
    bytes.extend_from_slice(b"{\"problem\": \"P11\", \"solution\": \"S11\", \"idx\": 7}\r\n");
    // 12: valid, a float reference, no final newline.
    bytes.extend_from_slice(b"{\"problem\": \"P12\", \"solution\": 27.0}");

    let f = temp_file(&bytes);
    let (questions, report) = load_jsonl(f.path(), 0, None).expect("mixed file loads");
    assert_eq!(
        report,
        LoadReport {
            lines: 13,
            loaded: 4,
            skipped_blank: 2,
            skipped_invalid_json: 1,
            skipped_non_utf8: 1,
            skipped_missing_fields: 5,
            question_field: "problem".to_owned(),
            reference_field: "solution".to_owned(),
            ..LoadReport::default()
        }
    );
    let q = |id: &str, question: &str, reference: &str| Question {
        id: id.to_owned(),
        question: question.to_owned(),
        reference: reference.to_owned(),
    };
    assert_eq!(
        questions,
        vec![
            q("0", "P0", "S0"),
            q("custom-8", "P8", "42"),
            q("7", "P11", "S11"),
            q("12", "P12", "27.0"),
        ]
    );

    let (window, report2) = load_jsonl(f.path(), 1, Some(2)).expect("window");
    assert_eq!(window, questions[1..3].to_vec());
    assert_eq!(report2, report);
}

// ---------------------------------------------------------------------------------------------
// The built-in arithmetic task

#[test]
fn arithmetic_is_deterministic_and_correct() {
    let spec = ArithSpec::default();
    assert_eq!(
        spec,
        ArithSpec {
            n: 200,
            seed: 42,
            max_operand: 99,
            terms: 2,
            ops: "+-".to_owned()
        }
    );
    let a = arithmetic(&spec);
    assert_eq!(a.len(), 200);
    assert_eq!(a, arithmetic(&spec), "same spec, same questions");

    let other = arithmetic(&ArithSpec {
        seed: 43,
        ..spec.clone()
    });
    assert_eq!(other.len(), 200);
    let same = a
        .iter()
        .zip(&other)
        .filter(|(x, y)| x.question == y.question)
        .count();
    assert!(
        same < 20,
        "seed 43 should differ from 42 ({same} of 200 equal)"
    );

    let prefix = arithmetic(&ArithSpec {
        n: 50,
        ..spec.clone()
    });
    assert_eq!(prefix, a[..50].to_vec(), "a smaller n is a prefix");

    let mut saw = [false; 2];
    for (i, q) in a.iter().enumerate() {
        assert_eq!(q.id, format!("arith-42-{i}"));
        let expr = expression(q);
        let tokens: Vec<&str> = expr.split_whitespace().collect();
        assert_eq!(tokens.len(), 3, "two operands: {expr:?}");
        for t in [tokens[0], tokens[2]] {
            let x: u32 = t.parse().expect("operand");
            assert!((1..=99).contains(&x), "operand {x} out of 1..=99");
        }
        match tokens[1] {
            "+" => saw[0] = true,
            "-" => saw[1] = true,
            op => panic!("operator {op:?} is not in `+-`"),
        }
        assert_eq!(q.reference, eval_expression(expr).to_string(), "{expr}");
    }
    assert_eq!(saw, [true, true], "both operators are drawn");
}

#[test]
fn arithmetic_golden_first_questions() {
    // Pins the generator: fails if the rand version or the drawing order changes.
    let a = arithmetic(&ArithSpec::default());
    let first: Vec<(&str, &str)> = a
        .iter()
        .take(3)
        .map(|q| (q.question.as_str(), q.reference.as_str()))
        .collect();
    assert_eq!(first, GOLDEN_DEFAULT);
}

/// The first three default questions (rand 0.9).
const GOLDEN_DEFAULT: [(&str, &str); 3] = [
    ("What is 14 + 53?", "67"),
    ("What is 54 - 86?", "-32"),
    ("What is 99 - 41?", "58"),
];

#[test]
fn arithmetic_with_three_terms_and_products() {
    let spec = ArithSpec {
        n: 300,
        seed: 3,
        max_operand: 999,
        terms: 3,
        ops: "+-*".to_owned(),
    };
    let questions = arithmetic(&spec);
    assert_eq!(questions.len(), 300);
    let mut ops_seen = std::collections::BTreeSet::new();
    let mut negative = false;
    for q in &questions {
        let expr = expression(q);
        let tokens: Vec<&str> = expr.split_whitespace().collect();
        assert_eq!(tokens.len(), 5, "three operands: {expr:?}");
        for t in tokens.iter().step_by(2) {
            let x: u32 = t.parse().expect("operand");
            assert!((1..=999).contains(&x), "operand {x} out of 1..=999");
        }
        ops_seen.insert(tokens[1]);
        ops_seen.insert(tokens[3]);
        let value = eval_expression(expr);
        negative |= value < 0;
        assert_eq!(q.reference, value.to_string(), "{expr}");
    }
    assert_eq!(
        ops_seen.into_iter().collect::<Vec<_>>(),
        ["*", "+", "-"],
        "all three operators are drawn"
    );
    assert!(negative, "subtraction yields some negative answers");

    let only_products = arithmetic(&ArithSpec {
        ops: "*".to_owned(),
        ..spec
    });
    assert!(only_products
        .iter()
        .all(|q| !expression(q).contains('+') && !expression(q).contains('-')));
}

#[test]
fn builtin_load_applies_offset_limit_and_reports() {
    let spec = parse_spec("builtin:arith?n=20&seed=7").expect("spec");
    let (all, report) = load(&spec, 0, None).expect("load");
    assert_eq!(all.len(), 20);
    assert_eq!(
        report,
        LoadReport {
            lines: 20,
            loaded: 20,
            question_field: "question".to_owned(),
            reference_field: "reference".to_owned(),
            ..LoadReport::default()
        }
    );
    let (window, _) = load(&spec, 5, Some(4)).expect("window");
    assert_eq!(window, all[5..9].to_vec());

    let bad = DatasetSpec::Builtin(ArithSpec {
        ops: "/".to_owned(),
        ..ArithSpec::default()
    });
    let err = load(&bad, 0, None).expect_err("invalid builtin spec");
    assert!(matches!(err, DatasetError::InvalidSpec { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Spec strings

#[test]
fn spec_strings_parse() {
    assert_eq!(
        parse_spec("builtin:arith").expect("plain builtin"),
        DatasetSpec::Builtin(ArithSpec::default())
    );
    assert_eq!(
        parse_spec("builtin:arith?").expect("empty query"),
        DatasetSpec::Builtin(ArithSpec::default())
    );
    let full = parse_spec("builtin:arith?n=50&seed=3&max=999&terms=3&ops=+-*").expect("full");
    assert_eq!(
        full,
        DatasetSpec::Builtin(ArithSpec {
            n: 50,
            seed: 3,
            max_operand: 999,
            terms: 3,
            ops: "+-*".to_owned()
        })
    );
    assert_eq!(
        parse_spec(&full.to_string()).expect("round trip"),
        full,
        "Display gives a spec that parses back"
    );
    assert_eq!(
        parse_spec("builtin:arith?seed=9").expect("one key"),
        DatasetSpec::Builtin(ArithSpec {
            seed: 9,
            ..ArithSpec::default()
        })
    );
    assert_eq!(
        parse_spec("../shared/data/gsm8k/test.jsonl").expect("file"),
        DatasetSpec::File(PathBuf::from("../shared/data/gsm8k/test.jsonl"))
    );
    assert_eq!(
        parse_spec("./builtin:arith").expect("a file that looks like a builtin"),
        DatasetSpec::File(PathBuf::from("./builtin:arith"))
    );
}

#[test]
fn bad_spec_strings_are_rejected_with_clear_messages() {
    let cases = [
        ("", "no dataset"),
        ("   ", "no dataset"),
        ("builtin:nope", "unknown built-in dataset `nope`"),
        ("builtin:arith?foo=1", "unknown parameter `foo`"),
        ("builtin:arith?n", "`n` is not `key=value`"),
        ("builtin:arith?n=abc", "n must be a whole number"),
        ("builtin:arith?n=-3", "n must be a whole number"),
        ("builtin:arith?n=0", "n=0 is out of range"),
        ("builtin:arith?n=5&n=6", "`n` is given twice"),
        ("builtin:arith?seed=x", "seed must be"),
        ("builtin:arith?max=0", "max=0 is out of range"),
        ("builtin:arith?max=99999999999", "max must be"),
        ("builtin:arith?terms=0", "terms=0 is out of range"),
        ("builtin:arith?terms=11", "terms=11 is out of range"),
        ("builtin:arith?ops=", "ops is empty"),
        ("builtin:arith?ops=+/", "has `/`"),
        ("builtin:arith?ops=++", "repeats `+`"),
        ("builtin:arith?ops=*&terms=10&max=1000000", "would overflow"),
    ];
    for (spec, needle) in cases {
        match parse_spec(spec) {
            Err(e @ DatasetError::InvalidSpec { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(needle),
                    "{spec:?}: message {msg:?} lacks {needle:?}"
                );
                if let DatasetError::InvalidSpec { spec: given, .. } = &e {
                    assert_eq!(given, spec, "the error quotes the spec as given");
                }
            }
            other => panic!("{spec:?}: expected InvalidSpec, got {other:?}"),
        }
    }
    // Products that fit are accepted.
    assert!(parse_spec("builtin:arith?ops=*&terms=3&max=1000000").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Prompt templates

/// The fixed templates as written in method.md §4 (between backticks after `- <name>: `), with
/// the two-character `\n` turned into a newline and `{q}` replaced by `question`.
fn method_md_template(name: &str, question: &str) -> String {
    let path = shared("docs/method.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let marker = format!("- {name}: `");
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(marker.as_str()))
        .unwrap_or_else(|| panic!("method.md has no line starting with {marker:?}"));
    let body = line
        .rsplit_once('`')
        .map(|(b, _)| b)
        .unwrap_or_else(|| panic!("no closing backtick in {line:?}"));
    body.replace("\\n", "\n").replace("{q}", question)
}

#[test]
fn fixed_templates_render_the_method_md_text() {
    let q = "What is $1 + 1$? Say {question} literally.";
    let cases = [
        (
            Template::DeepseekMath,
            "deepseek-math",
            format!("User: {q}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\nAssistant:"),
        ),
        (Template::Mistral, "mistral", format!("[INST] {q}[/INST]")),
        (
            Template::Qwen25MathCot,
            "qwen25-math-cot",
            format!("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"),
        ),
    ];
    for (template, name, expected) in cases {
        let got = render(&template, q, None, Some("<s>"), Some("</s>")).expect("render");
        assert_eq!(got, expected, "{name}");
        assert_eq!(got, method_md_template(name, q), "{name} against method.md");
        assert_eq!(template.name(), name);
        assert_eq!(Template::parse(name).expect("parse"), template);
    }
    assert_eq!(
        render(&Template::Plain, q, None, None, None).expect("plain"),
        q
    );
    let custom = Template::parse("Q: {question}\nA:").expect("custom");
    assert_eq!(
        custom,
        Template::Custom {
            text: "Q: {question}\nA:".to_owned()
        }
    );
    assert_eq!(custom.name(), "custom");
    assert_eq!(
        render(&custom, "2+2?", None, None, None).expect("custom"),
        "Q: 2+2?\nA:"
    );
    assert!(matches!(
        render(
            &Template::Custom {
                text: "no placeholder".to_owned()
            },
            "q",
            None,
            None,
            None
        ),
        Err(PromptError::NoPlaceholder { .. })
    ));
}

#[test]
fn template_names_stops_and_serde() {
    assert_eq!(
        Template::parse("chat").expect("chat"),
        Template::ChatTemplate
    );
    assert_eq!(Template::parse("Plain").expect("plain"), Template::Plain);
    assert_eq!(
        Template::parse(" DeepSeek-Math ").expect("case and spaces"),
        Template::DeepseekMath
    );
    let err = Template::parse("llama3").expect_err("unknown");
    let msg = err.to_string();
    for needle in [
        "llama3",
        "deepseek-math",
        "mistral",
        "qwen25-math-cot",
        "chat",
        "plain",
        "{question}",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
    assert!(matches!(
        Template::parse(""),
        Err(PromptError::Unknown { .. })
    ));

    assert!(Template::DeepseekMath.stop_strings().is_empty());
    assert_eq!(Template::Mistral.stop_strings(), ["[INST]"]);
    assert_eq!(
        Template::Qwen25MathCot.stop_strings(),
        ["<|im_end|>", "<|endoftext|>"]
    );
    assert!(Template::Plain.stop_strings().is_empty());

    let json = serde_json::to_string(&Template::Qwen25MathCot).expect("serialize");
    assert_eq!(json, r#"{"kind":"qwen25_math_cot"}"#);
    let custom = Template::Custom {
        text: "Q: {question}".to_owned(),
    };
    let json = serde_json::to_string(&custom).expect("serialize");
    assert_eq!(json, r#"{"kind":"custom","text":"Q: {question}"}"#);
    let back: Template = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, custom);
}

// ---------------------------------------------------------------------------------------------
// Chat templates

/// SmolLM2-Instruct's chat template.
const SMOLLM2: &str = r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}";

/// A Qwen2.5-style template: tools branch with `tojson`, `.strip()`, `.startswith()`,
/// `.endswith()`, `namespace`, `continue` and `raise_exception`.
const QWEN_STYLE: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {{- "# Tools\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'].strip() + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(users=0) %}
{%- for message in messages %}
    {%- if message.role not in ['system', 'user', 'assistant'] %}
        {{- raise_exception('Only system, user and assistant roles are supported, not ' + message.role) }}
    {%- endif %}
    {%- if message.role == 'system' and not loop.first %}
        {%- continue %}
    {%- endif %}
    {%- if message.role == 'user' %}
        {%- set ns.users = ns.users + 1 %}
        {%- if message.content.startswith(' ') and message['content'].strip().endswith('?') %}
            {{- '<|im_start|>user\n' + message.content.strip() + '<|im_end|>\n' }}
        {%- else %}
            {{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if ns.users == 0 %}
    {{- raise_exception('No user message') }}
{%- endif %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"##;

/// Zephyr's template: block tags on their own lines, so it needs `trim_blocks`/`lstrip_blocks`.
const ZEPHYR: &str = "{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}
";

/// A Llama-3.1-style template: `bos_token`, `strftime_now is defined`, the `trim` filter.
const LLAMA_STYLE: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

/// Render `template` as the tokenizer's chat template for `question` with `<s>`/`</s>`.
fn chat(template: &str, question: &str) -> Result<String, PromptError> {
    render(
        &Template::ChatTemplate,
        question,
        Some(template),
        Some("<s>"),
        Some("</s>"),
    )
}

#[test]
fn chat_templates_render_like_transformers() {
    let q = "  What is 2 + 3?  ";
    // Expected strings from Python jinja2 3.1.6 (see the module docs).
    let cases = [
        (
            "SmolLM2",
            SMOLLM2,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n  What is 2 + 3?  <|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "Qwen2.5-style",
            QWEN_STYLE,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "Zephyr",
            ZEPHYR,
            "<|user|>\n  What is 2 + 3?  </s>\n<|assistant|>\n",
        ),
        (
            "Llama-3.1-style",
            LLAMA_STYLE,
            "<s><|start_header_id|>system<|end_header_id|>\n\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
    ];
    for (name, template, expected) in cases {
        let got = chat(template, q).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn chat_template_special_tokens_are_undefined_when_absent() {
    let t = "[{{ bos_token }}]{{ messages[0].content }}[{{ eos_token }}]";
    assert_eq!(
        render(&Template::ChatTemplate, "q", Some(t), None, None).expect("render"),
        "[]q[]"
    );
    assert_eq!(
        render(
            &Template::ChatTemplate,
            "q",
            Some(t),
            Some("<s>"),
            Some("</s>")
        )
        .expect("render"),
        "[<s>]q[</s>]"
    );
}

#[test]
fn chat_template_errors_are_clear() {
    // raise_exception aborts with the template's own message.
    let raising = "{% if messages[0]['role'] == 'user' %}{{ raise_exception('System role required by this model') }}{% endif %}ok";
    let err = chat(raising, "q").expect_err("raise_exception");
    assert!(matches!(err, PromptError::ChatTemplate { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("System role required by this model") && msg.contains("--template"),
        "{msg}"
    );

    // A syntax error.
    let err = chat("{% for m in messages %}{{ m.content }}", "q").expect_err("unclosed for");
    assert!(matches!(err, PromptError::ChatTemplate { .. }), "{err:?}");

    // No chat template, or a blank one.
    for missing in [None, Some(""), Some("  \n")] {
        let err = render(&Template::ChatTemplate, "q", missing, None, None)
            .expect_err("no chat template");
        assert!(matches!(err, PromptError::NoChatTemplate), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("--template") && msg.contains("chat_template"),
            "{msg}"
        );
    }

    // A template that loops for ever, or builds text without end, stops at its budget.
    let start = std::time::Instant::now();
    for costly in [
        "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ] {
        let err = chat(costly, "q").expect_err("unbounded template");
        let msg = err.to_string();
        assert!(
            msg.contains("--template")
                && (matches!(err, PromptError::ChatTemplateTooCostly) && msg.contains("steps")
                    || msg.contains("recursion")),
            "{costly}: {msg}"
        );
    }
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());

    // Fixed templates do not need a chat template.
    assert!(render(&Template::DeepseekMath, "q", None, None, None).is_ok());
}
