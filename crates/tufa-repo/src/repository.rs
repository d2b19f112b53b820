//! The signing side of a running index: the online roles of a PEP 458 repository, kept current.
//!
//! [`Repository::open`] verifies everything on disk before the server trusts it, then
//! [`Repository::publish`] turns changed project pages into new bin roles, a new snapshot and a
//! new timestamp, written in that order so that nothing published ever references a file that is
//! not yet durable. [`Repository::refresh`] re-signs online roles before they expire.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tufa_metadata::{
    DelegatedRoles, Expires, MetaFile, Metadata, Role, RoleName, Root, Signer, Snapshot,
    SnapshotTree, SuccinctRoles, TargetFile, TargetPath, Targets, Timestamp,
};

use crate::bins::{Bin, Listed};
use crate::error::{Error, Result};
use crate::layout::{self, BINS_ROLE, Expiries, METADATA_DIR, View};
use crate::offline::{OfflineState, SigningRequest};
use crate::store::{Flush, Store, map_in_parallel};

/// A project's page in one view to publish, or `None` to withdraw that target.
#[derive(Clone, Debug)]
pub struct PageChange {
    pub project: String,
    pub view: View,
    pub page: Option<Vec<u8>>,
}

/// What one publish or refresh produced.
#[derive(Debug)]
pub struct Published {
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub bins_signed: usize,
    /// Pages that could not be stored: left out of this publish, the others went ahead.
    pub rejected: Vec<RejectedPage>,
}

/// A page as the bin roles list it, from [`Repository::pages`].
#[derive(Clone, Copy, Debug)]
pub struct ListedPage<'a> {
    pub view: View,
    pub project: &'a str,
    pub length: u64,
    pub sha256: &'a [u8; 32],
    /// When its bin role expires: the later, the more recently it was signed.
    pub bin_expires: Expires,
}

/// A project whose pages could not be published, and why: none of its views went out, so that
/// they never disagree with each other.
#[derive(Debug)]
pub struct RejectedPage {
    pub project: String,
    pub error: Error,
}

/// How far the clock may disagree with the newest signed metadata before signing stops, and
/// whether to trust the clock over that evidence once (after a deliberate correction).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub expiries: Expiries,
    pub clock_tolerance: Duration,
    /// Ignores the newest signing time found at open: the operator says the clock is right now
    /// and the newest metadata was signed while it ran ahead.
    pub trust_clock: bool,
}

/// When a repository opening looks for the stored files the timestamp cannot reach (a dead
/// publisher's unfinished batch, what it retired in a queue that died with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    FindAtOpen,
    /// Listing a PyPI-sized bucket for them took most of the two and a half minutes a replica
    /// needed to take over publishing: the caller lists [`layout::PUBLISHED_DIRS`] itself and
    /// hands the files to [`Repository::retire_if_unreachable`] a part at a time, publishing
    /// meanwhile.
    LeftToCaller,
}

/// Five minutes: well above NTP's usual error, far below any role's lifetime.
pub const DEFAULT_CLOCK_TOLERANCE: Duration = Duration::from_secs(300);

impl From<Expiries> for Policy {
    fn from(expiries: Expiries) -> Self {
        Policy {
            expiries,
            clock_tolerance: DEFAULT_CLOCK_TOLERANCE,
            trust_clock: false,
        }
    }
}

/// What the clock looks like against the signed metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockSkew {
    /// The clock is behind the moment the newest metadata was signed: whatever is signed now may
    /// already be expired, so nothing is signed.
    Behind {
        newest_signing: SystemTime,
        by: Duration,
    },
    /// A served role expires further ahead than its lifetime allows (signed while the clock ran
    /// ahead, or under a longer lifetime): it is re-signed, which closes the longer freeze window.
    ExpiryTooFar { role: String, by: Duration },
}

/// The repository's current, verified state, and the online key that advances it.
pub struct Repository<S: Store> {
    store: S,
    signer: Arc<dyn Signer>,
    /// The expiries the operator configured; `expiries` is them within root's declared online
    /// lifetimes, recomputed when a new root is installed.
    configured_expiries: Expiries,
    expiries: Expiries,
    clock_tolerance: Duration,
    /// When the newest metadata was signed, as far as anyone can tell: the clock must not go
    /// back behind it.
    newest_signing: Option<SystemTime>,
    offline: OfflineState,
    succinct: SuccinctRoles,
    bin_roles: HashMap<RoleName, Bin>,
    snapshot: Metadata<Snapshot>,
    timestamp: Metadata<Timestamp>,
    /// Each time a file left the published state, oldest first. A file published again and
    /// retired again is listed twice; only its latest retirement (in `waiting`) counts.
    retired: VecDeque<(String, SystemTime)>,
    /// Every file waiting for removal: since when, and its size.
    waiting: HashMap<String, Waiting>,
    /// What removing every file in `waiting` frees, in bytes.
    waiting_bytes: u64,
    /// The highest version of each role that a failed commit may have written. Such a version
    /// may be on disk or even served (a write can fail after it took effect), so it is never
    /// signed again with other content, and its files are retired once a commit succeeds.
    attempted: HashMap<RoleName, u64>,
    /// Bin roles whose attempted versions a later commit retired while leaving the role as it
    /// was: the highest such version, still never signed again.
    retired_attempts: HashMap<RoleName, u64>,
    rebuilt: bool,
    /// The transparency log every timestamp goes into, when root declares one.
    log: Option<crate::tlog::Log>,
}

/// A file waiting for its grace period to pass before it is removed.
#[derive(Debug)]
struct Waiting {
    since: SystemTime,
    bytes: u64,
}

/// At most this many files are removed per call of [`Repository::collect_garbage`] by the
/// publisher: a backlog (after a restart, or a re-signing of every bin role) is worked off over
/// a few rounds instead of stalling the publishing between them.
pub const GARBAGE_PER_ROUND: usize = 1_000;

/// A page on its way into a bin role: its target, and its listing, stored file name and bytes, or
/// `None` when the project's target is withdrawn. The bytes are the caller's, never copied.
struct StagedPage<'a> {
    project: &'a str,
    target: TargetPath,
    /// The bin role that lists the target (a SHA-256 of its path, so worked out once).
    bin: RoleName,
    file: Option<(Listed, String, &'a [u8])>,
}

impl<'a> StagedPage<'a> {
    fn stored(&self) -> Option<(&str, &'a [u8])> {
        self.file
            .as_ref()
            .map(|(_, path, bytes)| (path.as_str(), *bytes))
    }
}

/// Changes to project pages published in parts and signed together, from
/// [`Repository::import`]: each part's page files are written when it is staged, and
/// [`Import::commit`] signs every bin role the parts changed once, then snapshot and timestamp.
/// A first import of a million pages then signs each of 16,384 bin roles once, not once per
/// part, while only one part's pages are in memory at a time. Dropping an import that was not
/// committed leaves the repository as it was.
pub struct Import<'r, S: Store> {
    repository: &'r mut Repository<S>,
    /// The bin roles to sign. They hold the published roles' target lists, taken rather than
    /// copied (copying and dropping a million listings costs seconds), until the commit.
    bins: BTreeMap<RoleName, Bin>,
    /// What each staged change replaced, oldest first, so that the published roles can be put
    /// back.
    undo: Vec<(TargetPath, Option<Listed>)>,
    /// Page files the staged changes replaced, with their lengths: retired once the commit
    /// succeeds.
    retiring: Vec<(String, Option<u64>)>,
    rejected: Vec<RejectedPage>,
    /// Whether staged page files wait for [`Store::flush`] before the commit signs anything
    /// that refers to them.
    flush: Flush,
    started: SystemTime,
}

/// The file in the TUF store where `tufa restore` records the version every online role must
/// exceed when it is signed anew (outside `metadata/`, so it is never served as TUF metadata).
pub const ONLINE_FLOOR_FILE: &str = "online-floor.json";

const ONLINE_FLOOR_FIELD: &str = "online_versions_above";

/// Records in `store` that online roles signed anew must have versions above `version`.
pub fn record_online_floor<S: Store + ?Sized>(store: &S, version: u64) -> Result<()> {
    let bytes = serde_json::to_vec(&serde_json::json!({ ONLINE_FLOOR_FIELD: version }))
        .map_err(|e| Error::Config(e.to_string()))?;
    store.write_all(&[(ONLINE_FLOOR_FILE.to_string(), bytes)])
}

/// Versions the online roles must start above when they are signed anew.
#[derive(Clone, Copy, Debug, Default)]
struct Floors {
    timestamp: u64,
    snapshot: u64,
    bins: u64,
}

impl Floors {
    /// Raises every floor to the one `tufa restore` recorded in [`ONLINE_FLOOR_FILE`]: versions
    /// the live index published after the backup was taken are not on this disk, yet clients
    /// trust them, so online roles signed anew must go above them.
    fn raise_to_recorded<S: Store>(&mut self, store: &S) -> Result<()> {
        let Some(bytes) = store.read(ONLINE_FLOOR_FILE)? else {
            return Ok(());
        };
        let floor = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|recorded| recorded.get(ONLINE_FLOOR_FIELD)?.as_u64())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{ONLINE_FLOOR_FILE} in the TUF store does not hold {{\"{ONLINE_FLOOR_FIELD}\": <version>}}"
                ))
            })?;
        self.timestamp = self.timestamp.max(floor);
        self.snapshot = self.snapshot.max(floor);
        self.bins = self.bins.max(floor);
        Ok(())
    }

    /// The highest versions in the metadata directory's file names (the timestamp's is read from
    /// the file, unverified: it only has to be exceeded).
    fn on_disk(files: &[String]) -> Self {
        let mut floors = Floors::default();
        for file in files {
            let Some(name) = file.strip_prefix(&format!("{METADATA_DIR}/")) else {
                continue;
            };
            let Some((version, role)) = name.split_once('.') else {
                continue;
            };
            let Ok(version) = version.parse::<u64>() else {
                continue;
            };
            if role == "snapshot.json" {
                floors.snapshot = floors.snapshot.max(version);
            } else if role.starts_with(&format!("{}-", layout::BIN_PREFIX)) {
                floors.bins = floors.bins.max(version);
            }
        }
        floors.timestamp = floors.snapshot;
        floors
    }
}

/// True when every signature comes from a key in `retired`: metadata signed by an online key that
/// was rotated away. Anything else that fails verification (a signature claiming a trusted key,
/// or a key nobody ever trusted) is tampering, and refused.
fn signed_only_by(
    signatures: &[tufa_metadata::Signature],
    retired: &[tufa_metadata::KeyId],
) -> bool {
    !signatures.is_empty() && signatures.iter().all(|s| retired.contains(&s.keyid))
}

/// Online keys that earlier versions of root (for timestamp) and bins (for the bin roles)
/// trusted and the current ones no longer do.
struct RetiredOnlineKeys {
    timestamp: Vec<tufa_metadata::KeyId>,
    bins: Vec<tufa_metadata::KeyId>,
}

fn retired_online_keys<S: Store>(
    store: &S,
    files: &[String],
    current: &OfflineState,
) -> Result<RetiredOnlineKeys> {
    let mut retired = RetiredOnlineKeys {
        timestamp: Vec::new(),
        bins: Vec::new(),
    };
    let current_root = &current.root.signed.roles.timestamp.keyids;
    for version in versions_on_disk(files, "root") {
        let file = layout::metadata_file(&RoleName::root(), version);
        let Some(bytes) = store.read(&file)? else {
            continue;
        };
        let root: Metadata<Root> = parse("root", &file, &bytes)?;
        retired.timestamp.extend(
            root.signed
                .roles
                .timestamp
                .keyids
                .into_iter()
                .filter(|id| !current_root.contains(id)),
        );
    }
    let current_bins = match current.bins.signed.delegations.as_ref().map(|d| &d.roles) {
        Some(DelegatedRoles::Succinct(succinct)) => succinct.keyids.clone(),
        _ => Vec::new(),
    };
    for version in versions_on_disk(files, BINS_ROLE) {
        let file = layout::metadata_file(&RoleName::new(BINS_ROLE)?, version);
        let Some(bytes) = store.read(&file)? else {
            continue;
        };
        let bins: Metadata<Targets> = parse(BINS_ROLE, &file, &bytes)?;
        if let Some(DelegatedRoles::Succinct(succinct)) = bins.signed.delegations.map(|d| d.roles) {
            retired.bins.extend(
                succinct
                    .keyids
                    .into_iter()
                    .filter(|id| !current_bins.contains(id)),
            );
        }
    }
    Ok(retired)
}

pub(crate) fn parse<T: Role>(role: &str, file: &str, bytes: &[u8]) -> Result<Metadata<T>> {
    Metadata::from_bytes(bytes).map_err(|source| Error::InvalidMetadata {
        role: role.into(),
        file: file.into(),
        source,
    })
}

pub(crate) fn untrusted(role: &str, file: &str) -> impl FnOnce(tufa_metadata::Error) -> Error {
    let (role, file) = (role.to_string(), file.to_string());
    move |source| Error::Untrusted { role, file, source }
}

/// Versions of `role` on disk, highest last.
pub(crate) fn versions_on_disk(files: &[String], role: &str) -> Vec<u64> {
    let suffix = format!(".{role}.json");
    let mut versions: Vec<u64> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&format!("{METADATA_DIR}/")))
        .filter_map(|f| f.strip_suffix(&suffix))
        .filter_map(|v| v.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

impl<S: Store> Repository<S> {
    /// Loads and verifies the repository in `store`. Offline roles must be there (from a key
    /// ceremony); online roles are created on first open. Refuses metadata whose signatures,
    /// thresholds or hashes do not verify, and an online key that root or bins do not trust.
    pub fn open(
        store: S,
        signer: Arc<dyn Signer>,
        policy: impl Into<Policy>,
        now: SystemTime,
    ) -> Result<Self> {
        Self::open_with_log(store, signer, policy, None, now, Unreachable::FindAtOpen)
    }

    /// [`Repository::open`] for a repository whose root declares a transparency log: every
    /// timestamp is logged with the key in `log` (see [`crate::tlog`]). `unreachable` says
    /// whether the files nothing reaches are looked for now.
    pub fn open_with_log(
        store: S,
        signer: Arc<dyn Signer>,
        policy: impl Into<Policy>,
        log: Option<&crate::tlog::LogSettings>,
        now: SystemTime,
        unreachable: Unreachable,
    ) -> Result<Self> {
        let policy = policy.into();
        let mut offline = OfflineState::load(&store)?;
        for (role, version) in offline.install_incoming(&store, |_, _| true)? {
            tracing::info!(role, version, "installed a new version of an offline role");
        }
        let log = crate::tlog::open_declared(&store, &offline.root.signed, log)?;
        let started = std::time::Instant::now();
        let files = store.list(METADATA_DIR)?;
        let listed = started.elapsed();
        let succinct = match offline.bins.signed.delegations.as_ref().map(|d| &d.roles) {
            Some(DelegatedRoles::Succinct(succinct)) => succinct.clone(),
            _ => return Err(Error::NotSuccinct("bins delegates no succinct_roles")),
        };
        let root = &offline.root;

        let online = signer.key_id().clone();
        for role in ["timestamp", "snapshot"] {
            let trusted = root
                .signed
                .roles
                .get(role)
                .map(|r| r.keyids.contains(&online));
            if trusted != Some(true) {
                return Err(Error::OnlineKeyNotTrusted {
                    keyid: online.to_string(),
                    role: RoleName::new(role)?,
                    fix: "start the server with the online key named in root (see `tufa status`)",
                });
            }
        }
        if !succinct.keyids.contains(&online) {
            return Err(Error::OnlineKeyNotTrusted {
                keyid: online.to_string(),
                role: RoleName::new(BINS_ROLE)?,
                fix: "bins must delegate the bin roles to the online key",
            });
        }

        let mut floors = Floors::on_disk(&files);
        floors.raise_to_recorded(&store)?;
        let file = layout::metadata_file(&RoleName::timestamp(), 0);
        let newest_signing = if policy.trust_clock {
            None
        } else {
            store.modified(&file)?
        };
        let expiries = policy.expiries.within_declared(&offline.root.signed)?;
        let unsigned = Repository {
            store,
            signer,
            configured_expiries: policy.expiries,
            expiries,
            clock_tolerance: policy.clock_tolerance,
            newest_signing,
            offline,
            succinct,
            bin_roles: HashMap::new(),
            snapshot: Metadata::new(Snapshot::new(
                0,
                Expires::after(now, expiries.snapshot),
                BTreeMap::new(),
            )),
            timestamp: Metadata::new(Timestamp::new(
                0,
                Expires::after(now, expiries.timestamp),
                MetaFile::new(0),
            )),
            retired: VecDeque::new(),
            waiting: HashMap::new(),
            waiting_bytes: 0,
            attempted: HashMap::new(),
            retired_attempts: HashMap::new(),
            rebuilt: false,
            log,
        };
        let Some(timestamp_bytes) = unsigned.store.read(&file)? else {
            return unsigned.create_online_roles(floors, now);
        };
        let timestamp: Metadata<Timestamp> = parse("timestamp", &file, &timestamp_bytes)?;
        floors.timestamp = floors.timestamp.max(timestamp.signed.version);
        let retired = retired_online_keys(&unsigned.store, &files, &unsigned.offline)?;
        if signed_only_by(timestamp.signatures(), &retired.timestamp) {
            tracing::warn!(
                "the online metadata is signed by a key root no longer trusts (an online key \
                 rotation): re-signing every online role with the new key, versions bumped"
            );
            return unsigned.create_online_roles(floors, now);
        }
        let (store, offline, succinct) = (&unsigned.store, &unsigned.offline, &unsigned.succinct);
        let root = &offline.root;
        root.signed
            .verify_delegate("timestamp", &timestamp)
            .map_err(untrusted("timestamp", &file))?;
        let snapshot_meta = &timestamp.signed.snapshot_meta;
        let file = layout::metadata_file(&RoleName::snapshot(), snapshot_meta.version);
        let bytes = store
            .read(&file)?
            .ok_or_else(|| Error::MissingFile(file.clone()))?;
        if MetaFile::with_content(snapshot_meta.version, &bytes).hashes != snapshot_meta.hashes
            && snapshot_meta.hashes.is_some()
        {
            return Err(Error::Mismatch {
                file,
                referrer: "timestamp".into(),
                what: "sha256",
            });
        }
        let snapshot: Metadata<Snapshot> = parse("snapshot", &file, &bytes)?;
        root.signed
            .verify_delegate("snapshot", &snapshot)
            .map_err(untrusted("snapshot", &file))?;

        let reading = std::time::Instant::now();
        let names: Vec<RoleName> = succinct.role_names().collect();
        // Read and checked on many threads: in a bucket each read is a round trip, and 16,384
        // of them one after another kept a replica from serving, or taking over publishing, for
        // most of a minute.
        let bins = map_in_parallel(&names, OPEN_THREADS, |name| {
            let version = snapshot
                .signed
                .role_meta(name)
                .map(|m| m.version)
                .ok_or_else(|| Error::MissingFile(format!("the entry for {name} in {file}")))?;
            let file = layout::metadata_file(name, version);
            let bytes = store
                .read(&file)?
                .ok_or_else(|| Error::MissingFile(file.clone()))?;
            let bin: Metadata<Targets> = parse(name.as_str(), &file, &bytes)?;
            if signed_only_by(bin.signatures(), &retired.bins) {
                return Ok(None);
            }
            offline
                .bins
                .signed
                .verify_delegate(name, &bin)
                .map_err(untrusted(name.as_str(), &file))?;
            // Converted here, one role at a time: the parsed roles of a large repository
            // together would take many times the memory of the compact ones.
            Bin::from_role(bin, bytes.len() as u64)
                .map(Some)
                .map_err(|target| {
                    let what = match target {
                        Some(target) => {
                            format!("lists {target} with more than a length and one sha256")
                        }
                        None => "delegates further or has fields Tufa does not write".to_string(),
                    };
                    Error::Config(format!(
                        "{file} {what}, which Tufa's bin roles never do: this role was signed by \
                         another tool with the online key. Restore the repository from a backup \
                         that Tufa published"
                    ))
                })
        })?;
        let Some(bins) = bins.into_iter().collect::<Option<Vec<Bin>>>() else {
            tracing::warn!(
                "bin roles are signed by a key bins no longer delegates to: re-signing every \
                 online role with the new key, versions bumped"
            );
            return unsigned.create_online_roles(floors, now);
        };
        let bin_roles_read = names.len();
        let bin_roles: HashMap<RoleName, Bin> = names.into_iter().zip(bins).collect();

        let mut repository = Repository {
            bin_roles,
            snapshot,
            timestamp,
            ..unsigned
        };
        repository.attempted = repository.versions_above_current(&files);
        let read = reading.elapsed();
        let scanning = std::time::Instant::now();
        match unreachable {
            Unreachable::FindAtOpen => repository.retire_unreachable(now)?,
            Unreachable::LeftToCaller => repository.retire_superseded_log_files(now),
        }
        // Where a large repository's start goes: in a bucket each of these is round trips.
        tracing::info!(
            metadata_files = files.len(),
            list_metadata_ms = listed.as_millis() as u64,
            bin_roles = bin_roles_read,
            read_bin_roles_ms = read.as_millis() as u64,
            find_unreachable_ms = scanning.elapsed().as_millis() as u64,
            "opened the repository"
        );
        let unproven = match &repository.log {
            Some(log) => !log.proves(&repository.store, &repository.timestamp, &timestamp_bytes)?,
            None => false,
        };
        if unproven {
            tracing::warn!(
                version = repository.timestamp.signed.version,
                "the served timestamp has no whole proof in the transparency log (a crash before \
                 its proof reached the disk), so clients that check the log refuse it: \
                 publishing a new timestamp with its proof"
            );
        }
        if repository.snapshot_is_behind() || unproven {
            repository.commit(BTreeSet::new(), &mut BTreeMap::new(), now)?;
        }
        Ok(repository)
    }

    /// Versions of snapshot and bin roles on disk above the ones the timestamp reaches: a batch
    /// its publisher never finished (a crash, or another replica that lost the publisher lease
    /// in the middle of it). Anyone may have fetched such a file by guessing its name, and a
    /// cache or CDN keeps it as immutable, so it is treated like a failed commit's: never
    /// signed again with other content, retired by the next commit.
    fn versions_above_current(&self, files: &[String]) -> HashMap<RoleName, u64> {
        let mut above: HashMap<RoleName, u64> = HashMap::new();
        for file in files {
            let Some((version, role)) = file
                .strip_prefix(&format!("{METADATA_DIR}/"))
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|name| name.split_once('.'))
            else {
                continue;
            };
            let (Ok(version), Ok(role)) = (version.parse::<u64>(), RoleName::new(role)) else {
                continue;
            };
            let current = if role == RoleName::snapshot() {
                self.snapshot.signed.version
            } else {
                match self.bin_roles.get(&role) {
                    Some(bin) => bin.version,
                    None => continue,
                }
            };
            if version > current {
                let highest = above.entry(role).or_insert(version);
                *highest = (*highest).max(version);
            }
        }
        above
    }

    /// Signs every online role anew: on first open, and after the online key was rotated, when
    /// nothing signed by the old key can be trusted. Versions start above anything on disk, and
    /// the bin roles start empty: the caller republishes every page from its own records.
    fn create_online_roles(mut self, floors: Floors, now: SystemTime) -> Result<Self> {
        let expires = Expires::after(now, self.expiries.bin_roles);
        self.bin_roles = self
            .succinct
            .role_names()
            .map(|name| (name, Bin::empty(floors.bins, expires)))
            .collect();
        self.snapshot.signed.version = floors.snapshot;
        self.timestamp.signed.version = floors.timestamp;
        self.rebuilt = true;
        let all: BTreeSet<RoleName> = self.bin_roles.keys().cloned().collect();
        self.commit(all, &mut BTreeMap::new(), now)?;
        self.retire_unreachable(now)?;
        Ok(self)
    }

    /// True when the online roles were signed anew at open (first open, or an online key
    /// rotation): every project page must be published again.
    pub fn rebuilt(&self) -> bool {
        self.rebuilt
    }

    /// Every role's current version and expiry, the bin roles as one entry (their lowest
    /// version and earliest expiry): what `/metrics` and `tufa status` report.
    pub fn role_summary(&self) -> Vec<(String, u64, Expires)> {
        let mut summary = vec![
            (
                "root".to_string(),
                self.offline.root.signed.version,
                self.offline.root.signed.expires,
            ),
            (
                "targets".to_string(),
                self.offline.targets.signed.version,
                self.offline.targets.signed.expires,
            ),
            (
                BINS_ROLE.to_string(),
                self.offline.bins.signed.version,
                self.offline.bins.signed.expires,
            ),
            (
                "snapshot".to_string(),
                self.snapshot.signed.version,
                self.snapshot.signed.expires,
            ),
            (
                "timestamp".to_string(),
                self.timestamp.signed.version,
                self.timestamp.signed.expires,
            ),
        ];
        if let Some(earliest) = self
            .bin_roles
            .values()
            .min_by_key(|r| r.expires.unix_timestamp())
        {
            let lowest = self
                .bin_roles
                .values()
                .map(|r| r.version)
                .min()
                .unwrap_or(0);
            summary.push((
                format!("{}-*", layout::BIN_PREFIX),
                lowest,
                earliest.expires,
            ));
        }
        summary
    }

    fn snapshot_is_behind(&self) -> bool {
        let listed = |file: &str| self.snapshot.signed.meta.get(file).map(|m| m.version);
        listed("targets.json") != Some(self.offline.targets.signed.version)
            || listed(&format!("{BINS_ROLE}.json")) != Some(self.offline.bins.signed.version)
    }

    /// Installs signing requests from `incoming/` whose thresholds are met, except those that
    /// would stop trusting this server's online key (they wait for a restart with the new key),
    /// then publishes a snapshot and timestamp over the new versions.
    pub fn install_incoming(&mut self, now: SystemTime) -> Result<Option<Published>> {
        let online = self.signer.key_id().clone();
        let installed = self
            .offline
            .install_incoming(&self.store, |_, request| match request {
                SigningRequest::Root(root) => ["timestamp", "snapshot"].iter().all(|role| {
                    root.signed
                        .roles
                        .get(role)
                        .is_some_and(|r| r.keyids.contains(&online))
                }),
                SigningRequest::Bins(bins) => {
                    match bins.signed.delegations.as_ref().map(|d| &d.roles) {
                        Some(DelegatedRoles::Succinct(succinct)) => {
                            succinct.keyids.contains(&online)
                        }
                        _ => false,
                    }
                }
                SigningRequest::Targets(_) => true,
            })?;
        if installed.is_empty() {
            return Ok(None);
        }
        for (role, version) in &installed {
            tracing::info!(role, version, "installed a new version of an offline role");
        }
        self.expiries = self
            .configured_expiries
            .within_declared(&self.offline.root.signed)?;
        let published = self.commit(BTreeSet::new(), &mut BTreeMap::new(), now)?;
        // The versions of targets and bins that the new snapshot no longer lists (rare enough
        // for a listing of the repository).
        self.retire_unreachable(now)?;
        Ok(Some(published))
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.offline.root
    }

    pub fn targets(&self) -> &Metadata<Targets> {
        &self.offline.targets
    }

    pub fn succinct_roles(&self) -> &SuccinctRoles {
        &self.succinct
    }

    /// The transparency log's origin and size, when this repository keeps one.
    pub fn log_status(&self) -> Option<crate::tlog::LogStatus> {
        self.log.as_ref().map(crate::tlog::Log::status)
    }

    /// Adds the witness cosignatures that arrived after their checkpoint was written, and asks
    /// witnesses that lack the latest checkpoint again (see [`crate::tlog`]). Returns how many
    /// cosignatures were added.
    pub fn gather_cosignatures(&self) -> Result<usize> {
        match &self.log {
            Some(log) => log.gather(&self.store),
            None => Ok(0),
        }
    }

    pub fn timestamp(&self) -> &Metadata<Timestamp> {
        &self.timestamp
    }

    pub fn snapshot(&self) -> &Metadata<Snapshot> {
        &self.snapshot
    }

    /// The current bin role of `name`, as last published, without its signatures (it is kept
    /// compact and rebuilt for this).
    pub fn bin_role(&self, name: &RoleName) -> Option<Metadata<Targets>> {
        self.bin_roles.get(name).map(Bin::role)
    }

    /// Every page the bin roles list, bin role by bin role.
    pub fn pages(&self) -> impl Iterator<Item = ListedPage<'_>> {
        self.bin_roles.values().flat_map(|bin| {
            bin.targets().filter_map(|(target, listed)| {
                let (view, project) = layout::page_of(target)?;
                Some(ListedPage {
                    view,
                    project,
                    length: listed.length,
                    sha256: listed.sha256_bytes(),
                    bin_expires: bin.expires,
                })
            })
        })
    }

    /// The published target of a project's page in `view`, if any.
    pub fn page(&self, view: View, project: &str) -> Option<TargetFile> {
        let target = layout::page_target(view, project);
        let bin = self.succinct.role_for_target(target.as_str());
        self.bin_roles.get(&bin)?.get(&target).map(Listed::file)
    }

    /// Whether `targets` delegates the pages of `view` to `bins`: a client looks for a target
    /// only along the delegations, so a page published outside them could never be verified.
    /// Repositories made before the cooldown view delegate `simple/*/index.json` alone.
    pub fn delegates(&self, view: View) -> bool {
        delegates(&self.offline.targets.signed, view)
    }

    /// Publishes changed project pages: page files first, then the bin roles that list them
    /// with the snapshot, then timestamp, each stage durable before the next starts. A page that
    /// cannot be stored (a name the file system refuses, a directory that cannot be written) is
    /// left out and returned in [`Published::rejected`]; the others are published all the same.
    pub fn publish(&mut self, changes: &[PageChange], now: SystemTime) -> Result<Published> {
        let mut import = self.import(now)?;
        import.stage(changes)?;
        import.commit(now)
    }

    /// Starts publishing changes in parts signed together (see [`Import`]): what a bulk import
    /// (a first publish, every page published again) uses instead of one [`Repository::publish`]
    /// per part, which would sign most bin roles again for every part.
    pub fn import(&mut self, now: SystemTime) -> Result<Import<'_, S>> {
        self.check_clock(now)?;
        Ok(Import {
            repository: self,
            bins: BTreeMap::new(),
            undo: Vec::new(),
            retiring: Vec::new(),
            rejected: Vec::new(),
            flush: Flush::NotNeeded,
            started: now,
        })
    }

    /// Writes the page files, all in one batch when it can, durable by the next
    /// [`Store::flush`] when the store says so; when the batch fails, project by project and
    /// durably, so that a project whose page the store refuses is found, taken out of `pages`
    /// with all its views and reported instead of stopping every other project with it.
    fn store_pages(&self, pages: &mut Vec<StagedPage>) -> (Vec<RejectedPage>, Flush) {
        let files: Vec<(&str, &[u8])> = pages.iter().filter_map(StagedPage::stored).collect();
        if files.is_empty() {
            return (Vec::new(), Flush::NotNeeded);
        }
        if let Ok(flush) = self.store.write_immutable_unflushed(&files) {
            return (Vec::new(), flush);
        }
        drop(files);
        let projects: BTreeSet<&str> = pages.iter().map(|page| page.project).collect();
        let mut rejected = Vec::new();
        for project in projects {
            let files: Vec<(&str, &[u8])> = pages
                .iter()
                .filter(|page| page.project == project)
                .filter_map(StagedPage::stored)
                .collect();
            if let Err(error) = self.store.write_immutable(&files) {
                rejected.push(RejectedPage {
                    project: project.to_string(),
                    error,
                });
            }
        }
        pages.retain(|page| !rejected.iter().any(|r| r.project == page.project));
        (rejected, Flush::NotNeeded)
    }

    /// Re-signs online roles that have used half of their lifetime, so that they never expire
    /// while the server runs, and roles that expire further ahead than their lifetime allows
    /// (signed while the clock ran ahead). Returns `None` when nothing needed signing.
    pub fn refresh(&mut self, now: SystemTime) -> Result<Option<Published>> {
        let tolerance = self.clock_tolerance;
        let due = |expires: &Expires, lifetime: Duration| {
            let expires = expires.to_system_time();
            expires <= now + lifetime / 2 || expires > now + lifetime + tolerance
        };
        let stale: BTreeSet<RoleName> = self
            .bin_roles
            .iter()
            .filter(|(_, role)| due(&role.expires, self.expiries.bin_roles))
            .map(|(name, _)| name.clone())
            .collect();
        if stale.is_empty()
            && !due(&self.snapshot.signed.expires, self.expiries.snapshot)
            && !due(&self.timestamp.signed.expires, self.expiries.timestamp)
        {
            return Ok(None);
        }
        self.commit(stale, &mut BTreeMap::new(), now).map(Some)
    }

    /// How the clock compares with the signed metadata, if it disagrees beyond the tolerance.
    pub fn clock_skew(&self, now: SystemTime) -> Option<ClockSkew> {
        if let Some(newest) = self.newest_signing
            && let Ok(by) = newest.duration_since(now)
            && by > self.clock_tolerance
        {
            return Some(ClockSkew::Behind {
                newest_signing: newest,
                by,
            });
        }
        let too_far = |role: &str, expires: &Expires, lifetime: Duration| {
            let by = expires
                .to_system_time()
                .duration_since(now + lifetime)
                .ok()?;
            (by > self.clock_tolerance).then(|| ClockSkew::ExpiryTooFar {
                role: role.to_string(),
                by,
            })
        };
        too_far(
            "timestamp",
            &self.timestamp.signed.expires,
            self.expiries.timestamp,
        )
        .or_else(|| {
            too_far(
                "snapshot",
                &self.snapshot.signed.expires,
                self.expiries.snapshot,
            )
        })
        .or_else(|| {
            self.bin_roles.iter().find_map(|(name, role)| {
                too_far(name.as_str(), &role.expires, self.expiries.bin_roles)
            })
        })
    }

    /// Refuses to sign while the clock is behind the newest signed metadata: metadata signed now
    /// could already be expired for every client with a correct clock.
    fn check_clock(&self, now: SystemTime) -> Result<()> {
        match self.clock_skew(now) {
            Some(ClockSkew::Behind { newest_signing, by }) => Err(Error::ClockBehind {
                newest_signing: Expires::after(newest_signing, Duration::ZERO).to_string(),
                by_seconds: by.as_secs(),
            }),
            _ => Ok(()),
        }
    }

    /// The next version of `role` after `current`, above any version a failed commit tried.
    fn next_version(&self, role: &RoleName, current: u64) -> u64 {
        let tried = |versions: &HashMap<RoleName, u64>| versions.get(role).copied().unwrap_or(0);
        let logged = match &self.log {
            Some(log) if role == &RoleName::timestamp() => log.last_version().unwrap_or(0),
            _ => 0,
        };
        current
            .max(tried(&self.attempted))
            .max(tried(&self.retired_attempts))
            .max(logged)
            + 1
    }

    /// Signs and writes new versions of the `resign` bin roles and of the `changed` ones (bin
    /// roles with new targets, built on copies), then a snapshot and a timestamp over them. The
    /// repository's state changes only once the timestamp is written: a signer or store that
    /// fails at any step leaves it as it was, and the next commit signs a complete snapshot with
    /// versions above anything the failed one may have written.
    fn commit(
        &mut self,
        resign: BTreeSet<RoleName>,
        changed: &mut BTreeMap<RoleName, Bin>,
        now: SystemTime,
    ) -> Result<Published> {
        self.check_clock(now)?;
        for name in resign {
            if let std::collections::btree_map::Entry::Vacant(entry) = changed.entry(name) {
                let current = self
                    .bin_roles
                    .get(entry.key())
                    .ok_or_else(|| Error::Missing(entry.key().to_string()))?;
                entry.insert(current.clone());
            }
        }
        let snapshot_role = RoleName::snapshot();
        let timestamp_role = RoleName::timestamp();
        let mut versions: Vec<(RoleName, u64)> = Vec::with_capacity(changed.len() + 2);
        for (name, role) in changed.iter_mut() {
            let current = self.bin_roles.get(name).map_or(0, |r| r.version);
            role.version = self.next_version(name, current);
            role.expires = Expires::after(now, self.expiries.bin_roles);
            versions.push((name.clone(), role.version));
        }
        let snapshot_version = self.next_version(&snapshot_role, self.snapshot.signed.version);
        let timestamp_version = self.next_version(&timestamp_role, self.timestamp.signed.version);
        versions.push((snapshot_role.clone(), snapshot_version));
        versions.push((timestamp_role.clone(), timestamp_version));

        let result = self.sign_and_write(changed, snapshot_version, timestamp_version, now);
        let (snapshot, timestamp) = match result {
            Ok(signed) => signed,
            Err(error) => {
                for (role, version) in versions {
                    let attempted = self.attempted.entry(role).or_insert(0);
                    *attempted = (*attempted).max(version);
                }
                return Err(error);
            }
        };

        let mut retiring = Vec::new();
        // The version superseded (with its file's length when known), and what failed commits
        // wrote above it and nobody retired yet.
        let mut retire_superseded = |role: &RoleName,
                                     (current, length): (u64, Option<u64>),
                                     attempted: Option<u64>,
                                     retired: Option<u64>| {
            if role == &timestamp_role {
                return;
            }
            if current > 0 {
                retiring.push((layout::metadata_file(role, current), length));
            }
            let first = current.max(retired.unwrap_or(0)) + 1;
            for version in first..=attempted.unwrap_or(0) {
                retiring.push((layout::metadata_file(role, version), None));
            }
        };
        let bins_signed = changed.len();
        for (name, role) in std::mem::take(changed) {
            let current = self
                .bin_roles
                .get(&name)
                .map_or((0, None), |r| (r.version, r.file_length));
            let attempted = self.attempted.remove(&name);
            let retired = self.retired_attempts.remove(&name);
            retire_superseded(&name, current, attempted, retired);
            self.bin_roles.insert(name, role);
        }
        for role in [&snapshot_role, &timestamp_role] {
            let current = if role == &snapshot_role {
                self.snapshot.signed.version
            } else {
                self.timestamp.signed.version
            };
            let attempted = self.attempted.remove(role);
            retire_superseded(role, (current, None), attempted, None);
        }
        // Bin roles this commit left as they were: what failed commits wrote of them is
        // unreachable from the new snapshot.
        for (name, attempted) in std::mem::take(&mut self.attempted) {
            let current = self.bin_roles.get(&name).map_or(0, |r| r.version);
            let retired = self.retired_attempts.get(&name).copied().unwrap_or(0);
            for version in current.max(retired) + 1..=attempted {
                retiring.push((layout::metadata_file(&name, version), None));
            }
            self.retired_attempts.insert(name, attempted.max(retired));
        }
        self.snapshot = snapshot;
        self.timestamp = timestamp;
        self.newest_signing = Some(now);
        if let Some(log) = &self.log {
            retiring.extend(log.take_superseded().into_iter().map(|file| (file, None)));
        }
        self.retire(retiring, now);
        Ok(Published {
            timestamp_version: self.timestamp.signed.version,
            snapshot_version: self.snapshot.signed.version,
            bins_signed,
            rejected: Vec::new(),
        })
    }

    /// The writing half of [`Repository::commit`]: touches nothing but `changed` and the store.
    fn sign_and_write(
        &self,
        changed: &mut BTreeMap<RoleName, Bin>,
        snapshot_version: u64,
        timestamp_version: u64,
        now: SystemTime,
    ) -> Result<(Metadata<Snapshot>, Metadata<Timestamp>)> {
        // Signed and written a part at a time: the files of every bin role of a PyPI-sized
        // repository would take a hundred MiB at once. The last part goes with the snapshot.
        // Nothing reaches these files before the timestamp: every part waits on the disk once,
        // together, before it is written.
        let mut roles: Vec<(&RoleName, &mut Bin)> = changed.iter_mut().collect();
        let parts = roles.len().div_ceil(SIGNED_AT_ONCE);
        let mut bin_files = Vec::new();
        let mut flush = Flush::NotNeeded;
        for (n, part) in roles.chunks_mut(SIGNED_AT_ONCE).enumerate() {
            bin_files = sign_in_parallel(part, self.signer.as_ref())?;
            if n + 1 < parts {
                let borrowed: Vec<(&str, &[u8])> = bin_files
                    .iter()
                    .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
                    .collect();
                if self.store.write_immutable_unflushed(&borrowed)? == Flush::Needed {
                    flush = Flush::Needed;
                }
            }
        }
        drop(roles);

        let mut meta = self.snapshot.signed.meta.clone();
        meta.insert(
            "targets.json".into(),
            MetaFile::new(self.offline.targets.signed.version),
        );
        meta.insert(
            format!("{BINS_ROLE}.json"),
            MetaFile::new(self.offline.bins.signed.version),
        );
        for (name, role) in changed.iter() {
            meta.insert(format!("{name}.json"), MetaFile::new(role.version));
        }
        let mut snapshot = Metadata::new(Snapshot::new(
            snapshot_version,
            Expires::after(now, self.expiries.snapshot),
            meta,
        ));
        snapshot.sign(self.signer.as_ref())?;
        let snapshot_bytes = snapshot.to_bytes()?;
        let snapshot_file = layout::metadata_file(&RoleName::snapshot(), snapshot_version);

        let mut timestamp = Metadata::new(Timestamp::new(
            timestamp_version,
            Expires::after(now, self.expiries.timestamp),
            MetaFile::with_content(snapshot_version, &snapshot_bytes),
        ));
        // TAP 16: clients that read proofs fetch one per role they use instead of the snapshot.
        timestamp
            .signed
            .set_merkle_root(&SnapshotTree::new(&snapshot.signed.meta).root());
        timestamp.sign(self.signer.as_ref())?;
        let timestamp_file = (
            layout::metadata_file(&RoleName::timestamp(), 0),
            timestamp.to_bytes()?,
        );
        // The bin roles and the snapshot in one batch: nothing reaches either before the
        // timestamp, and a small round then waits on the disk twice instead of three times.
        let batch: Vec<(&str, &[u8])> = bin_files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
            .chain(std::iter::once((
                snapshot_file.as_str(),
                snapshot_bytes.as_slice(),
            )))
            .collect();
        match &self.log {
            Some(log) => {
                if flush == Flush::Needed {
                    self.store.flush()?;
                }
                log.append(&self.store, &timestamp, &batch, timestamp_file)?;
            }
            None => {
                if self.store.write_immutable_unflushed(&batch)? == Flush::Needed {
                    flush = Flush::Needed;
                }
                if flush == Flush::Needed {
                    self.store.flush()?;
                }
                self.store.write_all(&[timestamp_file])?;
            }
        }
        Ok((snapshot, timestamp))
    }

    /// Removes up to `limit` files that left the published state at least `grace` ago; clients
    /// that fetched the timestamp before them can still finish their update. Root versions are
    /// never removed, nor a file published again since it was retired (a page published again
    /// by a retry), and a file retired again waits for its latest retirement's grace period. A
    /// removal that fails keeps that file and every later one queued for the next call.
    pub fn collect_garbage(
        &mut self,
        now: SystemTime,
        grace: Duration,
        limit: usize,
    ) -> Result<usize> {
        let mut removed = 0;
        while removed < limit
            && let Some((_, since)) = self.retired.front()
            && *since + grace <= now
        {
            let Some((file, since)) = self.retired.pop_front() else {
                break;
            };
            if self.waiting.get(&file).is_none_or(|w| w.since != since) {
                continue;
            }
            let published = self.is_published(&file);
            if !published {
                if let Err(error) = self.store.remove(&file) {
                    self.retired.push_front((file, since));
                    return Err(error);
                }
                removed += 1;
            }
            if let Some(done) = self.waiting.remove(&file) {
                self.waiting_bytes = self.waiting_bytes.saturating_sub(done.bytes);
            }
        }
        Ok(removed)
    }

    /// How many files wait for their grace period to pass, and how many bytes removing them
    /// frees.
    pub fn awaiting_removal(&self) -> (usize, u64) {
        (self.waiting.len(), self.waiting_bytes)
    }

    /// Queues `files` for removal from `now`, each with its length when known. The others are
    /// asked of the store, on several threads (a round trip each in a bucket, and a batch
    /// supersedes up to every bin role); one that does not exist (a write that failed before it
    /// took effect) has nothing to remove.
    fn retire(&mut self, files: Vec<(String, Option<u64>)>, now: SystemTime) {
        let unknown: Vec<&str> = files
            .iter()
            .filter(|(_, length)| length.is_none())
            .map(|(file, _)| file.as_str())
            .collect();
        // An error leaves the size unknown, but the file maybe there: removal will tell.
        let asked: HashMap<&str, Option<u64>> = unknown
            .iter()
            .copied()
            .zip(
                self.store
                    .sizes(&unknown)
                    .into_iter()
                    .map(|size| size.unwrap_or(Some(0))),
            )
            .collect();
        let sizes: Vec<Option<u64>> = files
            .iter()
            .map(|(file, length)| length.or_else(|| asked.get(file.as_str()).copied().flatten()))
            .collect();
        drop(asked);
        for ((file, _), size) in files.into_iter().zip(sizes) {
            let Some(bytes) = size else {
                continue;
            };
            let waiting = Waiting { since: now, bytes };
            if let Some(earlier) = self.waiting.insert(file.clone(), waiting) {
                self.waiting_bytes = self.waiting_bytes.saturating_sub(earlier.bytes);
            }
            self.waiting_bytes += bytes;
            self.retired.push_back((file, now));
        }
    }

    /// True when the current timestamp reaches `file` (a path relative to the store), or it is
    /// a root, which stays for clients that update from any earlier root.
    fn is_published(&self, file: &str) -> bool {
        if let Some(name) = file.strip_prefix(&format!("{METADATA_DIR}/")) {
            if name == "timestamp.json" || name.ends_with(".root.json") {
                return true;
            }
            let Some((version, role)) = name
                .strip_suffix(".json")
                .and_then(|name| name.split_once('.'))
            else {
                return false;
            };
            let Ok(version) = version.parse::<u64>() else {
                return false;
            };
            let current = match role {
                "snapshot" => Some(self.snapshot.signed.version),
                "targets" => Some(self.offline.targets.signed.version),
                BINS_ROLE => Some(self.offline.bins.signed.version),
                bin => RoleName::new(bin)
                    .ok()
                    .and_then(|name| self.bin_roles.get(&name))
                    .map(|role| role.version),
            };
            return current == Some(version);
        }
        let Some((target, sha256)) = layout::target_of_file(file) else {
            return false;
        };
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(sha256, &mut digest).is_err() {
            return false;
        }
        self.bin_roles
            .get(&self.succinct.role_for_target(target.as_str()))
            .and_then(|role| role.get(&target))
            .is_some_and(|listed| *listed.sha256_bytes() == digest)
    }

    /// Marks every file the current timestamp cannot reach (and not already waiting) as retired
    /// from `now`: after a restart nobody knows since when they were unreachable, so they get a
    /// full grace period.
    fn retire_unreachable(&mut self, now: SystemTime) -> Result<()> {
        // Each stored file is looked up as the listing streams past: the paths of every listed
        // target and of every stored file, held at once, took more memory than the whole
        // repository does once open (330 MiB more at a million pages).
        let mut unreachable: Vec<(String, Option<u64>)> = Vec::new();
        for dir in layout::PUBLISHED_DIRS {
            self.store.list_each(dir, &mut |file, length| {
                if self.is_unreachable(&file) {
                    unreachable.push((file, length));
                }
                ControlFlow::Continue(())
            })?;
        }
        self.retire(unreachable, now);
        self.retire_superseded_log_files(now);
        Ok(())
    }

    /// Whether nothing the timestamp reaches is `file`, and it does not wait for removal yet.
    fn is_unreachable(&self, file: &str) -> bool {
        !self.is_published(file) && !self.waiting.contains_key(file)
    }

    /// Retires those of `files` (paths in the store, with their lengths when known) that
    /// nothing reaches, as a repository opened with [`Repository::open_with_log`] does with
    /// every stored file; returns how many. Safe beside publishing: a file written since
    /// (a page staged for a commit) and published by the time its grace period ends is not
    /// removed, since removal checks again.
    pub fn retire_if_unreachable(
        &mut self,
        files: Vec<(String, Option<u64>)>,
        now: SystemTime,
    ) -> usize {
        let unreachable: Vec<(String, Option<u64>)> = files
            .into_iter()
            .filter(|(file, _)| self.is_unreachable(file))
            .collect();
        let count = unreachable.len();
        self.retire(unreachable, now);
        count
    }

    /// The log's tiles and bundles that newer ones superseded, found when it was opened.
    fn retire_superseded_log_files(&mut self, now: SystemTime) {
        if let Some(log) = &self.log {
            let superseded: Vec<(String, Option<u64>)> = log
                .take_superseded()
                .into_iter()
                .filter(|f| !self.waiting.contains_key(f))
                .map(|f| (f, None))
                .collect();
            self.retire(superseded, now);
        }
    }
}

impl<S: Store> Import<'_, S> {
    /// Writes the page files of `changes`, durable by the time [`Import::commit`] signs
    /// anything, and lists them in their bin roles, unsigned until then. A page exactly as
    /// published (a cooldown page an upload left as it was, a retry of a page that went out)
    /// needs neither a write nor a bin role signed anew. Pages the store refuses are left out,
    /// and reported by the commit.
    pub fn stage(&mut self, changes: &[PageChange]) -> Result<()> {
        let mut pages: Vec<StagedPage> = changes
            .iter()
            .map(|change| {
                let target = layout::page_target(change.view, &change.project);
                let file = change.page.as_deref().map(|page| {
                    let digest = ring::digest::digest(&ring::digest::SHA256, page);
                    let mut sha256 = [0; 32];
                    sha256.copy_from_slice(digest.as_ref());
                    let listed = Listed::new(page.len() as u64, sha256);
                    let stored = layout::target_file(&target, &listed.sha256());
                    (listed, stored, page)
                });
                StagedPage {
                    project: &change.project,
                    bin: self.repository.succinct.role_for_target(target.as_str()),
                    target,
                    file,
                }
            })
            .collect();
        pages.retain(|page| !self.is_listed(page));
        let (rejected, flush) = self.repository.store_pages(&mut pages);
        self.rejected.extend(rejected);
        if flush == Flush::Needed {
            self.flush = Flush::Needed;
        }

        let repository = &mut *self.repository;
        for StagedPage {
            target, file, bin, ..
        } in pages
        {
            let role = match self.bins.entry(bin) {
                std::collections::btree_map::Entry::Occupied(role) => role.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    let Some(current) = repository.bin_roles.get_mut(entry.key()) else {
                        return Err(Error::Missing(entry.key().to_string()));
                    };
                    entry.insert(current.take())
                }
            };
            let old = match file {
                Some((listed, _, _)) => role.insert(&target, listed),
                None => role.remove(&target),
            };
            let new_sha256 = role.get(&target).map(Listed::sha256_bytes);
            if let Some(old) = old
                && Some(old.sha256_bytes()) != new_sha256
            {
                self.retiring.push((
                    layout::target_file(&target, &old.sha256()),
                    Some(old.length),
                ));
            }
            self.undo.push((target, old));
        }
        Ok(())
    }

    /// The listing `page`'s target has in this import so far.
    fn is_listed(&self, page: &StagedPage) -> bool {
        let listed = self
            .bins
            .get(&page.bin)
            .or_else(|| self.repository.bin_roles.get(&page.bin))
            .and_then(|role| role.get(&page.target));
        match (&page.file, listed) {
            (Some((staged, _, _)), Some(listed)) => staged == listed,
            (None, None) => true,
            _ => false,
        }
    }

    /// Signs every bin role the staged changes touched, once, then a snapshot and a timestamp
    /// over them. A commit that fails leaves the repository as it was before the import.
    pub fn commit(mut self, now: SystemTime) -> Result<Published> {
        let rejected = std::mem::take(&mut self.rejected);
        if self.bins.is_empty() {
            return Ok(Published {
                timestamp_version: self.repository.timestamp.signed.version,
                snapshot_version: self.repository.snapshot.signed.version,
                bins_signed: 0,
                rejected,
            });
        }
        let mut bins = std::mem::take(&mut self.bins);
        let flushed = match self.flush {
            Flush::Needed => self.repository.store.flush(),
            Flush::NotNeeded => Ok(()),
        };
        match flushed.and_then(|()| self.repository.commit(BTreeSet::new(), &mut bins, now)) {
            Ok(mut published) => {
                self.undo = Vec::new();
                let retiring = std::mem::take(&mut self.retiring);
                self.repository.retire(retiring, now);
                published.rejected = rejected;
                Ok(published)
            }
            Err(error) => {
                self.bins = bins;
                self.put_back(now);
                Err(error)
            }
        }
    }

    /// Gives the published bin roles back the target lists taken for this import, with every
    /// staged change reverted (newest first, so that a target changed twice ends as it was). The
    /// page files the changes wrote are on disk, but nothing reaches them: they are retired.
    fn put_back(&mut self, now: SystemTime) {
        let mut bins = std::mem::take(&mut self.bins);
        let mut written = Vec::new();
        for (target, old) in std::mem::take(&mut self.undo).into_iter().rev() {
            let name = self.repository.succinct.role_for_target(target.as_str());
            let Some(role) = bins.get_mut(&name) else {
                continue;
            };
            let new = match old {
                Some(old) => role.insert(&target, old),
                None => role.remove(&target),
            };
            let old_sha256 = role.get(&target).map(Listed::sha256_bytes);
            if let Some(new) = new
                && old_sha256 != Some(new.sha256_bytes())
            {
                written.push((
                    layout::target_file(&target, &new.sha256()),
                    Some(new.length),
                ));
            }
        }
        for (name, role) in bins {
            if let Some(current) = self.repository.bin_roles.get_mut(&name) {
                current.put_back(role);
            }
        }
        self.repository.retire(written, now);
    }
}

impl<S: Store> Drop for Import<'_, S> {
    /// An import dropped before its commit (or after a commit that failed, which put everything
    /// back already) leaves the repository as it was.
    fn drop(&mut self) {
        if !self.bins.is_empty() {
            self.put_back(self.started);
        }
    }
}

/// Threads that read bin roles when a repository is opened: the reads wait on the store (a
/// bucket's round trips), not on the CPU.
const OPEN_THREADS: usize = 16;

/// How many bin roles a commit signs before it writes them.
const SIGNED_AT_ONCE: usize = 1024;

/// Signs every role in `roles` and encodes each as its file, on one thread per core: a batch of
/// pages changes most of the 16,384 bin roles of a PyPI-sized repository, and serializing and
/// signing them is the bulk of the CPU time a publish takes.
fn sign_in_parallel(
    roles: &mut [(&RoleName, &mut Bin)],
    signer: &dyn Signer,
) -> Result<Vec<(String, Vec<u8>)>> {
    // Below this many roles per thread, a thread costs more than it saves.
    const PER_THREAD: usize = 64;
    let threads = crate::store::cores().min(roles.len() / PER_THREAD).max(1);
    let chunk = roles.len().div_ceil(threads).max(1);
    let sign = |part: &mut [(&RoleName, &mut Bin)]| -> Result<Vec<_>> {
        part.iter_mut()
            .map(|(name, bin)| {
                let bytes = bin.role().sign_to_bytes(signer)?;
                bin.file_length = Some(bytes.len() as u64);
                bin.shrink_to_fit();
                Ok((layout::metadata_file(name, bin.version), bytes))
            })
            .collect()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = roles
            .chunks_mut(chunk)
            .map(|part| scope.spawn(|| sign(part)))
            .collect();
        let mut files = Vec::new();
        for worker in workers {
            let signed = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            files.extend(signed);
        }
        Ok(files)
    })
}

/// Whether `targets` delegates the pages of `view` to `bins` (the first delegation that matches
/// decides, as a client searches).
pub fn delegates(targets: &Targets, view: View) -> bool {
    let target = layout::page_target(view, "any");
    targets
        .delegations
        .as_ref()
        .and_then(|delegations| match &delegations.roles {
            DelegatedRoles::Roles(roles) => roles
                .iter()
                .find(|role| role.is_delegated_path(target.as_str())),
            DelegatedRoles::Succinct(_) => None,
        })
        .is_some_and(|role| role.name.as_str() == BINS_ROLE)
}

/// Loads `1.root.json` up to the newest root, checking that each version is signed by a
/// threshold of its predecessor's root keys and of its own (the chain clients follow).
pub(crate) fn load_root_chain(store: &impl Store, files: &[String]) -> Result<Metadata<Root>> {
    let versions = versions_on_disk(files, "root");
    if versions.first() != Some(&1) {
        return Err(Error::Missing("root (1.root.json)".into()));
    }
    let mut trusted: Option<Metadata<Root>> = None;
    for (expected, version) in (1..).zip(versions) {
        let file = layout::metadata_file(&RoleName::root(), version);
        if version != expected {
            return Err(Error::MissingFile(layout::metadata_file(
                &RoleName::root(),
                expected,
            )));
        }
        let bytes = store
            .read(&file)?
            .ok_or_else(|| Error::MissingFile(file.clone()))?;
        let root: Metadata<Root> = parse("root", &file, &bytes)?;
        if root.signed.version != version {
            return Err(Error::Mismatch {
                file,
                referrer: "its file name".into(),
                what: "version",
            });
        }
        if let Some(previous) = &trusted {
            previous
                .signed
                .verify_delegate("root", &root)
                .map_err(untrusted("root", &file))?;
        }
        root.signed
            .verify_delegate("root", &root)
            .map_err(untrusted("root", &file))?;
        trusted = Some(root);
    }
    trusted.ok_or_else(|| Error::Missing("root".into()))
}

#[cfg(test)]
mod tests {
    use tufa_metadata::{
        DelegatedRole, DelegatedRoles, Delegations, Expires, PathMatcher, RoleName, Targets,
        Threshold,
    };

    use super::*;

    fn targets_delegating(patterns: &[&str]) -> Targets {
        let mut targets = Targets::new(1, Expires::after(SystemTime::UNIX_EPOCH, Duration::ZERO));
        targets.delegations = Some(Delegations {
            keys: BTreeMap::new(),
            roles: DelegatedRoles::Roles(vec![DelegatedRole {
                name: RoleName::new(BINS_ROLE).unwrap(),
                keyids: Vec::new(),
                threshold: Threshold::ONE,
                terminating: true,
                paths: PathMatcher::Paths(patterns.iter().map(|p| p.to_string()).collect()),
                unrecognized: BTreeMap::new(),
            }]),
            unrecognized: BTreeMap::new(),
        });
        targets
    }

    #[test]
    fn a_repository_made_before_the_cooldown_view_does_not_delegate_it() {
        let old = targets_delegating(&["simple/*/index.json"]);
        assert!(delegates(&old, View::Simple));
        assert!(!delegates(&old, View::Cooldown));
        let patterns: Vec<&str> = View::ALL.iter().map(|view| view.pattern()).collect();
        let new = targets_delegating(&patterns);
        assert!(View::ALL.iter().all(|&view| delegates(&new, view)));
    }
}
