//! `tufa monitor` against a real `tufa serve`: it replays the index's transparency log, lists
//! every version of every project page the log's timestamps reach, continues from its state on
//! the next run, and fails naming what it found when someone holding the log key plants a
//! forged entry or rewrites the log's history.

use std::fs;
use std::path::Path;
use std::process::Output;

mod common;

use common::{
    TUFA, generate_keys, install_ceremony, ok, output_text as text, published, token, tufa, twine,
};
use tufa_metadata::{Metadata, Timestamp};
use tufa_testkit::{Project, PythonEnv, TufaServer};
use tufa_tlog::tiles::decode_bundle;
use tufa_tlog::{Checkpoint, Ed25519Key, KeyType, Note, NoteSigner, Tile, TimestampEntry, Tree};

const PAGE: &str = "simple/tufa-watched/index.json";

fn upload(server: &TufaServer, token: &str, dir: &Path, version: &str) {
    let out = dir.join(format!("build-{version}"));
    fs::create_dir_all(&out).unwrap();
    let built = Project {
        name: "tufa-watched",
        version,
        dependencies: &[],
        payload: version,
    }
    .build(PythonEnv::shared(), &out);
    ok(twine(server, token, &[&built.wheel], &[]), "twine upload");
    server.wait_until_signed();
}

fn monitor(server: &TufaServer, state: &Path) -> Output {
    monitor_from_root(server, &server.data_dir.join("trusted-root.json"), state)
}

fn monitor_from_root(server: &TufaServer, root: &Path, state: &Path) -> Output {
    std::process::Command::new(TUFA)
        .args(["monitor", &server.url, "--root"])
        .arg(root)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

/// The page versions a monitor run listed for [`PAGE`].
fn page_versions(output: &Output) -> usize {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(&format!("{PAGE} sha256 ")))
        .count()
}

/// The entries the index's log serves now.
fn served_entries(data: &Path) -> Vec<Vec<u8>> {
    let store = published(data);
    let note = Note::parse(&store.read("tuf/log/checkpoint").unwrap()).unwrap();
    let size = Checkpoint::parse(&note.text).unwrap().size;
    let mut entries = Vec::new();
    for n in 0..size.div_ceil(256) {
        let tile = Tile::in_tree(0, n, size).unwrap();
        let bundle = store
            .read(&format!("tuf/log/{}", tile.entries_path()))
            .unwrap();
        entries.extend(decode_bundle(&tile, &bundle).unwrap());
    }
    entries
}

/// Serves a log of `entries` in the index's place, with a checkpoint signed by the index's log
/// key: what someone holding that key (and write access to the storage) can do.
fn serve_log_of(data: &Path, entries: &[Vec<u8>]) {
    let text = fs::read_to_string(data.join("dev-keys/log.key")).unwrap();
    let (name, key) = Ed25519Key::parse_signer_key(text.trim()).unwrap();
    let signer = NoteSigner::new(&name, KeyType::Ed25519, key).unwrap();
    let mut tree = Tree::new();
    let appended = tree.append(entries).unwrap();
    let store = published(data);
    for (tile, bytes) in &appended.tiles {
        store.write(&format!("tuf/log/{}", tile.path()), bytes);
    }
    for (tile, bytes) in &appended.bundles {
        store.write(&format!("tuf/log/{}", tile.entries_path()), bytes);
    }
    let checkpoint = Checkpoint::new(&name, appended.size, appended.root).to_text();
    let note = Note {
        signatures: vec![signer.sign(&checkpoint, 0).unwrap()],
        text: checkpoint,
    };
    store.write("tuf/log/checkpoint", &note.to_bytes());
}

#[test]
fn the_monitor_lists_every_page_version_and_finds_a_planted_entry_and_a_rewritten_history() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = TufaServer::start(TUFA.as_ref(), &dir.join("data"), &[]);
    let token = token(&server.data_dir, "alice", None);
    upload(&server, &token, dir, "1.0");
    upload(&server, &token, dir, "1.1");
    let state = dir.join("monitor-state");

    let first = monitor(&server, &state);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(page_versions(&first), 2, "{}", text(&first));

    // The next run continues from its state and sees the versions published since.
    upload(&server, &token, dir, "1.2");
    let second = monitor(&server, &state);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(page_versions(&second), 3, "{}", text(&second));
    assert!(
        text(&second).contains("snapshots read this run"),
        "{}",
        text(&second)
    );

    // Someone holding the log key (and the online key, for a victim) appends an entry for a
    // timestamp nobody else was shown: the snapshot it names is not the one the index published.
    let honest = served_entries(&server.data_dir);
    let last = TimestampEntry::parse(honest.last().unwrap()).unwrap();
    let served = published(&server.data_dir)
        .read("tuf/metadata/timestamp.json")
        .unwrap();
    assert_eq!(
        Metadata::<Timestamp>::from_bytes(&served)
            .unwrap()
            .signed
            .version,
        last.version
    );
    let forged = TimestampEntry {
        version: last.version + 1,
        sha256: [7; 32],
        snapshot_version: last.snapshot_version,
        snapshot_sha256: Some([9; 32]),
    };
    let mut planted = honest.clone();
    planted.push(forged.to_bytes());
    serve_log_of(&server.data_dir, &planted);
    let found = monitor(&server, &state);
    assert!(!found.status.success(), "{}", text(&found));
    let report = text(&found);
    assert!(report.contains("forged entry"), "{report}");
    assert!(
        report.contains(&format!("snapshot {}", last.snapshot_version)),
        "{report}"
    );

    // The log rewritten instead: an entry the monitor saw before is replaced. Its state still
    // holds the honest history, so a second run finds the fork.
    let mut rewritten = honest.clone();
    rewritten[1] = TimestampEntry {
        sha256: [8; 32],
        ..TimestampEntry::parse(&honest[1]).unwrap()
    }
    .to_bytes();
    serve_log_of(&server.data_dir, &rewritten);
    let fork = monitor(&server, &state);
    assert!(!fork.status.success(), "{}", text(&fork));
    assert!(text(&fork).contains("fork"), "{}", text(&fork));

    // The honest log served again: the monitor agrees with it.
    serve_log_of(&server.data_dir, &honest);
    let again = monitor(&server, &state);
    assert!(again.status.success(), "{}", text(&again));
}

/// An online-key rotation: snapshots before it are signed by the old key, after it by the new
/// one. Given the first root, the monitor follows the root versions the index serves (each
/// accepted as a client accepts it) and checks every snapshot under the root it was signed in.
#[test]
fn the_monitor_follows_root_through_an_online_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_keys(d, &["root", "targets", "bins", "online", "online-2"]);
    let key = |name: &str| d.join(name).to_str().unwrap().to_string();
    let ceremony = d.join("ceremony");
    ok(
        tufa(&[
            "ceremony",
            "--out",
            ceremony.to_str().unwrap(),
            "--root-key",
            &key("root.pub.json"),
            "--targets-key",
            &key("targets.pub.json"),
            "--bins-key",
            &key("bins.pub.json"),
            "--online-key",
            &key("online.pub.json"),
            "--bin-bits",
            "2",
            "--log-key",
            &key("log.key"),
            "--log-origin",
            "monitor.test/log",
            "--sign",
            &key("root.pem"),
            "--sign",
            &key("targets.pem"),
            "--sign",
            &key("bins.pem"),
        ]),
        "tufa ceremony",
    );
    let data = d.join("data");
    install_ceremony(&ceremony, &data);
    let first_root = ceremony.join("metadata/1.root.json");
    let serve = |online: &str| {
        let server = TufaServer::start(
            TUFA.as_ref(),
            &data,
            &["--online-key", &key(online), "--log-key", &key("log.key")],
        );
        server.wait_until_signed();
        server
    };
    let mut server = serve("online.pem");
    let token = token(&data, "alice", None);
    upload(&server, &token, d, "1.0");
    let state = d.join("monitor-state");
    let before = monitor_from_root(&server, &first_root, &state);
    assert!(before.status.success(), "{}", text(&before));

    for role in ["root", "bins"] {
        let out = key(&format!("{role}-2.json"));
        ok(
            tufa(&[
                "roles",
                "prepare",
                role,
                "--data",
                data.to_str().unwrap(),
                "--out",
                &out,
                "--online-key",
                &key("online-2.pub.json"),
            ]),
            "tufa roles prepare",
        );
        let signer = if role == "root" {
            "root.pem"
        } else {
            "bins.pem"
        };
        ok(tufa(&["sign", &out, "--key", &key(signer)]), "tufa sign");
    }
    ok(
        tufa(&[
            "roles",
            "submit",
            "--data",
            data.to_str().unwrap(),
            &key("root-2.json"),
            &key("bins-2.json"),
        ]),
        "tufa roles submit",
    );
    server.kill();
    let server = serve("online-2.pem");
    upload(&server, &token, d, "1.1");

    // Still given only the first root: the snapshots signed by the new online key verify under
    // root 2, which the monitor fetched and accepted, and the run lists both page versions.
    let after = monitor_from_root(&server, &first_root, &state);
    assert!(after.status.success(), "{}", text(&after));
    assert_eq!(page_versions(&after), 2, "{}", text(&after));
}
