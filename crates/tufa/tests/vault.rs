//! Issue 17's Vault acceptance: the online key in OpenBao's transit engine (the open-source Vault
//! fork, same API) signs a ceremony's repository that python-tuf verifies, for both key types;
//! OpenBao stopped under uploads delays signing, reported on `/status` and `/metrics`, and once
//! it is back every acknowledged upload is signed with no restart of Tufa.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use tufa_metadata::{Key, Metadata, Timestamp};
use tufa_testkit::{OpenBao, TufaServer, http, minimal_wheel, sha256_hex};

mod common;
use common::{TUFA, generate_keys, install_ceremony, ok, page_files, python_tuf, twine};

fn tufa_with_vault(bao: &OpenBao, args: &[&str]) -> Output {
    Command::new(TUFA)
        .args(args)
        .envs(bao.env())
        .envs(common::backend_env())
        .output()
        .expect("running tufa")
}

/// Creates the online key in OpenBao with `tufa keys generate-vault`, runs a ceremony trusting
/// it (offline keys are files), installs it in `data` and starts `tufa serve` signing through
/// OpenBao. Returns the server and the online key's ID.
fn serve_with_key_in_vault(
    bao: &OpenBao,
    dir: &Path,
    algorithm: &str,
    keytype: &str,
) -> (TufaServer, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let spec = "vault:tufa-online?mount=transit";
    let said = ok(
        tufa_with_vault(
            bao,
            &[
                "keys",
                "generate-vault",
                "--key",
                spec,
                "--algorithm",
                algorithm,
                "--public-out",
                &path("online.pub.json"),
            ],
        ),
        "tufa keys generate-vault",
    );
    let key: Key = serde_json::from_slice(&fs::read(dir.join("online.pub.json")).unwrap()).unwrap();
    assert_eq!(key.keytype, keytype);
    let keyid = key.key_id().unwrap().as_str().to_string();
    assert!(said.starts_with(&keyid), "prints the key ID: {said}");
    // The public key export gives the same key.
    ok(
        tufa_with_vault(
            bao,
            &[
                "keys",
                "vault-public",
                "vault:tufa-online?version=1",
                "--public-out",
                &path("exported.pub.json"),
            ],
        ),
        "tufa keys vault-public",
    );
    assert_eq!(
        fs::read(dir.join("exported.pub.json")).unwrap(),
        fs::read(dir.join("online.pub.json")).unwrap()
    );

    generate_keys(dir, &["root", "targets", "bins"]);
    let out = dir.join("ceremony");
    ok(
        tufa_with_vault(
            bao,
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
                &path("online.pub.json"),
                "--bin-bits",
                "4",
                "--sign",
                &path("root.pem"),
                "--sign",
                &path("targets.pem"),
                "--sign",
                &path("bins.pem"),
            ],
        ),
        "tufa ceremony",
    );
    let data = dir.join("data");
    install_ceremony(&out, &data);
    let server = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        &["--online-key", "vault:tufa-online?version=1"],
        &bao.env()
            .into_iter()
            .map(|(name, value)| (name, value.into()))
            .collect::<Vec<_>>(),
    );
    (server, keyid)
}

fn upload(server: &TufaServer, token: &str, dir: &Path, project: &str) -> Vec<u8> {
    let wheel = minimal_wheel(project, "1.0");
    let file = dir.join(wheel_name(project));
    fs::write(&file, &wheel).unwrap();
    ok(twine(server, token, &[&file], &[]), "twine upload");
    wheel
}

fn wheel_name(project: &str) -> String {
    format!("{}-1.0-py3-none-any.whl", project.replace('-', "_"))
}

fn timestamp_signers(server: &TufaServer) -> Vec<String> {
    let timestamp: Metadata<Timestamp> = Metadata::from_bytes(
        &common::published(&server.data_dir)
            .read("tuf/metadata/timestamp.json")
            .unwrap(),
    )
    .unwrap();
    timestamp
        .signatures()
        .iter()
        .map(|s| s.keyid.as_str().to_string())
        .collect()
}

fn status(server: &TufaServer) -> Value {
    http::get(&format!("{}/status", server.url), &[]).json()
}

#[test]
fn an_online_key_in_openbao_signs_a_publishing_cycle_that_python_tuf_verifies() {
    for (algorithm, keytype) in [("ed25519", "ed25519"), ("ecdsa-p256", "ecdsa")] {
        let dir = tempfile::tempdir().unwrap();
        let bao = OpenBao::start(&dir.path().join("openbao"));
        let (server, keyid) = serve_with_key_in_vault(&bao, dir.path(), algorithm, keytype);
        assert!(
            server.log().contains("the online key is in Vault"),
            "{}",
            server.log()
        );
        let token = common::token(&server.data_dir, "alice", None);
        let wheels =
            ["vault-one", "vault-two"].map(|p| (p, upload(&server, &token, dir.path(), p)));
        server.wait_until_signed();
        assert_eq!(
            timestamp_signers(&server),
            [keyid],
            "OpenBao's key signed the timestamp"
        );
        assert!(
            !server.data_dir.join("dev-keys").exists(),
            "no key file was made on the server"
        );

        let view = python_tuf(
            &server,
            &dir.path().join("python-tuf"),
            &["vault-one", "vault-two"],
        );
        for (project, wheel) in &wheels {
            let files = page_files(&view["pages"][project]);
            assert_eq!(files.len(), 1, "{view}");
            assert_eq!(files[&wheel_name(project)], sha256_hex(wheel));
        }
    }
}

#[test]
fn openbao_stopped_under_uploads_delays_signing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut bao = OpenBao::start(&dir.path().join("openbao"));
    let (server, keyid) = serve_with_key_in_vault(&bao, dir.path(), "ecdsa-p256", "ecdsa");
    let pid = server.pid();
    let token = common::token(&server.data_dir, "alice", None);
    let mut wheels = vec![("before", upload(&server, &token, dir.path(), "before"))];
    server.wait_until_signed();

    bao.stop();
    for project in ["during-one", "during-two", "during-three"] {
        // Acknowledged while nothing can sign.
        wheels.push((project, upload(&server, &token, dir.path(), project)));
    }
    // The publisher reports the outage and keeps what it could not sign.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reported = loop {
        let now = status(&server);
        if let Some(failure) = now["signing_failure"].as_str() {
            break (failure.to_string(), now);
        }
        assert!(
            Instant::now() < deadline,
            "no signing failure reported: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reported.0.contains("unreachable"), "{}", reported.0);
    // Which signer the failure is about.
    assert_eq!(
        reported.1["online_key"],
        serde_json::json!({"kind": "vault", "keyid": keyid}),
    );
    assert!(
        reported.1["signed_serial"].as_i64() < reported.1["last_serial"].as_i64(),
        "{}",
        reported.1
    );
    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tufa_signing_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tufa_signing_failures_total in {metrics}"));
    assert!(failures > 0, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "tufa_online_key_info{{kind=\"vault\",keyid=\"{keyid}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(server.log().contains("unreachable"), "{}", server.log());

    bao.restart();
    wheels.push(("after", upload(&server, &token, dir.path(), "after")));
    server.wait_until_signed();
    assert_eq!(server.pid(), pid, "the same Tufa process signs again");
    assert_eq!(status(&server)["signing_failure"], Value::Null);
    assert_eq!(timestamp_signers(&server), [keyid]);

    let projects: Vec<&str> = wheels.iter().map(|(p, _)| *p).collect();
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &projects);
    for (project, wheel) in &wheels {
        let files = page_files(&view["pages"][project]);
        assert_eq!(files[&wheel_name(project)], sha256_hex(wheel), "{view}");
    }
}
