//! Signing latency through a real OpenBao transit engine on loopback, per key type and per
//! message size of the roles the online key signs, against the key file on the server for
//! comparison. Run: `cargo bench -p tufa-vault --bench transit`.

use std::time::{Duration, Instant};

use tufa_metadata::{FileSigner, KeyAlgorithm, Signer, generate_private_key, private_key_pem};
use tufa_testkit::OpenBao;
use tufa_vault::{KeyKind, Vault, VaultSigner, VaultSpec};

const ROUNDS: usize = 200;
/// Canonical metadata sizes: a timestamp; a snapshot of 256 bins or a bin role of about a
/// hundred files; a snapshot of PEP 458's 16,384 bins.
const ROLES: [(&str, usize); 3] = [
    ("timestamp (0.5 KB)", 512),
    ("snapshot of 256 bins / busy bin (20 KB)", 20 << 10),
    ("snapshot of 16,384 bins (1.3 MB)", 1300 << 10),
];

fn measure(signer: &dyn Signer, message: &[u8]) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            signer.sign(message).expect("signing");
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[ROUNDS / 2], times[ROUNDS * 99 / 100])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let bao = OpenBao::start(dir.path());
    println!("| key | role (message size) | signer | median | p99 |");
    println!("|---|---|---|---|---|");
    for (name, kind, algorithm) in [
        ("ed25519", KeyKind::Ed25519, KeyAlgorithm::Ed25519),
        (
            "ecdsa-p256",
            KeyKind::EcdsaP256,
            KeyAlgorithm::EcdsaP256Sha256,
        ),
    ] {
        let spec = VaultSpec::parse(&format!("vault:{name}")).unwrap();
        let vault = Vault::with_token(&bao.address(), bao.root_token());
        vault.create_key(&spec, kind).unwrap();
        let in_vault = VaultSigner::open(vault, spec).unwrap();
        let pem = private_key_pem(&generate_private_key(algorithm).unwrap(), None).unwrap();
        let file = FileSigner::from_pem(&pem, None).unwrap();
        for (role, size) in ROLES {
            let message = vec![b'x'; size];
            for (signer_name, signer) in [
                ("OpenBao transit", &in_vault as &dyn Signer),
                ("key file", &file as &dyn Signer),
            ] {
                let (median, p99) = measure(signer, &message);
                println!(
                    "| {name} | {role} | {signer_name} | {:.2} ms | {:.2} ms |",
                    median.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                );
            }
        }
    }
}
