//! Public keys as TUF metadata lists them, and signature verification with them.
//!
//! Supported: `ed25519` (hex public key), ECDSA P-256 with scheme `ecdsa-sha2-nistp256` under both
//! keytypes python-tuf and securesystemslib emit (`ecdsa` and the older `ecdsa-sha2-nistp256`),
//! with a PEM SubjectPublicKeyInfo and DER signatures, and `rsa` with `rsassa-pss-sha256` (PEM
//! SubjectPublicKeyInfo). RSA-PSS is verified with a salt as long as the digest, which is what
//! securesystemslib and Tufa sign with; ring has no "any salt length" mode.

use std::collections::BTreeMap;

use ring::signature::{self as ring_sig, UnparsedPublicKey};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use spki::der::DecodePem;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::canonical::{SortedFields, to_canonical_bytes};
use crate::error::{Error, Result};
use crate::types::KeyId;

pub const KEYTYPE_ED25519: &str = "ed25519";
pub const KEYTYPE_ECDSA: &str = "ecdsa";
pub const KEYTYPE_RSA: &str = "rsa";
pub const SCHEME_ED25519: &str = "ed25519";
pub const SCHEME_ECDSA_P256: &str = "ecdsa-sha2-nistp256";
pub const SCHEME_RSA_PSS_SHA256: &str = "rsassa-pss-sha256";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The algorithms Tufa verifies with, decided from a key's `keytype` and `scheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    EcdsaP256Sha256,
    RsaPssSha256,
}

/// A public key in TUF metadata (spec section 4.2), with any fields this implementation does not
/// know kept so that the key ID and the enclosing signature stay valid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
    #[serde(flatten)]
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct KeyVal {
    pub public: String,
    #[serde(flatten)]
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("keytype", &self.keytype)?;
        fields.field("keyval", &self.keyval)?;
        fields.field("scheme", &self.scheme)?;
        fields.end()
    }
}

impl Serialize for KeyVal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = SortedFields::new(serializer.serialize_map(None)?, &self.unrecognized);
        fields.field("public", &self.public)?;
        fields.end()
    }
}

impl Key {
    /// A key with no extra fields.
    pub fn new(keytype: &str, scheme: &str, public: String) -> Self {
        Key {
            keytype: keytype.into(),
            scheme: scheme.into(),
            keyval: KeyVal {
                public,
                unrecognized: BTreeMap::new(),
            },
            unrecognized: BTreeMap::new(),
        }
    }

    /// An `ed25519` key from its 32 raw public bytes, as signers outside this crate (hardware
    /// tokens) read them.
    pub fn ed25519(public: &[u8]) -> Result<Self> {
        if public.len() != 32 {
            return Err(Error::InvalidPublicKey {
                keytype: KEYTYPE_ED25519.into(),
                reason: format!("{} bytes, expected 32", public.len()),
            });
        }
        Ok(Key::new(
            KEYTYPE_ED25519,
            SCHEME_ED25519,
            hex::encode(public),
        ))
    }

    /// An `ecdsa` key with scheme `ecdsa-sha2-nistp256` from its uncompressed SEC1 point
    /// (`04 || x || y`, 65 bytes), written as python-tuf writes it (PEM SubjectPublicKeyInfo).
    pub fn ecdsa_p256(uncompressed_point: &[u8]) -> Result<Self> {
        if uncompressed_point.len() != 65 || uncompressed_point[0] != 4 {
            return Err(Error::InvalidPublicKey {
                keytype: KEYTYPE_ECDSA.into(),
                reason: "not an uncompressed P-256 point (65 bytes starting with 04)".into(),
            });
        }
        Ok(Key::new(
            KEYTYPE_ECDSA,
            SCHEME_ECDSA_P256,
            encode::ecdsa_p256_pem(uncompressed_point)?,
        ))
    }

    /// The key's ID: hex SHA-256 of its canonical JSON, unrecognized fields included, as
    /// securesystemslib computes it.
    pub fn key_id(&self) -> Result<KeyId> {
        let canonical = to_canonical_bytes(self)?;
        Ok(KeyId::new(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &canonical,
        ))))
    }

    /// Checks that `keyid` is this key's ID, so that one key cannot be listed under several IDs
    /// and counted more than once towards a threshold.
    pub fn check_id(&self, keyid: &KeyId) -> Result<()> {
        let computed = self.key_id()?;
        if &computed != keyid {
            return Err(Error::KeyIdMismatch {
                keyid: keyid.clone(),
                computed,
            });
        }
        Ok(())
    }

    pub fn algorithm(&self) -> Result<KeyAlgorithm> {
        match (self.keytype.as_str(), self.scheme.as_str()) {
            (KEYTYPE_ED25519, SCHEME_ED25519) => Ok(KeyAlgorithm::Ed25519),
            (KEYTYPE_ECDSA | SCHEME_ECDSA_P256, SCHEME_ECDSA_P256) => {
                Ok(KeyAlgorithm::EcdsaP256Sha256)
            }
            (KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256) => Ok(KeyAlgorithm::RsaPssSha256),
            _ => Err(Error::UnsupportedKey {
                keytype: self.keytype.clone(),
                scheme: self.scheme.clone(),
            }),
        }
    }

    /// The raw public key bytes in the form ring verifies with.
    fn verifier(&self) -> Result<UnparsedPublicKey<Vec<u8>>> {
        let invalid = |reason: String| Error::InvalidPublicKey {
            keytype: self.keytype.clone(),
            reason,
        };
        Ok(match self.algorithm()? {
            KeyAlgorithm::Ed25519 => {
                let bytes = hex::decode(&self.keyval.public)
                    .map_err(|e| invalid(format!("not hex: {e}")))?;
                if bytes.len() != 32 {
                    return Err(invalid(format!("{} bytes, expected 32", bytes.len())));
                }
                UnparsedPublicKey::new(&ring_sig::ED25519, bytes)
            }
            KeyAlgorithm::EcdsaP256Sha256 => {
                let spki = parse_spki(&self.keyval.public).map_err(invalid)?;
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP256R1) {
                    return Err(invalid("not an ECDSA P-256 public key".into()));
                }
                UnparsedPublicKey::new(
                    &ring_sig::ECDSA_P256_SHA256_ASN1,
                    spki.subject_public_key.raw_bytes().to_vec(),
                )
            }
            KeyAlgorithm::RsaPssSha256 => {
                let spki = parse_spki(&self.keyval.public).map_err(invalid)?;
                if spki.algorithm.oid != OID_RSA_ENCRYPTION {
                    return Err(invalid("not an RSA public key".into()));
                }
                UnparsedPublicKey::new(
                    &ring_sig::RSA_PSS_2048_8192_SHA256,
                    spki.subject_public_key.raw_bytes().to_vec(),
                )
            }
        })
    }

    /// Verifies a hex-encoded signature over `message` (canonical signed bytes).
    pub fn verify(&self, keyid: &KeyId, message: &[u8], signature_hex: &str) -> Result<()> {
        let verifier = self.verifier()?;
        let bad = || Error::BadSignature {
            keyid: keyid.clone(),
        };
        let signature = hex::decode(signature_hex).map_err(|_| bad())?;
        verifier.verify(message, &signature).map_err(|_| bad())
    }

    /// What makes two keys the same key for threshold counting: the algorithm's key material,
    /// whatever other fields (and so key IDs) they carry.
    pub(crate) fn material(&self) -> (&str, &str) {
        (self.keytype.as_str(), self.keyval.public.as_str())
    }
}

fn parse_spki(pem: &str) -> Result<SubjectPublicKeyInfoOwned, String> {
    SubjectPublicKeyInfoOwned::from_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM SubjectPublicKeyInfo: {e}"))
}

pub(crate) mod encode {
    //! Public key encodings for keys Tufa creates: the forms python-tuf writes.
    use super::*;
    use spki::AlgorithmIdentifierOwned;
    use spki::der::asn1::{AnyRef, BitString};
    use spki::der::{Any, EncodePem, pem::LineEnding};

    pub(crate) fn ecdsa_p256_pem(uncompressed_point: &[u8]) -> Result<String> {
        let curve =
            Any::encode_from(&OID_SECP256R1).map_err(|e| Error::PrivateKey(e.to_string()))?;
        spki_pem(OID_EC_PUBLIC_KEY, Some(curve), uncompressed_point)
    }

    pub(crate) fn rsa_pem(rsa_public_key_der: &[u8]) -> Result<String> {
        spki_pem(
            OID_RSA_ENCRYPTION,
            Some(Any::from(AnyRef::NULL)),
            rsa_public_key_der,
        )
    }

    fn spki_pem(oid: ObjectIdentifier, parameters: Option<Any>, key: &[u8]) -> Result<String> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid, parameters },
            subject_public_key: BitString::from_bytes(key)
                .map_err(|e| Error::PrivateKey(e.to_string()))?,
        };
        spki.to_pem(LineEnding::LF)
            .map_err(|e| Error::PrivateKey(e.to_string()))
    }
}
