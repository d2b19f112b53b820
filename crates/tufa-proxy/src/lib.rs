//! A local proxy that gives unmodified pip and uv installs verified with TUF (PEP 458) against a
//! Tufa index.
//!
//! pip and uv trust whatever the index host serves. Pointed at this proxy instead, they get only
//! what the index's TUF metadata vouches for:
//!
//! - `trust`: each project page is the TUF target `simple/<name>/index.json` (or, with the
//!   cooldown view, `cooldown/<name>/index.json`), verified by
//!   tufa-client from the trusted root down (rollback, freeze, mix-and-match, arbitrary
//!   software, endless data). One refresh is shared by all concurrent requests and reused for a
//!   short interval; lookups of different projects run at once.
//! - `page`: the verified page, served as PEP 691 JSON or PEP 503 HTML with file URLs on the
//!   proxy; only files with a sha256 and size are passed on.
//! - `files`: each file is checked against that sha256 and size while it streams; a file that
//!   fails ends in a broken response, never a complete wrong file. Verified files are cached by
//!   content, so later installs need no download.
//!
//! - `ask`: a project the signed metadata does not list is requested from the index once (an
//!   index with an upstream mirrors it and signs its page), then looked up again.
//!
//! With a root that declares a transparency log, a new timestamp counts only with proof that the
//! log recorded it, cosigned by the configured witnesses (tufa-client's `transparency`); one
//! refused for that is reported and the proxy goes on serving the previously trusted metadata
//! while it is unexpired.
//!
//! With the index unreachable, or not answering a refresh within the refresh deadline (and only
//! then), pages come from the cached metadata for as long as it is unexpired; any verification
//! failure is an error, never a fallback. File downloads have an overall deadline and a minimum
//! rate (slow retrieval), and only complete, verified files are cached.

mod ask;
mod files;
mod page;
pub mod provenance;
mod server;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tufa_client::{HttpFetcher, Updater, UpdaterConfig};
pub use tufa_repo::View;

pub use server::{router, serve};

/// At most this many bytes of pages, plain and compressed, are kept in memory.
const PAGE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What a proxy needs to know to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The index's base URL (TUF metadata under `/tuf/metadata/`, targets under `/tuf/targets/`).
    pub index_url: String,
    /// Trusted metadata, verified pages and verified files.
    pub cache_dir: PathBuf,
    /// How long one refresh of the TUF metadata serves requests before the next.
    pub refresh_interval: Duration,
    /// Bound on connecting to the index, on each metadata request, and on a file download
    /// that sends nothing; also the window over which a download's rate is measured.
    pub timeout: Duration,
    /// How long a request waits for a refresh before the index counts as unreachable and the
    /// cached metadata, while unexpired, answers instead.
    pub refresh_deadline: Duration,
    /// Bound on one file download: the time spent waiting for the index's response and bytes,
    /// not for the installer to take them.
    pub download_deadline: Duration,
    /// Bytes per second a file download must average over each `timeout` window.
    pub download_min_rate: u64,
    /// Which signed page of a project to serve: every file (`simple/<name>/index.json`), or the
    /// cooldown view (`cooldown/<name>/index.json`), which installers then see as the whole
    /// index.
    pub view: View,
    /// How PEP 740 provenance is enforced (see [`provenance`]).
    pub provenance: provenance::Mode,
    /// Expected publishers by project.
    pub provenance_policy: provenance::Policy,
    /// What attestations are verified with; `None`: Sigstore's public-good instance.
    pub sigstore_trust_root: Option<tufa_provenance::TrustRoot>,
    /// The witnesses whose cosignatures the index's transparency log needs, when its root
    /// declares one.
    pub witnesses: tufa_client::Witnesses,
}

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the trusted root {path}: {source}")]
    ReadRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initializing the cache: {0}")]
    Cache(#[from] tufa_client::Error),
}

/// A running proxy's state, shared by its requests.
#[derive(Debug)]
pub struct Proxy {
    index_url: String,
    trust: trust::Trust,
    asker: ask::Asker,
    files: files::FileStore,
    provenance: provenance::Enforcer,
    /// The pages served, by project, version of the signed page, and format (JSON or not).
    pages: tufa_index::encoding::Cache<(tufa_index::name::ProjectName, String, bool)>,
}

impl Proxy {
    /// Opens the cache in `config.cache_dir`. The root file is trusted on first use of the
    /// cache only; after that the cache holds the trusted root, updated by root rotations.
    pub fn open(config: Config, root_file: &Path) -> Result<Arc<Proxy>, Error> {
        let index_url = config.index_url.trim_end_matches('/').to_string();
        let metadata_dir = config.cache_dir.join("metadata");
        if !metadata_dir.join("root.json").exists() {
            let root = std::fs::read(root_file).map_err(|source| Error::ReadRoot {
                path: root_file.to_path_buf(),
                source,
            })?;
            Updater::<HttpFetcher>::initialize(&metadata_dir, &root)?;
        }
        let updater = Updater::new(
            metadata_dir,
            &format!("{index_url}/tuf/metadata/"),
            HttpFetcher::new(config.timeout),
            UpdaterConfig {
                witnesses: config.witnesses,
                ..UpdaterConfig::default()
            },
        );
        let trust = trust::Trust::new(trust::Settings {
            updater,
            targets_url: format!("{index_url}/tuf/targets/"),
            targets_dir: config.cache_dir.join("targets"),
            refresh_interval: config.refresh_interval,
            refresh_deadline: config.refresh_deadline,
            view: config.view,
        });
        let files = files::FileStore::new(
            config.cache_dir.join("files"),
            tufa_index::verified::Pace {
                stall: config.timeout,
                deadline: config.download_deadline,
                min_rate: config.download_min_rate,
            },
        );
        let provenance = provenance::Enforcer::new(
            config.provenance,
            config.provenance_policy,
            config
                .sigstore_trust_root
                .unwrap_or_else(tufa_provenance::TrustRoot::public_good),
            &config.cache_dir,
            &index_url,
            config.timeout,
        );
        Ok(Arc::new(Proxy {
            provenance,
            asker: ask::Asker::new(&index_url),
            index_url,
            trust,
            files,
            pages: tufa_index::encoding::Cache::new(PAGE_CACHE_BYTES),
        }))
    }
}

impl Proxy {
    /// The verified page of `name`. A project the signed metadata does not list is asked of the
    /// index (which mirrors it, with an upstream), then looked up in metadata refreshed since.
    pub(crate) async fn page(
        &self,
        name: &tufa_index::name::ProjectName,
    ) -> Result<Arc<page::VerifiedPage>, trust::PageError> {
        match self.trust.page(name).await {
            Err(trust::PageError::NotFound(missing)) => match self.asker.ask(name).await {
                Some(answered) => self.trust.page_after(name, answered).await,
                None => Err(trust::PageError::NotFound(missing)),
            },
            other => other,
        }
    }
}
