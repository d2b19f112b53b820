//! Sigstore's `trusted_root.json` (media type `application/vnd.dev.sigstore.trustedroot+json`,
//! the `TrustedRoot` message of sigstore/protobuf-specs): Fulcio certificate authorities with
//! their chains, Rekor transparency log keys and certificate-transparency log keys, each with the
//! period (`validFor`) in which it may be used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use x509_cert::der::Decode as _;
use x509_cert::spki::SubjectPublicKeyInfoRef;

use crate::Error;

/// Sigstore's public-good trust root, shipped with Tufa. Taken from the PyPI wheel
/// `sigstore-4.5.1-py3-none-any.whl`, file
/// `sigstore/_store/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json` (sha256
/// 6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66), the copy sigstore-python
/// embeds from Sigstore's TUF repository. Tufa does not refresh it over Sigstore's TUF
/// repository: when Sigstore adds a CA or log key, a newer copy ships with Tufa or the operator
/// loads one with [`TrustRoot::from_json`]. Attestations made under keys that are already listed
/// keep verifying, since every key is used only within its own `validFor` period.
pub(crate) const PUBLIC_GOOD: &[u8] = include_bytes!("data/trusted_root.json");

/// A trust root larger than this is not a trust root (the public-good one is 7 KB).
const MAX_TRUST_ROOT_BYTES: usize = 1024 * 1024;

/// The validity window of a key or CA, in Unix seconds; `end` absent means still in use.
#[derive(Clone, Debug)]
pub(crate) struct Validity {
    start: i64,
    end: Option<i64>,
}

impl Validity {
    pub(crate) fn contains(&self, at: i64) -> bool {
        self.start <= at && self.end.is_none_or(|end| at <= end)
    }
}

/// How a log key verifies: the trust root names the algorithm (`keyDetails`), and the SPKI's
/// own algorithm must agree with it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyAlgorithm {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    Ed25519,
    RsaPkcs1Sha256,
}

/// A Rekor or CT log key: its id (sha256 of the DER SubjectPublicKeyInfo, as the trust root's
/// `logId.keyId` states it) and the raw public key ring verifies with.
#[derive(Clone, Debug)]
pub(crate) struct LogKey {
    pub(crate) base_url: String,
    pub(crate) key_id: Vec<u8>,
    algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
    pub(crate) valid_for: Validity,
}

impl LogKey {
    /// Verifies `signature` (ASN.1 DER for ECDSA) over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::EcdsaP384Sha384 => &ring::signature::ECDSA_P384_SHA384_ASN1,
            KeyAlgorithm::Ed25519 => &ring::signature::ED25519,
            KeyAlgorithm::RsaPkcs1Sha256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        };
        ring::signature::UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

/// A Fulcio CA: its chain as the trust root lists it (issuing certificate first, root last).
#[derive(Clone, Debug)]
pub(crate) struct CertificateAuthority {
    pub(crate) uri: String,
    pub(crate) chain: Vec<Vec<u8>>,
    pub(crate) valid_for: Validity,
}

/// The Sigstore trust root: Fulcio certificate authorities, Rekor log keys, CT log keys.
#[derive(Clone, Debug)]
pub struct TrustRoot {
    pub(crate) authorities: Vec<CertificateAuthority>,
    pub(crate) tlogs: Vec<LogKey>,
    pub(crate) ctlogs: Vec<LogKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrustRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    base_url: String,
    public_key: RawPublicKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPublicKey {
    raw_bytes: String,
    key_details: String,
    valid_for: RawValidity,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct RawValidity {
    start: String,
    #[serde(default)]
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    uri: String,
    cert_chain: RawChain,
    valid_for: RawValidity,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    raw_bytes: String,
}

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP256R1: &str = "1.2.840.10045.3.1.7";
const SECP384R1: &str = "1.3.132.0.34";
const ID_ED25519: &str = "1.3.101.112";
const ID_RSA: &str = "1.2.840.113549.1.1.1";

fn bad(path: String, reason: impl std::fmt::Display) -> Error {
    Error::TrustRoot {
        path,
        reason: reason.to_string(),
    }
}

pub(crate) fn parse_time(path: &str, text: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            bad(
                path.to_owned(),
                format!("{text:?} is not an RFC 3339 time: {e}"),
            )
        })
}

fn validity(path: &str, raw: &RawValidity) -> Result<Validity, Error> {
    Ok(Validity {
        start: parse_time(&format!("{path}.start"), &raw.start)?,
        end: raw
            .end
            .as_deref()
            .map(|end| parse_time(&format!("{path}.end"), end))
            .transpose()?,
    })
}

fn log_key(path: &str, raw: &RawLog) -> Result<LogKey, Error> {
    let spki_der = STANDARD
        .decode(&raw.public_key.raw_bytes)
        .map_err(|e| bad(format!("{path}.publicKey.rawBytes"), e))?;
    let details = raw.public_key.key_details.as_str();
    let (algorithm, public_key) = if details == "PKCS1_RSA_PKCS1V5" {
        // A bare PKCS#1 RSAPublicKey (Sigstore staging's first CT log), not an SPKI.
        (KeyAlgorithm::RsaPkcs1Sha256, spki_der.clone())
    } else {
        let spki = SubjectPublicKeyInfoRef::from_der(&spki_der)
            .map_err(|e| bad(format!("{path}.publicKey.rawBytes"), e))?;
        let key_oid = spki.algorithm.oid.to_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
            .map(|oid| oid.to_string());
        let algorithm = match (details, key_oid.as_str(), curve.as_deref()) {
            ("PKIX_ECDSA_P256_SHA_256", ID_EC_PUBLIC_KEY, Some(SECP256R1)) => {
                KeyAlgorithm::EcdsaP256Sha256
            }
            ("PKIX_ECDSA_P384_SHA_384", ID_EC_PUBLIC_KEY, Some(SECP384R1)) => {
                KeyAlgorithm::EcdsaP384Sha384
            }
            ("PKIX_ED25519", ID_ED25519, None) => KeyAlgorithm::Ed25519,
            (
                "PKIX_RSA_PKCS1V15_2048_SHA256"
                | "PKIX_RSA_PKCS1V15_3072_SHA256"
                | "PKIX_RSA_PKCS1V15_4096_SHA256",
                ID_RSA,
                _,
            ) => KeyAlgorithm::RsaPkcs1Sha256,
            (details, oid, curve) => {
                return Err(bad(
                    format!("{path}.publicKey.keyDetails"),
                    format!("unsupported key {details} (SPKI algorithm {oid}, curve {curve:?})"),
                ));
            }
        };
        let public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad(format!("{path}.publicKey.rawBytes"), "unaligned key bits"))?
            .to_vec();
        (algorithm, public_key)
    };
    let key_id = STANDARD
        .decode(&raw.log_id.key_id)
        .map_err(|e| bad(format!("{path}.logId.keyId"), e))?;
    // Rekor v1 log ids are the sha256 of the key's SPKI, Rekor v2's are C2SP signed-note key ids
    // (a hash of name and key): the trust root's word is taken, but the checkpoint's 4-byte key
    // hint is its prefix, so it must have one.
    if key_id.len() < 4 {
        return Err(bad(
            format!("{path}.logId.keyId"),
            "is shorter than 4 bytes",
        ));
    }
    Ok(LogKey {
        base_url: raw.base_url.clone(),
        key_id,
        algorithm,
        public_key,
        valid_for: validity(
            &format!("{path}.publicKey.validFor"),
            &raw.public_key.valid_for,
        )?,
    })
}

impl TrustRoot {
    /// Sigstore's public-good instance, shipped with Tufa (see [`PUBLIC_GOOD`] for its origin).
    pub fn public_good() -> TrustRoot {
        // The shipped file is checked by this crate's tests; failing here is a build defect,
        // never an input error.
        TrustRoot::from_json(PUBLIC_GOOD).expect("the shipped public-good trusted_root.json parses")
    }

    /// An operator's replacement, in Sigstore's `trusted_root.json` format (for example a
    /// private Sigstore deployment, or Sigstore's staging instance).
    pub fn from_json(bytes: &[u8]) -> Result<TrustRoot, Error> {
        if bytes.len() > MAX_TRUST_ROOT_BYTES {
            return Err(bad(
                String::new(),
                format!("{} bytes (at most {MAX_TRUST_ROOT_BYTES})", bytes.len()),
            ));
        }
        let raw: RawTrustRoot = serde_json::from_slice(bytes).map_err(|e| bad(String::new(), e))?;
        if !raw
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot+json")
        {
            return Err(bad(
                "mediaType".into(),
                format!("{:?} is not a Sigstore trusted root", raw.media_type),
            ));
        }
        let mut authorities = Vec::new();
        for (i, ca) in raw.certificate_authorities.iter().enumerate() {
            let path = format!("certificateAuthorities[{i}]");
            let mut chain = Vec::new();
            for (j, cert) in ca.cert_chain.certificates.iter().enumerate() {
                let der = STANDARD
                    .decode(&cert.raw_bytes)
                    .map_err(|e| bad(format!("{path}.certChain.certificates[{j}]"), e))?;
                x509_cert::Certificate::from_der(&der)
                    .map_err(|e| bad(format!("{path}.certChain.certificates[{j}]"), e))?;
                chain.push(der);
            }
            if chain.is_empty() {
                return Err(bad(format!("{path}.certChain"), "has no certificates"));
            }
            authorities.push(CertificateAuthority {
                uri: ca.uri.clone(),
                chain,
                valid_for: validity(&format!("{path}.validFor"), &ca.valid_for)?,
            });
        }
        let tlogs = raw
            .tlogs
            .iter()
            .enumerate()
            .map(|(i, log)| log_key(&format!("tlogs[{i}]"), log))
            .collect::<Result<Vec<_>, _>>()?;
        let ctlogs = raw
            .ctlogs
            .iter()
            .enumerate()
            .map(|(i, log)| log_key(&format!("ctlogs[{i}]"), log))
            .collect::<Result<Vec<_>, _>>()?;
        if authorities.is_empty() || tlogs.is_empty() {
            return Err(bad(
                String::new(),
                "needs at least one certificate authority and one transparency log",
            ));
        }
        Ok(TrustRoot {
            authorities,
            tlogs,
            ctlogs,
        })
    }

    /// The Rekor log whose key id the entry names, if the trust root lists it.
    pub(crate) fn tlog(&self, key_id: &[u8]) -> Option<&LogKey> {
        self.tlogs.iter().find(|log| log.key_id == key_id)
    }

    pub(crate) fn ctlog(&self, key_id: &[u8]) -> Option<&LogKey> {
        self.ctlogs.iter().find(|log| log.key_id == key_id)
    }
}
