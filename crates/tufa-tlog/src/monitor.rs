//! Replaying a log from its entry bundles, as a monitor does: every entry served must be the
//! entry the signed checkpoints commit to. The replay rebuilds the tree from the entries alone
//! (it trusts no tile), so a planted entry, a rewritten entry or a bundle that differs from what
//! an earlier partial bundle showed is found, and the root at each checkpoint's size must be the
//! signed root.

use thiserror::Error;

use crate::checkpoint::Checkpoint;
use crate::merkle::Hash;
use crate::tiles::{Tile, TileError, decode_bundle};
use crate::tree::Tree;

/// What a replay found wrong with the log.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MonitorError {
    #[error(transparent)]
    Bundle(#[from] TileError),
    #[error("entry bundle {got} is out of order: the replay is at bundle {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error(
        "entry {index} differs from the one the log served before: the log rewrote its history"
    )]
    Rewritten { index: u64 },
    #[error(
        "the {size} entries served hash to root {replayed}, the checkpoint signs {signed}: the log serves entries other than those it signed"
    )]
    RootMismatch {
        size: u64,
        replayed: String,
        signed: String,
    },
    #[error("the replay has {replayed} entries, the checkpoint {checkpoint}: fetch up to its size")]
    SizeMismatch { replayed: u64, checkpoint: u64 },
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A monitor's replay of one log.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    tree: Tree,
}

impl Replay {
    pub fn new() -> Self {
        Replay::default()
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The entry bundles to fetch, in order, to replay up to a checkpoint of `size` leaves.
    pub fn bundles_to_fetch(&self, size: u64) -> Vec<Tile> {
        let first = self.size() >> 8;
        let last = size.div_ceil(256);
        (first..last)
            .filter_map(|n| Tile::in_tree(0, n, size))
            .filter(|t| t.index * 256 + u64::from(t.width) > self.size())
            .collect()
    }

    /// Replays one fetched bundle and returns its entries not replayed before (with the index of
    /// the first). Bundles come in order; a partial bundle may be followed by a wider one of the
    /// same index, whose first entries must be the ones already replayed.
    pub fn feed(&mut self, tile: &Tile, data: &[u8]) -> Result<(u64, Vec<Vec<u8>>), MonitorError> {
        let expected = self.size() >> 8;
        if tile.level != 0 || tile.index != expected {
            return Err(MonitorError::OutOfOrder {
                expected,
                got: tile.index,
            });
        }
        let mut entries = decode_bundle(tile, data)?;
        let done = self.tree.partial_entries();
        for (i, (seen, served)) in done.iter().zip(&entries).enumerate() {
            if seen != served {
                return Err(MonitorError::Rewritten {
                    index: tile.index * 256 + i as u64,
                });
            }
        }
        let skip = done.len().min(entries.len());
        let first = self.size();
        let new = entries.split_off(skip);
        self.tree.append(&new)?;
        Ok((first, new))
    }

    /// Checks the replay against a (verified) checkpoint of exactly the replayed size.
    pub fn check(&self, checkpoint: &Checkpoint) -> Result<(), MonitorError> {
        if checkpoint.size != self.size() {
            return Err(MonitorError::SizeMismatch {
                replayed: self.size(),
                checkpoint: checkpoint.size,
            });
        }
        let root = self.tree.root();
        if root != checkpoint.root {
            return Err(MonitorError::RootMismatch {
                size: checkpoint.size,
                replayed: hex(&root),
                signed: hex(&checkpoint.root),
            });
        }
        Ok(())
    }
}
