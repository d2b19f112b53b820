//! The witness's decision on a C2SP tlog-witness `add-checkpoint` request, as a pure function
//! of the request, the witness's recorded state for the log, and the time.
//!
//! From c2sp.org/tlog-witness: the body is an old size line (`old <size>`), "zero or more
//! consistency proof lines" (at most 63), an empty line, then the checkpoint. "If the checkpoint
//! origin is unknown, the witness MUST respond with a 404"; "If none of the signatures verify
//! against a trusted public key, ... 403"; "The old size MUST be equal to or lower than the
//! checkpoint size. Otherwise, ... 400"; if the old size does not match the latest cosigned size,
//! "409 Conflict" with that size in decimal and a newline, `Content-Type: text/x.tlog.size`; if
//! the consistency proof does not verify, "422 Unprocessable Entity"; if the sizes are equal and
//! the root hashes differ, "409 Conflict". Otherwise the witness records the checkpoint and
//! answers with its cosignature lines. Checking the old size and recording the new state "must be
//! performed atomically": [`Witness::add_checkpoint`] returns the new state and the caller stores
//! it with a compare-and-swap on the old one.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::checkpoint::Checkpoint;
use crate::merkle::{Hash, ProofError, verify_consistency};
use crate::note::{
    Ed25519Signer, KeyType, MAX_NOTE_BYTES, Note, NoteError, NoteSigner, VerifierKey,
};

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body accepted: the proof lines, the old size line and a checkpoint.
pub const MAX_REQUEST_BYTES: usize = MAX_NOTE_BYTES + 64 * 46;

/// What a witness knows of a log: the size and root hash of the latest checkpoint it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    pub root: Hash,
}

/// A parsed `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint note, as sent.
    pub checkpoint: Vec<u8>,
}

/// Why a witness refuses to cosign, with the HTTP status the specification assigns.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WitnessRefusal {
    #[error("bad add-checkpoint request: {0}")]
    BadRequest(String),
    #[error("this witness does not follow a log with origin {origin:?}")]
    UnknownLog { origin: String },
    #[error("the checkpoint is not signed by a key of log {origin:?}: {reason}")]
    NotSignedByLog { origin: String, reason: NoteError },
    #[error(
        "the request extends size {old_size}, but this witness last cosigned size {known_size}: fetch a proof from {known_size}"
    )]
    Conflict { old_size: u64, known_size: u64 },
    #[error(
        "the log shows two different trees of {size} leaves (roots {known} and {offered}): a fork"
    )]
    Fork {
        size: u64,
        known: String,
        offered: String,
    },
    #[error("the checkpoint does not extend the cosigned tree: {0}")]
    Inconsistent(ProofError),
    #[error("cosigning failed: {0}")]
    Signing(NoteError),
}

impl WitnessRefusal {
    /// The HTTP status code for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::BadRequest(_) => 400,
            WitnessRefusal::UnknownLog { .. } => 404,
            WitnessRefusal::NotSignedByLog { .. } => 403,
            WitnessRefusal::Conflict { .. } | WitnessRefusal::Fork { .. } => 409,
            WitnessRefusal::Inconsistent(_) => 422,
            WitnessRefusal::Signing(_) => 500,
        }
    }

    /// The response body and content type the specification requires, if any: a 409 for an old
    /// size mismatch carries the known size.
    pub fn body(&self) -> Option<(&'static str, String)> {
        match self {
            WitnessRefusal::Conflict { known_size, .. } => {
                Some(("text/x.tlog.size", format!("{known_size}\n")))
            }
            _ => None,
        }
    }
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl AddCheckpoint {
    /// Parses a request body, bounded by [`MAX_REQUEST_BYTES`] and [`MAX_PROOF_LINES`].
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, WitnessRefusal> {
        let bad = |reason: &str| WitnessRefusal::BadRequest(reason.into());
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad("the body is too large"));
        }
        let mut rest = body;
        let mut next_line = || -> Result<&[u8], WitnessRefusal> {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| bad("a line does not end in a newline"))?;
            let line = &rest[..end];
            rest = &rest[end + 1..];
            Ok(line)
        };
        let old = next_line()?;
        let old = std::str::from_utf8(old)
            .ok()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line is not \"old <size>\""))?;
        if old.is_empty()
            || old.len() > 20
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad("the old size is not a decimal without leading zeroes"));
        }
        let old_size: u64 = old.parse().map_err(|_| bad("the old size overflows"))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("a consistency proof line is not a base64 hash"))?;
            proof.push(hash);
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// The request body (what a log sends).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&STANDARD.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// The answer to an accepted request: the state to record (atomically, only if the recorded
/// state is still `previous`) and the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub origin: String,
    pub previous: Option<LogState>,
    pub state: LogState,
    /// The cosignature lines (the 200 response body).
    pub response: String,
}

/// A witness: its cosigning key and the logs it follows (origin → the log's keys).
pub struct Witness<S> {
    signer: NoteSigner<S>,
    logs: BTreeMap<String, Vec<VerifierKey>>,
}

impl<S: Ed25519Signer> Witness<S> {
    /// A witness named `name` cosigning with `key` (verifier key type 0x04).
    pub fn new(name: &str, key: S) -> Result<Self, NoteError> {
        Ok(Witness {
            signer: NoteSigner::new(name, KeyType::Cosignature, key)?,
            logs: BTreeMap::new(),
        })
    }

    /// Follows the log with `origin`, whose checkpoints `keys` sign.
    pub fn follow(&mut self, origin: &str, keys: Vec<VerifierKey>) {
        self.logs.insert(origin.into(), keys);
    }

    /// The key clients configure to check this witness's cosignatures.
    pub fn verifier(&self) -> &VerifierKey {
        self.signer.verifier()
    }

    /// Decides an `add-checkpoint` request. `state` looks up the recorded state of a log by
    /// origin (`None`: never cosigned); `now` is the POSIX time the cosignature carries.
    pub fn add_checkpoint(
        &self,
        body: &[u8],
        state: impl Fn(&str) -> Option<LogState>,
        now: u64,
    ) -> Result<Cosigned, WitnessRefusal> {
        let request = AddCheckpoint::parse(body)?;
        let note = Note::parse(&request.checkpoint)
            .map_err(|e| WitnessRefusal::BadRequest(e.to_string()))?;
        // The origin is read before the signature is checked only to pick the keys to check it
        // with; nothing else of the text is used until the signature verified.
        let origin = note.text.split('\n').next().unwrap_or_default().to_string();
        let keys = self
            .logs
            .get(&origin)
            .ok_or_else(|| WitnessRefusal::UnknownLog {
                origin: origin.clone(),
            })?;
        note.verify(keys)
            .map_err(|reason| WitnessRefusal::NotSignedByLog {
                origin: origin.clone(),
                reason,
            })?;
        let checkpoint =
            Checkpoint::parse(&note.text).map_err(|e| WitnessRefusal::BadRequest(e.to_string()))?;
        if request.old_size > checkpoint.size {
            return Err(WitnessRefusal::BadRequest(format!(
                "old size {} is above the checkpoint's size {}",
                request.old_size, checkpoint.size
            )));
        }
        let previous = state(&origin);
        let known_size = previous.map_or(0, |s| s.size);
        if request.old_size != known_size {
            return Err(WitnessRefusal::Conflict {
                old_size: request.old_size,
                known_size,
            });
        }
        if let Some(known) = previous {
            if known.size == checkpoint.size && known.root != checkpoint.root {
                return Err(WitnessRefusal::Fork {
                    size: known.size,
                    known: hex(&known.root),
                    offered: hex(&checkpoint.root),
                });
            }
            verify_consistency(
                known.size,
                checkpoint.size,
                &request.proof,
                &known.root,
                &checkpoint.root,
            )
            .map_err(WitnessRefusal::Inconsistent)?;
        } else if !request.proof.is_empty() {
            return Err(WitnessRefusal::Inconsistent(ProofError::WrongLength {
                got: request.proof.len(),
                wanted: 0,
            }));
        }
        let signature = self
            .signer
            .sign(&note.text, now)
            .map_err(WitnessRefusal::Signing)?;
        Ok(Cosigned {
            origin,
            previous,
            state: LogState {
                size: checkpoint.size,
                root: checkpoint.root,
            },
            response: signature.line(),
        })
    }
}

/// A witness's records in memory (the `tufa witness` command keeps them in a database; tests
/// and single-process witnesses can use this).
#[derive(Debug, Clone, Default)]
pub struct WitnessState {
    logs: BTreeMap<String, LogState>,
}

impl WitnessState {
    pub fn get(&self, origin: &str) -> Option<LogState> {
        self.logs.get(origin).copied()
    }

    /// Records an accepted request, if the state it was decided on is still the recorded one
    /// (returns false when another request won the race; decide again).
    pub fn record(&mut self, cosigned: &Cosigned) -> bool {
        if self.get(&cosigned.origin) != cosigned.previous {
            return false;
        }
        self.logs.insert(cosigned.origin.clone(), cosigned.state);
        true
    }
}
