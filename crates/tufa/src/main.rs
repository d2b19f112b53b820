//! `tufa`: the one binary operators and users run. Each subcommand lives in its own module; this
//! file only parses the command line and reports errors with their context.

mod backup;
mod ceremony;
mod cooldown;
mod database;
mod download;
mod import;
mod index_commands;
mod keys;
mod locations;
mod log_policy;
mod mirror;
mod mirror_sync;
mod monitor;
mod provenance;
mod proxy;
mod roles;
mod status;
mod storage;
mod transparency;
mod tuf_client;
mod verify;
mod witness;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tufa",
    version,
    about = "A Python package index signed with TUF (PEP 458)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the index: simple and JSON APIs, uploads, file downloads.
    Serve(Box<index_commands::ServeArgs>),
    /// Add a directory of existing wheels and sdists (e.g. a pypiserver packages directory) and
    /// sign them.
    Import(import::ImportArgs),
    /// Manage API tokens for uploads.
    #[command(subcommand)]
    Token(index_commands::TokenCommand),
    /// Yank a release (or one file): installers skip it unless it is pinned exactly (PEP 592).
    Yank(index_commands::YankArgs),
    /// Undo a yank.
    Unyank(index_commands::ReleaseArgs),
    /// Decide on releases in the signed cooldown view (`tufa serve --cooldown`): allow one
    /// early, deny one, clear a decision, list them.
    #[command(subcommand)]
    Cooldown(cooldown::CooldownCommand),
    /// Build and sign the offline roles of a new repository (root, targets, bins) from the key
    /// holders' public keys.
    Ceremony(ceremony::CeremonyArgs),
    /// New versions of the offline roles: prepare, then submit signed copies.
    #[command(subcommand)]
    Roles(roles::RolesCommand),
    /// Sign a signing request (from `tufa roles prepare`, or a role file `tufa ceremony` wrote
    /// without `--sign`) with your key, in place.
    Sign(roles::SignArgs),
    /// Show every TUF role with version, expiry, keys and threshold; warn of expiring offline roles.
    Status(status::StatusArgs),
    /// Generate and inspect signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Fetch a project's page from a Tufa index, verify it with TUF, and print its files.
    Download(download::DownloadArgs),
    /// Serve pip and uv a simple index in front of a Tufa index, verifying every page and file
    /// with TUF.
    Proxy(Box<proxy::ProxyArgs>),
    /// List a project's files with the publishers their PEP 740 attestations prove, verified
    /// (from an index through TUF and Sigstore, or as verified at upload from a data directory).
    Provenance(provenance::ProvenanceArgs),
    /// Administer the upstream mirror (`tufa serve --upstream`), and fill it ahead of installs.
    #[command(subcommand)]
    Mirror(mirror::MirrorCommand),
    /// Move the index's database: `tufa database move --data DIR --to postgres://...`.
    #[command(subcommand)]
    Database(database::DatabaseCommand),
    /// Check a data directory: every stored file against the database, the TUF repository
    /// against its signatures and the database, the journal against the signed serial; list
    /// orphans (`--repair` removes them). Safe beside a running server.
    Verify(verify::VerifyArgs),
    /// Copy a data directory (SQLite database, files, TUF repository) while `tufa serve` runs.
    Backup(backup::BackupArgs),
    /// Bring a `tufa backup` back into a new data directory, online roles to be re-signed above
    /// every version the live index published.
    Restore(backup::RestoreArgs),
    /// Move the TUF repository and the distribution files to other storage (a bucket).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Replay an index's transparency log against its TUF metadata history: list every version
    /// of every project page it published, and fail naming a fork or a gap.
    Monitor(monitor::MonitorArgs),
    /// The tuf-conformance client protocol: init, refresh and download against any TUF
    /// repository.
    TufClient(tuf_client::TufClientArgs),
    /// Run an independent transparency-log witness (C2SP tlog-witness), or make its key.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
}

/// jemalloc instead of glibc's malloc: glibc kept freed memory in up to 16 arenas (one per
/// thread that allocated, on 2 cores), so a publisher of 700,000 projects held 381 MiB for
/// about 160 MiB of live data. Built with one arena (`.cargo/config.toml` says why).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Usage errors exit with 1 like every other failure (the tuf-conformance protocol knows
    // only 0 and 1); help and version still exit with 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Serve(args) => index_commands::serve(*args),
        Command::Mirror(command) => mirror::run(command),
        Command::Token(command) => index_commands::token(command),
        Command::Import(args) => import::run(args),
        Command::Yank(args) => index_commands::yank(args),
        Command::Unyank(args) => index_commands::unyank(args),
        Command::Cooldown(command) => cooldown::run(command),
        Command::Ceremony(args) => ceremony::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Roles(command) => roles::run(command),
        Command::Status(args) => status::run(args),
        Command::Sign(args) => roles::sign(args),
        Command::Download(args) => download::run(args),
        Command::Proxy(args) => proxy::run(*args),
        Command::Provenance(args) => provenance::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Database(command) => database::run(command),
        Command::Storage(command) => storage::run(command),
        Command::Monitor(args) => monitor::run(args),
        Command::TufClient(args) => tuf_client::run(args),
        Command::Witness(command) => witness::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors often repeat their cause in their own
/// message; a cause already said is not said twice.
fn describe(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
