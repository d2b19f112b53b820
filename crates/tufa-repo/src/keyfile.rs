//! Key files as operators handle them: an encrypted PKCS#8 PEM private key (`NAME.pem`) next to
//! its public key in TUF's JSON form (`NAME.pub.json`), which is all a ceremony needs from a key
//! holder who signs elsewhere.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tufa_metadata::{FileSigner, Key, KeyAlgorithm, Signer, generate_private_key, private_key_pem};

use crate::error::{Error, Result};

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The two files of a key pair stored at `stem`: `stem.pem` and `stem.pub.json`.
pub fn key_paths(stem: &Path) -> (PathBuf, PathBuf) {
    let name = stem.file_name().unwrap_or_default().to_string_lossy();
    (
        stem.with_file_name(format!("{name}.pem")),
        stem.with_file_name(format!("{name}.pub.json")),
    )
}

/// Generates a key pair and writes it at `stem`, refusing to overwrite an existing key. The
/// private key file is readable by its owner only.
pub fn generate_key_files(
    stem: &Path,
    algorithm: KeyAlgorithm,
    passphrase: Option<&[u8]>,
) -> Result<Key> {
    let (private_path, public_path) = key_paths(stem);
    let der = generate_private_key(algorithm)?;
    let pem = private_key_pem(&der, passphrase)?;
    let signer = FileSigner::from_pkcs8_der(der.as_bytes())?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&private_path).map_err(io(
        "creating (an existing key is never overwritten)",
        &private_path,
    ))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("writing", &private_path))?;
    let public =
        serde_json::to_vec_pretty(signer.public_key()).map_err(tufa_metadata::Error::from)?;
    fs::write(&public_path, public).map_err(io("writing", &public_path))?;
    Ok(signer.public_key().clone())
}

/// Loads a private key file, decrypting it with `passphrase` when it is encrypted.
pub fn load_signer(path: &Path, passphrase: Option<&[u8]>) -> Result<FileSigner> {
    let pem = fs::read_to_string(path).map_err(io("reading", path))?;
    FileSigner::from_pem(&pem, passphrase)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Loads a public key: a `.pub.json` file as written by [`generate_key_files`] (or any TUF key
/// object), or a private key file, whose public part is taken.
pub fn load_public_key(path: &Path, passphrase: Option<&[u8]>) -> Result<Key> {
    let bytes = fs::read(path).map_err(io("reading", path))?;
    if bytes.trim_ascii_start().starts_with(b"{") {
        let key: Key = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: not a TUF public key: {e}", path.display())))?;
        key.algorithm()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        return Ok(key);
    }
    Ok(load_signer(path, passphrase)?.public_key().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("root-1");
        let key = generate_key_files(&stem, KeyAlgorithm::EcdsaP256Sha256, Some(b"pass")).unwrap();
        let (private, public) = key_paths(&stem);
        assert_eq!(load_public_key(&public, None).unwrap(), key);
        assert_eq!(load_public_key(&private, Some(b"pass")).unwrap(), key);
        assert_eq!(
            load_signer(&private, Some(b"pass")).unwrap().public_key(),
            &key
        );
        let wrong = load_signer(&private, Some(b"other"))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        let again = generate_key_files(&stem, KeyAlgorithm::Ed25519, None).unwrap_err();
        assert!(again.to_string().contains("never overwritten"), "{again}");
        assert_eq!(load_public_key(&public, None).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
