//! python-tuf's `ngclient.Updater` and this client refresh against the same PEP 458 repository
//! (built with tufa-repo, served over HTTP) and must agree: on what they trust, on the targets
//! they find, and on refusing a rolled-back timestamp.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tufa_client::{Error, HttpFetcher, Updater, UpdaterConfig};
use tufa_repo::dev::{ONLINE_KEY, create_development_repository};
use tufa_repo::layout::Expiries;
use tufa_repo::{FsStore, PageChange, Repository, View, key_paths, load_signer};
use tufa_testkit::{PythonEnv, StaticServer};

const PYTHON_CLIENT: &str = r#"
import json, sys
from tuf.ngclient import Updater
metadata_dir, metadata_url, target_dir, targets_url, *paths = sys.argv[1:]
updater = Updater(metadata_dir, metadata_url, target_dir, targets_url, bootstrap=None)
try:
    updater.refresh()
except Exception as e:
    print(json.dumps({"error": type(e).__name__}))
    sys.exit(0)
found = {}
for path in paths:
    info = updater.get_targetinfo(path)
    found[path] = None if info is None else {"length": info.length, "sha256": info.hashes["sha256"]}
print(json.dumps({"targets": found}))
"#;

fn repository(dir: &Path) -> Repository<FsStore> {
    let now = SystemTime::now();
    let store = FsStore::open(dir.join("repo")).unwrap();
    let keys = dir.join("keys");
    create_development_repository(&store, &keys, 6, Expiries::default(), now).unwrap();
    let online = load_signer(&key_paths(&keys.join(ONLINE_KEY)).0, None).unwrap();
    let mut repository =
        Repository::open(store, Arc::new(online), Expiries::default(), now).unwrap();
    let changes: Vec<PageChange> = (0..20)
        .map(|i| PageChange {
            project: format!("project-{i}"),
            view: View::Simple,
            page: Some(format!("{{\"files\":[],\"n\":{i}}}").into_bytes()),
        })
        .collect();
    repository.publish(&changes, now).unwrap();
    repository
}

fn run_python(dir: &Path, server: &StaticServer, paths: &[&str]) -> serde_json::Value {
    let metadata_dir = dir.join("python-metadata");
    let metadata_url = format!("{}/repo/metadata/", server.url());
    let targets_url = format!("{}/repo/targets/", server.url());
    let target_dir = dir.join("python-targets");
    let mut args = vec![
        metadata_dir.to_str().unwrap(),
        metadata_url.as_str(),
        target_dir.to_str().unwrap(),
        targets_url.as_str(),
    ];
    args.extend(paths);
    let output = PythonEnv::shared().run_script(PYTHON_CLIENT, &args);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn version(file: &Path) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    value["signed"]["version"].as_u64().unwrap()
}

#[test]
fn python_tuf_and_tufa_client_agree() {
    let dir = tempfile::tempdir().unwrap();
    let repository = repository(dir.path());
    let server = StaticServer::start(dir.path());
    let root = std::fs::read(dir.path().join("repo/metadata/1.root.json")).unwrap();
    std::fs::create_dir_all(dir.path().join("python-metadata")).unwrap();
    std::fs::write(dir.path().join("python-metadata/root.json"), &root).unwrap();
    let ours = dir.path().join("tufa-metadata");
    Updater::<HttpFetcher>::initialize(&ours, &root).unwrap();
    let updater = Updater::new(
        &ours,
        &format!("{}/repo/metadata/", server.url()),
        HttpFetcher::default(),
        UpdaterConfig::default(),
    );

    let paths = [
        "simple/project-3/index.json",
        "simple/project-17/index.json",
        "simple/missing/index.json",
    ];
    let python = run_python(dir.path(), &server, &paths);
    let refreshed = updater.refresh(SystemTime::now()).unwrap();
    for path in paths {
        let expected = &python["targets"][path];
        match refreshed.target_info(path) {
            Ok(info) => {
                assert_eq!(expected["length"], info.file.length, "{path}");
                assert_eq!(
                    expected["sha256"],
                    info.file.hashes["sha256"].as_str(),
                    "{path}"
                );
                let page = repository
                    .page(View::Simple, &path[7..path.len() - 11])
                    .unwrap();
                assert_eq!(page, info.file);
            }
            Err(Error::TargetNotFound { .. }) => assert!(expected.is_null(), "{path}"),
            Err(e) => panic!("{path}: {e}"),
        }
    }
    drop(refreshed);
    for role in ["root", "timestamp", "snapshot", "targets", "bins"] {
        let file = format!("{role}.json");
        assert_eq!(
            version(&ours.join(&file)),
            version(&dir.path().join("python-metadata").join(&file)),
            "{role}"
        );
    }

    // Both refuse a timestamp older than the one they trust.
    let timestamp = dir.path().join("repo/metadata/timestamp.json");
    let current = std::fs::read(&timestamp).unwrap();
    let mut repository = repository;
    repository
        .publish(
            &[PageChange {
                project: "project-3".into(),
                view: View::Simple,
                page: Some(b"{\"files\":[],\"n\":\"new\"}".to_vec()),
            }],
            SystemTime::now(),
        )
        .unwrap();
    assert!(
        run_python(dir.path(), &server, &[])
            .get("targets")
            .is_some()
    );
    updater.refresh(SystemTime::now()).unwrap();
    std::fs::write(&timestamp, current).unwrap();
    assert_eq!(
        run_python(dir.path(), &server, &[])["error"],
        "BadVersionNumberError"
    );
    assert!(matches!(
        updater.refresh(SystemTime::now()),
        Err(Error::RollbackAttack { ref role, .. }) if role == "timestamp"
    ));
}
