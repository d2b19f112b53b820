//! The key ceremony: the offline roles (root, targets, bins) of a new PEP 458 repository.
//!
//! Runs where the offline keys are, never on the server. Its output is the three signed files the
//! server needs, plus the online key's public part already written into root and bins.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tufa_metadata::{
    DelegatedRole, DelegatedRoles, Delegations, Expires, Key, KeyId, Metadata, PathMatcher,
    RoleKeys, RoleName, Root, Signer, SuccinctRoles, Targets, Threshold, TopLevelRoles,
};

use crate::error::{Error, Result};
use crate::layout::{BIN_PREFIX, BINS_ROLE, Expiries, METADATA_DIR, View};

/// The keys and threshold of one offline role.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub keys: Vec<Key>,
    pub threshold: Threshold,
}

impl RoleSpec {
    fn keyids(&self) -> Result<Vec<KeyId>> {
        let ids: Vec<KeyId> = self
            .keys
            .iter()
            .map(Key::key_id)
            .collect::<Result<_, _>>()?;
        if (ids.len() as u64) < u64::from(self.threshold.get()) {
            return Err(Error::Config(format!(
                "threshold {} needs at least that many keys, {} given",
                self.threshold.get(),
                ids.len()
            )));
        }
        Ok(ids)
    }
}

/// Everything a ceremony decides.
#[derive(Clone, Debug)]
pub struct CeremonyPlan {
    pub root: RoleSpec,
    pub targets: RoleSpec,
    pub bins: RoleSpec,
    /// The one online key: timestamp, snapshot and every bin role.
    pub online: Key,
    /// `2^bit_length` bin roles: 8 gives 256, 14 gives PEP 458's 16,384.
    pub bit_length: u32,
    pub expiries: Expiries,
}

/// The offline roles of a repository, signed or waiting for signatures.
#[derive(Clone, Debug)]
pub struct OfflineRoles {
    pub root: Metadata<Root>,
    pub targets: Metadata<Targets>,
    pub bins: Metadata<Targets>,
}

fn key_map(keys: impl IntoIterator<Item = Key>) -> Result<BTreeMap<KeyId, Key>> {
    keys.into_iter()
        .map(|key| Ok((key.key_id()?, key)))
        .collect()
}

impl CeremonyPlan {
    /// Version 1 of root, targets and bins, unsigned.
    pub fn offline_roles(&self, now: SystemTime) -> Result<OfflineRoles> {
        let online_id = self.online.key_id()?;
        let online_role = || RoleKeys::new(vec![online_id.clone()], Threshold::ONE);
        let mut root = Root::new(
            1,
            Expires::after(now, self.expiries.root),
            true,
            key_map(
                self.root
                    .keys
                    .iter()
                    .chain(&self.targets.keys)
                    .chain([&self.online])
                    .cloned(),
            )?,
            TopLevelRoles {
                root: RoleKeys::new(self.root.keyids()?, self.root.threshold),
                targets: RoleKeys::new(self.targets.keyids()?, self.targets.threshold),
                snapshot: online_role(),
                timestamp: online_role(),
            },
        );

        self.expiries.online_lifetimes().declare(&mut root);
        let mut targets = Targets::new(1, Expires::after(now, self.expiries.targets));
        targets.delegations = Some(Delegations {
            keys: key_map(self.bins.keys.iter().cloned())?,
            roles: DelegatedRoles::Roles(vec![DelegatedRole {
                name: RoleName::new(BINS_ROLE)?,
                keyids: self.bins.keyids()?,
                threshold: self.bins.threshold,
                terminating: true,
                paths: PathMatcher::Paths(
                    View::ALL.iter().map(|view| view.pattern().into()).collect(),
                ),
                unrecognized: BTreeMap::new(),
            }]),
            unrecognized: BTreeMap::new(),
        });

        let mut bins = Targets::new(1, Expires::after(now, self.expiries.bins));
        bins.delegations = Some(Delegations {
            keys: key_map([self.online.clone()])?,
            roles: DelegatedRoles::Succinct(SuccinctRoles::new(
                vec![online_id],
                Threshold::ONE,
                self.bit_length,
                BIN_PREFIX,
            )?),
            unrecognized: BTreeMap::new(),
        });
        Ok(OfflineRoles {
            root: Metadata::new(root),
            targets: Metadata::new(targets),
            bins: Metadata::new(bins),
        })
    }
}

impl OfflineRoles {
    /// Signs every role that `signer`'s key is authorized for, and names them.
    pub fn sign(&mut self, signer: &dyn Signer) -> Result<Vec<&'static str>> {
        let id = signer.key_id();
        let mut signed = Vec::new();
        if self.root.signed.roles.root.keyids.contains(id) {
            self.root.sign(signer)?;
            signed.push("root");
        }
        if self.root.signed.roles.targets.keyids.contains(id) {
            self.targets.sign(signer)?;
            signed.push("targets");
        }
        let bins_keys = self
            .targets
            .signed
            .delegations
            .as_ref()
            .and_then(|d| d.role_keys(&RoleName::new(BINS_ROLE).ok()?))
            .map(|(keyids, _)| keyids.contains(id));
        if bins_keys == Some(true) {
            self.bins.sign(signer)?;
            signed.push(BINS_ROLE);
        }
        Ok(signed)
    }

    /// The files to install under the server's `tuf/` directory.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(vec![
            (format!("{METADATA_DIR}/1.root.json"), self.root.to_bytes()?),
            (
                format!("{METADATA_DIR}/1.targets.json"),
                self.targets.to_bytes()?,
            ),
            (
                format!("{METADATA_DIR}/1.{BINS_ROLE}.json"),
                self.bins.to_bytes()?,
            ),
        ])
    }
}
