//! TAP 16 snapshot proofs, client side: against a repository published by tufa-repo, a refresh
//! fetches the timestamp and, per role it uses, that role's proof and the role, never the
//! snapshot; and it refuses a proof under another root, a bin version that went back, and a
//! proof that does not match its bin, each by name.
//!
//! The repository is served from its directory by [`StoreFetcher`], which answers proof requests
//! as `tufa serve` does: from `V.snapshot.json` through the same `SnapshotTree`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tufa_client::{Error, FetchError, Fetcher, Updater, UpdaterConfig};
use tufa_metadata::{
    Expires, MetaFile, Metadata, RoleName, Signer, Snapshot, SnapshotTree, Timestamp,
};
use tufa_repo::dev::{ONLINE_KEY, create_development_repository};
use tufa_repo::layout::Expiries;
use tufa_repo::{FsStore, PageChange, Repository, View, key_paths, load_signer};

const BASE: &str = "http://repo/";

/// Serves the repository directory, records every request, and serves `replaced` files in
/// place of the real ones (what an attacker with the online key, or a bad mirror, serves).
#[derive(Debug)]
struct StoreFetcher {
    dir: PathBuf,
    requests: Mutex<Vec<String>>,
    replaced: Mutex<HashMap<String, Vec<u8>>>,
    /// Off: answers proof requests with 404, as a repository served as plain files does.
    proofs: AtomicBool,
}

fn proof_of(dir: &Path, snapshot_version: u64, role: &str) -> Option<Vec<u8>> {
    let bytes =
        std::fs::read(dir.join(format!("metadata/{snapshot_version}.snapshot.json"))).ok()?;
    let snapshot = Metadata::<Snapshot>::from_bytes(&bytes).ok()?;
    let tree = SnapshotTree::new(&snapshot.signed.meta);
    Some(tree.proof(&format!("{role}.json"))?.to_bytes())
}

impl Fetcher for StoreFetcher {
    fn fetch(&self, url: &str, _max_length: u64) -> Result<Vec<u8>, FetchError> {
        let path = url.strip_prefix(BASE).expect("every URL is below the base");
        self.requests.lock().unwrap().push(path.to_string());
        if let Some(bytes) = self.replaced.lock().unwrap().get(path) {
            return Ok(bytes.clone());
        }
        let proof = path
            .strip_prefix("metadata/")
            .and_then(|name| name.strip_suffix("-snapshot.json"))
            .and_then(|name| name.split_once('.'));
        let found = match proof {
            Some(_) if !self.proofs.load(Ordering::Relaxed) => None,
            Some((version, role)) => proof_of(&self.dir, version.parse().unwrap(), role),
            None => std::fs::read(self.dir.join(path)).ok(),
        };
        found.ok_or(FetchError::Status(404))
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    repository: Repository<FsStore>,
    online: Arc<dyn Signer>,
    fetcher: Arc<StoreFetcher>,
    client_dir: PathBuf,
}

fn page(project: &str, n: u32) -> PageChange {
    PageChange {
        project: project.to_string(),
        view: View::Simple,
        page: Some(format!("{{\"files\":[],\"n\":{n}}}").into_bytes()),
    }
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let store = FsStore::open(dir.path().join("repo")).unwrap();
    let keys = dir.path().join("keys");
    create_development_repository(&store, &keys, 4, Expiries::default(), now).unwrap();
    let online: Arc<dyn Signer> =
        Arc::new(load_signer(&key_paths(&keys.join(ONLINE_KEY)).0, None).unwrap());
    let mut repository = Repository::open(store, online.clone(), Expiries::default(), now).unwrap();
    let changes: Vec<PageChange> = (0..20).map(|i| page(&format!("project-{i}"), 0)).collect();
    repository.publish(&changes, now).unwrap();
    let client_dir = dir.path().join("client");
    let root = std::fs::read(dir.path().join("repo/metadata/1.root.json")).unwrap();
    Updater::<Arc<StoreFetcher>>::initialize(&client_dir, &root).unwrap();
    let fetcher = Arc::new(StoreFetcher {
        dir: dir.path().join("repo"),
        requests: Mutex::new(Vec::new()),
        replaced: Mutex::new(HashMap::new()),
        proofs: AtomicBool::new(true),
    });
    Setup {
        _dir: dir,
        repository,
        online,
        fetcher,
        client_dir,
    }
}

impl Setup {
    fn updater(&self) -> Updater<Arc<StoreFetcher>> {
        Updater::new(
            &self.client_dir,
            &format!("{BASE}metadata/"),
            self.fetcher.clone(),
            UpdaterConfig::default(),
        )
    }

    fn look_up(&self, project: &str) -> Result<(), Error> {
        let refreshed = self.updater().refresh(SystemTime::now())?;
        refreshed.target_info(&format!("simple/{project}/index.json"))?;
        Ok(())
    }

    fn bin_of(&self, project: &str) -> RoleName {
        self.repository
            .succinct_roles()
            .role_for_target(&format!("simple/{project}/index.json"))
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.fetcher.requests.lock().unwrap())
    }

    fn replace(&self, path: String, bytes: Vec<u8>) {
        self.fetcher.replaced.lock().unwrap().insert(path, bytes);
    }

    fn bin_version(&self, bin: &RoleName) -> u64 {
        self.repository.bin_role(bin).unwrap().signed.version
    }

    fn snapshot_version(&self) -> u64 {
        self.repository.timestamp().signed.snapshot_meta.version
    }

    fn republish(&mut self, project: &str, n: u32) {
        self.repository
            .publish(&[page(project, n)], SystemTime::now())
            .unwrap();
    }
}

#[test]
fn a_refresh_fetches_the_proofs_and_roles_it_uses_and_never_the_snapshot() {
    let mut setup = setup();
    let bin = setup.bin_of("project-3");
    let bin_version = setup.bin_version(&bin);
    let version = setup.snapshot_version();
    setup.look_up("project-3").unwrap();
    assert_eq!(
        setup.take_requests(),
        [
            "metadata/2.root.json".to_string(),
            "metadata/timestamp.json".into(),
            format!("metadata/{version}.targets-snapshot.json"),
            "metadata/1.targets.json".into(),
            format!("metadata/{version}.bins-snapshot.json"),
            "metadata/1.bins.json".into(),
            format!("metadata/{version}.{bin}-snapshot.json"),
            format!("metadata/{bin_version}.{bin}.json"),
        ]
    );

    // Nothing changed: the cached proofs lead to the same root, so only the timestamp.
    setup.look_up("project-3").unwrap();
    assert_eq!(
        setup.take_requests(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );

    // An upload elsewhere: every proof changes, the roles the client holds do not.
    let other = (0..20)
        .map(|i| format!("project-{i}"))
        .find(|p| setup.bin_of(p) != bin)
        .unwrap();
    setup.republish(&other, 1);
    let version = setup.snapshot_version();
    setup.look_up("project-3").unwrap();
    assert_eq!(
        setup.take_requests(),
        [
            "metadata/2.root.json".to_string(),
            "metadata/timestamp.json".into(),
            format!("metadata/{version}.targets-snapshot.json"),
            format!("metadata/{version}.bins-snapshot.json"),
            format!("metadata/{version}.{bin}-snapshot.json"),
        ]
    );
}

#[test]
fn the_cache_alone_stands_in_with_the_proofs_it_holds() {
    let setup = setup();
    setup.look_up("project-3").unwrap();
    setup.take_requests();
    let offline = setup.updater().load_offline(SystemTime::now()).unwrap();
    offline.target_info("simple/project-3/index.json").unwrap();
    assert_eq!(setup.take_requests(), Vec::<String>::new());

    // A cache a refresh without proofs left (the repository served none) holds no proof: the
    // snapshot it cached stands in.
    let setup = self::setup();
    setup.fetcher.proofs.store(false, Ordering::Relaxed);
    setup.look_up("project-3").unwrap();
    setup.take_requests();
    let offline = setup.updater().load_offline(SystemTime::now()).unwrap();
    offline.target_info("simple/project-3/index.json").unwrap();
    assert_eq!(setup.take_requests(), Vec::<String>::new());
}

#[test]
fn a_proof_under_another_root_is_refused() {
    let mut setup = setup();
    let bin = setup.bin_of("project-3");
    let old = proof_of(&setup.fetcher.dir, setup.snapshot_version(), bin.as_str()).unwrap();
    setup.republish("project-3", 1);
    let version = setup.snapshot_version();
    setup.replace(format!("metadata/{version}.{bin}-snapshot.json"), old);
    let error = setup.look_up("project-3").unwrap_err();
    assert!(
        matches!(&error, Error::SnapshotProofOtherRoot { role, .. } if *role == bin.as_str()),
        "{error}"
    );
}

#[test]
fn a_proof_that_does_not_match_its_bin_is_refused() {
    let mut setup = setup();
    let bin = setup.bin_of("project-3");
    let old = setup.bin_version(&bin);
    let old_bin = std::fs::read(setup.fetcher.dir.join(format!("metadata/{old}.{bin}.json")));
    setup.republish("project-3", 1);
    let new = setup.bin_version(&bin);
    // The current proof with the bin's previous version, served under the current one's name.
    setup.replace(format!("metadata/{new}.{bin}.json"), old_bin.unwrap());
    let error = setup.look_up("project-3").unwrap_err();
    assert!(
        matches!(
            &error,
            Error::SnapshotProofMismatch { role, proven, received }
                if *role == bin.as_str() && (*proven, *received) == (new, old)
        ),
        "{error}"
    );

    // A proof of another role's entry, served as this role's proof.
    let setup = self::setup();
    let version = setup.snapshot_version();
    let other = proof_of(&setup.fetcher.dir, version, "bins").unwrap();
    setup.replace(format!("metadata/{version}.targets-snapshot.json"), other);
    let error = setup.look_up("project-3").unwrap_err();
    assert!(
        matches!(&error, Error::SnapshotProofForOtherRole { role, proven } if role == "targets" && proven == "bins.json"),
        "{error}"
    );
}

#[test]
fn a_bin_version_that_went_back_is_refused_across_refreshes() {
    let mut setup = setup();
    let bin = setup.bin_of("project-3");
    let first = setup.snapshot_version();
    let old = setup.bin_version(&bin);
    setup.republish("project-3", 1);
    let new = setup.bin_version(&bin);
    setup.look_up("project-3").unwrap();

    // An attacker holding the online key signs a new timestamp over the first tree, in which
    // the bin has its older version, and serves that tree's proofs under a newer snapshot
    // version (the timestamp's own rollback checks pass).
    let bytes = std::fs::read(
        setup
            .fetcher
            .dir
            .join(format!("metadata/{first}.snapshot.json")),
    )
    .unwrap();
    let old_meta = Metadata::<Snapshot>::from_bytes(&bytes)
        .unwrap()
        .signed
        .meta;
    let tree = SnapshotTree::new(&old_meta);
    let forged_version = setup.snapshot_version() + 1;
    let mut timestamp = Timestamp::new(
        setup.repository.timestamp().signed.version + 1,
        Expires::after(SystemTime::now(), Duration::from_secs(3600)),
        MetaFile::new(forged_version),
    );
    timestamp.set_merkle_root(&tree.root());
    let mut timestamp = Metadata::new(timestamp);
    timestamp.sign(setup.online.as_ref()).unwrap();
    setup.replace(
        "metadata/timestamp.json".into(),
        timestamp.to_bytes().unwrap(),
    );
    for role in ["targets", "bins", bin.as_str()] {
        let proof = tree.proof(&format!("{role}.json")).unwrap().to_bytes();
        setup.replace(
            format!("metadata/{forged_version}.{role}-snapshot.json"),
            proof,
        );
    }
    let error = setup.look_up("project-3").unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RollbackAttack { role, trusted, received }
                if *role == bin.as_str() && (*trusted, *received) == (new, old)
        ),
        "{error}"
    );
}

#[test]
fn a_repository_serving_no_proofs_is_read_through_the_whole_snapshot() {
    let setup = setup();
    setup.fetcher.proofs.store(false, Ordering::Relaxed);
    setup.look_up("project-3").unwrap();
    let requests = setup.take_requests();
    let version = setup.snapshot_version();
    assert!(requests.contains(&format!("metadata/{version}.targets-snapshot.json")));
    assert!(requests.contains(&format!("metadata/{version}.snapshot.json")));

    // Turned off, the client asks for no proof at all.
    let setup = self::setup();
    let config = UpdaterConfig {
        snapshot_proofs: false,
        ..UpdaterConfig::default()
    };
    let updater = Updater::new(
        &setup.client_dir,
        &format!("{BASE}metadata/"),
        setup.fetcher.clone(),
        config,
    );
    updater.refresh(SystemTime::now()).unwrap();
    let requests = setup.take_requests();
    assert!(requests.contains(&format!("metadata/{version}.snapshot.json")));
    assert!(!requests.iter().any(|r| r.ends_with("-snapshot.json")));
}
