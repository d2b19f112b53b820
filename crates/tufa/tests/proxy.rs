//! `tufa proxy` end to end: real pip and uv install through a real proxy process in front of a
//! real `tufa serve`, from its cache when the index is down, and refuse every tampering TUF is
//! meant to catch, with nothing installed.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{TUFA, installed, ok, output_text as text, pip, published, token, twine, uv};
use tufa_repo::{PageChange, View};
use tufa_testkit::{Built, Project, PythonEnv, StaticServer, TufaProxy, TufaServer};
use tufa_testkit::{http, sha256_hex};

/// Refreshes are reused this long; the tests wait past it to force the next refresh.
const REFRESH_MS: &str = "300";
const AFTER_REFRESH: Duration = Duration::from_millis(600);

fn build(dir: &Path, name: &str, version: &str, dependencies: &[&str], payload: &str) -> Built {
    let out = dir.join(payload);
    fs::create_dir_all(&out).unwrap();
    Project {
        name,
        version,
        dependencies,
        payload,
    }
    .build(PythonEnv::shared(), &out)
}

fn upload(server: &TufaServer, token: &str, files: &[&Path]) {
    ok(twine(server, token, files, &[]), "twine upload");
    server.wait_until_signed();
}

/// An index with three projects in a dependency chain: app → lib → util.
struct Fixture {
    dir: tempfile::TempDir,
    server: TufaServer,
    token: String,
    util: Built,
}

impl Fixture {
    fn new(serve_args: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), serve_args);
        let token = token(&server.data_dir, "alice", None);
        let app = build(dir.path(), "tufa-app", "1.0", &["tufa-lib>=0.2"], "good");
        let lib = build(dir.path(), "tufa-lib", "0.2", &["tufa-util"], "good");
        let util = build(dir.path(), "tufa-util", "0.1", &[], "good");
        upload(
            &server,
            &token,
            &[
                &app.wheel,
                &app.sdist,
                &lib.wheel,
                &lib.sdist,
                &util.wheel,
                &util.sdist,
            ],
        );
        Fixture {
            dir,
            server,
            token,
            util,
        }
    }

    fn root(&self) -> PathBuf {
        self.server.data_dir.join("trusted-root.json")
    }

    fn proxy(&self, index_url: &str, cache: &str) -> TufaProxy {
        TufaProxy::start(
            TUFA.as_ref(),
            index_url,
            &self.root(),
            &self.dir.path().join(cache),
            &["--refresh-interval-ms", REFRESH_MS],
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn assert_installs(output: &Output, target: &Path, expected: &[&str]) {
    assert!(output.status.success(), "install failed:\n{}", text(output));
    assert_eq!(installed(target), expected, "{}", text(output));
}

const ALL: [&str; 3] = ["tufa_app-1.0", "tufa_lib-0.2", "tufa_util-0.1"];

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// Both installers fail, install nothing of `project` (a distribution name prefix such as
/// `tufa_util-`), and, when given, show `reason`; the proxy logged it either way.
fn assert_refused(
    proxy: &TufaProxy,
    dir: &Path,
    case: &str,
    requirement: &str,
    reason: &str,
    shown: bool,
) {
    let pip_target = dir.join(format!("pip-{case}"));
    // pip logs why an index page failed only at debug level (-vv).
    let pip_output = pip(&proxy.simple_url(), &pip_target, &["-vv", requirement]);
    let uv_target = dir.join(format!("uv-{case}"));
    let uv_output = uv(&proxy.simple_url(), &uv_target, &[requirement]);
    for (tool, output, target) in [
        ("pip", &pip_output, &pip_target),
        ("uv", &uv_output, &uv_target),
    ] {
        assert!(
            !output.status.success(),
            "{case}: {tool} installed:\n{}",
            text(output)
        );
        assert_eq!(installed(target), Vec::<String>::new(), "{case}: {tool}");
        if shown {
            assert!(
                text(output).contains(reason),
                "{case}: {tool} does not say {reason:?}:\n{}",
                text(output)
            );
        }
    }
    let log = proxy.log_containing(reason);
    assert!(
        log.contains(reason),
        "{case}: the proxy log does not say {reason:?}:\n{log}"
    );
}

/// Upstream requests for `path` answered 200, from the index's access log.
fn fetched(server: &TufaServer, path: &str) -> usize {
    server.log().matches(&format!("GET {path} 200 ")).count()
}

#[test]
fn pip_and_uv_install_through_the_proxy_then_from_its_cache_with_the_index_down() {
    let mut fixture = Fixture::new(&[]);
    let mut proxy = fixture.proxy(&fixture.server.url, "proxy-cache");
    let index = proxy.simple_url();
    let target = fixture.path("pip-1");
    assert_installs(&pip(&index, &target, &["tufa-app"]), &target, &ALL);
    let target = fixture.path("uv-1");
    assert_installs(&uv(&index, &target, &["tufa-app"]), &target, &ALL);

    // uv's own cache was fresh, so it asked the proxy for every file again: the proxy served
    // them from its cache, and the index saw each file downloaded once.
    let util_wheel = format!(
        "/files/{}/{}",
        sha256_hex(&fs::read(&fixture.util.wheel).unwrap()),
        file_name(&fixture.util.wheel)
    );
    assert_eq!(
        fetched(&fixture.server, &util_wheel),
        1,
        "{}",
        fixture.server.log()
    );
    assert_eq!(
        fetched(&fixture.server, &format!("{util_wheel}.metadata")),
        1
    );
    assert_eq!(
        fixture.server.log().matches("GET /files/").count(),
        6,
        "three wheels and their metadata files"
    );

    // The index goes down: installs still work from the cache while the metadata is unexpired.
    fixture.server.kill();
    std::thread::sleep(AFTER_REFRESH);
    let target = fixture.path("pip-2");
    assert_installs(&pip(&index, &target, &["tufa-app"]), &target, &ALL);
    let target = fixture.path("uv-2");
    assert_installs(&uv(&index, &target, &["tufa-app"]), &target, &ALL);
    let log = proxy.log_containing("the index is unreachable");
    assert!(log.contains("the index is unreachable"), "{log}");

    // A proxy started afresh on the same cache, with the index still down, too.
    proxy.kill();
    let proxy = fixture.proxy(&fixture.server.url, "proxy-cache");
    let target = fixture.path("pip-3");
    assert_installs(
        &pip(&proxy.simple_url(), &target, &["tufa-app"]),
        &target,
        &ALL,
    );

    // Something it never cached cannot come from anywhere: a clear error, not a stale answer.
    let missing = http::get(&format!("{}tufa-not-cached/", proxy.simple_url()), &[]);
    assert_eq!(missing.status, 502, "{}", missing.reason);
    assert!(
        missing.reason.contains("Connection refused") || missing.reason.contains("connect"),
        "{}",
        missing.reason
    );
}

#[test]
fn the_simple_api_negotiates_redirects_and_shares_one_refresh_between_concurrent_requests() {
    let fixture = Fixture::new(&[]);
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &fixture.server.url,
        &fixture.root(),
        &fixture.path("cache"),
        &[],
    );
    let page = format!("{}tufa-util/", proxy.simple_url());
    let json = "application/vnd.pypi.simple.v1+json";
    let responses: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| http::get(&page, &[("Accept", json)])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.reason);
        assert_eq!(response.header("content-type"), Some(json));
        assert_eq!(response.header("vary"), Some("Accept, Accept-Encoding"));
    }
    assert_eq!(
        fixture
            .server
            .log()
            .matches("GET /tuf/metadata/timestamp.json")
            .count(),
        1,
        "16 concurrent requests, one refresh:\n{}",
        fixture.server.log()
    );
    let files = responses[0].json()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2);
    let wheel = files
        .iter()
        .find(|f| f["filename"].as_str().unwrap().ends_with(".whl"))
        .unwrap();
    let sha = sha256_hex(&fs::read(&fixture.util.wheel).unwrap());
    assert_eq!(
        wheel["url"],
        format!("/files/tufa-util/{sha}/{}", file_name(&fixture.util.wheel))
    );
    let download = http::get(
        &format!("{}{}", proxy.url, wheel["url"].as_str().unwrap()),
        &[],
    );
    assert_eq!(download.body, fs::read(&fixture.util.wheel).unwrap());
    let metadata = http::get(
        &format!("{}{}.metadata", proxy.url, wheel["url"].as_str().unwrap()),
        &[],
    );
    assert_eq!(
        sha256_hex(&metadata.body),
        wheel["core-metadata"]["sha256"].as_str().unwrap()
    );

    let html = http::get(&page, &[]);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        html.text().contains(&format!(
            "href=\"/files/tufa-util/{sha}/{}#sha256={sha}\"",
            file_name(&fixture.util.wheel)
        )),
        "{}",
        html.text()
    );
    assert_eq!(
        http::get(&page, &[("Accept", "application/xml")]).status,
        406
    );
    for (from, to) in [
        ("/simple/Tufa_Util/", "/simple/tufa-util/"),
        ("/simple/tufa-util", "/simple/tufa-util/"),
        ("/simple", "/simple/"),
    ] {
        let response = http::get(&format!("{}{from}", proxy.url), &[]);
        assert_eq!(response.status, 301, "{from}");
        assert_eq!(response.header("location"), Some(to), "{from}");
    }
    let unknown = http::get(&format!("{}no-such-project/", proxy.simple_url()), &[]);
    assert_eq!(unknown.status, 404, "{}", unknown.reason);
    assert!(
        unknown.reason.contains("no project no-such-project"),
        "{}",
        unknown.reason
    );
    let not_listed = http::get(
        &format!("{}/files/tufa-util/{}/x.whl", proxy.url, "0".repeat(64)),
        &[],
    );
    assert_eq!(not_listed.status, 404);
}

/// An HTTP mirror of `upstream` that answers every request for a file named `name` under
/// `/files/` with `swap`, and forwards everything else.
fn swapping_mirror(upstream: String, name: String, swap: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("/").to_string();
            let (status, body) = if path.starts_with("/files/") && path.ends_with(&name) {
                (200, swap.clone())
            } else {
                let response = http::get(&format!("{upstream}{path}"), &[]);
                (response.status, response.body)
            };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{address}")
}

#[test]
fn substituted_files_and_pages_are_refused_with_nothing_installed() {
    let mut fixture = Fixture::new(&[]);
    let dir = fixture.dir.path();

    // A mirror serving another build under the same name.
    let evil = build(dir, "tufa-util", "0.1", &[], "evil");
    let mirror = swapping_mirror(
        fixture.server.url.clone(),
        file_name(&fixture.util.wheel).to_string(),
        fs::read(&evil.wheel).unwrap(),
    );
    let proxy = fixture.proxy(&mirror, "cache-mirror");
    assert_refused(
        &proxy,
        dir,
        "mirror",
        "tufa-app",
        "tampered or substituted",
        false,
    );

    // A wheel modified in the index's storage, one byte, same length: it streams, and the
    // response breaks before its end.
    let sha = sha256_hex(&fs::read(&fixture.util.wheel).unwrap());
    let storage = published(&fixture.server.data_dir);
    let stored = format!("files/{}/{sha}", &sha[..2]);
    let original = storage.read(&stored).unwrap();
    let mut modified = original.clone();
    let middle = modified.len() / 2;
    modified[middle] ^= 0xff;
    storage.write(&stored, &modified);
    let proxy = fixture.proxy(&fixture.server.url, "cache-storage");
    assert_refused(
        &proxy,
        dir,
        "storage",
        "tufa-util",
        "does not match its sha256 in the verified page: tampered or substituted",
        false,
    );
    assert!(
        !fixture
            .path("cache-storage")
            .join("files")
            .join(&sha[..2])
            .join(&sha)
            .exists(),
        "never cached"
    );
    storage.write(&stored, &original);

    // The project page target replaced with one pointing at another file (same length).
    let pages = storage.list("tuf/targets/simple/tufa-util");
    assert!(!pages.is_empty());
    for path in pages {
        let page = String::from_utf8(storage.read(&path).unwrap()).unwrap();
        let other = if sha.starts_with('0') { "1" } else { "0" };
        storage.write(
            &path,
            page.replace(&sha, &format!("{other}{}", &sha[1..]))
                .as_bytes(),
        );
    }
    if storage.in_bucket {
        // An index on a bucket keeps the TUF files it served that are named by version or hash
        // (they never change) instead of asking the bucket again: a restarted one serves what
        // the bucket now holds.
        fixture.server.kill();
        fixture.server = TufaServer::start(TUFA.as_ref(), &fixture.server.data_dir, &[]);
    }
    let proxy = fixture.proxy(&fixture.server.url, "cache-page");
    assert_refused(
        &proxy,
        dir,
        "page",
        "tufa-util",
        "target simple/tufa-util/index.json does not match its sha256 hash",
        true,
    );
}

#[test]
fn rollback_and_untrusted_keys_are_refused_with_nothing_installed() {
    let fixture = Fixture::new(&[]);
    let dir = fixture.dir.path();
    let storage = published(&fixture.server.data_dir);
    let timestamp = "tuf/metadata/timestamp.json";
    let old = storage.read(timestamp).unwrap();
    let proxy = fixture.proxy(&fixture.server.url, "cache");
    let target = fixture.path("pip-before");
    assert_installs(
        &pip(&proxy.simple_url(), &target, &["tufa-util"]),
        &target,
        &["tufa_util-0.1"],
    );

    // A newer release is published and seen by the proxy; then the index serves the old
    // timestamp again.
    let newer = build(dir, "tufa-util", "0.2", &[], "newer");
    upload(&fixture.server, &fixture.token, &[&newer.wheel]);
    std::thread::sleep(AFTER_REFRESH);
    let page = http::get(&format!("{}tufa-util/", proxy.simple_url()), &[]);
    assert!(page.text().contains("tufa_util-0.2"), "{}", page.text());
    storage.write(timestamp, &old);
    std::thread::sleep(AFTER_REFRESH);
    assert_refused(
        &proxy,
        dir,
        "rollback",
        "tufa-util",
        "rollback attack: timestamp version",
        true,
    );

    // Metadata signed by keys the trusted root does not name: another repository's root.
    let other = TufaServer::start(TUFA.as_ref(), &fixture.path("other-data"), &[]);
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &other.url,
        &fixture.root(),
        &fixture.path("cache-other"),
        &[],
    );
    assert_refused(
        &proxy,
        dir,
        "untrusted",
        "tufa-util",
        "timestamp is not signed by a threshold of trusted keys",
        true,
    );
}

#[test]
fn an_expired_timestamp_is_a_freeze_attack_with_nothing_installed() {
    let mut fixture = Fixture::new(&["--timestamp-expiry", "2"]);
    // The index stops re-signing; its files stay served as they are, by a static server.
    fixture.server.kill();
    let frozen_dir = fixture.path("frozen");
    published(&fixture.server.data_dir).export(&frozen_dir);
    let frozen = StaticServer::start(frozen_dir);
    std::thread::sleep(Duration::from_secs(3));
    let proxy = fixture.proxy(&frozen.url(), "cache");
    assert_refused(
        &proxy,
        fixture.dir.path(),
        "freeze",
        "tufa-util",
        "freeze attack: timestamp expired at",
        true,
    );
}

// ---- Limits and deadlines, against repositories built with tufa-repo ----

const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// A PEP 691 page for `project` listing `files` (name and content), each at `/files/<name>`.
fn page_json(project: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, content)| {
            serde_json::json!({
                "filename": name,
                "url": format!("/files/{name}"),
                "hashes": {"sha256": sha256_hex(content)},
                "size": content.len(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": project,
        "files": files,
    }))
    .unwrap()
}

/// A signed repository laid out as an index serves it (`tuf/metadata`, `tuf/targets`), built
/// with tufa-repo under `dir`, with one page per project. Returns the trusted root's path.
fn signed_repository(dir: &Path, pages: Vec<(String, Vec<u8>)>) -> PathBuf {
    let now = SystemTime::now();
    let mut repository = common::development_repository(dir);
    let changes: Vec<PageChange> = pages
        .into_iter()
        .map(|(project, page)| PageChange {
            project,
            view: View::Simple,
            page: Some(page),
        })
        .collect();
    repository.publish(&changes, now).unwrap();
    dir.join("tuf/metadata/1.root.json")
}

/// An index on 127.0.0.1 that serves the files under `root`, except the requests `hostile`
/// answers itself (returning true), the way a misbehaving index would. One thread per
/// connection; threads still busy when the test ends end with the test process.
fn hostile_index(
    root: PathBuf,
    hostile: impl Fn(&str, &mut TcpStream) -> bool + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let hostile = Arc::new(hostile);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (root, hostile) = (root.clone(), Arc::clone(&hostile));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                if hostile(&path, &mut stream) {
                    return;
                }
                let file = (!path.contains("..") && !path.contains('%'))
                    .then(|| fs::read(root.join(path.trim_start_matches('/'))).ok())
                    .flatten();
                let _ = match file {
                    Some(body) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(&body)),
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    format!("http://{address}")
}

#[test]
fn a_project_name_too_long_for_a_file_name_is_served_verified() {
    let dir = tempfile::tempdir().unwrap();
    // Percent-encoded as one file name, `simple/<name>/index.json` would be 262 bytes.
    let name = format!("long-{}", "n".repeat(235));
    let root = signed_repository(
        dir.path(),
        vec![(name.clone(), page_json(&name, &[("long-1.0.tar.gz", b"x")]))],
    );
    let index = StaticServer::start(dir.path());
    let cache = dir.path().join("cache");
    let proxy = TufaProxy::start(TUFA.as_ref(), &index.url(), &root, &cache, &[]);
    let page = http::get(
        &format!("{}{name}/", proxy.simple_url()),
        &[("Accept", JSON)],
    );
    assert_eq!(page.status, 200, "{}\n{}", page.reason, proxy.log());
    assert_eq!(page.json()["name"], name.as_str());
    assert_eq!(page.json()["files"][0]["filename"], "long-1.0.tar.gz");
    let stored: Vec<String> = fs::read_dir(cache.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].len() <= tufa_client::MAX_FILE_NAME, "{stored:?}");
}

#[test]
fn a_hanging_index_holds_up_neither_a_cached_page_nor_other_projects() {
    let dir = tempfile::tempdir().unwrap();
    let projects: Vec<String> = (0..9).map(|i| format!("project-{i}")).collect();
    let root = signed_repository(
        dir.path(),
        projects
            .iter()
            .map(|p| (p.clone(), page_json(p, &[])))
            .collect(),
    );
    // Once hanging, the index accepts connections and reads requests, and answers none of
    // them for 30 s.
    let hanging = Arc::new(AtomicBool::new(false));
    let hang = Arc::clone(&hanging);
    let index = hostile_index(dir.path().to_path_buf(), move |_, _| {
        let hangs = hang.load(Ordering::SeqCst);
        if hangs {
            std::thread::sleep(Duration::from_secs(30));
        }
        hangs
    });
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &index,
        &root,
        &dir.path().join("cache"),
        &["--refresh-interval-ms", REFRESH_MS],
    );
    let page = |project: &str| {
        http::get(
            &format!("{}{project}/", proxy.simple_url()),
            &[("Accept", JSON)],
        )
    };
    let first = page("project-0");
    assert_eq!(first.status, 200, "{}", first.reason);

    hanging.store(true, Ordering::SeqCst);
    std::thread::sleep(AFTER_REFRESH);
    // Eight requests for pages the proxy never verified wait for the hanging index...
    let waiting: Vec<TcpStream> = projects[1..]
        .iter()
        .map(|project| {
            let address = proxy.url.trim_start_matches("http://");
            let mut stream = TcpStream::connect(address).unwrap();
            write!(
                stream,
                "GET /simple/{project}/ HTTP/1.1\r\nHost: {address}\r\nAccept: {JSON}\r\n\r\n"
            )
            .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...and hold up no one: the page the proxy verified before comes from its cache once the
    // refresh deadline (500 ms by default) passes, while the index still hangs.
    let cached = page("project-0");
    assert_eq!(cached.status, 200, "{}\n{}", cached.reason, proxy.log());
    assert_eq!(cached.json()["name"], "project-0");
    let deadline_passed = "no answer within the refresh deadline of 500 ms";
    let log = proxy.log_containing(deadline_passed);
    assert!(log.contains(deadline_passed), "{log}");
    drop(waiting);
}

#[test]
fn slow_downloads_are_cut_off_with_a_clear_error_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (drip, steady) = ("slow-1.0.tar.gz", "slow-1.0-py3-none-any.whl");
    let mut other = content.clone();
    other.reverse();
    let root = signed_repository(
        dir.path(),
        vec![(
            "slow".to_string(),
            page_json("slow", &[(drip, &content), (steady, &other)]),
        )],
    );
    fs::create_dir_all(dir.path().join("files")).unwrap();
    fs::write(dir.path().join("files").join(drip), &content).unwrap();
    fs::write(dir.path().join("files").join(steady), &other).unwrap();
    // Files come with their full length announced, then 1 byte/s (the drip) or 500 bytes/s
    // (steady, fast enough for the minimum rate but not for the deadline), for at most 30 s.
    // Each records how long it was sent before the proxy hung up.
    let hung_up: Arc<Mutex<Vec<(String, Duration)>>> = Arc::default();
    let record = Arc::clone(&hung_up);
    let files = dir.path().join("files");
    let index = hostile_index(dir.path().to_path_buf(), move |path, stream| {
        let Some(name) = path.strip_prefix("/files/") else {
            return false;
        };
        let body = fs::read(files.join(name)).unwrap();
        let step = if name == drip { 1 } else { 500 };
        let started = Instant::now();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        for chunk in body.chunks(step).take(30) {
            if stream
                .write_all(chunk)
                .and_then(|()| stream.flush())
                .is_err()
            {
                record
                    .lock()
                    .unwrap()
                    .push((name.to_string(), started.elapsed()));
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        true
    });
    let cache = dir.path().join("cache");
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &index,
        &root,
        &cache,
        &[
            "--timeout",
            "2",
            "--download-min-rate",
            "100",
            "--download-deadline",
            "4",
        ],
    );
    let page = http::get(&format!("{}slow/", proxy.simple_url()), &[("Accept", JSON)]);
    assert_eq!(page.status, 200, "{}", page.reason);
    let urls: Vec<String> = page.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap().to_string())
        .collect();
    let downloads: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = urls
            .iter()
            .map(|url| {
                let url = format!("{}{url}", proxy.url);
                scope.spawn(move || {
                    let started = Instant::now();
                    (http::get(&url, &[]), started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (response, took) in &downloads {
        // The status went out before the body: the body breaks off short.
        assert_eq!(response.status, 200, "{}", response.reason);
        assert!(response.body.len() < content.len());
        assert!(*took < Duration::from_secs(20), "{took:?}");
    }
    proxy.log_containing(&format!("slow retrieval attack: {drip}"));
    let log = proxy.log_containing(&format!("slow retrieval attack: {steady}"));
    let dripped = format!("slow retrieval attack: {drip} of slow came at ");
    assert!(
        log.split(&dripped).nth(1).is_some_and(|rest| rest
            .contains("bytes/s, below the minimum of 100 bytes/s; the download was stopped")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "slow retrieval attack: {steady} of slow was not complete after 4s, the download \
             deadline; the download was stopped"
        )),
        "{log}"
    );
    // The proxy hung up on both, long before they would have ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hung_up.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hung_up = hung_up.lock().unwrap().clone();
    assert_eq!(hung_up.len(), 2, "{hung_up:?}");
    assert!(
        hung_up
            .iter()
            .all(|(_, after)| *after < Duration::from_secs(15))
    );
    // Nothing was cached, not even in part.
    for bytes in [&content, &other] {
        let sha = sha256_hex(bytes);
        let shard = cache.join("files").join(&sha[..2]);
        let left: Vec<_> = fs::read_dir(&shard)
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}
