//! Bounded disk against a real `tufa serve`: after many single uploads, each its own signing
//! batch, and the grace period, the data directory holds little more than the distribution files
//! and one copy of the current metadata.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{TUFA, ok, token, tufa};
use tufa_testkit::http;
use tufa_testkit::{TufaServer, wheel_with};

/// Bytes a file takes on disk (as `du` counts them) and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Size {
    files: u64,
    bytes: u64,
    allocated: u64,
}

impl Size {
    /// Counts `path`, unless the publisher removed it meanwhile.
    fn add(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        self.files += 1;
        self.bytes += meta.len();
        self.allocated += meta.blocks() * 512;
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            walk(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

/// Every file of the data directory by its first path component (`files`, `tuf/metadata`, ...).
fn du(data: &Path) -> BTreeMap<String, Size> {
    let mut paths = Vec::new();
    walk(data, &mut paths);
    let mut sizes: BTreeMap<String, Size> = BTreeMap::new();
    for path in paths {
        let relative = path
            .strip_prefix(data)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let mut parts = relative.split('/');
        let first = parts.next().unwrap().to_string();
        let key = if first == "tuf" {
            format!("tuf/{}", parts.next().unwrap_or_default())
        } else {
            first
        };
        sizes.entry(key).or_default().add(&path);
    }
    sizes
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The files the current timestamp reaches (every root version too: roots are never removed),
/// relative to `tuf/`.
fn reachable(tuf: &Path) -> HashSet<String> {
    let mut files = HashSet::new();
    let metadata = tuf.join("metadata");
    files.insert("metadata/timestamp.json".to_string());
    for entry in std::fs::read_dir(&metadata).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".root.json") {
            files.insert(format!("metadata/{name}"));
        }
    }
    let timestamp = read_json(&metadata.join("timestamp.json"));
    let version = &timestamp["signed"]["meta"]["snapshot.json"]["version"];
    let snapshot_file = format!("metadata/{version}.snapshot.json");
    let snapshot = read_json(&tuf.join(&snapshot_file));
    files.insert(snapshot_file);
    for (role, meta) in snapshot["signed"]["meta"].as_object().unwrap() {
        let file = format!("metadata/{}.{role}", meta["version"]);
        let listed = read_json(&tuf.join(&file));
        files.insert(file);
        for (target, info) in listed["signed"]["targets"].as_object().unwrap() {
            let sha256 = info["hashes"]["sha256"].as_str().unwrap();
            let (dir, base) = target.rsplit_once('/').unwrap();
            files.insert(format!("targets/{dir}/{sha256}.{base}"));
        }
    }
    files
}

fn server_status(server: &TufaServer) -> serde_json::Value {
    http::get(&format!("{}/status", server.url), &[]).json()
}

/// A wheel of about 4 KiB, the size of the wheels the issue measured with.
fn wheel(project: &str, version: &str) -> Vec<u8> {
    let module = project.replace('-', "_");
    let data =
        format!("{project} {version} ").repeat(3 * 1024 / (project.len() + version.len() + 2));
    wheel_with(
        project,
        version,
        &[(format!("{module}/data.txt"), data.into_bytes())],
    )
}

/// Uploads one wheel and waits until its change is signed, so that it is a batch of its own.
/// Returns the wheel's size.
fn upload_signed(server: &TufaServer, auth: &str, project: &str, version: &str) -> usize {
    let wheel = wheel(project, version);
    let (content_type, body) = http::wheel_upload(project, version, &wheel);
    let response = http::request(
        "POST",
        &server.upload_url(),
        &[("Content-Type", &content_type), ("Authorization", auth)],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.reason);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server_status(server);
        if status["signed_serial"] == status["last_serial"] {
            return wheel.len();
        }
        assert!(Instant::now() < deadline, "not signed: {status}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Files under tuf/metadata and tuf/targets that the current timestamp does not reach.
fn unreachable(tuf: &Path) -> (Vec<String>, Size) {
    let reachable = reachable(tuf);
    let mut paths = Vec::new();
    walk(&tuf.join("metadata"), &mut paths);
    walk(&tuf.join("targets"), &mut paths);
    let mut size = Size::default();
    let mut files = Vec::new();
    for path in superseded_log_files(tuf) {
        size.add(&path);
        files.push(
            path.strip_prefix(tuf)
                .unwrap()
                .to_string_lossy()
                .to_string(),
        );
    }
    for path in paths {
        let file = path
            .strip_prefix(tuf)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !reachable.contains(&file) {
            size.add(&path);
            files.push(file);
        }
    }
    files.sort();
    (files, size)
}

/// The transparency log's files that no reader needs any more: every proof but the latest
/// timestamp's, and each partial tile or bundle that a wider or full one replaced.
fn superseded_log_files(tuf: &Path) -> Vec<std::path::PathBuf> {
    let log = tuf.join("log");
    let mut paths = Vec::new();
    walk(&log, &mut paths);
    let relative = |path: &Path| {
        path.strip_prefix(&log)
            .unwrap()
            .to_string_lossy()
            .to_string()
    };
    let names: HashSet<String> = paths.iter().map(|p| relative(p)).collect();
    let newest_proof = names
        .iter()
        .filter_map(|name| name.strip_prefix("proof/")?.parse::<u64>().ok())
        .max();
    paths
        .into_iter()
        .filter(|path| {
            let name = relative(path);
            if let Some(version) = name.strip_prefix("proof/") {
                return version.parse::<u64>().ok() != newest_proof;
            }
            let Some((tile, width)) = name.split_once(".p/") else {
                return false;
            };
            let width: u64 = width.parse().unwrap();
            names.contains(tile)
                || names.iter().any(|other| {
                    other
                        .strip_prefix(tile)
                        .and_then(|rest| rest.strip_prefix(".p/"))
                        .and_then(|w| w.parse::<u64>().ok())
                        .is_some_and(|w| w > width)
                })
        })
        .collect()
}

/// `(files, bytes)` of a part in `/status`'s `disk`.
fn status_part(status: &serde_json::Value, part: &str) -> (u64, u64) {
    let tally = &status["disk"][part];
    (
        tally["files"]
            .as_u64()
            .unwrap_or_else(|| panic!("{part} in {status}")),
        tally["bytes"].as_u64().unwrap(),
    )
}

/// The value of a metric line `name value` in `/metrics`.
fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
        .parse()
        .unwrap()
}

/// `(files, bytes)` of the `disk <part> <files> files <bytes> bytes` row of `tufa status`.
fn cli_part(output: &str, part: &str) -> (u64, u64) {
    output
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.strip_prefix("disk ")?.split_whitespace().collect();
            let [label @ .., files, "files", bytes, "bytes"] = words.as_slice() else {
                return None;
            };
            (label.join(" ") == part).then(|| (files.parse().unwrap(), bytes.parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("no disk row {part} in:\n{output}"))
}

/// This test measures the data directory itself (bytes allocated, the SQLite WAL), so every
/// start runs on SQLite and the data directory's storage whatever `TUFA_TEST_BACKEND` says
/// (`tufa serve` records no choice that is the default, and the testkit would move a prepared
/// directory into a bucket).
fn start(data: &Path, extra: &[&str]) -> TufaServer {
    let mut args = vec!["--database", "", "--storage", ""];
    args.extend(extra);
    TufaServer::start(TUFA.as_ref(), data, &args)
}

fn tufa_status(data: &Path) -> String {
    ok(
        tufa(&["status", "--data", data.to_str().unwrap()]),
        "tufa status",
    )
}

/// The WAL of an idle index at most a few seconds after it was truncated.
const WAL_AFTER_TRUNCATION: u64 = 64 * 1024;

#[test]
fn a_thousand_single_uploads_leave_the_files_and_one_copy_of_the_metadata() {
    let uploads: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tuf = data.join("tuf");
    let alice = {
        let server = start(&data, &[]);
        token(&server.data_dir, "alice", None)
    };
    let auth = http::basic_auth(&alice);
    let server = start(&data, &["--grace", "2"]);
    let started = Instant::now();
    let first_timestamp = server_status(&server)["timestamp_version"]
        .as_u64()
        .unwrap();
    let mut uploaded = 0;
    for n in 0..uploads {
        let project = format!("disk-{}", n % 50);
        uploaded += upload_signed(&server, &auth, &project, &format!("1.{}", n / 50));
    }
    let batches = server_status(&server)["timestamp_version"]
        .as_u64()
        .unwrap()
        - first_timestamp;
    eprintln!(
        "{uploads} uploads ({uploaded} bytes of wheels) in {:?}, {batches} signing batches",
        started.elapsed()
    );
    assert!(
        batches >= uploads as u64,
        "each upload is a batch of its own: {batches}"
    );
    for (part, size) in du(&data) {
        eprintln!("after the uploads: {part:<18} {size:?}");
    }

    // The grace period passes, the publisher removes what it superseded, and the idle index
    // truncates the database's WAL; then a walk of the data directory reports it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let quiet = loop {
        let status = server_status(&server);
        let wal = std::fs::metadata(data.join("tufa.db-wal")).map_or(0, |m| m.len());
        // The publisher's lease is renewed in the database every second, so the WAL is empty
        // only for a moment after each truncation; a few renewals' pages show it was truncated.
        if status["awaiting_removal"]["files"] == 0 && wal <= WAL_AFTER_TRUNCATION {
            break unix_now();
        }
        assert!(
            Instant::now() < deadline,
            "not collected: {status}, WAL {wal} bytes"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = loop {
        let status = server_status(&server);
        if status["disk"]["measured_at"]
            .as_u64()
            .is_some_and(|at| at > quiet)
        {
            break status;
        }
        assert!(Instant::now() < deadline, "no walk after {quiet}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let parts = du(&data);
    for (part, size) in &parts {
        eprintln!("after the grace period: {part:<18} {size:?}");
    }
    let mut total = Size::default();
    for size in parts.values() {
        total.files += size.files;
        total.bytes += size.bytes;
        total.allocated += size.allocated;
    }
    let distribution = parts["files"];
    let mut current = Size::default();
    for file in reachable(&tuf) {
        current.add(&tuf.join(file));
    }
    // The transparency log is published too: every file of it but those superseded.
    let superseded = superseded_log_files(&tuf);
    let mut log_files = Vec::new();
    walk(&tuf.join("log"), &mut log_files);
    for path in log_files.iter().filter(|path| !superseded.contains(path)) {
        current.add(path);
    }
    eprintln!(
        "current metadata: {current:?}; distribution files: {distribution:?}; total: {total:?}"
    );
    assert_eq!(unreachable(&tuf), (vec![], Size::default()));
    assert!(
        total.bytes <= 2 * distribution.bytes + current.bytes,
        "{total:?} is more than twice {distribution:?} plus {current:?}"
    );
    assert!(
        total.allocated <= 2 * distribution.allocated + current.allocated,
        "on disk {total:?} is more than twice {distribution:?} plus {current:?}"
    );

    // What /status, /metrics and `tufa status` report is what a walk finds.
    let tuf_walk = {
        let mut size = Size::default();
        for (part, part_size) in &parts {
            if part.starts_with("tuf/") {
                size.files += part_size.files;
                size.bytes += part_size.bytes;
            }
        }
        (size.files, size.bytes)
    };
    assert_eq!(status_part(&status, "tuf"), tuf_walk, "{status}");
    assert_eq!(
        status_part(&status, "distribution_files"),
        (distribution.files, distribution.bytes)
    );
    // The database grows between the two walks (lease renewals): compared without it.
    let database = ["tufa.db", "tufa.db-wal", "tufa.db-shm"]
        .iter()
        .filter_map(|part| parts.get(*part))
        .fold((0, 0), |(files, bytes), size| {
            (files + size.files, bytes + size.bytes)
        });
    let (status_files, status_bytes) = status_part(&status, "total");
    let (status_db_files, status_db_bytes) = status_part(&status, "database");
    assert_eq!(
        (
            status_files - status_db_files,
            status_bytes - status_db_bytes
        ),
        (total.files - database.0, total.bytes - database.1)
    );
    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    assert_eq!(
        metric(&metrics, "tufa_disk_bytes{part=\"tuf\"}"),
        tuf_walk.1
    );
    assert_eq!(
        metric(&metrics, "tufa_disk_files{part=\"tuf\"}"),
        tuf_walk.0
    );
    assert_eq!(
        metric(&metrics, "tufa_disk_bytes{part=\"distribution_files\"}"),
        distribution.bytes
    );
    assert_eq!(metric(&metrics, "tufa_awaiting_removal_files"), 0);
    assert_eq!(metric(&metrics, "tufa_awaiting_removal_bytes"), 0);
    let cli = tufa_status(&data);
    assert_eq!(cli_part(&cli, "tuf/"), tuf_walk, "{cli}");
    assert_eq!(cli_part(&cli, "published"), (current.files, current.bytes));
    assert_eq!(cli_part(&cli, "awaiting removal"), (0, 0));
    assert_eq!(
        cli_part(&cli, "files/"),
        (distribution.files, distribution.bytes)
    );
    drop(server);

    // After a restart with the default grace period, what waits is counted exactly: files the
    // new batches superseded.
    let server = start(&data, &[]);
    for n in 0..5 {
        upload_signed(&server, &auth, &format!("disk-{n}"), "2.0");
    }
    let (files, size) = unreachable(&tuf);
    assert!(files.len() >= 10, "{files:?}");
    // The store is looked through beside publishing: counted once that is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = server_status(&server);
        if status["awaiting_removal"]["counting"] == false {
            break status;
        }
        assert!(Instant::now() < deadline, "still counting: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (
            status["awaiting_removal"]["files"].as_u64().unwrap(),
            status["awaiting_removal"]["bytes"].as_u64().unwrap()
        ),
        (files.len() as u64, size.bytes),
        "{status}\n{files:?}"
    );
    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    assert_eq!(
        metric(&metrics, "tufa_awaiting_removal_files"),
        files.len() as u64
    );
    assert_eq!(metric(&metrics, "tufa_awaiting_removal_bytes"), size.bytes);
    let cli = tufa_status(&data);
    assert_eq!(
        cli_part(&cli, "awaiting removal"),
        (files.len() as u64, size.bytes),
        "{cli}"
    );

    // A crash loses the queue: the restart finds what nothing reaches and removes it once the
    // grace period has passed from the restart.
    let mut server = server;
    server.kill();
    let server = start(&data, &["--grace", "2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server_status(&server)["awaiting_removal"]["files"] != 0
        || !unreachable(&tuf).0.is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "not collected after a restart: {:?}",
            unreachable(&tuf)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
