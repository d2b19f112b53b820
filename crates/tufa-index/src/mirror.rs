//! The upstream mirror inside the index: a project with no local uploads is fetched from the
//! upstream index on its first request, recorded like an upload (same journal, so the same
//! publisher signs it), refreshed when older than the TTL (on request, and by a background sweep
//! for clients such as `tufa proxy` that read only TUF targets), and its files are fetched on
//! first download, verified while they stream, and stored.
//!
//! Names never leak: a name with local uploads is never asked upstream, and names matching the
//! `--private` patterns are answered 404 without any upstream request. Concurrent requests for
//! one name share one upstream fetch; every wait is bounded, and while upstream fails the last
//! recorded page stays served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Index;
use crate::db::{PinConflict, Recorded};
use crate::name::ProjectName;
use crate::upstream::{Fetched, Upstream, UpstreamError, Validators};
use crate::verified::{Downloader, Pace};

/// How long a first request waits for the upstream page to be fetched and recorded (the fetch
/// goes on after; the request is answered 504 and a retry finds the page).
pub const FETCH_WAIT: Duration = Duration::from_secs(10);
/// How long a first request waits in all, fetch and signing: under pip's default read timeout
/// of 15 s, so that pip sees the answer rather than its own timeout.
pub const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(12);
/// How long a request for a stale page waits for its refresh, or for a page another request
/// just mirrored to be signed, before the page as it is answers.
pub const REFRESH_WAIT: Duration = Duration::from_secs(2);
/// After a refresh was tried, how long before a request tries again (an upstream that is down
/// must not make every request wait for it).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Refreshes the background sweep runs at once.
pub const SWEEP_CONCURRENCY: usize = 4;
/// Projects the sweep takes per round.
const SWEEP_BATCH: i64 = 256;
/// PEP 658 metadata files have no size on the page; this bounds what is read of one.
pub const METADATA_LIMIT: u64 = 16 * 1024 * 1024;

/// The mirror's settings (`tufa serve --upstream`, `--upstream-ttl`, `--private`).
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// A PEP 691 JSON simple index root, such as `https://pypi.org/simple/`.
    pub upstream: String,
    /// Pages older than this are fetched again.
    pub ttl: Duration,
    /// Glob patterns on normalized names that are never looked up upstream.
    pub private: Vec<String>,
}

/// The default `--upstream-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// What one fetch of a project's page came to.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Recorded; the serial when the page changed.
    Recorded {
        serial: Option<i64>,
    },
    /// Upstream has no such project (or no longer has it: the last page stays).
    NotFound,
    /// The name has local uploads: not mirrored.
    Local,
    Failed(UpstreamError),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct MirrorStats {
    pub page_fetches: AtomicU64,
    pub page_failures: AtomicU64,
    /// Shared with the tasks that finish downloads after their answer began.
    pub hash_mismatches: Arc<AtomicU64>,
    pub pin_conflicts: AtomicU64,
    pub file_fetches: AtomicU64,
}

/// The last upstream failure, for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastError {
    pub project: String,
    pub error: String,
    /// Microseconds since the epoch.
    pub at: i64,
}

type Pending = watch::Receiver<Option<Outcome>>;

/// A running mirror, shared by requests.
#[derive(Debug)]
pub struct Mirror {
    pub config: MirrorConfig,
    upstream: Upstream,
    pub(crate) downloader: Downloader,
    /// Normalized `config.private`.
    private: Vec<String>,
    inflight: Mutex<HashMap<ProjectName, Pending>>,
    /// When a refresh of each project last started.
    attempted: Mutex<HashMap<ProjectName, Instant>>,
    last_error: Mutex<Option<LastError>>,
    pub stats: MirrorStats,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Mirror {
    pub fn new(config: MirrorConfig) -> Result<Self, String> {
        let upstream = Upstream::new(&config.upstream)?;
        if config.ttl.is_zero() {
            return Err("the upstream TTL must be at least one second".into());
        }
        let private = config
            .private
            .iter()
            .map(|p| crate::name::normalize_pattern(p))
            .collect();
        let downloader = Downloader::new(
            Pace {
                stall: Duration::from_secs(30),
                deadline: Duration::from_secs(3600),
                min_rate: 1024,
            },
            concat!("tufa-mirror/", env!("CARGO_PKG_VERSION")),
        );
        Ok(Mirror {
            config,
            upstream,
            downloader,
            private,
            inflight: Mutex::default(),
            attempted: Mutex::default(),
            last_error: Mutex::default(),
            stats: MirrorStats::default(),
        })
    }

    pub fn upstream_root(&self) -> &str {
        self.upstream.root()
    }

    /// The `--private` pattern `name` matches, if any.
    pub fn private_pattern(&self, name: &ProjectName) -> Option<&str> {
        self.private
            .iter()
            .position(|pattern| tufa_metadata::fnmatch(name.as_str(), pattern))
            .map(|at| self.config.private[at].as_str())
    }

    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.last_error).clone()
    }

    /// Whether a refresh of `name` was tried within [`RETRY_AFTER`] (or the TTL, if shorter).
    fn tried_recently(&self, name: &ProjectName) -> bool {
        let window = RETRY_AFTER.min(self.config.ttl);
        lock(&self.attempted)
            .get(name)
            .is_some_and(|at| at.elapsed() < window)
    }

    fn failed(&self, name: &ProjectName, error: &UpstreamError) {
        self.stats.page_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(project = %name, "upstream fetch failed, the last page stays: {error}");
        *lock(&self.last_error) = Some(LastError {
            project: name.to_string(),
            error: error.to_string(),
            at: crate::db::now_micros(),
        });
    }
}

/// Fetches and records `name`'s upstream page, sharing the fetch with every concurrent caller.
/// The fetch goes on when the caller stops waiting, so a later request finds its result.
pub async fn refresh(index: &Arc<Index>, name: &ProjectName) -> Outcome {
    let Some(mirror) = index.mirror.as_ref() else {
        return Outcome::Local;
    };
    let mut pending = {
        let mut inflight = lock(&mirror.inflight);
        match inflight.get(name) {
            Some(pending) => pending.clone(),
            None => {
                let (done, pending) = watch::channel(None);
                inflight.insert(name.clone(), pending.clone());
                lock(&mirror.attempted).insert(name.clone(), Instant::now());
                let index = Arc::clone(index);
                let name = name.clone();
                tokio::spawn(async move {
                    let _finished = Finished {
                        index: Arc::clone(&index),
                        name: name.clone(),
                    };
                    let outcome = fetch_and_record(&index, &name).await;
                    let _ = done.send(Some(outcome));
                });
                pending
            }
        }
    };
    match pending.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Outcome::Local),
        Err(_) => Outcome::Failed(UpstreamError::Unreachable {
            url: mirror.upstream.project_url(name),
            reason: "the fetch task stopped".into(),
        }),
    }
}

/// Ends a fetch's entry among those in flight however the fetch ends (a panic included), so
/// that the next request starts a new one instead of waiting on one that is gone.
struct Finished {
    index: Arc<Index>,
    name: ProjectName,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(mirror) = self.index.mirror.as_ref() {
            lock(&mirror.inflight).remove(&self.name);
        }
    }
}

async fn fetch_and_record(index: &Arc<Index>, name: &ProjectName) -> Outcome {
    let Some(mirror) = index.mirror.as_ref() else {
        return Outcome::Local;
    };
    match try_fetch_and_record(index, mirror, name).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(project = %name, "recording the mirrored page failed: {error}");
            Outcome::Failed(UpstreamError::Unreachable {
                url: mirror.upstream.project_url(name),
                reason: format!("recording the page: {}", error.kind()),
            })
        }
    }
}

async fn try_fetch_and_record(
    index: &Arc<Index>,
    mirror: &Mirror,
    name: &ProjectName,
) -> crate::Result<Outcome> {
    // A name uploaded to since the request began stays local: upstream is not asked.
    let local = index
        .database
        .project(name)
        .await?
        .is_some_and(|p| p.mirror.is_none());
    if local {
        return Ok(Outcome::Local);
    }
    let state = index.database.mirror_state(name).await?;
    let validators = state
        .as_ref()
        .map(|s| Validators {
            etag: s.etag.clone(),
            last_modified: s.last_modified.clone(),
        })
        .unwrap_or_default();
    mirror.stats.page_fetches.fetch_add(1, Ordering::Relaxed);
    let upstream = mirror.upstream.clone();
    let asked = name.clone();
    let fetched = tokio::task::spawn_blocking(move || upstream.fetch(&asked, &validators))
        .await
        .unwrap_or_else(|e| {
            Err(UpstreamError::Unreachable {
                url: mirror.upstream.project_url(name),
                reason: format!("the fetch task failed: {e}"),
            })
        });
    match fetched {
        Ok(Fetched::NotModified) => {
            index.database.mirror_not_modified(name).await?;
            Ok(Outcome::Recorded { serial: None })
        }
        Ok(Fetched::NotFound) => {
            if state.is_some() {
                let error = format!(
                    "upstream {} no longer has the project: its last page stays served",
                    mirror.upstream.project_url(name)
                );
                tracing::warn!(project = %name, "{error}");
                index.database.mirror_failed(name, &error).await?;
            }
            Ok(Outcome::NotFound)
        }
        Ok(Fetched::Page(page)) => {
            for reason in &page.skipped {
                tracing::warn!(project = %name, "upstream file left out: {reason}");
            }
            let provenance = upstream_provenance(index, mirror, &page).await?;
            let outcome = index.database.record_mirror(&page, &provenance).await?;
            for reason in &outcome.skipped {
                tracing::warn!(project = %name, "upstream file left out: {reason}");
            }
            for conflict in &outcome.conflicts {
                report_conflict(mirror, conflict);
            }
            Ok(match outcome.recorded {
                Recorded::Changed { serial } => {
                    tracing::info!(project = %name, serial, files = page.files.len(), "mirrored");
                    index.changed();
                    Outcome::Recorded {
                        serial: Some(serial),
                    }
                }
                Recorded::Unchanged => Outcome::Recorded { serial: None },
                Recorded::Local => Outcome::Local,
            })
        }
        Err(error) => {
            mirror.failed(name, &error);
            if state.is_some() {
                index
                    .database
                    .mirror_failed(name, &error.to_string())
                    .await?;
            }
            Ok(Outcome::Failed(error))
        }
    }
}

/// Attested upstream files whose provenance is fetched per page fetch, at most: each is one
/// request, and a first request waits for the page.
const MAX_PROVENANCE_PER_FETCH: usize = 16;

/// PEP 740 provenance for the page's attested files the index has not recorded yet, fetched
/// from upstream and verified against each file's name and sha256 (the trust root of uploads),
/// to be pinned with the file: recorded once, at first sight, and signed into the page like an
/// upload's. A provenance that cannot be fetched or does not verify is logged, and its file is
/// mirrored without one (a proxy requiring provenance then refuses it).
async fn upstream_provenance(
    index: &Index,
    mirror: &Mirror,
    page: &crate::upstream::UpstreamPage,
) -> crate::Result<HashMap<String, crate::db::NewProvenance>> {
    let mut found = HashMap::new();
    if page.files.iter().all(|f| f.provenance_url.is_none()) {
        return Ok(found);
    }
    let known: std::collections::HashSet<String> = index
        .database
        .project_provenance(&page.name)
        .await?
        .into_iter()
        .map(|f| f.filename)
        .collect();
    let wanted: Vec<_> = page
        .files
        .iter()
        .filter(|f| f.provenance_url.is_some() && !known.contains(&f.filename))
        .collect();
    if wanted.len() > MAX_PROVENANCE_PER_FETCH {
        tracing::warn!(
            project = %page.name,
            "{} new attested files upstream: the provenance of the first {MAX_PROVENANCE_PER_FETCH} is fetched, the others are mirrored without",
            wanted.len()
        );
    }
    for file in wanted.into_iter().take(MAX_PROVENANCE_PER_FETCH) {
        let upstream = mirror.upstream.clone();
        let root = index.trust_root().clone();
        let (url, filename, sha256) = (
            file.provenance_url.clone().unwrap_or_default(),
            file.filename.clone(),
            file.sha256.clone(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            upstream_provenance_of(&upstream, &root, &url, &filename, &sha256)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the provenance task failed: {e}")));
        match checked {
            Ok(provenance) => {
                found.insert(file.filename.clone(), provenance);
            }
            Err(reason) => tracing::error!(
                project = %page.name,
                "the upstream provenance of {} is not recorded: {reason}",
                file.filename
            ),
        }
    }
    Ok(found)
}

/// Fetches and verifies one upstream provenance object (blocking), kept byte for byte.
fn upstream_provenance_of(
    upstream: &Upstream,
    root: &tufa_provenance::TrustRoot,
    url: &str,
    filename: &str,
    sha256: &str,
) -> Result<crate::db::NewProvenance, String> {
    let bytes = upstream.fetch_provenance(url).map_err(|e| e.to_string())?;
    let json = String::from_utf8(bytes).map_err(|_| format!("{url} is not UTF-8 text"))?;
    let provenance: tufa_provenance::Provenance = serde_json::from_str(&json)
        .map_err(|e| format!("{url} is not a PEP 740 provenance object: {e}"))?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(sha256, &mut digest).map_err(|e| format!("the sha256: {e}"))?;
    let publishers = provenance
        .verify(root, filename, &digest)
        .map_err(|e| format!("{url} does not verify: {e}"))?;
    let publisher = publishers.first().ok_or("no attestations")?;
    Ok(crate::db::NewProvenance {
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, json.as_bytes())),
        publisher: serde_json::to_string(publisher).unwrap_or_default(),
        json,
    })
}

fn report_conflict(mirror: &Mirror, conflict: &PinConflict) {
    mirror.stats.pin_conflicts.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        project = conflict.project,
        "upstream changed the content of {}: it now lists sha256 {}, but {} was pinned when \
         first mirrored; the pinned file stays and the new one is refused (a file name never \
         changes content on PyPI: a compromised upstream or a substituted file)",
        conflict.filename,
        conflict.upstream_sha256,
        conflict.pinned_sha256
    );
}

/// Waits until `serial` is signed, at most `bound`; whether it was.
pub async fn wait_signed(index: &Index, serial: i64, bound: Duration) -> bool {
    let Some(signing) = index.signing.as_ref() else {
        return true;
    };
    let started = Instant::now();
    loop {
        if signing.signed_up_to(&index.database, serial).await {
            return true;
        }
        if started.elapsed() >= bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Refreshes `name` if its page is older than the TTL and no refresh was tried recently,
/// waiting at most [`REFRESH_WAIT`] (the last page answers meanwhile).
pub async fn refresh_if_stale(index: &Arc<Index>, name: &ProjectName) -> crate::Result<()> {
    let Some(mirror) = index.mirror.as_ref() else {
        return Ok(());
    };
    let Some(state) = index.database.mirror_state(name).await? else {
        return Ok(());
    };
    let ttl = i64::try_from(mirror.config.ttl.as_micros()).unwrap_or(i64::MAX);
    if crate::db::now_micros().saturating_sub(state.fetched) < ttl || mirror.tried_recently(name) {
        return Ok(());
    }
    let started = Instant::now();
    if let Ok(Outcome::Recorded {
        serial: Some(serial),
    }) = tokio::time::timeout(REFRESH_WAIT, refresh(index, name)).await
    {
        wait_signed(
            index,
            serial,
            REFRESH_WAIT.saturating_sub(started.elapsed()),
        )
        .await;
    }
    Ok(())
}

/// Refreshes every mirrored page older than the TTL, [`SWEEP_CONCURRENCY`] at a time, until the
/// process ends: `tufa proxy` reads only signed targets, never `/simple/`, and must still see
/// fresh pages.
pub async fn sweep(index: Arc<Index>) {
    let Some(mirror) = index.mirror.as_ref() else {
        return;
    };
    let interval = (mirror.config.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let permits = Arc::new(tokio::sync::Semaphore::new(SWEEP_CONCURRENCY));
    loop {
        tokio::time::sleep(interval).await;
        let ttl = i64::try_from(mirror.config.ttl.as_micros()).unwrap_or(i64::MAX);
        let stale = match index
            .database
            .mirror_stale(crate::db::now_micros().saturating_sub(ttl), SWEEP_BATCH)
            .await
        {
            Ok(stale) => stale,
            Err(error) => {
                tracing::warn!("listing stale mirrored pages failed: {error}");
                continue;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for name in stale {
            if mirror.tried_recently(&name) {
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let index = Arc::clone(&index);
            tasks.spawn(async move {
                refresh(&index, &name).await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::testing::{answer, serve_after};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_requests_share_one_upstream_fetch() {
        let sha = "a".repeat(64);
        let page = format!(
            r#"{{"meta": {{"api-version": "1.1"}}, "name": "demo", "files": [
                {{"filename": "demo-1.0-py3-none-any.whl", "url": "/f/demo-1.0-py3-none-any.whl",
                  "hashes": {{"sha256": "{sha}"}}, "size": 3}}]}}"#
        );
        let (root, requests) = serve_after(
            vec![answer("200 OK", &[], &page), answer("200 OK", &[], &page)],
            Duration::from_millis(300),
        );
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(
            Index::open(crate::Config {
                data_dir: dir.path().to_path_buf(),
                database: None,
                max_upload_size: crate::DEFAULT_MAX_UPLOAD_SIZE,
                public_url: None,
                signing: None,
                accept_data_mismatch: false,
                mirror: Some(MirrorConfig {
                    upstream: root.clone(),
                    ttl: DEFAULT_TTL,
                    private: Vec::new(),
                }),
                cooldown: crate::CooldownSetting::Keep,
                storage: None,
                sigstore_trust_root: None,
            })
            .await
            .unwrap(),
        );
        let name = ProjectName::new("demo").unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (index, name) = (Arc::clone(&index), name.clone());
            tasks.spawn(async move { refresh(&index, &name).await });
        }
        while let Some(outcome) = tasks.join_next().await {
            assert!(
                matches!(outcome.unwrap(), Outcome::Recorded { serial: Some(1) }),
                "every caller sees the one recording"
            );
        }
        assert!(requests.recv().unwrap().starts_with("GET /simple/demo/ "));
        assert!(requests.try_recv().is_err(), "one upstream request");
        let project = index.database.project(&name).await.unwrap().unwrap();
        assert_eq!(project.mirror.unwrap().tracks, format!("{root}demo/"));
        assert_eq!(index.database.last_serial().await.unwrap(), 1);
    }

    #[test]
    fn private_patterns_match_normalized_names() {
        let mirror = Mirror::new(MirrorConfig {
            upstream: "https://pypi.org/simple/".into(),
            ttl: DEFAULT_TTL,
            private: vec!["Acme_*".into(), "internal-tool".into()],
        })
        .unwrap();
        let name = |n: &str| ProjectName::new(n).unwrap();
        assert_eq!(
            mirror.private_pattern(&name("acme.billing")),
            Some("Acme_*")
        );
        assert_eq!(
            mirror.private_pattern(&name("Internal_Tool")),
            Some("internal-tool")
        );
        assert_eq!(mirror.private_pattern(&name("flask")), None);
        assert_eq!(mirror.private_pattern(&name("not-acme")), None);
    }
}
