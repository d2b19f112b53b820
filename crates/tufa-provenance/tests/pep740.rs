//! PEP 740 verification against real Sigstore material: the attestations and provenance objects
//! that the PyPI sdist of pypi-attestations 0.0.30 ships in `test/assets`, made by GitHub,
//! GitLab, CircleCI and Google Cloud Build publishing (public-good Sigstore) and by a developer's
//! GitHub login (Sigstore's staging instance). The distribution files themselves are not checked
//! in: `tests/assets/files.json` records their names and sha256, computed from that sdist.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tufa_provenance::{
    Attestation, Error, MAX_ATTESTATIONS, MAX_ATTESTATIONS_BYTES, Provenance, Publisher, TrustRoot,
    parse_attestations,
};

const GITHUB_FILE: &str = "pypi_attestations-0.0.19.tar.gz";
const GITLAB_FILE: &str = "gitlab_oidc_project-0.0.3.tar.gz";
const CIRCLECI_FILE: &str = "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl";
const GOOGLE_FILE: &str = "gcb_attestation_test-0.0.0.tar.gz";
const STAGING_FILE: &str = "rfc8785-0.1.2-py3-none-any.whl";

fn asset(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/assets")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&asset(name)).unwrap()
}

fn sha256(file: &str) -> [u8; 32] {
    let files = json("files.json");
    let hex = files["files"][file]
        .as_str()
        .unwrap_or_else(|| panic!("no sha256 for {file}"));
    hex::decode(hex).unwrap().try_into().unwrap()
}

fn attestation(name: &str) -> Attestation {
    Attestation(json(name))
}

fn public_good() -> TrustRoot {
    TrustRoot::public_good()
}

fn staging() -> TrustRoot {
    TrustRoot::from_json(&asset("staging_trusted_root.json")).unwrap()
}

fn github_publisher() -> Publisher {
    Publisher {
        kind: "GitHub".into(),
        repository: "trailofbits/pypi-attestations".into(),
        workflow: Some("release.yml".into()),
        ..Publisher::default()
    }
}

fn entry(a: &mut Attestation) -> &mut Value {
    &mut a.0["verification_material"]["transparency_entries"][0]
}

#[test]
fn github_publish_attestation_names_repository_and_workflow() {
    let publisher = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap();
    assert_eq!(publisher, github_publisher());
    assert_eq!(
        serde_json::to_value(&publisher).unwrap(),
        serde_json::json!({"kind": "GitHub", "repository": "trailofbits/pypi-attestations", "workflow": "release.yml"})
    );
}

#[test]
fn github_slsa_provenance_predicate_is_accepted() {
    let publisher = attestation(&format!("{GITHUB_FILE}.slsa.attestation"))
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap();
    assert_eq!(publisher, github_publisher());
}

#[test]
fn older_github_attestation_verifies() {
    let file = "pypi_attestation_models-0.0.4a2.tar.gz";
    let publisher = attestation(&format!("{file}.attestation"))
        .verify(&public_good(), file, &sha256(file))
        .unwrap();
    assert_eq!(publisher.kind, "GitHub");
    assert_eq!(publisher.repository, "trailofbits/pypi-attestation-models");
    assert_eq!(publisher.workflow.as_deref(), Some("release.yml"));
}

#[test]
fn gitlab_attestation_names_project_and_ci_file() {
    let publisher = attestation(&format!("{GITLAB_FILE}.publish.attestation"))
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap();
    assert_eq!(
        publisher,
        Publisher {
            kind: "GitLab".into(),
            repository: "facutuesca/gitlab-oidc-project".into(),
            workflow_filepath: Some(".gitlab-ci.yml".into()),
            ..Publisher::default()
        }
    );
}

#[test]
fn circleci_attestation_names_project_and_pipeline() {
    let publisher = attestation(&format!("{CIRCLECI_FILE}.publish.attestation"))
        .verify(&public_good(), CIRCLECI_FILE, &sha256(CIRCLECI_FILE))
        .unwrap();
    assert_eq!(publisher.kind, "CircleCI");
    assert_eq!(
        publisher.project_id.as_deref(),
        Some("fdd9283f-e619-46af-8f9c-851f7d3e8b2b")
    );
    assert_eq!(
        publisher.pipeline_definition_id.as_deref(),
        Some("8e4f8ab2-8d7c-4827-9f15-de076d6d647f")
    );
    assert_eq!(
        publisher.vcs_origin.as_deref(),
        Some("github.com/CircleCI-Public/sign-and-publish-examples")
    );
    assert_eq!(publisher.vcs_ref.as_deref(), Some("refs/heads/pypi"));
}

/// PyPI's provenance objects for GitHub, CircleCI and Google Cloud Build: every attestation
/// verifies and the served publisher is the certified one, field for field in PyPI's form.
#[test]
fn provenance_objects_verify_with_their_publishers() {
    for file in [GITHUB_FILE, CIRCLECI_FILE, GOOGLE_FILE] {
        let served = json(&format!("{file}.provenance"));
        let provenance: Provenance = serde_json::from_value(served.clone()).unwrap();
        let publishers = provenance
            .verify(&public_good(), file, &sha256(file))
            .unwrap();
        assert_eq!(publishers.len(), 1, "{file}");
        let mut claimed = served["attestation_bundles"][0]["publisher"].clone();
        claimed.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        assert_eq!(
            serde_json::to_value(&publishers[0]).unwrap(),
            claimed,
            "{file}"
        );
    }
}

#[test]
fn google_provenance_names_the_service_account() {
    let provenance: Provenance =
        serde_json::from_value(json(&format!("{GOOGLE_FILE}.provenance"))).unwrap();
    let publishers = provenance
        .verify(&public_good(), GOOGLE_FILE, &sha256(GOOGLE_FILE))
        .unwrap();
    assert_eq!(publishers[0].kind, "Google");
    assert_eq!(
        publishers[0].email.as_deref(),
        Some("919436158236-compute@developer.gserviceaccount.com")
    );
}

#[test]
fn claimed_publisher_that_the_certificate_does_not_name_is_refused() {
    let mut provenance: Provenance =
        serde_json::from_value(json(&format!("{GITHUB_FILE}.provenance"))).unwrap();
    provenance.attestation_bundles[0].publisher.workflow = Some("other.yml".into());
    let err = provenance
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    let Error::PublisherMismatch { claimed, certified } = &err else {
        panic!("{err}")
    };
    assert_eq!(claimed.workflow.as_deref(), Some("other.yml"));
    assert_eq!(**certified, github_publisher());
    let message = err.to_string();
    assert!(
        message.contains("other.yml") && message.contains("release.yml"),
        "{message}"
    );

    let mut provenance: Provenance =
        serde_json::from_value(json(&format!("{GOOGLE_FILE}.provenance"))).unwrap();
    provenance.attestation_bundles[0].publisher.email = Some("attacker@example.com".into());
    let err = provenance
        .verify(&public_good(), GOOGLE_FILE, &sha256(GOOGLE_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::PublisherMismatch { .. }), "{err}");
}

#[test]
fn another_files_attestation_is_refused() {
    let gitlab = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let err = gitlab
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    let Error::SubjectMismatch { expected, found } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (expected.as_str(), found.as_str()),
        (GITHUB_FILE, GITLAB_FILE)
    );

    // The right name with another file's bytes.
    let err = gitlab
        .verify(&public_good(), GITLAB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    let Error::DigestMismatch { expected, found } = &err else {
        panic!("{err}")
    };
    assert_eq!(*expected, hex::encode(sha256(GITHUB_FILE)));
    assert_eq!(*found, hex::encode(sha256(GITLAB_FILE)));
}

#[test]
fn changed_statement_fails_the_signature() {
    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    let statement = STANDARD
        .decode(a.0["envelope"]["statement"].as_str().unwrap())
        .unwrap();
    let changed = String::from_utf8(statement).unwrap().replace(
        &hex::encode(sha256(GITHUB_FILE)),
        &hex::encode(sha256(GITLAB_FILE)),
    );
    a.0["envelope"]["statement"] = STANDARD.encode(changed).into();
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::SignatureInvalid), "{err}");
}

/// The envelope and certificate of one real attestation with the (valid) log entry of another:
/// the entry verifies on its own, but records another envelope.
#[test]
fn log_entry_of_another_attestation_is_refused() {
    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    let other = attestation(&format!("{GITHUB_FILE}.slsa.attestation"));
    *entry(&mut a) = other.0["verification_material"]["transparency_entries"][0].clone();
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::LogEntryMismatch(_)), "{err}");
}

#[test]
fn tampered_inclusion_proof_is_refused() {
    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let hashes = &mut entry(&mut a)["inclusionProof"]["hashes"];
    let mut first = STANDARD.decode(hashes[0].as_str().unwrap()).unwrap();
    first[0] ^= 1;
    hashes[0] = STANDARD.encode(first).into();
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::TransparencyLogProof(_)), "{err}");

    // A proof one hash short.
    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    entry(&mut a)["inclusionProof"]["hashes"]
        .as_array_mut()
        .unwrap()
        .pop();
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::TransparencyLogProof(_)), "{err}");
}

/// A consistent proof to another root (both rootHash and the checkpoint's line changed) is
/// caught by the checkpoint's signature; a changed signed entry timestamp or integrated time by
/// the log's signature over the entry.
#[test]
fn tampered_checkpoint_and_entry_timestamp_are_refused() {
    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let proof = &mut entry(&mut a)["inclusionProof"];
    let old_root = proof["rootHash"].as_str().unwrap().to_owned();
    let mut root = STANDARD.decode(&old_root).unwrap();
    root[0] ^= 1;
    let new_root = STANDARD.encode(&root);
    proof["rootHash"] = new_root.clone().into();
    let checkpoint = proof["checkpoint"]["envelope"]
        .as_str()
        .unwrap()
        .replace(&old_root, &new_root);
    proof["checkpoint"]["envelope"] = checkpoint.into();
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    // The leaf no longer leads to the changed root.
    assert!(matches!(err, Error::TransparencyLogProof(_)), "{err}");

    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let proof = &mut entry(&mut a)["inclusionProof"];
    let checkpoint = proof["checkpoint"]["envelope"].as_str().unwrap().to_owned();
    let (text, signatures) = checkpoint.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.push("Timestamp: 1".into());
    proof["checkpoint"]["envelope"] = format!("{}\n\n{signatures}", lines.join("\n")).into();
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::CheckpointInvalid(_)), "{err}");

    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let time: i64 = entry(&mut a)["integratedTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    entry(&mut a)["integratedTime"] = (time + 60).to_string().into();
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::InclusionPromiseInvalid(_)), "{err}");

    let mut a = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    entry(&mut a)
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    let err = a
        .verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::InclusionPromiseInvalid(_)), "{err}");
}

/// The public-good trust root with its Fulcio CAs swapped for the staging instance's: the log
/// and CT keys still verify, the certificate does not chain.
#[test]
fn certificate_from_another_root_is_refused() {
    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    root["certificateAuthorities"] =
        json("staging_trusted_root.json")["certificateAuthorities"].clone();
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&root, GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(
        matches!(err, Error::CertificateNotFromTrustRoot { .. }),
        "{err}"
    );

    // And the other way round: a staging certificate against the public-good root.
    let mut root = json("staging_trusted_root.json");
    root["certificateAuthorities"] =
        serde_json::from_slice::<Value>(trust_root_bytes()).unwrap()["certificateAuthorities"]
            .clone();
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{STAGING_FILE}.publish.attestation"))
        .verify(&root, STAGING_FILE, &sha256(STAGING_FILE))
        .unwrap_err();
    assert!(
        matches!(err, Error::CertificateNotFromTrustRoot { .. }),
        "{err}"
    );
}

#[test]
fn log_the_trust_root_does_not_list_is_refused() {
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&staging(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTransparencyLog { .. }), "{err}");
}

#[test]
fn sct_from_a_log_the_trust_root_does_not_list_is_refused() {
    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    root["ctlogs"] = json("staging_trusted_root.json")["ctlogs"].clone();
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&root, GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::SctInvalid(_)), "{err}");
}

/// Staging material verifies completely under the operator-supplied staging root (from_json),
/// up to its identity: a developer's GitHub login, which is no Trusted Publisher.
#[test]
fn staging_root_from_json_verifies_staging_material_up_to_its_identity() {
    let err = attestation(&format!("{STAGING_FILE}.publish.attestation"))
        .verify(&staging(), STAGING_FILE, &sha256(STAGING_FILE))
        .unwrap_err();
    let Error::UnsupportedIssuer(issuer) = &err else {
        panic!("{err}")
    };
    assert_eq!(issuer, "https://github.com/login/oauth");
}

/// The subject names the wheel with its platform tags in one order; the file may spell them in
/// another (pypi-attestations compares parsed filenames). A different wheel is still refused.
#[test]
fn wheel_subject_compares_as_a_parsed_filename() {
    let a = attestation(
        "spt3g-1.0-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl.publish.attestation",
    );
    let statement: Value = serde_json::from_slice(
        &STANDARD
            .decode(a.0["envelope"]["statement"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let digest: [u8; 32] = hex::decode(
        statement["subject"][0]["digest"]["sha256"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let err = a
        .verify(
            &staging(),
            "spt3g-1.0-cp310-cp310-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            &digest,
        )
        .unwrap_err();
    // Past the subject check: only the (staging, developer-login) identity is refused.
    assert!(matches!(err, Error::UnsupportedIssuer(_)), "{err}");
    let err = a
        .verify(
            &staging(),
            "spt3g-1.0-cp311-cp311-manylinux2014_x86_64.whl",
            &digest,
        )
        .unwrap_err();
    assert!(matches!(err, Error::SubjectMismatch { .. }), "{err}");
}

#[test]
fn oversize_and_too_many_inputs_are_refused() {
    let one = asset(&format!("{GITHUB_FILE}.publish.attestation"));
    let one = String::from_utf8(one).unwrap();

    let list = format!("[{}]", vec![one.as_str(); MAX_ATTESTATIONS].join(","));
    assert_eq!(
        parse_attestations(list.as_bytes()).unwrap().len(),
        MAX_ATTESTATIONS
    );
    let list = format!("[{}]", vec!["{}"; MAX_ATTESTATIONS + 1].join(","));
    let err = parse_attestations(list.as_bytes()).unwrap_err();
    assert!(
        matches!(err, Error::TooMany { count } if count == MAX_ATTESTATIONS + 1),
        "{err}"
    );

    let big = format!("[\"{}\"]", "a".repeat(MAX_ATTESTATIONS_BYTES));
    assert!(matches!(
        parse_attestations(big.as_bytes()),
        Err(Error::TooLarge { .. })
    ));

    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    a.0["padding"] = "a".repeat(MAX_ATTESTATIONS_BYTES).into();
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");

    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    let e = entry(&mut a).clone();
    a.0["verification_material"]["transparency_entries"] = Value::Array(vec![e; 5]);
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    let Error::MalformedField { path, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, "verification_material.transparency_entries");

    let mut provenance: Provenance =
        serde_json::from_value(json(&format!("{GITHUB_FILE}.provenance"))).unwrap();
    let bundle = provenance.attestation_bundles[0].clone();
    provenance.attestation_bundles = vec![bundle; MAX_ATTESTATIONS + 1];
    let err = provenance
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::TooMany { .. }), "{err}");
}

#[test]
fn malformed_attestations_name_the_field() {
    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    a.0["version"] = 2.into();
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedField { path, .. } if path == "version"),
        "{err}"
    );

    let mut a = attestation(&format!("{GITHUB_FILE}.publish.attestation"));
    a.0["envelope"]["signature"] = "not base64!".into();
    let err = a
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedField { path, .. } if path == "envelope.signature"),
        "{err}"
    );

    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&public_good(), "setup.exe", &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidFilename(_)), "{err}");
}

#[test]
fn trust_root_from_json_refuses_what_is_not_one() {
    assert!(matches!(
        TrustRoot::from_json(b"{}"),
        Err(Error::TrustRoot { .. })
    ));
    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    root["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ECDSA_P521_SHA_512".into();
    let err = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap_err();
    assert!(
        matches!(&err, Error::TrustRoot { path, .. } if path == "tlogs[0].publicKey.keyDetails"),
        "{err}"
    );
}

/// The shipped public-good root, read from the source tree like the crate embeds it.
fn trust_root_bytes() -> &'static [u8] {
    include_bytes!("../src/data/trusted_root.json")
}

/// Keys and CAs are used only within their `validFor` period.
#[test]
fn trust_root_entries_outside_their_validity_are_not_used() {
    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    for ca in root["certificateAuthorities"].as_array_mut().unwrap() {
        ca["validFor"]["end"] = "2023-01-01T00:00:00Z".into();
    }
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&root, GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(
        matches!(err, Error::CertificateNotFromTrustRoot { .. }),
        "{err}"
    );

    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    root["tlogs"][0]["publicKey"]["validFor"]["end"] = "2023-01-01T00:00:00Z".into();
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&root, GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTransparencyLog { .. }), "{err}");

    let mut root = serde_json::from_slice::<Value>(trust_root_bytes()).unwrap();
    for log in root["ctlogs"].as_array_mut().unwrap() {
        log["publicKey"]["validFor"]["end"] = "2023-01-01T00:00:00Z".into();
    }
    let root = TrustRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
    let err = attestation(&format!("{GITHUB_FILE}.publish.attestation"))
        .verify(&root, GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::SctInvalid(_)), "{err}");
}

#[test]
fn provenance_without_attestations_proves_nothing() {
    let mut provenance: Provenance =
        serde_json::from_value(json(&format!("{GITHUB_FILE}.provenance"))).unwrap();
    provenance.attestation_bundles[0].attestations.clear();
    let err = provenance
        .verify(&public_good(), GITHUB_FILE, &sha256(GITHUB_FILE))
        .unwrap_err();
    assert!(matches!(err, Error::MalformedField { .. }), "{err}");
}

fn string_leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::String(_) => out.push(path.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                string_leaves(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push(key.clone());
                string_leaves(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Every string of a real attestation is covered by some check: changing one character
/// anywhere (certificate, statement, signature, log entry, proof, checkpoint, log id, times)
/// makes verification fail, with an error rather than a panic.
#[test]
fn every_field_of_a_real_attestation_is_checked() {
    let original = attestation(&format!("{GITLAB_FILE}.publish.attestation"));
    let mut leaves = Vec::new();
    string_leaves(&original.0, &mut Vec::new(), &mut leaves);
    assert!(leaves.len() > 15, "{leaves:?}");
    for (leaf, third) in leaves.iter().flat_map(|l| [(l, 1), (l, 2)]) {
        let mut a = original.clone();
        let mut node = &mut a.0;
        for key in leaf {
            node = match node {
                Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
                other => &mut other[key.as_str()],
            };
        }
        let text = node.as_str().unwrap().to_owned();
        let mut chars: Vec<char> = text.chars().collect();
        // One and two thirds of the way in: inside the text of every field, never base64
        // padding. (In the checkpoint these fall in the signed note text and in the signature;
        // the signer name on its signature line is, as in every signed-note verifier, only a
        // label: the key hint and the signature are checked.)
        let at = chars.len() * third / 3;
        chars[at] = match chars[at] {
            '0'..='8' => '9',
            '9' => '1',
            'A' => 'B',
            _ => 'A',
        };
        *node = chars.into_iter().collect::<String>().into();
        let result = a.verify(&public_good(), GITLAB_FILE, &sha256(GITLAB_FILE));
        assert!(
            result.is_err(),
            "changing {} still verifies",
            leaf.join(".")
        );
    }
}
