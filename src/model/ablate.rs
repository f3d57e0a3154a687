//! Ablated passes (method.md §7): every destination input written as a masked sum of its
//! sources, `in_v = Σ_{u<v} m_uv · A_u`, through the per-path copies. All masks at 1 is the
//! clean model; a batch runs one set of masks per row.
//!
//! A batch starts at the first block that any of its masks touches, from the clean pass's
//! residual stream there: everything below is the clean computation, kept once per sample.

use super::transformer::{Kernels, Pass};
use super::Model;
use crate::node::{self, Destination, Node};
use candle_core::{DType, Result, Tensor, D};
use std::ops::Range;

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

    /// The first block that some row's masks change (the logits count as block L); `None`
    /// when every mask is 1.
    fn first_block(&self) -> Option<usize> {
        let dests = node::block_destinations(self.layers);
        dests.iter().enumerate().find_map(|(d, dest)| {
            let n = self.inputs_of(d);
            let touched = (0..self.rows).any(|r| (0..n).any(|u| self.get(r, u, d) != 1.0));
            touched.then(|| dest.node().layer().unwrap_or(self.layers))
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

fn ablation_pass<'a>(sources: &'a mut Vec<Tensor>, masks: Option<&'a EdgeMasks>) -> Pass<'a> {
    Pass {
        kernels: Kernels::FusedGrad,
        probes: None,
        cache: None,
        sources: Some(sources),
        head_sources: false,
        pads: None,
        masks,
    }
}

/// A sample's clean pass, kept so that ablated passes of it start where their masks begin:
/// the logit positions and targets of its loss, every source activation (1, t, d)
/// and the clean loss.
pub struct CleanPass {
    positions: Range<usize>,
    targets: Vec<u32>,
    sources: Vec<Tensor>,
    /// L(clean): −(1/K) Σ ln p(target), computed in f64 from the logits.
    pub loss: f64,
}

impl Model {
    /// The clean pass of `ids`, whose loss is the mean negative log-probability of `targets`
    /// at logit positions `positions` (the loss of method.md §3), with the scoring pass's kernels
    /// (nothing here tracks a gradient).
    pub fn clean_pass(
        &self,
        ids: &[u32],
        positions: Range<usize>,
        targets: &[u32],
    ) -> Result<CleanPass> {
        if positions.is_empty() || positions.end > ids.len() || positions.len() != targets.len() {
            candle_core::bail!(
                "logit positions {positions:?} and {} targets do not fit a sequence of {} tokens",
                targets.len(),
                ids.len()
            );
        }
        let ids = self.ids_tensor(ids)?;
        let mut sources = Vec::with_capacity(1 + 2 * self.config.num_layers);
        let h = self
            .net
            .residual(&ids, 0, ablation_pass(&mut sources, None))?;
        let mut clean = CleanPass {
            positions,
            targets: targets.to_vec(),
            sources,
            loss: 0.0,
        };
        clean.loss = self.losses_of(&clean, &h)?[0];
        Ok(clean)
    }

    /// The loss of each row of `masks` on `clean`'s sample (a row with every mask at 1 gives
    /// the clean loss).
    pub fn masked_losses(&self, clean: &CleanPass, masks: &EdgeMasks) -> Result<Vec<f64>> {
        let Some(first) = masks.first_block() else {
            return Ok(vec![clean.loss; masks.rows()]);
        };
        let layers = self.config.num_layers;
        if masks.layers != layers {
            candle_core::bail!(
                "masks of a {}-layer model for a {layers}-layer one",
                masks.layers
            );
        }
        // The residual stream entering block `first`, summed in the order the clean pass
        // added the sources, so that it is the clean pass's own value.
        let before = Node::Attention {
            layer: first,
            head: None,
        }
        .order(layers);
        let mut sources: Vec<Tensor> = clean.sources[..before].to_vec();
        let mut h = sources[0].clone();
        for s in &sources[1..] {
            h = (h + s)?;
        }
        let (_, t, d) = h.dims3()?;
        let h = h.broadcast_as((masks.rows(), t, d))?.contiguous()?;
        let out = self
            .net
            .blocks(h, first, 0, ablation_pass(&mut sources, Some(masks)))?;
        self.losses_of(clean, &out)
    }

    /// The loss of each row of the final residual stream `h` (rows, t, d).
    fn losses_of(&self, clean: &CleanPass, h: &Tensor) -> Result<Vec<f64>> {
        let p = &clean.positions;
        let h = h.narrow(1, p.start, p.len())?;
        let logits = self
            .net
            .logits(&h, Kernels::FusedGrad)?
            .to_dtype(DType::F64)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let rows = lp.dim(0)?;
        let idx = Tensor::new(clean.targets.as_slice(), lp.device())?
            .reshape((1, p.len(), 1))?
            .broadcast_as((rows, p.len(), 1))?
            .contiguous()?;
        lp.gather(&idx, 2)?.squeeze(2)?.mean(1)?.neg()?.to_vec1()
    }
}
