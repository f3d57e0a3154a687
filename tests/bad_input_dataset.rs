//! Bad JSON Lines datasets never pass silently: duplicate ids are made unique and counted, a
//! field of the wrong type refuses the file naming the line, the field and the type expected,
//! over-long questions and lines are skipped and counted without being parsed whole, and the
//! real `circuitdiff study` reports all of it without a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::study::dataset::{
    arithmetic, load, ArithSpec, DatasetSpec, LoadReport, MAX_LINE_BYTES, MAX_QUESTION_CHARS,
};
use std::path::Path;

/// One line `{"id": …, "question": …, "answer": …}` with a newline; `None` leaves `id` out.
fn line(id: Option<serde_json::Value>, question: &str, answer: &str) -> Vec<u8> {
    let mut object = serde_json::json!({ "question": question, "answer": answer });
    if let Some(id) = id {
        object["id"] = id;
    }
    let mut bytes = serde_json::to_vec(&object).expect("serialise");
    bytes.push(b'\n');
    bytes
}

/// `line` with a string id.
fn q(id: &str, question: &str) -> Vec<u8> {
    line(Some(id.into()), question, "1")
}

/// What loading a file should give.
enum Expect {
    /// These ids (after `offset`/`limit` of none), and this report (fields `question`/`answer`).
    Loads(&'static [&'static str], LoadReport),
    /// A refusal whose message names the file and holds every needle.
    Refused(&'static [&'static str]),
}

/// A report of `lines` lines detecting `question`/`answer`, with `loaded` questions; the
/// skips are set by the caller.
fn report(lines: usize, loaded: usize) -> LoadReport {
    LoadReport {
        lines,
        loaded,
        question_field: "question".to_owned(),
        reference_field: "answer".to_owned(),
        ..LoadReport::default()
    }
}

/// The table: name, file bytes, expected outcome.
#[allow(clippy::too_many_lines)] // one row per case
fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let huge_question = "1".repeat(200_000);
    let at_limit = "é".repeat(MAX_QUESTION_CHARS);
    let over_limit = "é".repeat(MAX_QUESTION_CHARS + 1);
    let huge_line = format!(
        "{{\"question\": \"{}\", \"answer\": \"1\"}}\n",
        "9".repeat(MAX_LINE_BYTES + 10)
    );
    vec![
        (
            "duplicate numeric ids",
            [
                line(Some(7.into()), "A", "1"),
                line(Some(7.into()), "B", "2"),
                line(Some(8.into()), "C", "3"),
            ]
            .concat(),
            Expect::Loads(
                &["7", "7#2", "8"],
                LoadReport {
                    renamed_duplicate_ids: 1,
                    ..report(3, 3)
                },
            ),
        ),
        (
            "repeated ids skip suffixes in use",
            [q("a", "A"), q("a", "B"), q("a#2", "C"), q("a", "D")].concat(),
            Expect::Loads(
                &["a", "a#2", "a#2#2", "a#3"],
                LoadReport {
                    renamed_duplicate_ids: 3,
                    ..report(4, 4)
                },
            ),
        ),
        (
            "a line-number id met again as an explicit id",
            [line(None, "A", "1"), q("0", "B")].concat(),
            Expect::Loads(
                &["0", "0#2"],
                LoadReport {
                    renamed_duplicate_ids: 1,
                    ..report(2, 2)
                },
            ),
        ),
        (
            "numeric question on line 2",
            [
                q("a", "A"),
                b"{\"question\": 12, \"answer\": \"3\"}\n".to_vec(),
            ]
            .concat(),
            Expect::Refused(&["line 2", "`question`", "is a number", "expected a string"]),
        ),
        (
            "object question",
            [
                q("a", "A"),
                b"{\"question\": {\"text\": \"x\"}, \"answer\": 1}\n".to_vec(),
            ]
            .concat(),
            Expect::Refused(&["line 2", "`question`", "is an object", "expected a string"]),
        ),
        (
            "array question on line 3",
            [
                q("a", "A"),
                b"\n".to_vec(),
                b"{\"question\": [\"x\"], \"answer\": 1}\n".to_vec(),
            ]
            .concat(),
            Expect::Refused(&["line 3", "`question`", "is an array", "expected a string"]),
        ),
        (
            "boolean question on the first line",
            b"{\"question\": true, \"answer\": \"1\"}\n".to_vec(),
            Expect::Refused(&["line 1", "`question`", "is a boolean", "expected a string"]),
        ),
        (
            "null question is a missing question",
            [
                q("a", "A"),
                b"{\"question\": null, \"answer\": \"2\"}\n".to_vec(),
            ]
            .concat(),
            Expect::Loads(
                &["a"],
                LoadReport {
                    skipped_missing_fields: 1,
                    ..report(2, 1)
                },
            ),
        ),
        (
            "object reference",
            [
                q("a", "A"),
                b"{\"question\": \"B\", \"answer\": {\"v\": 1}}\n".to_vec(),
            ]
            .concat(),
            Expect::Refused(&[
                "line 2",
                "`answer`",
                "is an object",
                "expected a string or a number",
            ]),
        ),
        (
            "id that is an object",
            [
                q("a", "A"),
                line(Some(serde_json::json!({"n": 1})), "B", "2"),
            ]
            .concat(),
            Expect::Refused(&["line 2", "`id`", "is an object", "a string or a number"]),
        ),
        (
            "a 200,000-character question is skipped",
            [q("a", "A"), q("big", &huge_question), q("b", "B")].concat(),
            Expect::Loads(
                &["a", "b"],
                LoadReport {
                    skipped_too_long: 1,
                    ..report(3, 2)
                },
            ),
        ),
        (
            "the character limit counts characters, not bytes",
            [q("at", &at_limit), q("over", &over_limit)].concat(),
            Expect::Loads(
                &["at"],
                LoadReport {
                    skipped_too_long: 1,
                    ..report(2, 1)
                },
            ),
        ),
        (
            "a line over the byte limit is skipped",
            [q("a", "A"), huge_line.clone().into_bytes(), q("b", "B")].concat(),
            Expect::Loads(
                &["a", "b"],
                LoadReport {
                    skipped_too_long: 1,
                    ..report(3, 2)
                },
            ),
        ),
        (
            "only over-long lines, the last without a newline",
            [
                q("big", &huge_question),
                huge_line.trim_end().as_bytes().to_vec(),
            ]
            .concat(),
            Expect::Refused(&["no questions", "2 line(s)", "too long"]),
        ),
        (
            "only bad lines",
            b"\n{oops\n\xff\xfe\n[1, 2]\n\"text\"\n".to_vec(),
            Expect::Refused(&["no questions", "question field"]),
        ),
        (
            "byte-order mark and CRLF",
            [
                "\u{feff}".as_bytes(),
                b"{\"id\": 1, \"question\": \"A\", \"answer\": \"1\"}\r\n",
                b"{\"id\": 2, \"question\": \"B\", \"answer\": \"2\"}\r\n",
            ]
            .concat(),
            Expect::Loads(&["1", "2"], report(2, 2)),
        ),
        (
            "a raw NUL byte is invalid JSON",
            [
                b"{\"question\": \"A\0B\", \"answer\": \"1\"}\n".to_vec(),
                q("b", "B"),
            ]
            .concat(),
            Expect::Loads(
                &["b"],
                LoadReport {
                    skipped_invalid_json: 1,
                    ..report(2, 1)
                },
            ),
        ),
        (
            "an escaped NUL is a character of the question",
            [
                b"{\"id\": \"n\", \"question\": \"A\\u0000B\", \"answer\": \"1\"}\n".to_vec(),
                q("b", "B"),
            ]
            .concat(),
            Expect::Loads(&["n", "b"], report(2, 2)),
        ),
        (
            "invalid UTF-8 in the middle of a line",
            [
                q("a", "A"),
                b"{\"question\": \"B\xc3\x28\", \"answer\": \"1\"}\n".to_vec(),
            ]
            .concat(),
            Expect::Loads(
                &["a"],
                LoadReport {
                    skipped_non_utf8: 1,
                    ..report(2, 1)
                },
            ),
        ),
        (
            "blank question and empty id",
            [
                line(Some("".into()), "A", "1"),
                line(Some("x".into()), "   ", "2"),
            ]
            .concat(),
            Expect::Loads(
                &["0"],
                LoadReport {
                    skipped_missing_fields: 1,
                    ..report(2, 1)
                },
            ),
        ),
    ]
}

#[test]
fn every_bad_dataset_is_loaded_or_refused_as_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = cases();
    assert!(cases.len() >= 15);
    for (i, (name, bytes, expect)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("case{i}.jsonl"));
        std::fs::write(&path, &bytes).expect("write case");
        let result = load(&DatasetSpec::File(path.clone()), 0, None);
        match (expect, result) {
            (Expect::Loads(ids, expected), Ok((questions, got))) => {
                let got_ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
                assert_eq!(got_ids, ids, "{name}: ids");
                assert_eq!(got, expected, "{name}: report");
                let invariant = got.loaded
                    + got.skipped_blank
                    + got.skipped_invalid_json
                    + got.skipped_non_utf8
                    + got.skipped_missing_fields
                    + got.skipped_too_long;
                assert_eq!(got.lines, invariant, "{name}: every line is accounted for");
            }
            (Expect::Refused(needles), Err(err)) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(&path.display().to_string()),
                    "{name}: message names the file: {msg}"
                );
                for needle in needles {
                    assert!(
                        msg.contains(needle),
                        "{name}: message lacks {needle:?}: {msg}"
                    );
                }
            }
            (Expect::Loads(..), Err(err)) => panic!("{name}: expected to load, got {err}"),
            (Expect::Refused(_), Ok((questions, report))) => {
                panic!("{name}: expected a refusal, loaded {questions:?} with {report:?}")
            }
        }
    }
}

#[test]
fn a_clean_report_serialises_without_the_new_counts() {
    let clean = serde_json::to_value(report(2, 2)).expect("serialise");
    let object = clean.as_object().expect("object");
    assert!(!object.contains_key("skipped_too_long"), "{clean}");
    assert!(!object.contains_key("renamed_duplicate_ids"), "{clean}");
    let dirty = LoadReport {
        skipped_too_long: 2,
        renamed_duplicate_ids: 3,
        ..report(7, 5)
    };
    let text = serde_json::to_string(&dirty).expect("serialise");
    assert!(
        text.contains("\"skipped_too_long\":2") && text.contains("\"renamed_duplicate_ids\":3"),
        "{text}"
    );
    let back: LoadReport = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, dirty);
}

/// Run `circuitdiff study` of the bundled tiny models on `dataset` into `out`.
fn study(dataset: &Path, out: &Path) -> (bool, String, String) {
    common::zoo_study(dataset.to_str().expect("utf-8 path"), out)
}

#[test]
fn study_refuses_a_dataset_that_leaves_nothing_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes, needles) in [
        (
            "only bad lines",
            b"\n{oops\n[1]\n".to_vec(),
            &["no questions", "question field"][..],
        ),
        (
            "numeric question",
            [
                q("a", "What is 1 + 1?"),
                b"{\"question\": 5, \"answer\": 5}\n".to_vec(),
            ]
            .concat(),
            &["line 2", "`question`", "is a number", "expected a string"][..],
        ),
        (
            "only an over-long question",
            q("big", &"1".repeat(MAX_QUESTION_CHARS + 1)),
            &["no questions", "too long"][..],
        ),
    ] {
        let path = dir.path().join(format!("{}.jsonl", name.replace(' ', "_")));
        std::fs::write(&path, bytes).expect("write dataset");
        let (ok, stdout, stderr) = study(&path, &dir.path().join("out"));
        assert!(!ok, "{name}: the study must fail: {stdout}{stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: names the file: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: lacks {needle:?}: {stderr}"
            );
        }
    }
}

#[test]
fn study_with_duplicate_ids_and_over_long_lines_answers_every_question() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The built-in questions, which the tiny models answer well, in pairs sharing an id.
    let questions = arithmetic(&ArithSpec {
        n: 12,
        ..ArithSpec::default()
    });
    let mut bytes = Vec::new();
    for (i, question) in questions.iter().enumerate() {
        let id = format!("p{}", i / 2);
        bytes.extend(line(
            Some(id.as_str().into()),
            &question.question,
            &question.reference,
        ));
    }
    bytes.extend(q("huge", &"1".repeat(200_000)));
    bytes.extend(format!("{{\"question\": \"{}\"}}\n", "9".repeat(MAX_LINE_BYTES)).into_bytes());
    let path = dir.path().join("duplicates.jsonl");
    std::fs::write(&path, bytes).expect("write dataset");
    let out = dir.path().join("study");
    let (ok, stdout, stderr) = study(&path, &out);
    assert!(ok, "{stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // One answer per question, under its own id and prompt.
    let answers = std::fs::read_to_string(out.join("answers/base.jsonl")).expect("answers");
    let rows: Vec<serde_json::Value> = answers
        .lines()
        .map(|l| serde_json::from_str(l).expect("answer row"))
        .collect();
    assert_eq!(rows.len(), questions.len(), "{answers}");
    for (i, (row, question)) in rows.iter().zip(&questions).enumerate() {
        let id = if i % 2 == 0 {
            format!("p{}", i / 2)
        } else {
            format!("p{}#2", i / 2)
        };
        assert_eq!(row["id"], id.as_str(), "{row}");
        let prompt = row["prompt"].as_str().expect("prompt");
        assert!(prompt.contains(&question.question), "{id}: {prompt}");
    }

    let counts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("counts.json")).expect("counts"))
            .expect("counts.json");
    assert_eq!(counts["asked"], 12, "{counts}");
    assert_eq!(counts["dataset"]["renamed_duplicate_ids"], 6, "{counts}");
    assert_eq!(counts["dataset"]["skipped_too_long"], 2, "{counts}");
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        report.contains("| duplicate ids made unique (`<id>#2`, …) | 6 |")
            && report.contains("skipped as too long")
            && report.contains("characters) | 2 |"),
        "{report}"
    );
}
