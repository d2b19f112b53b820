//! `tufa ceremony`: the offline roles of a new PEP 458 repository (root, targets, bins), built
//! and signed where the offline keys are, never on the server. Its output directory is what the
//! server needs: copy it to `<data>/tuf/` and start `tufa serve --online-key`.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_metadata::{Key, Threshold};
use tufa_repo::{CeremonyPlan, Expiries, FsStore, RoleSpec, Store, load_public_key};

#[derive(Args)]
pub struct CeremonyArgs {
    /// Directory to write `metadata/1.root.json`, `1.targets.json` and `1.bins.json` into.
    #[arg(long)]
    out: PathBuf,
    /// A root key's public file (`.pub.json`); repeat for each root key holder.
    #[arg(long = "root-key", required = true)]
    root_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// A targets key's public file; repeat for several.
    #[arg(long = "targets-key", required = true)]
    targets_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    targets_threshold: u32,
    /// A bins key's public file; repeat for several.
    #[arg(long = "bins-key", required = true)]
    bins_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    bins_threshold: u32,
    /// The server's online key (public file): signs timestamp, snapshot and every bin role.
    #[arg(long)]
    online_key: PathBuf,
    /// 2^N bin roles: 8 gives 256, 14 gives PEP 458's 16,384 (sized for one target per
    /// distribution file). Default: from --expected-projects, else 8.
    #[arg(long, conflicts_with = "expected_projects")]
    bin_bits: Option<u32>,
    /// How many projects the index is expected to hold: picks the bin count that minimises what
    /// a client downloads (snapshot plus one bin) for one target per project.
    #[arg(long)]
    expected_projects: Option<u64>,
    /// A private key to sign with (PKCS#8 PEM, or a `pkcs11:` URI); it signs every role it is a
    /// key of. Encrypted keys take their passphrase from TUFA_KEY_PASSPHRASE.
    #[arg(long = "sign")]
    signing_keys: Vec<String>,
    #[command(flatten)]
    log: crate::transparency::LogKeyArgs,
}

fn spec(paths: &[PathBuf], threshold: u32, role: &str) -> Result<RoleSpec> {
    let keys: Vec<Key> = paths
        .iter()
        .map(|path| {
            load_public_key(path, None).with_context(|| format!("{role} key {}", path.display()))
        })
        .collect::<Result<_>>()?;
    let threshold = Threshold::new(threshold)
        .with_context(|| format!("--{role}-threshold must be at least 1"))?;
    Ok(RoleSpec { keys, threshold })
}

pub fn run(args: CeremonyArgs) -> Result<()> {
    if args.out.join("metadata/1.root.json").exists() {
        bail!(
            "{} already holds a root: a ceremony starts a new repository and never overwrites one",
            args.out.display()
        );
    }
    let plan = CeremonyPlan {
        root: spec(&args.root_keys, args.root_threshold, "root")?,
        targets: spec(&args.targets_keys, args.targets_threshold, "targets")?,
        bins: spec(&args.bins_keys, args.bins_threshold, "bins")?,
        online: load_public_key(&args.online_key, None)
            .with_context(|| format!("online key {}", args.online_key.display()))?,
        bit_length: args
            .bin_bits
            .or(args.expected_projects.map(tufa_repo::layout::bin_bits_for))
            .unwrap_or(8),
        expiries: Expiries::default(),
    };
    refuse_shared_keys(&plan)?;
    let mut roles = plan
        .offline_roles(SystemTime::now())
        .context("building the offline roles")?;
    args.log.declare(&mut roles.root.signed)?;
    for key in &args.signing_keys {
        let signer = crate::roles::offline_signer(key)?;
        let signed = roles
            .sign(signer.as_ref())
            .with_context(|| format!("signing with {key}"))?;
        if signed.is_empty() {
            bail!("{key} is not a key of root, targets or bins: check which keys you passed");
        }
        eprintln!("{key} signed {}", signed.join(", "));
    }
    let counts = [
        ("root", roles.root.signatures().len(), plan.root.threshold),
        (
            "targets",
            roles.targets.signatures().len(),
            plan.targets.threshold,
        ),
        ("bins", roles.bins.signatures().len(), plan.bins.threshold),
    ];
    let store =
        FsStore::open(&args.out).with_context(|| format!("opening {}", args.out.display()))?;
    store
        .write_all(&roles.files().context("serializing the roles")?)
        .with_context(|| format!("writing into {}", args.out.display()))?;
    for (role, signatures, threshold) in counts {
        let missing = threshold.get().saturating_sub(signatures as u32);
        if missing > 0 {
            eprintln!(
                "warning: {role} has {signatures} of its {} required signatures; the server refuses \
                 it until {missing} more key holder(s) sign",
                threshold.get()
            );
        } else {
            eprintln!(
                "{role}: {signatures} signature(s), threshold {}",
                threshold.get()
            );
        }
    }
    eprintln!(
        "wrote the offline roles to {}: copy the files in it to DATA/tuf/metadata/ on the server",
        args.out.join("metadata").display()
    );
    Ok(())
}

/// PEP 458 separates the roles' keys so that one stolen key gives one role: a key of two roles
/// (bins signed with a root key, the online key also a root key, which lets the server sign a
/// new root by itself) gives an attacker who takes it both. Refused, naming the key and roles.
fn refuse_shared_keys(plan: &CeremonyPlan) -> Result<()> {
    let mut seen: Vec<(&str, &Key)> = Vec::new();
    let roles = [
        ("root", plan.root.keys.iter().collect::<Vec<_>>()),
        ("targets", plan.targets.keys.iter().collect()),
        ("bins", plan.bins.keys.iter().collect()),
        ("online", vec![&plan.online]),
    ];
    for (role, keys) in roles {
        for key in keys {
            let same = |other: &&Key| {
                other.keytype == key.keytype && other.keyval.public == key.keyval.public
            };
            if let Some((first, _)) = seen.iter().find(|(_, other)| same(other)) {
                let keyid = key.key_id().context("computing a key ID")?;
                if *first == role {
                    bail!(
                        "key {} is listed twice for {role}: each key counts once toward a \
                         threshold, pass distinct keys",
                        &keyid.as_str()[..12]
                    );
                }
                bail!(
                    "key {} is given for both {first} and {role}: PEP 458 keeps the roles' keys \
                     apart so that one stolen key compromises one role{}; generate a separate key \
                     for {role}",
                    &keyid.as_str()[..12],
                    if role == "online" {
                        " (an online key that is also a root key lets the server sign a new root \
                         by itself)"
                    } else {
                        ""
                    }
                );
            }
            seen.push((role, key));
        }
    }
    Ok(())
}
