//! Every persisted unit of a run is verified before it is reused: a damaged, truncated, foreign
//! or old-format sample file is recomputed with a warning when the same `circuitdiff score` or
//! `circuitdiff study` is run again (and the results equal a clean run's), and is refused by
//! `compare`; a damaged answer line of a study is answered again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::study::answers::{self, Answer};
use common::{circuitdiff, Tiny};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `circuitdiff ARGS`; a panic counts as a failure.
fn run(args: &[&str]) -> (bool, String, String) {
    let (ok, stdout, stderr) = circuitdiff(args);
    (ok && !stderr.contains("panicked"), stdout, stderr)
}

/// `circuitdiff score` of the four samples at cut 3 (plus `extra`) into `out`.
fn score(model: &Path, samples: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "score",
        "--model",
        model.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--cut",
        "3",
    ];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    run(&args)
}

/// `circuitdiff compare BASE TUNED --out OUT`.
fn compare(base: &Path, tuned: &Path, out: &Path) -> (bool, String, String) {
    run(&[
        "compare",
        base.to_str().unwrap(),
        tuned.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// The position in a safetensors file of tensor `name`'s data, and its length.
fn data_offset(bytes: &[u8], name: &str) -> (usize, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (offsets[0].as_u64().unwrap(), offsets[1].as_u64().unwrap());
    (8 + n + a as usize, (b - a) as usize)
}

/// A valid sample file whose first score is NaN, checksum and all.
fn with_nan(bytes: &[u8]) -> Vec<u8> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut data: Vec<Vec<u8>> = ["scores", "loss", "k"]
        .iter()
        .map(|n| st.tensor(n).unwrap().data().to_vec())
        .collect();
    data[0][..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut h = Sha256::new();
    for d in &data {
        h.update(d);
    }
    meta.insert("sha256".into(), format!("{:x}", h.finalize()));
    let views: Vec<(&str, TensorView)> = ["scores", "loss", "k"]
        .iter()
        .zip(&data)
        .map(|(&n, d)| {
            let t = st.tensor(n).unwrap();
            (
                n,
                TensorView::new(t.dtype(), t.shape().to_vec(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The same tensors written without metadata, as earlier versions wrote sample files.
fn old_format(path: &Path) -> Vec<u8> {
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let tmp = path.with_extension("old");
    candle_core::safetensors::save(&t, &tmp).unwrap();
    let bytes = std::fs::read(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    bytes
}

/// How a sample file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte of the scores flipped.
    FlipScoreByte,
    /// Cut to half its length.
    Truncate,
    /// Replaced by the file of another sample of the run.
    OtherSample,
    /// Replaced by the same sample scored at another K.
    OtherK,
    /// Replaced by the same sample scored on the head-level graph.
    OtherShape,
    /// Replaced by the same sample scored with another model.
    OtherRun,
    /// Text, not safetensors.
    Garbage,
    /// The same tensors without metadata.
    OldFormat,
    /// A NaN score with a matching checksum.
    NotFinite,
}

/// Runs whose sample files replace the damaged one.
struct Others {
    cut2: PathBuf,
    heads: PathBuf,
    tuned: PathBuf,
}

fn damage(file: &Path, how: Damage, others: &Others) {
    let bytes = std::fs::read(file).unwrap();
    let same = |run: &Path| std::fs::read(run.join("samples/000002.safetensors")).unwrap();
    let new = match how {
        Damage::FlipScoreByte => {
            let (at, len) = data_offset(&bytes, "scores");
            let mut b = bytes.clone();
            // The high byte of a score in the middle of the matrix.
            b[at + (len / 8) * 4 + 3] ^= 0x01;
            b
        }
        Damage::Truncate => bytes[..bytes.len() / 2].to_vec(),
        Damage::OtherSample => std::fs::read(file.with_file_name("000000.safetensors")).unwrap(),
        Damage::OtherK => same(&others.cut2),
        Damage::OtherShape => same(&others.heads),
        Damage::OtherRun => same(&others.tuned),
        Damage::Garbage => b"this is not a safetensors file\n".to_vec(),
        Damage::OldFormat => old_format(file),
        Damage::NotFinite => with_nan(&bytes),
    };
    assert_ne!(new, bytes, "{how:?} changed nothing");
    std::fs::write(file, new).unwrap();
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of cases, read top to bottom"
)]
fn damaged_sample_files_are_recomputed_on_resume_and_refused_by_compare() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = Tiny::Llama.write(dir);
    let tuned = Tiny::Llama.write_seeded(dir, 8);
    let samples = dir.join("samples.json");
    std::fs::write(
        &samples,
        serde_json::json!([
            {"id": "q1", "prompt_ids": [1, 5, 17, 22], "answer_ids": [9, 40, 33, 12, 8]},
            {"id": "q2", "prompt_ids": [1, 7, 7, 30, 11], "answer_ids": [3, 4]},
            {"id": "q3", "prompt_ids": [1, 20, 21], "answer_ids": [22, 23, 24, 25, 26, 27]},
            {"id": "q4", "prompt_ids": [1, 9], "answer_ids": [14, 15, 16, 2]}
        ])
        .to_string(),
    )
    .unwrap();
    let clean = dir.join("clean");
    let others = Others {
        cut2: dir.join("cut2"),
        heads: dir.join("heads"),
        tuned: dir.join("tuned"),
    };
    for (model, out, extra) in [
        (&base, &clean, &[][..]),
        (&tuned, &others.tuned, &[][..]),
        (&base, &others.heads, &["--heads"][..]),
    ] {
        let (ok, _, e) = score(model, &samples, out, extra);
        assert!(ok, "{e}");
    }
    let (ok, _, e) = run(&[
        "score",
        "--model",
        base.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--cut",
        "2",
        "--out",
        others.cut2.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    let (ok, _, e) = compare(&clean, &others.tuned, &dir.join("cmp-clean"));
    assert!(ok, "{e}");
    let results = |run: &Path, cmp: &Path| -> Vec<Vec<u8>> {
        vec![
            std::fs::read(run.join("scores.safetensors")).unwrap(),
            std::fs::read(run.join("metrics.json")).unwrap(),
            std::fs::read(run.join("scores.npz")).unwrap(),
            std::fs::read(cmp.join("comparison.csv")).unwrap(),
        ]
    };
    let expected = results(&clean, &dir.join("cmp-clean"));

    let cases = [
        (Damage::FlipScoreByte, "checksum mismatch (damaged)"),
        (Damage::Truncate, "not a readable safetensors file"),
        (Damage::OtherSample, "holds sample `q1`, expected `q3`"),
        (Damage::OtherK, "scored at K=2, expected K=3"),
        (
            Damage::OtherShape,
            "shape 11×19, expected 5×9 (a file of another graph)",
        ),
        (Damage::OtherRun, "written by another run"),
        (Damage::Garbage, "not a readable safetensors file"),
        (Damage::OldFormat, "written in an older format"),
        (Damage::NotFinite, "the loss or the scores are not finite"),
    ];
    // Every case runs; the failures are listed together at the end.
    let mut failures = Vec::new();
    for (how, reason) in cases {
        let case = dir.join(format!("{how:?}"));
        common::copy_dir(&clean, &case);
        let file = case.join("samples/000002.safetensors");
        damage(&file, how, &others);
        let mut fail = |what: &str, e: &str| failures.push(format!("{how:?}: {what}\n{e}"));

        // A finished run with a damaged sample is refused, naming the file and the fix.
        let cmp = dir.join(format!("cmp-{how:?}"));
        let (ok, _, e) = compare(&case, &others.tuned, &cmp);
        if ok || !(e.contains(file.to_str().unwrap()) && e.contains(reason) && e.contains("re-run"))
        {
            fail("compare did not refuse the damaged run naming the file", &e);
        }

        // The same command again recomputes it, with a warning, and ends as a clean run.
        let (ok, _, e) = score(&base, &samples, &case, &[]);
        if !ok || e.contains("panicked") {
            fail("resuming failed", &e);
            continue;
        }
        if !(e.contains(&format!("{}: {reason}", file.display())) && e.contains("recomputing")) {
            fail("no warning naming the file and the reason", &e);
        }
        let (ok, _, e) = compare(&case, &others.tuned, &cmp);
        if !ok {
            fail("compare of the repaired run failed", &e);
        } else if results(&case, &cmp) != expected {
            fail("results differ from the clean run's", "");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // A run killed between writing a sample's temporary file and renaming it into place: the
    // resumed run scores the sample again and removes what the killed one left.
    let killed = dir.join("killed");
    common::copy_dir(&clean, &killed);
    std::fs::remove_file(killed.join("samples/000001.safetensors")).unwrap();
    let left = killed.join("samples/.000001.safetensors.tmp4194305");
    std::fs::write(&left, b"half a file").unwrap();
    let (ok, _, e) = score(&base, &samples, &killed, &[]);
    assert!(ok, "{e}");
    assert!(!left.exists(), "{} is still there", left.display());
    assert_eq!(
        common::relative_files(&killed),
        common::relative_files(&clean)
    );
    let (ok, _, e) = compare(&killed, &others.tuned, &dir.join("cmp-killed"));
    assert!(ok, "{e}");
    assert_eq!(results(&killed, &dir.join("cmp-killed")), expected);

    // Killed while writing the manifest of a new directory: the next run claims the directory
    // and removes the half manifest.
    let claimed = dir.join("claimed");
    std::fs::create_dir(&claimed).unwrap();
    let left = claimed.join(".manifest.json.tmp4194305");
    std::fs::write(&left, b"{").unwrap();
    let (ok, _, e) = score(&base, &samples, &claimed, &[]);
    assert!(ok, "{e}");
    assert!(!left.exists(), "{} is still there", left.display());
    assert_eq!(
        common::relative_files(&claimed),
        common::relative_files(&clean)
    );
}

/// The answers of one side and the results of a study.
fn study_results(out: &Path) -> Vec<(String, Vec<u8>)> {
    [
        "answers/base.jsonl",
        "answers/tuned.jsonl",
        "answers.jsonl",
        "counts.json",
        "base/scores.safetensors",
        "tuned/scores.safetensors",
        "tuned/metrics.json",
        "comparison.csv",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap()))
    .collect()
}

/// What replaces line 4 of a study's `answers/tuned.jsonl` in each case, and the reason the
/// warning must give.
fn answer_damages(lines: &[String]) -> Vec<(String, &'static str)> {
    // An edited answer written back with a valid checksum, as a line of this version.
    let rewritten = |line: &str, edit: &dyn Fn(&mut Answer)| {
        let mut a: Answer = serde_json::from_str(line).unwrap();
        edit(&mut a);
        String::from_utf8(answers::line(&a).unwrap())
            .unwrap()
            .trim_end()
            .to_owned()
    };
    let other_id = |line: &str, id: &str| rewritten(line, &|a| a.id = id.into());
    let out_of_vocabulary = |line: &str| rewritten(line, &|a| a.answer_ids[0] = 99999);
    // The same line with one letter of its text changed: it still parses.
    let edited_text = {
        let mut v: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        let text = v["text"].as_str().unwrap().to_owned();
        v["text"] = format!("{text}x").into();
        v.to_string()
    };
    let without_checksum = {
        let mut v: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        v.as_object_mut().unwrap().remove("sha256");
        v.to_string()
    };
    // (what replaces line 4 of answers/tuned.jsonl, the reason in the warning)
    vec![
        (
            "{\"id\": \"arith-3\", \"prompt\"".to_owned(),
            "not a complete answer",
        ),
        (other_id(&lines[3], "not-a-question"), "`not-a-question`"),
        (lines[1].clone(), "repeated"),
        (String::new(), "not a complete answer"),
        (
            out_of_vocabulary(&lines[3]),
            "token id 99999 is outside the vocabulary",
        ),
        (edited_text, "checksum mismatch (damaged)"),
        (
            without_checksum,
            "no checksum (written by an older version)",
        ),
    ]
}

#[test]
fn damaged_answer_lines_and_sample_files_of_a_study_are_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let (ok, _, e) = common::zoo_study("builtin:arith?n=12", &clean);
    assert!(ok, "{e}");
    let expected = study_results(&clean);
    let lines: Vec<String> = std::fs::read_to_string(clean.join("answers/tuned.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let cases = answer_damages(&lines);
    let mut failures = Vec::new();
    for (i, (replacement, reason)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("case{i}"));
        common::copy_dir(&clean, &out);
        let mut damaged = lines.clone();
        damaged[3] = replacement;
        let path = out.join("answers/tuned.jsonl");
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        // A sample file of the tuned run damaged too: it is recomputed as well.
        let sample = out.join("tuned/samples/000001.safetensors");
        std::fs::write(&sample, b"garbage").unwrap();
        let (ok, _, e) = common::zoo_study("builtin:arith?n=12", &out);
        let mut fail = |what: &str, e: &str| failures.push(format!("case {i}: {what}\n{e}"));
        if !ok || e.contains("panicked") {
            fail("resuming failed", &e);
            continue;
        }
        let line = format!("{}: line 4: ", path.display());
        if !(e.contains(&line) && e.contains(reason) && e.contains("answering again")) {
            fail(
                "no warning naming the answer file, the line and the reason",
                &e,
            );
        }
        if !e.contains(&format!("{}: not a readable", sample.display())) {
            fail("no warning naming the sample file", &e);
        }
        for ((f, got), (_, want)) in study_results(&out).iter().zip(&expected) {
            if got != want {
                fail(&format!("{f} differs from the clean study's"), "");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
