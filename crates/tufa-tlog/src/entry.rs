//! The log entry for one published TUF timestamp: its version, the SHA-256 of the exact signed
//! `timestamp.json` bytes, and the snapshot it names. A client holding a timestamp rebuilds this
//! entry from the bytes it received and checks its inclusion, so a timestamp that was shown to
//! one client only (never logged) is refused; a monitor reads the entries back to replay every
//! timestamp, and through them every snapshot, the index ever published.
//!
//! The encoding is text, one field per line, with exactly one accepted spelling, so equal
//! entries are equal bytes:
//!
//! ```text
//! tufa-timestamp/v1
//! version 42
//! sha256 <64 lowercase hex digits>
//! snapshot 41 [<64 lowercase hex digits>]
//! ```

use thiserror::Error;

use crate::merkle::Hash;

const HEADER: &str = "tufa-timestamp/v1";

/// No entry is longer than this (the fields above at their largest).
pub const MAX_TIMESTAMP_ENTRY_BYTES: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a tufa-timestamp/v1 log entry: {0}")]
pub struct EntryError(pub &'static str);

/// One published timestamp, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampEntry {
    pub version: u64,
    /// SHA-256 of the signed `timestamp.json` bytes as served.
    pub sha256: Hash,
    pub snapshot_version: u64,
    /// The snapshot's SHA-256 when the timestamp lists one.
    pub snapshot_sha256: Option<Hash>,
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TimestampEntry {
    /// The entry for the timestamp file `bytes` of `version`, naming `snapshot_version`.
    pub fn of(
        bytes: &[u8],
        version: u64,
        snapshot_version: u64,
        snapshot_sha256: Option<Hash>,
    ) -> Self {
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
        TimestampEntry {
            version,
            sha256,
            snapshot_version,
            snapshot_sha256,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let snapshot_hash = self
            .snapshot_sha256
            .map(|h| format!(" {}", hex(&h)))
            .unwrap_or_default();
        format!(
            "{HEADER}\nversion {}\nsha256 {}\nsnapshot {}{snapshot_hash}\n",
            self.version,
            hex(&self.sha256),
            self.snapshot_version
        )
        .into_bytes()
    }

    /// Parses an entry, accepting only the bytes [`TimestampEntry::to_bytes`] would write.
    pub fn parse(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_TIMESTAMP_ENTRY_BYTES {
            return Err(EntryError("too long"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| EntryError("not UTF-8"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or(EntryError("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [header, version, sha256, snapshot] = lines.as_slice() else {
            return Err(EntryError("not four lines"));
        };
        if *header != HEADER {
            return Err(EntryError("unknown header"));
        }
        let number = |s: Option<&str>| -> Option<u64> {
            let s = s?;
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let version = number(version.strip_prefix("version ")).ok_or(EntryError("bad version"))?;
        let sha256 = sha256
            .strip_prefix("sha256 ")
            .and_then(parse_hex)
            .ok_or(EntryError("bad sha256"))?;
        let snapshot = snapshot
            .strip_prefix("snapshot ")
            .ok_or(EntryError("bad snapshot"))?;
        let (snapshot_version, snapshot_sha256) = match snapshot.split_once(' ') {
            Some((v, h)) => (
                number(Some(v)),
                Some(parse_hex(h).ok_or(EntryError("bad snapshot sha256"))?),
            ),
            None => (number(Some(snapshot)), None),
        };
        let entry = TimestampEntry {
            version,
            sha256,
            snapshot_version: snapshot_version.ok_or(EntryError("bad snapshot version"))?,
            snapshot_sha256,
        };
        // Leading zeroes in a number would give the same entry other bytes, and another leaf.
        if entry.to_bytes() != bytes {
            return Err(EntryError("not canonical"));
        }
        Ok(entry)
    }
}
