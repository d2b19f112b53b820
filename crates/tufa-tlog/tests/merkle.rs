//! RFC 9162 hashing and proofs against published vectors, exhaustive checks on small trees, and
//! the tiles the append-only state produces.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tufa_tlog::tiles::{
    TILE_WIDTH, decode_bundle, encode_bundle, tiles_for_consistency, tiles_for_inclusion,
};
use tufa_tlog::{
    Hash, MemoryTree, ProofError, Tile, TileHashReader, TilePath, TileReader, Tree,
    consistency_proof, inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
};

fn hd(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn b64(s: &str) -> Hash {
    STANDARD.decode(s).unwrap().try_into().unwrap()
}

/// transparency-dev/merkle testonly/constants.go: `LeafInputs()` and `RootHashes()` (the RFC 6962
/// vectors of certificate-transparency's merkle tree tests).
fn ct_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| hex::decode(s).unwrap())
    .collect()
}

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn roots_match_the_rfc6962_vectors_for_every_size() {
    let mut memory = MemoryTree::new();
    let mut tree = Tree::new();
    assert_eq!(memory.root(), hd(CT_ROOTS[0]));
    assert_eq!(tree.root(), hd(CT_ROOTS[0]));
    for (i, leaf) in ct_leaves().iter().enumerate() {
        memory.push(leaf);
        let appended = tree.append(&[leaf]).unwrap();
        assert_eq!(memory.root(), hd(CT_ROOTS[i + 1]), "size {}", i + 1);
        assert_eq!(appended.root, hd(CT_ROOTS[i + 1]), "size {}", i + 1);
        assert_eq!(appended.first_index, i as u64);
    }
}

/// The consistency proofs of certificate-transparency's merkle_tree_test (as listed in
/// transparency-dev/merkle proof/verify_test.go): (1,8), (6,8), (2,5).
#[test]
fn consistency_proofs_match_the_rfc6962_vectors() {
    let mut memory = MemoryTree::new();
    for leaf in ct_leaves() {
        memory.push(&leaf);
    }
    let vectors: [(u64, u64, Vec<&str>); 4] = [
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, want) in vectors {
        let want: Vec<Hash> = want.into_iter().map(hd).collect();
        let proof = consistency_proof(&memory, old, new).unwrap();
        assert_eq!(proof, want, "{old}->{new}");
        verify_consistency(
            old,
            new,
            &proof,
            &hd(CT_ROOTS[old as usize]),
            &hd(CT_ROOTS[new as usize]),
        )
        .unwrap();
    }
}

/// Inclusion proofs of leaves 0 and 5 in the 8-leaf tree (transparency-dev/merkle
/// proof/verify_test.go, from certificate-transparency).
#[test]
fn inclusion_proofs_match_the_rfc6962_vectors() {
    let mut memory = MemoryTree::new();
    for leaf in ct_leaves() {
        memory.push(&leaf);
    }
    let vectors = [
        (
            0u64,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, want) in vectors {
        let want: Vec<Hash> = want.into_iter().map(hd).collect();
        assert_eq!(inclusion_proof(&memory, index, 8).unwrap(), want);
        let leaf = leaf_hash(&ct_leaves()[index as usize]);
        verify_inclusion(&leaf, index, 8, &want, &hd(CT_ROOTS[8])).unwrap();
    }
}

/// golang.org/x/mod sumdb/tlog ct_test.go: real proofs served by Google's Argon 2020 CT log
/// (testdata/argon2020: get-sth, get-entries?start=10000&end=10000, get-proof-by-hash,
/// get-sth-consistency?first=3654490), checked by an implementation that did not produce them.
#[test]
fn proofs_from_the_argon2020_certificate_transparency_log_verify() {
    let size = 961_984_013u64;
    let root = b64("dwlueapdd7LaOEnX2W2Wp9v2XE+KzejHRQGHwEx0oaM=");
    let leaf_input = STANDARD.decode(ARGON_LEAF_10000).unwrap();
    let audit_path: Vec<Hash> = ARGON_AUDIT_PATH.iter().map(|s| b64(s)).collect();
    verify_inclusion(&leaf_hash(&leaf_input), 10000, size, &audit_path, &root).unwrap();
    assert!(matches!(
        verify_inclusion(&leaf_hash(&leaf_input), 10001, size, &audit_path, &root),
        Err(ProofError::InclusionMismatch { .. })
    ));

    let old_root = b64("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=");
    let consistency: Vec<Hash> = ARGON_CONSISTENCY.iter().map(|s| b64(s)).collect();
    verify_consistency(3_654_490, size, &consistency, &old_root, &root).unwrap();
    let mut forged = consistency.clone();
    forged[3][0] ^= 1;
    assert_eq!(
        verify_consistency(3_654_490, size, &forged, &old_root, &root),
        Err(ProofError::Inconsistent {
            old: 3_654_490,
            new: size
        })
    );
}

/// Exhaustive over small trees: every inclusion proof (index, size) and every consistency proof
/// (old, new) verifies, from stored hashes and from tiles alike, and fails once any hash of it,
/// the leaf or a root is changed, or a hash is dropped or added.
#[test]
fn every_proof_of_small_trees_verifies_and_every_tampering_fails() {
    let mut memory = MemoryTree::new();
    let mut roots = vec![memory.root()];
    for i in 0..40u32 {
        memory.push(&i.to_be_bytes());
        roots.push(memory.root());
    }
    let flip = |h: &Hash| {
        let mut h = *h;
        h[7] ^= 0x40;
        h
    };
    for size in 1..=40u64 {
        let tiles = TileHashReader::new(size, &memory);
        for index in 0..size {
            let leaf = leaf_hash(&(index as u32).to_be_bytes());
            let proof = inclusion_proof(&memory, index, size).unwrap();
            assert_eq!(inclusion_proof(&tiles, index, size).unwrap(), proof);
            let root = &roots[size as usize];
            verify_inclusion(&leaf, index, size, &proof, root).unwrap();
            assert!(verify_inclusion(&flip(&leaf), index, size, &proof, root).is_err());
            assert!(verify_inclusion(&leaf, index, size, &proof, &flip(root)).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i]);
                assert!(verify_inclusion(&leaf, index, size, &bad, root).is_err());
                let mut short = proof.clone();
                short.remove(i);
                assert!(verify_inclusion(&leaf, index, size, &short, root).is_err());
            }
            let mut long = proof.clone();
            long.push(*root);
            assert!(verify_inclusion(&leaf, index, size, &long, root).is_err());
            for other in (0..size).filter(|o| *o != index) {
                assert!(verify_inclusion(&leaf, other, size, &proof, root).is_err());
            }
        }
        for old in 0..=size {
            let proof = consistency_proof(&memory, old, size).unwrap();
            assert_eq!(consistency_proof(&tiles, old, size).unwrap(), proof);
            let (old_root, new_root) = (&roots[old as usize], &roots[size as usize]);
            verify_consistency(old, size, &proof, old_root, new_root).unwrap();
            if old == 0 {
                continue;
            }
            assert!(verify_consistency(old, size, &proof, &flip(old_root), new_root).is_err());
            assert!(verify_consistency(old, size, &proof, old_root, &flip(new_root)).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i]);
                assert!(verify_consistency(old, size, &bad, old_root, new_root).is_err());
                let mut short = proof.clone();
                short.remove(i);
                assert!(verify_consistency(old, size, &short, old_root, new_root).is_err());
            }
            let mut long = proof.clone();
            long.push(*new_root);
            assert!(verify_consistency(old, size, &long, old_root, new_root).is_err());
            if old > 1 && old < size {
                // The proof for another old size must not pass for this one.
                assert!(
                    verify_consistency(old - 1, size, &proof, &roots[old as usize - 1], new_root)
                        .is_err()
                );
            }
        }
    }
    assert_eq!(
        verify_consistency(5, 4, &[], &roots[5], &roots[4]),
        Err(ProofError::SizeDecreased { old: 5, new: 4 })
    );
}

/// Tiles in a map, as a log would have written them from [`Tree::append`].
#[derive(Default)]
struct Written {
    tiles: std::collections::BTreeMap<Tile, Vec<u8>>,
    bundles: std::collections::BTreeMap<Tile, Vec<u8>>,
}

impl TileReader for Written {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        self.tiles
            .get(tile)
            .cloned()
            .ok_or_else(|| format!("not written: {tile}"))
    }
}

/// Batches of every shape, across tile boundaries at levels 0 and 1: the tiles `Tree` emits are
/// exactly the tiles of the tree (compared with the stored-hash tree), every tile a proof needs
/// has been written, proofs built from the written tiles verify, and consistency holds between
/// every pair of published sizes. A resumed tree continues identically.
#[test]
fn appends_in_batches_emit_the_tiles_of_the_tree() {
    let batches = [
        1usize,
        3,
        250,
        2,
        1,
        255,
        256,
        257,
        0,
        511,
        65_536 - 1532,
        1,
        300,
    ];
    let mut tree = Tree::new();
    let mut memory = MemoryTree::new();
    let mut written = Written::default();
    let mut published: Vec<(u64, Hash)> = vec![(0, tree.root())];
    let mut next = 0u32;
    for (b, count) in batches.into_iter().enumerate() {
        let entries: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                next += 1;
                format!("timestamp {next}").into_bytes()
            })
            .collect();
        let appended = tree.append(&entries).unwrap();
        for e in &entries {
            memory.push(e);
        }
        assert_eq!(appended.size, memory.size());
        assert_eq!(appended.root, memory.root(), "batch {b}");
        for (tile, data) in &appended.tiles {
            assert_eq!(Some(data), memory.tile_data(tile).as_ref(), "{tile}");
            // A tile at a given width never changes: rewriting one with other bytes is a bug.
            if let Some(old) = written.tiles.insert(*tile, data.clone()) {
                assert_eq!(&old, data, "{tile} rewritten");
            }
        }
        for (tile, data) in &appended.bundles {
            let start = (tile.index * 256) as usize;
            let all: Vec<_> = (start..start + usize::from(tile.width))
                .map(|i| format!("timestamp {}", i + 1).into_bytes())
                .collect();
            assert_eq!(
                data,
                &encode_bundle(&all).unwrap(),
                "{}",
                tile.entries_path()
            );
            assert_eq!(decode_bundle(tile, data).unwrap(), all);
            written.bundles.insert(*tile, data.clone());
        }
        let size = appended.size;
        // Every partial tile of the new size was written by this batch or earlier.
        for tile in Tile::partial_tiles(size) {
            assert!(written.tiles.contains_key(&tile), "{tile} missing");
        }
        let reader = TileHashReader::new(size, &written);
        assert_eq!(tree_root(&reader, size).unwrap(), appended.root);
        for (old, old_root) in &published {
            let proof = consistency_proof(&reader, *old, size).unwrap();
            verify_consistency(*old, size, &proof, old_root, &appended.root).unwrap();
        }
        for index in [0, size / 3, size.saturating_sub(1)] {
            if index < size {
                let proof = inclusion_proof(&reader, index, size).unwrap();
                let leaf = leaf_hash(format!("timestamp {}", index + 1).as_bytes());
                verify_inclusion(&leaf, index, size, &proof, &appended.root).unwrap();
            }
        }
        published.push((size, appended.root));

        // Resuming from what was written gives the same state as the tree kept in memory.
        let partial: Vec<(Tile, Vec<u8>)> = Tile::partial_tiles(size)
            .into_iter()
            .map(|t| (t, written.tiles[&t].clone()))
            .collect();
        let bundle = Tile::in_tree(0, size >> 8, size)
            .map(|t| written.bundles[&t].clone())
            .unwrap_or_default();
        let mut resumed = Tree::resume(size, &appended.root, &partial, &bundle).unwrap();
        let mut copy = tree.clone();
        assert_eq!(
            resumed.append(&[b"probe"]).unwrap(),
            copy.append(&[b"probe"]).unwrap()
        );
        assert!(Tree::resume(size, &[0; 32], &partial, &bundle).is_err());
    }
    assert_eq!(tree.size(), batches.iter().sum::<usize>() as u64);
}

#[test]
fn a_tampered_tile_makes_the_proof_fail() {
    let mut tree = Tree::new();
    let entries: Vec<[u8; 4]> = (0..600u32).map(|i| i.to_be_bytes()).collect();
    let appended = tree.append(&entries).unwrap();
    let mut written = Written::default();
    for (tile, data) in appended.tiles {
        written.tiles.insert(tile, data);
    }
    let level0 = Tile {
        level: 0,
        index: 1,
        width: TILE_WIDTH,
    };
    written.tiles.get_mut(&level0).unwrap()[40] ^= 1;
    let reader = TileHashReader::new(600, &written);
    let leaf = leaf_hash(&300u32.to_be_bytes());
    let proof = inclusion_proof(&reader, 300, 600).unwrap();
    assert!(matches!(
        verify_inclusion(&leaf, 300, 600, &proof, &appended.root),
        Err(ProofError::InclusionMismatch { .. })
    ));
    written.tiles.get_mut(&level0).unwrap().pop();
    let reader = TileHashReader::new(600, &written);
    assert!(matches!(
        inclusion_proof(&reader, 300, 600),
        Err(ProofError::Unavailable { .. })
    ));
}

#[test]
fn an_entry_too_long_for_a_bundle_refuses_the_batch() {
    let mut tree = Tree::new();
    let long = vec![0u8; 65_536];
    assert!(tree.append(&[b"ok".to_vec(), long]).is_err());
    assert_eq!(tree.size(), 0);
}

/// c2sp.org/tlog-tiles: "index 1234067 will be encoded as `x001/x234/067`", and "a tree of size
/// 70,000 will be represented by 273 full level 0 tiles, one partial level 0 tile of width 112,
/// one full level 1 tile, one partial level 1 tile of width 17, and one partial level 2 tile of
/// width 1".
#[test]
fn tile_paths_and_partial_tiles_follow_the_specification() {
    let tile = Tile {
        level: 0,
        index: 1_234_067,
        width: 256,
    };
    assert_eq!(tile.path(), "tile/0/x001/x234/067");
    assert_eq!(tile.entries_path(), "tile/entries/x001/x234/067");
    let partial = Tile {
        level: 2,
        index: 5,
        width: 17,
    };
    assert_eq!(partial.path(), "tile/2/005.p/17");
    for t in [tile, partial] {
        assert_eq!(Tile::parse_path(&t.path()).unwrap(), TilePath::Hashes(t));
        assert_eq!(
            Tile::parse_path(&t.entries_path()).unwrap(),
            TilePath::Entries(Tile { level: 0, ..t })
        );
    }
    for bad in [
        "tile/0/1234067",
        "tile/0/x001/234/067",
        "tile/0/x000/005",
        "tile/00/005",
        "tile/64/005",
        "tile/0/005.p/256",
        "tile/0/005.p/0",
        "tile/0/005.p/017",
        "tile/0/05",
        "tile/0/-05",
        "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        "tiles/0/005",
    ] {
        assert!(Tile::parse_path(bad).is_err(), "{bad}");
    }

    let size = 70_000;
    let level = |l: u8| (0..300).filter_map(move |n| Tile::in_tree(l, n, size));
    let level0: Vec<Tile> = level(0).collect();
    assert_eq!(level0.iter().filter(|t| !t.is_partial()).count(), 273);
    assert_eq!(level0.last().unwrap().width, 112);
    let level1: Vec<Tile> = level(1).collect();
    assert_eq!(
        level1.iter().map(|t| t.width).collect::<Vec<_>>(),
        [256, 17]
    );
    assert_eq!(level(2).map(|t| t.width).collect::<Vec<_>>(), [1]);
    assert_eq!(level(3).count(), 0);
    assert_eq!(
        Tile::partial_tiles(size)
            .iter()
            .map(|t| (t.level, t.width))
            .collect::<Vec<_>>(),
        [(0, 112), (1, 17), (2, 1)]
    );
    // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile
    // of width 1".
    assert_eq!(
        Tile::partial_tiles(256),
        [Tile {
            level: 1,
            index: 0,
            width: 1
        }]
    );
}

/// What a client fetches: for one inclusion proof in a tree of under 65,536 leaves, the leaf's
/// level-0 tile and at most the level-1 tile (plus partial tiles on the right edge).
#[test]
fn the_tiles_a_client_needs_are_few() {
    let tiles = tiles_for_inclusion(300, 70_000).unwrap();
    assert!(tiles.contains(&Tile {
        level: 0,
        index: 1,
        width: 256
    }));
    assert!(tiles.len() <= 4, "{tiles:?}");
    let tiles = tiles_for_consistency(69_000, 70_000).unwrap();
    assert!(tiles.len() <= 6, "{tiles:?}");
    assert_eq!(tiles_for_consistency(5, 5).unwrap(), []);
}

#[test]
fn bundles_are_bounded() {
    let tile = Tile {
        level: 0,
        index: 0,
        width: 2,
    };
    let data = encode_bundle(&[b"a".as_slice(), b"bc"]).unwrap();
    assert_eq!(data, [0, 1, b'a', 0, 2, b'b', b'c']);
    assert!(decode_bundle(&tile, &data[..6]).is_err());
    assert!(decode_bundle(&tile, &data[..3]).is_err());
    let mut three = data.clone();
    three.extend_from_slice(&[0, 0]);
    assert!(decode_bundle(&tile, &three).is_err());
}

const ARGON_AUDIT_PATH: [&str; 30] = [
    "T46AmJsuOM/gFiGlUp+IJJebp+1Z5qratFNW7U0JyOQ=",
    "9Jj1Feodn42uRYEfffkV4HF/EIPFQ5Zo9IwkxbQ2uhk=",
    "D53/1oCNebF4J59HHgioovKZxrmrKcVuCVhy3Izg8Ck=",
    "wSFDgGSrsXRPA+1c8WHoAFCsWeUv8NDyP/Q/SgsyVyY=",
    "516/RcwsgdwdzHn18v1dJHqBkgFUbNhmCIWOGjsMJaE=",
    "naTFY2ajLFgrgs5XUl+zJYZnnlJksLGsA1VYwpLfqbY=",
    "mKBRJo6qao+0Kdh/rhGkZUbHUAxMhrtrclrTpIbNjIg=",
    "Co4ueOFE7lpifLio94irxxsv1wFMMaK3tPu2ZQkHlro=",
    "yRgy800K6JMYCC05sWfqF2kvCg2riT/pVM+nEa6V5+0=",
    "n2O38XJZC8/Wpbwi9HhgVizlUyeUHVZvYyQB1607MRc=",
    "go3tAjuNfNSCj87y2Rg1xOroDknGN1eaf3cgvzObf7Q=",
    "8D0Mj3/J7ySSnFb0afIHYXv6rlOhECnsebY6XKi1IR8=",
    "6rcez46ZU8M5vPiWVMAUfJfAOV0pPP/mch/lYzZhj/M=",
    "2rtIeXrPvSdUyHc5maIgSAVB2BzaKaupWxSAiVayDE4=",
    "nniW/IMFQPN5xw8UsHFn7CRStYbm1gLu7NNa6kkRqJQ=",
    "mRPPi7sQS22MduIEyvcNzCNFqIt6kLwYPkNKrVtIcu8=",
    "JvTivzESNS9wHI8aph5a7uieVmtS/p9PciMZ5D6GyOo=",
    "UTyQd+Ym0wY4zG+qK806bBORwi1CSVvFQ/KknnqoZj8=",
    "hXODrqN+ff+U6zPqRQ+ZQKs6im1fPcxIerDSfNwflhE=",
    "II6GE+WY/DrpZzfHztLwkR46o37zVkNLCyPYlf68zA0=",
    "d609kWWcNBllbA8Jb/ad4XAVVGnScLRmtP8FYyr+Dck=",
    "rikBsP0G0gioXRpBFED2CzQdSLrGPvRd0bEcbEZw1rI=",
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0=",
    "pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=",
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA=",
    "WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=",
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ=",
    "NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=",
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI=",
    "nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=",
];

const ARGON_CONSISTENCY: [&str; 30] = [
    "80Sfbj6UQEdVSZCSIgh9NMPj3vCBzcc1A48B2crJSWg=",
    "FZcrgAHUk6nNPviJZq8kEK6jCG1d18pJOFE45ZDc1TQ=",
    "Q67reWXmPBo1UfmwBap4Xi9PMPfFdUSSw3WGlRZdG7k=",
    "eJ7CyhR4PxzBxDIsWgrVYW1eFUb9ndgf46tFmiqVrxA=",
    "QrDwp062Grm5WY8KdrhFsBuuNjGzRox2Jb8PmVL5OYw=",
    "XM4YMjMEdLH/XJam/ZWyaP14k3cmsOtnPsOWQ54lW1s=",
    "SGiBh+jOTGccXU48ZzgQ88lRcBmtB4wz4oSDndv2QTg=",
    "WAS6txqNLYKGL1GdBdpqmV42TTfn6cJsuDsqLXuTCNI=",
    "QFmRS0rirUA7ZN3lxFjDncV+E1OCrn3NUB4RCp+5fzc=",
    "Hdbp7It2XBNZmNDBpCN/KPd7vfVqxgzwOosqVIaEA9E=",
    "mxvHL0ZiblBdD7j7pIa1jlfB0gSqfJ6oX0UGo7L0VsU=",
    "q5hjyvoW6TL/PThgcitpDcSTrnKX2p1+aqscqH2euRA=",
    "jTOWDqt3IHj2NVFeezyBz2ofpru+ztEywqKUAfFclKI=",
    "GIRn0w3HqJdvU9j1WVD//eR6lk2AaTVjyzjsJNP8U88=",
    "x52GJvxG81fnQBrgOTbll1A5tz95/LXK0Ag1NhB0r1I=",
    "6/0OqrcTgc3o5dD5PymmoC96lB9yLPFuTHVvLy8fSGk=",
    "Gf+iKLfcXO5l4JEFmsZvSdG5q1uEeWPfYLrds6pmjz0=",
    "DGuaco+McyM3AfRSF6qX7RwSetwe2ieYJmxw5e9rVx0=",
    "2tQJ9V32hnYp+fdpP6TcjmgJmLeNVOMKM0Ml1kk4cNU=",
    "3PapK+IkyJr8I9yAErAmzuZezzLMzsg+PfeRCgNW8NQ=",
    "s6xiYeejb+wtqHA+URJZ2I/SCPyIW8coP6aB00FJbMY=",
    "z9lSpmdTcr5M5ZzKlc4EPh3SrSypKFdk6JUF/UccaZU=",
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0=",
    "pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=",
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA=",
    "WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=",
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ=",
    "NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=",
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI=",
    "nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=",
];

/// The `leaf_input` of entry 10000 (testdata/argon2020/entries.json).
const ARGON_LEAF_10000: &str = "AAAAAAFelPhqUwAAAAViMIIFXjCCBEagAwIBAgIRAOodHzZdqWIFzYyl/SovhCMwDQYJKoZIhvcNAQELBQAwgZAxCzAJBgNVBAYTAkdCMRswGQYDVQQIExJHcmVhdGVyIE1hbmNoZXN0ZXIxEDAOBgNVBAcTB1NhbGZvcmQxGjAYBgNVBAoTEUNPTU9ETyBDQSBMaW1pdGVkMTYwNAYDVQQDEy1DT01PRE8gUlNBIERvbWFpbiBWYWxpZGF0aW9uIFNlY3VyZSBTZXJ2ZXIgQ0EwHhcNMTcwMjE1MDAwMDAwWhcNMjAwNDE2MjM1OTU5WjBfMSEwHwYDVQQLExhEb21haW4gQ29udHJvbCBWYWxpZGF0ZWQxHTAbBgNVBAsTFFBvc2l0aXZlU1NMIFdpbGRjYXJkMRswGQYDVQQDDBIqLmxhbmRsb3Jkcy5jb20uYXUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCtPBKKHj4zdrGlCjgTHzb5gx9JCs97DwvBz60f14gDufF2haWbOxyJ0a3opAMsZnOr8HkARVCwxdqG/PTfACcb0QM7FOlzvxGqxataTYiChwvkkif8F9GlJw69HuHgzhusPf1Ytfk3ps1PRC14MkyrS4kwPrk/Le4XdkqRpRw62wG4V6IkbzsNMEOl1H8EgUbfyapdOcVxHjIzvBVy56fBRKG05Fr5wNq3Acak5kYZdNsLhhmlrqAfAjiombW3hb3V5blJdRC0BDdYHv2+zKey6LqJ1FDoXo6IzbzPpC+aifZy47YX+/N1U64Qn5xlDg7mOP8JXfkNJHbU1TJZHif5AgMBAAGjggHhMIIB3TAfBgNVHSMEGDAWgBSQr2o6lFoL2JDqElZz30O0Oija5zAdBgNVHQ4EFgQUNQSLjkoz01I+iuuoC5lgEp0anhcwDgYDVR0PAQH/BAQDAgWgMAwGA1UdEwEB/wQCMAAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCME8GA1UdIARIMEYwOgYLKwYBBAGyMQECAgcwKzApBggrBgEFBQcCARYdaHR0cHM6Ly9zZWN1cmUuY29tb2RvLmNvbS9DUFMwCAYGZ4EMAQIBMFQGA1UdHwRNMEswSaBHoEWGQ2h0dHA6Ly9jcmwuY29tb2RvY2EuY29tL0NPTU9ET1JTQURvbWFpblZhbGlkYXRpb25TZWN1cmVTZXJ2ZXJDQS5jcmwwgYUGCCsGAQUFBwEBBHkwdzBPBggrBgEFBQcwAoZDaHR0cDovL2NydC5jb21vZG9jYS5jb20vQ09NT0RPUlNBRG9tYWluVmFsaWRhdGlvblNlY3VyZVNlcnZlckNBLmNydDAkBggrBgEFBQcwAYYYaHR0cDovL29jc3AuY29tb2RvY2EuY29tMC8GA1UdEQQoMCaCEioubGFuZGxvcmRzLmNvbS5hdYIQbGFuZGxvcmRzLmNvbS5hdTANBgkqhkiG9w0BAQsFAAOCAQEACyHqxUzrexToY7tOv4+kyGPP2D27P1tQpyzeAl1bPObiMhNK2b9vvBLDWAaqm8c0YL1h+DBdLoWzf3xFsIkTCVCjWJTNSNlcYtgRk6or1s7jWsfXzWqsnPjPPmTIOCw7EfH7Yme3oxPs3UUsmShAgPwNohAtL9GqlqMiKM6v1WU3NHt01jEoNP23LRa6KeNK6AH6WHJykzL223IlhgXjHTeuQj6lR+TNrQXJuhwTXYe+20rrpPQxc1Pn7AqnvfWgmicRQ7gdIcr4V6+ecTvLfNOaJ0ZYe5G5giuAAdTm7F57pk04f4gyZNYKrj88mvbkoriN8b6jcWExtrYO6bm2TwAA";

/// Resuming refuses storage that does not rebuild the checkpoint's tree: a missing partial tile,
/// a tile of the wrong length, a bundle that does not hash to the level-0 tile.
#[test]
fn resume_refuses_storage_that_was_rewritten() {
    let empty = Tree::resume(0, &tufa_tlog::empty_root(), &[], b"").unwrap();
    assert_eq!(empty.size(), 0);

    let mut tree = Tree::new();
    let entries: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let appended = tree.append(&entries).unwrap();
    let partial: Vec<(Tile, Vec<u8>)> = appended
        .tiles
        .iter()
        .filter(|(t, _)| t.is_partial())
        .cloned()
        .collect();
    let bundle = appended
        .bundles
        .iter()
        .find(|(t, _)| t.is_partial())
        .unwrap()
        .1
        .clone();
    Tree::resume(300, &appended.root, &partial, &bundle).unwrap();

    assert!(matches!(
        Tree::resume(300, &appended.root, &partial[1..], &bundle),
        Err(tufa_tlog::TileError::ResumeMismatch { .. })
    ));
    let mut short = partial.clone();
    short[0].1.pop();
    assert!(matches!(
        Tree::resume(300, &appended.root, &short, &bundle),
        Err(tufa_tlog::TileError::BadTileLength { .. })
    ));
    let mut other_entries = entries[256..].to_vec();
    other_entries[3] = b"rewritten".to_vec();
    let other_bundle = encode_bundle(&other_entries).unwrap();
    assert!(matches!(
        Tree::resume(300, &appended.root, &partial, &other_bundle),
        Err(tufa_tlog::TileError::ResumeMismatch { .. })
    ));
    assert!(Tree::resume(300, &appended.root, &partial, b"").is_err());
}
