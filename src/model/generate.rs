//! Autoregressive generation with a key/value cache: greedy or sampled, with stop tokens and
//! stop strings.

use super::loaded::Model;
use super::transformer::KvCache;
use candle_core::{DType, Result, Tensor};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Sampling {
    /// Always the most likely token (ties: the lowest id).
    Greedy,
    /// Sample from softmax(logits / temperature), restricted to the smallest set of tokens
    /// whose probability reaches `top_p`.
    Sample {
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Token ids that end generation (besides the tokenizer's end-of-sequence ids).
    pub stop_ids: Vec<u32>,
    /// Strings that end generation once they appear in the decoded answer.
    pub stop_strings: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: Sampling::Greedy,
            stop_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfSequence,
    StopString,
    MaxTokens,
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated ids, without the stop token; with a stop string, up to and including the token
    /// that completed it.
    pub tokens: Vec<u32>,
    /// Decoded text, cut before the stop string.
    pub text: String,
    pub stop: StopReason,
}

impl Model {
    /// Generate a continuation of `prompt` (token ids).
    pub fn generate(&self, prompt: &[u32], opts: &GenerateOptions) -> Result<Generation> {
        one(self.run_batch(&[prompt.to_vec()], opts, true, None)?)
    }

    /// Generate exactly `max_new_tokens` tokens unless a stop id or string intervenes, ignoring
    /// the tokenizer's end-of-sequence ids (for throughput measurements).
    pub fn generate_ignoring_eos(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Generation> {
        one(self.run_batch(&[prompt.to_vec()], opts, false, None)?)
    }

    /// Generate continuations of several prompts at once (left-padded into one batch, so the
    /// weights are read once per step for all of them). Each row gets the same result as
    /// [`Model::generate`] up to floating-point summation order; sampled rows each start from
    /// the options' seed.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generation>> {
        self.run_batch(prompts, opts, true, None)
    }

    /// [`Model::generate_batch`] with one sampling seed per row (the options' seed is unused),
    /// so that rows with the same prompt draw different answers.
    pub fn generate_batch_seeded(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        seeds: &[u64],
    ) -> Result<Vec<Generation>> {
        if seeds.len() != prompts.len() {
            candle_core::bail!(
                "one seed per prompt: {} seeds, {} prompts",
                seeds.len(),
                prompts.len()
            );
        }
        self.run_batch(prompts, opts, true, Some(seeds))
    }

    /// Generation runs on a worker of candle's thread pool, as scoring does (see
    /// `score_sample`): each step's kernels then start on warm threads.
    fn run_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        eos: bool,
        seeds: Option<&[u64]>,
    ) -> Result<Vec<Generation>> {
        self.device()
            .with_context(|| self.generate_rows(prompts, opts, eos, seeds))
    }

    fn generate_rows(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        eos: bool,
        seeds: Option<&[u64]>,
    ) -> Result<Vec<Generation>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(Vec::is_empty) {
            candle_core::bail!("cannot generate from an empty prompt");
        }
        let (rows, pads) = left_pad(prompts);
        let width = rows[0].len();
        let mut rngs: Vec<Option<rand::rngs::StdRng>> = (0..prompts.len())
            .map(|r| match opts.sampling {
                Sampling::Sample { seed, .. } => Some(rand::rngs::StdRng::seed_from_u64(
                    seeds.map_or(seed, |s| s[r]),
                )),
                Sampling::Greedy => None,
            })
            .collect();
        let mut cache = KvCache::default();
        let mut logits = self.step_batch(&rows, &pads, &mut cache)?;
        let mut out: Vec<Generation> = prompts
            .iter()
            .map(|_| Generation {
                tokens: Vec::new(),
                text: String::new(),
                stop: StopReason::MaxTokens,
            })
            .collect();
        let mut active = vec![true; prompts.len()];
        for _ in 0..opts.max_new_tokens {
            let mut feed = Vec::with_capacity(prompts.len());
            for (r, g) in out.iter_mut().enumerate() {
                let last = g.tokens.last().copied().unwrap_or(rows[r][width - 1]);
                if !active[r] {
                    feed.push(vec![last]);
                    continue;
                }
                let row = logits.get(r)?;
                let next = match (&opts.sampling, rngs[r].as_mut()) {
                    (
                        Sampling::Sample {
                            temperature, top_p, ..
                        },
                        Some(rng),
                    ) if *temperature > 0.0 => sample(&row, *temperature, *top_p, rng.random())?,
                    _ => argmax(&row)?,
                };
                if (eos && self.tokenizer.eos_ids.contains(&next)) || opts.stop_ids.contains(&next)
                {
                    g.stop = StopReason::EndOfSequence;
                    active[r] = false;
                    feed.push(vec![last]);
                    continue;
                }
                active[r] = self.push_token(g, next, &opts.stop_strings)?;
                feed.push(vec![next]);
            }
            if !active.iter().any(|&a| a) {
                break;
            }
            logits = self.step_batch(&feed, &pads, &mut cache)?;
        }
        Ok(out)
    }

    /// Append `next` to an answer and decode it; `false` when a stop string ends the answer
    /// (its text is cut there).
    fn push_token(&self, g: &mut Generation, next: u32, stop_strings: &[String]) -> Result<bool> {
        g.tokens.push(next);
        g.text = self
            .tokenizer
            .decode(&g.tokens)
            .map_err(|e| candle_core::Error::Msg(format!("decode: {e}")))?;
        let cut = stop_strings
            .iter()
            .filter_map(|s| g.text.find(s.as_str()))
            .min();
        if let Some(cut) = cut {
            g.text.truncate(cut);
            g.stop = StopReason::StopString;
        }
        Ok(cut.is_none())
    }
}

/// Prompts left-padded to one width, and each row's padding. Padding slots are masked out of
/// attention; any valid id serves (the row's first token).
fn left_pad(prompts: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<usize>) {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let rows = prompts
        .iter()
        .zip(&pads)
        .map(|(p, &pad)| {
            std::iter::repeat_n(p[0], pad)
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    (rows, pads)
}

fn one(mut v: Vec<Generation>) -> Result<Generation> {
    v.pop()
        .ok_or_else(|| candle_core::Error::Msg("no generation".into()))
}

fn argmax(logits: &Tensor) -> Result<u32> {
    let v = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    Ok(best as u32)
}

/// Nucleus sampling with one uniform draw `u` in [0, 1).
fn sample(logits: &Tensor, temperature: f64, top_p: f64, u: f64) -> Result<u32> {
    let v = logits.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<(usize, f64)> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| (i, ((x - max) / temperature).exp()))
        .collect();
    let z: f64 = p.iter().map(|x| x.1).sum();
    p.iter_mut().for_each(|x| x.1 /= z);
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut keep = 0;
    let mut mass = 0.0;
    while keep < p.len() && (keep == 0 || mass < top_p) {
        mass += p[keep].1;
        keep += 1;
    }
    let mut target = u * mass;
    for &(i, q) in &p[..keep] {
        if target < q {
            return Ok(i as u32);
        }
        target -= q;
    }
    Ok(p[keep - 1].0 as u32)
}
