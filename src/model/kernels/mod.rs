//! The CPU kernels of the attribution and training passes: ops with closed-form backward passes
//! (fused rms-norm, softmax, rotary embedding, attention core, gated MLP, a frozen projection
//! with a LoRA update, the targets' log-probabilities) and the projections whose backward pass
//! computes the input gradient only, on a shared thread pool; and composites of candle's
//! elementary ops where those are exact (tanh GeLU, soft-capping).

pub(super) mod attention;
pub(super) mod composite;
pub(super) mod fused;
mod layer;
mod linear;
mod logprob;
mod lora;
mod matrix;
pub(super) mod mlp;
mod pool;
#[cfg(test)]
mod test_support;

pub use layer::Linear;
pub use linear::inner_products;
pub use logprob::target_logprobs;
pub use lora::LoraPair;
