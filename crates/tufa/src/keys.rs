//! `tufa keys`: key pairs for the ceremony and the server.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use tufa_metadata::KeyAlgorithm;
use tufa_repo::{generate_key_files, key_paths};

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
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Ed25519,
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

pub fn run(command: KeysCommand) -> Result<()> {
    match command {
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
            let algorithm = match algorithm {
                Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
                Algorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256Sha256,
            };
            if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let key =
                generate_key_files(&stem, algorithm, passphrase.as_deref().map(str::as_bytes))
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
