//! `tufa verify`: checks a data directory file by file (see `tufa_index::integrity::verify`), and
//! with `--repair` removes what nothing references. Safe beside a running server.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_index::integrity;

use crate::locations::DatabaseArg;

#[derive(Args)]
pub struct VerifyArgs {
    /// The index's data directory (as given to `tufa serve --data`).
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    /// Remove staging files left by crashed uploads and distribution files no database row
    /// references (both only when older than ten minutes, never a file a row references).
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    database: DatabaseArg,
    /// Where the files are, when not where DATA/locations.toml says (`s3://...`).
    #[arg(long, env = "TUFA_STORAGE")]
    storage: Option<String>,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let storage = tufa_index::storage::Storage::open(
        crate::locations::Locations::storage(&args.data, args.storage.clone())?.as_deref(),
    )?;
    if args.repair && !storage.is_local() {
        bail!(
            "--repair removes orphans from a data directory; this index keeps its files in {}, \
             where `tufa verify` only reads",
            storage.describe(&args.data)
        );
    }
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let database = crate::index_commands::open_database(&args.data, &args.database).await?;
            let report = match storage {
                tufa_index::storage::Storage::Local => {
                    integrity::verify(&args.data, &database, args.repair).await
                }
                tufa_index::storage::Storage::S3 { client, location } => {
                    integrity::verify_bucket(&args.data, &database, client, location).await
                }
            }
            .with_context(|| format!("verifying {}", args.data.display()))?;
            database.close().await;
            println!("{report}");
            if report.problems.is_empty() {
                Ok(())
            } else {
                bail!(
                    "{} has {} problem(s), each listed above with its fix",
                    args.data.display(),
                    report.problems.len()
                )
            }
        })
}
