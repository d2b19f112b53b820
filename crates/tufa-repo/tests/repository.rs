//! The repository side end to end on disk: ceremony, first open, publishing, re-signing, garbage
//! collection, refusal of tampered metadata, and python-tuf's client reading the result.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tufa_metadata::{
    FileSigner, HexDigest, KeyAlgorithm, Metadata, Role, Root, Signer, Snapshot, Targets,
    Threshold, Timestamp, generate_private_key,
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
        view: View::Simple,
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
    let target = &bin_role.signed.targets[&layout::page_target(View::Simple, "requests")];
    let stored = fs::read(fixture.path(&layout::target_file(
        &layout::page_target(View::Simple, "requests"),
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
        repo.page(View::Simple, "numpy").unwrap().length,
        page("numpy", "b").page.unwrap().len() as u64
    );
}

#[test]
fn online_roles_are_resigned_before_they_expire() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    assert!(
        repo.refresh(fixture.now + Duration::from_secs(3600))
            .unwrap()
            .is_none()
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
    let old_page = repo.page(View::Simple, "requests").unwrap().hashes["sha256"].clone();
    let old_file = fixture.path(&layout::target_file(
        &layout::page_target(View::Simple, "requests"),
        &old_page,
    ));
    repo.publish(&[page("requests", "new")], fixture.now)
        .unwrap();
    let grace = Duration::from_secs(3600);
    assert_eq!(
        repo.collect_garbage(fixture.now + grace / 2, grace, usize::MAX)
            .unwrap(),
        0
    );
    assert!(old_file.exists());
    assert!(
        repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
            .unwrap()
            > 0
    );
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
    assert_eq!(repo.collect_garbage(restart, grace, usize::MAX).unwrap(), 0);
    assert_eq!(
        repo.collect_garbage(restart + grace, grace, usize::MAX)
            .unwrap(),
        1
    );
    assert!(!fixture.path("metadata/99.bin-0.json").exists());
    assert!(!fixture.path("metadata/2.root.json.tufa-tmp").exists());
}

/// Files under metadata/ and targets/ that the current timestamp does not reach (roots aside),
/// and their total size.
fn unreachable<S: Store>(fixture: &Fixture, repo: &Repository<S>) -> (Vec<String>, u64) {
    let store = FsStore::beside_publisher(fixture.dir.path());
    let mut reachable = vec![
        "metadata/timestamp.json".to_string(),
        format!(
            "metadata/{}.snapshot.json",
            repo.timestamp().signed.snapshot_meta.version
        ),
    ];
    for (role, meta) in &repo.snapshot().signed.meta {
        reachable.push(format!("metadata/{}.{role}", meta.version));
    }
    for name in repo.succinct_roles().role_names() {
        for (target, file) in &repo.bin_role(&name).unwrap().signed.targets {
            reachable.push(layout::target_file(target, &file.hashes["sha256"]));
        }
    }
    let mut files: Vec<String> = store
        .list("metadata")
        .unwrap()
        .into_iter()
        .chain(store.list("targets").unwrap())
        .filter(|f| !f.ends_with(".root.json") && !reachable.contains(f))
        .collect();
    files.sort();
    let bytes = files
        .iter()
        .map(|f| fs::metadata(fixture.path(f)).unwrap().len())
        .sum();
    (files, bytes)
}

#[test]
fn garbage_is_counted_removed_a_bounded_number_at_a_time_and_never_a_page_published_again() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    let grace = Duration::from_secs(60);
    // A page whose content comes back is published again while its old file waits for removal.
    let first = page("requests", "a");
    for change in [&first, &page("requests", "b"), &first] {
        repo.publish(std::slice::from_ref(change), fixture.now)
            .unwrap();
    }
    for n in 0..5 {
        repo.publish(&[page("numpy", &n.to_string())], fixture.now)
            .unwrap();
    }
    // A publish that fails after its page was stored leaves a page nothing reaches: waiting too.
    store.fail(Fault::WriteBefore, "snapshot");
    assert!(repo.publish(&[page("flask", "1")], fixture.now).is_err());
    store.heal();
    // The next success retires what the failed attempt wrote of its snapshot and bin role, even
    // when it changes another bin role.
    let bin_of = |project: &str| {
        repo.succinct_roles()
            .role_for_target(layout::page_target(View::Simple, project).as_str())
    };
    let other = ["django", "numpy", "pandas", "scipy", "torch"]
        .into_iter()
        .find(|project| bin_of(project) != bin_of("flask"))
        .unwrap();
    repo.publish(&[page(other, "1")], fixture.now).unwrap();
    let flask = fixture.path(&layout::target_file(
        &layout::page_target(View::Simple, "flask"),
        &HexDigest::new(sha256(page("flask", "1").page.as_ref().unwrap())).unwrap(),
    ));
    assert!(flask.exists());

    let (files, bytes) = unreachable(&fixture, &repo);
    assert!(files.len() > 10, "{files:?}");
    assert_eq!(
        repo.awaiting_removal(),
        (
            files.len() + 1,
            bytes + first.page.as_ref().unwrap().len() as u64
        ),
        "every unreachable file is queued with its size, and the page published again too: \
         {files:?}"
    );
    assert_eq!(
        repo.collect_garbage(fixture.now + grace, grace, 3).unwrap(),
        3
    );
    assert_eq!(unreachable(&fixture, &repo).0.len(), files.len() - 3);
    assert_eq!(
        repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
            .unwrap(),
        files.len() - 3
    );
    assert_eq!(repo.awaiting_removal(), (0, 0));
    assert_eq!(unreachable(&fixture, &repo), (vec![], 0));
    assert!(!flask.exists());
    // When the bin role of the failed attempt changes at last, only its superseded version waits.
    repo.publish(&[page("flask", "3")], fixture.now).unwrap();
    let (files, bytes) = unreachable(&fixture, &repo);
    assert_eq!(files.len(), 2, "the bin role and the snapshot: {files:?}");
    assert_eq!(repo.awaiting_removal(), (files.len(), bytes));
    drop(repo);
    assert_complete(
        &fixture,
        &[
            ("requests", &first),
            ("numpy", &page("numpy", "4")),
            ("flask", &page("flask", "3")),
        ],
    );
}

#[test]
fn a_repository_opened_again_queues_exactly_the_files_nothing_reaches() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    for n in 0..3 {
        repo.publish(
            &[page("requests", &n.to_string()), page("numpy", "1")],
            fixture.now,
        )
        .unwrap();
    }
    store.fail(Fault::WriteBefore, "snapshot");
    assert!(repo.publish(&[page("flask", "1")], fixture.now).is_err());
    store.heal();
    drop(repo);

    // What the last process queued is gone with it: the new one finds it in the store.
    let repo = fixture.open().unwrap();
    let (files, _) = unreachable(&fixture, &repo);
    for superseded in ["targets/simple/requests/", "targets/simple/flask/"] {
        assert!(
            files.iter().any(|file| file.starts_with(superseded)),
            "{superseded}: {files:?}"
        );
    }
    assert_eq!(repo.awaiting_removal().0, files.len(), "{files:?}");
    let mut repo = repo;
    let grace = Duration::from_secs(60);
    repo.collect_garbage(fixture.now + grace * 2, grace, usize::MAX)
        .unwrap();
    assert_eq!(unreachable(&fixture, &repo), (vec![], 0));
    drop(repo);
    assert_complete(
        &fixture,
        &[
            ("requests", &page("requests", "2")),
            ("numpy", &page("numpy", "1")),
        ],
    );
}

#[test]
fn a_page_published_again_by_a_retry_and_superseded_later_gets_a_whole_grace_period() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    let grace = Duration::from_secs(60);
    repo.publish(&[page("requests", "1")], fixture.now).unwrap();
    // The page of serial 2 is stored, then the publish fails: the page waits for removal.
    store.fail(Fault::WriteBefore, "snapshot");
    assert!(repo.publish(&[page("requests", "2")], fixture.now).is_err());
    store.heal();
    // The retry publishes the same page half a grace period later; serial 3 supersedes it then.
    let later = fixture.now + grace / 2;
    repo.publish(&[page("requests", "2")], later).unwrap();
    repo.publish(&[page("requests", "3")], later).unwrap();
    let second = fixture.path(&layout::target_file(
        &layout::page_target(View::Simple, "requests"),
        &HexDigest::new(sha256(page("requests", "2").page.as_ref().unwrap())).unwrap(),
    ));
    repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
        .unwrap();
    assert!(
        second.exists(),
        "removed a grace period after the failed attempt, only half a grace period after it \
         left the published state"
    );
    repo.collect_garbage(later + grace, grace, usize::MAX)
        .unwrap();
    assert!(!second.exists());
    assert_eq!(repo.awaiting_removal(), (0, 0));
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
            view: View::Simple,
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

/// A development repository of `2^bits` bins in `dir`, with its generated online key.
fn development_repository(dir: &Path, bits: u32) -> (FsStore, Arc<dyn Signer>) {
    let store = FsStore::open(dir.join("tuf")).unwrap();
    let keys = dir.join("keys");
    dev::create_development_repository(&store, &keys, bits, Expiries::default(), SystemTime::now())
        .unwrap();
    let online = load_signer(&key_paths(&keys.join(dev::ONLINE_KEY)).0, None).unwrap();
    (store, Arc::new(online))
}

#[test]
fn a_development_repository_opens_with_its_generated_online_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, online) = development_repository(dir.path(), 3);
    let now = SystemTime::now();
    let mut repo = Repository::open(store, online, Expiries::default(), now).unwrap();
    assert_eq!(repo.succinct_roles().bin_count(), 8);
    repo.publish(&[page("demo", "x")], now).unwrap();
    assert!(repo.page(View::Simple, "demo").is_some());
}

/// A commit that changes more bin roles than it signs at once writes every one of them: the
/// reopened repository reads and verifies each role the snapshot names, and finds every page.
#[test]
fn a_commit_of_more_bin_roles_than_are_signed_at_once_publishes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let (store, online) = development_repository(dir.path(), 11);
    let store = Recording {
        inner: store,
        asked: Arc::default(),
        failing_flush: Arc::default(),
    };
    let now = SystemTime::now();
    let open = || Repository::open(store.clone(), online.clone(), Expiries::default(), now);
    let changes: Vec<PageChange> = (0..8_000)
        .map(|n| page(&format!("project-{n}"), "a"))
        .collect();
    let mut repo = open().unwrap();
    store.take();
    let published = repo.publish(&changes, now).unwrap();
    assert!(published.bins_signed > 1024, "{}", published.bins_signed);
    // The bin roles go out in parts, each waiting for the flush before the timestamp.
    let asked = store.take();
    let bin_parts = asked
        .iter()
        .filter(|a| matches!(a, Asked::Unflushed(_, Flush::Needed)) && a.writes(".bin-"))
        .count();
    assert_eq!(bin_parts, 2, "{}", summary(&asked));
    assert_durable_before_the_timestamp(&asked);
    let reopened = open().unwrap();
    for change in &changes {
        assert!(reopened.page(View::Simple, &change.project).is_some());
    }
}

/// A store on disk whose writes and removals fail on demand: before the write, or after it took
/// effect (a sync or rename error reported late), for files whose path contains a pattern. It
/// counts the sizes asked of it: in a bucket each is a round trip.
#[derive(Clone)]
struct FaultyStore {
    inner: FsStore,
    fault: Arc<std::sync::Mutex<Option<(Fault, &'static str)>>>,
    sizes_asked: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    WriteBefore,
    WriteAfter,
    Remove,
}

impl Fixture {
    /// The repository opened on a store whose faults the test sets, signed by `signer`.
    fn open_faulty(&self, signer: Arc<dyn Signer>) -> (FaultyStore, Repository<FaultyStore>) {
        let store = FaultyStore {
            inner: FsStore::open(self.dir.path()).unwrap(),
            fault: Arc::default(),
            sizes_asked: Arc::default(),
        };
        let repo = Repository::open(store.clone(), signer, Expiries::default(), self.now).unwrap();
        (store, repo)
    }
}

impl FaultyStore {
    fn fail(&self, fault: Fault, pattern: &'static str) {
        *self.fault.lock().unwrap() = Some((fault, pattern));
    }

    fn heal(&self) {
        *self.fault.lock().unwrap() = None;
    }

    fn failing(&self, fault: Fault, path: &str) -> bool {
        matches!(*self.fault.lock().unwrap(), Some((f, p)) if f == fault && path.contains(p))
    }
}

fn injected(path: &str) -> Error {
    Error::Io {
        action: "writing (injected failure)",
        path: path.into(),
        source: std::io::Error::other("injected"),
    }
}

impl Store for FaultyStore {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        if let Some((path, _)) = files
            .iter()
            .find(|(path, _)| self.failing(Fault::WriteBefore, path))
        {
            return Err(injected(path));
        }
        self.inner.write_all(files)?;
        match files
            .iter()
            .find(|(path, _)| self.failing(Fault::WriteAfter, path))
        {
            Some((path, _)) => Err(injected(path)),
            None => Ok(()),
        }
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }

    fn remove(&self, path: &str) -> Result<()> {
        if self.failing(Fault::Remove, path) {
            return Err(injected(path));
        }
        self.inner.remove(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        self.inner.modified(path)
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        self.sizes_asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.size(path)
    }
}

/// The online key, failing its `n`th signature from now on when armed.
struct FaultySigner {
    inner: Arc<FileSigner>,
    fail_at: std::sync::atomic::AtomicI64,
}

impl FaultySigner {
    fn fail_signature(&self, n: i64) {
        self.fail_at.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Signer for FaultySigner {
    fn public_key(&self) -> &tufa_metadata::Key {
        self.inner.public_key()
    }

    fn key_id(&self) -> &tufa_metadata::KeyId {
        self.inner.key_id()
    }

    fn sign(&self, message: &[u8]) -> tufa_metadata::Result<tufa_metadata::Signature> {
        if self
            .fail_at
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            return Err(tufa_metadata::Error::Signing(
                "injected token failure".into(),
            ));
        }
        self.inner.sign(message)
    }
}

/// Every file the current timestamp reaches is on disk and verifies: opening the repository
/// afresh checks signatures, thresholds and hashes of all of them.
fn assert_complete(fixture: &Fixture, pages: &[(&str, &PageChange)]) -> Repository<FsStore> {
    let repo = fixture
        .open()
        .unwrap_or_else(|e| panic!("the published repository no longer opens: {e}"));
    let snapshot: Metadata<Snapshot> = read_metadata(
        fixture.dir.path(),
        &format!(
            "metadata/{}.snapshot.json",
            repo.timestamp().signed.snapshot_meta.version
        ),
    );
    assert_eq!(snapshot.signed.meta.len(), 18, "snapshot lists every role");
    for (project, change) in pages {
        let target = repo.page(View::Simple, project).expect("page published");
        assert_eq!(
            target.hashes["sha256"].as_str(),
            sha256(change.page.as_ref().unwrap())
        );
        assert!(
            fixture
                .path(&layout::target_file(
                    &layout::page_target(View::Simple, project),
                    &target.hashes["sha256"]
                ))
                .exists()
        );
    }
    repo
}

/// Pages and versioned metadata never change under their names, so they are written in place,
/// without a temporary file: what a crash in the middle of such a write leaves (the final name,
/// part of the bytes) must never be published.
#[test]
fn a_file_a_crash_left_incomplete_under_its_final_name_is_never_published() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    repo.publish(&[page("requests", "a")], fixture.now).unwrap();
    let change = page("numpy", "b");
    let bytes = change.page.clone().unwrap();
    let target = layout::page_target(View::Simple, "numpy");
    let file = layout::target_file(&target, &HexDigest::new(sha256(&bytes)).unwrap());
    let bin = repo.succinct_roles().role_for_target(target.as_str());
    let version = repo.bin_role(&bin).unwrap().signed.version;
    let next_bin = layout::metadata_file(&bin, version + 1);
    drop(repo);
    // The crash: the page and the next version of its bin role, each cut short.
    fs::create_dir_all(fixture.path(&file).parent().unwrap()).unwrap();
    fs::write(fixture.path(&file), &bytes[..bytes.len() / 2]).unwrap();
    fs::write(fixture.path(&next_bin), b"{\"signatures\":[").unwrap();

    let mut repo = fixture.open().unwrap();
    repo.publish(std::slice::from_ref(&change), fixture.now)
        .unwrap();
    assert_eq!(fs::read(fixture.path(&file)).unwrap(), bytes);
    // The version cut short is never signed over: a cache may hold it.
    assert_eq!(repo.bin_role(&bin).unwrap().signed.version, version + 2);
    drop(repo);
    assert_complete(
        &fixture,
        &[("numpy", &change), ("requests", &page("requests", "a"))],
    );
}

#[test]
fn an_import_signs_each_bin_role_once_and_one_dropped_before_its_commit_changes_nothing() {
    let fixture = ceremony(Expiries::default());
    let mut repo = fixture.open().unwrap();
    let before = repo.timestamp().signed.version;
    let waiting = repo.awaiting_removal().0;
    let parts: Vec<Vec<PageChange>> = (0..3)
        .map(|part| {
            (0..20)
                .map(|n| page(&format!("p{part}-{n}"), "a"))
                .collect()
        })
        .collect();
    let mut import = repo.import(fixture.now).unwrap();
    import.stage(&parts[0]).unwrap();
    drop(import);
    assert_eq!(repo.timestamp().signed.version, before);
    assert!(repo.page(View::Simple, "p0-0").is_none());
    assert!(
        repo.succinct_roles().role_names().all(|name| repo
            .bin_role(&name)
            .unwrap()
            .signed
            .targets
            .is_empty())
    );
    // The page files it wrote are reachable from nothing.
    assert_eq!(repo.awaiting_removal().0, waiting + 20);

    let mut import = repo.import(fixture.now).unwrap();
    for part in &parts {
        import.stage(part).unwrap();
    }
    // A project changed again by a later part: the later page is the one published.
    let changed = page("p0-0", "b");
    import.stage(std::slice::from_ref(&changed)).unwrap();
    let published = import.commit(fixture.now).unwrap();
    assert_eq!(published.timestamp_version, before + 1);
    for name in repo.succinct_roles().role_names() {
        let role = repo.bin_role(&name).unwrap();
        assert!(role.signed.version <= 2, "{name} signed once");
    }
    assert_eq!(
        repo.page(View::Simple, "p0-0").unwrap().hashes["sha256"].as_str(),
        sha256(changed.page.as_ref().unwrap())
    );
    drop(repo);
    let names: Vec<String> = (0..3)
        .flat_map(|part| (0..20).map(move |n| format!("p{part}-{n}")))
        .collect();
    let changes: Vec<PageChange> = names
        .iter()
        .map(|name| {
            if name == "p0-0" {
                changed.clone()
            } else {
                page(name, "a")
            }
        })
        .collect();
    let pages: Vec<(&str, &PageChange)> = names.iter().map(String::as_str).zip(&changes).collect();
    let repo = assert_complete(&fixture, &pages);
    assert_eq!(repo.timestamp().signed.version, before + 1);
}

/// What a [`Recording`] store was asked to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Asked {
    /// Files written to be made durable by a flush, and whether they wait for it.
    Unflushed(Vec<String>, Flush),
    Flush,
    /// A durable write of these files.
    Durable(Vec<String>),
}

/// The data directory, recording every write and flush, with a flush that fails when armed.
#[derive(Clone)]
struct Recording {
    inner: FsStore,
    asked: Arc<std::sync::Mutex<Vec<Asked>>>,
    failing_flush: Arc<std::sync::atomic::AtomicBool>,
}

impl Asked {
    /// Whether it writes a file whose path contains `part`.
    fn writes(&self, part: &str) -> bool {
        match self {
            Asked::Unflushed(files, _) | Asked::Durable(files) => {
                files.iter().any(|file| file.contains(part))
            }
            Asked::Flush => false,
        }
    }

    fn pages_waiting(&self) -> Option<(usize, Flush)> {
        match self {
            Asked::Unflushed(files, flush) if files.iter().all(|f| f.starts_with("targets/")) => {
                Some((files.len(), *flush))
            }
            _ => None,
        }
    }
}

/// What was asked, one line each with a count of files instead of their paths.
fn summary(asked: &[Asked]) -> String {
    let line = |asked: &Asked| match asked {
        Asked::Unflushed(files, flush) => format!("{} files unflushed: {flush:?}", files.len()),
        Asked::Flush => "flush".to_string(),
        Asked::Durable(files) => format!("{} files durable", files.len()),
    };
    asked.iter().map(line).collect::<Vec<_>>().join("\n")
}

impl Recording {
    fn record(&self, asked: Asked) {
        self.asked.lock().unwrap().push(asked);
    }

    fn take(&self) -> Vec<Asked> {
        std::mem::take(&mut self.asked.lock().unwrap())
    }
}

impl Store for Recording {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        self.record(Asked::Durable(
            files.iter().map(|(p, _)| p.clone()).collect(),
        ));
        self.inner.write_all(files)
    }

    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        self.record(Asked::Durable(
            files.iter().map(|(p, _)| p.to_string()).collect(),
        ));
        self.inner.write_immutable(files)
    }

    fn write_immutable_unflushed(&self, files: &[(&str, &[u8])]) -> Result<Flush> {
        let flush = self.inner.write_immutable_unflushed(files)?;
        let paths = files.iter().map(|(p, _)| p.to_string()).collect();
        self.record(Asked::Unflushed(paths, flush));
        Ok(flush)
    }

    fn flush(&self) -> Result<()> {
        self.record(Asked::Flush);
        if self.failing_flush.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(injected("the whole file system"));
        }
        self.inner.flush()
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.inner.remove(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        self.inner.modified(path)
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        self.inner.size(path)
    }
}

/// Every write that waited for a flush was followed by one before the timestamp was written.
fn assert_durable_before_the_timestamp(asked: &[Asked]) {
    let timestamp = asked
        .iter()
        .position(|a| a.writes("metadata/timestamp.json"))
        .expect("a timestamp written");
    let last_flush = asked[..timestamp].iter().rposition(|a| *a == Asked::Flush);
    for (n, write) in asked[..timestamp].iter().enumerate() {
        if let Asked::Unflushed(_, Flush::Needed) = write {
            assert!(
                last_flush.is_some_and(|flush| flush > n),
                "{}",
                summary(asked)
            );
        }
    }
}

/// An import's large parts are written without waiting on the disk, and the whole import is
/// made durable once, before the first file that refers to its pages; a small part is durable
/// at once and needs no flush; a flush that fails publishes nothing, and the retry does.
#[test]
fn an_imports_pages_are_made_durable_once_before_anything_that_refers_to_them() {
    let fixture = ceremony(Expiries::default());
    let store = Recording {
        inner: FsStore::open(fixture.dir.path()).unwrap(),
        asked: Arc::default(),
        failing_flush: Arc::default(),
    };
    let mut repo = Repository::open(
        store.clone(),
        fixture.online.clone(),
        Expiries::default(),
        fixture.now,
    )
    .unwrap();
    let part = |name: &str, pages: usize| -> Vec<PageChange> {
        (0..pages)
            .map(|n| page(&format!("{name}-{n}"), "a"))
            .collect()
    };
    let (large, small) = (part("large", 100), part("small", 10));
    let before = repo.timestamp().signed.version;

    // A small import alone: durable as it is written, no flush.
    store.take();
    repo.publish(&small, fixture.now).unwrap();
    let asked = store.take();
    assert_eq!(asked[0].pages_waiting(), Some((10, Flush::NotNeeded)));
    assert!(!asked.contains(&Asked::Flush), "{}", summary(&asked));

    // The flush fails: nothing is signed or written after it, and the repository is as before.
    store
        .failing_flush
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut import = repo.import(fixture.now).unwrap();
    import.stage(&large).unwrap();
    assert!(import.commit(fixture.now).is_err());
    let asked = store.take();
    assert_eq!(asked.len(), 2, "{}", summary(&asked));
    assert_eq!(asked[0].pages_waiting(), Some((100, Flush::Needed)));
    assert_eq!(asked[1], Asked::Flush);
    assert_eq!(repo.timestamp().signed.version, before + 1);
    assert!(repo.page(View::Simple, "large-0").is_none());

    store
        .failing_flush
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut import = repo.import(fixture.now).unwrap();
    import.stage(&large).unwrap();
    import.stage(&part("later", 5)).unwrap();
    import.commit(fixture.now).unwrap();
    let asked = store.take();
    let flush = asked
        .iter()
        .position(|a| *a == Asked::Flush)
        .expect("a flush");
    assert_eq!(asked.iter().filter(|a| **a == Asked::Flush).count(), 1);
    assert_eq!(asked[0].pages_waiting(), Some((100, Flush::Needed)));
    assert_eq!(asked[1].pages_waiting(), Some((5, Flush::NotNeeded)));
    let first_metadata = asked
        .iter()
        .position(|a| a.writes("metadata/"))
        .expect("metadata written");
    assert!(flush < first_metadata, "{}", summary(&asked));
    assert_durable_before_the_timestamp(&asked);
    drop(repo);
    let changes: Vec<PageChange> = small.iter().chain(&large).cloned().collect();
    let pages: Vec<(&str, &PageChange)> = changes
        .iter()
        .map(|change| (change.project.as_str(), change))
        .collect();
    assert_complete(&fixture, &pages);
}

#[test]
fn a_signer_or_store_failing_at_any_step_leaves_a_complete_repository_and_the_retry_publishes() {
    // (what fails, which signature or path) for each step of a publish of one page:
    // one bin role, then snapshot, then timestamp are signed and written in that order.
    enum Step {
        Signature(i64),
        Store(Fault, &'static str),
    }
    let steps = [
        ("signing the bin role", Step::Signature(1)),
        ("signing snapshot", Step::Signature(2)),
        ("signing timestamp", Step::Signature(3)),
        (
            "writing the page",
            Step::Store(Fault::WriteBefore, "targets/simple/"),
        ),
        (
            "writing the bin role",
            Step::Store(Fault::WriteBefore, ".bin-"),
        ),
        (
            "writing snapshot",
            Step::Store(Fault::WriteBefore, "snapshot.json"),
        ),
        (
            "writing timestamp",
            Step::Store(Fault::WriteBefore, "timestamp.json"),
        ),
        (
            "timestamp written, failure reported late",
            Step::Store(Fault::WriteAfter, "timestamp.json"),
        ),
        (
            "snapshot written, failure reported late",
            Step::Store(Fault::WriteAfter, "snapshot.json"),
        ),
    ];
    for (step, fault) in steps {
        let fixture = ceremony(Expiries::default());
        let signer = Arc::new(FaultySigner {
            inner: fixture.online.clone(),
            fail_at: std::sync::atomic::AtomicI64::new(0),
        });
        let (store, mut repo) = fixture.open_faulty(signer.clone());
        let first = page("requests", "1");
        repo.publish(std::slice::from_ref(&first), fixture.now)
            .unwrap();
        let before = repo.timestamp().signed.version;

        let second = page("requests", "2");
        let numpy = page("numpy", "1");
        match fault {
            Step::Signature(n) => signer.fail_signature(n),
            Step::Store(fault, pattern) => store.fail(fault, pattern),
        }
        let outcome = repo.publish(&[second.clone(), numpy.clone()], fixture.now);
        let late = matches!(fault, Step::Store(Fault::WriteAfter, _));
        match &outcome {
            Err(_) => {}
            Ok(published) if !published.rejected.is_empty() => {}
            Ok(_) => panic!("{step}: the injected failure went unnoticed"),
        }
        // In memory nothing moved: the same state as before the attempt is what it reports.
        assert_eq!(repo.timestamp().signed.version, before, "{step}");
        assert_eq!(
            repo.page(View::Simple, "requests").unwrap().hashes["sha256"].as_str(),
            sha256(first.page.as_ref().unwrap()),
            "{step}"
        );
        // On disk the repository is complete, before (or, when the write took effect, after)
        // the failed publish, and a restarted server opens it.
        let reopened = fixture
            .open()
            .unwrap_or_else(|e| panic!("{step}: the server could not restart: {e}"));
        let served = reopened.timestamp().signed.version;
        assert!(
            served == before || (late && served == before + 1),
            "{step}: served timestamp {served}"
        );
        drop(reopened);

        // The retry publishes a complete snapshot, with versions above the failed attempt.
        match fault {
            Step::Signature(_) => signer.fail_signature(0),
            Step::Store(..) => store.heal(),
        }
        let published = repo
            .publish(&[second.clone(), numpy.clone()], fixture.now)
            .unwrap();
        assert!(published.rejected.is_empty(), "{step}");
        assert!(published.timestamp_version > served, "{step}");
        assert_complete(&fixture, &[("requests", &second), ("numpy", &numpy)]);

        // Garbage collection after the grace period removes only what nothing reaches.
        let grace = Duration::from_secs(60);
        repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
            .unwrap();
        assert_complete(&fixture, &[("requests", &second), ("numpy", &numpy)]);
        assert!(
            !fixture
                .path(&layout::target_file(
                    &layout::page_target(View::Simple, "requests"),
                    &HexDigest::new(sha256(first.page.as_ref().unwrap())).unwrap()
                ))
                .exists(),
            "{step}: the superseded page is collected"
        );
    }
}

#[test]
fn a_page_the_store_refuses_is_rejected_alone_and_a_failed_removal_is_retried() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    // A name no file system stores (over NAME_MAX) next to ordinary ones.
    let long = "x".repeat(300);
    let published = repo
        .publish(
            &[page("requests", "1"), page(&long, "1"), page("numpy", "1")],
            fixture.now,
        )
        .unwrap();
    assert_eq!(published.rejected.len(), 1);
    assert_eq!(published.rejected[0].project, long);
    assert!(
        published.rejected[0]
            .error
            .to_string()
            .contains("File name too long"),
        "{}",
        published.rejected[0].error
    );
    assert!(repo.page(View::Simple, &long).is_none());
    let requests = page("requests", "1");
    let numpy = page("numpy", "1");
    drop(repo);
    let mut repo = assert_complete(&fixture, &[("requests", &requests), ("numpy", &numpy)]);

    // A removal that fails keeps the file queued; the next collection removes it.
    repo.publish(&[page("requests", "2")], fixture.now).unwrap();
    let mut repo = {
        drop(repo);
        Repository::open(
            store.clone(),
            fixture.online.clone(),
            Expiries::default(),
            fixture.now,
        )
        .unwrap()
    };
    let old = fixture.path(&layout::target_file(
        &layout::page_target(View::Simple, "requests"),
        &HexDigest::new(sha256(requests.page.as_ref().unwrap())).unwrap(),
    ));
    assert!(old.exists());
    let grace = Duration::from_secs(60);
    store.fail(Fault::Remove, "targets/simple/requests/");
    assert!(
        repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
            .is_err()
    );
    assert!(old.exists());
    store.heal();
    assert!(
        repo.collect_garbage(fixture.now + grace, grace, usize::MAX)
            .unwrap()
            > 0
    );
    assert!(!old.exists());
    assert_complete(&fixture, &[("numpy", &numpy)]);
}

#[test]
fn the_clock_behind_the_newest_signing_pauses_signing_and_a_clock_that_ran_ahead_is_pulled_back() {
    let fixture = ceremony(Expiries::default());
    let day = Duration::from_secs(86_400);
    // Signed while the clock ran 400 days ahead: expiries far beyond their lifetime.
    let ahead = fixture.now + 400 * day;
    let mut repo = fixture.open_at(ahead).unwrap();
    repo.publish(&[page("requests", "1")], ahead).unwrap();
    drop(repo);

    // Back on the right clock: the file times show the last signing was now, so the served
    // expiries are too far ahead and are re-signed within their lifetime.
    let now = SystemTime::now();
    let mut repo = fixture.open_at(now).unwrap();
    assert!(matches!(
        repo.clock_skew(now),
        Some(ClockSkew::ExpiryTooFar { .. })
    ));
    repo.refresh(now).unwrap().expect("re-signed");
    assert_eq!(repo.clock_skew(now), None);
    for (role, _, expires) in repo.role_summary().into_iter().skip(3) {
        assert!(
            expires.to_system_time() <= now + day,
            "{role} expires {expires}, beyond its lifetime"
        );
    }
    drop(repo);

    // A clock two days behind the newest signing: nothing is signed, the error names it.
    let behind = SystemTime::now() - 2 * day;
    let mut repo = fixture.open_at(behind).unwrap();
    assert!(matches!(
        repo.clock_skew(behind),
        Some(ClockSkew::Behind { .. })
    ));
    let before = repo.timestamp().signed.version;
    match repo.publish(&[page("numpy", "1")], behind) {
        Err(Error::ClockBehind { by_seconds, .. }) => assert!(by_seconds >= 2 * 86_400 - 60),
        other => panic!("signed with the clock behind: {other:?}"),
    }
    assert!(matches!(
        repo.refresh(behind + day),
        Err(Error::ClockBehind { .. })
    ));
    drop(repo);
    let repo = fixture.open().unwrap();
    assert_eq!(repo.timestamp().signed.version, before);

    // The operator who knows the clock is right now says so once.
    let mut repo = Repository::open(
        FsStore::open(fixture.dir.path()).unwrap(),
        fixture.online.clone(),
        Policy {
            trust_clock: true,
            ..Policy::from(Expiries::default())
        },
        behind,
    )
    .unwrap();
    repo.publish(&[page("numpy", "1")], behind).unwrap();
}

/// A project's views go out together or not at all: a cooldown page the store refuses keeps the
/// project's main page out too (never a cooldown view newer or older than its project), while
/// every other project's views are published.
#[test]
fn a_project_whose_cooldown_page_is_refused_is_left_out_with_all_its_views() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    assert!(View::ALL.iter().all(|&view| repo.delegates(view)));
    let view_page = |project: &str, view: View| PageChange {
        view,
        ..page(project, view.as_str())
    };
    store.fail(Fault::WriteBefore, "targets/cooldown/requests/");
    let changes: Vec<PageChange> = ["requests", "numpy"]
        .iter()
        .flat_map(|project| View::ALL.map(|view| view_page(project, view)))
        .collect();
    let published = repo.publish(&changes, fixture.now).unwrap();
    assert_eq!(published.rejected.len(), 1);
    assert_eq!(published.rejected[0].project, "requests");
    for view in View::ALL {
        assert!(repo.page(view, "requests").is_none(), "{view}");
        assert!(repo.page(view, "numpy").is_some(), "{view}");
    }
    store.heal();
    repo.publish(&changes[..2], fixture.now).unwrap();
    // Pages exactly as published (a cooldown page an upload left unchanged) are not signed again.
    let before = repo.timestamp().signed.version;
    let again = repo.publish(&changes, fixture.now).unwrap();
    assert_eq!((again.bins_signed, again.timestamp_version), (0, before));
    let changed = vec![page("numpy", "2"), view_page("numpy", View::Cooldown)];
    assert_eq!(repo.publish(&changed, fixture.now).unwrap().bins_signed, 1);
    for change in &changes[..2] {
        let listed = repo.page(change.view, "requests").unwrap();
        assert_eq!(
            listed.hashes["sha256"].as_str(),
            sha256(change.page.as_ref().unwrap())
        );
    }
}

#[test]
fn superseded_bin_roles_and_pages_are_retired_with_their_lengths_without_asking_the_store() {
    let fixture = ceremony(Expiries::default());
    let (store, mut repo) = fixture.open_faulty(fixture.online.clone());
    let asked = store.sizes_asked;
    let first: Vec<PageChange> = (0..64).map(|n| page(&format!("p{n}"), "a")).collect();
    assert_eq!(repo.publish(&first, fixture.now).unwrap().bins_signed, 16);
    let (waiting, bytes) = repo.awaiting_removal();
    let asked_before = asked.load(std::sync::atomic::Ordering::Relaxed);

    let second: Vec<PageChange> = (0..64).map(|n| page(&format!("p{n}"), "b")).collect();
    let published = repo.publish(&second, fixture.now).unwrap();
    assert_eq!(published.snapshot_version, 3);
    // The snapshot's length is the only one not known: 16 bin roles and 64 pages are not asked.
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::Relaxed) - asked_before,
        1
    );
    let superseded: Vec<String> = (0..16)
        .map(|n| format!("metadata/2.bin-{n:x}.json"))
        .chain(["metadata/2.snapshot.json".to_string()])
        .chain(first.iter().map(|change| {
            let page = change.page.as_ref().unwrap();
            format!(
                "targets/simple/{}/{}.index.json",
                change.project,
                sha256(page)
            )
        }))
        .collect();
    let on_disk: u64 = superseded
        .iter()
        .map(|file| fs::metadata(fixture.path(file)).unwrap().len())
        .sum();
    assert_eq!(
        repo.awaiting_removal(),
        (waiting + superseded.len(), bytes + on_disk)
    );
}
