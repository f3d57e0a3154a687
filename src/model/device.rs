//! Devices by name: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.

use super::error::{ModelError, Result};
use candle_core::utils::{cuda_is_available, metal_is_available};
use candle_core::Device;

/// Open the device named `spec`; a GPU that this build cannot drive is an error that names the
/// cargo feature to build with.
pub fn open_device(spec: &str) -> Result<Device> {
    let bad = |message: String| ModelError::Device {
        spec: spec.to_owned(),
        message,
    };
    let (kind, ordinal) = match spec.split_once(':') {
        Some((kind, n)) => {
            let n = n
                .parse::<usize>()
                .map_err(|_| bad(format!("`{n}` is not a device number")))?;
            (kind, n)
        }
        None => (spec, 0),
    };
    let (compiled, feature) = match kind {
        "cpu" if ordinal == 0 => return Ok(Device::Cpu),
        "cuda" => (cuda_is_available(), "cuda"),
        "metal" => (metal_is_available(), "metal"),
        _ => {
            return Err(bad(
                "expected cpu, cuda, cuda:N, metal or metal:N".to_owned()
            ))
        }
    };
    if !compiled {
        return Err(bad(format!(
            "this build has no {kind} support: build with `cargo build --release --features \
             {feature}` (README: GPUs)"
        )));
    }
    let device = match kind {
        "cuda" => Device::new_cuda(ordinal),
        _ => Device::new_metal(ordinal),
    };
    device.map_err(|e| bad(e.to_string()))
}
