//! The TUF side of the proxy: trusted metadata shared by every request, refreshed at most once
//! per refresh interval, and the verified pages.
//!
//! Lookups of different projects run at once, each on a blocking thread: the trusted state is
//! locked only to verify, never while the index is asked for something (tufa-client's
//! `Refreshed`), so a project whose bin role or page the index is slow to send holds up no
//! other. One refresh runs at a time and every request that finds the trusted state older than
//! the refresh interval shares it, but waits for it only up to the refresh deadline: an index
//! that accepts connections and never answers then counts as unreachable, and pages come from
//! the cached metadata while it is unexpired, as with an index that is down. The refresh goes on
//! in the background, bounded by the fetch timeout, and its result serves the next requests.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tufa_client::{Error as ClientError, HttpFetcher, Refreshed, Updater};
use tufa_index::name::ProjectName;
use tufa_metadata::HexDigest;
use tufa_repo::{View, layout};

use crate::page::VerifiedPage;

/// Why a project's page cannot be served.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PageError {
    #[error("no project {0} in the index's TUF metadata")]
    NotFound(ProjectName),
    /// The index cannot be reached and the cached metadata cannot stand in for it.
    #[error("{0}")]
    Unreachable(String),
    /// Verification failed: the text names the attack or fault the client detected.
    #[error("{0}")]
    Refused(String),
}

/// Only an index that cannot be reached (connection failures, timeouts, a gateway's 5xx) lets
/// the proxy fall back on its cache; every other failure is a verdict on what was served.
fn unreachable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Fetch { .. }
            | ClientError::HttpStatus {
                status: 500..=599,
                ..
            }
    )
}

fn classify(error: ClientError) -> PageError {
    if unreachable(&error) {
        PageError::Unreachable(error.to_string())
    } else {
        PageError::Refused(error.to_string())
    }
}

fn stopped() -> PageError {
    PageError::Unreachable("a TUF task of the proxy stopped".into())
}

/// Where the trusted state comes from, and how fresh it must be.
pub struct Settings {
    pub updater: Updater<HttpFetcher>,
    pub targets_url: String,
    pub targets_dir: PathBuf,
    pub refresh_interval: Duration,
    /// How long a request waits for a refresh before the index counts as unreachable.
    pub refresh_deadline: Duration,
    /// The view whose pages are looked up.
    pub view: View,
}

/// Handle to the trusted state; cheap to share between requests.
pub struct Trust {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

struct Shared {
    settings: Settings,
    state: Mutex<State>,
}

/// One trusted view of the index (from a refresh, or from the cache when the index is
/// unreachable), and when it was made.
struct Generation {
    refreshed: Refreshed<HttpFetcher>,
    made: Instant,
    /// When the refresh that made it began: it has nothing signed later than this.
    began: Instant,
}

type Outcome = Option<Result<Arc<Generation>, PageError>>;

struct Refreshing {
    started: Instant,
    /// `Some` once the refresh is over.
    done: watch::Receiver<Outcome>,
}

struct State {
    current: Option<Arc<Generation>>,
    refreshing: Option<Refreshing>,
    /// Refreshes completed so far: a fallback found while a refresh ran must not replace what
    /// that refresh concluded, above all a verdict that the index is attacking.
    completed: u64,
    /// The last verified page of each project, with the target hashes it was verified against.
    pages: HashMap<ProjectName, (BTreeMap<String, HexDigest>, Arc<VerifiedPage>)>,
}

impl Trust {
    pub fn new(settings: Settings) -> Trust {
        Trust {
            shared: Arc::new(Shared {
                settings,
                state: Mutex::new(State {
                    current: None,
                    refreshing: None,
                    completed: 0,
                    pages: HashMap::new(),
                }),
            }),
        }
    }

    /// The verified page of `project`, from metadata at most one refresh interval old (or, with
    /// the index unreachable or not answering within the refresh deadline, from the unexpired
    /// cache).
    pub async fn page(&self, project: &ProjectName) -> Result<Arc<VerifiedPage>, PageError> {
        let generation = self.generation().await?;
        let shared = Arc::clone(&self.shared);
        let project = project.clone();
        tokio::task::spawn_blocking(move || shared.page(&generation, &project))
            .await
            .map_err(|_| stopped())?
    }

    /// The verified page of `project` from a refresh that began after `after`: what the index
    /// signed after it was asked to mirror the project. Waits for a refresh under way that began
    /// earlier, then starts another; the fetch timeout bounds each.
    pub async fn page_after(
        &self,
        project: &ProjectName,
        after: Instant,
    ) -> Result<Arc<VerifiedPage>, PageError> {
        let generation = loop {
            let (mut done, fresh) = {
                let mut state = self.shared.lock();
                if let Some(current) = &state.current
                    && current.began > after
                {
                    break Arc::clone(current);
                }
                match &state.refreshing {
                    Some(refreshing) => (refreshing.done.clone(), refreshing.started > after),
                    None => (self.start_refresh(&mut state).done.clone(), true),
                }
            };
            let outcome = outcome(&mut done).await;
            if fresh {
                break outcome?;
            }
        };
        let shared = Arc::clone(&self.shared);
        let project = project.clone();
        tokio::task::spawn_blocking(move || shared.page(&generation, &project))
            .await
            .map_err(|_| stopped())?
    }

    async fn generation(&self) -> Result<Arc<Generation>, PageError> {
        let (mut done, waited, completed) = {
            let mut state = self.shared.lock();
            if let Some(current) = &state.current
                && current.made.elapsed() < self.shared.settings.refresh_interval
            {
                return Ok(Arc::clone(current));
            }
            let refreshing = match &state.refreshing {
                Some(refreshing) => refreshing,
                None => self.start_refresh(&mut state),
            };
            (
                refreshing.done.clone(),
                refreshing.started.elapsed(),
                state.completed,
            )
        };
        let deadline = self.shared.settings.refresh_deadline;
        let wait = deadline.saturating_sub(waited);
        if let Ok(outcome) = tokio::time::timeout(wait, outcome(&mut done)).await {
            return outcome;
        }
        let shared = Arc::clone(&self.shared);
        let fallback = tokio::task::spawn_blocking(move || shared.fallback(completed))
            .await
            .map_err(|_| stopped())?;
        match fallback {
            Some(generation) => Ok(generation),
            // Nothing cached can stand in, or the refresh has just concluded: its outcome is
            // the answer. The fetch timeout bounds the wait.
            None => outcome(&mut done).await,
        }
    }

    fn start_refresh<'a>(&self, state: &'a mut State) -> &'a Refreshing {
        let (sender, done) = watch::channel(None);
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let outcome = shared.refresh();
            {
                let mut state = shared.lock();
                state.refreshing = None;
                state.completed += 1;
                state.current = outcome.as_ref().ok().cloned();
            }
            let _ = sender.send(Some(outcome));
        });
        state.refreshing.insert(Refreshing {
            started: Instant::now(),
            done,
        })
    }
}

async fn outcome(done: &mut watch::Receiver<Outcome>) -> Result<Arc<Generation>, PageError> {
    let outcome = done
        .wait_for(Option::is_some)
        .await
        .map_err(|_| stopped())?;
    outcome.clone().unwrap_or_else(|| Err(stopped()))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single assignment, so a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refreshes from the index; with the index unreachable, loads the cached metadata instead.
    fn refresh(&self) -> Result<Arc<Generation>, PageError> {
        let began = Instant::now();
        let now = SystemTime::now();
        let refreshed = match self.settings.updater.refresh(now) {
            Ok(refreshed) => refreshed,
            Err(error) if unreachable(&error) => self.offline(now, &error.to_string())?,
            Err(ClientError::Transparency(refusal)) => self.previous(now, &refusal)?,
            Err(error) => return Err(PageError::Refused(error.to_string())),
        };
        Ok(Arc::new(Generation {
            refreshed,
            made: Instant::now(),
            began,
        }))
    }

    fn offline(&self, now: SystemTime, reason: &str) -> Result<Refreshed<HttpFetcher>, PageError> {
        match self.settings.updater.load_offline(now) {
            Ok(cached) => {
                tracing::warn!(
                    "the index is unreachable ({reason}); serving from the cached TUF metadata, \
                     which expires at {}",
                    cached.trusted().timestamp().signed.expires
                );
                Ok(cached)
            }
            Err(offline) => Err(PageError::Unreachable(format!(
                "{reason}; the cached TUF metadata cannot stand in: {offline}"
            ))),
        }
    }

    /// The previously trusted metadata, after the index's new timestamp was refused for want of
    /// a log proof: what was verified (log included) before stays trusted until it expires, and
    /// nothing the refused timestamp names is used. Without it, the refusal is the answer.
    fn previous(
        &self,
        now: SystemTime,
        refusal: &tufa_client::TransparencyError,
    ) -> Result<Refreshed<HttpFetcher>, PageError> {
        let cached = self
            .settings
            .updater
            .load_offline(now)
            .map_err(|previous| {
                PageError::Refused(format!(
                    "{refusal}; no previously trusted metadata to serve instead: {previous}"
                ))
            })?;
        tracing::warn!(
            "refused the index's new timestamp: {refusal}; serving the previously trusted \
             metadata, which expires at {}",
            cached.trusted().timestamp().signed.expires
        );
        Ok(cached)
    }

    /// The cached metadata standing in for a refresh that is past the deadline, made current
    /// until the refresh concludes or the refresh interval passes. `None` when nothing cached
    /// can stand in, or when a refresh concluded since `completed` was read.
    fn fallback(&self, completed: u64) -> Option<Arc<Generation>> {
        let reason = format!(
            "no answer within the refresh deadline of {} ms",
            self.settings.refresh_deadline.as_millis()
        );
        let refreshed = match self.offline(SystemTime::now(), &reason) {
            Ok(refreshed) => refreshed,
            Err(error) => {
                tracing::warn!("{error}");
                return None;
            }
        };
        let now = Instant::now();
        let generation = Arc::new(Generation {
            refreshed,
            made: now,
            began: now,
        });
        let mut state = self.lock();
        if state.completed != completed {
            return None;
        }
        state.current = Some(Arc::clone(&generation));
        Some(generation)
    }

    fn page(
        &self,
        generation: &Generation,
        project: &ProjectName,
    ) -> Result<Arc<VerifiedPage>, PageError> {
        let refreshed = &generation.refreshed;
        let target = layout::page_target(self.settings.view, project.as_str());
        let info = match refreshed.target_info(target.as_str()) {
            Ok(info) => info,
            Err(ClientError::TargetNotFound { .. }) => {
                return Err(PageError::NotFound(project.clone()));
            }
            Err(error) => return Err(classify(error)),
        };
        if let Some((hashes, page)) = self.lock().pages.get(project)
            && *hashes == info.file.hashes
        {
            return Ok(Arc::clone(page));
        }
        let artifact = refreshed
            .download_target(
                &info,
                &self.settings.targets_url,
                &self.settings.targets_dir,
            )
            .map_err(classify)?;
        let page =
            Arc::new(VerifiedPage::parse(project, &artifact.content).map_err(PageError::Refused)?);
        self.lock()
            .pages
            .insert(project.clone(), (info.file.hashes, Arc::clone(&page)));
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_index_allows_the_cache_to_stand_in() {
        let url = || "http://index.test/tuf/metadata/timestamp.json".to_string();
        for error in [
            ClientError::Fetch {
                url: url(),
                message: "connection refused".into(),
            },
            ClientError::HttpStatus {
                url: url(),
                status: 503,
            },
        ] {
            assert!(matches!(classify(error), PageError::Unreachable(_)));
        }
        for error in [
            ClientError::HttpStatus {
                url: url(),
                status: 404,
            },
            ClientError::RollbackAttack {
                role: "timestamp".into(),
                trusted: 9,
                received: 7,
            },
            ClientError::EndlessData {
                url: url(),
                limit: 16_384,
            },
        ] {
            let refused = classify(error);
            assert!(matches!(refused, PageError::Refused(_)), "{refused}");
        }
        assert_eq!(
            classify(ClientError::RollbackAttack {
                role: "timestamp".into(),
                trusted: 9,
                received: 7,
            })
            .to_string(),
            "rollback attack: timestamp version 7 < trusted 9"
        );
    }
}
