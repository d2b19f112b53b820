//! A development repository: every key generated locally, unencrypted, threshold 1. It lets
//! `tufa serve` on an empty directory sign from the first upload; it is not secure, because the
//! offline keys sit next to the server.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use tufa_metadata::{KeyAlgorithm, Threshold};

use crate::ceremony::{CeremonyPlan, RoleSpec};
use crate::error::{Error, Result};
use crate::keyfile::{generate_key_files, key_paths, load_signer};
use crate::layout::Expiries;
use crate::store::Store;
use crate::tlog::LogKey;

/// The online key's file name (without extension) in the keys directory.
pub const ONLINE_KEY: &str = "online";

/// The transparency log key's file name in the keys directory (see [`crate::tlog::LogKey`]).
pub const LOG_KEY: &str = "log.key";

/// Generates development keys into `keys_dir` and writes signed offline roles into `store`.
pub fn create_development_repository(
    store: &impl Store,
    keys_dir: &Path,
    bit_length: u32,
    expiries: Expiries,
    now: SystemTime,
) -> Result<()> {
    create(store, keys_dir, bit_length, expiries, now, false)
}

/// [`create_development_repository`] with a transparency log: its key in `keys_dir`
/// ([`LOG_KEY`]) and declared in root, as `tufa serve` creates it.
pub fn create_development_repository_with_log(
    store: &impl Store,
    keys_dir: &Path,
    bit_length: u32,
    expiries: Expiries,
    now: SystemTime,
) -> Result<()> {
    create(store, keys_dir, bit_length, expiries, now, true)
}

fn create(
    store: &impl Store,
    keys_dir: &Path,
    bit_length: u32,
    expiries: Expiries,
    now: SystemTime,
    log: bool,
) -> Result<()> {
    fs::create_dir_all(keys_dir).map_err(|source| Error::Io {
        action: "creating",
        path: keys_dir.to_path_buf(),
        source,
    })?;
    let mut offline = Vec::new();
    let mut spec = |name: &str| -> Result<RoleSpec> {
        let stem = keys_dir.join(format!("dev-{name}"));
        let key = generate_key_files(&stem, KeyAlgorithm::Ed25519, None)?;
        offline.push(load_signer(&key_paths(&stem).0, None)?);
        Ok(RoleSpec {
            keys: vec![key],
            threshold: Threshold::ONE,
        })
    };
    let (root, targets, bins) = (spec("root")?, spec("targets")?, spec("bins")?);
    let online = generate_key_files(&keys_dir.join(ONLINE_KEY), KeyAlgorithm::Ed25519, None)?;
    let plan = CeremonyPlan {
        root,
        targets,
        bins,
        online,
        bit_length,
        expiries,
    };
    let mut roles = plan.offline_roles(now)?;
    if log {
        let declared = LogKey::generate(&keys_dir.join(LOG_KEY), &development_origin()?)?;
        roles.root.signed.set_transparency_log(Some(&declared));
    }
    for signer in &offline {
        roles.sign(signer)?;
    }
    store.write_all(&roles.files()?)
}

/// A development log's origin: unique, since witnesses tell logs apart by it, and naming no
/// host, since the server's address is not known when the repository is created.
fn development_origin() -> Result<String> {
    let mut random = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| Error::Config("the system's random generator failed".into()))?;
    Ok(format!("tufa-development-log/{}", hex::encode(random)))
}
