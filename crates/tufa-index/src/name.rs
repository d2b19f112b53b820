//! Project names and versions as types that can only hold valid, normalized values.

use std::fmt;
use std::str::FromStr;

use crate::error::Invalid;

/// A project name normalized as PEP 503 says (lowercase, each run of `-`, `_`, `.` made one `-`),
/// from a name that PEP 508 allows (ASCII letters, digits, `-_.`, starting and ending with a letter
/// or digit). Two spellings of one project compare equal only through this type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn new(name: &str) -> Result<Self, Invalid> {
        let bytes = name.as_bytes();
        let alnum = |b: &u8| b.is_ascii_alphanumeric();
        let valid = !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(Invalid::ProjectName(name.to_string()));
        }
        let mut normalized = String::with_capacity(name.len());
        for c in name.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !normalized.ends_with('-') {
                    normalized.push('-');
                }
            } else {
                normalized.push(c.to_ascii_lowercase());
            }
        }
        Ok(ProjectName(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `name` is already spelled in normalized form (so URLs need no redirect).
    pub fn is_spelled(&self, name: &str) -> bool {
        self.0 == name
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProjectName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        ProjectName::new(s)
    }
}

/// A PEP 440 version, kept in its normalized spelling (`1.0.0-RC1` becomes `1.0.0rc1`), which is
/// how releases are stored and compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    parsed: pep440_rs::Version,
    normalized: String,
}

impl Version {
    pub fn new(text: &str) -> Result<Self, Invalid> {
        let parsed = pep440_rs::Version::from_str(text.trim())
            .map_err(|e| Invalid::Version(text.to_string(), e.to_string()))?;
        let normalized = parsed.to_string();
        Ok(Version { parsed, normalized })
    }

    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    pub fn is_prerelease(&self) -> bool {
        self.parsed.any_prerelease()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parsed.cmp(&other.parsed)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

/// A pattern normalized the way names are (PEP 503), `*`, `?` and `[...]` kept.
pub fn normalize_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_as_pep_503_says() {
        for (name, normalized) in [
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY-BARD", "friendly-bard"),
            ("friendly.bard", "friendly-bard"),
            ("friendly_bard", "friendly-bard"),
            ("friendly--bard", "friendly-bard"),
            ("FrIeNdLy-._.-bArD", "friendly-bard"),
            ("a", "a"),
        ] {
            assert_eq!(ProjectName::new(name).unwrap().as_str(), normalized);
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in ["", "-a", "a-", "a b", "a/b", "é", "..", "a\n"] {
            assert!(ProjectName::new(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn versions_normalize_and_order_as_pep_440_says() {
        assert_eq!(Version::new("1.0.0-RC1").unwrap().as_str(), "1.0.0rc1");
        assert_eq!(Version::new("v2").unwrap().as_str(), "2");
        assert!(Version::new("1.0rc1").unwrap() < Version::new("1.0").unwrap());
        assert!(Version::new("1.10").unwrap() > Version::new("1.9").unwrap());
        assert!(Version::new("1.0rc1").unwrap().is_prerelease());
        assert!(Version::new("not a version").is_err());
    }
}
