//! `tufa monitor URL`: replays an index's transparency log against its TUF metadata history.
//!
//! The log records every timestamp the index published. A monitor rebuilds the whole tree from
//! the served entry bundles (trusting no tile), checks that it hashes to the checkpoint the
//! log key of the newest root signed (the root given, then every later version the index serves,
//! each accepted as a TUF client accepts it) and that this checkpoint extends the one the previous run saw (the
//! state directory), then reads each entry back against the metadata: the timestamp served now
//! is the one logged for its version, every logged snapshot is the `N.snapshot.json` the index
//! serves, signed by the snapshot keys of one of those roots, and from those snapshots every version of every
//! bin role and every project page is listed. A fork (history rewritten, two timestamps of one
//! version, a snapshot that differs from the logged one) or a gap (a timestamp version the log
//! skipped, a served timestamp it lacks) ends the run with an error naming it, and the state
//! is left as the last good run saw it, so the next run finds it again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tufa_client::transparency::declared_log;
use tufa_client::trusted::RootUpdate;
use tufa_client::{FetchError, Fetcher, HttpFetcher};
use tufa_metadata::{Metadata, Root, Snapshot, Targets, Timestamp, TransparencyLog};
use tufa_tlog::tiles::{Tile, encode_bundle};
use tufa_tlog::{Checkpoint, Policy, Replay, TimestampEntry};

use crate::log_policy::WitnessArgs;

#[derive(Args)]
pub struct MonitorArgs {
    /// Base URL of the Tufa index (the log under `/tuf/log/`, metadata under `/tuf/metadata/`).
    url: String,
    /// The index's root metadata, obtained out of band (any version): the monitor follows the
    /// later versions the index serves, and the newest names the log and its key.
    #[arg(long)]
    root: PathBuf,
    /// Where the monitor keeps what it saw, so that the next run continues from there and finds
    /// a history rewritten since.
    #[arg(long)]
    state: PathBuf,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

/// What a run keeps for the next one.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// The last checkpoint note verified.
    checkpoint: Option<String>,
    /// Every entry replayed, in order (timestamp entries are text).
    entries: Vec<String>,
    /// SHA-256 of each snapshot version read.
    snapshots: BTreeMap<u64, String>,
    /// The versions of each targets role read.
    roles: BTreeMap<String, BTreeSet<u64>>,
    /// Every version of every target (project page) seen, by path.
    pages: BTreeMap<String, Vec<PageVersion>>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PageVersion {
    sha256: String,
    length: u64,
    /// The first snapshot that lists it.
    snapshot: u64,
    /// Whether the index still serves it, with that hash.
    reached: bool,
}

const STATE_FILE: &str = "monitor.json";
/// Bounds on what the index serves the monitor.
const MAX_CHECKPOINT: u64 = 64 * 1024;
const MAX_BUNDLE: u64 = 256 * (2 + tufa_tlog::entry::MAX_TIMESTAMP_ENTRY_BYTES as u64);
const MAX_METADATA: u64 = 16 * 1024 * 1024;
const MAX_PAGE: u64 = 64 * 1024 * 1024;

fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Index {
    url: String,
    fetcher: HttpFetcher,
}

impl Index {
    /// `Ok(None)` for a file the index does not serve (404, 403).
    fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/tuf/{path}", self.url);
        match self.fetcher.fetch(&url, limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(FetchError::Status(403 | 404)) => Ok(None),
            Err(FetchError::Status(status)) => bail!("fetching {url}: HTTP status {status}"),
            Err(FetchError::TooLarge) => bail!("fetching {url}: more than {limit} bytes"),
            Err(FetchError::Transport(message)) => bail!("fetching {url}: {message}"),
        }
    }

    fn require(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        self.get(path, limit)?
            .with_context(|| format!("the index does not serve {}/tuf/{path}", self.url))
    }
}

fn load_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading the monitor state {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_state(dir: &Path, state: &State) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(STATE_FILE);
    let temp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&temp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))
}

/// The replay of the entries a previous run saw, checked against the checkpoint it saved.
fn replay_saved(log: &TransparencyLog, state: &State) -> Result<(Replay, Option<Checkpoint>)> {
    let mut replay = Replay::new();
    let size = state.entries.len() as u64;
    for (n, chunk) in state.entries.chunks(256).enumerate() {
        let tile = Tile::in_tree(0, n as u64, size).context("the saved entries do not tile")?;
        replay.feed(&tile, &encode_bundle(chunk)?)?;
    }
    let Some(note) = &state.checkpoint else {
        return Ok((replay, None));
    };
    let saved = tufa_tlog::SignedCheckpoint::open(note.as_bytes(), std::slice::from_ref(&log.key))
        .context("the saved checkpoint is not signed by the root's log key")?;
    replay
        .check(&saved.checkpoint)
        .context("the saved state does not match its checkpoint")?;
    Ok((replay, Some(saved.checkpoint)))
}

pub fn run(args: MonitorArgs) -> Result<()> {
    let root_bytes =
        std::fs::read(&args.root).with_context(|| format!("reading {}", args.root.display()))?;
    let index = Index {
        url: args.url.trim_end_matches('/').to_string(),
        fetcher: HttpFetcher::default(),
    };
    let roots = root_chain(&index, &root_bytes)
        .with_context(|| format!("following the root {}", args.root.display()))?;
    let newest = roots.last().context("no root")?;
    let log = declared_log(newest)?.with_context(|| {
        format!(
            "root version {} declares no transparency log",
            newest.signed.version
        )
    })?;
    let mut state = load_state(&args.state)?;
    let (mut replay, last) = replay_saved(&log, &state).with_context(|| {
        format!(
            "if root now declares another log than {}, monitor it with a new --state directory",
            log.origin
        )
    })?;

    // The log is written before the timestamp: read the timestamp first, and the checkpoint
    // fetched after it records it.
    let served_timestamp = index.require("metadata/timestamp.json", 16_384)?;
    let note = index.require("log/checkpoint", MAX_CHECKPOINT)?;
    let witnesses = args.witnesses.witnesses()?;
    let policy = Policy::new(
        &log.origin,
        log.key.clone(),
        witnesses.keys,
        witnesses.quorum,
    )?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let accepted = policy
        .accept(None, &note, &[], now)
        .with_context(|| format!("the log's checkpoint {}/tuf/log/checkpoint", index.url))?;
    let checkpoint = accepted.checkpoint;
    if let Some(last) = &last
        && checkpoint.size < last.size
    {
        bail!(
            "fork: the log now has {} entries, but had {} at the last run (log rollback)",
            checkpoint.size,
            last.size
        );
    }
    let first_new = replay.size();
    let mut new_entries = Vec::new();
    for tile in replay.bundles_to_fetch(checkpoint.size) {
        let bundle = index.require(&format!("log/{}", tile.entries_path()), MAX_BUNDLE)?;
        let (_, entries) = replay
            .feed(&tile, &bundle)
            .map_err(|e| anyhow::anyhow!("fork: {e}"))?;
        new_entries.extend(entries);
    }
    replay.check(&checkpoint).map_err(|e| {
        anyhow::anyhow!(
            "fork: the log's history does not extend what the last run saw, or its entries are \
             not those it signed: {e}"
        )
    })?;

    let mut findings = Vec::new();
    let mut entries: Vec<TimestampEntry> = Vec::new();
    for (i, text) in state.entries.iter().enumerate() {
        entries.push(
            TimestampEntry::parse(text.as_bytes())
                .with_context(|| format!("saved entry {i} is not a timestamp entry"))?,
        );
    }
    for (offset, bytes) in new_entries.iter().enumerate() {
        let index_of = first_new + offset as u64;
        let entry = match TimestampEntry::parse(bytes) {
            Ok(entry) => entry,
            Err(e) => {
                findings.push(format!("forged entry {index_of}: {e}"));
                continue;
            }
        };
        if let Some(previous) = entries.last() {
            if entry.version <= previous.version {
                findings.push(format!(
                    "fork: entry {index_of} logs timestamp version {} after version {}: two \
                     histories of timestamps",
                    entry.version, previous.version
                ));
            } else if entry.version > previous.version + 1 {
                findings.push(format!(
                    "gap: the log skips timestamp versions {} to {} (entry {index_of}): \
                     timestamps published without being logged",
                    previous.version + 1,
                    entry.version - 1
                ));
            }
            if entry.snapshot_version < previous.snapshot_version {
                findings.push(format!(
                    "fork: entry {index_of} names snapshot {} after snapshot {}",
                    entry.snapshot_version, previous.snapshot_version
                ));
            }
        }
        entries.push(entry);
        state
            .entries
            .push(String::from_utf8_lossy(bytes).into_owned());
    }

    let timestamp = Metadata::<Timestamp>::from_bytes(&served_timestamp)
        .context("the served timestamp.json does not parse")?;
    let served_version = timestamp.signed.version;
    match entries.iter().rev().find(|e| e.version == served_version) {
        None => findings.push(format!(
            "gap: the index serves timestamp version {served_version}, which the log does not \
             record"
        )),
        Some(logged) if hex(&logged.sha256) != sha256_hex(&served_timestamp) => {
            findings.push(format!(
                "split view: the index serves a timestamp version {served_version} other than \
                 the one logged (sha256 {} logged, {} served)",
                hex(&logged.sha256),
                sha256_hex(&served_timestamp)
            ))
        }
        Some(_) => {}
    }

    let mut new_snapshots = 0;
    for (offset, entry) in entries.iter().enumerate() {
        let version = entry.snapshot_version;
        if let Some(seen) = state.snapshots.get(&version) {
            if let Some(logged) = entry.snapshot_sha256
                && hex(&logged) != *seen
            {
                findings.push(format!(
                    "forged entry {offset}: it logs snapshot {version} with sha256 {}, the \
                     index published {seen}",
                    hex(&logged)
                ));
            }
            continue;
        }
        match check_snapshot(&index, &roots, entry, &mut state) {
            Ok(()) => new_snapshots += 1,
            Err(e) => findings.push(format!("forged entry {offset}: {e:#}")),
        }
    }

    print_report(&log, &checkpoint, &accepted.cosigned_by, &entries, &state);
    eprintln!(
        "tufa: {} new entries, {new_snapshots} new snapshots read this run",
        new_entries.len()
    );
    if !findings.is_empty() {
        bail!(
            "the log does not match the index's history ({} findings):\n  {}",
            findings.len(),
            findings.join("\n  ")
        );
    }
    state.checkpoint = Some(String::from_utf8_lossy(&note).into_owned());
    save_state(&args.state, &state)
}

/// Rotations of root followed at most, as the client allows.
const MAX_ROOT_ROTATIONS: u32 = 256;

/// The root given and every later version the index serves, each accepted as a client accepts
/// it (TUF 5.3: signed by a threshold of the previous root's keys and of its own). A snapshot
/// the log reaches was signed under one of them: before an online-key rotation by the old key,
/// after it by the new one.
fn root_chain(index: &Index, root_bytes: &[u8]) -> Result<Vec<Metadata<Root>>> {
    let mut update = RootUpdate::new(root_bytes, SystemTime::now())?;
    let mut roots = vec![update.root().clone()];
    for _ in 0..MAX_ROOT_ROTATIONS {
        let next = update.root().signed.version + 1;
        let path = format!("metadata/{next}.root.json");
        let Some(bytes) = index.get(&path, MAX_METADATA)? else {
            break;
        };
        update
            .update_root(&bytes)
            .with_context(|| format!("{}/tuf/{path} is not a root clients accept", index.url))?;
        roots.push(update.root().clone());
    }
    Ok(roots)
}

/// Reads the snapshot `entry` names, checks it against the entry and the snapshot keys of the
/// roots, and records every targets role version and page version it lists.
fn check_snapshot(
    index: &Index,
    roots: &[Metadata<Root>],
    entry: &TimestampEntry,
    state: &mut State,
) -> Result<()> {
    let version = entry.snapshot_version;
    let path = format!("metadata/{version}.snapshot.json");
    let bytes = index.get(&path, MAX_METADATA)?.with_context(|| {
        format!(
            "it logs snapshot {version}, which the index does not serve at {}/tuf/{path}",
            index.url
        )
    })?;
    let sha256 = sha256_hex(&bytes);
    if let Some(logged) = entry.snapshot_sha256
        && hex(&logged) != sha256
    {
        bail!(
            "it logs snapshot {version} with sha256 {}, the index serves one with {sha256}: \
             two snapshots of one version",
            hex(&logged)
        );
    }
    let snapshot = Metadata::<Snapshot>::from_bytes(&bytes)
        .with_context(|| format!("snapshot {version} does not parse"))?;
    if !roots
        .iter()
        .rev()
        .any(|root| root.signed.verify_delegate("snapshot", &snapshot).is_ok())
    {
        bail!(
            "snapshot {version} is not signed by the snapshot keys of any root from version {} \
             to {}",
            roots.first().map_or(0, |r| r.signed.version),
            roots.last().map_or(0, |r| r.signed.version)
        );
    }
    for (file, meta) in &snapshot.signed.meta {
        let Some(role) = file.strip_suffix(".json") else {
            continue;
        };
        if !state
            .roles
            .entry(role.to_string())
            .or_default()
            .insert(meta.version)
        {
            continue;
        }
        let path = format!("metadata/{}.{role}.json", meta.version);
        let limit = meta.length.unwrap_or(MAX_METADATA).min(MAX_METADATA);
        let Some(bytes) = index.get(&path, limit)? else {
            continue;
        };
        if let Some(expected) = meta.hashes.as_ref().and_then(|h| h.get("sha256"))
            && expected.as_str() != sha256_hex(&bytes)
        {
            bail!("snapshot {version} lists {path} with another sha256 than the index serves");
        }
        let targets = Metadata::<Targets>::from_bytes(&bytes)
            .with_context(|| format!("{path} does not parse"))?;
        for (target, file) in &targets.signed.targets {
            let Some(sha256) = file.hashes.get("sha256").map(|h| h.as_str().to_string()) else {
                continue;
            };
            let versions = state.pages.entry(target.as_str().to_string()).or_default();
            if versions.iter().any(|v| v.sha256 == sha256) {
                continue;
            }
            let reached = reach_page(index, target.as_str(), &sha256, file.length);
            versions.push(PageVersion {
                sha256,
                length: file.length,
                snapshot: version,
                reached,
            });
        }
    }
    state.snapshots.insert(version, sha256);
    Ok(())
}

/// Whether the index still serves the page version (under consistent snapshots, at
/// `<dir>/<sha256>.<name>`) with its hash.
fn reach_page(index: &Index, target: &str, sha256: &str, length: u64) -> bool {
    let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
    let path = if dir.is_empty() {
        format!("targets/{sha256}.{name}")
    } else {
        format!("targets/{dir}/{sha256}.{name}")
    };
    matches!(
        index.get(&path, length.min(MAX_PAGE)),
        Ok(Some(bytes)) if sha256_hex(&bytes) == sha256
    )
}

fn print_report(
    log: &TransparencyLog,
    checkpoint: &Checkpoint,
    cosigned_by: &[String],
    entries: &[TimestampEntry],
    state: &State,
) {
    println!(
        "log {}: {} entries, checkpoint verified{}",
        log.origin,
        checkpoint.size,
        if cosigned_by.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", cosigned_by.join(", "))
        }
    );
    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
        println!(
            "timestamps {} to {}, snapshots {} to {}",
            first.version, last.version, first.snapshot_version, last.snapshot_version
        );
    }
    let versions: usize = state.pages.values().map(Vec::len).sum();
    println!(
        "{} targets, {versions} versions ever published:",
        state.pages.len()
    );
    for (target, versions) in &state.pages {
        for v in versions {
            println!(
                "{target} sha256 {} length {} snapshot {}{}",
                v.sha256,
                v.length,
                v.snapshot,
                if v.reached { "" } else { " (no longer served)" }
            );
        }
    }
}
