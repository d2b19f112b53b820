//! `tufa download`: a project's page from a Tufa index, verified with TUF, printed as one line
//! per file with the file's verified SHA-256 and size.
//!
//! The index signs one target per project, its PEP 691 JSON page at
//! `simple/<normalized name>/index.json`; each file's hash is inside that page, so the verified
//! page vouches for every file it lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use tufa_client::{HttpFetcher, Refreshed, Updater, UpdaterConfig, Witnesses, encode_component};
use tufa_index::name::ProjectName;

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
    #[command(flatten)]
    witnesses: crate::log_policy::WitnessArgs,
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

pub(crate) fn default_cache(index: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache")?;
    Ok(base.join("tufa").join(encode_component(index)))
}

/// The index's TUF metadata, refreshed now, trusting `root` on first use of `cache`; when the
/// root declares a transparency log, `witnesses` must have cosigned the timestamp's checkpoint.
/// `project`'s PEP 691 page from `index`, verified with TUF from a refresh under `root`, read
/// as the caller's model of it.
pub(crate) fn verified_page<Page: serde::de::DeserializeOwned>(
    cache: &Path,
    root: &Path,
    index: &str,
    witnesses: tufa_client::Witnesses,
    project: &ProjectName,
) -> Result<Page> {
    let refreshed = refreshed_metadata(cache, root, index, witnesses)?;
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
    serde_json::from_slice(&page.content)
        .with_context(|| format!("the verified page of {project} is not a PEP 691 JSON page"))
}

pub(crate) fn refreshed_metadata(
    cache: &Path,
    root: &Path,
    index: &str,
    witnesses: Witnesses,
) -> Result<Refreshed<HttpFetcher>> {
    let metadata_dir = cache.join("metadata");
    if !metadata_dir.join("root.json").exists() {
        let root = std::fs::read(root).with_context(|| format!("reading {}", root.display()))?;
        Updater::<HttpFetcher>::initialize(&metadata_dir, &root)?;
    }
    let updater = Updater::new(
        metadata_dir,
        &format!("{index}/tuf/metadata/"),
        HttpFetcher::default(),
        UpdaterConfig {
            witnesses,
            ..UpdaterConfig::default()
        },
    );
    updater
        .refresh(SystemTime::now())
        .with_context(|| format!("updating TUF metadata from {index}"))
}

pub fn run(args: DownloadArgs) -> Result<()> {
    let project = ProjectName::new(&args.project)?;
    let index = args.index.trim_end_matches('/');
    let cache = match args.cache {
        Some(cache) => cache,
        None => default_cache(index)?,
    };
    let page: Page = verified_page(
        &cache,
        &args.root,
        index,
        args.witnesses.witnesses()?,
        &project,
    )?;
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
