//! Distribution files, addressed by their sha256: on local disk, or in a bucket (see
//! [`crate::storage`]).
//!
//! An upload is streamed into `tmp/`, checked, synced, and only then renamed to its final name and
//! its directory synced: a crash never leaves a partial file under a final name. With a bucket,
//! the checked file is PUT to `files/<sha[..2]>/<sha>` instead (an object appears whole or not at
//! all) before its row is committed, so an acknowledged upload is in the bucket. A file renamed
//! into place whose database row was never committed is invisible (files are served only through
//! their row) and is reused if the same content is uploaded again. An upload that gives up its
//! stored file removes it under the database's write lock unless a row records that content, and
//! every upload looks for its stored file again under that lock before committing its row, so
//! that neither a replica nor a process of its own removes a file an upload is about to record.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

use tufa_repo::{S3Client, S3Url};

use crate::error::{Error, Result, io};
use crate::storage::Storage;

/// The distribution files, in the data directory.
pub(crate) const FILES_DIR: &str = "files";
/// Uploads in progress, in the data directory.
pub(crate) const STAGING_DIR: &str = "tmp";

/// Whether the process that named the staging file `name` (`upload-<pid>-<random>`) still
/// runs: the data directory is on one machine, so its pid tells. A pid reused since keeps the
/// file until it is stale; a name without a pid (an older version's) has no writer left.
fn writer_runs(name: &str) -> bool {
    name.strip_prefix("upload-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(pid, _)| pid.parse().ok())
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH))
}

#[derive(Clone, Debug)]
pub struct Blobs {
    files: PathBuf,
    tmp: PathBuf,
    /// The bucket and the prefix of `files/` in it, when the files are kept there.
    bucket: Option<(Arc<S3Client>, S3Url)>,
}

/// A stored file being read.
pub enum Stored {
    /// A file in the data directory, with its length.
    Local { file: File, length: u64 },
    /// An object being downloaded, with its length.
    Bucket(tufa_repo::s3::Download),
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

impl Blobs {
    /// Opens the store under the data directory, removing partial uploads a crash left in `tmp/`:
    /// those of processes that no longer run, never those of another replica serving the same
    /// data directory (it is still writing them), unless they are older than
    /// [`crate::integrity::STALE_AFTER`].
    pub fn open(data_dir: &Path, storage: &Storage) -> Result<Self> {
        let blobs = Blobs {
            files: data_dir.join(FILES_DIR),
            tmp: data_dir.join(STAGING_DIR),
            bucket: storage.files_bucket(),
        };
        for dir in [&blobs.files, &blobs.tmp] {
            fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        for entry in fs::read_dir(&blobs.tmp).map_err(io("listing", &blobs.tmp))? {
            let entry = entry.map_err(io("listing", &blobs.tmp))?;
            let path = entry.path();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_none_or(|age| age >= crate::integrity::STALE_AFTER);
            if !stale && writer_runs(&entry.file_name().to_string_lossy()) {
                continue;
            }
            match fs::remove_file(&path) {
                // Another replica starting at the same moment removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                removed => removed.map_err(io("removing partial upload", &path))?,
            }
        }
        Ok(blobs)
    }

    /// A new, unique path in `tmp/` to stream an upload into.
    pub fn staging_path(&self) -> PathBuf {
        let mut random = [0u8; 16];
        // A failing system RNG leaves zeros; the create_new open that follows then fails rather
        // than mixing two uploads.
        let _ = SystemRandom::new().fill(&mut random);
        self.tmp.join(format!(
            "upload-{}-{}",
            rustix::process::getpid().as_raw_nonzero(),
            hex::encode(random)
        ))
    }

    /// The directory partial files are written in, on the file system of the store.
    pub fn staging_dir(&self) -> &Path {
        &self.tmp
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.files.join(&sha256[..2]).join(sha256)
    }

    pub fn metadata_path(&self, sha256: &str) -> PathBuf {
        self.files
            .join(&sha256[..2])
            .join(format!("{sha256}.metadata"))
    }

    /// The object key of `target` (a path from [`Blobs::path`]) when the files are in a bucket.
    fn object(&self, target: &Path) -> Option<(&S3Client, String)> {
        let (client, location) = self.bucket.as_ref()?;
        let relative = target.strip_prefix(&self.files).ok()?.to_str()?;
        Some((client, location.key(relative)))
    }

    /// Makes a staged file durable under `target`; with a bucket, uploads it and removes the
    /// staged copy.
    pub fn commit(&self, staged: &Path, target: &Path) -> Result<()> {
        if let Some((client, key)) = self.object(target) {
            let stored = client.put_file(&key, staged).map_err(Error::Tuf);
            let _ = fs::remove_file(staged);
            return stored;
        }
        File::open(staged)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing", staged))?;
        let dir = target.parent().unwrap_or(&self.files);
        let created = !dir.exists();
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        if created {
            sync_dir(&self.files)?;
        }
        fs::rename(staged, target).map_err(io("moving into place", target))?;
        sync_dir(dir)
    }

    /// Makes a staged file durable under `target` like [`Blobs::commit`], but keeps the staged
    /// file (its owner removes it): an upload stores it again should an upload of the same
    /// content that gave up remove it before this one's row is committed (see `upload.rs`).
    /// Locally the stored file is a hard link to the staged one, renamed into place.
    pub fn store(&self, staged: &Path, target: &Path) -> Result<()> {
        if let Some((client, key)) = self.object(target) {
            return client.put_file(&key, staged).map_err(Error::Tuf);
        }
        let link = self.staging_path();
        fs::hard_link(staged, &link).map_err(io("linking", &link))?;
        let stored = self.commit(&link, target);
        if stored.is_err() {
            let _ = fs::remove_file(&link);
        }
        stored
    }

    /// Whether a file is stored at `target` (a path from [`Blobs::path`]). Blocks.
    pub fn exists(&self, target: &Path) -> Result<bool> {
        if let Some((client, key)) = self.object(target) {
            return Ok(client.head(&key)?.is_some());
        }
        match fs::symlink_metadata(target) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("looking up", target)(e)),
        }
    }

    /// Writes `bytes` durably at `target`, through `tmp/`.
    pub fn write(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        if let Some((client, key)) = self.object(target) {
            return client.put(&key, bytes).map_err(Error::Tuf);
        }
        let staged = self.staging_path();
        fs::write(&staged, bytes).map_err(io("writing", &staged))?;
        self.commit(&staged, target)
    }
}

impl Blobs {
    /// Whether the files are in a bucket.
    pub fn in_bucket(&self) -> bool {
        self.bucket.is_some()
    }

    /// Opens the stored file at `target` (a path from [`Blobs::path`]); `None` when there is
    /// none. Blocks: call it off the async threads.
    ///
    /// With a bucket, the data directory is looked at first: a verified mirrored download waits
    /// there until [`Blobs::upload_downloaded`] moved it, which removes it only once the object
    /// is in the bucket. Looking in this order, a file stored before the call is always found.
    pub fn open_stored(&self, target: &Path) -> Result<Option<Stored>> {
        match File::open(target) {
            Ok(file) => {
                let length = file.metadata().map_err(io("reading", target))?.len();
                return Ok(Some(Stored::Local { file, length }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("opening", target)(e)),
        }
        match self.object(target) {
            Some((client, key)) => Ok(client.open(&key)?.map(Stored::Bucket)),
            None => Ok(None),
        }
    }

    /// Removes the stored file at `target`; a missing one is not an error. Blocks.
    pub fn remove(&self, target: &Path) -> Result<()> {
        if let Some((client, key)) = self.object(target) {
            return Ok(client.delete(&key)?);
        }
        match fs::remove_file(target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", target)(e)),
            _ => Ok(()),
        }
    }

    /// Moves a file a verified download stored at `target` into the bucket, when the files are
    /// kept there. Blocks.
    pub fn upload_downloaded(&self, target: &Path) -> Result<()> {
        if let Some((client, key)) = self.object(target) {
            client.put_file(&key, target)?;
            let _ = fs::remove_file(target);
        }
        Ok(())
    }
}
