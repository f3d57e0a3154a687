//! `--device` and `--dtype`, shared by the commands that load a model.

use candle_core::DType;
use circuitdiff::model::{open_device, LoadOptions};

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
