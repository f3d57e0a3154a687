//! A matrix view over a slice, read through strides: the operands of the CPU kernels' products
//! (`linear.rs`) and the rows their elementwise kernels read (`fused.rs`).

use candle_core::{Layout, Result};

/// A matrix read through strides: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// The row-major (rows, cols) matrix at the start of `data`.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Row `i` of a matrix whose rows are contiguous (`cs` 1).
    pub fn row(&self, i: usize) -> &'a [T] {
        debug_assert_eq!(self.cs, 1, "rows of a matrix with strided columns");
        &self.data[i * self.rs..][..self.cols]
    }

    /// Columns `cols` of the matrix (its data from the first of them on; none past the end).
    pub fn columns(&self, cols: std::ops::Range<usize>) -> Self {
        Self {
            data: self.data.get(cols.start * self.cs..).unwrap_or_default(),
            cols: cols.len(),
            ..*self
        }
    }

    /// Rows `rows` of the matrix (its data from the first of them on; none past the end).
    pub fn row_block(&self, rows: std::ops::Range<usize>) -> Self {
        Self {
            data: self.data.get(rows.start * self.rs..).unwrap_or_default(),
            rows: rows.len(),
            ..*self
        }
    }

    /// The transposed view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element the strides reach lies inside `data`.
    pub fn fits(&self) -> bool {
        self.rows * self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }

    /// Matrix `i` of a (b, rows, cols) operand under layout `l` over `data`.
    pub fn of_batch(
        data: &'a [T],
        l: &Layout,
        (rows, cols): (usize, usize),
        i: usize,
    ) -> Result<Self> {
        let (batch, rs, cs) = match *l.stride() {
            [rs, cs] => (0, rs, cs),
            [batch, rs, cs] => (batch, rs, cs),
            ref s => candle_core::bail!("matmul operand of rank {}", s.len()),
        };
        let data = data.get(l.start_offset() + i * batch..).unwrap_or_default();
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
}
