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
#[derive(Clone, Debug)]
pub(crate) struct Bin {
    pub(crate) version: u64,
    pub(crate) expires: Expires,
    /// The length of this version's file, once written or read: what retiring it frees, known
    /// without asking the store (a round trip per file in a bucket).
    pub(crate) file_length: Option<u64>,
    targets: Vec<(TargetPath, Listed)>,
}

impl Bin {
    pub(crate) fn empty(version: u64, expires: Expires) -> Self {
        Bin {
            version,
            expires,
            file_length: None,
            targets: Vec::new(),
        }
    }

    /// The bin role read from its file of `file_length` bytes; `Err` with the first target it
    /// lists in a way Tufa never signs (more hashes, custom data), or with `None` when the role
    /// delegates further or carries fields Tufa does not write.
    pub(crate) fn from_role(
        role: Metadata<Targets>,
        file_length: u64,
    ) -> Result<Self, Option<TargetPath>> {
        let signed = role.signed;
        if signed.delegations.is_some() || !signed.unrecognized.is_empty() {
            return Err(None);
        }
        let mut targets = Vec::with_capacity(signed.targets.len());
        for (path, file) in signed.targets {
            match Listed::of(&file) {
                Some(listed) => targets.push((path, listed)),
                None => return Err(Some(path)),
            }
        }
        Ok(Bin {
            version: signed.version,
            expires: signed.expires,
            file_length: Some(file_length),
            targets,
        })
    }

    /// The role's metadata, unsigned, as it is signed and written.
    pub(crate) fn role(&self) -> Metadata<Targets> {
        let mut targets = Targets::new(self.version, self.expires);
        targets.targets = self
            .targets
            .iter()
            .map(|(path, listed)| (path.clone(), listed.file()))
            .collect();
        Metadata::new(targets)
    }

    fn position(&self, target: &TargetPath) -> Result<usize, usize> {
        self.targets.binary_search_by(|(path, _)| path.cmp(target))
    }

    pub(crate) fn get(&self, target: &TargetPath) -> Option<&Listed> {
        self.position(target).ok().map(|at| &self.targets[at].1)
    }

    /// Lists `target`, returning what it replaced.
    pub(crate) fn insert(&mut self, target: TargetPath, listed: Listed) -> Option<Listed> {
        match self.position(&target) {
            Ok(at) => Some(std::mem::replace(&mut self.targets[at].1, listed)),
            Err(at) => {
                self.targets.insert(at, (target, listed));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, target: &TargetPath) -> Option<Listed> {
        self.position(target)
            .ok()
            .map(|at| self.targets.remove(at).1)
    }

    pub(crate) fn targets(&self) -> impl Iterator<Item = (&TargetPath, &Listed)> {
        self.targets.iter().map(|(path, listed)| (path, listed))
    }

    /// This role with its targets moved out of `self`, which keeps none.
    pub(crate) fn take(&mut self) -> Bin {
        Bin {
            targets: std::mem::take(&mut self.targets),
            ..self.clone()
        }
    }

    /// Gives back the targets [`Bin::take`] moved out.
    pub(crate) fn put_back(&mut self, taken: Bin) {
        self.targets = taken.targets;
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
            assert_eq!(bin.insert(path(name), Listed::new(10, [byte; 32])), None);
        }
        assert_eq!(
            bin.insert(path("b"), Listed::new(20, [9; 32])),
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
        let mut custom = role;
        custom.signed.targets.get_mut(&path("b")).unwrap().custom = Some(serde_json::json!({}));
        assert_eq!(Bin::from_role(custom, 0).unwrap_err(), Some(path("b")));
    }
}
