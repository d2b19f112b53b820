//! Compressed answers end to end: every kind of answer the index serves (simple pages as HTML and
//! JSON, the JSON API, timestamp, snapshot, a target) comes in the coding curl asks for, with
//! `Vary`, an ETag per representation, 304 on `If-None-Match` and the right `Cache-Control`, and
//! decodes to the signed bytes; pip, uv and python-tuf ask for gzip and work on what they get,
//! and pip and uv revalidate pages into 304s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tufa_testkit::{PythonEnv, TufaServer, minimal_wheel};

mod common;
use common::{TUFA, installed, ok, token, twine};

const PROJECT: &str = "tufa-gz-demo";
const NGCLIENT: &str = include_str!("python/ngclient_compressed.py");

/// A response as curl saw it: status, headers (names lowercase) and the body as curl wrote it.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `curl` with `args`, for `url`. With `--compressed` among the arguments, curl decodes.
fn curl(url: &str, args: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let output = Command::new("curl")
        .args(["-s", "-S", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    assert!(output.status.success(), "curl {url}: {output:?}");
    let head = fs::read_to_string(&head).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched {
        status,
        headers,
        body: fs::read(&body).unwrap_or_default(),
    }
}

/// One kind of answer: where it is, the `Accept` to ask with, the bytes it must decode to, and
/// whether it is immutable.
struct Kind {
    name: &'static str,
    url: String,
    accept: &'static str,
    expected: Vec<u8>,
    immutable: bool,
}

fn check_kind(kind: &Kind) {
    let name = kind.name;
    let accept = format!("Accept: {}", kind.accept);
    let plain = curl(&kind.url, &["-H", &accept]);
    assert_eq!(plain.status, 200, "{name}");
    assert_eq!(plain.body, kind.expected, "{name}: the plain answer");
    assert_eq!(plain.header("content-encoding"), None, "{name}");
    let compressible = kind.expected.len() >= 1024;
    let vary = if kind.accept.is_empty() {
        "Accept-Encoding"
    } else {
        "Accept, Accept-Encoding"
    };
    let cache_control = if kind.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut etags = vec![plain.header("etag").expect("an ETag").to_string()];
    for coding in ["gzip", "zstd"] {
        let asked = format!("Accept-Encoding: {coding}");
        let got = curl(&kind.url, &["--compressed", "-H", &accept, "-H", &asked]);
        assert_eq!(got.status, 200, "{name} {coding}");
        assert_eq!(
            got.body, kind.expected,
            "{name}: the {coding} answer decodes to the signed bytes"
        );
        assert_eq!(
            got.header("content-encoding"),
            compressible.then_some(coding),
            "{name} ({} bytes) {coding}",
            kind.expected.len()
        );
        assert_eq!(got.header("vary"), Some(vary), "{name} {coding}");
        assert_eq!(
            got.header("cache-control"),
            Some(cache_control),
            "{name} {coding}"
        );
        let etag = got.header("etag").expect("an ETag").to_string();
        let not_modified = curl(
            &kind.url,
            &[
                "-H",
                &accept,
                "-H",
                &asked,
                "-H",
                &format!("If-None-Match: {etag}"),
            ],
        );
        assert_eq!(not_modified.status, 304, "{name} {coding}");
        assert!(not_modified.body.is_empty(), "{name} {coding}");
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
        etags.push(etag);
    }
    // Each representation has its own ETag; one too small to compress has only one.
    let mut distinct = etags.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        if compressible { 3 } else { 1 },
        "{name}: {etags:?}"
    );
    // And a client that asks for whatever curl decodes gets the same bytes.
    let any = curl(&kind.url, &["--compressed", "-H", &accept]);
    assert_eq!(any.body, kind.expected, "{name}: curl --compressed");
}

fn metric(server: &TufaServer, name: &str) -> u64 {
    let metrics = tufa_testkit::http::get(&format!("{}/metrics", server.url), &[]).text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .unwrap()
}

fn lines_with(log: &str, what: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(what))
        .map(str::to_string)
        .collect()
}

/// `pip install` with an HTTP cache. pip keeps one for plain HTTP only from a trusted host.
fn pip_cached(index: &str, target: &Path, cache: &Path) -> Output {
    let host = index
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    PythonEnv::shared()
        .command("pip")
        .args(["install", "--index-url", index, "--trusted-host", host])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--target")
        .arg(target)
        .arg(PROJECT)
        .output()
        .unwrap()
}

fn uv_cached(index: &str, target: &Path, cache: &Path) -> Output {
    common::uv_with_cache(index, target, cache, &[PROJECT])
}

/// A signing index holding four versions of [`PROJECT`], so that its pages are worth compressing.
fn index_with_project(dir: &Path) -> TufaServer {
    let server = TufaServer::start(TUFA.as_ref(), &dir.join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);
    let wheels: Vec<PathBuf> = ["1.0", "1.1", "1.2", "2.0"]
        .iter()
        .map(|version| {
            let path = dir.join(format!("tufa_gz_demo-{version}-py3-none-any.whl"));
            fs::write(&path, minimal_wheel(PROJECT, version)).unwrap();
            path
        })
        .collect();
    let paths: Vec<&Path> = wheels.iter().map(PathBuf::as_path).collect();
    ok(twine(&server, &alice, &paths, &[]), "twine upload");
    server.wait_until_signed();
    server
}

#[test]
fn every_kind_of_answer_is_compressed_as_asked_and_decodes_to_the_signed_bytes() {
    tufa_testkit::ensure_package(
        "curl",
        || Command::new("curl").arg("--version").output().is_ok(),
        "the compression tests",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = index_with_project(dir.path());
    let base = &server.url;
    let published = common::published(&server.data_dir);
    let timestamp = published.read("tuf/metadata/timestamp.json").unwrap();
    let snapshot_version =
        serde_json::from_slice::<Value>(&timestamp).unwrap()["signed"]["meta"]["snapshot.json"]
            ["version"]
            .as_u64()
            .unwrap();
    let snapshot_file = format!("{snapshot_version}.snapshot.json");
    let json_page = curl(
        &format!("{base}/simple/{PROJECT}/"),
        &["-H", "Accept: application/vnd.pypi.simple.v1+json"],
    )
    .body;
    let target_file = format!(
        "simple/{PROJECT}/{}.index.json",
        tufa_testkit::sha256_hex(&json_page)
    );
    // The page served is the signed target, byte for byte.
    let target = published
        .read(&format!("tuf/targets/{target_file}"))
        .unwrap();
    assert_eq!(json_page, target);
    let html_page = curl(
        &format!("{base}/simple/{PROJECT}/"),
        &["-H", "Accept: text/html"],
    )
    .body;
    let api = curl(&format!("{base}/pypi/{PROJECT}/json"), &[]).body;
    assert_eq!(
        serde_json::from_slice::<Value>(&api).unwrap()["info"]["version"],
        "2.0"
    );
    let kinds = [
        Kind {
            name: "page HTML",
            url: format!("{base}/simple/{PROJECT}/"),
            accept: "text/html",
            expected: html_page,
            immutable: false,
        },
        Kind {
            name: "page JSON",
            url: format!("{base}/simple/{PROJECT}/"),
            accept: "application/vnd.pypi.simple.v1+json",
            expected: json_page,
            immutable: false,
        },
        Kind {
            name: "JSON API",
            url: format!("{base}/pypi/{PROJECT}/json"),
            accept: "",
            expected: api,
            immutable: false,
        },
        Kind {
            name: "timestamp.json",
            url: format!("{base}/tuf/metadata/timestamp.json"),
            accept: "",
            expected: timestamp,
            immutable: false,
        },
        Kind {
            name: "snapshot",
            url: format!("{base}/tuf/metadata/{snapshot_file}"),
            accept: "",
            expected: published
                .read(&format!("tuf/metadata/{snapshot_file}"))
                .unwrap(),
            immutable: true,
        },
        Kind {
            name: "target",
            url: format!("{base}/tuf/targets/{target_file}"),
            accept: "",
            expected: target,
            immutable: true,
        },
    ];
    for kind in &kinds {
        assert!(
            kind.name == "timestamp.json" || kind.expected.len() >= 1024,
            "{} is too small ({} bytes) to show compression",
            kind.name,
            kind.expected.len()
        );
        check_kind(kind);
    }

    // Each version is compressed once per coding: asking again compresses nothing.
    let compressions = metric(&server, "tufa_compressions_total");
    for kind in &kinds {
        for coding in ["gzip", "zstd"] {
            let asked = format!("Accept-Encoding: {coding}");
            let accept = format!("Accept: {}", kind.accept);
            curl(&kind.url, &["--compressed", "-H", &accept, "-H", &asked]);
        }
    }
    assert_eq!(metric(&server, "tufa_compressions_total"), compressions);
    assert!(metric(&server, "tufa_answer_cache_bytes") > 0);
}

#[test]
fn pip_uv_and_python_tuf_ask_for_gzip_and_get_the_signed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = index_with_project(dir.path());
    let page = format!("GET /simple/{PROJECT}/ ");

    // pip: the page comes gzipped; with its HTTP cache, the second install revalidates to a 304.
    let pip_cache = dir.path().join("pip-cache");
    let first = dir.path().join("pip-1");
    ok(
        pip_cached(&server.simple_url(), &first, &pip_cache),
        "pip install",
    );
    assert_eq!(installed(&first), ["tufa_gz_demo-2.0"]);
    let log = server.log();
    let gzipped = lines_with(&log, &page);
    assert!(
        gzipped
            .iter()
            .any(|l| l.contains(" 200 ") && l.ends_with("us gzip")),
        "pip got the page gzipped: {gzipped:#?}"
    );
    let revalidated = |log: &str| {
        lines_with(log, &page)
            .iter()
            .filter(|l| l.contains(" 304 "))
            .count()
    };
    let second = dir.path().join("pip-2");
    ok(
        pip_cached(&server.simple_url(), &second, &pip_cache),
        "pip install again",
    );
    assert_eq!(installed(&second), ["tufa_gz_demo-2.0"]);
    let after_pip = revalidated(&server.log());
    assert!(after_pip >= 1, "pip revalidated: {}", server.log());

    // uv: compressed too, and with its cache the second install revalidates the page to a 304.
    let before = lines_with(&server.log(), &page).len();
    let uv_cache = dir.path().join("uv-cache");
    let first = dir.path().join("uv-1");
    ok(
        uv_cached(&server.simple_url(), &first, &uv_cache),
        "uv install",
    );
    assert_eq!(installed(&first), ["tufa_gz_demo-2.0"]);
    let log = server.log();
    let uv_lines = &lines_with(&log, &page)[before..];
    assert!(
        uv_lines
            .iter()
            .any(|l| l.contains(" 200 ") && (l.ends_with("us gzip") || l.ends_with("us zstd"))),
        "uv got the page compressed: {uv_lines:#?}"
    );
    let second = dir.path().join("uv-2");
    ok(
        uv_cached(&server.simple_url(), &second, &uv_cache),
        "uv install again",
    );
    assert_eq!(installed(&second), ["tufa_gz_demo-2.0"]);
    assert!(
        revalidated(&server.log()) > after_pip,
        "uv revalidated: {}",
        server.log()
    );

    // python-tuf with requests: gzip for everything worth compressing, verified all the same.
    let output = PythonEnv::shared()
        .command("python")
        .arg("-c")
        .arg(NGCLIENT)
        .arg(&server.url)
        .arg(server.data_dir.join("trusted-root.json"))
        .arg(dir.path().join("python-tuf"))
        .arg(PROJECT)
        .output()
        .unwrap();
    let text = common::output_text(&output);
    assert!(output.status.success(), "python-tuf failed: {text}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let json_page = tufa_testkit::http::get(
        &format!("{}/simple/{PROJECT}/", server.url),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(result["page"].as_str().unwrap().as_bytes(), json_page.body);
    let fetched = result["fetched"].as_object().unwrap();
    let snapshot = fetched
        .iter()
        .find(|(file, _)| file.ends_with(".snapshot.json"))
        .unwrap_or_else(|| panic!("no snapshot fetched: {fetched:?}"))
        .1;
    assert!(
        snapshot["asked"].as_str().unwrap().contains("gzip"),
        "{snapshot}"
    );
    assert_eq!(snapshot["coding"], "gzip", "{fetched:?}");
    let target = fetched
        .iter()
        .find(|(file, _)| file.ends_with(".index.json"))
        .unwrap_or_else(|| panic!("no page target fetched: {fetched:?}"))
        .1;
    assert_eq!(target["coding"], "gzip", "{fetched:?}");
}

#[test]
fn the_proxy_fetches_compressed_and_serves_its_pages_compressed() {
    tufa_testkit::ensure_package(
        "curl",
        || Command::new("curl").arg("--version").output().is_ok(),
        "the compression tests",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = index_with_project(dir.path());
    let proxy = tufa_testkit::TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &server.data_dir.join("trusted-root.json"),
        &dir.path().join("proxy-cache"),
        &[],
    );
    let url = format!("{}/simple/{PROJECT}/", proxy.url);
    for (name, accept) in [
        ("proxy page JSON", "application/vnd.pypi.simple.v1+json"),
        ("proxy page HTML", "text/html"),
    ] {
        let expected = curl(&url, &["-H", &format!("Accept: {accept}")]).body;
        assert!(expected.len() >= 1024, "{name}: {} bytes", expected.len());
        check_kind(&Kind {
            name,
            url: url.clone(),
            accept,
            expected,
            immutable: false,
        });
    }
    // The proxy asked the index for zstd, and verified what it decoded (its TUF metadata is
    // TAP 16 proofs, under the 1 KiB the index compresses from, rather than the snapshot).
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains(".index.json ") && l.contains(" 200 ") && l.ends_with("us zstd")),
        "the proxy's fetch of the page target came compressed:\n{log}"
    );
}
