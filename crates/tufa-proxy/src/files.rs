//! Files and PEP 658 metadata files, checked against the verified page while they stream
//! ([`tufa_index::verified`]), and cached by content (`<sha[0:2]>/<sha>`) once they matched.
//! Cached files are checked again as they are served, so a damaged cache costs a download, never
//! trust.

use std::path::PathBuf;

use tufa_index::verified::{Destination, Download, Downloader, Expected, Pace, StartError};

/// The content-addressed cache of verified files.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    downloader: Downloader,
}

impl FileStore {
    pub fn new(dir: PathBuf, pace: Pace) -> Self {
        FileStore {
            dir,
            downloader: Downloader::new(pace, concat!("tufa-proxy/", env!("CARGO_PKG_VERSION"))),
        }
    }

    /// Starts serving `expected` from the cache, or else from `url`.
    pub async fn fetch(&self, expected: Expected, url: String) -> Result<Download, StartError> {
        let sha = expected.sha256.clone();
        let dir = self.dir.join(&sha[..2]);
        let destination = Destination {
            path: dir.join(&sha),
            staging_dir: dir,
            durable: false,
        };
        self.downloader.fetch(expected, url, destination).await
    }
}
