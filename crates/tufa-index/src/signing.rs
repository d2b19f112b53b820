//! PEP 458 signing inside the index: every change in the journal becomes signed TUF metadata.
//!
//! The journal is the queue. An upload or yank appends to it in the same transaction as the
//! change, so an acknowledged change is never lost; the publisher (one per data directory, held
//! by a file lock) drains it in batches: the changed projects' JSON pages (the main page and, with
//! the cooldown view on, the cooldown page, see [`crate::cooldown`]) become targets, then
//! the bin roles listing them, then snapshot, then timestamp, each durable before the next
//! ([`tufa_repo::Repository::publish`]). Only then does the signed serial advance; a crash in
//! between publishes the same pages again after the restart, which is harmless.
//!
//! Several replicas may share the database and the repository: the one holding the publisher
//! lease ([`crate::lease`]) signs, the others serve and take uploads. On gaining the lease a
//! replica loads the repository from the store as the last timestamp written left it, and signs
//! from the signed serial the database records. A batch its predecessor died in the middle of
//! (pages, bin roles or snapshot written, no timestamp) is unreachable: its pages are published
//! again from the journal, and its metadata versions are skipped, never overwritten, since
//! consistent-snapshot files are immutable to every cache that may have fetched them.
//!
//! Fencing: every write and removal the repository makes goes through [`Fenced`], which refuses
//! it unless this replica still holds the lease under the epoch the repository was loaded with;
//! the signed serial is recorded in the same statement that checks the lease. This covers a
//! publisher that lost the lease (a pause, a database it cannot reach) and comes back: it writes
//! no timestamp, removes nothing, and records nothing. It does not cover a single write that
//! passed the check and then stalls longer than the margin between the holder's own deadline and
//! the earliest takeover (two fifths of the TTL): object stores have no compare-and-set across
//! objects. Such a write can land a file of a batch no timestamp refers to (harmless: the next
//! holder skips versions it finds on disk, but not one that lands after it looked), or an older
//! timestamp over the new holder's, which clients refuse as a rollback until the next timestamp
//! replaces it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Notify};
use tufa_metadata::Signer;
use tufa_pkcs11::Pkcs11Signer;
use tufa_repo::dev::{LOG_KEY, ONLINE_KEY, create_development_repository_with_log};
use tufa_repo::layout::Expiries;
use tufa_repo::{
    ClockSkew, GARBAGE_PER_ROUND, LogKey, LogSettings, PageChange, Policy, Published, Repository,
    Store, View, WitnessSettings, load_signer,
};
use tufa_vault::VaultSigner;

use crate::db::Database;
use crate::error::{Error, Result, io};
use crate::lease::Lease;
use crate::name::ProjectName;
use crate::storage::Storage;
use crate::usage::{self, DiskUsage};

/// Where the online key is.
#[derive(Clone, PartialEq, Eq)]
pub enum OnlineKey {
    /// A PKCS#8 PEM file, decrypted with [`SigningConfig::online_key_passphrase`].
    File(PathBuf),
    /// A key on a PKCS#11 token, named by a `pkcs11:` URI (see `tufa_pkcs11`); the PIN comes
    /// from `TUFA_PKCS11_PIN` or the URI.
    Pkcs11(String),
    /// A key in a Vault/OpenBao transit engine, `vault:<key>[?mount=..&version=..]` (see
    /// `tufa_vault`); the address and credentials come from `VAULT_*`/`BAO_*`.
    Vault(String),
}

impl OnlineKey {
    /// What holds the key, as `/status` and `/metrics` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            OnlineKey::File(_) => "file",
            OnlineKey::Pkcs11(_) => "pkcs11",
            OnlineKey::Vault(_) => "vault",
        }
    }
}

/// `pkcs11:...` names a key on a token, `vault:...` one in Vault; anything else is a key file's
/// path.
impl From<PathBuf> for OnlineKey {
    fn from(value: PathBuf) -> Self {
        match value.to_str() {
            Some(uri) if uri.starts_with("pkcs11:") => OnlineKey::Pkcs11(uri.to_string()),
            Some(spec) if spec.starts_with(tufa_vault::VaultSpec::SCHEME) => {
                OnlineKey::Vault(spec.to_string())
            }
            _ => OnlineKey::File(value),
        }
    }
}

/// Leaves out the URI's query, which may hold the PIN.
impl std::fmt::Debug for OnlineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnlineKey::File(path) => f.debug_tuple("File").field(path).finish(),
            OnlineKey::Pkcs11(uri) => f
                .debug_tuple("Pkcs11")
                .field(&uri.split('?').next().unwrap_or_default())
                .finish(),
            OnlineKey::Vault(spec) => f.debug_tuple("Vault").field(spec).finish(),
        }
    }
}

/// How the index signs.
#[derive(Clone, Debug)]
pub struct SigningConfig {
    /// The online key that signs timestamp, snapshot and the bin roles. `None` on a data
    /// directory without TUF metadata creates a development repository with local keys.
    pub online_key: Option<OnlineKey>,
    pub online_key_passphrase: Option<String>,
    /// `2^bit_length` bin roles in a development repository (a ceremony fixes it otherwise).
    pub bit_length: u32,
    pub expiries: Expiries,
    /// How long files that left the published state stay for clients mid-update.
    pub grace: Duration,
    /// How far the clock may fall behind the newest signed metadata before signing pauses.
    pub clock_tolerance: Duration,
    /// Trust the clock over the newest signed metadata at start (after a deliberate correction
    /// of a clock that ran ahead).
    pub trust_clock: bool,
    /// How long the publisher lease lasts without renewal: another replica takes over about this
    /// long after the publisher dies.
    pub lease_ttl: Duration,
    /// The transparency log's key file (see [`tufa_repo::tlog`]); a development repository
    /// uses the one in its keys directory.
    pub log_key: Option<PathBuf>,
    /// Witness URLs each new checkpoint is submitted to (C2SP tlog-witness).
    pub witnesses: Vec<String>,
    /// The witnesses' verifier keys: when given, only cosignatures by them are kept.
    pub witness_keys: Vec<tufa_tlog::VerifierKey>,
    /// How long a publish waits for cosignatures before it goes on without them.
    pub witness_wait: Duration,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            online_key: None,
            online_key_passphrase: None,
            bit_length: 8,
            expiries: Expiries::default(),
            grace: Duration::from_secs(3600),
            clock_tolerance: tufa_repo::DEFAULT_CLOCK_TOLERANCE,
            trust_clock: false,
            lease_ttl: crate::lease::DEFAULT_TTL,
            log_key: None,
            witnesses: Vec::new(),
            witness_keys: Vec::new(),
            witness_wait: DEFAULT_WITNESS_WAIT,
        }
    }
}

/// Long enough for a witness nearby to answer, short enough that a publish hardly waits for
/// one that is down.
pub const DEFAULT_WITNESS_WAIT: Duration = Duration::from_millis(250);

/// The trusted root a development repository hands to clients, in the data directory.
pub const TRUSTED_ROOT_FILE: &str = "trusted-root.json";
/// The TUF repository (metadata/ and targets/), in the data directory.
pub const TUF_DIR: &str = "tuf";
/// The development repository's keys, in the data directory.
pub const DEV_KEYS_DIR: &str = "dev-keys";

/// How far signing has got, for `/status` and the tests.
#[derive(Debug, Default)]
pub struct SigningStatus {
    /// The serial the database records as signed.
    pub signed_serial: AtomicI64,
    /// The serial whose timestamp is written, which the database records a moment later: what a
    /// request waiting for its change to be signed waits for.
    pub published_serial: AtomicI64,
    pub timestamp_version: AtomicU64,
    /// Why the last publishing or re-signing attempt failed, while it keeps failing.
    pub failure: std::sync::Mutex<Option<String>>,
    /// Publishing attempts that failed since the start.
    pub failures: AtomicU64,
    /// How the clock disagrees with the signed metadata, if it does.
    pub clock: std::sync::Mutex<Option<ClockSkew>>,
    /// Files that left the published state and wait for the grace period, and their bytes.
    pub awaiting_removal_files: AtomicU64,
    pub awaiting_removal_bytes: AtomicU64,
    /// How many looks through the store for files nothing reaches are running (after a start
    /// or a takeover; one for a lease lost may still run beside one for a lease regained): the
    /// counts above grow until none is.
    pub finding_unreachable: AtomicU64,
    /// The data directory as the last background walk found it (see [`crate::usage`]).
    pub disk: std::sync::Mutex<Option<DiskUsage>>,
    /// The transparency log and its witnesses, as of the last round.
    pub log: std::sync::Mutex<Option<tufa_repo::LogStatus>>,
}

impl SigningStatus {
    /// The reason signing is failing now, if it is.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    pub fn clock(&self) -> Option<ClockSkew> {
        self.clock.lock().ok().and_then(|c| c.clone())
    }

    pub fn disk(&self) -> Option<DiskUsage> {
        self.disk.lock().ok().and_then(|d| d.clone())
    }

    pub fn log(&self) -> Option<tufa_repo::LogStatus> {
        self.log.lock().ok().and_then(|l| l.clone())
    }

    fn record_log<S: Store>(&self, repository: &Repository<S>) {
        if let Ok(mut slot) = self.log.lock() {
            *slot = repository.log_status();
        }
    }

    /// `(files, bytes)` waiting for removal after the grace period.
    pub fn awaiting_removal(&self) -> (u64, u64) {
        (
            self.awaiting_removal_files.load(Ordering::Relaxed),
            self.awaiting_removal_bytes.load(Ordering::Relaxed),
        )
    }

    /// Whether the counts of [`SigningStatus::awaiting_removal`] may still grow: the store is
    /// being looked through for files nothing reaches.
    pub fn finding_unreachable(&self) -> bool {
        self.finding_unreachable.load(Ordering::Relaxed) > 0
    }

    fn count_awaiting_removal<S: Store>(&self, repository: &Repository<S>) {
        let (files, bytes) = repository.awaiting_removal();
        self.awaiting_removal_files
            .store(files as u64, Ordering::Relaxed);
        self.awaiting_removal_bytes.store(bytes, Ordering::Relaxed);
    }

    fn set_failure(&self, failure: Option<String>) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = failure;
        }
    }
}

/// What `/status`, `/metrics` and `tufa status` say of a clock that disagrees with the
/// signed metadata.
pub fn describe_clock(skew: &ClockSkew) -> String {
    match skew {
        ClockSkew::Behind { by, .. } => format!(
            "the clock is {} s behind the newest signed metadata: signing is paused. Fix the \
             clock; if that metadata was signed while the clock ran ahead, restart once with \
             --trust-clock",
            by.as_secs()
        ),
        ClockSkew::ExpiryTooFar { role, by } => format!(
            "{role} expires {} s later than its lifetime allows (signed while the clock ran \
             ahead?): it is being re-signed",
            by.as_secs()
        ),
    }
}

/// A store that writes only while this replica holds the publisher lease under `epoch` (see
/// the module's notes on fencing); reading is always allowed.
pub(crate) struct Fenced<S> {
    inner: S,
    lease: Arc<Lease>,
    /// `None`: a copy loaded to check the database against at start, never to write.
    epoch: Option<i64>,
}

impl<S: Store> Fenced<S> {
    fn check(&self, path: &str) -> tufa_repo::Result<()> {
        if self.epoch.is_some() && self.lease.holding() == self.epoch {
            return Ok(());
        }
        Err(tufa_repo::Error::Io {
            action: "writing (refused: this replica does not hold the publisher lease)",
            path: path.into(),
            source: std::io::Error::other("another replica publishes"),
        })
    }
}

impl<S: Store> Store for Fenced<S> {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> tufa_repo::Result<()> {
        if let Some((path, _)) = files.first() {
            self.check(path)?;
        }
        self.inner.write_all(files)
    }

    fn write_immutable(&self, files: &[(&str, &[u8])]) -> tufa_repo::Result<()> {
        if let Some((path, _)) = files.first() {
            self.check(path)?;
        }
        self.inner.write_immutable(files)
    }

    fn write_immutable_unflushed(
        &self,
        files: &[(&str, &[u8])],
    ) -> tufa_repo::Result<tufa_repo::Flush> {
        if let Some((path, _)) = files.first() {
            self.check(path)?;
        }
        self.inner.write_immutable_unflushed(files)
    }

    /// Allowed without the lease: it writes nothing new, and what it makes durable was written
    /// under the lease.
    fn flush(&self) -> tufa_repo::Result<()> {
        self.inner.flush()
    }

    /// Forwarded whole: the inner store decides how durable `files` are (the data directory
    /// leaves them unsynced).
    fn write_rebuildable_then(
        &self,
        files: &[(String, Vec<u8>)],
        last: (String, Vec<u8>),
    ) -> tufa_repo::Result<()> {
        self.check(&last.0)?;
        self.inner.write_rebuildable_then(files, last)
    }

    fn read(&self, path: &str) -> tufa_repo::Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }

    fn remove(&self, path: &str) -> tufa_repo::Result<()> {
        self.check(path)?;
        self.inner.remove(path)
    }

    fn list(&self, dir: &str) -> tufa_repo::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn list_each(&self, dir: &str, visit: &mut tufa_repo::Visit<'_>) -> tufa_repo::Result<()> {
        self.inner.list_each(dir, visit)
    }

    fn modified(&self, path: &str) -> tufa_repo::Result<Option<SystemTime>> {
        self.inner.modified(path)
    }

    fn size(&self, path: &str) -> tufa_repo::Result<Option<u64>> {
        self.inner.size(path)
    }

    fn sizes(&self, paths: &[&str]) -> Vec<tufa_repo::Result<Option<u64>>> {
        self.inner.sizes(paths)
    }
}

/// The repository as this replica loaded it.
pub(crate) type PublishedRepository = Repository<Fenced<Arc<dyn Store>>>;

pub(crate) struct Loaded {
    pub(crate) repository: PublishedRepository,
    /// The lease epoch it was loaded under (its store writes under no other); `None` for the
    /// copy a replica that does not publish checks the database against at start.
    epoch: Option<i64>,
    /// The online roles were signed anew at load: every page must be published again.
    republish: bool,
}

/// The signing side of one index.
pub struct Signing {
    /// The repository while this replica publishes (or checks it at start); `None` otherwise.
    loaded: Mutex<Option<Loaded>>,
    wake: Arc<Notify>,
    pub status: SigningStatus,
    grace: Duration,
    /// The repository's directory, left out of what `/status` shows.
    tuf_dir: PathBuf,
    data_dir: PathBuf,
    /// Where the repository is kept.
    storage: Storage,
    /// The repository's store for reading it without the lock (serving `/tuf/`).
    store: Arc<dyn Store>,
    signer: Arc<dyn Signer>,
    /// [`OnlineKey::kind`] of `signer`.
    online_key_kind: &'static str,
    policy: Policy,
    /// The transparency log's key, when root declares a log.
    log: Option<LogSettings>,
    pub lease: Arc<Lease>,
    /// PostgreSQL's announcements of committed journal entries, while the publisher waits.
    listening: Mutex<Listening>,
    /// The lease epoch the store was last looked through under for files nothing reaches.
    unreachable_looked_for: AtomicI64,
}

/// The publisher's listening connection, and when it last tried to open one.
#[derive(Default)]
struct Listening {
    listener: Option<crate::db::JournalListener>,
    tried: Option<std::time::Instant>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("status", &self.status)
            .finish()
    }
}

/// At most this many journal entries go into one batch.
const BATCH_LIMIT: i64 = 100_000;
/// At most this many projects that failed before are retried in one batch.
const RETRY_LIMIT: i64 = 1_000;
/// The longest wait before a project that could not be published is tried again.
const MAX_PROJECT_BACKOFF: Duration = Duration::from_secs(300);
/// The longest wait after a whole publishing attempt failed (a signer or disk that fails).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle publisher truncates the database's WAL (a no-op when nothing was written).
const WAL_TRUNCATE_INTERVAL: Duration = Duration::from_secs(10);
/// How soon an idle publisher first looks for changes other replicas journaled (their uploads
/// wake nothing in this process), and how far apart its looks grow: each wait doubles, so that
/// an upload on another replica in a busy stretch waits a few milliseconds for its batch, and an
/// idle publisher still looks only about a dozen times a second. One indexed `MAX(serial)` each.
const JOURNAL_POLL_FIRST: Duration = Duration::from_millis(5);
const JOURNAL_POLL_MAX: Duration = Duration::from_millis(100);
/// How soon a publisher that could not listen for journal entries (PostgreSQL) tries again; it
/// polls meanwhile.
const LISTEN_RETRY: Duration = Duration::from_secs(10);

impl Signing {
    /// Opens (creating a development repository on first use when no online key is configured)
    /// and verifies the TUF repository in `data_dir`. Refuses metadata that does not verify.
    /// Tries for the publisher lease, then keeps renewing or watching it until the process ends.
    /// Without it (another replica publishes) the repository is loaded, without the right to
    /// write, only when `load_without_lease`: for a start-up check that needs it, after which
    /// [`Signing::unload_unless_publishing`] drops it. Otherwise it is loaded (and checked) when
    /// this replica takes the lease: a replica that only serves and takes uploads never holds
    /// the bin listings of every project.
    pub async fn open(
        data_dir: &Path,
        config: &SigningConfig,
        database: &Database,
        storage: &Storage,
        load_without_lease: bool,
    ) -> Result<Self> {
        let lease = Arc::new(Lease::new(database.clone(), config.lease_ttl));
        lease.step().await?;
        // Renewed (or watched) from here on: creating a development repository or loading and
        // re-signing a large one on a slow store can outlast the lease, and the fenced store
        // would then refuse the start-up writes of the replica that holds it.
        let keeper = tokio::spawn(Arc::clone(&lease).keep());
        let opened = Self::open_holding(data_dir, config, storage, lease, load_without_lease).await;
        if opened.is_err() {
            keeper.abort();
        }
        opened
    }

    async fn open_holding(
        data_dir: &Path,
        config: &SigningConfig,
        storage: &Storage,
        lease: Arc<Lease>,
        load_without_lease: bool,
    ) -> Result<Self> {
        let publishing = lease.holding().is_some();
        let tuf_dir = data_dir.join(TUF_DIR);
        let now = SystemTime::now();
        let store = storage.tuf_store_beside_publisher(data_dir);
        let root_file = "metadata/1.root.json";
        let where_ = storage.describe(data_dir);
        let root_exists = |store: &Arc<dyn Store>| {
            tokio::task::block_in_place(|| store.size(root_file)).map(|size| size.is_some())
        };
        let online_key = match &config.online_key {
            Some(path) => path.clone(),
            None => {
                let keys = data_dir.join(DEV_KEYS_DIR);
                if !root_exists(&store)? {
                    if !publishing {
                        return Err(Error::Config(format!(
                            "{where_} has no TUF repository yet and another replica holds the \
                             publisher lease: it creates the repository; start this replica \
                             again once that one serves"
                        )));
                    }
                    create_development_repository_with_log(
                        &storage.tuf_store(data_dir)?,
                        &keys,
                        config.bit_length,
                        config.expiries,
                        now,
                    )?;
                    tracing::warn!(
                        "created a DEVELOPMENT TUF repository: its offline keys are in {}, next to the server, \
                         so it is not secure. For production run `tufa ceremony` and start with --online-key",
                        keys.display()
                    );
                }
                let dev_key = tufa_repo::key_paths(&keys.join(ONLINE_KEY)).0;
                if !dev_key.exists() {
                    return Err(Error::Config(format!(
                        "{where_} holds TUF metadata from a key ceremony, not a development \
                         repository: start with --online-key (the ceremony's online key)"
                    )));
                }
                OnlineKey::File(dev_key)
            }
        };
        if !root_exists(&store)? {
            return Err(Error::Config(format!(
                "no TUF metadata in {where_}: copy the files of the ceremony's metadata/ directory to {TUF_DIR}/metadata/ there"
            )));
        }
        let signer: Arc<dyn Signer> = match &online_key {
            OnlineKey::File(path) => Arc::new(load_signer(
                path,
                config.online_key_passphrase.as_deref().map(str::as_bytes),
            )?),
            OnlineKey::Pkcs11(uri) => Arc::new(Pkcs11Signer::from_uri(uri)?),
            OnlineKey::Vault(spec) => {
                let signer = tokio::task::block_in_place(|| VaultSigner::from_spec(spec))?;
                tracing::info!(
                    key = spec.as_str(),
                    version = signer.version(),
                    keyid = %signer.key_id(),
                    "the online key is in Vault"
                );
                Arc::new(signer)
            }
        };
        let log_key = config.log_key.clone().or_else(|| {
            let development = data_dir.join(DEV_KEYS_DIR).join(LOG_KEY);
            (config.online_key.is_none() && development.exists()).then_some(development)
        });
        let wake = Arc::new(Notify::new());
        let log = match log_key {
            Some(path) => {
                let mut settings = LogSettings::new(LogKey::load(&path)?);
                let woken = Arc::clone(&wake);
                settings.witnesses = WitnessSettings {
                    urls: config.witnesses.clone(),
                    keys: config.witness_keys.clone(),
                    wait: config.witness_wait,
                    on_late_answer: Some(Arc::new(move || woken.notify_one())),
                };
                Some(settings)
            }
            None if !config.witnesses.is_empty() => {
                return Err(Error::Config(
                    "--witness needs a transparency log: start with --log-key".into(),
                ));
            }
            None => None,
        };
        let policy = Policy {
            expiries: config.expiries,
            clock_tolerance: config.clock_tolerance,
            trust_clock: config.trust_clock,
        };
        let trusted = data_dir.join(TRUSTED_ROOT_FILE);
        if publishing
            && !trusted.exists()
            && let Some(root) = tokio::task::block_in_place(|| store.read(root_file))?
        {
            std::fs::write(&trusted, root).map_err(io("writing", &trusted))?;
        }
        let signing = Signing {
            loaded: Mutex::new(None),
            wake,
            status: SigningStatus::default(),
            grace: config.grace,
            tuf_dir,
            data_dir: data_dir.to_path_buf(),
            storage: storage.clone(),
            store,
            signer,
            online_key_kind: online_key.kind(),
            policy,
            log,
            lease,
            listening: Mutex::default(),
            unreachable_looked_for: AtomicI64::new(0),
        };
        let epoch = signing.lease.holding();
        if epoch.is_some() || load_without_lease {
            let loaded = signing.load(epoch)?;
            *signing.loaded.lock().await = Some(loaded);
        }
        Ok(signing)
    }

    /// Loads the repository from the store as the last timestamp written left it: under
    /// `epoch` to publish, or (`None`) read only.
    fn load(&self, epoch: Option<i64>) -> Result<Loaded> {
        let store = match epoch {
            // Temporary files from before are a dead publisher's unfinished writes.
            Some(_) => tokio::task::block_in_place(|| self.storage.tuf_store(&self.data_dir))?,
            None => self.storage.tuf_store_beside_publisher(&self.data_dir),
        };
        let store = Fenced {
            inner: store,
            lease: Arc::clone(&self.lease),
            epoch,
        };
        // What nothing reaches is looked for beside publishing (`find_unreachable`).
        let repository = tokio::task::block_in_place(|| {
            Repository::open_with_log(
                store,
                Arc::clone(&self.signer),
                self.policy,
                self.log.as_ref(),
                SystemTime::now(),
                tufa_repo::Unreachable::LeftToCaller,
            )
        })?;
        self.status
            .timestamp_version
            .store(repository.timestamp().signed.version, Ordering::Relaxed);
        self.status.count_awaiting_removal(&repository);
        self.status.record_log(&repository);
        Ok(Loaded {
            republish: repository.rebuilt(),
            repository,
            epoch,
        })
    }

    /// What holds the online key (`file`, `pkcs11`, `vault`) and its key ID: which signer a
    /// `signing_failure` is about.
    pub fn online_key(&self) -> (&'static str, String) {
        (self.online_key_kind, self.signer.key_id().to_string())
    }

    /// The repository loaded at start, for the check of the database against what it
    /// publishes.
    pub(crate) fn loaded(&self) -> &Mutex<Option<Loaded>> {
        &self.loaded
    }

    /// Drops the copy loaded at start when another replica publishes: it would go stale.
    pub(crate) async fn unload_unless_publishing(&self) {
        let mut loaded = self.loaded.lock().await;
        if loaded.as_ref().is_some_and(|l| l.epoch.is_none()) {
            *loaded = None;
        }
    }

    /// The version of the timestamp served: as this replica signed it when it publishes, as the
    /// store holds it otherwise (read unverified: a number to show, trusted by nobody).
    pub fn timestamp_version(&self) -> u64 {
        let signed = self.status.timestamp_version.load(Ordering::Relaxed);
        if self.publishing() {
            return signed;
        }
        let file = tufa_repo::layout::metadata_file(&tufa_metadata::RoleName::timestamp(), 0);
        self.store
            .read(&file)
            .ok()
            .flatten()
            .and_then(|bytes| {
                tufa_metadata::Metadata::<tufa_metadata::Timestamp>::from_bytes(&bytes).ok()
            })
            .map_or(signed, |timestamp| timestamp.signed.version)
    }

    /// The store the repository is kept in, for reading.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Stops publishing and lets go of the lease (at shutdown), so that another replica takes
    /// over at once rather than after the TTL. Waits for a batch in progress first: once the
    /// lease is free, the next publisher may write at any moment.
    pub async fn release(&self) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        *loaded = None;
        self.lease.release().await
    }

    /// Whether this replica holds the publisher lease.
    pub fn publishing(&self) -> bool {
        self.lease.holding().is_some()
    }

    /// Makes the loaded repository follow the lease: loaded anew (and checked against the
    /// database) when this replica gained it, dropped when it lost it. Whether this replica
    /// publishes now.
    async fn follow_lease(&self, index: &crate::Index) -> Result<bool> {
        let held = self.lease.holding();
        let mut loaded = self.loaded.lock().await;
        let Some(epoch) = held else {
            if loaded.take().is_some_and(|l| l.epoch.is_some()) {
                tracing::info!("another replica publishes now: the repository is dropped");
            }
            return Ok(false);
        };
        if loaded.as_ref().and_then(|l| l.epoch) == Some(epoch) {
            return Ok(true);
        }
        *loaded = None;
        let fresh = self.load(Some(epoch))?;
        crate::integrity::check_published(
            &index.config.data_dir,
            &index.database,
            &fresh.repository,
            self.store(),
            index.config.accept_data_mismatch,
        )
        .await?;
        tracing::info!(
            epoch,
            timestamp = fresh.repository.timestamp().signed.version,
            "loaded the repository as published: signing from the database's signed serial"
        );
        *loaded = Some(fresh);
        Ok(true)
    }

    /// Every role's version and expiry (see [`Repository::role_summary`]).
    /// Empty on a replica that does not publish: it holds no repository.
    pub async fn role_summary(&self) -> Vec<(String, u64, tufa_metadata::Expires)> {
        self.loaded
            .lock()
            .await
            .as_ref()
            .map(|l| l.repository.role_summary())
            .unwrap_or_default()
    }

    /// An error as `/status` may show it: paths relative to the repository, so that the server's
    /// directories stay private.
    fn public_reason(&self, error: &dyn std::fmt::Display) -> String {
        error
            .to_string()
            .replace(&format!("{}/", self.tuf_dir.display()), "")
    }

    /// Asks the publisher to sign what the journal holds now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until woken by an upload on this replica, until the journal holds a change from
    /// another replica (or a command) as PostgreSQL announces or a poll finds, until this
    /// replica loses the lease, or until `interval` passes.
    async fn wait_for_work(&self, index: &crate::Index, interval: Duration) {
        let started = std::time::Instant::now();
        let signed = self.status.signed_serial.load(Ordering::Relaxed);
        let mut listening = self.listening.lock().await;
        let Listening { listener, tried } = &mut *listening;
        if listener.is_none()
            && index.database.backend() == crate::db::Backend::Postgres
            && tried.is_none_or(|tried| tried.elapsed() >= LISTEN_RETRY)
        {
            *tried = Some(std::time::Instant::now());
            match index.database.journal_listener().await {
                Ok(listening) => *listener = listening,
                Err(error) => tracing::debug!("polling the journal: cannot listen: {error}"),
            }
        }
        let mut poll = JOURNAL_POLL_FIRST;
        loop {
            let left = interval.saturating_sub(started.elapsed());
            if left.is_zero() {
                return;
            }
            let tick = poll.min(left);
            poll = (poll * 2).min(JOURNAL_POLL_MAX);
            let heard = async {
                match listener.as_mut() {
                    Some(listener) => listener.next().await,
                    None => std::future::pending().await,
                }
            };
            let woken = tokio::select! {
                () = self.wake.notified() => Some(Ok(())),
                heard = heard => Some(heard),
                () = tokio::time::sleep(tick) => None,
            };
            if let Some(Err(error)) = &woken {
                tracing::debug!("polling the journal: the listening connection was lost: {error}");
                *listener = None;
            }
            if woken.is_some() || !self.publishing() {
                return;
            }
            if index
                .database
                .last_serial()
                .await
                .is_ok_and(|last| last > signed)
            {
                return;
            }
        }
    }

    /// Whether every change up to `serial` is signed: as this replica wrote it when it
    /// publishes, as the database records it otherwise.
    pub async fn signed_up_to(&self, database: &Database, serial: i64) -> bool {
        if self.status.published_serial.load(Ordering::Relaxed) >= serial {
            return true;
        }
        if self.publishing() {
            return false;
        }
        match database.signed_serial().await {
            Ok(signed) => {
                self.status
                    .published_serial
                    .fetch_max(signed, Ordering::Relaxed);
                signed >= serial
            }
            Err(_) => false,
        }
    }

    fn published(&self, published: &Published) {
        self.status
            .timestamp_version
            .store(published.timestamp_version, Ordering::Relaxed);
    }

    /// Signs every journal entry not yet signed, as one batch per call, with the projects whose
    /// earlier failure is due for another try. A project whose page cannot be stored is set
    /// aside (see [`crate::db::Database::record_unpublished`]) and the batch goes on without it.
    /// Returns the serial signed up to, if the journal had anything to sign.
    pub async fn publish_pending(&self, index: &crate::Index) -> Result<Option<i64>> {
        if !self.follow_lease(index).await? {
            return Ok(None);
        }
        let mut loaded = self.loaded.lock().await;
        let Some(Loaded {
            repository,
            epoch: Some(epoch),
            republish,
        }) = loaded.as_mut()
        else {
            return Ok(None);
        };
        let epoch = *epoch;
        // Where a round's time goes, in its `signed` line: reading and rendering, signing and
        // writing the repository, recording in the database.
        let started = std::time::Instant::now();
        // Pages are signed under the policy every replica follows, never one this replica was
        // started with and another replica replaced since.
        index.follow_cooldown().await?;
        let cooldown_off = index.cooldown().is_none();
        let republishing = std::mem::take(republish);
        if republishing {
            index.database.reset_signed_serial().await?;
        }
        let signed = index.database.signed_serial().await?;
        self.status.signed_serial.store(signed, Ordering::Relaxed);
        self.status
            .published_serial
            .fetch_max(signed, Ordering::Relaxed);
        let entries = index.database.journal_after(signed, BATCH_LIMIT).await?;
        let retries = index.database.unpublished_due(RETRY_LIMIT).await?;
        if entries.is_empty() && retries.is_empty() {
            return Ok(None);
        }
        let last = entries.last().map(|&(serial, _)| serial);
        // Each name once, in order, moved rather than copied: a first publish reads 100,000 at
        // a time, and the publisher's peak memory is during it.
        let names: Vec<ProjectName> = entries
            .into_iter()
            .map(|(_, project)| project)
            .chain(retries)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // With the cooldown view off, its pages are withdrawn where there are any.
        let withdrawn: std::collections::HashSet<&ProjectName> = names
            .iter()
            .filter(|project| {
                cooldown_off && repository.page(View::Cooldown, project.as_str()).is_some()
            })
            .collect();
        // Rendered and staged a chunk at a time, signed once: a first publish of 100,000
        // projects would otherwise hold every rendered page at once, memory the allocator
        // keeps long after.
        let mut import = repository.import(SystemTime::now())?;
        let mut staging = Duration::ZERO;
        for chunk in names.chunks(crate::db::PROJECTS_PER_READ) {
            let mut changes = Vec::with_capacity(chunk.len() * View::ALL.len());
            // Simple pages are read a chunk at a time (see `crate::db::render`), and go past
            // the serving cache: a large batch would only push out the pages clients ask for.
            let mut states = index.database.project_states(chunk).await?;
            for project in chunk {
                for view in View::ALL {
                    if view == View::Cooldown && cooldown_off && !withdrawn.contains(project) {
                        continue;
                    }
                    let page = match view {
                        View::Simple => states.remove(project).map(|(project, versions, files)| {
                            crate::pages::project_json(&project, &versions, &files)
                        }),
                        View::Cooldown => index
                            .project_page(view, project, true)
                            .await?
                            .map(|(_, bytes)| bytes.to_vec()),
                    };
                    changes.push(PageChange {
                        project: project.to_string(),
                        view,
                        page,
                    });
                }
            }
            let stage_started = std::time::Instant::now();
            tokio::task::block_in_place(|| import.stage(&changes))?;
            staging += stage_started.elapsed();
        }
        let read = started.elapsed() - staging;
        let published = tokio::task::block_in_place(|| import.commit(SystemTime::now()));
        let signed_at = started.elapsed();
        self.status.count_awaiting_removal(repository);
        let published = published?;
        self.published(&published);
        // The timestamp is written: these changes are signed and served. Requests waiting for
        // them (a first request of a mirrored project) go on now rather than after the database
        // writes below, which may queue behind a large mirrored page being recorded.
        if let Some(last) = last {
            self.status.published_serial.store(last, Ordering::Relaxed);
        }
        for rejected in &published.rejected {
            tracing::error!(
                project = rejected.project,
                "the project's page could not be published, retrying later; every other change \
                 goes ahead: {}",
                rejected.error
            );
            index
                .database
                .record_unpublished(
                    &rejected.project,
                    &self.public_reason(&rejected.error),
                    MAX_PROJECT_BACKOFF,
                )
                .await?;
        }
        let done: Vec<&str> = names
            .iter()
            .map(ProjectName::as_str)
            .filter(|project| !published.rejected.iter().any(|r| r.project == *project))
            .collect();
        index.database.clear_unpublished(&done).await?;
        if let Some(last) = last {
            // Signing every page again is no change waiting to be signed: kept off the chart.
            let round = (!republishing).then(|| (signed, crate::db::now_micros()));
            if !index
                .database
                .set_signed_serial_fenced(last, self.lease.id(), epoch, round)
                .await?
            {
                tracing::warn!(
                    serial = last,
                    "the publisher lease was lost before the signed serial was recorded: the \
                     next publisher signs these changes again"
                );
                return Ok(None);
            }
            self.status.signed_serial.store(last, Ordering::Relaxed);
        }
        tracing::info!(
            serial = last,
            projects = done.len(),
            rejected = published.rejected.len(),
            timestamp = published.timestamp_version,
            read_ms = read.as_millis() as u64,
            publish_ms = (signed_at - read).as_millis() as u64,
            record_ms = (started.elapsed() - signed_at).as_millis() as u64,
            "signed"
        );
        Ok(last)
    }

    /// Re-signs online roles before they expire (and those signed while the clock ran ahead),
    /// and removes files past their grace period.
    pub async fn maintain(&self) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let Some(Loaded {
            repository,
            epoch: Some(_),
            ..
        }) = loaded.as_mut()
        else {
            return Ok(());
        };
        let now = SystemTime::now();
        let skew = repository.clock_skew(now);
        if let Some(skew) = &skew
            && self.status.clock().as_ref() != Some(skew)
        {
            tracing::warn!("{}", describe_clock(skew));
        }
        if let Ok(mut clock) = self.status.clock.lock() {
            *clock = skew;
        }
        if let Some(published) = tokio::task::block_in_place(|| repository.install_incoming(now))? {
            self.published(&published);
        }
        if let Some(published) = tokio::task::block_in_place(|| repository.refresh(now))? {
            self.published(&published);
            tracing::info!(
                timestamp = published.timestamp_version,
                bins = published.bins_signed,
                "re-signed online roles before expiry"
            );
        }
        let gathered = tokio::task::block_in_place(|| repository.gather_cosignatures());
        self.status.record_log(repository);
        if gathered? > 0 {
            tracing::debug!("added late witness cosignatures to the log's checkpoint and proofs");
        }
        let removed = tokio::task::block_in_place(|| {
            repository.collect_garbage(now, self.grace, GARBAGE_PER_ROUND)
        });
        self.status.count_awaiting_removal(repository);
        let removed = removed?;
        if removed > 0 {
            tracing::info!(removed, "removed metadata and targets no longer published");
        }
        Ok(())
    }

    /// The publisher: signs on every wake-up or at least every second, until the process ends.
    /// Publishing and re-signing are attempted on every round whatever the other did, so a batch
    /// that keeps failing never keeps the online roles from being re-signed before they expire;
    /// failures back off and are reported on `/status` and `/metrics`.
    pub async fn run(index: Arc<crate::Index>) {
        let Some(signing) = index.signing.as_ref() else {
            return;
        };
        tokio::spawn(Self::measure_disk(Arc::clone(&index)));
        let mut consecutive_failures: u32 = 0;
        let mut wal_truncated = std::time::Instant::now();
        loop {
            let following = signing.follow_lease(&index).await;
            if matches!(following, Ok(false)) {
                signing.status.set_failure(None);
                consecutive_failures = 0;
                signing.lease.changed(signing.lease.renew_interval()).await;
                continue;
            }
            if following.is_ok()
                && let Some(epoch) = signing.lease.holding()
                && signing.unreachable_looked_for.swap(epoch, Ordering::SeqCst) != epoch
            {
                tokio::spawn(Self::find_unreachable(Arc::clone(&index), epoch));
            }
            let swept = match following {
                Ok(_) => Self::sweep_cooldown(&index).await,
                Err(error) => Err(error),
            };
            let published = signing.publish_pending(&index).await;
            let maintained = signing.maintain().await;
            let more = matches!(published, Ok(Some(_)));
            let failure = [swept.err(), published.err(), maintained.err()]
                .into_iter()
                .flatten()
                .map(|error| signing.public_reason(&error))
                .collect::<Vec<_>>();
            if failure.is_empty() {
                consecutive_failures = 0;
                signing.status.set_failure(None);
                if !more {
                    if wal_truncated.elapsed() >= WAL_TRUNCATE_INTERVAL {
                        wal_truncated = std::time::Instant::now();
                        if let Err(error) = index.database.truncate_wal().await {
                            tracing::warn!("the database's WAL could not be truncated: {error}");
                        }
                    }
                    signing.wait_for_work(&index, Duration::from_secs(1)).await;
                }
                continue;
            }
            let failure = failure.join("; ");
            consecutive_failures = consecutive_failures.saturating_add(1);
            signing.status.failures.fetch_add(1, Ordering::Relaxed);
            let backoff =
                Duration::from_secs(1 << consecutive_failures.clamp(0, 6)).min(MAX_BACKOFF);
            tracing::error!(
                retry_in_seconds = backoff.as_secs(),
                "signing failed: {failure}"
            );
            signing.status.set_failure(Some(failure));
            tokio::time::sleep(backoff).await;
        }
    }

    /// Looks through the store for files nothing reaches (what a dead publisher's unfinished
    /// batch left, what it had queued for removal in a queue that died with it) and queues them,
    /// while this replica publishes under `epoch`. Done at open, listing a bucket of 700,000
    /// projects kept a replica taking over from signing anything for minutes. A listing that
    /// fails is tried again a minute later.
    async fn find_unreachable(index: Arc<crate::Index>, epoch: i64) {
        let Some(signing) = index.signing.as_ref() else {
            return;
        };
        signing
            .status
            .finding_unreachable
            .fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        loop {
            let looking = Arc::clone(&index);
            let found = tokio::task::spawn_blocking(move || {
                looking
                    .signing
                    .as_ref()
                    .map_or(Ok(None), |signing| signing.retire_unreachable_parts(epoch))
            })
            .await;
            match found {
                Ok(Ok(Some(found))) => tracing::info!(
                    found,
                    milliseconds = started.elapsed().as_millis() as u64,
                    "looked through the store: files nothing reaches wait for the grace period"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(
                        "looking through the store for files nothing reaches failed, trying \
                         again in a minute: {}",
                        signing.public_reason(&error)
                    );
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    if signing.lease.holding() == Some(epoch) {
                        continue;
                    }
                }
                Err(error) => tracing::warn!("looking through the store stopped: {error}"),
            }
            break;
        }
        signing
            .status
            .finding_unreachable
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// The store's files, handed to the repository loaded under `epoch` a part at a time, each
    /// under its lock: a batch being published waits for one part at most. How many nothing
    /// reaches, or `None` when the repository was dropped (the lease lost) before the end.
    fn retire_unreachable_parts(&self, epoch: i64) -> Result<Option<usize>> {
        const PART: usize = 10_000;
        let mut found = 0;
        // Stops when the repository loaded under `epoch` is gone.
        let hand_over = |part: Vec<(String, Option<u64>)>| {
            let mut loaded = self.loaded.blocking_lock();
            match loaded.as_mut() {
                Some(Loaded {
                    repository,
                    epoch: Some(held),
                    ..
                }) if *held == epoch => {
                    found += repository.retire_if_unreachable(part, SystemTime::now());
                    self.status.count_awaiting_removal(repository);
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Break(()),
            }
        };
        // The rest of a listing of millions of files is not asked for once the lease is lost:
        // the next publisher looks for itself.
        let flow = tufa_repo::list_in_parts(
            self.store.as_ref(),
            &tufa_repo::layout::PUBLISHED_DIRS,
            PART,
            hand_over,
        )?;
        Ok(flow.is_continue().then_some(found))
    }

    /// Journals the projects with files that crossed the cooldown boundary since the last
    /// round, so that the signed view follows the clock within a round (about a second) with no
    /// other event.
    async fn sweep_cooldown(index: &crate::Index) -> Result<()> {
        let Some(policy) = &index.cooldown() else {
            return Ok(());
        };
        let crossed = index
            .database
            .sweep_cooldown(policy, crate::db::now_micros())
            .await?;
        if crossed > 0 {
            tracing::info!(
                projects = crossed,
                "files crossed the cooldown boundary: publishing their cooldown pages"
            );
        }
        Ok(())
    }

    /// Walks the data directory again and again, [`usage::refresh_interval`] apart, for
    /// `/status` and `/metrics`.
    async fn measure_disk(index: Arc<crate::Index>) {
        let Some(signing) = index.signing.as_ref() else {
            return;
        };
        loop {
            let data_dir = index.config.data_dir.clone();
            let measured = tokio::task::spawn_blocking(move || usage::measure(&data_dir))
                .await
                .map_err(|error| error.to_string())
                .and_then(|measured| measured.map_err(|error| signing.public_reason(&error)));
            let took = match measured {
                Ok(disk) => {
                    let took = Duration::from_millis(disk.took_ms);
                    if let Ok(mut slot) = signing.status.disk.lock() {
                        *slot = Some(disk);
                    }
                    took
                }
                Err(error) => {
                    tracing::warn!("measuring the data directory failed: {error}");
                    Duration::ZERO
                }
            };
            tokio::time::sleep(usage::refresh_interval(took)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_key_dispatches_on_the_pkcs11_scheme_and_never_prints_the_pin() {
        let uri = "pkcs11:token=t;object=k?module-path=/m.so&pin-value=secret";
        let key = OnlineKey::from(PathBuf::from(uri));
        assert_eq!(key, OnlineKey::Pkcs11(uri.into()));
        assert!(!format!("{key:?}").contains("secret"), "{key:?}");
        assert_eq!(
            OnlineKey::from(PathBuf::from("keys/online.pem")),
            OnlineKey::File("keys/online.pem".into())
        );
        assert_eq!(
            OnlineKey::from(PathBuf::from("vault:online?mount=transit")),
            OnlineKey::Vault("vault:online?mount=transit".into())
        );
    }
}
