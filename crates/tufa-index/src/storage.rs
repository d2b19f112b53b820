//! Where the index keeps what it publishes: the TUF repository (`tuf/metadata`, `tuf/targets`)
//! and the distribution files (`files/<sha[..2]>/<sha>` and their `.metadata`). By default the
//! data directory; with `--storage s3://bucket/prefix` a bucket, with the same layout under the
//! prefix. The database, uploads in progress (`tmp/`), locks and development keys stay in the
//! data directory either way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tufa_repo::{FsStore, S3Client, S3Store, S3Url, Store};

use crate::error::{Error, Result};
use crate::signing::TUF_DIR;

/// The distribution files' directory, in the data directory and under a bucket's prefix.
pub const FILES_DIR: &str = crate::blobs::FILES_DIR;

/// The storage an index runs on.
#[derive(Clone, Debug, Default)]
pub enum Storage {
    /// The data directory.
    #[default]
    Local,
    /// A bucket.
    S3 {
        client: Arc<S3Client>,
        location: S3Url,
    },
}

impl Storage {
    /// The storage `url` names (`None`: the data directory); endpoint, region and credentials
    /// come from the environment and the AWS files (see [`tufa_repo::S3Settings::from_env`]).
    pub fn open(url: Option<&str>) -> Result<Storage> {
        let Some(url) = url.filter(|url| !url.is_empty()) else {
            return Ok(Storage::Local);
        };
        let location = S3Url::parse(url).ok_or_else(|| {
            Error::Config(format!(
                "storage {url:?} is not s3://BUCKET[/PREFIX] (leave it unset for the data \
                 directory)"
            ))
        })?;
        let client = S3Client::from_env(&location)?;
        Ok(Storage::S3 {
            client: Arc::new(client),
            location,
        })
    }

    /// The TUF repository's store, for the publisher: the first local one this process opens
    /// starts removing what a crash left half-written, beside publishing (the thread logs what
    /// it did). Only the first: such files are from before this process (a write of its own
    /// that fails removes its temporary files), and a lease lost and taken again reopens the
    /// store, which would start another walk of millions of files each time.
    pub fn tuf_store(&self, data_dir: &Path) -> Result<Arc<dyn Store>> {
        static OPENED: std::sync::Mutex<BTreeSet<PathBuf>> = std::sync::Mutex::new(BTreeSet::new());
        Ok(match self {
            Storage::Local => {
                let root = data_dir.join(TUF_DIR);
                let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
                if opened.contains(&root) {
                    Arc::new(FsStore::beside_publisher(root))
                } else {
                    let (store, _removing) =
                        FsStore::open_removing_temporaries_beside(root.clone())?;
                    opened.insert(root);
                    Arc::new(store)
                }
            }
            Storage::S3 { client, location } => {
                Arc::new(S3Store::new(Arc::clone(client), location.join(TUF_DIR)))
            }
        })
    }

    /// The TUF repository's store for a command run beside a running server: it changes nothing
    /// on opening.
    pub fn tuf_store_beside_publisher(&self, data_dir: &Path) -> Arc<dyn Store> {
        match self {
            Storage::Local => Arc::new(FsStore::beside_publisher(data_dir.join(TUF_DIR))),
            Storage::S3 { client, location } => {
                Arc::new(S3Store::new(Arc::clone(client), location.join(TUF_DIR)))
            }
        }
    }

    /// The bucket and the key prefix of the distribution files, when they are in a bucket.
    pub fn files_bucket(&self) -> Option<(Arc<S3Client>, S3Url)> {
        match self {
            Storage::Local => None,
            Storage::S3 { client, location } => {
                Some((Arc::clone(client), location.join(FILES_DIR)))
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Storage::Local)
    }

    /// What a log line or `tufa status` says of it.
    pub fn describe(&self, data_dir: &Path) -> String {
        match self {
            Storage::Local => data_dir.display().to_string(),
            Storage::S3 { location, .. } => location.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime};

    /// A temporary file as a crash an hour ago left it.
    fn leftover(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"partial").unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    #[test]
    fn only_the_first_publisher_store_of_a_process_walks_for_what_a_crash_left() {
        let data = tempfile::tempdir().unwrap();
        let first = data
            .path()
            .join(TUF_DIR)
            .join("metadata/2.snapshot.json.tufa-tmp");
        leftover(&first);
        Storage::Local.tuf_store(data.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while first.exists() {
            assert!(
                Instant::now() < deadline,
                "{} is still there",
                first.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // The store opened again (a lease lost and taken again) starts no walk of its own.
        let second = data
            .path()
            .join(TUF_DIR)
            .join("metadata/3.snapshot.json.tufa-tmp");
        leftover(&second);
        let store = Storage::Local.tuf_store(data.path()).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(second.exists());
        assert_eq!(store.list("metadata").unwrap(), Vec::<String>::new());
    }
}
