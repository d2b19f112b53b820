//! Index throughput against a real `tufa serve` (release build) on loopback: uploads per second,
//! then requests per second for one project's simple page with 2,000 files, as HTML and as JSON.
//!
//! `cargo bench -p tufa --bench index`. Client and server share the machine's cores, so the
//! numbers are a floor for a dedicated server.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use tufa_testkit::TufaServer;
use tufa_testkit::http;

const FILES: usize = 2_000;
const CLIENTS: usize = 4;

fn wheel(version: &str) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("bench_big/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(format!("bench_big-{version}.dist-info/METADATA"), options)
        .unwrap();
    write!(
        zip,
        "Metadata-Version: 2.1\nName: bench-big\nVersion: {version}\nRequires-Python: >=3.8\n"
    )
    .unwrap();
    zip.finish().unwrap();
    buffer.into_inner()
}

fn parallel(total: usize, work: impl Fn(usize) + Sync) -> Duration {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    started.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let tufa = env!("CARGO_BIN_EXE_tufa");
    let server = TufaServer::start(tufa.as_ref(), &dir.path().join("data"), &[]);
    let output = std::process::Command::new(tufa)
        .args(["token", "create", "--user", "bench", "--data"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("__token__:{token}"))
    );

    let uploads = parallel(FILES, |i| {
        let version = format!("1.0.{i}");
        let content = wheel(&version);
        let digest = hex_sha256(&content);
        let filename = format!("bench_big-{version}-py3-none-any.whl");
        let (content_type, body) = http::multipart(
            &[
                (":action", "file_upload"),
                ("name", "bench-big"),
                ("version", &version),
                ("filetype", "bdist_wheel"),
                ("sha256_digest", &digest),
            ],
            &filename,
            &content,
        );
        let response = http::request(
            "POST",
            &server.upload_url(),
            &[("Content-Type", &content_type), ("Authorization", &auth)],
            &body,
        );
        assert_eq!(response.status, 200, "{}", response.reason);
    });
    println!(
        "uploads: {FILES} in {:.2} s = {:.0} uploads/s ({CLIENTS} clients)",
        uploads.as_secs_f64(),
        FILES as f64 / uploads.as_secs_f64()
    );

    let page = format!("{}bench-big/", server.simple_url());
    for (label, accept) in [
        ("HTML", "text/html"),
        ("JSON", "application/vnd.pypi.simple.v1+json"),
    ] {
        let sample = http::get(&page, &[("Accept", accept)]);
        assert_eq!(sample.status, 200);
        let requests = 1_000;
        let elapsed = parallel(requests, |_| {
            let response = http::get(&page, &[("Accept", accept)]);
            assert_eq!(response.status, 200);
        });
        println!(
            "/simple/bench-big/ {label} ({FILES} files, {} KiB): {:.0} requests/s ({CLIENTS} clients)",
            sample.body.len() / 1024,
            requests as f64 / elapsed.as_secs_f64()
        );
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
