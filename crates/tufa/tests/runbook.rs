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
}
