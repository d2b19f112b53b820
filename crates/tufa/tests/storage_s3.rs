//! `tufa serve --storage s3://...` on a real S3 service (SeaweedFS, see
//! `tufa_testkit::seaweedfs`): twine uploads, pip installs, python-tuf verifies the repository
//! read straight from the bucket; `tufa storage move`; a bucket that stops.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{TUFA, installed, ok, pip, python_tuf, python_tuf_at, token, tufa, twine};
use tufa_repo::{S3Client, S3Settings};
use tufa_testkit::{Project, PythonEnv, SeaweedFs, TufaServer, http, sha256_hex};

fn os_env(env: &[(&'static str, String)]) -> Vec<(&'static str, OsString)> {
    env.iter().map(|(k, v)| (*k, OsString::from(v))).collect()
}

fn client(bucket: &str, env: &[(&'static str, String)]) -> S3Client {
    let settings = S3Settings::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    S3Client::new(bucket, &settings).unwrap()
}

/// `tufa ARGS` with the variables that reach the bucket.
fn with_env(args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    std::process::Command::new(TUFA)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn build(dir: &Path, name: &str, version: &str) -> tufa_testkit::Built {
    Project {
        name,
        version,
        dependencies: &[],
        payload: "original",
    }
    .build(PythonEnv::shared(), dir)
}

fn pip_install(server: &TufaServer, dir: &Path, name: &str, requirement: &str) -> Vec<String> {
    let target = dir.join(name);
    ok(
        pip(&server.simple_url(), &target, &[requirement]),
        "pip install",
    );
    installed(&target)
}

/// What python-tuf verifies reading the repository from the bucket itself (anonymous reads,
/// as a CDN in front of it would), with the server's trusted root.
fn python_tuf_from_bucket(
    seaweed: &SeaweedFs,
    bucket_prefix: &str,
    data: &Path,
    cache: &Path,
    projects: &[&str],
) -> serde_json::Value {
    python_tuf_at(
        &format!("{}/{bucket_prefix}", seaweed.endpoint()),
        &data.join("trusted-root.json"),
        cache,
        projects,
    )
    .unwrap_or_else(|e| panic!("python-tuf from the bucket failed:\n{e}"))
}

fn files_on(page: &serde_json::Value) -> Vec<String> {
    common::page_files(page).into_values().collect()
}

#[test]
fn an_index_on_a_bucket_takes_uploads_serves_installs_and_verifies_from_the_bucket() {
    let seaweed = SeaweedFs::shared();
    let (bucket, env) = seaweed.fresh_bucket();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let storage = format!("s3://{bucket}/tufa");
    let server = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        &["--storage", &storage],
        &os_env(&env),
    );
    assert!(server.log().contains(&storage), "{}", server.log());
    let alice = token(&data, "alice", None);
    let app = build(dir.path(), "tufa-s3app", "1.0.0");
    ok(
        twine(&server, &alice, &[&app.wheel, &app.sdist], &[]),
        "twine upload",
    );
    server.wait_until_signed();

    assert_eq!(
        pip_install(&server, dir.path(), "pip-1", "tufa-s3app"),
        ["tufa_s3app-1.0.0"]
    );
    // The files and the repository are in the bucket, not in the data directory.
    let wheel_sha = sha256_hex(&std::fs::read(&app.wheel).unwrap());
    let objects: Vec<String> = client(&bucket, &env)
        .list("tufa/")
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    for key in [
        format!("tufa/files/{}/{wheel_sha}", &wheel_sha[..2]),
        format!("tufa/files/{}/{wheel_sha}.metadata", &wheel_sha[..2]),
        "tufa/tuf/metadata/1.root.json".into(),
        "tufa/tuf/metadata/timestamp.json".into(),
    ] {
        assert!(objects.contains(&key), "{key} not in {objects:?}");
    }
    assert!(!data.join("tuf").exists());
    assert!(!data.join("files").join(&wheel_sha[..2]).exists());
    // The file answers with the headers a local one has.
    let wheel_name = app.wheel.file_name().unwrap().to_str().unwrap();
    let file = http::get(
        &format!("{}/files/{wheel_sha}/{wheel_name}", server.url),
        &[],
    );
    assert_eq!(file.status, 200);
    assert_eq!(file.body, std::fs::read(&app.wheel).unwrap());
    assert_eq!(
        file.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    let from_server = python_tuf(&server, &dir.path().join("tuf-server"), &["tufa-s3app"]);
    let from_bucket = python_tuf_from_bucket(
        seaweed,
        &format!("{bucket}/tufa"),
        &data,
        &dir.path().join("tuf-bucket"),
        &["tufa-s3app"],
    );
    assert_eq!(from_bucket, from_server);
    assert!(files_on(&from_bucket["pages"]["tufa-s3app"]).contains(&wheel_sha));

    // The administrative commands read the repository and the files from the recorded bucket.
    let data_arg = data.to_str().unwrap();
    let status = ok(
        with_env(&["status", "--data", data_arg], &env),
        "tufa status",
    );
    assert!(status.contains(&format!("storage {storage}")), "{status}");
    assert!(status.contains("timestamp"), "{status}");
    let verified = ok(
        with_env(&["verify", "--data", data_arg], &env),
        "tufa verify",
    );
    assert!(
        verified.contains("checked 2 distribution file(s) and 1 signed page(s): 0 problem(s)"),
        "{verified}"
    );
    let s3 = client(&bucket, &env);
    let metadata_key = format!("tufa/files/{}/{wheel_sha}.metadata", &wheel_sha[..2]);
    let metadata = s3.get(&metadata_key).unwrap().unwrap();
    s3.delete(&metadata_key).unwrap();
    let broken = with_env(&["verify", "--data", data_arg], &env);
    assert!(!broken.status.success());
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.contains(&format!("s3://{bucket}/{metadata_key}")),
        "{text}"
    );
    s3.put(&metadata_key, &metadata).unwrap();

    // A restart finds the bucket recorded in the data directory.
    drop(server);
    let locations = std::fs::read_to_string(data.join("locations.toml")).unwrap();
    assert!(locations.contains(&storage), "{locations}");
    let server = TufaServer::start_with_env(TUFA.as_ref(), &data, &[], &os_env(&env));
    let v2 = build(dir.path(), "tufa-s3app", "2.0.0");
    ok(twine(&server, &alice, &[&v2.wheel], &[]), "twine upload");
    server.wait_until_signed();
    assert_eq!(
        pip_install(&server, dir.path(), "pip-2", "tufa-s3app"),
        ["tufa_s3app-2.0.0"]
    );
    let again = python_tuf_from_bucket(
        seaweed,
        &format!("{bucket}/tufa"),
        &data,
        &dir.path().join("tuf-bucket"),
        &["tufa-s3app"],
    );
    assert!(
        again["timestamp_version"].as_u64() > from_bucket["timestamp_version"].as_u64(),
        "{again}"
    );
    assert_eq!(files_on(&again["pages"]["tufa-s3app"]).len(), 3);
}

#[test]
fn storage_move_copies_a_data_directory_into_a_bucket_and_the_index_runs_on_it() {
    let seaweed = SeaweedFs::shared();
    let (bucket, env) = seaweed.fresh_bucket();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Started without the test backend's bucket: this data directory begins local.
    let server = TufaServer::start_with_env(TUFA.as_ref(), &data, &["--storage="], &[]);
    let alice = token(&data, "alice", None);
    let app = build(dir.path(), "tufa-moved", "1.0.0");
    ok(
        twine(&server, &alice, &[&app.wheel, &app.sdist], &[]),
        "twine upload",
    );
    server.wait_until_signed();
    let local = python_tuf(&server, &dir.path().join("tuf-local"), &["tufa-moved"]);

    let to = format!("s3://{bucket}/moved");
    let data_arg = data.to_str().unwrap();
    let busy = tufa(&["storage", "move", "--data", data_arg, "--to", &to]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("stop it first"),
        "{busy:?}"
    );
    drop(server);

    let output = std::process::Command::new(TUFA)
        .args(["storage", "move", "--data", data_arg, "--to", &to])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = ok(output, "tufa storage move");
    assert!(text.contains("timestamp"), "{text}");
    let timestamp = client(&bucket, &env)
        .get("moved/tuf/metadata/timestamp.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        timestamp,
        std::fs::read(data.join("tuf/metadata/timestamp.json")).unwrap()
    );
    // The local copy is left.
    assert!(data.join("tuf/metadata/timestamp.json").exists());

    // The next start runs on the bucket it recorded, with the same repository.
    let server = TufaServer::start_with_env(TUFA.as_ref(), &data, &[], &os_env(&env));
    assert!(server.log().contains(&to), "{}", server.log());
    let from_bucket = python_tuf_from_bucket(
        seaweed,
        &format!("{bucket}/moved"),
        &data,
        &dir.path().join("tuf-bucket"),
        &["tufa-moved"],
    );
    assert_eq!(from_bucket["pages"], local["pages"]);
    assert_eq!(
        pip_install(&server, dir.path(), "pip-moved", "tufa-moved"),
        ["tufa_moved-1.0.0"]
    );
    let v2 = build(dir.path(), "tufa-moved", "2.0.0");
    ok(twine(&server, &alice, &[&v2.wheel], &[]), "twine upload");
    server.wait_until_signed();
    let after = python_tuf(&server, &dir.path().join("tuf-local"), &["tufa-moved"]);
    assert_eq!(files_on(&after["pages"]["tufa-moved"]).len(), 3);

    drop(server);
    let again = std::process::Command::new(TUFA)
        .args(["storage", "move", "--data", data_arg, "--to", &to])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already keeps its files in"),
        "{again:?}"
    );
}

#[test]
fn a_stopped_bucket_fails_uploads_with_503_and_signing_resumes_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut seaweed = SeaweedFs::private(&dir.path().join("seaweedfs"));
    let (bucket, env) = seaweed.fresh_bucket();
    let data = dir.path().join("data");
    let storage = format!("s3://{bucket}/tufa");
    let server = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        &["--storage", &storage],
        &os_env(&env),
    );
    let alice = token(&data, "alice", None);
    let first = server.upload_wheel(&alice, "tufa-outage", "1.0.0");
    assert_eq!(first.status, 200, "{}", first.text());
    server.wait_until_signed();
    let before = python_tuf(&server, &dir.path().join("tuf"), &["tufa-outage"]);

    seaweed.stop();
    let asked = std::time::Instant::now();
    let refused = server.upload_wheel(&alice, "tufa-outage", "2.0.0");
    // Reported, not asserted: how long an upload waits on a bucket that is down.
    eprintln!("upload refused after {:?}", asked.elapsed());
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.reason.contains("storage bucket is unavailable") && refused.reason.contains("PUT"),
        "{}",
        refused.reason
    );
    assert!(!refused.reason.contains("127.0.0.1"), "{}", refused.reason);
    // A change recorded while the bucket is down (a yank touches only the database) cannot be
    // published: the publisher reports why and backs off.
    ok(
        tufa(&[
            "yank",
            "--data",
            data.to_str().unwrap(),
            "tufa-outage",
            "1.0.0",
        ]),
        "tufa yank",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let failure = loop {
        let status = http::get(&format!("{}/status", server.url), &[]).json();
        if let Some(failure) = status["signing_failure"].as_str() {
            break failure.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure reported: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(failure.contains(&bucket), "{failure}");

    seaweed.restart();
    server.wait_until_signed();
    let second = server.upload_wheel(&alice, "tufa-outage", "2.0.0");
    assert_eq!(second.status, 200, "{}", second.text());
    server.wait_until_signed();
    let after = python_tuf(&server, &dir.path().join("tuf"), &["tufa-outage"]);
    assert!(after["timestamp_version"].as_u64() > before["timestamp_version"].as_u64());
    let page = &after["pages"]["tufa-outage"];
    assert_eq!(files_on(page).len(), 2, "{page}");
    assert!(
        page["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["filename"].as_str().unwrap().contains("1.0.0") && f["yanked"] == true),
        "{page}"
    );
}

#[test]
fn a_mirrored_file_is_verified_then_kept_in_the_bucket() {
    let seaweed = SeaweedFs::shared();
    let (bucket, env) = seaweed.fresh_bucket();
    let upstream = tufa_testkit::upstream::Upstream::start();
    let filename = "tufa_mirrored-1.0-py3-none-any.whl";
    let sha256 = upstream.add_generated_file("tufa-mirrored", filename, 3 << 20);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let storage = format!("s3://{bucket}/tufa");
    let server = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        &["--storage", &storage, "--upstream", &upstream.simple_url()],
        &os_env(&env),
    );
    let page = http::get(
        &format!("{}tufa-mirrored/", server.simple_url()),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(page.status, 200, "{}", page.reason);
    let url = format!("{}/files/{sha256}/{filename}", server.url);
    let first = http::get(&url, &[]);
    assert_eq!(first.status, 200, "{}", first.reason);
    assert_eq!(sha256_hex(&first.body), sha256);

    // Stored in the bucket once verified, not left in the data directory.
    let key = format!("tufa/files/{}/{sha256}", &sha256[..2]);
    let s3 = client(&bucket, &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s3.head(&key).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "{key} not stored");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s3.head(&key).unwrap().unwrap().size, 3 << 20);
    assert!(!data.join("files").join(&sha256[..2]).join(&sha256).exists());
    let fetched = |upstream: &tufa_testkit::upstream::Upstream| {
        upstream
            .requests()
            .iter()
            .filter(|path| path.contains(filename))
            .count()
    };
    let before = fetched(&upstream);
    let second = http::get(&url, &[]);
    assert_eq!(second.status, 200, "{}", second.reason);
    assert_eq!(sha256_hex(&second.body), sha256);
    assert_eq!(
        fetched(&upstream),
        before,
        "served from the bucket, not upstream"
    );
}
