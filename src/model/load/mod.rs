//! Reading checkpoints: where a model comes from (folder, `.gguf`, Hub id, PEFT adapter), its
//! configuration and tokenizer, its weights, and whether it fits in memory; and writing Hugging
//! Face folders.

mod adapter;
mod config;
mod download;
mod gguf;
mod gguf_header;
mod gguf_moe;
mod gguf_spm;
mod inspect;
pub mod limits;
mod memory;
mod moe;
mod olmo3;
pub(super) mod open;
mod options;
mod particulars;
mod rope;
mod save;
mod source;
mod tokenizer;
pub(super) mod weights;
mod yarn;

pub use adapter::{
    AdapterInfo, LoraAdapter, CONFIG_FILE as ADAPTER_CONFIG_FILE,
    WEIGHTS_FILE as ADAPTER_WEIGHTS_FILE,
};
pub use config::{Family, ModelConfig, NormPlacement, QkNorm};
pub use download::DownloadProgress;
pub use inspect::{inspect, inspect_plan, ModelInfo};
pub use memory::{available as available_memory, MemoryEstimate, ScorePlan};
pub use moe::{ExpertNames, MoeConfig};
pub use open::{fingerprint_of, load_without_weights};
pub use options::LoadOptions;
pub use particulars::{Activation, Particulars};
pub use rope::{LongRope, RopeScaling};
pub use save::{
    char_tokenizer_json, random_weights, write_hf_folder, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
pub use source::{is_model_folder, resolve, Checkpoint, HubOptions};
pub use tokenizer::{TextStream, Tokenizer};
pub use yarn::Yarn;
