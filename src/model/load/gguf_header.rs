//! A first pass over a GGUF header, before candle's reader sees it: it refuses what that reader
//! would panic on or accept silently (a zero `general.alignment`, a tensor listed twice, tensor
//! dimensions whose product overflows) and bounds every count before anything is allocated.

use super::limits::{MAX_GGUF_ALIGNMENT, MAX_GGUF_ARRAY, MAX_GGUF_TENSORS};
use crate::model::error::{ModelError, Result};
use std::collections::HashSet;
use std::io::{BufReader, Read as _};
use std::path::Path;

/// Longest metadata key or tensor name read (llama.cpp's are under 100 bytes).
const MAX_NAME_BYTES: u64 = 1 << 16;

/// Most metadata entries (real files have a few dozen).
const MAX_METADATA_ENTRIES: u64 = 1 << 16;

/// Deepest nesting of metadata arrays.
const MAX_ARRAY_DEPTH: usize = 4;

/// Walk the header of the GGUF file at `path`: metadata keys and values, then tensor names and
/// shapes.
pub(crate) fn check(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut r = Reader {
        inner: BufReader::new(file),
        left: len,
        path,
    };
    let magic = r.u32()?;
    if !matches!(magic, 0x4655_4747 | 0x4747_5546) {
        return Err(r.corrupt("no GGUF magic number"));
    }
    let wide = match r.u32()? {
        1 => false,
        2 | 3 => true,
        v => return Err(r.corrupt(&format!("unknown GGUF version {v}"))),
    };
    let tensors = r.count(wide)?;
    bounded(path, "tensor count", tensors, MAX_GGUF_TENSORS)?;
    let entries = r.count(wide)?;
    bounded(path, "metadata entry count", entries, MAX_METADATA_ENTRIES)?;
    for _ in 0..entries {
        let key = r.name(wide)?;
        let kind = r.u32()?;
        if key == "general.alignment" {
            alignment(path, r.integer(kind, wide)?)?;
        } else {
            r.skip_value(kind, wide, &key, 0)?;
        }
    }
    let mut seen = HashSet::new();
    for _ in 0..tensors {
        let name = r.name(wide)?;
        let dims = r.u32()?;
        if dims > 4 {
            return Err(r.corrupt(&format!("tensor `{name}` has {dims} dimensions")));
        }
        let mut elements: u64 = 1;
        for _ in 0..dims {
            let d = r.count(wide)?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| r.corrupt(&format!("tensor `{name}`: its size overflows")))?;
        }
        r.skip(4 + 8)?; // dtype, offset
        if !seen.insert(name.clone()) {
            return Err(ModelError::DuplicateTensor {
                path: path.to_owned(),
                name,
            });
        }
    }
    Ok(())
}

/// `general.alignment`: a power of two up to [`MAX_GGUF_ALIGNMENT`].
fn alignment(path: &Path, value: Option<u64>) -> Result<()> {
    let field = "general.alignment";
    let Some(a) = value else {
        return Err(ModelError::config(
            path,
            field,
            "not a non-negative integer",
        ));
    };
    if a == 0 || a > MAX_GGUF_ALIGNMENT {
        return Err(ModelError::OutOfRange {
            path: path.to_owned(),
            field: field.into(),
            value: a,
            min: 1,
            max: MAX_GGUF_ALIGNMENT,
        });
    }
    if !a.is_power_of_two() {
        return Err(ModelError::config(
            path,
            field,
            format!("{a} is not a power of two"),
        ));
    }
    Ok(())
}

fn bounded(path: &Path, field: &str, value: u64, max: u64) -> Result<()> {
    if value <= max {
        return Ok(());
    }
    Err(ModelError::OutOfRange {
        path: path.to_owned(),
        field: field.into(),
        value,
        min: 0,
        max,
    })
}

/// A GGUF file read forward, counting the bytes left.
struct Reader<'a> {
    inner: BufReader<std::fs::File>,
    left: u64,
    path: &'a Path,
}

impl Reader<'_> {
    fn corrupt(&self, message: &str) -> ModelError {
        ModelError::Weights {
            path: self.path.to_owned(),
            message: format!("GGUF header: {message}"),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| self.corrupt("it ends early"))?;
        self.left = self.left.saturating_sub(N as u64);
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    /// A length or count: 32 bits in version 1, 64 after.
    fn count(&mut self, wide: bool) -> Result<u64> {
        if wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let step = i64::try_from(n)
            .ok()
            .filter(|_| n <= self.left)
            .ok_or_else(|| self.corrupt("a value runs past the end of the file"))?;
        self.inner
            .seek_relative(step)
            .map_err(|e| ModelError::io(self.path, e))?;
        self.left -= n;
        Ok(())
    }

    /// A metadata key or tensor name.
    fn name(&mut self, wide: bool) -> Result<String> {
        let n = self.count(wide)?;
        if n > MAX_NAME_BYTES || n > self.left {
            return Err(self.corrupt(&format!("a name of {n} bytes")));
        }
        let mut b = Vec::new();
        (&mut self.inner)
            .take(n)
            .read_to_end(&mut b)
            .map_err(|e| ModelError::io(self.path, e))?;
        self.left -= n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// An integer value of type `kind`; `None` for a value of another type (which is skipped).
    fn integer(&mut self, kind: u32, wide: bool) -> Result<Option<u64>> {
        Ok(match kind {
            0 => Some(u64::from(u8::from_le_bytes(self.bytes()?))),
            2 => Some(u64::from(u16::from_le_bytes(self.bytes()?))),
            4 => Some(u64::from(self.u32()?)),
            10 => Some(self.u64()?),
            1 => u64::try_from(i8::from_le_bytes(self.bytes()?)).ok(),
            3 => u64::try_from(i16::from_le_bytes(self.bytes()?)).ok(),
            5 => u64::try_from(i32::from_le_bytes(self.bytes()?)).ok(),
            11 => u64::try_from(i64::from_le_bytes(self.bytes()?)).ok(),
            _ => {
                self.skip_value(kind, wide, "general.alignment", 0)?;
                None
            }
        })
    }

    /// Skip one metadata value of type `kind` (the value of `key`), bounding array lengths.
    fn skip_value(&mut self, kind: u32, wide: bool, key: &str, depth: usize) -> Result<()> {
        if let Some(size) = scalar_size(kind) {
            return self.skip(size);
        }
        match kind {
            8 => {
                let n = self.count(wide)?;
                self.skip(n)
            }
            9 if depth < MAX_ARRAY_DEPTH => {
                let item = self.u32()?;
                let n = self.count(wide)?;
                bounded(self.path, key, n, MAX_GGUF_ARRAY)?;
                match scalar_size(item) {
                    Some(size) => self.skip(n.saturating_mul(size)),
                    None => (0..n).try_for_each(|_| self.skip_value(item, wide, key, depth + 1)),
                }
            }
            _ => Err(self.corrupt(&format!("`{key}` has an unknown value type {kind}"))),
        }
    }
}

/// Bytes of a fixed-size GGUF value type.
fn scalar_size(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}
