//! The PyPI-compatible index: the simple repository API (PEP 503 HTML and PEP 691 JSON, with
//! PEPs 592, 658, 700 and 714), Warehouse's JSON API, the upload API twine and `uv publish` use,
//! API tokens, and storage (SQLite plus files on local disk under one data directory).
//!
//! pip, uv and twine talk to it with no flags or plugins. Everything a client sees is derived from
//! the database, which records an upload only once its file is durable on disk.

mod auth;
mod blobs;
pub mod connections;
pub mod cooldown;
pub mod coremeta;
pub mod db;
pub mod dist;
pub mod encoding;
mod error;
pub mod integrity;
pub mod lease;
pub mod mirror;
pub mod name;
pub mod negotiate;
mod page_cache;
pub mod pages;
pub mod provenance;
mod resolver;
mod server;
pub mod signing;
pub mod storage;
mod upload;
pub mod upstream;
pub mod usage;
pub mod verified;
mod web;
mod wheel;

use std::path::PathBuf;

use axum::body::Bytes;
use tufa_repo::View;

use crate::name::ProjectName;
use crate::signing::{Signing, SigningConfig};

pub use auth::format_micros;
pub use blobs::Blobs;
pub use db::Database;
pub use error::{Error, Invalid, Result};
pub use server::{access_log, add_slash, reason_phrase, redirect, router, serve, with_query};
pub use upload::{UploadError, Uploaded, import_file};

/// PyPI's default limit on one file.
pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 100 * 1024 * 1024;

/// What an index needs to know to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The PostgreSQL database (`postgres://...`) to run on; `None`: the SQLite file in the data
    /// directory.
    pub database: Option<String>,
    pub max_upload_size: u64,
    /// The URL clients reach the index at, for the absolute URLs of the JSON API. Taken from the
    /// request's `Host` when unset.
    pub public_url: Option<String>,
    /// How to sign; `None` runs an index without TUF metadata.
    pub signing: Option<SigningConfig>,
    /// Start although the database and the published repository disagree (see
    /// [`integrity::Mismatch`]): the operator's explicit choice, never a default.
    pub accept_data_mismatch: bool,
    /// Mirror projects with no local uploads from an upstream index; `None`: no upstream.
    pub mirror: Option<mirror::MirrorConfig>,
    /// The cooldown view to publish.
    pub cooldown: CooldownSetting,
    /// Where the TUF repository and the distribution files are kept: `s3://bucket/prefix`, or
    /// `None` for the data directory (see [`storage`]).
    pub storage: Option<String>,
    /// The Sigstore trust root uploaded attestations are verified with; `None`: Sigstore's
    /// public-good instance, which ships with Tufa.
    pub sigstore_trust_root: Option<tufa_provenance::TrustRoot>,
}

/// Which cooldown view an index publishes.
#[derive(Clone, Debug)]
pub enum CooldownSetting {
    /// The policy the database records (what `tufa serve` last started with): for commands
    /// such as `tufa import` that sign without changing the view.
    Keep,
    /// This policy, or none to withdraw the view; a change republishes every project.
    Set(Option<cooldown::Policy>),
}

/// One index: its database and files.
#[derive(Debug)]
pub struct Index {
    pub config: Config,
    pub database: Database,
    pub blobs: Blobs,
    pub storage: storage::Storage,
    answers: encoding::Cache<page_cache::Resource>,
    /// The serial of the newest page rendered for each project, view and format: what a client
    /// gets while the database is unreachable (see [`Index::served_page`]).
    newest_pages: quick_cache::sync::Cache<(View, ProjectName, bool), i64>,
    pub signing: Option<Signing>,
    pub mirror: Option<mirror::Mirror>,
    /// Names with signed pages the database does not know, which no upload may take.
    reserved: integrity::Reserved,
    /// The cooldown view's policy, if it is published: as the database records it, which the
    /// last replica started with a policy set, and every replica follows (see
    /// [`Index::follow_cooldown`]).
    cooldown: std::sync::RwLock<Option<cooldown::Policy>>,
    failed_logins: auth::FailedLogins,
    /// What uploaded PEP 740 attestations are verified with.
    trust_root: tufa_provenance::TrustRoot,
    /// Held shared for the life of the process (see [`SERVER_LOCK_FILE`]).
    _server_lock: std::fs::File,
}

/// In the data directory: every process that opens the index holds it shared (several replicas
/// may), and `tufa database move` and `tufa storage move` hold it exclusively, so that neither
/// runs while a server would go on writing where the data was.
pub const SERVER_LOCK_FILE: &str = "server.lock";

/// The data directory's lock, taken exclusively; `None` when a process has the index open.
pub fn lock_exclusively(data_dir: &std::path::Path) -> Result<Option<std::fs::File>> {
    let path = data_dir.join(SERVER_LOCK_FILE);
    let lock = std::fs::File::create(&path).map_err(error::io("creating", &path))?;
    Ok(lock.try_lock().is_ok().then_some(lock))
}

impl Index {
    /// Opens the index in `config.data_dir`, initializing an empty directory. When signing,
    /// refuses a database that does not match the published repository (see [`integrity`]).
    pub async fn open(config: Config) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(error::io("creating the data directory", &config.data_dir))?;
        let lock_path = config.data_dir.join(SERVER_LOCK_FILE);
        let server_lock =
            std::fs::File::create(&lock_path).map_err(error::io("creating", &lock_path))?;
        if server_lock.try_lock_shared().is_err() {
            return Err(Error::Config(format!(
                "a `tufa database move` or `tufa storage move` is running on {}: start the \
                 server once it has finished",
                config.data_dir.display()
            )));
        }
        let database = Database::open_in(config.database.as_deref(), &config.data_dir).await?;
        let storage = storage::Storage::open(config.storage.as_deref())?;
        let blobs = Blobs::open(&config.data_dir, &storage)?;
        let accept = config.accept_data_mismatch;
        if config.signing.is_some() {
            let store = storage.tuf_store_beside_publisher(&config.data_dir);
            let present = store.clone();
            let present = tokio::task::spawn_blocking(move || {
                present.size(&tufa_repo::layout::metadata_file(
                    &tufa_metadata::RoleName::timestamp(),
                    0,
                ))
            })
            .await
            .map_err(|e| Error::Config(format!("the storage reader failed: {e}")))??
            .is_some();
            integrity::check_repository_present(&config.data_dir, present, &database, accept)
                .await?;
        }
        let signing = match &config.signing {
            Some(signing) => {
                // A replica that does not publish loads the repository only to learn the names
                // that a mismatch it is told to accept reserves (see `integrity`).
                Some(Signing::open(&config.data_dir, signing, &database, &storage, accept).await?)
            }
            None => None,
        };
        let reserved = match &signing {
            Some(signing) => {
                let loaded = signing.loaded().lock().await;
                match loaded.as_ref() {
                    Some(loaded) => {
                        integrity::check_published(
                            &config.data_dir,
                            &database,
                            &loaded.repository,
                            signing.store(),
                            accept,
                        )
                        .await?
                    }
                    None => integrity::Reserved::default(),
                }
            }
            None => integrity::Reserved::default(),
        };
        let mirror = config
            .mirror
            .clone()
            .map(mirror::Mirror::new)
            .transpose()
            .map_err(Error::Config)?;
        let cooldown = match &config.cooldown {
            CooldownSetting::Keep => database.cooldown_policy().await?,
            CooldownSetting::Set(policy) => policy.clone(),
        };
        if cooldown.is_some()
            && let Some(signing) = &signing
        {
            let targets_version = match signing.loaded().lock().await.as_ref() {
                Some(loaded) => (!loaded.repository.delegates(View::Cooldown))
                    .then(|| loaded.repository.targets().signed.version),
                None => {
                    let store = signing.store();
                    let offline =
                        tokio::task::spawn_blocking(move || tufa_repo::OfflineState::load(&store))
                            .await
                            .map_err(|e| {
                                Error::Config(format!("the storage reader failed: {e}"))
                            })??;
                    (!tufa_repo::delegates(&offline.targets.signed, View::Cooldown))
                        .then_some(offline.targets.signed.version)
                }
            };
            if let Some(targets_version) = targets_version {
                return Err(Error::CooldownNotDelegated { targets_version });
            }
        }
        if let Some(signing) = &signing {
            signing.unload_unless_publishing().await;
        }
        if let CooldownSetting::Set(policy) = &config.cooldown {
            let journaled = database.configure_cooldown(policy.as_ref()).await?;
            if journaled > 0 {
                tracing::info!(
                    projects = journaled,
                    "the cooldown policy changed: every project's cooldown page is published again"
                );
            }
        }
        let trust_root = config
            .sigstore_trust_root
            .clone()
            .unwrap_or_else(tufa_provenance::TrustRoot::public_good);
        Ok(Index {
            config,
            database,
            blobs,
            storage,
            answers: encoding::Cache::new(page_cache::CAPACITY_BYTES),
            newest_pages: quick_cache::sync::Cache::new(page_cache::NEWEST_PAGES),
            signing,
            mirror,
            reserved,
            cooldown: std::sync::RwLock::new(cooldown),
            failed_logins: auth::FailedLogins::default(),
            trust_root,
            _server_lock: server_lock,
        })
    }

    /// The cooldown view's policy, if it is published.
    pub fn cooldown(&self) -> Option<cooldown::Policy> {
        self.cooldown
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes up the cooldown policy the database records: another replica started with another
    /// one (and journaled every project, so that the pages follow). Without this, replicas would
    /// serve and sign pages under different policies.
    pub async fn follow_cooldown(&self) -> Result<()> {
        let recorded = self.database.cooldown_policy().await?;
        let mut policy = self
            .cooldown
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *policy != recorded {
            tracing::warn!(
                "another replica started with another cooldown policy ({}): this one follows it",
                recorded.as_ref().map_or("off".to_string(), |p| format!(
                    "{}, exempt {:?}",
                    cooldown::format_duration(p.period),
                    p.exempt
                ))
            );
            *policy = recorded;
        }
        Ok(())
    }

    /// Names no upload may create: signed by the repository, unknown to the database.
    pub fn reserved(&self) -> &integrity::Reserved {
        &self.reserved
    }

    /// The Sigstore trust root uploaded attestations are verified with.
    pub fn trust_root(&self) -> &tufa_provenance::TrustRoot {
        &self.trust_root
    }

    /// A project's simple page in `view`, JSON (PEP 691; also its TUF target) or HTML (PEP
    /// 503), with the serial it shows; `None` for an unknown project, or for the cooldown view
    /// when it is off.
    pub async fn project_page(
        &self,
        view: View,
        name: &ProjectName,
        json: bool,
    ) -> Result<Option<(i64, Bytes)>> {
        Ok(self
            .page(view, name, json)
            .await?
            .map(|(serial, page)| (serial, page.bytes().clone())))
    }

    /// [`Index::project_page`] as the cache keeps it, with its digest.
    /// [`Index::page`] for a client. While the database is unreachable, the newest page this
    /// replica rendered for the project, if it still holds it, rather than an error: a page is
    /// a signed target, which TUF clients check against the metadata they trust, and pip and uv
    /// keep installing what they could a moment before. Never for the publisher, which signs
    /// what the database holds.
    pub(crate) async fn served_page(
        &self,
        view: View,
        name: &ProjectName,
        json: bool,
    ) -> Result<Option<(i64, encoding::Rendered)>> {
        match self.page(view, name, json).await {
            Err(error @ Error::DatabaseUnavailable { .. }) => {
                let held = self
                    .newest_pages
                    .get(&(view, name.clone(), json))
                    .and_then(|serial| {
                        let key = page_cache::Resource::Page {
                            view,
                            project: name.clone(),
                            json,
                            serial,
                        };
                        self.answers.identity(&key).map(|page| (serial, page))
                    });
                match held {
                    Some(held) => {
                        tracing::warn!(
                            project = %name,
                            serial = held.0,
                            "the database is unreachable: serving the newest page held ({error})"
                        );
                        Ok(Some(held))
                    }
                    None => Err(error),
                }
            }
            answer => answer,
        }
    }

    async fn page(
        &self,
        view: View,
        name: &ProjectName,
        json: bool,
    ) -> Result<Option<(i64, encoding::Rendered)>> {
        let policy = match view {
            View::Simple => None,
            View::Cooldown => match self.cooldown() {
                Some(policy) => Some(policy),
                None => return Ok(None),
            },
        };
        let Some(project) = self.database.project(name).await? else {
            return Ok(None);
        };
        let key = |serial| page_cache::Resource::Page {
            view,
            project: name.clone(),
            json,
            serial,
        };
        if let Some(page) = self.answers.identity(&key(project.last_serial)) {
            return Ok(Some((project.last_serial, page)));
        }
        let (serial, body): (i64, Bytes) = match policy {
            None => {
                let Some((project, versions, files)) = self.database.project_state(name).await?
                else {
                    return Ok(None);
                };
                let body = if json {
                    pages::project_json(&project, &versions, &files).into()
                } else {
                    pages::project_html(&project, &files).into()
                };
                (project.last_serial, body)
            }
            Some(policy) => {
                let Some(state) = self.database.cooldown_state(name).await? else {
                    return Ok(None);
                };
                let view = cooldown::filter_state(&policy, name, &state);
                let body = if json {
                    pages::cooldown_json(&state.project, &view).into()
                } else {
                    pages::cooldown_html(&state.project, &view).into()
                };
                (state.project.last_serial, body)
            }
        };
        // Cached under the serial read with the files, which may be newer than the one above.
        let page = self.answers.keep(key(serial), body);
        self.newest_pages.insert((view, name.clone(), json), serial);
        Ok(Some((serial, page)))
    }

    /// Tells the publisher that the journal has grown.
    pub fn changed(&self) {
        if let Some(signing) = &self.signing {
            signing.wake();
        }
    }
}
