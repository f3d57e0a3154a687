//! Where a model comes from: a local folder, a `.gguf` file, or a Hugging Face Hub id resolved
//! through the cache that Python tools share; or a PEFT LoRA adapter folder on such a base.

use super::adapter::{self, LoraAdapter};
use super::download::{DownloadProgress, HubRepo, Quiet};
use super::save::{CONFIG_FILE, WEIGHTS_FILE};
use crate::model::error::{ModelError, Result};
use std::path::{Path, PathBuf};

/// A checkpoint on local disk, ready to be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    /// A Hugging Face folder (also what a Hub id resolves to).
    Folder { dir: PathBuf, weights: Vec<PathBuf> },
    /// A llama.cpp file; `tokenizer_json` overrides the embedded vocabulary when present.
    Gguf {
        file: PathBuf,
        tokenizer_json: Option<PathBuf>,
    },
    /// A PEFT LoRA adapter folder, merged into the weights of its base checkpoint at load.
    Adapter {
        adapter: Box<LoraAdapter>,
        /// The base's spec: `--adapter-base`, else the adapter's `base_model_name_or_path` (a
        /// path relative to the adapter folder when it exists there).
        base_spec: String,
        /// Never an adapter itself.
        base: Box<Checkpoint>,
    },
}

impl Checkpoint {
    /// The files a model's fingerprint covers: configuration and weights (of the base and the
    /// adapter, for an adapter).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Folder { dir, weights } => {
                let mut files = vec![dir.join(CONFIG_FILE)];
                files.extend(weights.iter().cloned());
                files
            }
            Self::Gguf { file, .. } => vec![file.clone()],
            Self::Adapter { adapter, base, .. } => {
                let mut files = base.files();
                files.extend(adapter.files());
                files
            }
        }
    }
}

/// How model specs are resolved: where the Hub and its cache are, and the base of LoRA adapters.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Never touch the network; use only what the cache holds (also `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Cache directory; default: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// The Hub's address (a mirror, say); default: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// The base model of LoRA adapter folders (`--adapter-base`), instead of the
    /// `base_model_name_or_path` of their `adapter_config.json`; specs that are not adapters
    /// ignore it.
    pub adapter_base: Option<String>,
}

impl HubOptions {
    fn offline(&self) -> bool {
        self.offline
            || std::env::var("HF_HUB_OFFLINE")
                .map(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
                .unwrap_or(false)
    }

    fn endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("HF_ENDPOINT").ok())
            .filter(|e| !e.is_empty())
    }

    /// The Hub cache directory, resolved the way `huggingface_hub` does.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(d) = &self.cache_dir {
            return d.clone();
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
            .unwrap_or_else(|| {
                env("HOME")
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache/huggingface/hub")
            })
    }
}

/// Resolve a model spec: an existing folder, `.gguf` file or `.safetensors` file, a Hub id
/// `org/name` with an optional `@revision`, or one GGUF file of a Hub repository,
/// `org/name[@revision]/file.gguf`. A folder with `adapter_config.json` is a PEFT LoRA
/// adapter: its base is resolved too.
pub fn resolve(
    spec: &str,
    hub: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
) -> Result<Checkpoint> {
    resolve_spec(spec, hub, progress, None)
}

/// [`resolve`]; `base_of`: the configuration of the adapter whose base `spec` is (an adapter is
/// then refused).
fn resolve_spec(
    spec: &str,
    hub: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
    base_of: Option<&Path>,
) -> Result<Checkpoint> {
    let path = Path::new(spec);
    if path.is_dir() {
        return folder_or_adapter(path, hub, progress, base_of);
    }
    if path.is_file() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        return match ext {
            "gguf" => {
                let tok = path.with_file_name("tokenizer.json");
                Ok(Checkpoint::Gguf {
                    file: path.to_owned(),
                    tokenizer_json: tok.is_file().then_some(tok),
                })
            }
            "safetensors" | "json" => {
                let dir = path.parent().unwrap_or(Path::new("."));
                folder_or_adapter(dir, hub, progress, base_of)
            }
            _ => Err(ModelError::NotAModel {
                path: path.to_owned(),
            }),
        };
    }
    if let Some((repo, file)) = spec.rsplit_once('/') {
        let local = Path::new(repo.split('@').next().unwrap_or(repo)).is_dir();
        if file.ends_with(".gguf") && looks_like_hub_id(repo) && !local {
            return hub_gguf(spec, repo, file, hub, progress);
        }
    }
    if looks_like_hub_id(spec) {
        return hub_snapshot(spec, hub, progress);
    }
    if spec.ends_with(".gguf") || spec.contains(std::path::MAIN_SEPARATOR) || spec.starts_with('.')
    {
        return Err(ModelError::Missing {
            path: path.to_owned(),
            what: "model file or folder".into(),
            fix: "check the path".into(),
        });
    }
    Err(ModelError::NotAModel {
        path: path.to_owned(),
    })
}

fn looks_like_hub_id(spec: &str) -> bool {
    let id = spec.split('@').next().unwrap_or(spec);
    let mut parts = id.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(org) && ok(name)
}

/// A folder: a PEFT adapter (it holds `adapter_config.json`) on its base, else a model folder.
/// `base_of`: the configuration of the adapter whose base the folder is (it may not be one).
fn folder_or_adapter(
    dir: &Path,
    hub: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
    base_of: Option<&Path>,
) -> Result<Checkpoint> {
    if !adapter::is_adapter(dir) {
        return folder(dir);
    }
    if let Some(config) = base_of {
        return Err(ModelError::AdapterUnsupported {
            path: config.to_owned(),
            what: format!("its base {} is itself an adapter", dir.display()),
            fix: "Merge that adapter into its own base first (PEFT's merge_and_unload) and pass \
                  the merged folder as the base"
                .into(),
        });
    }
    let lora = LoraAdapter::open(dir)?;
    let config = dir.join(adapter::CONFIG_FILE);
    let (base_spec, fix) = match (&hub.adapter_base, &lora.base) {
        (Some(spec), _) => (spec.clone(), "Check the model given to --adapter-base"),
        (None, Some(named)) => (
            locate_base(dir, named),
            "Pass the base model with --adapter-base MODEL, or correct \
             `base_model_name_or_path` in adapter_config.json",
        ),
        (None, None) => {
            return Err(ModelError::Missing {
                path: config,
                what: "`base_model_name_or_path`".into(),
                fix: "pass the base model with --adapter-base MODEL".into(),
            })
        }
    };
    let base = match resolve_spec(&base_spec, hub, progress, Some(&config)) {
        Ok(base) => base,
        Err(e @ (ModelError::Cancelled { .. } | ModelError::AdapterUnsupported { .. })) => {
            return Err(e)
        }
        Err(e) => {
            return Err(ModelError::AdapterBase {
                adapter: config,
                base: base_spec,
                source: Box::new(e),
                fix: fix.into(),
            })
        }
    };
    Ok(Checkpoint::Adapter {
        adapter: Box::new(lora),
        base_spec,
        base: Box::new(base),
    })
}

/// An adapter's `base_model_name_or_path` as a spec: the path relative to the adapter folder
/// when it exists there, else as written (a Hub id, or a path from where it was trained).
fn locate_base(dir: &Path, named: &str) -> String {
    let beside = dir.join(named);
    if beside.exists() {
        beside.display().to_string()
    } else {
        named.to_owned()
    }
}

/// Whether `dir` is a model's own folder: a Hugging Face model (its `config.json`) or a PEFT
/// adapter (its `adapter_config.json`).
pub fn is_model_folder(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() || dir.join(adapter::CONFIG_FILE).is_file()
}

/// The weight files of a folder: `model.safetensors`, or the shards its index lists.
fn folder(dir: &Path) -> Result<Checkpoint> {
    if !dir.join(CONFIG_FILE).is_file() {
        let gguf: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ModelError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        if let [one] = gguf.as_slice() {
            return resolve(&one.to_string_lossy(), &HubOptions::default(), None);
        }
        return Err(ModelError::Missing {
            path: dir.join(CONFIG_FILE),
            what: CONFIG_FILE.into(),
            fix: "a Hugging Face model folder needs config.json, model.safetensors and tokenizer.json".into(),
        });
    }
    let single = dir.join(WEIGHTS_FILE);
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shards(&index)?
    } else {
        return Err(ModelError::Missing {
            path: dir.to_owned(),
            what: "model.safetensors or model.safetensors.index.json".into(),
            fix: "circuitdiff reads safetensors weights (convert .bin/.pt checkpoints with transformers' save_pretrained)".into(),
        });
    };
    Ok(Checkpoint::Folder {
        dir: dir.to_owned(),
        weights,
    })
}

/// The shard files named by a `model.safetensors.index.json`, in order, deduplicated.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.to_owned(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::config(index, "weight_map", "missing or not an object"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The files of one Hub repository at one revision: taken from the cache, downloaded into it
/// when missing unless offline.
struct HubFiles<'a> {
    /// The spec, for error messages.
    spec: &'a str,
    revision: &'a str,
    /// `None` when offline.
    hub: Option<HubRepo>,
    cache_dir: PathBuf,
    repo_dir: PathBuf,
}

impl<'a> HubFiles<'a> {
    /// The repository `id` at `revision`, `spec` naming it in messages.
    fn new(spec: &'a str, id: &str, revision: &'a str, opts: &HubOptions) -> Result<Self> {
        let cache_dir = opts.cache_dir();
        let hub = if opts.offline() {
            None
        } else {
            Some(HubRepo::connect(
                spec,
                id,
                revision,
                cache_dir.clone(),
                opts.endpoint(),
            )?)
        };
        Ok(Self {
            spec,
            revision,
            hub,
            repo_dir: cache_dir.join(format!("models--{}", id.replace('/', "--"))),
            cache_dir,
        })
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Hub {
            id: self.spec.to_owned(),
            message,
        }
    }

    /// `file`'s path in the cache, downloading it when missing; `None` for an optional file the
    /// repository (or, offline, the cache) lacks.
    fn get(
        &self,
        file: &str,
        required: bool,
        progress: &mut dyn DownloadProgress,
    ) -> Result<Option<PathBuf>> {
        if let Some(p) = cached_file(&self.repo_dir, self.revision, file) {
            return Ok(Some(p));
        }
        let Some(hub) = &self.hub else {
            return if required {
                Err(self.error(format!(
                    "`{file}` is not in the local cache {} and the Hub is offline; download it once with network access (or unset HF_HUB_OFFLINE)",
                    self.cache_dir.display()
                )))
            } else {
                Ok(None)
            };
        };
        match hub.fetch(file, progress)? {
            None if required => Err(self.error(format!(
                "the repository has no `{file}` at revision `{}`; check the id and the revision",
                self.revision
            ))),
            found => Ok(found),
        }
    }

    /// [`Self::get`] of a file the repository must hold.
    fn require(&self, file: &str, progress: &mut dyn DownloadProgress) -> Result<PathBuf> {
        self.get(file, true, progress)?
            .ok_or_else(|| self.error(format!("no `{file}`")))
    }
}

/// Resolve a Hub id to its snapshot folder, downloading what the cache lacks unless offline.
fn hub_snapshot(
    spec: &str,
    opts: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
) -> Result<Checkpoint> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let files = HubFiles::new(spec, id, revision, opts)?;
    let mut quiet = Quiet;
    let progress: &mut dyn DownloadProgress = match progress {
        Some(p) => p,
        None => &mut quiet,
    };
    let config = files.require("config.json", progress)?;
    files.require("tokenizer.json", progress)?;
    for optional in ["tokenizer_config.json", "generation_config.json"] {
        files.get(optional, false, progress)?;
    }
    if files.get("model.safetensors", false, progress)?.is_none() {
        let index = files.require("model.safetensors.index.json", progress)?;
        for shard in shards(&index)? {
            let name = shard
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.require(&name, progress)?;
        }
    }
    let dir = config
        .parent()
        .ok_or_else(|| files.error("cache layout unexpected".into()))?;
    folder(dir)
}

/// Resolve `org/name[@revision]/file.gguf` to the file in the cache, downloading it unless
/// offline.
fn hub_gguf(
    spec: &str,
    repo: &str,
    file: &str,
    opts: &HubOptions,
    progress: Option<&mut dyn DownloadProgress>,
) -> Result<Checkpoint> {
    let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
    let mut quiet = Quiet;
    let progress: &mut dyn DownloadProgress = match progress {
        Some(p) => p,
        None => &mut quiet,
    };
    let file = HubFiles::new(spec, id, revision, opts)?.require(file, progress)?;
    Ok(Checkpoint::Gguf {
        file,
        tokenizer_json: None,
    })
}

/// A file of the cache's snapshot for `revision` (a branch or tag name, or a commit hash).
fn cached_file(repo_dir: &Path, revision: &str, file: &str) -> Option<PathBuf> {
    let commit = if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        revision.to_owned()
    } else {
        std::fs::read_to_string(repo_dir.join("refs").join(revision))
            .ok()?
            .trim()
            .to_owned()
    };
    let p = repo_dir.join("snapshots").join(commit).join(file);
    p.is_file().then_some(p)
}
