//! TAP 16 on the client: the snapshot entries of the roles a client uses, each proven against
//! the `merkle_root` of the trusted timestamp instead of read from the whole snapshot. Pure, like
//! [`crate::trusted`], which holds one [`ProvenSnapshot`] in place of a snapshot.
//!
//! Rollback protection is per role: the last proof the client accepted for a role (kept in the
//! cache by the updater) is the floor for that role's version in every later tree. Roles the
//! client never used have no floor; TAP 16 leaves those to auditors, who see every tree.

use std::collections::HashMap;

use tufa_metadata::{HexDigest, MetaFile, RoleName, SnapshotProof};

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct ProvenSnapshot {
    /// The trusted timestamp's `merkle_root`.
    root: HexDigest,
    /// The version of each role in the last proof accepted before this update.
    floors: HashMap<RoleName, u64>,
    /// The entries proven against `root`.
    proven: HashMap<RoleName, MetaFile>,
}

fn parse<'p>(role: &RoleName, proof: &'p SnapshotProof) -> Result<&'p MetaFile> {
    let (file, meta) = proof.leaf().map_err(|source| Error::InvalidSnapshotProof {
        role: role.to_string(),
        source,
    })?;
    if file.strip_suffix(".json") != Some(role.as_str()) {
        return Err(Error::SnapshotProofForOtherRole {
            role: role.to_string(),
            proven: file.to_string(),
        });
    }
    Ok(meta)
}

fn read(role: &RoleName, bytes: &[u8]) -> Result<SnapshotProof> {
    SnapshotProof::from_bytes(bytes).map_err(|source| Error::InvalidSnapshotProof {
        role: role.to_string(),
        source,
    })
}

impl ProvenSnapshot {
    pub(crate) fn new(root: HexDigest) -> Self {
        ProvenSnapshot {
            root,
            floors: HashMap::new(),
            proven: HashMap::new(),
        }
    }

    pub(crate) fn root(&self) -> &HexDigest {
        &self.root
    }

    pub(crate) fn get(&self, role: &RoleName) -> Option<&MetaFile> {
        self.proven.get(role)
    }

    /// Records the version of a proof accepted in an earlier update as `role`'s floor. Its
    /// root is not checked: it was checked when it was accepted, against a timestamp since
    /// replaced.
    pub(crate) fn load_trusted(&mut self, role: &RoleName, bytes: &[u8]) -> Result<()> {
        let proof = read(role, bytes)?;
        let version = parse(role, &proof)?.version;
        let floor = self.floors.entry(role.clone()).or_insert(0);
        *floor = (*floor).max(version);
        Ok(())
    }

    /// Accepts `role`'s entry when the proof is for `role`, leads to the trusted root, and does
    /// not take the role's version below its floor.
    pub(crate) fn update(&mut self, role: &RoleName, bytes: &[u8]) -> Result<()> {
        let proof = read(role, bytes)?;
        let meta = parse(role, &proof)?;
        let received = proof.root().map_err(|source| Error::InvalidSnapshotProof {
            role: role.to_string(),
            source,
        })?;
        if received != self.root {
            return Err(Error::SnapshotProofOtherRoot {
                role: role.to_string(),
                expected: self.root.to_string(),
                received: received.to_string(),
            });
        }
        if let Some(&trusted) = self.floors.get(role)
            && meta.version < trusted
        {
            return Err(Error::RollbackAttack {
                role: role.to_string(),
                trusted,
                received: meta.version,
            });
        }
        self.proven.insert(role.clone(), meta.clone());
        Ok(())
    }
}
