//! The transit signer against a real OpenBao: both key types sign what TUF verifies, a pinned
//! version survives Vault's key rotation, and a replaced key, a missing key, a refusing token and
//! a stopped server are each their own error.

use serde_json::json;
use tufa_metadata::Signer;
use tufa_testkit::openbao::TRANSIT_MOUNT;
use tufa_testkit::{OpenBao, OpenBaoTls};
use tufa_vault::{Error, KeyKind, Vault, VaultSigner, VaultSpec};

fn spec(key: &str) -> VaultSpec {
    VaultSpec::parse(&format!("vault:{key}?mount={TRANSIT_MOUNT}")).unwrap()
}

fn vault(bao: &OpenBao) -> Vault {
    Vault::with_token(&bao.address(), bao.root_token())
}

#[test]
fn both_key_types_sign_what_tuf_verifies_and_failures_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut bao = OpenBao::start(dir.path());
    let message = b"{\"signed\":{\"_type\":\"timestamp\"}}".repeat(1000);

    for (name, kind, keytype) in [
        ("ed", KeyKind::Ed25519, "ed25519"),
        ("ec", KeyKind::EcdsaP256, "ecdsa"),
    ] {
        let created = vault(&bao).create_key(&spec(name), kind).unwrap();
        assert_eq!(created.keytype, keytype);
        let signer = VaultSigner::open(vault(&bao), spec(name)).unwrap();
        assert_eq!(signer.public_key(), &created);
        let signature = signer.sign(&message).unwrap();
        created
            .verify(signer.key_id(), &message, &signature.sig)
            .unwrap();
        // Another message does not verify with it: the signature covers the message.
        assert!(
            created
                .verify(signer.key_id(), b"other", &signature.sig)
                .is_err()
        );
        assert!(matches!(
            vault(&bao).create_key(&spec(name), kind),
            Err(Error::KeyExists { .. })
        ));

        // Vault's rotation makes version 2; the signer keeps signing with the version it
        // opened, which is the key root lists.
        bao.call("POST", &format!("{TRANSIT_MOUNT}/keys/{name}/rotate"), None);
        let again = signer.sign(&message).unwrap();
        created
            .verify(signer.key_id(), &message, &again.sig)
            .unwrap();
        let v2 = VaultSigner::open(
            vault(&bao),
            VaultSpec::parse(&format!("vault:{name}?version=2")).unwrap(),
        )
        .unwrap();
        assert_ne!(
            v2.key_id(),
            signer.key_id(),
            "a new version is a new TUF key"
        );

        // The key deleted and re-created under the same name: refused, naming the rotation.
        bao.call(
            "POST",
            &format!("{TRANSIT_MOUNT}/keys/{name}/config"),
            Some(json!({"deletion_allowed": true})),
        );
        bao.call("DELETE", &format!("{TRANSIT_MOUNT}/keys/{name}"), None);
        let gone = signer.sign(&message).unwrap_err().to_string();
        assert!(gone.contains("no transit key"), "{gone}");
        bao.create_key(name, kind_name(kind));
        let replaced = signer.sign(&message).unwrap_err().to_string();
        assert!(
            replaced.contains("online-key rotation procedure"),
            "{replaced}"
        );
    }

    assert!(matches!(
        VaultSigner::open(vault(&bao), spec("absent")),
        Err(Error::MissingKey { .. })
    ));
    assert!(matches!(
        VaultSigner::open(vault(&bao), VaultSpec::parse("vault:ed?version=9").unwrap()),
        Err(Error::NoVersion { .. })
    ));
    bao.call(
        "POST",
        &format!("{TRANSIT_MOUNT}/keys/aes"),
        Some(json!({"type": "aes256-gcm96"})),
    );
    assert!(matches!(
        VaultSigner::open(vault(&bao), spec("aes")),
        Err(Error::WrongKeyType { .. })
    ));

    // A token that may read the key but not sign with it.
    bao.call(
        "PUT",
        "sys/policies/acl/read-only",
        Some(json!({"policy": format!("path \"{TRANSIT_MOUNT}/keys/*\" {{ capabilities = [\"read\"] }}")})),
    );
    let token = bao.call(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["read-only"], "no_default_policy": true})),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let forbidden = VaultSigner::open(Vault::with_token(&bao.address(), &token), spec("ed"));
    assert!(
        matches!(forbidden, Err(Error::Forbidden { .. })),
        "{forbidden:?}"
    );

    // A stopped server is unreachable; the same signer signs again once it is back.
    let signer = VaultSigner::open(vault(&bao), spec("ed")).unwrap();
    bao.stop();
    let down = signer.sign(&message).unwrap_err().to_string();
    assert!(down.contains("unreachable"), "{down}");
    bao.restart();
    signer.sign(&message).unwrap();
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Ed25519 => "ed25519",
        KeyKind::EcdsaP256 => "ecdsa-p256",
    }
}

#[test]
fn an_approle_login_is_repeated_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let bao = OpenBao::start(dir.path());
    bao.create_key("online", "ed25519");
    bao.call(
        "PUT",
        "sys/policies/acl/tufa-online",
        Some(json!({"policy": format!(
            "path \"{TRANSIT_MOUNT}/keys/online\" {{ capabilities = [\"read\"] }}\n\
             path \"{TRANSIT_MOUNT}/sign/online\" {{ capabilities = [\"update\"] }}"
        )})),
    );
    bao.call("POST", "sys/auth/approle", Some(json!({"type": "approle"})));
    // Tokens that live two seconds: the signer outlives several.
    bao.call(
        "POST",
        "auth/approle/role/tufa",
        Some(json!({"token_policies": ["tufa-online"], "token_ttl": "2s", "token_max_ttl": "2s"})),
    );
    let role_id = bao.call("GET", "auth/approle/role/tufa/role-id", None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao.call("POST", "auth/approle/role/tufa/secret-id", None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();

    let signer = VaultSigner::open(
        Vault::with_approle(&bao.address(), &role_id, &secret_id, "approle"),
        spec("online"),
    )
    .unwrap();
    for _ in 0..3 {
        let signature = signer.sign(b"message").unwrap();
        signer
            .public_key()
            .verify(signer.key_id(), b"message", &signature.sig)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2500));
    }

    // The policy allows this key only.
    bao.create_key("other", "ed25519");
    let other = VaultSigner::open(
        Vault::with_approle(&bao.address(), &role_id, &secret_id, "approle"),
        spec("other"),
    );
    assert!(matches!(other, Err(Error::Forbidden { .. })), "{other:?}");
    let wrong = VaultSigner::open(
        Vault::with_approle(&bao.address(), &role_id, "not-the-secret", "approle"),
        spec("online"),
    );
    assert!(wrong.is_err(), "{wrong:?}");
}

#[test]
fn a_vault_behind_a_private_ca_is_reached_with_its_ca_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let bao = OpenBaoTls::start(dir.path());
    let ca = bao.ca_cert();
    let ca = ca.to_str().unwrap();
    let trusting = || {
        Vault::with_token(&bao.address(), tufa_testkit::openbao::DEV_ROOT_TOKEN)
            .trusting_ca(ca)
            .unwrap()
    };

    let created = trusting()
        .create_key(&spec("tls"), KeyKind::Ed25519)
        .unwrap();
    let signer = VaultSigner::open(trusting(), spec("tls")).unwrap();
    let signature = signer.sign(b"over TLS").unwrap();
    created
        .verify(signer.key_id(), b"over TLS", &signature.sig)
        .unwrap();

    // The public web roots do not vouch for the private CA: the certificate is refused.
    let untrusting = Vault::with_token(&bao.address(), tufa_testkit::openbao::DEV_ROOT_TOKEN);
    match VaultSigner::open(untrusting, spec("tls")) {
        Err(Error::Unreachable { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }

    // A file that holds no certificate is named, with what to give instead.
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let error = Vault::with_token(&bao.address(), "t")
        .trusting_ca(not_pem.to_str().unwrap())
        .unwrap_err();
    assert!(matches!(error, Error::CaCert { .. }), "{error}");
    assert!(error.to_string().contains("VAULT_CACERT"), "{error}");
}
