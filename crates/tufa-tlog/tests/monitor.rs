//! A monitor replaying the log from its entry bundles finds planted and rewritten entries.

use std::collections::BTreeMap;

use tufa_tlog::tiles::{decode_bundle, encode_bundle};
use tufa_tlog::{Checkpoint, MonitorError, Replay, Tile, TimestampEntry, Tree};

const ORIGIN: &str = "pypi.example/tufa-log";

/// A log publishing timestamp entries in batches; `served` holds the bundles as served (latest
/// width per index) and `checkpoints` what it signed.
struct Served {
    tree: Tree,
    served: BTreeMap<u64, (Tile, Vec<u8>)>,
    checkpoints: Vec<Checkpoint>,
    version: u64,
}

impl Served {
    fn new() -> Self {
        Served {
            tree: Tree::new(),
            served: BTreeMap::new(),
            checkpoints: Vec::new(),
            version: 0,
        }
    }

    fn publish(&mut self, count: usize) {
        let entries: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                self.version += 1;
                let v = self.version;
                TimestampEntry::of(format!("timestamp v{v}").as_bytes(), v, v, None).to_bytes()
            })
            .collect();
        let appended = self.tree.append(&entries).unwrap();
        for (tile, data) in appended.bundles {
            self.served.insert(tile.index, (tile, data));
        }
        self.checkpoints
            .push(Checkpoint::new(ORIGIN, appended.size, appended.root));
    }

    /// The monitor's loop for one checkpoint: fetch the bundles it lacks, replay, check.
    fn replay_to(&self, replay: &mut Replay, checkpoint: &Checkpoint) -> Result<u64, MonitorError> {
        let mut versions = 0;
        for tile in replay.bundles_to_fetch(checkpoint.size) {
            let (served_tile, data) = &self.served[&tile.index];
            // A log serves the widest bundle it has; the monitor reads the width it asked for.
            let data = if *served_tile == tile {
                data.clone()
            } else {
                let entries = decode_bundle(served_tile, data).unwrap();
                encode_bundle(&entries[..usize::from(tile.width)]).unwrap()
            };
            let (_, new) = replay.feed(&tile, &data)?;
            for entry in new {
                TimestampEntry::parse(&entry).unwrap();
                versions += 1;
            }
        }
        replay.check(checkpoint)?;
        Ok(versions)
    }
}

#[test]
fn an_honest_log_replays_checkpoint_by_checkpoint() {
    let mut log = Served::new();
    let mut replay = Replay::new();
    let mut total = 0;
    for count in [1, 300, 10, 0, 245, 256, 700] {
        log.publish(count);
        let checkpoint = log.checkpoints.last().unwrap().clone();
        total += log.replay_to(&mut replay, &checkpoint).unwrap();
    }
    assert_eq!(total, log.tree.size());
    assert_eq!(replay.size(), 1512);
}

#[test]
fn a_planted_entry_is_found() {
    let mut log = Served::new();
    log.publish(600);
    // The attacker replaces the entry of timestamp 300 in the served bundle with a forged one;
    // the signed checkpoint is the honest one (or the attacker would need a fork the witnesses
    // refuse).
    let (tile, data) = log.served[&1].clone();
    let mut entries = decode_bundle(&tile, &data).unwrap();
    entries[300 - 256 - 1] =
        TimestampEntry::of(b"forged timestamp v300", 300, 300, None).to_bytes();
    log.served
        .insert(1, (tile, encode_bundle(&entries).unwrap()));
    let checkpoint = log.checkpoints[0].clone();
    assert!(matches!(
        log.replay_to(&mut Replay::new(), &checkpoint),
        Err(MonitorError::RootMismatch { size: 600, .. })
    ));
}

#[test]
fn a_rewritten_entry_is_found_and_bundles_come_in_order() {
    let mut log = Served::new();
    log.publish(10);
    let mut replay = Replay::new();
    log.replay_to(&mut replay, &log.checkpoints[0].clone())
        .unwrap();
    log.publish(5);
    // The next bundle of index 0 changes entry 3, which the monitor already replayed.
    let (tile, data) = log.served[&0].clone();
    let mut entries = decode_bundle(&tile, &data).unwrap();
    entries[3] = b"rewritten".to_vec();
    log.served
        .insert(0, (tile, encode_bundle(&entries).unwrap()));
    assert_eq!(
        log.replay_to(&mut replay, &log.checkpoints[1].clone()),
        Err(MonitorError::Rewritten { index: 3 })
    );

    let far = Tile {
        level: 0,
        index: 7,
        width: 256,
    };
    assert_eq!(
        Replay::new().feed(&far, &[]),
        Err(MonitorError::OutOfOrder {
            expected: 0,
            got: 7
        })
    );
    assert!(matches!(
        Replay::new().check(&Checkpoint::new(ORIGIN, 3, [0; 32])),
        Err(MonitorError::SizeMismatch { .. })
    ));
}
