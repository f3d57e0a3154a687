//! `--device`, `--dtype` and `--adapter-base`, shared by the commands that load a model.

use candle_core::DType;
use circuitdiff::model::{open_device, HubOptions, LoadOptions};

/// Where and in which precision the model runs.
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// cpu, cuda, cuda:N or metal (GPUs need a build with `--features cuda` or `metal`).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    dtype: DtypeArg,
}

/// The compute dtype.
#[derive(Debug, clap::Args)]
pub struct DtypeArg {
    /// Weights and activations in f32, or in bf16 (meant for GPUs: half the memory; losses and
    /// edge scores are still accumulated in f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    dtype: String,
}

impl DtypeArg {
    pub fn dtype(&self) -> DType {
        match self.dtype.as_str() {
            "bf16" => DType::BF16,
            _ => DType::F32,
        }
    }
}

impl DeviceArgs {
    /// Load options on the chosen device in the chosen dtype.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            device: open_device(&self.device)?,
            dtype: self.dtype.dtype(),
            ..LoadOptions::default()
        })
    }
}

/// The base model of LoRA adapters.
#[derive(Debug, clap::Args)]
pub struct AdapterBaseArg {
    /// The base model (folder, .gguf or Hugging Face id) of every MODEL that is a PEFT LoRA
    /// adapter folder, instead of the `base_model_name_or_path` of its adapter_config.json;
    /// models that are not adapters ignore it.
    #[arg(long, value_name = "MODEL")]
    adapter_base: Option<String>,
}

impl AdapterBaseArg {
    /// The base given, if any.
    pub fn base(&self) -> Option<String> {
        self.adapter_base.clone()
    }

    /// How to resolve model specs: the Hub (only its cache when `offline`) and this base.
    pub fn hub(&self, offline: bool) -> HubOptions {
        HubOptions {
            offline,
            adapter_base: self.adapter_base.clone(),
            ..HubOptions::default()
        }
    }
}
