//! The figures as PNG and SVG: a synthetic 32-layer circuit and heatmap drawn by
//! `report::render`, the SVG well-formed with its labels as `<text>`, the PNG at the asked
//! scale. Setting `CIRCUITDIFF_FIGURES_OUT` to a folder keeps the files there to look at.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::attribution::{Graph, Level};
use circuitdiff::model::ModelConfig;
use circuitdiff::report::circuit::EdgeSelection;
use circuitdiff::report::circuit::{Circuit, Mode};
use circuitdiff::report::figures::{self, CircuitGraph, Heatmap};
use circuitdiff::report::render::{self, Figure, Scale};
use rand::{Rng, SeedableRng};

/// A block-level graph of a 32-layer Llama.
fn graph() -> Graph {
    Graph::new(
        &ModelConfig::llama(64, 64, 128, 32, (4, 4), 64),
        Level::Block,
    )
}

/// Heavy-tailed random values, seeded.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            v * v * v * 1e-3
        })
        .collect()
}

fn circuit() -> Circuit {
    let g = graph();
    let n = g.num_edges();
    Circuit::new(&g, values(n, 1), Some(values(n, 2)))
}

fn circuit_graph(mode: Mode) -> CircuitGraph {
    figures::circuit_graph(&circuit(), mode, EdgeSelection::default()).unwrap()
}

fn heatmaps() -> Vec<Heatmap> {
    let g = graph();
    let (ns, nd) = (g.sources.len(), g.destinations.len());
    let map = |title: &str, seed, range| Heatmap {
        title: title.into(),
        rows: g.sources.iter().map(ToString::to_string).collect(),
        cols: g.destinations.iter().map(ToString::to_string).collect(),
        values: values(ns * nd, seed),
        mask: g.mask(),
        range,
    };
    let mut maps = vec![
        map("base", 3, 4e-4),
        map("tuned", 4, 6e-4),
        map("tuned − base", 5, 2e-4),
    ];
    Heatmap::share_range(&mut maps[..2]);
    maps
}

/// Keep the figure where `CIRCUITDIFF_FIGURES_OUT` says.
fn keep(figure: Figure, stem: &str) {
    if let Some(dir) = std::env::var_os("CIRCUITDIFF_FIGURES_OUT") {
        render::write(figure, std::path::Path::new(&dir), stem, Scale::default()).unwrap();
    }
}

#[test]
fn a_32_layer_circuit_names_every_node_and_says_its_mode() {
    for mode in Mode::ALL {
        let g = circuit_graph(mode);
        assert_eq!(g.edges.len(), 100, "top 100 bind at 32 layers");
        assert!(g.share > 0.0 && g.share < 0.8);
        let figure = Figure::Circuit(&g);
        keep(figure, &format!("circuit_{}", mode.slug()));
        let texts = common::svg_texts(&render::svg(figure).unwrap());
        for name in ["input", "a0", "m0", "a31", "m31", "logits"] {
            assert!(
                texts.iter().any(|t| t == name),
                "{name} missing in {mode:?}"
            );
        }
        let nodes = texts
            .iter()
            .filter(|t| t.starts_with('a') || t.starts_with('m'));
        assert_eq!(nodes.filter(|t| t.len() <= 3).count(), 64);
        let legend = match mode {
            Mode::Difference => ["tuned > base (signed score)", "tuned < base (signed score)"],
            Mode::ImportanceChange => ["more important in tuned", "less important in tuned"],
            Mode::Base | Mode::Tuned => ["positive score", "negative score"],
        };
        for l in legend {
            assert!(texts.iter().any(|t| t == l), "{l} missing in {mode:?}");
        }
        let title = match mode {
            Mode::Difference => "circuit: tuned − base",
            Mode::ImportanceChange => "circuit: |tuned| − |base|",
            Mode::Base | Mode::Tuned => &g.title,
        };
        assert!(texts.iter().any(|t| t == title), "{texts:?}");
    }
}

#[test]
fn edge_selection_takes_the_share_or_the_cap_whichever_is_fewer() {
    let select = EdgeSelection { share: 0.5, max: 3 };
    assert_eq!(select.count(&[4.0, 3.0, 2.0, 1.0]), 2);
    assert_eq!(select.count(&[1.0; 10]), 3);
    assert_eq!(select.count(&[]), 0);
}

#[test]
fn a_png_at_twice_the_scale_has_twice_the_pixels() {
    let g = circuit_graph(Mode::Tuned);
    let maps = heatmaps();
    for figure in [Figure::Circuit(&g), Figure::Heatmaps(&maps)] {
        let (w, h) = figure.base_size();
        for (scale, factor) in [(Scale::default(), 2), (Scale(1.0), 1)] {
            let png = render::png(figure, scale).unwrap();
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!((img.width(), img.height()), (w * factor, h * factor));
        }
    }
}

#[test]
fn a_32_layer_heatmap_has_labels_a_colour_bar_and_its_saturation() {
    let maps = heatmaps();
    assert_eq!(maps[0].range, maps[1].range);
    keep(Figure::Heatmaps(&maps), "heatmap");
    let texts = common::svg_texts(&render::svg(Figure::Heatmaps(&maps)).unwrap());
    let has = |s: &str| texts.iter().filter(|t| *t == s).count();
    assert_eq!(has("colours saturate at ±6.00e-4"), 2, "{texts:?}");
    assert_eq!(has("colours saturate at ±2.00e-4"), 1);
    assert_eq!(
        has("+6.00e-4") + has("-6.00e-4"),
        4,
        "the shared bar's ends"
    );
    assert_eq!(
        has("+2.00e-4") + has("-2.00e-4"),
        2,
        "the difference bar's ends"
    );
    assert_eq!(has("not an edge"), 3);
    assert_eq!(has("source") + has("destination"), 6);
    for name in ["input", "logits"] {
        assert!(has(name) >= 3, "{name}");
    }
    let labels = maps[0].rows.len() + maps[0].cols.len();
    let drawn = texts
        .iter()
        .filter(|t| maps[0].rows.contains(t) || maps[0].cols.contains(t));
    let drawn = drawn.count() / 3;
    assert!(
        drawn > 20 && drawn < labels / 2,
        "{drawn} of {labels} labels"
    );
}

/// The y of every SVG `<text>` whose content is `content` (escaped as the SVG writes it).
fn text_ys(svg: &str, content: &str) -> Vec<f64> {
    svg.split("<text ")
        .skip(1)
        .filter_map(|t| {
            let (tag, rest) = t.split_once('>')?;
            let body = rest.split("</text>").next()?.trim();
            let y = tag.split(" y=\"").nth(1)?.split('"').next()?;
            (body == content).then(|| y.parse().ok()).flatten()
        })
        .collect()
}

/// Saved heatmaps run as the app's: destination 0 (`a0<q>`) at the bottom, `logits` at the top,
/// `input` the first source on the left.
#[test]
fn a_saved_heatmap_puts_the_first_destination_at_the_bottom() {
    let maps = heatmaps();
    let svg = render::svg(Figure::Heatmaps(&maps)).unwrap();
    let (first, last) = (text_ys(&svg, "a0&lt;q&gt;"), text_ys(&svg, "logits"));
    assert_eq!((first.len(), last.len()), (3, 3));
    for (a0, logits) in first.iter().zip(&last) {
        assert!(a0 > logits, "a0<q> at y = {a0}, logits at y = {logits}");
    }
}

/// A saved circuit says how much of the |score| it leaves out, and draws an arrowhead per edge.
#[test]
fn a_saved_circuit_says_what_share_it_shows_and_points_its_edges() {
    let g = circuit_graph(Mode::Base);
    assert!(g.share < g.target.0 && g.target.1 > g.edges.len());
    let svg = render::svg(Figure::Circuit(&g)).unwrap();
    let texts = common::svg_texts(&svg);
    let line = format!(
        "the 100 largest of 4193 edges by |score|, {:.0} % of the total |score|; 80 % takes {} edges",
        100.0 * g.share,
        g.target.1
    );
    assert!(texts.contains(&line), "{texts:?}");
    // One filled triangle an edge.
    assert_eq!(svg.matches("<polygon").count(), g.edges.len());
}
