//! TAP 16 snapshot Merkle trees: the snapshot's `meta` as a Merkle tree whose root the timestamp
//! signs (its `merkle_root` field), and one unsigned proof per listed role, so that a client
//! downloads the proofs of the roles it uses instead of the whole snapshot.
//!
//! TAP 16 leaves the tree's algorithm to a POUF; this is Tufa's, chosen so that every byte is
//! already defined elsewhere:
//! * One leaf per entry of the classic snapshot's `meta`, in its (sorted) order. A leaf's contents
//!   are the entry itself, `{"<role>.json": {"version": N}}`, and its hash is the RFC 9162 leaf
//!   hash of their canonical JSON: the role's file name makes every leaf unique, as TAP 16
//!   requires.
//! * Interior nodes and the tree's shape are RFC 9162's (`tufa_tlog::merkle`, which the
//!   transparency log uses too): the `0x00`/`0x01` prefixes keep a leaf from passing for an
//!   interior node, which TAP 16's plain "hash of both children" would allow.
//! * The proof is TAP 16's example format with the sibling hashes in hex, as TUF writes hashes:
//!   `{"leaf_contents": {...}, "merkle_path": {"0": HASH, ...}, "path_directions": {"0": "L"|"R", ...}}`,
//!   index 0 being the leaf's own sibling. A direction says on which side the listed sibling is.
//! * `merkle_root` in the timestamp is the root hash in hex.
//!
//! The tree is a pure function of the classic snapshot, so anyone holding `N.snapshot.json` (the
//! index, a mirror, an auditor) can serve and check the proofs of version N without any key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tufa_tlog::merkle::{self, Hash, HashReader, ProofError};

use crate::canonical::to_canonical_bytes;
use crate::metadata::{MetaFile, Timestamp};
use crate::types::HexDigest;

/// The timestamp field TAP 16 adds: the root hash of the snapshot Merkle tree.
pub const MERKLE_ROOT_FIELD: &str = "merkle_root";

/// More levels than this cannot come from a tree of fewer than 2^64 leaves.
const MAX_PATH: usize = 64;

/// Why a snapshot proof is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotProofError {
    #[error("snapshot proof is malformed: {0}")]
    Malformed(String),
}

fn malformed(reason: impl Into<String>) -> SnapshotProofError {
    SnapshotProofError::Malformed(reason.into())
}

/// The snapshot's `meta` as a TAP 16 Merkle tree.
#[derive(Debug)]
pub struct SnapshotTree {
    /// Leaf index by file name.
    positions: BTreeMap<String, (usize, MetaFile)>,
    /// `levels[h][i]`: the hash of the perfect subtree of `2^h` leaves starting at `i << h`.
    levels: Vec<Vec<Hash>>,
}

impl HashReader for SnapshotTree {
    fn subtree_hash(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(usize::from(height))
            .and_then(|level| level.get(index as usize))
            .copied()
            .ok_or(ProofError::IndexOutOfRange {
                index,
                size: self.size(),
            })
    }
}

fn leaf_bytes(file: &str, meta: &MetaFile) -> Vec<u8> {
    let contents = BTreeMap::from([(file, meta)]);
    to_canonical_bytes(&contents).expect("a map of a name to a MetaFile always serializes")
}

impl SnapshotTree {
    /// The tree of a snapshot's `meta`.
    pub fn new(meta: &BTreeMap<String, MetaFile>) -> Self {
        let mut positions = BTreeMap::new();
        let mut leaves = Vec::with_capacity(meta.len());
        for (index, (file, entry)) in meta.iter().enumerate() {
            leaves.push(merkle::leaf_hash(&leaf_bytes(file, entry)));
            positions.insert(file.clone(), (index, entry.clone()));
        }
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let above = below
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        SnapshotTree { positions, levels }
    }

    fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root hash, for the timestamp's `merkle_root`.
    pub fn root(&self) -> HexDigest {
        let root = merkle::tree_root(self, self.size())
            .expect("every subtree of the tree's own size is stored");
        HexDigest::from_bytes(&root)
    }

    /// The proof of `file`'s entry (`bin-0a3.json`), or `None` when the snapshot lists no such
    /// file.
    pub fn proof(&self, file: &str) -> Option<SnapshotProof> {
        let (index, entry) = self.positions.get(file)?;
        let (index, size) = (*index as u64, self.size());
        let path = merkle::inclusion_proof(self, index, size)
            .expect("every subtree of the tree's own size is stored");
        let directions = sibling_sides(index, size);
        debug_assert_eq!(path.len(), directions.len());
        Some(SnapshotProof {
            leaf_contents: BTreeMap::from([(file.to_string(), entry.clone())]),
            merkle_path: path
                .iter()
                .enumerate()
                .map(|(i, hash)| (i.to_string(), HexDigest::from_bytes(hash)))
                .collect(),
            path_directions: directions
                .into_iter()
                .enumerate()
                .map(|(i, side)| (i.to_string(), side))
                .collect(),
        })
    }
}

/// On which side each sibling of leaf `index` in a tree of `size` leaves is, from the leaf up:
/// the walk of RFC 9162 §2.1.3.2, which knows the sides from the index and the size alone.
fn sibling_sides(index: u64, size: u64) -> Vec<Side> {
    let (mut node, mut last) = (index, size - 1);
    let mut sides = Vec::new();
    while last > 0 {
        if node & 1 == 1 || node == last {
            sides.push(Side::Left);
            if node & 1 == 0 {
                while node & 1 == 0 && node != 0 {
                    node >>= 1;
                    last >>= 1;
                }
            }
        } else {
            sides.push(Side::Right);
        }
        node >>= 1;
        last >>= 1;
    }
    sides
}

/// Where a proof's sibling sits next to the node being rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    #[serde(rename = "L")]
    Left,
    #[serde(rename = "R")]
    Right,
}

/// TAP 16's "snapshot Merkle metadata" of one role: its snapshot entry and the path to the root.
/// Unsigned: it is only as good as the `merkle_root` of a verified timestamp it leads to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotProof {
    pub leaf_contents: BTreeMap<String, MetaFile>,
    pub merkle_path: BTreeMap<String, HexDigest>,
    pub path_directions: BTreeMap<String, Side>,
}

impl SnapshotProof {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotProofError> {
        serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical_bytes(self).expect("a proof always serializes")
    }

    /// The one snapshot entry the proof is for: file name and version.
    pub fn leaf(&self) -> Result<(&str, &MetaFile), SnapshotProofError> {
        let mut entries = self.leaf_contents.iter();
        match (entries.next(), entries.next()) {
            (Some((file, meta)), None) => Ok((file, meta)),
            _ => Err(malformed("leaf_contents must hold exactly one entry")),
        }
    }

    /// The root hash the proof leads to, for comparison with the timestamp's `merkle_root`.
    pub fn root(&self) -> Result<HexDigest, SnapshotProofError> {
        let (file, meta) = self.leaf()?;
        let steps = self.merkle_path.len();
        if steps > MAX_PATH || self.path_directions.len() != steps {
            return Err(malformed(format!(
                "{steps} hashes and {} directions (at most {MAX_PATH}, one direction per hash)",
                self.path_directions.len()
            )));
        }
        let mut node = merkle::leaf_hash(&leaf_bytes(file, meta));
        for step in 0..steps {
            let key = step.to_string();
            let (Some(sibling), Some(side)) =
                (self.merkle_path.get(&key), self.path_directions.get(&key))
            else {
                return Err(malformed(format!("step {key} is missing")));
            };
            let sibling: Hash = hex::decode(sibling.as_str())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| malformed(format!("step {key} is not a SHA-256 hash")))?;
            node = match side {
                Side::Left => merkle::node_hash(&sibling, &node),
                Side::Right => merkle::node_hash(&node, &sibling),
            };
        }
        Ok(HexDigest::from_bytes(&node))
    }
}

impl Timestamp {
    /// TAP 16's `merkle_root`, when the repository publishes snapshot proofs.
    pub fn merkle_root(&self) -> Result<Option<HexDigest>, SnapshotProofError> {
        let Some(value) = self.unrecognized.get(MERKLE_ROOT_FIELD) else {
            return Ok(None);
        };
        value
            .as_str()
            .and_then(|text| HexDigest::new(text).ok())
            .filter(|digest| digest.as_str().len() == 64)
            .map(Some)
            .ok_or_else(|| {
                malformed(format!(
                    "timestamp {MERKLE_ROOT_FIELD} is not a SHA-256 hash"
                ))
            })
    }

    pub fn set_merkle_root(&mut self, root: &HexDigest) {
        self.unrecognized.insert(
            MERKLE_ROOT_FIELD.to_string(),
            serde_json::Value::String(root.as_str().to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(count: usize) -> BTreeMap<String, MetaFile> {
        (0..count)
            .map(|i| (format!("bin-{i:04x}.json"), MetaFile::new(i as u64 + 1)))
            .collect()
    }

    #[test]
    fn every_proof_of_every_size_leads_to_the_root() {
        for count in [1, 2, 3, 5, 8, 13, 258] {
            let tree = SnapshotTree::new(&meta(count));
            let hashes: Vec<Hash> = meta(count)
                .iter()
                .map(|(file, entry)| merkle::leaf_hash(&leaf_bytes(file, entry)))
                .collect();
            assert_eq!(
                tree.root(),
                HexDigest::from_bytes(&merkle::root_of(&hashes))
            );
            for (file, entry) in meta(count) {
                let proof = tree.proof(&file).unwrap();
                let parsed = SnapshotProof::from_bytes(&proof.to_bytes()).unwrap();
                assert_eq!(parsed.root().unwrap(), tree.root(), "{file} of {count}");
                assert_eq!(parsed.leaf().unwrap(), (file.as_str(), &entry));
            }
        }
        assert!(SnapshotTree::new(&meta(3)).proof("bin-9999.json").is_none());
    }

    #[test]
    fn a_changed_leaf_or_sibling_leads_elsewhere() {
        let tree = SnapshotTree::new(&meta(20));
        let proof = tree.proof("bin-0007.json").unwrap();
        let mut newer = proof.clone();
        newer
            .leaf_contents
            .insert("bin-0007.json".into(), MetaFile::new(99));
        assert_ne!(newer.root().unwrap(), tree.root());
        let mut renamed = proof.clone();
        let entry = renamed.leaf_contents.remove("bin-0007.json").unwrap();
        renamed.leaf_contents.insert("bin-0008.json".into(), entry);
        assert_ne!(renamed.root().unwrap(), tree.root());
        let mut flipped = proof.clone();
        let side = flipped.path_directions.get_mut("0").unwrap();
        *side = match side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        assert_ne!(flipped.root().unwrap(), tree.root());
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let tree = SnapshotTree::new(&meta(4));
        let proof = tree.proof("bin-0001.json").unwrap();
        let mut two_leaves = proof.clone();
        two_leaves
            .leaf_contents
            .insert("bin-0002.json".into(), MetaFile::new(3));
        assert!(two_leaves.root().is_err());
        let mut gap = proof.clone();
        let hash = gap.merkle_path.remove("1").unwrap();
        gap.merkle_path.insert("7".into(), hash);
        assert!(gap.root().is_err());
        let mut short = proof.clone();
        short
            .merkle_path
            .insert("0".into(), HexDigest::new("ab").unwrap());
        assert!(short.root().is_err());
        assert!(SnapshotProof::from_bytes(b"{\"leaf_contents\": 1}").is_err());
        let mut extra: serde_json::Value = serde_json::from_slice(&proof.to_bytes()).unwrap();
        extra["signatures"] = serde_json::json!([]);
        assert!(SnapshotProof::from_bytes(extra.to_string().as_bytes()).is_err());
    }
}
