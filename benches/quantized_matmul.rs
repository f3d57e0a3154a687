//! The products of generation, one decoding step (1 row) and a batch of 24 rows, on
//! SmolLM2-135M's shapes: circuitdiff's f32 projection (`Linear::forward`) beside candle's
//! quantized matmul (`QMatMul`) with the weight in the block formats a GGUF of this width can
//! hold (the k-quants need rows of a multiple of 256; 576 is not). What it decides: whether
//! generating with a GGUF's own quantized weights through candle is faster than with the
//! dequantised f32 weights. Median of 200 (1 row) or 40 (24 rows) calls after a warm-up.
//!
//! usage: RAYON_NUM_THREADS=N cargo bench --bench quantized_matmul

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use circuitdiff::model::Linear;
use std::time::Instant;

/// SmolLM2-135M's products: (name, inputs, outputs).
const SHAPES: [(&str, usize, usize); 5] = [
    ("q, o", 576, 576),
    ("k, v", 576, 192),
    ("gate, up", 576, 1536),
    ("down", 1536, 576),
    ("lm_head", 576, 49152),
];

const FORMATS: [GgmlDType; 3] = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0];

/// The median seconds of `reps` calls of `f`, after one.
fn median(
    reps: usize,
    mut f: impl FnMut() -> candle_core::Result<Tensor>,
) -> candle_core::Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[reps / 2])
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    println!(
        "threads {}; µs per product (ratio to f32)",
        candle_core::utils::get_num_threads()
    );
    println!(
        "| product | rows | f32 | {} |",
        FORMATS.map(|f| format!("{f:?}")).join(" | ")
    );
    println!("|---|---|---|{}", "---|".repeat(FORMATS.len()));
    for (name, k, n) in SHAPES {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let dense = Linear::new(w.clone(), None);
        let quantized = FORMATS
            .iter()
            .map(|&f| QMatMul::from_qtensor(QTensor::quantize(&w, f)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        for (rows, reps) in [(1, 200), (24, 40)] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, k), &dev)?;
            let f32_s = median(reps, || dense.forward(&x))?;
            let mut line = format!("| {name} | {rows} | {:.1} |", f32_s * 1e6);
            for q in &quantized {
                let s = median(reps, || q.forward(&x))?;
                line += &format!(" {:.1} ({:.2}×) |", s * 1e6, s / f32_s);
            }
            println!("{line}");
        }
    }
    Ok(())
}
