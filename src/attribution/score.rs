//! Edge attribution patching on one sample (method.md §2–§3): the self-entropy loss on a cut
//! answer, one forward and one backward pass, and every edge score from one matrix product.

use super::graph::{Graph, Level};
use crate::model::{inner_products, Model};
use candle_core::{DType, Tensor, D};

/// The dtype edge scores are accumulated in (method.md §3): f32, or f64 when the model itself
/// computes in f64. Recorded in every run's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accumulation {
    F32,
    F64,
}

impl Accumulation {
    /// The accumulation used for a model computing in `dtype`.
    pub fn for_compute(dtype: DType) -> Self {
        if dtype == DType::F64 {
            Accumulation::F64
        } else {
            Accumulation::F32
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Accumulation::F32 => DType::F32,
            Accumulation::F64 => DType::F64,
        }
    }
}

/// Why a sample cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("sample `{id}`: {message}")]
    Sample { id: String, message: String },
    /// The scores or a loss came out NaN or infinite.
    #[error("sample `{id}`: {what} not finite (NaN or infinite activations) with {checkpoint}: {}", advice(*dtype))]
    NotFinite {
        id: String,
        /// `the scores are`, `the clean loss is`.
        what: &'static str,
        /// The model's spec and its weight files.
        checkpoint: String,
        dtype: DType,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ScoreError {
    /// `what` of sample `id` came out NaN or infinite with `model`.
    pub fn not_finite(model: &Model, id: &str, what: &'static str) -> Self {
        let files: Vec<String> = model
            .checkpoint
            .files()
            .iter()
            .filter(|f| f.extension().is_none_or(|e| e != "json"))
            .map(|f| f.display().to_string())
            .collect();
        Self::NotFinite {
            id: id.to_owned(),
            what,
            checkpoint: format!("{} ({})", model.spec, files.join(", ")),
            dtype: model.dtype(),
        }
    }
}

/// What to do about activations that are not finite when the model runs in `dtype`.
fn advice(dtype: DType) -> String {
    let name = dtype.as_str();
    match dtype {
        DType::F16 | DType::BF16 => {
            format!("they may overflow in {name}: run the model in f32 (--dtype f32)")
        }
        _ => format!(
            "in {name} this means weights that are NaN, infinite or too large: check the \
             checkpoint (and an adapter's lora_alpha)"
        ),
    }
}

/// The scores of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleScores {
    /// The loss L of method.md §3.
    pub loss: f64,
    /// The cut length used (the requested K, clamped to the answer length).
    pub k: usize,
    /// Scores in the dense (sources × destinations) layout, row-major; structural zeros are 0.
    pub dense: Vec<f32>,
}

/// L = −(1/K) Σₖ ln softmax(logitsₖ)[targetₖ] over rows of `logits` (K, vocab), in f32 or
/// wider.
pub fn self_entropy_loss(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let logits = match logits.dtype() {
        DType::F64 | DType::F32 => logits.clone(),
        _ => logits.to_dtype(DType::F32)?,
    };
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let idx = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    lp.gather(&idx, 1)?.mean_all()?.neg()
}

/// Check that a sample can be scored: a prompt, an answer, and ids inside the vocabulary.
pub fn check_sample(
    model: &Model,
    id: &str,
    prompt: &[u32],
    answer: &[u32],
) -> Result<(), ScoreError> {
    let bad = |message: String| ScoreError::Sample {
        id: id.to_owned(),
        message,
    };
    if prompt.is_empty() {
        return Err(bad("empty prompt".into()));
    }
    if answer.is_empty() {
        return Err(bad("empty answer: nothing to score".into()));
    }
    let vocab = model.config.vocab_size;
    if let Some(t) = prompt.iter().chain(answer).find(|&&t| t as usize >= vocab) {
        return Err(bad(format!(
            "token id {t} is outside the vocabulary of {} (size {vocab})",
            model.spec
        )));
    }
    Ok(())
}

/// The tokens a sample is scored on (method.md §3): the model reads the prompt followed by the
/// first K−1 answer tokens and is scored on predicting the first K answer tokens, K being the
/// cut clamped to the answer length.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub ids: Vec<u32>,
    /// The positions whose logits predict the targets.
    pub positions: std::ops::Range<usize>,
    /// The first K answer tokens.
    pub targets: Vec<u32>,
}

impl Cut {
    /// The cut of a checked sample (non-empty prompt and answer) at `cut` ≥ 1 tokens.
    pub fn new(prompt: &[u32], answer: &[u32], cut: usize) -> Self {
        let k = cut.clamp(1, answer.len());
        let p = prompt.len();
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(&answer[..k - 1]);
        Self {
            ids,
            positions: p - 1..p + k - 1,
            targets: answer[..k].to_vec(),
        }
    }
}

/// Score every edge of `graph` on one sample: the model reads `prompt` followed by the first
/// K−1 answer tokens and is scored on predicting the first K answer tokens, where K is `cut`
/// clamped to the answer length.
///
/// S[u→v] = −Σₜ Σᵢ A_u[t,i]·G_v[t,i], all at once as −A·Gᵀ with A (sources × t·d) and
/// G (destinations × t·d), accumulated in f32 (f64 when the model runs in f64).
pub fn score_sample(
    model: &Model,
    graph: &Graph,
    id: &str,
    prompt: &[u32],
    answer: &[u32],
    cut: usize,
) -> Result<SampleScores, ScoreError> {
    check_sample(model, id, prompt, answer)?;
    if cut == 0 {
        return Err(ScoreError::Sample {
            id: id.to_owned(),
            message: "cut length K must be at least 1".into(),
        });
    }
    let cut = Cut::new(prompt, answer, cut);
    let (ns, nd) = graph.dense_shape();
    let acc = Accumulation::for_compute(model.dtype()).dtype();
    // The pass's activations and gradients are dropped as soon as the scores exist.
    let (loss, s) = {
        let heads = graph.level == Level::Head;
        let traced = model.trace_patched(&cut.ids, cut.positions.clone(), &[], heads)?;
        let loss = self_entropy_loss(&traced.logits, &cut.targets)?;
        let grads = traced.gradients(&loss)?;
        if traced.sources.len() != ns || grads.len() != nd {
            return Err(ScoreError::Sample {
                id: id.to_owned(),
                message: format!(
                    "model gave {} sources and {} destinations, graph expects {ns} and {nd}",
                    traced.sources.len(),
                    grads.len()
                ),
            });
        }
        (loss, inner_products(&traced.sources, &grads, acc)?.neg()?)
    };
    let mut dense: Vec<f32> = s.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    for (i, v) in dense.iter_mut().enumerate() {
        if !graph.is_edge(i / nd, i % nd) {
            *v = 0.0;
        }
    }
    if dense.iter().any(|v| !v.is_finite()) {
        return Err(ScoreError::not_finite(model, id, "the scores are"));
    }
    Ok(SampleScores {
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        k: cut.targets.len(),
        dense,
    })
}
