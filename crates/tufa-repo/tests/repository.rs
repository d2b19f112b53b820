//! The repository side end to end on disk: ceremony, first open, publishing, re-signing, garbage
//! collection, refusal of tampered metadata, and python-tuf's client reading the result.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tufa_metadata::{
    FileSigner, KeyAlgorithm, Metadata, Role, Root, Signer, Snapshot, Targets, Threshold,
    Timestamp, generate_private_key,
};
use tufa_repo::layout::{self, Expiries};
use tufa_repo::*;
use tufa_testkit::PythonEnv;

fn key() -> Arc<FileSigner> {
    let der = generate_private_key(KeyAlgorithm::Ed25519).unwrap();
    Arc::new(FileSigner::from_pkcs8_der(der.as_bytes()).unwrap())
}

struct Fixture {
    dir: tempfile::TempDir,
    root_keys: Vec<Arc<FileSigner>>,
    online: Arc<FileSigner>,
    now: SystemTime,
}

fn spec(keys: &[Arc<FileSigner>], threshold: u32) -> RoleSpec {
    RoleSpec {
        keys: keys.iter().map(|k| k.public_key().clone()).collect(),
        threshold: Threshold::new(threshold).unwrap(),
    }
}

/// A 2-of-3 root, 1-of-1 targets and bins, 16 bins, signed by every offline key.
fn ceremony(expiries: Expiries) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root_keys = vec![key(), key(), key()];
    let (targets_key, bins_key, online) = (key(), key(), key());
    let plan = CeremonyPlan {
        root: spec(&root_keys, 2),
        targets: spec(std::slice::from_ref(&targets_key), 1),
        bins: spec(std::slice::from_ref(&bins_key), 1),
        online: online.public_key().clone(),
        bit_length: 4,
        expiries,
    };
    let now = SystemTime::now();
    let mut roles = plan.offline_roles(now).unwrap();
    for signer in root_keys.iter().take(2).chain([&targets_key, &bins_key]) {
        assert!(!roles.sign(signer.as_ref()).unwrap().is_empty());
    }
    FsStore::open(dir.path())
        .unwrap()
        .write_all(&roles.files().unwrap())
        .unwrap();
    Fixture {
        dir,
        root_keys,
        online,
        now,
    }
}

impl Fixture {
    fn open(&self) -> Result<Repository<FsStore>> {
        self.open_at(self.now)
    }

    fn open_at(&self, now: SystemTime) -> Result<Repository<FsStore>> {
        Repository::open(
            FsStore::open(self.dir.path()).unwrap(),
            self.online.clone(),
            Expiries::default(),
            now,
        )
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }
}

fn page(project: &str, body: &str) -> PageChange {
    PageChange {
        project: project.into(),
        page: Some(format!("{{\"name\":\"{project}\",\"body\":\"{body}\"}}").into_bytes()),
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex_digest(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_metadata<T: Role>(dir: &Path, file: &str) -> Metadata<T> {
    Metadata::from_bytes(&fs::read(dir.join(file)).unwrap()).unwrap()
}

#[test]
fn first_open_creates_every_bin_and_publishing_signs_pages() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    assert_eq!(repo.timestamp().signed.version, 1);
    let root: Metadata<Root> = read_metadata(fixture.dir.path(), "metadata/1.root.json");
    let timestamp: Metadata<Timestamp> =
        read_metadata(fixture.dir.path(), "metadata/timestamp.json");
    root.signed
        .verify_delegate("timestamp", &timestamp)
        .unwrap();
    let snapshot: Metadata<Snapshot> =
        read_metadata(fixture.dir.path(), "metadata/1.snapshot.json");
    root.signed.verify_delegate("snapshot", &snapshot).unwrap();
    // targets, bins and 16 bin roles.
    assert_eq!(snapshot.signed.meta.len(), 18);
    for n in 0..16 {
        assert!(fixture.path(&format!("metadata/1.bin-{n:x}.json")).exists());
    }

    let published = repo
        .publish(&[page("requests", "a"), page("numpy", "b")], fixture.now)
        .unwrap();
    assert_eq!(published.timestamp_version, 2);
    assert_eq!(published.snapshot_version, 2);
    let bin = repo
        .succinct_roles()
        .role_for_target("simple/requests/index.json");
    let bins: Metadata<Targets> = read_metadata(fixture.dir.path(), "metadata/1.bins.json");
    let bin_role: Metadata<Targets> = read_metadata(
        fixture.dir.path(),
        &layout::metadata_file(&bin, repo.bin_role(&bin).unwrap().signed.version),
    );
    bins.signed.verify_delegate(&bin, &bin_role).unwrap();
    let target = &bin_role.signed.targets[&layout::page_target("requests")];
    let stored = fs::read(fixture.path(&layout::target_file(
        &layout::page_target("requests"),
        &target.hashes["sha256"],
    )))
    .unwrap();
    assert_eq!(stored, page("requests", "a").page.unwrap());
    assert_eq!(target.hashes["sha256"].as_str(), sha256(&stored));

    // Reopening finds the same published state.
    drop(repo);
    let repo = fixture.open().unwrap();
    assert_eq!(repo.timestamp().signed.version, 2);
    assert_eq!(
        repo.page("numpy").unwrap().length,
        page("numpy", "b").page.unwrap().len() as u64
    );
}

#[test]
fn online_roles_are_resigned_before_they_expire() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    assert_eq!(
        repo.refresh(fixture.now + Duration::from_secs(3600))
            .unwrap(),
        None
    );
    let later = fixture.now + Duration::from_secs(13 * 3600);
    let published = repo.refresh(later).unwrap().unwrap();
    assert_eq!(published.bins_signed, 16);
    assert!(
        !repo
            .timestamp()
            .signed
            .expires
            .is_expired_at(later + Duration::from_secs(20 * 3600))
    );
    let bin = repo.succinct_roles().role_for_target("x");
    assert_eq!(repo.bin_role(&bin).unwrap().signed.version, 2);
}

#[test]
fn superseded_files_are_removed_after_the_grace_period_but_roots_never() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    repo.publish(&[page("requests", "old")], fixture.now)
        .unwrap();
    let old_page = repo.page("requests").unwrap().hashes["sha256"].clone();
    let old_file = fixture.path(&layout::target_file(
        &layout::page_target("requests"),
        &old_page,
    ));
    repo.publish(&[page("requests", "new")], fixture.now)
        .unwrap();
    let grace = Duration::from_secs(3600);
    assert_eq!(
        repo.collect_garbage(fixture.now + grace / 2, grace)
            .unwrap(),
        0
    );
    assert!(old_file.exists());
    assert!(repo.collect_garbage(fixture.now + grace, grace).unwrap() > 0);
    assert!(!old_file.exists());
    assert!(!fixture.path("metadata/1.snapshot.json").exists());
    assert!(fixture.path("metadata/1.root.json").exists());

    // Unreachable files found at startup get a grace period from the restart.
    fs::write(fixture.path("metadata/99.bin-0.json"), b"stale").unwrap();
    fs::write(
        fixture.path("metadata/2.root.json.tufa-tmp"),
        b"crashed write",
    )
    .unwrap();
    let restart = fixture.now + 2 * grace;
    let mut repo = fixture.open_at(restart).unwrap();
    assert_eq!(repo.collect_garbage(restart, grace).unwrap(), 0);
    assert_eq!(repo.collect_garbage(restart + grace, grace).unwrap(), 1);
    assert!(!fixture.path("metadata/99.bin-0.json").exists());
    assert!(!fixture.path("metadata/2.root.json.tufa-tmp").exists());
}

fn expect_refusal(fixture: &Fixture, needle: &str) {
    match fixture.open() {
        Ok(_) => panic!("opened a repository that should be refused ({needle})"),
        Err(e) => assert!(e.to_string().contains(needle), "{e}"),
    }
}

#[test]
fn tampered_or_under_threshold_metadata_is_refused_naming_the_role() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    repo.publish(&[page("requests", "a")], fixture.now).unwrap();
    let bin = repo
        .succinct_roles()
        .role_for_target("simple/requests/index.json");
    let bin_file = fixture.path(&layout::metadata_file(&bin, 2));
    drop(repo);

    let original = fs::read(&bin_file).unwrap();
    let tampered = String::from_utf8(original.clone())
        .unwrap()
        .replace("\"length\":", "\"length\":1");
    fs::write(&bin_file, tampered).unwrap();
    expect_refusal(
        &fixture,
        &format!("{bin} metadata (metadata/2.{bin}.json) is not trusted"),
    );
    fs::write(&bin_file, &original).unwrap();
    fixture.open().unwrap();

    // Re-signed by a key no root ever trusted: tampering, not an online key rotation, so the
    // server refuses rather than signing everything anew.
    let timestamp_file = fixture.path("metadata/timestamp.json");
    let timestamp_bytes = fs::read(&timestamp_file).unwrap();
    let mut forged: Metadata<Timestamp> =
        read_metadata(fixture.dir.path(), "metadata/timestamp.json");
    forged.clear_signatures();
    forged.sign(key().as_ref()).unwrap();
    fs::write(&timestamp_file, forged.to_bytes().unwrap()).unwrap();
    expect_refusal(
        &fixture,
        "timestamp metadata (metadata/timestamp.json) is not trusted",
    );
    fs::write(&timestamp_file, &timestamp_bytes).unwrap();
    fixture.open().unwrap();

    let snapshot_file = fixture.path("metadata/2.snapshot.json");
    let snapshot = fs::read(&snapshot_file).unwrap();
    fs::write(&snapshot_file, [&snapshot[..], b" "].concat()).unwrap();
    expect_refusal(&fixture, "does not match what timestamp records");
    fs::write(&snapshot_file, &snapshot).unwrap();

    // A root signed by only one of its two required keys.
    let root_file = fixture.path("metadata/1.root.json");
    let mut root: Metadata<Root> = read_metadata(fixture.dir.path(), "metadata/1.root.json");
    root.clear_signatures();
    root.sign(fixture.root_keys[0].as_ref()).unwrap();
    fs::write(&root_file, root.to_bytes().unwrap()).unwrap();
    expect_refusal(
        &fixture,
        "root metadata (metadata/1.root.json) is not trusted",
    );
    match fixture.open() {
        Err(Error::Untrusted {
            source:
                tufa_metadata::Error::ThresholdNotMet {
                    valid: 1,
                    threshold: 2,
                    ..
                },
            ..
        }) => {}
        other => panic!("expected a threshold error, got {:?}", other.err()),
    }
}

#[test]
fn an_online_key_that_root_does_not_trust_is_refused() {
    let fixture = ceremony(Expiries::default());
    let result = Repository::open(
        FsStore::open(fixture.dir.path()).unwrap(),
        key(),
        Expiries::default(),
        fixture.now,
    );
    match result {
        Err(Error::OnlineKeyNotTrusted { role, .. }) => assert_eq!(role.as_str(), "timestamp"),
        other => panic!(
            "expected the online key to be refused, got {:?}",
            other.err()
        ),
    }
}

#[test]
fn python_tuf_client_verifies_published_pages() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root_path = fixture.path("metadata/1.root.json").display().to_string();
    let run = |projects: &[&str]| -> serde_json::Value {
        let mut args = vec![
            fixture.dir.path().to_str().unwrap(),
            root_path.as_str(),
            cache.path().to_str().unwrap(),
        ];
        args.extend_from_slice(projects);
        let output = PythonEnv::shared().run_script(include_str!("python/ngclient.py"), &args);
        serde_json::from_slice(&output.stdout).unwrap()
    };

    let first = page("requests", "1");
    repo.publish(&[first.clone(), page("numpy", "1")], fixture.now)
        .unwrap();
    let second = page("requests", "2");
    repo.publish(std::slice::from_ref(&second), fixture.now)
        .unwrap();
    repo.publish(
        &[PageChange {
            project: "numpy".into(),
            page: None,
        }],
        fixture.now,
    )
    .unwrap();
    let result = run(&["requests", "numpy", "absent"]);
    assert_eq!(
        result,
        serde_json::json!({
            "requests": sha256(&second.page.unwrap()),
            "numpy": null,
            "absent": null,
        })
    );
    assert_ne!(result["requests"], sha256(&first.page.unwrap()).as_str());
}

#[test]
fn a_development_repository_opens_with_its_generated_online_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("tuf")).unwrap();
    let keys = dir.path().join("keys");
    let now = SystemTime::now();
    dev::create_development_repository(&store, &keys, 3, Expiries::default(), now).unwrap();
    let online = load_signer(&key_paths(&keys.join(dev::ONLINE_KEY)).0, None).unwrap();
    let mut repo = Repository::open(store, Arc::new(online), Expiries::default(), now).unwrap();
    assert_eq!(repo.succinct_roles().bin_count(), 8);
    repo.publish(&[page("demo", "x")], now).unwrap();
    assert!(repo.page("demo").is_some());
}
