//! The views of the central area, one file each, and what they share: the view list, per-view
//! state and line-chart drawing.

pub mod charts;
pub mod edges;
pub mod faithfulness;
pub mod graph;
pub mod heatmap;
pub mod help;
pub(super) mod plot;
pub mod questions;
mod state;
pub mod table;
pub mod training;
pub mod trajectory;
pub mod view;

pub use plot::{
    chart_header_ui, chart_plot_ui, line_chart_ui, readable_y_axis, series_color, ChartStyle,
};
pub use state::ViewState;
pub use view::View;
