//! Where PEP 458 puts things: role names, file names under consistent snapshots, and the
//! one-target-per-project naming.

use std::time::Duration;

use tufa_metadata::{HexDigest, OnlineLifetimes, OnlineRole, RoleName, Root, TargetPath};

/// Metadata files, relative to the store root (served at `/tuf/metadata/`).
pub const METADATA_DIR: &str = "metadata";
/// Target files, relative to the store root (served at `/tuf/targets/`).
pub const TARGETS_DIR: &str = "targets";
/// The directories of published files: what garbage collection looks through.
pub const PUBLISHED_DIRS: [&str; 2] = [METADATA_DIR, TARGETS_DIR];
/// The offline role that `targets` delegates every project page to.
pub const BINS_ROLE: &str = "bins";
/// TAP 15 name prefix of the hashed bin roles.
pub const BIN_PREFIX: &str = "bin";
/// The views of a project the index publishes, each one TUF target per project under its own
/// directory, delegated from `targets` to `bins` by its own pattern (TUF's glob never lets `*`
/// cross a `/`, so each pattern spells out one shape of target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// Every file: the project's PEP 691 page, `simple/<name>/index.json`.
    Simple,
    /// Only files past the cooldown period, with the operator's allow and deny decisions:
    /// `cooldown/<name>/index.json`.
    Cooldown,
}

impl View {
    pub const ALL: [View; 2] = [View::Simple, View::Cooldown];

    /// The directory of the view's targets, also its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            View::Simple => "simple",
            View::Cooldown => "cooldown",
        }
    }

    /// The pattern `targets` delegates the view's pages to `bins` with.
    pub fn pattern(self) -> &'static str {
        match self {
            View::Simple => "simple/*/index.json",
            View::Cooldown => "cooldown/*/index.json",
        }
    }
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for View {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        View::ALL
            .into_iter()
            .find(|view| view.as_str() == text)
            .ok_or_else(|| format!("{text:?} is no view: use simple or cooldown"))
    }
}

/// The target path of a project's page in `view`: `<view>/<normalized-name>/index.json`.
pub fn page_target(view: View, normalized_name: &str) -> TargetPath {
    TargetPath::new(format!("{}/{normalized_name}/index.json", view.as_str()))
        .expect("a normalized project name is never empty")
}

/// The view and project whose page `target` is, if it is a page.
pub fn page_of(target: &str) -> Option<(View, &str)> {
    let (dir, rest) = target.split_once('/')?;
    let view = dir.parse::<View>().ok()?;
    let project = rest
        .strip_suffix("/index.json")
        .filter(|project| !project.is_empty() && !project.contains('/'))?;
    Some((view, project))
}

/// The target and the sha256 (hex) of a stored target file, the inverse of [`target_file`];
/// `None` for a path [`target_file`] never makes.
pub fn target_of_file(file: &str) -> Option<(TargetPath, &str)> {
    let path = file.strip_prefix(TARGETS_DIR)?.strip_prefix('/')?;
    let (dir, base) = match path.rsplit_once('/') {
        Some((dir, base)) => (Some(dir), base),
        None => (None, path),
    };
    let (sha256, name) = base.split_once('.')?;
    if sha256.len() != 64 || name.is_empty() {
        return None;
    }
    let target = match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    };
    Some((TargetPath::new(target).ok()?, sha256))
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

/// Bytes one bin role adds to the snapshot, `"bin-0a3f.json":{"version":1234},` in canonical
/// JSON (measured by the test below).
const SNAPSHOT_ENTRY_BYTES: u64 = 33;
/// Bytes one project page adds to its bin role:
/// `"simple/<name>/index.json":{"hashes":{"sha256":"<64 hex>"},"length":12345},` with a name of
/// 12 characters, about the median length on PyPI (measured by the test below).
const TARGET_ENTRY_BYTES: u64 = 137;
/// The most bin bits [`bin_bits_for`] picks: 2^20 bins would suit 60 billion projects.
const MAX_BIN_BITS: u32 = 20;

/// The number of bin bits that suits `projects` projects: the classic calculation (python-tuf's
/// maintainers', for PyPI) that minimises what a client fetches after a change, the snapshot
/// (one entry per bin) plus one bin (its share of the targets), `b * s + (n / b) * t`, whose
/// minimum is at `b = sqrt(n * t / s)`. PEP 458 sized its 16,384 bins for one target per
/// distribution file; Tufa has one per project (its page), so the same calculation gives far
/// fewer bins: 2,048 for a million projects with Tufa's entry sizes (135 KB against 169 KB
/// at 4,096 and 168 KB at 1,024).
///
/// With TAP 16 proofs clients no longer fetch the snapshot, and more bins only add one proof
/// step (about 70 bytes) per doubling; the benchmark shows both.
pub fn bin_bits_for(projects: u64) -> u32 {
    let cost = |bits: u32| {
        let bins = 1u64 << bits;
        (bins * SNAPSHOT_ENTRY_BYTES)
            .saturating_add(projects.div_ceil(bins).saturating_mul(TARGET_ENTRY_BYTES))
    };
    (1..=MAX_BIN_BITS)
        .min_by_key(|&bits| cost(bits))
        .unwrap_or(1)
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

impl Expiries {
    /// The online lifetimes a new root declares: the publisher's own expiries, so that clients
    /// accept what it signs and refuse anything a stolen online key signs for longer.
    pub fn online_lifetimes(&self) -> OnlineLifetimes {
        OnlineLifetimes {
            timestamp: self.timestamp.as_secs(),
            snapshot: self.snapshot.as_secs(),
            bins: self.bin_roles.as_secs(),
        }
    }

    /// These expiries with each online one cut to the lifetime `root` declares, so the
    /// publisher never signs what clients would refuse. Logs each cut.
    pub fn within_declared(self, root: &Root) -> tufa_metadata::Result<Expiries> {
        let Some(declared) = OnlineLifetimes::of(root)? else {
            return Ok(self);
        };
        let cut = |role: &str, configured: Duration, online: OnlineRole| {
            let allowed = declared.of_role(online);
            if configured > allowed {
                tracing::warn!(
                    role,
                    configured_seconds = configured.as_secs(),
                    declared_seconds = allowed.as_secs(),
                    "the expiry configured for this role is longer than root's \
                     x-tufa-online-lifetimes allows: signing with the declared lifetime"
                );
            }
            configured.min(allowed)
        };
        Ok(Expiries {
            timestamp: cut("timestamp", self.timestamp, OnlineRole::Timestamp),
            snapshot: cut("snapshot", self.snapshot, OnlineRole::Snapshot),
            bin_roles: cut("bin-*", self.bin_roles, OnlineRole::Bin),
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_target_file_names_its_target_and_digest() {
        let sha = HexDigest::new("ab".repeat(32)).unwrap();
        for target in [
            page_target(View::Simple, "requests"),
            page_target(View::Cooldown, "a-b"),
            TargetPath::new("top.json").unwrap(),
        ] {
            let file = target_file(&target, &sha);
            assert_eq!(
                target_of_file(&file),
                Some((target, sha.as_str())),
                "{file}"
            );
        }
        for file in [
            "metadata/1.root.json",
            "targets/simple/requests/index.json",
            "targets/simple/requests/abab.index.json",
            &format!("targets/simple/requests/{}.", "ab".repeat(32)),
        ] {
            assert_eq!(target_of_file(file), None, "{file}");
        }
    }

    #[test]
    fn consistent_snapshot_names() {
        let sha = HexDigest::new("ab".repeat(32)).unwrap();
        assert_eq!(
            target_file(&page_target(View::Simple, "requests"), &sha),
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

    #[test]
    fn bin_bits_follow_the_expected_number_of_projects() {
        use std::collections::BTreeMap;
        use tufa_metadata::{MetaFile, TargetFile, to_canonical_bytes};
        // The entry sizes the calculation assumes are what canonical JSON writes (+1 comma).
        let entry = BTreeMap::from([("bin-0a3f.json", MetaFile::new(1234))]);
        assert_eq!(
            to_canonical_bytes(&entry).unwrap().len() as u64 - 1,
            SNAPSHOT_ENTRY_BYTES
        );
        let page = page_target(View::Simple, "abcdefghijkl");
        let file = TargetFile::from_sha256(12_345, HexDigest::new("ab".repeat(32)).unwrap());
        let target = BTreeMap::from([(page.as_str(), file)]);
        assert_eq!(
            to_canonical_bytes(&target).unwrap().len() as u64 - 1,
            TARGET_ENTRY_BYTES
        );

        assert_eq!(bin_bits_for(0), 1);
        assert_eq!(bin_bits_for(100), 4);
        assert_eq!(bin_bits_for(10_000), 8);
        assert_eq!(bin_bits_for(1_000_000), 11);
        assert_eq!(bin_bits_for(u64::MAX), MAX_BIN_BITS);
    }

    #[test]
    fn pages_of_every_view_are_recognized_and_delegated_by_their_pattern() {
        for view in View::ALL {
            let target = page_target(view, "demo-project");
            assert_eq!(page_of(target.as_str()), Some((view, "demo-project")));
            let components = target.as_str().split('/');
            assert!(
                view.pattern()
                    .split('/')
                    .zip(components)
                    .all(|(pattern, component)| tufa_metadata::fnmatch(component, pattern))
            );
            for other in View::ALL.into_iter().filter(|&other| other != view) {
                assert!(!target.as_str().starts_with(other.as_str()));
            }
            assert_eq!(view.as_str().parse::<View>(), Ok(view));
        }
        assert_eq!(page_of("simple//index.json"), None);
        assert_eq!(page_of("simple/a/b/index.json"), None);
        assert_eq!(page_of("other/a/index.json"), None);
        assert!("stable".parse::<View>().is_err());
    }
}
