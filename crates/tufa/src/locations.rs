//! Where an index keeps what is not in its data directory: `DATA/locations.toml` records the
//! database (`database`, a `postgres://` URL) and the storage (`storage`) that `tufa serve` runs
//! on, so that every administrative command given `--data DIR` finds them without being told
//! again. Absent keys mean the defaults: the SQLite file and the files in the data directory.
//! The file may hold a password (in the database URL), so only its owner may read it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "locations.toml";

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Locations {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

impl Locations {
    /// What `data_dir` records; nothing recorded when it has no file.
    pub fn read(data_dir: &Path) -> Result<Locations> {
        let path = data_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Locations::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Records these locations in `data_dir` (readable by its owner only), replacing the file
    /// atomically; with nothing to record, removes it.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(FILE);
        if *self == Locations::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let mut text = String::from(
            "# Written by `tufa serve` and `tufa database move`: where this index's database and\n\
             # storage are. Administrative commands given --data use them.\n",
        );
        text.push_str(&toml_text(self)?);
        let temporary = data_dir.join(format!("{FILE}.tmp"));
        let mut file = open_private(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

impl Locations {
    /// The storage to use: `explicit` (a flag or variable), else the recorded one.
    pub fn storage(data_dir: &Path, explicit: Option<String>) -> Result<Option<String>> {
        match explicit.filter(|s| !s.is_empty()) {
            Some(storage) => Ok(Some(storage)),
            None => Ok(Locations::read(data_dir)?.storage),
        }
    }

    /// Records `storage` as the one `data_dir` runs on, keeping the other keys.
    pub fn record_storage(data_dir: &Path, storage: Option<&str>) -> Result<()> {
        let mut locations = Locations::read(data_dir)?;
        if locations.storage.as_deref() == storage {
            return Ok(());
        }
        locations.storage = storage.map(str::to_string);
        locations.write(data_dir)
    }
}

fn toml_text(locations: &Locations) -> Result<String> {
    let mut text = String::new();
    for (key, value) in [
        ("database", &locations.database),
        ("storage", &locations.storage),
    ] {
        if let Some(value) = value {
            // A TOML basic string is a JSON string for everything a URL holds.
            text.push_str(&format!("{key} = {}\n", serde_json::to_string(value)?));
        }
    }
    Ok(text)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// The database option of the commands that open an index's database.
#[derive(Args, Clone, Debug, Default)]
pub struct DatabaseArg {
    /// The PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE), or "" for the
    /// SQLite file DATA/tufa.db [default: the one `tufa serve` recorded in DATA/locations.toml,
    /// else the SQLite file].
    #[arg(long, env = "TUFA_DATABASE")]
    pub database: Option<String>,
}

impl DatabaseArg {
    /// The database to open for `data_dir`: this option, else the recorded one; `None` for the
    /// SQLite file.
    pub fn resolve(&self, data_dir: &Path) -> Result<Option<String>> {
        match &self.database {
            Some(url) if url.is_empty() => Ok(None),
            Some(url) => Ok(Some(url.clone())),
            None => Ok(Locations::read(data_dir)?.database),
        }
    }
}

/// `data_dir`'s database file, for the messages of commands that need an index there.
pub fn sqlite_file(data_dir: &Path) -> PathBuf {
    data_dir.join(tufa_index::integrity::DATABASE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_privately_and_nothing_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Locations::read(dir.path()).unwrap(), Locations::default());
        let locations = Locations {
            database: Some("postgres://tufa:p\"w@db/tufa".into()),
            storage: Some("s3://bucket/prefix".into()),
        };
        locations.write(dir.path()).unwrap();
        assert_eq!(Locations::read(dir.path()).unwrap(), locations);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Locations::default().write(dir.path()).unwrap();
        assert!(!dir.path().join(FILE).exists());
    }
}
