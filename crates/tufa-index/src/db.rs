//! The index's database: users and tokens, projects, releases, files, and the journal whose serial
//! numbers mirrors sync by (`X-PyPI-Last-Serial`). By default SQLite in the data directory, in WAL
//! mode with `synchronous=FULL`, so a committed upload survives a crash or power loss; or
//! PostgreSQL, so that several servers can share one index.
//!
//! Both run the same SQL through sqlx's `Any` driver: `$1..$N` placeholders (SQLite binds `$N`
//! by number), `ON CONFLICT` rather than `INSERT OR IGNORE`, integers as `i64` and no booleans
//! (a flag is an integer, 0 or 1, in both). Only the schema (see `migrations`) and the few things
//! one of them lacks (`PRAGMA`s, advisory locks) differ, behind [`Backend`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};
use crate::name::{ProjectName, Version};

/// Runs one async test body (a function taking a [`Database`]) on SQLite and on PostgreSQL: a
/// module `$name` with a test for each backend.
#[cfg(test)]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let database = crate::db::Database::open(&dir.path().join("tufa.db"))
                    .await
                    .unwrap();
                super::$body(database).await;
            }

            #[tokio::test]
            async fn postgres() {
                let url = tufa_testkit::postgres::fresh_database();
                let database = crate::db::Database::connect(&url).await.unwrap();
                super::$body(database).await;
            }
        }
    };
}

mod cooldown;
mod lease;
mod migrations;
mod mirror;
mod move_to;
mod provenance;
mod render;
mod tokens;
mod web;

pub use cooldown::CooldownState;
pub use lease::LeaseRow;
pub use migrations::SCHEMA_VERSION;
pub use mirror::{
    Adopted, MIRROR_USER, MirrorError, MirrorInfo, MirrorState, PinConflict, REMOVED_UPSTREAM,
    RecordOutcome, Recorded,
};
pub use move_to::Moved;
pub use provenance::{FileProvenance, NewProvenance};
pub use render::{PROJECTS_PER_READ, ProjectState};
pub use tokens::{Authenticated, Revocation, TokenId, TokenInfo};
pub use web::{FoundProject, RecentFile, ReleaseLine, ShownRelease, SigningRound};

/// A project the publisher could not publish, as `/status` and `tufa status` show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unpublished {
    pub project: String,
    pub error: String,
    pub attempts: i64,
    /// Microseconds since the epoch of the first failure.
    pub since: i64,
}

/// Bytes of a file path that sqlx's SQLite URL would read as something else.
const PATH_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b' ');

/// Microseconds since the Unix epoch: how times are stored.
pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: i64,
    pub name: ProjectName,
    pub display_name: String,
    pub last_serial: i64,
    /// `Some` for a project mirrored from upstream.
    pub mirror: Option<MirrorInfo>,
}

/// A file as the simple and JSON APIs describe it.
#[derive(Clone, Debug)]
pub struct FileRecord {
    pub filename: String,
    pub version: String,
    pub packagetype: String,
    pub python_version: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub blake2_256: String,
    pub requires_python: Option<String>,
    /// sha256 of the PEP 658 metadata file; `None` when there is none (sdists).
    pub metadata_sha256: Option<String>,
    pub upload_time_micros: i64,
    /// `Some(reason)` when yanked (PEP 592); the reason may be empty.
    pub yanked: Option<String>,
    /// sha256 of the file's PEP 740 provenance object, when it has one.
    pub provenance_sha256: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Release {
    pub version: Version,
    /// The core metadata of the release's first file.
    pub metadata: Vec<u8>,
}

/// Who an API token belongs to, and the one project it is limited to, if any.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user_id: i64,
    pub user: String,
    pub project: Option<ProjectName>,
}

/// A file to record, with its release.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub project: ProjectName,
    pub display_name: String,
    pub version: Version,
    pub release_metadata: Vec<u8>,
    pub file: FileRecord,
    /// The file's verified PEP 740 provenance, recorded in the same transaction as the file.
    pub provenance: Option<NewProvenance>,
}

/// The outcome of recording an upload.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A new file, at this journal serial (0 from a check, which records nothing).
    New { serial: i64 },
    /// The same file name with the same content was uploaded before: nothing changed.
    Unchanged,
}

/// What the checks found: the rows a new file joins, when they exist already.
enum Found {
    Unchanged,
    New {
        project_id: Option<i64>,
        release_id: Option<i64>,
    },
}

/// Why an upload cannot be recorded: each is the uploader's to fix.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddRefused {
    #[error(
        "File already exists ('{filename}') with different content. A file name can be used once; \
         upload a new version instead"
    )]
    FileExists { filename: String },
    #[error(
        "The user '{user}' isn't allowed to upload to project '{project}', which another user owns"
    )]
    NotOwner { user: String, project: String },
    #[error(
        "The project '{project}' is mirrored from the upstream index ({upstream}), so uploads to \
         it are refused (a public project of the same name would otherwise mix with yours). \
         To publish your own project under this name, an administrator runs `tufa mirror adopt \
         {project} --owner USER` (ends mirroring, keeps the mirrored files); to keep a name \
         private before anyone asks for it, reserve it with `tufa serve --private PATTERN`"
    )]
    Mirrored { project: String, upstream: String },
    #[error("Only one sdist may be uploaded per release: {version} of '{project}' already has one")]
    SecondSdist { project: String, version: String },
    #[error(
        "Version {version} of '{project}' is the same PEP 440 version as the existing release {existing}: upload it as {existing}"
    )]
    VersionSpelling {
        project: String,
        version: String,
        existing: String,
    },
}

fn check_user_name(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 100 || user.chars().any(|c| c.is_control() || c == ':') {
        return Err(Error::Config(format!(
            "invalid user name {user:?}: use 1 to 100 characters, no ':' or control characters"
        )));
    }
    Ok(())
}

/// The largest WAL kept after a checkpoint, in bytes: SQLite's automatic checkpoint runs at
/// 1,000 pages of 4 KiB.
const WAL_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// How long a request waits for a PostgreSQL connection before it is answered 503: enough for a
/// burst of requests queueing for the pool, short enough that clients learn of an outage at
/// once rather than after their own timeouts. (SQLite, a local file, keeps sqlx's 30 s: there a
/// wait only means contention.)
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The PostgreSQL advisory lock (ASCII "tufa" and 1) that orders writers. Most writing
/// transactions hold it exclusively until they end, taking turns as under SQLite's `BEGIN
/// IMMEDIATE`. An upload holds it shared, beside its project's lock (see
/// [`PROJECT_LOCK_CLASS`]), so that uploads to different projects commit in parallel; their
/// serials may then commit out of order (see [`SERIAL_LOCK_KEY`]).
const WRITE_LOCK_KEY: i64 = 0x7475_6661_0001;

/// The PostgreSQL advisory lock (ASCII "tufa" and 2) that a transaction holds shared from just
/// before it draws a journal serial until it ends. The publisher reads the journal only up to
/// what it saw committed while holding this lock exclusively (see [`Database::journal_after`]):
/// no writer is between drawing a serial and committing then, so it never passes over one that
/// commits late. Not [`WRITE_LOCK_KEY`]: uploads hold that one while they store the file (a
/// disk sync or a bucket's round trip), and the publisher would wait for all of those on every
/// batch, and every new upload behind it.
const SERIAL_LOCK_KEY: i64 = 0x7475_6661_0002;

/// The first key of a project's PostgreSQL advisory lock (ASCII "tufa"); the second is a hash
/// of its normalized name. Two-key advisory locks never collide with [`WRITE_LOCK_KEY`], a
/// one-key lock. Two names hashing alike only make their uploads take turns.
const PROJECT_LOCK_CLASS: i32 = 0x7475_6661;

/// Which database an index runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A file in the data directory (the default).
    Sqlite,
    /// A PostgreSQL database, named by a `postgres://` URL.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, or why it names none.
    pub fn of_url(url: &str) -> Result<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::Config(format!(
                "unsupported database {:?}: give a postgres://USER@HOST/DATABASE URL, or no \
                 database for the SQLite file in the data directory",
                redact(url)
            )))
        }
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".to_string(),
    }
}

/// The database of one index, shared by request handlers and commands.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    /// What writes go through. SQLite: one connection, so that this process's writers queue for
    /// it in turn, woken as it comes back, instead of each retrying the file's lock in SQLite's
    /// busy handler, which sleeps longer the longer it has waited (up to 100 ms between tries)
    /// and so lets late writers pass early ones; only this connection competes with other
    /// processes on the same file. PostgreSQL: the pool (writers wait for the advisory lock,
    /// which the server grants in turn).
    writer: AnyPool,
    backend: Backend,
    /// The file or the URL without its password: what messages name.
    location: String,
    /// PostgreSQL: where [`Database::journal_listener`] connects.
    url: Option<Secret>,
}

/// A database URL, which may hold a password: never printed.
#[derive(Clone)]
struct Secret(std::sync::Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// The PostgreSQL channel every committed journal entry is announced on (see [`journal`]).
const JOURNAL_CHANNEL: &str = "tufa_journal";

/// How long the publisher waits for a listening connection before it goes on polling alone.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Told by PostgreSQL when a journal entry commits, on any replica: what wakes the publisher at
/// once, where it would otherwise find the entry at its next poll of the journal.
pub struct JournalListener(sqlx::postgres::PgListener);

impl JournalListener {
    /// Waits for the next commit that journaled something. An error means the connection was
    /// lost: what was announced meanwhile is missed, so the caller polls.
    pub async fn next(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}

/// A transaction on either backend.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Database {
    /// The database `url` names (PostgreSQL), or with `None` the SQLite file in `data_dir`.
    pub async fn open_in(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        match url {
            Some(url) => Database::connect(url).await,
            None => Database::open(&data_dir.join(crate::integrity::DATABASE_FILE)).await,
        }
    }

    /// Opens the SQLite database at `path`, creating it and its schema on first use.
    pub async fn open(path: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let absolute = std::path::absolute(path)
            .map_err(crate::error::io("finding the database file", path))?;
        let Some(text) = absolute.to_str() else {
            return Err(Error::Config(format!(
                "the database path {} is not UTF-8: choose a data directory with a UTF-8 path",
                absolute.display()
            )));
        };
        // The file name is percent-decoded by sqlx, so `%`, `?` and `#` in it must be encoded.
        let encoded: String = percent_encoding::utf8_percent_encode(text, PATH_UNSAFE).collect();
        let options = AnyConnectOptions::from_str(&format!("sqlite://{encoded}?mode=rwc"))?;
        let pragmas = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 30000;
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        );
        // Without a journal size limit the WAL keeps the size of its largest burst (an import, a
        // reader that held back checkpoints) forever; with it, the next reset truncates it to the
        // size the automatic checkpoint (every 1,000 pages) lets it reach anyway.
        let connected = |connections| {
            let pragmas = pragmas.clone();
            AnyPoolOptions::new()
                .max_connections(connections)
                .after_connect(move |connection, _| {
                    let pragmas = pragmas.clone();
                    Box::pin(async move {
                        sqlx::Executor::execute(connection, pragmas.as_str()).await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let pool = connected(8).await?;
        let writer = connected(1).await?;
        let database = Database {
            pool,
            writer,
            backend: Backend::Sqlite,
            location: path.display().to_string(),
            url: None,
        };
        database.migrate().await?;
        Ok(database)
    }

    /// Connects to the PostgreSQL database `url` names, creating its schema on first use.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let database = Database {
            writer: pool.clone(),
            pool,
            backend,
            location: redact(url),
            url: Some(Secret(url.into())),
        };
        database.migrate().await?;
        Ok(database)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file or the PostgreSQL URL (without its password), for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A transaction that may write: one writer at a time (SQLite `BEGIN IMMEDIATE`,
    /// PostgreSQL an advisory lock held until it ends), so that journal serials commit in order.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        match self.backend {
            Backend::Sqlite => Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.writer.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// A transaction that may write what one project's upload writes: its project, release,
    /// file and provenance rows and a journal entry naming it. SQLite: as [`Database::begin_write`].
    /// PostgreSQL: the write lock shared with other uploads, so that only uploads of the same
    /// project take turns; every other writer, and the content an upload stores (one content is
    /// one project: its core metadata names it), is excluded by the lock held exclusively.
    pub(crate) async fn begin_project_write(&self, project: &ProjectName) -> Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.begin_write().await,
            Backend::Postgres => {
                let mut tx = self.writer.begin().await?;
                // Shared first, always: an exclusive waiter then never sits between a writer's
                // two locks.
                sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
                    .bind(WRITE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(PROJECT_LOCK_CLASS)
                    .bind(project.as_str())
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// A listener for committed journal entries: `None` on SQLite (a file has no way to tell
    /// another process), or when PostgreSQL does not answer in time.
    pub async fn journal_listener(&self) -> Result<Option<JournalListener>> {
        let Some(Secret(url)) = &self.url else {
            return Ok(None);
        };
        let listen = async {
            let mut listener = sqlx::postgres::PgListener::connect(url).await?;
            listener.listen(JOURNAL_CHANNEL).await?;
            Ok::<_, Error>(JournalListener(listener))
        };
        match tokio::time::timeout(LISTEN_TIMEOUT, listen).await {
            Ok(listener) => listener.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The highest serial below which every journal entry is committed (or never will be):
    /// where a reader following the journal must stop. SQLite commits serials in order, so
    /// that is all of them. PostgreSQL: uploads of different projects commit in parallel, so
    /// this waits for [`SERIAL_LOCK_KEY`] held exclusively, when no writer holds a serial it
    /// has not committed, and every serial drawn later is higher than what it reads.
    async fn settled_serial(&self) -> Result<i64> {
        match self.backend {
            Backend::Sqlite => Ok(i64::MAX),
            Backend::Postgres => {
                let mut tx = self.writer.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SERIAL_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                // A statement of its own: its snapshot is taken after the lock is granted.
                let settled: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(serial), 0) FROM journal")
                        .fetch_one(&mut *tx)
                        .await?;
                tx.rollback().await?;
                Ok(settled)
            }
        }
    }

    /// A transaction that reads one consistent state (PostgreSQL's default isolation would give
    /// each statement its own).
    pub(crate) async fn begin_read(&self) -> Result<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        })
    }

    async fn migrate(&self) -> Result<()> {
        let steps = migrations::steps(self.backend);
        let latest = steps.len() as i64;
        let mut tx = self.begin_write().await?;
        let version: i64 = match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&mut *tx)
                    .await?
            }
            Backend::Postgres => {
                // Looked up rather than `CREATE TABLE IF NOT EXISTS`, whose notice would be
                // logged at every start. The write lock keeps two servers from both creating it.
                let exists: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name = 'tufa_schema'",
                )
                .fetch_one(&mut *tx)
                .await?;
                if exists == 0 {
                    sqlx::raw_sql(migrations::POSTGRES_VERSION_TABLE)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query_scalar("SELECT version FROM tufa_schema WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        if version > latest {
            return Err(Error::Config(format!(
                "the database has schema version {version}, newer than this tufa understands \
                 ({latest}): upgrade tufa"
            )));
        }
        let done = usize::try_from(version).unwrap_or(0);
        for step in &steps[done..] {
            sqlx::raw_sql(step).execute(&mut *tx).await?;
        }
        if version != latest {
            match self.backend {
                Backend::Sqlite => {
                    sqlx::query(&format!("PRAGMA user_version = {latest}"))
                        .execute(&mut *tx)
                        .await?;
                }
                Backend::Postgres => {
                    sqlx::query("UPDATE tufa_schema SET version = $1 WHERE id = 1")
                        .bind(latest)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The schema version recorded (`PRAGMA user_version`, or PostgreSQL's `tufa_schema`).
    pub async fn schema_version(&self) -> Result<i64> {
        Ok(match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::query_scalar("SELECT version FROM tufa_schema WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?
            }
        })
    }

    /// The identity of `user` with no project limit, creating the user if needed: what a
    /// command acting for the user (an import) uploads as.
    pub async fn user(&self, user: &str) -> Result<Identity> {
        check_user_name(user)?;
        sqlx::query("INSERT INTO users (name, created) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(user)
            .bind(now_micros())
            .execute(&self.pool)
            .await?;
        let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await?;
        Ok(Identity {
            user_id,
            user: user.to_string(),
            project: None,
        })
    }

    /// Every project with its last serial, by name. Read row by row: the rows of 700,000
    /// projects at once take several times the memory of the names.
    pub async fn projects(&self) -> Result<Vec<(ProjectName, i64)>> {
        use tokio_stream::StreamExt;
        let mut rows =
            sqlx::query("SELECT name, last_serial FROM projects ORDER BY name").fetch(&self.pool);
        let mut projects = Vec::new();
        while let Some(row) = rows.next().await {
            let row = row?;
            projects.push((stored_name(row.get(0))?, row.get(1)));
        }
        Ok(projects)
    }

    /// The serial of the latest change to any project (0 on an empty index).
    pub async fn last_serial(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(serial), 0) FROM journal")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn project(&self, name: &ProjectName) -> Result<Option<Project>> {
        find_project(&self.pool, name).await
    }

    /// Every file of a project, by file name.
    pub async fn project_files(&self, project_id: i64) -> Result<Vec<FileRecord>> {
        files_of(&self.pool, project_id).await
    }

    /// Every release of a project, in PEP 440 order, oldest first.
    pub async fn releases(&self, project_id: i64) -> Result<Vec<Release>> {
        let rows = sqlx::query("SELECT version, metadata FROM releases WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        let mut releases = rows
            .into_iter()
            .map(|row| {
                Ok(Release {
                    version: Version::new(row.get::<&str, _>(0))?,
                    metadata: row.get(1),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        releases.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(releases)
    }

    /// Whether any recorded file has this content, so that its stored bytes must stay.
    pub async fn stores_file(&self, sha256: &str) -> Result<bool> {
        references(&self.pool, sha256).await
    }

    pub async fn file(&self, filename: &str) -> Result<Option<FileRecord>> {
        let row = sqlx::query(&format!("{FILE_COLUMNS} WHERE files.filename = $1"))
            .bind(filename)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(file_record))
    }

    /// Whether `identity` may upload to `project`: it is new, or the identity's user owns it.
    /// Checked before an upload's content so that a stranger learns nothing from validation
    /// errors; [`Database::add_file`] checks again inside its transaction.
    pub async fn may_upload(
        &self,
        identity: &Identity,
        project: &ProjectName,
    ) -> Result<Result<(), AddRefused>> {
        let owner: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT owner_id, upstream FROM projects WHERE name = $1")
                .bind(project.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match owner {
            Some((_, Some(upstream))) => Err(AddRefused::Mirrored {
                project: project.to_string(),
                upstream,
            }),
            Some((owner, None)) if owner != identity.user_id => Err(AddRefused::NotOwner {
                user: identity.user.clone(),
                project: project.to_string(),
            }),
            _ => Ok(()),
        })
    }

    /// Whether `new` would be recorded, checked without taking the write lock: an upload checks
    /// this before it makes its file durable, so that a refused upload leaves nothing behind and
    /// the slow file syncs of concurrent uploads overlap instead of queueing behind the lock.
    pub async fn check_file(
        &self,
        identity: &Identity,
        new: &NewFile,
    ) -> Result<Result<Added, AddRefused>> {
        let mut tx = self.begin_read().await?;
        let checked = check_new_file(&mut tx, identity, new).await?;
        tx.rollback().await?;
        Ok(checked.map(|found| match found {
            Found::Unchanged => Added::Unchanged,
            Found::New { .. } => Added::New { serial: 0 },
        }))
    }

    /// Records an uploaded file, whose bytes are already durable, in one transaction with its
    /// project, release and journal entry (the signing queue). Checks everything again: another
    /// upload may have won a race since [`Database::check_file`]. Before a new file's rows,
    /// `stored` makes sure its bytes are still stored, under the write lock: an upload of the
    /// same content that gave up removes them under that lock too, and may have done so since
    /// they were stored; once the row is committed, nothing does.
    pub async fn add_file(
        &self,
        identity: &Identity,
        new: &NewFile,
        stored: impl AsyncFnOnce() -> Result<()>,
    ) -> Result<Result<Added, AddRefused>> {
        let mut tx = self.begin_project_write(&new.project).await?;
        let (project_id, release_id) = match check_new_file(&mut tx, identity, new).await? {
            Err(refused) => return Ok(Err(refused)),
            Ok(Found::Unchanged) => return Ok(Ok(Added::Unchanged)),
            Ok(Found::New {
                project_id,
                release_id,
            }) => (project_id, release_id),
        };
        stored().await?;
        let file = &new.file;
        let project_id = match project_id {
            Some(id) => id,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO projects (name, display_name, owner_id, last_serial)
                     VALUES ($1, $2, $3, 0) RETURNING id",
                )
                .bind(new.project.as_str())
                .bind(&new.display_name)
                .bind(identity.user_id)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let release_id: i64 = match release_id {
            Some(id) => id,
            None => {
                let id = sqlx::query_scalar(
                    "INSERT INTO releases (project_id, version, metadata, created)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(project_id)
                .bind(new.version.as_str())
                .bind(&new.release_metadata)
                .bind(file.upload_time_micros)
                .fetch_one(&mut *tx)
                .await?;
                web::set_summary(&mut tx, project_id, &new.release_metadata).await?;
                id
            }
        };
        let file_id: i64 = sqlx::query_scalar(
            "INSERT INTO files (release_id, filename, packagetype, python_version, size, sha256,
                 md5, blake2_256, requires_python, metadata_sha256, upload_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(release_id)
        .bind(&file.filename)
        .bind(&file.packagetype)
        .bind(&file.python_version)
        .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
        .bind(&file.sha256)
        .bind(&file.md5)
        .bind(&file.blake2_256)
        .bind(&file.requires_python)
        .bind(&file.metadata_sha256)
        .bind(file.upload_time_micros)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(provenance) = &new.provenance {
            provenance::insert(&mut tx, file_id, provenance).await?;
        }
        let serial = journal(
            &mut tx,
            &new.project,
            &format!("add file {}", file.filename),
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(Added::New { serial }))
    }

    /// Yanks (or with `yanked: None`, un-yanks) every file of a release, or the one file named.
    /// Returns how many files changed.
    pub async fn set_yanked(
        &self,
        project: &ProjectName,
        version: &Version,
        filename: Option<&str>,
        yanked: Option<&str>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let release_id: Option<i64> = sqlx::query_scalar(
            "SELECT releases.id FROM releases JOIN projects ON projects.id = releases.project_id
             WHERE projects.name = $1 AND releases.version = $2",
        )
        .bind(project.as_str())
        .bind(version.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(release_id) = release_id else {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                .bind(project.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match known {
                None => Error::NoProject(project.to_string()),
                Some(_) => Error::NoRelease {
                    project: project.to_string(),
                    version: version.to_string(),
                },
            });
        };
        let matching: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM files WHERE release_id = $1 AND ($2 IS NULL OR filename = $3)",
        )
        .bind(release_id)
        .bind(filename)
        .bind(filename)
        .fetch_one(&mut *tx)
        .await?;
        if let (Some(filename), 0) = (filename, matching) {
            return Err(Error::NoFile {
                project: project.to_string(),
                version: version.to_string(),
                filename: filename.to_string(),
            });
        }
        let changed = sqlx::query(
            "UPDATE files SET yanked = $1, yanked_reason = $2
             WHERE release_id = $3 AND ($4 IS NULL OR filename = $5)
               AND (yanked != $6 OR yanked_reason IS DISTINCT FROM $7)",
        )
        .bind(i64::from(yanked.is_some()))
        .bind(yanked)
        .bind(release_id)
        .bind(filename)
        .bind(filename)
        .bind(i64::from(yanked.is_some()))
        .bind(yanked)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            let action = match yanked {
                Some(_) => format!("yank {version}"),
                None => format!("unyank {version}"),
            };
            journal(&mut tx, project, &action).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// The journal is also the signing queue: every serial up to this one is in signed metadata.
    pub async fn signed_serial(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT serial FROM signed WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    /// When the oldest change not yet signed was made (microseconds since the epoch), if any.
    pub async fn oldest_unsigned(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(time) FROM journal WHERE serial > (SELECT serial FROM signed WHERE id = 1)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks nothing as signed, so that every project is published again: after the online
    /// roles were signed anew.
    pub async fn reset_signed_serial(&self) -> Result<()> {
        sqlx::query("UPDATE signed SET serial = 0 WHERE id = 1")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Journal entries after `serial`, oldest first, at most `limit`: only settled ones (see
    /// [`Database::settled_serial`]), so that a reader that goes on from the last serial it read
    /// never passes over one that commits late.
    pub async fn journal_after(&self, serial: i64, limit: i64) -> Result<Vec<(i64, ProjectName)>> {
        let settled = self.settled_serial().await?;
        let rows = sqlx::query(
            "SELECT serial, project FROM journal WHERE serial > $1 AND serial <= $2
             ORDER BY serial LIMIT $3",
        )
        .bind(serial)
        .bind(settled)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| Ok((row.get(0), stored_name(row.get(1))?)))
            .collect()
    }

    /// A project with its files and release versions, read in one transaction so that the page
    /// rendered from them is one consistent state of the project.
    pub async fn project_state(
        &self,
        name: &ProjectName,
    ) -> Result<Option<(Project, Vec<Version>, Vec<FileRecord>)>> {
        let mut tx = self.begin_read().await?;
        let state = project_state_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Records that `project` could not be published: tried again after a back-off that doubles
    /// with each attempt, up to `max_backoff`.
    pub async fn record_unpublished(
        &self,
        project: &str,
        error: &str,
        max_backoff: Duration,
    ) -> Result<()> {
        let now = now_micros();
        let mut tx = self.begin_write().await?;
        let attempts: i64 =
            sqlx::query_scalar("SELECT attempts FROM unpublished WHERE project = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0)
                + 1;
        let backoff = Duration::from_secs(1 << attempts.clamp(0, 20)).min(max_backoff);
        let next = now.saturating_add(i64::try_from(backoff.as_micros()).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO unpublished (project, error, attempts, since, next_attempt)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project) DO UPDATE
             SET error = excluded.error, attempts = excluded.attempts,
                 next_attempt = excluded.next_attempt",
        )
        .bind(project)
        .bind(error)
        .bind(attempts)
        .bind(now)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the failures of projects that are now published.
    pub async fn clear_unpublished(&self, projects: &[&str]) -> Result<()> {
        // Almost always empty: one read then spares a batch one statement per project. Only the
        // publisher adds rows, so none can appear between the read and the deletes.
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM unpublished LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for project in projects {
            sqlx::query("DELETE FROM unpublished WHERE project = $1")
                .bind(project)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Projects whose back-off has passed, at most `limit`.
    pub async fn unpublished_due(&self, limit: i64) -> Result<Vec<ProjectName>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT project FROM unpublished WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $2",
        )
        .bind(now_micros())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        names.iter().map(|name| stored_name(name)).collect()
    }

    /// The projects waiting to be published after a failure, oldest first, at most `limit`, and
    /// how many there are.
    pub async fn unpublished(&self, limit: i64) -> Result<(i64, Vec<Unpublished>)> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM unpublished")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT project, error, attempts, since FROM unpublished ORDER BY since LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let listed = rows
            .iter()
            .map(|row| Unpublished {
                project: row.get(0),
                error: row.get(1),
                attempts: row.get(2),
                since: row.get(3),
            })
            .collect();
        Ok((count, listed))
    }

    /// Copies the WAL into the database and truncates it to nothing, unless a reader still
    /// needs it (then SQLite leaves it for the next call): what an idle index does, so that its
    /// data directory holds the database once, not once more in the WAL.
    pub async fn truncate_wal(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes a consistent copy of the SQLite database to `path` while the index serves:
    /// `VACUUM INTO` reads in one transaction, so the copy holds exactly the commits before it
    /// began, and writers go on meanwhile (WAL).
    pub async fn copy_sqlite_into(&self, path: &Path) -> Result<()> {
        let Some(path) = path.to_str() else {
            return Err(Error::Config(format!(
                "{} is not UTF-8: choose a backup directory with a UTF-8 path",
                path.display()
            )));
        };
        if self.backend != Backend::Sqlite {
            return Err(Error::Config(format!(
                "{} is not the embedded SQLite database: back it up with its own tools",
                self.location
            )));
        }
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Every rule an upload must pass against what is recorded, reading only.
async fn check_new_file(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    identity: &Identity,
    new: &NewFile,
) -> Result<Result<Found, AddRefused>> {
    let file = &new.file;
    let owner: Option<(i64, i64, Option<String>)> =
        sqlx::query_as("SELECT id, owner_id, upstream FROM projects WHERE name = $1")
            .bind(new.project.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let project_id = match owner {
        Some((_, _, Some(upstream))) => {
            return Ok(Err(AddRefused::Mirrored {
                project: new.project.to_string(),
                upstream,
            }));
        }
        Some((_, owner_id, None)) if owner_id != identity.user_id => {
            return Ok(Err(AddRefused::NotOwner {
                user: identity.user.clone(),
                project: new.project.to_string(),
            }));
        }
        Some((id, _, None)) => Some(id),
        None => None,
    };
    let existing: Option<String> =
        sqlx::query_scalar("SELECT sha256 FROM files WHERE filename = $1")
            .bind(&file.filename)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(sha256) = existing {
        return Ok(if sha256 == file.sha256 {
            Ok(Found::Unchanged)
        } else {
            Err(AddRefused::FileExists {
                filename: file.filename.clone(),
            })
        });
    }
    let release_id: Option<i64> = match project_id {
        Some(project_id) => {
            sqlx::query_scalar("SELECT id FROM releases WHERE project_id = $1 AND version = $2")
                .bind(project_id)
                .bind(new.version.as_str())
                .fetch_optional(&mut **tx)
                .await?
        }
        None => None,
    };
    if let (Some(project_id), None) = (project_id, release_id) {
        // `1.0` and `1.0.0` are one version to installers: a second spelling would split a
        // release in two, each looking complete.
        let versions: Vec<String> =
            sqlx::query_scalar("SELECT version FROM releases WHERE project_id = $1")
                .bind(project_id)
                .fetch_all(&mut **tx)
                .await?;
        if let Some(existing) = versions
            .into_iter()
            .find(|v| Version::new(v).is_ok_and(|v| v.cmp(&new.version).is_eq()))
        {
            return Ok(Err(AddRefused::VersionSpelling {
                project: new.project.to_string(),
                version: new.version.to_string(),
                existing,
            }));
        }
    }
    if let Some(release_id) = release_id
        && file.packagetype == "sdist"
    {
        let sdists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM files WHERE release_id = $1 AND packagetype = 'sdist'",
        )
        .bind(release_id)
        .fetch_one(&mut **tx)
        .await?;
        if sdists > 0 {
            return Ok(Err(AddRefused::SecondSdist {
                project: new.project.to_string(),
                version: new.version.to_string(),
            }));
        }
    }
    Ok(Ok(Found::New {
        project_id,
        release_id,
    }))
}

const FILE_COLUMNS: &str = "SELECT files.filename, releases.version, files.packagetype,
    files.python_version, files.size, files.sha256, files.md5, files.blake2_256,
    files.requires_python, files.metadata_sha256, files.upload_time, files.yanked,
    files.yanked_reason, file_provenance.sha256
    FROM files JOIN releases ON releases.id = files.release_id
    LEFT JOIN file_provenance ON file_provenance.file_id = files.id";

fn file_record(row: &sqlx::any::AnyRow) -> FileRecord {
    let yanked = row.get::<i64, _>(11) != 0;
    FileRecord {
        filename: row.get(0),
        version: row.get(1),
        packagetype: row.get(2),
        python_version: row.get(3),
        size: u64::try_from(row.get::<i64, _>(4)).unwrap_or(0),
        sha256: row.get(5),
        md5: row.get(6),
        blake2_256: row.get(7),
        requires_python: row.get(8),
        metadata_sha256: row.get(9),
        upload_time_micros: row.get(10),
        yanked: yanked.then(|| row.get::<Option<String>, _>(12).unwrap_or_default()),
        provenance_sha256: row.get(13),
    }
}

const PROJECT_COLUMNS: &str = "SELECT projects.id, projects.name, projects.display_name,
    projects.last_serial, projects.upstream, mirror_state.status, mirror_state.status_reason
    FROM projects LEFT JOIN mirror_state ON mirror_state.project_id = projects.id";

fn project_record(row: &sqlx::any::AnyRow) -> Result<Project> {
    Ok(Project {
        id: row.get(0),
        name: stored_name(row.get(1))?,
        display_name: row.get(2),
        last_serial: row.get(3),
        mirror: row.get::<Option<String>, _>(4).map(|tracks| MirrorInfo {
            tracks,
            status: row.get(5),
            status_reason: row.get(6),
        }),
    })
}

async fn find_project<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    name: &ProjectName,
) -> Result<Option<Project>> {
    let row = sqlx::query(&format!("{PROJECT_COLUMNS} WHERE projects.name = $1"))
        .bind(name.as_str())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(project_record).transpose()
}

/// A project with its files and release versions, within the caller's transaction.
async fn project_state_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &ProjectName,
) -> Result<Option<(Project, Vec<Version>, Vec<FileRecord>)>> {
    let Some(project) = find_project(&mut **tx, name).await? else {
        return Ok(None);
    };
    let files = files_of(&mut **tx, project.id).await?;
    let mut versions =
        sqlx::query_scalar::<_, String>("SELECT version FROM releases WHERE project_id = $1")
            .bind(project.id)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|v| Version::new(v))
            .collect::<Result<Vec<_>, _>>()?;
    versions.sort();
    Ok(Some((project, versions, files)))
}

async fn files_of<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    project_id: i64,
) -> Result<Vec<FileRecord>> {
    let rows = sqlx::query(&format!(
        "{FILE_COLUMNS} WHERE releases.project_id = $1 ORDER BY files.filename"
    ))
    .bind(project_id)
    .fetch_all(executor)
    .await?;
    Ok(rows.iter().map(file_record).collect())
}

fn stored_name(name: &str) -> Result<ProjectName> {
    Ok(ProjectName::from_str(name)?)
}

/// Appends to the journal and moves the project's serial to the new entry.
async fn journal(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: &ProjectName,
    action: &str,
) -> Result<i64> {
    // Delivered when the transaction commits, never before (nor at all if it rolls back); many
    // entries in one transaction make one notification. The lock is the publisher's barrier
    // (see `SERIAL_LOCK_KEY`), taken before the serial is drawn and held until the end.
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1), pg_notify($2, '')")
            .bind(SERIAL_LOCK_KEY)
            .bind(JOURNAL_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    let serial: i64 = sqlx::query_scalar(
        "INSERT INTO journal (project, action, time) VALUES ($1, $2, $3) RETURNING serial",
    )
    .bind(project.as_str())
    .bind(action)
    .bind(now_micros())
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE projects SET last_serial = $1 WHERE name = $2")
        .bind(serial)
        .bind(project.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(serial)
}

/// A distribution file as stored: what `tufa verify` checks on disk.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub id: i64,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    /// sha256 of the PEP 658 metadata file stored beside it, if any.
    pub metadata_sha256: Option<String>,
    /// Mirrored from upstream: fetched on first download, so not yet stored is no problem.
    pub mirrored: bool,
}

/// The database's write lock, held while `tufa verify --repair` removes a file no row
/// references: no upload can record a row for it meanwhile. Released when dropped.
pub struct WriteLock(Tx);

impl WriteLock {
    /// Whether a row references the distribution file with this sha256.
    pub async fn references(&mut self, sha256: &str) -> Result<bool> {
        references(&mut *self.0, sha256).await
    }

    /// Releases the lock now, rather than when the connection is next used.
    pub async fn release(self) -> Result<()> {
        Ok(self.0.rollback().await?)
    }
}

async fn references<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    sha256: &str,
) -> Result<bool> {
    // `EXISTS` is a boolean in PostgreSQL and an integer in SQLite: a row or none is neither.
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM files WHERE sha256 = $1 LIMIT 1")
        .bind(sha256)
        .fetch_optional(executor)
        .await?;
    Ok(found.is_some())
}

/// Read-only queries for checking a data directory.
impl Database {
    /// Up to `limit` distribution files recorded, in row order from after row `after_id`.
    pub async fn stored_files(&self, after_id: i64, limit: i64) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(
            "SELECT id, filename, sha256, size, metadata_sha256,
                 CASE WHEN upstream_url IS NULL THEN 0 ELSE 1 END
             FROM files WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| StoredFile {
                id: row.get(0),
                filename: row.get(1),
                sha256: row.get(2),
                size: u64::try_from(row.get::<i64, _>(3)).unwrap_or(0),
                metadata_sha256: row.get(4),
                mirrored: row.get::<i64, _>(5) != 0,
            })
            .collect())
    }

    /// Whether a row references the distribution file with this sha256.
    pub async fn references(&self, sha256: &str) -> Result<bool> {
        references(&self.pool, sha256).await
    }

    /// How many journal entries come after `serial`.
    pub async fn journal_count_after(&self, serial: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE serial > $1")
                .bind(serial)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Takes the write lock (waiting for a writer to finish).
    pub async fn write_lock(&self) -> Result<WriteLock> {
        Ok(WriteLock(self.begin_write().await?))
    }
}

#[cfg(test)]
mod tests;
