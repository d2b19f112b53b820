//! How much disk the data directory takes, part by part, for `/status`, `/metrics` and
//! `tufa status`.
//!
//! A server measures by walking the directory in the background, again after
//! [`refresh_interval`], and scrapes read the last result: a scrape never walks a directory of a
//! million files, and the walking stays a small share of the time however large the index grows.
//! What waits for removal is counted live by the publisher instead (see
//! `tufa_repo::Repository::awaiting_removal`), since it changes with every batch.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::blobs;
use crate::error::{Result, io};
use crate::integrity::DATABASE_FILE;
use crate::signing::TUF_DIR;

/// Files and the sum of their lengths (`du` counts whole blocks, more for small files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

/// The data directory by part, as one walk found it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiskUsage {
    /// `tuf/`: metadata, targets (the project pages) and signing requests.
    pub tuf: Tally,
    /// `files/`: the distribution files and their extracted metadata.
    pub distribution_files: Tally,
    /// The database with its WAL and shared-memory files.
    pub database: Tally,
    /// `tmp/`: uploads in progress.
    pub staging: Tally,
    /// Everything in the data directory, the parts above included.
    pub total: Tally,
    /// Seconds since the Unix epoch when the walk ended.
    pub measured_at: u64,
    /// How long the walk took, in milliseconds.
    pub took_ms: u64,
}

impl DiskUsage {
    /// `(part, tally)` for each part, as `/metrics` labels them.
    pub fn parts(&self) -> [(&'static str, Tally); 5] {
        [
            ("tuf", self.tuf),
            ("distribution_files", self.distribution_files),
            ("database", self.database),
            ("staging", self.staging),
            ("total", self.total),
        ]
    }
}

/// The shortest and longest wait between two walks.
const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(3600);

/// How long to wait before the next walk after one that took `took`: a hundred times as long,
/// so walking takes at most 1% of the time, between 10 s (small indexes stay current) and an
/// hour.
pub fn refresh_interval(took: Duration) -> Duration {
    (took * 100).clamp(MIN_REFRESH, MAX_REFRESH)
}

/// Walks `data_dir` and sums every file by part. Files removed during the walk (garbage
/// collection, finished uploads) are skipped; symbolic links are counted, not followed.
pub fn measure(data_dir: &Path) -> Result<DiskUsage> {
    let started = Instant::now();
    let mut usage = DiskUsage {
        tuf: Tally::default(),
        distribution_files: Tally::default(),
        database: Tally::default(),
        staging: Tally::default(),
        total: Tally::default(),
        measured_at: 0,
        took_ms: 0,
    };
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io("listing", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("listing", &dir))?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("reading the size of", &entry.path())(e)),
            };
            if meta.is_dir() {
                pending.push(entry.path());
                continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(data_dir).unwrap_or(&path);
            let first = relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let part = match first.as_str() {
                TUF_DIR => Some(&mut usage.tuf),
                blobs::FILES_DIR => Some(&mut usage.distribution_files),
                blobs::STAGING_DIR => Some(&mut usage.staging),
                name if name.starts_with(DATABASE_FILE) => Some(&mut usage.database),
                _ => None,
            };
            for tally in part.into_iter().chain([&mut usage.total]) {
                tally.files += 1;
                tally.bytes += meta.len();
            }
        }
    }
    usage.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    usage.measured_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_counted_once_in_its_part_and_in_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        for (file, len) in [
            ("tuf/metadata/1.root.json", 10),
            ("tuf/targets/simple/a/x.index.json", 20),
            ("files/ab/abcd", 300),
            ("files/ab/abcd.metadata", 4),
            ("tmp/upload-1", 5),
            ("tufa.db", 4096),
            ("tufa.db-wal", 7),
            ("trusted-root.json", 1),
        ] {
            let path = data.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, vec![0u8; len]).unwrap();
        }
        let usage = measure(data).unwrap();
        assert_eq!(
            usage.tuf,
            Tally {
                files: 2,
                bytes: 30
            }
        );
        let distribution = Tally {
            files: 2,
            bytes: 304,
        };
        assert_eq!(usage.distribution_files, distribution);
        assert_eq!(usage.staging, Tally { files: 1, bytes: 5 });
        let database = Tally {
            files: 2,
            bytes: 4103,
        };
        assert_eq!(usage.database, database);
        assert_eq!(
            usage.total,
            Tally {
                files: 8,
                bytes: 4443
            }
        );
        assert_eq!(refresh_interval(Duration::from_millis(1)), MIN_REFRESH);
        assert_eq!(
            refresh_interval(Duration::from_secs(1)),
            Duration::from_secs(100)
        );
        assert_eq!(refresh_interval(Duration::from_secs(600)), MAX_REFRESH);
    }
}
