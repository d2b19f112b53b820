//! Signing and verification with every supported key type, and key file handling.

mod support;

use serde_json::json;
use support::*;
use tufa_metadata::*;

#[test]
fn every_key_type_signs_and_verifies() {
    for signer in [ed25519(), ecdsa(), rsa()] {
        let root = signed(root_with(&[&signer], 1), &[&signer]);
        let parsed = Metadata::<Root>::from_bytes(&root.to_bytes().unwrap()).unwrap();
        parsed.signed.verify_delegate("root", &parsed).unwrap();
        assert_eq!(parsed, root);

        let mut tampered = parsed.clone();
        tampered.signed.version = 2;
        assert!(
            matches!(
                tampered.signed.verify_delegate("root", &tampered),
                Err(Error::ThresholdNotMet { valid: 0, .. })
            ),
            "{} accepted a signature over other content",
            signer.public_key().keytype
        );
    }
}

#[test]
fn threshold_counts_distinct_authorized_keys() {
    let (a, b, c, outsider) = (ed25519(), ecdsa(), rsa(), ed25519());
    let root = root_with(&[&a, &b, &c], 2);
    let verify = |signers: &[&dyn Signer]| {
        let metadata = signed(root.clone(), signers);
        root.verify_delegate("targets", &metadata)
    };
    verify(&[&a, &b]).unwrap();
    verify(&[&b, &c]).unwrap();
    verify(&[&a, &b, &c]).unwrap();
    assert!(matches!(
        verify(&[&a]),
        Err(Error::ThresholdNotMet { valid: 1, .. })
    ));
    assert!(matches!(
        verify(&[&a, &outsider]),
        Err(Error::ThresholdNotMet { valid: 1, .. })
    ));
}

#[test]
fn resigning_with_the_same_key_replaces_its_signature() {
    let key = ed25519();
    let mut metadata = signed(root_with(&[&key], 1), &[&key]);
    metadata.signed.version = 2;
    metadata.sign(&key).unwrap();
    assert_eq!(metadata.signatures().len(), 1);
    metadata.signed.verify_delegate("root", &metadata).unwrap();
}

#[test]
fn encrypted_key_files_round_trip_and_need_the_passphrase() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256Sha256] {
        let der = generate_private_key(algorithm).unwrap();
        let pem = private_key_pem(&der, Some(b"correct horse")).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        let signer = FileSigner::from_pem(&pem, Some(b"correct horse")).unwrap();
        let plain = FileSigner::from_pkcs8_der(der.as_bytes()).unwrap();
        assert_eq!(signer.key_id(), plain.key_id());

        for (passphrase, expected) in [
            (None, "a passphrase is needed"),
            (Some(&b"wrong"[..]), "wrong passphrase"),
        ] {
            match FileSigner::from_pem(&pem, passphrase) {
                Err(Error::PrivateKey(message)) => assert!(message.contains(expected), "{message}"),
                other => panic!("expected a private key error, got {other:?}"),
            }
        }
    }
    let plain_pem =
        private_key_pem(&generate_private_key(KeyAlgorithm::Ed25519).unwrap(), None).unwrap();
    assert!(plain_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    FileSigner::from_pem(&plain_pem, None).unwrap();
}

#[test]
fn garbage_key_files_are_refused() {
    for pem in [
        "",
        "not a key",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(FileSigner::from_pem(pem, None), Err(Error::PrivateKey(_))),
            "{pem}"
        );
    }
    assert!(matches!(
        generate_private_key(KeyAlgorithm::RsaPssSha256),
        Err(Error::PrivateKey(_))
    ));
}

#[test]
fn key_ids_are_the_hash_of_the_canonical_key() {
    let key = Key::new("ed25519", "ed25519", "ab".repeat(32));
    let canonical = to_canonical_bytes(&key).unwrap();
    assert_eq!(
        canonical,
        format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            "ab".repeat(32)
        )
        .as_bytes()
    );
    let digest = ring_sha256(&canonical);
    assert_eq!(key.key_id().unwrap().as_str(), digest);
}

fn ring_sha256(data: &[u8]) -> String {
    // Independent of the crate's own hashing path: Python's hashlib computed the same value in the
    // interop tests; here the shape of the computation is what is checked.
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

#[test]
fn unrecognized_fields_survive_a_round_trip_in_canonical_order() {
    let key = ed25519();
    let root = signed(root_with(&[&key], 1), &[&key]);
    let mut value: serde_json::Value = serde_json::from_slice(&root.to_bytes().unwrap()).unwrap();
    value["signed"]["x-zzz"] = json!({"b": 1, "a": [1, "two"]});
    value["signed"]["A-upper"] = json!(null);
    value["signed"]["roles"]["root"]["x-note"] = json!("kept");
    value["signed"]["keys"][key.key_id().as_str()]["keyval"]["x-extra"] = json!("kept");
    value["signatures"][0]["x-sig"] = json!(1);
    value["x-top"] = json!(true);
    // The key changed, so its ID must be recomputed for the document to be valid.
    let new_key = value["signed"]["keys"][key.key_id().as_str()].clone();
    let new_id = serde_json::from_value::<Key>(new_key.clone())
        .unwrap()
        .key_id()
        .unwrap();
    value["signed"]["keys"] = json!({ new_id.as_str(): new_key });
    value["signed"]["roles"]["root"]["keyids"] = json!([new_id.as_str()]);

    let input = serde_json::to_vec(&value).unwrap();
    let parsed = Metadata::<Root>::from_bytes(&input).unwrap();
    assert_eq!(
        parsed.to_bytes().unwrap(),
        serde_json::to_vec(&value).unwrap()
    );
    assert_eq!(
        parsed.signed_bytes().unwrap(),
        to_canonical_bytes(&value["signed"]).unwrap()
    );
}

#[test]
fn signing_to_bytes_writes_what_signing_then_encoding_writes() {
    let signer = ed25519();
    let mut targets = Targets::new(3, in_a_year());
    for (path, content) in [
        ("simple/plain/index.json", "{}"),
        ("simple/ünïcode-\"quoted\"-\\/index.json", "x"),
    ] {
        targets.targets.insert(
            TargetPath::new(path).unwrap(),
            TargetFile::from_content(content.as_bytes()),
        );
    }
    let mut with_control = Targets::new(3, in_a_year());
    with_control
        .unrecognized
        .insert("note".into(), json!("line\nbreak"));
    // A root lists PEM public keys, whose newlines canonical JSON writes raw.
    let root = root_with(&[&signer], 1);
    let mut with_own_field = Metadata::new(targets.clone());
    with_own_field
        .unrecognized
        .insert("x-extra".into(), json!(1));
    let cases = [
        both(Metadata::new(targets), &signer),
        both(Metadata::new(with_control), &signer),
        both(Metadata::new(root), &signer),
        both(with_own_field, &signer),
    ];
    for (fast, slow) in cases {
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }
}

/// The bytes of `sign_to_bytes`, and those of `sign` then `to_bytes` on a copy.
fn both<T: Role + Clone + PartialEq + std::fmt::Debug>(
    metadata: Metadata<T>,
    signer: &dyn Signer,
) -> (Vec<u8>, Vec<u8>) {
    let mut slow = metadata.clone();
    slow.sign(signer).unwrap();
    let mut fast = metadata;
    let bytes = fast.sign_to_bytes(signer).unwrap();
    assert_eq!(fast, slow);
    (bytes, slow.to_bytes().unwrap())
}
