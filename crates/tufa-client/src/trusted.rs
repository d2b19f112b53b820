//! The trusted metadata set: every trust decision of the TUF client workflow (specification
//! 1.0.34, section 5) as a pure state machine. No I/O and no clock: bytes and the fixed update
//! start time come in, verified metadata or an [`Error`] naming the attack come out.
//!
//! Load order is enforced by types: [`RootUpdate`] → [`TimestampUpdate`] → [`SnapshotUpdate`] →
//! [`TrustedMetadata`] (top-level targets, then delegated roles). Each stage is reached only by
//! finishing the one before it, which performs that stage's final checks (freeze attack on root,
//! timestamp and snapshot), so metadata of a later stage can never be checked against an
//! unfinished earlier one.
//!
//! Previously trusted timestamp and snapshot files from the local cache are loaded with
//! `load_trusted_*`: they are checked for signatures only, because their one job is to be the
//! "trusted" version that new metadata is compared with for rollback.

use std::collections::HashMap;
use std::time::SystemTime;

use tufa_metadata::{
    Expires, HexDigest, MetaFile, Metadata, OnlineLifetimes, OnlineRole, Role, RoleKeys, RoleName,
    Root, Signature, Snapshot, Targets, Timestamp,
};

use crate::error::{Error, Result};
use crate::proofs::ProvenSnapshot;
use crate::verify::{check_hashes, check_length};

/// Metadata whose signatures were checked, with the canonical bytes they cover, kept so that the
/// same document can be checked again against another delegator without re-serializing it.
#[derive(Clone, Debug)]
struct Verified<T> {
    metadata: Metadata<T>,
    signed_bytes: Vec<u8>,
}

impl<T: Role> Verified<T> {
    fn signatures(&self) -> &[Signature] {
        self.metadata.signatures()
    }
}

/// Parses metadata whose signatures are still to be checked.
fn parse<T: Role>(role: &str, bytes: &[u8]) -> Result<Verified<T>> {
    let invalid = |source| Error::InvalidMetadata {
        role: role.into(),
        source,
    };
    let metadata = Metadata::<T>::from_bytes(bytes).map_err(invalid)?;
    let signed_bytes = metadata.signed_bytes().map_err(invalid)?;
    Ok(Verified {
        metadata,
        signed_bytes,
    })
}

fn signatures(role: &str) -> impl FnOnce(tufa_metadata::Error) -> Error {
    let role = role.to_string();
    move |source| Error::Signatures { role, source }
}

fn check_expiry<T: Role>(role: &str, metadata: &Metadata<T>, now: SystemTime) -> Result<()> {
    let expires = metadata.signed.expires();
    if expires.is_expired_at(now) {
        return Err(Error::Expired {
            role: role.into(),
            expires,
        });
    }
    Ok(())
}

/// Refuses online metadata expiring further ahead than the lifetime root declares for its role
/// (see [`OnlineLifetimes`]); a root that declares none bounds nothing, as the TUF spec.
fn check_online_lifetime(
    root: &Root,
    role: &str,
    online: OnlineRole,
    expires: &Expires,
    now: SystemTime,
) -> Result<()> {
    let declared = OnlineLifetimes::of(root).map_err(|source| Error::InvalidMetadata {
        role: "root".into(),
        source,
    })?;
    match declared {
        Some(lifetimes) if !lifetimes.allows(online, expires, now) => {
            Err(Error::BeyondOnlineLifetime {
                role: role.into(),
                expires: *expires,
                lifetime_seconds: lifetimes.of_role(online).as_secs(),
            })
        }
        _ => Ok(()),
    }
}

/// Length and hashes against a `meta` entry, each when the entry lists it.
fn check_meta(role: &str, referrer: &str, meta: &MetaFile, bytes: &[u8]) -> Result<()> {
    let what = format!("{role} metadata");
    if let Some(length) = meta.length {
        check_length(&what, referrer, length, bytes)?;
    }
    if let Some(hashes) = &meta.hashes {
        check_hashes(&what, referrer, hashes, bytes)?;
    }
    Ok(())
}

fn same_keys(a: &RoleKeys, b: &RoleKeys) -> bool {
    let mut a_ids = a.keyids.clone();
    let mut b_ids = b.keyids.clone();
    a_ids.sort();
    b_ids.sort();
    a.threshold == b.threshold && a_ids == b_ids
}

/// Step 5.3: the trusted root, updated one version at a time.
#[derive(Debug)]
pub struct RootUpdate {
    reference_time: SystemTime,
    /// The timestamp and snapshot keys of the root the update started from (for 5.3.11).
    initial_online_keys: (RoleKeys, RoleKeys),
    root: Verified<Root>,
}

impl RootUpdate {
    /// Steps 5.1 and 5.2: fixes the update start time and loads the locally trusted root. Its
    /// expiry does not matter yet (5.3 may replace it), but it must be signed by its own keys.
    pub fn new(root_bytes: &[u8], reference_time: SystemTime) -> Result<Self> {
        let root: Verified<Root> = parse("root", root_bytes)?;
        root.metadata
            .signed
            .verify_delegate_bytes("root", &root.signed_bytes, root.signatures())
            .map_err(signatures("root"))?;
        let roles = &root.metadata.signed.roles;
        Ok(RootUpdate {
            reference_time,
            initial_online_keys: (roles.timestamp.clone(), roles.snapshot.clone()),
            root,
        })
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.root.metadata
    }

    /// Steps 5.3.4 to 5.3.7: accepts version N+1 of root when a threshold of the trusted root's
    /// keys and a threshold of its own keys signed it. The caller persists the bytes (5.3.8).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<()> {
        let new: Verified<Root> = parse("root", bytes)?;
        self.root
            .metadata
            .signed
            .verify_delegate_bytes("root", &new.signed_bytes, new.signatures())
            .map_err(signatures("root (by the trusted root's keys)"))?;
        new.metadata
            .signed
            .verify_delegate_bytes("root", &new.signed_bytes, new.signatures())
            .map_err(signatures("root (by its own keys)"))?;
        let trusted = self.root.metadata.signed.version;
        let received = new.metadata.signed.version;
        if received < trusted {
            return Err(Error::RollbackAttack {
                role: "root".into(),
                trusted,
                received,
            });
        }
        if received != trusted + 1 {
            return Err(Error::UnexpectedRootVersion {
                expected: trusted + 1,
                received,
            });
        }
        self.root = new;
        Ok(())
    }

    /// Step 5.3.10, the freeze check on the final root, and 5.3.11: whether the timestamp or
    /// snapshot keys changed, in which case previously trusted timestamp and snapshot metadata
    /// must be forgotten (a fast-forward attack would otherwise block updates forever).
    pub fn finish(self) -> Result<TimestampUpdate> {
        check_expiry("root", &self.root.metadata, self.reference_time)?;
        let roles = &self.root.metadata.signed.roles;
        let (timestamp, snapshot) = &self.initial_online_keys;
        let online_keys_rotated =
            !same_keys(timestamp, &roles.timestamp) || !same_keys(snapshot, &roles.snapshot);
        Ok(TimestampUpdate {
            reference_time: self.reference_time,
            root: self.root,
            online_keys_rotated,
            trusted: None,
        })
    }
}

/// Whether a new timestamp replaced the trusted one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampOutcome {
    /// The new timestamp is now trusted; persist it.
    Updated,
    /// It has the trusted version: the repository has not changed, keep the trusted one.
    Unchanged,
}

/// Step 5.4: the timestamp, with the final root.
#[derive(Debug)]
pub struct TimestampUpdate {
    reference_time: SystemTime,
    root: Verified<Root>,
    online_keys_rotated: bool,
    trusted: Option<Verified<Timestamp>>,
}

impl TimestampUpdate {
    pub fn root(&self) -> &Metadata<Root> {
        &self.root.metadata
    }

    /// True when root rotated the timestamp or snapshot keys during this update (5.3.11): the
    /// caller deletes its cached timestamp and snapshot, and they are refused here.
    pub fn online_keys_rotated(&self) -> bool {
        self.online_keys_rotated
    }

    /// Loads the previously trusted timestamp from the local cache. Only its signatures are
    /// checked: an expired one still guards against rollback of the next.
    pub fn load_trusted_timestamp(&mut self, bytes: &[u8]) -> Result<()> {
        if self.online_keys_rotated {
            return Err(Error::RotatedKeys {
                role: "timestamp".into(),
            });
        }
        let timestamp: Verified<Timestamp> = parse("timestamp", bytes)?;
        self.verify(&timestamp)?;
        self.trusted = Some(timestamp);
        Ok(())
    }

    fn verify(&self, timestamp: &Verified<Timestamp>) -> Result<()> {
        self.root
            .metadata
            .signed
            .verify_delegate_bytes("timestamp", &timestamp.signed_bytes, timestamp.signatures())
            .map_err(signatures("timestamp"))
    }

    /// Steps 5.4.2 to 5.4.4 on a newly downloaded timestamp: signatures, rollback of its own
    /// version and of the snapshot version it lists, then expiry.
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<TimestampOutcome> {
        let new: Verified<Timestamp> = parse("timestamp", bytes)?;
        self.verify(&new)?;
        if let Some(trusted) = &self.trusted {
            let (trusted, new) = (&trusted.metadata.signed, &new.metadata.signed);
            if new.version < trusted.version {
                return Err(Error::RollbackAttack {
                    role: "timestamp".into(),
                    trusted: trusted.version,
                    received: new.version,
                });
            }
            if new.version == trusted.version {
                return Ok(TimestampOutcome::Unchanged);
            }
            if new.snapshot_meta.version < trusted.snapshot_meta.version {
                return Err(Error::RollbackAttack {
                    role: "snapshot".into(),
                    trusted: trusted.snapshot_meta.version,
                    received: new.snapshot_meta.version,
                });
            }
        }
        check_expiry("timestamp", &new.metadata, self.reference_time)?;
        check_online_lifetime(
            &self.root.metadata.signed,
            "timestamp",
            OnlineRole::Timestamp,
            &new.metadata.signed.expires,
            self.reference_time,
        )?;
        self.trusted = Some(new);
        Ok(TimestampOutcome::Updated)
    }

    /// Ends the timestamp step. The trusted timestamp may be the cached one (when the repository
    /// served the same version), so its expiry is checked here too.
    pub fn finish(self) -> Result<SnapshotUpdate> {
        let timestamp = self.trusted.ok_or(Error::NotLoaded {
            role: "timestamp".into(),
            reason: "no timestamp was loaded",
        })?;
        check_expiry("timestamp", &timestamp.metadata, self.reference_time)?;
        Ok(SnapshotUpdate {
            reference_time: self.reference_time,
            root: self.root,
            online_keys_rotated: self.online_keys_rotated,
            timestamp,
            snapshot: SnapshotState::None,
        })
    }
}

#[derive(Debug)]
enum SnapshotState {
    None,
    /// A snapshot trusted before, kept for the rollback checks of a new one.
    Previous(Verified<Snapshot>),
    /// The snapshot the trusted timestamp names, fully checked.
    Current(Verified<Snapshot>),
}

/// Step 5.5: the snapshot, with the final root and timestamp.
#[derive(Debug)]
pub struct SnapshotUpdate {
    reference_time: SystemTime,
    root: Verified<Root>,
    online_keys_rotated: bool,
    timestamp: Verified<Timestamp>,
    snapshot: SnapshotState,
}

impl SnapshotUpdate {
    pub fn root(&self) -> &Metadata<Root> {
        &self.root.metadata
    }

    /// What the trusted timestamp says about snapshot: version, and maybe length and hashes.
    pub fn snapshot_meta(&self) -> &MetaFile {
        &self.timestamp.metadata.signed.snapshot_meta
    }

    fn verify(&self, snapshot: &Verified<Snapshot>) -> Result<()> {
        self.root
            .metadata
            .signed
            .verify_delegate_bytes("snapshot", &snapshot.signed_bytes, snapshot.signatures())
            .map_err(signatures("snapshot"))
    }

    /// Loads the previously trusted snapshot from the local cache, checking its signatures.
    /// Returns true when it is the one the trusted timestamp names and it has not expired: then
    /// nothing needs downloading. Otherwise it stays as the baseline for rollback checks.
    pub fn load_trusted_snapshot(&mut self, bytes: &[u8]) -> Result<bool> {
        if self.online_keys_rotated {
            return Err(Error::RotatedKeys {
                role: "snapshot".into(),
            });
        }
        let snapshot: Verified<Snapshot> = parse("snapshot", bytes)?;
        self.verify(&snapshot)?;
        let meta = self.snapshot_meta();
        let current = snapshot.metadata.signed.version == meta.version
            && check_meta("snapshot", "timestamp", meta, bytes).is_ok()
            && check_expiry("snapshot", &snapshot.metadata, self.reference_time).is_ok();
        self.snapshot = if current {
            SnapshotState::Current(snapshot)
        } else {
            SnapshotState::Previous(snapshot)
        };
        Ok(current)
    }

    /// Steps 5.5.2 to 5.5.6 on a newly downloaded snapshot, in the specification's order:
    /// length and hashes from timestamp, signatures, version from timestamp, rollback of every
    /// targets role it lists, expiry.
    pub fn update_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        let meta = self.snapshot_meta();
        check_meta("snapshot", "timestamp", meta, bytes)?;
        let new: Verified<Snapshot> = parse("snapshot", bytes)?;
        self.verify(&new)?;
        let expected = meta.version;
        let received = new.metadata.signed.version;
        if received != expected {
            return Err(Error::MixAndMatch {
                role: "snapshot".into(),
                referrer: "timestamp".into(),
                expected,
                received,
            });
        }
        if let SnapshotState::Previous(trusted) | SnapshotState::Current(trusted) = &self.snapshot {
            for (file, old) in &trusted.metadata.signed.meta {
                let Some(listed) = new.metadata.signed.meta.get(file) else {
                    return Err(Error::RemovedFromSnapshot { file: file.clone() });
                };
                if listed.version < old.version {
                    return Err(Error::RollbackAttack {
                        role: file.strip_suffix(".json").unwrap_or(file).into(),
                        trusted: old.version,
                        received: listed.version,
                    });
                }
            }
        }
        check_expiry("snapshot", &new.metadata, self.reference_time)?;
        check_online_lifetime(
            &self.root.metadata.signed,
            "snapshot",
            OnlineRole::Snapshot,
            &new.metadata.signed.expires,
            self.reference_time,
        )?;
        self.snapshot = SnapshotState::Current(new);
        Ok(())
    }

    /// Ends the snapshot step; needs the snapshot the trusted timestamp names.
    pub fn finish(self) -> Result<TrustedMetadata> {
        let SnapshotState::Current(snapshot) = self.snapshot else {
            return Err(Error::NotLoaded {
                role: "snapshot".into(),
                reason: "the snapshot named by the trusted timestamp was not loaded",
            });
        };
        Ok(TrustedMetadata {
            reference_time: self.reference_time,
            root: self.root,
            timestamp: self.timestamp,
            snapshot: SnapshotView::Classic(snapshot),
            targets: None,
            delegated: HashMap::new(),
        })
    }

    /// TAP 16: the trusted timestamp's `merkle_root`, when the repository serves snapshot proofs.
    pub fn merkle_root(&self) -> Result<Option<HexDigest>> {
        self.timestamp
            .metadata
            .signed
            .merkle_root()
            .map_err(|source| Error::InvalidSnapshotProof {
                role: "timestamp".into(),
                source,
            })
    }

    /// TAP 16: ends the snapshot step without the snapshot. Each targets role's entry is then
    /// proven on its own against the timestamp's `merkle_root`
    /// ([`TrustedMetadata::update_snapshot_proof`]) before the role can be loaded.
    /// The snapshot step stays usable, for a repository that turns out to serve no proofs.
    pub fn finish_with_proofs(&self) -> Result<TrustedMetadata> {
        let root = self.merkle_root()?.ok_or(Error::NotLoaded {
            role: "snapshot proofs".into(),
            reason: "the trusted timestamp has no merkle_root",
        })?;
        Ok(TrustedMetadata {
            reference_time: self.reference_time,
            root: self.root.clone(),
            timestamp: self.timestamp.clone(),
            snapshot: SnapshotView::Proofs(ProvenSnapshot::new(root)),
            targets: None,
            delegated: HashMap::new(),
        })
    }
}

/// Where the versions of targets roles come from.
#[derive(Debug)]
enum SnapshotView {
    /// The whole snapshot the trusted timestamp names.
    Classic(Verified<Snapshot>),
    /// TAP 16 proofs of the entries used so far.
    Proofs(ProvenSnapshot),
}

/// Step 5.6 onwards: the final root, timestamp and snapshot, and the targets roles loaded so far.
#[derive(Debug)]
pub struct TrustedMetadata {
    reference_time: SystemTime,
    root: Verified<Root>,
    timestamp: Verified<Timestamp>,
    snapshot: SnapshotView,
    targets: Option<Verified<Targets>>,
    delegated: HashMap<RoleName, Verified<Targets>>,
}

impl TrustedMetadata {
    pub fn reference_time(&self) -> SystemTime {
        self.reference_time
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.root.metadata
    }

    pub fn timestamp(&self) -> &Metadata<Timestamp> {
        &self.timestamp.metadata
    }

    /// The whole snapshot; `None` when the update uses TAP 16 proofs instead.
    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        match &self.snapshot {
            SnapshotView::Classic(snapshot) => Some(&snapshot.metadata),
            SnapshotView::Proofs(_) => None,
        }
    }

    /// The Merkle root proofs are checked against, when the update uses TAP 16 proofs.
    pub fn merkle_root(&self) -> Option<&HexDigest> {
        match &self.snapshot {
            SnapshotView::Proofs(proven) => Some(proven.root()),
            SnapshotView::Classic(_) => None,
        }
    }

    /// Whether `role` needs its snapshot proof loaded before it can be: under TAP 16 proofs,
    /// until [`TrustedMetadata::update_snapshot_proof`] accepted one.
    pub fn needs_snapshot_proof(&self, role: &RoleName) -> bool {
        matches!(&self.snapshot, SnapshotView::Proofs(proven) if proven.get(role).is_none())
    }

    fn proofs(&mut self) -> Result<&mut ProvenSnapshot> {
        match &mut self.snapshot {
            SnapshotView::Proofs(proven) => Ok(proven),
            SnapshotView::Classic(_) => Err(Error::NotLoaded {
                role: "snapshot proofs".into(),
                reason: "this update reads the whole snapshot",
            }),
        }
    }

    /// Loads `role`'s snapshot proof accepted by an earlier update, from the local cache: its
    /// version is the floor for the role's version now (rollback protection per role).
    pub fn load_trusted_snapshot_proof(&mut self, role: &RoleName, bytes: &[u8]) -> Result<()> {
        self.proofs()?.load_trusted(role, bytes)
    }

    /// TAP 16: accepts `role`'s snapshot entry from its proof, which must be for `role`, lead
    /// to the trusted timestamp's `merkle_root`, and not take the role's version back.
    pub fn update_snapshot_proof(&mut self, role: &RoleName, bytes: &[u8]) -> Result<()> {
        self.proofs()?.update(role, bytes)
    }

    pub fn targets(&self) -> Option<&Metadata<Targets>> {
        self.targets.as_ref().map(|t| &t.metadata)
    }

    /// How many delegated targets roles are loaded.
    pub fn delegated_count(&self) -> usize {
        self.delegated.len()
    }

    /// The snapshot's entry for a targets role.
    pub fn role_meta(&self, role: &RoleName) -> Result<&MetaFile> {
        match &self.snapshot {
            SnapshotView::Classic(snapshot) => snapshot.metadata.signed.role_meta(role),
            SnapshotView::Proofs(proven) => proven.get(role),
        }
        .ok_or_else(|| Error::NotInSnapshot {
            role: role.to_string(),
        })
    }

    /// Steps 5.6.2 to 5.6.5 for the top-level targets role: length and hashes from snapshot,
    /// signatures by root's targets keys, version from snapshot, expiry.
    pub fn update_targets(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::targets();
        let root = &self.root.metadata.signed;
        let targets = self.check_targets_role(&role, bytes, |signed, sigs| {
            root.verify_delegate_bytes("targets", signed, sigs)
        })?;
        self.targets = Some(targets);
        Ok(())
    }

    /// The same checks for a delegated role, with signatures by the keys that `delegator` (a
    /// trusted targets role) delegates `role` to.
    pub fn update_delegated_targets(
        &mut self,
        role: &RoleName,
        delegator: &RoleName,
        bytes: &[u8],
    ) -> Result<()> {
        let parent = &self.delegator(delegator)?.metadata.signed;
        let targets = self.check_targets_role(role, bytes, |signed, sigs| {
            parent.verify_delegate_bytes(role, signed, sigs)
        })?;
        // Roles that bins delegates are the online bin-XXXX roles.
        if delegator.as_str() == "bins" {
            check_online_lifetime(
                &self.root.metadata.signed,
                role.as_str(),
                OnlineRole::Bin,
                &targets.metadata.signed.expires,
                self.reference_time,
            )?;
        }
        self.delegated.insert(role.clone(), targets);
        Ok(())
    }

    /// A delegated role loaded earlier, re-verified against `delegator`: the same role may be
    /// reached from several delegators, and each must trust its signers on its own account.
    /// `None` when the role is not loaded.
    pub fn delegated_targets(
        &self,
        role: &RoleName,
        delegator: &RoleName,
    ) -> Result<Option<&Metadata<Targets>>> {
        let Some(cached) = self.delegated.get(role) else {
            return Ok(None);
        };
        self.delegator(delegator)?
            .metadata
            .signed
            .verify_delegate_bytes(role, &cached.signed_bytes, cached.signatures())
            .map_err(signatures(role.as_str()))?;
        Ok(Some(&cached.metadata))
    }

    /// A targets role loaded earlier, the top-level one included, without re-verification.
    pub fn targets_role(&self, role: &RoleName) -> Option<&Metadata<Targets>> {
        if role.as_str() == "targets" {
            return self.targets();
        }
        self.delegated.get(role).map(|t| &t.metadata)
    }

    fn delegator(&self, name: &RoleName) -> Result<&Verified<Targets>> {
        let found = if name.as_str() == "targets" {
            self.targets.as_ref()
        } else {
            self.delegated.get(name)
        };
        found.ok_or_else(|| Error::NotLoaded {
            role: name.to_string(),
            reason: "a delegator must be loaded before the roles it delegates to",
        })
    }

    fn check_targets_role(
        &self,
        role: &RoleName,
        bytes: &[u8],
        verify: impl FnOnce(&[u8], &[Signature]) -> tufa_metadata::Result<()>,
    ) -> Result<Verified<Targets>> {
        let meta = self.role_meta(role)?;
        check_meta(role.as_str(), "snapshot", meta, bytes)?;
        let new: Verified<Targets> = parse(role.as_str(), bytes)?;
        verify(&new.signed_bytes, new.signatures()).map_err(signatures(role.as_str()))?;
        let received = new.metadata.signed.version;
        if received != meta.version && matches!(self.snapshot, SnapshotView::Proofs(_)) {
            return Err(Error::SnapshotProofMismatch {
                role: role.to_string(),
                proven: meta.version,
                received,
            });
        }
        if received != meta.version {
            return Err(Error::MixAndMatch {
                role: role.to_string(),
                referrer: "snapshot".into(),
                expected: meta.version,
                received,
            });
        }
        check_expiry(role.as_str(), &new.metadata, self.reference_time)?;
        Ok(new)
    }
}
