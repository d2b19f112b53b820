//! Issue 17's runbook misuses that the tools now refuse or explain: keys shared across roles
//! at the ceremony, the ceremony's copy instruction, and an encrypted online key started
//! without its passphrase.

use std::path::Path;

mod common;
use common::{TUFA, generate_keys, output_text, tufa};

fn ceremony(
    dir: &Path,
    root: &str,
    targets: &str,
    bins: &str,
    online: &str,
) -> std::process::Output {
    let path = |name: &str| {
        dir.join(format!("{name}.pub.json"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let out = dir.join(format!("ceremony-{root}-{targets}-{bins}-{online}"));
    tufa(&[
        "ceremony",
        "--out",
        out.to_str().unwrap(),
        "--root-key",
        &path(root),
        "--targets-key",
        &path(targets),
        "--bins-key",
        &path(bins),
        "--online-key",
        &path(online),
        "--bin-bits",
        "2",
    ])
}

#[test]
fn the_ceremony_refuses_a_key_of_two_roles_and_names_where_its_output_goes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_keys(d, &["root", "targets", "bins", "online"]);

    // The README's old slip: root holder's key passed as the bins key.
    let shared = ceremony(d, "root", "targets", "root", "online");
    let text = output_text(&shared);
    assert!(!shared.status.success(), "{text}");
    assert!(text.contains("given for both root and bins"), "{text}");
    // The online key as a root key would let the server sign a root by itself.
    let online_root = ceremony(d, "online", "targets", "bins", "online");
    let text = output_text(&online_root);
    assert!(!online_root.status.success(), "{text}");
    assert!(
        text.contains("given for both root and online")
            && text.contains("sign a new root by itself"),
        "{text}"
    );

    let good = ceremony(d, "root", "targets", "bins", "online");
    let text = output_text(&good);
    assert!(good.status.success(), "{text}");
    assert!(
        text.contains("to DATA/tuf/metadata/ on the server"),
        "{text}"
    );
}

#[test]
fn an_encrypted_online_key_without_its_passphrase_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("online");
    let made = std::process::Command::new(TUFA)
        .args(["keys", "generate", stem.to_str().unwrap()])
        .env("TUFA_KEY_PASSPHRASE", "secret words")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", output_text(&made));
    let serve = std::process::Command::new(TUFA)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--online-key")
        .arg(dir.path().join("online.pem"))
        .env_remove("TUFA_ONLINE_KEY_PASSPHRASE")
        .output()
        .unwrap();
    let text = output_text(&serve);
    assert!(!serve.status.success(), "{text}");
    assert!(text.contains("set TUFA_ONLINE_KEY_PASSPHRASE"), "{text}");

    let public = std::process::Command::new(TUFA)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--online-key")
        .arg(dir.path().join("online.pub.json"))
        .output()
        .unwrap();
    let text = output_text(&public);
    assert!(!public.status.success(), "{text}");
    assert!(text.contains("is a public key (TUF JSON)"), "{text}");
}

/// A signed ceremony with root keys a, b, c (2 of 3) installed in `DIR/data`.
fn installed_repository(d: &Path) -> std::path::PathBuf {
    generate_keys(
        d,
        &[
            "root-a", "root-b", "root-c", "targets", "bins", "online", "online-2",
        ],
    );
    let key = |name: &str, ext: &str| {
        d.join(format!("{name}.{ext}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let out = d.join("ceremony");
    common::ok(
        tufa(&[
            "ceremony",
            "--out",
            out.to_str().unwrap(),
            "--root-key",
            &key("root-a", "pub.json"),
            "--root-key",
            &key("root-b", "pub.json"),
            "--root-key",
            &key("root-c", "pub.json"),
            "--root-threshold",
            "2",
            "--targets-key",
            &key("targets", "pub.json"),
            "--bins-key",
            &key("bins", "pub.json"),
            "--online-key",
            &key("online", "pub.json"),
            "--bin-bits",
            "2",
            "--sign",
            &key("root-a", "pem"),
            "--sign",
            &key("root-b", "pem"),
            "--sign",
            &key("targets", "pem"),
            "--sign",
            &key("bins", "pem"),
        ]),
        "tufa ceremony",
    );
    let data = d.join("data");
    common::install_ceremony(&out, &data);
    data
}

#[test]
fn key_ids_by_prefix_a_public_key_to_sign_and_an_online_key_change_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = installed_repository(d);
    let data_arg = data.to_str().unwrap();
    let pub_key = |name: &str| {
        d.join(format!("{name}.pub.json"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let key: tufa_metadata::Key =
        serde_json::from_slice(&std::fs::read(pub_key("root-c")).unwrap()).unwrap();
    let keyid = key.key_id().unwrap();

    // 12 characters, as `tufa status` shows them.
    let root_2 = d.join("root-2.json");
    common::ok(
        tufa(&[
            "roles",
            "prepare",
            "root",
            "--data",
            data_arg,
            "--out",
            root_2.to_str().unwrap(),
            "--remove-root-key",
            &keyid.as_str()[..12],
            "--online-key",
            &pub_key("online-2"),
        ]),
        "tufa roles prepare root with a key ID prefix",
    );
    let unknown = tufa(&[
        "roles",
        "prepare",
        "root",
        "--data",
        data_arg,
        "--out",
        d.join("other.json").to_str().unwrap(),
        "--remove-root-key",
        "ffffffffffff",
    ]);
    let text = output_text(&unknown);
    assert!(
        !unknown.status.success() && text.contains("no key ID starting with"),
        "{text}"
    );
    let root_as_online = tufa(&[
        "roles",
        "prepare",
        "root",
        "--data",
        data_arg,
        "--out",
        d.join("other.json").to_str().unwrap(),
        "--online-key",
        &pub_key("root-c"),
    ]);
    let text = output_text(&root_as_online);
    assert!(
        !root_as_online.status.success()
            && text.contains("the new online key is a root or targets key"),
        "{text}"
    );

    // The public key file where the private key belongs.
    let wrong = tufa(&[
        "sign",
        root_2.to_str().unwrap(),
        "--key",
        &pub_key("root-a"),
    ]);
    let text = output_text(&wrong);
    assert!(!wrong.status.success(), "{text}");
    assert!(text.contains("is a public key (TUF JSON)"), "{text}");

    // A key the role does not list, with the repository at hand: refused, file untouched.
    let before = std::fs::read(&root_2).unwrap();
    let unlisted = tufa(&[
        "sign",
        root_2.to_str().unwrap(),
        "--key",
        d.join("bins.pem").to_str().unwrap(),
        "--data",
        data_arg,
    ]);
    let text = output_text(&unlisted);
    assert!(!unlisted.status.success(), "{text}");
    assert!(text.contains("is not a key of root version 2"), "{text}");
    assert_eq!(std::fs::read(&root_2).unwrap(), before);

    for holder in ["root-a", "root-b"] {
        let pem = d.join(format!("{holder}.pem"));
        common::ok(
            tufa(&[
                "sign",
                root_2.to_str().unwrap(),
                "--key",
                pem.to_str().unwrap(),
            ]),
            "tufa sign",
        );
    }
    let submitted = common::ok(
        tufa(&[
            "roles",
            "submit",
            "--data",
            data_arg,
            root_2.to_str().unwrap(),
        ]),
        "tufa roles submit",
    );
    assert!(
        submitted.contains("changes the online key") && submitted.contains("Restart it"),
        "{submitted}"
    );

    // Prepared again, differently, for the same version: the collected signatures go, said so.
    let again = d.join("root-2-again.json");
    common::ok(
        tufa(&[
            "roles",
            "prepare",
            "root",
            "--data",
            data_arg,
            "--out",
            again.to_str().unwrap(),
            "--online-key",
            &pub_key("online-2"),
        ]),
        "tufa roles prepare root again",
    );
    let replaced = tufa(&[
        "roles",
        "submit",
        "--data",
        data_arg,
        again.to_str().unwrap(),
    ]);
    let text = output_text(&replaced);
    assert!(
        text.contains("replaces a different request for that version"),
        "{text}"
    );
}

#[test]
fn status_and_metrics_show_the_same_bin_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = tufa_testkit::TufaServer::start(TUFA.as_ref(), &data, &[]);
    let token = common::token(&data, "alice", None);
    let wheel = dir.path().join("one_bin-1.0-py3-none-any.whl");
    std::fs::write(&wheel, tufa_testkit::minimal_wheel("one-bin", "1.0")).unwrap();
    common::ok(
        common::twine(&server, &token, &[&wheel], &[]),
        "twine upload",
    );
    server.wait_until_signed();

    let metrics = tufa_testkit::http::get(&format!("{}/metrics", server.url), &[]).text();
    let metric: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tufa_role_version{role=\"bin-*\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bin-* version in {metrics}"));
    let status = common::ok(
        tufa(&["status", "--data", data.to_str().unwrap()]),
        "tufa status",
    );
    let row: u64 = status
        .lines()
        .find(|l| l.starts_with("bin-*"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no bin-* row in {status}"));
    assert_eq!(row, metric, "{status}\n{metrics}");
    // One bin was signed again for the upload, the others not: the range is shown.
    assert!(
        status.contains("bin-* versions range from 1 to 2"),
        "{status}"
    );
}

#[test]
fn status_works_after_an_online_key_rotation_is_submitted_and_the_old_key_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = installed_repository(d);
    let data_arg = data.to_str().unwrap();
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    let old_key = ["--online-key", &path("online.pem")];
    let mut server = tufa_testkit::TufaServer::start(TUFA.as_ref(), &data, &old_key);
    server.wait_until_signed();
    for role in ["root", "bins"] {
        let out = path(&format!("{role}-2.json"));
        common::ok(
            tufa(&[
                "roles",
                "prepare",
                role,
                "--data",
                data_arg,
                "--out",
                &out,
                "--online-key",
                &path("online-2.pub.json"),
            ]),
            "tufa roles prepare",
        );
        let signers: &[&str] = if role == "root" {
            &["root-a.pem", "root-b.pem"]
        } else {
            &["bins.pem"]
        };
        for key in signers {
            common::ok(tufa(&["sign", &out, "--key", &path(key)]), "tufa sign");
        }
    }
    common::ok(
        tufa(&[
            "roles",
            "submit",
            "--data",
            data_arg,
            &path("root-2.json"),
            &path("bins-2.json"),
        ]),
        "tufa roles submit",
    );
    server.kill();
    // Started again with the old key: refused, naming the key root now lists.
    let refused = std::process::Command::new(TUFA)
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data_arg])
        .args(old_key)
        .envs(common::backend_env())
        .output()
        .unwrap();
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("is not trusted for timestamp"), "{text}");
    let status = tufa(&["status", "--data", data_arg]);
    let text = output_text(&status);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("an online-key rotation is installed") && text.contains("Next: start"),
        "{text}"
    );
    // Doing what it says recovers.
    let server = tufa_testkit::TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--online-key", &path("online-2.pem")],
    );
    server.wait_until_signed();
    let text = common::ok(tufa(&["status", "--data", data_arg]), "tufa status");
    assert!(
        text.lines().any(|l| l.starts_with("timestamp")) && !text.contains("rotation is installed"),
        "{text}"
    );
}
