//! `tufa storage move`: copies a data directory's published files into a bucket and records the
//! bucket as the index's storage.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tufa_index::signing::TUF_DIR;
use tufa_index::storage::{FILES_DIR, Storage};
use tufa_repo::{S3Client, S3Url};

use crate::locations::Locations;

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Copy the distribution files and the TUF repository from the data directory into a
    /// bucket (timestamp.json last), check every object's size, and record the bucket as the
    /// storage in DATA/locations.toml. The local copy is left as it is. Run it with the server
    /// stopped.
    Move(MoveArgs),
}

#[derive(Args)]
pub struct MoveArgs {
    /// The index's data directory.
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    /// The bucket: `s3://BUCKET[/PREFIX]` (endpoint, region and credentials from the AWS
    /// variables and files).
    #[arg(long)]
    to: String,
}

pub fn run(command: StorageCommand) -> Result<()> {
    match command {
        StorageCommand::Move(args) => move_to(&args.data, &args.to),
    }
}

/// Objects uploaded at once.
const THREADS: usize = 16;
/// The file `FsStore` writes before renaming into place: never a published file.
const TEMP_SUFFIX: &str = ".tufa-tmp";

fn move_to(data: &Path, to: &str) -> Result<()> {
    // A repository installed from a ceremony before the first start has no database yet.
    if !data.join("tufa.db").exists() && !data.join(TUF_DIR).exists() {
        bail!(
            "{} holds no index (no tufa.db, no {TUF_DIR}/): pass the directory `tufa serve \
             --data` uses",
            data.display()
        );
    }
    // A running server would go on writing locally; holding the lock keeps one from starting.
    let Some(lock) = tufa_index::lock_exclusively(data)? else {
        bail!(
            "a `tufa serve` is running on {}: stop it first",
            data.display()
        );
    };
    if let Some(current) = Locations::read(data)?.storage {
        bail!(
            "{} already keeps its files in {current}: `tufa storage move` copies from the data \
             directory only",
            data.display()
        );
    }
    let Storage::S3 { client, location } =
        Storage::open(Some(to)).with_context(|| format!("opening {to}"))?
    else {
        bail!("--to must be s3://BUCKET[/PREFIX]");
    };
    let files = walk(&data.join(FILES_DIR), FILES_DIR)?;
    let tuf = walk(&data.join(TUF_DIR), TUF_DIR)?;
    let metadata_dir = format!("{TUF_DIR}/metadata/");
    let timestamp = format!("{TUF_DIR}/metadata/timestamp.json");
    let (metadata, targets): (Vec<_>, Vec<_>) = tuf
        .into_iter()
        .partition(|(key, _)| key.starts_with(&metadata_dir));
    let (timestamp, metadata): (Vec<_>, Vec<_>) =
        metadata.into_iter().partition(|(key, _)| *key == timestamp);
    // Whatever a metadata file refers to is in the bucket before it; timestamp.json, which
    // clients read first, is the very last object.
    let phases = [
        ("distribution files", files),
        ("TUF targets", targets),
        ("TUF metadata", metadata),
        ("the timestamp", timestamp),
    ];
    let mut count = 0;
    let mut bytes = 0;
    for (what, phase) in &phases {
        eprintln!("tufa: copying {} {what} to {location}", phase.len());
        upload(&client, &location, phase)?;
        count += phase.len();
        bytes += phase.iter().map(|(_, (_, size))| size).sum::<u64>();
    }
    eprintln!("tufa: checking the sizes of {count} objects");
    let stored: std::collections::HashMap<String, u64> = client
        .list(&location.key(""))
        .context("listing the bucket")?
        .into_iter()
        .collect();
    for (_, phase) in &phases {
        for (key, (path, size)) in phase {
            let object = location.key(key);
            match stored.get(&object) {
                Some(stored) if stored == size => {}
                Some(stored) => bail!(
                    "s3://{}/{object} is {stored} bytes, {} is {size}: the copy is incomplete; \
                     nothing was recorded, run the move again",
                    client.bucket(),
                    path.display()
                ),
                None => bail!(
                    "s3://{}/{object} is missing after the copy; nothing was recorded, run the \
                     move again",
                    client.bucket()
                ),
            }
        }
    }
    Locations::record_storage(data, Some(to))?;
    println!(
        "moved {count} files ({bytes} bytes) to {to} and recorded it in {}: `tufa serve --data \
         {}` now runs on the bucket. {}/{FILES_DIR} and {}/{TUF_DIR} are left as they were",
        data.join(crate::locations::FILE).display(),
        data.display(),
        data.display(),
        data.display()
    );
    drop(lock);
    Ok(())
}

/// Every file under `root` as (key relative to the storage, (path, size)), sorted.
fn walk(root: &Path, prefix: &str) -> Result<Vec<(String, (PathBuf, u64))>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
            if relative.ends_with(TEMP_SUFFIX) {
                continue;
            }
            found.push((format!("{prefix}/{relative}"), (path.clone(), meta.len())));
        }
    }
    found.sort();
    Ok(found)
}

/// Uploads every file on [`THREADS`] threads; stops at the first failure.
fn upload(client: &S3Client, location: &S3Url, files: &[(String, (PathBuf, u64))]) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..THREADS.min(files.len()) {
            scope.spawn(|| {
                while failure.lock().map(|f| f.is_none()).unwrap_or(false) {
                    let Some((key, (path, _))) = files.get(next.fetch_add(1, Ordering::Relaxed))
                    else {
                        break;
                    };
                    if let Err(error) = client.put_file(&location.key(key), path)
                        && let Ok(mut slot) = failure.lock()
                    {
                        slot.get_or_insert(error);
                    }
                }
            });
        }
    });
    match failure.into_inner().ok().flatten() {
        Some(error) => {
            Err(error).context("copying to the bucket; nothing was recorded, run the move again")
        }
        None => Ok(()),
    }
}
