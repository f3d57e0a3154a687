//! `circuitdiff bench`: throughput of the transformer on one model, for BENCHMARKS.md.

use anyhow::Context as _;
use circuitdiff::model::{GenerateOptions, Kernels, LoadOptions, Model};
use std::time::Instant;

/// Measure forward, generation and differentiable-pass speed on a model.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model folder, a .gguf file, or a Hugging Face id.
    #[arg(long)]
    model: String,
    /// Sequence length of the forward and differentiable passes.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Tokens to generate after a 16-token prompt.
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(repeat: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Peak resident set size of this process in bytes (Linux), or 0.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let model = Model::load(&args.model, &LoadOptions::default())
        .with_context(|| format!("loading {}", args.model))?;
    let vocab = model.config.vocab_size as u32;
    // A deterministic token sequence spread over the vocabulary.
    let ids: Vec<u32> = (0..args.seq_len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % vocab)
        .collect();
    let forward = time(args.repeat, || {
        Ok(model.forward_logits(&ids, Kernels::Fast)?)
    })?;
    let prompt = &ids[..16.min(ids.len())];
    let opts = GenerateOptions {
        max_new_tokens: args.gen_tokens,
        stop_ids: Vec::new(),
        ..GenerateOptions::default()
    };
    let mut generated = 0;
    let generation = time(args.repeat, || {
        let g = model.generate_ignoring_eos(prompt, &opts)?;
        generated = g.tokens.len();
        Ok(())
    })?;
    let k = (args.seq_len / 20).max(1);
    let p0 = args.seq_len - k;
    let targets = ids[p0..].to_vec();
    let diff = time(args.repeat, || {
        let traced = model.trace(&ids, p0 - 1..args.seq_len - 1)?;
        let lp = candle_nn::ops::log_softmax(&traced.logits, candle_core::D::Minus1)?;
        let idx = candle_core::Tensor::new(targets.as_slice(), model.device())?.unsqueeze(1)?;
        let loss = (lp.gather(&idx, 1)?.mean_all()? * -1.0)?;
        Ok(traced.gradients(&loss)?)
    })?;
    let report = serde_json::json!({
        "model": args.model,
        "threads": candle_core::utils::get_num_threads(),
        "seq_len": args.seq_len,
        "forward_tokens_per_s": args.seq_len as f64 / forward,
        "generation_tokens_per_s": generated as f64 / generation,
        "generated_tokens": generated,
        "differentiable_pass_s": diff,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
