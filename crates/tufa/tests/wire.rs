//! Files and PEP 658 metadata files fetched one after another on one kept-alive connection, from
//! a real `tufa serve` and through a real `tufa proxy`, are each answered at once.
//!
//! pip and uv fetch files in turn on a reused connection. A response whose head and body leave in
//! separate writes, on a socket with Nagle's algorithm on, holds its body back until the client
//! acknowledges the head, and a client delays that acknowledgement by 40 ms or more: every file
//! and `.metadata` request then took ~44 ms while pages took well under 1 ms. Whether a response
//! stalled depended on races in the server and on the client's ACK state, so from a quarter to
//! nearly all of them did. The test fetches many and asserts that almost none waited the 40 ms of
//! a delayed ACK: a busy machine may delay a few requests, but not one in twenty. (How quick the
//! typical answer is depends on the machine's load, so it is reported, not asserted.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tufa_testkit::{TufaProxy, TufaServer, http, sha256_hex, wheel_with};

const TUFA: &str = env!("CARGO_BIN_EXE_tufa");

/// Linux's shortest delayed ACK: a request that took this long waited for one.
const DELAYED_ACK: Duration = Duration::from_millis(40);

/// Times through the files; with `PROJECTS` files, 100 requests per kind.
const ROUNDS: usize = 25;

/// Projects with one wheel each, of these sizes of incompressible payload: bodies from well under
/// one TCP segment, where a held-back last write stalls most often, to many segments.
const PROJECTS: [(&str, usize); 4] = [
    ("wire-tiny", 0),
    ("wire-small", 6_000),
    ("wire-medium", 10_000),
    ("wire-large", 300_000),
];

/// An HTTP/1.1 client that keeps its one connection open, as pip's and uv's pools do.
struct KeptAlive {
    host: String,
    stream: BufReader<TcpStream>,
}

impl KeptAlive {
    fn connect(url: &str) -> KeptAlive {
        let host = url
            .strip_prefix("http://")
            .expect("http:// URL")
            .to_string();
        let stream = TcpStream::connect(&host).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        KeptAlive {
            host,
            stream: BufReader::new(stream),
        }
    }

    /// Sends a GET for `path` and reads the whole answer (sized or chunked), which must be 200
    /// and leave the connection open; returns the time until its last byte, and the body.
    fn get(&mut self, path: &str) -> (Duration, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        let started = Instant::now();
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .expect("sending");
        let status = self.line();
        assert!(status.starts_with("HTTP/1.1 200 "), "GET {path}: {status}");
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header");
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("a length"));
            }
            chunked |= name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked";
            assert!(
                !(name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")),
                "GET {path}: the server closes the connection"
            );
        }
        let body = match (length, chunked) {
            (Some(length), false) => self.bytes(length),
            (None, true) => self.chunks(),
            _ => panic!("GET {path}: neither a Content-Length nor chunked"),
        };
        (started.elapsed(), body)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("reading");
        line.trim_end().to_string()
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        self.stream
            .read_exact(&mut bytes)
            .expect("reading the body");
        bytes
    }

    fn chunks(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(&self.line(), 16).expect("a chunk size");
            body.extend(self.bytes(size));
            assert!(self.line().is_empty(), "a chunk ends with CRLF");
            if size == 0 {
                return body;
            }
        }
    }
}

/// A file as a project page lists it: path on the server, and the sha256 of the file and of its
/// metadata file.
struct Listed {
    path: String,
    sha256: String,
    metadata_sha256: String,
}

/// The path of a page's file URL, absolute (the index) or host-relative (the proxy).
fn path_of(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').expect("a path")..].to_string(),
        None if url.starts_with('/') => url.to_string(),
        None => panic!("a file URL neither absolute nor host-relative: {url}"),
    }
}

fn listed(client: &mut KeptAlive, project: &str) -> Listed {
    let (_, page) = client.get(&format!(
        "/simple/{project}/?format=application/vnd.pypi.simple.v1+json"
    ));
    let page: Value = serde_json::from_slice(&page).expect("a JSON page");
    let file = &page["files"][0];
    Listed {
        path: path_of(file["url"].as_str().expect("a URL")),
        sha256: file["hashes"]["sha256"].as_str().unwrap().to_string(),
        metadata_sha256: file["core-metadata"]["sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("no metadata file listed: {file}"))
            .to_string(),
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Fetches every project's file and metadata file `ROUNDS` times on one connection to `url`,
/// checking what arrives, and asserts that at most one answer of each kind in twenty is as slow
/// as a delayed ACK.
fn files_are_answered_at_once(url: &str, what: &str) {
    let mut client = KeptAlive::connect(url);
    let files: Vec<Listed> = PROJECTS
        .iter()
        .map(|(project, _)| listed(&mut client, project))
        .collect();
    let (mut file_times, mut metadata_times) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for file in &files {
            let (took, body) = client.get(&file.path);
            assert_eq!(sha256_hex(&body), file.sha256, "{what}: {}", file.path);
            file_times.push(took);
            let (took, body) = client.get(&format!("{}.metadata", file.path));
            assert_eq!(
                sha256_hex(&body),
                file.metadata_sha256,
                "{what}: {}",
                file.path
            );
            metadata_times.push(took);
        }
    }
    for (kind, times) in [("files", file_times), ("metadata files", metadata_times)] {
        let millis: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        eprintln!(
            "{what}: {kind} on one kept-alive connection: median {:?}",
            median(times.clone())
        );
        let stalled = times.iter().filter(|took| **took >= DELAYED_ACK).count();
        assert!(
            stalled * 20 <= times.len(),
            "{what}: {stalled} of {} {kind} on one kept-alive connection waited for a delayed \
             ACK ({DELAYED_ACK:?} or more); each (ms): {millis:?}",
            times.len()
        );
    }
}

/// Bytes that do not compress, so the wheel is as large on the wire as `size` says.
fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn files_and_metadata_on_one_kept_alive_connection_are_answered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let auth = http::basic_auth(&server.create_token("alice"));
    for (seed, (project, size)) in (1..).zip(PROJECTS) {
        let module = project.replace('-', "_");
        let wheel = wheel_with(
            project,
            "1.0",
            &[(format!("{module}/data.bin"), noise(size, seed))],
        );
        let (content_type, body) = http::wheel_upload(project, "1.0", &wheel);
        let response = http::request(
            "POST",
            &server.upload_url(),
            &[("Authorization", &auth), ("Content-Type", &content_type)],
            &body,
        );
        assert_eq!(
            response.status, 200,
            "uploading {project}: {}",
            response.reason
        );
    }
    server.wait_until_signed();

    files_are_answered_at_once(&server.url, "tufa serve");

    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &server.data_dir.join("trusted-root.json"),
        &dir.path().join("proxy-cache"),
        &[],
    );
    files_are_answered_at_once(&proxy.url, "tufa proxy");
}
