//! `tufa witness` and the index's witnesses: a witness cosigns a log that grows consistently,
//! refuses a fork (two trees of one origin signed by the log key) with the C2SP tlog-witness
//! status codes, still refuses it after a restart, and never runs twice on one state; an index
//! started with `--witness` gets its checkpoints cosigned, keeps publishing while the witness is
//! down (reporting it on /status and /metrics), and is cosigned again once the witness is back.
//! End to end: pip installs through a `tufa proxy` that requires the witness's cosignature;
//! while the witness is down the index publishes all the same, and the proxy keeps serving what
//! was cosigned, naming the witness that lacked.

use std::path::Path;
use std::time::{Duration, Instant};

use tufa_testkit::{TufaProxy, TufaServer, TufaWitness, http};
use tufa_tlog::{
    AddCheckpoint, Checkpoint, Ed25519Key, KeyType, MemoryTree, Note, NoteSigner, SignedCheckpoint,
    VerifierKey, consistency_proof,
};

mod common;
use common::{TUFA, installed, output_text, pip};

fn tree(entries: &[&str]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for entry in entries {
        tree.push(entry.as_bytes());
    }
    tree
}

/// A log's signer, from a key file as `tufa ceremony --log-origin` writes it.
fn log_signer(dir: &Path, origin: &str) -> NoteSigner<Ed25519Key> {
    let path = dir.join(format!("{}.key", origin.replace('/', "_")));
    tufa_repo::LogKey::generate(&path, origin).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (name, key) = Ed25519Key::parse_signer_key(text.trim()).unwrap();
    NoteSigner::new(&name, KeyType::Ed25519, key).unwrap()
}

fn checkpoint(signer: &NoteSigner<Ed25519Key>, tree: &MemoryTree) -> Vec<u8> {
    let text = Checkpoint::new(signer.verifier().name(), tree.size(), tree.root()).to_text();
    let signature = signer.sign(&text, 0).unwrap();
    Note {
        text,
        signatures: vec![signature],
    }
    .to_bytes()
}

/// `POST /add-checkpoint` of `tree`'s checkpoint, extending `old` leaves with a proof from
/// `tree` itself.
fn add(
    witness: &TufaWitness,
    signer: &NoteSigner<Ed25519Key>,
    tree: &MemoryTree,
    old: u64,
) -> http::RawResponse {
    let body = AddCheckpoint {
        old_size: old,
        proof: consistency_proof(tree, old, tree.size()).unwrap(),
        checkpoint: checkpoint(signer, tree),
    }
    .to_bytes();
    http::request(
        "POST",
        &format!("{}/add-checkpoint", witness.url),
        &[("Content-Type", "text/plain")],
        &body,
    )
}

/// Checks that `answer` is the witness's valid cosignature of `tree`'s checkpoint.
fn assert_cosigned(
    answer: &http::RawResponse,
    witness_key: &VerifierKey,
    signer: &NoteSigner<Ed25519Key>,
    tree: &MemoryTree,
) {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut note = Note::parse(&checkpoint(signer, tree)).unwrap();
    for line in answer.text().lines() {
        note.signatures
            .push(tufa_tlog::NoteSignature::parse_line(line).unwrap());
    }
    let verified = note.verify(std::slice::from_ref(witness_key)).unwrap();
    assert_eq!(verified.len(), 1);
}

#[test]
fn a_witness_refuses_a_forked_log_and_still_refuses_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let signer = log_signer(dir.path(), "example.org/log");
    let stranger = log_signer(dir.path(), "example.org/other");
    let key = dir.path().join("witness.key");
    let witness_key =
        VerifierKey::parse(&TufaWitness::key(TUFA.as_ref(), "witness.test", &key)).unwrap();
    assert_eq!(witness_key.kind(), KeyType::Cosignature);
    let state = dir.path().join("state");
    let follow = signer.verifier().to_string();
    let mut witness = TufaWitness::start(TUFA.as_ref(), &key, &state, &["--log", &follow]);

    let honest = tree(&["a0", "a1"]);
    let fork = tree(&["a0", "b1"]);
    assert_cosigned(
        &add(&witness, &signer, &honest, 0),
        &witness_key,
        &signer,
        &honest,
    );

    let refusals = |witness: &TufaWitness| {
        // Another tree of the same size, as from scratch: the witness knows size 2.
        let conflict = add(witness, &signer, &fork, 0);
        assert_eq!(conflict.status, 409, "{}", conflict.text());
        assert_eq!(conflict.header("content-type"), Some("text/x.tlog.size"));
        assert_eq!(conflict.text(), "2\n");
        // The same size with another root: a fork.
        let same_size = add(witness, &signer, &fork, 2);
        assert_eq!(same_size.status, 409, "{}", same_size.text());
        assert!(same_size.reason.contains("fork"), "{}", same_size.reason);
        // A larger forked tree, with its own (valid for it) consistency proof: refused.
        let larger = tree(&["a0", "b1", "b2"]);
        let grown = add(witness, &signer, &larger, 2);
        assert_eq!(grown.status, 422, "{}", grown.text());
    };
    refusals(&witness);

    // The other refusals of the specification.
    let unknown = add(&witness, &stranger, &honest, 0);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let forged = {
        let text = Checkpoint::new("example.org/log", 2, honest.root()).to_text();
        let mut note = Note::parse(&checkpoint(&stranger, &honest)).unwrap();
        note.text = text;
        let body = AddCheckpoint {
            old_size: 0,
            proof: Vec::new(),
            checkpoint: note.to_bytes(),
        }
        .to_bytes();
        http::request(
            "POST",
            &format!("{}/add-checkpoint", witness.url),
            &[],
            &body,
        )
    };
    assert_eq!(forged.status, 403, "{}", forged.text());
    let garbage = http::request(
        "POST",
        &format!("{}/add-checkpoint", witness.url),
        &[],
        b"old 01\n\nnot a note",
    );
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    let huge = http::request(
        "POST",
        &format!("{}/add-checkpoint", witness.url),
        &[],
        &vec![b'x'; 1 << 20],
    );
    assert!(matches!(huge.status, 400 | 413), "{}", huge.status);

    // A second witness on the same state is refused: it could cosign another tree.
    let second = std::process::Command::new(TUFA)
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key)
        .arg("--state")
        .arg(&state)
        .args(["--log", &follow])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another witness uses the state"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // Restarted (killed, as a crash), the witness remembers what it cosigned.
    witness.kill();
    let witness = TufaWitness::start(TUFA.as_ref(), &key, &state, &["--log", &follow]);
    refusals(&witness);
    let grown = tree(&["a0", "a1", "a2"]);
    assert_cosigned(
        &add(&witness, &signer, &grown, 2),
        &witness_key,
        &signer,
        &grown,
    );
}

/// The checkpoint the index serves, once `done` says it is the one wanted (30 s at most).
fn served_checkpoint(
    server: &TufaServer,
    log_key: &VerifierKey,
    done: impl Fn(&SignedCheckpoint) -> bool,
) -> SignedCheckpoint {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = http::get(&format!("{}/tuf/log/checkpoint", server.url), &[]);
        let checkpoint =
            SignedCheckpoint::open(&served.body, std::slice::from_ref(log_key)).unwrap();
        if done(&checkpoint) {
            return checkpoint;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint never got there: {}\n{}",
            String::from_utf8_lossy(&served.body),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A development repository in `DIR/data` (a first start creates it; its root declares the
/// log) and a witness key in `DIR/witness.key`.
struct Witnessed {
    data: std::path::PathBuf,
    root: std::path::PathBuf,
    log_key: VerifierKey,
    key: std::path::PathBuf,
    witness_key: String,
    parsed_witness_key: VerifierKey,
}

fn witnessed(dir: &std::path::Path) -> Witnessed {
    let data = dir.join("data");
    drop(TufaServer::start(TUFA.as_ref(), &data, &[]));
    let root = data.join("trusted-root.json");
    let log_key =
        tufa_metadata::Metadata::<tufa_metadata::Root>::from_bytes(&std::fs::read(&root).unwrap())
            .unwrap()
            .signed
            .transparency_log()
            .unwrap()
            .unwrap()
            .key;
    let key = dir.join("witness.key");
    let witness_key = TufaWitness::key(TUFA.as_ref(), "witness.test", &key);
    let parsed_witness_key = VerifierKey::parse(&witness_key).unwrap();
    Witnessed {
        data,
        root,
        log_key,
        key,
        witness_key,
        parsed_witness_key,
    }
}

#[test]
fn an_index_gets_its_checkpoints_cosigned_and_publishes_while_its_witness_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let Witnessed {
        data,
        root,
        log_key,
        key,
        witness_key,
        parsed_witness_key,
    } = witnessed(dir.path());
    let state = dir.path().join("state");
    let root_arg = root.to_str().unwrap();
    let mut witness =
        TufaWitness::start(TUFA.as_ref(), &key, &state, &["--log-from-root", root_arg]);
    let witness_url = witness.url.clone();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--witness", &witness_url, "--witness-key", &witness_key],
    );
    let alice = server.create_token("alice");
    let cosigned = |checkpoint: &SignedCheckpoint| {
        checkpoint
            .note
            .verify(std::slice::from_ref(&parsed_witness_key))
            .is_ok()
    };

    let answer = server.upload_wheel(&alice, "witnessed", "1.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    let timestamp = http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]);
    let version = tufa_metadata::Metadata::<tufa_metadata::Timestamp>::from_bytes(&timestamp.body)
        .unwrap()
        .signed
        .version;
    let checkpoint = served_checkpoint(&server, &log_key, |c| cosigned(c));
    // The proof of the timestamp carries the cosigned checkpoint too (in time, or added late).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let proof = http::get(&format!("{}/tuf/log/proof/{version}", server.url), &[]).json();
        let note = SignedCheckpoint::open(
            proof["checkpoint"].as_str().unwrap().as_bytes(),
            std::slice::from_ref(&log_key),
        )
        .unwrap();
        if cosigned(&note) {
            break;
        }
        assert!(Instant::now() < deadline, "the proof was never cosigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cosigned_size = checkpoint.checkpoint.size;

    // The witness goes down: publishing goes on, and the failure is reported by its URL.
    witness.kill();
    let answer = server.upload_wheel(&alice, "witnessed", "2.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    served_checkpoint(&server, &log_key, |c| c.checkpoint.size > cosigned_size);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http::get(&format!("{}/status", server.url), &[]).json();
        let witnesses = &status["transparency_log"]["witnesses"];
        if witnesses[0]["failures"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(witnesses[0]["url"], witness_url.as_str());
            assert!(witnesses[0]["last_error"].is_string(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no witness failure reported: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    assert!(
        metrics.contains(&format!(
            "tufa_witness_failures_total{{witness=\"{witness_url}\"}}"
        )),
        "{metrics}"
    );
    assert!(server.log().contains(&witness_url), "{}", server.log());

    // Back (on another port: the index keeps asking the URL it was given, so the test starts a
    // witness there is no guarantee for; a new index start names the new URL).
    let witness = TufaWitness::start(TUFA.as_ref(), &key, &state, &["--log-from-root", root_arg]);
    drop(server);
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--witness", &witness.url, "--witness-key", &witness_key],
    );
    let answer = server.upload_wheel(&alice, "witnessed", "3.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    // The witness last cosigned an older size: the index sends it a proof from there.
    let latest = served_checkpoint(&server, &log_key, |c| {
        c.checkpoint.size > cosigned_size + 1 && cosigned(c)
    });
    assert!(latest.checkpoint.size >= cosigned_size + 2);
}

/// The version of the timestamp `server` serves, once its proof carries a checkpoint that
/// `cosigned` accepts (30 s at most).
fn cosigned_proof(
    server: &TufaServer,
    log_key: &VerifierKey,
    cosigned: impl Fn(&SignedCheckpoint) -> bool,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let timestamp = http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]);
        let version =
            tufa_metadata::Metadata::<tufa_metadata::Timestamp>::from_bytes(&timestamp.body)
                .unwrap()
                .signed
                .version;
        let proof = http::get(&format!("{}/tuf/log/proof/{version}", server.url), &[]).json();
        let note = SignedCheckpoint::open(
            proof["checkpoint"].as_str().unwrap().as_bytes(),
            std::slice::from_ref(log_key),
        )
        .unwrap();
        if cosigned(&note) {
            return version;
        }
        assert!(
            Instant::now() < deadline,
            "the proof of timestamp {version} was never cosigned\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pip_installs_through_a_proxy_that_requires_the_witness_and_publishing_outlasts_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let Witnessed {
        data,
        root,
        log_key,
        key,
        witness_key,
        parsed_witness_key,
    } = witnessed(dir.path());
    let cosigned = |checkpoint: &SignedCheckpoint| {
        checkpoint
            .note
            .verify(std::slice::from_ref(&parsed_witness_key))
            .is_ok()
    };
    let state = dir.path().join("state");
    let root_arg = root.to_str().unwrap();
    let start_witness =
        || TufaWitness::start(TUFA.as_ref(), &key, &state, &["--log-from-root", root_arg]);
    let start_server = |witness: &TufaWitness| {
        TufaServer::start(
            TUFA.as_ref(),
            &data,
            &["--witness", &witness.url, "--witness-key", &witness_key],
        )
    };
    let cache = dir.path().join("proxy-cache");
    let start_proxy = |server: &TufaServer| {
        TufaProxy::start(
            TUFA.as_ref(),
            &server.url,
            &root,
            &cache,
            &[
                "--refresh-interval-ms",
                "300",
                "--witness",
                &witness_key,
                "--witnesses-required",
                "1",
            ],
        )
    };
    let install = |proxy: &TufaProxy, target: &str, requirement: &str| {
        let target = dir.path().join(target);
        let output = pip(&proxy.simple_url(), &target, &[requirement]);
        (output, installed(&target))
    };

    let mut witness = start_witness();
    let server = start_server(&witness);
    let alice = server.create_token("alice");
    let answer = server.upload_wheel(&alice, "tufa-wit", "1.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    cosigned_proof(&server, &log_key, cosigned);
    let proxy = start_proxy(&server);
    let (output, found) = install(&proxy, "one", "tufa-wit");
    assert_eq!(found, ["tufa_wit-1.0"], "{}", output_text(&output));

    // The witness goes down: the index publishes 2.0 all the same, with a checkpoint nobody
    // cosigned, and the proxy, which requires the witness, keeps serving what was cosigned.
    witness.kill();
    let cosigned_size = served_checkpoint(&server, &log_key, |_| true)
        .checkpoint
        .size;
    let answer = server.upload_wheel(&alice, "tufa-wit", "2.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    served_checkpoint(&server, &log_key, |c| c.checkpoint.size > cosigned_size);
    // Past the proxy's refresh interval, so that the next page request fetches the timestamp.
    std::thread::sleep(Duration::from_millis(400));
    let (output, found) = install(&proxy, "two", "tufa-wit==2.0");
    assert!(!output.status.success(), "{}", output_text(&output));
    assert!(found.is_empty(), "{found:?}");
    let log = proxy.log_containing("missing cosignatures");
    assert!(log.contains("witness.test"), "{log}");
    let (output, found) = install(&proxy, "still-one", "tufa-wit");
    assert_eq!(found, ["tufa_wit-1.0"], "{}", output_text(&output));

    // The witness back (the index restarted to name its new address, the proxy to follow the
    // index, on the cache that remembers the last checkpoint it saw): the next release is
    // cosigned, and installs.
    drop(proxy);
    drop(server);
    let witness = start_witness();
    let server = start_server(&witness);
    let answer = server.upload_wheel(&alice, "tufa-wit", "3.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    cosigned_proof(&server, &log_key, cosigned);
    let proxy = start_proxy(&server);
    let (output, found) = install(&proxy, "three", "tufa-wit");
    assert_eq!(found, ["tufa_wit-3.0"], "{}", output_text(&output));
}
