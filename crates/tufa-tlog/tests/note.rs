//! Signed notes, verifier keys, checkpoints and cosignatures against published vectors.

use tufa_tlog::note::{MAX_NOTE_BYTES, MAX_SIGNATURES};
use tufa_tlog::{
    Checkpoint, Ed25519Key, Ed25519Signer, KeyType, Note, NoteError, NoteSignature, NoteSigner,
    SignedCheckpoint, VerifierKey, leaf_hash,
};

/// golang.org/x/mod sumdb/note (note.go package documentation and note_test.go): the
/// "PeterNeumann" key pair and the note it signed. Ed25519 is deterministic, so signing the same
/// text must give the published signature byte for byte.
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
    then you don't know what your problem is.\n\
    \n\
    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn the_go_sumdb_note_example_signs_and_verifies_byte_for_byte() {
    let vkey = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(vkey.to_string(), PETER_VKEY);
    assert_eq!(vkey.key_id(), 0xc74f20a3);
    let (name, key) = Ed25519Key::parse_signer_key(PETER_SKEY).unwrap();
    assert_eq!(name, "PeterNeumann");
    assert_eq!(&key.public_key(), vkey.public_key());

    let signer = NoteSigner::new(&name, KeyType::Ed25519, key).unwrap();
    let signature = signer.sign(PETER_TEXT, 0).unwrap();
    let note = Note {
        text: PETER_TEXT.into(),
        signatures: vec![signature],
    };
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), PETER_NOTE);

    let parsed = Note::parse(PETER_NOTE.as_bytes()).unwrap();
    assert_eq!(parsed, note);
    let keys = [vkey.clone()];
    let verified = parsed.verify(&keys).unwrap();
    assert_eq!(verified, [(&keys[0], None)]);

    let altered = PETER_NOTE.replace("cryptography", "cryptographY");
    assert_eq!(
        Note::parse(altered.as_bytes()).unwrap().verify(&keys),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into()
        })
    );
}

/// note_test.go's TestNewVerifier: every substring and every one-byte change of the verifier key
/// is refused (except changes that leave the key's bytes the same, which cannot happen here).
#[test]
fn every_mangled_verifier_key_is_refused() {
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i != 0 || j != b.len() {
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(VerifierKey::parse(s).is_err(), "{s}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "{s}");
        }
    }
}

/// transparency-dev/formats note/note_cosigv1_test.go (TestCoSigV1NewVerifier,
/// TestCosignatureTimestamp): a type-1 key whose base64 contains '+', a native type-4 cosignature
/// key, and the timestamp carried by a cosignature.
#[test]
fn cosignature_keys_and_timestamps_of_transparency_dev_formats() {
    let plus =
        VerifierKey::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").unwrap();
    assert_eq!(plus.kind(), KeyType::Ed25519);
    let remora =
        VerifierKey::parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
            .unwrap();
    assert_eq!(remora.kind(), KeyType::Cosignature);
    assert_eq!(remora.key_id(), 0xda77ade7);
    // The same key as type 1 has another key ID: a log signature cannot pass as a cosignature.
    let as_log = VerifierKey::new(remora.name(), KeyType::Ed25519, *remora.public_key()).unwrap();
    assert_ne!(as_log.key_id(), remora.key_id());
    for bad in [
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "{bad}");
    }
    let sig = NoteSignature::parse_line(
        "\u{2014} w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
    )
    .unwrap();
    assert_eq!(sig.cosignature_timestamp(), Some(1_727_964_367));
}

/// golang.org/x/mod sumdb/tlog note_test.go (TestFormatTree, TestParseTree): the tree note text
/// and the refusals of a non-decimal size and a bad hash.
#[test]
fn checkpoint_text_matches_the_go_sumdb_format() {
    let golden =
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    let checkpoint = Checkpoint::new(
        "go.sum database tree",
        123_456_789_012,
        leaf_hash(b"hello world"),
    );
    assert_eq!(checkpoint.to_text(), golden);
    assert_eq!(Checkpoint::parse(golden).unwrap(), checkpoint);
    for bad in [
        "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
        "go.sum database tree\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n",
        "\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n\n",
        "go.sum database tree\n123\n",
        "go.sum database tree\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=",
    ] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
    }
    // Extension lines are kept and signed.
    let with_ext = format!("{golden}ext one\n");
    assert_eq!(
        Checkpoint::parse(&with_ext).unwrap().extensions,
        ["ext one"]
    );
}

/// The example of c2sp.org/tlog-checkpoint and tlog-cosignature parses: a log signature and a
/// witness cosignature line.
#[test]
fn the_c2sp_cosigned_checkpoint_example_parses() {
    let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
    let parsed = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(parsed.signatures.len(), 2);
    assert_eq!(parsed.to_bytes(), note.as_bytes());
    let checkpoint = Checkpoint::parse(&parsed.text).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20_852_163);
    // tlog-cosignature's example: the witness signed at 1679315147 (its "time" line).
    assert_eq!(
        parsed.signatures[1].cosignature_timestamp(),
        Some(1_679_315_147)
    );
    // Nobody here trusts these keys: the note is refused, not half-accepted.
    let other = VerifierKey::parse(PETER_VKEY).unwrap();
    assert!(matches!(
        parsed.verify(&[other]),
        Err(NoteError::NoTrustedSignature { .. })
    ));
}

fn key(seed: u8) -> Ed25519Key {
    Ed25519Key::from_seed(&[seed; 32]).unwrap()
}

#[test]
fn cosignatures_sign_the_timestamp_and_the_checkpoint() {
    let log = NoteSigner::new("example.com/log", KeyType::Ed25519, key(1)).unwrap();
    let witness = NoteSigner::new("witness.example/w1", KeyType::Cosignature, key(2)).unwrap();
    let text = Checkpoint::new("example.com/log", 5, [7; 32]).to_text();
    let note = Note {
        text: text.clone(),
        signatures: vec![
            log.sign(&text, 0).unwrap(),
            witness.sign(&text, 1_700_000_000).unwrap(),
        ],
    };
    let bytes = note.to_bytes();
    let parsed = Note::parse(&bytes).unwrap();
    let keys = [log.verifier().clone(), witness.verifier().clone()];
    assert_eq!(
        parsed.verify(&keys).unwrap(),
        [(&keys[0], None), (&keys[1], Some(1_700_000_000))]
    );
    // The verifier key round-trips through its text form.
    assert_eq!(
        VerifierKey::parse(&witness.verifier().to_string()).unwrap(),
        keys[1]
    );

    // Moving the timestamp breaks the cosignature.
    let mut moved = parsed.clone();
    moved.signatures[1].signature[7] ^= 1;
    assert_eq!(
        moved.verify(&keys),
        Err(NoteError::InvalidSignature {
            name: "witness.example/w1".into()
        })
    );
    // A timestamp above 2^63 - 1 is refused.
    assert!(matches!(
        witness.sign(&text, u64::MAX),
        Err(NoteError::BadTimestamp { .. })
    ));
    // A cosignature is not a log signature (and the reverse): other key IDs, so ignored.
    let log_only = [log.verifier().clone()];
    let cosig_only = Note {
        text: text.clone(),
        signatures: vec![witness.sign(&text, 1).unwrap()],
    };
    assert!(matches!(
        cosig_only.verify(&log_only),
        Err(NoteError::NoTrustedSignature { .. })
    ));
    // A signed checkpoint opens with the log key alone, keeping the cosignature for others.
    let opened = SignedCheckpoint::open(&bytes, &log_only).unwrap();
    assert_eq!(opened.checkpoint.size, 5);
    assert_eq!(opened.note.signatures.len(), 2);
}

#[test]
fn notes_are_bounded_and_strict() {
    let log = NoteSigner::new("example.com/log", KeyType::Ed25519, key(1)).unwrap();
    let text = "hello\n";
    let line = log.sign(text, 0).unwrap().line();
    let note = |sigs: usize| format!("{text}\n{}", line.repeat(sigs));
    assert!(Note::parse(note(16).as_bytes()).is_ok());
    assert!(Note::parse(note(MAX_SIGNATURES).as_bytes()).is_ok());
    assert!(matches!(
        Note::parse(note(MAX_SIGNATURES + 1).as_bytes()),
        Err(NoteError::TooManySignatures { .. })
    ));
    let big = format!("{}\n\n{line}", "a".repeat(MAX_NOTE_BYTES));
    assert!(matches!(
        Note::parse(big.as_bytes()),
        Err(NoteError::TooLarge { .. })
    ));
    let many_lines = format!("{}\n{line}", "a\n".repeat(100));
    assert!(matches!(
        Note::parse(many_lines.as_bytes()),
        Err(NoteError::TooManyLines { .. })
    ));
    for bad in [
        format!("hel\tlo\n\n{line}"),
        format!("hello\n{line}"),
        format!("hello\n\n{}", line.trim_end()),
        "hello\n\n".to_string(),
        format!(
            "hello\n\n- example.com/log {}",
            &line[line.rfind(' ').unwrap() + 1..]
        ),
        format!(
            "hello\n\n\u{2014} a+b {}",
            &line[line.rfind(' ').unwrap() + 1..]
        ),
        "hello\n\n\u{2014} example.com/log AAAA\n".to_string(),
    ] {
        assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(matches!(
        Note::parse(b"hello\n\n\xff\n"),
        Err(NoteError::NotUtf8)
    ));
    // The text ends at the last blank line, so a text with a blank line inside is still signed
    // whole.
    let inner = "a\n\nb\n";
    let signed = format!("{inner}\n{}", log.sign(inner, 0).unwrap().line());
    let parsed = Note::parse(signed.as_bytes()).unwrap();
    assert_eq!(parsed.text, inner);
    parsed.verify(&[log.verifier().clone()]).unwrap();
}
