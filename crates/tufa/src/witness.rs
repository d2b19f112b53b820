//! `tufa witness`: an independent witness for transparency logs (c2sp.org/tlog-witness).
//!
//! It follows the logs it is told (origin and verifier key), answers `POST /add-checkpoint`
//! with its cosignature (c2sp.org/tlog-cosignature) when the checkpoint extends the last one it
//! cosigned for that origin, and refuses anything else with the specification's status codes
//! (see [`tufa_tlog::witness`]). What it cosigned is recorded durably in its state directory
//! before the cosignature leaves, so a restarted witness never cosigns a fork of a tree it
//! cosigned before. Requests are decided one at a time, which makes checking the old size and
//! recording the new state atomic, as the specification requires.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use tufa_metadata::{Metadata, Root};
use tufa_repo::LogKey;
use tufa_tlog::witness::MAX_REQUEST_BYTES;
use tufa_tlog::{Ed25519Key, LogState, VerifierKey, Witness};

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Generate a witness's signing key: prints the verifier key (a C2SP cosignature key, type
    /// 0x04) that logs and clients configure to check its cosignatures.
    Key(KeyArgs),
    /// Run the witness: `POST /add-checkpoint` for the logs it follows.
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct KeyArgs {
    /// The witness's name, as it appears in its cosignature lines (e.g. `witness.example.org`).
    #[arg(long)]
    name: String,
    /// Where to write the private key (never overwritten); the verifier key goes to FILE.pub.
    file: PathBuf,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The witness's private key (from `tufa witness key`).
    #[arg(long, env = "TUFA_WITNESS_KEY")]
    key: PathBuf,
    /// Directory for what the witness cosigned (one small file per log), kept durably.
    #[arg(long, env = "TUFA_WITNESS_STATE")]
    state: PathBuf,
    /// A log to follow, by its verifier key (`<origin>+<key ID>+<key>`; the key's name is the
    /// log's origin, as Tufa logs name their keys). Repeatable.
    #[arg(long = "log", value_name = "VERIFIER_KEY")]
    logs: Vec<String>,
    /// Follow the log a TUF root declares (`x-tufa-transparency-log`), e.g. the trusted root
    /// of a Tufa index. Repeatable.
    #[arg(long = "log-from-root", value_name = "ROOT_JSON")]
    roots: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    #[command(flatten)]
    connections: crate::index_commands::ConnectionArgs,
}

pub fn run(command: WitnessCommand) -> Result<()> {
    match command {
        WitnessCommand::Key(args) => {
            LogKey::generate(&args.file, &args.name)?;
            let (name, key) = load_key(&args.file)?;
            let witness = Witness::new(&name, key)?;
            let public = witness.verifier().to_string();
            let public_path = tufa_repo::tlog::public_key_path(&args.file);
            fs::write(&public_path, format!("{public}\n"))
                .with_context(|| format!("writing {}", public_path.display()))?;
            println!("{public}");
            Ok(())
        }
        WitnessCommand::Serve(args) => serve(args),
    }
}

/// The witness's name and Ed25519 key, from a C2SP signer key file.
fn load_key(path: &Path) -> Result<(String, Ed25519Key)> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading the key {}", path.display()))?;
    Ed25519Key::parse_signer_key(text.trim_end())
        .with_context(|| format!("the key {}", path.display()))
}

/// What the witness cosigned, one file per log under `logs/`, written through a synced
/// temporary file and a rename: a crash leaves the old record or the new one, never neither.
struct Records {
    dir: PathBuf,
    /// Held for the process's life: a second witness on the same state would race this one.
    _lock: File,
}

impl Records {
    fn open(dir: &Path) -> Result<Records> {
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "another witness uses the state in {}: two witnesses on one state could each \
                 cosign a different tree",
                dir.display()
            );
        }
        Ok(Records {
            dir: logs,
            _lock: lock,
        })
    }

    fn path(&self, origin: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, origin.as_bytes());
        self.dir.join(hex_string(digest.as_ref()))
    }

    /// The recorded state of `origin`. A record that cannot be read stops the witness from
    /// answering for that log rather than letting it start over from nothing.
    fn get(&self, origin: &str) -> Result<Option<LogState>, String> {
        let path = self.path(origin);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading the witness's record: {e}")),
        };
        let damaged = || format!("the witness's record {} is damaged", path.display());
        let mut lines = text.lines();
        let (Some(recorded), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(damaged());
        };
        if recorded != origin {
            return Err(damaged());
        }
        let size = size.parse().map_err(|_| damaged())?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(damaged)?;
        Ok(Some(LogState { size, root }))
    }

    fn record(&self, origin: &str, state: &LogState) -> std::io::Result<()> {
        let path = self.path(origin);
        let temp = path.with_extension("tmp");
        let mut file = File::create(&temp)?;
        file.write_all(
            format!(
                "{origin}\n{}\n{}\n",
                state.size,
                STANDARD.encode(state.root)
            )
            .as_bytes(),
        )?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        File::open(&self.dir)?.sync_all()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct WitnessServer {
    witness: Witness<Ed25519Key>,
    records: Mutex<Records>,
}

fn refusal(status: u16, reason: &str, body: Option<(&'static str, String)>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, text) = body.unwrap_or(("text/plain; charset=utf-8", format!("{reason}\n")));
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], text).into_response();
    response
        .extensions_mut()
        .insert(tufa_index::reason_phrase(reason));
    response
}

async fn add_checkpoint(State(server): State<Arc<WitnessServer>>, body: Bytes) -> Response {
    let decided = tokio::task::spawn_blocking(move || server.decide(&body)).await;
    match decided {
        Ok(response) => response,
        Err(error) => refusal(500, &format!("the witness failed: {error}"), None),
    }
}

impl WitnessServer {
    /// Decides one request and records its outcome before answering, under the records'
    /// lock: the state a decision was made on is the state it replaces.
    fn decide(&self, body: &[u8]) -> Response {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let failed = std::cell::RefCell::new(None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let decided = self.witness.add_checkpoint(
            body,
            |origin| match records.get(origin) {
                Ok(state) => state,
                Err(reason) => {
                    *failed.borrow_mut() = Some(reason);
                    // Treated as a size no request can name, so nothing is cosigned.
                    Some(LogState {
                        size: u64::MAX,
                        root: [0; 32],
                    })
                }
            },
            now,
        );
        if let Some(reason) = failed.into_inner() {
            tracing::error!("{reason}");
            return refusal(500, &reason, None);
        }
        match decided {
            Ok(cosigned) => {
                if let Err(error) = records.record(&cosigned.origin, &cosigned.state) {
                    let reason = format!("recording the cosigned checkpoint failed: {error}");
                    tracing::error!("{reason}");
                    return refusal(500, &reason, None);
                }
                tracing::info!(
                    origin = cosigned.origin,
                    size = cosigned.state.size,
                    "cosigned"
                );
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    cosigned.response,
                )
                    .into_response()
            }
            Err(refused) => {
                let reason = refused.to_string();
                tracing::warn!(status = refused.status(), "refused: {reason}");
                refusal(refused.status(), &reason, refused.body())
            }
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let (name, key) = load_key(&args.key)?;
    let mut witness = Witness::new(&name, key)?;
    let mut followed = Vec::new();
    for text in &args.logs {
        let key = VerifierKey::parse(text).with_context(|| format!("--log {text}"))?;
        followed.push((key.name().to_string(), key));
    }
    for path in &args.roots {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let root: Metadata<Root> = Metadata::from_bytes(&bytes)
            .with_context(|| format!("{} is not TUF root metadata", path.display()))?;
        let log = root
            .signed
            .transparency_log()?
            .with_context(|| format!("{} declares no transparency log", path.display()))?;
        followed.push((log.origin, log.key));
    }
    if followed.is_empty() {
        bail!("follow at least one log: --log <verifier key> or --log-from-root <root.json>");
    }
    for (origin, key) in &followed {
        witness.follow(origin, vec![key.clone()]);
    }
    let records = Records::open(&args.state)?;
    let limits = args.connections.limits()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let verifier = witness.verifier().to_string();
    let server = Arc::new(WitnessServer {
        witness,
        records: Mutex::new(records),
    });
    let router = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(server);
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            let address = listener.local_addr().context("reading the bound address")?;
            let origins: Vec<&str> = followed.iter().map(|(o, _)| o.as_str()).collect();
            eprintln!(
                "tufa: witness {verifier} following {} at http://{address}/ (state in {})",
                origins.join(", "),
                args.state.display()
            );
            tufa_index::connections::serve(
                listener,
                router,
                limits,
                crate::index_commands::shutdown_signal(),
            )
            .await
            .context("serving HTTP")
        })
}
