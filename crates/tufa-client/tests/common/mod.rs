//! A TUF repository built and signed in the test, served from memory through the [`Fetcher`]
//! trait with a log of every request. Metadata is signed when it is requested, from the
//! repository's current state, so a test changes a field and the next fetch sees it; `serve`
//! overrides let a test play the attacker and answer with any bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tufa_client::{FetchError, Fetcher, Updater, UpdaterConfig, encode_component};
use tufa_metadata::{
    DelegatedRole, DelegatedRoles, Delegations, Expires, FileSigner, KeyAlgorithm, MetaFile,
    Metadata, PathMatcher, Role, RoleKeys, RoleName, Root, Signer, Snapshot, SuccinctRoles,
    TargetFile, TargetPath, Targets, Threshold, Timestamp, TopLevelRoles, generate_private_key,
};

pub const METADATA_URL: &str = "https://repo.test/metadata/";
pub const TARGETS_URL: &str = "https://repo.test/targets/";

pub fn key() -> Arc<FileSigner> {
    let der = generate_private_key(KeyAlgorithm::Ed25519).unwrap();
    Arc::new(FileSigner::from_pkcs8_der(der.as_bytes()).unwrap())
}

pub fn role(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

/// The repository's state. Public fields are the metadata as it will next be signed.
pub struct Repo {
    pub now: SystemTime,
    pub root: Root,
    /// Every published root, signed, by version - 1.
    pub signed_roots: Vec<Vec<u8>>,
    pub timestamp: Timestamp,
    pub snapshot: Snapshot,
    pub targets: Targets,
    pub delegated: BTreeMap<RoleName, Targets>,
    /// Signers by role name; a role's metadata is signed by all of its signers.
    pub signers: HashMap<String, Vec<Arc<FileSigner>>>,
    /// Target contents by target path.
    pub artifacts: HashMap<String, Vec<u8>>,
    /// Whether timestamp and snapshot meta carry lengths and hashes.
    pub meta_hashes: bool,
    /// Bytes served for a file name instead of the signed metadata (the attacker's answers), and
    /// the transparency log's files (`log/...`).
    pub served: HashMap<String, Vec<u8>>,
}

pub fn expiry(now: SystemTime, days: u64) -> Expires {
    Expires::after(now, Duration::from_secs(days * 86_400))
}

fn keys(signers: &[Arc<FileSigner>], threshold: u32) -> RoleKeys {
    RoleKeys::new(
        signers.iter().map(|s| s.key_id().clone()).collect(),
        Threshold::new(threshold).unwrap(),
    )
}

impl Repo {
    fn new(now: SystemTime, consistent: bool) -> Self {
        let signers: HashMap<String, Vec<Arc<FileSigner>>> =
            ["root", "timestamp", "snapshot", "targets"]
                .into_iter()
                .map(|r| (r.to_string(), vec![key()]))
                .collect();
        let roles = TopLevelRoles {
            root: keys(&signers["root"], 1),
            timestamp: keys(&signers["timestamp"], 1),
            snapshot: keys(&signers["snapshot"], 1),
            targets: keys(&signers["targets"], 1),
        };
        let all_keys = signers
            .values()
            .flatten()
            .map(|s| (s.key_id().clone(), s.public_key().clone()))
            .collect();
        let mut repo = Repo {
            now,
            root: Root::new(1, expiry(now, 365), consistent, all_keys, roles),
            signed_roots: Vec::new(),
            timestamp: Timestamp::new(1, expiry(now, 1), MetaFile::new(1)),
            snapshot: Snapshot::new(1, expiry(now, 1), BTreeMap::new()),
            targets: Targets::new(1, expiry(now, 365)),
            delegated: BTreeMap::new(),
            signers,
            artifacts: HashMap::new(),
            meta_hashes: true,
            served: HashMap::new(),
        };
        repo.publish_root();
        repo.snapshot.version = 0;
        repo.timestamp.version = 0;
        repo.update_snapshot();
        repo
    }

    pub fn sign<T: Role + Clone>(&self, signers: &[Arc<FileSigner>], signed: &T) -> Vec<u8> {
        let mut metadata = Metadata::new(signed.clone());
        for signer in signers {
            metadata.sign(signer.as_ref()).unwrap();
        }
        metadata.to_bytes().unwrap()
    }

    fn signers_of(&self, role: &str) -> Vec<Arc<FileSigner>> {
        self.signers.get(role).cloned().unwrap_or_default()
    }

    /// Signs the current root with the root signers and `extra` (old keys during a rotation),
    /// and publishes it as its version.
    pub fn publish_root_signed_by(&mut self, extra: &[Arc<FileSigner>]) {
        let mut signers = self.signers_of("root");
        signers.extend(extra.iter().cloned());
        let bytes = self.sign(&signers, &self.root);
        let index = (self.root.version - 1) as usize;
        self.signed_roots.truncate(index);
        self.signed_roots.push(bytes);
    }

    pub fn publish_root(&mut self) {
        self.publish_root_signed_by(&[]);
    }

    /// Replaces a top-level role's keys in root with `new` signers (threshold 1), bumps root's
    /// version and publishes it signed by the old and new root keys.
    pub fn rotate(&mut self, role_name: &str, new: Vec<Arc<FileSigner>>, threshold: u32) {
        let old_root = self.signers_of("root");
        for signer in &new {
            self.root
                .keys
                .insert(signer.key_id().clone(), signer.public_key().clone());
        }
        let role_keys = keys(&new, threshold);
        match role_name {
            "root" => self.root.roles.root = role_keys,
            "timestamp" => self.root.roles.timestamp = role_keys,
            "snapshot" => self.root.roles.snapshot = role_keys,
            "targets" => self.root.roles.targets = role_keys,
            other => panic!("{other} is not a top-level role"),
        }
        self.signers.insert(role_name.into(), new);
        self.root.version += 1;
        let extra = if role_name == "root" {
            old_root
        } else {
            vec![]
        };
        self.publish_root_signed_by(&extra);
    }

    pub fn targets_role(&self, name: &str) -> &Targets {
        if name == "targets" {
            &self.targets
        } else {
            &self.delegated[&role(name)]
        }
    }

    pub fn targets_role_mut(&mut self, name: &str) -> &mut Targets {
        if name == "targets" {
            &mut self.targets
        } else {
            self.delegated.get_mut(&role(name)).unwrap()
        }
    }

    fn signed_targets(&self, name: &str) -> Vec<u8> {
        self.sign(&self.signers_of(name), self.targets_role(name))
    }

    fn meta_for(&self, version: u64, bytes: &[u8]) -> MetaFile {
        if self.meta_hashes {
            MetaFile::with_content(version, bytes)
        } else {
            MetaFile::new(version)
        }
    }

    /// New snapshot listing every targets role's current version, then a new timestamp.
    pub fn update_snapshot(&mut self) {
        let mut meta = BTreeMap::new();
        let names: Vec<String> = std::iter::once("targets".to_string())
            .chain(self.delegated.keys().map(|r| r.to_string()))
            .collect();
        for name in names {
            let version = self.targets_role(&name).version;
            let bytes = self.signed_targets(&name);
            meta.insert(format!("{name}.json"), self.meta_for(version, &bytes));
        }
        self.snapshot.meta = meta;
        self.snapshot.version += 1;
        self.update_timestamp();
    }

    pub fn update_timestamp(&mut self) {
        let bytes = self.sign(&self.signers_of("snapshot"), &self.snapshot);
        self.timestamp.snapshot_meta = self.meta_for(self.snapshot.version, &bytes);
        self.timestamp.version += 1;
    }

    /// Adds a target with `content` to a targets role, bumping its version.
    pub fn add_target(&mut self, role_name: &str, path: &str, content: &[u8]) {
        let targets = self.targets_role_mut(role_name);
        targets.targets.insert(
            TargetPath::new(path).unwrap(),
            TargetFile::from_content(content),
        );
        targets.version += 1;
        self.artifacts.insert(path.into(), content.to_vec());
    }

    /// Delegates `name` from `delegator`, matching `paths`, to the role's key (a fresh one for
    /// a new role).
    pub fn delegate(&mut self, delegator: &str, name: &str, paths: PathMatcher, terminating: bool) {
        let signer = self
            .signers
            .get(name)
            .and_then(|s| s.first().cloned())
            .unwrap_or_else(key);
        self.delegate_to_key(delegator, name, paths, terminating, signer);
    }

    /// Delegates `name` from `delegator` to `signer`, which then signs the role.
    pub fn delegate_to_key(
        &mut self,
        delegator: &str,
        name: &str,
        paths: PathMatcher,
        terminating: bool,
        signer: Arc<FileSigner>,
    ) {
        let delegated = DelegatedRole {
            name: role(name),
            keyids: vec![signer.key_id().clone()],
            threshold: Threshold::ONE,
            terminating,
            paths,
            unrecognized: BTreeMap::new(),
        };
        let parent = self.targets_role_mut(delegator);
        let delegations = parent.delegations.get_or_insert_with(|| Delegations {
            keys: BTreeMap::new(),
            roles: DelegatedRoles::Roles(Vec::new()),
            unrecognized: BTreeMap::new(),
        });
        delegations
            .keys
            .insert(signer.key_id().clone(), signer.public_key().clone());
        match &mut delegations.roles {
            DelegatedRoles::Roles(roles) => roles.push(delegated),
            DelegatedRoles::Succinct(_) => panic!("{delegator} delegates succinctly"),
        }
        parent.version += 1;
        self.signers.insert(name.into(), vec![signer]);
        let expires = expiry(self.now, 365);
        self.delegated
            .entry(role(name))
            .or_insert_with(|| Targets::new(1, expires));
    }

    /// Delegates from `delegator` to 2^bit_length succinct bins `<prefix>-XX` sharing one key.
    pub fn delegate_succinct(&mut self, delegator: &str, prefix: &str, bit_length: u32) {
        let signer = key();
        let succinct = SuccinctRoles::new(
            vec![signer.key_id().clone()],
            Threshold::ONE,
            bit_length,
            prefix,
        )
        .unwrap();
        let names: Vec<RoleName> = succinct.role_names().collect();
        let parent = self.targets_role_mut(delegator);
        parent.delegations = Some(Delegations {
            keys: BTreeMap::from([(signer.key_id().clone(), signer.public_key().clone())]),
            roles: DelegatedRoles::Succinct(succinct),
            unrecognized: BTreeMap::new(),
        });
        parent.version += 1;
        let expires = expiry(self.now, 1);
        for name in names {
            self.signers.insert(name.to_string(), vec![signer.clone()]);
            self.delegated.insert(name, Targets::new(1, expires));
        }
    }

    /// The bytes of a metadata file as the repository would serve them now.
    pub fn metadata_file(&self, file: &str) -> Option<Vec<u8>> {
        if let Some(bytes) = self.served.get(file) {
            return Some(bytes.clone());
        }
        let consistent = self.root.consistent_snapshot();
        let stem = file.strip_suffix(".json")?;
        if stem == "timestamp" {
            return Some(self.sign(&self.signers_of("timestamp"), &self.timestamp));
        }
        let (version, name) = match stem.split_once('.') {
            Some((v, rest)) if v.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(v.parse::<u64>().ok()?), rest)
            }
            _ => (None, stem),
        };
        let name = percent_decode(name);
        if name == "root" {
            return self.signed_roots.get((version? - 1) as usize).cloned();
        }
        if consistent != version.is_some() {
            return None;
        }
        let (current, bytes) = match name.as_str() {
            "snapshot" => (
                self.snapshot.version,
                self.sign(&self.signers_of("snapshot"), &self.snapshot),
            ),
            "targets" => (self.targets.version, self.signed_targets("targets")),
            other => {
                let delegated = self.delegated.get(&RoleName::new(other).ok()?)?;
                (delegated.version, self.signed_targets(other))
            }
        };
        match version {
            Some(v) if v != current => None,
            _ => Some(bytes),
        }
    }

    fn target_file(&self, url_path: &str) -> Option<Vec<u8>> {
        let decoded = percent_decode(url_path);
        if let Some(bytes) = self.served.get(&format!("targets/{decoded}")) {
            return Some(bytes.clone());
        }
        self.artifacts.iter().find_map(|(path, content)| {
            let file = TargetFile::from_content(content);
            let hash = file.hashes["sha256"].as_str().to_string();
            let expected = match path.rsplit_once('/') {
                Some((dir, base)) if self.root.consistent_snapshot() => {
                    format!("{dir}/{hash}.{base}")
                }
                None if self.root.consistent_snapshot() => format!("{hash}.{path}"),
                _ => path.clone(),
            };
            (expected == decoded).then(|| content.clone())
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The repository behind a [`Fetcher`], logging every request (as paths below the repository).
pub struct Sim {
    repo: Mutex<Repo>,
    log: Mutex<Vec<String>>,
}

impl Sim {
    pub fn new() -> Self {
        Self::with(SystemTime::now(), true)
    }

    pub fn with(now: SystemTime, consistent: bool) -> Self {
        Sim {
            repo: Mutex::new(Repo::new(now, consistent)),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn repo(&self) -> MutexGuard<'_, Repo> {
        self.repo.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.log.lock().unwrap().clear();
    }

    /// The initial trusted root, as shipped with an application.
    pub fn trusted_root(&self) -> Vec<u8> {
        self.repo().signed_roots[0].clone()
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sim")
    }
}

/// Answers whatever the repository holds, however long: the limit is ignored, as a careless
/// fetcher might, so every endless-data test checks that the updater refuses it on its own.
impl Fetcher for Sim {
    fn fetch(&self, url: &str, _max_length: u64) -> Result<Vec<u8>, FetchError> {
        let path = url
            .strip_prefix("https://repo.test/")
            .ok_or(FetchError::Status(404))?;
        self.log.lock().unwrap().push(path.to_string());
        let repo = self.repo();
        let bytes = if let Some(file) = path.strip_prefix("metadata/") {
            repo.metadata_file(file)
        } else if let Some(file) = path.strip_prefix("targets/") {
            repo.target_file(file)
        } else if path.starts_with("log/") {
            repo.served.get(path).cloned()
        } else {
            None
        };
        bytes.ok_or(FetchError::Status(404))
    }
}

/// A client for `sim` with its own metadata directory, initialized with the trusted root.
pub struct Client<'a> {
    pub dir: tempfile::TempDir,
    pub updater: Updater<&'a Sim>,
}

impl<'a> Client<'a> {
    pub fn new(sim: &'a Sim) -> Self {
        Self::with_config(sim, UpdaterConfig::default())
    }

    pub fn with_config(sim: &'a Sim, config: UpdaterConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metadata = dir.path().join("metadata");
        Updater::<&Sim>::initialize(&metadata, &sim.trusted_root()).unwrap();
        Client {
            updater: Updater::new(metadata, METADATA_URL, sim, config),
            dir,
        }
    }

    pub fn metadata_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("metadata")
    }

    pub fn targets_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("targets")
    }

    /// The version of a role in the local cache, if cached.
    pub fn cached_version(&self, role_name: &str) -> Option<u64> {
        let file = self
            .metadata_dir()
            .join(format!("{}.json", encode_component(role_name)));
        let bytes = std::fs::read(file).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["signed"]["version"].as_u64()
    }

    pub fn cached_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.metadata_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}
