//! Opening a checkpoint: its configuration, tokenizer and weights (an adapter merged into them),
//! checked against each other, and its fingerprint.

use super::adapter::LoraAdapter;
use super::config::{self, ModelConfig};
use super::gguf;
use super::memory;
use super::options::LoadOptions;
use super::source::{resolve, Checkpoint, HubOptions};
use super::tokenizer::Tokenizer;
use super::weights::TensorStore;
use crate::model::error::{ModelError, Result};
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// Configuration, tokenizer and the store of the weights of a checkpoint (an adapter merged into
/// them), checked against each other.
pub(in crate::model) fn open(
    checkpoint: &Checkpoint,
    opts: &LoadOptions,
) -> Result<(ModelConfig, Tokenizer, TensorStore)> {
    match checkpoint {
        Checkpoint::Folder { dir, weights } => {
            let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            memory::check_fits(&config, opts.fits(), dir)?;
            let tokenizer = folder_tokenizer(dir, &config)?;
            let store = TensorStore::from_safetensors(weights, dir, opts.dtype, &opts.device)?;
            store.check(&config)?;
            Ok((config, tokenizer, store))
        }
        Checkpoint::Gguf {
            file,
            tokenizer_json,
        } => {
            let mut g = gguf::GgufFile::open(file)?;
            let config = g.config()?;
            memory::check_fits(&config, opts.fits(), file)?;
            let tokenizer = gguf_tokenizer(&g, tokenizer_json.as_deref(), &config)?;
            let tensors = g.tensors(&config)?;
            let store = TensorStore::from_map(tensors, file, opts.dtype, &opts.device);
            Ok((config, tokenizer, store))
        }
        Checkpoint::Adapter { adapter, base, .. } => {
            let (config, tokenizer, mut store) = open(base, opts)?;
            adapter.merge(&config, &mut store)?;
            let tokenizer = adapter_tokenizer(adapter, base, &config)?.unwrap_or(tokenizer);
            Ok((config, tokenizer, store))
        }
    }
}

/// The configuration and tokenizer of a model, without loading its weights (to check that two
/// models share a vocabulary and a graph before any long work). An adapter is checked against
/// its base's configuration.
pub fn load_without_weights(spec: &str, hub: &HubOptions) -> Result<(ModelConfig, Tokenizer)> {
    heads(&resolve(spec, hub, None)?)
}

fn heads(checkpoint: &Checkpoint) -> Result<(ModelConfig, Tokenizer)> {
    match checkpoint {
        Checkpoint::Folder { dir, .. } => {
            let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            let tokenizer = folder_tokenizer(dir, &config)?;
            Ok((config, tokenizer))
        }
        Checkpoint::Gguf {
            file,
            tokenizer_json,
        } => {
            let g = gguf::GgufFile::open(file)?;
            let config = g.config()?;
            let tokenizer = gguf_tokenizer(&g, tokenizer_json.as_deref(), &config)?;
            Ok((config, tokenizer))
        }
        Checkpoint::Adapter { adapter, base, .. } => {
            let (config, tokenizer) = heads(base)?;
            adapter.check(&config)?;
            let tokenizer = adapter_tokenizer(adapter, base, &config)?.unwrap_or(tokenizer);
            Ok((config, tokenizer))
        }
    }
}

/// An adapter's own tokenizer, when its folder has one (TRL saves it there), with the
/// end-of-sequence ids of its base's generation config; `None`: the base's tokenizer.
fn adapter_tokenizer(
    adapter: &LoraAdapter,
    base: &Checkpoint,
    config: &ModelConfig,
) -> Result<Option<Tokenizer>> {
    let Some(dir) = adapter.tokenizer_dir() else {
        return Ok(None);
    };
    let mut tokenizer = folder_tokenizer(dir, config)?;
    if let Checkpoint::Folder { dir: base_dir, .. } = base {
        tokenizer.add_eos_ids(&generation_eos(base_dir, config.vocab_size)?);
    }
    Ok(Some(tokenizer))
}

fn folder_tokenizer(dir: &Path, config: &ModelConfig) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_folder(dir)?;
    fits_vocabulary(&tokenizer, config, &dir.join("tokenizer.json"))?;
    tokenizer.add_eos_ids(&generation_eos(dir, config.vocab_size)?);
    tokenizer.add_eos_ids(&config.eos_token_ids);
    Ok(tokenizer)
}

/// Refuse a tokenizer (read from `path`) with more tokens than the model has embeddings.
fn fits_vocabulary(tokenizer: &Tokenizer, config: &ModelConfig, path: &Path) -> Result<()> {
    let n = tokenizer.vocab_size();
    if n <= config.vocab_size {
        return Ok(());
    }
    Err(ModelError::TokenizerTooLarge {
        path: path.to_owned(),
        tokens: n,
        vocab: config.vocab_size,
    })
}

fn gguf_tokenizer(
    g: &gguf::GgufFile,
    tokenizer_json: Option<&Path>,
    config: &ModelConfig,
) -> Result<Tokenizer> {
    let mut tokenizer = match tokenizer_json {
        Some(t) => Tokenizer::from_folder(t.parent().unwrap_or(Path::new(".")))?,
        None => g.tokenizer()?,
    };
    fits_vocabulary(&tokenizer, config, tokenizer_json.unwrap_or(g.path()))?;
    tokenizer.add_eos_ids(&config.eos_token_ids);
    let turn_ends = g.turn_end_ids(&tokenizer)?;
    tokenizer.add_eos_ids(&turn_ends);
    Ok(tokenizer)
}

/// End-of-sequence ids from `generation_config.json`, if the folder has one; each must lie in the
/// vocabulary of `vocab` tokens.
fn generation_eos(dir: &Path, vocab: usize) -> Result<Vec<u32>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
    config::eos_ids(&path, "eos_token_id", json.get("eos_token_id"), vocab)
}

/// The fingerprint [`Model::load`] gives `spec` (its `fingerprint`), without reading the
/// weights: two specs with the same fingerprint are the same model.
pub fn fingerprint_of(spec: &str, hub: &HubOptions) -> Result<String> {
    fingerprint(&resolve(spec, hub, None)?.files())
}

/// sha256 over each file's name, size, and first and last MiB (whole file when smaller).
pub(in crate::model) fn fingerprint(files: &[PathBuf]) -> Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const CHUNK: u64 = 1 << 20;
    let mut h = sha2::Sha256::new();
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
        h.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(len.to_le_bytes());
        let mut buf = Vec::new();
        (&mut f)
            .take(CHUNK)
            .read_to_end(&mut buf)
            .map_err(|e| ModelError::io(path, e))?;
        if len > 2 * CHUNK {
            f.seek(SeekFrom::End(-(CHUNK as i64)))
                .map_err(|e| ModelError::io(path, e))?;
        }
        f.take(CHUNK)
            .read_to_end(&mut buf)
            .map_err(|e| ModelError::io(path, e))?;
        h.update(&buf);
    }
    Ok(format!("{:x}", h.finalize()))
}
