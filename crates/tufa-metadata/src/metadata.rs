//! The four top-level roles and the signed envelope around them (spec section 4).

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::canonical::{SortedFields, check_no_duplicate_keys, to_canonical_bytes};
use crate::delegation::{Delegations, check_keyids};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::signer::Signer;
use crate::types::{Expires, HexDigest, KeyId, RoleName, SpecVersion, TargetPath, Threshold};

type Unrecognized = BTreeMap<String, serde_json::Value>;

/// What every signed role has: a `_type`, and the spec's version and expiry checks.
pub trait Role: Serialize + DeserializeOwned {
    /// The `_type` value of this role's metadata.
    const TYPE: &'static str;

    fn spec_version(&self) -> &SpecVersion;
    fn version(&self) -> u64;
    fn expires(&self) -> Expires;

    /// Structural checks serde cannot express: thresholds, key IDs, delegation rules.
    fn validate(&self) -> Result<()>;
}

/// A signed metadata document: `{"signed": ..., "signatures": [...]}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata<T> {
    pub signed: T,
    signatures: Vec<Signature>,
    pub unrecognized: Unrecognized,
}

/// One signature: hex `sig` by key `keyid` over the canonical bytes of `signed`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: String,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("keyid", &self.keyid)?;
        fields.field("sig", &self.sig)?;
        fields.end()
    }
}

#[derive(Deserialize)]
struct RawMetadata<T> {
    signed: T,
    signatures: Vec<Signature>,
    #[serde(flatten)]
    unrecognized: Unrecognized,
}

#[derive(Deserialize)]
struct PeekType {
    signed: PeekSigned,
}

#[derive(Deserialize)]
struct PeekSigned {
    #[serde(rename = "_type")]
    type_: String,
}

impl<T: Role> Serialize for Metadata<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("signatures", &self.signatures)?;
        fields.field("signed", &self.signed)?;
        fields.end()
    }
}

impl<T: Role> Metadata<T> {
    /// Unsigned metadata around `signed`.
    pub fn new(signed: T) -> Self {
        Metadata {
            signed,
            signatures: Vec::new(),
            unrecognized: Unrecognized::new(),
        }
    }

    /// Parses and validates metadata of role type `T`. Signatures are not verified here: that
    /// needs the delegating role (see [`Root::verify_delegate`], [`Targets::verify_delegate`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_no_duplicate_keys(bytes)?;
        let peek: PeekType = serde_json::from_slice(bytes)?;
        if peek.signed.type_ != T::TYPE {
            return Err(Error::WrongType {
                expected: T::TYPE,
                found: peek.signed.type_,
            });
        }
        let raw: RawMetadata<T> = serde_json::from_slice(bytes)?;
        let mut seen = HashSet::new();
        for signature in &raw.signatures {
            if !seen.insert(&signature.keyid) {
                return Err(Error::DuplicateSignature {
                    keyid: signature.keyid.clone(),
                });
            }
        }
        raw.signed.spec_version().check()?;
        if raw.signed.version() == 0 {
            return Err(Error::InvalidVersion(0));
        }
        raw.signed.validate()?;
        Ok(Metadata {
            signed: raw.signed,
            signatures: raw.signatures,
            unrecognized: raw.unrecognized,
        })
    }

    /// The whole document as compact JSON with sorted keys, the form Tufa writes files in.
    ///
    /// Not canonical JSON: canonical JSON writes control characters raw, and PEM public keys
    /// contain newlines, which strict JSON parsers (python-tuf's `json.loads`, serde_json) refuse.
    /// Signatures cover only the canonical form of `signed`, so the file form is free to differ.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// The canonical bytes of `signed`: what signatures are made over.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        to_canonical_bytes(&self.signed)
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Adds `signer`'s signature over the current `signed`, replacing an earlier one by the same key.
    pub fn sign(&mut self, signer: &dyn Signer) -> Result<&Signature> {
        let signed_bytes = self.signed_bytes()?;
        self.sign_bytes(signer, &signed_bytes)
    }

    /// Signs like [`Metadata::sign`] and returns the file bytes of [`Metadata::to_bytes`],
    /// serializing `signed` once instead of twice (what re-signing thousands of bin roles per
    /// batch spends most of its time on). The canonical form of `signed` is its file form too
    /// unless it holds a control character (raw in canonical JSON, escaped in JSON) or the
    /// document has fields of its own beside `signatures` and `signed`; those take the long way.
    pub fn sign_to_bytes(&mut self, signer: &dyn Signer) -> Result<Vec<u8>> {
        let signed_bytes = self.signed_bytes()?;
        self.sign_bytes(signer, &signed_bytes)?;
        if !self.unrecognized.is_empty() || signed_bytes.iter().any(|&byte| byte < 0x20) {
            return self.to_bytes();
        }
        let mut out = Vec::with_capacity(signed_bytes.len() + 160 * self.signatures.len() + 32);
        out.extend_from_slice(br#"{"signatures":"#);
        serde_json::to_writer(&mut out, &self.signatures)?;
        out.extend_from_slice(br#","signed":"#);
        out.extend_from_slice(&signed_bytes);
        out.push(b'}');
        Ok(out)
    }

    /// Like [`Metadata::sign`], with the canonical signed bytes already at hand (signing with
    /// several keys serializes once).
    pub fn sign_bytes(&mut self, signer: &dyn Signer, signed_bytes: &[u8]) -> Result<&Signature> {
        let signature = signer.sign(signed_bytes)?;
        self.signatures.retain(|s| s.keyid != signature.keyid);
        self.signatures.push(signature);
        Ok(self.signatures.last().expect("just pushed"))
    }

    /// Adds a signature made elsewhere (an offline key holder's), replacing one by the same key.
    pub fn add_signature(&mut self, signature: Signature) {
        self.signatures.retain(|s| s.keyid != signature.keyid);
        self.signatures.push(signature);
    }

    pub fn clear_signatures(&mut self) {
        self.signatures.clear();
    }
}

/// Which of `authorized` have validly signed `signed_bytes`: what a threshold counts, and so what
/// a signing request still lacks.
pub fn valid_signers(
    keys: &BTreeMap<KeyId, Key>,
    authorized: &[KeyId],
    signed_bytes: &[u8],
    signatures: &[Signature],
) -> Vec<KeyId> {
    let mut materials = HashSet::new();
    let mut signers = Vec::new();
    for signature in signatures {
        if !authorized.contains(&signature.keyid) || signers.contains(&signature.keyid) {
            continue;
        }
        let Some(key) = keys.get(&signature.keyid) else {
            continue;
        };
        if key
            .verify(&signature.keyid, signed_bytes, &signature.sig)
            .is_ok()
            && materials.insert(key.material())
        {
            signers.push(signature.keyid.clone());
        }
    }
    signers
}

/// Verifies that at least `threshold` distinct keys among `authorized` signed `signed_bytes`.
///
/// Signatures by keys that are not authorized are ignored, as the spec requires. A key counts once
/// however many key IDs it is listed under.
pub fn verify_threshold(
    role: &str,
    keys: &BTreeMap<KeyId, Key>,
    authorized: &[KeyId],
    threshold: Threshold,
    signed_bytes: &[u8],
    signatures: &[Signature],
) -> Result<()> {
    let valid = valid_signers(keys, authorized, signed_bytes, signatures).len() as u32;
    if valid < threshold.get() {
        return Err(Error::ThresholdNotMet {
            role: role.into(),
            threshold: threshold.get(),
            valid,
        });
    }
    Ok(())
}

/// The keys and threshold of one top-level role, as root lists them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<KeyId>,
    pub threshold: Threshold,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

impl Serialize for RoleKeys {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("keyids", &self.keyids)?;
        fields.field("threshold", &self.threshold)?;
        fields.end()
    }
}

impl RoleKeys {
    pub fn new(keyids: Vec<KeyId>, threshold: Threshold) -> Self {
        RoleKeys {
            keyids,
            threshold,
            unrecognized: Unrecognized::new(),
        }
    }
}

/// Root's `roles`: exactly the four top-level roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopLevelRoles {
    pub root: RoleKeys,
    pub snapshot: RoleKeys,
    pub targets: RoleKeys,
    pub timestamp: RoleKeys,
}

impl TopLevelRoles {
    pub fn get(&self, role: &str) -> Option<&RoleKeys> {
        match role {
            "root" => Some(&self.root),
            "snapshot" => Some(&self.snapshot),
            "targets" => Some(&self.targets),
            "timestamp" => Some(&self.timestamp),
            _ => None,
        }
    }
}

macro_rules! role_common {
    ($ty:ident, $type_name:literal) => {
        impl Role for $ty {
            const TYPE: &'static str = $type_name;

            fn spec_version(&self) -> &SpecVersion {
                &self.spec_version
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> Expires {
                self.expires
            }
            fn validate(&self) -> Result<()> {
                self.validate_fields()
            }
        }
    };
}

/// The root role: the keys and thresholds of every top-level role (spec section 4.3).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    type_: String,
    pub spec_version: SpecVersion,
    pub version: u64,
    pub expires: Expires,
    /// Absent in some old metadata; python-tuf then writes nothing back, and so does Tufa.
    #[serde(default)]
    pub consistent_snapshot: Option<bool>,
    pub keys: BTreeMap<KeyId, Key>,
    pub roles: TopLevelRoles,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

role_common!(Root, "root");

impl Serialize for Root {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("_type", Self::TYPE)?;
        fields.optional("consistent_snapshot", &self.consistent_snapshot)?;
        fields.field("expires", &self.expires)?;
        fields.field("keys", &self.keys)?;
        fields.field("roles", &self.roles)?;
        fields.field("spec_version", &self.spec_version)?;
        fields.field("version", &self.version)?;
        fields.end()
    }
}

impl Root {
    pub fn new(
        version: u64,
        expires: Expires,
        consistent_snapshot: bool,
        keys: BTreeMap<KeyId, Key>,
        roles: TopLevelRoles,
    ) -> Self {
        Root {
            type_: Self::TYPE.into(),
            spec_version: SpecVersion::current(),
            version,
            expires,
            consistent_snapshot: Some(consistent_snapshot),
            keys,
            roles,
            unrecognized: Unrecognized::new(),
        }
    }

    fn validate_fields(&self) -> Result<()> {
        for (keyid, key) in &self.keys {
            key.check_id(keyid)?;
        }
        for name in crate::types::TOP_LEVEL_ROLES {
            let role = self.roles.get(name).expect("all four top-level roles");
            check_keyids(name, &role.keyids, role.threshold)?;
        }
        Ok(())
    }

    /// Whether this repository uses consistent snapshots (the spec's default when absent is false).
    pub fn consistent_snapshot(&self) -> bool {
        self.consistent_snapshot.unwrap_or(false)
    }

    /// Verifies that a threshold of `role`'s keys, as this root lists them, signed `delegate`.
    pub fn verify_delegate<T: Role>(&self, role: &str, delegate: &Metadata<T>) -> Result<()> {
        self.verify_delegate_bytes(role, &delegate.signed_bytes()?, delegate.signatures())
    }

    /// Like [`Root::verify_delegate`], with the canonical signed bytes already at hand.
    pub fn verify_delegate_bytes(
        &self,
        role: &str,
        signed_bytes: &[u8],
        signatures: &[Signature],
    ) -> Result<()> {
        let keys = self.roles.get(role).ok_or_else(|| Error::InvalidRoleName {
            name: role.into(),
            reason: "root delegates only to root, timestamp, snapshot and targets",
        })?;
        verify_threshold(
            role,
            &self.keys,
            &keys.keyids,
            keys.threshold,
            signed_bytes,
            signatures,
        )
    }
}

/// A reference to a metadata file: its version, and optionally its length and hashes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default)]
    pub length: Option<u64>,
    #[serde(default)]
    pub hashes: Option<BTreeMap<String, HexDigest>>,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

impl Serialize for MetaFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.optional("hashes", &self.hashes)?;
        fields.optional("length", &self.length)?;
        fields.field("version", &self.version)?;
        fields.end()
    }
}

impl MetaFile {
    pub fn new(version: u64) -> Self {
        MetaFile {
            version,
            length: None,
            hashes: None,
            unrecognized: Unrecognized::new(),
        }
    }

    /// A reference that pins the exact bytes: version, length and SHA-256.
    pub fn with_content(version: u64, content: &[u8]) -> Self {
        MetaFile {
            version,
            length: Some(content.len() as u64),
            hashes: Some(sha256_hashes(content)),
            unrecognized: Unrecognized::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.version == 0 {
            return Err(Error::InvalidVersion(0));
        }
        for digest in self.hashes.iter().flat_map(|h| h.values()) {
            digest.check()?;
        }
        Ok(())
    }
}

fn sha256_hashes(content: &[u8]) -> BTreeMap<String, HexDigest> {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    BTreeMap::from([("sha256".to_string(), HexDigest::from_bytes(digest.as_ref()))])
}

/// The timestamp role: the current snapshot's version (and optionally hashes), re-signed often so
/// that clients notice a freeze (spec section 4.6).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    type_: String,
    pub spec_version: SpecVersion,
    pub version: u64,
    pub expires: Expires,
    #[serde(rename = "meta", with = "snapshot_meta")]
    pub snapshot_meta: MetaFile,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

role_common!(Timestamp, "timestamp");

mod snapshot_meta {
    use super::*;
    use serde::Deserializer;

    const SNAPSHOT_JSON: &str = "snapshot.json";

    pub(super) fn serialize<S: Serializer>(
        meta: &MetaFile,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(SNAPSHOT_JSON, meta)?;
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MetaFile, D::Error> {
        let mut meta = BTreeMap::<String, MetaFile>::deserialize(deserializer)?;
        match meta.remove(SNAPSHOT_JSON) {
            Some(snapshot) if meta.is_empty() => Ok(snapshot),
            _ => Err(serde::de::Error::custom(
                "timestamp meta must list exactly \"snapshot.json\"",
            )),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Meta<'a>(&'a MetaFile);
        impl Serialize for Meta<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                snapshot_meta::serialize(self.0, serializer)
            }
        }
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("_type", Self::TYPE)?;
        fields.field("expires", &self.expires)?;
        fields.field("meta", &Meta(&self.snapshot_meta))?;
        fields.field("spec_version", &self.spec_version)?;
        fields.field("version", &self.version)?;
        fields.end()
    }
}

impl Timestamp {
    pub fn new(version: u64, expires: Expires, snapshot_meta: MetaFile) -> Self {
        Timestamp {
            type_: Self::TYPE.into(),
            spec_version: SpecVersion::current(),
            version,
            expires,
            snapshot_meta,
            unrecognized: Unrecognized::new(),
        }
    }

    fn validate_fields(&self) -> Result<()> {
        self.snapshot_meta.validate()
    }
}

/// The snapshot role: the version of every targets metadata file, so that a client sees one
/// consistent view of the repository (spec section 4.4).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    type_: String,
    pub spec_version: SpecVersion,
    pub version: u64,
    pub expires: Expires,
    /// Keyed by `<role>.json`.
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

role_common!(Snapshot, "snapshot");

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("_type", Self::TYPE)?;
        fields.field("expires", &self.expires)?;
        fields.field("meta", &self.meta)?;
        fields.field("spec_version", &self.spec_version)?;
        fields.field("version", &self.version)?;
        fields.end()
    }
}

impl Snapshot {
    pub fn new(version: u64, expires: Expires, meta: BTreeMap<String, MetaFile>) -> Self {
        Snapshot {
            type_: Self::TYPE.into(),
            spec_version: SpecVersion::current(),
            version,
            expires,
            meta,
            unrecognized: Unrecognized::new(),
        }
    }

    /// The meta entry for `role`'s metadata (`<role>.json`).
    pub fn role_meta(&self, role: &RoleName) -> Option<&MetaFile> {
        self.meta.get(&format!("{role}.json"))
    }

    fn validate_fields(&self) -> Result<()> {
        self.meta.values().try_for_each(MetaFile::validate)
    }
}

/// One target file: its length, hashes, and optional application-specific `custom` data.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, HexDigest>,
    #[serde(default)]
    pub custom: Option<serde_json::Value>,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

impl Serialize for TargetFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.optional("custom", &self.custom)?;
        fields.field("hashes", &self.hashes)?;
        fields.field("length", &self.length)?;
        fields.end()
    }
}

impl TargetFile {
    /// Describes `content` by its length and SHA-256.
    pub fn from_content(content: &[u8]) -> Self {
        TargetFile {
            length: content.len() as u64,
            hashes: sha256_hashes(content),
            custom: None,
            unrecognized: Unrecognized::new(),
        }
    }

    /// Describes a file known by length and SHA-256 digest.
    pub fn from_sha256(length: u64, sha256: HexDigest) -> Self {
        TargetFile {
            length,
            hashes: BTreeMap::from([("sha256".to_string(), sha256)]),
            custom: None,
            unrecognized: Unrecognized::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        self.hashes.values().try_for_each(HexDigest::check)
    }
}

/// A targets role: the top-level one or a delegated one (spec section 4.5).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    type_: String,
    pub spec_version: SpecVersion,
    pub version: u64,
    pub expires: Expires,
    pub targets: BTreeMap<TargetPath, TargetFile>,
    #[serde(default)]
    pub delegations: Option<Delegations>,
    #[serde(flatten)]
    pub unrecognized: Unrecognized,
}

role_common!(Targets, "targets");

impl Serialize for Targets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("_type", Self::TYPE)?;
        fields.optional("delegations", &self.delegations)?;
        fields.field("expires", &self.expires)?;
        fields.field("spec_version", &self.spec_version)?;
        fields.field("targets", &self.targets)?;
        fields.field("version", &self.version)?;
        fields.end()
    }
}

impl Targets {
    pub fn new(version: u64, expires: Expires) -> Self {
        Targets {
            type_: Self::TYPE.into(),
            spec_version: SpecVersion::current(),
            version,
            expires,
            targets: BTreeMap::new(),
            delegations: None,
            unrecognized: Unrecognized::new(),
        }
    }

    fn validate_fields(&self) -> Result<()> {
        self.targets.values().try_for_each(TargetFile::validate)?;
        if let Some(delegations) = &self.delegations {
            delegations.validate()?;
        }
        Ok(())
    }

    /// Verifies that a threshold of the keys this role delegates `role` to signed `delegate`.
    pub fn verify_delegate(&self, role: &RoleName, delegate: &Metadata<Targets>) -> Result<()> {
        self.verify_delegate_bytes(role, &delegate.signed_bytes()?, delegate.signatures())
    }

    /// Like [`Targets::verify_delegate`], with the canonical signed bytes already at hand.
    pub fn verify_delegate_bytes(
        &self,
        role: &RoleName,
        signed_bytes: &[u8],
        signatures: &[Signature],
    ) -> Result<()> {
        let not_delegated =
            || Error::InvalidDelegations(format!("{role:?} is not a delegated role"));
        let delegations = self.delegations.as_ref().ok_or_else(not_delegated)?;
        let (keyids, threshold) = delegations.role_keys(role).ok_or_else(not_delegated)?;
        verify_threshold(
            role.as_str(),
            &delegations.keys,
            keyids,
            threshold,
            signed_bytes,
            signatures,
        )
    }
}
