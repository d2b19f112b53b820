//! `tufa proxy`: a local simple index for pip and uv in front of a Tufa index, serving only what
//! the index's TUF metadata verifies.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use tufa_client::encode_component;
use tufa_index::name::ProjectName;
use tufa_provenance::Publisher;
use tufa_proxy::provenance::{Mode, Pins, Policy};
use tufa_proxy::{Config, Proxy, View};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProxyArgs {
    #[command(subcommand)]
    action: Option<ProxyAction>,
    /// Base URL of the Tufa index (metadata under `/tuf/metadata/`, targets under `/tuf/targets/`).
    #[arg(long, env = "TUFA_PROXY_INDEX", required = true)]
    index: Option<String>,
    /// The index's root metadata, obtained out of band; trusted on first use of the cache.
    #[arg(long, env = "TUFA_PROXY_ROOT", required = true)]
    root: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "TUFA_PROXY_LISTEN", default_value = "127.0.0.1:8458")]
    listen: String,
    /// Cache of trusted metadata and verified files [default: the user cache directory].
    #[arg(long, env = "TUFA_PROXY_CACHE")]
    cache: Option<PathBuf>,
    /// How long one refresh of the TUF metadata serves requests, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    refresh_interval_ms: u64,
    /// Bound on connecting to the index, on each metadata request, and on a file download that
    /// sends nothing, in seconds; also the window a download's rate is measured over.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// How long a request waits for a refresh of the TUF metadata before the index counts as
    /// unreachable and the cached metadata, while unexpired, answers instead, in milliseconds.
    #[arg(long, default_value_t = 500)]
    refresh_deadline_ms: u64,
    /// Bound on one file download from the index (time spent waiting for the index, not for the
    /// installer), in seconds.
    #[arg(long, default_value_t = 3600)]
    download_deadline: u64,
    /// Bytes per second a file download from the index must average over each --timeout window.
    #[arg(long, default_value_t = 1024)]
    download_min_rate: u64,
    /// Which signed view of the index to serve: `simple` (every file) or `cooldown` (only files
    /// past the index's cooldown period, with its allowed and denied releases), verified as its
    /// own TUF targets.
    #[arg(long, env = "TUFA_PROXY_VIEW", default_value = "simple")]
    view: View,
    /// PEP 740 provenance: `off`; `warn` logs attestations that fail or name another publisher
    /// than the policy; `tofu` remembers each project's publisher on first sight and refuses
    /// files that are unattested or attested by another one afterwards; `require` refuses every
    /// file without valid provenance.
    #[arg(long, env = "TUFA_PROXY_PROVENANCE", default_value = "warn")]
    provenance: Mode,
    /// TOML file of expected publishers: `[projects.NAME]` with `repository = "owner/name"`, and
    /// optionally `workflow = "release.yml"` and `kind = "GitLab"` (default GitHub).
    #[arg(long, env = "TUFA_PROXY_PROVENANCE_POLICY")]
    provenance_policy: Option<PathBuf>,
    /// The Sigstore trust root (`trusted_root.json`) attestations are verified with [default:
    /// Sigstore's public-good instance, shipped with Tufa].
    #[arg(long, env = "TUFA_SIGSTORE_TRUST_ROOT")]
    sigstore_trust_root: Option<PathBuf>,
    #[command(flatten)]
    witnesses: crate::log_policy::WitnessArgs,
    #[command(flatten)]
    connections: crate::index_commands::ConnectionArgs,
}

#[derive(Subcommand)]
enum ProxyAction {
    /// Accept a project's new publisher in `--provenance tofu` (a legitimate move of its
    /// repository or workflow), or with --forget trust the next one seen.
    TrustPublisher(TrustPublisherArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("publisher").required(true).args(["repository", "forget"])))]
struct TrustPublisherArgs {
    /// The project, by any spelling of its name.
    project: String,
    /// The proxy's cache directory (`tufa proxy --cache`) [default: the one for --index].
    #[arg(long, env = "TUFA_PROXY_CACHE")]
    cache: Option<PathBuf>,
    /// The index the proxy serves, to find its default cache directory.
    #[arg(long, env = "TUFA_PROXY_INDEX")]
    index: Option<String>,
    /// The publisher's kind, as the refusal names it.
    #[arg(long, default_value = "GitHub")]
    kind: String,
    /// The new publisher's repository (`owner/name`).
    #[arg(long)]
    repository: Option<String>,
    /// The new publisher's workflow file (GitHub) or CI configuration path (GitLab).
    #[arg(long, requires = "repository")]
    workflow: Option<String>,
    /// Forget the project's publisher: the next attested file seen is trusted on first use.
    #[arg(long, conflicts_with_all = ["repository", "workflow"])]
    forget: bool,
}

fn trust_publisher(args: TrustPublisherArgs) -> Result<()> {
    let project = ProjectName::new(&args.project)?;
    let cache_dir = match (args.cache, args.index) {
        (Some(cache), _) => cache,
        (None, Some(index)) => default_cache(index.trim_end_matches('/'))?,
        (None, None) => bail!("pass the proxy's --cache directory, or its --index"),
    };
    let pins = Pins::new(&cache_dir);
    let before = pins.get(&project).map_err(anyhow::Error::msg)?;
    let publisher = args.repository.map(|repository| {
        let mut publisher = Publisher {
            kind: args.kind.clone(),
            repository,
            ..Publisher::default()
        };
        if args.kind == "GitLab" {
            publisher.workflow_filepath = args.workflow;
        } else {
            publisher.workflow = args.workflow;
        }
        publisher
    });
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    pins.set(&project, publisher.clone())
        .map_err(anyhow::Error::msg)?;
    let before = before.map_or_else(|| "none".to_string(), |p| p.to_string());
    match publisher {
        Some(publisher) => eprintln!(
            "tufa: {project}'s trusted publisher is now {publisher} (was {before}) in {}",
            pins.path().display()
        ),
        None => eprintln!(
            "tufa: {project}'s trusted publisher ({before}) is forgotten: the next attested file \
             seen is trusted on first use ({})",
            pins.path().display()
        ),
    }
    Ok(())
}

fn default_cache(index: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache")?;
    Ok(base
        .join("tufa")
        .join("proxy")
        .join(encode_component(index)))
}

pub fn run(args: ProxyArgs) -> Result<()> {
    if let Some(ProxyAction::TrustPublisher(action)) = args.action {
        return trust_publisher(action);
    }
    let (Some(index), Some(root)) = (args.index, args.root) else {
        bail!("pass --index and --root");
    };
    let index = index.trim_end_matches('/').to_string();
    let provenance_policy = match &args.provenance_policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the provenance policy {}", path.display()))?;
            Policy::parse(path, &text).map_err(anyhow::Error::msg)?
        }
        None => Policy::default(),
    };
    let sigstore_trust_root = match &args.sigstore_trust_root {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the Sigstore trust root {}", path.display()))?;
            Some(
                tufa_provenance::TrustRoot::from_json(&bytes).with_context(|| {
                    format!("reading the Sigstore trust root {}", path.display())
                })?,
            )
        }
        None => None,
    };
    let cache_dir = match args.cache {
        Some(cache) => cache,
        None => default_cache(&index)?,
    };
    let config = Config {
        index_url: index.clone(),
        cache_dir: cache_dir.clone(),
        refresh_interval: Duration::from_millis(args.refresh_interval_ms),
        timeout: Duration::from_secs(args.timeout.max(1)),
        refresh_deadline: Duration::from_millis(args.refresh_deadline_ms),
        download_deadline: Duration::from_secs(args.download_deadline.max(1)),
        download_min_rate: args.download_min_rate,
        view: args.view,
        provenance: args.provenance,
        provenance_policy,
        sigstore_trust_root,
        witnesses: args.witnesses.witnesses()?,
    };
    let limits = args.connections.limits()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let proxy = Proxy::open(config, &root)
        .with_context(|| format!("opening the proxy cache {}", cache_dir.display()))?;
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            let address = listener.local_addr().context("reading the bound address")?;
            eprintln!(
                "tufa: proxy serving the {} view of {index}, verified with TUF, PEP 740 \
                 provenance {}, at http://{address}/ (pip/uv: --index-url \
                 http://{address}/simple/); cache {}",
                args.view,
                args.provenance,
                cache_dir.display()
            );
            tufa_proxy::serve(
                proxy,
                listener,
                limits,
                crate::index_commands::shutdown_signal(),
            )
            .await
            .context("serving HTTP")
        })
}
