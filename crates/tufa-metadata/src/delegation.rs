//! Delegations from a targets role: explicit roles matched by `paths` globs or
//! `path_hash_prefixes`, or TAP 15 `succinct_roles` (hashed bins named by their number).

use std::collections::{BTreeMap, HashSet};

use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::canonical::SortedFields;
use crate::error::{Error, Result};
use crate::glob::fnmatch;
use crate::key::Key;
use crate::types::{KeyId, RoleName, Threshold};

/// The keys and roles a targets role delegates to.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawDelegations")]
pub struct Delegations {
    pub keys: BTreeMap<KeyId, Key>,
    pub roles: DelegatedRoles,
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

/// Exactly one of the two ways to name delegated roles.
#[derive(Clone, Debug, PartialEq)]
pub enum DelegatedRoles {
    /// Explicit roles, searched in this order.
    Roles(Vec<DelegatedRole>),
    /// TAP 15: `2^bit_length` roles named `<name_prefix>-<bin in hex>`.
    Succinct(SuccinctRoles),
}

#[derive(Deserialize)]
struct RawDelegations {
    keys: BTreeMap<KeyId, Key>,
    roles: Option<Vec<DelegatedRole>>,
    succinct_roles: Option<SuccinctRoles>,
    #[serde(flatten)]
    unrecognized: BTreeMap<String, serde_json::Value>,
}

impl TryFrom<RawDelegations> for Delegations {
    type Error = String;

    fn try_from(raw: RawDelegations) -> Result<Self, String> {
        let roles = match (raw.roles, raw.succinct_roles) {
            (Some(roles), None) => DelegatedRoles::Roles(roles),
            (None, Some(succinct)) => DelegatedRoles::Succinct(succinct),
            _ => return Err("delegations need exactly one of roles and succinct_roles".into()),
        };
        Ok(Delegations {
            keys: raw.keys,
            roles,
            unrecognized: raw.unrecognized,
        })
    }
}

impl Serialize for Delegations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("keys", &self.keys)?;
        match &self.roles {
            DelegatedRoles::Roles(roles) => fields.field("roles", roles)?,
            DelegatedRoles::Succinct(succinct) => fields.field("succinct_roles", succinct)?,
        }
        fields.end()
    }
}

impl Delegations {
    pub(crate) fn validate(&self) -> Result<()> {
        for (keyid, key) in &self.keys {
            key.check_id(keyid)?;
        }
        match &self.roles {
            DelegatedRoles::Roles(roles) => {
                let mut names = HashSet::new();
                for role in roles {
                    if role.name.is_top_level() {
                        return Err(Error::InvalidDelegations(format!(
                            "a delegated role cannot be named {:?}, a top-level role",
                            role.name.as_str()
                        )));
                    }
                    if !names.insert(&role.name) {
                        return Err(Error::InvalidDelegations(format!(
                            "role {:?} is delegated twice",
                            role.name.as_str()
                        )));
                    }
                    check_keyids(role.name.as_str(), &role.keyids, role.threshold)?;
                    if let PathMatcher::HashPrefixes(prefixes) = &role.paths
                        && let Some(bad) = prefixes
                            .iter()
                            .find(|p| !p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    {
                        return Err(Error::InvalidDelegations(format!(
                            "path hash prefix {bad:?} of role {:?} is not lowercase hex",
                            role.name.as_str()
                        )));
                    }
                }
            }
            DelegatedRoles::Succinct(succinct) => {
                if !(1..=32).contains(&succinct.bit_length) {
                    return Err(Error::InvalidDelegations(format!(
                        "succinct_roles bit_length {} is outside 1..=32",
                        succinct.bit_length
                    )));
                }
                if succinct.name_prefix.is_empty() {
                    return Err(Error::InvalidDelegations(
                        "succinct_roles name_prefix is empty".into(),
                    ));
                }
                check_keyids(&succinct.name_prefix, &succinct.keyids, succinct.threshold)?;
            }
        }
        Ok(())
    }

    /// The key IDs and threshold for the delegated role `name`, if this role delegates to it.
    pub fn role_keys(&self, name: &RoleName) -> Option<(&[KeyId], Threshold)> {
        match &self.roles {
            DelegatedRoles::Roles(roles) => roles
                .iter()
                .find(|r| &r.name == name)
                .map(|r| (r.keyids.as_slice(), r.threshold)),
            DelegatedRoles::Succinct(succinct) => succinct
                .is_delegated_role(name)
                .then_some((succinct.keyids.as_slice(), succinct.threshold)),
        }
    }

    /// The roles trusted for `target_path`, in search order, each with whether it is terminating.
    /// With succinct roles exactly one bin is responsible, and it is terminating: TAP 15 bins
    /// partition the path space, so no other role may answer for a path its bin does not list.
    pub fn roles_for_target(&self, target_path: &str) -> Vec<(RoleName, bool)> {
        match &self.roles {
            DelegatedRoles::Roles(roles) => roles
                .iter()
                .filter(|r| r.is_delegated_path(target_path))
                .map(|r| (r.name.clone(), r.terminating))
                .collect(),
            DelegatedRoles::Succinct(succinct) => {
                vec![(succinct.role_for_target(target_path), true)]
            }
        }
    }
}

pub(crate) fn check_keyids(role: &str, keyids: &[KeyId], threshold: Threshold) -> Result<()> {
    threshold.check(role)?;
    let mut seen = HashSet::new();
    for keyid in keyids {
        if !seen.insert(keyid) {
            return Err(Error::DuplicateRoleKey {
                role: role.into(),
                keyid: keyid.clone(),
            });
        }
    }
    Ok(())
}

/// Which target paths a delegated role is trusted for.
#[derive(Clone, Debug, PartialEq)]
pub enum PathMatcher {
    /// Shell-style patterns, matched one `/`-separated component at a time as python-tuf does:
    /// `*` never crosses a `/`.
    Paths(Vec<String>),
    /// Lowercase hex prefixes of the SHA-256 of the target path.
    HashPrefixes(Vec<String>),
}

/// A role named in a `roles` delegation list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawDelegatedRole")]
pub struct DelegatedRole {
    pub name: RoleName,
    pub keyids: Vec<KeyId>,
    pub threshold: Threshold,
    pub terminating: bool,
    pub paths: PathMatcher,
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawDelegatedRole {
    name: String,
    keyids: Vec<KeyId>,
    threshold: Threshold,
    terminating: bool,
    paths: Option<Vec<String>>,
    path_hash_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    unrecognized: BTreeMap<String, serde_json::Value>,
}

impl TryFrom<RawDelegatedRole> for DelegatedRole {
    type Error = String;

    fn try_from(raw: RawDelegatedRole) -> Result<Self, String> {
        let paths = match (raw.paths, raw.path_hash_prefixes) {
            (Some(paths), None) => PathMatcher::Paths(paths),
            (None, Some(prefixes)) => PathMatcher::HashPrefixes(prefixes),
            _ => {
                return Err(format!(
                    "delegated role {:?} needs exactly one of paths and path_hash_prefixes",
                    raw.name
                ));
            }
        };
        Ok(DelegatedRole {
            name: RoleName::new(raw.name).map_err(|e| e.to_string())?,
            keyids: raw.keyids,
            threshold: raw.threshold,
            terminating: raw.terminating,
            paths,
            unrecognized: raw.unrecognized,
        })
    }
}

impl Serialize for DelegatedRole {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("keyids", &self.keyids)?;
        fields.field("name", &self.name)?;
        match &self.paths {
            PathMatcher::HashPrefixes(prefixes) => fields.field("path_hash_prefixes", prefixes)?,
            PathMatcher::Paths(paths) => fields.field("paths", paths)?,
        }
        fields.field("terminating", &self.terminating)?;
        fields.field("threshold", &self.threshold)?;
        fields.end()
    }
}

impl DelegatedRole {
    /// Whether this role is trusted to sign for `target_path`.
    pub fn is_delegated_path(&self, target_path: &str) -> bool {
        match &self.paths {
            PathMatcher::Paths(patterns) => patterns
                .iter()
                .any(|pattern| matches_path_pattern(target_path, pattern)),
            PathMatcher::HashPrefixes(prefixes) => {
                let digest = hex::encode(sha256(target_path.as_bytes()));
                prefixes
                    .iter()
                    .any(|prefix| digest.starts_with(prefix.as_str()))
            }
        }
    }
}

fn matches_path_pattern(target_path: &str, pattern: &str) -> bool {
    let targets = target_path.split('/');
    let patterns = pattern.split('/');
    targets.clone().count() == patterns.clone().count()
        && targets.zip(patterns).all(|(t, p)| fnmatch(t, p))
}

/// TAP 15 succinct hashed-bin delegation: the target path's SHA-256, first `bit_length` bits,
/// picks one of `2^bit_length` roles, all sharing one key set and threshold.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SuccinctRoles {
    pub keyids: Vec<KeyId>,
    pub threshold: Threshold,
    pub bit_length: u32,
    pub name_prefix: String,
    #[serde(flatten)]
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

impl Serialize for SuccinctRoles {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("bit_length", &self.bit_length)?;
        fields.field("keyids", &self.keyids)?;
        fields.field("name_prefix", &self.name_prefix)?;
        fields.field("threshold", &self.threshold)?;
        fields.end()
    }
}

impl SuccinctRoles {
    /// Creates succinct roles; `bit_length` must be within 1..=32.
    pub fn new(
        keyids: Vec<KeyId>,
        threshold: Threshold,
        bit_length: u32,
        name_prefix: impl Into<String>,
    ) -> Result<Self> {
        let roles = SuccinctRoles {
            keyids,
            threshold,
            bit_length,
            name_prefix: name_prefix.into(),
            unrecognized: BTreeMap::new(),
        };
        Delegations {
            keys: BTreeMap::new(),
            roles: DelegatedRoles::Succinct(roles.clone()),
            unrecognized: BTreeMap::new(),
        }
        .validate()?;
        Ok(roles)
    }

    /// How many bins there are.
    pub fn bin_count(&self) -> u64 {
        1u64 << self.bit_length
    }

    /// Hex digits in a bin's suffix: enough for the largest bin number.
    fn suffix_len(&self) -> usize {
        self.bit_length.div_ceil(4) as usize
    }

    /// The bin responsible for `target_path`: the first `bit_length` bits of its SHA-256.
    pub fn bin_for_target(&self, target_path: &str) -> u32 {
        let digest = sha256(target_path.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // bit_length is validated to 1..=32, so the shift is at most 31.
        first >> (32 - self.bit_length)
    }

    /// The role name of bin number `bin`: `<name_prefix>-<zero-padded lowercase hex>`.
    pub fn role_name(&self, bin: u32) -> RoleName {
        RoleName(format!(
            "{}-{:0width$x}",
            self.name_prefix,
            bin,
            width = self.suffix_len()
        ))
    }

    pub fn role_for_target(&self, target_path: &str) -> RoleName {
        self.role_name(self.bin_for_target(target_path))
    }

    /// Every bin's role name, in bin order.
    pub fn role_names(&self) -> impl Iterator<Item = RoleName> + '_ {
        (0..self.bin_count()).map(|bin| self.role_name(bin as u32))
    }

    /// Whether `name` is one of this delegation's bins.
    pub fn is_delegated_role(&self, name: &RoleName) -> bool {
        let Some(suffix) = name
            .as_str()
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            return false;
        };
        suffix.len() == self.suffix_len()
            && suffix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && u64::from_str_radix(suffix, 16).is_ok_and(|bin| bin < self.bin_count())
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succinct(bits: u32) -> SuccinctRoles {
        SuccinctRoles::new(vec![], Threshold::new(1).unwrap(), bits, "bin").unwrap()
    }

    #[test]
    fn bin_names_are_zero_padded_hex() {
        let bins = succinct(8);
        assert_eq!(bins.role_name(0).as_str(), "bin-00");
        assert_eq!(bins.role_name(255).as_str(), "bin-ff");
        assert_eq!(succinct(14).role_name(16383).as_str(), "bin-3fff");
        assert_eq!(succinct(1).role_name(1).as_str(), "bin-1");
        assert_eq!(succinct(32).role_name(0xdead).as_str(), "bin-0000dead");
        assert_eq!(succinct(14).role_names().count(), 16384);
    }

    #[test]
    fn bin_is_the_leading_bits_of_the_path_hash() {
        // sha256("simple/requests/index.json") starts with these bytes (checked with sha256sum).
        let path = "simple/requests/index.json";
        let digest = sha256(path.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        assert_eq!(succinct(8).bin_for_target(path), first >> 24);
        assert_eq!(succinct(14).bin_for_target(path), first >> 18);
        assert_eq!(succinct(32).bin_for_target(path), first);
    }

    #[test]
    fn only_real_bins_are_delegated() {
        let bins = succinct(10);
        for name in ["bin-000", "bin-3ff", "bin-1a2"] {
            assert!(
                bins.is_delegated_role(&RoleName::new(name).unwrap()),
                "{name}"
            );
        }
        for name in [
            "bin-400", "bin-00", "bin-0000", "bin-3FF", "bins-000", "bin000", "bin-+01",
        ] {
            assert!(
                !bins.is_delegated_role(&RoleName::new(name).unwrap()),
                "{name}"
            );
        }
    }

    #[test]
    fn bit_length_must_be_1_to_32() {
        for bad in [0, 33] {
            assert!(matches!(
                SuccinctRoles::new(vec![], Threshold::new(1).unwrap(), bad, "bin"),
                Err(Error::InvalidDelegations(_))
            ));
        }
    }

    #[test]
    fn path_patterns_match_per_component() {
        assert!(matches_path_pattern("a/b/c.txt", "a/*/*.txt"));
        assert!(!matches_path_pattern("a/b/c/d.txt", "a/*/*.txt"));
        assert!(!matches_path_pattern("a/b.txt", "*"));
        assert!(matches_path_pattern("a.txt", "*"));
        assert!(matches_path_pattern(
            "simple/requests/index.json",
            "simple/*/index.json"
        ));
    }
}
