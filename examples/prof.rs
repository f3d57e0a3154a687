use circuitdiff::model::*;
use std::time::Instant;
fn main() {
    let m = Model::load(&std::env::args().nth(1).unwrap(), &LoadOptions::default()).unwrap();
    let v = m.config.vocab_size as u32;
    let ids: Vec<u32> = (0..256u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) % v)
        .collect();
    for _ in 0..8 {
        let t = Instant::now();
        if std::env::var_os("NOFWD").is_none() {
            let _ = m.forward_logits(&ids, Kernels::Fast).unwrap();
        }
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        if std::env::var_os("NOFWD").is_none() {
            let _ = m.forward_logits(&ids, Kernels::Differentiable).unwrap();
        }
        let fd = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let tr = m.trace(&ids, 243..255).unwrap();
        let ft = t.elapsed().as_secs_f64();
        let lp = candle_nn::ops::log_softmax(&tr.logits, candle_core::D::Minus1).unwrap();
        let idx = candle_core::Tensor::new(&ids[244..256], m.device())
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let loss = (lp.gather(&idx, 1).unwrap().mean_all().unwrap() * -1.0).unwrap();
        let t = Instant::now();
        let _g = tr.gradients(&loss).unwrap();
        let b = t.elapsed().as_secs_f64();
        println!("fast fwd {f:.3} diff fwd {fd:.3} trace fwd {ft:.3} backward {b:.3}");
    }
}
