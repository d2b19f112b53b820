//! `tufa proxy`: a local simple index for pip and uv in front of a Tufa index, serving only what
//! the index's TUF metadata verifies.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tufa_client::encode_component;
use tufa_proxy::{Config, Proxy, View};

#[derive(Args)]
pub struct ProxyArgs {
    /// Base URL of the Tufa index (metadata under `/tuf/metadata/`, targets under `/tuf/targets/`).
    #[arg(long, env = "TUFA_PROXY_INDEX")]
    index: String,
    /// The index's root metadata, obtained out of band; trusted on first use of the cache.
    #[arg(long, env = "TUFA_PROXY_ROOT")]
    root: PathBuf,
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
    #[command(flatten)]
    connections: crate::index_commands::ConnectionArgs,
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
    let index = args.index.trim_end_matches('/').to_string();
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
    };
    let limits = args.connections.limits()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let proxy = Proxy::open(config, &args.root)
        .with_context(|| format!("opening the proxy cache {}", cache_dir.display()))?;
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            let address = listener.local_addr().context("reading the bound address")?;
            eprintln!(
                "tufa: proxy serving the {} view of {index}, verified with TUF, at \
                 http://{address}/ (pip/uv: --index-url http://{address}/simple/); cache {}",
                args.view,
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
