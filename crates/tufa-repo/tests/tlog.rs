//! The repository's transparency log (`tufa_repo::tlog`): every timestamp signed gets a leaf and
//! a proof before `timestamp.json` is written, the log resumes from the store (past its
//! checkpoint when the tiles of an append were written and its checkpoint was not), a timestamp
//! that failed after it was logged never has its version reused, a proof or checkpoint a crash
//! lost is rebuilt at the next start, and the log key must be the one root declares. On the S3 test backend (`TUFA_TEST_BACKEND=s3`) the log also runs in a bucket.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tufa_metadata::{Metadata, Signer, Timestamp};
use tufa_repo::layout::Expiries;
use tufa_repo::tlog::{CHECKPOINT_FILE, proof_file};
use tufa_repo::*;
use tufa_tlog::{
    Hash, MemoryTree, SignedCheckpoint, TimestampEntry, VerifierKey, leaf_hash, verify_consistency,
    verify_inclusion,
};

fn page(project: &str, content: &str) -> PageChange {
    PageChange {
        project: project.into(),
        view: View::Simple,
        page: Some(format!("{{\"name\":\"{project}\",\"v\":\"{content}\"}}").into_bytes()),
    }
}

struct Logged {
    keys: tempfile::TempDir,
    online: Arc<dyn Signer>,
    settings: LogSettings,
}

impl Logged {
    fn create(store: &impl Store) -> Logged {
        let keys = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        dev::create_development_repository_with_log(
            store,
            keys.path(),
            3,
            Expiries::default(),
            now,
        )
        .unwrap();
        let online: Arc<dyn Signer> =
            Arc::new(load_signer(&key_paths(&keys.path().join(dev::ONLINE_KEY)).0, None).unwrap());
        let settings = LogSettings::new(LogKey::load(&keys.path().join(dev::LOG_KEY)).unwrap());
        Logged {
            keys,
            online,
            settings,
        }
    }

    fn open<S: Store>(&self, store: S) -> Repository<S> {
        Repository::open_with_log(
            store,
            self.online.clone(),
            Expiries::default(),
            Some(&self.settings),
            SystemTime::now(),
            Unreachable::FindAtOpen,
        )
        .unwrap()
    }

    fn key(&self) -> VerifierKey {
        self.settings.key.verifier().clone()
    }
}

fn hashes(value: &serde_json::Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// Checks the proof of the served timestamp against it and the checkpoint before; returns the
/// entry and the checkpoint (size, root).
fn check_proof(
    store: &impl Store,
    key: &VerifierKey,
    previous: Option<(u64, Hash)>,
) -> (Vec<u8>, (u64, Hash)) {
    let bytes = store.read("metadata/timestamp.json").unwrap().unwrap();
    let timestamp: Metadata<Timestamp> = Metadata::from_bytes(&bytes).unwrap();
    let version = timestamp.signed.version;
    let proof: serde_json::Value =
        serde_json::from_slice(&store.read(&proof_file(version)).unwrap().unwrap()).unwrap();
    let checkpoint = SignedCheckpoint::open(
        proof["checkpoint"].as_str().unwrap().as_bytes(),
        std::slice::from_ref(key),
    )
    .unwrap();
    let served = SignedCheckpoint::open(
        &store.read(CHECKPOINT_FILE).unwrap().unwrap(),
        std::slice::from_ref(key),
    )
    .unwrap();
    assert_eq!(
        served.checkpoint, checkpoint.checkpoint,
        "the latest checkpoint is served"
    );
    let entry = STANDARD.decode(proof["entry"].as_str().unwrap()).unwrap();
    let parsed = TimestampEntry::parse(&entry).unwrap();
    assert_eq!(parsed.version, version);
    assert_eq!(parsed.sha256, TimestampEntry::of(&bytes, 0, 0, None).sha256);
    assert_eq!(
        parsed.snapshot_version,
        timestamp.signed.snapshot_meta.version
    );
    let index = proof["index"].as_u64().unwrap();
    let (size, root) = (checkpoint.checkpoint.size, checkpoint.checkpoint.root);
    assert_eq!(index + 1, size);
    verify_inclusion(
        &leaf_hash(&entry),
        index,
        size,
        &hashes(&proof["inclusion"]),
        &root,
    )
    .unwrap();
    let previous_size = proof["previous_size"].as_u64().unwrap();
    assert_eq!(previous_size, previous.map_or(0, |(s, _)| s));
    if let Some((old_size, old_root)) = previous {
        verify_consistency(
            old_size,
            size,
            &hashes(&proof["consistency"]),
            &old_root,
            &root,
        )
        .unwrap();
    }
    (entry, (size, root))
}

/// Publishes `count` times, reopening the repository every `reopen_every` publishes, checking
/// each proof; returns every entry logged.
fn publish_and_check<S: Store + Clone>(
    logged: &Logged,
    store: &S,
    count: usize,
    reopen_every: usize,
) -> Vec<Vec<u8>> {
    let key = logged.key();
    let mut repo = logged.open(store.clone());
    // The first open signed the online roles: already logged.
    let (first, mut previous) = check_proof(store, &key, None);
    let mut entries = vec![first];
    for n in 0..count {
        if n > 0 && n % reopen_every == 0 {
            repo = logged.open(store.clone());
        }
        repo.publish(&[page("demo", &n.to_string())], SystemTime::now())
            .unwrap();
        let (entry, checkpoint) = check_proof(store, &key, Some(previous));
        entries.push(entry);
        previous = checkpoint;
    }
    // The whole log, rebuilt from the entries, has the served root.
    let mut tree = MemoryTree::new();
    for entry in &entries {
        tree.push(entry);
    }
    assert_eq!((tree.size(), tree.root()), previous);
    assert_eq!(repo.log_status().unwrap().size, previous.0);
    entries
}

#[test]
fn every_timestamp_is_logged_with_a_proof_across_reopens_and_a_full_tile() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let logged = Logged::create(&store);
    // 1 + 260 leaves: the first level-0 tile and entry bundle fill up.
    let entries = publish_and_check(&logged, &store, 260, 100);
    assert_eq!(entries.len(), 261);
    assert!(store.read("log/tile/0/000").unwrap().is_some());
    assert!(store.read("log/tile/entries/000").unwrap().is_some());
    assert!(store.read("log/tile/0/001.p/5").unwrap().is_some());
    assert!(store.read("log/tile/1/000.p/1").unwrap().is_some());
    // The partial tiles and bundles the full ones replaced, and the proofs of timestamps no
    // longer served, go once their grace period passed; the current proof stays.
    let mut repo = logged.open(store.clone());
    repo.publish(&[page("demo", "last")], SystemTime::now())
        .unwrap();
    let later = SystemTime::now() + std::time::Duration::from_secs(7200);
    repo.collect_garbage(later, std::time::Duration::from_secs(3600), usize::MAX)
        .unwrap();
    assert!(store.list("log/tile/0/000.p").unwrap().is_empty());
    assert!(store.list("log/tile/entries/000.p").unwrap().is_empty());
    assert!(!store.list("log/tile/0/001.p").unwrap().is_empty());
    let proofs = store.list("log/proof").unwrap();
    let version = repo.timestamp().signed.version;
    assert!(proofs.contains(&proof_file(version)), "{proofs:?}");
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    let versions: Vec<u64> = entries
        .iter()
        .map(|e| TimestampEntry::parse(e).unwrap().version)
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    drop(logged.keys);
}

#[test]
fn the_log_runs_in_a_bucket() {
    if !tufa_testkit::backend_includes("s3") {
        return;
    }
    let (bucket, env) = tufa_testkit::SeaweedFs::shared().fresh_bucket();
    let settings = S3Settings::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let client = S3Client::new(&bucket, &settings).unwrap();
    let store = Arc::new(S3Store::new(
        Arc::new(client),
        S3Url::parse(&format!("s3://{bucket}/tuf")).unwrap(),
    ));
    let logged = Logged::create(&store);
    publish_and_check(&logged, &store, 6, 3);
}

/// A store that fails writes of paths containing a pattern, once set.
#[derive(Clone)]
struct Failing {
    inner: FsStore,
    pattern: Arc<Mutex<Option<&'static str>>>,
}

impl Failing {
    fn check(&self, path: &str) -> Result<()> {
        match *self.pattern.lock().unwrap() {
            Some(pattern) if path.contains(pattern) => Err(Error::Io {
                action: "writing",
                path: path.into(),
                source: std::io::Error::other("the disk is full"),
            }),
            _ => Ok(()),
        }
    }
}

impl Store for Failing {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        files.iter().try_for_each(|(path, _)| self.check(path))?;
        self.inner.write_all(files)
    }
    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        files.iter().try_for_each(|(path, _)| self.check(path))?;
        self.inner.write_immutable(files)
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

/// A logged repository on a [`Failing`] store in `dir`, after one publish: what the checkpoint
/// (size and root) and the served timestamp were then.
struct FailingLog {
    store: Failing,
    logged: Logged,
    key: VerifierKey,
    repo: Repository<Failing>,
    before: (u64, Hash),
    served: Option<Vec<u8>>,
}

fn failing_log(dir: &std::path::Path) -> FailingLog {
    let store = Failing {
        inner: FsStore::open(dir).unwrap(),
        pattern: Arc::default(),
    };
    let logged = Logged::create(&store);
    let key = logged.key();
    let mut repo = logged.open(store.clone());
    let (_, first) = check_proof(&store, &key, None);
    repo.publish(&[page("demo", "one")], SystemTime::now())
        .unwrap();
    let (_, before) = check_proof(&store, &key, Some(first));
    let served = store.read("metadata/timestamp.json").unwrap();
    FailingLog {
        store,
        logged,
        key,
        repo,
        before,
        served,
    }
}

#[test]
fn a_timestamp_that_failed_after_it_was_logged_never_has_its_version_signed_again() {
    let dir = tempfile::tempdir().unwrap();
    let FailingLog {
        store,
        logged,
        key,
        mut repo,
        before,
        served,
    } = failing_log(dir.path());

    // The log takes the entry, the timestamp write fails: a logged timestamp nobody is served.
    *store.pattern.lock().unwrap() = Some("timestamp.json");
    repo.publish(&[page("demo", "two")], SystemTime::now())
        .unwrap_err();
    assert_eq!(store.read("metadata/timestamp.json").unwrap(), served);
    let checkpoint = SignedCheckpoint::open(
        &store.read(CHECKPOINT_FILE).unwrap().unwrap(),
        std::slice::from_ref(&key),
    )
    .unwrap();
    assert_eq!(checkpoint.checkpoint.size, before.0 + 1);

    // The next timestamp, from this repository or one reopened on the store, has a higher
    // version than the logged one: two entries never share a version.
    *store.pattern.lock().unwrap() = None;
    let mut reopened = logged.open(store.clone());
    reopened
        .publish(&[page("demo", "three")], SystemTime::now())
        .unwrap();
    let (_, after) = check_proof(
        &store,
        &key,
        Some((before.0 + 1, checkpoint.checkpoint.root)),
    );
    assert_eq!(after.0, before.0 + 2);
    let mut versions = Vec::new();
    for bundle in store.list("log/tile/entries").unwrap() {
        let tile = tufa_tlog::Tile::parse_path(bundle.strip_prefix("log/").unwrap()).unwrap();
        let tufa_tlog::TilePath::Entries(tile) = tile else {
            panic!("{bundle}")
        };
        if tile.width as u64 == after.0 {
            let bytes = store.read(&bundle).unwrap().unwrap();
            for entry in tufa_tlog::tiles::decode_bundle(&tile, &bytes).unwrap() {
                versions.push(TimestampEntry::parse(&entry).unwrap().version);
            }
        }
    }
    assert_eq!(versions.len() as u64, after.0);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

/// The versions of the entries in the bundle of a log of `size` (below 256) leaves.
fn logged_versions(store: &impl Store, size: u64) -> Vec<u64> {
    let tile = tufa_tlog::Tile::in_tree(0, 0, size).unwrap();
    let bytes = store
        .read(&format!("log/{}", tile.entries_path()))
        .unwrap()
        .unwrap();
    tufa_tlog::tiles::decode_bundle(&tile, &bytes)
        .unwrap()
        .iter()
        .map(|entry| TimestampEntry::parse(entry).unwrap().version)
        .collect()
}

#[test]
fn an_entry_whose_checkpoint_was_never_written_stays_in_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let FailingLog {
        store,
        logged,
        key,
        mut repo,
        before,
        served,
    } = failing_log(dir.path());
    let checkpoint = store.read(CHECKPOINT_FILE).unwrap();

    // The tiles are written (a witness may cosign that size), the checkpoint is not: as after a
    // crash between the two.
    *store.pattern.lock().unwrap() = Some("log/checkpoint");
    repo.publish(&[page("demo", "two")], SystemTime::now())
        .unwrap_err();
    assert_eq!(store.read("metadata/timestamp.json").unwrap(), served);
    assert_eq!(store.read(CHECKPOINT_FILE).unwrap(), checkpoint);
    assert_eq!(
        logged_versions(&store, before.0 + 1).len() as u64,
        before.0 + 1
    );
    drop(repo);

    // Reopened, the log resumes past its checkpoint: the next entry goes after the unserved
    // one instead of in its place, and its checkpoint is consistent with the one served.
    *store.pattern.lock().unwrap() = None;
    let mut reopened = logged.open(store.clone());
    assert_eq!(reopened.log_status().unwrap().size, before.0 + 1);
    reopened
        .publish(&[page("demo", "three")], SystemTime::now())
        .unwrap();
    let (_, after) = check_proof(&store, &key, Some(before));
    assert_eq!(after.0, before.0 + 2);
    let versions = logged_versions(&store, after.0);
    assert_eq!(versions.len() as u64, after.0);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

/// What a crash can leave of the proof and checkpoint, which are written unsynced before
/// `timestamp.json`: the next start rebuilds the log from its entry bundles and publishes a new
/// timestamp with a whole proof, in the same log (no entry lost or logged over).
#[test]
fn a_proof_and_checkpoint_a_crash_lost_are_rebuilt_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let logged = Logged::create(&store);
    let key = logged.key();
    let mut entries = publish_and_check(&logged, &store, 3, 100);
    let served = |store: &FsStore| {
        let bytes = store.read("metadata/timestamp.json").unwrap().unwrap();
        Metadata::<Timestamp>::from_bytes(&bytes)
            .unwrap()
            .signed
            .version
    };

    // The proof gone, the checkpoint whole: the new timestamp's proof extends that checkpoint.
    let before = previous_of(&entries);
    let lost = served(&store);
    store.remove(&proof_file(lost)).unwrap();
    drop(logged.open(store.clone()));
    assert!(served(&store) > lost);
    let (entry, after) = check_proof(&store, &key, Some(before));
    entries.push(entry);
    assert_eq!(after, previous_of(&entries));

    // The proof cut short and the checkpoint left empty or cut short: rebuilt from the bundles
    // alone, the log keeps every entry, and the next timestamp is proven in it.
    for checkpoint in [Vec::new(), b"tufa-development-log/".to_vec()] {
        let damaged = checkpoint.len();
        let lost = served(&store);
        let proof = store.read(&proof_file(lost)).unwrap().unwrap();
        store
            .write_all(&[
                (proof_file(lost), proof[..proof.len() / 2].to_vec()),
                (CHECKPOINT_FILE.into(), checkpoint),
            ])
            .unwrap();
        let mut repo = logged.open(store.clone());
        assert!(served(&store) > lost);
        let (entry, after) = check_proof(&store, &key, None);
        entries.push(entry);
        assert_eq!(after, previous_of(&entries), "a log rebuilt differently");
        let content = format!("after a checkpoint of {damaged} bytes");
        repo.publish(&[page("demo", &content)], SystemTime::now())
            .unwrap();
        let (entry, next) = check_proof(&store, &key, Some(after));
        entries.push(entry);
        assert_eq!(next, previous_of(&entries));
    }
}

/// The size and root of the log of `entries`.
fn previous_of(entries: &[Vec<u8>]) -> (u64, Hash) {
    let mut tree = MemoryTree::new();
    for entry in entries {
        tree.push(entry);
    }
    (tree.size(), tree.root())
}

#[test]
fn the_log_key_must_be_the_one_root_declares() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let logged = Logged::create(&store);
    let open = |settings: Option<&LogSettings>| {
        Repository::open_with_log(
            store.clone(),
            logged.online.clone(),
            Expiries::default(),
            settings,
            SystemTime::now(),
            Unreachable::FindAtOpen,
        )
        .map(drop)
        .map_err(|e| e.to_string())
    };
    let missing = open(None).unwrap_err();
    assert!(missing.contains("root declares the log"), "{missing}");
    let other_keys = tempfile::tempdir().unwrap();
    let other_path = other_keys.path().join("other.key");
    LogKey::generate(&other_path, "other.example/log").unwrap();
    let other = LogSettings::new(LogKey::load(&other_path).unwrap());
    let wrong = open(Some(&other)).unwrap_err();
    assert!(wrong.contains("is not the one root declares"), "{wrong}");
    open(Some(&logged.settings)).unwrap();

    // A repository whose root declares no log refuses a log key.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = FsStore::open(plain_dir.path()).unwrap();
    let plain_keys = tempfile::tempdir().unwrap();
    dev::create_development_repository(
        &plain,
        plain_keys.path(),
        3,
        Expiries::default(),
        SystemTime::now(),
    )
    .unwrap();
    let online: Arc<dyn Signer> = Arc::new(
        load_signer(&key_paths(&plain_keys.path().join(dev::ONLINE_KEY)).0, None).unwrap(),
    );
    let refused = Repository::open_with_log(
        plain.clone(),
        online.clone(),
        Expiries::default(),
        Some(&logged.settings),
        SystemTime::now(),
        Unreachable::FindAtOpen,
    )
    .map(drop)
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("root declares no transparency log"),
        "{refused}"
    );
    let repo = Repository::open(
        plain.clone(),
        online,
        Expiries::default(),
        SystemTime::now(),
    )
    .unwrap();
    assert!(repo.log_status().is_none());
    assert!(plain.list("log").unwrap().is_empty());
}

/// A copy of a log that kept growing while it was copied (`tufa backup`): dropping what
/// `written_after` names leaves exactly the log of the checkpoint read first, which a
/// repository resumes and goes on appending to, with no file it needs counted as superseded.
#[test]
fn a_copy_of_a_growing_log_is_cut_back_to_the_checkpoint_read_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let logged = Logged::create(&store);
    let mut repo = logged.open(store.clone());
    for n in 0..3 {
        repo.publish(&[page("demo", &n.to_string())], SystemTime::now())
            .unwrap();
    }
    let first_read = store.read(CHECKPOINT_FILE).unwrap().unwrap();
    let needed: Vec<String> = store.list("log/tile").unwrap();
    for n in 3..6 {
        repo.publish(&[page("demo", &n.to_string())], SystemTime::now())
            .unwrap();
    }
    let later = tufa_repo::tlog::written_after(&store, &first_read).unwrap();
    assert!(
        later.contains(&"log/tile/0/000.p/7".to_string()),
        "{later:?}"
    );
    assert!(
        later.contains(&"log/tile/entries/000.p/7".to_string()),
        "{later:?}"
    );
    assert!(later.contains(&proof_file(repo.timestamp().signed.version)));
    assert!(later.iter().all(|file| !needed.contains(file)), "{later:?}");
    drop(repo);

    for file in &later {
        store.remove(file).unwrap();
    }
    store
        .write_all(&[(CHECKPOINT_FILE.to_string(), first_read.clone())])
        .unwrap();
    let superseded = tufa_repo::tlog::superseded_files(&store.list("log").unwrap());
    for file in ["log/tile/0/000.p/4", "log/tile/entries/000.p/4"] {
        assert!(
            !superseded.contains(file),
            "{file} is needed: {superseded:?}"
        );
    }
    // The timestamp left in place is later than the checkpoint, and its proof went with what
    // came after: opening publishes a timestamp proven in the log the checkpoint names.
    let mut resumed = logged.open(store.clone());
    let restored = SignedCheckpoint::open(&first_read, &[logged.key()]).unwrap();
    let (_, reopened) = check_proof(
        &store,
        &logged.key(),
        Some((restored.checkpoint.size, restored.checkpoint.root)),
    );
    assert_eq!(reopened.0, 5);
    resumed
        .publish(&[page("demo", "after the restore")], SystemTime::now())
        .unwrap();
    let (_, (size, _)) = check_proof(&store, &logged.key(), Some(reopened));
    assert_eq!(size, 6);
}
