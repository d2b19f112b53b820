//! `tufa backup` and `tufa restore`: a consistent copy of the embedded default (the SQLite
//! database, the distribution files, the TUF repository) taken while `tufa serve` runs, and a
//! restore that clients who followed the live index accept.
//!
//! Consistency: the database is copied first, by `VACUUM INTO` (one read transaction), then the
//! files. A file is stored before the transaction that records it commits, so every row of the
//! copy finds its file. Files written meanwhile are copied too and stay unreferenced (`tufa verify
//! --repair` removes them after the restore). The TUF timestamp and the transparency log's
//! checkpoint are read before everything else and written last, and the log's files written
//! after that checkpoint are dropped, so the copied repository is one the index served.
//!
//! Versions: clients that followed the live index trust its latest timestamp, snapshot and bin
//! versions, some published after the backup. A restore therefore deletes the online roles and
//! records a floor above every version the live index can have published; the next `tufa serve`
//! signs them anew above it, from the restored database. The floor is the highest version the
//! backup holds, or the live index's current versions when `--live-index` can reach it, plus,
//! without the live index, one version for every millisecond since the backup: a publishing
//! round writes and syncs several files, so no index publishes more than one timestamp per
//! millisecond.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use tufa_client::{FetchError, Fetcher, HttpFetcher};
use tufa_metadata::{Metadata, Snapshot, Timestamp};
use tufa_repo::tlog::{CHECKPOINT_FILE, LOG_DIR};
use tufa_repo::{FsStore, ONLINE_FLOOR_FILE, OfflineState, Store, record_online_floor};
use tufa_tlog::{Checkpoint, Note, SignedCheckpoint, Tile, Tree};

use tufa_index::signing::TUF_DIR;

use crate::index_commands::runtime;
use crate::locations::{self, Locations};

/// The backup's own record, beside the copied data directory.
const MANIFEST: &str = "tufa-backup.json";
const TIMESTAMP: &str = "tuf/metadata/timestamp.json";
/// The smallest jump of a restore without the live index's versions (see the module docs).
const MIN_JUMP: u64 = 1_000_000;
/// The live index's metadata files and log bundles are small; more is refused.
const LIVE_METADATA_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Args)]
pub struct BackupArgs {
    /// The index's data directory (as given to `tufa serve --data`); the server may run.
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    /// A new directory for the copy.
    out: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A directory `tufa backup` wrote.
    backup: PathBuf,
    /// The data directory to restore into: new or empty. Start `tufa serve --data` on it after.
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    /// The live index (its base URL, e.g. https://pypi.example.org): its current timestamp and
    /// snapshot versions are the floor. Without it, every online version jumps by at least one
    /// per millisecond since the backup.
    #[arg(long)]
    live_index: Option<String>,
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let recorded = Locations::read(&args.data)?;
    if recorded.database.is_some() || recorded.storage.is_some() {
        bail!(
            "{} keeps its database or files elsewhere ({}): `tufa backup` copies the embedded \
             default only; back up PostgreSQL and the bucket with their own tools",
            args.data.display(),
            locations::FILE
        );
    }
    let database = locations::sqlite_file(&args.data);
    if !database.exists() {
        bail!(
            "{} holds no index (no {}): pass the directory `tufa serve --data` uses",
            args.data.display(),
            tufa_index::integrity::DATABASE_FILE
        );
    }
    if args.out.exists() && fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{} is not empty: back up into a new directory",
            args.out.display()
        );
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // Read first, written last: every file they reach was durable before they were written.
    // The log's checkpoint is written before the timestamp it logs, so it reaches that one.
    let timestamp = fs::read(args.data.join(TIMESTAMP)).ok();
    let checkpoint = fs::read(args.data.join(TUF_DIR).join(CHECKPOINT_FILE)).ok();
    let copy = args.out.join(tufa_index::integrity::DATABASE_FILE);
    runtime()?.block_on(async {
        let source = tufa_index::Database::open(&database).await?;
        let copied = source.copy_sqlite_into(&copy).await;
        source.close().await;
        copied
    })?;
    let files = copy_tree(&args.data, &args.out, &args.data)?;
    if let Some(checkpoint) = &checkpoint {
        let copied = FsStore::open(args.out.join(TUF_DIR))?;
        for later in tufa_repo::tlog::written_after(&copied, checkpoint)? {
            copied.remove(&later)?;
        }
        fs::write(args.out.join(TUF_DIR).join(CHECKPOINT_FILE), checkpoint)?;
    }
    let versions = match &timestamp {
        Some(bytes) => {
            fs::write(args.out.join(TIMESTAMP), bytes)?;
            published_versions(bytes, |file| {
                fs::read(args.out.join("tuf/metadata").join(file)).ok()
            })?
        }
        None => 0,
    };
    let manifest = serde_json::json!({
        "taken_at_unix_ms": unix_ms(SystemTime::now()),
        "highest_online_version": versions,
    });
    fs::write(
        args.out.join(MANIFEST),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    println!(
        "backed up {} into {}: the database, {files} files, online versions up to {versions}",
        args.data.display(),
        args.out.display()
    );
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(args.backup.join(MANIFEST)).with_context(|| {
            format!("{} is not a `tufa backup` directory", args.backup.display())
        })?)?;
    let field = |name: &str| {
        manifest[name]
            .as_u64()
            .with_context(|| format!("{MANIFEST} has no {name}"))
    };
    let (taken_at, backed_up) = (field("taken_at_unix_ms")?, field("highest_online_version")?);
    if args.data.exists() && fs::read_dir(&args.data)?.next().is_some() {
        bail!(
            "{} is not empty: restore into a new or empty data directory (move the old one away)",
            args.data.display()
        );
    }
    fs::create_dir_all(&args.data)?;
    copy_tree(&args.backup, &args.data, &args.backup)?;
    fs::remove_file(args.data.join(MANIFEST))?;
    let database = tufa_index::integrity::DATABASE_FILE;
    fs::copy(args.backup.join(database), args.data.join(database))
        .with_context(|| format!("copying {database} from {}", args.backup.display()))?;
    let (floor, how) = match &args.live_index {
        Some(url) => {
            let live = live_versions(url)?;
            (
                backed_up.max(live),
                format!("the live index {url} is at version {live}"),
            )
        }
        None => {
            let elapsed = unix_ms(SystemTime::now()).saturating_sub(taken_at);
            (
                backed_up + elapsed.max(MIN_JUMP),
                format!(
                    "{} ms since the backup, at least {MIN_JUMP}: no --live-index",
                    elapsed
                ),
            )
        }
    };
    // Without a timestamp, the next `tufa serve` signs every online role anew, above the floor,
    // and publishes every page from the restored database.
    match fs::remove_file(args.data.join(TIMESTAMP)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e)?,
        _ => {}
    }
    let store = FsStore::open(args.data.join(TUF_DIR))?;
    let log = match &args.live_index {
        Some(url) => continue_live_log(url, &store)?,
        None => LogRestored::AsBackedUp(backed_up_log_size(&store)?),
    };
    record_online_floor(&store, floor)?;
    // Nothing of the restored database is signed in the new online roles yet.
    let restored = args.data.join(database);
    runtime()?.block_on(async {
        let database = tufa_index::Database::open(&restored).await?;
        let reset = database.reset_signed_serial().await;
        database.close().await;
        reset
    })?;
    println!(
        "restored {} into {}. Online roles are signed anew above version {floor} ({how}; the \
         backup reached {backed_up}; recorded in {}/{ONLINE_FLOOR_FILE}) when `tufa serve --data \
         {}` starts with the same online key; then run `tufa verify --data {}`.",
        args.backup.display(),
        args.data.display(),
        TUF_DIR,
        args.data.display(),
        args.data.display(),
    );
    match log {
        LogRestored::NoLog | LogRestored::AsBackedUp(None) => {}
        LogRestored::Continued { from, to } => println!(
            "The transparency log continues the live index's: {to} entries, {} fetched from it \
             and checked against its signed checkpoint.",
            to - from
        ),
        LogRestored::AsBackedUp(Some(size)) => eprintln!(
            "warning: the transparency log is restored as backed up, with {size} entries. \
             Clients and witnesses that saw the live log grow beyond it refuse the restored one \
             (log rollback, split view). Restore with --live-index while the live index still \
             answers to continue its log; otherwise start a new log: move tuf/log aside and declare a \
             new log key and origin in root (`tufa roles prepare root --log-key NEW.key \
             --log-origin NEW-ORIGIN`); clients follow the log the newest root declares."
        ),
    }
    Ok(())
}

enum LogRestored {
    NoLog,
    /// The restored log's size, if the backup holds a log.
    AsBackedUp(Option<u64>),
    Continued {
        from: u64,
        to: u64,
    },
}

fn backed_up_log_size(store: &FsStore) -> Result<Option<u64>> {
    let Some(bytes) = store.read(CHECKPOINT_FILE)? else {
        return Ok(None);
    };
    let note = Note::parse(&bytes).context("reading the backed-up log checkpoint")?;
    Ok(Some(Checkpoint::parse(&note.text)?.size))
}

/// Extends the restored transparency log to the live index's: the entries it logged after the
/// backup are fetched, the tree is rebuilt from every entry, and its root must be the one the
/// live checkpoint signs with the key root declares (and, at the backup's size, the backup's
/// root: the live log extends the backed-up one). Clients that followed the live log then find
/// the restored one consistent with what they saw.
fn continue_live_log(url: &str, store: &FsStore) -> Result<LogRestored> {
    let root = OfflineState::load(store)?.root;
    let Some(declared) = root.signed.transparency_log()? else {
        return Ok(LogRestored::NoLog);
    };
    let keys = std::slice::from_ref(&declared.key);
    let base = format!("{}/tuf/", url.trim_end_matches('/'));
    let live_bytes = get_bounded(&format!("{base}{CHECKPOINT_FILE}"))?;
    let live = SignedCheckpoint::open(&live_bytes, keys).with_context(|| {
        format!(
            "the live index's log checkpoint does not verify with the log key root declares ({})",
            declared.key
        )
    })?;
    let backed_up = match store.read(CHECKPOINT_FILE)? {
        Some(bytes) => Some(
            SignedCheckpoint::open(&bytes, keys)
                .context("the backed-up log checkpoint does not verify with the log key")?
                .checkpoint,
        ),
        None => None,
    };
    let from = backed_up.as_ref().map_or(0, |c| c.size);
    let to = live.checkpoint.size;
    if to < from {
        bail!(
            "the live index's log has {to} entries, fewer than the backup's {from}: it is not \
             the log this backup was taken from (log rollback); restore without --live-index"
        );
    }
    let mut tree = Tree::new();
    let mut later = Vec::new();
    for index in 0..to.div_ceil(256) {
        let tile = Tile::in_tree(0, index, to).context("a bundle inside the live log")?;
        let backed_up_bundle = Tile::in_tree(0, index, from).filter(|t| !t.is_partial());
        let bundle = match backed_up_bundle {
            Some(tile) => store
                .read(&format!("{LOG_DIR}/{}", tile.entries_path()))?
                .with_context(|| format!("the backup lacks {LOG_DIR}/{}", tile.entries_path()))?,
            None => get_bounded(&format!("{base}{LOG_DIR}/{}", tile.entries_path()))?,
        };
        let mut entries = tufa_tlog::tiles::decode_bundle(&tile, &bundle)
            .with_context(|| format!("reading the live log's {}", tile.entries_path()))?;
        let logged_before = usize::try_from(from.saturating_sub(index * 256))
            .unwrap_or(usize::MAX)
            .min(entries.len());
        later.extend(entries.split_off(logged_before));
        if !entries.is_empty() {
            tree.append(&entries)?;
        }
    }
    if let Some(backed_up) = &backed_up
        && tree.root() != backed_up.root
    {
        bail!(
            "the live index's log does not extend the backed-up one (its first {from} entries \
             have another root): a split view; restore without --live-index"
        );
    }
    if !later.is_empty() {
        let appended = tree.append(&later)?;
        let tiles = appended.tiles.iter().map(|(t, b)| (t.path(), b));
        let bundles = appended.bundles.iter().map(|(t, b)| (t.entries_path(), b));
        let files: Vec<(String, &Vec<u8>)> = tiles
            .chain(bundles)
            .map(|(path, bytes)| (format!("{LOG_DIR}/{path}"), bytes))
            .collect();
        let borrowed: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
            .collect();
        store.write_immutable(&borrowed)?;
    }
    if tree.root() != live.checkpoint.root {
        bail!(
            "the live index's log entries do not have the root its checkpoint signs: restore \
             without --live-index"
        );
    }
    store.write_all(&[(CHECKPOINT_FILE.to_string(), live_bytes)])?;
    Ok(LogRestored::Continued { from, to })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// The highest version of timestamp, snapshot and bin roles that `timestamp` reaches, reading
/// the snapshot it names with `read`. Signatures are not checked: the versions only have to be
/// exceeded.
fn published_versions(timestamp: &[u8], read: impl Fn(&str) -> Option<Vec<u8>>) -> Result<u64> {
    let timestamp = Metadata::<Timestamp>::from_bytes(timestamp).context("reading timestamp")?;
    let snapshot_version = timestamp.signed.snapshot_meta.version;
    let snapshot = read(&format!("{snapshot_version}.snapshot.json"))
        .with_context(|| format!("snapshot version {snapshot_version} is missing"))?;
    let snapshot = Metadata::<Snapshot>::from_bytes(&snapshot).context("reading snapshot")?;
    let bins = snapshot.signed.meta.values().map(|meta| meta.version);
    Ok(bins
        .chain([timestamp.signed.version, snapshot_version])
        .max()
        .unwrap_or(0))
}

/// The highest online version the index at `url` serves now.
fn live_versions(url: &str) -> Result<u64> {
    let base = format!("{}/tuf/metadata", url.trim_end_matches('/'));
    let get = |file: &str| get_bounded(&format!("{base}/{file}"));
    let timestamp = get("timestamp.json")?;
    published_versions(&timestamp, |file| get(file).ok())
}

/// The live index's metadata or log file at `address`, fetched as the TUF client fetches: bounded
/// in size and time, so a live index that stalls or sends endless data fails the restore.
fn get_bounded(address: &str) -> Result<Vec<u8>> {
    HttpFetcher::default()
        .fetch(address, LIVE_METADATA_LIMIT)
        .map_err(|e| match e {
            FetchError::Status(status) => anyhow!("fetching {address}: HTTP status {status}"),
            FetchError::TooLarge => {
                anyhow!("fetching {address}: more than {LIVE_METADATA_LIMIT} bytes (endless data)")
            }
            FetchError::Transport(message) => anyhow!("fetching {address}: {message}"),
        })
}

/// Copies every file under `from` into `to`, except the SQLite database, its WAL and the server
/// lock; files that disappear while copying (retired metadata removed by the server) are
/// skipped. Returns how many were copied.
fn copy_tree(from: &Path, to: &Path, top: &Path) -> Result<u64> {
    let mut copied = 0;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if from == top && skipped_at_top(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
            copied += copy_tree(&path, &target, top)?;
        } else if kind.is_file() {
            match fs::copy(&path, &target) {
                Ok(_) => copied += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("copying {}", path.display()));
                }
            }
        }
    }
    Ok(copied)
}

fn skipped_at_top(name: &str) -> bool {
    let database = tufa_index::integrity::DATABASE_FILE;
    name == tufa_index::SERVER_LOCK_FILE
        || name == database
        || name == format!("{database}-wal")
        || name == format!("{database}-shm")
        || name == format!("{database}-journal")
}
