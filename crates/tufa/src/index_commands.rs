//! `tufa serve`, `tufa token`, `tufa yank` / `unyank`: running and administering the index.
//!
//! Settings come from, highest first: the command line, `TUFA_*` environment variables, a TOML
//! config file (`--config`), then defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use tufa_index::name::{ProjectName, Version};
use tufa_index::{Config, DEFAULT_MAX_UPLOAD_SIZE, Database, Index};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file with any of: data, listen, max_upload_size, public_url.
    #[arg(long, env = "TUFA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database and files); initialized on first run.
    #[arg(long, env = "TUFA_DATA")]
    data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "TUFA_LISTEN")]
    listen: Option<String>,
    /// Largest file an upload may carry, in bytes (default 100 MiB, as PyPI).
    #[arg(long, env = "TUFA_MAX_UPLOAD_SIZE")]
    max_upload_size: Option<u64>,
    /// URL clients reach the index at, used for absolute URLs in the JSON API.
    #[arg(long, env = "TUFA_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<PathBuf>,
    listen: Option<String>,
    max_upload_size: Option<u64>,
    public_url: Option<String>,
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing the config file {}", path.display()))
}

/// The data directory option every administrative command takes.
#[derive(Args)]
pub struct DataArg {
    /// The index's data directory (as given to `tufa serve --data`).
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
}

impl DataArg {
    async fn database(&self) -> Result<Database> {
        if !self.data.join("tufa.db").exists() {
            anyhow::bail!(
                "{} holds no index (no tufa.db): pass the directory `tufa serve --data` uses",
                self.data.display()
            );
        }
        Database::open(&self.data.join("tufa.db"))
            .await
            .with_context(|| format!("opening the index in {}", self.data.display()))
    }
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it alone on stdout (it cannot be shown again). Creates the
    /// user if needed. Upload with username `__token__` and the token as password.
    Create {
        #[command(flatten)]
        data: DataArg,
        /// The user the token acts as; the user owns every project it creates.
        #[arg(long)]
        user: String,
        /// Limit the token to uploads to this one project.
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Args)]
pub struct YankArgs {
    #[command(flatten)]
    data: DataArg,
    /// The project.
    project: String,
    /// The release's version.
    version: String,
    /// Only this file of the release (default: every file, as PyPI yanks releases).
    #[arg(long)]
    file: Option<String>,
    /// Why it is yanked; installers show it (PEP 592).
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Args)]
pub struct UnyankArgs {
    #[command(flatten)]
    data: DataArg,
    project: String,
    version: String,
    #[arg(long)]
    file: Option<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => read_config_file(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = args.data.or(file.data).context(
        "no data directory: pass --data DIR, set TUFA_DATA, or set `data` in the config file",
    )?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let config = Config {
        data_dir,
        max_upload_size: args
            .max_upload_size
            .or(file.max_upload_size)
            .unwrap_or(DEFAULT_MAX_UPLOAD_SIZE),
        public_url: args.public_url.or(file.public_url),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    runtime()?.block_on(async move {
        let index = Index::open(config.clone())
            .await
            .with_context(|| format!("opening the index in {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        eprintln!(
            "tufa: serving {} at http://{address}/ (pip/uv: --index-url http://{address}/simple/, twine: --repository-url http://{address}/legacy/)",
            config.data_dir.display()
        );
        tufa_index::serve(Arc::new(index), listener, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}

pub fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            data,
            user,
            project,
        } => runtime()?.block_on(async move {
            let project = project
                .map(|p| ProjectName::new(&p))
                .transpose()
                .context("--project")?;
            let database = data.database().await?;
            let token = database
                .create_token(&user, project.as_ref())
                .await
                .context("creating the token")?;
            database.close().await;
            println!("{token}");
            Ok(())
        }),
    }
}

async fn set_yanked(
    data: &DataArg,
    project: &str,
    version: &str,
    file: Option<&str>,
    reason: Option<&str>,
) -> Result<u64> {
    let project = ProjectName::new(project).context("the project name")?;
    let version = Version::new(version).context("the version")?;
    let database = data.database().await?;
    let changed = database
        .set_yanked(&project, &version, file, reason)
        .await?;
    database.close().await;
    Ok(changed)
}

pub fn yank(args: YankArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let changed = set_yanked(
            &args.data,
            &args.project,
            &args.version,
            args.file.as_deref(),
            Some(&args.reason),
        )
        .await?;
        eprintln!(
            "yanked {changed} file(s) of {} {}",
            args.project, args.version
        );
        Ok(())
    })
}

pub fn unyank(args: UnyankArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let changed = set_yanked(
            &args.data,
            &args.project,
            &args.version,
            args.file.as_deref(),
            None,
        )
        .await?;
        eprintln!(
            "un-yanked {changed} file(s) of {} {}",
            args.project, args.version
        );
        Ok(())
    })
}
