//! C2SP tlog-tiles: tile coordinates and paths, entry bundles, and reading proof hashes from
//! tiles.
//!
//! From the specification (c2sp.org/tlog-tiles): tiles are served at `tile/<L>/<N>[.p/<W>]`,
//! entry bundles at `tile/entries/<N>[.p/<W>]`. `<N>` is "encoded into zero-padded 3-digit path
//! elements. All but the last path element MUST begin with an `x`" (index 1234067 is
//! `x001/x234/067`). A full tile is 256 hashes (8,192 bytes); level 0 holds leaf hashes and each
//! hash at level `l >= 1` is the Merkle tree hash of a full tile at level `l - 1`. "The partial
//! tile at level *l* for a tree of size *s* has `floor(s / 256**l) mod 256` entries", and
//! "entry bundles are sequences of big-endian uint16 length-prefixed log entries".

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::merkle::{Hash, HashReader, ProofError, consistency_proof, inclusion_proof, root_of};

/// Hashes in a full tile, and entries in a full entry bundle.
pub const TILE_WIDTH: u16 = 256;

/// Tile levels run from 0 to 63 (the specification's bound on `<L>`).
pub const MAX_LEVEL: u8 = 63;

/// The largest entry an entry bundle can carry (its length prefix is a uint16).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Why a tile path, tile or entry bundle was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TileError {
    #[error("not a tile path: {path:?} ({reason})")]
    BadPath { path: String, reason: &'static str },
    #[error("tile {tile} has {got} bytes, not {wanted}: a truncated or padded tile")]
    BadTileLength {
        tile: String,
        got: usize,
        wanted: usize,
    },
    #[error("entry bundle {tile} is malformed: {reason}")]
    BadBundle { tile: String, reason: String },
    #[error(
        "log entry of {len} bytes is longer than the {MAX_ENTRY_LEN} bytes an entry bundle can carry"
    )]
    EntryTooLong { len: usize },
    #[error(
        "the stored tiles do not rebuild the tree of {size} leaves: {reason} (storage corrupted or rewritten)"
    )]
    ResumeMismatch { size: u64, reason: String },
}

/// A tile's coordinates: its level, its index within the level and its width (256 for a full
/// tile, 1..=255 for a partial one). Level-0 coordinates also name entry bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Which resource a parsed tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    Hashes(Tile),
    Entries(Tile),
}

fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g:03}")
            } else {
                format!("{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Tile {
    /// The tile at `level`, `index`, as it is in a tree of `size` leaves: full, partial, or
    /// `None` when the tree has no such tile.
    pub fn in_tree(level: u8, index: u64, size: u64) -> Option<Tile> {
        let shift = 8 * u32::from(level);
        let entries = size.checked_shr(shift).unwrap_or(0);
        let full = entries >> 8;
        if index < full {
            Some(Tile {
                level,
                index,
                width: TILE_WIDTH,
            })
        } else if index == full && entries & 0xff != 0 {
            Some(Tile {
                level,
                index,
                width: (entries & 0xff) as u16,
            })
        } else {
            None
        }
    }

    /// The rightmost tile of each level of a tree of `size` leaves that is partial: what the
    /// publisher reads back to [`crate::Tree::resume`] (level 0 first).
    pub fn partial_tiles(size: u64) -> Vec<Tile> {
        (0..=MAX_LEVEL)
            .take_while(|l| size.checked_shr(8 * u32::from(*l)).unwrap_or(0) > 0)
            .filter_map(|l| {
                let entries = size >> (8 * u32::from(l));
                Tile::in_tree(l, entries >> 8, size)
            })
            .collect()
    }

    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    fn suffix(&self) -> String {
        if self.is_partial() {
            format!(".p/{}", self.width)
        } else {
            String::new()
        }
    }

    /// `tile/<L>/<N>[.p/<W>]`, relative to the log's prefix.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}{}",
            self.level,
            index_path(self.index),
            self.suffix()
        )
    }

    /// `tile/entries/<N>[.p/<W>]`: the entry bundle whose leaf hashes this level-0 tile holds.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}{}", index_path(self.index), self.suffix())
    }

    /// The tile's size in bytes: 32 per hash.
    pub fn byte_len(&self) -> usize {
        usize::from(self.width) * 32
    }

    /// Parses a tile or entry bundle path (as produced by [`Tile::path`] and
    /// [`Tile::entries_path`]); every non-canonical spelling is refused, so a path names exactly
    /// one resource.
    pub fn parse_path(path: &str) -> Result<TilePath, TileError> {
        let bad = |reason| TileError::BadPath {
            path: path.chars().take(100).collect(),
            reason,
        };
        if path.len() > 100 {
            return Err(bad("too long"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("no tile/ prefix"))?;
        let (level, rest) = rest.split_once('/').ok_or_else(|| bad("no level"))?;
        let level = if level == "entries" {
            None
        } else {
            let l = parse_decimal(level).ok_or_else(|| bad("level is not a decimal"))?;
            if l > u64::from(MAX_LEVEL) {
                return Err(bad("level above 63"));
            }
            Some(l as u8)
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w = parse_decimal(width).ok_or_else(|| bad("width is not a decimal"))?;
                if !(1..u64::from(TILE_WIDTH)).contains(&w) {
                    return Err(bad("partial width outside 1..=255"));
                }
                (index, w as u16)
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group
                    .strip_prefix('x')
                    .ok_or_else(|| bad("index group without x"))?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index group is not three digits"));
            }
            let value: u64 = digits.parse().map_err(|_| bad("index group"))?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(value))
                .ok_or_else(|| bad("index overflows"))?;
        }
        let tile = Tile {
            level: level.unwrap_or(0),
            index,
            width,
        };
        // Leading zero groups ("x000/005") would be a second name for the same tile.
        if index_path(index) != index_part {
            return Err(bad("index has leading zero groups"));
        }
        Ok(match level {
            Some(_) => TilePath::Hashes(tile),
            None => TilePath::Entries(tile),
        })
    }
}

/// A decimal with no sign and no leading zeroes.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || text.len() > 20
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// Splits a tile's bytes into its hashes, checking the length against the width.
pub fn tile_hashes(tile: &Tile, data: &[u8]) -> Result<Vec<Hash>, TileError> {
    if data.len() != tile.byte_len() {
        return Err(TileError::BadTileLength {
            tile: tile.path(),
            got: data.len(),
            wanted: tile.byte_len(),
        });
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Encodes entries as an entry bundle: each entry prefixed by its length as a big-endian
/// uint16.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.as_ref();
        let len =
            u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLong { len: entry.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes the entry bundle named by `tile`, which must hold exactly `tile.width` entries.
pub fn decode_bundle(tile: &Tile, data: &[u8]) -> Result<Vec<Vec<u8>>, TileError> {
    let bad = |reason: String| TileError::BadBundle {
        tile: tile.entries_path(),
        reason,
    };
    let mut entries = Vec::with_capacity(usize::from(tile.width));
    let mut rest = data;
    while !rest.is_empty() {
        if entries.len() == usize::from(tile.width) {
            return Err(bad(format!(
                "more than the {} entries its width allows",
                tile.width
            )));
        }
        let [hi, lo, tail @ ..] = rest else {
            return Err(bad("a length prefix is cut off".into()));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            return Err(bad(format!(
                "entry {} claims {len} bytes, {} remain",
                entries.len(),
                tail.len()
            )));
        }
        entries.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if entries.len() != usize::from(tile.width) {
        return Err(bad(format!(
            "{} entries, its width is {}",
            entries.len(),
            tile.width
        )));
    }
    Ok(entries)
}

/// Where tiles come from: storage on the log's side, HTTP on a client's. A tile's hashes are
/// not trusted: every proof built from them is verified against a signed root before use, so a
/// tampered tile makes that verification fail.
pub trait TileReader {
    /// The bytes of `tile` (exactly `tile.byte_len()` of them).
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String>;
}

impl<T: TileReader> TileReader for &T {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        (**self).read_tile(tile)
    }
}

/// A [`HashReader`] over the tiles of a tree of a given size. Each tile is read at most once.
pub struct TileHashReader<R> {
    size: u64,
    reader: R,
    cache: RefCell<BTreeMap<Tile, Vec<Hash>>>,
}

impl<R: TileReader> TileHashReader<R> {
    pub fn new(size: u64, reader: R) -> Self {
        TileHashReader {
            size,
            reader,
            cache: RefCell::new(BTreeMap::new()),
        }
    }

    /// The tiles read so far.
    pub fn tiles_read(&self) -> Vec<Tile> {
        self.cache.borrow().keys().copied().collect()
    }
}

impl<R: TileReader> HashReader for TileHashReader<R> {
    fn subtree_hash(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        let unavailable = |reason: String| ProofError::Unavailable {
            height,
            index,
            reason,
        };
        // A perfect subtree of height 8L + r is 2^r consecutive hashes of the level-L tile.
        let level = height / 8;
        let count = 1u64 << (height % 8);
        let first = index
            .checked_mul(count)
            .ok_or_else(|| unavailable("index overflows".into()))?;
        let tile = Tile::in_tree(level, first >> 8, self.size)
            .ok_or_else(|| unavailable(format!("beyond a tree of {} leaves", self.size)))?;
        let within = (first & 0xff) as usize;
        let end = within + count as usize;
        if end > usize::from(tile.width) {
            return Err(unavailable(format!(
                "not complete in a tree of {} leaves",
                self.size
            )));
        }
        if let Some(hashes) = self.cache.borrow().get(&tile) {
            return Ok(root_of(&hashes[within..end]));
        }
        let data = self
            .reader
            .read_tile(&tile)
            .map_err(|e| unavailable(format!("reading {tile}: {e}")))?;
        let hashes = tile_hashes(&tile, &data).map_err(|e| unavailable(e.to_string()))?;
        let hash = root_of(&hashes[within..end]);
        self.cache.borrow_mut().insert(tile, hashes);
        Ok(hash)
    }
}

/// Serves zero-filled tiles: only the list of tiles a proof needs matters.
struct Recorder;

impl TileReader for Recorder {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        Ok(vec![0; tile.byte_len()])
    }
}

/// The tiles a client fetches to build the inclusion proof of leaf `index` in the tree of
/// `size` leaves (besides the checkpoint, which carries the root).
pub fn tiles_for_inclusion(index: u64, size: u64) -> Result<Vec<Tile>, ProofError> {
    let reader = TileHashReader::new(size, Recorder);
    inclusion_proof(&reader, index, size)?;
    Ok(reader.tiles_read())
}

/// The tiles a client fetches to build the consistency proof from the tree of `old` leaves to
/// the tree of `new` leaves.
pub fn tiles_for_consistency(old: u64, new: u64) -> Result<Vec<Tile>, ProofError> {
    let reader = TileHashReader::new(new, Recorder);
    consistency_proof(&reader, old, new)?;
    Ok(reader.tiles_read())
}
