//! The app's fine-tune window driven through egui_kittest: the form refuses bad settings with
//! the library's words, a short GRPO run of the bundled zoo base draws its reward and held-out
//! accuracy while it runs, and "Open trajectory" computes and opens the run's trajectory; a
//! snapshot of the window after a run. `tests/app.rs` has the rest of the app.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::app::tune::{TuneEnd, Tuning};
use circuitdiff::app::views::View;
use circuitdiff::app::{App, Options};
use circuitdiff::lab::tune::{TuneConfig, TuneEvent, TuneReport};
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The bundled zoo's base model, relative to the crate (the tests' working folder), so that
/// the snapshot shows the same text on every machine.
const ZOO_BASE: &str = "assets/zoo/base";

fn harness(wgpu: bool) -> Harness<'static, App> {
    let mut b = Harness::builder().with_size([1280.0, 800.0]);
    if wgpu {
        b = b.wgpu();
    }
    b.build_eframe(|cc| {
        App::new(
            cc,
            Options {
                persist: false,
                ..Options::default()
            },
            Default::default(),
        )
    })
}

/// Step until `done` holds (panics after `secs`).
fn step_until(h: &mut Harness<'_, App>, secs: u64, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; status: {:?}; panel error: {:?}; trajectory: {:?}",
            h.state().status_text(),
            h.state().tuning.error.as_ref().map(ToString::to_string),
            (h.state().tuning.trajectory.as_ref())
                .and_then(|t| t.stages.stages.last())
                .map(|s| (s.name.clone(), s.done, s.total)),
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(2);
}

/// Open the window from the Models panel and fill the form for a short run into `out`:
/// three GRPO steps of two questions with groups of four on twelve questions (eight held
/// out), checkpoints at steps 2 and 3.
fn open_and_fill(h: &mut Harness<'_, App>, out: PathBuf) {
    h.run_steps(2);
    h.get_by_label("Fine-tune a model…").click_accesskit();
    h.run_steps(2);
    h.get_by_label("Start fine-tune");
    // The form's method and weights switch by their radio buttons.
    h.get_by_label("DPO").click_accesskit();
    h.run_steps(2);
    h.get_by_label("DPO settings");
    assert!(h.query_by_label("GRPO settings").is_none());
    h.get_by_label("GRPO").click_accesskit();
    h.get_by_label("full").click_accesskit();
    h.run_steps(2);
    assert!(
        h.query_by_label("rsLoRA").is_none(),
        "LoRA's rows with full fine-tuning"
    );
    h.get_by_label("LoRA").click_accesskit();
    h.run_steps(2);
    h.get_by_label("rsLoRA").click_accesskit();
    h.get_by_label("k_proj").click_accesskit();
    h.run_steps(2);
    let form = &mut h.state_mut().settings.tune;
    assert!(form.lora.rslora);
    assert!(!form.full);
    form.model = ZOO_BASE.into();
    form.arith.n = 12;
    form.grpo.questions = 2;
    form.grpo.group = 4;
    form.lora.rank = 2;
    form.steps = 3;
    form.save_every = 2;
    form.lr = 0.005;
    form.max_new_tokens = 32;
    form.eval_questions = 8;
    form.seed = 3;
    form.out = out.display().to_string();
    let study = &mut h.state_mut().settings.study;
    study.n = 4;
    study.alpha = 0.99;
    study.max_new_tokens = 32;
    h.run_steps(2);
}

#[test]
fn a_fine_tune_runs_from_the_models_panel_plots_live_and_opens_its_trajectory() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut h = harness(false);
    open_and_fill(&mut h, out.clone());

    // A bad setting is refused in the panel with the library's reason; nothing starts.
    h.state_mut().settings.tune.lora.rank = 0;
    h.get_by_label("Start fine-tune").click_accesskit();
    h.run_steps(3);
    h.get_by_label_contains("LoRA rank 0 adapts nothing");
    assert!(h.state().tuning.run.is_none());
    h.state_mut().settings.tune.lora.rank = 2;

    h.get_by_label("Start fine-tune").click_accesskit();
    step_until(&mut h, 60, "the first step's point", |a| {
        !a.tuning.history.is_empty()
    });
    // The plot has its first point while the run goes on, with the step and the time left.
    assert!(
        h.state().tuning.run.is_some(),
        "the run ended before a point was drawn live"
    );
    // In the window and in the status strip.
    assert_eq!(h.get_all_by_label_contains("fine-tune: step ").count(), 2);
    h.get_by_label("Cancel fine-tune");
    step_until(&mut h, 120, "the run to end", |a| a.tuning.run.is_none());
    let tuning = &h.state().tuning;
    assert!(
        matches!(&tuning.ended, Some(TuneEnd::Stopped(r)) if r.steps == 3),
        "{:?}",
        tuning.error
    );
    let steps: Vec<usize> = tuning.history.iter().map(|e| e.step).collect();
    assert_eq!(steps, [1, 2, 3]);
    assert!(tuning
        .history
        .iter()
        .all(|e| e.reward.is_some() && e.kl.is_some()));
    let accuracy: Vec<usize> = (tuning.history.iter())
        .filter(|e| e.accuracy.is_some())
        .map(|e| e.step)
        .collect();
    assert_eq!(accuracy, [2, 3], "held-out accuracy at the checkpoints");
    // The plotted events are the run's log_history.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("trainer_state.json")).unwrap()).unwrap();
    let logged = state["log_history"][1]["reward"].as_f64().unwrap();
    assert_eq!(tuning.history[1].reward, Some(logged));
    h.get_by_label_contains("finished after step 3: 2 checkpoints");

    h.get_by_label("Open trajectory").click_accesskit();
    step_until(&mut h, 300, "the trajectory to open", |a| {
        a.shown.trajectory.data.is_some() && !a.is_loading()
    });
    let data = h.state().shown.trajectory.data.clone().unwrap();
    assert_eq!(data.dir, tmp.path().join("run-trajectory"));
    let points: Vec<u64> = data.summary.points.iter().map(|p| p.step).collect();
    assert_eq!(points, [0, 2, 3]);
    assert_eq!(h.state().settings.view, View::Trajectory);
    eprintln!(
        "fine-tune and trajectory in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A finished run's measurements, made up so that the snapshot is the same everywhere.
fn finished(tuning: &mut Tuning) {
    let rewards = [0.25, 0.375, 0.5, 0.5, 0.625, 0.75];
    tuning.history = (1..=6)
        .map(|step| TuneEvent {
            step,
            steps: 6,
            loss: Some(0.01),
            kl: Some(0.001 * step as f64),
            reward: Some(rewards[step - 1]),
            margin: None,
            accuracy: (step % 2 == 0).then_some(0.25 + 0.125 * (step / 2) as f64),
            seconds: Some(30.0),
        })
        .collect();
    let out = PathBuf::from("runs/grpo");
    let cfg = TuneConfig {
        steps: 6,
        save_every: 2,
        ..TuneConfig::new(ZOO_BASE, "builtin:arith?n=24")
    };
    tuning.last = Some((cfg, out.clone()));
    tuning.ended = Some(TuneEnd::Stopped(TuneReport {
        steps: 6,
        checkpoints: [2, 4, 6]
            .map(|s| out.join(format!("checkpoint-{s}")))
            .to_vec(),
        accuracy: Some(0.625),
    }));
}

#[test]
fn snapshot_of_the_fine_tune_window_after_a_run() {
    let mut h = harness(true);
    step_until(&mut h, 60, "the demo study", |a| !a.is_loading());
    h.get_by_label("Fine-tune a model…").click_accesskit();
    h.state_mut().settings.tune.model = ZOO_BASE.into();
    finished(&mut h.state_mut().tuning);
    h.run_steps(4);
    h.get_by_label("Open trajectory");
    h.get_by_label_contains("finished after step 6: 3 checkpoints; held-out accuracy 62 %");
    h.snapshot("window_fine_tune");
}
