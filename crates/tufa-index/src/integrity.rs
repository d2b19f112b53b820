//! Whether a data directory is whole: the database, the distribution files and the published TUF
//! repository describing one index.
//!
//! The repository is what clients trust; the database is what the index serves and signs next.
//! When the two disagree, serving is worse than stopping. With a lost database the signed pages
//! point at files the index no longer serves, serials restart at 0, and another user could upload
//! other files under a name clients already trust; with an older database the index would sign
//! its older state over newer signed pages. So [`check_repository_present`] and
//! [`check_published`] refuse to start, naming both and the fix, and [`verify`] (`tufa verify`)
//! checks everything, file by file.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tufa_metadata::{
    DelegatedRoles, HexDigest, MetaFile, Metadata, RoleName, Snapshot, Targets, Timestamp,
};
use tufa_repo::layout::{self, BINS_ROLE, METADATA_DIR, TARGETS_DIR, View};
use tufa_repo::{FsStore, ListedPage, OfflineState, Repository, Store};

use crate::db::{Database, StoredFile};
use crate::error::{Error, Result};
use crate::name::ProjectName;
use crate::signing::TUF_DIR;

/// The database file, in the data directory.
pub const DATABASE_FILE: &str = "tufa.db";

/// At start, how many published pages are read to compare their serial with the database's. A
/// page read costs one small file read, so up to this many (every page of most indexes) takes
/// well under a second; beyond it the pages of the most recently signed bin roles are read
/// first, since a database restored from an older backup shows first in the pages signed since.
/// The comparison of names is always complete: it needs no file reads. `tufa verify` reads
/// every page.
pub const PAGES_READ_AT_START: usize = 10_000;
/// Threads that read those pages.
const PAGE_READERS: usize = 16;

/// A staging file or unreferenced distribution file this old is no upload in progress: uploads
/// write their staging file continuously and record it within seconds of the last byte.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// How many unreachable TUF files a report names (it counts them all).
const UNREACHABLE_SHOWN: usize = 20;

/// Rows read per query while checking files: bounded memory however many files there are.
const FILES_PER_QUERY: i64 = 10_000;

/// How `FsStore` names a file while it writes it.
const TUF_TEMP_SUFFIX: &str = ".tufa-tmp";
/// How `--repair` names a file it is about to remove.
const ASIDE_SUFFIX: &str = ".tufa-repair";

/// The fix for a database that does not match the repository.
const DATABASE_FIX: &str = "Fix: restore the database backup taken with this repository (with \
     the server stopped); or start a new repository: move the repository, trusted-root.json and \
     (for a development repository) dev-keys/ aside, and give clients the new root; or start \
     with --accept-data-mismatch to serve them as they are, with every name the database does \
     not know reserved";

/// Why the database and the published repository cannot be served together.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "the database {database} does not know {count} project(s) that the TUF repository \
         {repository} has signed pages for ({examples}): the database was deleted, replaced or \
         restored from a backup older than the repository. {DATABASE_FIX}"
    )]
    UnknownProjects {
        database: PathBuf,
        repository: PathBuf,
        count: usize,
        examples: String,
    },

    #[error(
        "the database {database} is older than the TUF repository {repository}: the signed page \
         of {project:?} shows serial {published}, the database's latest change to it is serial \
         {recorded} (a database backup older than the repository was restored?). {DATABASE_FIX}"
    )]
    DatabaseBehind {
        database: PathBuf,
        repository: PathBuf,
        project: String,
        published: i64,
        recorded: i64,
    },

    #[error(
        "the database {database} records changes signed up to serial {signed}, but the TUF \
         repository {repository} has no online metadata (no metadata/timestamp.json): it was \
         deleted or replaced. Fix: restore the repository from the backup taken with the \
         database; or, to sign every project of the database into a new repository (clients \
         then need its root), install one (a ceremony's metadata; for a development repository, \
         move dev-keys/ and trusted-root.json aside) and start with --accept-data-mismatch"
    )]
    RepositoryMissing {
        database: PathBuf,
        repository: PathBuf,
        signed: i64,
    },
}

/// Project names with pages signed by the repository that the database does not know: only when
/// the operator started on a mismatch on purpose. No upload may create them, so that nobody
/// publishes other files under a name clients already trust.
#[derive(Debug, Default)]
pub struct Reserved(HashSet<ProjectName>);

impl Reserved {
    pub fn contains(&self, name: &ProjectName) -> bool {
        self.0.contains(name)
    }
}

fn tuf_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(TUF_DIR)
}

/// Before the repository is opened (which creates online roles where there are none): a
/// database with signed changes next to a repository that never published anything means the
/// repository was deleted or replaced.
pub(crate) async fn check_repository_present(
    data_dir: &Path,
    timestamp_present: bool,
    database: &Database,
    accept: bool,
) -> Result<()> {
    if timestamp_present {
        return Ok(());
    }
    let signed = database.signed_serial().await?;
    if signed == 0 {
        return Ok(());
    }
    let mismatch = Mismatch::RepositoryMissing {
        database: PathBuf::from(database.location()),
        repository: tuf_dir(data_dir),
        signed,
    };
    if accept {
        tracing::warn!("starting anyway (--accept-data-mismatch): {mismatch}");
        return Ok(());
    }
    Err(mismatch.into())
}

#[derive(Deserialize)]
struct PageMeta {
    #[serde(rename = "_last-serial")]
    last_serial: i64,
}

#[derive(Deserialize)]
struct Page {
    meta: PageMeta,
}

/// The serial a published page shows.
fn page_serial(bytes: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Page>(bytes)
        .ok()
        .map(|page| page.meta.last_serial)
}

/// A page's target file, relative to the repository.
fn page_path(page: &ListedPage) -> String {
    layout::target_file(
        &layout::page_target(page.view, page.project),
        &HexDigest::from_bytes(page.sha256),
    )
}

/// After the repository is open: every project with a signed page must be in the database, with
/// a serial at least the page's. Returns the names to reserve when the operator accepts a
/// mismatch.
pub(crate) async fn check_published<S: Store>(
    data_dir: &Path,
    database: &Database,
    repository: &Repository<S>,
    store: Arc<dyn Store>,
    accept: bool,
) -> Result<Reserved> {
    let started = std::time::Instant::now();
    if repository.pages().next().is_none() {
        return Ok(Reserved::default());
    }
    // The pages are walked where the repository holds them, and the names kept once, sorted:
    // a replica of 700,000 projects starts within the memory it then runs in.
    let mut known = database.projects().await?;
    known.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let serial = |project: &str| {
        known
            .binary_search_by(|(name, _)| name.as_str().cmp(project))
            .ok()
            .map(|at| known[at].1)
    };
    let database_file = PathBuf::from(database.location());
    let tuf = tuf_dir(data_dir);
    let mut unknown: Vec<&str> = repository
        .pages()
        .filter(|page| serial(page.project).is_none())
        .map(|page| page.project)
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let mut reserved = Reserved::default();
    if !unknown.is_empty() {
        let mut examples: Vec<&str> = unknown.iter().take(5).copied().collect();
        if unknown.len() > examples.len() {
            examples.push("...");
        }
        let mismatch = Mismatch::UnknownProjects {
            database: database_file.clone(),
            repository: tuf.clone(),
            count: unknown.len(),
            examples: examples.join(", "),
        };
        if !accept {
            return Err(mismatch.into());
        }
        tracing::warn!("starting anyway (--accept-data-mismatch): {mismatch}");
        reserved.0 = unknown
            .iter()
            .filter_map(|name| ProjectName::new(name).ok())
            .collect();
    }

    // The most recently signed pages: those whose bin roles expire last.
    let mut newest: BinaryHeap<Reverse<(i64, String, String, i64)>> = BinaryHeap::new();
    let mut pages = 0;
    for page in repository.pages() {
        pages += 1;
        let Some(recorded) = serial(page.project) else {
            continue;
        };
        let expires = page.bin_expires.unix_timestamp();
        if newest.len() == PAGES_READ_AT_START
            && newest
                .peek()
                .is_some_and(|Reverse(oldest)| oldest.0 >= expires)
        {
            continue;
        }
        newest.push(Reverse((
            expires,
            page.project.to_string(),
            page_path(&page),
            recorded,
        )));
        if newest.len() > PAGES_READ_AT_START {
            newest.pop();
        }
    }
    drop(known);
    let sample: Vec<(String, String, i64)> = newest
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((_, project, path, recorded))| (project, path, recorded))
        .collect();
    let read = sample.len();
    // Read on many threads: in a bucket each read is a round trip, and 10,000 of them one after
    // another held a replica taking over publishing for 9 s at 200,000 projects.
    let behind = tokio::task::spawn_blocking(move || {
        let behind = tufa_repo::map_in_parallel(&sample, PAGE_READERS, |(_, path, recorded)| {
            let published = store
                .read(path)
                .ok()
                .flatten()
                .and_then(|bytes| page_serial(&bytes));
            Ok(published.filter(|published| published > recorded))
        });
        behind.ok().and_then(|behind| {
            sample
                .into_iter()
                .zip(behind)
                .find_map(|((project, _, recorded), published)| {
                    published.map(|published| (project, published, recorded))
                })
        })
    })
    .await
    .map_err(|e| Error::Config(format!("the page reader failed: {e}")))?;
    if let Some((project, published, recorded)) = behind {
        let mismatch = Mismatch::DatabaseBehind {
            database: database_file,
            repository: tuf,
            project,
            published,
            recorded,
        };
        if !accept {
            return Err(mismatch.into());
        }
        tracing::warn!("starting anyway (--accept-data-mismatch): {mismatch}");
    }
    tracing::info!(
        pages,
        read,
        milliseconds = started.elapsed().as_millis() as u64,
        "the database matches the published repository"
    );
    Ok(reserved)
}

/// Something wrong in a data directory, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(
        "{path}: the file {filename} is missing. Fix: restore it from a backup of the data directory"
    )]
    FileMissing { filename: String, path: PathBuf },

    #[error(
        "{path}: the file {filename} is {actual} bytes, the database records {expected}. Fix: \
         restore it from a backup of the data directory (clients refuse it as it is)"
    )]
    FileSize {
        filename: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "{path}: the file {filename} has sha256 {actual}, the database and its signed page record \
         {expected}. Fix: restore it from a backup of the data directory (clients refuse it as it is)"
    )]
    FileHash {
        filename: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "{path}: the core metadata file (PEP 658) of {filename} is {state}. Fix: restore it from \
         a backup of the data directory"
    )]
    MetadataFile {
        filename: String,
        path: PathBuf,
        state: String,
    },

    #[error(
        "the database records {sha256:?} as the sha256 of {filename}, which is no sha256: the \
         database was modified. Fix: restore it from a backup"
    )]
    BadRow { filename: String, sha256: String },

    #[error("{path}: cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "TUF repository {repository}: {reason}. Fix: restore it from a backup of the repository \
         (`tufa serve` refuses to start on it)"
    )]
    Tuf { repository: PathBuf, reason: String },

    #[error("{0}")]
    Mismatch(#[from] Mismatch),

    #[error(
        "the signed page of {project:?} {shows}, but the database's latest change to it \
         (serial {recorded}) is marked as signed: the repository is older than the database. \
         Fix: restore the repository backup taken with the database"
    )]
    RepositoryBehind {
        project: String,
        shows: String,
        recorded: i64,
    },

    #[error(
        "the journal ends at serial {last}, but the database marks serial {signed} as signed: \
         journal entries were lost. Fix: restore the database from a backup"
    )]
    JournalBehind { last: i64, signed: i64 },

    #[error(
        "{path}: no database row references this file (left by an upload that lost a race for \
         its file name, or by a crash). Fix: `tufa verify --repair` removes it"
    )]
    Orphan { path: PathBuf },

    #[error(
        "{path}: a partial write left {minutes} minutes ago (by an upload or publisher that \
         crashed). Fix: `tufa verify --repair` removes it"
    )]
    StaleStaging { path: PathBuf, minutes: u64 },
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Worth knowing but not wrong: pending changes, uploads in progress, files left for
    /// clients mid-update.
    pub notes: Vec<String>,
    /// Files `--repair` removed.
    pub removed: Vec<PathBuf>,
    pub files_checked: usize,
    pub pages_checked: usize,
    /// Mirrored files not downloaded yet (fetched from upstream on first download).
    pub mirrored_not_fetched: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for path in &self.removed {
            writeln!(f, "removed {}", path.display())?;
        }
        for problem in &self.problems {
            writeln!(f, "problem: {problem}")?;
        }
        if self.mirrored_not_fetched > 0 {
            writeln!(
                f,
                "note: {} mirrored file(s) not downloaded yet: fetched from upstream and verified \
                 on first download",
                self.mirrored_not_fetched
            )?;
        }
        write!(
            f,
            "checked {} distribution file(s) and {} signed page(s): {} problem(s)",
            self.files_checked,
            self.pages_checked,
            self.problems.len()
        )
    }
}

/// A hex sha256 as its 32 bytes: the set of referenced files takes half the memory.
fn sha256_bytes(hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex, &mut bytes).ok()?;
    Some(bytes)
}

fn age(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

/// sha256 and size of a file, streamed; `None` when it does not exist.
fn digest_file(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        context.update(&buffer[..read]);
    }
    Ok(Some((hex::encode(context.finish()), size)))
}

/// Where the files of a data directory are.
struct Layout {
    files: PathBuf,
    tmp: PathBuf,
    tuf: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> Self {
        Layout {
            files: data_dir.join("files"),
            tmp: data_dir.join("tmp"),
            tuf: tuf_dir(data_dir),
        }
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.files
            .join(sha256.get(..2).unwrap_or("??"))
            .join(sha256)
    }
}

/// What a report says of a data directory with no published repository: a mismatch when the
/// database records signed changes, otherwise a note.
fn no_repository(report: &mut Report, database: &Database, repository: &Path, signed: i64) {
    if signed > 0 {
        report.problems.push(
            Mismatch::RepositoryMissing {
                database: PathBuf::from(database.location()),
                repository: repository.to_path_buf(),
                signed,
            }
            .into(),
        );
    } else {
        report
            .notes
            .push("no TUF repository yet: `tufa serve` creates or opens it".into());
    }
}

/// Checks a data directory: every distribution file against the database, the TUF repository
/// against its own signatures and every page against the database, the journal against the
/// signed serial, and what nothing references. Safe beside a running server: it only reads, and
/// `repair` removes only files no row references that are older than [`STALE_AFTER`], checked
/// again under the database's write lock.
pub async fn verify(data_dir: &Path, database: &Database, repair: bool) -> Result<Report> {
    let layout = Layout::new(data_dir);
    let mut report = Report::default();
    let now = SystemTime::now();

    let mut referenced = HashSet::new();
    let mut after = 0;
    loop {
        let batch = database.stored_files(after, FILES_PER_QUERY).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.id;
        referenced.extend(batch.iter().filter_map(|file| sha256_bytes(&file.sha256)));
        report.files_checked += batch.len();
        check_files(&layout, &batch, &mut report);
    }

    check_orphans(&layout, database, &referenced, repair, now, &mut report).await?;
    check_partial(list_dir(&layout.tmp)?, repair, now, &mut report)?;
    check_partial(tuf_temporaries(&layout.tuf)?, repair, now, &mut report)?;

    let signed = check_journal(database, &mut report).await?;

    if !layout.tuf.join(METADATA_DIR).join("1.root.json").exists() {
        no_repository(&mut report, database, &layout.tuf, signed);
        return Ok(report);
    }
    let store = FsStore::beside_publisher(&layout.tuf);
    let Some(published) = verify_repository(&store, &layout.tuf, now, &mut report) else {
        return Ok(report);
    };
    report.pages_checked = published.pages.len();
    compare_pages(data_dir, database, &published, signed, &mut report).await?;
    list_unreachable(&store, &published.reachable, &mut report)?;
    Ok(report)
}

/// The journal against the signed serial; returns the signed serial.
async fn check_journal(database: &Database, report: &mut Report) -> Result<i64> {
    let signed = database.signed_serial().await?;
    let last = database.last_serial().await?;
    if signed > last {
        report
            .problems
            .push(Problem::JournalBehind { last, signed });
    } else if signed < last {
        report.notes.push(format!(
            "{} journal entr(ies) after the signed serial {signed} are pending: the running server \
             signs them (a stopped one at start)",
            database.journal_count_after(signed).await?
        ));
    }
    Ok(signed)
}

/// [`verify`] for an index whose files are in a bucket: every row's object present with its
/// recorded size (from the bucket's listing: reading every object back to hash it would download
/// the whole index), the TUF repository verified from the bucket as a client would, every page
/// against the database, the journal against the signed serial. Read only: orphans in the
/// bucket are not looked for.
pub async fn verify_bucket(
    data_dir: &Path,
    database: &Database,
    client: Arc<tufa_repo::S3Client>,
    location: tufa_repo::S3Url,
) -> Result<Report> {
    let mut report = Report::default();
    let now = SystemTime::now();
    let files = location.join(crate::blobs::FILES_DIR);
    let listing: HashMap<String, u64> = {
        let (client, prefix) = (Arc::clone(&client), format!("{}/", files.key("")));
        tokio::task::spawn_blocking(move || client.list(&prefix))
            .await
            .map_err(|e| Error::Config(format!("the bucket listing failed: {e}")))??
            .into_iter()
            .collect()
    };
    let object = |key: &str| PathBuf::from(format!("s3://{}/{key}", client.bucket()));
    let mut after = 0;
    loop {
        let batch = database.stored_files(after, FILES_PER_QUERY).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.id;
        report.files_checked += batch.len();
        for file in &batch {
            if sha256_bytes(&file.sha256).is_none() {
                report.problems.push(Problem::BadRow {
                    filename: file.filename.clone(),
                    sha256: file.sha256.clone(),
                });
                continue;
            }
            let key = files.key(&format!("{}/{}", &file.sha256[..2], file.sha256));
            match listing.get(&key) {
                None if file.mirrored => {
                    report.mirrored_not_fetched += 1;
                    continue;
                }
                None => report.problems.push(Problem::FileMissing {
                    filename: file.filename.clone(),
                    path: object(&key),
                }),
                Some(&size) if size != file.size => report.problems.push(Problem::FileSize {
                    filename: file.filename.clone(),
                    path: object(&key),
                    expected: file.size,
                    actual: size,
                }),
                Some(_) => {}
            }
            let metadata = format!("{key}.metadata");
            if file.metadata_sha256.is_some() && !listing.contains_key(&metadata) {
                report.problems.push(Problem::MetadataFile {
                    filename: file.filename.clone(),
                    path: object(&metadata),
                    state: "missing".into(),
                });
            }
        }
    }
    let signed = check_journal(database, &mut report).await?;
    let tuf = location.join(TUF_DIR);
    let repository = PathBuf::from(tuf.to_string());
    let store: Arc<dyn Store> = Arc::new(tufa_repo::S3Store::new(client, tuf));
    let (published, report) = tokio::task::block_in_place(|| -> Result<_> {
        if store
            .size(&format!("{METADATA_DIR}/1.root.json"))?
            .is_none()
        {
            no_repository(&mut report, database, &repository, signed);
            return Ok((None, report));
        }
        let published = verify_repository(&store, &repository, now, &mut report);
        if let Some(published) = &published {
            list_unreachable(&store, &published.reachable, &mut report)?;
        }
        Ok((published, report))
    })?;
    let mut report = report;
    if let Some(published) = published {
        report.pages_checked = published.pages.len();
        compare_pages(data_dir, database, &published, signed, &mut report).await?;
    }
    Ok(report)
}

/// Each distribution file against its row: present, of the recorded size and sha256, with its
/// core metadata file.
fn check_files(layout: &Layout, files: &[StoredFile], report: &mut Report) {
    for file in files {
        if sha256_bytes(&file.sha256).is_none() {
            report.problems.push(Problem::BadRow {
                filename: file.filename.clone(),
                sha256: file.sha256.clone(),
            });
            continue;
        }
        let path = layout.file(&file.sha256);
        let metadata_path = path.with_file_name(format!("{}.metadata", file.sha256));
        match digest_file(&path) {
            Err(source) => report.problems.push(Problem::Unreadable { path, source }),
            // A mirrored file is fetched from upstream on its first download.
            Ok(None) if file.mirrored => {
                report.mirrored_not_fetched += 1;
                continue;
            }
            Ok(None) => report.problems.push(Problem::FileMissing {
                filename: file.filename.clone(),
                path,
            }),
            Ok(Some((_, size))) if size != file.size => report.problems.push(Problem::FileSize {
                filename: file.filename.clone(),
                path,
                expected: file.size,
                actual: size,
            }),
            Ok(Some((sha256, _))) if sha256 != file.sha256 => {
                report.problems.push(Problem::FileHash {
                    filename: file.filename.clone(),
                    path,
                    expected: file.sha256.clone(),
                    actual: sha256,
                })
            }
            Ok(Some(_)) => {}
        }
        if let Some(expected) = &file.metadata_sha256 {
            let path = metadata_path;
            let state = match digest_file(&path) {
                Err(source) => {
                    report.problems.push(Problem::Unreadable { path, source });
                    continue;
                }
                Ok(None) if file.mirrored => continue,
                Ok(None) => "missing".to_string(),
                Ok(Some((sha256, _))) if &sha256 != expected => {
                    format!("changed (sha256 {sha256}, recorded {expected})")
                }
                Ok(Some(_)) => continue,
            };
            report.problems.push(Problem::MetadataFile {
                filename: file.filename.clone(),
                path,
                state,
            });
        }
    }
}

/// Distribution files no row references. A file just renamed into place may be an upload about
/// to record its row, so only files older than [`STALE_AFTER`] count.
async fn check_orphans(
    layout: &Layout,
    database: &Database,
    referenced: &HashSet<[u8; 32]>,
    repair: bool,
    now: SystemTime,
    report: &mut Report,
) -> Result<()> {
    for dir in list_dir(&layout.files)? {
        if !dir.is_dir() {
            report.notes.push(format!(
                "{}: not a file this index writes; left alone",
                dir.display()
            ));
            continue;
        }
        for path in list_dir(&dir)? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = name.strip_suffix(ASIDE_SUFFIX).unwrap_or(name);
            let sha256 = name.strip_suffix(".metadata").unwrap_or(name);
            let is_ours = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_ours {
                report.notes.push(format!(
                    "{}: not a file this index writes; left alone",
                    path.display()
                ));
                continue;
            }
            if sha256_bytes(sha256).is_some_and(|sha256| referenced.contains(&sha256)) {
                continue;
            }
            if age(&path, now).is_none_or(|age| age < STALE_AFTER) {
                report.notes.push(format!(
                    "{}: no row references it yet; written in the last {} minutes, so it may be \
                     an upload in progress",
                    path.display(),
                    STALE_AFTER.as_secs() / 60
                ));
                continue;
            }
            if !repair {
                if !database.references(sha256).await? {
                    report.problems.push(Problem::Orphan { path });
                }
                continue;
            }
            remove_orphan(database, &path, sha256, now, report).await?;
        }
    }
    Ok(())
}

/// Removes an unreferenced distribution file while holding the database's write lock, so that
/// no upload records a row for it meanwhile. The file is first moved aside: if an upload renamed
/// its own copy into place since the checks (a fresh file), it is put back.
async fn remove_orphan(
    database: &Database,
    path: &Path,
    sha256: &str,
    now: SystemTime,
    report: &mut Report,
) -> Result<()> {
    let mut lock = database.write_lock().await?;
    if lock.references(sha256).await? {
        return Ok(());
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(ASIDE_SUFFIX);
    let aside = PathBuf::from(aside);
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::error::io("moving aside", path)(e)),
    }
    if age(&aside, now).is_none_or(|age| age < STALE_AFTER) {
        fs::rename(&aside, path).map_err(crate::error::io("putting back", path))?;
        return Ok(());
    }
    fs::remove_file(&aside).map_err(crate::error::io("removing", &aside))?;
    drop(lock);
    report.removed.push(path.to_path_buf());
    Ok(())
}

/// Partial writes: uploads stream into `tmp/` and the publisher writes `*.tufa-tmp` beside each
/// TUF file, and each renames or removes them within the request or batch; one older than
/// [`STALE_AFTER`] was left by a crash.
fn check_partial(
    paths: Vec<PathBuf>,
    repair: bool,
    now: SystemTime,
    report: &mut Report,
) -> Result<()> {
    for path in paths {
        let Some(age) = age(&path, now) else {
            continue;
        };
        if age < STALE_AFTER {
            report.notes.push(format!(
                "{}: a write in progress (written {} s ago)",
                path.display(),
                age.as_secs()
            ));
        } else if repair {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(crate::error::io("removing", &path)(e));
                }
                _ => report.removed.push(path),
            }
        } else {
            report.problems.push(Problem::StaleStaging {
                path,
                minutes: age.as_secs() / 60,
            });
        }
    }
    Ok(())
}

/// The publisher's partial writes anywhere in the repository.
fn tuf_temporaries(tuf: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![tuf.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for path in list_dir(&dir)? {
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(TUF_TEMP_SUFFIX) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::error::io("listing", dir)(e)),
    };
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(crate::error::io("listing", dir))?;
    paths.sort();
    Ok(paths)
}

/// What the current timestamp reaches.
struct Reachable {
    /// Each page's view and project and the serial it shows; `None` when the page did not
    /// verify (already reported) or shows none.
    pages: BTreeMap<(View, String), Option<i64>>,
    reachable: HashSet<String>,
    /// Bin roles that did not verify (already reported): nothing is known of their pages.
    failed_bins: HashSet<RoleName>,
    succinct: tufa_metadata::SuccinctRoles,
}

/// Verifies the repository as a client would from the newest root: the root chain and the
/// offline roles, then timestamp, snapshot, every bin role and every page, with signatures,
/// thresholds, versions, lengths and hashes. Read only.
fn verify_repository(
    store: &impl Store,
    tuf: &Path,
    now: SystemTime,
    report: &mut Report,
) -> Option<Reachable> {
    let mut reasons = Vec::new();
    let reachable = verify_tuf(store, now, &mut reasons, &mut report.notes);
    report
        .problems
        .extend(reasons.into_iter().map(|reason| Problem::Tuf {
            repository: tuf.to_path_buf(),
            reason,
        }));
    reachable
}

fn verify_tuf(
    store: &impl Store,
    now: SystemTime,
    reasons: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<Reachable> {
    let mut problem = |reason: String| reasons.push(reason);
    let offline = match OfflineState::load(store) {
        Ok(offline) => offline,
        Err(error) => {
            problem(error.to_string());
            return None;
        }
    };
    let root = &offline.root.signed;
    let mut reachable = HashSet::new();
    let timestamp_file = layout::metadata_file(&RoleName::timestamp(), 0);
    let read = |file: &str| -> std::result::Result<Vec<u8>, String> {
        match store.read(file) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("{file} is missing")),
            Err(error) => Err(error.to_string()),
        }
    };
    let timestamp = read(&timestamp_file)
        .and_then(|bytes| {
            Metadata::<Timestamp>::from_bytes(&bytes)
                .map_err(|e| format!("{timestamp_file} is invalid: {e}"))
        })
        .and_then(|timestamp| {
            root.verify_delegate("timestamp", &timestamp)
                .map(|()| timestamp)
                .map_err(|e| format!("{timestamp_file} does not verify: {e}"))
        });
    let timestamp = match timestamp {
        Ok(timestamp) => timestamp,
        Err(reason) => {
            problem(reason);
            return None;
        }
    };
    reachable.insert(timestamp_file);
    let snapshot_meta = &timestamp.signed.snapshot_meta;
    let snapshot_file = layout::metadata_file(&RoleName::snapshot(), snapshot_meta.version);
    let snapshot = read(&snapshot_file)
        .and_then(|bytes| {
            let actual = MetaFile::with_content(snapshot_meta.version, &bytes);
            if snapshot_meta.hashes.is_some() && actual.hashes != snapshot_meta.hashes
                || snapshot_meta.length.is_some() && actual.length != snapshot_meta.length
            {
                return Err(format!(
                    "{snapshot_file} does not match the length and hashes timestamp records for it"
                ));
            }
            Metadata::<Snapshot>::from_bytes(&bytes)
                .map_err(|e| format!("{snapshot_file} is invalid: {e}"))
        })
        .and_then(|snapshot| {
            root.verify_delegate("snapshot", &snapshot)
                .map_err(|e| format!("{snapshot_file} does not verify: {e}"))?;
            if snapshot.signed.version != snapshot_meta.version {
                return Err(format!(
                    "{snapshot_file} holds version {}, timestamp names {}",
                    snapshot.signed.version, snapshot_meta.version
                ));
            }
            Ok(snapshot)
        });
    let snapshot = match snapshot {
        Ok(snapshot) => snapshot,
        Err(reason) => {
            problem(reason);
            return None;
        }
    };
    reachable.insert(snapshot_file.clone());
    for role in [RoleName::targets(), RoleName::new(BINS_ROLE).ok()?] {
        match snapshot.signed.role_meta(&role) {
            None => problem(format!("{snapshot_file} does not list {role}")),
            Some(meta) => {
                let file = layout::metadata_file(&role, meta.version);
                if store.read(&file).ok().flatten().is_none() {
                    problem(format!("{file} is missing ({snapshot_file} lists it)"));
                }
                reachable.insert(file);
            }
        }
    }
    for (role, expires) in [
        ("timestamp", timestamp.signed.expires),
        ("snapshot", snapshot.signed.expires),
    ] {
        if expires.is_expired_at(now) {
            notes.push(format!(
                "{role} expired at {expires}: `tufa serve` signs it anew at start"
            ));
        }
    }

    let Some(DelegatedRoles::Succinct(succinct)) =
        offline.bins.signed.delegations.as_ref().map(|d| &d.roles)
    else {
        problem("bins delegates no succinct_roles".into());
        return None;
    };
    let mut pages = BTreeMap::new();
    let mut failed_bins = HashSet::new();
    for name in succinct.role_names() {
        let Some(meta) = snapshot.signed.role_meta(&name) else {
            problem(format!("{snapshot_file} does not list {name}"));
            failed_bins.insert(name);
            continue;
        };
        let file = layout::metadata_file(&name, meta.version);
        reachable.insert(file.clone());
        let bin = read(&file)
            .and_then(|bytes| {
                Metadata::<Targets>::from_bytes(&bytes)
                    .map_err(|e| format!("{file} is invalid: {e}"))
            })
            .and_then(|bin| {
                offline
                    .bins
                    .signed
                    .verify_delegate(&name, &bin)
                    .map_err(|e| format!("{file} does not verify: {e}"))?;
                if bin.signed.version != meta.version {
                    return Err(format!(
                        "{file} holds version {}, {snapshot_file} names {}",
                        bin.signed.version, meta.version
                    ));
                }
                Ok(bin)
            });
        let bin = match bin {
            Ok(bin) => bin,
            Err(reason) => {
                problem(format!("{reason} ({snapshot_file} lists it)"));
                failed_bins.insert(name);
                continue;
            }
        };
        for (target, target_file) in &bin.signed.targets {
            let page = layout::page_of(target.as_str());
            let Some((view, project)) =
                page.filter(|_| succinct.role_for_target(target.as_str()) == name)
            else {
                problem(format!(
                    "{file} lists {target}, which is not delegated to {name}"
                ));
                continue;
            };
            if !tufa_repo::delegates(&offline.targets.signed, view) {
                problem(format!(
                    "{file} lists {target}, but targets does not delegate {} to bins: no client \
                     can verify it",
                    view.pattern()
                ));
            }
            let Some(sha256) = target_file.hashes.get("sha256") else {
                problem(format!("{file} lists {target} without a sha256"));
                continue;
            };
            let stored = layout::target_file(target, sha256);
            reachable.insert(stored.clone());
            match read(&stored) {
                Err(reason) => {
                    problem(format!("{reason} ({file} lists it)"));
                    pages.insert((view, project.to_string()), None);
                }
                Ok(bytes) => {
                    let actual = ring::digest::digest(&ring::digest::SHA256, &bytes);
                    if bytes.len() as u64 != target_file.length
                        || hex::encode(actual) != sha256.as_str()
                    {
                        problem(format!(
                            "{stored} does not match the length and sha256 {file} records for it"
                        ));
                        pages.insert((view, project.to_string()), None);
                    } else {
                        pages.insert((view, project.to_string()), page_serial(&bytes));
                    }
                }
            }
        }
    }
    Some(Reachable {
        pages,
        reachable,
        failed_bins,
        succinct: succinct.clone(),
    })
}

/// Every signed page against the database: its project known, its serial not ahead of the
/// database, and not behind a change the database marks as signed.
async fn compare_pages(
    data_dir: &Path,
    database: &Database,
    published: &Reachable,
    signed: i64,
    report: &mut Report,
) -> Result<()> {
    let pages = &published.pages;
    let known: BTreeMap<String, i64> = database
        .projects()
        .await?
        .into_iter()
        .map(|(name, serial)| (name.to_string(), serial))
        .collect();
    // The publisher set these aside after a failure and retries them: behind on purpose.
    let (_, waiting) = database.unpublished(i64::MAX).await?;
    let waiting: BTreeMap<String, String> =
        waiting.into_iter().map(|w| (w.project, w.error)).collect();
    for (project, error) in &waiting {
        report.notes.push(format!(
            "{project} could not be published and is retried with back-off ({error}); fix the \
             cause and the running server publishes it"
        ));
    }
    for ((_, project), &published) in pages {
        if waiting.contains_key(project) {
            continue;
        }
        match known.get(project) {
            None => report.problems.push(
                Mismatch::UnknownProjects {
                    database: PathBuf::from(database.location()),
                    repository: tuf_dir(data_dir),
                    count: 1,
                    examples: project.clone(),
                }
                .into(),
            ),
            Some(&recorded) => match published {
                Some(published) if published > recorded => report.problems.push(
                    Mismatch::DatabaseBehind {
                        database: PathBuf::from(database.location()),
                        repository: tuf_dir(data_dir),
                        project: project.clone(),
                        published,
                        recorded,
                    }
                    .into(),
                ),
                Some(published) if published < recorded && recorded <= signed => {
                    report.problems.push(Problem::RepositoryBehind {
                        project: project.clone(),
                        shows: format!("shows serial {published}"),
                        recorded,
                    })
                }
                _ => {}
            },
        }
    }
    // The cooldown view's pages are expected only while the view is on (the policy the
    // database records is the one the publisher signs under).
    let views: &[View] = if database.cooldown_policy().await?.is_some() {
        &View::ALL
    } else {
        &[View::Simple]
    };
    for (project, &recorded) in &known {
        for &view in views {
            let bin = published
                .succinct
                .role_for_target(layout::page_target(view, project).as_str());
            if recorded <= signed
                && !waiting.contains_key(project)
                && !pages.contains_key(&(view, project.clone()))
                && !published.failed_bins.contains(&bin)
            {
                let shows = match view {
                    View::Simple => "is missing".to_string(),
                    View::Cooldown => "is missing from the cooldown view".to_string(),
                };
                report.problems.push(Problem::RepositoryBehind {
                    project: project.clone(),
                    shows,
                    recorded,
                });
            }
        }
    }
    Ok(())
}

/// Files the current timestamp does not reach: the publisher keeps them for the grace period
/// (clients mid-update may still fetch them) and then removes them; root versions stay.
fn list_unreachable(
    store: &impl Store,
    reachable: &HashSet<String>,
    report: &mut Report,
) -> Result<()> {
    let mut unreachable = Vec::new();
    for dir in [METADATA_DIR, TARGETS_DIR] {
        for file in store.list(dir)? {
            if !file.ends_with(".root.json") && !reachable.contains(&file) {
                unreachable.push(file);
            }
        }
    }
    unreachable.sort();
    if !unreachable.is_empty() {
        let shown = unreachable.len().min(UNREACHABLE_SHOWN);
        let more = if unreachable.len() > shown {
            ", ..."
        } else {
            ""
        };
        report.notes.push(format!(
            "{} TUF file(s) the current timestamp does not reach, removed by the running server \
             after its grace period: {}{more}",
            unreachable.len(),
            unreachable[..shown].join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Project;
    use crate::name::Version;

    #[test]
    fn the_serial_is_read_from_pages_as_the_index_renders_them() {
        let project = Project {
            id: 1,
            name: ProjectName::new("Demo.Project").unwrap(),
            display_name: "Demo.Project".into(),
            last_serial: 42,
            mirror: None,
        };
        let page = crate::pages::project_json(&project, &[Version::new("1.0").unwrap()], &[]);
        assert_eq!(page_serial(&page), Some(42));
        assert_eq!(page_serial(b"{}"), None);
    }
}
