//! The transparency log, client side: when the trusted root declares a log
//! (`x-tufa-transparency-log`), a new timestamp counts only with proof that the log recorded it,
//! in a checkpoint signed by the root's log key, cosigned by the configured witnesses and
//! consistent with the last checkpoint this client accepted.
//!
//! An attacker holding the online keys can sign a timestamp for one victim alone (a split view),
//! but cannot put it in the public log without everyone seeing it; with the log key too, it
//! cannot get honest witnesses to cosign a history that forks from the one they saw. A root
//! without a log keeps plain TUF.
//!
//! The rule ([`accept_timestamp`]) is pure; [`crate::Updater`] does the fetching: the proof
//! `log/proof/<version>` (one request per new timestamp), and the tiles of a consistency proof
//! only when the client's last checkpoint is not the one the index published just before.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{read_optional, write_atomic};
use crate::error::{Error, Result};
use crate::fetcher::Fetcher;
use crate::updater::Updater;
use tufa_metadata::{Metadata, Root, Timestamp, TransparencyLog};
pub use tufa_tlog::proof::{LogProof, MAX_PROOF_BYTES};
use tufa_tlog::{
    Accepted, Checkpoint, ClientError, Hash, Policy, SignedCheckpoint, TileHashReader, TileReader,
    TimestampEntry, VerifierKey, consistency_proof, tiles::Tile,
};

/// The witnesses this client requires, and how many of them must cosign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Witnesses {
    /// Cosignature (type 0x04) verifier keys, `<name>+<key ID>+<base64>`.
    pub keys: Vec<VerifierKey>,
    /// How many of `keys` must have cosigned a checkpoint; at most their number.
    pub quorum: usize,
}

/// Why a timestamp is refused for want of a log proof. The texts name the attack.
#[derive(Debug, thiserror::Error)]
pub enum TransparencyError {
    #[error("the trusted root's transparency log cannot be used: {0}")]
    Declaration(String),
    #[error(
        "unlogged timestamp: version {version} comes with no proof that the transparency log \
         {origin} recorded it (HTTP {status}): a view shown to this client only"
    )]
    NoProof {
        version: u64,
        origin: String,
        status: u16,
    },
    #[error("the log proof of timestamp version {version} is malformed: {reason}")]
    MalformedProof { version: u64, reason: String },
    #[error(
        "split view: the transparency log recorded another timestamp as version {version} \
         ({logged}); the one served was never logged, so someone is showing this client a \
         private view"
    )]
    NotLogged { version: u64, logged: String },
    #[error("transparency log {origin}: {source}")]
    Refused {
        origin: String,
        #[source]
        source: ClientError,
    },
}

/// The log `root` declares (`x-tufa-transparency-log`), or `None` for a root without one. A
/// declaration that does not parse is an error, never "no log": that would turn the check off.
pub fn declared_log(root: &Metadata<Root>) -> Result<Option<TransparencyLog>, TransparencyError> {
    root.signed
        .transparency_log()
        .map_err(|e| TransparencyError::Declaration(e.to_string()))
}

/// Where the consistency proof from the client's last checkpoint comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsistencyFrom {
    /// The proof carries it (or none is needed: a first checkpoint, the same size, or a smaller
    /// one the rule refuses as a rollback).
    Proof(Vec<Hash>),
    /// The client is further behind: build it from the log's tiles, `old` to `new` leaves.
    Tiles { old: u64, new: u64 },
}

/// Which consistency proof [`accept_timestamp`] needs for `proof`, given the client's `last`
/// checkpoint.
pub fn consistency_needed(last: Option<&Checkpoint>, proof: &LogProof) -> ConsistencyFrom {
    let (Some(last), Some(new)) = (last, proof.claimed_size()) else {
        return ConsistencyFrom::Proof(Vec::new());
    };
    if last.size == proof.previous_size {
        ConsistencyFrom::Proof(proof.consistency.clone())
    } else if last.size >= new || last.size == 0 {
        ConsistencyFrom::Proof(Vec::new())
    } else {
        ConsistencyFrom::Tiles {
            old: last.size,
            new,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The rule: the verified `timestamp` bytes count only if `proof` shows their entry
/// ([`TimestampEntry`]) included in a checkpoint that `log`'s key signed, that `witnesses`
/// cosigned, and that extends `last` (by `consistency`, from [`consistency_needed`]).
pub fn accept_timestamp(
    log: &TransparencyLog,
    witnesses: &Witnesses,
    last: Option<&Checkpoint>,
    timestamp: &[u8],
    proof: &LogProof,
    consistency: &[Hash],
    now: SystemTime,
) -> Result<Accepted, TransparencyError> {
    let metadata = Metadata::<Timestamp>::from_bytes(timestamp).map_err(|e| {
        TransparencyError::MalformedProof {
            version: 0,
            reason: format!("the timestamp does not parse: {e}"),
        }
    })?;
    let version = metadata.signed.version;
    let refused = |source| TransparencyError::Refused {
        origin: log.origin.clone(),
        source,
    };
    let served = TimestampEntry::of(timestamp, version, 0, None);
    let logged =
        TimestampEntry::parse(&proof.entry).map_err(|e| TransparencyError::MalformedProof {
            version,
            reason: e.to_string(),
        })?;
    let snapshot = &metadata.signed.snapshot_meta;
    let snapshot_sha256 = snapshot
        .hashes
        .as_ref()
        .and_then(|h| h.get("sha256"))
        .map(|h| h.as_str().to_string());
    let same_snapshot = logged.snapshot_version == snapshot.version
        && logged
            .snapshot_sha256
            .is_none_or(|h| snapshot_sha256.as_deref() == Some(hex(&h).as_str()));
    if logged.version != version || logged.sha256 != served.sha256 || !same_snapshot {
        return Err(TransparencyError::NotLogged {
            version,
            logged: format!(
                "version {} with sha256 {}",
                logged.version,
                hex(&logged.sha256)
            ),
        });
    }
    let policy = Policy::new(
        &log.origin,
        log.key.clone(),
        witnesses.keys.clone(),
        witnesses.quorum,
    )
    .map_err(refused)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let accepted = policy
        .accept(last, &proof.checkpoint, consistency, now)
        .map_err(refused)?;
    Policy::verify_entry(
        &accepted.checkpoint,
        &proof.entry,
        proof.index,
        &proof.inclusion,
    )
    .map_err(refused)?;
    Ok(accepted)
}

/// The last checkpoint this client accepted, from its saved note: `None` when there is none, or
/// when it is not a checkpoint of `log` (a root rotation declared another log).
pub fn last_checkpoint(log: &TransparencyLog, saved: Option<&[u8]>) -> Option<Checkpoint> {
    let opened = SignedCheckpoint::open(saved?, std::slice::from_ref(&log.key)).ok()?;
    (opened.checkpoint.origin == log.origin).then_some(opened.checkpoint)
}

/// Builds the consistency proof `old` -> `new` from tiles `read` returns, keeping the first
/// error of `read` (a fetch failure is the caller's to classify, not a split view).
pub fn consistency_from_tiles<E>(
    old: u64,
    new: u64,
    read: impl Fn(&Tile) -> Result<Vec<u8>, E>,
) -> Result<Result<Vec<Hash>, tufa_tlog::ProofError>, E> {
    struct Reader<R, E> {
        read: R,
        failure: RefCell<Option<E>>,
    }
    impl<R: Fn(&Tile) -> Result<Vec<u8>, E>, E> TileReader for Reader<R, E> {
        fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String> {
            (self.read)(tile).map_err(|e| {
                self.failure.borrow_mut().get_or_insert(e);
                format!("tile {tile} could not be fetched")
            })
        }
    }
    let reader = Reader {
        read,
        failure: RefCell::new(None),
    };
    let proof = {
        let hashes = TileHashReader::new(new, &reader);
        consistency_proof(&hashes, old, new)
    };
    match reader.failure.into_inner() {
        Some(failure) => Err(failure),
        None => Ok(proof),
    }
}

/// The file in the metadata directory holding the note of the last checkpoint accepted.
const LAST_CHECKPOINT_FILE: &str = "log.checkpoint";

/// The log's files sit next to the metadata: `<index>/tuf/log/` for `<index>/tuf/metadata/`.
fn log_url(metadata_url: &str) -> String {
    let trimmed = metadata_url.trim_end_matches('/');
    let parent = trimmed
        .rsplit_once('/')
        .map_or(trimmed, |(parent, _)| parent);
    format!("{parent}/log/")
}

impl<F: Fetcher + Clone> Updater<F> {
    /// Refuses the newly verified `timestamp` unless the log `root` declares recorded it (see
    /// [`accept_timestamp`]); then saves the accepted checkpoint, durably, as the one the next
    /// timestamp must extend. Nothing is fetched when `root` declares no log.
    pub(crate) fn check_log(
        &self,
        root: &Metadata<Root>,
        timestamp: &[u8],
        now: SystemTime,
    ) -> Result<()> {
        let Some(log) = declared_log(root)? else {
            return Ok(());
        };
        let version = Metadata::<Timestamp>::from_bytes(timestamp)
            .map_err(|source| Error::InvalidMetadata {
                role: "timestamp".into(),
                source,
            })?
            .signed
            .version;
        let base = log_url(&self.metadata_url);
        let bytes = match self.fetch(&format!("{base}proof/{version}"), MAX_PROOF_BYTES) {
            Err(Error::HttpStatus {
                status: status @ (403 | 404),
                ..
            }) => {
                return Err(TransparencyError::NoProof {
                    version,
                    origin: log.origin,
                    status,
                }
                .into());
            }
            other => other?,
        };
        let proof = LogProof::parse(&bytes)
            .map_err(|reason| TransparencyError::MalformedProof { version, reason })?;
        let saved_path = self.cache.path().join(LAST_CHECKPOINT_FILE);
        let saved = read_optional(&saved_path)?;
        let last = last_checkpoint(&log, saved.as_deref());
        let consistency = match consistency_needed(last.as_ref(), &proof) {
            ConsistencyFrom::Proof(hashes) => hashes,
            ConsistencyFrom::Tiles { old, new } => {
                consistency_from_tiles(old, new, |tile| {
                    self.fetch(&format!("{base}{}", tile.path()), tile.byte_len() as u64)
                })?
                // A proof the served tiles cannot make is one the rule refuses as a split view.
                .unwrap_or_default()
            }
        };
        let accepted = accept_timestamp(
            &log,
            &self.config().witnesses,
            last.as_ref(),
            timestamp,
            &proof,
            &consistency,
            now,
        )?;
        write_atomic(&saved_path, &accepted.note.to_bytes(), true)
    }
}
