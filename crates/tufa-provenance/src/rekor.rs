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
//! The RFC 6962 arithmetic is written here (30 lines) rather than pulled from the `sigstore`
//! crate, which would bring its HTTP and async stack along (see the crate documentation).

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

fn hash_leaf(leaf: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0]);
    ctx.update(leaf);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("sha256 is 32 bytes")
}

fn hash_children(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("sha256 is 32 bytes")
}

/// The root an RFC 6962 inclusion proof leads to for leaf `index` of a tree of `size` leaves.
/// The path splits where the paths to `index` and `size - 1` diverge: below that point the proof
/// hashes are siblings on either side (by the index's bits), above it they are left-hand subtrees
/// on the tree's right border.
fn merkle_root(leaf: &[u8], index: u64, size: u64, proof: &[Vec<u8>]) -> Result<[u8; 32], Error> {
    if index >= size {
        return Err(proof_error(format!(
            "log index {index} is outside a tree of {size} leaves"
        )));
    }
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border {
        return Err(proof_error(format!(
            "the inclusion proof has {} hashes; leaf {index} of {size} needs {}",
            proof.len(),
            inner + border
        )));
    }
    if let Some(bad) = proof.iter().position(|h| h.len() != 32) {
        return Err(proof_error(format!("proof hash {bad} is not 32 bytes")));
    }
    let mut node = hash_leaf(leaf);
    for (level, sibling) in proof[..inner].iter().enumerate() {
        node = if (index >> level) & 1 == 0 {
            hash_children(&node, sibling)
        } else {
            hash_children(sibling, &node)
        };
    }
    for sibling in &proof[inner..] {
        node = hash_children(sibling, &node);
    }
    Ok(node)
}

/// Verifies a checkpoint in the signed-note format: `origin\nsize\nbase64(root)\n[other lines]`,
/// a blank line, then lines `— NAME base64(4-byte key hint ‖ signature)`. The signature whose
/// hint is the first four bytes of the log's key id must verify over the note text (everything
/// before the blank line, including its final newline).
fn verify_checkpoint(
    log: &LogKey,
    key_id: &[u8],
    envelope: &str,
    tree_size: u64,
    root_hash: &[u8],
) -> Result<(), Error> {
    let fail = |reason: String| Error::CheckpointInvalid(reason);
    let mut parts = envelope.split("\n\n");
    let (Some(text), Some(signatures), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(fail(
            "not a signed note (one blank line must separate text and signatures)".into(),
        ));
    };
    let note = &envelope.as_bytes()[..text.len() + 1];
    let mut lines = text.split('\n');
    let (Some(origin), Some(size), Some(hash)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(fail("the note has fewer than three lines".into()));
    };
    if origin.is_empty() {
        return Err(fail("the note has no origin".into()));
    }
    let size: u64 = size
        .parse()
        .map_err(|_| fail(format!("tree size {size:?} is not a number")))?;
    let hash = STANDARD
        .decode(hash)
        .map_err(|_| fail(format!("root hash {hash:?} is not base64")))?;
    if size != tree_size || hash != root_hash {
        return Err(fail(format!(
            "the checkpoint is for tree size {size} root {}, the inclusion proof for size {tree_size} root {}",
            hex::encode(&hash),
            hex::encode(root_hash)
        )));
    }
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(fail(format!(
                "signature line {line:?} does not start with an em dash"
            )));
        };
        let Some((_name, sig)) = rest.split_once(' ') else {
            return Err(fail(format!("signature line {line:?} has no signature")));
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            return Err(fail(format!("signature line {line:?} is not base64")));
        };
        if sig.len() > 4 && sig[..4] == key_id[..4] {
            return if log.verify(note, &sig[4..]) {
                Ok(())
            } else {
                Err(fail(format!(
                    "the checkpoint signature is not {}'s",
                    log.base_url
                )))
            };
        }
    }
    Err(fail(format!(
        "the checkpoint has no signature by {}",
        log.base_url
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A five-leaf tree built by hand, and the proofs for each leaf, checked against it.
    #[test]
    fn inclusion_proofs_of_a_small_tree() {
        let leaves: Vec<[u8; 32]> = (0u8..5).map(|i| hash_leaf(&[i])).collect();
        let n01 = hash_children(&leaves[0], &leaves[1]);
        let n23 = hash_children(&leaves[2], &leaves[3]);
        let n0123 = hash_children(&n01, &n23);
        let root = hash_children(&n0123, &leaves[4]);
        let proofs: Vec<Vec<Vec<u8>>> = vec![
            vec![leaves[1].to_vec(), n23.to_vec(), leaves[4].to_vec()],
            vec![leaves[0].to_vec(), n23.to_vec(), leaves[4].to_vec()],
            vec![leaves[3].to_vec(), n01.to_vec(), leaves[4].to_vec()],
            vec![leaves[2].to_vec(), n01.to_vec(), leaves[4].to_vec()],
            vec![n0123.to_vec()],
        ];
        for (i, proof) in proofs.iter().enumerate() {
            assert_eq!(
                merkle_root(&[i as u8], i as u64, 5, proof).unwrap(),
                root,
                "leaf {i}"
            );
            assert_ne!(
                merkle_root(&[9], i as u64, 5, proof).unwrap(),
                root,
                "leaf {i}"
            );
        }
        assert!(merkle_root(&[0], 5, 5, &proofs[0]).is_err());
        assert!(merkle_root(&[0], 0, 5, &proofs[4]).is_err());
    }
}
