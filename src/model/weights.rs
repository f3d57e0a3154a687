//! A bag of named tensors read from safetensors files (single or sharded), handed out one by one
//! with their shapes checked against the configuration.

use super::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Named tensors plus the file each came from, for error messages.
pub struct TensorStore {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    dtype: DType,
    device: Device,
    origin: PathBuf,
}

impl TensorStore {
    /// Tensors already in memory (GGUF after dequantisation).
    pub fn from_map(
        tensors: HashMap<String, Tensor>,
        origin: &Path,
        dtype: DType,
        device: &Device,
    ) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| (k, (v, origin.to_owned())))
            .collect();
        Self {
            tensors,
            dtype,
            device: device.clone(),
            origin: origin.to_owned(),
        }
    }

    /// Read every tensor of the given safetensors files.
    pub fn from_safetensors(
        files: &[PathBuf],
        origin: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            if !file.is_file() {
                return Err(ModelError::Missing {
                    path: file.clone(),
                    what: "weights shard".into(),
                    fix: "the index lists a shard that is not there: download the model again"
                        .into(),
                });
            }
            let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
                ModelError::Weights {
                    path: file.clone(),
                    message: e.to_string(),
                }
            })?;
            for (name, t) in loaded {
                tensors.insert(name, (t, file.clone()));
            }
        }
        Ok(Self {
            tensors,
            dtype,
            device: device.clone(),
            origin: origin.to_owned(),
        })
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Take a tensor, check its shape, convert it to the compute dtype and move it to the device.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (t, file) = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::Missing {
                path: self.origin.clone(),
                what: format!("tensor `{name}`"),
                fix: "the checkpoint does not match its config.json (wrong family or a partial download)".into(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::Shape {
                path: file,
                name: name.to_owned(),
                found: t.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    /// Take an optional tensor (a bias that a family may or may not have).
    pub fn take_if(
        &mut self,
        present: bool,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<Tensor>> {
        present.then(|| self.take(name, shape)).transpose()
    }
}

/// The dtype of the first tensor in a safetensors file, read from its header only.
pub fn safetensors_dtype(path: &Path) -> Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut len = [0u8; 8];
    let bad = |message: &str| ModelError::Weights {
        path: path.to_owned(),
        message: message.into(),
    };
    f.read_exact(&mut len)
        .map_err(|_| bad("header too short"))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return Err(bad("header length is implausible"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("header truncated"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    json.as_object()
        .and_then(|o| {
            o.iter()
                .filter(|(k, _)| *k != "__metadata__")
                .find_map(|(_, v)| v.get("dtype").and_then(|d| d.as_str()))
        })
        .map(str::to_lowercase)
        .ok_or_else(|| bad("no tensors in header"))
}
