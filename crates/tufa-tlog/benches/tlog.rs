//! What the transparency log adds per publish and per client refresh, on a log of a million
//! entries: the publisher's append + checkpoint signature, a witness's decision and cosignature,
//! a client's checkpoint acceptance with two cosignatures and the inclusion check, and the tiles
//! a client fetches. Run with `cargo bench -p tufa-tlog`; it prints, asserts nothing about time.

use std::time::{Duration, Instant};

use tufa_tlog::tiles::{tiles_for_consistency, tiles_for_inclusion};
use tufa_tlog::{
    AddCheckpoint, Checkpoint, Ed25519Key, KeyType, MemoryTree, Note, NoteSignature, NoteSigner,
    Policy, Tree, Witness, WitnessState, consistency_proof, inclusion_proof,
};

const ORIGIN: &str = "pypi.example/tufa-log";
const SIZE: u64 = 1_000_000;
const ROUNDS: usize = 1000;
const NOW: u64 = 1_800_000_000;

fn entry(i: u64) -> Vec<u8> {
    format!(
        "tufa timestamp v1\nversion {i}\nsnapshot {i}\nsha256 {:064x}\n",
        i
    )
    .into_bytes()
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p99 = times[times.len() * 99 / 100];
    println!("{name:<58} mean {mean:>10.1?}  p99 {p99:>10.1?}");
}

fn main() {
    let log = NoteSigner::new(
        ORIGIN,
        KeyType::Ed25519,
        Ed25519Key::from_seed(&[1; 32]).unwrap(),
    )
    .unwrap();
    let mut tree = Tree::new();
    let mut memory = MemoryTree::new();
    let start = Instant::now();
    let mut next = 0u64;
    while next < SIZE {
        let batch: Vec<Vec<u8>> = (next..next + 1000).map(entry).collect();
        tree.append(&batch).unwrap();
        for e in &batch {
            memory.push(e);
        }
        next += 1000;
    }
    println!(
        "built a log of {SIZE} entries in batches of 1000: {:.1?} (tree and stored hashes)",
        start.elapsed()
    );

    let mut witnesses = Vec::new();
    for (i, name) in ["w1.example/witness", "w2.example/witness"]
        .iter()
        .enumerate()
    {
        let mut w =
            Witness::new(name, Ed25519Key::from_seed(&[10 + i as u8; 32]).unwrap()).unwrap();
        w.follow(ORIGIN, vec![log.verifier().clone()]);
        witnesses.push((w, WitnessState::default()));
    }
    let policy = Policy::new(
        ORIGIN,
        log.verifier().clone(),
        witnesses
            .iter()
            .map(|(w, _)| w.verifier().clone())
            .collect(),
        2,
    )
    .unwrap();

    let sign = |size: u64, root| {
        let text = Checkpoint::new(ORIGIN, size, root).to_text();
        Note {
            signatures: vec![log.sign(&text, 0).unwrap()],
            text,
        }
        .to_bytes()
    };
    let mut last_note = sign(tree.size(), tree.root());
    for (w, state) in &mut witnesses {
        let body = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: last_note.clone(),
        }
        .to_bytes();
        let c = w.add_checkpoint(&body, |o| state.get(o), NOW).unwrap();
        assert!(state.record(&c));
    }
    let mut seen = Checkpoint::new(ORIGIN, tree.size(), tree.root());

    let (mut publish, mut witness_t, mut client_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes_written = 0usize;
    for _ in 0..ROUNDS {
        let old = tree.size();
        let e = entry(old);
        // The publisher: append one timestamp, sign the checkpoint (tiles to write returned).
        let t = Instant::now();
        let appended = tree.append(&[&e]).unwrap();
        let note = sign(appended.size, appended.root);
        publish.push(t.elapsed());
        bytes_written += appended.tiles.iter().map(|(_, d)| d.len()).sum::<usize>()
            + appended.bundles.iter().map(|(_, d)| d.len()).sum::<usize>();
        memory.push(&e);

        // Each witness: parse, verify, check consistency, cosign.
        let proof = consistency_proof(&memory, old, appended.size).unwrap();
        let body = AddCheckpoint {
            old_size: old,
            proof: proof.clone(),
            checkpoint: note.clone(),
        }
        .to_bytes();
        let mut cosigned = Note::parse(&note).unwrap();
        for (w, state) in &mut witnesses {
            let t = Instant::now();
            let c = w.add_checkpoint(&body, |o| state.get(o), NOW).unwrap();
            witness_t.push(t.elapsed());
            assert!(state.record(&c));
            cosigned
                .signatures
                .push(NoteSignature::parse_line(c.response.trim_end()).unwrap());
        }
        let cosigned = cosigned.to_bytes();

        // The client: accept the checkpoint (log signature, two cosignatures, consistency) and
        // check the new timestamp's inclusion.
        let inclusion = inclusion_proof(&memory, old, appended.size).unwrap();
        let t = Instant::now();
        let accepted = policy.accept(Some(&seen), &cosigned, &proof, NOW).unwrap();
        Policy::verify_entry(&accepted.checkpoint, &e, old, &inclusion).unwrap();
        client_t.push(t.elapsed());
        seen = accepted.checkpoint;
        last_note = cosigned;
    }
    println!(
        "log size {} after {ROUNDS} publishes of one timestamp each",
        tree.size()
    );
    summary("publisher: append 1 entry + sign checkpoint", publish);
    summary("witness: add-checkpoint decision + cosignature", witness_t);
    summary(
        "client: accept (log sig + 2 cosigs + consistency) + inclusion",
        client_t,
    );
    println!(
        "tile and bundle bytes written per publish: {} (mean); checkpoint note with 2 cosignatures: {} bytes",
        bytes_written / ROUNDS,
        last_note.len()
    );
    let size = tree.size();
    for (old, label) in [
        (size - 1, "one publish behind"),
        (size - 100, "100 publishes behind"),
    ] {
        let mut tiles = tiles_for_consistency(old, size).unwrap();
        tiles.extend(tiles_for_inclusion(size - 1, size).unwrap());
        tiles.sort();
        tiles.dedup();
        println!(
            "client refresh {label}: checkpoint + {} tiles ({})",
            tiles.len(),
            tiles
                .iter()
                .map(|t| t.path())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
