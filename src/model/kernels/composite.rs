//! Ops built from candle's elementary ops (multiply, add, tanh), whose gradients candle's
//! backward pass computes exactly: the tanh form of GeLU and tanh soft-capping (Gemma). candle's
//! own `gelu` differentiates with rounded constants, so the attribution and training passes
//! take this composite instead.

use candle_core::{Result, Tensor};

/// √(2/π), the tanh GeLU's inner scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// The tanh GeLU's cubic coefficient.
const CUBIC: f64 = 0.044_715;

/// ½x(1 + tanh(√(2/π)(x + 0.044715x³))), PyTorch's `gelu(approximate="tanh")`, from ops with
/// exact gradients.
pub(in crate::model) fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    let inner = ((x.sqr()? * CUBIC)? + 1.0)?.mul(x)?;
    let t = (inner * SQRT_2_OVER_PI)?.tanh()?;
    (x * 0.5)?.mul(&(t + 1.0)?)
}

/// c·tanh(x/c): `x` squashed smoothly into (−c, c).
pub(in crate::model) fn soft_cap(x: &Tensor, c: f64) -> Result<Tensor> {
    (x / c)?.tanh()? * c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;
    use crate::model::kernels::test_support::{assert_close, value_and_grad};
    use candle_core::{DType, Device};

    /// Values and gradients against the closed forms, by hand: d/dx c·tanh(x/c) = 1 − tanh²(x/c)
    /// and the tanh GeLU's derivative ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), in f64
    /// to 1e-14 of the largest value.
    #[test]
    fn gelu_tanh_and_soft_cap_have_exact_gradients() {
        let xs = [-4.0, -1.3, -0.2, 0.0, 0.7, 2.5, 6.0];
        let x = Tensor::new(&xs, &Device::Cpu).unwrap();
        let r = Tensor::ones(xs.len(), DType::F64, &Device::Cpu).unwrap();
        let (v, g) = value_and_grad(&x, &r, gelu_tanh);
        let t = |x: f64| (SQRT_2_OVER_PI * (x + CUBIC * x * x * x)).tanh();
        let want_v: Vec<f64> = xs.iter().map(|&x| 0.5 * x * (1.0 + t(x))).collect();
        let want_g: Vec<f64> = xs
            .iter()
            .map(|&x| {
                let t = t(x);
                0.5 * (1.0 + t)
                    + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x)
            })
            .collect();
        assert_close(&v, &want_v, 1e-14, "gelu value");
        assert_close(&g, &want_g, 1e-14, "gelu gradient");
        let c = 3.0;
        let (v, g) = value_and_grad(&x, &r, |x| soft_cap(x, c));
        let want_v: Vec<f64> = xs.iter().map(|&x| c * (x / c).tanh()).collect();
        let want_g: Vec<f64> = xs.iter().map(|&x| 1.0 - (x / c).tanh().powi(2)).collect();
        assert_close(&v, &want_v, 1e-14, "soft-cap value");
        assert_close(&g, &want_g, 1e-14, "soft-cap gradient");
    }
}
