//! `tufa cooldown`: the operator's decisions on the signed cooldown view. They go into the
//! database with a journal entry, so a running `tufa serve` signs them within about a second
//! (its publisher polls the journal), and each is shown with its reason on the project's page.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tufa_index::cooldown::{Decision, format_duration};
use tufa_index::format_micros;
use tufa_index::name::{ProjectName, Version};

use crate::index_commands::DataArg;

#[derive(Subcommand)]
pub enum CooldownCommand {
    /// Admit a release to the cooldown view before its files are old enough (the security fix
    /// that cannot wait).
    Allow(DecisionArgs),
    /// Hold a release back from the cooldown view whatever its age (a release found to be
    /// malicious or broken), also in exempt projects.
    Deny(DecisionArgs),
    /// Remove the decision on a release: it follows the cooldown period again.
    Clear(ReleaseArg),
    /// Show the cooldown policy the index last started with, and every decision.
    List {
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Args)]
pub struct ReleaseArg {
    #[command(flatten)]
    data: DataArg,
    /// The project.
    project: String,
    /// The release's version.
    version: String,
}

#[derive(Args)]
pub struct DecisionArgs {
    #[command(flatten)]
    release: ReleaseArg,
    /// Why: shown on the project's cooldown page to everyone who installs from it.
    #[arg(long)]
    reason: String,
    /// Who decides, for `tufa cooldown list` [default: the user running the command].
    #[arg(long)]
    by: Option<String>,
}

impl ReleaseArg {
    fn parse(&self) -> Result<(ProjectName, Version)> {
        let project = ProjectName::new(&self.project).context("the project name")?;
        let version = Version::new(&self.version).context("the version")?;
        Ok((project, version))
    }
}

fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(command: CooldownCommand) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            CooldownCommand::Allow(args) => decide(args, Decision::Allow).await,
            CooldownCommand::Deny(args) => decide(args, Decision::Deny).await,
            CooldownCommand::Clear(release) => {
                let (project, version) = release.parse()?;
                let database = release.data.database().await?;
                let cleared = database.remove_cooldown_override(&project, &version).await;
                database.close().await;
                cleared?;
                eprintln!(
                    "cleared the cooldown decision on {project} {version}; a running tufa serve \
                     signs the page within seconds"
                );
                Ok(())
            }
            CooldownCommand::List { data } => {
                let database = data.database().await?;
                let policy = database.cooldown_policy().await;
                let overrides = database.cooldown_overrides().await;
                database.close().await;
                match policy? {
                    None => println!("cooldown view: off (tufa serve --cooldown DURATION)"),
                    Some(policy) if policy.exempt.is_empty() => {
                        println!("cooldown view: {}", format_duration(policy.period))
                    }
                    Some(policy) => println!(
                        "cooldown view: {}, exempt: {}",
                        format_duration(policy.period),
                        policy.exempt.join(", ")
                    ),
                }
                let mut rows = vec![[
                    "PROJECT".to_string(),
                    "VERSION".into(),
                    "DECISION".into(),
                    "WHEN".into(),
                    "BY".into(),
                    "REASON".into(),
                ]];
                for o in overrides? {
                    rows.push([
                        o.project.to_string(),
                        o.version.to_string(),
                        o.decision.as_str().into(),
                        format_micros(o.time_micros),
                        o.who,
                        o.reason,
                    ]);
                }
                print!("{}", crate::index_commands::table(&rows));
                Ok(())
            }
        }
    })
}

async fn decide(args: DecisionArgs, decision: Decision) -> Result<()> {
    let (project, version) = args.release.parse()?;
    let who = args.by.unwrap_or_else(operator);
    let database = args.release.data.database().await?;
    let recorded = database
        .set_cooldown_override(&project, &version, decision, &args.reason, &who)
        .await;
    database.close().await;
    recorded?;
    let done = match decision {
        Decision::Allow => "allowed",
        Decision::Deny => "denied",
    };
    eprintln!(
        "{done} {project} {version} in the cooldown view; a running tufa serve signs the page \
         within seconds"
    );
    Ok(())
}
