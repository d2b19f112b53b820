//! `tufa mirror`: administering the upstream mirror of a data directory.

use anyhow::{Context, Result};
use clap::Subcommand;
use tufa_index::db::Adopted;
use tufa_index::name::ProjectName;

use crate::index_commands::{DataArg, runtime};

#[derive(Subcommand)]
pub enum MirrorCommand {
    /// Mirror projects into a running index that has an upstream: each page signed, each file
    /// fetched, verified and stored by the index. Resumable: a re-run skips finished files.
    Sync(crate::mirror_sync::SyncArgs),
    /// End mirroring of a project so that USER may upload to it: the name becomes local (never
    /// looked up upstream again), the mirrored files stay on its page so pins keep working, and
    /// the change is journaled and signed. A running server signs it within a second.
    Adopt {
        #[command(flatten)]
        data: DataArg,
        /// The mirrored project.
        project: String,
        /// The user who owns the project from now on (created if needed).
        #[arg(long)]
        owner: String,
    },
}

pub fn run(command: MirrorCommand) -> Result<()> {
    match command {
        MirrorCommand::Sync(args) => crate::mirror_sync::sync(args),
        MirrorCommand::Adopt {
            data,
            project,
            owner,
        } => runtime()?.block_on(async move {
            let name = ProjectName::new(&project).context("the project name")?;
            let database = data.database().await?;
            let adopted = database
                .adopt(&name, &owner)
                .await
                .with_context(|| format!("adopting {name}"))?;
            database.close().await;
            match adopted {
                Adopted::Adopted { serial, files } => {
                    eprintln!(
                        "adopted {name}: {owner} owns it and may upload; its {files} mirrored \
                         file(s) stay; no longer looked up upstream (journal serial {serial})"
                    );
                    Ok(())
                }
                Adopted::NotMirrored => anyhow::bail!(
                    "{name} is not mirrored: it has local uploads already, nothing to adopt"
                ),
                Adopted::NoProject => anyhow::bail!(
                    "no project {name} in {}: a name nobody asked for yet needs no adoption \
                     (upload to it, or reserve it with `tufa serve --private`)",
                    data.data.display()
                ),
            }
        }),
    }
}
