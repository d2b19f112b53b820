//! Witnesses and clients against honest and forked logs.

use tufa_tlog::{
    AddCheckpoint, Checkpoint, ClientError, Ed25519Key, KeyType, MemoryTree, Note, NoteSignature,
    NoteSigner, Policy, ProofError, SignedCheckpoint, Tree, VerifierKey, Witness, WitnessRefusal,
    WitnessState, consistency_proof, inclusion_proof,
};

const ORIGIN: &str = "pypi.example/tufa-log";
const NOW: u64 = 1_800_000_000;

fn key(seed: u8) -> Ed25519Key {
    Ed25519Key::from_seed(&[seed; 32]).unwrap()
}

/// A log as the publisher runs it: the append-only state, every hash (to serve proofs) and the
/// log key. Two logs with the same key and origin are the same log to everyone else: a fork.
struct Log {
    tree: Tree,
    memory: MemoryTree,
    signer: NoteSigner<Ed25519Key>,
}

impl Log {
    fn new(log_key_seed: u8) -> Log {
        Log {
            tree: Tree::new(),
            memory: MemoryTree::new(),
            signer: NoteSigner::new(ORIGIN, KeyType::Ed25519, key(log_key_seed)).unwrap(),
        }
    }

    fn append(&mut self, entries: &[&str]) -> Vec<u8> {
        let appended = self.tree.append(entries).unwrap();
        for e in entries {
            self.memory.push(e.as_bytes());
        }
        let text = Checkpoint::new(ORIGIN, appended.size, appended.root).to_text();
        Note {
            signatures: vec![self.signer.sign(&text, 0).unwrap()],
            text,
        }
        .to_bytes()
    }

    fn request(&self, old: u64, checkpoint: &[u8]) -> Vec<u8> {
        AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&self.memory, old, self.memory.size()).unwrap(),
            checkpoint: checkpoint.to_vec(),
        }
        .to_bytes()
    }
}

struct RunningWitness {
    witness: Witness<Ed25519Key>,
    state: WitnessState,
}

impl RunningWitness {
    fn new(name: &str, seed: u8, log_key: &VerifierKey) -> Self {
        let mut witness = Witness::new(name, key(seed)).unwrap();
        witness.follow(ORIGIN, vec![log_key.clone()]);
        RunningWitness {
            witness,
            state: WitnessState::default(),
        }
    }

    /// Submits a request; on success records the new state and returns the cosignature.
    fn submit(&mut self, body: &[u8]) -> Result<NoteSignature, WitnessRefusal> {
        let cosigned = self
            .witness
            .add_checkpoint(body, |o| self.state.get(o), NOW)?;
        assert!(self.state.record(&cosigned));
        Ok(NoteSignature::parse_line(cosigned.response.trim_end()).unwrap())
    }
}

fn with_cosignatures(checkpoint: &[u8], cosignatures: &[NoteSignature]) -> Vec<u8> {
    let mut note = Note::parse(checkpoint).unwrap();
    note.signatures.extend_from_slice(cosignatures);
    note.to_bytes()
}

#[test]
fn a_witness_cosigns_an_honest_log_and_refuses_a_fork() {
    let mut log = Log::new(1);
    let mut w = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());

    let first = log.append(&["timestamp 1", "timestamp 2", "timestamp 3"]);
    let cosig = w.submit(&log.request(0, &first)).unwrap();
    assert_eq!(cosig.name, "witness.example/w1");
    // The cosignature verifies as the witness's, over this checkpoint.
    let note = Note::parse(&with_cosignatures(&first, &[cosig])).unwrap();
    note.verify(std::slice::from_ref(w.witness.verifier()))
        .unwrap();

    // The same checkpoint again: cosigned again (a fresh timestamp, same state).
    w.submit(&log.request(3, &first)).unwrap();

    let second = log.append(&["timestamp 4", "timestamp 5"]);
    // A log that does not know the witness's state sends old 0: 409 with the known size.
    let refusal = w.submit(&log.request(0, &second)).unwrap_err();
    assert_eq!(
        refusal,
        WitnessRefusal::Conflict {
            old_size: 0,
            known_size: 3
        }
    );
    assert_eq!(refusal.status(), 409);
    assert_eq!(
        refusal.body(),
        Some(("text/x.tlog.size", "3\n".to_string()))
    );
    w.submit(&log.request(3, &second)).unwrap();

    // A fork: the attacker holds the log key and rewrites entry 4 for one victim.
    let mut fork = Log::new(1);
    fork.append(&["timestamp 1", "timestamp 2", "timestamp 3"]);
    let forked_same_size = fork.append(&["timestamp 4", "FORGED timestamp 5"]);
    let refusal = w.submit(&fork.request(5, &forked_same_size)).unwrap_err();
    assert!(matches!(refusal, WitnessRefusal::Fork { size: 5, .. }));
    assert_eq!(refusal.status(), 409);

    let forked_longer = fork.append(&["timestamp 6"]);
    // Its own consistency proof, from the forked tree of 5: does not connect to what the
    // witness cosigned.
    let refusal = w.submit(&fork.request(5, &forked_longer)).unwrap_err();
    assert!(matches!(
        refusal,
        WitnessRefusal::Inconsistent(ProofError::Inconsistent { old: 5, new: 6 })
    ));
    assert_eq!(refusal.status(), 422);
    assert_eq!(w.state.get(ORIGIN).unwrap().size, 5, "state unchanged");
    assert_eq!(
        w.state.get(ORIGIN).unwrap().root,
        Checkpoint::parse(&Note::parse(&second).unwrap().text)
            .unwrap()
            .root
    );
}

#[test]
fn a_witness_refuses_unknown_logs_bad_signatures_and_bad_requests() {
    let mut log = Log::new(1);
    let mut w = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let checkpoint = log.append(&["a", "b"]);

    // Signed by another key under the same name: 403.
    let mut impostor = Log::new(2);
    let forged = impostor.append(&["a", "b"]);
    let refusal = w.submit(&impostor.request(0, &forged)).unwrap_err();
    assert!(matches!(refusal, WitnessRefusal::NotSignedByLog { .. }));
    assert_eq!(refusal.status(), 403);

    // A log this witness does not follow: 404.
    let other = NoteSigner::new("other.example/log", KeyType::Ed25519, key(1)).unwrap();
    let text = Checkpoint::new("other.example/log", 1, [0; 32]).to_text();
    let note = Note {
        signatures: vec![other.sign(&text, 0).unwrap()],
        text,
    };
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: note.to_bytes(),
    }
    .to_bytes();
    assert_eq!(w.submit(&body).unwrap_err().status(), 404);

    // Old size above the checkpoint's: 400.
    let body = AddCheckpoint {
        old_size: 3,
        proof: vec![],
        checkpoint: checkpoint.clone(),
    }
    .to_bytes();
    assert_eq!(w.submit(&body).unwrap_err().status(), 400);

    // A proof with old size 0: 422.
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![[0; 32]],
        checkpoint: checkpoint.clone(),
    }
    .to_bytes();
    assert_eq!(w.submit(&body).unwrap_err().status(), 422);

    // Malformed requests: 400, never a panic.
    let valid = log.request(0, &checkpoint);
    let mut too_many = b"old 0\n".to_vec();
    for _ in 0..64 {
        too_many.extend_from_slice(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
    }
    too_many.extend_from_slice(b"\n");
    too_many.extend_from_slice(&checkpoint);
    for body in [
        b"".to_vec(),
        b"old 0".to_vec(),
        b"old 01\n\n".to_vec(),
        b"old -1\n\n".to_vec(),
        b"new 0\n\n".to_vec(),
        b"old 0\nnot base64\n\n".to_vec(),
        b"old 99999999999999999999999\n\n".to_vec(),
        too_many,
        vec![b'a'; 200_000],
        valid[..valid.len() - 5].to_vec(),
    ] {
        let refusal = w.submit(&body).unwrap_err();
        assert_eq!(refusal.status(), 400, "{refusal}");
    }
    // Every truncation of a valid request is refused or, if it still is a valid request,
    // cosigned; none panics.
    for end in 0..valid.len() {
        let _ = w.witness.add_checkpoint(&valid[..end], |_| None, NOW);
    }
    w.submit(&valid).unwrap();
}

/// Two requests decided on the same state: the second to record loses and must be decided again
/// (the rollback race of c2sp.org/tlog-witness).
#[test]
fn a_stale_decision_is_not_recorded() {
    let mut log = Log::new(1);
    let w = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let mut state = WitnessState::default();
    let small = log.append(&["a"]);
    let small_req = log.request(0, &small);
    let big = log.append(&["b", "c"]);
    let big_req = log.request(0, &big);
    let a = w
        .witness
        .add_checkpoint(&small_req, |o| state.get(o), NOW)
        .unwrap();
    let b = w
        .witness
        .add_checkpoint(&big_req, |o| state.get(o), NOW)
        .unwrap();
    assert!(state.record(&b));
    assert!(
        !state.record(&a),
        "recording size 1 after 3 would roll back"
    );
    assert_eq!(state.get(ORIGIN).unwrap().size, 3);
}

#[test]
fn clients_accept_only_signed_cosigned_consistent_checkpoints() {
    let mut log = Log::new(1);
    let mut w1 = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let mut w2 = RunningWitness::new("witness.example/w2", 11, log.signer.verifier());
    let policy = Policy::new(
        ORIGIN,
        log.signer.verifier().clone(),
        vec![w1.witness.verifier().clone(), w2.witness.verifier().clone()],
        2,
    )
    .unwrap();

    let first = log.append(&["timestamp 1", "timestamp 2"]);
    let c1 = w1.submit(&log.request(0, &first)).unwrap();
    let c2 = w2.submit(&log.request(0, &first)).unwrap();

    // Signed but cosigned by one witness of the two required: refused, naming who lacked.
    let one = with_cosignatures(&first, std::slice::from_ref(&c1));
    assert_eq!(
        policy.accept(None, &one, &[], NOW).unwrap_err(),
        ClientError::MissingCosignatures {
            have: 1,
            need: 2,
            lacking: vec!["witness.example/w2".into()]
        }
    );
    let both = with_cosignatures(&first, &[c1, c2]);
    let accepted = policy.accept(None, &both, &[], NOW).unwrap();
    assert_eq!(
        accepted.cosigned_by,
        ["witness.example/w1", "witness.example/w2"]
    );
    let seen = accepted.checkpoint;

    // Inclusion of an entry in the accepted checkpoint.
    let proof = inclusion_proof(&log.memory, 1, 2).unwrap();
    Policy::verify_entry(&seen, b"timestamp 2", 1, &proof).unwrap();
    assert!(matches!(
        Policy::verify_entry(&seen, b"FORGED timestamp", 1, &proof),
        Err(ClientError::NotIncluded(_))
    ));

    // The log grows; the client follows with a consistency proof.
    let second = log.append(&["timestamp 3"]);
    let c1 = w1.submit(&log.request(2, &second)).unwrap();
    let c2 = w2.submit(&log.request(2, &second)).unwrap();
    let both2 = with_cosignatures(&second, &[c1, c2]);
    let proof = consistency_proof(&log.memory, 2, 3).unwrap();
    let accepted2 = policy.accept(Some(&seen), &both2, &proof, NOW).unwrap();

    // Rollback: the older checkpoint after the newer one.
    assert_eq!(
        policy
            .accept(Some(&accepted2.checkpoint), &both, &[], NOW)
            .unwrap_err(),
        ClientError::LogRollback {
            seen: 3,
            offered: 2
        }
    );

    // Split view: the attacker holds the log key and even two witness keys (so the cosignature
    // quorum is met), and shows this client a history where entry 2 differs.
    let mut fork = Log::new(1);
    let forked = fork.append(&["timestamp 1", "FORGED timestamp 2", "timestamp 3"]);
    let mut evil1 = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let mut evil2 = RunningWitness::new("witness.example/w2", 11, log.signer.verifier());
    let e1 = evil1.submit(&fork.request(0, &forked)).unwrap();
    let e2 = evil2.submit(&fork.request(0, &forked)).unwrap();
    let forked = with_cosignatures(&forked, &[e1, e2]);
    let forked_proof = consistency_proof(&fork.memory, 2, 3).unwrap();
    assert!(matches!(
        policy.accept(Some(&seen), &forked, &forked_proof, NOW),
        Err(ClientError::SplitView {
            seen: 2,
            offered: 3,
            ..
        })
    ));
    // At the same size as the seen checkpoint, a different root is a split view too.
    let same_size = fork.append(&[]);
    let same_size_seen = &accepted2.checkpoint;
    let e1 = evil1.submit(&fork.request(3, &same_size)).unwrap();
    let e2 = evil2.submit(&fork.request(3, &same_size)).unwrap();
    assert!(matches!(
        policy.accept(
            Some(same_size_seen),
            &with_cosignatures(&same_size, &[e1, e2]),
            &[],
            NOW
        ),
        Err(ClientError::SplitView { .. })
    ));
}

/// The attack of issue 16 at the log level: an attacker with the log key forks the log for one
/// victim. The honest witnesses refuse to cosign the fork, so a client that has never seen the
/// log before (no consistency to check) still refuses it for missing cosignatures.
#[test]
fn a_fork_without_witnesses_is_refused_by_a_fresh_client() {
    let mut log = Log::new(1);
    let mut w1 = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let mut w2 = RunningWitness::new("witness.example/w2", 11, log.signer.verifier());
    let public = log.append(&["timestamp 1", "timestamp 2"]);
    w1.submit(&log.request(0, &public)).unwrap();
    w2.submit(&log.request(0, &public)).unwrap();

    let mut fork = Log::new(1);
    let forked = fork.append(&["timestamp 1", "FORGED timestamp 2", "FORGED timestamp 3"]);
    // The attacker asks for cosignatures with every old size it can think of.
    for old in 0..=3 {
        let body = AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&fork.memory, old.min(3), 3).unwrap(),
            checkpoint: forked.clone(),
        }
        .to_bytes();
        assert!(w1.submit(&body).is_err());
        assert!(w2.submit(&body).is_err());
    }
    let policy = Policy::new(
        ORIGIN,
        log.signer.verifier().clone(),
        vec![w1.witness.verifier().clone(), w2.witness.verifier().clone()],
        1,
    )
    .unwrap();
    assert_eq!(
        policy.accept(None, &forked, &[], NOW).unwrap_err(),
        ClientError::MissingCosignatures {
            have: 0,
            need: 1,
            lacking: vec!["witness.example/w1".into(), "witness.example/w2".into()]
        }
    );
}

#[test]
fn clients_refuse_forged_signatures_other_logs_and_future_cosignatures() {
    let mut log = Log::new(1);
    let mut w1 = RunningWitness::new("witness.example/w1", 10, log.signer.verifier());
    let policy = Policy::new(
        ORIGIN,
        log.signer.verifier().clone(),
        vec![w1.witness.verifier().clone()],
        1,
    )
    .unwrap();
    let checkpoint = log.append(&["a"]);
    let cosig = w1.submit(&log.request(0, &checkpoint)).unwrap();

    // Signed by a key that is not the log's.
    let mut impostor = Log::new(2);
    let forged = impostor.append(&["a"]);
    assert!(matches!(
        policy.accept(None, &forged, &[], NOW),
        Err(ClientError::NotSignedByLog { .. })
    ));

    // A cosignature whose bytes were altered: a forged cosignature.
    let mut bad = cosig.clone();
    bad.signature[20] ^= 1;
    assert!(matches!(
        policy.accept(None, &with_cosignatures(&checkpoint, &[bad]), &[], NOW),
        Err(ClientError::ForgedCosignature(_))
    ));

    // The cosignature is dated NOW: a client whose clock is an hour behind does not count it.
    assert!(matches!(
        policy.accept(
            None,
            &with_cosignatures(&checkpoint, std::slice::from_ref(&cosig)),
            &[],
            NOW - 3600
        ),
        Err(ClientError::MissingCosignatures { .. })
    ));

    // The log key signing another origin's checkpoint.
    let text = Checkpoint::new("other.example/log", 1, [0; 32]).to_text();
    let other = Note {
        signatures: vec![log.signer.sign(&text, 0).unwrap()],
        text,
    };
    assert!(matches!(
        policy.accept(None, &other.to_bytes(), &[], NOW),
        Err(ClientError::WrongOrigin { .. })
    ));

    // Garbage is malformed, not a panic.
    assert!(matches!(
        policy.accept(None, b"\xff\xfe", &[], NOW),
        Err(ClientError::Malformed(_))
    ));

    // A policy needing more witnesses than configured, or a cosignature key as log key, is
    // refused up front.
    assert!(Policy::new(ORIGIN, log.signer.verifier().clone(), vec![], 1).is_err());
    assert!(
        Policy::new(
            ORIGIN,
            w1.witness.verifier().clone(),
            vec![w1.witness.verifier().clone()],
            1
        )
        .is_err()
    );

    // The checkpoint with its cosignature opens as a SignedCheckpoint that keeps both lines.
    let mut opened =
        SignedCheckpoint::open(&checkpoint, std::slice::from_ref(log.signer.verifier())).unwrap();
    opened.add_signatures([cosig.clone(), cosig]);
    assert_eq!(opened.note.signatures.len(), 2);
    policy
        .accept(None, &opened.note.to_bytes(), &[], NOW)
        .unwrap();
}
