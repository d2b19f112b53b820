//! `log/proof/<V>`, the document a Tufa index serves beside each timestamp (contract 2 of the
//! log's layout): the timestamp's entry, its inclusion in the checkpoint of size `index + 1`,
//! that checkpoint's consistency with the one published before it, and the cosigned checkpoint.
//! Read by clients, and by the publisher to find a proof a crash left incomplete.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::checkpoint::Checkpoint;
use crate::merkle::Hash;
use crate::note::Note;

/// At most this many bytes of `log/proof/<V>`: a checkpoint note (at most 64 KiB) and two proofs
/// of at most 64 hashes each, in base64.
pub const MAX_PROOF_BYTES: u64 = 96 * 1024;

/// `log/proof/<V>` as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogProof {
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion: Vec<Hash>,
    pub previous_size: u64,
    pub consistency: Vec<Hash>,
    pub checkpoint: Vec<u8>,
}

#[derive(Deserialize)]
struct RawProof {
    index: u64,
    entry: String,
    inclusion: Vec<String>,
    previous_size: u64,
    consistency: Vec<String>,
    checkpoint: String,
}

impl LogProof {
    pub fn parse(bytes: &[u8]) -> Result<LogProof, String> {
        if bytes.len() as u64 > MAX_PROOF_BYTES {
            return Err(format!("more than {MAX_PROOF_BYTES} bytes"));
        }
        let raw: RawProof = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let hashes = |list: Vec<String>| -> Result<Vec<Hash>, String> {
            list.iter()
                .map(|text| {
                    STANDARD
                        .decode(text)
                        .ok()
                        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
                        .ok_or_else(|| format!("{text:?} is not a base64 SHA-256 hash"))
                })
                .collect()
        };
        Ok(LogProof {
            index: raw.index,
            entry: STANDARD
                .decode(&raw.entry)
                .map_err(|e| format!("entry: {e}"))?,
            inclusion: hashes(raw.inclusion)?,
            previous_size: raw.previous_size,
            consistency: hashes(raw.consistency)?,
            checkpoint: raw.checkpoint.into_bytes(),
        })
    }

    /// The size of the checkpoint the proof carries, read without verifying it (the client's
    /// rule verifies it), to know which consistency proof that rule needs.
    pub fn claimed_size(&self) -> Option<u64> {
        let note = Note::parse(&self.checkpoint).ok()?;
        Checkpoint::parse(&note.text).ok().map(|c| c.size)
    }
}
