//! Offline roles after the ceremony: a new version of root, targets or bins is prepared as a
//! signing request, signed by each key holder on their own machine (`tufa sign`), and installed
//! only once every threshold is met. Until then, [`OfflineState::requirements`] says which keys
//! are still needed.
//!
//! A request is plain TUF metadata (python-tuf or any other tool can sign it too). A new root
//! needs a threshold of the trusted root's root keys *and* of its own (spec 5.3.4), so that both
//! the old and the new key holders agree to a rotation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use tufa_metadata::{
    DelegatedRoles, Expires, Key, KeyId, Metadata, OnlineLifetimes, PathMatcher, RoleName, Root,
    Signature, Signer, Targets, Threshold, valid_signers,
};

use crate::error::{Error, Result};
use crate::layout::{self, BINS_ROLE, Expiries, METADATA_DIR, View};
use crate::store::Store;

/// Where signing requests wait for their last signatures, relative to the store.
pub const INCOMING_DIR: &str = "incoming";

/// A new version of one offline role, signed or waiting for signatures.
#[derive(Clone, Debug)]
pub enum SigningRequest {
    Root(Metadata<Root>),
    Targets(Metadata<Targets>),
    Bins(Metadata<Targets>),
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Config(reason.into())
}

impl SigningRequest {
    /// Parses a request; a targets role delegating with `succinct_roles` is `bins`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not TUF metadata: {e}")))?;
        let parse_error = |role: &str| {
            let role = role.to_string();
            move |source| Error::InvalidMetadata {
                role,
                file: "signing request".into(),
                source,
            }
        };
        match value["signed"]["_type"].as_str() {
            Some("root") => Ok(SigningRequest::Root(
                Metadata::from_bytes(bytes).map_err(parse_error("root"))?,
            )),
            Some("targets") => {
                let targets: Metadata<Targets> =
                    Metadata::from_bytes(bytes).map_err(parse_error("targets"))?;
                let succinct = matches!(
                    targets.signed.delegations.as_ref().map(|d| &d.roles),
                    Some(DelegatedRoles::Succinct(_))
                );
                Ok(if succinct {
                    SigningRequest::Bins(targets)
                } else {
                    SigningRequest::Targets(targets)
                })
            }
            other => Err(invalid(format!(
                "a signing request is root, targets or bins metadata, not {other:?}"
            ))),
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            SigningRequest::Root(m) => m.to_bytes()?,
            SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.to_bytes()?,
        })
    }

    pub fn role(&self) -> &'static str {
        match self {
            SigningRequest::Root(_) => "root",
            SigningRequest::Targets(_) => "targets",
            SigningRequest::Bins(_) => BINS_ROLE,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            SigningRequest::Root(m) => m.signed.version,
            SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.signed.version,
        }
    }

    fn signed_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            SigningRequest::Root(m) => m.signed_bytes()?,
            SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.signed_bytes()?,
        })
    }

    fn signatures(&self) -> &[Signature] {
        match self {
            SigningRequest::Root(m) => m.signatures(),
            SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.signatures(),
        }
    }

    /// Adds `signer`'s signature (replacing an earlier one by the same key).
    pub fn sign(&mut self, signer: &dyn Signer) -> Result<()> {
        match self {
            SigningRequest::Root(m) => m.sign(signer)?,
            SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.sign(signer)?,
        };
        Ok(())
    }

    /// Takes over the signatures of another copy of the same request, signed elsewhere.
    pub fn merge(&mut self, other: &SigningRequest) -> Result<()> {
        if self.role() != other.role() || self.signed_bytes()? != other.signed_bytes()? {
            return Err(invalid(format!(
                "the two files are different requests ({} version {} and {} version {}): only \
                 copies of one request can be merged",
                self.role(),
                self.version(),
                other.role(),
                other.version()
            )));
        }
        for signature in other.signatures().to_vec() {
            match self {
                SigningRequest::Root(m) => m.add_signature(signature),
                SigningRequest::Targets(m) | SigningRequest::Bins(m) => m.add_signature(signature),
            }
        }
        Ok(())
    }

    /// Its file name among the published metadata (`N.<role>.json`).
    pub fn metadata_file(&self) -> Result<String> {
        Ok(layout::metadata_file(
            &RoleName::new(self.role())?,
            self.version(),
        ))
    }

    /// Its file name while it waits in `incoming/`.
    pub fn incoming_file(&self) -> String {
        format!("{INCOMING_DIR}/{}.{}.json", self.version(), self.role())
    }
}

/// One threshold a request must meet: whose keys, how many, and which have signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Whose keys count, in words: "the root keys of trusted root version 1".
    pub keys_of: String,
    pub threshold: u32,
    pub signed: Vec<KeyId>,
    /// Authorized keys that have not signed yet.
    pub unsigned: Vec<KeyId>,
}

impl Requirement {
    pub fn met(&self) -> bool {
        self.signed.len() as u32 >= self.threshold
    }

    fn new(
        keys_of: String,
        keys: &BTreeMap<KeyId, Key>,
        authorized: &[KeyId],
        threshold: Threshold,
        bytes: &[u8],
        signatures: &[Signature],
    ) -> Self {
        let signed = valid_signers(keys, authorized, bytes, signatures);
        let unsigned = authorized
            .iter()
            .filter(|k| !signed.contains(k))
            .cloned()
            .collect();
        Requirement {
            keys_of,
            threshold: threshold.get(),
            signed,
            unsigned,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} of {} signature(s)",
            self.keys_of,
            self.signed.len(),
            self.threshold
        )?;
        if !self.met() {
            let ids: Vec<&str> = self.unsigned.iter().map(KeyId::as_str).collect();
            write!(
                f,
                "; {} more needed from any of: {}",
                self.threshold - self.signed.len() as u32,
                ids.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Changes to root's keys in a new root version.
#[derive(Clone, Debug, Default)]
pub struct RootChanges {
    pub add_root_keys: Vec<Key>,
    pub remove_root_keys: Vec<KeyId>,
    pub root_threshold: Option<Threshold>,
    pub add_targets_keys: Vec<Key>,
    pub remove_targets_keys: Vec<KeyId>,
    pub targets_threshold: Option<Threshold>,
    /// A new online key for timestamp and snapshot (the bins role delegates the bin roles).
    pub online_key: Option<Key>,
    /// New online lifetimes; `None` keeps root's (or declares PEP 458's one day when it has none).
    pub online_lifetimes: Option<OnlineLifetimes>,
}

/// Declares `lifetimes` in `root`, else keeps its declaration, else declares the default
/// expiries', so that every root `tufa roles prepare root` writes bounds the online key.
fn declare_online_lifetimes(root: &mut Root, lifetimes: Option<OnlineLifetimes>) -> Result<()> {
    let declared = match lifetimes {
        Some(lifetimes) => lifetimes,
        None => OnlineLifetimes::of(root)?.unwrap_or(Expiries::default().online_lifetimes()),
    };
    declared.declare(root);
    Ok(())
}

/// The trusted offline roles of a repository: the newest root reached through the chain of
/// versions, and the targets and bins roles it (transitively) trusts.
#[derive(Clone, Debug)]
pub struct OfflineState {
    pub root: Metadata<Root>,
    pub targets: Metadata<Targets>,
    pub bins: Metadata<Targets>,
}

fn latest<S: Store>(store: &S, files: &[String], role: &str) -> Result<(String, Vec<u8>)> {
    let version = *crate::repository::versions_on_disk(files, role)
        .last()
        .ok_or_else(|| Error::Missing(role.into()))?;
    let file = layout::metadata_file(&RoleName::new(role)?, version);
    let bytes = store
        .read(&file)?
        .ok_or_else(|| Error::Missing(role.into()))?;
    Ok((file, bytes))
}

fn change_keys(
    keys: &mut BTreeMap<KeyId, Key>,
    keyids: &mut Vec<KeyId>,
    add: &[Key],
    remove: &[KeyId],
) -> Result<()> {
    for id in remove {
        if !keyids.contains(id) {
            return Err(invalid(format!(
                "key {id} is not a key of the role, so it cannot be removed"
            )));
        }
        keyids.retain(|k| k != id);
    }
    for key in add {
        let id = key.key_id()?;
        if !keyids.contains(&id) {
            keyids.push(id.clone());
        }
        keys.insert(id, key.clone());
    }
    Ok(())
}

impl OfflineState {
    /// Loads and verifies the offline roles in `store`.
    pub fn load<S: Store>(store: &S) -> Result<Self> {
        let files = store.list(METADATA_DIR)?;
        let root = crate::repository::load_root_chain(store, &files)?;
        let (file, bytes) = latest(store, &files, "targets")?;
        let targets: Metadata<Targets> = crate::repository::parse("targets", &file, &bytes)?;
        root.signed
            .verify_delegate("targets", &targets)
            .map_err(crate::repository::untrusted("targets", &file))?;
        let (file, bytes) = latest(store, &files, BINS_ROLE)?;
        let bins: Metadata<Targets> = crate::repository::parse(BINS_ROLE, &file, &bytes)?;
        targets
            .signed
            .verify_delegate(&RoleName::new(BINS_ROLE)?, &bins)
            .map_err(crate::repository::untrusted(BINS_ROLE, &file))?;
        Ok(OfflineState {
            root,
            targets,
            bins,
        })
    }

    /// The thresholds `request` must meet to be installed. Refuses a request that can never be
    /// installed (wrong version, a layout the index cannot serve).
    pub fn requirements(&self, request: &SigningRequest) -> Result<Vec<Requirement>> {
        let bytes = request.signed_bytes()?;
        let signatures = request.signatures();
        let expected = match request {
            SigningRequest::Root(_) => self.root.signed.version + 1,
            SigningRequest::Targets(_) => self.targets.signed.version + 1,
            SigningRequest::Bins(_) => self.bins.signed.version + 1,
        };
        if request.version() != expected {
            return Err(invalid(format!(
                "{} version {} cannot follow the trusted version {}: prepare version {expected}",
                request.role(),
                request.version(),
                expected - 1
            )));
        }
        Ok(match request {
            SigningRequest::Root(new) => {
                let old = &self.root.signed;
                vec![
                    Requirement::new(
                        format!("root keys of the trusted root version {}", old.version),
                        &old.keys,
                        &old.roles.root.keyids,
                        old.roles.root.threshold,
                        &bytes,
                        signatures,
                    ),
                    Requirement::new(
                        format!("root keys of the new root version {}", new.signed.version),
                        &new.signed.keys,
                        &new.signed.roles.root.keyids,
                        new.signed.roles.root.threshold,
                        &bytes,
                        signatures,
                    ),
                ]
            }
            SigningRequest::Targets(new) => {
                if new
                    .signed
                    .delegations
                    .as_ref()
                    .and_then(|d| d.role_keys(&RoleName::new(BINS_ROLE).ok()?))
                    .is_none()
                {
                    return Err(invalid("the new targets must still delegate to bins"));
                }
                let root = &self.root.signed;
                vec![Requirement::new(
                    format!("targets keys of root version {}", root.version),
                    &root.keys,
                    &root.roles.targets.keyids,
                    root.roles.targets.threshold,
                    &bytes,
                    signatures,
                )]
            }
            SigningRequest::Bins(new) => {
                let old = succinct(&self.bins)?;
                let succinct_new = succinct(new)?;
                if (old.bit_length, &old.name_prefix)
                    != (succinct_new.bit_length, &succinct_new.name_prefix)
                {
                    return Err(invalid(
                        "the new bins must keep the number and names of bin roles",
                    ));
                }
                let delegations = self
                    .targets
                    .signed
                    .delegations
                    .as_ref()
                    .ok_or_else(|| invalid("targets delegates nothing"))?;
                let (authorized, threshold) = delegations
                    .role_keys(&RoleName::new(BINS_ROLE)?)
                    .ok_or_else(|| invalid("targets does not delegate to bins"))?;
                vec![Requirement::new(
                    format!(
                        "bins keys of targets version {}",
                        self.targets.signed.version
                    ),
                    &delegations.keys,
                    authorized,
                    threshold,
                    &bytes,
                    signatures,
                )]
            }
        })
    }

    /// Writes a request whose every threshold is met as the role's next version.
    pub fn install<S: Store>(&mut self, store: &S, request: SigningRequest) -> Result<()> {
        let requirements = self.requirements(&request)?;
        if let Some(unmet) = requirements.iter().find(|r| !r.met()) {
            return Err(Error::Untrusted {
                role: request.role().into(),
                file: request.incoming_file(),
                source: tufa_metadata::Error::ThresholdNotMet {
                    role: format!("{} ({unmet})", request.role()),
                    threshold: unmet.threshold,
                    valid: unmet.signed.len() as u32,
                },
            });
        }
        store.write_all(&[(request.metadata_file()?, request.to_bytes()?)])?;
        match request {
            SigningRequest::Root(root) => self.root = root,
            SigningRequest::Targets(targets) => self.targets = targets,
            SigningRequest::Bins(bins) => self.bins = bins,
        }
        Ok(())
    }

    /// The next root, unsigned, with `changes` applied and a fresh expiry.
    pub fn prepare_root(
        &self,
        changes: &RootChanges,
        expiries: &Expiries,
        now: SystemTime,
    ) -> Result<SigningRequest> {
        let mut root = self.root.signed.clone();
        root.version += 1;
        root.expires = Expires::after(now, expiries.root);
        change_keys(
            &mut root.keys,
            &mut root.roles.root.keyids,
            &changes.add_root_keys,
            &changes.remove_root_keys,
        )?;
        change_keys(
            &mut root.keys,
            &mut root.roles.targets.keyids,
            &changes.add_targets_keys,
            &changes.remove_targets_keys,
        )?;
        if let Some(threshold) = changes.root_threshold {
            root.roles.root.threshold = threshold;
        }
        if let Some(threshold) = changes.targets_threshold {
            root.roles.targets.threshold = threshold;
        }
        if let Some(online) = &changes.online_key {
            let id = online.key_id()?;
            root.keys.insert(id.clone(), online.clone());
            root.roles.timestamp.keyids = vec![id.clone()];
            root.roles.snapshot.keyids = vec![id];
        }
        declare_online_lifetimes(&mut root, changes.online_lifetimes)?;
        let used: Vec<KeyId> = ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .filter_map(|r| root.roles.get(r))
            .flat_map(|r| r.keyids.clone())
            .collect();
        root.keys.retain(|id, _| used.contains(id));
        for name in ["root", "targets"] {
            let role = root.roles.get(name).expect("top-level role");
            if (role.keyids.len() as u32) < role.threshold.get() {
                return Err(invalid(format!(
                    "{name} would have {} key(s) but a threshold of {}",
                    role.keyids.len(),
                    role.threshold.get()
                )));
            }
        }
        Ok(SigningRequest::Root(Metadata::new(root)))
    }

    /// The next targets, unsigned: new bins keys or threshold, and a fresh expiry.
    pub fn prepare_targets(
        &self,
        add: &[Key],
        remove: &[KeyId],
        threshold: Option<Threshold>,
        expiries: &Expiries,
        now: SystemTime,
    ) -> Result<SigningRequest> {
        let mut targets = self.targets.signed.clone();
        targets.version += 1;
        targets.expires = Expires::after(now, expiries.targets);
        let delegations = targets
            .delegations
            .as_mut()
            .ok_or_else(|| invalid("targets delegates nothing"))?;
        let DelegatedRoles::Roles(roles) = &mut delegations.roles else {
            return Err(invalid("targets must delegate to bins by name"));
        };
        let bins = roles
            .iter_mut()
            .find(|r| r.name.as_str() == BINS_ROLE)
            .ok_or_else(|| invalid("targets does not delegate to bins"))?;
        change_keys(&mut delegations.keys, &mut bins.keyids, add, remove)?;
        if let Some(threshold) = threshold {
            bins.threshold = threshold;
        }
        if (bins.keyids.len() as u32) < bins.threshold.get() {
            return Err(invalid(format!(
                "bins would have {} key(s) but a threshold of {}",
                bins.keyids.len(),
                bins.threshold.get()
            )));
        }
        // A repository made before a view existed gets it delegated with its next targets: the
        // one offline step that upgrades it (see `Repository::delegates`).
        if let PathMatcher::Paths(paths) = &mut bins.paths {
            for view in View::ALL {
                if !paths.iter().any(|path| path == view.pattern()) {
                    paths.push(view.pattern().to_string());
                }
            }
        }
        let used = bins.keyids.clone();
        delegations.keys.retain(|id, _| used.contains(id));
        Ok(SigningRequest::Targets(Metadata::new(targets)))
    }

    /// The next bins, unsigned: optionally delegating the bin roles to a new online key.
    pub fn prepare_bins(
        &self,
        online_key: Option<&Key>,
        expiries: &Expiries,
        now: SystemTime,
    ) -> Result<SigningRequest> {
        let mut bins = self.bins.signed.clone();
        bins.version += 1;
        bins.expires = Expires::after(now, expiries.bins);
        if let Some(online) = online_key {
            let id = online.key_id()?;
            let delegations = bins
                .delegations
                .as_mut()
                .ok_or_else(|| invalid("bins delegates nothing"))?;
            let DelegatedRoles::Succinct(succinct) = &mut delegations.roles else {
                return Err(Error::NotSuccinct("bins delegates no succinct_roles"));
            };
            succinct.keyids = vec![id.clone()];
            delegations.keys = BTreeMap::from([(id, online.clone())]);
        }
        Ok(SigningRequest::Bins(Metadata::new(bins)))
    }

    /// Installs every request waiting in `incoming/` whose thresholds are met, in version order,
    /// removing it from there; others stay. `accept` may veto a request (a running server vetoes
    /// one that would stop trusting its online key). Returns the roles installed.
    pub fn install_incoming<S: Store>(
        &mut self,
        store: &S,
        accept: impl Fn(&OfflineState, &SigningRequest) -> bool,
    ) -> Result<Vec<(&'static str, u64)>> {
        let mut requests = Vec::new();
        for file in store.list(INCOMING_DIR)? {
            let Some(bytes) = store.read(&file)? else {
                continue;
            };
            match SigningRequest::from_bytes(&bytes) {
                Ok(request) => requests.push((file, request)),
                Err(error) => tracing::warn!("ignoring {file}: {error}"),
            }
        }
        let order = |r: &SigningRequest| match r {
            SigningRequest::Root(_) => 0,
            SigningRequest::Targets(_) => 1,
            SigningRequest::Bins(_) => 2,
        };
        requests.sort_by_key(|(_, r)| (order(r), r.version()));
        let mut installed = Vec::new();
        for (file, request) in requests {
            let ready = self
                .requirements(&request)
                .map(|reqs| reqs.iter().all(Requirement::met))
                .unwrap_or(false);
            if !ready || !accept(self, &request) {
                continue;
            }
            let (role, version) = (request.role(), request.version());
            self.install(store, request)?;
            store.remove(&file)?;
            installed.push((role, version));
        }
        Ok(installed)
    }
}

fn succinct(bins: &Metadata<Targets>) -> Result<&tufa_metadata::SuccinctRoles> {
    match bins.signed.delegations.as_ref().map(|d| &d.roles) {
        Some(DelegatedRoles::Succinct(succinct)) => Ok(succinct),
        _ => Err(Error::NotSuccinct("bins delegates no succinct_roles")),
    }
}
