//! The app's statements of what was scored and what it shows, by label (egui_kittest, no
//! rendering): the scored span and its warning in the comparison table, the scored tokens in
//! the question browser, the user's own `demo` folder apart from the bundled demo, and the
//! training logs of the shown results' own models.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::app::results::ScoredTokens;
use circuitdiff::app::views::View;
use circuitdiff::app::{App, Options};
use circuitdiff::report::span::{KSource, ScoredSpan};
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The app on `open` (no saved settings), stepped until its results are on screen.
fn opened(open: PathBuf) -> Harness<'static, App> {
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| {
            App::new(
                cc,
                Options {
                    persist: false,
                    open: Some(open),
                    screenshot: None,
                    view: None,
                    mode: None,
                    window: None,
                },
                Default::default(),
            )
        });
    let start = Instant::now();
    while h.state().shown.results.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no results: {:?}",
            h.state().status_text()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(3);
    h
}

#[test]
fn the_table_states_k_and_warns_when_it_is_small() {
    let mut h = opened(repo("tests/fixtures/study"));
    h.state_mut().settings.view = View::Table;
    h.run_steps(2);
    // The fixture's runs were scored with a given cut of 6.
    h.get_by_label("scored: K = 6 answer tokens (--cut), n = 8 questions");
    // Beside every view's title too.
    h.get_by_label("K = 6 answer tokens scored");
    assert!(h.query_by_label_contains("Warning: K =").is_none());
    let short = ScoredSpan {
        k: 1,
        source: KSource::Derived {
            alpha: 0.05,
            t_bar: 23.4,
        },
        n: 8,
        shorter: 0,
        min_k: 4,
    };
    if let Some(c) = h
        .state_mut()
        .shown
        .results
        .as_mut()
        .and_then(|r| r.comparison.as_mut())
    {
        c.span = Some(short);
    }
    h.run_steps(2);
    h.get_by_label("scored: K = 1 answer token (α = 0.05 × T̄ = 23.4), n = 8 questions");
    h.get_by_label("K = 1 of T̄ = 23.4 answer tokens scored");
    h.get_by_label_contains(
        "Warning: K = 1 is below 4: each circuit explains only its first answer token",
    );
    h.get_by_label_contains("a larger --alpha (≥ 0.18 for K ≥ 4, now 0.05), --cut 4");
}

#[test]
fn the_question_browser_marks_the_scored_tokens() {
    let mut h = opened(repo("tests/fixtures/study"));
    h.state_mut().settings.view = View::Questions;
    h.state_mut().views.questions.selected = Some(0);
    h.run_steps(2);
    let answer = h.state().shown.results.as_ref().unwrap().questions[0]
        .base
        .clone()
        .unwrap();
    let n = answer.answer_tokens;
    // The fixture's model folder is gone: the tokens are counted, not marked.
    h.get_by_label(&format!(
        "(K = 6: the first 6 of {n} answer tokens); the tokenizer was not found to mark them"
    ));
    let prefix: String = answer.text.chars().take(5).collect();
    let q = &mut h.state_mut().shown.results.as_mut().unwrap().questions[0];
    if let Some(a) = q.base.as_mut() {
        a.scored = Some(ScoredTokens {
            k: 6,
            text: Some(prefix),
        });
    }
    h.run_steps(2);
    h.get_by_label(&format!("(K = 6: the first 6 of {n} answer tokens)"));
    assert!(h.get_all_by_label(" scored tokens ").count() >= 2);
}

/// Copy the fixture study into `dir`.
fn copy_study(dir: &Path) {
    let from = repo("tests/fixtures/study");
    for entry in walk(&from) {
        let to = dir.join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_demo_folder_opens_with_its_own_studies_apart_from_the_bundled_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("circuitdiff-demo");
    for pair in ["grpo", "dpo"] {
        copy_study(&run.join(pair));
    }
    std::fs::write(run.join("summary.json"), "[]").unwrap();
    let h = opened(run.clone());
    assert_eq!(
        h.state().shown.results.as_ref().unwrap().dir,
        run.join("grpo")
    );
    h.get_by_label("Your demo run");
    h.get_by_label("Bundled demo studies");
    // The bundled buttons and the run's: two of each pair name; "grpo" also names the bundled
    // trajectory and the opened study among the recent ones.
    assert_eq!(h.get_all_by_label("dpo").count(), 2);
    h.get_by_label("Your recent results");
    assert_eq!(h.get_all_by_label("grpo").count(), 4);
}

#[test]
fn the_training_view_shows_the_results_own_logs_or_says_there_are_none() {
    let mut h = opened(repo("tests/fixtures/study"));
    h.state_mut().settings.view = View::Training;
    h.run_steps(2);
    h.get_by_label_contains("No training logs for these results");
    let mut h = opened(repo("assets/demo/grpo"));
    h.state_mut().settings.view = View::Training;
    h.run_steps(2);
    h.get_by_label("The training logs of these results' models (assets/zoo/base, assets/zoo/grpo)");
    assert_eq!(h.state().views.training.logs.len(), 2);
}
