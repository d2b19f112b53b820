//! `tufa serve`, `tufa token`, `tufa yank` / `unyank`: running and administering the index.
//!
//! Settings come from, highest first: the command line, `TUFA_*` environment variables, a TOML
//! config file (`--config`), then defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use tufa_index::connections::Limits;
use tufa_index::cooldown::{BadDuration, Policy, parse_duration};
use tufa_index::db::{Revocation, TokenId, TokenInfo};
use tufa_index::name::{ProjectName, Version};
use tufa_index::signing::{OnlineKey, SigningConfig, TRUSTED_ROOT_FILE};
use tufa_index::{
    Config, CooldownSetting, DEFAULT_MAX_UPLOAD_SIZE, Database, Index, format_micros,
};
use tufa_repo::Expiries;

use crate::locations::{DatabaseArg, Locations};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file with any of: data, database, listen, max_upload_size, public_url, max_connections,
    /// header_timeout, idle_timeout, body_timeout, min_body_rate, the signing settings, cooldown,
    /// cooldown-exempt and sigstore_trust_root.
    #[arg(long, env = "TUFA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database and files); initialized on first run.
    #[arg(long, env = "TUFA_DATA")]
    data: Option<PathBuf>,
    /// The PostgreSQL database to run on (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE),
    /// created on first use and recorded in DATA/locations.toml for the other commands; "" for
    /// the SQLite file DATA/tufa.db [default: the recorded one, else the SQLite file].
    #[arg(long, env = "TUFA_DATABASE")]
    database: Option<String>,
    /// Where the TUF repository and the distribution files are kept: `s3://BUCKET[/PREFIX]`
    /// (endpoint, region and credentials from the AWS variables and files). Default: the one
    /// recorded in DATA/locations.toml, else the data directory.
    #[arg(long, env = "TUFA_STORAGE")]
    storage: Option<String>,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "TUFA_LISTEN")]
    listen: Option<String>,
    /// Largest file an upload may carry, in bytes (default 100 MiB, as PyPI).
    #[arg(long, env = "TUFA_MAX_UPLOAD_SIZE")]
    max_upload_size: Option<u64>,
    /// URL clients reach the index at, used for absolute URLs in the JSON API.
    #[arg(long, env = "TUFA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Start although the database and the TUF repository disagree (a lost database, an older
    /// backup, a deleted repository), instead of refusing: project names with signed pages the
    /// database does not know stay reserved, and a new repository gets every project signed
    /// into it. Run `tufa verify` first.
    #[arg(long)]
    accept_data_mismatch: bool,
    /// Mirror every project that has no local uploads from this PEP 691 JSON simple index (for
    /// example https://pypi.org/simple/), signed like local projects [default: no upstream].
    #[arg(long, env = "TUFA_UPSTREAM")]
    upstream: Option<String>,
    /// How long a mirrored page is served before it is fetched again (30s, 10m, 12h, 7d)
    /// [default: 10m].
    #[arg(long, env = "TUFA_UPSTREAM_TTL", value_parser = parse_duration_arg)]
    upstream_ttl: Option<Duration>,
    /// Names reserved for private uploads, never looked up upstream (404 until uploaded): a glob
    /// on the normalized name such as `acme-*`; repeat it, or comma-separate in TUFA_PRIVATE.
    #[arg(long, env = "TUFA_PRIVATE", value_delimiter = ',')]
    private: Vec<String>,
    /// Also publish the signed cooldown view at /cooldown/simple/: each project's files
    /// uploaded at least this long ago (a duration: 30s, 10m, 12h, 7d), plus releases allowed
    /// early and minus releases denied with `tufa cooldown`. Off by default.
    #[arg(long, env = "TUFA_COOLDOWN", value_parser = parse_duration_arg)]
    cooldown: Option<Duration>,
    /// A project whose files enter the cooldown view at once: a glob on the normalized name
    /// (`acme-*`), such as the organization's own projects. Repeat for several (in the
    /// environment, comma-separated).
    #[arg(
        long = "cooldown-exempt",
        env = "TUFA_COOLDOWN_EXEMPT",
        value_delimiter = ','
    )]
    cooldown_exempt: Vec<String>,
    /// The Sigstore trust root (Sigstore's `trusted_root.json` format) that uploaded PEP 740
    /// attestations are verified with [default: Sigstore's public-good instance, shipped with
    /// Tufa].
    #[arg(long, env = "TUFA_SIGSTORE_TRUST_ROOT")]
    sigstore_trust_root: Option<PathBuf>,
    #[command(flatten)]
    connections: ConnectionArgs,
    #[command(flatten)]
    signing: SigningArgs,
}

/// The bounds on every connection, for the commands that serve HTTP (`serve`, `proxy`).
#[derive(Args)]
pub struct ConnectionArgs {
    /// Connections served at once; more are answered 503 and closed [default: 4096, lowered to
    /// fit the limit on open files].
    #[arg(long, env = "TUFA_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers [default: 30].
    #[arg(long, env = "TUFA_HEADER_TIMEOUT")]
    header_timeout: Option<u64>,
    /// Seconds a connection may sit with no bytes moving and no request in progress (kept-alive
    /// connections included), or with its client taking nothing written to it [default: 15].
    #[arg(long, env = "TUFA_IDLE_TIMEOUT")]
    idle_timeout: Option<u64>,
    /// Seconds a request body gets before it must keep up with --min-body-rate [default: 30].
    #[arg(long, env = "TUFA_BODY_TIMEOUT")]
    body_timeout: Option<u64>,
    /// Bytes per second a request body must average after --body-timeout; each byte received
    /// extends its deadline [default: 1024].
    #[arg(long, env = "TUFA_MIN_BODY_RATE")]
    min_body_rate: Option<u64>,
}

impl ConnectionArgs {
    /// The limits from these flags, then `file`, then the defaults.
    fn limits_with(&self, file: &ConfigFile) -> Result<Limits> {
        let defaults = Limits::default();
        let seconds = |arg: Option<u64>, file: Option<u64>, default: Duration| {
            arg.or(file).map_or(default, Duration::from_secs)
        };
        let limits = Limits {
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            header_timeout: seconds(
                self.header_timeout,
                file.header_timeout,
                defaults.header_timeout,
            ),
            idle_timeout: seconds(self.idle_timeout, file.idle_timeout, defaults.idle_timeout),
            body_timeout: seconds(self.body_timeout, file.body_timeout, defaults.body_timeout),
            min_body_rate: self
                .min_body_rate
                .or(file.min_body_rate)
                .unwrap_or(defaults.min_body_rate),
        };
        limits.check()?;
        Ok(limits)
    }

    /// The limits from these flags and the defaults.
    pub fn limits(&self) -> Result<Limits> {
        self.limits_with(&ConfigFile::default())
    }
}

/// How the index signs, for the commands that sign (`serve`, `import`).
#[derive(Args)]
pub struct SigningArgs {
    /// The online signing key, trusted by the ceremony's root and bins: a PKCS#8 PEM file from
    /// `tufa keys generate` (passphrase in TUFA_ONLINE_KEY_PASSPHRASE), or a key on a hardware
    /// token as `pkcs11:token=<label>;object=<key label>?module-path=<module .so>` (PIN in
    /// TUFA_PKCS11_PIN), or a key in a Vault/OpenBao transit engine as
    /// `vault:<key>[?mount=<mount>&version=<n>]` (VAULT_ADDR, VAULT_TOKEN or AppRole's
    /// VAULT_ROLE_ID/VAULT_SECRET_ID). Without it, an empty data directory gets a development
    /// repository with local keys.
    #[arg(long, env = "TUFA_ONLINE_KEY")]
    online_key: Option<PathBuf>,
    /// Bin roles of a new development repository: 2^N (8 gives 256; PEP 458 suggests 14 = 16,384).
    #[arg(long, env = "TUFA_BIN_BITS")]
    bin_bits: Option<u32>,
    /// Projects a new development repository is expected to hold: picks its bin count when
    /// --bin-bits is not given (the count that minimises snapshot plus one bin).
    #[arg(long, env = "TUFA_EXPECTED_PROJECTS")]
    expected_projects: Option<u64>,
    /// Lifetime of timestamp signatures, in seconds (default one day, as PEP 458).
    #[arg(long, env = "TUFA_TIMESTAMP_EXPIRY")]
    timestamp_expiry: Option<u64>,
    /// Lifetime of snapshot signatures, in seconds (default one day).
    #[arg(long, env = "TUFA_SNAPSHOT_EXPIRY")]
    snapshot_expiry: Option<u64>,
    /// Lifetime of bin role signatures, in seconds (default one day).
    #[arg(long, env = "TUFA_BIN_EXPIRY")]
    bin_expiry: Option<u64>,
    /// How long metadata and targets that are no longer published stay, in seconds (default 3600).
    #[arg(long, env = "TUFA_GRACE")]
    grace: Option<u64>,
    /// How far the clock may fall behind the newest signed metadata, in seconds, before signing
    /// pauses (default 300): metadata signed by a clock that went back could already be expired.
    #[arg(long, env = "TUFA_CLOCK_TOLERANCE")]
    clock_tolerance: Option<u64>,
    /// Trust the clock over the newest signed metadata, once, after fixing a clock that ran
    /// ahead: online roles are re-signed with expiries counted from now.
    #[arg(long)]
    trust_clock: bool,
    /// Seconds the publisher lease lasts without renewal (default 5): with several replicas on
    /// one database, another takes over signing about this long after the publisher dies.
    #[arg(long, env = "TUFA_PUBLISHER_LEASE_TTL")]
    publisher_lease_ttl: Option<u64>,
    /// The transparency log's key (a file from `tufa ceremony --log-origin` or `tufa keys
    /// log-key`), declared in root: every timestamp is logged and its proof served under
    /// /tuf/log/. A development repository keeps its own in its keys directory.
    #[arg(long, env = "TUFA_LOG_KEY")]
    log_key: Option<PathBuf>,
    /// A witness (C2SP tlog-witness, e.g. `tufa witness serve`) to submit every new checkpoint
    /// to, by its URL; repeat for several. A witness that is down never holds back publishing.
    #[arg(long = "witness", value_name = "URL")]
    witnesses: Vec<String>,
    /// A witness's verifier key (as `tufa witness key` prints it): when any are given, only
    /// cosignatures by these keys are added to the checkpoint. Repeatable.
    #[arg(long = "witness-key", value_name = "VERIFIER_KEY")]
    witness_keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<PathBuf>,
    database: Option<String>,
    storage: Option<String>,
    listen: Option<String>,
    max_upload_size: Option<u64>,
    public_url: Option<String>,
    max_connections: Option<usize>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    body_timeout: Option<u64>,
    min_body_rate: Option<u64>,
    online_key: Option<PathBuf>,
    bin_bits: Option<u32>,
    expected_projects: Option<u64>,
    timestamp_expiry: Option<u64>,
    snapshot_expiry: Option<u64>,
    bin_expiry: Option<u64>,
    grace: Option<u64>,
    clock_tolerance: Option<u64>,
    publisher_lease_ttl: Option<u64>,
    log_key: Option<PathBuf>,
    witnesses: Option<Vec<String>>,
    #[serde(rename = "witness-keys", alias = "witness_keys")]
    witness_keys: Option<Vec<String>>,
    upstream: Option<String>,
    #[serde(rename = "upstream-ttl", alias = "upstream_ttl")]
    upstream_ttl: Option<String>,
    private: Option<Vec<String>>,
    /// A duration such as "7d".
    cooldown: Option<String>,
    #[serde(rename = "cooldown-exempt", alias = "cooldown_exempt")]
    cooldown_exempt: Option<Vec<String>>,
    #[serde(rename = "sigstore-trust-root", alias = "sigstore_trust_root")]
    sigstore_trust_root: Option<PathBuf>,
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
    pub data: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArg,
}

impl DataArg {
    pub async fn database(&self) -> Result<Database> {
        open_database(&self.data, &self.database).await
    }
}

/// The database of the index in `data_dir`: the one `database` names, else the one recorded
/// there, else its SQLite file, which must exist (a command given the wrong directory would
/// otherwise create an empty index in it).
pub async fn open_database(data_dir: &Path, database: &DatabaseArg) -> Result<Database> {
    let url = database.resolve(data_dir)?;
    if url.is_none() && !crate::locations::sqlite_file(data_dir).exists() {
        anyhow::bail!(
            "{} holds no index (no tufa.db, and no database recorded in {}): pass the directory \
             `tufa serve --data` uses, or --database URL",
            data_dir.display(),
            crate::locations::FILE
        );
    }
    let opened = Database::open_in(url.as_deref(), data_dir).await;
    opened.with_context(|| match &url {
        Some(url) => format!(
            "opening the database {} of the index in {}",
            tufa_index::db::redact(url),
            data_dir.display()
        ),
        None => format!("opening the index in {}", data_dir.display()),
    })
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
        /// When the token stops working: a duration from now (`90m`, `12h`, `30d`) or a time
        /// (RFC 3339 `2027-01-31T12:00:00Z`, or a date `2027-01-31` meaning its start in UTC).
        /// Without it the token works until revoked.
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<Expiry>,
    },
    /// List every token (never the token itself): ID, user, project scope, created, expires, last
    /// used (to the minute), and whether it is active, expired or revoked.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke a token by the ID `tufa token list` shows; a running server refuses it from its
    /// next request.
    Revoke {
        #[command(flatten)]
        data: DataArg,
        /// The token's ID.
        id: TokenId,
    },
}

/// When a token expires, as given to `--expires`.
#[derive(Clone, Copy, Debug)]
pub enum Expiry {
    After(Duration),
    At(time::OffsetDateTime),
}

impl Expiry {
    fn micros(self, now: time::OffsetDateTime) -> Result<i64> {
        let at = match self {
            Expiry::After(duration) => now
                .checked_add(time::Duration::try_from(duration).context("--expires is too far")?)
                .context("--expires is too far in the future")?,
            Expiry::At(at) => at,
        };
        if at <= now {
            anyhow::bail!(
                "--expires {} is in the past: give a later time or a duration such as 30d",
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            );
        }
        i64::try_from(at.unix_timestamp_nanos() / 1000).context("--expires is too far")
    }
}

fn parse_expiry(text: &str) -> std::result::Result<Expiry, String> {
    use time::format_description::well_known::Rfc3339;
    let help = "use a duration (90m, 12h, 30d) or a time (2027-01-31T12:00:00Z, 2027-01-31)";
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Expiry::At(at));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, date_format) {
        return Ok(Expiry::At(date.midnight().assume_utc()));
    }
    match parse_duration(text) {
        Ok(Duration::ZERO) => Err(format!("{text:?} would expire at once: {help}")),
        Ok(duration) => Ok(Expiry::After(duration)),
        Err(BadDuration::NoUnit(_)) => Err(format!("{text:?} has no unit: {help}")),
        Err(BadDuration::TooLong(_)) => Err(format!("{text:?} is too long: {help}")),
        Err(BadDuration::NotADuration(_)) => {
            Err(format!("{text:?} is not a duration or a time: {help}"))
        }
    }
}

/// A duration option (`30s`, `10m`, `12h`, `7d`) that must be longer than nothing.
pub fn parse_duration_arg(text: &str) -> std::result::Result<Duration, String> {
    match parse_duration(text).map_err(|e| e.to_string())? {
        Duration::ZERO => Err(format!("{text:?} is no duration: give at least 1s")),
        duration => Ok(duration),
    }
}

/// The cooldown policy from the command line, the environment and the config file.
fn cooldown_policy(args: &ServeArgs, file: &ConfigFile) -> Result<Option<Policy>> {
    let period = match (args.cooldown, &file.cooldown) {
        (Some(period), _) => Some(period),
        (None, Some(text)) => Some(
            parse_duration_arg(text)
                .map_err(anyhow::Error::msg)
                .context("the config file's `cooldown`")?,
        ),
        (None, None) => None,
    };
    let exempt: Vec<String> = if args.cooldown_exempt.is_empty() {
        file.cooldown_exempt.clone().unwrap_or_default()
    } else {
        args.cooldown_exempt.clone()
    }
    .iter()
    .map(|pattern| tufa_index::name::normalize_pattern(pattern))
    .collect();
    if exempt.iter().any(String::is_empty) {
        anyhow::bail!("--cooldown-exempt \"\": give a pattern of project names, such as acme-*");
    }
    match period {
        Some(period) => Ok(Some(Policy { period, exempt })),
        None if exempt.is_empty() => Ok(None),
        None => anyhow::bail!("--cooldown-exempt needs --cooldown DURATION (the cooldown view)"),
    }
}

/// A release, or one file of it, in an index.
#[derive(Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    data: DataArg,
    /// The project.
    project: String,
    /// The release's version.
    version: String,
    /// Only this file of the release (default: every file, as PyPI yanks releases).
    #[arg(long)]
    file: Option<String>,
}

#[derive(Args)]
pub struct YankArgs {
    #[command(flatten)]
    release: ReleaseArgs,
    /// Why it is yanked; installers show it (PEP 592).
    #[arg(long, default_value = "")]
    reason: String,
}

/// Logs of the index (requests, signing, warnings such as a development repository) on stderr.
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// Signing settings from the command line and environment alone.
pub fn signing_config_from(args: &SigningArgs) -> Result<SigningConfig> {
    signing_config(args, &ConfigFile::default())
}

fn signing_config(args: &SigningArgs, file: &ConfigFile) -> Result<SigningConfig> {
    let defaults = SigningConfig::default();
    let seconds = |arg: Option<u64>, file: Option<u64>, default: Duration| {
        arg.or(file).map_or(default, Duration::from_secs)
    };
    let expiries = Expiries {
        timestamp: seconds(
            args.timestamp_expiry,
            file.timestamp_expiry,
            defaults.expiries.timestamp,
        ),
        snapshot: seconds(
            args.snapshot_expiry,
            file.snapshot_expiry,
            defaults.expiries.snapshot,
        ),
        bin_roles: seconds(
            args.bin_expiry,
            file.bin_expiry,
            defaults.expiries.bin_roles,
        ),
        ..defaults.expiries
    };
    if args.publisher_lease_ttl.or(file.publisher_lease_ttl) == Some(0) {
        anyhow::bail!("--publisher-lease-ttl must be at least one second");
    }
    if [expiries.timestamp, expiries.snapshot, expiries.bin_roles].contains(&Duration::ZERO) {
        anyhow::bail!("expiry times must be at least one second");
    }
    let bit_length = args
        .bin_bits
        .or(file.bin_bits)
        .or(args
            .expected_projects
            .or(file.expected_projects)
            .map(tufa_repo::layout::bin_bits_for))
        .unwrap_or(defaults.bit_length);
    if !(1..=32).contains(&bit_length) {
        anyhow::bail!(
            "--bin-bits must be between 1 and 32 (PEP 458 suggests 14), not {bit_length}"
        );
    }
    let online_key = args
        .online_key
        .clone()
        .or(file.online_key.clone())
        .map(OnlineKey::from);
    let online_key_passphrase = match &online_key {
        Some(OnlineKey::File(path)) => {
            let passphrase = std::env::var("TUFA_ONLINE_KEY_PASSPHRASE")
                .ok()
                .filter(|p| !p.is_empty());
            if std::fs::read(path).is_ok_and(|b| b.trim_ascii_start().starts_with(b"{")) {
                anyhow::bail!(
                    "{} is a public key (TUF JSON): --online-key takes the private key, the \
                     .pem file beside it",
                    path.display()
                );
            }
            // The key file's own error only says a passphrase is needed, not where it goes.
            if passphrase.is_none()
                && std::fs::read_to_string(path)
                    .is_ok_and(|pem| pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
            {
                anyhow::bail!(
                    "the online key {} is encrypted: set TUFA_ONLINE_KEY_PASSPHRASE to its passphrase",
                    path.display()
                );
            }
            passphrase
        }
        _ => None,
    };
    Ok(SigningConfig {
        online_key,
        online_key_passphrase,
        bit_length,
        expiries,
        grace: seconds(args.grace, file.grace, defaults.grace),
        clock_tolerance: seconds(
            args.clock_tolerance,
            file.clock_tolerance,
            defaults.clock_tolerance,
        ),
        trust_clock: args.trust_clock,
        lease_ttl: seconds(
            args.publisher_lease_ttl,
            file.publisher_lease_ttl,
            defaults.lease_ttl,
        ),
        log_key: args.log_key.clone().or(file.log_key.clone()),
        witnesses: if args.witnesses.is_empty() {
            file.witnesses.clone().unwrap_or_default()
        } else {
            args.witnesses.clone()
        },
        witness_keys: args
            .witness_keys
            .iter()
            .chain(file.witness_keys.iter().flatten())
            .map(|text| {
                tufa_tlog::VerifierKey::parse(text).with_context(|| format!("--witness-key {text}"))
            })
            .collect::<Result<_>>()?,
        witness_wait: defaults.witness_wait,
    })
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => read_config_file(path)?,
        None => ConfigFile::default(),
    };
    let signing = signing_config(&args.signing, &file)?;
    let limits = args.connections.limits_with(&file)?;
    let cooldown = cooldown_policy(&args, &file)?;
    let data_dir = args.data.or(file.data).context(
        "no data directory: pass --data DIR, set TUFA_DATA, or set `data` in the config file",
    )?;
    let recorded = Locations::read(&data_dir)?;
    let database = DatabaseArg {
        database: args.database.or(file.database),
    }
    .resolve(&data_dir)?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let upstream_ttl = match (args.upstream_ttl, &file.upstream_ttl) {
        (Some(ttl), _) => ttl,
        (None, Some(text)) => parse_duration(text)
            .map_err(anyhow::Error::msg)
            .context("upstream-ttl in the config file")?,
        (None, None) => tufa_index::mirror::DEFAULT_TTL,
    };
    let private = if args.private.is_empty() {
        file.private.clone().unwrap_or_default()
    } else {
        args.private
    };
    let private: Vec<String> = private
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    // Without an upstream nothing is looked up, so every name is private already.
    let mirror =
        args.upstream
            .or(file.upstream.clone())
            .map(|upstream| tufa_index::mirror::MirrorConfig {
                upstream,
                ttl: upstream_ttl,
                private,
            });
    let sigstore_trust_root = match args.sigstore_trust_root.or(file.sigstore_trust_root) {
        Some(path) => {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading the Sigstore trust root {}", path.display()))?;
            Some(
                tufa_provenance::TrustRoot::from_json(&bytes).with_context(|| {
                    format!("reading the Sigstore trust root {}", path.display())
                })?,
            )
        }
        None => None,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let config = Config {
        sigstore_trust_root,
        mirror,
        data_dir: data_dir.clone(),
        database,
        max_upload_size: args
            .max_upload_size
            .or(file.max_upload_size)
            .unwrap_or(DEFAULT_MAX_UPLOAD_SIZE),
        public_url: args.public_url.or(file.public_url),
        signing: Some(signing),
        accept_data_mismatch: args.accept_data_mismatch,
        cooldown: CooldownSetting::Set(cooldown),
        storage: crate::locations::Locations::storage(&data_dir, args.storage.or(file.storage))?,
    };
    log_to_stderr();
    runtime()?.block_on(async move {
        let index = Index::open(config.clone())
            .await
            .with_context(|| format!("opening the index in {}", config.data_dir.display()))?;
        // Recorded once it opened, so that a mistyped URL is not what the next command uses.
        let running = Locations {
            database: config.database.clone(),
            storage: config.storage.clone(),
        };
        if running != recorded {
            running.write(&config.data_dir)?;
        }
        if let Some(storage) = &config.storage {
            eprintln!("tufa: the TUF repository and the distribution files are in {storage}");
        }
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        eprintln!(
            "tufa: TUF metadata at http://{address}/tuf/metadata/, targets at http://{address}/tuf/targets/; \
             clients bootstrap from the trusted root {}",
            config.data_dir.join(TRUSTED_ROOT_FILE).display()
        );
        eprintln!(
            "tufa: serving {} at http://{address}/ (pip/uv: --index-url http://{address}/simple/, twine: --repository-url http://{address}/legacy/)",
            config.data_dir.display()
        );
        if let Some(mirror) = &index.mirror {
            eprintln!(
                "tufa: mirroring projects without local uploads from {} (pages refreshed after {} s){}",
                mirror.upstream_root(),
                mirror.config.ttl.as_secs(),
                if mirror.config.private.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; never looked up upstream: {}",
                        mirror.config.private.join(", ")
                    )
                }
            );
        }
        if let Some(policy) = &index.cooldown() {
            eprintln!(
                "tufa: cooldown view of files at least {} old at http://{address}/cooldown/simple/ \
                 (signed as cooldown/<project>/index.json; verified: tufa proxy --view cooldown)",
                tufa_index::cooldown::format_duration(policy.period)
            );
        }
        tufa_index::serve(Arc::new(index), listener, limits, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

pub(crate) async fn shutdown_signal() {
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
    runtime()?.block_on(async move {
        match command {
            TokenCommand::Create {
                data,
                user,
                project,
                expires,
            } => {
                let project = project
                    .map(|p| ProjectName::new(&p))
                    .transpose()
                    .context("--project")?;
                let expires = expires
                    .map(|e| e.micros(time::OffsetDateTime::now_utc()))
                    .transpose()?;
                let database = data.database().await?;
                let token = database
                    .create_token(&user, project.as_ref(), expires)
                    .await
                    .context("creating the token")?;
                database.close().await;
                println!("{token}");
            }
            TokenCommand::List { data } => {
                let database = data.database().await?;
                let tokens = database.tokens().await.context("listing the tokens")?;
                database.close().await;
                print!("{}", token_table(&tokens, tufa_index::db::now_micros()));
            }
            TokenCommand::Revoke { data, id } => {
                let database = data.database().await?;
                let outcome = database
                    .revoke_token(id)
                    .await
                    .context("revoking the token")?;
                database.close().await;
                match outcome {
                    Revocation::Revoked => eprintln!("revoked token {id}"),
                    Revocation::AlreadyRevoked { revoked_micros } => eprintln!(
                        "token {id} was already revoked at {}",
                        format_micros(revoked_micros)
                    ),
                    Revocation::NoSuchToken => anyhow::bail!(
                        "no token with ID {id} in {}: `tufa token list` shows the IDs",
                        data.data.display()
                    ),
                }
            }
        }
        Ok(())
    })
}

/// The tokens as a table with a header, one line each.
fn token_table(tokens: &[TokenInfo], now_micros: i64) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "USER".into(),
        "PROJECT".into(),
        "CREATED".into(),
        "EXPIRES".into(),
        "LAST USED".into(),
        "STATUS".into(),
    ]];
    for token in tokens {
        let status = if token.revoked_micros.is_some() {
            "revoked"
        } else if token.expires_micros.is_some_and(|e| e <= now_micros) {
            "expired"
        } else {
            "active"
        };
        let time_or = |micros: Option<i64>, none: &str| micros.map_or(none.into(), format_micros);
        rows.push([
            token.id.to_string(),
            token.user.clone(),
            token.project.clone().unwrap_or_else(|| "(any)".into()),
            format_micros(token.created_micros),
            time_or(token.expires_micros, "never"),
            time_or(token.last_used_micros, "never"),
            status.into(),
        ]);
    }
    table(&rows)
}

/// Rows as left-aligned columns, the last one unpadded.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Yanks with `Some(reason)`, un-yanks with `None`, and says how many files changed.
fn set_yanked(release: ReleaseArgs, reason: Option<&str>) -> Result<()> {
    runtime()?.block_on(async move {
        let project = ProjectName::new(&release.project).context("the project name")?;
        let version = Version::new(&release.version).context("the version")?;
        let database = release.data.database().await?;
        let changed = database
            .set_yanked(&project, &version, release.file.as_deref(), reason)
            .await?;
        database.close().await;
        let done = if reason.is_some() {
            "yanked"
        } else {
            "un-yanked"
        };
        eprintln!("{done} {changed} file(s) of {project} {version}");
        Ok(())
    })
}

pub fn yank(args: YankArgs) -> Result<()> {
    set_yanked(args.release, Some(&args.reason))
}

pub fn unyank(args: ReleaseArgs) -> Result<()> {
    set_yanked(args, None)
}
