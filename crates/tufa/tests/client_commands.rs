//! `tufa tuf-client` and `tufa download` as processes, against a PEP 458 repository built with
//! tufa-repo and served over real HTTP on 127.0.0.1.

mod common;
use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use tufa_repo::{FsStore, PageChange, Repository, View};
use tufa_testkit::StaticServer;

const PAGE: &str = r#"{"meta":{"api-version":"1.1"},"name":"demo-project","files":[
{"filename":"demo_project-1.0-py3-none-any.whl","url":"../../files/demo_project-1.0-py3-none-any.whl","hashes":{"sha256":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},"size":1234},
{"filename":"demo_project-1.0.tar.gz","url":"../../files/demo_project-1.0.tar.gz","hashes":{"sha256":"fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"},"size":99}]}"#;

/// A Tufa index layout under `dir/tuf/` with one project page, and its repository handle.
fn index(dir: &Path) -> Repository<FsStore> {
    let mut repository = common::development_repository(dir);
    publish(&mut repository, PAGE);
    repository
}

fn publish(repository: &mut Repository<FsStore>, page: &str) {
    repository
        .publish(
            &[PageChange {
                project: "demo-project".into(),
                view: View::Simple,
                page: Some(page.as_bytes().to_vec()),
            }],
            SystemTime::now(),
        )
        .unwrap();
}

fn tufa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tufa"))
        .args(args)
        .output()
        .unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

#[test]
fn tuf_client_init_refresh_download_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut repository = index(dir.path());
    let server = StaticServer::start(dir.path());
    let metadata_url = format!("{}/tuf/metadata", server.url());
    let targets_url = format!("{}/tuf/targets", server.url());
    let client = tempfile::tempdir().unwrap();
    let metadata_dir = client.path().join("metadata");
    let target_dir = client.path().join("targets");
    let (md, td) = (metadata_dir.to_str().unwrap(), target_dir.to_str().unwrap());
    let root = dir.path().join("tuf/metadata/1.root.json");

    let init = tufa(&[
        "tuf-client",
        "--metadata-dir",
        md,
        "init",
        root.to_str().unwrap(),
    ]);
    assert_eq!(code(&init), 0, "{init:?}");
    assert!(server.requests().is_empty(), "init made requests");
    assert_eq!(
        std::fs::read(metadata_dir.join("root.json")).unwrap(),
        std::fs::read(&root).unwrap()
    );

    // Options in another order than the protocol's example.
    let refresh = tufa(&[
        "tuf-client",
        "--metadata-url",
        &metadata_url,
        "--metadata-dir",
        md,
        "refresh",
    ]);
    assert_eq!(code(&refresh), 0, "{refresh:?}");
    let mut files: Vec<String> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );

    let target = "simple/demo-project/index.json";
    let download = |names: &[&str]| {
        let mut args = vec![
            "tuf-client",
            "--metadata-dir",
            md,
            "--metadata-url",
            &metadata_url,
        ];
        for name in names {
            args.extend(["--target-name", name]);
        }
        args.extend([
            "--target-base-url",
            &targets_url,
            "--target-dir",
            td,
            "download",
        ]);
        tufa(&args)
    };
    let output = download(&[target]);
    assert_eq!(code(&output), 0, "{output:?}");
    let stored = target_dir.join("simple%2Fdemo-project%2Findex.json");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), PAGE);
    // Only the one bin role the target hashes to was fetched, of 16.
    let bins = server
        .requests()
        .iter()
        .filter(|r| r.contains(".bin-"))
        .count();
    assert_eq!(bins, 1, "{:?}", server.requests());

    // A new version of the page lands at the same path.
    publish(&mut repository, "{\"files\":[]}");
    let output = download(&[target]);
    assert_eq!(code(&output), 0, "{output:?}");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "{\"files\":[]}");

    assert_eq!(code(&download(&["simple/missing/index.json"])), 1);
    assert_eq!(code(&download(&[target, "simple/missing/index.json"])), 1);

    // A target substituted on the server is refused and not stored.
    let sha = {
        let info = repository.page(View::Simple, "demo-project").unwrap();
        info.hashes["sha256"].as_str().to_string()
    };
    let served = dir
        .path()
        .join(format!("tuf/targets/simple/demo-project/{sha}.index.json"));
    std::fs::write(&served, "{\"files\":[1]}").unwrap();
    std::fs::remove_file(&stored).unwrap();
    assert_eq!(code(&download(&[target])), 1);
    assert!(!stored.exists());
}

#[test]
fn tuf_client_failures_exit_with_1() {
    let client = tempfile::tempdir().unwrap();
    let md = client.path().join("metadata");
    let md = md.to_str().unwrap();
    // No root yet, an unreachable repository, a usage error, a missing root file.
    assert_eq!(
        code(&tufa(&[
            "tuf-client",
            "--metadata-dir",
            md,
            "--metadata-url",
            "http://127.0.0.1:9/m",
            "refresh"
        ])),
        1
    );
    assert_eq!(
        code(&tufa(&["tuf-client", "--metadata-dir", md, "frobnicate"])),
        1
    );
    assert_eq!(
        code(&tufa(&[
            "tuf-client",
            "--metadata-dir",
            md,
            "init",
            "/nonexistent/root.json"
        ])),
        1
    );
    assert_eq!(code(&tufa(&["tuf-client", "--help"])), 0);
}

#[test]
fn download_prints_verified_files_of_a_project() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let server = StaticServer::start(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let root = dir.path().join("tuf/metadata/1.root.json");
    let run = || {
        tufa(&[
            "download",
            "--index",
            &server.url(),
            "--root",
            root.to_str().unwrap(),
            "--cache",
            cache.path().to_str().unwrap(),
            "Demo_Project",
        ])
    };
    let output = run();
    assert_eq!(code(&output), 0, "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae  1234  demo_project-1.0-py3-none-any.whl\n\
         fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9  99  demo_project-1.0.tar.gz\n"
    );
    // The second run verifies from the cache: no page download.
    let before = server.requests().len();
    assert_eq!(code(&run()), 0);
    let new: Vec<String> = server.requests()[before..].to_vec();
    assert!(new.iter().all(|r| !r.contains("/tuf/targets/")), "{new:?}");

    let missing = tufa(&[
        "download",
        "--index",
        &server.url(),
        "--root",
        root.to_str().unwrap(),
        "--cache",
        cache.path().to_str().unwrap(),
        "no-such-project",
    ]);
    assert_eq!(code(&missing), 1);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn download_verifies_a_project_whose_name_is_too_long_for_a_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut repository = index(dir.path());
    // Percent-encoded as one file name, `simple/<name>/index.json` would be 262 bytes.
    let name = format!("long-{}", "n".repeat(235));
    repository
        .publish(
            &[PageChange {
                project: name.clone(),
                view: View::Simple,
                page: Some(PAGE.replace("demo-project", &name).into_bytes()),
            }],
            SystemTime::now(),
        )
        .unwrap();
    let server = StaticServer::start(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let root = dir.path().join("tuf/metadata/1.root.json");
    let run = || {
        tufa(&[
            "download",
            "--index",
            &server.url(),
            "--root",
            root.to_str().unwrap(),
            "--cache",
            cache.path().to_str().unwrap(),
            &name,
        ])
    };
    let output = run();
    assert_eq!(code(&output), 0, "{output:?}");
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("1234  demo_project-1.0-py3-none-any.whl\n")
    );
    let stored: Vec<String> = std::fs::read_dir(cache.path().join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].len() <= tufa_client::MAX_FILE_NAME, "{stored:?}");
    // The stored page is found again: the second run downloads no target.
    let before = server.requests().len();
    assert_eq!(code(&run()), 0);
    let new: Vec<String> = server.requests()[before..].to_vec();
    assert!(new.iter().all(|r| !r.contains("/tuf/targets/")), "{new:?}");
}
