//! A bag of named tensors read from safetensors files (single or sharded), handed out one by one
//! with their shapes checked against the configuration.
//!
//! A safetensors tensor is read from its file only when it is taken, straight into the tensor
//! that keeps it: the file's bytes never sit in memory beside the loaded weights, so loading
//! peaks at the weights plus one tensor (the page cache holds the file, outside the process).

use super::error::{ModelError, Result};
use candle_core::safetensors::Load as _;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{TensorInfo, TensorView};
use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// Where a tensor is: already in memory (GGUF after dequantisation) or at a byte offset of a
/// safetensors file.
enum Entry {
    Memory(Tensor),
    File { info: TensorInfo, data_start: u64 },
}

/// Named tensors plus the file each comes from, for error messages.
pub struct TensorStore {
    tensors: HashMap<String, (Entry, PathBuf)>,
    dtype: DType,
    device: Device,
    origin: PathBuf,
}

/// A safetensors header: the tensors' places and the offset where their data starts.
struct Header {
    tensors: Vec<(String, TensorInfo)>,
    data_start: u64,
}

fn read_header(path: &Path) -> Result<Header> {
    let bad = |message: &str| ModelError::Weights {
        path: path.to_owned(),
        message: message.into(),
    };
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("header too short"))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return Err(bad("header length is implausible"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("header truncated"))?;
    let json: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    let data_start = 8 + n;
    let mut tensors = Vec::with_capacity(json.len());
    let mut data_end = 0;
    for (name, v) in json {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo = serde_json::from_value(v)
            .map_err(|e| bad(&format!("tensor `{name}` in the header: {e}")))?;
        let (begin, end) = info.data_offsets;
        let elements: usize = info.shape.iter().product();
        if end < begin || (end - begin) * 8 != elements * info.dtype.bitsize() {
            return Err(bad(&format!(
                "tensor `{name}`: its byte range does not match its shape"
            )));
        }
        data_end = data_end.max(end as u64);
        tensors.push((name, info));
    }
    if data_start + data_end != file_len {
        return Err(bad(&format!(
            "the header describes {} bytes of data, the file holds {}",
            data_end,
            file_len.saturating_sub(data_start)
        )));
    }
    Ok(Header {
        tensors,
        data_start,
    })
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
            .map(|(k, v)| (k, (Entry::Memory(v), origin.to_owned())))
            .collect();
        Self {
            tensors,
            dtype,
            device: device.clone(),
            origin: origin.to_owned(),
        }
    }

    /// Index every tensor of the given safetensors files (headers only; data is read by
    /// [`TensorStore::take`]).
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
            let header = read_header(file)?;
            for (name, info) in header.tensors {
                let entry = Entry::File {
                    info,
                    data_start: header.data_start,
                };
                tensors.insert(name, (entry, file.clone()));
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
        let (entry, file) = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::Missing {
                path: self.origin.clone(),
                what: format!("tensor `{name}`"),
                fix: "the checkpoint does not match its config.json (wrong family or a partial download)".into(),
            })?;
        let found = match &entry {
            Entry::Memory(t) => t.dims(),
            Entry::File { info, .. } => &info.shape,
        };
        if found != shape {
            return Err(ModelError::Shape {
                path: file,
                name: name.to_owned(),
                found: found.to_vec(),
                expected: shape.to_vec(),
            });
        }
        let t = match entry {
            Entry::Memory(t) => t,
            Entry::File { info, data_start } => read_tensor(&file, name, info, data_start)?,
        };
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

/// Read one tensor's bytes from a safetensors file.
fn read_tensor(path: &Path, name: &str, info: TensorInfo, data_start: u64) -> Result<Tensor> {
    let bad = |message: String| ModelError::Weights {
        path: path.to_owned(),
        message: format!("tensor `{name}`: {message}"),
    };
    let (begin, end) = info.data_offsets;
    let mut bytes = vec![0u8; end - begin];
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    f.seek(SeekFrom::Start(data_start + begin as u64))
        .and_then(|_| f.read_exact(&mut bytes))
        .map_err(|e| bad(e.to_string()))?;
    let view = TensorView::new(info.dtype, info.shape, &bytes).map_err(|e| bad(e.to_string()))?;
    view.load(&Device::Cpu).map_err(|e| bad(e.to_string()))
}

/// The dtype of the first tensor in a safetensors file, read from its header only.
pub fn safetensors_dtype(path: &Path) -> Result<String> {
    let header = read_header(path)?;
    header
        .tensors
        .iter()
        .min_by_key(|(_, info)| info.data_offsets.0)
        .map(|(_, info)| info.dtype.to_string().to_lowercase())
        .ok_or_else(|| ModelError::Weights {
            path: path.to_owned(),
            message: "no tensors in header".into(),
        })
}
