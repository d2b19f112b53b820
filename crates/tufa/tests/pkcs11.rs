//! Issue 7's acceptance: the online key on a hardware token (SoftHSM2 here) signs a full
//! publishing cycle of a ceremony's repository, and python-tuf's client verifies it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tufa_metadata::{Key, Metadata, Timestamp};
use tufa_testkit::{SoftHsm, TufaServer, http, minimal_wheel, sha256_hex};

mod common;
use common::{TUFA, generate_keys, install_ceremony, ok, page_files, python_tuf};

fn tufa_with_token(hsm: &SoftHsm, args: &[&str]) -> Output {
    Command::new(TUFA)
        .args(args)
        .envs(hsm.env())
        .envs(common::backend_env())
        .output()
        .expect("running tufa")
}

/// A ceremony trusting `online` for the online roles, installed in `data` as an operator would.
/// The root key is on the token too (an offline key holder's hardware key), targets and bins
/// keys are files.
fn ceremony(hsm: &SoftHsm, dir: &Path, online: &Path, data: &Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    generate_keys(dir, &["targets", "bins"]);
    let root_uri = hsm.uri("root-key");
    ok(
        tufa_with_token(
            hsm,
            &[
                "keys",
                "generate-pkcs11",
                "--uri",
                &root_uri,
                "--public-out",
                &path("root.pub.json"),
            ],
        ),
        "tufa keys generate-pkcs11 (root)",
    );
    let out = dir.join("ceremony");
    ok(
        tufa_with_token(
            hsm,
            &[
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
                &root_uri,
                "--sign",
                &path("targets.pem"),
                "--sign",
                &path("bins.pem"),
            ],
        ),
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
        ceremony(&hsm, dir.path(), &public, &data);

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

        let timestamp: Metadata<Timestamp> = Metadata::from_bytes(
            &common::published(&data)
                .read("tuf/metadata/timestamp.json")
                .unwrap(),
        )
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

        // The root key holder signs the next root with `tufa sign` on the token.
        let next_root = dir.path().join("root-2.json");
        let data_arg = data.to_str().unwrap().to_string();
        ok(
            tufa_with_token(
                &hsm,
                &[
                    "roles",
                    "prepare",
                    "root",
                    "--data",
                    &data_arg,
                    "--out",
                    next_root.to_str().unwrap(),
                ],
            ),
            "tufa roles prepare root",
        );
        ok(
            tufa_with_token(
                &hsm,
                &[
                    "sign",
                    next_root.to_str().unwrap(),
                    "--key",
                    &hsm.uri("root-key"),
                ],
            ),
            "tufa sign with the token",
        );
        ok(
            tufa_with_token(
                &hsm,
                &[
                    "roles",
                    "submit",
                    "--data",
                    &data_arg,
                    next_root.to_str().unwrap(),
                ],
            ),
            "tufa roles submit",
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http::get(&format!("{}/tuf/metadata/2.root.json", server.url), &[]).status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "root 2 was not published"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        python_tuf(&server, &dir.path().join("python-tuf"), &["hsm-signed"]);
        let trusted: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.path().join("python-tuf/metadata/root.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            trusted["signed"]["version"], 2,
            "root signed on the token is followed"
        );
    }
}
