//! Signing: a [`Signer`] signs canonical bytes with one key. Key files are one backend; hardware
//! tokens (PKCS#11) and remote KMSs implement the same trait elsewhere.

use pkcs8::der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfoRef, ObjectIdentifier, PrivateKeyInfoRef, SecretDocument};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::error::{Error, Result};
use crate::key::{self, Key, KeyAlgorithm, encode};
use crate::metadata::Signature;
use crate::types::KeyId;

/// Something that holds one private key and signs with it.
pub trait Signer: Send + Sync {
    /// The public half, as it is listed in metadata.
    fn public_key(&self) -> &Key;

    /// The public key's ID.
    fn key_id(&self) -> &KeyId;

    /// Signs `message` (canonical signed bytes) and returns the signature as metadata holds it.
    fn sign(&self, message: &[u8]) -> Result<Signature>;
}

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

const LABEL_PLAIN: &str = "PRIVATE KEY";
const LABEL_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";

enum PrivateKey {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A signer whose private key comes from a PKCS#8 PEM file, encrypted with a passphrase or not.
pub struct FileSigner {
    private: PrivateKey,
    public: Key,
    keyid: KeyId,
    rng: SystemRandom,
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSigner")
            .field("keyid", &self.keyid)
            .field("keytype", &self.public.keytype)
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    /// Loads a PKCS#8 PEM private key (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` with
    /// `passphrase`) as written by Tufa, OpenSSL or Python's cryptography.
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self> {
        let (label, document) = SecretDocument::from_pem(pem)
            .map_err(|e| Error::PrivateKey(format!("not a PKCS#8 PEM private key: {e}")))?;
        let plain = match (label, passphrase) {
            (LABEL_PLAIN, _) => document,
            (LABEL_ENCRYPTED, Some(passphrase)) => {
                EncryptedPrivateKeyInfoRef::try_from(document.as_bytes())
                    .map_err(|e| Error::PrivateKey(format!("malformed encrypted key: {e}")))?
                    .decrypt(passphrase)
                    .map_err(|_| {
                        Error::PrivateKey("cannot decrypt the key: wrong passphrase?".into())
                    })?
            }
            (LABEL_ENCRYPTED, None) => {
                return Err(Error::PrivateKey(
                    "the key is encrypted: a passphrase is needed".into(),
                ));
            }
            (other, _) => {
                return Err(Error::PrivateKey(format!(
                    "PEM label {other:?}: expected {LABEL_PLAIN:?} or {LABEL_ENCRYPTED:?} (PKCS#8)"
                )));
            }
        };
        Self::from_pkcs8_der(plain.as_bytes())
    }

    /// Loads an unencrypted PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let info = PrivateKeyInfoRef::try_from(der)
            .map_err(|e| Error::PrivateKey(format!("malformed PKCS#8: {e}")))?;
        let rejected =
            |e: ring::error::KeyRejected| Error::PrivateKey(format!("key rejected: {e}"));
        let rng = SystemRandom::new();
        let algorithm = info.algorithm.oid;
        let curve = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let (private, public) = if algorithm == OID_ED25519 {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?;
            let public = Key::ed25519(pair.public_key().as_ref())?;
            (PrivateKey::Ed25519(pair), public)
        } else if algorithm == OID_EC_PUBLIC_KEY && curve == Some(OID_SECP256R1) {
            let pair =
                EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
                    .map_err(rejected)?;
            let public = Key::ecdsa_p256(pair.public_key().as_ref())?;
            (PrivateKey::EcdsaP256(pair), public)
        } else if algorithm == OID_RSA_ENCRYPTION {
            let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
            let public = Key::new(
                key::KEYTYPE_RSA,
                key::SCHEME_RSA_PSS_SHA256,
                encode::rsa_pem(pair.public().as_ref())?,
            );
            (PrivateKey::Rsa(pair), public)
        } else {
            return Err(Error::PrivateKey(format!(
                "unsupported private key algorithm {algorithm}: use Ed25519, ECDSA P-256 or RSA"
            )));
        };
        let keyid = public.key_id()?;
        Ok(FileSigner {
            private,
            public,
            keyid,
            rng,
        })
    }
}

impl Signer for FileSigner {
    fn public_key(&self) -> &Key {
        &self.public
    }

    fn key_id(&self) -> &KeyId {
        &self.keyid
    }

    fn sign(&self, message: &[u8]) -> Result<Signature> {
        let failed = |_| Error::Signing(format!("key {} could not sign", self.keyid));
        let bytes = match &self.private {
            PrivateKey::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            PrivateKey::EcdsaP256(pair) => pair
                .sign(&self.rng, message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            PrivateKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring_sig::RSA_PSS_SHA256,
                    &self.rng,
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                signature
            }
        };
        Ok(Signature {
            keyid: self.keyid.clone(),
            sig: hex::encode(bytes),
            unrecognized: Default::default(),
        })
    }
}

/// A freshly generated private key as unencrypted PKCS#8 DER (zeroized on drop).
pub fn generate_private_key(algorithm: KeyAlgorithm) -> Result<SecretDocument> {
    let rng = SystemRandom::new();
    let failed = |_| Error::PrivateKey("the system random generator failed".into());
    let pkcs8 = match algorithm {
        KeyAlgorithm::Ed25519 => {
            let v2 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
            return ed25519_pkcs8_v1(v2.as_ref());
        }
        KeyAlgorithm::EcdsaP256Sha256 => {
            EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(failed)?
        }
        KeyAlgorithm::RsaPssSha256 => {
            return Err(Error::PrivateKey(
                "Tufa does not generate RSA keys; create one with \
                 `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072` and load it"
                    .into(),
            ));
        }
    };
    SecretDocument::try_from(pkcs8.as_ref())
        .map_err(|e| Error::PrivateKey(format!("generated key does not encode: {e}")))
}

/// Drops the public key from ring's PKCS#8 v2 Ed25519 document. OpenSSL and Python's
/// `cryptography` refuse ring's v2 encoding, and key files must move between tools.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Result<SecretDocument> {
    let failed =
        |e: pkcs8::der::Error| Error::PrivateKey(format!("generated key does not encode: {e}"));
    let mut info = PrivateKeyInfoRef::try_from(v2)
        .map_err(|e| Error::PrivateKey(format!("generated key does not encode: {e}")))?;
    info.public_key = None;
    SecretDocument::encode_msg(&info).map_err(failed)
}

/// PEM text for a PKCS#8 DER private key: encrypted with `passphrase` (scrypt and AES-256-CBC,
/// PKCS#5 v2), or plain when there is none.
pub fn private_key_pem(der: &SecretDocument, passphrase: Option<&[u8]>) -> Result<String> {
    let failed = |e: pkcs8::Error| Error::PrivateKey(format!("cannot encode the key: {e}"));
    let (label, document) = match passphrase {
        Some(passphrase) => {
            let info = PrivateKeyInfoRef::try_from(der.as_bytes()).map_err(failed)?;
            (LABEL_ENCRYPTED, info.encrypt(passphrase).map_err(failed)?)
        }
        None => (LABEL_PLAIN, der.clone()),
    };
    document
        .to_pem(label, LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| Error::PrivateKey(format!("cannot encode the key: {e}")))
}
