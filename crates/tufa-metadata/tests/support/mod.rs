//! Builders shared by this crate's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tufa_metadata::*;

/// RSA keys cannot be generated here (ring only signs with RSA), so tests take turns with these
/// fixtures, written by `openssl genpkey`. One 3072-bit key, the size python-tuf generates.
const RSA_TEST_KEYS: [&str; 4] = [
    include_str!("../fixtures/rsa-test-only-1.pem"),
    include_str!("../fixtures/rsa-test-only-2.pem"),
    include_str!("../fixtures/rsa-test-only-3.pem"),
    include_str!("../fixtures/rsa-test-only-4.pem"),
];

pub fn ed25519() -> FileSigner {
    let der = generate_private_key(KeyAlgorithm::Ed25519).unwrap();
    FileSigner::from_pkcs8_der(der.as_bytes()).unwrap()
}

pub fn ecdsa() -> FileSigner {
    let der = generate_private_key(KeyAlgorithm::EcdsaP256Sha256).unwrap();
    FileSigner::from_pkcs8_der(der.as_bytes()).unwrap()
}

pub fn rsa() -> FileSigner {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pem = RSA_TEST_KEYS[NEXT.fetch_add(1, Ordering::Relaxed) % RSA_TEST_KEYS.len()];
    FileSigner::from_pem(pem, None).unwrap()
}

pub fn in_a_year() -> Expires {
    Expires::after(SystemTime::now(), Duration::from_secs(365 * 86400))
}

pub fn threshold(n: u32) -> Threshold {
    Threshold::new(n).unwrap()
}

/// A root whose every top-level role is held by `signers` with `threshold`.
pub fn root_with(signers: &[&dyn Signer], threshold_count: u32) -> Root {
    let keys: BTreeMap<KeyId, Key> = signers
        .iter()
        .map(|s| (s.key_id().clone(), s.public_key().clone()))
        .collect();
    let keyids: Vec<KeyId> = signers.iter().map(|s| s.key_id().clone()).collect();
    let role = RoleKeys::new(keyids, threshold(threshold_count));
    Root::new(
        1,
        in_a_year(),
        true,
        keys,
        TopLevelRoles {
            root: role.clone(),
            snapshot: role.clone(),
            targets: role.clone(),
            timestamp: role,
        },
    )
}

pub fn signed<T: Role>(signed: T, signers: &[&dyn Signer]) -> Metadata<T> {
    let mut metadata = Metadata::new(signed);
    for signer in signers {
        metadata.sign(*signer).unwrap();
    }
    metadata
}
