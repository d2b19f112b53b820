//! `tufa provenance`: a project's files with the publishers their PEP 740 attestations prove.
//!
//! Against an index (`--index` and `--root`), the project's page is verified with TUF and each
//! file's provenance is fetched, checked against the digest the page signs, and verified with
//! Sigstore, as the proxy does before serving a file. On a data directory (`--data`), the
//! publishers are those the index verified when each file was uploaded.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args};
use serde::Deserialize;
use tufa_index::name::ProjectName;
use tufa_provenance::TrustRoot;
use tufa_proxy::provenance::{Announced, check_announced};

use crate::locations::DatabaseArg;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["index", "data"])))]
pub struct ProvenanceArgs {
    /// The project, by any spelling of its name.
    project: String,
    /// Base URL of a Tufa index: the page is verified with TUF, each provenance with Sigstore.
    #[arg(long, requires = "root")]
    index: Option<String>,
    /// The index's root metadata, obtained out of band; trusted on first use of the cache.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Cache directory for trusted metadata and pages [default: the user cache directory].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The Sigstore trust root (`trusted_root.json`) [default: Sigstore's public-good instance].
    #[arg(long, env = "TUFA_SIGSTORE_TRUST_ROOT")]
    sigstore_trust_root: Option<PathBuf>,
    /// Instead of an index: its data directory, listing the publishers verified at upload.
    #[arg(long, env = "TUFA_DATA")]
    data: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Deserialize)]
struct Page {
    files: Vec<PageFile>,
}

#[derive(Deserialize)]
struct PageFile {
    filename: String,
    hashes: std::collections::BTreeMap<String, String>,
    provenance: Option<String>,
    #[serde(rename = "_provenance_sha256")]
    provenance_sha256: Option<String>,
}

pub fn run(args: ProvenanceArgs) -> Result<()> {
    let project = ProjectName::new(&args.project)?;
    match (&args.index, &args.root, &args.data) {
        (Some(index), Some(root), _) => from_index(&args, &project, index, root),
        (None, _, Some(data)) => from_data(&args, &project, data),
        _ => bail!("pass --index with --root, or --data"),
    }
}

fn from_data(args: &ProvenanceArgs, project: &ProjectName, data: &std::path::Path) -> Result<()> {
    let files = crate::index_commands::runtime()?.block_on(async {
        let database = crate::index_commands::open_database(data, &args.database).await?;
        anyhow::Ok(database.project_provenance(project).await?)
    })?;
    if files.is_empty() {
        bail!("no project {project} in {}", data.display());
    }
    for file in files {
        let publisher = match file.publisher {
            Some(json) => serde_json::from_str::<tufa_provenance::Publisher>(&json)
                .map_or(json, |p| p.to_string()),
            None => "unattested".into(),
        };
        println!("{}  {publisher}", file.filename);
    }
    Ok(())
}

fn from_index(
    args: &ProvenanceArgs,
    project: &ProjectName,
    index: &str,
    root: &std::path::Path,
) -> Result<()> {
    let index = index.trim_end_matches('/');
    let cache = match &args.cache {
        Some(cache) => cache.clone(),
        None => crate::download::default_cache(index)?,
    };
    let trust_root = match &args.sigstore_trust_root {
        Some(path) => TrustRoot::from_json(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("reading the Sigstore trust root {}", path.display()))?,
        None => TrustRoot::public_good(),
    };
    let page: Page = crate::download::verified_page(
        &cache,
        root,
        index,
        tufa_client::Witnesses::default(),
        project,
    )?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut failed = 0;
    for file in page.files {
        if file.filename.chars().any(char::is_control) {
            bail!("file name {:?} holds control characters", file.filename);
        }
        let announced = Announced {
            sha256: file.hashes.get("sha256").cloned().unwrap_or_default(),
            filename: file.filename.clone(),
            url: file.provenance,
            signed_sha256: file.provenance_sha256,
        };
        let line = match check_announced(&agent, index, project, &trust_root, &announced)? {
            None => "unattested".to_string(),
            Some(Ok((_, publishers))) => {
                let mut names: Vec<String> = publishers.iter().map(ToString::to_string).collect();
                names.dedup();
                names.join(", ")
            }
            Some(Err(reason)) => {
                failed += 1;
                format!("INVALID: {reason}")
            }
        };
        println!("{}  {line}", file.filename);
    }
    if failed > 0 {
        bail!("{failed} file(s) of {project} have provenance that does not verify");
    }
    Ok(())
}
