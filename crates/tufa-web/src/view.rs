//! What each page shows, as the index reads it from its database and TUF store. Times are
//! microseconds since the Unix epoch, as the database keeps them; the templates format them.

use serde::Serialize;

/// The home page: how big the index is, and what was uploaded last.
#[derive(Clone, Debug, Serialize)]
pub struct Home {
    pub projects: i64,
    pub files: i64,
    pub recent: Vec<Recent>,
    /// The signed state in one line, when the index signs.
    pub trust: Option<TrustLine>,
    /// The index's base URL, for the install lines.
    pub base_url: String,
}

/// One recently uploaded file.
#[derive(Clone, Debug, Serialize)]
pub struct Recent {
    /// The normalized name, for the link.
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub filename: String,
    pub uploaded: i64,
}

/// The trust state as the home page sums it up.
#[derive(Clone, Debug, Serialize)]
pub struct TrustLine {
    pub timestamp_version: u64,
    pub timestamp_expires: i64,
    pub lag_serials: i64,
}

/// A page of search results over project names and summaries.
#[derive(Clone, Debug, Serialize)]
pub struct Search {
    pub query: String,
    pub hits: Vec<Hit>,
    pub total: i64,
    /// 1-based.
    pub page: i64,
    pub per_page: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub name: String,
    pub display_name: String,
    pub summary: Option<String>,
}

/// A project page, showing one release (the latest unless another was asked for).
#[derive(Clone, Debug, Serialize)]
pub struct Project {
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub latest: bool,
    pub summary: Option<String>,
    /// The release's long description and its `Description-Content-Type`.
    #[serde(skip)]
    pub description: Option<(String, Option<String>)>,
    pub requires_python: Option<String>,
    pub license: Option<String>,
    pub author: Option<String>,
    /// `Project-URL` and `Home-page` entries as (label, URL); only web URLs become links.
    pub urls: Vec<Link>,
    /// Every release, newest first.
    pub releases: Vec<ReleaseRow>,
    /// The files of the release shown.
    pub files: Vec<FileRow>,
    pub origin: Origin,
    /// The cooldown period when the index publishes a cooldown view (`7d`).
    pub cooldown: Option<String>,
    /// The index's base URL, for the install lines.
    pub base_url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub label: String,
    pub url: String,
    /// Whether `url` may be a link (an absolute `http` or `https` URL).
    pub web: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReleaseRow {
    pub version: String,
    /// When its first file was uploaded.
    pub uploaded: i64,
    /// `Some(reason)` when every file of the release is yanked; the reason may be empty.
    pub yanked: Option<String>,
    pub files: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileRow {
    pub filename: String,
    /// Where it downloads from, relative to the index.
    pub url: String,
    pub packagetype: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded: i64,
    pub requires_python: Option<String>,
    pub yanked: Option<String>,
    /// The verified PEP 740 publisher, as shown (`GitHub: owner/repo, workflow release.yml`).
    pub publisher: Option<String>,
    pub cooldown: Option<Cooldown>,
}

/// Where a file stands in the cooldown view.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Cooldown {
    /// In the view.
    Shown,
    /// Held back until this time (the upload time plus the period).
    Waiting { until: i64 },
    /// An operator denied the release.
    Denied { reason: String },
}

/// Where the project's files come from.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Uploaded to this index.
    Private,
    /// Mirrored from upstream, pinned by hash.
    Mirrored {
        upstream: String,
        /// PEP 792 status as upstream gives it, with its reason.
        status: Option<String>,
        reason: Option<String>,
    },
}

/// The trust page: the signed state of the repository.
#[derive(Clone, Debug, Serialize)]
pub struct Trust {
    pub roles: Vec<Role>,
    pub bins: Option<Bins>,
    pub last_serial: i64,
    pub signed_serial: i64,
    /// When the oldest change not yet signed was made.
    pub oldest_unsigned: Option<i64>,
    pub timestamp: Option<TimestampState>,
    pub root: Option<RootDownload>,
    pub log: Option<LogState>,
    /// Why publishing fails, while it does.
    pub failure: Option<String>,
    /// Signing rounds of the last hour, for the latency chart.
    #[serde(skip)]
    pub signings: Vec<Signing>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Role {
    pub name: String,
    /// For the bin roles (`bin-*`), the highest.
    pub version: u64,
    /// For the bin roles, the earliest; `None` where it is not known (reading every bin role
    /// is left to the replica that publishes, which holds them).
    pub expires: Option<i64>,
    pub threshold: u32,
    pub keys: Vec<KeyInfo>,
    /// Signed by keys the index holds (timestamp, snapshot, bin-n) rather than by people.
    pub online: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub keytype: String,
    pub scheme: String,
}

/// The hashed bins (TAP 15 succinct roles).
#[derive(Clone, Debug, Serialize)]
pub struct Bins {
    pub count: u64,
    pub prefix: String,
    /// Versions of the lowest and highest bin role, from the snapshot.
    pub lowest_version: u64,
    pub highest_version: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimestampState {
    pub version: u64,
    pub expires: i64,
    /// When the file was written, as the store records it.
    pub signed: Option<i64>,
    pub snapshot_version: u64,
}

/// The root a client should start from, and its digest to check it by.
#[derive(Clone, Debug, Serialize)]
pub struct RootDownload {
    pub url: String,
    pub version: u64,
    pub sha256: String,
}

/// The transparency log's latest checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct LogState {
    pub origin: String,
    pub size: u64,
    pub root_hash: String,
    /// Names of everyone who signed the checkpoint: the log, then its witnesses.
    pub signers: Vec<String>,
}

/// One round of the publisher: when it signed, and the changes it signed.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Signing {
    pub signed: i64,
    /// When the oldest change in it was made.
    pub oldest_change: i64,
    pub changes: i64,
}
