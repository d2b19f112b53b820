//! Tufa's transparency log, as pure logic (no I/O): the index appends every timestamp it
//! publishes, serves the tree as C2SP tiles with a signed checkpoint, witnesses cosign what they
//! saw, and clients accept a new checkpoint only when it is signed, cosigned and consistent with
//! the last one they saw. Used by the publisher, the proxy, `tufa witness` and `tufa monitor`.
//!
//! * [`merkle`]: RFC 9162 hashing, inclusion and consistency proofs (generate and verify).
//! * [`tiles`]: C2SP tlog-tiles paths, tiles, entry bundles, proofs read from tiles.
//! * [`tree`]: the log's append-only state, yielding the changed tiles of each batch.
//! * [`note`]: C2SP signed notes, verifier keys, Ed25519 signatures and cosignatures.
//! * [`checkpoint`]: C2SP tlog-checkpoint text.
//! * [`witness`]: the C2SP tlog-witness `add-checkpoint` decision.
//! * [`client`]: the client's rule (signed, cosigned, consistent) and its named refusals.
//! * [`entry`]: the log entry recorded for each published TUF timestamp.
//! * [`monitor`]: replaying the log from its entry bundles against the signed checkpoints.
//! * [`proof`]: the proof document served beside each timestamp.
//!
//! Written here rather than taken from a crate: the Rust ports of these formats (for example
//! Cloudflare's `tlog_tiles` and `signed_note` in `azul`) build on `ed25519-dalek` and `sha2`
//! where the workspace already has `ring`; the Merkle arithmetic is small and is checked against
//! the certificate-transparency vectors and real proofs of a CT log in the tests, the notes
//! against the published `golang.org/x/mod/sumdb/note` and `transparency-dev/formats` vectors.

pub mod checkpoint;
pub mod client;
pub mod entry;
pub mod merkle;
pub mod monitor;
pub mod note;
pub mod proof;
pub mod tiles;
pub mod tree;
pub mod witness;

pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use client::{Accepted, ClientError, Policy};
pub use entry::{EntryError, TimestampEntry};
pub use merkle::{
    Hash, HashReader, ProofError, consistency_proof, empty_root, inclusion_proof, leaf_hash,
    node_hash, tree_root, verify_consistency, verify_inclusion,
};
pub use monitor::{MonitorError, Replay};
pub use note::{
    Ed25519Key, Ed25519Signer, KeyType, Note, NoteError, NoteSignature, NoteSigner, VerifierKey,
};
pub use tiles::{Tile, TileError, TileHashReader, TilePath, TileReader};
pub use tree::{Appended, MemoryTree, Tree};
pub use witness::{AddCheckpoint, Cosigned, LogState, Witness, WitnessRefusal, WitnessState};
