//! `tufa backup` and `tufa restore` (issue 17, part 5): a backup taken while `tufa serve` takes
//! uploads, the data directory wiped, the backup restored. Every upload acknowledged before the
//! backup started is served and signed again, python-tuf clients that followed the live index
//! past the backup accept the restored index (no rollback), and `tufa verify` passes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{TUFA, ok, page_files, python_tuf, tufa};
use tufa_testkit::{TufaServer, http, minimal_wheel};
use tufa_tlog::{MemoryTree, SignedCheckpoint, Tile, VerifierKey};

const PROJECT: &str = "tufa-load";

/// Uploads versions 1.0, 1.1, ... of [`PROJECT`] one after another until `stop`, recording each
/// acknowledged one (its wheel's file name) in order.
fn upload_until(
    server: &TufaServer,
    token: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let url = server.upload_url();
    std::thread::spawn(move || {
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let version = format!("1.{i}");
            let (content_type, body) =
                http::wheel_upload(PROJECT, &version, &minimal_wheel(PROJECT, &version));
            let response = http::request(
                "POST",
                &url,
                &[
                    ("Content-Type", &content_type),
                    ("Authorization", &http::basic_auth(&token)),
                ],
                &body,
            );
            assert_eq!(response.status, 200, "{}", response.text());
            acknowledged
                .lock()
                .unwrap()
                .push(format!("tufa_load-{version}-py3-none-any.whl"));
        }
    })
}

/// The log key the restored root declares.
fn log_key(data: &Path) -> VerifierKey {
    let store = tufa_repo::FsStore::open(data.join("tuf")).unwrap();
    let root = tufa_repo::OfflineState::load(&store).unwrap().root;
    root.signed.transparency_log().unwrap().unwrap().key
}

fn restored_page(server: &TufaServer, cache: &Path) -> (u64, Vec<String>) {
    let view = python_tuf(server, cache, &[PROJECT]);
    let version = view["timestamp_version"].as_u64().unwrap();
    (
        version,
        page_files(&view["pages"][PROJECT]).into_keys().collect(),
    )
}

#[test]
fn a_backup_under_upload_load_restores_to_an_index_its_clients_still_accept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let token = server.create_token("alice");
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let uploads = upload_until(&server, token, stop.clone(), acknowledged.clone());
    while acknowledged.lock().unwrap().len() < 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = dir.path().join("python-tuf");
    python_tuf(&server, &client, &[PROJECT]);

    let before_backup: Vec<String> = acknowledged.lock().unwrap().clone();
    let backup = dir.path().join("backup");
    let backed_up = ok(
        tufa(&[
            "backup",
            "--data",
            data.to_str().unwrap(),
            backup.to_str().unwrap(),
        ]),
        "tufa backup",
    );
    // The live index goes on publishing after the backup, and the client follows it.
    let after_backup = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < after_backup + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    uploads.join().unwrap();
    server.wait_until_signed();
    let (live_version, live_files) = restored_page(&server, &client);
    assert_eq!(live_files.len(), acknowledged.lock().unwrap().len());

    // With the live index still answering, its current versions are the floor, exactly.
    let beside = dir.path().join("restored-beside-the-live-index");
    ok(
        tufa(&[
            "restore",
            backup.to_str().unwrap(),
            "--data",
            beside.to_str().unwrap(),
            "--live-index",
            &server.url,
        ]),
        "tufa restore --live-index",
    );
    let floor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(beside.join("tuf/online-floor.json")).unwrap())
            .unwrap();
    let floor = floor["online_versions_above"].as_u64().unwrap();
    assert!(
        (live_version..live_version + 1_000).contains(&floor),
        "floor {floor}, live timestamp {live_version}"
    );

    // The restored log continues the live one: the live checkpoint, and a next checkpoint
    // consistent with it, as a client that followed the live log requires.
    let live_checkpoint = http::get(&format!("{}/tuf/log/checkpoint", server.url), &[]).body;
    assert_eq!(
        std::fs::read(beside.join("tuf/log/checkpoint")).unwrap(),
        live_checkpoint
    );
    server.kill();
    let key = log_key(&beside);
    let live = SignedCheckpoint::open(&live_checkpoint, std::slice::from_ref(&key))
        .unwrap()
        .checkpoint;
    let continued = TufaServer::start(TUFA.as_ref(), &beside, &[]);
    continued.wait_until_signed();
    let timestamp = http::get(
        &format!("{}/tuf/metadata/timestamp.json", continued.url),
        &[],
    )
    .json();
    let version = timestamp["signed"]["version"].as_u64().unwrap();
    let proof = http::get(&format!("{}/tuf/log/proof/{version}", continued.url), &[]).json();
    let checkpoint = SignedCheckpoint::open(
        proof["checkpoint"].as_str().unwrap().as_bytes(),
        std::slice::from_ref(&key),
    )
    .unwrap()
    .checkpoint;
    assert!(checkpoint.size > live.size, "{proof}");
    // Every entry of the continued log, from its bundles: the first ones are the live log.
    let mut tree = MemoryTree::new();
    let bundles = checkpoint
        .size
        .div_ceil(u64::from(tufa_tlog::tiles::TILE_WIDTH));
    for index in 0..bundles {
        let bundle = Tile::in_tree(0, index, checkpoint.size).unwrap();
        let bytes = http::get(
            &format!("{}/tuf/log/{}", continued.url, bundle.entries_path()),
            &[],
        )
        .body;
        for entry in tufa_tlog::tiles::decode_bundle(&bundle, &bytes).unwrap() {
            if tree.size() == live.size {
                assert_eq!(tree.root(), live.root, "the live log is not a prefix");
            }
            tree.push(&entry);
        }
    }
    assert_eq!(tree.size(), checkpoint.size);
    assert_eq!(tree.root(), checkpoint.root);
    drop(continued);

    std::fs::remove_dir_all(&data).unwrap();
    let restored = ok(
        tufa(&[
            "restore",
            backup.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]),
        "tufa restore",
    );
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    server.wait_until_signed();

    let (version, files) = restored_page(&server, &client);
    assert!(
        version > live_version,
        "restored timestamp {version} is not above the live {live_version}\n{backed_up}\n{restored}"
    );
    for file in &before_backup {
        assert!(
            files.contains(file),
            "{file}, acknowledged before the backup, is not in the restored index: {files:?}"
        );
    }
    // And served: the file of the last upload acknowledged before the backup downloads.
    let last = before_backup.last().unwrap();
    let response = http::get(
        &format!("{}/{PROJECT}/", server.simple_url().trim_end_matches('/')),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    let page = response.json();
    let url = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == last.as_str())
        .map(|f| f["url"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{last} not on the served page: {page}"));
    let absolute = if url.starts_with("http") {
        url
    } else {
        format!("{}{url}", server.url)
    };
    assert_eq!(http::get(&absolute, &[]).status, 200);

    ok(
        tufa(&["verify", "--data", data.to_str().unwrap()]),
        "tufa verify on the restored index",
    );
}
