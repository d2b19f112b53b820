//! The bin roles as a running publisher keeps them between publishes.
//!
//! A PyPI-sized repository lists 700,000 pages in its bin roles, and every replica holds them
//! all. Kept as parsed `Metadata<Targets>` (a `TargetFile` with a map of hash names to hex strings
//! per target) that is about 1.8 KiB per page, well over a gigabyte. Tufa lists each page by its
//! length and SHA-256 alone, so a target is kept as its path, its length and the 32 bytes of its
//! digest (about 110 bytes), and a role's metadata is rebuilt only while it is signed.

use tufa_metadata::{Expires, HexDigest, Metadata, TargetFile, TargetPath, Targets};

/// A target as Tufa's bin roles list it: the length and SHA-256 of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) length: u64,
    sha256: [u8; 32],
}

impl Listed {
    pub(crate) fn new(length: u64, sha256: [u8; 32]) -> Self {
        Listed { length, sha256 }
    }

    /// `None` for a listing with anything but one SHA-256 and a length: Tufa never signs one.
    fn of(file: &TargetFile) -> Option<Listed> {
        if file.custom.is_some() || !file.unrecognized.is_empty() || file.hashes.len() != 1 {
            return None;
        }
        let mut sha256 = [0; 32];
        hex::decode_to_slice(file.hashes.get("sha256")?.as_str(), &mut sha256).ok()?;
        Some(Listed::new(file.length, sha256))
    }

    pub(crate) fn sha256(&self) -> HexDigest {
        HexDigest::from_bytes(&self.sha256)
    }

    pub(crate) fn sha256_bytes(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub(crate) fn file(&self) -> TargetFile {
        TargetFile::from_sha256(self.length, self.sha256())
    }
}

/// One bin role: its version and expiry as last signed, and its targets sorted by path.
///
/// The paths are kept end to end in one string per role, not as a `TargetPath` each: a string
/// per target cost its 24-byte header and an allocation of its own, more than the path itself,
/// for 700,000 of them in every publisher.
#[derive(Clone, Debug)]
pub(crate) struct Bin {
    pub(crate) version: u64,
    pub(crate) expires: Expires,
    /// The length of this version's file, once written or read: what retiring it frees, known
    /// without asking the store (a round trip per file in a bucket).
    pub(crate) file_length: Option<u64>,
    /// Every target's path, in order, one after another.
    paths: String,
    /// Where each target's path ends in `paths`.
    ends: Vec<usize>,
    listed: Vec<Listed>,
}

impl Bin {
    pub(crate) fn empty(version: u64, expires: Expires) -> Self {
        Bin {
            version,
            expires,
            file_length: None,
            paths: String::new(),
            ends: Vec::new(),
            listed: Vec::new(),
        }
    }

    /// The bin role read from its file of `file_length` bytes; `Err` with the first target it
    /// lists in a way Tufa never signs (more hashes, custom data, an empty path), or with `None`
    /// when the role delegates further or carries fields Tufa does not write.
    pub(crate) fn from_role(
        role: Metadata<Targets>,
        file_length: u64,
    ) -> Result<Self, Option<TargetPath>> {
        let signed = role.signed;
        if signed.delegations.is_some() || !signed.unrecognized.is_empty() {
            return Err(None);
        }
        let mut bin = Bin::empty(signed.version, signed.expires);
        bin.file_length = Some(file_length);
        bin.paths
            .reserve_exact(signed.targets.keys().map(|path| path.as_str().len()).sum());
        bin.ends.reserve_exact(signed.targets.len());
        bin.listed.reserve_exact(signed.targets.len());
        // A `BTreeMap` yields its paths in order: each is appended at the end.
        for (path, file) in signed.targets {
            match Listed::of(&file) {
                Some(listed) if !path.as_str().is_empty() => {
                    bin.paths.push_str(path.as_str());
                    bin.ends.push(bin.paths.len());
                    bin.listed.push(listed);
                }
                _ => return Err(Some(path)),
            }
        }
        Ok(bin)
    }

    /// The role's metadata, unsigned, as it is signed and written.
    pub(crate) fn role(&self) -> Metadata<Targets> {
        let mut targets = Targets::new(self.version, self.expires);
        targets.targets = self
            .targets()
            .map(|(path, listed)| {
                let path = TargetPath::new(path).expect("a bin keeps only non-empty paths");
                (path, listed.file())
            })
            .collect();
        Metadata::new(targets)
    }

    fn start(&self, at: usize) -> usize {
        at.checked_sub(1).map_or(0, |before| self.ends[before])
    }

    fn path(&self, at: usize) -> &str {
        &self.paths[self.start(at)..self.ends[at]]
    }

    fn position(&self, target: &TargetPath) -> Result<usize, usize> {
        let target = target.as_str();
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.path(middle).cmp(target) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    pub(crate) fn get(&self, target: &TargetPath) -> Option<&Listed> {
        self.position(target).ok().map(|at| &self.listed[at])
    }

    /// Lists `target`, returning what it replaced.
    pub(crate) fn insert(&mut self, target: &TargetPath, listed: Listed) -> Option<Listed> {
        match self.position(target) {
            Ok(at) => Some(std::mem::replace(&mut self.listed[at], listed)),
            Err(at) => {
                let start = self.start(at);
                let added = target.as_str().len();
                self.paths.insert_str(start, target.as_str());
                for end in &mut self.ends[at..] {
                    *end += added;
                }
                self.ends.insert(at, start + added);
                self.listed.insert(at, listed);
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, target: &TargetPath) -> Option<Listed> {
        let at = self.position(target).ok()?;
        let (start, end) = (self.start(at), self.ends[at]);
        self.paths.replace_range(start..end, "");
        self.ends.remove(at);
        for later in &mut self.ends[at..] {
            *later -= end - start;
        }
        Some(self.listed.remove(at))
    }

    pub(crate) fn targets(&self) -> impl Iterator<Item = (&str, &Listed)> {
        (0..self.ends.len()).map(|at| (self.path(at), &self.listed[at]))
    }

    /// Gives back what the targets' growth left unused: a role is changed a few targets at a
    /// time and signed after, so this runs once per signing, not per change.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.paths.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.listed.shrink_to_fit();
    }

    /// This role with its targets moved out of `self`, which keeps none.
    pub(crate) fn take(&mut self) -> Bin {
        Bin {
            version: self.version,
            expires: self.expires,
            file_length: self.file_length,
            paths: std::mem::take(&mut self.paths),
            ends: std::mem::take(&mut self.ends),
            listed: std::mem::take(&mut self.listed),
        }
    }

    /// Gives back the targets [`Bin::take`] moved out.
    pub(crate) fn put_back(&mut self, taken: Bin) {
        self.paths = taken.paths;
        self.ends = taken.ends;
        self.listed = taken.listed;
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn path(name: &str) -> TargetPath {
        TargetPath::new(format!("simple/{name}/index.json")).unwrap()
    }

    #[test]
    fn a_bin_round_trips_through_its_metadata_and_refuses_what_tufa_never_signs() {
        let expires = Expires::after(SystemTime::UNIX_EPOCH, std::time::Duration::ZERO);
        let mut bin = Bin::empty(3, expires);
        for (name, byte) in [("b", 2), ("a", 1), ("c", 3)] {
            assert_eq!(bin.insert(&path(name), Listed::new(10, [byte; 32])), None);
        }
        assert_eq!(
            bin.insert(&path("b"), Listed::new(20, [9; 32])),
            Some(Listed::new(10, [2; 32]))
        );
        assert_eq!(bin.remove(&path("c")), Some(Listed::new(10, [3; 32])));
        assert_eq!(bin.remove(&path("c")), None);
        let role = bin.role();
        let names: Vec<&str> = role.signed.targets.keys().map(|p| p.as_str()).collect();
        assert_eq!(names, ["simple/a/index.json", "simple/b/index.json"]);
        assert_eq!(
            role.signed.targets[&path("b")].hashes["sha256"].as_str(),
            "09".repeat(32)
        );
        let back = Bin::from_role(role.clone(), 123).unwrap();
        assert_eq!(back.file_length, Some(123));
        assert_eq!(back.version, 3);
        assert_eq!(back.get(&path("b")), Some(&Listed::new(20, [9; 32])));

        let mut two_hashes = role.clone();
        let file = two_hashes.signed.targets.get_mut(&path("a")).unwrap();
        file.hashes
            .insert("sha512".into(), HexDigest::new("ab".repeat(64)).unwrap());
        assert_eq!(Bin::from_role(two_hashes, 0).unwrap_err(), Some(path("a")));
        let mut custom = role.clone();
        custom.signed.targets.get_mut(&path("b")).unwrap().custom = Some(serde_json::json!({}));
        assert_eq!(Bin::from_role(custom, 0).unwrap_err(), Some(path("b")));
        let mut empty_path = role;
        let empty: TargetPath = serde_json::from_str("\"\"").unwrap();
        let file = empty_path.signed.targets[&path("a")].clone();
        empty_path.signed.targets.insert(empty.clone(), file);
        assert_eq!(Bin::from_role(empty_path, 0).unwrap_err(), Some(empty));
    }

    #[test]
    fn inserts_and_removes_in_any_order_keep_the_targets_sorted_with_their_listings() {
        let expires = Expires::after(SystemTime::UNIX_EPOCH, std::time::Duration::ZERO);
        let mut bin = Bin::empty(1, expires);
        let mut model = std::collections::BTreeMap::new();
        // Names of different lengths, so that a path's end moves by more than a fixed step.
        let names: Vec<String> = (0..40)
            .map(|n| "x".repeat(n % 7 + 1) + &n.to_string())
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..3000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let target = path(&names[(state % names.len() as u64) as usize]);
            if state.is_multiple_of(3) {
                assert_eq!(bin.remove(&target), model.remove(&target));
            } else {
                let listed = Listed::new(step, [(step % 251) as u8; 32]);
                assert_eq!(
                    bin.insert(&target, listed),
                    model.insert(target.clone(), listed)
                );
            }
            if step.is_multiple_of(500) {
                bin.shrink_to_fit();
            }
            let kept: Vec<(&str, &Listed)> = bin.targets().collect();
            let expected: Vec<(&str, &Listed)> = model
                .iter()
                .map(|(path, listed)| (path.as_str(), listed))
                .collect();
            assert_eq!(kept, expected);
        }
        for name in &names {
            assert_eq!(bin.get(&path(name)), model.get(&path(name)));
        }
        let back = Bin::from_role(bin.role(), 0).unwrap();
        assert_eq!(
            back.targets().collect::<Vec<_>>(),
            bin.targets().collect::<Vec<_>>()
        );
    }
}
