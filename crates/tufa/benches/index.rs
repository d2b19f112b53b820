//! Index throughput against a real `tufa serve` (release build) on loopback: uploads per second,
//! then requests per second for one project's simple page with 2,000 files, as HTML and as JSON.
//!
//! `cargo bench -p tufa --bench index`. Client and server share the machine's cores, so the
//! numbers are a floor for a dedicated server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tufa_testkit::http;
use tufa_testkit::{TufaServer, minimal_wheel};

const FILES: usize = 2_000;
const CLIENTS: usize = 4;

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
    let auth = http::basic_auth(&server.create_token("bench"));

    let uploads = parallel(FILES, |i| {
        let version = format!("1.0.{i}");
        let (content_type, body) =
            http::wheel_upload("bench-big", &version, &minimal_wheel("bench-big", &version));
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
