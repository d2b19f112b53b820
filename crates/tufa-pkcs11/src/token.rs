//! Talking to the token: loading the module, logging in, finding and creating keys, signing.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::asn1::{OctetStringRef, UintRef};
use der::{Decode, Encode};
use tufa_metadata::{Key, KeyAlgorithm, KeyId, Signature, Signer};

use crate::error::{Error, Result};
use crate::uri::Pkcs11Uri;

/// `CKA_EC_PARAMS` values, DER as PKCS#11 stores them: the named-curve OID of P-256
/// (1.2.840.10045.3.1.7), the Ed25519 OID (1.3.101.112), and the PrintableString
/// "edwards25519" that PKCS#11 3.0 also allows for Ed25519 (some tokens write that form).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// The two kinds of key Tufa signs with on a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    EcdsaP256,
    Ed25519,
}

/// A key on a PKCS#11 token (an HSM, a smart card, a YubiKey, SoftHSM2) that signs TUF metadata.
/// The private key never leaves the token; the public key is read from it.
///
/// One session, logged in and used under a mutex: the publisher signs one role at a time, and
/// tokens limit concurrent sessions. A token that restarts (unplugged, power-cycled, a network
/// HSM that failed over) ends every session, so a signature that fails is tried once more on a
/// new session: the signer logs in again and finds the key anew (object handles belong to a
/// session), and refuses a key whose public half changed. A token that is still away fails
/// that round; the publisher retries, and signing resumes with no restart of the server.
pub struct Pkcs11Signer {
    /// `None` after a failed attempt to open a new session; the next signature tries again.
    session: Mutex<Option<Open>>,
    module: std::path::PathBuf,
    /// Kept for logging in again after a token restart; never printed.
    pin: String,
    kind: Kind,
    public: Key,
    keyid: KeyId,
    token: String,
    label: String,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("keyid", &self.keyid)
            .field("token", &self.token)
            .field("label", &self.label)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Opens the key a PKCS#11 URI names, with the PIN from `TUFA_PKCS11_PIN` or the URI.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let uri = Pkcs11Uri::parse(uri)?;
        let pin = uri.pin()?;
        Self::open(&uri, &pin)
    }

    /// Opens the private key labelled `uri.object` on token `uri.token`, logging in with `pin`,
    /// and reads its public key. Checks with one test signature that the private and public
    /// objects under that label are one pair, so a mix-up is found at start-up, not by clients.
    pub fn open(uri: &Pkcs11Uri, pin: &str) -> Result<Self> {
        let token = uri.token.clone();
        let label = uri.object.clone();
        let (open, kind, public) = Open::new(&uri.module, &token, &label, pin)?;
        let keyid = public.key_id()?;
        let signer = Pkcs11Signer {
            session: Mutex::new(Some(open)),
            module: uri.module.clone(),
            pin: pin.to_string(),
            kind,
            public,
            keyid,
            token,
            label,
        };
        let probe = b"tufa: does the private key on the token match its public key?";
        let signature = signer.sign(probe)?;
        signer
            .public
            .verify(&signer.keyid, probe, &signature.sig)
            .map_err(|_| Error::KeyPairMismatch {
                token: signer.token.clone(),
                label: signer.label.clone(),
            })?;
        Ok(signer)
    }

    fn raw_signature(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut open = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let first = match open.as_ref() {
            Some(current) => match self.sign_in(current, message) {
                Ok(signature) => return Ok(signature),
                Err(error) => error.to_string(),
            },
            None => "no session since the last failure".into(),
        };
        // The session may have ended with a token restart: a new one. The old one is closed
        // first, since a module that restarted hands out the same handle numbers again and
        // closing the old one later would close the new one.
        *open = None;
        let (reopened, _, public) = Open::new(&self.module, &self.token, &self.label, &self.pin)
            .map_err(|again| Error::Reopen {
                token: self.token.clone(),
                first,
                again: again.to_string(),
            })?;
        if public != self.public {
            return Err(Error::KeyChanged {
                token: self.token.clone(),
                label: self.label.clone(),
            });
        }
        self.sign_in(open.insert(reopened), message)
    }

    fn sign_in(&self, open: &Open, message: &[u8]) -> Result<Vec<u8>> {
        let Open { session, private } = open;
        let private = *private;
        let failed = |source| token_error(&self.token, "signing", source);
        match self.kind {
            // CKM_ECDSA over a digest computed here rather than CKM_ECDSA_SHA256 over the
            // message: every token has the former, and a snapshot listing thousands of bins
            // would otherwise cross the (often slow, USB) link to the token in full.
            Kind::EcdsaP256 => {
                let digest = ring::digest::digest(&ring::digest::SHA256, message);
                let raw = session
                    .sign(&Mechanism::Ecdsa, private, digest.as_ref())
                    .map_err(failed)?;
                der_ecdsa_signature(&raw).ok_or_else(|| {
                    Error::Metadata(tufa_metadata::Error::Signing(format!(
                        "token {:?} returned a {}-byte ECDSA signature, expected 64 (r || s)",
                        self.token,
                        raw.len()
                    )))
                })
            }
            // Pure Ed25519 signs the message itself; it has no prehashed form TUF accepts.
            Kind::Ed25519 => session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519)),
                    private,
                    message,
                )
                .map_err(|source| mechanism_error(&self.token, "CKM_EDDSA", "signing", source)),
        }
    }
}

/// A logged-in session and the private key's handle in it.
struct Open {
    session: Session,
    private: ObjectHandle,
}

impl Open {
    fn new(module: &Path, token: &str, label: &str, pin: &str) -> Result<(Open, Kind, Key)> {
        let session = login(module, token, pin, false)?;
        let private =
            find_one(&session, token, label, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
                Error::KeyNotFound {
                    token: token.into(),
                    label: label.into(),
                }
            })?;
        let (kind, public) = read_public_key(&session, token, label)?;
        Ok((Open { session, private }, kind, public))
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> &Key {
        &self.public
    }

    fn key_id(&self) -> &KeyId {
        &self.keyid
    }

    fn sign(&self, message: &[u8]) -> tufa_metadata::Result<Signature> {
        let bytes = self
            .raw_signature(message)
            .map_err(|e| tufa_metadata::Error::Signing(e.to_string()))?;
        Ok(Signature {
            keyid: self.keyid.clone(),
            sig: hex::encode(bytes),
            unrecognized: Default::default(),
        })
    }
}

/// Creates a key pair labelled `label` on token `token` and returns its public key as TUF lists
/// it. The private key is created sensitive and not extractable: it can sign and nothing else.
/// Refuses a label already in use, since the label is how the signer finds the key.
pub fn generate_key_pair(
    module: &Path,
    token: &str,
    pin: &str,
    label: &str,
    algorithm: KeyAlgorithm,
) -> Result<Key> {
    let (mechanism, mechanism_name, params) = match algorithm {
        KeyAlgorithm::EcdsaP256Sha256 => {
            (Mechanism::EccKeyPairGen, "CKM_EC_KEY_PAIR_GEN", P256_PARAMS)
        }
        KeyAlgorithm::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            "CKM_EC_EDWARDS_KEY_PAIR_GEN",
            ED25519_OID_PARAMS,
        ),
        KeyAlgorithm::RsaPssSha256 => return Err(Error::UnsupportedAlgorithm(algorithm)),
    };
    let session = login(module, token, pin, true)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if find_one(&session, token, label, class)?.is_some() {
            return Err(Error::KeyExists {
                token: token.into(),
                label: label.into(),
            });
        }
    }
    let label_bytes = label.as_bytes().to_vec();
    let public_template = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label_bytes.clone()),
        Attribute::EcParams(params.to_vec()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label_bytes),
    ];
    session
        .generate_key_pair(&mechanism, &public_template, &private_template)
        .map_err(|source| mechanism_error(token, mechanism_name, "generating a key", source))?;
    Ok(read_public_key(&session, token, label)?.1)
}

/// Loads the module, finds the token by label and opens a session logged in as the user.
fn login(module: &Path, token: &str, pin: &str, read_write: bool) -> Result<Session> {
    if !module.is_file() {
        return Err(Error::ModuleNotFound {
            path: module.to_path_buf(),
        });
    }
    let load_failed = |reason: String| Error::ModuleLoad {
        path: module.to_path_buf(),
        reason,
    };
    let pkcs11 = Pkcs11::new(module).map_err(|e| load_failed(e.to_string()))?;
    // C_Initialize is once per process and module; a second signer on the same module (or a
    // test opening several) finds it initialized, which is fine.
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_failed(e.to_string())),
    }
    let failed = |action| move |source| token_error(token, action, source);
    let mut present = Vec::new();
    let mut found = None;
    for slot in pkcs11
        .get_slots_with_token()
        .map_err(failed("listing slots"))?
    {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(failed("reading token information"))?;
        if info.label() == token {
            found = Some(slot);
            break;
        }
        present.push(format!("{:?}", info.label()));
    }
    let slot = found.ok_or_else(|| Error::TokenNotFound {
        token: token.into(),
        present: if present.is_empty() {
            "none".into()
        } else {
            present.join(", ")
        },
    })?;
    let session = if read_write {
        pkcs11.open_rw_session(slot)
    } else {
        pkcs11.open_ro_session(slot)
    }
    .map_err(failed("opening a session"))?;
    match session.login(UserType::User, Some(&AuthPin::from(pin.to_owned()))) {
        // Login is per application: another session of this process already logged in.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Error::WrongPin {
                token: token.into(),
            })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinLocked {
            token: token.into(),
        }),
        Err(source) => Err(token_error(token, "logging in", source)),
    }
}

/// The one object of `class` labelled `label`, if any.
fn find_one(
    session: &Session,
    token: &str,
    label: &str,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|source| token_error(token, "searching for the key", source))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(Error::AmbiguousKey {
            token: token.into(),
            label: label.into(),
            class: if class == ObjectClass::PRIVATE_KEY {
                "private key"
            } else {
                "public key"
            },
            count: more.len(),
        }),
    }
}

/// Reads the public key labelled `label` and builds the TUF key from its curve and point.
fn read_public_key(session: &Session, token: &str, label: &str) -> Result<(Kind, Key)> {
    let handle = find_one(session, token, label, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
        Error::PublicKeyNotFound {
            token: token.into(),
            label: label.into(),
        }
    })?;
    let unsupported = |found: String| Error::UnsupportedKeyType {
        token: token.into(),
        label: label.into(),
        found,
    };
    let attributes = session
        .get_attributes(handle, &[AttributeType::KeyType])
        .map_err(|source| token_error(token, "reading the key type", source))?;
    let key_type = attributes.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    let kind = match key_type {
        Some(KeyType::EC) => Kind::EcdsaP256,
        Some(KeyType::EC_EDWARDS) => Kind::Ed25519,
        Some(other) => return Err(unsupported(format!("a {other} key"))),
        None => return Err(unsupported("a key without a key type".into())),
    };
    let attributes = session
        .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|source| token_error(token, "reading the public key", source))?;
    let (mut params, mut point) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::EcParams(value) => params = Some(value),
            Attribute::EcPoint(value) => point = Some(value),
            _ => {}
        }
    }
    let (Some(params), Some(point)) = (params, point) else {
        return Err(unsupported("a key without a curve or point".into()));
    };
    let point = unwrap_octet_string(&point);
    let key = match kind {
        Kind::EcdsaP256 if params == P256_PARAMS => Key::ecdsa_p256(point)?,
        Kind::Ed25519 if params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS => {
            Key::ed25519(point)?
        }
        Kind::EcdsaP256 => return Err(unsupported("an EC key on a curve other than P-256".into())),
        Kind::Ed25519 => return Err(unsupported("an Edwards key other than Ed25519".into())),
    };
    Ok((kind, key))
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point, but some tokens store the bare point.
fn unwrap_octet_string(value: &[u8]) -> &[u8] {
    match <&OctetStringRef>::from_der(value) {
        Ok(inner) => inner.as_bytes(),
        Err(_) => value,
    }
}

/// PKCS#11 returns ECDSA signatures as `r || s`; TUF (securesystemslib, python-tuf) and Tufa's
/// verifier take the DER `SEQUENCE { r INTEGER, s INTEGER }` of RFC 3279. `None` unless `raw` is
/// 64 bytes, as for P-256.
fn der_ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    [UintRef::new(r).ok()?, UintRef::new(s).ok()?].to_der().ok()
}

fn token_error(token: &str, action: &'static str, source: CkError) -> Error {
    Error::Token {
        token: token.into(),
        action,
        source,
    }
}

fn mechanism_error(
    token: &str,
    mechanism: &'static str,
    action: &'static str,
    source: CkError,
) -> Error {
    match source {
        CkError::Pkcs11(RvError::MechanismInvalid, _) => Error::MechanismNotSupported {
            token: token.into(),
            mechanism,
        },
        source => token_error(token, action, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der_with_minimal_integers() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r has its top bit set: DER needs a leading zero to keep it positive
        raw[31] = 1;
        raw[63] = 7; // s is 7: DER drops the 31 leading zero bytes
        let der = der_ecdsa_signature(&raw).unwrap();
        let mut expected = vec![0x30, (2 + 33) + (2 + 1), 0x02, 33, 0x00];
        expected.extend_from_slice(&raw[..32]);
        expected.extend_from_slice(&[0x02, 1, 7]);
        assert_eq!(der, expected);
        assert_eq!(der_ecdsa_signature(&raw[..63]), None);
    }

    #[test]
    fn ec_points_are_taken_from_their_octet_string_or_as_they_are() {
        let point = [4u8; 65];
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&point);
        assert_eq!(unwrap_octet_string(&wrapped), point);
        assert_eq!(unwrap_octet_string(&point), point);
    }
}
