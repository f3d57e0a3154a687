//! Checkpoints and the transformer: load a model from a folder, a `.gguf` file, the Hub or a
//! PEFT LoRA adapter on any of them, run it for generation, or run it differentiably to get the
//! activations and gradients that edge attribution needs.
//!
//! Two wings around the one decoder ([`transformer`]): `load/` reads checkpoints (configuration,
//! tokenizer, weights, adapters, the Hub, memory planning) and `kernels/` holds the CPU ops with
//! closed-form backward passes that the attribution pass runs.

mod ablate;
mod device;
mod error;
mod generate;
mod kernels;
mod load;
mod loaded;
mod lora;
mod masks;
mod moe;
mod packing;
mod transformer;

pub use ablate::CleanPass;
pub use device::open_device;
pub use error::{ModelError, Result};
pub use generate::{GenerateOptions, Generation, Sampling, StopReason};
pub use kernels::{inner_products, target_logprobs, Linear, LoraPair};
pub use load::{
    available_memory, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE,
    WEIGHTS_FILE,
};
pub use load::{
    char_tokenizer_json, fingerprint_of, inspect, inspect_plan, is_model_folder, limits,
    load_without_weights, random_weights, resolve, write_hf_folder, Activation, AdapterInfo,
    Checkpoint, DownloadProgress, ExpertNames, Family, HubOptions, LoadOptions, LongRope,
    LoraAdapter, MemoryEstimate, ModelConfig, ModelInfo, MoeConfig, NormPlacement, Particulars,
    QkNorm, RopeScaling, ScorePlan, TextStream, Tokenizer, Yarn,
};
pub use loaded::{Model, Traced};
pub use lora::{LoraSettings, LoraTarget, UnknownTarget};
pub use masks::EdgeMasks;
pub use packing::{Packing, Placement};
pub use transformer::{Kernels, KvCache};
