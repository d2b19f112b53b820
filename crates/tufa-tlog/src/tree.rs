//! The log's append-only state ([`Tree`]) and an in-memory tree of all stored hashes
//! ([`MemoryTree`]).

use crate::merkle::{Hash, HashReader, ProofError, empty_root, leaf_hash, node_hash, root_of};
use crate::tiles::{
    MAX_ENTRY_LEN, TILE_WIDTH, Tile, TileError, TileReader, encode_bundle, tile_hashes,
};

/// The append-only state a log keeps between batches: the tree size, the perfect subtrees that
/// cover it (one per set bit of the size, which is all a root needs), and the rightmost partial
/// tile of every level with the partial entry bundle (all a new tile needs). That is at most
/// 255 hashes per level and 255 entries, whatever the size of the log.
///
/// The publisher appends a batch, writes the returned tiles and bundles (they are immutable at a
/// given width, so a crash between writes leaves nothing a reader of an older checkpoint uses),
/// then signs a checkpoint of the returned size and root. After a restart it reads back the
/// partial tiles of the last checkpoint ([`Tile::partial_tiles`]) and calls [`Tree::resume`].
#[derive(Debug, Clone)]
pub struct Tree {
    size: u64,
    /// (height, hash) of the perfect subtrees covering `[0, size)`, left to right; heights
    /// strictly decrease.
    range: Vec<(u8, Hash)>,
    /// The hashes of the rightmost, incomplete tile of each level (never 256 of them).
    partial: Vec<Vec<Hash>>,
    /// The entries of the incomplete entry bundle.
    bundle: Vec<Vec<u8>>,
}

/// What one [`Tree::append`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The leaf index of the batch's first entry.
    pub first_index: u64,
    pub size: u64,
    pub root: Hash,
    /// Every tile that is new at its width, with its bytes: tiles completed by the batch and the
    /// partial tiles of the new size.
    pub tiles: Vec<(Tile, Vec<u8>)>,
    /// Every entry bundle that is new at its width (named by the level-0 tile coordinates).
    pub bundles: Vec<(Tile, Vec<u8>)>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Self {
        Tree {
            size: 0,
            range: Vec::new(),
            partial: Vec::new(),
            bundle: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The entries of the incomplete entry bundle (the last `size % 256` entries).
    pub fn partial_entries(&self) -> &[Vec<u8>] {
        &self.bundle
    }

    /// The root hash at the current size.
    pub fn root(&self) -> Hash {
        let mut nodes = self.range.iter().rev();
        let Some((_, last)) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, (_, left)| node_hash(left, &right))
    }

    /// Rebuilds the state at `size` from the partial tiles of that size (as listed by
    /// [`Tile::partial_tiles`], with their bytes) and the partial entry bundle, and checks the
    /// result against `root`, the root hash of the last signed checkpoint.
    pub fn resume(
        size: u64,
        root: &Hash,
        tiles: &[(Tile, Vec<u8>)],
        bundle: &[u8],
    ) -> Result<Tree, TileError> {
        let mismatch = |reason: String| TileError::ResumeMismatch { size, reason };
        let wanted = Tile::partial_tiles(size);
        let levels = (0..64)
            .take_while(|l| size.checked_shr(8 * l).unwrap_or(0) > 0)
            .count();
        let mut partial: Vec<Vec<Hash>> = vec![Vec::new(); levels];
        for tile in &wanted {
            let (_, data) = tiles
                .iter()
                .find(|(t, _)| t == tile)
                .ok_or_else(|| mismatch(format!("tile {tile} is missing")))?;
            partial[usize::from(tile.level)] = tile_hashes(tile, data)?;
        }
        let mut range = Vec::new();
        for (level, hashes) in partial.iter().enumerate().rev() {
            for hash in hashes {
                push_subtree(&mut range, 8 * level as u8, *hash);
            }
        }
        let bundle_tile = Tile::in_tree(0, size >> 8, size);
        let entries = match bundle_tile {
            Some(tile) => crate::tiles::decode_bundle(&tile, bundle)?,
            None if bundle.is_empty() => Vec::new(),
            None => return Err(mismatch("an entry bundle where none is partial".into())),
        };
        let level0 = partial.first().map(Vec::as_slice).unwrap_or_default();
        if entries
            .iter()
            .map(|e| leaf_hash(e))
            .ne(level0.iter().copied())
        {
            return Err(mismatch(
                "the partial entry bundle does not hash to the partial level-0 tile".into(),
            ));
        }
        let tree = Tree {
            size,
            range,
            partial,
            bundle: entries,
        };
        if &tree.root() != root {
            return Err(mismatch(
                "the root hash differs from the checkpoint's".into(),
            ));
        }
        Ok(tree)
    }

    /// Appends a batch of entries and returns the new size and root with the tiles and bundles
    /// to write. An entry longer than [`MAX_ENTRY_LEN`] refuses the whole batch, leaving the
    /// tree as it was.
    pub fn append<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<Appended, TileError> {
        if let Some(long) = entries.iter().find(|e| e.as_ref().len() > MAX_ENTRY_LEN) {
            return Err(TileError::EntryTooLong {
                len: long.as_ref().len(),
            });
        }
        let first_index = self.size;
        let mut tiles = Vec::new();
        let mut bundles = Vec::new();
        let mut touched = vec![false; self.partial.len()];
        let mut bundle_touched = false;
        for entry in entries {
            let entry = entry.as_ref();
            let leaf = leaf_hash(entry);
            push_subtree(&mut self.range, 0, leaf);
            self.size += 1;
            self.bundle.push(entry.to_vec());
            bundle_touched = true;
            if self.bundle.len() == usize::from(TILE_WIDTH) {
                let tile = Tile {
                    level: 0,
                    index: (self.size >> 8) - 1,
                    width: TILE_WIDTH,
                };
                bundles.push((tile, encode_bundle(&self.bundle)?));
                self.bundle.clear();
            }
            // Carry the new hash up through every tile it completes.
            let mut level = 0usize;
            let mut hash = leaf;
            loop {
                if self.partial.len() == level {
                    self.partial.push(Vec::new());
                    touched.push(false);
                }
                self.partial[level].push(hash);
                touched[level] = true;
                if self.partial[level].len() < usize::from(TILE_WIDTH) {
                    break;
                }
                let hashes = std::mem::take(&mut self.partial[level]);
                let tile = Tile {
                    level: level as u8,
                    index: (self.size >> (8 * (level + 1))) - 1,
                    width: TILE_WIDTH,
                };
                hash = root_of(&hashes);
                tiles.push((tile, hashes.concat()));
                level += 1;
            }
        }
        for (level, hashes) in self.partial.iter().enumerate() {
            if touched[level] && !hashes.is_empty() {
                let tile = Tile::in_tree(level as u8, self.size >> (8 * (level + 1)), self.size)
                    .expect("a non-empty partial tile is in the tree");
                tiles.push((tile, hashes.concat()));
            }
        }
        if bundle_touched && !self.bundle.is_empty() {
            let tile = Tile::in_tree(0, self.size >> 8, self.size)
                .expect("a non-empty partial bundle is in the tree");
            bundles.push((tile, encode_bundle(&self.bundle)?));
        }
        Ok(Appended {
            first_index,
            size: self.size,
            root: self.root(),
            tiles,
            bundles,
        })
    }
}

/// Appends a perfect subtree of `height` to a compact range whose size is a multiple of
/// `2^height`, merging equal heights like a binary counter's carries.
fn push_subtree(range: &mut Vec<(u8, Hash)>, height: u8, hash: Hash) {
    range.push((height, hash));
    while let [.., (hl, left), (hr, right)] = range.as_slice() {
        if hl != hr {
            break;
        }
        let merged = (hl + 1, node_hash(left, right));
        range.truncate(range.len() - 2);
        range.push(merged);
    }
}

/// Every perfect-subtree hash of a tree, level by level: what a monitor that replays the whole
/// log, or a test, keeps. Serves proofs directly and tiles for comparison.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[h][i]`: the hash of the perfect subtree of height `h` starting at leaf `i << h`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        MemoryTree::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one entry.
    pub fn push(&mut self, entry: &[u8]) {
        self.push_leaf_hash(leaf_hash(entry));
    }

    /// Appends one leaf by its hash.
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut h = 0;
        loop {
            if self.levels.len() == h {
                self.levels.push(Vec::new());
            }
            self.levels[h].push(hash);
            let level = &self.levels[h];
            if level.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            h += 1;
        }
    }

    /// The root hash at the current size.
    pub fn root(&self) -> Hash {
        crate::merkle::tree_root(self, self.size()).expect("every stored subtree is present")
    }

    /// The bytes of `tile` as the log serves it (if this tree has it).
    pub fn tile_data(&self, tile: &Tile) -> Option<Vec<u8>> {
        let level = self.levels.get(8 * usize::from(tile.level))?;
        let start = usize::try_from(tile.index).ok()?.checked_mul(256)?;
        let end = start + usize::from(tile.width);
        level.get(start..end).map(|h| h.concat())
    }
}

impl HashReader for MemoryTree {
    fn subtree_hash(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(usize::from(height))
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| ProofError::Unavailable {
                height,
                index,
                reason: format!("beyond a tree of {} leaves", self.size()),
            })
    }
}

impl TileReader for MemoryTree {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        self.tile_data(tile)
            .ok_or_else(|| format!("{tile} is beyond a tree of {} leaves", self.size()))
    }
}
