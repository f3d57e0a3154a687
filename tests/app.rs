//! The desktop app driven through egui_kittest by its labels: open results, switch graph modes,
//! move the top-k slider, select a node, sort the table, start and cancel a study on tiny models
//! (no GPU needed); snapshot images of every view and PNG export, rendered with wgpu on Mesa's
//! software Vulkan driver; and the binary in a real window under Xvfb. `.ci/setup` installs
//! lavapipe and Xvfb. The fixed study in `tests/fixtures/study` was written by
//! `regenerate_fixture` (ignored; run it with `--ignored` after a format change).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::app::views::View;
use circuitdiff::app::{App, Options};
use circuitdiff::report::circuit::Mode;
use circuitdiff::side::{PerSide, Side};
use common::Tiny;
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/study")
}

/// The same study on 32-layer models (the depth of the study's models).
fn fixture32() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/study32")
}

/// A trajectory of the demo zoo's GRPO run (four checkpoints, eight questions), written by
/// `circuitdiff trajectory assets/zoo/grpo --limit 48 --n 8 --alpha 0.99 --max-new-tokens 40
/// --batch 16` without its figures.
fn trajectory_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trajectory")
}

fn lab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab")
}

fn harness(open: Option<PathBuf>) -> Harness<'static, App> {
    builder(open, false)
}

/// A harness with the fixture loaded that renders with wgpu.
fn rendering_harness() -> Harness<'static, App> {
    rendering_harness_of(fixture())
}

/// A harness with the study in `dir` loaded that renders with wgpu.
fn rendering_harness_of(dir: PathBuf) -> Harness<'static, App> {
    let mut h = builder(Some(dir), true);
    step_until(&mut h, 60, "the fixture", |a| a.shown.results.is_some());
    h.state_mut().views.training.open(&lab());
    h
}

fn builder(open: Option<PathBuf>, wgpu: bool) -> Harness<'static, App> {
    let mut b = Harness::builder().with_size([1280.0, 800.0]);
    if wgpu {
        b = b.wgpu();
    }
    b.build_eframe(move |cc| {
        App::new(
            cc,
            Options {
                persist: false,
                open,
                screenshot: None,
                view: None,
                mode: None,
                window: None,
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
            "timed out waiting for {what}; status: {:?}; model errors: {:?}",
            h.state().status_text(),
            h.state()
                .study
                .models
                .slots
                .as_ref()
                .map(|_, s| s.error.as_ref().map(|e| e.to_string()))
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(3);
}

fn click_at(h: &mut Harness<'_, App>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::default(),
        });
    }
    h.run_steps(2);
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn open_results_switch_modes_slide_select_and_sort() {
    let mut h = harness(None);
    h.state_mut().settings.recent_results = vec![fixture()];
    h.run_steps(2);
    h.get_by_label("study").click();
    step_until(&mut h, 60, "the fixture", |a| {
        !a.is_loading() && a.shown.results.as_ref().is_some_and(|r| r.dir == fixture())
    });
    let results = h.state().shown.results.as_ref().unwrap();
    assert_eq!(results.circuit.edges.len(), 4 * 16 + 3 * 4 + 1);
    assert_eq!(results.questions.len(), 8);

    for (mode, header, legend) in [
        (
            Mode::ImportanceChange,
            "· importance change, |tuned| − |base|",
            ["more important in tuned", "less important in tuned"],
        ),
        (
            Mode::Difference,
            "· tuned − base",
            ["tuned > base (signed score)", "tuned < base (signed score)"],
        ),
        (
            Mode::Tuned,
            "· tuned model",
            ["positive score", "negative score"],
        ),
        (
            Mode::Base,
            "· base model",
            ["positive score", "negative score"],
        ),
    ] {
        h.get_by_label(mode.label()).click();
        h.run_steps(2);
        assert_eq!(h.state().settings.mode, mode);
        // The header and the legend say what is shown.
        h.get_by_label(header);
        for entry in legend {
            h.get_by_label(entry);
        }
    }

    h.get_by_role_and_label(egui::accesskit::Role::Slider, "top-k edges")
        .set_value_accesskit(20.0);
    h.run_steps(2);
    assert_eq!(h.state().settings.top_k, 20);
    assert_eq!(h.state().views.graph.drawn, 20);

    // Hover the middle of the largest edge: its name and both scores show.
    let circuit = &h.state().shown.results.as_ref().unwrap().circuit;
    let top = circuit.order(Mode::Base)[0];
    let name = circuit.edge_name(top);
    let mid = h
        .state()
        .views
        .graph
        .to_screen(circuit.edges[top as usize].at(0.5));
    h.hover_at(mid);
    h.run_steps(40);
    assert_eq!(h.state().views.graph.hovered, Some(top));
    h.get_by_label(&name);
    h.get_by_label_contains("Tuned: ");

    let circuit = &h.state().shown.results.as_ref().unwrap().circuit;
    let m1 = circuit
        .nodes
        .iter()
        .position(|n| n.node == circuitdiff::node::Node::Mlp { layer: 1 })
        .unwrap();
    let pos = h.state().views.graph.node_screen[m1];
    click_at(&mut h, pos);
    assert_eq!(h.state().views.graph.selected, Some(m1));
    h.get_by_label("Incoming edges of m1 (4)");
    h.get_by_label("Outgoing edges of m1 (9)");
    // Hovering an entry of the edge list highlights that edge in the graph.
    let circuit = &h.state().shown.results.as_ref().unwrap().circuit;
    let (incoming, _) = circuit.edges_of(m1, Mode::Base);
    let first = incoming[0];
    let name = circuit.edge_name(first);
    h.get_by_label(&name).hover();
    h.run_steps(2);
    assert_eq!(h.state().views.graph.highlighted, Some(first), "{name}");

    h.get_by_label("Comparison table").click();
    h.run_steps(2);
    let p_values = |h: &Harness<'_, App>| -> Vec<f64> {
        let r = h.state().shown.results.as_ref().unwrap();
        let order = circuitdiff::app::views::table::shown_order(r, h.state().views.table);
        let cmp = r.comparison.as_ref().unwrap();
        order
            .iter()
            .map(|m| {
                cmp.metrics
                    .iter()
                    .find(|s| s.metric.name() == m)
                    .unwrap()
                    .p_value
            })
            .collect()
    };
    h.get_by_label("p-value").click();
    h.run_steps(2);
    let up = p_values(&h);
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "{up:?}");
    h.get_by_label("p-value").click();
    h.run_steps(2);
    let down = p_values(&h);
    assert!(down.windows(2).all(|w| w[0] >= w[1]), "{down:?}");
    assert_ne!(up, down);
}

/// The change in importance: its mode in the graph, heatmap and edge list; the most changed
/// edges with their tests, sorted and pinned; the per-layer view following the Difference mode.
#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn importance_change_most_changed_edges_and_per_layer_differences() {
    let mut h = harness(Some(fixture()));
    step_until(&mut h, 60, "the fixture", |a| a.shown.results.is_some());
    h.get_by_label("Importance change").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.mode, Mode::ImportanceChange);
    h.get_by_label("less important in tuned");
    // The mode's values are |tuned| − |base| of the mean scores.
    let r = h.state().shown.results.as_ref().unwrap();
    let c = &r.circuit;
    let (b, t, d) = (
        c.values(Mode::Base).unwrap(),
        c.values(Mode::Tuned).unwrap(),
        c.values(Mode::ImportanceChange).unwrap(),
    );
    for e in 0..b.len() {
        assert_eq!(d[e], t[e].abs() - b[e].abs());
    }
    // A node's edge list says which quantity it lists.
    h.state_mut().views.graph.selected = Some(2);
    h.run_steps(2);
    h.get_by_label("|tuned| − |base|: + more important in tuned, − less important in tuned");
    h.get_by_label("Heatmap").click();
    h.run_steps(2);
    h.get_by_label_contains("|tuned| − |base| · mean score per edge");

    // The most changed edges: what is tested, how many changed, sortable, pinned by a click.
    h.get_by_label("Changed edges").click();
    h.run_steps(2);
    let r = h.state().shown.results.as_ref().unwrap();
    let changes = r.edges.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(changes.tested, r.circuit.edges.len());
    assert_eq!(changes.n, r.base.scores.len());
    h.get_by_label_contains("edges changed in importance at a false-discovery rate of 5 %");
    h.get_by_label_contains("Wilcoxon signed-rank test over the paired questions");
    for column in circuitdiff::report::edge_change::COLUMNS {
        h.get_by_label(column);
    }
    let shown = |h: &Harness<'_, App>| -> Vec<String> {
        let r = h.state().shown.results.as_ref().unwrap();
        let changes = r.edges.as_ref().unwrap().as_ref().unwrap();
        let table = circuitdiff::app::views::edges::table(changes, h.state().views.edges);
        table.rows.iter().map(|row| row[0].text()).collect()
    };
    let first = shown(&h);
    assert_eq!(first[0], changes.edges[0].edge);
    h.get_by_label("Δ|S|").click();
    h.run_steps(2);
    let sorted = shown(&h);
    let delta = |name: &String| {
        let r = h.state().shown.results.as_ref().unwrap();
        let changes = r.edges.as_ref().unwrap().as_ref().unwrap();
        changes
            .edges
            .iter()
            .find(|c| c.edge == *name)
            .unwrap()
            .delta_abs
    };
    let deltas: Vec<f64> = sorted.iter().map(delta).collect();
    assert!(deltas.windows(2).all(|w| w[0] <= w[1]), "{deltas:?}");
    let name = sorted[0].clone();
    h.get_by_label(&name).click();
    h.run_steps(2);
    let r = h.state().shown.results.as_ref().unwrap();
    let pinned = h.state().views.graph.pinned.map(|e| r.circuit.edge_name(e));
    assert_eq!(pinned.as_deref(), Some(name.as_str()));

    // Per layer: both models' levels in Base, the paired difference with its zero line in
    // Difference.
    h.get_by_label("Per layer").click();
    h.get_by_label("Base").click();
    h.run_steps(2);
    h.get_by_label_contains("Mean over the questions per layer");
    h.get_by_label("intensity per layer (mean over questions, 95 % CI)");
    h.get_by_label("Difference").click();
    h.run_steps(2);
    h.get_by_label_contains("Paired difference tuned − base per layer");
    h.get_by_label("Δ intensity per layer (95 % CI)");
    let r = h.state().shown.results.as_ref().unwrap();
    let chart = &r.figures.per_layer_difference[0];
    assert_eq!(chart.series[1].name, "no change");
    assert!(chart.series[1].points.iter().all(|p| p.1 == 0.0));
    assert_eq!(chart.series[0].band.len(), chart.series[0].points.len());
    assert!(chart.series[0]
        .points
        .iter()
        .zip(&chart.series[0].band)
        .all(|(p, b)| b.0 <= p.1 && p.1 <= b.1));
    // Layer 1's point is the mean over the questions, paired by id, of tuned − base.
    let metric = circuitdiff::attribution::metrics::Metric::ALL[0];
    let tuned = r.tuned.as_ref().unwrap();
    let diffs: Vec<f64> = r
        .base
        .metrics
        .samples
        .iter()
        .map(|b| {
            let t = tuned.metrics.samples.iter().find(|t| t.id == b.id).unwrap();
            t.metrics.per_layer[1].get(metric) - b.metrics.per_layer[1].get(metric)
        })
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    assert!((chart.series[0].points[1].1 - mean).abs() <= 1e-12 * mean.abs().max(1e-12));
}

#[test]
fn a_study_starts_on_tiny_models_and_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let base = Tiny::Llama.write(tmp.path());
    let tuned = Tiny::Llama.write_seeded(tmp.path(), 9);
    let mut h = harness(Some(fixture()));
    step_until(&mut h, 60, "the fixture", |a| !a.is_loading());
    {
        let app = h.state_mut();
        app.settings.models = PerSide {
            base: base.display().to_string(),
            tuned: tuned.display().to_string(),
        };
        app.settings.study.n = 50;
        app.settings.study.max_new_tokens = 24;
        app.settings.study.dataset = "builtin:arith?n=400".into();
        app.settings.study.out = tmp.path().join("study").display().to_string();
    }
    h.run_steps(2);
    for slot in 0..2 {
        h.get_all_by_label("Inspect")
            .nth(slot)
            .unwrap()
            .click_accesskit();
        h.run_steps(2);
    }
    step_until(&mut h, 60, "both models and their vocabularies", |a| {
        (a.study.models)
            .ready(&a.settings.models, a.settings.study.level())
            .is_ok()
    });
    assert_eq!(
        h.get_all_by_label("layers").count(),
        2,
        "both models inspected"
    );
    h.get_by_label("Same vocabulary and graph: the pair can be compared");

    h.get_by_label("Run study").click_accesskit();
    step_until(&mut h, 30, "the study to start answering", |a| {
        a.study
            .running
            .as_ref()
            .is_some_and(|s| s.stages.stages.first().is_some_and(|st| st.done > 0))
    });
    // The status strip names the stage, its counts, the time so far and the time left.
    h.get_by_label_contains("study: answer base ");
    h.get_by_label_contains(" · elapsed ");
    // The UI keeps drawing while the worker answers: no frame waits for it.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        h.step();
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        h.state().study_running(),
        "the study ended too early to test"
    );
    assert!(
        slowest < Duration::from_millis(250),
        "a frame took {slowest:?}"
    );
    h.get_by_label("Cancel study").click_accesskit();
    step_until(&mut h, 60, "the study to stop", |a| !a.study_running());
    let status = h.state().status_text().unwrap_or_default().to_owned();
    assert!(status.contains("study cancelled"), "{status}");
    assert!(tmp.path().join("study/study.json").is_file());
    // The fixture's results stayed loaded throughout.
    assert!(h
        .state()
        .shown
        .results
        .as_ref()
        .is_some_and(|r| r.dir == fixture()));
    assert_eq!(h.state().settings.view, View::Graph);
}

/// A file dropped on the window.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        Err("a folder".into())
    }
}

#[test]
fn dropping_a_model_fills_a_slot_and_a_results_folder_opens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Tiny::Qwen2.write(tmp.path());
    let mut h = harness(None);
    h.run_steps(2);
    let drop = |h: &mut Harness<'_, App>, path: PathBuf| {
        h.input_mut()
            .dropped_files
            .push(std::sync::Arc::new(Dropped(path)));
        h.step();
    };
    drop(&mut h, model.clone());
    step_until(&mut h, 60, "the dropped model's inspection", |a| {
        a.study.models.slots[Side::Base].info.is_some()
    });
    assert_eq!(
        h.state().settings.models[Side::Base],
        model.display().to_string()
    );
    assert_eq!(
        h.state().settings.recent_models[0],
        model.display().to_string()
    );
    h.get_by_label("qwen2");

    drop(&mut h, fixture());
    step_until(&mut h, 60, "the dropped results", |a| {
        a.shown.results.as_ref().is_some_and(|r| r.dir == fixture())
    });
}

#[test]
fn help_about_and_the_table_explain_themselves() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/grpo");
    let mut h = harness(Some(demo));
    step_until(&mut h, 60, "the GRPO demo", |a| a.shown.results.is_some());
    h.get_by_label("Help").click();
    h.run_steps(2);
    h.get_by_label("Guide: views, metrics, node names").click();
    h.run_steps(3);
    for heading in ["The study", "Views", "Metrics", "Node names"] {
        h.get_by_label(heading);
    }
    for metric in circuitdiff::attribution::metrics::Metric::ALL {
        h.get_by_label(metric.definition());
    }
    h.get_by_label("Help").click_accesskit();
    h.run_steps(2);
    h.get_by_label("About circuitdiff").click_accesskit();
    h.run_steps(3);
    h.get_by_label(&format!("circuitdiff {}", env!("CARGO_PKG_VERSION")));
    let views = &mut h.state_mut().views;
    (views.help, views.about) = (false, false);
    h.run_steps(2);

    h.get_by_label("Comparison table").click();
    h.run_steps(3);
    let counts = h
        .state()
        .shown
        .results
        .as_ref()
        .unwrap()
        .counts
        .clone()
        .unwrap();
    h.get_by_label(&circuitdiff::app::views::table::counts_line(&counts));
    h.get_by_label_contains("questions asked; accuracy base");
    let marked = h.query_all_by_label_contains(" *").count();
    let significant = h
        .state()
        .shown
        .results
        .as_ref()
        .unwrap()
        .comparison
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .filter(|s| s.p_adjusted < 0.05)
        .count();
    // Marks read the adjusted p-values, not the raw ones.
    assert_eq!(marked, significant);
}

#[test]
fn without_a_file_dialog_paths_are_typed_and_checked() {
    let mut h = harness(None);
    h.state_mut().window.native_dialogs = false;
    h.run_steps(2);
    h.get_by_label("Open results folder…").click();
    h.run_steps(3);
    h.get_by_label("No file dialog is available on this desktop: type the path.");
    let typed = |h: &mut Harness<'_, App>, text: &str| {
        h.state_mut()
            .window
            .path_prompt
            .as_mut()
            .expect("the typed-path window")
            .text = text.into();
        h.run_steps(1);
        h.get_by_label("Use this path").click();
        h.run_steps(3);
    };
    typed(&mut h, "/no/such/folder");
    h.get_by_label("/no/such/folder: no such folder");
    assert!(
        h.state().window.path_prompt.is_some(),
        "a refused path keeps the window open"
    );
    typed(&mut h, fixture().to_str().unwrap());
    assert!(h.state().window.path_prompt.is_none());
    step_until(&mut h, 60, "the typed folder", |a| {
        a.shown.results.as_ref().is_some_and(|r| r.dir == fixture())
    });

    // A model file must exist and be a .gguf or .safetensors file.
    let pick = circuitdiff::app::paths::Pick::Model {
        side: circuitdiff::side::Side::Base,
        folder: false,
    };
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let refused = pick.check(readme.to_str().unwrap()).unwrap_err();
    assert!(
        refused.ends_with("expected a .gguf or .safetensors file"),
        "{refused}"
    );
}

#[test]
fn the_question_browser_searches_and_moves_with_the_keys() {
    let mut h = harness(Some(fixture()));
    step_until(&mut h, 60, "the fixture", |a| a.shown.results.is_some());
    h.state_mut().settings.view = View::Questions;
    h.run_steps(3);
    h.get_by_label("8 of 8 questions; the up and down keys move");
    h.state_mut().views.questions.search = "Q3".into();
    h.run_steps(3);
    h.get_by_label("1 of 8 questions; the up and down keys move");
    h.state_mut().views.questions.search = "what is 24+".into();
    h.run_steps(3);
    h.get_by_label("1 of 8 questions; the up and down keys move");
    h.get_by_label_contains("q3 (scored) what is 24+26?");
    h.state_mut().views.questions.search.clear();
    h.run_steps(2);

    let selected = |h: &Harness<'_, App>| h.state().views.questions.selected;
    for (key, expect) in [
        (egui::Key::ArrowDown, Some(0)),
        (egui::Key::ArrowDown, Some(1)),
        (egui::Key::ArrowDown, Some(2)),
        (egui::Key::ArrowUp, Some(1)),
    ] {
        h.key_press(key);
        h.run_steps(2);
        assert_eq!(selected(&h), expect, "after {key:?}");
    }
    h.get_by_label("Question q1");
    // Each row says in words how the two models did.
    let r = h.state().shown.results.as_ref().unwrap();
    let outcomes: Vec<_> = r
        .questions
        .iter()
        .map(circuitdiff::app::views::questions::Outcome::of)
        .collect();
    for outcome in &outcomes {
        let rows = outcomes.iter().filter(|o| *o == outcome).count();
        let shown = h
            .query_all_by_label(&format!("{:<10}", outcome.label()))
            .count();
        assert_eq!(shown, rows, "{outcome:?}");
    }
}

#[test]
fn graph_search_filter_and_heatmap_selection_are_linked() {
    use egui::accesskit::Role;
    let mut h = harness(Some(fixture32()));
    step_until(&mut h, 60, "the 32-layer fixture", |a| {
        a.shown.results.is_some()
    });
    // The mode is in the header.
    h.get_by_label("· base model");
    h.get_by_label("Difference").click();
    h.run_steps(3);
    h.get_by_label("· tuned − base");
    h.get_by_label("tuned > base (signed score)");

    // Typing a name finds the nodes that contain it; Enter selects the exact one.
    let field = h.get_by_role_and_label(Role::TextInput, "Find");
    field.focus();
    field.type_text("m12");
    h.run_steps(2);
    h.get_by_label("1 found");
    h.key_press(egui::Key::Enter);
    h.run_steps(3);
    let graph = &h.state().views.graph;
    let r = h.state().shown.results.as_ref().unwrap();
    let m12 = graph.selected.map(|i| r.circuit.nodes[i].node.to_string());
    assert_eq!(m12.as_deref(), Some("m12"));
    h.get_by_label_contains("Incoming edges of m12");

    // Filtering layers and kinds hides nodes and their edges.
    let drawn_all = h.state().views.graph.drawn;
    h.state_mut().views.graph.filter.layers = [0, 3];
    h.run_steps(3);
    let drawn_few = h.state().views.graph.drawn;
    assert!(
        drawn_few < drawn_all,
        "{drawn_few} edges drawn in layers 0-3 of {drawn_all}"
    );
    h.get_by_label("Show all").click();
    h.run_steps(3);
    assert_eq!(h.state().views.graph.drawn, drawn_all);
    h.get_by_label("MLP").click();
    h.run_steps(3);
    assert!(h.state().views.graph.drawn < drawn_all);
    h.get_by_label("MLP").click();
    h.run_steps(3);

    // The heatmap outlines the selected node and names it.
    h.get_by_label("Heatmap").click();
    h.run_steps(3);
    h.get_by_label_contains("Selected: m12, its column as a source");
    h.get_by_label_contains("colours saturate at");

    // A click on a cell selects its source in the graph and pins its edge, shown in the
    // heatmap and in the graph's edge list.
    let r = h.state().shown.results.as_ref().unwrap();
    let graph = &r.circuit.graph;
    let s = graph
        .sources
        .iter()
        .position(|n| n.to_string() == "a5")
        .unwrap();
    let d = graph
        .destinations
        .iter()
        .position(|d| d.to_string() == "m20")
        .unwrap();
    let (ns, nd) = graph.dense_shape();
    let matrix = h
        .state()
        .views
        .heatmap
        .matrix
        .expect("the matrix on screen");
    let cell = egui::pos2(
        matrix.left() + matrix.width() * (s as f32 + 0.5) / ns as f32,
        matrix.bottom() - matrix.height() * (d as f32 + 0.5) / nd as f32,
    );
    click_at(&mut h, cell);
    h.run_steps(2);
    h.get_by_label_contains("Selected: a5, its column");
    h.get_by_label_contains("pinned edge a5->m20");
    h.get_by_label("Circuit graph").click();
    h.run_steps(3);
    h.get_by_label_contains("Pinned edge a5->m20");
    let r = h.state().shown.results.as_ref().unwrap();
    let highlighted = h
        .state()
        .views
        .graph
        .highlighted
        .map(|e| r.circuit.edge_name(e));
    assert_eq!(highlighted.as_deref(), Some("a5->m20"));
}

/// At 1280×800 the 32-layer graph is drawn in layers with nothing clipped: every node and
/// every label inside the canvas, no two labels overlapping, every drawn edge with an arrowhead
/// at its destination, and the line above saying what share of the |score| the edges hold.
#[test]
fn a_deep_graph_is_layered_unclipped_and_directed() {
    let mut h = harness(Some(fixture32()));
    step_until(&mut h, 60, "the 32-layer fixture", |a| {
        a.shown.results.is_some()
    });
    h.run_steps(3);
    h.get_by_label_contains("showing 100 of 4193 edges, ");
    h.get_by_label_contains("% of |score| mass; 80 % takes ");
    let graph = &h.state().views.graph;
    let r = h.state().shown.results.as_ref().unwrap();
    let canvas = graph.canvas().expect("the canvas on screen");
    assert!(
        canvas.width() > 500.0 && canvas.height() > 500.0,
        "{canvas:?}"
    );
    for (i, p) in graph.node_screen.iter().enumerate() {
        assert!(canvas.contains(*p), "{} at {p:?}", r.circuit.nodes[i].node);
    }
    // Every layer is labelled at this size (one row of text a layer fits), inside the canvas.
    assert_eq!(graph.labels.len(), r.circuit.nodes.len());
    for (i, rect) in &graph.labels {
        let name = r.circuit.nodes[*i].node;
        assert!(
            canvas.contains_rect(*rect),
            "{name}'s label {rect:?} outside {canvas:?}"
        );
        for (j, other) in &graph.labels {
            assert!(
                i == j || !rect.intersects(*other),
                "{name} over {}",
                r.circuit.nodes[*j].node
            );
        }
    }
    // Layers go up the screen: input at the bottom, logits at the top.
    let y = |name: &str| {
        let i = r
            .circuit
            .nodes
            .iter()
            .position(|n| n.node.to_string() == name);
        graph.node_screen[i.unwrap()].y
    };
    assert!(y("input") > y("a0") && y("a0") > y("a15") && y("a15") > y("logits"));
    assert_eq!(y("a7"), y("m7"));
    // Every drawn edge has its arrowhead, nearer its destination than its source.
    assert_eq!(graph.drawn, 100);
    assert_eq!(graph.arrows.len(), graph.drawn);
    for &(e, tip) in &graph.arrows {
        let edge = &r.circuit.edges[e as usize];
        let from = graph.node_screen[edge.from_node as usize];
        let to = graph.node_screen[edge.to_node as usize];
        assert!(
            tip.distance(to) < 12.0 && tip.distance(to) < tip.distance(from),
            "{}: tip {tip:?}, from {from:?}, to {to:?}",
            r.circuit.edge_name(e)
        );
    }
}

/// The rectangle of the window titled `title`, in the last frame.
fn window_rect(h: &Harness<'_, App>, title: &str) -> egui::Rect {
    h.ctx
        .memory(|m| m.area_rect(egui::Id::unique(Some(title))))
        .unwrap_or_else(|| panic!("no window {title}"))
}

/// At 1280×800 the Guide, the Save figure window and its typed-path window lie inside the
/// screen with their text wrapped inside them.
#[test]
fn the_guide_and_the_save_windows_fit_a_small_screen() {
    let mut h = rendering_harness_of(fixture32());
    h.state_mut().window.native_dialogs = false;
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0));
    h.state_mut().views.help = true;
    h.run_steps(4);
    let guide = window_rect(&h, "Guide");
    assert!(screen.contains_rect(guide), "{guide:?}");
    // Its paragraphs wrap inside it (those on screen: the rest scroll).
    let texts = View::ALL
        .map(circuitdiff::app::views::help::describe_view)
        .into_iter()
        .chain(circuitdiff::attribution::metrics::Metric::ALL.map(|m| m.definition()));
    for text in texts {
        let r = h.get_by_label(text).rect();
        if r.top() < guide.bottom() {
            assert!(r.right() <= guide.right(), "{text} past the Guide's edge");
        }
    }
    h.snapshot("window_guide");
    h.state_mut().views.help = false;
    h.get_by_label("Save figure…").click();
    h.run_steps(4);
    let save = window_rect(&h, "Save figure");
    assert!(screen.contains_rect(save), "{save:?}");
    h.snapshot("window_save");
    h.get_by_label("Save…").click();
    h.run_steps(4);
    h.get_by_label("No file dialog is available on this desktop: type the path.");
    let title = circuitdiff::app::paths::Pick::SaveFigure(View::Graph, Mode::Base).title();
    let prompt = window_rect(&h, title);
    assert!(screen.contains_rect(prompt), "{prompt:?}");
    // The title, which says how the file is named, is whole: the window is wider than the
    // title's text with the close button beside it.
    let font = egui::TextStyle::Heading.resolve(&h.ctx.global_style());
    let text = h.ctx.fonts_mut(|f| {
        f.layout_no_wrap(title.to_owned(), font, egui::Color32::WHITE)
            .size()
            .x
    });
    assert!(prompt.width() > text + 40.0, "{text} in {prompt:?}");
    h.snapshot("window_save_path");
}

#[test]
fn snapshots_of_every_view() {
    // The trajectory view has its own fixture, below.
    let study_views = || View::ALL.into_iter().filter(|&v| v != View::Trajectory);
    let mut h = rendering_harness_of(fixture32());
    h.state_mut().views.questions.selected = Some(1);
    for view in study_views() {
        h.state_mut().settings.view = view;
        h.run_steps(4);
        h.snapshot(format!("view32_{}", view.slug()));
    }
    // The modes of change where they change a view: the circuit's importance change, and the
    // per-layer paired differences.
    for (view, mode) in [
        (View::Graph, Mode::ImportanceChange),
        (View::Layers, Mode::Difference),
    ] {
        (h.state_mut().settings.view, h.state_mut().settings.mode) = (view, mode);
        h.run_steps(4);
        h.snapshot(format!("view32_{}_{}", view.slug(), mode.slug()));
    }
    h.state_mut().settings.mode = Mode::Base;
    let mut results = h.take_snapshot_results();
    drop(h);
    let mut h = rendering_harness();
    h.state_mut().views.questions.selected = Some(1);
    for view in study_views() {
        h.state_mut().settings.view = view;
        h.run_steps(4);
        h.snapshot(format!("view_{}", view.slug()));
    }
    let app = h.state_mut();
    app.settings.view = View::Graph;
    app.settings.mode = Mode::Difference;
    app.settings.dark = false;
    h.run_steps(4);
    h.snapshot("graph_difference_light");
    results.extend(h.take_snapshot_results());
    drop(h);
    let mut h = rendering_harness_of(trajectory_fixture());
    assert_eq!(h.state().settings.view, View::Trajectory);
    h.run_steps(4);
    h.snapshot("view_trajectory");
    results.extend(h.take_snapshot_results());
}

/// A trajectory opens in its view; choosing an earlier checkpoint makes the other views show it
/// against the first (the first alone at step 0), and the view saves as a figure of every curve.
#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn a_trajectory_chooses_the_checkpoint_the_other_views_show() {
    use circuitdiff::app::figure::Formats;
    let title = |h: &Harness<'_, App>| {
        let r = h.state().shown.results.as_ref();
        r.map(|r| r.title.clone()).unwrap_or_default()
    };
    let mut h = harness(Some(fixture()));
    step_until(&mut h, 60, "the fixture", |a| a.shown.results.is_some());
    assert_eq!(h.state().settings.view, View::Graph);
    // A dropped trajectory folder opens, in its own view, at its last checkpoint.
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(trajectory_fixture())));
    h.step();
    step_until(&mut h, 60, "the trajectory", |a| {
        a.shown.trajectory.data.is_some()
    });
    assert_eq!(h.state().settings.view, View::Trajectory);
    assert_eq!(title(&h), "step 0 (base) -> step 120 (grpo)");
    assert_eq!(h.state().shown.trajectory.shown, 3);
    h.get_by_label_contains("Trajectory trajectory");
    h.get_by_label_contains("4 checkpoints, 8 questions, K = 24");
    h.get_by_label_contains("step 120 (grpo)");
    for metric in ["intensity", "entropy", "kurtosis"] {
        assert!(
            h.query_all_by_label(metric).count() >= 2,
            "{metric}: its toggle and its chart's name"
        );
    }
    h.get_by_label("reward over training");
    h.get_by_label("accuracy over training");

    // An earlier checkpoint: the graph shows step 80 against step 0.
    h.get_by_label("Previous").click();
    h.run_steps(2);
    step_until(&mut h, 60, "step 80's pair", |a| {
        a.shown.trajectory.shown == 2
    });
    assert_eq!(h.state().shown.trajectory.selected, 2);
    assert_eq!(title(&h), "step 0 (base) -> step 80 (step-000080)");
    h.get_by_label_contains("step 80 (step-000080)");
    h.get_by_label("Circuit graph").click();
    h.run_steps(3);
    h.get_by_label("step 0 (base) -> step 80 (step-000080)");
    let r = h.state().shown.results.as_ref().unwrap();
    let models = (
        r.base.manifest.model.spec.clone(),
        r.tuned.as_ref().unwrap().manifest.model.spec.clone(),
    );
    assert_eq!(
        models,
        (
            "assets/zoo/base".to_owned(),
            "assets/zoo/checkpoints/grpo/step-000080".to_owned()
        )
    );
    assert_eq!(r.circuit.modes(), Mode::ALL.to_vec());
    let q = &r.questions[0];
    assert!(
        q.base.is_some() && q.tuned.is_some(),
        "both checkpoints' answers"
    );
    assert!(q.question.contains("What is"), "{}", q.question);

    // Step 0 alone: one run, the base mode only.
    h.get_by_label("Trajectory").click();
    h.run_steps(2);
    for _ in 0..2 {
        h.get_by_label("Previous").click();
        h.run_steps(2);
    }
    step_until(&mut h, 60, "step 0 alone", |a| {
        a.shown.trajectory.shown == 0
    });
    let r = h.state().shown.results.as_ref().unwrap();
    assert!(r.tuned.is_none() && r.comparison.is_none());
    assert_eq!(r.circuit.modes(), vec![Mode::Base]);
    assert_eq!(h.state().settings.mode, Mode::Base);
    assert_eq!(title(&h), "step 0 (base)");

    // Saved as a figure: the chosen metrics (their paired change from the first checkpoint by
    // default, their levels on request) and the training curves, as text in the SVG.
    assert!(!h.state().shown.trajectory.levels);
    let tmp = tempfile::tempdir().unwrap();
    for (levels, titles) in [
        (
            false,
            [
                "intensity: change from step 0 (paired mean, 95 % CI)",
                "kurtosis: change from step 0 (paired mean, 95 % CI)",
            ],
        ),
        (
            true,
            [
                "intensity over training (mean, 95 % CI)",
                "kurtosis over training (mean, 95 % CI)",
            ],
        ),
    ] {
        if levels {
            h.get_by_label("Levels").click();
            h.run_steps(2);
            assert!(h.state().shown.trajectory.levels);
        }
        let path = tmp.path().join(format!("trajectory_{levels}.png"));
        let ctx = h.ctx.clone();
        h.state_mut().save_figure(
            &ctx,
            (View::Trajectory, Mode::Base),
            &path,
            Formats::default(),
            1200,
        );
        step_until(&mut h, 60, "the figure", |a| !a.exporting());
        let img = image::open(&path).unwrap().to_rgba8();
        assert_eq!(img.width(), 1200);
        assert_not_blank(&img);
        let svg = std::fs::read_to_string(path.with_extension("svg")).unwrap();
        let texts = common::svg_texts(&svg);
        let training = ["reward over training", "accuracy over training"];
        for t in titles.into_iter().chain(training) {
            assert!(texts.iter().any(|x| x == t), "{t} not in {texts:?}");
        }
    }

    // Other results close the trajectory; its view then says how to open one.
    h.get_by_label("study").click();
    step_until(&mut h, 60, "the study", |a| {
        a.shown.results.as_ref().is_some_and(|r| r.dir == fixture())
    });
    assert!(h.state().shown.trajectory.data.is_none());
    h.state_mut().settings.view = View::Trajectory;
    h.run_steps(2);
    h.get_by_label_contains("No trajectory open");
}

#[test]
fn the_faithfulness_view_says_which_conclusions_hold() {
    use circuitdiff::app::figure::Formats;
    let mut h = harness(Some(fixture32()));
    step_until(&mut h, 60, "the 32-layer fixture", |a| {
        a.shown.results.is_some()
    });
    h.get_by_label("Faithfulness").click();
    h.run_steps(3);
    h.get_by_label_contains("EAP vs exact effects, base: Pearson");
    h.get_by_label_contains("EAP vs exact effects, tuned: Pearson");
    h.get_by_label_contains("Edges for faithfulness, base vs tuned: k50");
    h.get_by_label_contains("Median loss per answer token");
    let v = h
        .state()
        .shown
        .results
        .as_ref()
        .unwrap()
        .comparison
        .as_ref()
        .unwrap();
    let validation = v.validation.as_ref().unwrap();
    assert_eq!(validation.robustness.len(), 3);
    // The 32-layer graph is too large to check every edge; four questions are too few.
    h.get_by_label_contains(
        "Verdicts on the union of both models' top 32 edges over 4 checked questions",
    );
    let word = validation.robustness[0].verdict.word();
    assert_eq!(word, "inconclusive");
    // The three verdicts in the grid, and the three lines with their reasons.
    assert_eq!(h.query_all_by_label(word).count(), 3);
    assert_eq!(
        h.query_all_by_label_contains(&format!(": {word} (only 4 questions"))
            .count(),
        3
    );
    assert_eq!(h.query_all_by_label_contains("robust").count(), 0);
    h.get_by_label_contains("CPR");

    // Saved as a figure: both scatters, the curves and the loss histogram, as text in the SVG.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("faith.png");
    let ctx = h.ctx.clone();
    let view = (View::Faithfulness, Mode::Tuned);
    h.state_mut()
        .save_figure(&ctx, view, &path, Formats::default(), 1200);
    step_until(&mut h, 60, "the figure", |a| !a.exporting());
    assert_not_blank(&image::open(&path).unwrap().to_rgba8());
    let texts = common::svg_texts(&std::fs::read_to_string(path.with_extension("svg")).unwrap());
    for t in [
        "EAP score S",
        "top 32 edges",
        "random edges",
        "exact = EAP",
        "faithfulness F",
    ] {
        assert!(texts.iter().any(|x| x == t), "{t} not in {texts:?}");
    }

    // Results without exact effects say how to get them.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("study");
    common::copy_dir(&fixture(), &copy);
    let path = copy.join("comparison.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("validation");
    std::fs::write(&path, c.to_string()).unwrap();
    let mut h = harness(Some(copy));
    step_until(&mut h, 60, "the copy", |a| a.shown.results.is_some());
    h.state_mut().settings.view = View::Faithfulness;
    h.run_steps(3);
    h.get_by_label_contains("These results hold no exact effects");
}

/// The image is not one colour: many distinct colours, and the commonest covers < 99 %.
fn assert_not_blank(img: &image::RgbaImage) {
    let mut counts = std::collections::HashMap::new();
    for p in img.pixels() {
        *counts.entry(p.0).or_insert(0usize) += 1;
    }
    let commonest = counts.values().max().copied().unwrap_or(0);
    assert!(counts.len() > 20, "only {} colours", counts.len());
    assert!(
        (commonest as f64) < 0.99 * (img.width() * img.height()) as f64,
        "mostly one colour"
    );
}

#[test]
fn save_figure_and_export_all_render_every_view() {
    use circuitdiff::app::figure::Formats;
    let mut h = harness(Some(fixture32()));
    step_until(&mut h, 60, "the 32-layer fixture", |a| {
        a.shown.results.is_some()
    });
    h.state_mut().views.training.open(&lab());
    let tmp = tempfile::tempdir().unwrap();
    let shown = (View::Graph, Mode::Tuned);
    (h.state_mut().settings.view, h.state_mut().settings.mode) = shown;
    h.run_steps(2);

    // The heatmap of the difference, 1600 pixels wide, and as SVG with its names as text.
    let ctx = h.ctx.clone();
    let path = tmp.path().join("heat.png");
    let view = (View::Heatmap, Mode::Difference);
    h.state_mut()
        .save_figure(&ctx, view, &path, Formats::default(), 1600);
    step_until(&mut h, 60, "the figure", |a| !a.exporting());
    let s = &h.state().settings;
    assert_eq!((s.view, s.mode), shown, "saving leaves the view as it was");
    let img = image::open(&path).unwrap().to_rgba8();
    assert_eq!(img.width(), 1600);
    assert_not_blank(&img);
    let svg = std::fs::read_to_string(path.with_extension("svg")).unwrap();
    let texts = common::svg_texts(&svg);
    for name in [
        "input",
        "a31",
        "logits",
        "a31<q>",
        "not an edge",
        "tiny-llama-base -> tiny-llama-tuned · tuned − base",
    ] {
        assert!(texts.iter().any(|t| t == name), "{name} not in {texts:?}");
    }
    let status = h.state().status_text().unwrap().to_owned();
    assert!(status.contains("wrote 2 files into"), "{status}");
    assert!(status.contains("heat.png, heat.svg"), "{status}");

    // The default PNG width is twice the view's on screen.
    let default = h.state().default_figure_width(&ctx);
    assert!((1400..2560).contains(&default), "{default}");

    // Every view in every mode, as PNG and SVG, with the view left as it was.
    let all = tmp.path().join("all");
    std::fs::create_dir(&all).unwrap();
    h.state_mut().export_all(&ctx, &all);
    // Four modes of three views and the edge table: give a busy machine time.
    step_until(&mut h, 240, "every figure", |a| !a.exporting());
    let s = &h.state().settings;
    assert_eq!(
        (s.view, s.mode),
        shown,
        "exporting leaves the view as it was"
    );
    let mut names = Vec::new();
    // No trajectory is open: its view has no figure and is left out.
    for view in View::ALL.into_iter().filter(|&v| v != View::Trajectory) {
        let modes: &[Mode] = if view.depends_on_mode() {
            &Mode::ALL
        } else {
            &[Mode::Tuned]
        };
        for &mode in modes {
            let name = view.file_name_in(mode);
            let png = all.join(&name);
            let img = image::open(&png).unwrap().to_rgba8();
            assert_not_blank(&img);
            let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
            assert!(svg.contains("<text"), "{name}: the SVG has text");
            names.push(name);
        }
    }
    assert!(
        names.contains(&"graph_difference.png".to_owned()),
        "{names:?}"
    );
    let status = h.state().status_text().unwrap();
    assert!(
        status.starts_with(&format!("wrote {} files into ", 2 * names.len())),
        "{status}"
    );
    for name in &names {
        assert!(status.contains(name.as_str()), "{status} lacks {name}");
    }
}

#[test]
fn the_binary_shows_results_in_a_window_saves_a_png_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    let out = tmp.path().join("window.png");
    let fixture = fixture();
    let mut child = std::process::Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1400x900x24"])
        .arg(env!("CARGO_BIN_EXE_circuitdiff"))
        .args(["--no-persist", "--open"])
        .arg(&fixture)
        .arg("--screenshot")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", &xdg)
        .env("HOME", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("xvfb-run not found: run `bash .ci/setup` (it installs xvfb)");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("the app did not exit within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let img = image::open(&out).unwrap().to_rgba8();
    assert!(
        stdout.contains(&format!("saved {}x{} ", img.width(), img.height())),
        "{stdout}"
    );
    assert!((700..1280).contains(&img.width()), "{}", img.width());
    assert!((600..800).contains(&img.height()), "{}", img.height());
    assert_not_blank(&img);
}

/// Writes `tests/fixtures/study` and `tests/fixtures/study32`: two tiny Llamas of 4 (and 32)
/// layers (different seeds) scored on eight (four) short answers, their comparison, and an
/// `answers.jsonl`.
#[test]
#[ignore = "writes the committed fixtures"]
fn regenerate_fixture() {
    write_fixture(&fixture(), 4, 8);
    write_fixture(&fixture32(), 32, 4);
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn write_fixture(out: &Path, layers: usize, n: usize) {
    use circuitdiff::attribution::exact::ExactOptions;
    use circuitdiff::attribution::Level;
    use circuitdiff::engine::check::check_run;
    use circuitdiff::engine::score::{score_run, Outcome};
    use circuitdiff::engine::spec::RunSpec;
    use circuitdiff::model::{self, LoadOptions, Model};
    use circuitdiff::progress::{CancelToken, Silent};
    use circuitdiff::report::comparison;
    use circuitdiff::report::run::ScoreSample;
    use circuitdiff::report::validation::Validation;
    use circuitdiff::side::PerSide;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Tiny::Llama.config();
    cfg.num_layers = layers;
    cfg.sliding_window = vec![None; layers];
    std::fs::remove_dir_all(out).ok();
    let questions: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            let (a, b) = (3 + 7 * i, 11 + 5 * i);
            (
                format!("q{i}"),
                format!("what is {a}+{b}?"),
                (a + b).to_string(),
            )
        })
        .collect();
    let mut runs = Vec::new();
    let mut sides = Vec::new();
    let mut models = Vec::new();
    for (side, seed) in [("base", 7), ("tuned", 9)] {
        let dir = tmp.path().join(side);
        let weights = model::random_weights(&cfg, seed, 0.2).unwrap();
        common::write_folder(&dir, &cfg, &weights);
        let m = Model::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let mut samples = Vec::new();
        let mut texts = Vec::new();
        for (i, (id, q, a)) in questions.iter().enumerate() {
            let text = if (i + seed as usize).is_multiple_of(3) {
                format!("{} the answer is {}", q.len(), a.len())
            } else {
                format!("so {q} the answer is {a}")
            };
            samples.push(ScoreSample {
                id: Some(id.clone()),
                prompt_ids: m.tokenizer.encode(q, true).unwrap(),
                answer_ids: m.tokenizer.encode(&text, false).unwrap(),
            });
            texts.push(text);
        }
        let spec = RunSpec::new(Level::Block, 6, Default::default());
        let mut manifest = spec.manifest(&m, &samples, None);
        manifest.model.spec = format!("tiny-llama-{side}");
        let outcome = score_run(
            "score",
            &out.join(side),
            &m,
            &manifest,
            &samples,
            &mut Silent,
            &CancelToken::new(),
        )
        .unwrap();
        let Outcome::Finished(r) = outcome else {
            panic!("scoring stopped");
        };
        runs.push(*r);
        sides.push((samples, texts));
        models.push(m);
    }
    // Exact effects of every question (method.md §7), as a study checks its pairs.
    let opts = ExactOptions::default();
    let chosen: Vec<usize> = (0..n).collect();
    let check = |i: usize| {
        check_run(
            "exact",
            &models[i],
            &runs[i],
            Some(&runs[1 - i]),
            &sides[i].0,
            &chosen,
            &opts,
            &mut Silent,
            &CancelToken::new(),
        )
        .unwrap()
        .unwrap()
    };
    let (base, tuned) = (check(0), check(1));
    let mut cmp = comparison::compare(&runs[0], &runs[1], &Default::default()).unwrap();
    cmp.validation = Some(Validation::of(
        PerSide {
            base: &base[..],
            tuned: &tuned[..],
        },
        opts,
        &Default::default(),
        &Default::default(),
    ));
    comparison::write(out, &cmp).unwrap();
    let mut lines = String::new();
    for (i, (id, q, reference)) in questions.iter().enumerate() {
        let answer = |side: usize| {
            let (samples, texts) = &sides[side];
            serde_json::json!({
                "id": id, "prompt": q, "prompt_ids": samples[i].prompt_ids,
                "answer_ids": samples[i].answer_ids, "text": texts[i], "stop": "end_of_sequence",
                "grade": circuitdiff::study::grade::grade(&texts[i], reference),
            })
        };
        let line = serde_json::json!({
            "id": id, "question": q, "reference": reference, "base": answer(0), "tuned": answer(1),
        });
        lines.push_str(&format!("{line}\n"));
    }
    std::fs::write(out.join("answers.jsonl"), lines).unwrap();
}
