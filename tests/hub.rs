//! A Hub id downloaded through hf-hub from a local server that speaks the Hub's file protocol
//! (`/{id}/resolve/{revision}/{file}` with ranged GETs, `etag` and `x-repo-commit` headers):
//! progress per file, the `huggingface_hub` cache layout, and the same model offline afterwards.

mod common;

use circuitdiff::model::{self, DownloadProgress, HubOptions, Kernels, LoadOptions, Model};
use common::Tiny;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// Serve the files of `dir` as the repository `id` at revision `main`, until the test ends.
/// Returns the server's address and the request log (method, path, range).
fn serve(dir: PathBuf, id: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (prefix, requests) = (format!("/{id}/resolve/main/"), log.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
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
            requests
                .lock()
                .unwrap()
                .push(format!("{path} {}", range.clone().unwrap_or_default()));
            let file = path.strip_prefix(&prefix).map(|f| dir.join(f));
            let Some(bytes) = file.and_then(|f| std::fs::read(f).ok()) else {
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
                 {start}-{}/{}\r\netag: \"{}-{}\"\r\nx-repo-commit: {COMMIT}\r\n\
                 Connection: close\r\n\r\n",
                body.len(),
                end.saturating_sub(1),
                bytes.len(),
                path.rsplit('/').next().unwrap_or("f"),
                bytes.len(),
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    (addr, log)
}

/// Records the progress calls: (file, size, bytes advanced, finished).
#[derive(Default)]
struct Recorder(Vec<(String, u64, u64, bool)>);

impl DownloadProgress for Recorder {
    fn start(&mut self, file: &str, size: u64) {
        self.0.push((file.to_owned(), size, 0, false));
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(l) = self.0.last_mut() {
            l.2 += bytes;
        }
    }

    fn finish(&mut self) {
        if let Some(l) = self.0.last_mut() {
            l.3 = true;
        }
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn hub_id_downloads_with_progress_into_the_shared_cache_and_then_loads_offline() {
    // The only test of this binary: a proxy from the environment must not take local traffic.
    for var in ["NO_PROXY", "no_proxy"] {
        let old = std::env::var(var).unwrap_or_default();
        std::env::set_var(var, format!("{old},127.0.0.1,localhost"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let folder = Tiny::Qwen2.write(tmp.path());
    let cache = tmp.path().join("hub-cache");
    let (endpoint, log) = serve(folder.clone(), "acme/tiny-qwen2");
    let hub = HubOptions {
        cache_dir: Some(cache.clone()),
        endpoint: Some(endpoint),
        ..HubOptions::default()
    };

    let mut progress = Recorder::default();
    let ckpt = model::resolve("acme/tiny-qwen2", &hub, Some(&mut progress)).unwrap();

    // Every file of the folder came down, each announced with its size and completed.
    let mut served: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    served.sort();
    let mut reported: Vec<String> = progress.0.iter().map(|p| p.0.clone()).collect();
    reported.sort();
    assert_eq!(reported, served, "{:?}", progress.0);
    for (file, announced, advanced, finished) in &progress.0 {
        let real = size(&folder.join(file));
        assert_eq!(*announced, real, "{file}");
        assert_eq!(*advanced, real, "{file}");
        assert!(finished, "{file}");
    }
    let requests = log.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r == "/acme/tiny-qwen2/resolve/main/model.safetensors bytes=0-0"),
        "{requests:?}"
    );

    // The cache layout that huggingface_hub shares: refs/main → commit, snapshot files.
    let repo = cache.join("models--acme--tiny-qwen2");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let snapshot = repo.join("snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        std::fs::read(folder.join("model.safetensors")).unwrap()
    );
    match ckpt {
        model::Checkpoint::Folder { dir, .. } => assert_eq!(dir, snapshot),
        other => panic!("{other:?}"),
    }

    // Offline, from the cache alone: the same model as the folder.
    let offline = LoadOptions {
        hub: HubOptions {
            offline: true,
            cache_dir: Some(cache),
            ..HubOptions::default()
        },
        ..LoadOptions::default()
    };
    let before = log.lock().unwrap().len();
    let from_hub = Model::load("acme/tiny-qwen2", &offline).unwrap();
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
