//! Edge attribution: the graph of a model, the score of every edge on a sample, the choice of
//! the samples and K to score, metrics of score vectors and the paired comparison of two models.

pub mod compare;
pub mod correction;
pub mod exact;
pub mod graph;
pub mod metrics;
pub mod pair;
pub mod score;
pub mod select;

pub use graph::{Graph, Level};
pub use score::{score_sample, self_entropy_loss, SampleScores, ScoreError};
