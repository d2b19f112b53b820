//! Rekor v1 transparency log entries (`dev.sigstore.rekor.v1.TransparencyLogEntry` in its
//! protobuf JSON form, as PEP 740's `transparency_entries` carry them).
//!
//! For every entry this checks, offline:
//! * the log is one the trust root lists (by `logId.keyId`), and its key was valid at the entry's
//!   `integratedTime`;
//! * the signed entry timestamp (`inclusionPromise.signedEntryTimestamp`): the log key's signature
//!   over the RFC 8785 JSON `{"body","integratedTime","logID","logIndex"}` of this entry. It is what
//!   makes `integratedTime` trustworthy, and that time is the one the certificate is checked at, so
//!   an entry without it is refused (sigstore-python likewise needs it as its time source when
//!   there is no timestamp authority);
//! * the inclusion proof: RFC 6962 leaf hash of the canonicalized body, chained through
//!   `inclusionProof.hashes` to `inclusionProof.rootHash` for `logIndex`/`treeSize`;
//! * the checkpoint (a signed note): its signature by the same log key, and that its tree size and
//!   root hash are the proof's.
//!
//! Not checked: consistency between this checkpoint and any other checkpoint of the log (that
//! needs a witness or an online monitor), the checkpoint's origin line (signed, but not compared
//! with anything), and the signer name on the note's signature line (a label; the key hint and
//! the signature are what identify the log).
//!
//! The RFC 6962 arithmetic and the signed-note parsing are `tufa-tlog`'s (Tufa's own
//! transparency log), rather than the `sigstore` crate's, which would bring its HTTP and async
//! stack along (see the crate documentation).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::Error;
use crate::trust::{LogKey, TrustRoot};

/// A Merkle path longer than this cannot belong to a tree of fewer than 2^64 leaves.
const MAX_PROOF_HASHES: usize = 64;

/// A protobuf-JSON int64: a string, or a number from less careful encoders.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Text(String),
    Number(i64),
}

impl Int64 {
    fn get(&self, path: &str) -> Result<i64, Error> {
        match self {
            Int64::Number(n) => Ok(*n),
            Int64::Text(s) => s
                .parse()
                .map_err(|_| Error::malformed(path, format!("{s:?} is not an integer"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    log_index: Int64,
    log_id: RawLogId,
    kind_version: KindVersion,
    integrated_time: Option<Int64>,
    inclusion_promise: Option<RawPromise>,
    inclusion_proof: Option<RawProof>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPromise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProof {
    log_index: Int64,
    root_hash: String,
    tree_size: Int64,
    hashes: Vec<String>,
    checkpoint: Option<RawCheckpoint>,
}

#[derive(Deserialize)]
struct RawCheckpoint {
    envelope: String,
}

/// What a verified entry establishes: the time the log recorded it and the body it recorded.
pub(crate) struct VerifiedEntry {
    pub(crate) integrated_time: i64,
    pub(crate) body: Vec<u8>,
}

fn b64(path: &str, text: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(text)
        .map_err(|e| Error::malformed(path, format!("not base64: {e}")))
}

fn proof_error(reason: impl Into<String>) -> Error {
    Error::TransparencyLogProof(reason.into())
}

/// Verifies one transparency log entry as described in the module documentation.
pub(crate) fn verify_entry(
    root: &TrustRoot,
    value: &serde_json::Value,
    path: &str,
) -> Result<VerifiedEntry, Error> {
    let entry: RawEntry =
        serde_json::from_value(value.clone()).map_err(|e| Error::malformed(path, e.to_string()))?;
    if (
        entry.kind_version.kind.as_str(),
        entry.kind_version.version.as_str(),
    ) != ("dsse", "0.0.1")
    {
        return Err(Error::UnsupportedLogEntry {
            kind: entry.kind_version.kind,
            version: entry.kind_version.version,
        });
    }
    let key_id = b64(&format!("{path}.logId.keyId"), &entry.log_id.key_id)?;
    let log = root
        .tlog(&key_id)
        .ok_or_else(|| Error::UnknownTransparencyLog {
            key_id: STANDARD.encode(&key_id),
        })?;
    let log_index = entry.log_index.get(&format!("{path}.logIndex"))?;
    let integrated_time = entry
        .integrated_time
        .as_ref()
        .ok_or_else(|| Error::malformed(format!("{path}.integratedTime"), "missing"))?
        .get(&format!("{path}.integratedTime"))?;
    if !log.valid_for.contains(integrated_time) {
        return Err(Error::UnknownTransparencyLog {
            key_id: format!(
                "{} ({} was not in use at {integrated_time})",
                entry.log_id.key_id, log.base_url
            ),
        });
    }
    let body = b64(
        &format!("{path}.canonicalizedBody"),
        &entry.canonicalized_body,
    )?;

    let promise = entry.inclusion_promise.as_ref().ok_or_else(|| {
        Error::InclusionPromiseInvalid(
            "the entry has no signed entry timestamp, so its integrated time is unproven".into(),
        )
    })?;
    let set = b64(
        &format!("{path}.inclusionPromise.signedEntryTimestamp"),
        &promise.signed_entry_timestamp,
    )?;
    // RFC 8785 canonical JSON of these four members: keys in this order, integers as numbers,
    // and strings (base64, hex) that need no escaping.
    let signed = format!(
        r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{}","logIndex":{log_index}}}"#,
        STANDARD.encode(&body),
        hex::encode(&key_id),
    );
    if !log.verify(signed.as_bytes(), &set) {
        return Err(Error::InclusionPromiseInvalid(format!(
            "the signed entry timestamp is not {}'s signature over this entry",
            log.base_url
        )));
    }

    let proof = entry
        .inclusion_proof
        .as_ref()
        .ok_or_else(|| proof_error("the entry has no inclusion proof"))?;
    let ppath = format!("{path}.inclusionProof");
    let index = proof.log_index.get(&format!("{ppath}.logIndex"))?;
    let size = proof.tree_size.get(&format!("{ppath}.treeSize"))?;
    let root_hash = b64(&format!("{ppath}.rootHash"), &proof.root_hash)?;
    if proof.hashes.len() > MAX_PROOF_HASHES {
        return Err(proof_error(format!(
            "{} proof hashes (at most {MAX_PROOF_HASHES})",
            proof.hashes.len()
        )));
    }
    let hashes = proof
        .hashes
        .iter()
        .enumerate()
        .map(|(i, h)| b64(&format!("{ppath}.hashes[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let (Ok(index), Ok(size)) = (u64::try_from(index), u64::try_from(size)) else {
        return Err(proof_error("negative log index or tree size"));
    };
    let computed = merkle_root(&body, index, size, &hashes)?;
    if computed.as_slice() != root_hash.as_slice() {
        return Err(proof_error(format!(
            "the inclusion proof leads to root {}, not the proof's root hash {}",
            hex::encode(computed),
            hex::encode(&root_hash)
        )));
    }
    let checkpoint = proof
        .checkpoint
        .as_ref()
        .ok_or_else(|| proof_error("the inclusion proof has no checkpoint"))?;
    verify_checkpoint(log, &key_id, &checkpoint.envelope, size, &root_hash)?;

    Ok(VerifiedEntry {
        integrated_time,
        body,
    })
}

/// The root an RFC 6962 inclusion proof leads to for leaf `index` of a tree of `size` leaves
/// (the arithmetic is `tufa-tlog`'s, shared with Tufa's own transparency log).
fn merkle_root(leaf: &[u8], index: u64, size: u64, proof: &[Vec<u8>]) -> Result<[u8; 32], Error> {
    let hashes = proof
        .iter()
        .enumerate()
        .map(|(i, h)| {
            tufa_tlog::Hash::try_from(h.as_slice())
                .map_err(|_| proof_error(format!("proof hash {i} is not 32 bytes")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tufa_tlog::merkle::root_from_inclusion_proof(&tufa_tlog::leaf_hash(leaf), index, size, &hashes)
        .map_err(|e| proof_error(e.to_string()))
}

/// Verifies a checkpoint in the signed-note format (parsed by `tufa-tlog`, with its bounds on
/// size and line counts): `origin\nsize\nbase64(root)\n[other lines]`, a blank line, then lines
/// `— NAME base64(4-byte key hint ‖ signature)`. The signature whose hint is the first four bytes
/// of the log's key id must verify over the note text. Rekor's key hint is not the signed-note
/// Ed25519 key ID (it is the first bytes of the SHA-256 of the log's DER public key, and the key
/// is ECDSA), so the signature is checked here with the trust root's key rather than by
/// `tufa-tlog`'s note verifier.
fn verify_checkpoint(
    log: &LogKey,
    key_id: &[u8],
    envelope: &str,
    tree_size: u64,
    root_hash: &[u8],
) -> Result<(), Error> {
    let fail = |reason: String| Error::CheckpointInvalid(reason);
    let note = tufa_tlog::Note::parse(envelope.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let checkpoint = tufa_tlog::Checkpoint::parse(&note.text).map_err(|e| fail(e.to_string()))?;
    if checkpoint.size != tree_size || checkpoint.root.as_slice() != root_hash {
        return Err(fail(format!(
            "the checkpoint is for tree size {} root {}, the inclusion proof for size {tree_size} root {}",
            checkpoint.size,
            hex::encode(checkpoint.root),
            hex::encode(root_hash)
        )));
    }
    let Some(hint) = key_id.get(..4) else {
        return Err(fail("the log's key id is shorter than a key hint".into()));
    };
    let hint = u32::from_be_bytes(hint.try_into().expect("4 bytes"));
    match note.signatures.iter().find(|s| s.key_id == hint) {
        Some(sig) if log.verify(note.text.as_bytes(), &sig.signature) => Ok(()),
        Some(_) => Err(fail(format!(
            "the checkpoint signature is not {}'s",
            log.base_url
        ))),
        None => Err(fail(format!(
            "the checkpoint has no signature by {}",
            log.base_url
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The five-leaf tree of the RFC 6962 vectors' first leaves: proofs from tufa-tlog's tree,
    /// checked through this module's error mapping.
    #[test]
    fn inclusion_proofs_of_a_small_tree() {
        let mut tree = tufa_tlog::MemoryTree::new();
        for i in 0u8..5 {
            tree.push(&[i]);
        }
        let root = tree.root();
        for i in 0..5u64 {
            let proof: Vec<Vec<u8>> = tufa_tlog::inclusion_proof(&tree, i, 5)
                .unwrap()
                .iter()
                .map(|h| h.to_vec())
                .collect();
            assert_eq!(merkle_root(&[i as u8], i, 5, &proof).unwrap(), root);
            assert_ne!(merkle_root(&[9], i, 5, &proof).unwrap(), root);
            assert!(merkle_root(&[i as u8], 5, 5, &proof).is_err());
            let mut short = proof.clone();
            short.pop();
            assert!(merkle_root(&[i as u8], i, 5, &short).is_err());
            let mut odd = proof.clone();
            odd[0].push(0);
            assert!(merkle_root(&[i as u8], i, 5, &odd).is_err());
        }
    }
}
