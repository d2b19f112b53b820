//! Bytes and requests of metadata per install, for a new client and for a returning one after 1,
//! 10 and 1,000 uploads, at 256 and 16,384 bins: the whole snapshot (classic), the same
//! compressed as `tufa serve` compresses it (zstd, bodies from 1 KiB), and TAP 16 proofs (plain
//! and compressed). Beside PEP 458's own figures in the README.
//!
//! `cargo bench -p tufa-client --bench refresh_bytes` (`TUFA_BENCH_PROJECTS` sets the number of
//! projects, 50,000 by default). The repository is built by tufa-repo in a temporary directory
//! and served from it in process, as `tufa serve` serves it (proofs from `V.snapshot.json`
//! through the same `SnapshotTree`); the clients are tufa-client's `Updater`, which is what
//! `tufa proxy` refreshes with, so these are the bytes the proxy fetches from the index whether
//! pip or uv is in front of it (both ask the proxy for the same pages; the installer-facing
//! bytes, pages and files, are the same in every mode). The install is `requests` and its four
//! dependencies: five projects, five pages, 477,130 bytes of wheels (the wheels of the
//! `installs` benchmark). Each upload republishes a project page; uploads are published in
//! batches of at most 100, as the publisher batches them.
//!
//! Measured with 50,000 projects (bytes of metadata and pages; % of the wheels' bytes):
//!
//! | bins | client | classic | compressed | proofs | proofs, compressed | requests (classic / proofs) |
//! |---|---|---|---|---|---|---|
//! | 256 | new | 146.9 KB (+30.7%) | 46.2 KB (+9.7%) | 143.8 KB (+30.1%) | 50.2 KB (+10.5%) | 14 / 20 |
//! | 256 | returning, 1 upload(s) | 8.1 KB | 1.0 KB | 5.0 KB | 5.0 KB | 2 / 8 |
//! | 256 | returning, 10 upload(s) | 8.1 KB | 1.1 KB | 5.0 KB | 5.0 KB | 2 / 8 |
//! | 256 | returning, 1000 upload(s) | 142.7 KB | 42.4 KB | 139.6 KB | 46.0 KB | 7 / 13 |
//! | 16384 | new | 500.8 KB (+104.7%) | 41.8 KB (+8.7%) | 15.7 KB (+3.3%) | 12.9 KB (+2.7%) | 14 / 20 |
//! | 16384 | returning, 1 upload(s) | 492.5 KB | 33.5 KB | 7.4 KB | 4.6 KB | 2 / 8 |
//! | 16384 | returning, 10 upload(s) | 492.5 KB | 33.5 KB | 7.4 KB | 4.7 KB | 2 / 8 |
//! | 16384 | returning, 1000 upload(s) | 492.5 KB | 34.2 KB | 7.4 KB | 4.6 KB | 2 / 8 |
//!
//! At 16,384 bins a returning client's refresh and install cost 4.6 KB as served (proofs of
//! ~1.2 KB, compressed like every body from 1 KiB), against the 492.5 KB snapshot; a new
//! client's first install 2.7% more than the wheels. At 256 bins, 50,000 projects make each bin
//! ~27 KB, which dominates every mode: the bin count must follow the number of projects
//! (`tufa_repo::layout::bin_bits_for`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tufa_client::{FetchError, Fetcher, Updater, UpdaterConfig};
use tufa_metadata::{Metadata, Snapshot, SnapshotTree};
use tufa_repo::dev::{ONLINE_KEY, create_development_repository};
use tufa_repo::{Expiries, FsStore, PageChange, Repository, View, key_paths, load_signer};

/// The install: project and wheel size.
const INSTALL: [(&str, u64); 5] = [
    ("requests", 64_928),
    ("urllib3", 126_338),
    ("idna", 70_442),
    ("certifi", 167_321),
    ("charset-normalizer", 49_446),
];
const BASE: &str = "http://index/";
/// `tufa serve` compresses bodies from this size on (smaller ones are sent as they are).
const MIN_COMPRESSED: usize = 1024;
const ZSTD_LEVEL: i32 = 12;

fn projects() -> usize {
    std::env::var("TUFA_BENCH_PROJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

/// A PEP 691 page with one wheel, the shape `tufa serve` writes.
fn page(name: &str, serial: u64) -> Vec<u8> {
    let file = name.replace('-', "_");
    format!(
        "{{\"files\":[{{\"core-metadata\":{{\"sha256\":\"{serial:064x}\"}},\"filename\":\"{file}-1.0.{serial}-py3-none-any.whl\",\"hashes\":{{\"sha256\":\"{serial:064x}\"}},\"provenance\":null,\"requires-python\":\">=3.8\",\"size\":123456,\"upload-time\":\"2026-11-30T01:00:00.000000Z\",\"url\":\"../../files/{name}/{file}-1.0.{serial}-py3-none-any.whl\",\"yanked\":false}}],\"meta\":{{\"_last-serial\":{serial},\"api-version\":\"1.4\"}},\"name\":\"{name}\",\"project-status\":{{\"status\":\"active\"}},\"versions\":[\"1.0.{serial}\"]}}"
    )
    .into_bytes()
}

#[derive(Clone, Copy, Default, Debug)]
struct Count {
    requests: u64,
    metadata: u64,
    metadata_compressed: u64,
    pages: u64,
    pages_compressed: u64,
}

/// Serves the repository directory as `tufa serve` does and counts what it serves.
struct Counting {
    dir: PathBuf,
    count: Mutex<Count>,
    trees: Mutex<BTreeMap<u64, Arc<SnapshotTree>>>,
}

impl Counting {
    fn proof(&self, version: u64, role: &str) -> Option<Vec<u8>> {
        let mut trees = self.trees.lock().unwrap();
        let tree = match trees.entry(version) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let file = self.dir.join(format!("metadata/{version}.snapshot.json"));
                let snapshot = Metadata::<Snapshot>::from_bytes(&std::fs::read(file).ok()?).ok()?;
                entry.insert(Arc::new(SnapshotTree::new(&snapshot.signed.meta)))
            }
        };
        Some(tree.proof(&format!("{role}.json"))?.to_bytes())
    }

    fn take(&self) -> Count {
        std::mem::take(&mut self.count.lock().unwrap())
    }
}

impl Fetcher for Counting {
    fn fetch(&self, url: &str, _max_length: u64) -> Result<Vec<u8>, FetchError> {
        let path = url.strip_prefix(BASE).expect("below the base");
        let proof = path
            .strip_prefix("metadata/")
            .and_then(|name| name.strip_suffix("-snapshot.json"))
            .and_then(|name| name.split_once('.'));
        let body = match proof {
            Some((version, role)) => self.proof(version.parse().unwrap(), role),
            None => std::fs::read(self.dir.join(path)).ok(),
        }
        .ok_or(FetchError::Status(404))?;
        let compressed = if body.len() >= MIN_COMPRESSED {
            zstd::bulk::compress(&body, ZSTD_LEVEL).unwrap().len()
        } else {
            body.len()
        } as u64;
        let mut count = self.count.lock().unwrap();
        count.requests += 1;
        if path.starts_with("metadata/") {
            count.metadata += body.len() as u64;
            count.metadata_compressed += compressed;
        } else {
            count.pages += body.len() as u64;
            count.pages_compressed += compressed;
        }
        Ok(body)
    }
}

struct Client {
    updater: Updater<Arc<Counting>>,
    pages: PathBuf,
}

impl Client {
    fn new(dir: &Path, name: &str, repo: &Path, fetcher: Arc<Counting>, proofs: bool) -> Self {
        let metadata = dir.join(name).join("metadata");
        let root = std::fs::read(repo.join("metadata/1.root.json")).unwrap();
        Updater::<Arc<Counting>>::initialize(&metadata, &root).unwrap();
        let config = UpdaterConfig {
            snapshot_proofs: proofs,
            ..UpdaterConfig::default()
        };
        Client {
            updater: Updater::new(&metadata, &format!("{BASE}metadata/"), fetcher, config),
            pages: dir.join(name).join("pages"),
        }
    }

    /// What the proxy does for one install: a refresh, then each project's page, verified.
    fn install(&self) {
        let refreshed = self.updater.refresh(SystemTime::now()).unwrap();
        for (project, _) in INSTALL {
            let info = refreshed
                .target_info(&format!("simple/{project}/index.json"))
                .unwrap();
            refreshed
                .download_target(&info, &format!("{BASE}targets/"), &self.pages)
                .unwrap();
        }
    }
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn main() {
    let projects = projects();
    let wheels: u64 = INSTALL.iter().map(|(_, size)| size).sum();
    println!(
        "{projects} projects; install: requests and 4 dependencies ({} of wheels)\n",
        kb(wheels)
    );
    println!(
        "| bins | client | classic | compressed | proofs | proofs, compressed | requests (classic / proofs) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for bits in [8, 14] {
        run(bits, projects, wheels);
    }
}

fn run(bits: u32, projects: usize, wheels: u64) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let now = SystemTime::now();
    let store = FsStore::open(&repo).unwrap();
    let keys = dir.path().join("keys");
    create_development_repository(&store, &keys, bits, Expiries::default(), now).unwrap();
    let online = load_signer(&key_paths(&keys.join(ONLINE_KEY)).0, None).unwrap();
    let mut repository =
        Repository::open(store, Arc::new(online), Expiries::default(), now).unwrap();
    let mut serial = 0u64;
    let mut change = |name: &str| {
        serial += 1;
        PageChange {
            project: name.to_string(),
            view: View::Simple,
            page: Some(page(name, serial)),
        }
    };
    let mut changes: Vec<PageChange> = INSTALL.iter().map(|(name, _)| change(name)).collect();
    changes.extend((0..projects).map(|i| change(&format!("project-{i}"))));
    for batch in changes.chunks(20_000) {
        repository.publish(batch, now).unwrap();
    }

    let fetcher = Arc::new(Counting {
        dir: repo.clone(),
        count: Mutex::new(Count::default()),
        trees: Mutex::new(BTreeMap::new()),
    });
    let classic = Client::new(dir.path(), "classic", &repo, fetcher.clone(), false);
    let proofs = Client::new(dir.path(), "proofs", &repo, fetcher.clone(), true);
    let measure = |label: &str| {
        classic.install();
        let c = fetcher.take();
        proofs.install();
        let p = fetcher.take();
        let with_pages = |count: &Count, compressed: bool| {
            if compressed {
                count.metadata_compressed + count.pages_compressed
            } else {
                count.metadata + count.pages
            }
        };
        let cell = |count: &Count, compressed: bool| {
            let total = with_pages(count, compressed);
            if label == "new" {
                format!(
                    "{} (+{:.1}%)",
                    kb(total),
                    100.0 * total as f64 / wheels as f64
                )
            } else {
                kb(total)
            }
        };
        println!(
            "| {} | {label} | {} | {} | {} | {} | {} / {} |",
            1u64 << bits,
            cell(&c, false),
            cell(&c, true),
            cell(&p, false),
            cell(&p, true),
            c.requests,
            p.requests,
        );
    };
    measure("new");
    let mut next = 0usize;
    for uploads in [1usize, 10, 1000] {
        let mut pending = Vec::new();
        for _ in 0..uploads {
            // Spread over the background projects, never the installed ones.
            next = (next * 7919 + 104_729) % projects;
            pending.push(change(&format!("project-{next}")));
        }
        for batch in pending.chunks(100) {
            repository.publish(batch, SystemTime::now()).unwrap();
        }
        measure(&format!("returning, {uploads} upload(s)"));
    }
}
