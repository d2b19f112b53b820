//! Where the index keeps what it publishes: the TUF repository (`tuf/metadata`, `tuf/targets`)
//! and the distribution files (`files/<sha[..2]>/<sha>` and their `.metadata`). By default the
//! data directory; with `--storage s3://bucket/prefix` a bucket, with the same layout under the
//! prefix. The database, uploads in progress (`tmp/`), locks and development keys stay in the
//! data directory either way.

use std::path::Path;
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

    /// The TUF repository's store, for the publisher: opening a local one starts removing what
    /// a crash left half-written, beside publishing (the thread logs what it did).
    pub fn tuf_store(&self, data_dir: &Path) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Storage::Local => {
                let (store, _removing) =
                    FsStore::open_removing_temporaries_beside(data_dir.join(TUF_DIR))?;
                Arc::new(store)
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
