//! Helpers for the unit tests of the model's custom ops.

use candle_core::{DType, Result, Tensor, Var};

/// The value of `f(x)` and the gradient of Σ f(x)⊙r with respect to `x`, flattened, in f64.
pub(super) fn value_and_grad(
    x: &Tensor,
    r: &Tensor,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> (Vec<f64>, Vec<f64>) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor()).unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| {
        let t = t.to_dtype(DType::F64).unwrap();
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    (flat(&y), flat(grads.get(v.as_tensor()).unwrap()))
}

/// `a` equals `b` within `tol` times the largest magnitude in `b`.
pub(super) fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {x} vs {y}");
    }
}
