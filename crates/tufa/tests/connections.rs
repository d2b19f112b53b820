//! Bounded connections: slow, idle and oversized requests against a real `tufa serve` and
//! `tufa proxy` neither starve the server nor hold its descriptors, memory or temporary files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{TUFA, token};
use tufa_testkit::http;
use tufa_testkit::{TufaProxy, TufaServer};

/// How long the tests wait for something the server must do after its timeouts: generous, as
/// the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

fn connect(url: &str) -> TcpStream {
    TcpStream::connect(host(url)).unwrap()
}

/// A connection that sent `bytes` and then nothing more.
fn stalled(url: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = connect(url);
    stream.write_all(bytes).unwrap();
    stream
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Reads one response on a kept-alive connection (its head and a `Content-Length` body).
fn read_one_response(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed before a response");
        raw.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Waits until the server closes `stream`, returning what it sent first; panics if it is still
/// open after `PATIENCE`.
fn wait_closed(stream: &mut TcpStream, started: Instant, what: &str) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        assert!(!left.is_zero(), "the server kept a {what} connection open");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept a {what} connection open for {PATIENCE:?}")
            }
            Err(e) => panic!("reading a {what} connection: {e}"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn upload_head(server: &TufaServer, authorization: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "POST /legacy/ HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: 10000000\r\n",
        host(&server.url)
    );
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    head.push_str(
        "\r\n--b\r\nContent-Disposition: form-data; name=\"content\"; \
         filename=\"slow-1.0-py3-none-any.whl\"\r\nContent-Type: application/octet-stream\r\n\r\nPK",
    );
    head.into_bytes()
}

fn temporary_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("tmp"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[test]
fn a_thousand_slow_connections_do_not_starve_the_index() {
    let open_files = tufa_index::connections::raise_open_files_limit();
    assert!(
        open_files.is_none_or(|n| n >= 4096),
        "this test needs 4096 open files (ulimit -Hn), has {open_files:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &[
            "--header-timeout",
            "8",
            "--idle-timeout",
            "8",
            "--body-timeout",
            "8",
            "--max-connections",
            "2000",
        ],
    );
    let alice = token(&data, "alice", None);
    let auth = http::basic_auth(&alice);
    let status_request = format!(
        "GET /status HTTP/1.1\r\nHost: {}\r\n\r\n",
        host(&server.url)
    );
    let half_headers = format!(
        "GET /status HTTP/1.1\r\nHost: {}\r\nX-Half: ",
        host(&server.url)
    );

    let started = Instant::now();
    let stalled_headers: Vec<TcpStream> = (0..350)
        .map(|_| stalled(&server.url, half_headers.as_bytes()))
        .collect();
    let trickling_headers: Vec<TcpStream> = (0..100)
        .map(|_| stalled(&server.url, half_headers.as_bytes()))
        .collect();
    let anonymous_bodies: Vec<TcpStream> = (0..200)
        .map(|_| stalled(&server.url, &upload_head(&server, None)))
        .collect();
    let slow_bodies: Vec<TcpStream> = (0..100)
        .map(|_| stalled(&server.url, &upload_head(&server, Some(&auth))))
        .collect();
    let mut kept_alive: Vec<TcpStream> = (0..250)
        .map(|_| stalled(&server.url, status_request.as_bytes()))
        .collect();
    for stream in &mut kept_alive {
        assert!(read_one_response(stream).starts_with("HTTP/1.1 200"));
    }
    // Headers that keep trickling in are cut by the header timeout, not the idle one.
    let trickling = Arc::new(AtomicBool::new(true));
    let trickler = {
        let mut streams: Vec<TcpStream> = trickling_headers
            .iter()
            .map(|s| s.try_clone().unwrap())
            .collect();
        let trickling = Arc::clone(&trickling);
        std::thread::spawn(move || {
            while trickling.load(Ordering::Relaxed) && !streams.is_empty() {
                streams.retain_mut(|stream| stream.write_all(b"a").is_ok());
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // A client that asks and asks but never reads the answers.
    let not_reading = {
        let mut stream = connect(&server.url);
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let metrics = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n",
            host(&server.url)
        );
        let _ = stream.write_all(metrics.repeat(2000).as_bytes());
        stream
    };
    let oversized: Vec<TcpStream> = (0..5)
        .map(|_| {
            let head = format!(
                "GET /status HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
                host(&server.url),
                "a".repeat(64 * 1024)
            );
            let mut stream = connect(&server.url);
            let _ = stream.write_all(head.as_bytes());
            stream
        })
        .collect();

    // While they are open (all but the anonymous bodies, answered 401 at once), the index
    // answers, takes an upload and signs it.
    wait_until("the server accepts the slow connections", || {
        descriptors(server.pid()) >= 800
    });
    assert_eq!(
        http::get(&format!("{}/status", server.url), &[]).status,
        200
    );
    let uploaded = server.upload_wheel(&alice, "steady", "1.0");
    assert_eq!(uploaded.status, 200, "{uploaded:?}");
    assert!(
        descriptors(server.pid()) >= 800,
        "the slow connections were still open during the upload"
    );
    let serial: i64 = uploaded
        .header("x-pypi-last-serial")
        .unwrap()
        .parse()
        .unwrap();
    assert!(server.wait_until_signed() >= serial);

    // The server closes every slow connection by itself.
    for mut stream in stalled_headers {
        wait_closed(&mut stream, started, "half-sent header");
    }
    for mut stream in trickling_headers {
        wait_closed(&mut stream, started, "trickling header");
    }
    trickling.store(false, Ordering::Relaxed);
    trickler.join().unwrap();
    for mut stream in anonymous_bodies {
        let answer = wait_closed(&mut stream, started, "slow anonymous body");
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    for mut stream in slow_bodies {
        let answer = wait_closed(&mut stream, started, "slow body");
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout: the request body arrived too slowly"),
            "{answer}"
        );
    }
    for mut stream in kept_alive {
        assert_eq!(wait_closed(&mut stream, started, "idle kept-alive"), "");
    }
    for mut stream in oversized {
        let answer = wait_closed(&mut stream, started, "oversized header");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
    }
    // Every descriptor is let go, that of the client that never reads included.
    wait_until("the server lets go of the descriptors", || {
        descriptors(server.pid()) < 100
    });
    drop(not_reading);
    wait_until("the slow uploads' temporary files are removed", || {
        temporary_files(&data) == 0
    });
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 128 * 1024, "peak RSS {peak} KiB");
    assert_eq!(
        http::get(&format!("{}/status", server.url), &[]).status,
        200
    );
}

#[test]
fn connections_over_the_limit_are_refused_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tufa.toml");
    std::fs::write(&config, "max_connections = 20\nidle_timeout = 120\n").unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let half = format!("GET / HTTP/1.1\r\nHost: {}\r\n", host(&server.url));
    let before = descriptors(server.pid());
    let held: Vec<TcpStream> = (0..20)
        .map(|_| stalled(&server.url, half.as_bytes()))
        .collect();
    wait_until("the server accepts the 20 connections", || {
        descriptors(server.pid()) >= before + 20
    });
    let refused = http::get(&format!("{}/status", server.url), &[]);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused
            .reason
            .contains("Too many connections: this server serves 20 at once"),
        "{refused:?}"
    );
    assert_eq!(refused.header("Retry-After"), Some("1"));
    drop(held);
    wait_until("the server answers again", || {
        http::get(&format!("{}/status", server.url), &[]).status == 200
    });
}

#[test]
fn the_proxy_bounds_its_connections_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &server.data_dir.join("trusted-root.json"),
        &dir.path().join("cache"),
        &[
            "--max-connections",
            "30",
            "--header-timeout",
            "5",
            "--idle-timeout",
            "5",
        ],
    );
    let half = format!("GET / HTTP/1.1\r\nHost: {}\r\n", host(&proxy.url));
    let before = descriptors(proxy.pid());
    let started = Instant::now();
    let held: Vec<TcpStream> = (0..30)
        .map(|_| stalled(&proxy.url, half.as_bytes()))
        .collect();
    wait_until("the proxy accepts the 30 connections", || {
        descriptors(proxy.pid()) >= before + 30
    });
    let refused = http::get(&format!("{}/", proxy.url), &[]);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.reason.contains("Too many connections"),
        "{refused:?}"
    );
    for mut stream in held {
        wait_closed(&mut stream, started, "half-sent header to the proxy");
    }
    wait_until("the proxy answers again", || {
        http::get(&format!("{}/", proxy.url), &[]).status == 200
    });
}
