//! `circuitdiff bench`: throughput of the transformer on one model, for BENCHMARKS.md.

use super::args::at_least;
use super::device::{AdapterBaseArg, DeviceArgs};
use circuitdiff::attribution::exact::{by_magnitude, chosen_edges, Ablation, Others};
use circuitdiff::attribution::{score_sample, Graph, Level};
use circuitdiff::model::{self, GenerateOptions, Kernels, LoadOptions, ModelConfig, ScorePlan};
use circuitdiff::runtime::CpuInfo;
use std::path::PathBuf;
use std::time::Instant;

/// Measure forward, generation, differentiable-pass and scoring speed on a model.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model folder, a .gguf file, a Hugging Face id, or a PEFT LoRA adapter folder.
    #[arg(long, required_unless_present_any = ["write_random_llama", "cpu"])]
    model: Option<String>,
    /// Print the CPU this runs on and the matrix kernel candle's matmul uses there (JSON), and
    /// exit.
    #[arg(long)]
    cpu: bool,
    /// Only measure scoring (one sample per repetition), so that the peak RSS is scoring's.
    #[arg(long)]
    score_only: bool,
    /// Measure exact edge effects (--exact-top top edges and as many random ones) and a
    /// faithfulness curve on one sample beside its scoring pass, with each one's peak RSS.
    #[arg(long, conflicts_with = "score_only")]
    exact_only: bool,
    /// Top edges (and as many random ones) whose exact effects --exact-only measures.
    #[arg(long, default_value_t = 32, value_parser = at_least(1))]
    exact_top: usize,
    /// Ablated passes per batch for --exact-only.
    #[arg(long, default_value_t = 8, value_parser = at_least(1))]
    exact_batch: usize,
    /// Write a random Llama (of --random-shape) to this folder and exit.
    #[arg(long)]
    write_random_llama: Option<PathBuf>,
    /// Shape of the random Llama: hidden size, layers, heads, key/value heads, MLP size,
    /// vocabulary.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "D,L,H,KV,I,V",
        default_value = "512,8,8,8,1376,32000",
        value_parser = at_least(1)
    )]
    random_shape: Vec<usize>,
    /// Sequence length of the forward and differentiable passes (≥ 2: a prompt and an answer
    /// token).
    #[arg(long, default_value_t = 256, value_parser = at_least(2))]
    seq_len: usize,
    /// Tokens to generate after a 16-token prompt.
    #[arg(long, default_value_t = 64, value_parser = at_least(1))]
    gen_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = at_least(1))]
    repeat: usize,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(repeat: usize, f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<f64> {
    Ok(time_beside(repeat, f, || Ok(0.0))?.0)
}

/// The median time of `f` over `repeat` runs after a warm-up, as [`time`], and the median of
/// what `between` measures after each timed run (outside its time).
fn time_beside<T>(
    repeat: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
    mut between: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<(f64, f64)> {
    f()?;
    let mut times = Vec::with_capacity(repeat);
    let mut others = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
        others.push(between()?);
    }
    Ok((median(times), median(others)))
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

/// Start a new peak-RSS measurement: hand the memory freed so far back to the system, then
/// clear this process's high-water mark (Linux; elsewhere nothing happens).
fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
    // Writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A random Llama of `[hidden, layers, heads, kv_heads, intermediate, vocab]`.
fn random_llama_config(shape: &[usize]) -> anyhow::Result<ModelConfig> {
    let &[hidden, layers, heads, kv_heads, intermediate, vocab] = shape else {
        anyhow::bail!("--random-shape takes six numbers: hidden,layers,heads,kv_heads,mlp,vocab");
    };
    if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
        anyhow::bail!(
            "--random-shape: heads must divide the hidden size, key/value heads the heads"
        );
    }
    Ok(ModelConfig::llama(
        vocab,
        hidden,
        intermediate,
        layers,
        (heads, kv_heads),
        4096,
    ))
}

/// Floating-point operations of scoring one sample of `t` tokens with `k` scored positions:
/// forward, backward to the inputs only, and the score product.
fn score_flops(cfg: &ModelConfig, graph: &Graph, t: usize, k: usize) -> f64 {
    let (d, hd, i) = (
        cfg.hidden_size as f64,
        cfg.head_dim as f64,
        cfg.intermediate_size as f64,
    );
    let (h, kv, l, t, k) = (
        cfg.num_heads as f64,
        cfg.num_kv_heads as f64,
        cfg.num_layers as f64,
        t as f64,
        k as f64,
    );
    let linear = 2.0 * t * l * (d * (h + 2.0 * kv) * hd + h * hd * d + 3.0 * d * i);
    let attention = l * 2.0 * 2.0 * t * t * h * hd;
    let head = 2.0 * k * d * cfg.vocab_size as f64;
    let (ns, nd) = graph.dense_shape();
    let product = 2.0 * (ns * nd) as f64 * t * d;
    (linear + attention + head) + (linear + 2.0 * attention + head) + product
}

/// The operands of a 1024³ product on the model's device and dtype, whose rate the scoring pass
/// is set beside.
struct MatmulRate {
    a: candle_core::Tensor,
    b: candle_core::Tensor,
}

impl MatmulRate {
    fn new(dev: &candle_core::Device, dtype: candle_core::DType) -> anyhow::Result<Self> {
        let operand = || candle_core::Tensor::randn(0f32, 1.0, (1024, 1024), dev)?.to_dtype(dtype);
        Ok(Self {
            a: operand()?,
            b: operand()?,
        })
    }

    /// FLOP/s of the product, the median of 10 (on the CPU: at the current thread count).
    fn measure(&self) -> anyhow::Result<f64> {
        let secs = time(10, || Ok(self.a.matmul(&self.b)?))?;
        Ok(2.0 * 1024f64.powi(3) / secs)
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.cpu {
        println!("{}", serde_json::to_string_pretty(&CpuInfo::detect())?);
        return Ok(());
    }
    if let Some(dir) = &args.write_random_llama {
        return write_random_llama(dir, &args.random_shape);
    }
    let spec = args.model.as_deref().unwrap_or_default();
    let opts = LoadOptions {
        plan: Some(ScorePlan::block(args.seq_len)),
        hub: args.adapter.hub(false),
        ..args.device.load_options()?
    };
    let model = super::bars::load_model(spec, &opts)?;
    let vocab = model.config.vocab_size as u32;
    // A deterministic token sequence spread over the vocabulary.
    let ids: Vec<u32> = (0..args.seq_len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % vocab)
        .collect();
    let k = (args.seq_len / 20).max(1);
    let p0 = args.seq_len - k;
    let graph = Graph::new(&model.config, Level::Block);
    if args.exact_only {
        return exact(args, &model, &graph, (&ids[..p0], &ids[p0..]), k);
    }
    // The matmul rate is measured between the scoring runs, so that the pass and the rate it is
    // set beside see the same clock and the same neighbours on the machine.
    let matmul = MatmulRate::new(model.device(), model.dtype())?;
    let sample = || score_sample(&model, &graph, "bench", &ids[..p0], &ids[p0..], k);
    let (score, rate) = time_beside(args.repeat, || Ok(sample()?), || matmul.measure())?;
    let flops = score_flops(&model.config, &graph, args.seq_len - 1, k);
    let mut product_flops = 0.0;
    let products = time(args.repeat, || {
        product_flops = model.weight_products(args.seq_len - 1)?;
        Ok(())
    })?;
    let scoring = serde_json::json!({
        "score_s_per_sample": score,
        "score_gflop_per_sample": flops / 1e9,
        "score_gflop_per_s": flops / score / 1e9,
        "matmul_gflop_per_s": rate / 1e9,
        "share_of_matmul_rate": flops / score / rate,
        "weight_products_s_per_sample": products,
        "weight_products_gflop_per_s": product_flops / products / 1e9,
        "weight_products_share_of_matmul_rate": product_flops / products / rate,
        "weight_products_share_of_score_time": products / score,
    });
    if args.score_only {
        let mut report = scoring;
        report["model"] = spec.into();
        report["threads"] = candle_core::utils::get_num_threads().into();
        report["seq_len"] = args.seq_len.into();
        report["peak_rss_bytes"] = peak_rss_bytes().into();
        report["cpu"] = serde_json::to_value(CpuInfo::detect())?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut report = model_speeds(args, &model, &ids, p0)?;
    report["model"] = spec.into();
    if let (Some(r), Some(s)) = (report.as_object_mut(), scoring.as_object()) {
        r.extend(s.clone());
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Exact effects of 2 × `--exact-top` edges and the faithfulness curve of one sample beside
/// its scoring pass: times and each one's peak RSS (the model's weights included in both).
fn exact(
    args: &Args,
    model: &model::Model,
    graph: &Graph,
    (prompt, answer): (&[u32], &[u32]),
    k: usize,
) -> anyhow::Result<()> {
    reset_peak_rss();
    let score = time(args.repeat, || {
        Ok(score_sample(model, graph, "bench", prompt, answer, k)?)
    })?;
    let peak_score = peak_rss_bytes();
    let s = score_sample(model, graph, "bench", prompt, answer, k)?;
    let top: Vec<(usize, usize)> = by_magnitude(graph, &s.dense)
        .into_iter()
        .take(args.exact_top)
        .collect();
    let edges = chosen_edges(graph, &top, &[], Others::Random(args.exact_top), 42);
    reset_peak_rss();
    let ablation = || Ablation::new(model, graph, "bench", (prompt, answer), k, args.exact_batch);
    let effects = time(args.repeat, || Ok(ablation()?.effects(&s.dense, &edges)?))?;
    let peak_exact = peak_rss_bytes();
    reset_peak_rss();
    let mut circuits = 0;
    let curve = time(args.repeat, || {
        let c = ablation()?.faithfulness(&s.dense)?;
        circuits = c.edges.len() + 1;
        Ok(())
    })?;
    let peak_curve = peak_rss_bytes();
    let report = serde_json::json!({
        "model": args.model,
        "threads": candle_core::utils::get_num_threads(),
        "seq_len": args.seq_len,
        "edges": edges.len(),
        "score_s_per_sample": score,
        "exact_s_per_sample": effects,
        "exact_over_score": effects / score,
        "faithfulness_s_per_sample": curve,
        "faithfulness_circuits": circuits,
        "faithfulness_over_score": curve / score,
        "peak_rss_score_bytes": peak_score,
        "peak_rss_exact_bytes": peak_exact,
        "peak_rss_faithfulness_bytes": peak_curve,
        "exact_over_score_peak_rss": peak_exact as f64 / peak_score as f64,
        "cpu": CpuInfo::detect(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Write a random Llama of `shape` (bench's `--random-shape`) with a character tokenizer of at
/// most its vocabulary: three special tokens and the first printable ASCII characters.
fn write_random_llama(dir: &std::path::Path, shape: &[usize]) -> anyhow::Result<()> {
    let cfg = random_llama_config(shape)?;
    /// `<unk>`, `<s>` and `</s>`.
    const SPECIALS: usize = 3;
    anyhow::ensure!(
        cfg.vocab_size > SPECIALS,
        "--random-shape: a vocabulary of {} has no room for a character beside the tokenizer's \
         {SPECIALS} special tokens; use at least {}",
        cfg.vocab_size,
        SPECIALS + 1
    );
    let weights = model::random_weights(&cfg, 0, 0.02)?;
    let chars: String = (32u8..127)
        .map(char::from)
        .take(cfg.vocab_size - SPECIALS)
        .collect();
    model::write_hf_folder(
        dir,
        &cfg,
        &weights,
        &model::char_tokenizer_json(&chars),
        None,
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// Forward, generation and differentiable-pass speeds of `model` on `ids` (the last tokens
/// from `p0` on are the differentiable pass's targets).
fn model_speeds(
    args: &Args,
    model: &model::Model,
    ids: &[u32],
    p0: usize,
) -> anyhow::Result<serde_json::Value> {
    let forward = time(
        args.repeat,
        || Ok(model.forward_logits(ids, Kernels::Fast)?),
    )?;
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
    let targets = ids[p0..].to_vec();
    let diff = time(args.repeat, || {
        let traced = model.trace(ids, p0 - 1..args.seq_len - 1)?;
        let lp = candle_nn::ops::log_softmax(&traced.logits, candle_core::D::Minus1)?;
        let idx = candle_core::Tensor::new(targets.as_slice(), model.device())?.unsqueeze(1)?;
        let loss = (lp.gather(&idx, 1)?.mean_all()? * -1.0)?;
        Ok(traced.gradients(&loss)?)
    })?;
    Ok(serde_json::json!({
        "threads": candle_core::utils::get_num_threads(),
        "seq_len": args.seq_len,
        "forward_tokens_per_s": args.seq_len as f64 / forward,
        "generation_tokens_per_s": generated as f64 / generation,
        "generated_tokens": generated,
        "differentiable_pass_s": diff,
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu": CpuInfo::detect(),
    }))
}
