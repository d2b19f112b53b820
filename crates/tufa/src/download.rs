//! `tufa download`: a project's page from a Tufa index, verified with TUF, printed as one line
//! per file with the file's verified SHA-256 and size.
//!
//! The index signs one target per project, its PEP 691 JSON page at
//! `simple/<normalized name>/index.json`; each file's hash is inside that page, so the verified
//! page vouches for every file it lists.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use tufa_client::{HttpFetcher, Updater, UpdaterConfig, encode_component};

#[derive(Args)]
pub struct DownloadArgs {
    /// Base URL of the Tufa index (metadata under `/tuf/metadata/`, targets under `/tuf/targets/`).
    #[arg(long)]
    index: String,
    /// The index's root metadata, obtained out of band; trusted on first use of the cache.
    #[arg(long)]
    root: PathBuf,
    /// Cache directory for trusted metadata and pages [default: the user cache directory].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The project, by any spelling of its name.
    project: String,
}

/// A project name normalized as PEP 503 says: lowercase, each run of `-`, `_`, `.` one `-`.
/// Only valid names (PEP 508) are accepted, so the name is safe inside a target path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn new(name: &str) -> Result<Self> {
        let bytes = name.as_bytes();
        let valid = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            bail!(
                "{name:?} is not a valid project name: letters, digits, '-', '_' and '.', \
                 starting and ending with a letter or digit"
            );
        }
        let mut normalized = String::with_capacity(name.len());
        for c in name.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !normalized.ends_with('-') {
                    normalized.push('-');
                }
            } else {
                normalized.push(c.to_ascii_lowercase());
            }
        }
        Ok(ProjectName(normalized))
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
struct Page {
    files: Vec<PageFile>,
}

#[derive(Deserialize)]
struct PageFile {
    filename: String,
    hashes: BTreeMap<String, String>,
    size: Option<u64>,
}

fn default_cache(index: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache")?;
    Ok(base.join("tufa").join(encode_component(index)))
}

pub fn run(args: DownloadArgs) -> Result<()> {
    let project = ProjectName::new(&args.project)?;
    let index = args.index.trim_end_matches('/');
    let cache = match args.cache {
        Some(cache) => cache,
        None => default_cache(index)?,
    };
    let metadata_dir = cache.join("metadata");
    if !metadata_dir.join("root.json").exists() {
        let root = std::fs::read(&args.root)
            .with_context(|| format!("reading {}", args.root.display()))?;
        Updater::<HttpFetcher>::initialize(&metadata_dir, &root)?;
    }
    let updater = Updater::new(
        metadata_dir,
        &format!("{index}/tuf/metadata/"),
        HttpFetcher::default(),
        UpdaterConfig::default(),
    );
    let mut refreshed = updater
        .refresh(SystemTime::now())
        .with_context(|| format!("updating TUF metadata from {index}"))?;
    let info = refreshed
        .target_info(&format!("simple/{project}/index.json"))
        .with_context(|| format!("looking up project {project}"))?;
    let page = refreshed
        .download_target(
            &info,
            &format!("{index}/tuf/targets/"),
            &cache.join("targets"),
        )
        .with_context(|| format!("downloading the page of {project}"))?;
    let page: Page = serde_json::from_slice(&page.content)
        .with_context(|| format!("the verified page of {project} is not a PEP 691 JSON page"))?;
    for file in page.files {
        let sha256 = file
            .hashes
            .get("sha256")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .with_context(|| format!("{:?} has no valid sha256 in the page", file.filename))?;
        let size = file
            .size
            .with_context(|| format!("{:?} has no size in the page", file.filename))?;
        if file.filename.chars().any(char::is_control) {
            bail!("file name {:?} holds control characters", file.filename);
        }
        println!("{sha256}  {size}  {}", file.filename);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_as_pep_503_says() {
        for (name, normalized) in [
            ("Requests", "requests"),
            ("zope.interface", "zope-interface"),
            ("Foo__Bar-.baz", "foo-bar-baz"),
            ("a", "a"),
        ] {
            assert_eq!(ProjectName::new(name).unwrap().to_string(), normalized);
        }
        for bad in ["", "-a", "a-", "../x", "a/b", "a b", "ü"] {
            assert!(ProjectName::new(bad).is_err(), "{bad:?}");
        }
    }
}
