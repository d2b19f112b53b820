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
}

pub fn run(args: VerifyArgs) -> Result<()> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let database = crate::index_commands::open_database(&args.data, &args.database).await?;
            let report = integrity::verify(&args.data, &database, args.repair)
                .await
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
