//! The timestamp log entry: one spelling per entry, and a timestamp not logged is not included.

use tufa_tlog::entry::TimestampEntry;
use tufa_tlog::{Checkpoint, MemoryTree, Policy, inclusion_proof};

#[test]
fn entries_round_trip_and_refuse_other_spellings() {
    // SHA-256("abc") is FIPS 180-2's first example.
    let entry = TimestampEntry::of(b"abc", 42, 41, Some([0xab; 32]));
    let bytes = entry.to_bytes();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        format!(
            "tufa-timestamp/v1\nversion 42\nsha256 {}\nsnapshot 41 {}\n",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "ab".repeat(32)
        )
    );
    assert_eq!(TimestampEntry::parse(&bytes).unwrap(), entry);
    let without = TimestampEntry {
        snapshot_sha256: None,
        ..entry
    };
    assert_eq!(TimestampEntry::parse(&without.to_bytes()).unwrap(), without);

    let text = String::from_utf8(bytes).unwrap();
    for bad in [
        text.replace("version 42", "version 042"),
        text.replace("version 42", "version +42"),
        text.replace("tufa-timestamp/v1", "tufa-timestamp/v2"),
        text.replace("snapshot 41 ", "snapshot 41  "),
        text.replace("abab", "ABAB"),
        text.trim_end().to_string(),
        format!("{text}extra\n"),
        text.replace("sha256 ", "sha256  "),
        "x".repeat(300),
    ] {
        assert!(TimestampEntry::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

#[test]
fn a_timestamp_shown_to_one_client_only_is_not_included() {
    let published: Vec<Vec<u8>> = (1..=5u64)
        .map(|v| TimestampEntry::of(format!("timestamp v{v}").as_bytes(), v, v, None).to_bytes())
        .collect();
    let mut tree = MemoryTree::new();
    for e in &published {
        tree.push(e);
    }
    let checkpoint = Checkpoint::new("pypi.example/tufa-log", 5, tree.root());
    let proof = inclusion_proof(&tree, 4, 5).unwrap();
    Policy::verify_entry(&checkpoint, &published[4], 4, &proof).unwrap();
    // The attacker signs another version-5 timestamp with the stolen online key: its entry
    // differs in sha256, and no proof in the public log includes it.
    let forged = TimestampEntry::of(b"forged timestamp v5", 5, 5, None).to_bytes();
    for index in 0..5 {
        let proof = inclusion_proof(&tree, index, 5).unwrap();
        assert!(Policy::verify_entry(&checkpoint, &forged, index, &proof).is_err());
    }
}
