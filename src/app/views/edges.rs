//! The most changed edges: for each edge its mean score in both models, the signed change Δ,
//! the change in importance Δ|S| and the tested per-question Δ|S| with its interval, raw and
//! Benjamini–Hochberg adjusted p; sortable by any column, copied as CSV or Markdown, saved as
//! CSV; a click on an edge pins it in the graph and the heatmap.

use super::super::commands::Command;
use super::super::paths::Pick;
use super::super::results::Results;
use super::super::theme::Palette;
use super::graph::GraphState;
use crate::report::edge_change::{EdgeChanges, COLUMN_HELP, FDR, TESTED};
use crate::report::table::{Cell, Table};
use egui::Ui;
use std::collections::HashMap;

/// Sort order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdgesState {
    /// Column index (`None`: smallest adjusted p first, as computed).
    pub sort: Option<usize>,
    pub descending: bool,
}

/// The table in the shown order (for the view, its copy actions and its figure).
pub fn table(changes: &EdgeChanges, state: EdgesState) -> Table {
    let mut t = changes.table();
    if let Some(col) = state.sort {
        t.sort_by(col, state.descending);
    }
    t
}

/// Draw the table with its caption and actions; a click on an edge's name pins it.
pub fn edges_ui(
    ui: &mut Ui,
    results: &Results,
    (state, graph): (&mut EdgesState, &mut GraphState),
    commands: &mut Vec<Command>,
) {
    let changes = match &results.edges {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            ui.label(format!("The edges could not be tested: {e}"));
            return;
        }
        None => {
            ui.label("These results hold one run: there is no change to test");
            return;
        }
    };
    let table = table(changes, *state);
    ui.horizontal(|ui| {
        if ui.button("Copy CSV").clicked() {
            ui.ctx().copy_text(changes.exact_table().csv());
        }
        if ui.button("Copy Markdown").clicked() {
            ui.ctx().copy_text(table.markdown());
        }
        if ui
            .button("Save CSV…")
            .on_hover_text("every column at full precision")
            .clicked()
        {
            commands.push(Command::Choose(Pick::SaveEdges));
        }
        ui.label(changes.summary_count());
    });
    ui.label(format!(
        "{TESTED}. Δ = tuned − base, Δ|S| = |tuned| − |base| of the mean scores (positive: more \
         important in tuned); each column explained on hover. The {} edges with the smallest \
         adjusted p; (*) adjusted p < {FDR}. Click an edge to pin it in the graph and heatmap.",
        changes.edges.len()
    ));
    ui.separator();
    egui::ScrollArea::both().show(ui, |ui| {
        egui::Grid::new("edge_changes")
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                super::table::sort_header_ui(
                    ui,
                    &table.columns,
                    &COLUMN_HELP,
                    (&mut state.sort, &mut state.descending),
                );
                let ids: HashMap<&str, u32> = changes
                    .edges
                    .iter()
                    .map(|c| (c.edge.as_str(), c.id as u32))
                    .collect();
                for row in &table.rows {
                    row_ui(ui, results, (row, &ids), graph);
                    ui.end_row();
                }
            });
    });
}

/// One edge's row: its name pins it; the adjusted p below the FDR is marked.
fn row_ui(
    ui: &mut Ui,
    results: &Results,
    (row, ids): (&[Cell], &HashMap<&str, u32>),
    graph: &mut GraphState,
) {
    let circuit = &results.circuit;
    for cell in row {
        match cell {
            Cell::Text(name) => {
                let id = ids.get(name.as_str()).copied();
                let pinned = id.is_some() && graph.pinned == id;
                if ui.selectable_label(pinned, name).clicked() {
                    graph.pinned = if pinned { None } else { id };
                    graph.selected = id
                        .and_then(|e| circuit.edges.get(e as usize))
                        .map(|e| e.from_node as usize);
                }
            }
            Cell::AdjustedP(p) if *p < FDR => {
                let palette = Palette::of(ui.ctx());
                ui.colored_label(
                    palette.highlight(),
                    egui::RichText::new(format!("{} *", cell.text())).monospace(),
                );
            }
            _ => {
                ui.monospace(cell.text());
            }
        }
    }
}
