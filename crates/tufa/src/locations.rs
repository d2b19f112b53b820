//! Where an index's storage is, recorded in its data directory (`locations.toml`) by `tufa serve`
//! and `tufa storage move`, so that a restart and every administrative command that takes
//! `--data` find the same storage without being told again.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file, in the data directory.
pub const LOCATIONS_FILE: &str = "locations.toml";

/// What the file records; an absent key is the default (the data directory itself).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Locations {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

impl Locations {
    /// The locations recorded in `data_dir`, or none.
    pub fn read(data_dir: &Path) -> Result<Locations> {
        let path = data_dir.join(LOCATIONS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Locations::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records these locations in `data_dir`, readable by its owner only (a URL may carry
    /// credentials), through a temporary file so that a crash leaves the old or the new one.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(LOCATIONS_FILE);
        let temp = data_dir.join(format!("{LOCATIONS_FILE}.tmp"));
        let text = toml::to_string(self).context("writing the locations")?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))
    }

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
