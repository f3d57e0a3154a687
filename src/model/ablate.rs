//! Ablated passes (method.md §7): every destination input written as a masked sum of its
//! sources, `in_v = Σ_{u<v} m_uv · A_u`, through the per-path copies. All masks at 1 is the
//! clean model; a batch runs one set of masks per row.
//!
//! A batch starts at the first node (attention block, MLP or logits) whose input any of its
//! masks changes, from the clean pass's residual stream there: everything below is the clean
//! computation, kept once per sample.

use super::loaded::Model;
use super::masks::EdgeMasks;
use super::packing::Rows;
use super::transformer::{Kernels, Pass};
use crate::node::Node;
use candle_core::{DType, Result, Tensor, D};
use std::ops::Range;

/// The kernels of ablated passes: the scoring pass's (nothing tracks a gradient here, and
/// they run in f64 too), shared by a sample's clean and ablated passes so that their losses
/// differ by the ablation alone.
const KERNELS: Kernels = Kernels::FusedGrad;

fn ablation_pass<'a>(sources: &'a mut Vec<Tensor>, masks: Option<&'a EdgeMasks>) -> Pass<'a> {
    Pass {
        kernels: KERNELS,
        probes: None,
        cache: None,
        sources: Some(sources),
        head_sources: false,
        rows: Rows::Aligned,
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
    /// at logit positions `positions` (the loss of method.md §3), with the kernels of the
    /// ablated passes.
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
        // On a worker of candle's thread pool, as scoring (see `score_sample`).
        self.device().with_context(|| {
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
        })
    }

    /// The loss of each row of `masks` on `clean`'s sample (a row with every mask at 1 gives
    /// the clean loss).
    pub fn masked_losses(&self, clean: &CleanPass, masks: &EdgeMasks) -> Result<Vec<f64>> {
        let Some(first) = masks.first_changed() else {
            return Ok(vec![clean.loss; masks.rows()]);
        };
        let layers = self.config.num_layers;
        if masks.layers() != layers {
            candle_core::bail!(
                "masks of a {}-layer model for a {layers}-layer one",
                masks.layers()
            );
        }
        // On a worker of candle's thread pool, as scoring (see `score_sample`).
        self.device()
            .with_context(|| self.ablated_losses(clean, masks, first))
    }

    /// [`Model::masked_losses`] run from node `first`, the first whose inputs a mask changes.
    fn ablated_losses(
        &self,
        clean: &CleanPass,
        masks: &EdgeMasks,
        first: Node,
    ) -> Result<Vec<f64>> {
        let layers = self.config.num_layers;
        // The residual stream entering node `first`, summed in the order the clean pass added
        // the sources, so that it is the clean pass's own value.
        let before = first.order(layers);
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
        let logits = self.net.logits(&h, KERNELS)?.to_dtype(DType::F64)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let rows = lp.dim(0)?;
        let idx = Tensor::new(clean.targets.as_slice(), lp.device())?
            .reshape((1, p.len(), 1))?
            .broadcast_as((rows, p.len(), 1))?
            .contiguous()?;
        lp.gather(&idx, 2)?.squeeze(2)?.mean(1)?.neg()?.to_vec1()
    }
}
