//! Issue 7's acceptance: the online key on a hardware token (SoftHSM2 here) signs a full
//! publishing cycle of a ceremony's repository, and python-tuf's client verifies it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tufa_metadata::{Key, Metadata, Timestamp};
use tufa_testkit::{SoftHsm, TufaServer, http, minimal_wheel, sha256_hex};

mod common;
use common::{TUFA, generate_keys, install_ceremony, ok, page_files, python_tuf, tufa};

fn tufa_with_token(hsm: &SoftHsm, args: &[&str]) -> Output {
    Command::new(TUFA)
        .args(args)
        .envs(hsm.env())
        .output()
        .expect("running tufa")
}

/// Offline keys as files and a ceremony trusting `online` for the online roles, installed in
/// `data` as an operator would.
fn ceremony(dir: &Path, online: &Path, data: &Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    generate_keys(dir, &["root", "targets", "bins"]);
    let out = dir.join("ceremony");
    ok(
        tufa(&[
            "ceremony",
            "--out",
            out.to_str().unwrap(),
            "--root-key",
            &path("root.pub.json"),
            "--targets-key",
            &path("targets.pub.json"),
            "--bins-key",
            &path("bins.pub.json"),
            "--online-key",
            online.to_str().unwrap(),
            "--bin-bits",
            "4",
            "--sign",
            &path("root.pem"),
            "--sign",
            &path("targets.pem"),
            "--sign",
            &path("bins.pem"),
        ]),
        "tufa ceremony",
    );
    install_ceremony(&out, data);
}

#[test]
fn an_online_key_on_a_token_signs_a_publishing_cycle_that_python_tuf_verifies() {
    for (algorithm, keytype) in [("ecdsa-p256", "ecdsa"), ("ed25519", "ed25519")] {
        let dir = tempfile::tempdir().unwrap();
        let hsm = SoftHsm::new("tufa-online");
        let uri = hsm.uri("online-key");

        let public = dir.path().join("online.pub.json");
        let said = ok(
            tufa_with_token(
                &hsm,
                &[
                    "keys",
                    "generate-pkcs11",
                    "--uri",
                    &uri,
                    "--algorithm",
                    algorithm,
                    "--public-out",
                    public.to_str().unwrap(),
                ],
            ),
            "tufa keys generate-pkcs11",
        );
        let key: Key = serde_json::from_slice(&fs::read(&public).unwrap()).unwrap();
        assert_eq!(key.keytype, keytype);
        let keyid = key.key_id().unwrap();
        assert!(
            said.starts_with(keyid.as_str()),
            "prints the key ID: {said}"
        );

        let data = dir.path().join("data");
        ceremony(dir.path(), &public, &data);

        let wrong_pin = Command::new(TUFA)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(["--online-key", &uri])
            .envs(hsm.env())
            .env("TUFA_PKCS11_PIN", "0000")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&wrong_pin.stderr);
        assert!(!wrong_pin.status.success());
        assert!(stderr.contains("wrong PIN for token"), "{stderr}");

        let server =
            TufaServer::start_with_env(TUFA.as_ref(), &data, &["--online-key", &uri], &hsm.env());
        let wheel = minimal_wheel("hsm-signed", "1.0");
        let (content_type, body) = http::wheel_upload("hsm-signed", "1.0", &wheel);
        let auth = http::basic_auth(&server.create_token("alice"));
        let response = http::request(
            "POST",
            &server.upload_url(),
            &[("Content-Type", &content_type), ("Authorization", &auth)],
            &body,
        );
        assert_eq!(response.status, 200, "{}", response.reason);
        server.wait_until_signed();

        let timestamp: Metadata<Timestamp> =
            Metadata::from_bytes(&fs::read(data.join("tuf/metadata/timestamp.json")).unwrap())
                .unwrap();
        let signers: Vec<_> = timestamp.signatures().iter().map(|s| &s.keyid).collect();
        assert_eq!(signers, [&keyid], "the token's key signed the timestamp");
        assert!(
            !data.join("dev-keys").exists(),
            "no key file was made on the server"
        );

        let view = python_tuf(&server, &dir.path().join("python-tuf"), &["hsm-signed"]);
        let files = page_files(&view["pages"]["hsm-signed"]);
        assert_eq!(files.len(), 1, "{view}");
        assert_eq!(files["hsm_signed-1.0-py3-none-any.whl"], sha256_hex(&wheel));
    }
}
