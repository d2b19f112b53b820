//! The PKCS#11 signer against a real token (SoftHSM2): keys created on it sign what Tufa's
//! verifier accepts, and every way of naming the wrong thing gets its own error.
//!
//! `harness = false`: SoftHSM2 finds its token through `SOFTHSM2_CONF`, read once per process,
//! so [`run_in_softhsm`] re-runs this binary with it set and runs the tests one by one.

use std::path::Path;
use std::process::ExitCode;

use tufa_metadata::{KeyAlgorithm, Signer};
use tufa_pkcs11::{Error, Pkcs11Signer, Pkcs11Uri, generate_key_pair};
use tufa_testkit::{SOFTHSM_MODULE, SOFTHSM_PIN, SoftHsm, run_in_softhsm};

fn main() -> ExitCode {
    run_in_softhsm(&[
        ("ecdsa_p256_key_signs_what_tufa_verifies", ecdsa_p256),
        ("ed25519_key_signs_what_tufa_verifies", ed25519),
        ("pin_from_the_environment", pin_from_the_environment),
        ("wrong_pin_is_named", wrong_pin),
        ("missing_key_label_is_named", missing_key),
        ("missing_token_is_named", missing_token),
        ("missing_module_is_named", missing_module),
        ("generation_refuses_a_used_label_and_rsa", refusals),
        ("mismatched_public_key_is_named", mismatched_pair),
        // Last: it finalizes the module under the others' sessions.
        ("a_session_reopens_after_a_token_restart", token_restart),
    ])
}

fn uri(hsm: &SoftHsm, label: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(&hsm.uri(label)).unwrap()
}

fn generate(hsm: &SoftHsm, label: &str, algorithm: KeyAlgorithm) -> tufa_metadata::Key {
    generate_key_pair(
        Path::new(SOFTHSM_MODULE),
        &hsm.token,
        SOFTHSM_PIN,
        label,
        algorithm,
    )
    .unwrap()
}

/// Signs small and large messages and checks them with `Key::verify`; a changed message or
/// another key's signature must not verify.
fn signs_and_verifies(hsm: &SoftHsm, label: &str, algorithm: KeyAlgorithm) {
    let public = generate(hsm, label, algorithm);
    assert_eq!(public.algorithm().unwrap(), algorithm);
    let signer = Pkcs11Signer::open(&uri(hsm, label), SOFTHSM_PIN).unwrap();
    assert_eq!(
        signer.public_key(),
        &public,
        "the key read back from the token"
    );
    assert_eq!(signer.key_id(), &public.key_id().unwrap());
    let big = vec![b'x'; 1 << 20];
    for message in [&b"{\"signed\":{}}"[..], &big] {
        let signature = signer.sign(message).unwrap();
        assert_eq!(&signature.keyid, signer.key_id());
        public
            .verify(signer.key_id(), message, &signature.sig)
            .unwrap();
        let mut changed = message.to_vec();
        changed[0] ^= 1;
        assert!(
            public
                .verify(signer.key_id(), &changed, &signature.sig)
                .is_err()
        );
    }
    let other = generate(hsm, &format!("{label}-other"), algorithm);
    let signature = signer.sign(b"message").unwrap();
    assert!(
        other
            .verify(signer.key_id(), b"message", &signature.sig)
            .is_err()
    );
}

fn ecdsa_p256(hsm: &SoftHsm) {
    signs_and_verifies(hsm, "ecdsa", KeyAlgorithm::EcdsaP256Sha256);
}

fn ed25519(hsm: &SoftHsm) {
    signs_and_verifies(hsm, "ed25519", KeyAlgorithm::Ed25519);
}

/// The parent process put the PIN in `TUFA_PKCS11_PIN`; the URI has none.
fn pin_from_the_environment(hsm: &SoftHsm) {
    let key = generate(hsm, "from-env", KeyAlgorithm::EcdsaP256Sha256);
    let signer = Pkcs11Signer::from_uri(&hsm.uri("from-env")).unwrap();
    assert_eq!(signer.public_key(), &key);
}

fn wrong_pin(hsm: &SoftHsm) {
    generate(hsm, "pinned", KeyAlgorithm::EcdsaP256Sha256);
    let error = Pkcs11Signer::open(&uri(hsm, "pinned"), "99999").unwrap_err();
    assert!(matches!(error, Error::WrongPin { .. }), "{error}");
    assert!(error.to_string().contains("wrong PIN"), "{error}");
}

fn missing_key(hsm: &SoftHsm) {
    let error = Pkcs11Signer::open(&uri(hsm, "no-such-key"), SOFTHSM_PIN).unwrap_err();
    assert!(
        matches!(&error, Error::KeyNotFound { label, .. } if label == "no-such-key"),
        "{error}"
    );
    assert!(error.to_string().contains("object="), "{error}");
}

fn missing_token(hsm: &SoftHsm) {
    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=absent;object=k?module-path={SOFTHSM_MODULE}"
    ))
    .unwrap();
    let error = Pkcs11Signer::open(&uri, SOFTHSM_PIN).unwrap_err();
    assert!(matches!(error, Error::TokenNotFound { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!("{:?}", hsm.token)),
        "lists the tokens present: {error}"
    );
}

fn missing_module(_: &SoftHsm) {
    let uri =
        Pkcs11Uri::parse("pkcs11:token=t;object=k?module-path=/nonexistent/pkcs11.so").unwrap();
    let error = Pkcs11Signer::open(&uri, SOFTHSM_PIN).unwrap_err();
    assert!(matches!(error, Error::ModuleNotFound { .. }), "{error}");
}

fn refusals(hsm: &SoftHsm) {
    let first = generate(hsm, "taken", KeyAlgorithm::Ed25519);
    let module = Path::new(SOFTHSM_MODULE);
    let again = generate_key_pair(
        module,
        &hsm.token,
        SOFTHSM_PIN,
        "taken",
        KeyAlgorithm::EcdsaP256Sha256,
    )
    .unwrap_err();
    assert!(matches!(again, Error::KeyExists { .. }), "{again}");
    let signer = Pkcs11Signer::open(&uri(hsm, "taken"), SOFTHSM_PIN).unwrap();
    assert_eq!(signer.public_key(), &first, "the first key is untouched");
    let rsa = generate_key_pair(
        module,
        &hsm.token,
        SOFTHSM_PIN,
        "rsa",
        KeyAlgorithm::RsaPssSha256,
    )
    .unwrap_err();
    assert!(matches!(rsa, Error::UnsupportedAlgorithm(_)), "{rsa}");
}

/// Swaps in another key's public object under the label: the start-up probe signature must
/// catch that the pair does not match, before any metadata is signed with it.
fn mismatched_pair(hsm: &SoftHsm) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;

    generate(hsm, "pair-a", KeyAlgorithm::EcdsaP256Sha256);
    generate(hsm, "pair-b", KeyAlgorithm::EcdsaP256Sha256);
    {
        let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
        // Already initialized by the signer tests before this one, or not: either is fine.
        let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        let slot = pkcs11
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|slot| pkcs11.get_token_info(*slot).unwrap().label() == hsm.token)
            .unwrap();
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&SOFTHSM_PIN.to_string().into()))
            .unwrap();
        let public = |label: &str| {
            session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .unwrap()[0]
        };
        let (a, b) = (public("pair-a"), public("pair-b"));
        session
            .update_attributes(a, &[Attribute::Label(b"pair-a-old".to_vec())])
            .unwrap();
        session
            .update_attributes(b, &[Attribute::Label(b"pair-a".to_vec())])
            .unwrap();
    }
    let error = Pkcs11Signer::open(&uri(hsm, "pair-a"), SOFTHSM_PIN).unwrap_err();
    assert!(matches!(error, Error::KeyPairMismatch { .. }), "{error}");
}

/// A logged-in session on the token, opened with cryptoki directly (not through the signer).
fn session(hsm: &SoftHsm, read_write: bool) -> cryptoki::session::Session {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|slot| pkcs11.get_token_info(*slot).unwrap().label() == hsm.token)
        .unwrap();
    let session = if read_write {
        pkcs11.open_rw_session(slot).unwrap()
    } else {
        pkcs11.open_ro_session(slot).unwrap()
    };
    let pin = cryptoki::types::AuthPin::from(SOFTHSM_PIN.to_owned());
    let _ = session.login(cryptoki::session::UserType::User, Some(&pin));
    session
}

/// The module finalized under the signer (every session ends, as when a token restarts): the next
/// signature opens a new session by itself. A key replaced under the same label is refused.
fn token_restart(hsm: &SoftHsm) {
    let public = generate(hsm, "restart", KeyAlgorithm::EcdsaP256Sha256);
    let signer = Pkcs11Signer::open(&uri(hsm, "restart"), SOFTHSM_PIN).unwrap();
    signer.sign(b"before").unwrap();

    let witness = session(hsm, false);
    cryptoki::context::Pkcs11::new(SOFTHSM_MODULE)
        .unwrap()
        .finalize()
        .unwrap();
    assert!(
        witness.get_session_info().is_err(),
        "the restart ended the sessions open before it"
    );
    let signature = signer.sign(b"after").unwrap();
    public
        .verify(signer.key_id(), b"after", &signature.sig)
        .unwrap();

    // Replaced: both halves destroyed, a new pair made under the label.
    let admin = session(hsm, true);
    for object in admin
        .find_objects(&[cryptoki::object::Attribute::Label(b"restart".to_vec())])
        .unwrap()
    {
        admin.destroy_object(object).unwrap();
    }
    drop(admin);
    generate(hsm, "restart", KeyAlgorithm::EcdsaP256Sha256);
    let refused = signer.sign(b"replaced").unwrap_err().to_string();
    assert!(refused.contains("online-key rotation"), "{refused}");
}
