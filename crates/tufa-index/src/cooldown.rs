//! The signed cooldown view: for every project, a page holding only files uploaded at least the
//! cooldown period ago (upstream upload-time for mirrored files), plus the releases an operator
//! allowed early, minus the releases an operator denied. Installers pointed at it never see a
//! fresh upload, which is what an account takeover publishes; the fix that cannot wait is
//! admitted with `tufa cooldown allow`.
//!
//! The view is a function of the database alone: the files, the overrides, and the boundary up
//! to which the publisher has swept (see [`crate::db::Database::sweep_cooldown`]), never the
//! clock of a request. So the page served at `/cooldown/simple/<name>/` and the signed target
//! `cooldown/<name>/index.json` are the same bytes at the same serial, and every change to the
//! view (an upload, an override, a file crossing the boundary) is a journal entry the publisher
//! signs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::db::FileRecord;
use crate::name::{ProjectName, Version};

/// How the index runs the cooldown view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long a file waits before it enters the view.
    pub period: Duration,
    /// Patterns (shell globs on the normalized name, `acme-*`) of projects that skip the wait.
    pub exempt: Vec<String>,
}

impl Policy {
    /// Whether `project` skips the waiting period.
    pub fn exempts(&self, project: &ProjectName) -> bool {
        self.exempt
            .iter()
            .any(|pattern| tufa_metadata::fnmatch(project.as_str(), pattern))
    }

    pub fn period_micros(&self) -> i64 {
        i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX)
    }
}

/// An operator's decision on one release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted before its files are old enough (an urgent fix).
    Allow,
    /// Held back whatever the age of its files (a compromised release).
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// An operator's decision as recorded: who took it, when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub project: ProjectName,
    pub version: Version,
    pub decision: Decision,
    pub reason: String,
    pub who: String,
    pub time_micros: i64,
}

/// A release the page names with the operator's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decided {
    pub version: String,
    pub reason: String,
    /// When the decision was taken (RFC 3339).
    pub time: String,
}

/// What the page says of the view, under the private key `_tufa-cooldown` (PEP 691 leaves
/// underscore keys to the index): enough for a user to see why a release is or is not there.
/// Nothing in it changes with an upload that the view holds back, so that such an upload leaves
/// the signed cooldown page as it is (see `tufa_repo::Repository::publish`), which is also why
/// the page carries no `_last-serial`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shown {
    pub period: String,
    #[serde(rename = "period-seconds")]
    pub period_seconds: u64,
    pub exempt: bool,
    pub allowed: Vec<Decided>,
    pub denied: Vec<Decided>,
}

/// A project's cooldown view: the files in it and what the page says of it.
#[derive(Debug)]
pub struct Filtered {
    pub files: Vec<FileRecord>,
    pub versions: Vec<Version>,
    pub shown: Shown,
}

/// The view of one project's `files` and `versions` with the files that crossed the boundary by
/// `boundary_micros` (the sweep cursor), the operator's `overrides` applied. An exempt project
/// skips the wait; a denied release stays out even there, since a deny is an explicit decision.
pub fn filter(
    policy: &Policy,
    project: &ProjectName,
    versions: &[Version],
    files: &[FileRecord],
    overrides: &[Override],
    boundary_micros: i64,
) -> Filtered {
    let exempt = policy.exempts(project);
    let decided = |decision: Decision| -> BTreeMap<&str, &Override> {
        overrides
            .iter()
            .filter(|o| o.decision == decision)
            .map(|o| (o.version.as_str(), o))
            .collect()
    };
    let (allowed, denied) = (decided(Decision::Allow), decided(Decision::Deny));
    let period = policy.period_micros();
    let cutoff = boundary_micros.saturating_sub(period);
    let kept: Vec<FileRecord> = files
        .iter()
        .filter(|file| {
            let version = file.version.as_str();
            !denied.contains_key(version)
                && (exempt || allowed.contains_key(version) || file.upload_time_micros <= cutoff)
        })
        .cloned()
        .collect();
    let present: BTreeSet<&str> = kept.iter().map(|f| f.version.as_str()).collect();
    let shown_versions = versions
        .iter()
        .filter(|v| present.contains(v.as_str()))
        .cloned()
        .collect();
    let listed = |decisions: &BTreeMap<&str, &Override>| -> Vec<Decided> {
        let mut listed: Vec<&&Override> = decisions.values().collect();
        listed.sort_by(|a, b| a.version.cmp(&b.version));
        listed
            .into_iter()
            .map(|o| Decided {
                version: o.version.to_string(),
                reason: o.reason.clone(),
                time: crate::pages::rfc3339(o.time_micros),
            })
            .collect()
    };
    Filtered {
        files: kept,
        versions: shown_versions,
        shown: Shown {
            period: format_duration(policy.period),
            period_seconds: policy.period.as_secs(),
            exempt,
            allowed: listed(&allowed),
            denied: listed(&denied),
        },
    }
}

/// [`filter`] over a project as the database read it for its cooldown page.
pub fn filter_state(
    policy: &Policy,
    project: &ProjectName,
    state: &crate::db::CooldownState,
) -> Filtered {
    filter(
        policy,
        project,
        &state.versions,
        &state.files,
        &state.overrides,
        state.swept_micros,
    )
}

/// A duration as `tufa serve --cooldown` takes it, in the largest unit that divides it:
/// `7d`, `36h`, `90m`, `45s`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds > 0 && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// Why a duration was refused; each message says how to write one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("{0:?} has no unit: use a number and a unit: 30s, 10m, 12h, 7d")]
    NoUnit(String),
    #[error("{0:?} is not a duration: use a number and a unit: 30s, 10m, 12h, 7d")]
    NotADuration(String),
    #[error("{0:?} is too long: use a number and a unit: 30s, 10m, 12h, 7d")]
    TooLong(String),
}

/// A duration written as a number and a unit: `30s`, `10m`, `12h`, `7d`. One syntax for every
/// duration a tufa command takes.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| BadDuration::NoUnit(text.into()))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| BadDuration::NotADuration(text.into()))?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(BadDuration::NotADuration(text.into())),
    };
    number
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| BadDuration::TooLong(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn file(version: &str, uploaded: i64) -> FileRecord {
        FileRecord {
            filename: format!("demo-{version}-py3-none-any.whl"),
            version: version.into(),
            packagetype: "bdist_wheel".into(),
            python_version: "py3".into(),
            size: 10,
            sha256: "ab".repeat(32),
            md5: "cd".repeat(16),
            blake2_256: "ef".repeat(32),
            requires_python: None,
            metadata_sha256: None,
            upload_time_micros: uploaded,
            yanked: None,
            provenance_sha256: None,
        }
    }

    fn decision(version: &str, decision: Decision) -> Override {
        Override {
            project: ProjectName::new("demo").unwrap(),
            version: Version::new(version).unwrap(),
            decision,
            reason: format!("{} {version}", decision.as_str()),
            who: "ops".into(),
            time_micros: 5 * SECOND,
        }
    }

    fn versions(list: &[&str]) -> Vec<Version> {
        list.iter().map(|v| Version::new(v).unwrap()).collect()
    }

    fn policy(exempt: &[&str]) -> Policy {
        Policy {
            period: Duration::from_secs(100),
            exempt: exempt.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn kept(filtered: &Filtered) -> Vec<&str> {
        filtered.files.iter().map(|f| f.version.as_str()).collect()
    }

    #[test]
    fn only_files_past_the_boundary_enter_the_view() {
        let name = ProjectName::new("demo").unwrap();
        let files = [
            file("1.0", 0),
            file("1.1", 50 * SECOND),
            file("2.0", 150 * SECOND),
        ];
        let all = versions(&["1.0", "1.1", "2.0"]);
        // At 150 s only 1.0 (uploaded at 0) is 100 s old; at exactly 150 s 1.1 crosses too.
        let at = |boundary| filter(&policy(&[]), &name, &all, &files, &[], boundary);
        assert_eq!(kept(&at(149 * SECOND)), ["1.0"]);
        let crossed = at(150 * SECOND);
        assert_eq!(kept(&crossed), ["1.0", "1.1"]);
        assert_eq!(crossed.versions, versions(&["1.0", "1.1"]));
        assert_eq!(crossed.shown.period, "100s");
        assert!(!crossed.shown.exempt);
    }

    #[test]
    fn allow_admits_a_fresh_release_and_deny_holds_an_old_one_back() {
        let name = ProjectName::new("demo").unwrap();
        let files = [file("1.0", 0), file("1.1", 0), file("2.0", 900 * SECOND)];
        let all = versions(&["1.0", "1.1", "2.0"]);
        let overrides = [
            decision("2.0", Decision::Allow),
            decision("1.1", Decision::Deny),
        ];
        let filtered = filter(&policy(&[]), &name, &all, &files, &overrides, 901 * SECOND);
        assert_eq!(kept(&filtered), ["1.0", "2.0"]);
        assert_eq!(filtered.shown.allowed[0].version, "2.0");
        assert_eq!(filtered.shown.allowed[0].reason, "allow 2.0");
        assert_eq!(filtered.shown.denied[0].version, "1.1");
    }

    #[test]
    fn exempt_projects_skip_the_wait_but_not_a_deny() {
        let name = ProjectName::new("acme-tools").unwrap();
        let files = [file("1.0", 0), file("2.0", 900 * SECOND)];
        let all = versions(&["1.0", "2.0"]);
        let exempt = policy(&["acme-*"]);
        let filtered = filter(&exempt, &name, &all, &files, &[], 901 * SECOND);
        assert_eq!(kept(&filtered), ["1.0", "2.0"]);
        assert!(filtered.shown.exempt);
        let denied = [decision("2.0", Decision::Deny)];
        let filtered = filter(&exempt, &name, &all, &files, &denied, 901 * SECOND);
        assert_eq!(kept(&filtered), ["1.0"]);
        let other = ProjectName::new("acmetools").unwrap();
        assert!(!exempt.exempts(&other));
    }

    #[test]
    fn durations_read_and_print_in_one_syntax() {
        for (text, seconds) in [("30s", 30), ("10m", 600), ("12h", 43_200), ("7d", 604_800)] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(duration, Duration::from_secs(seconds));
            assert_eq!(format_duration(duration), text);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
