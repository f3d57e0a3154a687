//! NumPy `.npz` export (an uncompressed zip of `.npy` files), so that existing notebooks read
//! circuitdiff's scores with `numpy.load`.

use std::io::Write as _;

/// One array of an `.npz` file.
pub struct NpyArray {
    /// NumPy type string: `<f4` (f32), `|b1` (bool), `<i8` (i64).
    descr: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl NpyArray {
    pub fn f32(shape: &[usize], values: &[f32]) -> Self {
        Self {
            descr: "<f4",
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn bool(shape: &[usize], values: &[bool]) -> Self {
        Self {
            descr: "|b1",
            shape: shape.to_vec(),
            data: values.iter().map(|&b| u8::from(b)).collect(),
        }
    }

    /// The `.npy` file: magic, version 1.0, a header padded to 64 bytes, then the data.
    fn to_npy(&self) -> Vec<u8> {
        let shape = match self.shape.as_slice() {
            [one] => format!("({one},)"),
            dims => format!(
                "({})",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.descr
        );
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.data.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

/// The bytes of an `.npz` holding `arrays` under their names (without `.npy`).
pub fn npz_bytes(arrays: &[(&str, NpyArray)]) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, array) in arrays {
        let npy = array.to_npy();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(npy.len() >= u32::MAX as usize);
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(std::io::Error::other)?;
        zip.write_all(&npy)?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}
