//! The signing side of a running index: the online roles of a PEP 458 repository, kept current.
//!
//! [`Repository::open`] verifies everything on disk before the server trusts it, then
//! [`Repository::publish`] turns changed project pages into new bin roles, a new snapshot and a
//! new timestamp, written in that order so that nothing published ever references a file that is
//! not yet durable. [`Repository::refresh`] re-signs online roles before they expire.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tufa_metadata::{
    DelegatedRoles, Expires, HexDigest, MetaFile, Metadata, Role, RoleName, Root, Signer, Snapshot,
    SuccinctRoles, TargetFile, TargetPath, Targets, Timestamp,
};

use crate::error::{Error, Result};
use crate::layout::{self, BINS_ROLE, Expiries, METADATA_DIR, TARGETS_DIR};
use crate::offline::{OfflineState, SigningRequest};
use crate::store::Store;

/// A project page to publish, or `None` to withdraw a project's target.
#[derive(Clone, Debug)]
pub struct PageChange {
    pub project: String,
    pub page: Option<Vec<u8>>,
}

/// What one publish or refresh produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub bins_signed: usize,
}

/// The repository's current, verified state, and the online key that advances it.
pub struct Repository<S: Store> {
    store: S,
    signer: Arc<dyn Signer>,
    expiries: Expiries,
    offline: OfflineState,
    succinct: SuccinctRoles,
    bin_roles: HashMap<RoleName, Metadata<Targets>>,
    snapshot: Metadata<Snapshot>,
    timestamp: Metadata<Timestamp>,
    /// Files no longer reachable from the current timestamp, and since when.
    retired: Vec<(String, SystemTime)>,
    rebuilt: bool,
}

/// Versions the online roles must start above when they are signed anew.
#[derive(Clone, Copy, Debug, Default)]
struct Floors {
    timestamp: u64,
    snapshot: u64,
    bins: u64,
}

impl Floors {
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
        expiries: Expiries,
        now: SystemTime,
    ) -> Result<Self> {
        let mut offline = OfflineState::load(&store)?;
        for (role, version) in offline.install_incoming(&store, |_, _| true)? {
            tracing::info!(role, version, "installed a new version of an offline role");
        }
        let files = store.list(METADATA_DIR)?;
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
        let timestamp_bytes = store.read(&layout::metadata_file(&RoleName::timestamp(), 0))?;
        let Some(timestamp_bytes) = timestamp_bytes else {
            return Self::create_online_roles(
                store, signer, expiries, offline, succinct, floors, now,
            );
        };
        let file = layout::metadata_file(&RoleName::timestamp(), 0);
        let timestamp: Metadata<Timestamp> = parse("timestamp", &file, &timestamp_bytes)?;
        floors.timestamp = floors.timestamp.max(timestamp.signed.version);
        let retired = retired_online_keys(&store, &files, &offline)?;
        if signed_only_by(timestamp.signatures(), &retired.timestamp) {
            tracing::warn!(
                "the online metadata is signed by a key root no longer trusts (an online key \
                 rotation): re-signing every online role with the new key, versions bumped"
            );
            return Self::create_online_roles(
                store, signer, expiries, offline, succinct, floors, now,
            );
        }
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

        let mut bin_roles = HashMap::with_capacity(succinct.bin_count() as usize);
        let names: Vec<RoleName> = succinct.role_names().collect();
        for name in names {
            let version = snapshot
                .signed
                .role_meta(&name)
                .map(|m| m.version)
                .ok_or_else(|| Error::MissingFile(format!("the entry for {name} in {file}")))?;
            let file = layout::metadata_file(&name, version);
            let bytes = store
                .read(&file)?
                .ok_or_else(|| Error::MissingFile(file.clone()))?;
            let bin: Metadata<Targets> = parse(name.as_str(), &file, &bytes)?;
            if signed_only_by(bin.signatures(), &retired.bins) {
                tracing::warn!(
                    "bin roles are signed by a key bins no longer delegates to: re-signing every \
                     online role with the new key, versions bumped"
                );
                return Self::create_online_roles(
                    store, signer, expiries, offline, succinct, floors, now,
                );
            }
            offline
                .bins
                .signed
                .verify_delegate(&name, &bin)
                .map_err(untrusted(name.as_str(), &file))?;
            bin_roles.insert(name, bin);
        }

        let mut repository = Repository {
            store,
            signer,
            expiries,
            offline,
            succinct,
            bin_roles,
            snapshot,
            timestamp,
            retired: Vec::new(),
            rebuilt: false,
        };
        repository.retire_unreachable(now)?;
        if repository.snapshot_is_behind() {
            repository.commit(BTreeSet::new(), now)?;
        }
        Ok(repository)
    }

    /// Signs every online role anew: on first open, and after the online key was rotated, when
    /// nothing signed by the old key can be trusted. Versions start above anything on disk, and
    /// the bin roles start empty: the caller republishes every page from its own records.
    fn create_online_roles(
        store: S,
        signer: Arc<dyn Signer>,
        expiries: Expiries,
        offline: OfflineState,
        succinct: SuccinctRoles,
        floors: Floors,
        now: SystemTime,
    ) -> Result<Self> {
        let bin_roles = succinct
            .role_names()
            .map(|name| {
                (
                    name,
                    Metadata::new(Targets::new(
                        floors.bins,
                        Expires::after(now, expiries.bin_roles),
                    )),
                )
            })
            .collect();
        let mut repository = Repository {
            store,
            signer,
            expiries,
            offline,
            succinct,
            bin_roles,
            snapshot: Metadata::new(Snapshot::new(
                1,
                Expires::after(now, expiries.snapshot),
                BTreeMap::new(),
            )),
            timestamp: Metadata::new(Timestamp::new(
                1,
                Expires::after(now, expiries.timestamp),
                MetaFile::new(1),
            )),
            retired: Vec::new(),
            rebuilt: true,
        };
        let all: BTreeSet<RoleName> = repository.bin_roles.keys().cloned().collect();
        repository.snapshot.signed.version = floors.snapshot;
        repository.timestamp.signed.version = floors.timestamp;
        repository.commit(all, now)?;
        repository.retire_unreachable(now)?;
        Ok(repository)
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
            .min_by_key(|r| r.signed.expires.unix_timestamp())
        {
            let lowest = self
                .bin_roles
                .values()
                .map(|r| r.signed.version)
                .min()
                .unwrap_or(0);
            summary.push((
                format!("{}-*", layout::BIN_PREFIX),
                lowest,
                earliest.signed.expires,
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
        self.commit(BTreeSet::new(), now).map(Some)
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.offline.root
    }

    pub fn succinct_roles(&self) -> &SuccinctRoles {
        &self.succinct
    }

    pub fn timestamp(&self) -> &Metadata<Timestamp> {
        &self.timestamp
    }

    pub fn snapshot(&self) -> &Metadata<Snapshot> {
        &self.snapshot
    }

    /// The current bin role of `name`, as last published.
    pub fn bin_role(&self, name: &RoleName) -> Option<&Metadata<Targets>> {
        self.bin_roles.get(name)
    }

    /// The published target of a project's page, if any.
    pub fn page(&self, project: &str) -> Option<&TargetFile> {
        let target = layout::page_target(project);
        let bin = self.succinct.role_for_target(target.as_str());
        self.bin_roles.get(&bin)?.signed.targets.get(&target)
    }

    /// Publishes changed project pages: page files first, then the bin roles that list them,
    /// then snapshot, then timestamp, each stage durable before the next starts.
    pub fn publish(&mut self, changes: &[PageChange], now: SystemTime) -> Result<Published> {
        let mut page_files = Vec::new();
        let mut updates: BTreeMap<TargetPath, Option<TargetFile>> = BTreeMap::new();
        for change in changes {
            let target = layout::page_target(&change.project);
            let file = change.page.as_ref().map(|page| {
                let digest = ring::digest::digest(&ring::digest::SHA256, page);
                let sha256 = HexDigest::from_bytes(digest.as_ref());
                page_files.push((layout::target_file(&target, &sha256), page.clone()));
                TargetFile::from_sha256(page.len() as u64, sha256)
            });
            updates.insert(target, file);
        }
        self.store.write_all(&page_files)?;

        let mut changed = BTreeSet::new();
        for (target, file) in updates {
            let bin = self.succinct.role_for_target(target.as_str());
            let role = self
                .bin_roles
                .get_mut(&bin)
                .ok_or_else(|| Error::Missing(bin.to_string()))?;
            let old = match file {
                Some(file) => role.signed.targets.insert(target.clone(), file.clone()),
                None => role.signed.targets.remove(&target),
            };
            if let Some(old) = old
                && let Some(sha256) = old.hashes.get("sha256")
            {
                self.retired
                    .push((layout::target_file(&target, sha256), now));
            }
            changed.insert(bin);
        }
        self.commit(changed, now)
    }

    /// Re-signs online roles that have used half of their lifetime, so that they never expire
    /// while the server runs. Returns `None` when nothing needed signing.
    pub fn refresh(&mut self, now: SystemTime) -> Result<Option<Published>> {
        let due =
            |expires: &Expires, lifetime: Duration| expires.to_system_time() <= now + lifetime / 2;
        let stale: BTreeSet<RoleName> = self
            .bin_roles
            .iter()
            .filter(|(_, role)| due(&role.signed.expires, self.expiries.bin_roles))
            .map(|(name, _)| name.clone())
            .collect();
        if stale.is_empty()
            && !due(&self.snapshot.signed.expires, self.expiries.snapshot)
            && !due(&self.timestamp.signed.expires, self.expiries.timestamp)
        {
            return Ok(None);
        }
        self.commit(stale, now).map(Some)
    }

    /// Signs and writes the `changed` bin roles, then a snapshot and a timestamp over them.
    fn commit(&mut self, changed: BTreeSet<RoleName>, now: SystemTime) -> Result<Published> {
        let mut bin_files = Vec::with_capacity(changed.len());
        for name in &changed {
            let role = self
                .bin_roles
                .get_mut(name)
                .ok_or_else(|| Error::Missing(name.to_string()))?;
            if role.signed.version > 0 {
                self.retired
                    .push((layout::metadata_file(name, role.signed.version), now));
            }
            role.signed.version += 1;
            role.signed.expires = Expires::after(now, self.expiries.bin_roles);
            role.sign(self.signer.as_ref())?;
            bin_files.push((
                layout::metadata_file(name, role.signed.version),
                role.to_bytes()?,
            ));
        }
        self.store.write_all(&bin_files)?;

        let mut meta = std::mem::take(&mut self.snapshot.signed.meta);
        meta.insert(
            "targets.json".into(),
            MetaFile::new(self.offline.targets.signed.version),
        );
        meta.insert(
            format!("{BINS_ROLE}.json"),
            MetaFile::new(self.offline.bins.signed.version),
        );
        for name in &changed {
            meta.insert(
                format!("{name}.json"),
                MetaFile::new(self.bin_roles[name].signed.version),
            );
        }
        let old_snapshot = self.snapshot.signed.version;
        let mut snapshot = Metadata::new(Snapshot::new(
            old_snapshot + 1,
            Expires::after(now, self.expiries.snapshot),
            meta,
        ));
        snapshot.sign(self.signer.as_ref())?;
        let snapshot_bytes = snapshot.to_bytes()?;
        self.store.write_all(&[(
            layout::metadata_file(&RoleName::snapshot(), snapshot.signed.version),
            snapshot_bytes.clone(),
        )])?;

        let mut timestamp = Metadata::new(Timestamp::new(
            self.timestamp.signed.version + 1,
            Expires::after(now, self.expiries.timestamp),
            MetaFile::with_content(snapshot.signed.version, &snapshot_bytes),
        ));
        timestamp.sign(self.signer.as_ref())?;
        self.store.write_all(&[(
            layout::metadata_file(&RoleName::timestamp(), 0),
            timestamp.to_bytes()?,
        )])?;
        if old_snapshot > 0 {
            self.retired.push((
                layout::metadata_file(&RoleName::snapshot(), old_snapshot),
                now,
            ));
        }
        self.snapshot = snapshot;
        self.timestamp = timestamp;
        Ok(Published {
            timestamp_version: self.timestamp.signed.version,
            snapshot_version: self.snapshot.signed.version,
            bins_signed: changed.len(),
        })
    }

    /// Removes files that left the published state at least `grace` ago; clients that fetched
    /// the timestamp before them can still finish their update. Root versions are never removed.
    pub fn collect_garbage(&mut self, now: SystemTime, grace: Duration) -> Result<usize> {
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(_, since)| *since + grace <= now);
        self.retired = keep;
        for (file, _) in &due {
            self.store.remove(file)?;
        }
        Ok(due.len())
    }

    /// Marks every file the current timestamp cannot reach as retired from `now`: after a
    /// restart nobody knows since when they were unreachable, so they get a full grace period.
    fn retire_unreachable(&mut self, now: SystemTime) -> Result<()> {
        let mut reachable: HashSet<String> = HashSet::new();
        reachable.insert(layout::metadata_file(&RoleName::timestamp(), 0));
        reachable.insert(layout::metadata_file(
            &RoleName::snapshot(),
            self.snapshot.signed.version,
        ));
        reachable.insert(layout::metadata_file(
            &RoleName::targets(),
            self.offline.targets.signed.version,
        ));
        reachable.insert(layout::metadata_file(
            &RoleName::new(BINS_ROLE)?,
            self.offline.bins.signed.version,
        ));
        for (name, role) in &self.bin_roles {
            reachable.insert(layout::metadata_file(name, role.signed.version));
            for (target, file) in &role.signed.targets {
                if let Some(sha256) = file.hashes.get("sha256") {
                    reachable.insert(layout::target_file(target, sha256));
                }
            }
        }
        let metadata = self.store.list(METADATA_DIR)?;
        let targets = self.store.list(TARGETS_DIR)?;
        self.retired.extend(
            metadata
                .into_iter()
                .filter(|f| !f.ends_with(".root.json"))
                .chain(targets)
                .filter(|f| !reachable.contains(f))
                .map(|f| (f, now)),
        );
        Ok(())
    }
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
