//! Byte-for-byte interoperability with python-tuf, the reference implementation, in both
//! directions and for every key type. python-tuf runs from the test virtual environment that
//! `tufa-testkit` builds under `target/`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};
use support::*;
use tufa_metadata::*;
use tufa_testkit::PythonEnv;

const PYTHON_SIGNS: &str = include_str!("python/python_signs.py");
const PYTHON_VERIFIES: &str = include_str!("python/python_verifies.py");
const PASSPHRASE: &[u8] = b"interop passphrase";
const PAGE: &str = "simple/requests/index.json";
const SAMPLE_PATHS: &[&str] = &[
    "simple/requests/index.json",
    "files/x.whl",
    "a/b/c.txt",
    "ünïcode/pâth.txt",
    "spaces in/name .txt",
    "",
];
const BIT_LENGTHS: &[u32] = &[1, 3, 6, 8, 14, 32];

fn read(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn load<T: Role>(dir: &Path, name: &str) -> (Metadata<T>, Vec<u8>) {
    let bytes = read(dir, &format!("{name}.json"));
    let metadata = Metadata::<T>::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("{}: {name}.json refused: {e}", dir.display()));
    assert_eq!(
        metadata.signed_bytes().unwrap(),
        read(dir, &format!("{name}.canonical")),
        "{}: canonical bytes of {name} differ from securesystemslib's",
        dir.display()
    );
    (metadata, bytes)
}

fn role(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

fn assert_meta_matches(meta: &MetaFile, bytes: &[u8]) {
    assert_eq!(meta, &MetaFile::with_content(meta.version, bytes));
}

fn succinct(bits: u32) -> SuccinctRoles {
    SuccinctRoles::new(vec![], threshold(1), bits, "bin").unwrap()
}

fn delegated_role(paths: PathMatcher) -> DelegatedRole {
    DelegatedRole {
        name: role("g"),
        keyids: vec![],
        threshold: threshold(1),
        terminating: false,
        paths,
        unrecognized: BTreeMap::new(),
    }
}

fn check_python_repository(dir: &Path, keytype: &str) {
    let expected: Value = serde_json::from_slice(&read(dir, "expected.json")).unwrap();
    let (root, _) = load::<Root>(dir, "root");
    root.signed.verify_delegate("root", &root).unwrap();
    assert_eq!(root.signed.roles.root.threshold, threshold(2));
    assert!(root.signed.keys.values().all(|key| key.keytype == keytype));
    // Root keys and the online key; python-tuf's key IDs are the same hashes we compute.
    let root_keyids: Vec<&str> = root.signed.keys.keys().map(KeyId::as_str).collect();
    let mut python_keyids: Vec<&str> = expected["keyids"].as_array().unwrap()[..3]
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    python_keyids.sort();
    assert_eq!(root_keyids, python_keyids);

    let (timestamp, _) = load::<Timestamp>(dir, "timestamp");
    root.signed
        .verify_delegate("timestamp", &timestamp)
        .unwrap();
    let (snapshot, snapshot_bytes) = load::<Snapshot>(dir, "snapshot");
    root.signed.verify_delegate("snapshot", &snapshot).unwrap();
    assert_meta_matches(&timestamp.signed.snapshot_meta, &snapshot_bytes);
    let (targets, targets_bytes) = load::<Targets>(dir, "targets");
    root.signed.verify_delegate("targets", &targets).unwrap();
    assert_meta_matches(&snapshot.signed.meta["targets.json"], &targets_bytes);
    assert_eq!(
        targets.signed.targets.get("file1.txt").unwrap().custom,
        Some(json!({"upload-time": "2026-11-22T00:00:00Z", "n": 3, "list": ["a", {"b": null}]}))
    );

    for name in ["by-paths", "by-prefix", "bins"] {
        let (delegated, bytes) = load::<Targets>(dir, name);
        targets
            .signed
            .verify_delegate(&role(name), &delegated)
            .unwrap();
        assert_meta_matches(&snapshot.signed.meta[&format!("{name}.json")], &bytes);
    }
    let (bins, _) = load::<Targets>(dir, "bins");
    let Some(DelegatedRoles::Succinct(roles)) = bins.signed.delegations.as_ref().map(|d| &d.roles)
    else {
        panic!("bins has no succinct_roles");
    };
    let bin_name = roles.role_for_target(PAGE);
    assert_eq!(bin_name.as_str(), expected["bin_role"]);
    let (bin, _) = load::<Targets>(dir, bin_name.as_str());
    bins.signed.verify_delegate(&bin_name, &bin).unwrap();

    for (bits, names) in expected["bins"].as_object().unwrap() {
        let roles = succinct(bits.parse().unwrap());
        for (path, name) in names.as_object().unwrap() {
            assert_eq!(
                roles.role_for_target(path).as_str(),
                name,
                "{bits} bits, {path:?}"
            );
        }
    }
    for (pattern, answers) in expected["globs"].as_object().unwrap() {
        let role = delegated_role(PathMatcher::Paths(vec![pattern.clone()]));
        for (path, answer) in answers.as_object().unwrap() {
            assert_eq!(
                Value::Bool(role.is_delegated_path(path)),
                *answer,
                "pattern {pattern:?} on {path:?}"
            );
        }
    }
    let Some(DelegatedRoles::Roles(delegated)) =
        targets.signed.delegations.as_ref().map(|d| &d.roles)
    else {
        panic!("targets has no roles");
    };
    let by_prefix = delegated
        .iter()
        .find(|r| r.name.as_str() == "by-prefix")
        .unwrap();
    for (path, answer) in expected["prefix_role_matches"].as_object().unwrap() {
        assert_eq!(
            Value::Bool(by_prefix.is_delegated_path(path)),
            *answer,
            "{path:?}"
        );
    }

    // A flipped byte inside the signed content must break the signatures, not the parse.
    let text = String::from_utf8(read(dir, "root.json")).unwrap();
    assert!(text.contains("\"x-role-extra\": 1"));
    let tampered = text.replace("\"x-role-extra\": 1", "\"x-role-extra\": 3");
    let tampered = Metadata::<Root>::from_bytes(tampered.as_bytes()).unwrap();
    assert!(matches!(
        root.signed.verify_delegate("root", &tampered),
        Err(Error::ThresholdNotMet { valid: 0, .. })
    ));
}

#[test]
fn metadata_signed_by_python_tuf_verifies_here() {
    let out = tempfile::tempdir().unwrap();
    PythonEnv::shared().run_script(PYTHON_SIGNS, &[out.path().to_str().unwrap()]);
    for keytype in ["ed25519", "ecdsa", "ecdsa-sha2-nistp256", "rsa"] {
        check_python_repository(&out.path().join(keytype), keytype);
    }

    // Encrypted PKCS#8 files written by `cryptography` load here and give the same public key.
    let keys = out.path().join("keys");
    for keytype in ["ed25519", "ecdsa", "rsa"] {
        let pem = String::from_utf8(read(&keys, &format!("{keytype}.pem"))).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let signer = FileSigner::from_pem(&pem, Some(PASSPHRASE))
            .unwrap_or_else(|e| panic!("{keytype}: {e}"));
        let published: Value =
            serde_json::from_slice(&read(&keys, &format!("{keytype}.pub.json"))).unwrap();
        assert_eq!(
            serde_json::to_value(signer.public_key()).unwrap(),
            published["key"]
        );
        assert_eq!(signer.key_id().as_str(), published["keyid"]);
        let signature = signer.sign(b"message").unwrap();
        signer
            .public_key()
            .verify(signer.key_id(), b"message", &signature.sig)
            .unwrap();
    }
}

/// Writes a repository shaped like the Python one, signed with `make_signer` keys.
fn write_rust_repository(dir: &Path, make_signer: fn() -> FileSigner) {
    fs::create_dir_all(dir).unwrap();
    let write = |name: &str, bytes: &[u8], canonical: &[u8]| {
        fs::write(dir.join(format!("{name}.json")), bytes).unwrap();
        fs::write(dir.join(format!("{name}.canonical")), canonical).unwrap();
    };
    let publish = |name: &str, metadata: &dyn Fn() -> (Vec<u8>, Vec<u8>)| {
        let (bytes, canonical) = metadata();
        write(name, &bytes, &canonical);
        MetaFile::with_content(1, &bytes)
    };
    fn encode<T: Role>(metadata: &Metadata<T>) -> (Vec<u8>, Vec<u8>) {
        (
            metadata.to_bytes().unwrap(),
            metadata.signed_bytes().unwrap(),
        )
    }

    let root_keys = [make_signer(), make_signer()];
    let (online, delegate) = (make_signer(), make_signer());
    let key_entry = |s: &FileSigner| (s.key_id().clone(), s.public_key().clone());
    let online_role = || RoleKeys::new(vec![online.key_id().clone()], threshold(1));
    let mut root_role = RoleKeys::new(
        root_keys.iter().map(|s| s.key_id().clone()).collect(),
        threshold(2),
    );
    root_role
        .unrecognized
        .insert("x-role-extra".into(), json!(1));
    let mut root = Root::new(
        1,
        in_a_year(),
        true,
        root_keys.iter().chain([&online]).map(key_entry).collect(),
        TopLevelRoles {
            root: root_role,
            snapshot: online_role(),
            targets: online_role(),
            timestamp: online_role(),
        },
    );
    root.unrecognized.insert(
        "x-root-extra".into(),
        json!({"nested": [true, null, "é\n"]}),
    );
    let mut root = Metadata::new(root);
    root.unrecognized.insert("x-envelope".into(), json!("kept"));
    for signer in &root_keys {
        root.sign(signer).unwrap();
    }
    let (bytes, canonical) = encode(&root);
    write("root", &bytes, &canonical);

    let delegate_keys: BTreeMap<KeyId, Key> = [key_entry(&delegate)].into();
    let delegate_ids = vec![delegate.key_id().clone()];
    let mut targets = Targets::new(1, in_a_year());
    let mut file1 = TargetFile::from_content(b"hello");
    file1.custom =
        Some(json!({"upload-time": "2026-11-22T00:00:00Z", "n": 3, "list": ["a", {"b": null}]}));
    targets
        .targets
        .insert(TargetPath::new("file1.txt").unwrap(), file1);
    let delegation = |name: &str, terminating, paths| DelegatedRole {
        name: role(name),
        keyids: delegate_ids.clone(),
        threshold: threshold(1),
        terminating,
        paths,
        unrecognized: BTreeMap::new(),
    };
    let mut by_paths = delegation(
        "by-paths",
        true,
        PathMatcher::Paths(vec!["files/*".into(), "a/*/c.txt".into()]),
    );
    by_paths
        .unrecognized
        .insert("x-delegation-extra".into(), json!("kept"));
    targets.delegations = Some(Delegations {
        keys: delegate_keys.clone(),
        roles: DelegatedRoles::Roles(vec![
            by_paths,
            delegation(
                "by-prefix",
                false,
                PathMatcher::HashPrefixes(vec!["00".into(), "8f".into(), "a".into()]),
            ),
            delegation(
                "bins",
                false,
                PathMatcher::Paths(vec!["*".into(), "*/*".into(), "*/*/*".into()]),
            ),
        ]),
        unrecognized: [("x-delegations-extra".to_string(), json!(0))].into(),
    });

    let sign_targets = |targets: Targets, signer: &FileSigner| encode(&signed(targets, &[signer]));
    let mut meta = BTreeMap::new();
    meta.insert(
        "targets.json".to_string(),
        publish("targets", &|| sign_targets(targets.clone(), &online)),
    );
    let mut by_paths_role = Targets::new(1, in_a_year());
    by_paths_role.targets.insert(
        TargetPath::new("files/x.whl").unwrap(),
        TargetFile::from_content(b"wheel bytes"),
    );
    meta.insert(
        "by-paths.json".into(),
        publish("by-paths", &|| {
            sign_targets(by_paths_role.clone(), &delegate)
        }),
    );
    meta.insert(
        "by-prefix.json".into(),
        publish("by-prefix", &|| {
            sign_targets(Targets::new(1, in_a_year()), &delegate)
        }),
    );
    let mut bins_succinct =
        SuccinctRoles::new(delegate_ids.clone(), threshold(1), 6, "bin").unwrap();
    bins_succinct
        .unrecognized
        .insert("x-succinct-extra".into(), json!("kept"));
    let bin_name = bins_succinct.role_for_target(PAGE);
    let mut bins = Targets::new(1, in_a_year());
    bins.delegations = Some(Delegations {
        keys: delegate_keys,
        roles: DelegatedRoles::Succinct(bins_succinct),
        unrecognized: BTreeMap::new(),
    });
    meta.insert(
        "bins.json".into(),
        publish("bins", &|| sign_targets(bins.clone(), &delegate)),
    );
    let mut bin = Targets::new(1, in_a_year());
    bin.targets.insert(
        TargetPath::new(PAGE).unwrap(),
        TargetFile::from_content(b"{\"meta\":{}}"),
    );
    meta.insert(
        format!("{bin_name}.json"),
        publish(bin_name.as_str(), &|| sign_targets(bin.clone(), &delegate)),
    );

    let snapshot_meta = publish("snapshot", &|| {
        encode(&signed(
            Snapshot::new(1, in_a_year(), meta.clone()),
            &[&online],
        ))
    });
    publish("timestamp", &|| {
        encode(&signed(
            Timestamp::new(1, in_a_year(), snapshot_meta.clone()),
            &[&online],
        ))
    });

    let bins_expected: BTreeMap<String, BTreeMap<&str, String>> = BIT_LENGTHS
        .iter()
        .map(|&bits| {
            let roles = succinct(bits);
            let names = SAMPLE_PATHS
                .iter()
                .map(|path| (*path, roles.role_for_target(path).to_string()))
                .collect();
            (bits.to_string(), names)
        })
        .collect();
    let expected = json!({
        "bin_role": bin_name.as_str(),
        "page": PAGE,
        "bins": bins_expected,
        "custom": {"upload-time": "2026-11-22T00:00:00Z", "n": 3, "list": ["a", {"b": null}]},
    });
    fs::write(
        dir.join("expected.json"),
        serde_json::to_vec(&expected).unwrap(),
    )
    .unwrap();
}

fn write_rust_key(dir: &Path, name: &str, algorithm: KeyAlgorithm) {
    let der = generate_private_key(algorithm).unwrap();
    let pem = private_key_pem(&der, Some(PASSPHRASE)).unwrap();
    let signer = FileSigner::from_pem(&pem, Some(PASSPHRASE)).unwrap();
    let signature = signer.sign(b"signed by tufa").unwrap();
    let published = json!({
        "keyid": signer.key_id(),
        "key": signer.public_key(),
        "message": "signed by tufa",
        "sig": signature.sig,
    });
    fs::write(dir.join(format!("{name}.pem")), pem).unwrap();
    fs::write(
        dir.join(format!("{name}.pub.json")),
        serde_json::to_vec(&published).unwrap(),
    )
    .unwrap();
}

#[test]
fn metadata_signed_here_verifies_in_python_tuf() {
    let out = tempfile::tempdir().unwrap();
    write_rust_repository(&out.path().join("ed25519"), ed25519);
    write_rust_repository(&out.path().join("ecdsa"), ecdsa);
    write_rust_repository(&out.path().join("rsa"), rsa);
    let keys = out.path().join("keys");
    fs::create_dir(&keys).unwrap();
    write_rust_key(&keys, "ed25519", KeyAlgorithm::Ed25519);
    write_rust_key(&keys, "ecdsa", KeyAlgorithm::EcdsaP256Sha256);

    let output = PythonEnv::shared().run_script(PYTHON_VERIFIES, &[out.path().to_str().unwrap()]);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        summary,
        json!({
            "repositories": {"ecdsa": ["ecdsa"], "ed25519": ["ed25519"], "rsa": ["rsa"]},
            "keys": ["ecdsa", "ed25519"],
        })
    );
}
