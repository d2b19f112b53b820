//! Where PEP 458 puts things: role names, file names under consistent snapshots, and the
//! one-target-per-project naming.

use std::time::Duration;

use tufa_metadata::{HexDigest, RoleName, TargetPath};

/// Metadata files, relative to the store root (served at `/tuf/metadata/`).
pub const METADATA_DIR: &str = "metadata";
/// Target files, relative to the store root (served at `/tuf/targets/`).
pub const TARGETS_DIR: &str = "targets";
/// The offline role that `targets` delegates every project page to.
pub const BINS_ROLE: &str = "bins";
/// TAP 15 name prefix of the hashed bin roles.
pub const BIN_PREFIX: &str = "bin";
/// The paths `targets` delegates to `bins`. TUF's glob never lets `*` cross a `/`, so the pattern
/// spells out the one shape of target this index publishes.
pub const PAGE_PATTERN: &str = "simple/*/index.json";

/// The target path of a project's PEP 691 JSON page: `simple/<normalized-name>/index.json`.
pub fn page_target(normalized_name: &str) -> TargetPath {
    TargetPath::new(format!("simple/{normalized_name}/index.json"))
        .expect("a normalized project name is never empty")
}

/// The stored file of a target under consistent snapshots: `<dir>/<sha256>.<basename>`.
pub fn target_file(target: &TargetPath, sha256: &HexDigest) -> String {
    let path = target.as_str();
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    format!("{TARGETS_DIR}/{prefix}{}.{base}", sha256.as_str())
}

/// The stored file of a role's metadata: `N.<role>.json`, except `timestamp.json`.
pub fn metadata_file(role: &RoleName, version: u64) -> String {
    if role.as_str() == "timestamp" {
        format!("{METADATA_DIR}/timestamp.json")
    } else {
        format!("{METADATA_DIR}/{version}.{}.json", role.as_str())
    }
}

/// How long each role's signatures last. Defaults are PEP 458's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub bins: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
    pub bin_roles: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            root: 365 * DAY,
            targets: 365 * DAY,
            bins: 365 * DAY,
            snapshot: DAY,
            timestamp: DAY,
            bin_roles: DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_snapshot_names() {
        let sha = HexDigest::new("ab".repeat(32)).unwrap();
        assert_eq!(
            target_file(&page_target("requests"), &sha),
            format!("targets/simple/requests/{}.index.json", "ab".repeat(32))
        );
        assert_eq!(
            metadata_file(&RoleName::new("bin-0a").unwrap(), 7),
            "metadata/7.bin-0a.json"
        );
        assert_eq!(
            metadata_file(&RoleName::timestamp(), 7),
            "metadata/timestamp.json"
        );
    }
}
