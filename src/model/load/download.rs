//! Hub files fetched into the cache that Python tools share. hf-hub gives each file's URL, its
//! metadata (etag, commit, size) and the cache layout; the body is read here, chunk by chunk, so
//! that a download reports every chunk, stops when asked, and resumes later from its `.part`
//! file.

use crate::model::error::{ModelError, Result};
use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, CacheRepo, Repo, RepoType};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The most bytes read, written and reported at a time.
const CHUNK: usize = 1 << 20;

/// Progress of a Hub download, reported per file, and the way to stop it.
pub trait DownloadProgress {
    /// A file of `size` bytes starts downloading.
    fn start(&mut self, file: &str, size: u64);
    /// `bytes` more bytes of the file are on disk: first those an earlier, interrupted download
    /// left, then each chunk as it arrives (and 0 now and then while another download of the
    /// same file holds its lock). [`ControlFlow::Break`] stops the download with
    /// [`ModelError::Cancelled`]; what arrived stays on disk for the next download to resume.
    fn advance(&mut self, bytes: u64) -> ControlFlow<()>;
    /// The file is complete (without any `advance` when the cache already held its content).
    fn finish(&mut self);
}

/// Progress that goes nowhere and never stops a download.
pub(super) struct Quiet;

impl DownloadProgress for Quiet {
    fn start(&mut self, _file: &str, _size: u64) {}

    fn advance(&mut self, _bytes: u64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    fn finish(&mut self) {}
}

/// A model repository at one revision on the Hub, and its folder in the cache.
pub(super) struct HubRepo {
    /// The model spec, for error messages.
    spec: String,
    revision: String,
    api: Api,
    remote: ApiRepo,
    cache: CacheRepo,
    agent: ureq::Agent,
    /// The `Authorization` header, when there is a token.
    auth: Option<String>,
}

impl HubRepo {
    /// The repository `id` at `revision`, reached through `endpoint` (default: the Hub) and
    /// cached under `cache_dir`. The token is `HF_TOKEN`, else the token file hf-hub reads
    /// (`token` beside the cache directory).
    pub(super) fn connect(
        spec: &str,
        id: &str,
        revision: &str,
        cache_dir: PathBuf,
        endpoint: Option<String>,
    ) -> Result<Self> {
        let cache = Cache::new(cache_dir);
        let token = std::env::var("HF_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .or_else(|| cache.token());
        let mut builder = ApiBuilder::from_cache(cache.clone())
            .with_progress(false)
            .with_token(token.clone());
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let api = builder.build().map_err(|e| ModelError::Hub {
            id: spec.to_owned(),
            message: format!("cannot set up the Hub client: {e}"),
        })?;
        let repo = Repo::with_revision(id.to_owned(), RepoType::Model, revision.to_owned());
        // Like hf-hub's client: the token goes to redirects on the same host only.
        let agent = ureq::Agent::config_builder()
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("circuitdiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            spec: spec.to_owned(),
            revision: revision.to_owned(),
            remote: api.repo(repo.clone()),
            cache: cache.repo(repo),
            api,
            agent,
            auth: token.map(|t| format!("Bearer {t}")),
        })
    }

    /// Download `file` unless the cache holds its content, link it into the snapshot of its
    /// commit (`snapshots/<commit>/<file>` → `blobs/<etag>`) and point the revision's ref
    /// (`refs/<revision>`) at that commit. Returns the snapshot path, or `None` when the
    /// repository has no such file.
    pub(super) fn fetch(
        &self,
        file: &str,
        progress: &mut dyn DownloadProgress,
    ) -> Result<Option<PathBuf>> {
        let url = self.remote.url(file);
        let meta = match self.api.metadata(&url) {
            Ok(meta) => meta,
            Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::StatusCode(404)) => {
                return Ok(None)
            }
            Err(e) => {
                return Err(self.error(format!(
                    "cannot get `{file}` ({url}): {e}; check the id, the revision and the \
                     network, or set HF_HUB_OFFLINE=1 to use the local cache alone"
                )))
            }
        };
        let (etag, commit) = (meta.etag(), meta.commit_hash());
        let one_name = |name: &str| relative(name) && !name.contains('/');
        if !relative(file) || !one_name(etag) || !one_name(commit) {
            return Err(self.error(format!(
                "{url}: the file `{file}`, etag `{etag}` or commit `{commit}` would lead out of \
                 the cache folder; refusing it (check the endpoint, HF_ENDPOINT)"
            )));
        }
        let blob = self.cache.blob_path(etag);
        let size = meta.size() as u64;
        progress.start(file, size);
        if !blob.is_file() {
            if let Some(dir) = blob.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
            }
            let (lock, lock_path) = self.lock(&blob, file, progress)?;
            // Another download may have completed the blob while this one waited.
            if !blob.is_file() {
                let part = self.receive(&url, file, &blob, size, progress)?;
                std::fs::rename(&part, &blob).map_err(|e| ModelError::io(&part, e))?;
                // With the blob in place, a later download never writes, so the lock can go;
                // failing to remove it leaves only an empty file behind.
                std::fs::remove_file(&lock_path).ok();
            }
            drop(lock);
        }
        progress.finish();
        let pointer = self.link(file, &blob, etag, commit)?;
        if commit != self.revision {
            self.cache
                .create_ref(commit)
                .map_err(|e| self.error(format!("cannot record the commit of `{file}`: {e}")))?;
        }
        Ok(Some(pointer))
    }

    /// The download lock of `blob` (the `.lock` file beside it, as hf-hub takes it), waiting
    /// while another download of the same content holds it.
    fn lock(
        &self,
        blob: &Path,
        file: &str,
        progress: &mut dyn DownloadProgress,
    ) -> Result<(File, PathBuf)> {
        let path = beside(blob, "lock");
        let lock = File::create(&path).map_err(|e| ModelError::io(&path, e))?;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok((lock, path)),
                Err(TryLockError::WouldBlock) => {
                    if progress.advance(0).is_break() {
                        let part = beside(blob, "part");
                        let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
                        return Err(self.cancelled(file, part, kept));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => return Err(ModelError::io(&path, e)),
            }
        }
    }

    /// Bring the `size` bytes of `file` from `url` into the `.part` file beside `blob`,
    /// continuing what an earlier download left there. Returns the `.part` path.
    fn receive(
        &self,
        url: &str,
        file: &str,
        blob: &Path,
        size: u64,
        progress: &mut dyn DownloadProgress,
    ) -> Result<PathBuf> {
        let part = beside(blob, "part");
        let io = |e| ModelError::io(&part, e);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io)?;
        let mut have = out.metadata().map_err(io)?.len();
        if have > size {
            // Longer than the file, so not a beginning of it.
            out.set_len(0).map_err(io)?;
            have = 0;
        }
        if have > 0 && progress.advance(have).is_break() {
            return Err(self.cancelled(file, part, have));
        }
        if have < size {
            let response = self.request(url, file, have)?;
            if have > 0 && response.status() != ureq::http::StatusCode::PARTIAL_CONTENT {
                // The server ignored the range and sends the whole file.
                out.set_len(0).map_err(io)?;
                have = 0;
                progress.start(file, size);
            }
            let mut body = response.into_body().into_reader();
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let n = match body.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(self.error(format!(
                            "the download of `{file}` ({url}) broke off after {have} of {size} \
                             bytes: {e}; run again to resume it"
                        )))
                    }
                };
                out.write_all(&chunk[..n]).map_err(io)?;
                have += n as u64;
                if progress.advance(n as u64).is_break() {
                    return Err(self.cancelled(file, part, have));
                }
            }
        }
        if have != size {
            return Err(self.error(format!(
                "the server sent {have} bytes of `{file}` ({url}) where its metadata announced \
                 {size}; run again to resume, or delete {} to start over",
                part.display()
            )));
        }
        Ok(part)
    }

    /// A GET of `url` from byte `from` on, unencoded, with the token when there is one.
    fn request(
        &self,
        url: &str,
        file: &str,
        from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self
            .agent
            .get(url)
            .header("Range", format!("bytes={from}-"))
            .header("Accept-Encoding", "identity");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        request.call().map_err(|e| {
            self.error(format!(
                "cannot download `{file}` ({url}): {e}; check the network and run again (the \
                 download resumes)"
            ))
        })
    }

    /// `snapshots/<commit>/<file>`: a relative link to `blobs/<etag>`, as hf-hub and
    /// huggingface_hub make it (where links cannot be made, the blob itself moves there).
    fn link(&self, file: &str, blob: &Path, etag: &str, commit: &str) -> Result<PathBuf> {
        let pointer = self.cache.pointer_path(commit).join(file);
        if pointer.is_file() {
            return Ok(pointer);
        }
        let io = |e| ModelError::io(&pointer, e);
        if let Some(dir) = pointer.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        if pointer.symlink_metadata().is_ok() {
            // A link to a blob that is gone.
            std::fs::remove_file(&pointer).map_err(io)?;
        }
        // Up from the file's folder to the repository folder, then down into blobs/.
        let up = Path::new(file).components().count() + 1;
        let target = std::iter::repeat_n(Path::new(".."), up)
            .collect::<PathBuf>()
            .join("blobs")
            .join(etag);
        place(blob, &target, &pointer).map_err(io)?;
        Ok(pointer)
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Hub {
            id: self.spec.clone(),
            message,
        }
    }

    fn cancelled(&self, file: &str, part: PathBuf, kept: u64) -> ModelError {
        ModelError::Cancelled {
            id: self.spec.clone(),
            file: file.to_owned(),
            kept,
            part,
        }
    }
}

/// Whether `name` is a relative path that stays below the folder it is joined to.
fn relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// `path` with `.suffix` appended (an etag may hold dots, so no extension is replaced).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
fn place(_blob: &Path, target: &Path, pointer: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, pointer)
}

#[cfg(windows)]
fn place(blob: &Path, target: &Path, pointer: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, pointer).or_else(|_| std::fs::rename(blob, pointer))
}

#[cfg(not(any(unix, windows)))]
fn place(blob: &Path, _target: &Path, pointer: &Path) -> std::io::Result<()> {
    std::fs::rename(blob, pointer)
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn names_from_the_server_stay_inside_the_cache() {
        assert!(relative("model.safetensors") && relative("sub/tokenizer.json"));
        for bad in ["", "..", "../x", "/etc/passwd", "a/../../b", "a\\..\\b"] {
            assert!(!relative(bad), "{bad}");
        }
    }
}
