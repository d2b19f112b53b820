//! The transparency log end to end, publisher side: `tufa serve` logs every timestamp it signs
//! (the development repository declares the log in root), serves tiles, checkpoint and a proof
//! per timestamp under /tuf/log/, resumes the log after a restart, and python-tuf still verifies
//! every role of a root that declares a log. Runs on PostgreSQL + S3 too
//! (`TUFA_TEST_BACKEND=postgres,s3`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tufa_metadata::{Metadata, Root, Timestamp};
use tufa_testkit::{TufaServer, http};
use tufa_tlog::{
    Hash, SignedCheckpoint, TimestampEntry, VerifierKey, leaf_hash, verify_consistency,
    verify_inclusion,
};

mod common;
use common::{TUFA, published, python_tuf};

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// The log root declares, from the root the index hands its clients.
fn declared_key(data: &Path) -> VerifierKey {
    let root: Metadata<Root> =
        Metadata::from_bytes(&std::fs::read(data.join("trusted-root.json")).unwrap()).unwrap();
    let log = root
        .signed
        .transparency_log()
        .unwrap()
        .expect("a log in root");
    assert_eq!(log.key.name(), log.origin);
    log.key
}

/// Fetches the served timestamp and its proof, checks everything the proof claims, and
/// returns (timestamp version, checkpoint size).
fn check_served_proof(server: &TufaServer, key: &VerifierKey, previous: Option<u64>) -> (u64, u64) {
    let timestamp = http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]);
    assert_eq!(timestamp.status, 200);
    let parsed: Metadata<Timestamp> = Metadata::from_bytes(&timestamp.body).unwrap();
    let version = parsed.signed.version;
    let proof = http::get(&format!("{}/tuf/log/proof/{version}", server.url), &[]);
    assert_eq!(proof.status, 200, "{}", proof.text());
    assert_eq!(proof.header("content-type"), Some("application/json"));
    assert_eq!(proof.header("cache-control"), Some("no-cache"));
    let proof = proof.json();
    let checkpoint = SignedCheckpoint::open(
        proof["checkpoint"].as_str().unwrap().as_bytes(),
        std::slice::from_ref(key),
    )
    .expect("the proof's checkpoint is signed by the log key root declares");
    let index = proof["index"].as_u64().unwrap();
    let size = checkpoint.checkpoint.size;
    assert_eq!(index + 1, size);
    let entry = STANDARD.decode(proof["entry"].as_str().unwrap()).unwrap();
    let snapshot_sha256 = parsed
        .signed
        .snapshot_meta
        .hashes
        .as_ref()
        .and_then(|h| h.get("sha256"))
        .map(|h| hex::decode(h.as_str()).unwrap().try_into().unwrap());
    assert_eq!(
        TimestampEntry::parse(&entry).unwrap(),
        TimestampEntry::of(
            &timestamp.body,
            version,
            parsed.signed.snapshot_meta.version,
            snapshot_sha256
        ),
        "the entry is the served timestamp's"
    );
    verify_inclusion(
        &leaf_hash(&entry),
        index,
        size,
        &hashes(&proof["inclusion"]),
        &checkpoint.checkpoint.root,
    )
    .expect("the timestamp is in the checkpoint");
    let previous_size = proof["previous_size"].as_u64().unwrap();
    if let Some(previous) = previous {
        assert_eq!(previous_size, previous);
    }
    // The consistency proof links the previous checkpoint (its root from the log's tiles, via
    // the previous proof) to this one.
    if previous_size > 0 {
        assert!(!hashes(&proof["consistency"]).is_empty());
    }
    let served = http::get(&format!("{}/tuf/log/checkpoint", server.url), &[]);
    assert_eq!(served.status, 200);
    assert_eq!(
        served.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let latest = SignedCheckpoint::open(&served.body, std::slice::from_ref(key)).unwrap();
    assert!(latest.checkpoint.size >= size);
    (version, size)
}

/// The root of the checkpoint in `/tuf/log/proof/<version>`.
fn proof_root(server: &TufaServer, key: &VerifierKey, version: u64) -> (u64, Hash, Value) {
    let proof = http::get(&format!("{}/tuf/log/proof/{version}", server.url), &[]).json();
    let checkpoint = SignedCheckpoint::open(
        proof["checkpoint"].as_str().unwrap().as_bytes(),
        std::slice::from_ref(key),
    )
    .unwrap();
    (
        checkpoint.checkpoint.size,
        checkpoint.checkpoint.root,
        proof,
    )
}

#[test]
fn every_served_timestamp_has_a_proof_in_a_log_that_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let key = declared_key(&data);
    let alice = server.create_token("alice");

    let mut versions = Vec::new();
    let mut last = None;
    for n in 0..3 {
        let answer = server.upload_wheel(&alice, "logged", &format!("1.{n}"));
        assert_eq!(answer.status, 200, "{}", answer.text());
        server.wait_until_signed();
        let (version, size) = check_served_proof(&server, &key, None);
        versions.push(version);
        last = Some(size);
    }

    // Each checkpoint extends the one before it: the consistency proofs verify.
    for pair in versions.windows(2) {
        let (old_size, old_root, _) = proof_root(&server, &key, pair[0]);
        let (new_size, new_root, proof) = proof_root(&server, &key, pair[1]);
        if proof["previous_size"].as_u64() == Some(old_size) {
            verify_consistency(
                old_size,
                new_size,
                &hashes(&proof["consistency"]),
                &old_root,
                &new_root,
            )
            .expect("consistent");
        }
    }

    // Tiles and entry bundles are served; full tiles would be immutable, partial ones revalidate.
    let store = published(&data);
    let tiles = store.list("tuf/log/tile");
    assert!(
        tiles.iter().any(|t| t.starts_with("tuf/log/tile/0/000.p/")),
        "{tiles:?}"
    );
    assert!(
        tiles
            .iter()
            .any(|t| t.starts_with("tuf/log/tile/entries/000.p/")),
        "{tiles:?}"
    );
    let tile = tiles[0].strip_prefix("tuf/").unwrap();
    let served = http::get(&format!("{}/tuf/{tile}", server.url), &[]);
    assert_eq!(served.status, 200);
    assert_eq!(
        served.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(served.header("cache-control"), Some("no-cache"));

    // Only the log's own names are served from /tuf/log/.
    for path in [
        "../metadata/1.root.json",
        "..%2fmetadata%2f1.root.json",
        "tile/0/000.p/0",
        "tile/0/0.p/1",
        "proof/01",
        "proof/x",
        "checkpoint.tufa-tmp",
        "tile/entries/000",
    ] {
        let answer = http::get(&format!("{}/tuf/log/{path}", server.url), &[]);
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
    }

    // python-tuf loads and verifies every role of a root that declares a log.
    let view = python_tuf(&server, &dir.path().join("cache"), &["logged"]);
    assert_eq!(
        view["pages"]["logged"]["files"].as_array().unwrap().len(),
        3
    );

    // After a restart the log resumes where it was: the next checkpoint extends the last one.
    server.kill();
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let answer = server.upload_wheel(&alice, "logged", "2.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    let (version, size) = check_served_proof(&server, &key, None);
    assert!(size > last.unwrap(), "the log grew from {last:?} to {size}");
    let (old_size, old_root, _) = proof_root(&server, &key, *versions.last().unwrap());
    let (new_size, new_root, proof) = proof_root(&server, &key, version);
    let previous = proof["previous_size"].as_u64().unwrap();
    assert!(previous >= old_size);
    if previous == old_size {
        verify_consistency(
            old_size,
            new_size,
            &hashes(&proof["consistency"]),
            &old_root,
            &new_root,
        )
        .expect("the restarted log extends the one before");
    }
}
