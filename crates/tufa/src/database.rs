//! `tufa database move`: moves an index's database from its SQLite file to PostgreSQL, so that
//! several servers can share it. The SQLite file stays as it was (a fallback until the operator
//! removes it); the data directory records the new database, which `tufa serve` and every
//! administrative command then use.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::index_commands::runtime;
use crate::locations::{self, Locations};

#[derive(Subcommand)]
pub enum DatabaseCommand {
    /// Copy the index's SQLite database (every table, with its ids, serials and tokens) into an
    /// empty PostgreSQL database and record it in DATA/locations.toml. Stop `tufa serve` first;
    /// start it again with the same --data afterwards.
    Move {
        /// The index's data directory (as given to `tufa serve --data`).
        #[arg(long, env = "TUFA_DATA")]
        data: PathBuf,
        /// The empty PostgreSQL database to move to: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
        #[arg(long)]
        to: String,
    },
}

pub fn run(command: DatabaseCommand) -> Result<()> {
    match command {
        DatabaseCommand::Move { data, to } => move_database(data, to),
    }
}

fn move_database(data: PathBuf, to: String) -> Result<()> {
    let recorded = Locations::read(&data)?;
    if let Some(current) = &recorded.database {
        anyhow::bail!(
            "the index in {} already runs on {} (recorded in {}): there is no SQLite database \
             to move",
            data.display(),
            tufa_index::db::redact(current),
            locations::FILE
        );
    }
    let file = locations::sqlite_file(&data);
    if !file.exists() {
        anyhow::bail!(
            "{} holds no index (no {}): pass the directory `tufa serve --data` uses",
            data.display(),
            tufa_index::integrity::DATABASE_FILE
        );
    }
    // A running server would go on writing to the SQLite file after the copy; holding the lock
    // also keeps one from starting meanwhile.
    let Some(lock) = tufa_index::lock_exclusively(&data)? else {
        anyhow::bail!(
            "a tufa process (a running `tufa serve`?) is using {}: stop it, then move the database",
            data.display()
        );
    };
    let target = tufa_index::db::redact(&to);
    runtime()?.block_on(async {
        let source = tufa_index::Database::open(&file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let (moved_to, moved) = source
            .move_to_postgres(&to)
            .await
            .with_context(|| format!("moving {} to {target}", file.display()))?;
        let (last, signed) = (source.last_serial().await?, source.signed_serial().await?);
        source.close().await;
        moved_to.close().await;
        anyhow::ensure!(
            (moved.last_serial, moved.signed_serial) == (last, signed),
            "the copy in {target} has serials {} recorded and {} signed, not {last} and {signed}: \
             it is not recorded; drop its tables and move again",
            moved.last_serial,
            moved.signed_serial
        );
        Locations {
            database: Some(to.clone()),
            ..recorded
        }
        .write(&data)?;
        for (table, rows) in &moved.tables {
            eprintln!("{table}: {rows} row(s)");
        }
        eprintln!(
            "moved the index in {} to {target} (serials: {last} recorded, {signed} signed) and \
             recorded it in {}; {} is left as it was, unused from now on",
            data.display(),
            data.join(locations::FILE).display(),
            file.display()
        );
        drop(lock);
        Ok(())
    })
}
