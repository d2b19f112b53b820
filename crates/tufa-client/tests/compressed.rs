//! The HTTP fetcher asks for zstd and gzip and decodes them, with TUF's length limits on the
//! decoded bytes: a repository served compressed over a real socket verifies, and a compression
//! bomb (a small body that decodes to far more than the limit) is endless data.

#[allow(dead_code)] // The other test binaries use the rest of it.
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::{METADATA_URL, Sim, TARGETS_URL};
use tufa_client::{Error, FetchError, Fetcher, HttpFetcher, Updater, UpdaterConfig};

/// Bytes that decode to `mebibytes` of zeros, in the named coding: gzip shrinks them about
/// a thousandfold, zstd far more.
fn bomb(coding: &str, mebibytes: usize) -> Vec<u8> {
    let zeros = vec![0u8; mebibytes * 1024 * 1024];
    match coding {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&zeros).unwrap();
            encoder.finish().unwrap()
        }
        _ => zstd::encode_all(&zeros[..], 19).unwrap(),
    }
}

fn encode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        _ => zstd::encode_all(bytes, 3).unwrap(),
    }
}

/// What the server answers for a path below the repository: content coding and body.
type Answers = HashMap<String, (&'static str, Vec<u8>)>;

/// Serves `sim` over HTTP on 127.0.0.1, each file in `coding`, except the paths in `overrides`;
/// records each request's `Accept-Encoding`. Returns the base URL.
fn serve(
    sim: Arc<Sim>,
    coding: &'static str,
    overrides: Answers,
    asked: Arc<Mutex<Vec<String>>>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            line.clear();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("accept-encoding:") {
                    asked.lock().unwrap().push(value.trim().to_string());
                }
                line.clear();
            }
            let relative = path.trim_start_matches('/');
            let answer = overrides.get(relative).cloned().or_else(|| {
                let url = match relative.split_once('/') {
                    Some(("metadata", file)) => format!("{METADATA_URL}{file}"),
                    Some(("targets", file)) => format!("{TARGETS_URL}{file}"),
                    _ => return None,
                };
                let bytes = sim.fetch(&url, u64::MAX).ok()?;
                Some((coding, encode(coding, &bytes)))
            });
            let head = match &answer {
                Some((coding, body)) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = stream.write_all(head.as_bytes());
            if let Some((_, body)) = answer {
                let _ = stream.write_all(&body);
            }
        }
    });
    url
}

fn sim_with_page() -> Arc<Sim> {
    let sim = Sim::new();
    let page = br#"{"meta": {"api-version": "1.1"}, "name": "demo", "files": []}"#.repeat(40);
    sim.repo()
        .add_target("targets", "simple/demo/index.json", &page);
    sim.repo().update_snapshot();
    Arc::new(sim)
}

fn updater(sim: &Sim, base: &str) -> (tempfile::TempDir, Updater<HttpFetcher>) {
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("metadata");
    Updater::<HttpFetcher>::initialize(&metadata, &sim.trusted_root()).unwrap();
    let updater = Updater::new(
        metadata,
        &format!("{base}/metadata/"),
        HttpFetcher::default(),
        UpdaterConfig::default(),
    );
    (dir, updater)
}

#[test]
fn a_repository_served_compressed_verifies_and_the_client_asks_for_both_codings() {
    for coding in ["gzip", "zstd"] {
        let sim = sim_with_page();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let base = serve(Arc::clone(&sim), coding, Answers::new(), Arc::clone(&asked));
        let (dir, updater) = updater(&sim, &base);
        let refreshed = updater.refresh(SystemTime::now()).unwrap();
        let info = refreshed.target_info("simple/demo/index.json").unwrap();
        let artifact = refreshed
            .download_target(&info, &format!("{base}/targets/"), &dir.path().join("t"))
            .unwrap();
        assert_eq!(
            artifact.content,
            sim.repo().artifacts["simple/demo/index.json"],
            "{coding}"
        );
        let asked = asked.lock().unwrap();
        assert!(asked.len() >= 3, "{asked:?}");
        assert!(asked.iter().all(|a| a == "zstd, gzip"), "{asked:?}");
    }
}

#[test]
fn a_compression_bomb_as_metadata_is_endless_data() {
    for coding in ["gzip", "zstd"] {
        let sim = sim_with_page();
        let bomb = bomb(coding, 8);
        assert!(bomb.len() < 16_384, "the bomb itself is within the limit");
        let overrides = Answers::from([("metadata/timestamp.json".to_string(), (coding, bomb))]);
        let base = serve(
            Arc::clone(&sim),
            coding,
            overrides,
            Arc::new(Mutex::new(Vec::new())),
        );
        let (_dir, updater) = updater(&sim, &base);
        let error = updater.refresh(SystemTime::now()).unwrap_err();
        assert!(
            matches!(&error, Error::EndlessData { url, limit: 16_384 } if url.ends_with("/timestamp.json")),
            "{coding}: {error}"
        );
        assert!(error.to_string().starts_with("endless data attack"));
    }
}

#[test]
fn a_compression_bomb_as_a_target_is_endless_data() {
    for coding in ["gzip", "zstd"] {
        let sim = sim_with_page();
        let page = sim.repo().artifacts["simple/demo/index.json"].clone();
        let hash = tufa_testkit::sha256_hex(&page);
        let overrides = Answers::from([(
            format!("targets/simple/demo/{hash}.index.json"),
            (coding, bomb(coding, 64)),
        )]);
        let base = serve(
            Arc::clone(&sim),
            coding,
            overrides,
            Arc::new(Mutex::new(Vec::new())),
        );
        let (dir, updater) = updater(&sim, &base);
        let refreshed = updater.refresh(SystemTime::now()).unwrap();
        let info = refreshed.target_info("simple/demo/index.json").unwrap();
        let error = refreshed
            .download_target(&info, &format!("{base}/targets/"), &dir.path().join("t"))
            .unwrap_err();
        assert!(
            matches!(&error, Error::EndlessData { limit, .. } if *limit == page.len() as u64),
            "{coding}: {error}"
        );
    }
}

#[test]
fn the_fetcher_stops_decoding_at_the_limit() {
    for coding in ["gzip", "zstd"] {
        let sim = sim_with_page();
        let overrides = Answers::from([("bomb".to_string(), (coding, bomb(coding, 64)))]);
        let base = serve(sim, coding, overrides, Arc::new(Mutex::new(Vec::new())));
        assert_eq!(
            HttpFetcher::default().fetch(&format!("{base}/bomb"), 2_000_000),
            Err(FetchError::TooLarge),
            "{coding}"
        );
    }
}
