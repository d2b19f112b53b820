//! The updater: the I/O around [`crate::trusted`]. It reads and writes the local cache, fetches
//! through a [`Fetcher`], and walks the delegation graph; every trust decision is the state
//! machine's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tufa_metadata::{Metadata, RoleName, Snapshot, TargetFile, TargetPath};

use crate::cache::{MetadataDir, read_optional, write_atomic};
use crate::error::{Error, Result};
use crate::fetcher::{FetchError, Fetcher};
use crate::names::{metadata_file, target_file_name, target_url_path};
use crate::trusted::{RootUpdate, SnapshotUpdate, TimestampOutcome, TrustedMetadata};
use crate::verify::{check_hashes, check_length};

/// Limits, with python-tuf's `UpdaterConfig` defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdaterConfig {
    /// How many new root versions one refresh follows (spec 5.3.3's Y). As in python-tuf, a
    /// refresh that reaches the limit stops there without an error and goes on with the newest
    /// root it verified; the next refresh continues the chain.
    pub max_root_rotations: u32,
    /// How many targets roles one target search visits, the top-level one included (5.6.7.1).
    pub max_delegations: usize,
    /// Byte limit for root, whose size nothing announces (5.3.3's W).
    pub root_max_length: u64,
    /// Byte limit for timestamp (5.4.1's X).
    pub timestamp_max_length: u64,
    /// Byte limit for snapshot when timestamp does not give its length (5.5.1's Y).
    pub snapshot_max_length: u64,
    /// Byte limit for a targets role when snapshot does not give its length (5.6.1's Z).
    pub targets_max_length: u64,
    /// Under consistent snapshots, fetch targets as `<dir>/<hash>.<basename>`.
    pub prefix_targets_with_hash: bool,
    /// TAP 16: when the timestamp carries a `merkle_root`, fetch a proof per targets role used
    /// instead of the whole snapshot.
    pub snapshot_proofs: bool,
    /// Byte limit for one snapshot proof (a tree of 2^64 leaves needs about 5 KB).
    pub snapshot_proof_max_length: u64,
    /// Witnesses whose cosignatures a transparency log's checkpoint needs, when the root
    /// declares a log.
    pub witnesses: crate::Witnesses,
}

impl Default for UpdaterConfig {
    fn default() -> Self {
        UpdaterConfig {
            // python-tuf since 5.1 and go-tuf v2 allow 256.
            max_root_rotations: 256,
            max_delegations: 32,
            root_max_length: 512_000,
            timestamp_max_length: 16_384,
            snapshot_max_length: 2_000_000,
            targets_max_length: 5_000_000,
            prefix_targets_with_hash: true,
            snapshot_proofs: true,
            snapshot_proof_max_length: 16_384,
            witnesses: crate::Witnesses::default(),
        }
    }
}

/// A target found in trusted metadata, and the role that listed it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetInfo {
    pub path: TargetPath,
    pub file: TargetFile,
    pub role: RoleName,
}

/// A verified artifact in the download directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// False when the cached copy already matched and nothing was downloaded.
    pub downloaded: bool,
}

/// A TUF client for one repository: where its metadata is cached and where it is served.
#[derive(Clone, Debug)]
pub struct Updater<F> {
    fetcher: F,
    config: UpdaterConfig,
    pub(crate) metadata_url: String,
    pub(crate) cache: MetadataDir,
    /// The last accepted TAP 16 proof of each role, `<role>.json`: the per-role rollback floor.
    proofs: MetadataDir,
}

/// Where a trusted state comes from: a refresh, or the local cache alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Repository,
    Cache,
}

/// The cache's subdirectory of TAP 16 proofs, apart so no role's name can collide with them.
const PROOFS_DIR: &str = "snapshot-proofs";
/// A proof's URL: `<metadata URL><snapshot version>.<role>-snapshot.json`.
const PROOF_SUFFIX: &str = "-snapshot.json";

fn with_trailing_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

impl<F: Fetcher + Clone> Updater<F> {
    /// `metadata_dir` must hold a trusted `root.json` by the time [`Updater::refresh`] runs.
    pub fn new(
        metadata_dir: impl Into<PathBuf>,
        metadata_url: &str,
        fetcher: F,
        config: UpdaterConfig,
    ) -> Self {
        let metadata_dir = metadata_dir.into();
        Updater {
            fetcher,
            config,
            metadata_url: with_trailing_slash(metadata_url),
            proofs: MetadataDir::new(metadata_dir.join(PROOFS_DIR)),
            cache: MetadataDir::new(metadata_dir),
        }
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    pub fn config(&self) -> &UpdaterConfig {
        &self.config
    }

    /// Stores `root_bytes` as the trusted root, as shipped with the application (spec 5.2). Not
    /// verified here: the first refresh checks it.
    pub fn initialize(metadata_dir: &Path, root_bytes: &[u8]) -> Result<()> {
        MetadataDir::new(metadata_dir.to_path_buf()).write("root", root_bytes)
    }

    /// Fetches at most `limit` bytes. The limit is checked here, once for every fetcher, rather
    /// than trusted to each implementation: one that ignores it still cannot make the client
    /// accept endless data.
    pub(crate) fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        let endless = || Error::EndlessData {
            url: url.into(),
            limit,
        };
        let bytes = self.fetcher.fetch(url, limit).map_err(|e| match e {
            FetchError::Status(status) => Error::HttpStatus {
                url: url.into(),
                status,
            },
            FetchError::TooLarge => endless(),
            FetchError::Transport(message) => Error::Fetch {
                url: url.into(),
                message,
            },
        })?;
        if bytes.len() as u64 > limit {
            return Err(endless());
        }
        Ok(bytes)
    }

    fn fetch_metadata(&self, role: &str, version: Option<u64>, limit: u64) -> Result<Vec<u8>> {
        let url = format!("{}{}", self.metadata_url, metadata_file(role, version));
        self.fetch(&url, limit)
    }

    /// One update cycle of the client workflow (spec 5.1 to 5.6.6) with `now` as the fixed
    /// update start time: root, timestamp, snapshot and top-level targets. Delegated roles are
    /// loaded later, when a target search reaches them.
    pub fn refresh(&self, now: SystemTime) -> Result<Refreshed<F>> {
        let root_bytes = self
            .cache
            .read("root")?
            .ok_or_else(|| Error::NoTrustedRoot(self.cache.path().to_path_buf()))?;
        let mut root = RootUpdate::new(&root_bytes, now)?;
        for _ in 0..self.config.max_root_rotations {
            let next = root.root().signed.version + 1;
            let bytes = match self.fetch_metadata("root", Some(next), self.config.root_max_length) {
                Ok(bytes) => bytes,
                Err(Error::HttpStatus {
                    status: 403 | 404, ..
                }) => break,
                Err(e) => return Err(e),
            };
            root.update_root(&bytes)?;
            self.cache.write("root", &bytes)?;
        }

        let mut timestamp = root.finish()?;
        let rotated = timestamp.online_keys_rotated();
        if rotated {
            self.cache.remove("timestamp")?;
            self.cache.remove("snapshot")?;
            self.proofs.remove_all()?;
        } else if let Some(bytes) = self.cache.read("timestamp")?
            && let Err(e) = timestamp.load_trusted_timestamp(&bytes)
        {
            tracing::debug!("cached timestamp not used: {e}");
        }
        let bytes = self.fetch_metadata("timestamp", None, self.config.timestamp_max_length)?;
        if timestamp.update_timestamp(&bytes)? == TimestampOutcome::Updated {
            self.check_log(timestamp.root(), &bytes, now)?;
            self.cache.write("timestamp", &bytes)?;
        }

        let mut snapshot = match self.with_proofs(timestamp.finish()?, Source::Repository)? {
            Ok(refreshed) => return Ok(refreshed),
            Err(snapshot) => snapshot,
        };
        let cached_is_current = match self.cache.read("snapshot")? {
            Some(bytes) if !rotated => snapshot.load_trusted_snapshot(&bytes).unwrap_or_else(|e| {
                tracing::debug!("cached snapshot not used: {e}");
                false
            }),
            _ => false,
        };
        if !cached_is_current {
            let meta = snapshot.snapshot_meta();
            let limit = meta.length.unwrap_or(self.config.snapshot_max_length);
            let version = snapshot
                .root()
                .signed
                .consistent_snapshot()
                .then_some(meta.version);
            let bytes = self.fetch_metadata("snapshot", version, limit)?;
            snapshot.update_snapshot(&bytes)?;
            self.cache.write("snapshot", &bytes)?;
        }

        let trusted = Mutex::new(snapshot.finish()?);
        self.load_targets_role(&trusted, &RoleName::targets(), None)?;
        Ok(Refreshed {
            updater: self.clone(),
            trusted,
        })
    }

    /// The trusted state from the local cache alone, without contacting the repository, for a
    /// client that must keep working while the repository is unreachable. Every cached file is
    /// verified as on a refresh and expiry is checked at `now`, so this works only while the
    /// cached timestamp, snapshot and targets are unexpired (the freeze bound TUF promises).
    /// Delegated roles found later are read from the cache too, or fetched if missing.
    pub fn load_offline(&self, now: SystemTime) -> Result<Refreshed<F>> {
        let not_cached = |role: &str| Error::NotLoaded {
            role: role.into(),
            reason: "it is not in the local cache",
        };
        let root_bytes = self
            .cache
            .read("root")?
            .ok_or_else(|| Error::NoTrustedRoot(self.cache.path().to_path_buf()))?;
        let mut timestamp = RootUpdate::new(&root_bytes, now)?.finish()?;
        let bytes = self
            .cache
            .read("timestamp")?
            .ok_or_else(|| not_cached("timestamp"))?;
        timestamp.load_trusted_timestamp(&bytes)?;
        let mut snapshot = match self.with_proofs(timestamp.finish()?, Source::Cache)? {
            Ok(refreshed) => return Ok(refreshed),
            Err(snapshot) => snapshot,
        };
        let bytes = self
            .cache
            .read("snapshot")?
            .ok_or_else(|| not_cached("snapshot"))?;
        if !snapshot.load_trusted_snapshot(&bytes)? {
            // Tell a freeze apart from a cache that an interrupted refresh left half-updated.
            if let Ok(cached) = Metadata::<Snapshot>::from_bytes(&bytes)
                && cached.signed.expires.is_expired_at(now)
            {
                return Err(Error::Expired {
                    role: "snapshot".into(),
                    expires: cached.signed.expires,
                });
            }
            return Err(Error::NotLoaded {
                role: "snapshot".into(),
                reason: "the cached snapshot is not the one the cached timestamp names",
            });
        }
        let mut trusted = snapshot.finish()?;
        let bytes = self
            .cache
            .read("targets")?
            .ok_or_else(|| not_cached("targets"))?;
        trusted.update_targets(&bytes)?;
        Ok(Refreshed {
            updater: self.clone(),
            trusted: Mutex::new(trusted),
        })
    }

    /// Loads a targets role: already trusted in this cycle (re-verified against `delegator`),
    /// else from the cache if it still verifies, else from the repository (spec 5.6.1–5.6.6).
    /// `delegator` is `None` for the top-level targets role, which root delegates. The trusted
    /// state is locked only to verify, never while fetching, so that lookups of other targets
    /// go on while one waits for the repository.
    fn load_targets_role(
        &self,
        trusted: &Mutex<TrustedMetadata>,
        role: &RoleName,
        delegator: Option<&RoleName>,
    ) -> Result<()> {
        let update = |bytes: &[u8]| {
            let mut trusted = lock(trusted);
            match delegator {
                None => trusted.update_targets(bytes),
                Some(delegator) => trusted.update_delegated_targets(role, delegator, bytes),
            }
        };
        if let Some(delegator) = delegator
            && lock(trusted).delegated_targets(role, delegator)?.is_some()
        {
            return Ok(());
        }
        self.load_snapshot_proof(trusted, role)?;
        if let Some(bytes) = self.cache.read(role.as_str())? {
            match update(&bytes) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!("cached {role} not used: {e}"),
            }
        }
        let (limit, version) = {
            let trusted = lock(trusted);
            let meta = trusted.role_meta(role)?;
            let version = trusted
                .root()
                .signed
                .consistent_snapshot()
                .then_some(meta.version);
            (
                meta.length.unwrap_or(self.config.targets_max_length),
                version,
            )
        };
        let bytes = self.fetch_metadata(role.as_str(), version, limit)?;
        update(&bytes)?;
        self.cache.write(role.as_str(), &bytes)
    }
}

impl<F: Fetcher + Clone> Updater<F> {
    /// TAP 16: when the trusted timestamp carries a `merkle_root` (and proofs are not turned
    /// off), the trusted state with the top-level targets role loaded through its proof; else
    /// the snapshot step back, to load the snapshot.
    ///
    /// From the cache, proofs are used only when the last refresh used them: one that found no
    /// proofs and read the snapshot left no proof of the top-level targets role.
    fn with_proofs(
        &self,
        snapshot: SnapshotUpdate,
        source: Source,
    ) -> Result<std::result::Result<Refreshed<F>, SnapshotUpdate>> {
        if !self.config.snapshot_proofs || snapshot.merkle_root()?.is_none() {
            return Ok(Err(snapshot));
        }
        if source == Source::Cache && self.proofs.read(RoleName::targets().as_str())?.is_none() {
            return Ok(Err(snapshot));
        }
        let trusted = Mutex::new(snapshot.finish_with_proofs()?);
        match self.load_targets_role(&trusted, &RoleName::targets(), None) {
            Ok(()) => Ok(Ok(Refreshed {
                updater: self.clone(),
                trusted,
            })),
            // A repository served as plain files (a mirror, a bucket) has no proofs: the whole
            // snapshot, signed, protects as much, only at its full size.
            Err(Error::HttpStatus { url, status: 404 }) if url.ends_with(PROOF_SUFFIX) => {
                tracing::debug!("{url} not found: reading the whole snapshot");
                Ok(Err(snapshot))
            }
            Err(e) => Err(e),
        }
    }

    /// TAP 16: proves `role`'s snapshot entry, when the update uses proofs and it is not proven
    /// yet. The cached proof is the role's rollback floor, and is used as it is when it leads to
    /// the current root (nothing changed, or the repository is unreachable); otherwise the proof
    /// of the snapshot version the timestamp names is fetched.
    fn load_snapshot_proof(&self, trusted: &Mutex<TrustedMetadata>, role: &RoleName) -> Result<()> {
        if !lock(trusted).needs_snapshot_proof(role) {
            return Ok(());
        }
        if let Some(cached) = self.proofs.read(role.as_str())? {
            let mut trusted = lock(trusted);
            match trusted.load_trusted_snapshot_proof(role, &cached) {
                Ok(()) => {
                    if trusted.update_snapshot_proof(role, &cached).is_ok() {
                        return Ok(());
                    }
                }
                Err(e) => tracing::debug!("cached snapshot proof of {role} not used: {e}"),
            }
        }
        let version = lock(trusted).timestamp().signed.snapshot_meta.version;
        let url = format!(
            "{}{version}.{}{PROOF_SUFFIX}",
            self.metadata_url,
            crate::names::encode_component(role.as_str())
        );
        let bytes = self.fetch(&url, self.config.snapshot_proof_max_length)?;
        lock(trusted).update_snapshot_proof(role, &bytes)?;
        self.proofs.write(role.as_str(), &bytes)
    }
}

/// The trusted state stays consistent whatever a panicking holder left undone: each update
/// replaces a role only once it is verified.
fn lock(trusted: &Mutex<TrustedMetadata>) -> MutexGuard<'_, TrustedMetadata> {
    trusted.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The trusted state after a successful refresh: one consistent view of the repository, in
/// which targets are looked up and downloaded. Shared between threads, it looks up and downloads
/// several targets at once; delegated roles one lookup loads serve the others.
#[derive(Debug)]
pub struct Refreshed<F> {
    updater: Updater<F>,
    trusted: Mutex<TrustedMetadata>,
}

/// What one role of a target search says about the target.
enum Visit {
    Found(TargetFile),
    /// The roles it delegates the target's path to, in order, and whether each is terminating.
    Delegates(Vec<(RoleName, bool)>),
}

impl<F: Fetcher + Clone> Refreshed<F> {
    /// The trusted metadata, locked: hold it briefly, as lookups wait for it.
    pub fn trusted(&self) -> MutexGuard<'_, TrustedMetadata> {
        lock(&self.trusted)
    }

    /// Finds `path` by a pre-order depth-first search of the delegation graph (spec 5.6.7):
    /// delegations in listed order, a terminating delegation ends the search below it, each role
    /// visited once, at most `max_delegations` roles. Delegated roles are fetched only when the
    /// search reaches them.
    pub fn target_info(&self, path: &str) -> Result<TargetInfo> {
        let not_found = || Error::TargetNotFound { path: path.into() };
        let target = TargetPath::new(path).map_err(|_| not_found())?;
        let max = self.updater.config.max_delegations;
        let mut stack: Vec<(RoleName, Option<RoleName>)> = vec![(RoleName::targets(), None)];
        let mut visited: HashSet<RoleName> = HashSet::new();
        while let Some((role, delegator)) = stack.pop() {
            if visited.contains(&role) {
                continue;
            }
            if visited.len() >= max {
                return Err(Error::TooManyDelegations {
                    path: path.into(),
                    max,
                });
            }
            let delegates = match self.visit(&role, delegator.as_ref(), &target, path)? {
                Visit::Found(file) => {
                    return Ok(TargetInfo {
                        path: target,
                        file,
                        role,
                    });
                }
                Visit::Delegates(delegates) => delegates,
            };
            let mut children = Vec::new();
            for (child, terminating) in delegates {
                children.push((child, Some(role.clone())));
                if terminating {
                    stack.clear();
                    break;
                }
            }
            visited.insert(role);
            stack.extend(children.into_iter().rev());
        }
        Err(not_found())
    }

    fn visit(
        &self,
        role: &RoleName,
        delegator: Option<&RoleName>,
        target: &TargetPath,
        path: &str,
    ) -> Result<Visit> {
        if delegator.is_some() {
            self.updater
                .load_targets_role(&self.trusted, role, delegator)?;
        }
        let trusted = self.trusted();
        let metadata = trusted.targets_role(role).ok_or_else(|| Error::NotLoaded {
            role: role.to_string(),
            reason: "refresh loads the top-level targets role",
        })?;
        if let Some(file) = metadata.signed.targets.get(target) {
            return Ok(Visit::Found(file.clone()));
        }
        Ok(Visit::Delegates(
            metadata
                .signed
                .delegations
                .as_ref()
                .map(|d| d.roles_for_target(path))
                .unwrap_or_default(),
        ))
    }

    /// Downloads a target into `target_dir` (spec 5.7), as one file named after the target path
    /// ([`crate::target_file_name`]), so the same target always lands at the same path. A cached
    /// copy whose length and hashes still match is returned without downloading.
    pub fn download_target(
        &self,
        info: &TargetInfo,
        target_base_url: &str,
        target_dir: &Path,
    ) -> Result<Artifact> {
        let what = format!("target {}", info.path);
        let referrer = info.role.as_str();
        if info.file.hashes.is_empty() {
            return Err(Error::Unverifiable {
                what,
                reason: format!("{referrer} lists no hashes for it"),
            });
        }
        let verify = |content: &[u8]| {
            check_length(&what, referrer, info.file.length, content)?;
            check_hashes(&what, referrer, &info.file.hashes, content)
        };
        let local = target_dir.join(target_file_name(info.path.as_str()));
        if let Some(content) = read_optional(&local)?
            && verify(&content).is_ok()
        {
            return Ok(Artifact {
                path: local,
                content,
                downloaded: false,
            });
        }
        let consistent = self.trusted().root().signed.consistent_snapshot();
        let hash_prefix = (consistent && self.updater.config.prefix_targets_with_hash)
            .then(|| {
                info.file
                    .hashes
                    .get("sha256")
                    .or_else(|| info.file.hashes.values().next())
                    .map(|h| h.as_str())
            })
            .flatten();
        let url = format!(
            "{}{}",
            with_trailing_slash(target_base_url),
            target_url_path(info.path.as_str(), hash_prefix)
        );
        let content = self.updater.fetch(&url, info.file.length)?;
        verify(&content)?;
        write_atomic(&local, &content, false)?;
        Ok(Artifact {
            path: local,
            content,
            downloaded: true,
        })
    }
}
