//! PEP 458 signing inside the index: every change in the journal becomes signed TUF metadata.
//!
//! The journal is the queue. An upload or yank appends to it in the same transaction as the
//! change, so an acknowledged change is never lost; the publisher (one per data directory, held
//! by a file lock) drains it in batches: the changed projects' JSON pages (the main page and, with
//! the cooldown view on, the cooldown page, see [`crate::cooldown`]) become targets, then
//! the bin roles listing them, then snapshot, then timestamp, each durable before the next
//! ([`tufa_repo::Repository::publish`]). Only then does the signed serial advance; a crash in
//! between publishes the same pages again after the restart, which is harmless.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Notify};
use tufa_metadata::Signer;
use tufa_pkcs11::Pkcs11Signer;
use tufa_repo::dev::{ONLINE_KEY, create_development_repository};
use tufa_repo::layout::Expiries;
use tufa_repo::{
    ClockSkew, GARBAGE_PER_ROUND, PageChange, Policy, Published, Repository, Store, View,
    load_signer,
};

use crate::error::{Error, Result, io};
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
}

/// `pkcs11:...` names a key on a token; anything else is a key file's path.
impl From<PathBuf> for OnlineKey {
    fn from(value: PathBuf) -> Self {
        match value.to_str() {
            Some(uri) if uri.starts_with("pkcs11:") => OnlineKey::Pkcs11(uri.to_string()),
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
        }
    }
}

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
    /// The data directory as the last background walk found it (see [`crate::usage`]).
    pub disk: std::sync::Mutex<Option<DiskUsage>>,
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

    /// `(files, bytes)` waiting for removal after the grace period.
    pub fn awaiting_removal(&self) -> (u64, u64) {
        (
            self.awaiting_removal_files.load(Ordering::Relaxed),
            self.awaiting_removal_bytes.load(Ordering::Relaxed),
        )
    }

    fn count_awaiting_removal(&self, repository: &Repository<Arc<dyn Store>>) {
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

/// The signing side of one index.
pub struct Signing {
    repository: Mutex<Repository<Arc<dyn Store>>>,
    /// Where the repository is kept, for reading it without the lock (serving `/tuf/`).
    store: Arc<dyn Store>,
    /// The online roles were signed anew at start: every page must be published again.
    republish: std::sync::atomic::AtomicBool,
    wake: Notify,
    pub status: SigningStatus,
    grace: Duration,
    /// The repository's directory, left out of what `/status` shows.
    tuf_dir: PathBuf,
    /// Held for the life of the process: one publisher per data directory.
    _lock: File,
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

impl Signing {
    /// Opens (creating a development repository on first use when no online key is configured)
    /// and verifies the TUF repository of `data_dir` in `storage`. Refuses metadata that does
    /// not verify. Blocks: a bucket is read over the network.
    pub fn open(data_dir: &Path, config: &SigningConfig, storage: &Storage) -> Result<Self> {
        let lock_path = data_dir.join("signing.lock");
        let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
        lock.try_lock()
            .map_err(|_| Error::SigningBusy(data_dir.to_path_buf()))?;
        let tuf_dir = data_dir.join(TUF_DIR);
        let store = storage.tuf_store(data_dir)?;
        let root_file = "metadata/1.root.json";
        let where_ = storage.describe(data_dir);
        let now = SystemTime::now();
        let online_key = match &config.online_key {
            Some(path) => path.clone(),
            None => {
                let keys = data_dir.join(DEV_KEYS_DIR);
                if store.size(root_file)?.is_none() {
                    create_development_repository(
                        &store,
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
        let Some(root) = store.read(root_file)? else {
            return Err(Error::Config(format!(
                "no TUF metadata in {where_}: copy the output of `tufa ceremony` there ({TUF_DIR}/)"
            )));
        };
        let signer: Arc<dyn Signer> = match &online_key {
            OnlineKey::File(path) => Arc::new(load_signer(
                path,
                config.online_key_passphrase.as_deref().map(str::as_bytes),
            )?),
            OnlineKey::Pkcs11(uri) => Arc::new(Pkcs11Signer::from_uri(uri)?),
        };
        let policy = Policy {
            expiries: config.expiries,
            clock_tolerance: config.clock_tolerance,
            trust_clock: config.trust_clock,
        };
        let repository = Repository::open(Arc::clone(&store), signer, policy, now)?;
        let trusted = data_dir.join(TRUSTED_ROOT_FILE);
        if !trusted.exists() {
            std::fs::write(&trusted, root).map_err(io("writing", &trusted))?;
        }
        let status = SigningStatus::default();
        status
            .timestamp_version
            .store(repository.timestamp().signed.version, Ordering::Relaxed);
        status.count_awaiting_removal(&repository);
        Ok(Signing {
            republish: std::sync::atomic::AtomicBool::new(repository.rebuilt()),
            repository: Mutex::new(repository),
            store,
            wake: Notify::new(),
            status,
            grace: config.grace,
            tuf_dir,
            _lock: lock,
        })
    }

    /// The repository, for the start-up check of the database against what it publishes.
    pub(crate) fn repository(&self) -> &Mutex<Repository<Arc<dyn Store>>> {
        &self.repository
    }

    /// The store the repository is kept in.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Every role's version and expiry (see [`Repository::role_summary`]).
    pub async fn role_summary(&self) -> Vec<(String, u64, tufa_metadata::Expires)> {
        self.repository.lock().await.role_summary()
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

    /// Waits until woken, or `interval` passes.
    pub async fn wait(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.wake.notified()).await;
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
        let mut repository = self.repository.lock().await;
        if self.republish.swap(false, Ordering::Relaxed) {
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
        let projects: std::collections::BTreeSet<ProjectName> = entries
            .into_iter()
            .map(|(_, project)| project)
            .chain(retries)
            .collect();
        let mut changes = Vec::with_capacity(projects.len() * View::ALL.len());
        for project in &projects {
            for view in View::ALL {
                // With the cooldown view off, its pages are withdrawn where there are any.
                if view == View::Cooldown
                    && index.cooldown.is_none()
                    && repository.page(view, project.as_str()).is_none()
                {
                    continue;
                }
                let page = index.project_page(view, project, true).await?;
                changes.push(PageChange {
                    project: project.to_string(),
                    view,
                    page: page.map(|(_, bytes)| bytes.to_vec()),
                });
            }
        }
        let published =
            tokio::task::block_in_place(|| repository.publish(&changes, SystemTime::now()));
        self.status.count_awaiting_removal(&repository);
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
        let done: Vec<String> = projects
            .iter()
            .map(ProjectName::to_string)
            .filter(|project| !published.rejected.iter().any(|r| &r.project == project))
            .collect();
        index.database.clear_unpublished(&done).await?;
        if let Some(last) = last {
            index.database.set_signed_serial(last).await?;
            self.status.signed_serial.store(last, Ordering::Relaxed);
        }
        tracing::info!(
            serial = last,
            projects = done.len(),
            rejected = published.rejected.len(),
            timestamp = published.timestamp_version,
            "signed"
        );
        Ok(last)
    }

    /// Re-signs online roles before they expire (and those signed while the clock ran ahead),
    /// and removes files past their grace period.
    pub async fn maintain(&self) -> Result<()> {
        let mut repository = self.repository.lock().await;
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
        let removed = tokio::task::block_in_place(|| {
            repository.collect_garbage(now, self.grace, GARBAGE_PER_ROUND)
        });
        self.status.count_awaiting_removal(&repository);
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
            let swept = Self::sweep_cooldown(&index).await;
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
                    signing.wait(Duration::from_secs(1)).await;
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

    /// Journals the projects with files that crossed the cooldown boundary since the last
    /// round, so that the signed view follows the clock within a round (about a second) with no
    /// other event.
    async fn sweep_cooldown(index: &crate::Index) -> Result<()> {
        let Some(policy) = &index.cooldown else {
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
    }
}
