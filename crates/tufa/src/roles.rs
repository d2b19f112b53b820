//! Offline roles after the ceremony, as commands key holders and operators run:
//! `tufa roles prepare` writes the next version of root, targets or bins as an unsigned signing
//! request; each key holder adds a signature with `tufa sign` on their own machine; `tufa roles
//! submit` hands signed copies to the index, which merges them and publishes the new version
//! once every threshold is met, saying until then which signatures are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tufa_metadata::{Key, KeyId, OnlineLifetimes, Threshold};
use tufa_repo::{
    Expiries, OfflineState, RootChanges, SigningRequest, Store, load_public_key, load_signer,
};

#[derive(Subcommand)]
pub enum RolesCommand {
    /// Write the next version of an offline role as an unsigned signing request.
    #[command(subcommand)]
    Prepare(Box<PrepareCommand>),
    /// Hand signed copies of a request to the index: merged with copies submitted before, and
    /// published once every threshold is met. Exits 1, naming the missing signatures, until then.
    Submit {
        #[command(flatten)]
        data: DataDir,
        /// Signing request files (copies signed by different key holders may be given together).
        files: Vec<PathBuf>,
    },
}

/// The index's data directory, whose `tuf/` holds the repository (or whose
/// `locations.toml` names the bucket that does).
#[derive(Args)]
pub struct DataDir {
    #[arg(long, env = "TUFA_DATA")]
    data: PathBuf,
    /// Where the TUF repository is, when not where DATA/locations.toml says (`s3://...`).
    #[arg(long, env = "TUFA_STORAGE")]
    storage: Option<String>,
}

impl DataDir {
    fn store(&self) -> Result<Arc<dyn Store>> {
        let storage = tufa_index::storage::Storage::open(
            crate::locations::Locations::storage(&self.data, self.storage.clone())?.as_deref(),
        )?;
        let store = storage.tuf_store_beside_publisher(&self.data);
        if store.size("metadata/1.root.json")?.is_none() {
            bail!(
                "{} holds no TUF repository (no tuf/metadata/1.root.json)",
                storage.describe(&self.data)
            );
        }
        Ok(store)
    }

    fn state(&self) -> Result<(Arc<dyn Store>, OfflineState)> {
        let store = self.store()?;
        let state = OfflineState::load(&store).context("loading the trusted offline roles")?;
        Ok((store, state))
    }
}

#[derive(Subcommand)]
pub enum PrepareCommand {
    /// The next root: change root or targets keys and thresholds, or the online key of timestamp
    /// and snapshot. With no change, the same root with a fresh expiry.
    Root {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetime: Lifetime,
        /// A root key to add (its `.pub.json`); repeat for several.
        #[arg(long = "add-root-key")]
        add_root_keys: Vec<PathBuf>,
        /// The key ID of a root key to remove; repeat for several.
        #[arg(long = "remove-root-key")]
        remove_root_keys: Vec<String>,
        #[arg(long)]
        root_threshold: Option<u32>,
        #[arg(long = "add-targets-key")]
        add_targets_keys: Vec<PathBuf>,
        #[arg(long = "remove-targets-key")]
        remove_targets_keys: Vec<String>,
        #[arg(long)]
        targets_threshold: Option<u32>,
        /// A new online key (`.pub.json`) for timestamp and snapshot; prepare bins with the same
        /// key, then restart the server with it.
        #[arg(long)]
        online_key: Option<PathBuf>,
        #[command(flatten)]
        online_lifetimes: OnlineLifetimeArgs,
        /// Declare (add or rotate) the transparency log.
        #[command(flatten)]
        log: crate::transparency::LogKeyArgs,
    },
    /// The next targets: change the keys or threshold of bins. With no change, a fresh expiry.
    /// Also delegates to bins every view of the project pages this tufa publishes (the upgrade
    /// that lets a repository made before the cooldown view serve it).
    Targets {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetime: Lifetime,
        #[arg(long = "add-bins-key")]
        add_bins_keys: Vec<PathBuf>,
        #[arg(long = "remove-bins-key")]
        remove_bins_keys: Vec<String>,
        #[arg(long)]
        bins_threshold: Option<u32>,
    },
    /// The next bins: delegate the bin roles to a new online key. With no change, a fresh expiry.
    Bins {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetime: Lifetime,
        #[arg(long)]
        online_key: Option<PathBuf>,
    },
}

/// How long the new version is valid.
/// The longest expiry clients accept from each online role (root's x-tufa-online-lifetimes).
/// Those not given keep root's declaration (one day each when root has none). Keep them at least
/// the `tufa serve` expiries: the server never signs beyond them.
#[derive(Args)]
pub struct OnlineLifetimeArgs {
    /// Longest timestamp lifetime clients accept, in seconds.
    #[arg(long)]
    timestamp_lifetime: Option<u64>,
    /// Longest snapshot lifetime clients accept, in seconds.
    #[arg(long)]
    snapshot_lifetime: Option<u64>,
    /// Longest bin role lifetime clients accept, in seconds.
    #[arg(long)]
    bin_lifetime: Option<u64>,
}

impl OnlineLifetimeArgs {
    /// The new declaration, `None` when no flag changes it.
    fn changes(&self, root: &tufa_metadata::Root) -> Result<Option<OnlineLifetimes>> {
        let given = [
            self.timestamp_lifetime,
            self.snapshot_lifetime,
            self.bin_lifetime,
        ];
        if given.iter().all(Option::is_none) {
            return Ok(None);
        }
        if given.contains(&Some(0)) {
            bail!("an online lifetime must be at least one second");
        }
        let current =
            OnlineLifetimes::of(root)?.unwrap_or_else(|| Expiries::default().online_lifetimes());
        Ok(Some(OnlineLifetimes {
            timestamp: self.timestamp_lifetime.unwrap_or(current.timestamp),
            snapshot: self.snapshot_lifetime.unwrap_or(current.snapshot),
            bins: self.bin_lifetime.unwrap_or(current.bins),
        }))
    }
}

#[derive(Args)]
pub struct Lifetime {
    /// Days until the new version expires (default 365, as PEP 458 for offline roles).
    #[arg(long, default_value_t = 365)]
    expiry_days: u64,
}

impl Lifetime {
    fn expiries(&self) -> Result<Expiries> {
        if self.expiry_days == 0 {
            bail!("--expiry-days must be at least 1");
        }
        let lifetime = std::time::Duration::from_secs(self.expiry_days * 86_400);
        Ok(Expiries {
            root: lifetime,
            targets: lifetime,
            bins: lifetime,
            ..Expiries::default()
        })
    }
}

#[derive(Args)]
pub struct SignArgs {
    /// The signing request to sign, in place.
    file: PathBuf,
    /// Your private key: a PKCS#8 PEM file (an encrypted key's passphrase comes from
    /// TUFA_KEY_PASSPHRASE), or a key on a hardware token as a `pkcs11:` URI (PIN in
    /// TUFA_PKCS11_PIN).
    #[arg(long)]
    key: String,
    /// The index's data directory (or a copy of its `tuf/`): with it, a key the request's role
    /// does not list is refused instead of adding a signature that counts for nothing. Not
    /// taken from TUFA_DATA: a ceremony's files are signed before any data directory exists.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// A signer for an offline key holder: a key file, or a key on a PKCS#11 token.
pub fn offline_signer(key: &str) -> Result<Box<dyn tufa_metadata::Signer>> {
    if key.starts_with("pkcs11:") {
        let signer =
            tufa_pkcs11::Pkcs11Signer::from_uri(key).context("opening the key on the token")?;
        return Ok(Box::new(signer));
    }
    if std::fs::read(key).is_ok_and(|bytes| bytes.trim_ascii_start().starts_with(b"{")) {
        bail!(
            "{key} is a public key (TUF JSON): signing needs the private key, the .pem file \
             `tufa keys generate` wrote beside it"
        );
    }
    let passphrase = std::env::var("TUFA_KEY_PASSPHRASE").ok();
    let signer = load_signer(Path::new(key), passphrase.as_deref().map(str::as_bytes))
        .with_context(|| format!("loading {key}"))?;
    Ok(Box::new(signer))
}

fn public_keys(paths: &[PathBuf]) -> Result<Vec<Key>> {
    paths
        .iter()
        .map(|p| {
            load_public_key(p, None).with_context(|| format!("reading the key {}", p.display()))
        })
        .collect()
}

/// The ceremony's separation of roles, kept at rotation: the online key may not be a root or
/// targets key (the server could then sign those roles by itself).
fn refuse_offline_key_as_online(state: &OfflineState, online: &Key, added: &[Key]) -> Result<()> {
    let root = &state.root.signed;
    let offline = root
        .roles
        .root
        .keyids
        .iter()
        .chain(&root.roles.targets.keyids)
        .filter_map(|id| root.keys.get(id))
        .chain(added);
    for key in offline {
        if key.keytype == online.keytype && key.keyval.public == online.keyval.public {
            bail!(
                "the new online key is a root or targets key: PEP 458 keeps the roles' keys apart \
                 (the server could sign those roles by itself); generate a separate online key"
            );
        }
    }
    Ok(())
}

/// Whether `request` trusts another online key than the installed roles do: the root's
/// timestamp and snapshot keys, or the bins role's delegation to the bin roles.
fn changes_online_key(state: &OfflineState, request: &SigningRequest) -> bool {
    let delegated = |targets: &tufa_metadata::Targets| {
        targets
            .delegations
            .as_ref()
            .map(|d| d.keys.keys().cloned().collect::<Vec<_>>())
    };
    match request {
        SigningRequest::Root(root) => {
            let (new, old) = (&root.signed.roles, &state.root.signed.roles);
            new.timestamp.keyids != old.timestamp.keyids
                || new.snapshot.keyids != old.snapshot.keyids
        }
        SigningRequest::Bins(bins) => delegated(&bins.signed) != delegated(&state.bins.signed),
        SigningRequest::Targets(_) => false,
    }
}

/// Full key IDs for what the operator typed: a full ID, or a prefix (`tufa status` shows 12
/// characters) that names exactly one of `keys`.
fn resolve_key_ids(ids: &[String], keys: &BTreeMap<KeyId, Key>) -> Result<Vec<KeyId>> {
    ids.iter()
        .map(|id| {
            let typed = id.trim().to_ascii_lowercase();
            let matching: Vec<&KeyId> = keys
                .keys()
                .filter(|k| !typed.is_empty() && k.as_str().starts_with(&typed))
                .collect();
            match matching.as_slice() {
                [one] => Ok((*one).clone()),
                [] => bail!(
                    "no key ID starting with {id:?} among the keys of this repository's roles \
                     (`tufa status` lists them)"
                ),
                more => bail!("{} key IDs start with {id:?}: type more of it", more.len()),
            }
        })
        .collect()
}

fn threshold(value: Option<u32>, flag: &str) -> Result<Option<Threshold>> {
    value
        .map(|t| Threshold::new(t).with_context(|| format!("{flag} must be at least 1")))
        .transpose()
}

fn read_request(path: &Path) -> Result<SigningRequest> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SigningRequest::from_bytes(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Writes through a temporary file, so an interrupted write never leaves half a request.
fn write_request(path: &Path, request: &SigningRequest) -> Result<()> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, request.to_bytes()?)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

pub fn sign(args: SignArgs) -> Result<()> {
    let mut request = read_request(&args.file)?;
    let signer = offline_signer(&args.key)?;
    request.sign(signer.as_ref()).context("signing")?;
    match &args.data {
        Some(data) => {
            let (_, state) = DataDir {
                data: data.clone(),
                storage: None,
            }
            .state()?;
            let requirements = state
                .requirements(&request)
                .with_context(|| format!("{} version {}", request.role(), request.version()))?;
            if !requirements
                .iter()
                .any(|r| r.signed.contains(signer.key_id()))
            {
                let needed = requirements
                    .iter()
                    .map(|r| {
                        let ids: Vec<&str> = r
                            .signed
                            .iter()
                            .chain(&r.unsigned)
                            .map(|id| &id.as_str()[..12.min(id.as_str().len())])
                            .collect();
                        format!("{} ({})", r.keys_of, ids.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                bail!(
                    "key {} is not a key of {} version {}, so its signature would count for \
                     nothing; it needs {needed}. Nothing was written",
                    &signer.key_id().as_str()[..12],
                    request.role(),
                    request.version()
                );
            }
        }
        None => eprintln!(
            "note: not checked against the repository's roles (pass --data to refuse a key the \
             role does not list); `tufa roles submit` reports which signatures count"
        ),
    }
    write_request(&args.file, &request)?;
    eprintln!(
        "signed {} version {} with key {}",
        request.role(),
        request.version(),
        signer.key_id().as_str()
    );
    Ok(())
}

pub fn run(command: RolesCommand) -> Result<()> {
    let now = SystemTime::now();
    match command {
        RolesCommand::Prepare(prepare) => {
            let (request, out) = match *prepare {
                PrepareCommand::Root {
                    data,
                    out,
                    lifetime,
                    add_root_keys,
                    remove_root_keys,
                    root_threshold,
                    add_targets_keys,
                    remove_targets_keys,
                    targets_threshold,
                    online_key,
                    online_lifetimes,
                    log,
                } => {
                    let (_, state) = data.state()?;
                    let changes = RootChanges {
                        add_root_keys: public_keys(&add_root_keys)?,
                        remove_root_keys: resolve_key_ids(
                            &remove_root_keys,
                            &state.root.signed.keys,
                        )?,
                        root_threshold: threshold(root_threshold, "--root-threshold")?,
                        add_targets_keys: public_keys(&add_targets_keys)?,
                        remove_targets_keys: resolve_key_ids(
                            &remove_targets_keys,
                            &state.root.signed.keys,
                        )?,
                        targets_threshold: threshold(targets_threshold, "--targets-threshold")?,
                        online_key: public_keys(online_key.as_slice())?.pop(),
                        online_lifetimes: online_lifetimes.changes(&state.root.signed)?,
                    };
                    if let Some(online) = &changes.online_key {
                        refuse_offline_key_as_online(&state, online, &changes.add_root_keys)?;
                    }
                    let mut request = state.prepare_root(&changes, &lifetime.expiries()?, now)?;
                    if let tufa_repo::SigningRequest::Root(root) = &mut request {
                        log.declare(&mut root.signed)?;
                    }
                    (request, out)
                }
                PrepareCommand::Targets {
                    data,
                    out,
                    lifetime,
                    add_bins_keys,
                    remove_bins_keys,
                    bins_threshold,
                } => {
                    let (_, state) = data.state()?;
                    let request = state.prepare_targets(
                        &public_keys(&add_bins_keys)?,
                        &resolve_key_ids(
                            &remove_bins_keys,
                            &state
                                .targets
                                .signed
                                .delegations
                                .as_ref()
                                .map(|d| d.keys.clone())
                                .unwrap_or_default(),
                        )?,
                        threshold(bins_threshold, "--bins-threshold")?,
                        &lifetime.expiries()?,
                        now,
                    )?;
                    (request, out)
                }
                PrepareCommand::Bins {
                    data,
                    out,
                    lifetime,
                    online_key,
                } => {
                    let (_, state) = data.state()?;
                    let key = public_keys(online_key.as_slice())?.pop();
                    (
                        state.prepare_bins(key.as_ref(), &lifetime.expiries()?, now)?,
                        out,
                    )
                }
            };
            if out.exists() {
                bail!(
                    "{} exists: a prepared request is never overwritten",
                    out.display()
                );
            }
            write_request(&out, &request)?;
            eprintln!(
                "wrote {} version {} to {}: each key holder signs it with `tufa sign {} --key KEY`",
                request.role(),
                request.version(),
                out.display(),
                out.display()
            );
            Ok(())
        }
        RolesCommand::Submit { data, files } => {
            if files.is_empty() {
                bail!("name at least one signed request file");
            }
            let (store, state) = data.state()?;
            let mut merged: Vec<SigningRequest> = Vec::new();
            for path in &files {
                let request = read_request(path)?;
                match merged
                    .iter_mut()
                    .find(|r| r.role() == request.role() && r.version() == request.version())
                {
                    Some(existing) => existing.merge(&request)?,
                    None => merged.push(request),
                }
            }
            let mut incomplete = Vec::new();
            for mut request in merged {
                let pending = store.read(&request.incoming_file())?;
                // Copies submitted before add their signatures; a different request for the same
                // version (prepared again) replaces them.
                if let Some(bytes) = pending
                    && let Ok(earlier) = SigningRequest::from_bytes(&bytes)
                    && request.merge(&earlier).is_err()
                {
                    eprintln!(
                        "warning: {} version {} replaces a different request for that version \
                         waiting in tuf/incoming/: the signatures collected for it are dropped, \
                         and key holders who signed it must sign this one",
                        request.role(),
                        request.version()
                    );
                }
                let requirements = state
                    .requirements(&request)
                    .with_context(|| format!("{} version {}", request.role(), request.version()))?;
                store.write_all(&[(request.incoming_file(), request.to_bytes()?)])?;
                let name = format!("{} version {}", request.role(), request.version());
                for requirement in &requirements {
                    eprintln!("{name}: {requirement}");
                }
                if requirements.iter().all(|r| r.met()) {
                    if changes_online_key(&state, &request) {
                        eprintln!(
                            "{name}: every threshold is met, and it changes the online key: the \
                             running server does not install it while it signs with the old key. \
                             Restart it with the new key (`tufa serve --online-key NEW`); at \
                             start it installs this and re-signs every online role"
                        );
                    } else {
                        eprintln!(
                            "{name}: every threshold is met; the running server publishes it \
                             within a second (or at its next start)"
                        );
                    }
                } else {
                    incomplete.push(name);
                }
            }
            if incomplete.is_empty() {
                Ok(())
            } else {
                bail!(
                    "not published yet: {} lack signatures (listed above); the request waits in \
                     {}/tuf/incoming/ for more signed copies",
                    incomplete.join(", "),
                    data.data.display()
                )
            }
        }
    }
}
