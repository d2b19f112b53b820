//! The TUF side of the proxy: one worker thread owns the updater and the trusted metadata, and
//! answers page lookups in order.
//!
//! One owner means one refresh at a time, shared by every request: a request that finds the
//! trusted state older than the refresh interval refreshes it, and the requests queued behind it
//! reuse the result. Lookups after a refresh are mostly memory reads (the bin role and the page
//! are cached), so serializing them costs little next to what it saves: no lock juggling around
//! a state machine that fetches while it verifies.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;
use tufa_client::{Error as ClientError, HttpFetcher, Refreshed, Updater};
use tufa_index::name::ProjectName;
use tufa_metadata::HexDigest;

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

struct Lookup {
    project: ProjectName,
    reply: oneshot::Sender<Result<Arc<VerifiedPage>, PageError>>,
}

/// Handle to the worker; cheap to share between requests.
#[derive(Debug)]
pub struct Trust {
    lookups: mpsc::Sender<Lookup>,
}

/// Where the worker finds things.
pub struct Settings {
    pub updater: Updater<HttpFetcher>,
    pub targets_url: String,
    pub targets_dir: PathBuf,
    pub refresh_interval: Duration,
}

impl Trust {
    pub fn start(settings: Settings) -> std::io::Result<Trust> {
        let (lookups, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("tufa-proxy-tuf".into())
            .spawn(move || worker(settings, queue))?;
        Ok(Trust { lookups })
    }

    /// The verified page of `project`, from metadata at most one refresh interval old (or, with
    /// the index unreachable, from the unexpired cache).
    pub async fn page(&self, project: &ProjectName) -> Result<Arc<VerifiedPage>, PageError> {
        let (reply, answer) = oneshot::channel();
        let gone = || PageError::Unreachable("the TUF worker of the proxy stopped".into());
        self.lookups
            .send(Lookup {
                project: project.clone(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

struct State<'a> {
    updater: &'a Updater<HttpFetcher>,
    targets_url: &'a str,
    targets_dir: &'a std::path::Path,
    refresh_interval: Duration,
    current: Option<Refreshed<'a, HttpFetcher>>,
    checked_at: Option<Instant>,
    /// The last verified page of each project, with the target hashes it was verified against.
    pages: HashMap<ProjectName, (BTreeMap<String, HexDigest>, Arc<VerifiedPage>)>,
}

fn worker(settings: Settings, queue: mpsc::Receiver<Lookup>) {
    let mut state = State {
        updater: &settings.updater,
        targets_url: &settings.targets_url,
        targets_dir: &settings.targets_dir,
        refresh_interval: settings.refresh_interval,
        current: None,
        checked_at: None,
        pages: HashMap::new(),
    };
    while let Ok(lookup) = queue.recv() {
        let answer = state.page(&lookup.project);
        let _ = lookup.reply.send(answer);
    }
}

impl<'a> State<'a> {
    /// Makes `current` trusted metadata no older than the refresh interval.
    fn refresh(&mut self) -> Result<(), PageError> {
        if self.current.is_some()
            && self
                .checked_at
                .is_some_and(|at| at.elapsed() < self.refresh_interval)
        {
            return Ok(());
        }
        let now = SystemTime::now();
        self.current = None;
        self.checked_at = None;
        let refreshed = match self.updater.refresh(now) {
            Ok(refreshed) => refreshed,
            Err(error) if unreachable(&error) => match self.updater.load_offline(now) {
                Ok(cached) => {
                    tracing::warn!(
                        "the index is unreachable ({error}); serving from the cached TUF \
                         metadata, which expires at {}",
                        cached.trusted().timestamp().signed.expires
                    );
                    cached
                }
                Err(offline) => {
                    return Err(PageError::Unreachable(format!(
                        "{error}; the cached TUF metadata cannot stand in: {offline}"
                    )));
                }
            },
            Err(error) => return Err(PageError::Refused(error.to_string())),
        };
        self.current = Some(refreshed);
        self.checked_at = Some(Instant::now());
        Ok(())
    }

    fn page(&mut self, project: &ProjectName) -> Result<Arc<VerifiedPage>, PageError> {
        self.refresh()?;
        let Some(refreshed) = self.current.as_mut() else {
            return Err(PageError::Unreachable("no trusted metadata".into()));
        };
        let info = match refreshed.target_info(&format!("simple/{project}/index.json")) {
            Ok(info) => info,
            Err(ClientError::TargetNotFound { .. }) => {
                return Err(PageError::NotFound(project.clone()));
            }
            Err(error) => return Err(classify(error)),
        };
        if let Some((hashes, page)) = self.pages.get(project)
            && *hashes == info.file.hashes
        {
            return Ok(Arc::clone(page));
        }
        let artifact = refreshed
            .download_target(&info, self.targets_url, self.targets_dir)
            .map_err(classify)?;
        let page =
            Arc::new(VerifiedPage::parse(project, &artifact.content).map_err(PageError::Refused)?);
        self.pages
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
