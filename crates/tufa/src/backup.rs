//! `tufa backup` and `tufa restore`: a consistent copy of the embedded default (the SQLite
//! database, the distribution files, the TUF repository) taken while `tufa serve` runs, and a
//! restore that clients who followed the live index accept.
//!
//! Consistency: the database is copied first, by `VACUUM INTO` (one read transaction), then the
//! files. A file is stored before the transaction that records it commits, so every row of the
//! copy finds its file. Files written meanwhile are copied too and stay unreferenced (`tufa verify
//! --repair` removes them after the restore). The TUF timestamp is read before everything else
//! and written last, so the copied repository is one the index served.
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

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_metadata::{Metadata, Snapshot, Timestamp};
use tufa_repo::{FsStore, ONLINE_FLOOR_FILE, record_online_floor};

use tufa_index::signing::TUF_DIR;

use crate::index_commands::runtime;
use crate::locations::{self, Locations};

/// The backup's own record, beside the copied data directory.
const MANIFEST: &str = "tufa-backup.json";
const TIMESTAMP: &str = "tuf/metadata/timestamp.json";
/// The smallest jump of a restore without the live index's versions (see the module docs).
const MIN_JUMP: u64 = 1_000_000;
/// The live index's metadata is small; more is refused.
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
    // Read first, written last: every file it reaches was durable before it was written.
    let timestamp = fs::read(args.data.join(TIMESTAMP)).ok();
    let copy = args.out.join(tufa_index::integrity::DATABASE_FILE);
    runtime()?.block_on(async {
        let source = tufa_index::Database::open(&database).await?;
        let copied = source.copy_sqlite_into(&copy).await;
        source.close().await;
        copied
    })?;
    let files = copy_tree(&args.data, &args.out, &args.data)?;
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
    record_online_floor(&FsStore::open(args.data.join(TUF_DIR))?, floor)?;
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
    Ok(())
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
    let get = |file: &str| -> Result<Vec<u8>> {
        let address = format!("{base}/{file}");
        let response = ureq::get(&address)
            .call()
            .with_context(|| format!("fetching {address}"))?;
        response
            .into_body()
            .with_config()
            .limit(LIVE_METADATA_LIMIT)
            .read_to_vec()
            .with_context(|| format!("reading {address}"))
    };
    let timestamp = get("timestamp.json")?;
    published_versions(&timestamp, |file| get(file).ok())
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
