//! Several `tufa serve` replicas on one database and one storage: any of them takes uploads and
//! serves, the one holding the publisher lease signs, and another takes over when it dies or
//! stalls. Real processes, killed with SIGKILL or paused with SIGSTOP.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TUFA, python_tuf_at};
use serde_json::Value;
use tufa_testkit::TufaServer;
use tufa_testkit::http::{basic_auth, get, try_request, wheel_upload};

/// A short lease, so that a stalled publisher is replaced within about a second; few bin roles,
/// so that each round's walk over the served metadata stays short.
const REPLICA_ARGS: &[&str] = &["--publisher-lease-ttl", "1", "--bin-bits", "3"];

fn start(data: &Path) -> TufaServer {
    TufaServer::start(Path::new(TUFA), data, REPLICA_ARGS)
}

fn status(url: &str) -> Value {
    get(&format!("{url}/status"), &[]).json()
}

fn role(url: &str) -> String {
    status(url)["publisher"]["role"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits (up to 30 s) until the replica at `url` has `wanted` role.
fn wait_for_role(server: &TufaServer, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while role(&server.url) != wanted {
        assert!(
            Instant::now() < deadline,
            "{} did not become {wanted} within 30 s: {}\n{}",
            server.url,
            status(&server.url),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Uploads a minimal wheel; `Err` when the replica is gone or refuses it.
fn upload(url: &str, token: &str, project: &str, version: &str) -> Result<(), String> {
    let wheel = tufa_testkit::minimal_wheel(project, version);
    let (content_type, body) = wheel_upload(project, version, &wheel);
    let response = try_request(
        "POST",
        &format!("{url}/legacy/"),
        &[
            ("Content-Type", &content_type),
            ("Authorization", &basic_auth(token)),
        ],
        &body,
    )?;
    if response.status == 200 {
        Ok(())
    } else {
        Err(format!("{} {}", response.status, response.reason))
    }
}

/// Waits (up to 60 s) until the serial `serial` is signed, as the replica at `url` reports it.
fn wait_signed(url: &str, serial: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status(url);
        if status["signed_serial"].as_i64() >= Some(serial) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serial {serial} not signed within 60 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The versions of `project` that python-tuf verified, through the replica at `url`.
fn verified_versions(tuf: &Value, project: &str) -> BTreeSet<String> {
    let Some(page) = tuf["pages"][project].as_object() else {
        return BTreeSet::new();
    };
    page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn python_tuf(url: &str, data: &Path, cache: &Path, projects: &[&str]) -> Value {
    python_tuf_at(url, &data.join("trusted-root.json"), cache, projects)
        .unwrap_or_else(|e| panic!("python-tuf failed through {url}:\n{e}"))
}

fn kill_signal(server: &TufaServer, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// What a publisher stopped between its snapshot and its timestamp leaves: the next versions of
/// the snapshot and of every bin role, which no timestamp refers to (here with content no
/// publisher would write, so that anything still reaching them fails to verify). Written into
/// the data directory, where the default storage keeps the repository; with another storage
/// (`TUFA_TEST_BACKEND`) the stalled publisher is replaced all the same. Returns the files.
fn plant_half_written_batch(url: &str, data: &Path) -> Vec<PathBuf> {
    let metadata_dir = data.join("tuf/metadata");
    if !metadata_dir.is_dir() {
        return Vec::new();
    }
    let timestamp = get(&format!("{url}/tuf/metadata/timestamp.json"), &[]).json();
    let version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snapshot = get(&format!("{url}/tuf/metadata/{version}.snapshot.json"), &[]).json();
    let mut planted = vec![metadata_dir.join(format!("{}.snapshot.json", version + 1))];
    for (role, meta) in snapshot["signed"]["meta"].as_object().unwrap() {
        if role.starts_with("bin-") {
            let next = meta["version"].as_u64().unwrap() + 1;
            planted.push(metadata_dir.join(format!("{next}.{role}")));
        }
    }
    for file in &planted {
        std::fs::write(file, HALF_WRITTEN).unwrap();
    }
    planted
}

const HALF_WRITTEN: &[u8] = br#"{"signed": {"_type": "half-written"}, "signatures": []}"#;

#[test]
fn an_upload_on_any_replica_is_signed_and_another_replica_takes_over_from_a_dead_or_stalled_publisher()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = dir.path().join("tuf-cache");
    let a = start(&data);
    let mut b = start(&data);
    wait_for_role(&a, "publisher");
    wait_for_role(&b, "replica");
    let holder = status(&a.url)["publisher"]["holder"].clone();
    assert_eq!(status(&b.url)["publisher"]["holder"], holder);
    assert_eq!(status(&a.url)["publisher"]["replica"], holder);
    let token = a.create_token("alice");

    // An upload on the replica that does not publish: the publisher notices it and signs it,
    // and both replicas serve it.
    upload(&b.url, &token, "demo", "1.0").unwrap();
    let serial = status(&b.url)["last_serial"].as_i64().unwrap();
    wait_signed(&b.url, serial);
    for server in [&a, &b] {
        let tuf = python_tuf(&server.url, &data, &cache, &["demo"]);
        assert_eq!(
            verified_versions(&tuf, "demo"),
            BTreeSet::from(["1.0".into()])
        );
        let page = get(&format!("{}/simple/demo/", server.url), &[]).text();
        assert!(page.contains("demo-1.0-"), "{page}");
    }

    // The publisher stalls (SIGSTOP) in the middle of a batch: its bin role and snapshot are
    // written, its timestamp is not. The other replica takes over once the lease runs out and
    // signs over them.
    kill_signal(&a, "-STOP");
    let planted = plant_half_written_batch(&b.url, &data);
    upload(&b.url, &token, "demo", "2.0").unwrap();
    wait_for_role(&b, "publisher");
    let serial = status(&b.url)["last_serial"].as_i64().unwrap();
    wait_signed(&b.url, serial);
    let tuf = python_tuf(&b.url, &data, &cache, &["demo"]);
    assert!(verified_versions(&tuf, "demo").contains("2.0"), "{tuf}");
    check_served_objects(&b.url);
    // Whoever fetched them meanwhile may keep them as immutable: the new publisher signed
    // above their versions instead of over them.
    for file in &planted {
        assert_eq!(
            std::fs::read(file).unwrap(),
            HALF_WRITTEN,
            "{}",
            file.display()
        );
    }

    // It wakes up: it finds the lease taken, signs nothing more, and serves.
    kill_signal(&a, "-CONT");
    wait_for_role(&a, "replica");
    assert!(
        a.log_containing("lost the publisher lease")
            .contains("lost the publisher lease"),
        "{}",
        a.log()
    );
    upload(&a.url, &token, "demo", "3.0").unwrap();
    let serial = status(&a.url)["last_serial"].as_i64().unwrap();
    wait_signed(&a.url, serial);
    let tuf = python_tuf(&a.url, &data, &cache, &["demo"]);
    assert_eq!(
        verified_versions(&tuf, "demo"),
        BTreeSet::from(["1.0".into(), "2.0".into(), "3.0".into()])
    );

    // The publisher dies (SIGKILL): the first replica takes over and signs new uploads.
    b.kill();
    upload(&a.url, &token, "demo", "4.0").unwrap();
    wait_for_role(&a, "publisher");
    let serial = status(&a.url)["last_serial"].as_i64().unwrap();
    wait_signed(&a.url, serial);
    let tuf = python_tuf(&a.url, &data, &cache, &["demo"]);
    assert!(verified_versions(&tuf, "demo").contains("4.0"), "{tuf}");
    let metrics = get(&format!("{}/metrics", a.url), &[]).text();
    assert!(metrics.contains("tufa_publisher{replica="), "{metrics}");
    assert!(metrics.contains("} 1\n"), "{metrics}");

    // A replica started with the cooldown view on: the publisher, started without it, follows
    // the policy the database now records, serves the view and signs its pages.
    let c = TufaServer::start(
        Path::new(TUFA),
        &data,
        &[REPLICA_ARGS, &["--cooldown", "1s"]].concat(),
    );
    wait_for_role(&c, "replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&a.url)["cooldown"].is_null() {
        assert!(
            Instant::now() < deadline,
            "the publisher did not follow the cooldown policy: {}",
            status(&a.url)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let serial = status(&a.url)["last_serial"].as_i64().unwrap();
    wait_signed(&a.url, serial);
    let tuf = python_tuf(&a.url, &data, &cache, &["cooldown/demo"]);
    assert!(!tuf["pages"]["cooldown/demo"].is_null(), "{tuf}");
    assert_eq!(
        get(&format!("{}/cooldown/simple/demo/", a.url), &[]).status,
        200
    );
}

/// Every object the served timestamp reaches, through the replica at `url`: snapshot, the roles
/// it lists, and each bin role's targets. Panics naming a missing one.
fn check_served_objects(url: &str) {
    let metadata = |file: &str| -> Value {
        let response = get(&format!("{url}/tuf/metadata/{file}"), &[]);
        assert_eq!(
            response.status, 200,
            "{file} is missing, but the served metadata refers to it"
        );
        response.json()
    };
    let timestamp = metadata("timestamp.json");
    let version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snapshot = metadata(&format!("{version}.snapshot.json"));
    for (role, meta) in snapshot["signed"]["meta"].as_object().unwrap() {
        let version = meta["version"].as_u64().unwrap();
        let role_metadata = metadata(&format!("{version}.{role}"));
        if !role.starts_with("bin-") {
            continue;
        }
        for (target, file) in role_metadata["signed"]["targets"].as_object().unwrap() {
            let sha256 = file["hashes"]["sha256"].as_str().unwrap();
            let (dir, name) = target.rsplit_once('/').unwrap();
            let response = get(&format!("{url}/tuf/targets/{dir}/{sha256}.{name}"), &[]);
            assert_eq!(
                response.status, 200,
                "the target {target} ({sha256}) is missing, but {version}.{role} lists it"
            );
        }
    }
}

const PROJECTS: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];
const KILLS: usize = 20;

#[test]
fn three_replicas_lose_no_acknowledged_upload_when_the_publisher_is_killed_mid_batch_again_and_again()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = dir.path().join("tuf-cache");
    let first = start(&data);
    wait_for_role(&first, "publisher");
    let mut servers = [first, start(&data), start(&data)];
    let token = servers[0].create_token("alice");
    let urls: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(servers.iter().map(|s| s.url.clone()).collect()));
    // (project, version) of every upload a replica acknowledged.
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let uploaders: Vec<_> = (0..3)
        .map(|thread| {
            let (urls, acknowledged, stop, token) = (
                Arc::clone(&urls),
                Arc::clone(&acknowledged),
                Arc::clone(&stop),
                token.clone(),
            );
            std::thread::spawn(move || {
                let mut attempt = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let url = {
                        let urls = urls.lock().unwrap();
                        urls[(attempt + thread) % urls.len()].clone()
                    };
                    let project = PROJECTS[(attempt * 3 + thread) % PROJECTS.len()];
                    let version = format!("{thread}.{attempt}");
                    if upload(&url, &token, project, &version).is_ok() {
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((project.to_string(), version));
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
            })
        })
        .collect();

    let mut orphans_seen = 0;
    for round in 0..KILLS {
        std::thread::sleep(Duration::from_millis(150 + (round as u64 * 137) % 400));
        // The publisher, caught while the journal holds changes it has not signed: a batch in
        // progress or about to start.
        let deadline = Instant::now() + Duration::from_secs(30);
        let publisher = loop {
            let found = servers.iter().position(|s| {
                let status = status(&s.url);
                status["publisher"]["role"] == "publisher"
                    && status["last_serial"].as_i64() > status["signed_serial"].as_i64()
            });
            if let Some(found) = found {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no publisher with changes to sign within 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        servers[publisher].kill();
        let survivor = servers[(publisher + 1) % servers.len()].url.clone();
        // A batch cut short after its snapshot was written and before its timestamp: an object
        // no timestamp refers to yet.
        let timestamp = get(&format!("{survivor}/tuf/metadata/timestamp.json"), &[]).json();
        let next = timestamp["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap()
            + 1;
        if get(
            &format!("{survivor}/tuf/metadata/{next}.snapshot.json"),
            &[],
        )
        .status
            == 200
        {
            orphans_seen += 1;
        }
        servers[publisher] = start(&data);
        urls.lock().unwrap()[publisher] = servers[publisher].url.clone();

        // Every upload acknowledged so far is signed, and python-tuf verifies it through any
        // replica; the served timestamp reaches nothing missing.
        let acknowledged_now = acknowledged.lock().unwrap().clone();
        let reader = &servers[round % servers.len()].url;
        let last = status(reader)["last_serial"].as_i64().unwrap();
        wait_signed(reader, last);
        check_served_objects(reader);
        let tuf = python_tuf(reader, &data, &cache, &PROJECTS);
        for (project, version) in &acknowledged_now {
            assert!(
                verified_versions(&tuf, project).contains(version),
                "round {round}: {project} {version} was acknowledged but python-tuf does not \
                 find it signed through {reader}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for uploader in uploaders {
        uploader.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let reader = &servers[0].url;
    let last = status(reader)["last_serial"].as_i64().unwrap();
    wait_signed(reader, last);
    check_served_objects(reader);
    let tuf = python_tuf(reader, &data, &cache, &PROJECTS);
    for (project, version) in &acknowledged {
        assert!(
            verified_versions(&tuf, project).contains(version),
            "{project} {version} was acknowledged but is not signed"
        );
    }
    let publishers = servers
        .iter()
        .filter(|s| role(&s.url) == "publisher")
        .count();
    assert_eq!(publishers, 1, "exactly one replica publishes");
    eprintln!(
        "{KILLS} publishers killed with changes to sign ({orphans_seen} of them after writing a \
         snapshot no timestamp referred to yet); {} uploads acknowledged, all signed",
        acknowledged.len()
    );
}

/// Uploads `content` as `filename` (a wheel of `project` 1.0); `Err` when the replica refuses it.
fn upload_as(
    url: &str,
    token: &str,
    project: &str,
    filename: &str,
    content: &[u8],
) -> Result<(), String> {
    let (content_type, body) = tufa_testkit::http::multipart(
        &[
            (":action", "file_upload"),
            ("name", project),
            ("version", "1.0"),
            ("filetype", "bdist_wheel"),
            ("sha256_digest", &tufa_testkit::sha256_hex(content)),
        ],
        filename,
        content,
    );
    let response = try_request(
        "POST",
        &format!("{url}/legacy/"),
        &[
            ("Content-Type", &content_type),
            ("Authorization", &basic_auth(token)),
        ],
        &body,
    )?;
    if response.status == 200 {
        Ok(())
    } else {
        Err(format!("{} {}", response.status, response.reason))
    }
}

const RACE_ROUNDS: usize = 160;
const RACES_AT_ONCE: usize = 4;

#[test]
fn an_upload_that_loses_a_race_on_one_replica_never_removes_a_file_another_replica_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = start(&data);
    wait_for_role(&a, "publisher");
    let b = start(&data);
    let token = a.create_token("alice");
    // (file name, content) of every upload a replica acknowledged.
    let acknowledged: Mutex<Vec<(String, Vec<u8>)>> = Mutex::default();
    let mut lost = 0;
    for batch in 0..RACE_ROUNDS / RACES_AT_ONCE {
        let outcomes: Vec<bool> = std::thread::scope(|scope| {
            let rounds: Vec<_> = (0..RACES_AT_ONCE)
                .map(|k| {
                    let round = batch * RACES_AT_ONCE + k;
                    // One wheel uploaded under two file names (its tags are not checked against
                    // the file name, as on PyPI) on different replicas, and under the first name
                    // a different wheel that may take that name first. The upload that loses the
                    // name gives up the stored file the other name's upload is about to record.
                    let (loser, winner) = if round.is_multiple_of(2) {
                        (&b, &a)
                    } else {
                        (&a, &b)
                    };
                    let project = format!("race{round}");
                    let shared = tufa_testkit::minimal_wheel(&project, "1.0");
                    let other = tufa_testkit::wheel_with(
                        &project,
                        "1.0",
                        &[(format!("race{round}/other.py"), b"other = True\n".to_vec())],
                    );
                    let taken = format!("race{round}-1.0-py3-none-any.whl");
                    let second = format!("race{round}-1.0-py2.py3-none-any.whl");
                    let barrier = std::sync::Barrier::new(3);
                    let (token, acknowledged) = (&token, &acknowledged);
                    scope.spawn(move || {
                        std::thread::scope(|inner| {
                            let attempts = [
                                (loser, taken.clone(), shared.clone()),
                                (winner, taken.clone(), other),
                                (winner, second, shared),
                            ]
                            .map(|(server, filename, content)| {
                                let (barrier, project) = (&barrier, &project);
                                inner.spawn(move || {
                                    barrier.wait();
                                    let result =
                                        upload_as(&server.url, token, project, &filename, &content);
                                    if result.is_ok() {
                                        acknowledged.lock().unwrap().push((filename, content));
                                    }
                                    result
                                })
                            })
                            .map(|attempt| attempt.join().unwrap());
                            assert!(
                                attempts[2].is_ok(),
                                "{project}: the upload under its own name was refused: {:?}",
                                attempts[2]
                            );
                            // The shared wheel lost the contested name.
                            attempts[0].is_err()
                        })
                    })
                })
                .collect();
            rounds.into_iter().map(|r| r.join().unwrap()).collect()
        });
        lost += outcomes.iter().filter(|&&l| l).count();
    }
    let acknowledged = acknowledged.into_inner().unwrap();
    let mut missing = Vec::new();
    for (filename, content) in &acknowledged {
        let sha256 = tufa_testkit::sha256_hex(content);
        for server in [&a, &b] {
            let response = get(&format!("{}/files/{sha256}/{filename}", server.url), &[]);
            if response.status != 200 || response.body != *content {
                missing.push(format!(
                    "{filename} through {}: {} {}",
                    server.url, response.status, response.reason
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged uploads cannot be downloaded ({lost} rounds where the shared wheel \
         lost the contested name):\n{}",
        missing.len(),
        acknowledged.len(),
        missing.join("\n")
    );
    let stored_again: usize = [&a, &b]
        .iter()
        .map(|server| server.log().matches("a racing upload removed it").count())
        .sum();
    eprintln!(
        "{RACE_ROUNDS} races, {lost} lost by the shared wheel, {stored_again} files stored again \
         after a loser removed them; all {} acknowledged uploads download",
        acknowledged.len()
    );
}
