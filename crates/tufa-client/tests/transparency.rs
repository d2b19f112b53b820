//! The client's transparency rule end to end through the updater: a root that declares a log,
//! a log built with tufa-tlog as the publisher builds it (`log/proof/<V>`, tiles, checkpoints
//! cosigned by witnesses), and the attacks: an unlogged timestamp, a timestamp other than the
//! logged one, missing cosignatures, a fork signed with the log key, a log rollback.

#[allow(dead_code)] // The other test binaries use the rest of it.
mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use tufa_client::transparency::TransparencyError;
use tufa_client::{Error, UpdaterConfig, Witnesses};
use tufa_metadata::{Metadata, Timestamp};
use tufa_tlog::tiles::Tile;
use tufa_tlog::{
    Checkpoint, ClientError, Ed25519Key, KeyType, MemoryTree, Note, NoteSigner, TimestampEntry,
    VerifierKey, consistency_proof, inclusion_proof,
};

const ORIGIN: &str = "repo.test/tufa-log";

fn key(seed: u8) -> Ed25519Key {
    Ed25519Key::from_seed(&[seed; 32]).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The log as the publisher keeps it: every entry, the log key and two witnesses.
struct Log {
    tree: MemoryTree,
    signer: NoteSigner<Ed25519Key>,
    witnesses: Vec<NoteSigner<Ed25519Key>>,
    /// The size of the checkpoint published last.
    published: u64,
}

impl Log {
    fn new(log_seed: u8) -> Log {
        Log {
            tree: MemoryTree::new(),
            signer: NoteSigner::new(ORIGIN, KeyType::Ed25519, key(log_seed)).unwrap(),
            witnesses: ["w1.test", "w2.test"]
                .iter()
                .zip([41, 42])
                .map(|(name, seed)| NoteSigner::new(name, KeyType::Cosignature, key(seed)).unwrap())
                .collect(),
            published: 0,
        }
    }

    fn witness_keys(&self) -> Vec<VerifierKey> {
        self.witnesses
            .iter()
            .map(|w| w.verifier().clone())
            .collect()
    }

    /// Declares this log in the repository's root (version 1, before any client trusts it).
    fn declare_in(&self, sim: &Sim) {
        let mut repo = sim.repo();
        repo.root.unrecognized.insert(
            "x-tufa-transparency-log".into(),
            serde_json::json!({"origin": ORIGIN, "key": self.signer.verifier().to_string()}),
        );
        repo.publish_root();
    }

    /// Appends the entry of `timestamp` and serves its proof, the new checkpoint cosigned by the
    /// witnesses numbered in `cosigners`, and every tile of the new tree.
    fn publish(&mut self, sim: &Sim, timestamp: &[u8], cosigners: &[usize]) {
        let metadata = Metadata::<Timestamp>::from_bytes(timestamp).unwrap();
        let meta = &metadata.signed.snapshot_meta;
        let snapshot_sha256 = meta.hashes.as_ref().map(|h| {
            let hex = h["sha256"].as_str();
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            out
        });
        let entry = TimestampEntry::of(
            timestamp,
            metadata.signed.version,
            meta.version,
            snapshot_sha256,
        )
        .to_bytes();
        let index = self.tree.size();
        self.tree.push(&entry);
        let size = self.tree.size();
        let text = Checkpoint::new(ORIGIN, size, self.tree.root()).to_text();
        let mut signatures = vec![self.signer.sign(&text, 0).unwrap()];
        for &w in cosigners {
            signatures.push(self.witnesses[w].sign(&text, now()).unwrap());
        }
        let checkpoint = Note { text, signatures }.to_bytes();
        let b64 = |hashes: Vec<[u8; 32]>| -> Vec<String> {
            hashes.iter().map(|h| STANDARD.encode(h)).collect()
        };
        let proof = serde_json::json!({
            "index": index,
            "entry": STANDARD.encode(&entry),
            "inclusion": b64(inclusion_proof(&self.tree, index, size).unwrap()),
            "previous_size": self.published,
            "consistency": b64(consistency_proof(&self.tree, self.published, size).unwrap()),
            "checkpoint": String::from_utf8(checkpoint.clone()).unwrap(),
        });
        self.published = size;
        let mut repo = sim.repo();
        repo.served.insert(
            format!("log/proof/{}", metadata.signed.version),
            serde_json::to_vec(&proof).unwrap(),
        );
        repo.served.insert("log/checkpoint".into(), checkpoint);
        for level in 0..3u8 {
            for n in 0..=(size >> (8 * (u32::from(level) + 1))) {
                if let Some(tile) = Tile::in_tree(level, n, size) {
                    let path = format!("log/{}", tile.path());
                    repo.served
                        .insert(path, self.tree.tile_data(&tile).unwrap());
                }
            }
        }
    }
}

fn timestamp_bytes(sim: &Sim) -> Vec<u8> {
    sim.repo().metadata_file("timestamp.json").unwrap()
}

/// A new snapshot and timestamp, as the publisher signs after a change.
fn publish_change(sim: &Sim, log: &mut Log, cosigners: &[usize]) {
    sim.repo().update_snapshot();
    let bytes = timestamp_bytes(sim);
    log.publish(sim, &bytes, cosigners);
}

fn client_with(sim: &Sim, witnesses: Witnesses) -> Client<'_> {
    Client::with_config(
        sim,
        UpdaterConfig {
            witnesses,
            ..UpdaterConfig::default()
        },
    )
}

/// A repository whose root declares `log`, with its first timestamp logged and cosigned by both
/// witnesses, and a client requiring both.
fn logged_repository(log: &mut Log) -> Sim {
    let sim = Sim::new();
    log.declare_in(&sim);
    let bytes = timestamp_bytes(&sim);
    log.publish(&sim, &bytes, &[0, 1]);
    sim
}

fn both_witnesses(log: &Log) -> Witnesses {
    Witnesses {
        keys: log.witness_keys(),
        quorum: 2,
    }
}

fn refused(client: &Client<'_>) -> TransparencyError {
    match client.updater.refresh(SystemTime::now()) {
        Err(Error::Transparency(refusal)) => refusal,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

fn saved_checkpoint_size(client: &Client<'_>) -> u64 {
    let bytes = std::fs::read(client.metadata_dir().join("log.checkpoint")).unwrap();
    let note = Note::parse(&bytes).unwrap();
    Checkpoint::parse(&note.text).unwrap().size
}

#[test]
fn a_logged_timestamp_costs_one_request_and_an_unchanged_one_none() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    client.updater.refresh(SystemTime::now()).unwrap();
    assert!(sim.requests().contains(&"log/proof/1".to_string()));
    assert_eq!(saved_checkpoint_size(&client), 1);

    publish_change(&sim, &mut log, &[0, 1]);
    sim.clear_requests();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(
        sim.requests(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "log/proof/2",
            "metadata/2.snapshot.json",
        ],
        "one request more than without a log: the proof carries the consistency proof"
    );
    assert_eq!(client.cached_version("timestamp"), Some(2));
    assert_eq!(saved_checkpoint_size(&client), 2);

    sim.clear_requests();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(
        sim.requests(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );
}

#[test]
fn a_client_further_behind_proves_consistency_from_tiles() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    client.updater.refresh(SystemTime::now()).unwrap();
    for _ in 0..3 {
        publish_change(&sim, &mut log, &[0, 1]);
    }
    sim.clear_requests();
    client.updater.refresh(SystemTime::now()).unwrap();
    let log_requests: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("log/"))
        .collect();
    assert_eq!(log_requests, ["log/proof/4", "log/tile/0/000.p/4"]);
    assert_eq!(saved_checkpoint_size(&client), 4);
}

#[test]
fn a_root_without_a_log_keeps_plain_tuf() {
    let sim = Sim::new();
    let client = client_with(&sim, Witnesses::default());
    client.updater.refresh(SystemTime::now()).unwrap();
    assert!(!sim.requests().iter().any(|r| r.starts_with("log/")));
    assert!(!client.metadata_dir().join("log.checkpoint").exists());
}

#[test]
fn a_timestamp_signed_with_the_online_key_but_never_logged_is_refused_and_not_kept() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    client.updater.refresh(SystemTime::now()).unwrap();

    // The attacker holds the online keys: a new snapshot and timestamp, signed, not logged.
    sim.repo().update_snapshot();
    let refusal = refused(&client);
    assert!(
        matches!(refusal, TransparencyError::NoProof { version: 2, .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().starts_with("unlogged timestamp"));
    assert_eq!(client.cached_version("timestamp"), Some(1));

    // With the proof of an honest timestamp of that version, the entry is not the served one.
    let forged = timestamp_bytes(&sim);
    let mut honest = sim.repo().timestamp.clone();
    honest.expires = expiry(SystemTime::now(), 2);
    let honest = {
        let repo = sim.repo();
        repo.sign(&repo.signers["timestamp"], &honest)
    };
    assert_ne!(honest, forged);
    log.publish(&sim, &honest, &[0, 1]);
    let refusal = refused(&client);
    assert!(
        matches!(refusal, TransparencyError::NotLogged { version: 2, .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().starts_with("split view"), "{refusal}");
    assert_eq!(client.cached_version("timestamp"), Some(1));
    assert_eq!(saved_checkpoint_size(&client), 1);
}

#[test]
fn missing_cosignatures_name_the_witnesses_that_lacked() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    client.updater.refresh(SystemTime::now()).unwrap();
    publish_change(&sim, &mut log, &[0]);
    let refusal = refused(&client);
    let TransparencyError::Refused {
        source:
            ClientError::MissingCosignatures {
                have,
                need,
                lacking,
            },
        ..
    } = &refusal
    else {
        panic!("{refusal}");
    };
    assert_eq!((*have, *need), (1, 2));
    assert_eq!(lacking, &["w2.test"]);
    assert!(refusal.to_string().contains("missing cosignatures"));
    assert_eq!(client.cached_version("timestamp"), Some(1));

    // One of two required: the same checkpoint is accepted.
    let lenient = client_with(
        &sim,
        Witnesses {
            keys: log.witness_keys(),
            quorum: 1,
        },
    );
    lenient.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(lenient.cached_version("timestamp"), Some(2));
}

#[test]
fn a_fork_signed_with_the_log_key_is_a_split_view() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    client.updater.refresh(SystemTime::now()).unwrap();
    publish_change(&sim, &mut log, &[0, 1]);
    client.updater.refresh(SystemTime::now()).unwrap();

    // The attacker holds the online keys, the log key and both witness keys, and shows this
    // client a log of its own that extends another history of the same size.
    let mut fork = Log::new(7);
    fork.tree.push(b"another first entry");
    fork.tree.push(b"another second entry");
    fork.published = 2;
    sim.repo().update_snapshot();
    let forged = timestamp_bytes(&sim);
    fork.publish(&sim, &forged, &[0, 1]);
    let refusal = refused(&client);
    assert!(
        matches!(
            refusal,
            TransparencyError::Refused {
                source: ClientError::SplitView { seen: 2, .. },
                ..
            }
        ),
        "{refusal}"
    );
    assert!(refusal.to_string().contains("split view"), "{refusal}");
    assert_eq!(client.cached_version("timestamp"), Some(2));
    assert_eq!(saved_checkpoint_size(&client), 2);
}

#[test]
fn a_shorter_log_is_a_log_rollback() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, both_witnesses(&log));
    for _ in 0..2 {
        publish_change(&sim, &mut log, &[0, 1]);
    }
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(saved_checkpoint_size(&client), 3);

    // A new timestamp in a log of one entry, signed with the stolen log key.
    let mut short = Log::new(7);
    sim.repo().update_snapshot();
    let forged = timestamp_bytes(&sim);
    short.publish(&sim, &forged, &[0, 1]);
    let refusal = refused(&client);
    assert!(
        matches!(
            refusal,
            TransparencyError::Refused {
                source: ClientError::LogRollback {
                    seen: 3,
                    offered: 1
                },
                ..
            }
        ),
        "{refusal}"
    );
}

#[test]
fn a_checkpoint_not_signed_by_the_root_log_key_is_refused() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let mut impostor = Log::new(8);
    let bytes = timestamp_bytes(&sim);
    impostor.publish(&sim, &bytes, &[0, 1]);
    let client = client_with(&sim, both_witnesses(&log));
    let refusal = refused(&client);
    assert!(
        matches!(
            refusal,
            TransparencyError::Refused {
                source: ClientError::NotSignedByLog { .. },
                ..
            }
        ),
        "{refusal}"
    );
    assert!(!client.metadata_dir().join("timestamp.json").exists());
}

#[test]
fn a_malformed_proof_is_refused_without_panic() {
    let mut log = Log::new(7);
    let sim = logged_repository(&mut log);
    let client = client_with(&sim, Witnesses::default());
    for body in [
        b"".to_vec(),
        b"{}".to_vec(),
        b"[1,2]".to_vec(),
        br#"{"index":0,"entry":"!!","inclusion":[],"previous_size":0,"consistency":[],"checkpoint":""}"#.to_vec(),
        br#"{"index":0,"entry":"","inclusion":["AAAA"],"previous_size":0,"consistency":[],"checkpoint":""}"#.to_vec(),
    ] {
        sim.repo().served.insert("log/proof/1".into(), body);
        let refusal = refused(&client);
        assert!(
            matches!(
                refusal,
                TransparencyError::MalformedProof { .. } | TransparencyError::NotLogged { .. }
            ),
            "{refusal}"
        );
    }
    sim.repo()
        .served
        .insert("log/proof/1".into(), vec![b' '; 200_000]);
    let endless = client.updater.refresh(SystemTime::now()).unwrap_err();
    assert!(matches!(endless, Error::EndlessData { .. }), "{endless}");
}
