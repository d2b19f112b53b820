//! The client's rule for a new checkpoint: signed by the log key, cosigned by at least a quorum
//! of the configured witnesses, and consistent with the last checkpoint this client accepted.
//! Then an entry counts only with an inclusion proof in an accepted checkpoint.
//!
//! The rule is what stops a split view: an attacker holding the index's online keys (even the
//! log key) can show one client a private history, but that history cannot be consistent with
//! what the witnesses cosigned for everyone else, so no quorum of honest witnesses cosigns it;
//! and a client that has seen the public history refuses anything that does not extend it.

use thiserror::Error;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::merkle::{Hash, ProofError, leaf_hash, verify_consistency, verify_inclusion};
use crate::note::{KeyType, Note, NoteError, VerifierKey};

/// Cosignatures dated further than this into the client's future do not count.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// Why a client refuses a checkpoint or an entry.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("the checkpoint is malformed: {0}")]
    Malformed(NoteError),
    #[error("the checkpoint is not signed by the log key {log}: {reason} (a forged checkpoint)")]
    NotSignedByLog { log: String, reason: NoteError },
    #[error("the checkpoint is for log {got:?}, not {expected:?}: a checkpoint of another log")]
    WrongOrigin { expected: String, got: String },
    #[error(
        "log rollback: the checkpoint has {offered} leaves, but this client already saw {seen}: the log is serving an old view"
    )]
    LogRollback { seen: u64, offered: u64 },
    #[error(
        "split view: the log's checkpoint of {offered} leaves does not extend the one of {seen} leaves this client saw ({reason}): someone is showing this client a private history"
    )]
    SplitView {
        seen: u64,
        offered: u64,
        reason: ProofError,
    },
    #[error(
        "missing cosignatures: {have} of the {need} witness cosignatures required; lacking {}",
        lacking.join(", ")
    )]
    MissingCosignatures {
        have: usize,
        need: usize,
        lacking: Vec<String>,
    },
    #[error(
        "a cosignature attributed to a configured witness does not verify ({0}): a forged cosignature"
    )]
    ForgedCosignature(NoteError),
    #[error("the entry is not in the accepted log: {0}")]
    NotIncluded(ProofError),
    #[error("bad client policy: {0}")]
    Policy(&'static str),
}

/// What a client trusts: the log (origin and key), the witnesses, and how many of them must
/// cosign.
#[derive(Debug, Clone)]
pub struct Policy {
    origin: String,
    log_key: VerifierKey,
    witnesses: Vec<VerifierKey>,
    quorum: usize,
}

/// A checkpoint the client accepted, with the witnesses that cosigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub checkpoint: Checkpoint,
    /// The note as received (log signature and cosignatures), to keep as evidence.
    pub note: Note,
    pub cosigned_by: Vec<String>,
}

impl Policy {
    /// `log_key` must be an Ed25519 note key (type 0x01), `witnesses` cosignature keys (type
    /// 0x04), and `quorum` at most their number.
    pub fn new(
        origin: &str,
        log_key: VerifierKey,
        witnesses: Vec<VerifierKey>,
        quorum: usize,
    ) -> Result<Self, ClientError> {
        if log_key.kind() != KeyType::Ed25519 {
            return Err(ClientError::Policy(
                "the log key is not an Ed25519 note key",
            ));
        }
        if witnesses.iter().any(|w| w.kind() != KeyType::Cosignature) {
            return Err(ClientError::Policy(
                "a witness key is not a cosignature (type 4) key",
            ));
        }
        if quorum > witnesses.len() {
            return Err(ClientError::Policy(
                "the quorum is larger than the number of witnesses",
            ));
        }
        Ok(Policy {
            origin: origin.into(),
            log_key,
            witnesses,
            quorum,
        })
    }

    /// Decides whether to accept the checkpoint note `bytes`. `last` is the last checkpoint this
    /// client accepted (`None` the first time); `consistency` is the proof from `last`'s size to
    /// the new one; `now` is the client's POSIX time.
    pub fn accept(
        &self,
        last: Option<&Checkpoint>,
        bytes: &[u8],
        consistency: &[Hash],
        now: u64,
    ) -> Result<Accepted, ClientError> {
        let signed = SignedCheckpoint::open(bytes, std::slice::from_ref(&self.log_key)).map_err(
            |reason| match reason {
                NoteError::InvalidSignature { .. } | NoteError::NoTrustedSignature { .. } => {
                    ClientError::NotSignedByLog {
                        log: self.log_key.to_string(),
                        reason,
                    }
                }
                other => ClientError::Malformed(other),
            },
        )?;
        let checkpoint = signed.checkpoint;
        if checkpoint.origin != self.origin {
            return Err(ClientError::WrongOrigin {
                expected: self.origin.clone(),
                got: checkpoint.origin,
            });
        }
        if let Some(last) = last {
            if checkpoint.size < last.size {
                return Err(ClientError::LogRollback {
                    seen: last.size,
                    offered: checkpoint.size,
                });
            }
            verify_consistency(
                last.size,
                checkpoint.size,
                consistency,
                &last.root,
                &checkpoint.root,
            )
            .map_err(|reason| ClientError::SplitView {
                seen: last.size,
                offered: checkpoint.size,
                reason,
            })?;
        }
        let cosigned_by = self.cosigners(&signed.note, now)?;
        if cosigned_by.len() < self.quorum {
            return Err(ClientError::MissingCosignatures {
                have: cosigned_by.len(),
                need: self.quorum,
                lacking: self
                    .witnesses
                    .iter()
                    .map(|w| w.name().to_string())
                    .filter(|n| !cosigned_by.contains(n))
                    .collect(),
            });
        }
        Ok(Accepted {
            checkpoint,
            note: signed.note,
            cosigned_by,
        })
    }

    /// The configured witnesses whose cosignature on `note` verifies and is not dated in the
    /// future. A cosignature by a configured witness that fails to verify refuses the note.
    fn cosigners(&self, note: &Note, now: u64) -> Result<Vec<String>, ClientError> {
        if self.witnesses.is_empty() {
            return Ok(Vec::new());
        }
        match note.verify(&self.witnesses) {
            Ok(verified) => Ok(verified
                .into_iter()
                .filter(|(_, time)| time.is_some_and(|t| t <= now + MAX_CLOCK_SKEW_SECS))
                .map(|(key, _)| key.name().to_string())
                .collect()),
            Err(NoteError::NoTrustedSignature { .. }) => Ok(Vec::new()),
            Err(reason) => Err(ClientError::ForgedCosignature(reason)),
        }
    }

    /// Checks that `entry` is leaf `index` of the accepted checkpoint.
    pub fn verify_entry(
        accepted: &Checkpoint,
        entry: &[u8],
        index: u64,
        proof: &[Hash],
    ) -> Result<(), ClientError> {
        verify_inclusion(
            &leaf_hash(entry),
            index,
            accepted.size,
            proof,
            &accepted.root,
        )
        .map_err(ClientError::NotIncluded)
    }
}
