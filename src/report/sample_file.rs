//! One sample's score file, `samples/NNNNNN.safetensors` of a run directory.
//!
//! Tensors `scores` (dense S×D f32), `loss` (f64, one value) and `k` (u32, one value); the
//! safetensors header metadata records what the file claims to be ([`SampleHeader`]): the
//! sample's id and K, the dense shape, the identity of the run that wrote it and a SHA-256 of the
//! tensor data. [`read`] checks every claim against what the run expects ([`Expected`]) and
//! names the first that fails ([`Defect`]): a resumed run recomputes such a file, a finished run
//! refuses to load it.

use crate::attribution::SampleScores;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key that marks a sample file, and the version of its layout.
const FORMAT_KEY: &str = "circuitdiff.sample";
const FORMAT: &str = "1";

/// What a sample file claims to be, recorded in its header metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleHeader {
    /// The sample's id, as the manifest lists it.
    pub id: String,
    /// The cut length scored.
    pub k: usize,
    /// The dense shape (sources S, destinations D).
    pub shape: (usize, usize),
    /// The identity of the run that wrote it (`Manifest::identity`).
    pub run: String,
    /// SHA-256 (lowercase hex) of the data of `scores`, `loss` and `k`, in that order.
    pub sha256: String,
}

impl SampleHeader {
    /// The header as safetensors metadata.
    pub fn to_map(&self) -> HashMap<String, String> {
        [
            (FORMAT_KEY, FORMAT.to_owned()),
            ("id", self.id.clone()),
            ("k", self.k.to_string()),
            ("shape", format!("{},{}", self.shape.0, self.shape.1)),
            ("run", self.run.clone()),
            ("sha256", self.sha256.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The header of safetensors metadata, or why it is not one.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, Defect> {
        let get = |key: &str| {
            map.get(key)
                .ok_or_else(|| Defect::BadMetadata(format!("no `{key}`")))
        };
        let format = map.get(FORMAT_KEY).ok_or(Defect::OldFormat)?;
        if format != FORMAT {
            return Err(Defect::BadMetadata(format!(
                "format {format}, expected {FORMAT}"
            )));
        }
        let number = |key: &str, text: &str| {
            text.parse::<usize>()
                .map_err(|_| Defect::BadMetadata(format!("`{key}` is not a count: {text:?}")))
        };
        let shape = get("shape")?;
        let (s, d) = shape
            .split_once(',')
            .ok_or_else(|| Defect::BadMetadata(format!("`shape` is not S,D: {shape:?}")))?;
        Ok(Self {
            id: get("id")?.clone(),
            k: number("k", get("k")?)?,
            shape: (number("shape", s)?, number("shape", d)?),
            run: get("run")?.clone(),
            sha256: get("sha256")?.clone(),
        })
    }

    /// The first claim that differs from what the run expects.
    fn check(&self, expected: &Expected<'_>) -> Result<(), Defect> {
        if self.id != expected.id {
            return Err(Defect::WrongId {
                found: self.id.clone(),
                expected: expected.id.to_owned(),
            });
        }
        if self.k != expected.k {
            return Err(Defect::WrongK {
                found: self.k,
                expected: expected.k,
            });
        }
        if self.shape != expected.shape {
            return Err(Defect::WrongShape {
                found: self.shape,
                expected: expected.shape,
            });
        }
        if self.run != expected.run {
            return Err(Defect::OtherRun {
                found: self.run.clone(),
                expected: expected.run.to_owned(),
            });
        }
        Ok(())
    }
}

/// What a run expects of one sample file: its manifest entry's id and K, the graph's dense
/// shape, and the run's identity.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub id: &'a str,
    pub k: usize,
    pub shape: (usize, usize),
    pub run: &'a str,
}

/// Why a sample file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("not a readable safetensors file ({0}; truncated or overwritten?)")]
    Unreadable(String),
    #[error("written in an older format (no metadata to verify it by)")]
    OldFormat,
    #[error("bad metadata: {0}")]
    BadMetadata(String),
    #[error("holds sample `{found}`, expected `{expected}` (a file of another sample)")]
    WrongId { found: String, expected: String },
    #[error("scored at K={found}, expected K={expected}")]
    WrongK { found: usize, expected: usize },
    #[error("shape {}×{}, expected {}×{} (a file of another graph)", found.0, found.1, expected.0, expected.1)]
    WrongShape {
        found: (usize, usize),
        expected: (usize, usize),
    },
    #[error("written by another run (run {found}, expected {expected})")]
    OtherRun { found: String, expected: String },
    #[error("tensor `{name}`: {message}")]
    Tensor { name: &'static str, message: String },
    #[error("checksum mismatch (damaged)")]
    Checksum,
    #[error("the loss or the scores are not finite")]
    NotFinite,
}

/// SHA-256 (lowercase hex) of the tensors' data, in order.
fn checksum(parts: [&[u8]; 3]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!("{:x}", h.finalize())
}

/// The bytes of `path` for the sample `s` of the run `run`: id, K and shape as given.
fn encode(
    s: &SampleScores,
    id: &str,
    shape: (usize, usize),
    run: &str,
) -> std::io::Result<Vec<u8>> {
    let scores: Vec<u8> = s.dense.iter().flat_map(|v| v.to_le_bytes()).collect();
    let loss = s.loss.to_le_bytes();
    let k = u32::try_from(s.k)
        .map_err(std::io::Error::other)?
        .to_le_bytes();
    let header = SampleHeader {
        id: id.to_owned(),
        k: s.k,
        shape,
        run: run.to_owned(),
        sha256: checksum([&scores, &loss, &k]),
    };
    let view = |dtype, shape, data| TensorView::new(dtype, shape, data);
    let tensors = [
        ("scores", view(Dtype::F32, vec![shape.0, shape.1], &scores)),
        ("loss", view(Dtype::F64, vec![1], &loss)),
        ("k", view(Dtype::U32, vec![1], &k)),
    ]
    .into_iter()
    .map(|(name, t)| t.map(|t| (name, t)))
    .collect::<Result<Vec<_>, _>>()
    .map_err(std::io::Error::other)?;
    let bytes =
        safetensors::serialize(tensors, Some(header.to_map())).map_err(std::io::Error::other)?;
    Ok(sorted_header(bytes))
}

/// The file with its header's entries, and its metadata's, in name order: safetensors writes
/// metadata in a hash map's order, which differs from run to run, and a sample's file should
/// be the same bytes whenever it holds the same scores. The sorted header has the same length,
/// so the data stays where it is.
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    use std::collections::BTreeMap;
    let Some(len) = bytes.get(..8).map(|b| {
        let mut n = [0u8; 8];
        n.copy_from_slice(b);
        u64::from_le_bytes(n) as usize
    }) else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let Ok(mut entries) = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(header)
    else {
        return bytes;
    };
    if let Some(meta) = entries.get_mut("__metadata__") {
        if let Ok(sorted) = serde_json::from_value::<BTreeMap<String, String>>(meta.clone()) {
            *meta = serde_json::to_value(sorted).unwrap_or_default();
        }
    }
    match serde_json::to_vec(&entries) {
        Ok(mut text) if text.len() <= len => {
            text.resize(len, b' ');
            bytes[8..8 + len].copy_from_slice(&text);
            bytes
        }
        _ => bytes,
    }
}

/// Write the sample `s` to `path` atomically.
pub fn write(
    path: &Path,
    s: &SampleScores,
    id: &str,
    shape: (usize, usize),
    run: &str,
) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &encode(s, id, shape, run)?)
}

/// Read and verify the sample file at `path`: `None` when there is none, else its scores or
/// the first claim that fails.
pub fn read(
    path: &Path,
    expected: &Expected<'_>,
) -> std::io::Result<Option<Result<SampleScores, Defect>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(decode(&bytes, expected))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The data of tensor `name`, which must have `dtype` and `shape`.
fn tensor<'a>(
    st: &SafeTensors<'a>,
    name: &'static str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8], Defect> {
    let bad = |message: String| Defect::Tensor { name, message };
    let t = st.tensor(name).map_err(|_| bad("missing".into()))?;
    if t.dtype() != dtype || t.shape() != shape {
        return Err(bad(format!(
            "{:?} {:?}, expected {dtype:?} {shape:?}",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(t.data())
}

/// Verify the bytes of a sample file against `expected` and decode them.
fn decode(bytes: &[u8], expected: &Expected<'_>) -> Result<SampleScores, Defect> {
    let unreadable = |e: safetensors::SafeTensorError| Defect::Unreadable(e.to_string());
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(unreadable)?;
    let st = SafeTensors::deserialize(bytes).map_err(unreadable)?;
    let header = SampleHeader::from_map(meta.metadata().as_ref().ok_or(Defect::OldFormat)?)?;
    header.check(expected)?;
    let (s, d) = header.shape;
    let scores = tensor(&st, "scores", Dtype::F32, &[s, d])?;
    let loss = tensor(&st, "loss", Dtype::F64, &[1])?;
    let k = tensor(&st, "k", Dtype::U32, &[1])?;
    if checksum([scores, loss, k]) != header.sha256 {
        return Err(Defect::Checksum);
    }
    let dense: Vec<f32> = scores
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut loss_bytes = [0u8; 8];
    loss_bytes.copy_from_slice(loss);
    let loss = f64::from_le_bytes(loss_bytes);
    let k = u32::from_le_bytes([k[0], k[1], k[2], k[3]]) as usize;
    if k != header.k {
        return Err(Defect::WrongK {
            found: k,
            expected: header.k,
        });
    }
    if !loss.is_finite() || dense.iter().any(|v| !v.is_finite()) {
        return Err(Defect::NotFinite);
    }
    Ok(SampleScores { loss, k, dense })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_same_bytes_every_time_and_reads_back() {
        let s = SampleScores {
            loss: 0.25,
            k: 3,
            dense: vec![0.5, -1.0, 0.0, 2.0],
        };
        let first = encode(&s, "q1", (2, 2), "run-id").unwrap();
        for _ in 0..8 {
            assert_eq!(encode(&s, "q1", (2, 2), "run-id").unwrap(), first);
        }
        let expected = Expected {
            id: "q1",
            k: 3,
            shape: (2, 2),
            run: "run-id",
        };
        assert_eq!(decode(&first, &expected), Ok(s));
    }
}
