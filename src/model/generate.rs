//! Autoregressive generation with a key/value cache: greedy or sampled, with stop tokens and
//! stop strings.

use super::load::TextStream;
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
    /// `score_sample`): each step's kernels then start on warm threads. It runs the model as
    /// constants ([`Model::for_inference`]: a model in training builds no graph, its LoRA
    /// updates merged).
    fn run_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        eos: bool,
        seeds: Option<&[u64]>,
    ) -> Result<Vec<Generation>> {
        let model = self.for_inference()?;
        self.device()
            .with_context(|| model.generate_rows(prompts, opts, eos, seeds))
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
        let mut logits = self.prefill(&rows, &pads, &mut cache)?;
        let mut out: Vec<Generation> = prompts
            .iter()
            .map(|_| Generation {
                tokens: Vec::new(),
                text: String::new(),
                stop: StopReason::MaxTokens,
            })
            .collect();
        let mut active = vec![true; prompts.len()];
        // Each row's text as it grows, where stop strings are looked for.
        let mut texts: Vec<Option<TextStream<'_>>> = prompts
            .iter()
            .map(|_| (!opts.stop_strings.is_empty()).then(|| self.tokenizer.text_stream()))
            .collect();
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
                g.tokens.push(next);
                if let Some(text) = &mut texts[r] {
                    if ends_in_stop_string(text, next, &opts.stop_strings)? {
                        g.stop = StopReason::StopString;
                        active[r] = false;
                    }
                }
                feed.push(vec![next]);
            }
            if !active.iter().any(|&a| a) {
                break;
            }
            logits = self.step_batch(&feed, &pads, &mut cache)?;
        }
        for g in &mut out {
            self.decode_answer(g, &opts.stop_strings)?;
        }
        Ok(out)
    }

    /// The logits of each row's last prompt token (rows, vocab), with the prompts' keys and
    /// values in `cache`. Rows with the same prompt (a group of samples) share one pass over
    /// it: the distinct prompts run, and their caches and logits are copied to the rows.
    fn prefill(&self, rows: &[Vec<u32>], pads: &[usize], cache: &mut KvCache) -> Result<Tensor> {
        // The first row of each distinct prompt (a row is its padding and its ids).
        let mut firsts: Vec<usize> = Vec::new();
        let of_row: Vec<u32> = (0..rows.len())
            .map(|r| {
                let same = |&f: &usize| rows[f] == rows[r] && pads[f] == pads[r];
                let d = firsts.iter().position(same).unwrap_or_else(|| {
                    firsts.push(r);
                    firsts.len() - 1
                });
                d as u32
            })
            .collect();
        if firsts.len() == rows.len() {
            return self.step_batch(rows, pads, cache);
        }
        let once: Vec<Vec<u32>> = firsts.iter().map(|&r| rows[r].clone()).collect();
        let once_pads: Vec<usize> = firsts.iter().map(|&r| pads[r]).collect();
        let logits = self.step_batch(&once, &once_pads, cache)?;
        let of_row = Tensor::new(of_row, logits.device())?;
        cache.select_rows(&of_row)?;
        logits.index_select(&of_row, 0)
    }

    /// Decode an answer's tokens once it ended, cut before its first stop string where one
    /// ended it.
    fn decode_answer(&self, g: &mut Generation, stop_strings: &[String]) -> Result<()> {
        g.text = self
            .tokenizer
            .decode(&g.tokens)
            .map_err(|e| candle_core::Error::Msg(format!("decode: {e}")))?;
        if g.stop == StopReason::StopString {
            let cut = stop_strings
                .iter()
                .filter_map(|s| g.text.find(s.as_str()))
                .min();
            if let Some(cut) = cut {
                g.text.truncate(cut);
            }
        }
        Ok(())
    }
}

/// Push `next` onto an answer's growing `text`; whether a stop string now appears in it. Only
/// the new end of the text is searched: a stop string found earlier would have ended the answer.
fn ends_in_stop_string(text: &mut TextStream<'_>, next: u32, stops: &[String]) -> Result<bool> {
    let before = text.text().len();
    text.push(next)
        .map_err(|e| candle_core::Error::Msg(format!("decode: {e}")))?;
    let text = text.text();
    Ok(stops.iter().any(|s| {
        let mut from = before
            .saturating_sub(s.len().saturating_sub(1))
            .min(text.len());
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        text[from..].contains(s.as_str())
    }))
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

/// Nucleus sampling with one uniform draw `u` in [0, 1): the tokens in order of probability
/// (ties by id), the smallest prefix whose mass reaches `top_p` (every token when `top_p` ≥ 1),
/// and the token at which the prefix's running mass passes `u` times its mass.
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
    let mut ranked = Ranked::new(p);
    let n = ranked.len();
    let (keep, mass) = if top_p >= 1.0 {
        (n, 1.0)
    } else {
        let (mut keep, mut mass) = (0, 0.0);
        while keep < n && (keep == 0 || mass < top_p) {
            mass += ranked.get(keep).1;
            keep += 1;
        }
        (keep, mass)
    };
    let mut target = u * mass;
    for k in 0..keep {
        let (i, q) = ranked.get(k);
        if target < q {
            return Ok(i as u32);
        }
        target -= q;
    }
    Ok(ranked.get(keep - 1).0 as u32)
}

/// Tokens with their probabilities, sorted (most probable first, ties by id) only as far as
/// they are read: a draw usually ends among the first few of a vocabulary of tens of
/// thousands.
struct Ranked {
    p: Vec<(usize, f64)>,
    sorted: usize,
}

impl Ranked {
    fn new(p: Vec<(usize, f64)>) -> Self {
        Self { p, sorted: 0 }
    }

    fn len(&self) -> usize {
        self.p.len()
    }

    /// The `k`-th most probable token and its probability.
    fn get(&mut self, k: usize) -> (usize, f64) {
        if k >= self.sorted {
            let order =
                |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            let upto = (4 * (k + 1)).max(64).min(self.p.len());
            let rest = &mut self.p[self.sorted..];
            let n = upto - self.sorted;
            if n < rest.len() {
                rest.select_nth_unstable_by(n, order);
            }
            rest[..n].sort_unstable_by(order);
            self.sorted = upto;
        }
        self.p[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The draw of the full sort: every token ranked, the nucleus, the walk.
    fn fully_sorted(v: &[f64], temperature: f64, top_p: f64, u: f64) -> u32 {
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = v.iter().map(|x| ((x - max) / temperature).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut p: Vec<(usize, f64)> = e.iter().map(|q| q / z).enumerate().collect();
        p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (mut keep, mut mass) = (0, 0.0);
        while keep < p.len() && (keep == 0 || mass < top_p.min(1.0)) {
            mass += p[keep].1;
            keep += 1;
        }
        let mut target = u * if top_p >= 1.0 { 1.0 } else { mass };
        for &(i, q) in &p[..keep] {
            if target < q {
                return i as u32;
            }
            target -= q;
        }
        p[keep - 1].0 as u32
    }

    /// Sorting only as far as the draw reads gives the full sort's token: peaked and flat
    /// distributions (whose draws reach past the first sorted prefix), tied logits, nuclei of
    /// several sizes and draws near 0 and 1.
    #[test]
    fn the_partly_sorted_draw_equals_the_fully_sorted_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (vocab, spread) in [(5000, 8.0), (5000, 0.01), (300, 0.0), (1, 1.0)] {
            let v: Vec<f64> = (0..vocab)
                .map(|_| (rng.random::<f64>() * spread * 4.0).round() / 4.0)
                .collect();
            let logits = Tensor::new(v.as_slice(), &Device::Cpu).unwrap();
            for top_p in [0.3, 0.9, 1.0] {
                for u in [0.0, 1e-9, 0.25, 0.5, 0.999, 1.0 - 1e-12] {
                    let got = sample(&logits, 0.7, top_p, u).unwrap();
                    let want = fully_sorted(&v, 0.7, top_p, u);
                    assert_eq!(
                        got, want,
                        "vocab {vocab} spread {spread} top_p {top_p} u {u}"
                    );
                }
            }
        }
    }
}
