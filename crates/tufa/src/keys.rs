//! `tufa keys`: key pairs for the ceremony and the server.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use tufa_metadata::KeyAlgorithm;
use tufa_pkcs11::{Pkcs11Uri, generate_key_pair};
use tufa_repo::{generate_key_files, key_paths};
use tufa_vault::{KeyKind, Vault, VaultSpec};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: `STEM.pem` (private, PKCS#8, encrypted unless --no-passphrase) and
    /// `STEM.pub.json` (the public key as TUF writes it). Prints the key ID.
    Generate {
        /// Path and file name without extension, for example `keys/root-alice`.
        stem: PathBuf,
        #[arg(long, value_enum, default_value_t = Algorithm::Ed25519)]
        algorithm: Algorithm,
        /// Environment variable holding the passphrase that encrypts the private key.
        #[arg(long, default_value = "TUFA_KEY_PASSPHRASE")]
        passphrase_env: String,
        /// Write the private key unencrypted (development and hardware-backed setups only).
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Generate a key pair on a PKCS#11 token (HSM, smart card, SoftHSM2): the private key
    /// never leaves it. Writes the public key for `tufa ceremony --online-key` and prints the
    /// key ID. The token's user PIN comes from TUFA_PKCS11_PIN (or pin-value= in the URI).
    GeneratePkcs11 {
        /// Where to create the key:
        /// `pkcs11:token=<token label>;object=<new key label>?module-path=<PKCS#11 module .so>`.
        #[arg(long)]
        uri: String,
        /// ECDSA P-256 is the default: nearly every token has it; Ed25519 needs PKCS#11 3.0.
        #[arg(long, value_enum, default_value_t = Algorithm::EcdsaP256)]
        algorithm: Algorithm,
        /// The public key file to write (TUF JSON, as `tufa keys generate` writes `.pub.json`).
        #[arg(long)]
        public_out: PathBuf,
    },
    /// Create a key in a Vault or OpenBao transit engine: the private key never leaves it
    /// (not exportable). Writes the public key for `tufa ceremony --online-key` and prints the
    /// key ID. Address from VAULT_ADDR (or BAO_ADDR), credentials from VAULT_TOKEN (or
    /// BAO_TOKEN) or AppRole (VAULT_ROLE_ID, VAULT_SECRET_ID); the policy needs `create` and
    /// `read` on `<mount>/keys/<key>`.
    GenerateVault {
        /// The key to create: `vault:<key name>[?mount=<transit mount, default transit>]`.
        #[arg(long)]
        key: String,
        #[arg(long, value_enum, default_value_t = Algorithm::EcdsaP256)]
        algorithm: Algorithm,
        /// The public key file to write (TUF JSON, as `tufa keys generate` writes `.pub.json`).
        #[arg(long)]
        public_out: PathBuf,
    },
    /// Write the public key of a Vault transit key (one version of it, the latest unless
    /// `version=` is given) for the ceremony or an online-key rotation, and print its key ID.
    /// A new Vault key version is a new TUF key: rotate to it with `tufa roles`.
    VaultPublic {
        /// `vault:<key name>[?mount=<transit mount>&version=<key version>]`.
        key: String,
        /// The public key file to write (TUF JSON).
        #[arg(long)]
        public_out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Ed25519,
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

impl From<Algorithm> for KeyAlgorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
            Algorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256Sha256,
        }
    }
}

pub fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::GeneratePkcs11 {
            uri,
            algorithm,
            public_out,
        } => generate_pkcs11(&uri, algorithm.into(), &public_out),
        KeysCommand::GenerateVault {
            key,
            algorithm,
            public_out,
        } => vault_key(&key, Some(algorithm), &public_out),
        KeysCommand::VaultPublic { key, public_out } => vault_key(&key, None, &public_out),
        KeysCommand::Generate {
            stem,
            algorithm,
            passphrase_env,
            no_passphrase,
        } => {
            let passphrase = if no_passphrase {
                None
            } else {
                match std::env::var(&passphrase_env) {
                    Ok(value) if !value.is_empty() => Some(value),
                    _ => bail!(
                        "no passphrase: set {passphrase_env} to the passphrase that encrypts the \
                         private key, or pass --no-passphrase"
                    ),
                }
            };
            if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let key = generate_key_files(
                &stem,
                algorithm.into(),
                passphrase.as_deref().map(str::as_bytes),
            )
            .with_context(|| format!("generating key {}", stem.display()))?;
            let (private, public) = key_paths(&stem);
            let keyid = key.key_id().context("computing the key ID")?;
            eprintln!(
                "wrote {} (private) and {} (public)",
                private.display(),
                public.display()
            );
            println!("{}", keyid.as_str());
            Ok(())
        }
    }
}

/// Makes a key pair on the token and writes its public key to a new file.
fn generate_pkcs11(uri: &str, algorithm: KeyAlgorithm, public_out: &Path) -> Result<()> {
    let uri = Pkcs11Uri::parse(uri)?;
    let pin = uri.pin()?;
    let (keyid, ()) = write_public_key(public_out, || {
        let key = generate_key_pair(&uri.module, &uri.token, &pin, &uri.object, algorithm)?;
        Ok((key, ()))
    })?;
    eprintln!(
        "created key {:?} on token {:?}; wrote its public key to {}",
        uri.object,
        uri.token,
        public_out.display()
    );
    println!("{}", keyid.as_str());
    Ok(())
}

/// Creates the Vault key (with `algorithm`) or reads its public key (without), and writes the
/// public key to a new file.
fn vault_key(key: &str, algorithm: Option<Algorithm>, public_out: &Path) -> Result<()> {
    let spec = VaultSpec::parse(key)?;
    if algorithm.is_some() && spec.version.is_some() {
        bail!("a new Vault key has version 1 only: leave version= out of --key");
    }
    let vault = Vault::from_env()?;
    let (keyid, version) = write_public_key(public_out, || {
        Ok(match algorithm {
            Some(algorithm) => {
                let kind = match algorithm {
                    Algorithm::Ed25519 => KeyKind::Ed25519,
                    Algorithm::EcdsaP256 => KeyKind::EcdsaP256,
                };
                (vault.create_key(&spec, kind)?, 1)
            }
            None => {
                let (key, _, version) = vault.public_key(&spec)?;
                (key, version)
            }
        })
    })?;
    eprintln!(
        "transit key {:?} version {version} in {}: wrote its public key to {}; serve with \
         --online-key 'vault:{}?mount={}&version={version}'",
        spec.key,
        vault.address(),
        public_out.display(),
        spec.key,
        spec.mount,
    );
    println!("{}", keyid.as_str());
    Ok(())
}

/// Creates `public_out` first (refusing to overwrite one), so that a key made on a token or in
/// Vault always has its public half written somewhere; then makes the key with `make` and writes
/// its public half, or removes the file again when making it fails.
fn write_public_key<T>(
    public_out: &Path,
    make: impl FnOnce() -> Result<(tufa_metadata::Key, T)>,
) -> Result<(tufa_metadata::KeyId, T)> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(public_out)
        .with_context(|| {
            format!(
                "creating {} (an existing file is never overwritten)",
                public_out.display()
            )
        })?;
    let (key, made) = match make() {
        Ok(made) => made,
        Err(error) => {
            let _ = std::fs::remove_file(public_out);
            return Err(error);
        }
    };
    let json = serde_json::to_vec_pretty(&key).context("encoding the public key")?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", public_out.display()))?;
    Ok((key.key_id().context("computing the key ID")?, made))
}
