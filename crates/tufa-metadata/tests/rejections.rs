//! Each way metadata can be wrong fails with its own error variant, never a panic.

mod support;

use serde_json::{Value, json};
use support::*;
use tufa_metadata::*;

fn to_value<T: Role>(metadata: &Metadata<T>) -> Value {
    serde_json::from_slice(&metadata.to_bytes().unwrap()).unwrap()
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[test]
fn a_flipped_byte_in_signed_content_breaks_the_threshold() {
    let key = ed25519();
    let root = signed(root_with(&[&key], 1), &[&key]);
    let mut text = String::from_utf8(root.to_bytes().unwrap()).unwrap();
    // Flip one character of the signed content: the expiry year.
    let year = root.signed.expires.to_string()[..4].to_string();
    let flipped = (year.parse::<u32>().unwrap() + 1).to_string();
    text = text.replacen(
        &format!("\"expires\":\"{year}"),
        &format!("\"expires\":\"{flipped}"),
        1,
    );
    let tampered = Metadata::<Root>::from_bytes(text.as_bytes()).unwrap();
    assert_ne!(tampered.signed, root.signed);
    match tampered.signed.verify_delegate("root", &tampered) {
        Err(Error::ThresholdNotMet {
            role,
            threshold,
            valid,
        }) => {
            assert_eq!((role.as_str(), threshold, valid), ("root", 1, 0));
        }
        other => panic!("expected ThresholdNotMet, got {other:?}"),
    }
    root.signed.verify_delegate("root", &root).unwrap();
}

#[test]
fn two_signatures_from_one_key_are_refused() {
    let (a, b) = (ed25519(), ed25519());
    let root = signed(root_with(&[&a, &b], 2), &[&a]);
    let mut value = to_value(&root);
    let first = value["signatures"][0].clone();
    value["signatures"] = json!([first.clone(), first]);
    match Metadata::<Root>::from_bytes(&bytes(&value)) {
        Err(Error::DuplicateSignature { keyid }) => assert_eq!(&keyid, a.key_id()),
        other => panic!("expected DuplicateSignature, got {other:?}"),
    }
}

#[test]
fn one_key_under_two_key_ids_counts_once() {
    // The same public key listed twice, the second copy with an extra field so that its key ID
    // differs and still matches its content: a threshold of 2 must not be met by one private key.
    let key = ed25519();
    let mut copy = key.public_key().clone();
    copy.unrecognized.insert("x-copy".into(), json!(true));
    let copy_id = copy.key_id().unwrap();
    let mut root = root_with(&[&key], 2);
    root.keys.insert(copy_id.clone(), copy);
    root.roles.root.keyids.push(copy_id.clone());
    let mut metadata = signed(root, &[&key]);
    let mut duplicate = metadata.signatures()[0].clone();
    duplicate.keyid = copy_id;
    metadata.add_signature(duplicate);
    let parsed = Metadata::<Root>::from_bytes(&metadata.to_bytes().unwrap()).unwrap();
    match parsed.signed.verify_delegate("root", &parsed) {
        Err(Error::ThresholdNotMet {
            threshold: 2,
            valid: 1,
            ..
        }) => {}
        other => panic!("expected ThresholdNotMet with one valid key, got {other:?}"),
    }
}

#[test]
fn a_key_id_that_does_not_match_its_key_is_refused() {
    let (a, b) = (ed25519(), ed25519());
    let root = signed(root_with(&[&a, &b], 1), &[&a]);
    let mut value = to_value(&root);
    // List b's public key under a's key ID.
    let b_key = value["signed"]["keys"][b.key_id().as_str()].clone();
    value["signed"]["keys"][a.key_id().as_str()] = b_key;
    match Metadata::<Root>::from_bytes(&bytes(&value)) {
        Err(Error::KeyIdMismatch { keyid, computed }) => {
            assert_eq!(&keyid, a.key_id());
            assert_eq!(&computed, b.key_id());
        }
        other => panic!("expected KeyIdMismatch, got {other:?}"),
    }
}

#[test]
fn a_threshold_of_zero_is_refused() {
    let key = ed25519();
    let mut value = to_value(&signed(root_with(&[&key], 1), &[&key]));
    value["signed"]["roles"]["snapshot"]["threshold"] = json!(0);
    match Metadata::<Root>::from_bytes(&bytes(&value)) {
        Err(Error::ZeroThreshold { role }) => assert_eq!(role, "snapshot"),
        other => panic!("expected ZeroThreshold, got {other:?}"),
    }
    assert!(Threshold::new(0).is_none());
}

#[test]
fn unknown_key_types_and_schemes_are_refused_by_verification() {
    let key = ed25519();
    for (keytype, scheme) in [
        ("ed448", "ed448"),
        ("ed25519", "ed25519-ph"),
        ("rsa", "rsassa-pkcs1v15-md5"),
    ] {
        let mut public = key.public_key().clone();
        public.keytype = keytype.into();
        public.scheme = scheme.into();
        match public.verify(key.key_id(), b"message", "00") {
            Err(Error::UnsupportedKey {
                keytype: t,
                scheme: s,
            }) => assert_eq!((t.as_str(), s.as_str()), (keytype, scheme)),
            other => panic!("expected UnsupportedKey for {keytype}/{scheme}, got {other:?}"),
        }
    }
}

#[test]
fn a_root_listing_an_unknown_key_type_still_parses_but_that_key_cannot_count() {
    // Metadata may list key types this client does not know (a newer repository); such a key
    // simply never contributes to a threshold.
    let key = ed25519();
    let mut unknown = Key::new("future-keytype", "future-scheme", "abcd".into());
    unknown.unrecognized.insert("x".into(), json!(1));
    let unknown_id = unknown.key_id().unwrap();
    let mut root = root_with(&[&key], 2);
    root.keys.insert(unknown_id.clone(), unknown);
    root.roles.root.keyids.push(unknown_id.clone());
    let mut metadata = signed(root, &[&key]);
    metadata.add_signature(Signature {
        keyid: unknown_id,
        sig: "abcd".into(),
        unrecognized: Default::default(),
    });
    let parsed = Metadata::<Root>::from_bytes(&metadata.to_bytes().unwrap()).unwrap();
    assert!(matches!(
        parsed.signed.verify_delegate("root", &parsed),
        Err(Error::ThresholdNotMet { valid: 1, .. })
    ));
}

#[test]
fn malformed_json_is_refused() {
    for input in [
        &b"{"[..],
        b"",
        b"[]",
        b"{\"signed\": 1, \"signatures\": []}",
        b"\xff\xfe",
    ] {
        match Metadata::<Root>::from_bytes(input) {
            Err(Error::Json(_)) => {}
            other => panic!("expected Json error for {input:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_duplicate_json_key_is_refused() {
    let key = ed25519();
    let text =
        String::from_utf8(signed(root_with(&[&key], 1), &[&key]).to_bytes().unwrap()).unwrap();
    let duplicated = text.replacen("\"version\":1", "\"version\":1,\"version\":2", 1);
    match Metadata::<Root>::from_bytes(duplicated.as_bytes()) {
        Err(Error::DuplicateJsonKey { key }) => assert_eq!(key, "version"),
        other => panic!("expected DuplicateJsonKey, got {other:?}"),
    }
}

#[test]
fn a_wrong_type_is_refused() {
    let key = ed25519();
    let root = signed(root_with(&[&key], 1), &[&key]);
    match Metadata::<Targets>::from_bytes(&root.to_bytes().unwrap()) {
        Err(Error::WrongType { expected, found }) => {
            assert_eq!((expected, found.as_str()), ("targets", "root"));
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[test]
fn an_unsupported_spec_version_is_refused() {
    let key = ed25519();
    let mut value = to_value(&signed(root_with(&[&key], 1), &[&key]));
    for bad in ["2.0.0", "0.9", "1", "1.0.0-rc1"] {
        value["signed"]["spec_version"] = json!(bad);
        match Metadata::<Root>::from_bytes(&bytes(&value)) {
            Err(Error::UnsupportedSpecVersion(v)) => assert_eq!(v, bad),
            other => panic!("expected UnsupportedSpecVersion for {bad}, got {other:?}"),
        }
    }
}

#[test]
fn structural_faults_are_refused_with_reasons() {
    let key = ed25519();
    let base = to_value(&signed(root_with(&[&key], 1), &[&key]));

    let mut value = base.clone();
    value["signed"]["version"] = json!(0);
    assert!(matches!(
        Metadata::<Root>::from_bytes(&bytes(&value)),
        Err(Error::InvalidVersion(0))
    ));

    let mut value = base.clone();
    value["signed"]["expires"] = json!("2030-01-01T00:00:00+00:00");
    assert!(matches!(
        Metadata::<Root>::from_bytes(&bytes(&value)),
        Err(Error::Json(_))
    ));

    let mut value = base.clone();
    let id = key.key_id().as_str();
    value["signed"]["roles"]["targets"]["keyids"] = json!([id, id]);
    assert!(matches!(
        Metadata::<Root>::from_bytes(&bytes(&value)),
        Err(Error::DuplicateRoleKey { .. })
    ));

    let mut value = base.clone();
    value["signed"]["roles"]["mirror"] = value["signed"]["roles"]["root"].clone();
    assert!(matches!(
        Metadata::<Root>::from_bytes(&bytes(&value)),
        Err(Error::Json(_))
    ));

    let mut value = base;
    value["signed"]["roles"]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    assert!(matches!(
        Metadata::<Root>::from_bytes(&bytes(&value)),
        Err(Error::Json(_))
    ));
}
