//! `circuitdiff inspect MODEL`: what a checkpoint is and what scoring it costs.

use super::device::{AdapterBaseArg, DtypeArg};
use anyhow::Context as _;
use circuitdiff::model::{self, ScorePlan};

/// Describe a model: family, shape, parameters, graph size and scoring memory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model folder, a .gguf file, a Hugging Face id (org/name[@revision]) or one GGUF file
    /// of a Hub repository (org/name[@revision]/file.gguf), or a PEFT LoRA adapter folder.
    model: String,
    /// Sequence length (prompt + answer tokens) for the memory estimate.
    #[arg(long, default_value_t = 512, value_parser = super::args::at_least(1))]
    seq_len: usize,
    /// Estimate the memory of a head-level graph.
    #[arg(long)]
    heads: bool,
    #[command(flatten)]
    dtype: DtypeArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Use only the local Hugging Face cache.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let hub = args.adapter.hub(args.offline);
    let mut bar = super::bars::DownloadBar::default();
    let ckpt = model::resolve(&args.model, &hub, Some(&mut bar))?;
    let plan = ScorePlan {
        heads: args.heads,
        ..ScorePlan::block(args.seq_len)
    };
    let info = model::inspect_plan(&args.model, &ckpt, &plan, args.dtype.dtype())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).context("serialise")?
        );
        return Ok(());
    }
    let c = &info.config;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let adapter = info.adapter.as_ref().map(|a| ("adapter", a.describe()));
    let rows = [
        ("model", info.spec.clone()),
        ("source", info.source.clone()),
    ]
    .into_iter()
    .chain(adapter)
    .chain([
        ("family", c.family.name().to_owned()),
        ("layers", c.num_layers.to_string()),
        ("hidden size", c.hidden_size.to_string()),
        (
            "heads / kv heads",
            format!("{} / {}", c.num_heads, c.num_kv_heads),
        ),
        ("head dim", c.head_dim.to_string()),
        ("intermediate size", c.intermediate_size.to_string()),
        ("vocabulary", c.vocab_size.to_string()),
        ("checkpoint dtype", info.checkpoint_dtype.clone()),
        (
            "parameters",
            format!(
                "{} ({:.1} M)",
                info.num_params,
                info.num_params as f64 / 1e6
            ),
        ),
        ("tied embeddings", c.tie_word_embeddings.to_string()),
        ("graph edges (4L²+3L+1)", info.num_edges.to_string()),
        (
            "scoring memory",
            format!(
                "{:.2} GiB at {} tokens in {} ({:.2} GiB weights + {:.2} GiB activations)",
                gib(info.memory.total),
                info.memory.seq_len,
                args.dtype.dtype().as_str(),
                gib(info.memory.weights),
                gib(info.memory.activations)
            ),
        ),
    ]);
    for (k, v) in rows {
        println!("{k:<24} {v}");
    }
    Ok(())
}
