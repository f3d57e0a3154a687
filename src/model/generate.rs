//! Autoregressive generation with a key/value cache: greedy or sampled, with stop tokens and
//! stop strings.

use super::{KvCache, Model};
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
        self.generate_inner(prompt, opts, true)
    }

    /// Generate exactly `max_new_tokens` tokens unless a stop id or string intervenes, ignoring
    /// the tokenizer's end-of-sequence ids (for throughput measurements).
    pub fn generate_ignoring_eos(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Generation> {
        self.generate_inner(prompt, opts, false)
    }

    fn generate_inner(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        eos: bool,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            candle_core::bail!("cannot generate from an empty prompt");
        }
        let mut rng = match opts.sampling {
            Sampling::Sample { seed, .. } => Some(rand::rngs::StdRng::seed_from_u64(seed)),
            Sampling::Greedy => None,
        };
        let mut cache = KvCache::default();
        let mut logits = self.step(prompt, &mut cache)?;
        let mut tokens = Vec::new();
        let mut text = String::new();
        for _ in 0..opts.max_new_tokens {
            let next = match (&opts.sampling, rng.as_mut()) {
                (
                    Sampling::Sample {
                        temperature, top_p, ..
                    },
                    Some(rng),
                ) if *temperature > 0.0 => sample(&logits, *temperature, *top_p, rng.random())?,
                _ => argmax(&logits)?,
            };
            if (eos && self.tokenizer.eos_ids.contains(&next)) || opts.stop_ids.contains(&next) {
                return Ok(Generation {
                    tokens,
                    text,
                    stop: StopReason::EndOfSequence,
                });
            }
            tokens.push(next);
            text = self
                .tokenizer
                .decode(&tokens)
                .map_err(|e| candle_core::Error::Msg(format!("decode: {e}")))?;
            if let Some(cut) = opts
                .stop_strings
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
                return Ok(Generation {
                    tokens,
                    text,
                    stop: StopReason::StopString,
                });
            }
            logits = self.step(&[next], &mut cache)?;
        }
        Ok(Generation {
            tokens,
            text,
            stop: StopReason::MaxTokens,
        })
    }
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
