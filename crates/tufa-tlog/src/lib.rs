//! Tufa's transparency log, as pure logic (no I/O): the index appends every timestamp it
//! publishes, serves the tree as C2SP tiles with a signed checkpoint, witnesses cosign what they
//! saw, and clients accept a new checkpoint only when it is signed, cosigned and consistent with
//! the last one they saw. Used by the publisher, the proxy, `tufa witness` and `tufa monitor`.
//!
//! * [`merkle`]: RFC 9162 hashing, inclusion and consistency proofs (generate and verify).
//! * [`tiles`]: C2SP tlog-tiles paths, tiles, entry bundles, proofs read from tiles.
//! * [`tree`]: the log's append-only state, yielding the changed tiles of each batch.

pub mod merkle;
pub mod tiles;
pub mod tree;

pub use merkle::{
    Hash, HashReader, ProofError, consistency_proof, empty_root, inclusion_proof, leaf_hash,
    node_hash, tree_root, verify_consistency, verify_inclusion,
};
pub use tiles::{Tile, TileError, TileHashReader, TilePath, TileReader};
pub use tree::{Appended, MemoryTree, Tree};
