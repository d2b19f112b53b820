//! The local cache: trusted metadata as `<role>.json` holding exactly the bytes that were
//! verified, and downloaded artifacts.
//!
//! Every cached file is verified again before it is used, so a damaged or planted file costs a
//! download, never trust. Writes go to a temporary file in the same directory and are renamed
//! into place, so a reader never sees half a file.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, io};
use crate::names::metadata_cache_file;

/// Writes `bytes` to `path` atomically. With `durable`, the data reaches the disk before the
/// rename, so that a crash leaves the old file or the new one, never an empty one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tufa-")
        .tempfile_in(dir)
        .map_err(io("creating a temporary file in", dir))?;
    temp.write_all(bytes).map_err(io("writing", temp.path()))?;
    if durable {
        temp.as_file()
            .sync_all()
            .map_err(io("syncing", temp.path()))?;
    }
    temp.persist(path)
        .map_err(|e| io("renaming into place", path)(e.error))?;
    Ok(())
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// The metadata directory: one unversioned, percent-encoded `<role>.json` per trusted role
/// (shortened when too long for a file name).
#[derive(Debug, Clone)]
pub(crate) struct MetadataDir {
    dir: PathBuf,
}

impl MetadataDir {
    pub(crate) fn new(dir: PathBuf) -> Self {
        MetadataDir { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, role: &str) -> PathBuf {
        self.dir.join(metadata_cache_file(role))
    }

    pub(crate) fn read(&self, role: &str) -> Result<Option<Vec<u8>>> {
        read_optional(&self.file(role))
    }

    /// Root is synced to disk: it is the one file the client cannot recover by downloading
    /// again, since every other file is verified with it.
    pub(crate) fn write(&self, role: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.file(role), bytes, role == "root")
    }

    /// Removes the directory and everything in it.
    pub(crate) fn remove_all(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", &self.dir)(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn remove(&self, role: &str) -> Result<()> {
        let path = self.file(role);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", &path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MetadataDir::new(dir.path().join("meta"));
        assert_eq!(cache.read("a/b?").unwrap(), None);
        cache.write("a/b?", b"one").unwrap();
        cache.write("a/b?", b"two").unwrap();
        assert_eq!(cache.read("a/b?").unwrap().unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a%2Fb%3F.json"]);
        cache.remove("a/b?").unwrap();
        cache.remove("a/b?").unwrap();
        assert_eq!(cache.read("a/b?").unwrap(), None);
    }
}
