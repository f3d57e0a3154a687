//! A Hub id downloaded from a local server that speaks the Hub's file protocol
//! (`/{id}/resolve/{revision}/{file}` with ranged GETs, `etag` and `x-repo-commit` headers):
//! progress per file, the `huggingface_hub` cache layout, the same model offline afterwards, and
//! a download cancelled mid-file that the next one resumes with a ranged request; the demo's
//! real base, one GGUF file of a repository at a pinned revision, checked against its sha256.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use circuitdiff::model::{
    self, DownloadProgress, HubOptions, Kernels, LoadOptions, Model, ModelError,
};
use circuitdiff::study::demo_real;
use circuitdiff::study::error::StudyError;
use common::Tiny;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
const ID: &str = "acme/tiny-qwen2";

/// Keep a proxy from the environment off local traffic, once for every test of this binary
/// before any of them reaches the network.
fn local_only() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for var in ["NO_PROXY", "no_proxy"] {
            let old = std::env::var(var).unwrap_or_default();
            std::env::set_var(var, format!("{old},127.0.0.1,localhost"));
        }
    });
}

/// Holds back the body of `file` after its first `first` bytes, the first time it is
/// downloaded, until `release` fires (or 5 s pass).
struct Hold {
    file: &'static str,
    first: usize,
    release: Receiver<()>,
}

/// The request line's path and the `Range` header, the rest of the header read.
fn read_request(stream: &TcpStream) -> (String, Option<String>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_owned());
            }
        }
    }
    (path, range)
}

/// Serve the files of `dir` as the repository `id` at `revision` (a branch, whose commit is
/// [`COMMIT`], or a commit hash), until the test ends. Returns the server's address and the
/// request log (path, range).
fn serve(
    dir: PathBuf,
    id: &str,
    revision: &str,
    mut hold: Option<Hold>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (prefix, requests) = (format!("/{id}/resolve/{revision}/"), log.clone());
    let commit = if revision.len() == 40 {
        revision.to_owned()
    } else {
        COMMIT.to_owned()
    };
    let serve = move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (path, range) = read_request(&stream);
            requests
                .lock()
                .unwrap()
                .push(format!("{path} {}", range.clone().unwrap_or_default()));
            let name = path.strip_prefix(&prefix).unwrap_or("").to_owned();
            let Some(bytes) = std::fs::read(dir.join(&name))
                .ok()
                .filter(|_| !name.is_empty())
            else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            // `bytes=a-b` or `bytes=a-`; the whole file without a range.
            let (start, end) = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .map(|(a, b)| {
                    let a: usize = a.parse().unwrap();
                    let b = b.parse::<usize>().map_or(bytes.len(), |b| b + 1);
                    (a, b.min(bytes.len()))
                })
                .unwrap_or((0, bytes.len()));
            let body = &bytes[start..end];
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes \
                 {start}-{}/{}\r\netag: \"{}\"\r\nx-repo-commit: {commit}\r\n\
                 Connection: close\r\n\r\n",
                body.len(),
                end.saturating_sub(1),
                bytes.len(),
                etag(&name, bytes.len()),
            );
            let _ = stream.write_all(head.as_bytes());
            let held = hold
                .take_if(|h| h.file == name && range.as_deref() != Some("bytes=0-0"))
                .filter(|h| h.first < body.len());
            let rest = match held {
                Some(h) => {
                    let _ = stream.write_all(&body[..h.first]);
                    let _ = stream.flush();
                    let _ = h.release.recv_timeout(Duration::from_secs(5));
                    &body[h.first..]
                }
                None => body,
            };
            let _ = stream.write_all(rest);
        }
    };
    std::thread::Builder::new()
        .name("fake-hub".into())
        .spawn(serve)
        .unwrap();
    (addr, log)
}

/// The etag the server gives a file.
fn etag(file: &str, len: usize) -> String {
    format!("{file}-{len}")
}

/// Records the progress calls: (file, size, bytes advanced, finished); stops the download of
/// `stop_in` at its first chunk.
#[derive(Default)]
struct Recorder {
    calls: Vec<(String, u64, u64, bool)>,
    stop_in: Option<&'static str>,
}

impl DownloadProgress for Recorder {
    fn start(&mut self, file: &str, size: u64) {
        self.calls.push((file.to_owned(), size, 0, false));
    }

    fn advance(&mut self, bytes: u64) -> ControlFlow<()> {
        let Some(l) = self.calls.last_mut() else {
            return ControlFlow::Continue(());
        };
        l.2 += bytes;
        if self.stop_in == Some(l.0.as_str()) && bytes > 0 {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn finish(&mut self) {
        if let Some(l) = self.calls.last_mut() {
            l.3 = true;
        }
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn sha256(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

/// A tiny Qwen2 folder in `dir`, served as [`ID`]; the Hub options that reach it with a cache
/// in `dir/hub-cache`.
fn hub_of_tiny(dir: &Path, hold: Option<Hold>) -> (PathBuf, HubOptions, Arc<Mutex<Vec<String>>>) {
    local_only();
    let folder = Tiny::Qwen2.write(dir);
    let (endpoint, log) = serve(folder.clone(), ID, "main", hold);
    let hub = HubOptions {
        cache_dir: Some(dir.join("hub-cache")),
        endpoint: Some(endpoint),
        ..HubOptions::default()
    };
    (folder, hub, log)
}

/// The files a folder holds, sorted.
fn files_of(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

#[test]
fn hub_id_downloads_with_progress_into_the_shared_cache_and_then_loads_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (folder, hub, log) = hub_of_tiny(tmp.path(), None);
    let cache = hub.cache_dir();

    let mut progress = Recorder::default();
    let ckpt = model::resolve(ID, &hub, Some(&mut progress)).unwrap();

    // Every file of the folder came down, each announced with its size and completed.
    let served = files_of(&folder);
    let mut reported: Vec<String> = progress.calls.iter().map(|p| p.0.clone()).collect();
    reported.sort();
    assert_eq!(reported, served, "{:?}", progress.calls);
    for (file, announced, advanced, finished) in &progress.calls {
        let real = size(&folder.join(file));
        assert_eq!(*announced, real, "{file}");
        assert_eq!(*advanced, real, "{file}");
        assert!(finished, "{file}");
    }
    let requests = log.lock().unwrap().clone();
    for file in &served {
        // The metadata probe, then the body from its first byte.
        for range in ["bytes=0-0", "bytes=0-"] {
            let request = format!("/{ID}/resolve/main/{file} {range}");
            assert!(requests.contains(&request), "{request} in {requests:?}");
        }
    }

    // The cache layout that huggingface_hub shares: refs/main → commit; each snapshot file a
    // relative link to its blob, named by the etag; no partial or lock file left.
    let repo = cache.join("models--acme--tiny-qwen2");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let snapshot = repo.join("snapshots").join(COMMIT);
    assert_eq!(files_of(&snapshot), served);
    let mut blobs = Vec::new();
    for file in &served {
        let blob = etag(file, size(&folder.join(file)) as usize);
        let link = snapshot.join(file);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../../blobs").join(&blob),
            "{file}"
        );
        assert_eq!(sha256(&link), sha256(&folder.join(file)), "{file}");
        blobs.push(blob);
    }
    blobs.sort();
    assert_eq!(files_of(&repo.join("blobs")), blobs);
    match &ckpt {
        model::Checkpoint::Folder { dir, .. } => assert_eq!(*dir, snapshot),
        other => panic!("{other:?}"),
    }

    // A second resolve, offline, from the cache alone; then the same model as the folder.
    let offline_hub = HubOptions {
        offline: true,
        cache_dir: Some(cache),
        ..HubOptions::default()
    };
    let before = log.lock().unwrap().len();
    assert_eq!(model::resolve(ID, &offline_hub, None).unwrap(), ckpt);
    let offline = LoadOptions {
        hub: offline_hub,
        ..LoadOptions::default()
    };
    let from_hub = Model::load(ID, &offline).unwrap();
    assert_eq!(
        log.lock().unwrap().len(),
        before,
        "offline load hit the network"
    );
    let from_folder = Model::load(folder.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let ids = [3u32, 14, 15, 9, 2];
    let (a, b) = (
        from_hub.forward_logits(&ids, Kernels::Fast).unwrap(),
        from_folder.forward_logits(&ids, Kernels::Fast).unwrap(),
    );
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// A download stopped from its progress after the first chunk of the weights returns the
/// cancellation at once (the server holds the rest back for 5 s), without a panic, and keeps
/// what arrived; the next resolve asks only for the rest and completes the file byte for byte.
#[test]
fn a_cancelled_download_keeps_its_part_and_the_next_one_resumes_with_a_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (release, held) = channel();
    let hold = Hold {
        file: "model.safetensors",
        first: 4096,
        release: held,
    };
    let (folder, hub, log) = hub_of_tiny(tmp.path(), Some(hold));
    let weights = folder.join("model.safetensors");
    let blobs = hub.cache_dir().join("models--acme--tiny-qwen2/blobs");
    let blob = blobs.join(etag("model.safetensors", size(&weights) as usize));

    let mut stopper = Recorder {
        stop_in: Some("model.safetensors"),
        ..Recorder::default()
    };
    let start = Instant::now();
    let err = model::resolve(ID, &hub, Some(&mut stopper)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let ModelError::Cancelled {
        file, kept, part, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(file, "model.safetensors");
    assert!(*kept > 0 && *kept <= 4096, "{kept}");
    assert_eq!(*part, PathBuf::from(format!("{}.part", blob.display())));
    assert_eq!(size(part), *kept);
    assert!(!blob.exists());
    let message = err.to_string();
    assert!(
        message.contains("cancelled") && message.contains(&part.display().to_string()),
        "{message}"
    );
    release.send(()).unwrap();

    let mut progress = Recorder::default();
    let ckpt = model::resolve(ID, &hub, Some(&mut progress)).unwrap();
    let requests = log.lock().unwrap().clone();
    let resumed = format!("/{ID}/resolve/main/model.safetensors bytes={kept}-");
    assert!(requests.contains(&resumed), "{resumed} in {requests:?}");
    // Only the weights were left to fetch: their kept bytes first, then the rest.
    let total = size(&weights);
    let weights_progress = ("model.safetensors".to_owned(), total, total, true);
    assert_eq!(progress.calls, [weights_progress]);
    let model::Checkpoint::Folder { dir, .. } = ckpt else {
        panic!("{ckpt:?}");
    };
    assert_eq!(sha256(&dir.join("model.safetensors")), sha256(&weights));
    assert!(!part.exists());
}

/// The Hub options that reach a server of `file` (a link to `source`) as the real pair's base
/// repository at its pinned revision, with a cache in `dir/hub-cache`; the file's name.
fn hub_of_real_base(dir: &Path, source: &Path) -> (HubOptions, String) {
    local_only();
    let (repo, file) = demo_real::BASE_HUB.rsplit_once('/').unwrap();
    let (id, revision) = repo.split_once('@').unwrap();
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::os::unix::fs::symlink(source, served.join(file)).unwrap();
    let (endpoint, _) = serve(served, id, revision, None);
    let hub = HubOptions {
        cache_dir: Some(dir.join("hub-cache")),
        endpoint: Some(endpoint),
        ..HubOptions::default()
    };
    (hub, file.to_owned())
}

/// `demo --real` without the test setup's copy: SmolLM2's GGUF comes from the Hub repository
/// and revision the PyPI package took it from, once, with progress, into the Hub cache, and
/// its sha256 is checked; the next time it comes from the cache alone and loads as a GGUF.
#[test]
fn the_real_pairs_base_is_fetched_from_the_hub_once_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let source = common::smollm2();
    let (hub, file) = hub_of_real_base(tmp.path(), &source);

    let mut progress = Recorder::default();
    let path = demo_real::hub_base(&hub, Some(&mut progress)).unwrap();
    assert_eq!(sha256(&path), sha256(&source));
    assert!(path.starts_with(hub.cache_dir()), "{}", path.display());
    let whole = size(&source);
    assert_eq!(progress.calls, vec![(file, whole, whole, true)]);

    let offline = HubOptions {
        offline: true,
        ..hub
    };
    assert_eq!(demo_real::hub_base(&offline, None).unwrap(), path);
    let spec = demo_real::BASE_HUB;
    match model::resolve(spec, &offline, None).unwrap() {
        model::Checkpoint::Gguf { file, .. } => assert_eq!(file, path),
        other => panic!("{other:?}"),
    }
}

/// A file of that name on the Hub that is not the base the adapters were trained on is refused
/// naming it and what to do; a Hub GGUF never fetched is refused offline naming the cache.
#[test]
fn a_hub_file_that_is_not_the_real_pairs_base_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.gguf");
    std::fs::write(&other, b"GGUF not the base").unwrap();
    let (hub, _) = hub_of_real_base(tmp.path(), &other);

    let offline = HubOptions {
        offline: true,
        ..hub.clone()
    };
    let message = demo_real::hub_base(&offline, None).unwrap_err().to_string();
    assert!(
        message.contains("not in the local cache") && message.contains("HF_HUB_OFFLINE"),
        "{message}"
    );

    match demo_real::hub_base(&hub, None).unwrap_err() {
        StudyError::RealBaseChecksum {
            path,
            found,
            expected,
        } => {
            assert!(path.starts_with(hub.cache_dir()), "{}", path.display());
            assert_eq!(found, hex(&sha256(&other)));
            assert_eq!(expected, demo_real::BASE_SHA256);
        }
        other => panic!("{other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
