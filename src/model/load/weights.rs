//! A bag of named tensors read from safetensors files (single or sharded), handed out one by one
//! with their shapes checked against the configuration.
//!
//! A safetensors tensor is read from its file only when it is taken, straight into the tensor
//! that keeps it: the file's bytes never sit in memory beside the loaded weights, so loading
//! peaks at the weights plus one tensor (the page cache holds the file, outside the process).

use super::config::ModelConfig;
use crate::model::error::{ModelError, Result};
use candle_core::safetensors::Load as _;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorInfo, TensorView};
use std::collections::{HashMap, HashSet};
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
    if n > MAX_HEADER_BYTES || n > file_len.saturating_sub(8) {
        return Err(bad("header length is implausible"));
    }
    let mut header = Vec::new();
    f.take(n)
        .read_to_end(&mut header)
        .map_err(|_| bad("header truncated"))?;
    let Entries(entries) =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    let data_start = 8 + n;
    let mut tensors: Vec<(String, TensorInfo)> = Vec::with_capacity(entries.len());
    let mut seen = HashSet::with_capacity(entries.len());
    for (name, v) in entries {
        if name == "__metadata__" {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(ModelError::DuplicateTensor {
                path: path.to_owned(),
                name,
            });
        }
        let info: TensorInfo = serde_json::from_value(v)
            .map_err(|e| bad(&format!("tensor `{name}` in the header: {e}")))?;
        if !matches!(
            info.dtype,
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64
        ) {
            return Err(ModelError::TensorDtype {
                path: path.to_owned(),
                name,
                dtype: info.dtype.to_string().to_lowercase(),
            });
        }
        let (begin, end) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |a, &x| a.checked_mul(x));
        if end < begin || bits != (end - begin).checked_mul(8) {
            return Err(bad(&format!(
                "tensor `{name}`: its byte range does not match its shape"
            )));
        }
        tensors.push((name, info));
    }
    check_disjoint(path, &tensors)?;
    let data_end = tensors
        .iter()
        .map(|(_, info)| info.data_offsets.1 as u64)
        .max()
        .unwrap_or(0);
    if data_start.checked_add(data_end) != Some(file_len) {
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

/// Largest safetensors header read (the header of a 1,000-layer model takes a few hundred KiB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Refuse tensors whose byte ranges overlap.
fn check_disjoint(path: &Path, tensors: &[(String, TensorInfo)]) -> Result<()> {
    let mut by_offset: Vec<_> = tensors.iter().collect();
    by_offset.sort_by_key(|(_, info)| info.data_offsets);
    for pair in by_offset.windows(2) {
        if let [(a, a_info), (b, b_info)] = pair {
            if a_info.data_offsets.1 > b_info.data_offsets.0 {
                return Err(ModelError::OverlappingTensors {
                    path: path.to_owned(),
                    name: a.clone(),
                    other: b.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The entries of a JSON object in file order, repeated keys kept (a map would keep only the
/// last).
pub(crate) struct Entries(pub Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        d.deserialize_map(Visitor)
    }
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
                if let Some((_, first)) = tensors.insert(name.clone(), (entry, file.clone())) {
                    return Err(ModelError::TensorInTwoFiles {
                        path: file.clone(),
                        name,
                        first,
                    });
                }
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

    /// The compute dtype that [`TensorStore::take`] converts to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every tensor's name and shape, in no particular order.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().map(|(name, (entry, _))| {
            let shape: &[usize] = match entry {
                Entry::Memory(t) => t.dims(),
                Entry::File { info, .. } => &info.shape,
            };
            (name.as_str(), shape)
        })
    }

    /// A tensor as stored (its own dtype, on the CPU for file entries), left in the store.
    pub fn read(&self, name: &str) -> Result<Tensor> {
        match self.tensors.get(name) {
            Some((Entry::Memory(t), _)) => Ok(t.clone()),
            Some((Entry::File { info, data_start }, file)) => {
                read_tensor(file, name, info.clone(), *data_start)
            }
            None => Err(missing_tensor(&self.origin, name)),
        }
    }

    /// Put `tensor` under `name` in memory, replacing what was there (its file is kept for error
    /// messages; a new name is attributed to `file`).
    pub fn put(&mut self, name: &str, tensor: Tensor, file: &Path) {
        let file = self
            .tensors
            .remove(name)
            .map_or_else(|| file.to_owned(), |(_, f)| f);
        self.tensors
            .insert(name.to_owned(), (Entry::Memory(tensor), file));
    }

    /// Check, before any tensor is read, that the store holds exactly the tensors `cfg` calls
    /// for (see [`check_tensors`]).
    pub fn check(&self, cfg: &ModelConfig) -> Result<()> {
        let stored = self.tensors.iter().map(|(name, (entry, file))| Stored {
            hf_name: Some(name.clone()),
            name,
            shape: match entry {
                Entry::Memory(t) => t.dims(),
                Entry::File { info, .. } => &info.shape,
            },
            file,
        });
        check_tensors(cfg, &self.origin, stored)
    }

    /// Take a tensor, check its shape, convert it to the compute dtype and move it to the device.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (entry, file) = self
            .tensors
            .remove(name)
            .ok_or_else(|| missing_tensor(&self.origin, name))?;
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

/// A tensor as a checkpoint stores it.
pub(crate) struct Stored<'a> {
    /// Its Hugging Face name; `None` for a tensor that has none (an unknown GGUF tensor).
    pub hf_name: Option<String>,
    /// Its name in the file.
    pub name: &'a str,
    pub shape: &'a [usize],
    pub file: &'a Path,
}

/// Check, before any tensor is read, that a checkpoint holds exactly the tensors `cfg` calls for,
/// each with its shape. The first tensor at fault (in name order) is named: a missing one, an
/// extra one (a layer the configuration does not have, a tensor of another family) or one of
/// another shape. With tied embeddings a separate `lm_head.weight` may be present (it is used);
/// the rotary `inv_freq` buffers that older checkpoints carry are derived from the
/// configuration and ignored.
pub(crate) fn check_tensors<'a>(
    cfg: &ModelConfig,
    origin: &Path,
    stored: impl IntoIterator<Item = Stored<'a>>,
) -> Result<()> {
    let mut expected: HashMap<String, Vec<usize>> = cfg.tensor_shapes().into_iter().collect();
    if cfg.tie_word_embeddings {
        expected.insert(LM_HEAD.into(), vec![cfg.vocab_size, cfg.hidden_size]);
    }
    let mut stored: Vec<Stored<'a>> = stored.into_iter().collect();
    stored.sort_by(|a, b| a.name.cmp(b.name));
    for t in stored {
        let hf = t.hf_name.as_deref();
        let want = match hf.and_then(|n| expected.remove(n)) {
            Some(shape) => shape,
            None if hf.is_some_and(is_rotary_buffer) => continue,
            None => {
                let moe = cfg.moe.as_ref();
                return Err(hf
                    .and_then(|n| moe.and_then(|m| m.count_mismatch(t.file, n)))
                    .unwrap_or_else(|| ModelError::ExtraTensor {
                        path: t.file.to_owned(),
                        name: t.name.to_owned(),
                    }));
            }
        };
        if want != t.shape {
            // A router of another height: the expert count is at fault.
            let router = t.name.ends_with(".gate.weight");
            if let Some(e) = cfg.moe.as_ref().filter(|_| router) {
                if let Some(e) = e.count_mismatch(t.file, t.name) {
                    return Err(e);
                }
            }
            return Err(ModelError::Shape {
                path: t.file.to_owned(),
                name: t.name.to_owned(),
                found: t.shape.to_vec(),
                expected: want,
            });
        }
    }
    let missing = cfg
        .tensor_shapes()
        .into_iter()
        .find(|(name, _)| expected.contains_key(name));
    match missing {
        Some((name, _)) => Err(cfg
            .moe
            .as_ref()
            .and_then(|m| m.count_mismatch(origin, &name))
            .unwrap_or_else(|| missing_tensor(origin, &name))),
        None => Ok(()),
    }
}

const LM_HEAD: &str = "lm_head.weight";

/// A rotary embedding's inverse frequencies, which some older checkpoints store per layer.
fn is_rotary_buffer(name: &str) -> bool {
    name.starts_with("model.layers.") && name.ends_with(".self_attn.rotary_emb.inv_freq")
}

fn missing_tensor(origin: &Path, name: &str) -> ModelError {
    ModelError::Missing {
        path: origin.to_owned(),
        what: format!("tensor `{name}`"),
        fix: "the checkpoint does not match its configuration (wrong family or a partial download)"
            .into(),
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
