//! A cold refresh plus 100 target lookups on a PEP 458 repository at PyPI's scale (16,384 bins,
//! 1,000,000 project pages by default; `TUFA_BENCH_PROJECTS` sets another count), served over
//! HTTP on 127.0.0.1, for tufa-client and then python-tuf's ngclient in the same run.
//!
//! The repository takes long to build, so it is built once under `target/` and reused; every role
//! expires after a year.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tufa_client::{HttpFetcher, Updater, UpdaterConfig};
use tufa_metadata::{FileSigner, KeyAlgorithm, Signer, Threshold, generate_private_key};
use tufa_repo::{CeremonyPlan, Expiries, FsStore, PageChange, Repository, RoleSpec, Store, View};
use tufa_testkit::{PythonEnv, StaticServer, target_dir};

const BATCH: usize = 200_000;
const LOOKUPS: usize = 100;

fn projects() -> usize {
    std::env::var("TUFA_BENCH_PROJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

fn page(n: usize) -> Vec<u8> {
    format!(
        "{{\"meta\":{{\"api-version\":\"1.1\"}},\"name\":\"project-{n}\",\"files\":[{{\"filename\":\"project_{n}-1.0-py3-none-any.whl\",\"hashes\":{{\"sha256\":\"{n:064x}\"}},\"size\":1234,\"url\":\"../../files/project-{n}/project_{n}-1.0-py3-none-any.whl\"}}]}}"
    )
    .into_bytes()
}

/// The repository directory, built on first use.
fn repository(projects: usize) -> PathBuf {
    let dir = target_dir().join(format!("tufa-client-bench-{projects}"));
    if dir.join(".ready").exists() {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("removing a half-built repository");
    }
    let signer = || {
        let der = generate_private_key(KeyAlgorithm::Ed25519).expect("generating a key");
        Arc::new(FileSigner::from_pkcs8_der(der.as_bytes()).expect("loading the key"))
    };
    let (offline, online) = (signer(), signer());
    let role = RoleSpec {
        keys: vec![offline.public_key().clone()],
        threshold: Threshold::ONE,
    };
    let year = Duration::from_secs(365 * 86_400);
    let expiries = Expiries {
        root: year,
        targets: year,
        bins: year,
        snapshot: year,
        timestamp: year,
        bin_roles: year,
    };
    let plan = CeremonyPlan {
        root: role.clone(),
        targets: role.clone(),
        bins: role,
        online: online.public_key().clone(),
        bit_length: 14,
        expiries,
    };
    let now = SystemTime::now();
    let mut roles = plan.offline_roles(now).expect("building offline roles");
    roles.sign(offline.as_ref()).expect("signing offline roles");
    let store = FsStore::open(&dir).expect("opening the store");
    store
        .write_all(&roles.files().expect("encoding offline roles"))
        .expect("writing offline roles");
    let started = Instant::now();
    let mut repo = Repository::open(store, online, expiries, now).expect("creating the bins");
    let mut done = 0;
    while done < projects {
        let batch: Vec<PageChange> = (done..projects.min(done + BATCH))
            .map(|n| PageChange {
                project: format!("project-{n}"),
                view: View::Simple,
                page: Some(page(n)),
            })
            .collect();
        repo.publish(&batch, now).expect("publishing a batch");
        done += batch.len();
    }
    eprintln!(
        "built a repository with 16,384 bins and {projects} targets in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join(".ready"), "").expect("marking the repository ready");
    dir
}

fn lookups(projects: usize) -> Vec<String> {
    (0..LOOKUPS)
        .map(|i| format!("simple/project-{}/index.json", (i * 9_973) % projects))
        .collect()
}

fn cold_client(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("creating a client directory");
    Updater::<HttpFetcher>::initialize(dir.path(), &std::fs::read(root).expect("reading root"))
        .expect("initializing the client");
    dir
}

const PYTHON: &str = r#"
import json, os, shutil, sys, tempfile, time
from tuf.ngclient import Updater
root, url, runs, *paths = sys.argv[1:]
times = []
for _ in range(int(runs)):
    d = tempfile.mkdtemp()
    shutil.copy(root, os.path.join(d, "root.json"))
    start = time.perf_counter()
    updater = Updater(d, url, bootstrap=None)
    updater.refresh()
    for path in paths:
        assert updater.get_targetinfo(path) is not None, path
    times.append(time.perf_counter() - start)
    shutil.rmtree(d)
print(json.dumps(sorted(times)))
"#;

fn bench(c: &mut Criterion) {
    let projects = projects();
    let repo = repository(projects);
    let server = StaticServer::start(&repo);
    let metadata_url = format!("{}/metadata/", server.url());
    let root = repo.join("metadata/1.root.json");
    let paths = lookups(projects);

    let mut group = c.benchmark_group("client");
    group.sample_size(10);
    group.bench_function(
        format!("tufa-client cold refresh + {LOOKUPS} lookups, 16,384 bins, {projects} targets"),
        |b| {
            b.iter_batched(
                || cold_client(&root),
                |dir| {
                    let updater = Updater::new(
                        dir.path(),
                        &metadata_url,
                        HttpFetcher::default(),
                        UpdaterConfig::default(),
                    );
                    let refreshed = updater.refresh(SystemTime::now()).expect("refreshing");
                    for path in &paths {
                        refreshed.target_info(path).expect("looking up a target");
                    }
                    dir
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();

    let mut args = vec![
        root.to_str().expect("UTF-8 path").to_string(),
        metadata_url.clone(),
        "10".to_string(),
    ];
    args.extend(paths.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = PythonEnv::shared().run_script(PYTHON, &args);
    let times: Vec<f64> =
        serde_json::from_slice(&output.stdout).expect("python-tuf's timings as JSON");
    println!(
        "python-tuf ngclient cold refresh + {LOOKUPS} lookups, 16,384 bins, {projects} targets: \
         median {:.1} ms (min {:.1} ms, max {:.1} ms, 10 runs)",
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
