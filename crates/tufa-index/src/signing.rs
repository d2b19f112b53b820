//! PEP 458 signing inside the index: every change in the journal becomes signed TUF metadata.
//!
//! The journal is the queue. An upload or yank appends to it in the same transaction as the
//! change, so an acknowledged change is never lost; the publisher (one per data directory, held
//! by a file lock) drains it in batches: the changed projects' JSON pages become targets, then
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
use tufa_repo::{FsStore, PageChange, Published, Repository, load_signer};

use crate::error::{Error, Result, io};
use crate::name::ProjectName;

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
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            online_key: None,
            online_key_passphrase: None,
            bit_length: 8,
            expiries: Expiries::default(),
            grace: Duration::from_secs(3600),
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
    pub signed_serial: AtomicI64,
    pub timestamp_version: AtomicU64,
}

/// The signing side of one index.
pub struct Signing {
    repository: Mutex<Repository<FsStore>>,
    /// The online roles were signed anew at start: every page must be published again.
    republish: std::sync::atomic::AtomicBool,
    wake: Notify,
    pub status: SigningStatus,
    grace: Duration,
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

impl Signing {
    /// Opens (creating a development repository on first use when no online key is configured)
    /// and verifies the TUF repository in `data_dir`. Refuses metadata that does not verify.
    pub fn open(data_dir: &Path, config: &SigningConfig) -> Result<Self> {
        let lock_path = data_dir.join("signing.lock");
        let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
        lock.try_lock()
            .map_err(|_| Error::SigningBusy(data_dir.to_path_buf()))?;
        let tuf_dir = data_dir.join(TUF_DIR);
        let store = FsStore::open(&tuf_dir)?;
        let now = SystemTime::now();
        let online_key = match &config.online_key {
            Some(path) => path.clone(),
            None => {
                let keys = data_dir.join(DEV_KEYS_DIR);
                if !tuf_dir.join("metadata/1.root.json").exists() {
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
                        "{} holds TUF metadata from a key ceremony, not a development repository: \
                         start with --online-key (the ceremony's online key)",
                        tuf_dir.display()
                    )));
                }
                OnlineKey::File(dev_key)
            }
        };
        let root_path = tuf_dir.join("metadata/1.root.json");
        if !root_path.exists() {
            return Err(Error::Config(format!(
                "no TUF metadata in {}: copy the output of `tufa ceremony` there",
                tuf_dir.display()
            )));
        }
        let signer: Arc<dyn Signer> = match &online_key {
            OnlineKey::File(path) => Arc::new(load_signer(
                path,
                config.online_key_passphrase.as_deref().map(str::as_bytes),
            )?),
            OnlineKey::Pkcs11(uri) => Arc::new(Pkcs11Signer::from_uri(uri)?),
        };
        let repository = Repository::open(store, signer, config.expiries, now)?;
        let trusted = data_dir.join(TRUSTED_ROOT_FILE);
        if !trusted.exists() {
            let root = std::fs::read(&root_path).map_err(io("reading", &root_path))?;
            std::fs::write(&trusted, root).map_err(io("writing", &trusted))?;
        }
        let status = SigningStatus::default();
        status
            .timestamp_version
            .store(repository.timestamp().signed.version, Ordering::Relaxed);
        Ok(Signing {
            republish: std::sync::atomic::AtomicBool::new(repository.rebuilt()),
            repository: Mutex::new(repository),
            wake: Notify::new(),
            status,
            grace: config.grace,
            _lock: lock,
        })
    }

    /// The repository, for the start-up check of the database against what it publishes.
    pub(crate) fn repository(&self) -> &Mutex<Repository<FsStore>> {
        &self.repository
    }

    /// Every role's version and expiry (see [`Repository::role_summary`]).
    pub async fn role_summary(&self) -> Vec<(String, u64, tufa_metadata::Expires)> {
        self.repository.lock().await.role_summary()
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

    /// Signs every journal entry not yet signed, as one batch per call. Returns the serial
    /// signed up to, if there was anything to sign.
    pub async fn publish_pending(&self, index: &crate::Index) -> Result<Option<i64>> {
        let mut repository = self.repository.lock().await;
        if self.republish.swap(false, Ordering::Relaxed) {
            index.database.reset_signed_serial().await?;
        }
        let signed = index.database.signed_serial().await?;
        self.status.signed_serial.store(signed, Ordering::Relaxed);
        let entries = index.database.journal_after(signed, BATCH_LIMIT).await?;
        let Some(&(last, _)) = entries.last() else {
            return Ok(None);
        };
        let projects: std::collections::BTreeSet<ProjectName> =
            entries.into_iter().map(|(_, project)| project).collect();
        let mut changes = Vec::with_capacity(projects.len());
        for project in projects {
            let page = index.project_page(&project, true).await?;
            changes.push(PageChange {
                project: project.to_string(),
                page: page.map(|(_, bytes)| bytes.to_vec()),
            });
        }
        let published =
            tokio::task::block_in_place(|| repository.publish(&changes, SystemTime::now()))?;
        self.published(&published);
        index.database.set_signed_serial(last).await?;
        self.status.signed_serial.store(last, Ordering::Relaxed);
        tracing::info!(
            serial = last,
            projects = changes.len(),
            timestamp = published.timestamp_version,
            "signed"
        );
        Ok(Some(last))
    }

    /// Re-signs online roles before they expire and removes files past their grace period.
    pub async fn maintain(&self) -> Result<()> {
        let mut repository = self.repository.lock().await;
        let now = SystemTime::now();
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
        let removed = tokio::task::block_in_place(|| repository.collect_garbage(now, self.grace))?;
        if removed > 0 {
            tracing::info!(removed, "removed metadata and targets no longer published");
        }
        Ok(())
    }

    /// The publisher: signs on every wake-up or at least every second, until the process ends.
    pub async fn run(index: Arc<crate::Index>) {
        let Some(signing) = index.signing.as_ref() else {
            return;
        };
        loop {
            let result = async {
                while signing.publish_pending(&index).await?.is_some() {}
                signing.maintain().await
            }
            .await;
            if let Err(error) = result {
                tracing::error!("signing failed, retrying: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            signing.wait(Duration::from_secs(1)).await;
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
