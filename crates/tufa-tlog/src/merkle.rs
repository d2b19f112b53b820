//! RFC 9162 (§2.1) Merkle tree hashing, inclusion and consistency proofs.
//!
//! Hashing: a leaf is `SHA-256(0x00 || entry)`, an interior node `SHA-256(0x01 || left || right)`,
//! the empty tree `SHA-256("")`. A tree of `n > 1` leaves splits at `k`, the largest power of two
//! smaller than `n`: `MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
//!
//! Proofs are generated from a [`HashReader`], which answers "the hash of the perfect subtree of
//! `2^height` leaves starting at leaf `index * 2^height`" — the only kind of hash that tiles store
//! and that never changes once the tree has grown past it. Proof generation follows the recursive
//! definitions `PATH` (§2.1.3.1) and `SUBPROOF` (§2.1.4.1); verification follows the iterative
//! algorithms of §2.1.3.2 and §2.1.4.2, which never need the tree itself.

use thiserror::Error;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree's root hash.
pub type Hash = [u8; 32];

/// A proof longer than this cannot belong to a tree of fewer than 2^64 leaves (both RFC 9162
/// proofs have at most one hash per tree level, plus one for a consistency proof's old root).
pub const MAX_PROOF_HASHES: usize = 64;

/// Why a Merkle proof or a hash lookup failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error(
        "old tree size {old} is larger than new tree size {new}: a log never shrinks (rollback)"
    )]
    SizeDecreased { old: u64, new: u64 },
    #[error(
        "the proof has {got} hashes, {wanted} for this index and size: a forged or truncated proof"
    )]
    WrongLength { got: usize, wanted: usize },
    #[error("the proof has {got} hashes, more than the {MAX_PROOF_HASHES} of any tree")]
    TooLong { got: usize },
    #[error(
        "the inclusion proof leads to root {computed}, not the signed root {expected}: the entry is not in this tree"
    )]
    InclusionMismatch { computed: String, expected: String },
    #[error(
        "the consistency proof does not connect the trees of {old} and {new} leaves: the log forked or rewrote history"
    )]
    Inconsistent { old: u64, new: u64 },
    #[error("the hash of subtree {index} at height {height} is unavailable: {reason}")]
    Unavailable {
        height: u8,
        index: u64,
        reason: String,
    },
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(0x00 || entry)`: the RFC 9162 leaf hash.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0x00], entry])
}

/// `SHA-256(0x01 || left || right)`: the RFC 9162 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The root hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The Merkle tree hash of a list of leaf (or equal-height subtree) hashes, as RFC 9162 defines
/// it for a list of entries.
pub fn root_of(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => empty_root(),
        1 => hashes[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&hashes[..k]), &root_of(&hashes[k..]))
        }
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Reads hashes of perfect subtrees: the `2^height` leaves starting at leaf `index << height`.
/// Implemented over stored hashes ([`crate::MemoryTree`]) and over tiles
/// ([`crate::TileHashReader`]).
pub trait HashReader {
    fn subtree_hash(&self, height: u8, index: u64) -> Result<Hash, ProofError>;
}

/// `MTH(D[start:end])` for a range that is the left-aligned part of a subtree in the RFC 9162
/// recursion (`start` is a multiple of the largest power of two not above `end - start`), built
/// from the perfect subtrees that cover it.
fn range_hash(reader: &impl HashReader, start: u64, end: u64) -> Result<Hash, ProofError> {
    let n = end - start;
    if n.is_power_of_two() {
        let height = n.trailing_zeros() as u8;
        return reader.subtree_hash(height, start >> height);
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(reader, start, start + k)?,
        &range_hash(reader, start + k, end)?,
    ))
}

/// The root hash of the tree of the first `size` leaves.
pub fn tree_root(reader: &impl HashReader, size: u64) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(reader, 0, size)
}

/// The inclusion proof (`PATH(index, D[size])`, §2.1.3.1) of leaf `index` in the tree of `size`
/// leaves, from the leaf upwards.
pub fn inclusion_proof(
    reader: &impl HashReader,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // The recursion descends from the root; the proof lists siblings from the leaf up, so the
    // siblings are collected top-down and reversed.
    let mut top_down = Vec::new();
    let (mut start, mut end, mut m) = (0u64, size, index);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            top_down.push(range_hash(reader, start + k, end)?);
            end = start + k;
        } else {
            top_down.push(range_hash(reader, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// The consistency proof (`PROOF(old, D[new])`, §2.1.4.1) between the trees of `old` and `new`
/// leaves. Empty when `old` is 0 or equal to `new`.
pub fn consistency_proof(
    reader: &impl HashReader,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::SizeDecreased { old, new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let mut top_down = Vec::new();
    let (mut start, mut end, mut m, mut whole) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            // SUBPROOF(m, D[m], b): nothing when the old tree is this very subtree, else its hash.
            if !whole {
                top_down.push(range_hash(reader, start, end)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            top_down.push(range_hash(reader, start + k, end)?);
            end = start + k;
        } else {
            top_down.push(range_hash(reader, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The root an inclusion proof leads to (§2.1.3.2 steps 1–5, without the final comparison).
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let wanted = inclusion_proof_len(index, size);
    if proof.len() != wanted {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            wanted,
        });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                wanted,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            wanted,
        });
    }
    Ok(r)
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size > index` leaves:
/// the levels below the point where the paths to `index` and `size - 1` part, plus one
/// left-hand subtree for each set bit of `index` above it.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    inner + (index >> inner).count_ones() as usize
}

/// Verifies that `leaf` is entry `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if &computed != root {
        return Err(ProofError::InclusionMismatch {
            computed: hex(&computed),
            expected: hex(root),
        });
    }
    Ok(())
}

/// Verifies that the tree of `new` leaves with root `new_root` extends the tree of `old` leaves
/// with root `old_root` (§2.1.4.2). A tree of 0 leaves is extended by every tree; equal sizes
/// need equal roots and an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    let inconsistent = || ProofError::Inconsistent { old, new };
    if old > new {
        return Err(ProofError::SizeDecreased { old, new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                wanted: 0,
            });
        }
        return if old == new && old_root != new_root {
            Err(inconsistent())
        } else {
            Ok(())
        };
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong { got: proof.len() });
    }
    // Step 2: when the old tree is a perfect subtree, its root is the proof's implicit first
    // hash.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(inconsistent());
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        if sn == 0 {
            return Err(inconsistent());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 || &fr != old_root || &sr != new_root {
        return Err(inconsistent());
    }
    Ok(())
}
