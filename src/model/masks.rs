//! Edge masks (method.md §7): every destination input written as a masked sum of its
//! sources, `in_v = Σ_{u<v} m_uv · A_u`, one set of masks per row of a batch.

use crate::node::{self, Destination, Node};
use candle_core::{Result, Tensor};

/// Block-level edge masks for a batch of passes: row r keeps the fraction
/// `keep[r][u][v]` of source u's contribution to destination v (1: the clean edge, 0: the edge
/// removed). Sources and destinations are in the study's order ([`node::sources`],
/// [`node::block_destinations`]); entries of non-edges are never read.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeMasks {
    rows: usize,
    layers: usize,
    keep: Vec<f32>,
}

impl EdgeMasks {
    /// `rows` passes with every edge of an `layers`-layer model at `value` (1: all kept, 0: all
    /// removed).
    pub fn filled(rows: usize, layers: usize, value: f32) -> Self {
        let (ns, nd) = Self::shape(layers);
        Self {
            rows,
            layers,
            keep: vec![value; rows * ns * nd],
        }
    }

    /// (sources, destinations) of the block-level graph: (1 + 2L, 4L + 1).
    pub fn shape(layers: usize) -> (usize, usize) {
        (1 + 2 * layers, 4 * layers + 1)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The layers of the model the masks are for.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Set row `row`'s mask of edge `source → destination` (dense indices).
    pub fn set(&mut self, row: usize, source: usize, destination: usize, value: f32) {
        let (ns, nd) = Self::shape(self.layers);
        self.keep[(row * ns + source) * nd + destination] = value;
    }

    fn get(&self, row: usize, source: usize, destination: usize) -> f32 {
        let (ns, nd) = Self::shape(self.layers);
        self.keep[(row * ns + source) * nd + destination]
    }

    /// The sources preceding destination `d` (dense index): the edges into it.
    fn inputs_of(&self, d: usize) -> usize {
        node::block_destinations(self.layers)[d]
            .node()
            .order(self.layers)
    }

    /// The first node whose input some row's masks change (an attention block, an MLP or the
    /// logits); `None` when every mask is 1.
    pub(crate) fn first_changed(&self) -> Option<Node> {
        let dests = node::block_destinations(self.layers);
        dests.iter().enumerate().find_map(|(d, dest)| {
            let n = self.inputs_of(d);
            let touched = (0..self.rows).any(|r| (0..n).any(|u| self.get(r, u, d) != 1.0));
            touched.then(|| dest.node())
        })
    }

    /// The input (rows, t, d) of destination `dest` given the residual stream `h` (rows, t, d)
    /// that reaches it and the sources so far (each (1 or rows, t, d)); `None` when every row
    /// reads `h` unchanged.
    ///
    /// Rows that keep most of their sources read `h + Σ (m − 1)·A` (only the removed terms are
    /// summed); when some row keeps fewer than half, the batch reads `Σ m·A` directly, so that
    /// an input with few or no sources left is not the rounding residue of a cancellation.
    pub(crate) fn input(
        &self,
        dest: Destination,
        h: &Tensor,
        sources: &[Tensor],
    ) -> Result<Option<Tensor>> {
        let d = dest.block_index(self.layers);
        let n = self.inputs_of(d);
        if sources.len() != n {
            candle_core::bail!("{dest}: {} sources collected, {n} expected", sources.len());
        }
        let rows = self.rows;
        let kept = |r: usize| (0..n).map(|u| f64::from(self.get(r, u, d))).sum::<f64>();
        let unchanged = (0..rows).all(|r| (0..n).all(|u| self.get(r, u, d) == 1.0));
        if unchanged {
            return Ok(None);
        }
        let direct = (0..rows).any(|r| kept(r) < n as f64 / 2.0);
        let coef = |r: usize, u: usize| {
            let m = self.get(r, u, d);
            if direct {
                m
            } else {
                m - 1.0
            }
        };
        let cols: Vec<usize> = (0..n)
            .filter(|&u| (0..rows).any(|r| coef(r, u) != 0.0))
            .collect();
        let (b, t, width) = h.dims3()?;
        if cols.is_empty() {
            return Ok(Some(if direct { h.zeros_like()? } else { h.clone() }));
        }
        let weights: Vec<f32> = (0..rows)
            .flat_map(|r| cols.iter().map(move |&u| coef(r, u)))
            .collect();
        let weights =
            Tensor::from_vec(weights, (b, 1, cols.len()), h.device())?.to_dtype(h.dtype())?;
        let stacked = cols
            .iter()
            .map(|&u| sources[u].broadcast_as((b, t, width)))
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::stack(&stacked, 1)?.reshape((b, cols.len(), t * width))?;
        let sum = weights.matmul(&stacked)?.reshape((b, t, width))?;
        Ok(Some(if direct { sum } else { (h + sum)? }))
    }
}
