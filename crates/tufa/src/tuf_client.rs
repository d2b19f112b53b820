//! `tufa tuf-client`: the client-under-test protocol of the tuf-conformance suite
//! (`CLIENT-CLI.md` in theupdateframework/tuf-conformance). Options come before the action;
//! the exit code is 0 on success and 1 on any failure.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tufa_client::{HttpFetcher, Updater, UpdaterConfig};

#[derive(Args)]
pub struct TufClientArgs {
    /// Directory of the client's trusted metadata (`root.json`, `timestamp.json`, ...).
    #[arg(long)]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata.
    #[arg(long)]
    metadata_url: Option<String>,
    /// Target path to download; repeat to download several, in order.
    #[arg(long = "target-name")]
    target_names: Vec<String>,
    /// Base URL of the repository's targets.
    #[arg(long)]
    target_base_url: Option<String>,
    /// Directory to store verified targets in.
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Trust ROOT_FILE as the initial root. Makes no requests.
    Init {
        #[arg(value_name = "ROOT_FILE")]
        trusted_root: PathBuf,
    },
    /// Update the top-level metadata from the repository.
    Refresh,
    /// Refresh, then download and verify each --target-name into --target-dir.
    Download,
}

fn required<'a, T>(value: &'a Option<T>, flag: &str) -> Result<&'a T> {
    value
        .as_ref()
        .with_context(|| format!("{flag} is required for this action"))
}

pub fn run(args: TufClientArgs) -> Result<()> {
    if let Action::Init { trusted_root } = &args.action {
        let root = std::fs::read(trusted_root)
            .with_context(|| format!("reading {}", trusted_root.display()))?;
        Updater::<HttpFetcher>::initialize(&args.metadata_dir, &root)?;
        return Ok(());
    }
    let metadata_url = required(&args.metadata_url, "--metadata-url")?;
    let updater = Updater::new(
        &args.metadata_dir,
        metadata_url,
        HttpFetcher::default(),
        UpdaterConfig::default(),
    );
    let refreshed = updater.refresh(SystemTime::now())?;
    if let Action::Download = args.action {
        let base_url = required(&args.target_base_url, "--target-base-url")?;
        let target_dir = required(&args.target_dir, "--target-dir")?;
        if args.target_names.is_empty() {
            bail!("--target-name is required for download");
        }
        for name in &args.target_names {
            let info = refreshed.target_info(name)?;
            refreshed
                .download_target(&info, base_url, target_dir)
                .with_context(|| format!("downloading {name}"))?;
        }
    }
    Ok(())
}
