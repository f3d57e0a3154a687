//! Bad command-line input is refused: every case exits non-zero without a panic, names the flag
//! (or, for runs that cannot be paired, both run directories) and the allowed values, leaves an
//! existing `--out` directory byte for byte as it was and creates no new one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use common::{circuitdiff, Tiny};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file (with its bytes) and folder (`None`) under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut tree = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if path.is_dir() {
                tree.insert(rel, None);
                stack.push(path);
            } else {
                tree.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    tree
}

/// One refused command line and what stderr must say. In the arguments `OUT` stands for an
/// existing output directory, `NEW` for one that does not exist, `SAMPLES` for a valid sample
/// file.
type Case = (&'static [&'static str], &'static [&'static str]);

const STUDY: [&str; 7] = [
    "study",
    "--base",
    "assets/zoo/base",
    "--tuned",
    "assets/zoo/grpo",
    "--dataset",
    "builtin:arith?n=6",
];

const ALPHA: &str = "'--alpha <ALPHA>': must be a finite number in (0, 1)";
const TOP_P: &str = "'--top-p <TOP_P>': must be a finite number in (0, 1]";
const TEMPERATURE: &str = "'--temperature <TEMPERATURE>': must be a finite number > 0";
const SHARD: &str = "'--shard <I/N>': expected I/N, shard I of N counted from 0 (0 ≤ I < N)";
const AT_LEAST_1: &str = "must be a whole number ≥ 1";
const BINS: [&str; 2] = [
    "'--entropy-bins <ENTROPY_BINS>'",
    "must be a whole number ≥ 2",
];

/// Study flags that must be refused, each with what the message must say.
const STUDY_CASES: &[Case] = &[
    (&["--alpha", "nan"], &[ALPHA]),
    (&["--alpha=-1"], &[ALPHA]),
    (&["--alpha", "0"], &[ALPHA]),
    (&["--alpha", "1"], &[ALPHA]),
    (&["--alpha", "inf"], &[ALPHA]),
    (&["--alpha", "five"], &[ALPHA]),
    (&["--temperature=-1"], &[TEMPERATURE]),
    (&["--temperature", "0"], &[TEMPERATURE]),
    (&["--temperature", "NaN"], &[TEMPERATURE]),
    (&["--temperature", "1", "--top-p", "2"], &[TOP_P]),
    (&["--temperature", "1", "--top-p", "0"], &[TOP_P]),
    (&["--temperature", "1", "--top-p", "nan"], &[TOP_P]),
    (
        &["--top-p", "0.9"],
        &["--top-p", "--temperature <TEMPERATURE>"],
    ),
    (&["--batch", "0"], &["'--batch <BATCH>'", AT_LEAST_1]),
    (&["--n", "0"], &["'--n <N>'", AT_LEAST_1]),
    (&["--limit", "0"], &["'--limit <LIMIT>'", AT_LEAST_1]),
    (
        &["--max-new-tokens", "0"],
        &["'--max-new-tokens <MAX_NEW_TOKENS>'", AT_LEAST_1],
    ),
    (&["--entropy-bins", "0"], &BINS),
    (&["--entropy-bins", "1"], &BINS),
    (
        &["--offset=-1"],
        &["'--offset <OFFSET>'", "must be a whole number ≥ 0"],
    ),
    (
        &["--offset", "6"],
        &["--offset 6 skips every question: the dataset holds 6 (use an offset below 6)"],
    ),
    (
        &["--offset", "1000", "--limit", "3"],
        &["--offset 1000 skips every question"],
    ),
    (
        &["--stop", ""],
        &[
            "'--stop <STOP>'",
            "must not be empty: an empty stop string would end every answer",
        ],
    ),
    (&["--shard", "1/x"], &[SHARD]),
    (&["--shard", "4/4"], &[SHARD]),
    (&["--shard", "1/0"], &[SHARD]),
    (&["--shard", "2"], &[SHARD]),
    (
        &["--t-bar", "mean"],
        &["'--t-bar <T_BAR>'", "[possible values: min, pooled]"],
    ),
    (&["--threads", "0"], &["'--threads <THREADS>'", AT_LEAST_1]),
];

/// The other subcommands' flags that must be refused.
const OTHER_CASES: &[Case] = &[
    (
        &[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            "SAMPLES",
            "--cut",
            "2",
            "--out",
            "OUT",
        ],
        &[
            "holds other files",
            "and no manifest.json",
            "choose another output directory",
        ],
    ),
    (
        &[
            "study",
            "--base",
            "assets/zoo/base",
            "--tuned",
            "assets/zoo/grpo",
            "--dataset",
            "builtin:arith?n=6",
            "--out",
            "OUT",
        ],
        &[
            "holds other files",
            "and no study.json",
            "choose another --out",
        ],
    ),
    (
        &[
            "study",
            "--base",
            "assets/zoo/base",
            "--tuned",
            "assets/zoo/grpo",
            "--dataset",
            "builtin:arith?n=6",
            "--out",
            "BLOCKED",
        ],
        &["out/notes.txt/sub", "Not a directory"],
    ),
    (
        &[
            "study",
            "--base",
            "assets/zoo/base",
            "--tuned",
            "assets/zoo/grpo",
            "--dataset",
            "BLOCKED",
            "--out",
            "NEW",
        ],
        &[
            "out/notes.txt/sub: cannot read the dataset",
            "Not a directory",
        ],
    ),
    (
        &[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            "BLOCKED",
            "--cut",
            "2",
            "--out",
            "NEW",
        ],
        &["out/notes.txt/sub", "Not a directory"],
    ),
    (
        &["--threads", "0", "inspect", "assets/zoo/base"],
        &["'--threads <THREADS>'", AT_LEAST_1],
    ),
    (
        &["inspect", "assets/zoo/base", "--seq-len", "0"],
        &["'--seq-len <SEQ_LEN>'", AT_LEAST_1],
    ),
    (
        &["inspect", "assets/zoo/base", "--seq-len", "many"],
        &["'--seq-len <SEQ_LEN>'", AT_LEAST_1],
    ),
    (
        &[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            "SAMPLES",
            "--cut",
            "0",
            "--out",
            "OUT",
        ],
        &["'--cut <CUT>'", AT_LEAST_1],
    ),
    (
        &[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            "SAMPLES",
            "--cut=-2",
            "--out",
            "NEW",
        ],
        &["'--cut <CUT>'", AT_LEAST_1],
    ),
    (
        &[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            "SAMPLES",
            "--cut",
            "2",
            "--entropy-bins",
            "1",
            "--out",
            "OUT",
        ],
        &BINS,
    ),
    (
        &[
            "compare",
            "assets/demo/grpo/base",
            "assets/demo/grpo/tuned",
            "--bootstrap",
            "0",
            "--out",
            "OUT",
        ],
        &["'--bootstrap <BOOTSTRAP>'", AT_LEAST_1],
    ),
    (
        &[
            "compare",
            "assets/demo/grpo/base",
            "assets/demo/grpo/tuned",
            "--bootstrap",
            "0",
            "--out",
            "NEW",
        ],
        &["'--bootstrap <BOOTSTRAP>'", AT_LEAST_1],
    ),
    (
        &["lab", "eval", "assets/zoo/base", "--n", "0"],
        &["'--n <N>'", "must be a whole number from 1 to 500"],
    ),
    (
        &["lab", "eval", "assets/zoo/base", "--n", "501"],
        &["'--n <N>'", "must be a whole number from 1 to 500"],
    ),
    (
        &["lab", "eval", "assets/zoo/base", "--max-new-tokens", "0"],
        &["'--max-new-tokens <MAX_NEW_TOKENS>'", AT_LEAST_1],
    ),
    (
        &["bench", "--model", "assets/zoo/base", "--seq-len", "1"],
        &["'--seq-len <SEQ_LEN>'", "must be a whole number ≥ 2"],
    ),
    (
        &["bench", "--model", "assets/zoo/base", "--repeat", "0"],
        &["'--repeat <REPEAT>'", AT_LEAST_1],
    ),
    (
        &["bench", "--model", "assets/zoo/base", "--gen-tokens", "0"],
        &["'--gen-tokens <GEN_TOKENS>'", AT_LEAST_1],
    ),
    (
        &[
            "bench",
            "--write-random-llama",
            "OUT",
            "--random-shape",
            "64,0,4,4,128,100",
        ],
        &["'--random-shape <D,L,H,KV,I,V>'", AT_LEAST_1],
    ),
    (
        &[
            "bench",
            "--write-random-llama",
            "NEW",
            "--random-shape",
            "64,2,4,4,128",
        ],
        &["--random-shape takes six numbers"],
    ),
    #[cfg(feature = "gui")]
    (
        &["bench-gui", "--frames", "0"],
        &["'--frames <FRAMES>'", AT_LEAST_1],
    ),
    #[cfg(feature = "gui")]
    (
        &["bench-gui", "--layers", "0"],
        &["'--layers <LAYERS>'", AT_LEAST_1],
    ),
    #[cfg(feature = "gui")]
    (
        &["bench-gui", "--kv-heads", "2"],
        &["--kv-heads", "--heads <HEADS>"],
    ),
];

/// Run `args`, with `OUT`, `NEW`, `SAMPLES` and `BLOCKED` (a path below a regular file) filled
/// in; return what is wrong, if anything.
fn refused(args: &[&str], says: &[&str], dir: &Path) -> Option<String> {
    let (out, new, samples) = (dir.join("out"), dir.join("new"), dir.join("samples.json"));
    let blocked = out.join("notes.txt/sub");
    let args: Vec<&str> = args
        .iter()
        .map(|&a| match a {
            "OUT" => out.to_str().unwrap(),
            "NEW" => new.to_str().unwrap(),
            "SAMPLES" => samples.to_str().unwrap(),
            "BLOCKED" => blocked.to_str().unwrap(),
            other => other,
        })
        .collect();
    let before = snapshot(&out);
    let (ok, _, stderr) = circuitdiff(&args);
    let mut wrong = Vec::new();
    if ok {
        wrong.push("succeeded".to_owned());
    }
    if stderr.contains("panicked") {
        wrong.push("panicked".to_owned());
    }
    if let Some(cause) = repeated_cause(&stderr) {
        wrong.push(format!("says {cause:?} twice"));
    }
    wrong.extend(
        says.iter()
            .filter(|s| !stderr.contains(*s))
            .map(|s| format!("does not say {s:?}")),
    );
    if snapshot(&out) != before {
        wrong.push("changed the existing output directory".to_owned());
    }
    if new.exists() {
        wrong.push("created the output directory".to_owned());
        std::fs::remove_dir_all(&new).unwrap();
    }
    (!wrong.is_empty()).then(|| format!("{args:?}: {}\n{stderr}", wrong.join("; ")))
}

/// A part of an error line (between `: `) of more than a few words that the line repeats.
fn repeated_cause(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|line| {
        let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 12).collect();
        parts
            .iter()
            .enumerate()
            .find(|(i, p)| parts[i + 1..].contains(p))
            .map(|(_, p)| (*p).to_owned())
    })
}

/// A temporary folder with an output directory that already holds files, and a sample file.
fn workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("kept")).unwrap();
    std::fs::write(out.join("notes.txt"), "written before the command\n").unwrap();
    std::fs::write(out.join("kept/data.bin"), [0u8, 1, 2, 255]).unwrap();
    std::fs::write(
        tmp.path().join("samples.json"),
        r#"[{"id": "s1", "prompt_ids": [1, 5, 6, 7], "answer_ids": [8, 9, 10]}]"#,
    )
    .unwrap();
    tmp
}

#[test]
fn bad_flags_are_refused_naming_the_flag_and_range() {
    let tmp = workspace();
    let mut failures = Vec::new();
    let mut count = 0;
    for (flags, says) in STUDY_CASES {
        for out in ["OUT", "NEW"] {
            let mut args = STUDY.to_vec();
            args.extend_from_slice(flags);
            args.extend(["--out", out]);
            failures.extend(refused(&args, says, tmp.path()));
            count += 1;
        }
    }
    for (args, says) in OTHER_CASES {
        failures.extend(refused(args, says, tmp.path()));
        count += 1;
    }
    assert!(count >= 40, "only {count} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn values_at_the_ends_of_the_ranges_are_accepted() {
    let (ok, stdout, stderr) = circuitdiff(&["inspect", "assets/zoo/base", "--seq-len", "1"]);
    assert!(ok && stdout.contains("at 1 tokens"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = circuitdiff(&[
        "lab",
        "eval",
        "assets/zoo/base",
        "--n",
        "1",
        "--max-new-tokens",
        "1",
    ]);
    assert!(ok && stdout.contains("(1 questions)"), "{stdout}{stderr}");
}

/// The largest `--cut` plans, as it scores, K clamped to each answer's length: `score` scores
/// what the answer's length scores, and a study and a trajectory run.
#[test]
fn the_largest_cut_is_planned_clamped_to_the_answers() {
    let tmp = workspace();
    let dir = tmp.path();
    let samples = dir.join("samples.json");
    let mut scores = Vec::new();
    for cut in [usize::MAX.to_string(), "3".to_owned()] {
        let run = dir.join(format!("cut-{cut}"));
        let (ok, _, stderr) = circuitdiff(&[
            "score",
            "--model",
            "assets/zoo/base",
            "--samples",
            samples.to_str().unwrap(),
            "--cut",
            &cut,
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(ok, "--cut {cut}: {stderr}");
        scores.push(std::fs::read(run.join("scores.npz")).unwrap());
    }
    assert!(scores[0] == scores[1], "the answer has 3 tokens");
    let mut args = STUDY.to_vec();
    let out = dir.join("study");
    let max = usize::MAX.to_string();
    args.extend(["--cut", &max, "--out", out.to_str().unwrap()]);
    let (ok, _, stderr) = circuitdiff(&args);
    assert!(ok, "{stderr}");
    let out = dir.join("trajectory");
    let (ok, _, stderr) = circuitdiff(&[
        "trajectory",
        "assets/zoo/base",
        "assets/zoo/grpo",
        "--steps",
        "0,10",
        "--limit",
        "24",
        "--n",
        "5",
        "--max-new-tokens",
        "32",
        "--cut",
        &max,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
}

#[test]
fn runs_of_different_graphs_are_not_compared() {
    let tmp = workspace();
    let dir = tmp.path();
    let tiny = Tiny::Llama.write(dir);
    let samples = dir.join("samples.json");
    let mut runs = Vec::new();
    for (model, name) in [
        (Path::new("assets/zoo/base"), "four"),
        (tiny.as_path(), "two"),
    ] {
        let run = dir.join(name);
        let (ok, _, stderr) = circuitdiff(&[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--samples",
            samples.to_str().unwrap(),
            "--cut",
            "2",
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        runs.push(run.to_str().unwrap().to_owned());
    }
    let layers = "the runs cannot be paired: their graphs differ (4 layers at block level vs 2 layers at block level) (base vs tuned)";
    let dirs = format!("base run {}, tuned run {}", runs[0], runs[1]);
    for out in ["OUT", "NEW"] {
        let args = ["compare", &runs[0], &runs[1], "--out", out];
        let failure = refused(&args, &[layers, dirs.as_str()], dir);
        assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    }
}

/// A copy of the bundled base model in `dir/name` with `config.json` edited by `edit`, keeping
/// the weights of the layers the edited config has.
fn edited_copy(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = Path::new("assets/zoo/base");
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(file), dst.join(file)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let weights = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = weights
        .tensors()
        .into_iter()
        .filter(|(name, _)| (layers..4).all(|l| !name.starts_with(&format!("model.layers.{l}."))))
        .collect();
    safetensors::serialize_to_file(kept, None, &dst.join("model.safetensors")).unwrap();
    dst
}

#[test]
fn a_study_of_two_different_graphs_is_refused_before_it_writes() {
    let tmp = workspace();
    let two = edited_copy(tmp.path(), "two-layer", |c| {
        c["num_hidden_layers"] = 2.into()
    });
    let says = "base assets/zoo/base and tuned ";
    for out in ["OUT", "NEW"] {
        let args = [
            "study",
            "--base",
            "assets/zoo/base",
            "--tuned",
            two.to_str().unwrap(),
            "--dataset",
            "builtin:arith?n=4",
            "--out",
            out,
        ];
        let differ = "cannot be compared: their graphs differ (4 layers at block level vs 2 layers at block level); circuits can only be compared between checkpoints of one architecture";
        let failure = refused(&args, &[says, differ], tmp.path());
        assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    }
}

#[test]
fn a_stop_id_outside_the_vocabulary_is_refused() {
    let tmp = workspace();
    let args = [
        "study",
        "--base",
        "assets/zoo/base",
        "--tuned",
        "assets/zoo/grpo",
        "--dataset",
        "builtin:arith?n=4",
        "--stop-id",
        "4000000",
        "--out",
        "NEW",
    ];
    let says = [
        "--stop-id 4000000 is not a token of these models",
        "use an id below",
    ];
    let failure = refused(&args, &says, tmp.path());
    assert!(failure.is_none(), "{}", failure.unwrap_or_default());
}

#[test]
fn sequences_beyond_the_context_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let short = edited_copy(tmp.path(), "short", |c| {
        c["max_position_embeddings"] = 12.into()
    });
    let out = tmp.path().join("study");
    let (ok, _, stderr) = circuitdiff(&[
        "study",
        "--base",
        short.to_str().unwrap(),
        "--tuned",
        short.to_str().unwrap(),
        "--dataset",
        "builtin:arith?n=4",
        "--n",
        "2",
        "--max-new-tokens",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let says = "are longer than its context of 12 tokens (max_position_embeddings)";
    assert!(stderr.contains(says), "ok {ok}: {stderr}");
}

/// A checkpoint with a NaN weight scores to values that are not finite: the refusal names the
/// sample, the model's spec and its weight file, and gives an f32 run no advice to use f32.
#[test]
fn scores_that_are_not_finite_name_the_checkpoint_and_file() {
    let tmp = workspace();
    let model = Tiny::Llama.write(tmp.path());
    let weights = model.join("model.safetensors");
    common::set_first_value(&weights, "model.layers.0.mlp.down_proj.weight", f32::NAN);
    let samples = tmp.path().join("samples.json");
    let (ok, _, e) = circuitdiff(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--cut",
        "2",
        "--out",
        tmp.path().join("new").to_str().unwrap(),
    ]);
    assert!(!ok, "{e}");
    let says = format!(
        "sample `s1`: the scores are not finite (NaN or infinite activations) with {} ({}): in \
         f32 this means weights that are NaN, infinite or too large",
        model.display(),
        weights.display()
    );
    assert!(e.contains(&says), "{e}");
    assert!(!e.contains("--dtype f32") && !e.contains("f16"), "{e}");
}

/// `merge` given a study shard beside a trajectory shard says that the two workflows differ,
/// not that the study shard is no shard.
#[test]
fn merging_a_study_shard_with_a_trajectory_shard_says_so() {
    let tmp = workspace();
    let (study, trajectory) = (tmp.path().join("study-0"), tmp.path().join("trajectory-1"));
    let out = tmp.path().join("merged");
    let study_shard = [
        "study",
        "--base",
        "assets/zoo/base",
        "--tuned",
        "assets/zoo/grpo",
    ];
    let (ok, _, e) = circuitdiff(
        &[
            &study_shard[..],
            &["--dataset", "builtin:arith?n=2", "--shard", "0/2", "--out"],
            &[study.to_str().unwrap(), "--max-new-tokens", "4"],
        ]
        .concat(),
    );
    assert!(ok, "{e}");
    std::fs::create_dir_all(&trajectory).unwrap();
    std::fs::write(trajectory.join("trajectory.json"), "{}").unwrap();
    let (ok, _, e) = circuitdiff(&[
        "merge",
        study.to_str().unwrap(),
        trajectory.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let says = format!(
        "{}: holds a study, not a trajectory shard; `circuitdiff merge` joins the shards of one \
         trajectory (each written by `circuitdiff trajectory --shard i/n`)",
        study.display()
    );
    assert!(!ok && e.contains(&says), "{e}");
    assert!(!out.exists(), "nothing is written");
}
