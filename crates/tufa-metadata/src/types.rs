//! Newtypes for the spec's nouns, so that a role name cannot be passed where a key ID is expected
//! and a parsed expiry is always one that re-serializes to the signed bytes.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::error::{Error, Result};

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub(crate) String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A key's identifier: the hex SHA-256 of the key's canonical JSON form (spec section 4.2).
    /// Metadata parsing checks that every key's ID matches its content.
    KeyId
);

impl KeyId {
    /// Wraps an identifier as written in metadata. Whether it matches a key is checked where the
    /// key is known (see [`crate::Key::check_id`]).
    pub fn new(id: impl Into<String>) -> Self {
        KeyId(id.into())
    }
}

string_newtype!(
    /// The name of a role: one of the four top-level roles or a delegated role.
    RoleName
);

impl RoleName {
    /// A role name as metadata uses it. Names must be non-empty; delegated names may hold any
    /// other character (URLs and file names percent-encode them).
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::InvalidRoleName {
                name,
                reason: "role names cannot be empty",
            });
        }
        Ok(RoleName(name))
    }

    pub fn root() -> Self {
        RoleName("root".into())
    }
    pub fn timestamp() -> Self {
        RoleName("timestamp".into())
    }
    pub fn snapshot() -> Self {
        RoleName("snapshot".into())
    }
    pub fn targets() -> Self {
        RoleName("targets".into())
    }

    /// Whether this is one of root, timestamp, snapshot and targets.
    pub fn is_top_level(&self) -> bool {
        TOP_LEVEL_ROLES.contains(&self.0.as_str())
    }
}

/// The names of the four top-level roles.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

string_newtype!(
    /// A target's path relative to the repository's targets URL, with `/` as separator.
    TargetPath
);

impl TargetPath {
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        if path.is_empty() {
            return Err(Error::InvalidTargetPath {
                path,
                reason: "target paths cannot be empty",
            });
        }
        Ok(TargetPath(path))
    }
}

/// A role's signature threshold. Zero is refused when metadata is parsed (see
/// [`crate::Metadata::from_bytes`]) and by [`Threshold::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Threshold(u32);

impl Threshold {
    /// One signature suffices: the online roles' threshold.
    pub const ONE: Threshold = Threshold(1);

    pub fn new(threshold: u32) -> Option<Self> {
        (threshold >= 1).then_some(Threshold(threshold))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn check(self, role: &str) -> Result<()> {
        if self.0 == 0 {
            return Err(Error::ZeroThreshold { role: role.into() });
        }
        Ok(())
    }
}

/// The `spec_version` a metadata file claims. Only major version 1 is accepted, as python-tuf does:
/// minor versions are backwards compatible by the spec's own versioning rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecVersion(String);

impl SpecVersion {
    /// The specification version this implementation follows.
    pub const CURRENT: &'static str = "1.0.34";

    pub fn current() -> Self {
        SpecVersion(Self::CURRENT.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn check(&self) -> Result<()> {
        let parts: Vec<&str> = self.0.split('.').collect();
        let numeric = parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(2..=3).contains(&parts.len()) || !numeric || parts[0] != "1" {
            return Err(Error::UnsupportedSpecVersion(self.0.clone()));
        }
        Ok(())
    }
}

impl Default for SpecVersion {
    fn default() -> Self {
        Self::current()
    }
}

const EXPIRES_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// When a metadata file stops being trustworthy: a UTC time with whole seconds, written as
/// `YYYY-MM-DDTHH:MM:SSZ`. Only that exact spelling parses, so re-serializing gives back the
/// signed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expires(OffsetDateTime);

impl Expires {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidExpires(text.into());
        let parsed = time::PrimitiveDateTime::parse(text, EXPIRES_FORMAT)
            .map_err(|_| invalid())?
            .assume_utc();
        let expires = Expires(parsed);
        if expires.to_string() != text {
            return Err(invalid());
        }
        Ok(expires)
    }

    /// `duration` after `now`, truncated to whole seconds.
    pub fn after(now: SystemTime, duration: Duration) -> Self {
        let at = OffsetDateTime::from(now + duration);
        Expires(at.replace_nanosecond(0).unwrap_or(at))
    }

    /// The spec's freeze check: metadata is expired once the reference time reaches its expiry.
    pub fn is_expired_at(&self, reference: SystemTime) -> bool {
        OffsetDateTime::from(reference) >= self.0
    }

    /// Seconds since the Unix epoch.
    pub fn unix_timestamp(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn to_system_time(&self) -> SystemTime {
        SystemTime::from(self.0)
    }
}

impl fmt::Display for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(EXPIRES_FORMAT) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl Serialize for Expires {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Expires::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex digest, as TUF writes hashes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexDigest(String);

impl HexDigest {
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() % 2 == 0
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(Error::InvalidHash { value });
        }
        Ok(HexDigest(value))
    }

    pub fn from_bytes(digest: &[u8]) -> Self {
        HexDigest(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn check(&self) -> Result<()> {
        HexDigest::new(self.0.clone()).map(|_| ())
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_round_trips_only_the_canonical_spelling() {
        let e = Expires::parse("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(e.to_string(), "2030-01-02T03:04:05Z");
        for bad in [
            "2030-01-02T03:04:05.5Z",
            "2030-01-02T03:04:05+00:00",
            "2030-1-02T03:04:05Z",
            "2030-01-02 03:04:05Z",
            "2030-02-30T00:00:00Z",
        ] {
            assert!(Expires::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn expiry_is_reached_at_the_instant() {
        let e = Expires::parse("2030-01-01T00:00:00Z").unwrap();
        let at = e.to_system_time();
        assert!(e.is_expired_at(at));
        assert!(!e.is_expired_at(at - Duration::from_secs(1)));
    }

    #[test]
    fn spec_version_major_must_be_one() {
        for ok in ["1.0", "1.0.34", "1.2.0"] {
            SpecVersion(ok.into()).check().unwrap();
        }
        for bad in ["2.0.0", "1", "1.0.0.0", "1.a.0", "", "01x"] {
            assert!(SpecVersion(bad.into()).check().is_err(), "{bad}");
        }
    }
}
