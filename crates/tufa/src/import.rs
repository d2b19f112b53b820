//! `tufa import`: adds an existing directory of wheels and sdists (a pypiserver `packages/`
//! directory, a devpi export, a build output) to an index, with the checks of an upload, and
//! signs the result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tufa_index::{Config, CooldownSetting, DEFAULT_MAX_UPLOAD_SIZE, Index, Uploaded, import_file};

use crate::index_commands::{SigningArgs, log_to_stderr, signing_config_from};

#[derive(Args)]
pub struct ImportArgs {
    /// The index's data directory (initialized if new).
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    #[command(flatten)]
    database: crate::locations::DatabaseArg,
    /// The user who owns the projects the import creates.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    signing: SigningArgs,
    /// The directory to import; searched recursively for wheels and sdists (`.tar.gz`, and the
    /// older `.zip`, `.tar.bz2`, `.tar.xz`, `.tgz`, `.tar` that pip still installs). Eggs and
    /// installers (`.egg`, `.exe`, `.msi`, ...) are refused with the reason.
    directory: PathBuf,
}

fn distributions(dir: &Path, found: &mut Vec<PathBuf>, skipped: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            distributions(&path, found, skipped)?;
        } else if tufa_index::dist::looks_like_distribution(name) {
            found.push(path);
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

fn bar(length: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} {{wide_bar}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    bar
}

pub fn run(args: ImportArgs) -> Result<()> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    distributions(&args.directory, &mut found, &mut skipped)?;
    found.sort();
    let signing = signing_config_from(&args.signing)?;
    log_to_stderr();
    let config = Config {
        data_dir: args.data.clone(),
        database: args.database.resolve(&args.data)?,
        max_upload_size: DEFAULT_MAX_UPLOAD_SIZE,
        public_url: None,
        signing: Some(signing),
        accept_data_mismatch: false,
        storage: crate::locations::Locations::storage(&args.data, None)?,
        mirror: None,
        cooldown: CooldownSetting::Keep,
        sigstore_trust_root: None,
    };
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let index = Index::open(config.clone())
                .await
                .with_context(|| format!("opening the index in {}", args.data.display()))?;
            let identity = index.database.user(&args.user).await?;
            let progress = bar(found.len() as u64, "importing");
            let (mut added, mut unchanged, mut refused) = (0usize, 0usize, Vec::new());
            for path in &found {
                match import_file(&index.database, &index.blobs, &identity, path).await {
                    Ok(Uploaded::New { .. }) => added += 1,
                    Ok(Uploaded::Unchanged) => unchanged += 1,
                    Err(error) => refused.push(format!("{}: {error}", path.display())),
                }
                progress.inc(1);
            }
            progress.finish_and_clear();
            let mut signed = false;
            if let Some(signing) = &index.signing {
                // Renewed while the import signs (from the opening on). A server that died
                // leaves its lease to run out, which is waited for rather than leave the imported
                // files unsigned; a server that renews it signs them.
                let lease = &signing.lease;
                let first = index.database.lease().await?;
                let deadline = std::time::Instant::now() + lease.ttl() * 2;
                while !signing.publishing() && std::time::Instant::now() < deadline {
                    tokio::time::sleep(lease.renew_interval()).await;
                    let now = index.database.lease().await?;
                    let renewed_by_another = now
                        .as_ref()
                        .is_some_and(|row| !row.holder.is_empty() && row.holder != lease.id());
                    if now != first && renewed_by_another && !signing.publishing() {
                        break;
                    }
                }
                if signing.publishing() {
                    let progress = ProgressBar::new_spinner().with_message("signing");
                    while signing.publish_pending(&index).await?.is_some() {
                        progress.tick();
                    }
                    progress.finish_and_clear();
                    signing.release().await?;
                    signed = true;
                } else {
                    eprintln!(
                        "a running tufa serve signs this data directory (it holds the publisher \
                         lease): it will sign the imported files"
                    );
                }
            }
            for path in &skipped {
                eprintln!("skipped {}: not a distribution file", path.display());
            }
            for reason in &refused {
                eprintln!("refused {reason}");
            }
            eprintln!(
                "imported {added} file(s), {unchanged} already present, {} refused, {} skipped{}",
                refused.len(),
                skipped.len(),
                if signed { "; all signed" } else { "" }
            );
            if refused.is_empty() {
                Ok(())
            } else {
                anyhow::bail!(
                    "{} file(s) could not be imported (listed above)",
                    refused.len()
                )
            }
        })
}
