//! PEP 458 at PyPI's scale: creating a repository with 16,384 bin roles, then importing synthetic
//! project pages into it (1,000,000 by default; `TUFA_BENCH_PROJECTS` sets another count).
//! Runs once and prints its measurements; the README records them. The repository is written under
//! `target/` so that the disk, not a RAM-backed /tmp, is measured.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tufa_metadata::{FileSigner, KeyAlgorithm, Signer, Threshold, generate_private_key};
use tufa_repo::{CeremonyPlan, Expiries, FsStore, PageChange, Repository, RoleSpec, Store, View};

const BATCH: usize = 50_000;

fn main() {
    let projects: usize = std::env::var("TUFA_BENCH_PROJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // `TUFA_BENCH_DIR` puts the repository elsewhere, e.g. on a RAM disk to tell the CPU's share
    // from the disk's.
    let target = std::env::var_os("TUFA_BENCH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&target).expect("creating the bench's parent directory");
    let dir = tempfile::tempdir_in(&target).expect("creating the bench directory");

    let signer = || {
        let der = generate_private_key(KeyAlgorithm::Ed25519).expect("generating a key");
        Arc::new(FileSigner::from_pkcs8_der(der.as_bytes()).expect("loading the key"))
    };
    let (offline, online) = (signer(), signer());
    let role = RoleSpec {
        keys: vec![offline.public_key().clone()],
        threshold: Threshold::ONE,
    };
    let plan = CeremonyPlan {
        root: role.clone(),
        targets: role.clone(),
        bins: role,
        online: online.public_key().clone(),
        bit_length: 14,
        expiries: Expiries::default(),
    };
    let now = SystemTime::now();
    let mut roles = plan.offline_roles(now).expect("building offline roles");
    roles.sign(offline.as_ref()).expect("signing offline roles");
    let store = FsStore::open(dir.path()).expect("opening the store");
    store
        .write_all(&roles.files().expect("encoding offline roles"))
        .expect("writing offline roles");

    let started = Instant::now();
    let mut repo =
        Repository::open(store, online, Expiries::default(), now).expect("creating the bins");
    let created = started.elapsed();
    println!(
        "create a repository with 16,384 bin roles (sign and write every bin, snapshot, timestamp): {:.2} s",
        created.as_secs_f64()
    );

    let started = Instant::now();
    let mut done = 0;
    while done < projects {
        let batch: Vec<PageChange> = (done..projects.min(done + BATCH))
            .map(|n| PageChange {
                project: format!("project-{n}"),
                view: View::Simple,
                page: Some(
                    format!(
                        "{{\"meta\":{{\"api-version\":\"1.1\"}},\"name\":\"project-{n}\",\"files\":[{{\"filename\":\"project_{n}-1.0-py3-none-any.whl\",\"hashes\":{{\"sha256\":\"{:064x}\"}},\"size\":1234,\"url\":\"../../files/project-{n}/project_{n}-1.0-py3-none-any.whl\"}}],\"versions\":[\"1.0\"]}}",
                        n
                    )
                    .into_bytes(),
                ),
            })
            .collect();
        repo.publish(&batch, now).expect("publishing a batch");
        done += batch.len();
    }
    let imported = started.elapsed();
    println!(
        "import {projects} project pages into 16,384 bins in batches of {BATCH}: {:.1} s, {:.0} projects/s",
        imported.as_secs_f64(),
        projects as f64 / imported.as_secs_f64()
    );
}
