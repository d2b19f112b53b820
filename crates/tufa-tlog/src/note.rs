//! C2SP signed notes, verifier keys, Ed25519 note signatures (type 0x01) and timestamped
//! Ed25519 cosignatures (tlog-cosignature v1, type 0x04).
//!
//! From c2sp.org/signed-note: "A signed note consists of a text ending in newline (U+000A),
//! followed by a blank line (only a newline), followed by one or more signature lines of this
//! form: em dash (U+2014), space (U+0020), key name, space, base64-encoded signature, newline."
//! Notes "MUST be valid UTF-8 and MUST NOT contain any ASCII control characters (those below
//! U+0020) other than newline"; "the text is separated from the signatures by the last empty line
//! in the note". A signature is "the base64 encoding of 4+n bytes", the first four the big-endian
//! key ID, `SHA-256(key name || 0x0A || signature type || public key)[:4]`. "Verifiers MUST
//! ignore signatures from unknown keys", "If a signature from a known key fails to verify,
//! clients SHOULD reject the whole note" (this crate does), and "Verifiers SHOULD apply a maximum
//! limit to the number of signatures in a note ... but MUST accept at least up to 16".
//!
//! From c2sp.org/tlog-cosignature: the Ed25519 cosignature key ID uses type byte 0x04; the
//! signature is `u64 timestamp (big-endian) || ed25519_signature[64]` over `cosignature/v1\n`,
//! `time <timestamp>\n` and the whole checkpoint text; the timestamp "MUST NOT exceed 2^63 - 1".
//!
//! Verifier keys use the `golang.org/x/mod/sumdb/note` encoding: `<name>+<key ID as 8 hex
//! digits>+<base64(type byte || public key)>`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use thiserror::Error;

/// A note larger than this is refused before parsing.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// At most this many signature lines (the specification's floor is 16).
pub const MAX_SIGNATURES: usize = 64;
/// At most this many lines of note text.
pub const MAX_TEXT_LINES: usize = 64;

const EM_DASH_SPACE: &str = "\u{2014} ";

/// Why a note, a key or a signature was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("the note is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("the note is not valid UTF-8")]
    NotUtf8,
    #[error("the note contains a control character other than newline")]
    ControlCharacter,
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    #[error("the note has {count} lines of text, more than the {max} accepted")]
    TooManyLines { count: usize, max: usize },
    #[error("the note has {count} signatures, more than the {max} accepted")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature line {line:?} is malformed: {reason}")]
    BadSignatureLine { line: String, reason: &'static str },
    #[error("key {key:?} is malformed: {reason}")]
    BadKey { key: String, reason: String },
    #[error(
        "the signature by {name} (a trusted key) does not verify: the note was altered or forged"
    )]
    InvalidSignature { name: String },
    #[error(
        "none of the note's signatures is by a trusted key ({trusted}): unsigned, or signed by a key nobody trusts"
    )]
    NoTrustedSignature { trusted: String },
    #[error("the cosignature by {name} has timestamp {timestamp}, above 2^63 - 1")]
    BadTimestamp { name: String, timestamp: u64 },
    #[error("not a checkpoint: {0}")]
    BadCheckpoint(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The signature types this crate verifies (c2sp.org/signed-note "Signature types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// 0x01: Ed25519 over the note text (log checkpoint signatures).
    Ed25519,
    /// 0x04: timestamped Ed25519 witness cosignatures (tlog-cosignature v1).
    Cosignature,
}

impl KeyType {
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::Cosignature => 0x04,
        }
    }

    fn from_byte(byte: u8) -> Option<KeyType> {
        match byte {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::Cosignature),
            _ => None,
        }
    }
}

/// `SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian integer.
pub fn key_id(name: &str, kind: KeyType, public_key: &[u8; 32]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[kind.byte()]);
    ctx.update(public_key);
    let digest = ctx.finish();
    let d = digest.as_ref();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B)".
fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

/// A public key trusted to sign notes: a log key (type 0x01) or a witness key (type 0x04).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    kind: KeyType,
    public_key: [u8; 32],
    key_id: u32,
}

impl VerifierKey {
    pub fn new(name: &str, kind: KeyType, public_key: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKey {
                key: name.into(),
                reason: "a key name is non-empty, without spaces or '+'".into(),
            });
        }
        Ok(VerifierKey {
            name: name.into(),
            kind,
            public_key,
            key_id: key_id(name, kind, &public_key),
        })
    }

    /// Parses `<name>+<hex key ID>+<base64(type || key)>`, checking the key ID against the key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::BadKey {
            key: text.chars().take(200).collect(),
            reason: reason.into(),
        };
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not <name>+<key ID>+<key>"));
        };
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("the key ID is not 8 lowercase hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("the key ID is not hex"))?;
        let raw = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [kind, public_key @ ..] = raw.as_slice() else {
            return Err(bad("the key is empty"));
        };
        let kind = KeyType::from_byte(*kind)
            .ok_or_else(|| bad("the key type is neither Ed25519 (1) nor cosignature (4)"))?;
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| bad("an Ed25519 public key is 32 bytes"))?;
        let key = VerifierKey::new(name, kind, public_key)?;
        if key.key_id != id {
            return Err(bad("the key ID does not match the key"));
        }
        Ok(key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> KeyType {
        self.kind
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether this key made `signature` over `text` (for a cosignature key, the signature
    /// includes its timestamp, which is returned).
    fn verify(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, NoteError> {
        let invalid = || NoteError::InvalidSignature {
            name: self.name.clone(),
        };
        let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        match self.kind {
            KeyType::Ed25519 => {
                key.verify(text.as_bytes(), signature)
                    .map_err(|_| invalid())?;
                Ok(None)
            }
            KeyType::Cosignature => {
                let (Some(time), Some(sig)) = (signature.get(..8), signature.get(8..)) else {
                    return Err(invalid());
                };
                let timestamp = u64::from_be_bytes(time.try_into().expect("8 bytes"));
                if timestamp > i64::MAX as u64 {
                    return Err(NoteError::BadTimestamp {
                        name: self.name.clone(),
                        timestamp,
                    });
                }
                key.verify(&cosigned_message(text, timestamp), sig)
                    .map_err(|_| invalid())?;
                Ok(Some(timestamp))
            }
        }
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![self.kind.byte()];
        raw.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(raw)
        )
    }
}

/// `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint text.
fn cosigned_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// `— <name> <base64(key ID || signature)>\n`.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{EM_DASH_SPACE}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Parses one signature line (without its newline).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let bad = |reason| NoteError::BadSignatureLine {
            line: line.chars().take(100).collect(),
            reason,
        };
        let rest = line
            .strip_prefix(EM_DASH_SPACE)
            .ok_or_else(|| bad("it does not start with an em dash and a space"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("no space between name and signature"))?;
        if !valid_key_name(name) {
            return Err(bad("the key name is empty or has spaces or '+'"));
        }
        let raw = STANDARD
            .decode(sig)
            .map_err(|_| bad("the signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("the signature is shorter than a key ID and one byte"));
        }
        Ok(NoteSignature {
            name: name.into(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }

    /// The timestamp of a cosignature (its first 8 signature bytes), unverified.
    pub fn cosignature_timestamp(&self) -> Option<u64> {
        Some(u64::from_be_bytes(
            self.signature.get(..8)?.try_into().ok()?,
        ))
    }
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note, bounded by [`MAX_NOTE_BYTES`], [`MAX_TEXT_LINES`] and
    /// [`MAX_SIGNATURES`].
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        let all = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        if all.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        let split = all
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &all[..split + 1];
        let signatures = &all[split + 2..];
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "the signatures do not end in a newline",
            ));
        };
        if signatures.is_empty() {
            return Err(NoteError::Malformed("the note has no signature"));
        }
        let lines = text.matches('\n').count();
        if lines > MAX_TEXT_LINES {
            return Err(NoteError::TooManyLines {
                count: lines,
                max: MAX_TEXT_LINES,
            });
        }
        let count = signatures.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count,
                max: MAX_SIGNATURES,
            });
        }
        let signatures = signatures
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.into(),
            signatures,
        })
    }

    /// The note as served: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.line());
        }
        out.into_bytes()
    }

    /// Checks every signature by a key in `trusted` (matched by name and key ID; others are
    /// ignored) and returns the keys that signed, each once, with the cosignature timestamp.
    /// Any signature by a trusted key that fails refuses the note; so does a note that no
    /// trusted key signed.
    pub fn verify<'k>(
        &self,
        trusted: &'k [VerifierKey],
    ) -> Result<Vec<(&'k VerifierKey, Option<u64>)>, NoteError> {
        let mut verified: Vec<(&VerifierKey, Option<u64>)> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = trusted
                .iter()
                .find(|k| k.name == sig.name && k.key_id == sig.key_id)
            else {
                continue;
            };
            let timestamp = key.verify(&self.text, &sig.signature)?;
            if !verified.iter().any(|(k, _)| *k == key) {
                verified.push((key, timestamp));
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoTrustedSignature {
                trusted: trusted
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(verified)
    }
}

/// An Ed25519 signing key, kept behind a trait so a key in an HSM can sign too.
pub trait Ed25519Signer {
    fn public_key(&self) -> [u8; 32];
    /// The 64-byte Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// An Ed25519 key held in memory (by `ring`).
pub struct Ed25519Key(Ed25519KeyPair);

impl Ed25519Key {
    /// The key of a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, NoteError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Ed25519Key)
            .map_err(|e| NoteError::Signing(e.to_string()))
    }

    /// The key of a PKCS#8 v2 document (as `ring` generates).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, NoteError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(Ed25519Key)
            .map_err(|e| NoteError::Signing(e.to_string()))
    }

    /// A new random key, with its PKCS#8 document to store.
    pub fn generate() -> Result<(Self, Vec<u8>), NoteError> {
        let rng = ring::rand::SystemRandom::new();
        let der =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| NoteError::Signing(e.to_string()))?;
        Ok((Ed25519Key::from_pkcs8(der.as_ref())?, der.as_ref().to_vec()))
    }

    /// Parses a `golang.org/x/mod/sumdb/note` signer key,
    /// `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`, returning the name and key.
    pub fn parse_signer_key(text: &str) -> Result<(String, Self), NoteError> {
        let bad = |reason: &str| NoteError::BadKey {
            key: "PRIVATE+KEY+...".into(),
            reason: reason.into(),
        };
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("no PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not PRIVATE+KEY+<name>+<key ID>+<key>"));
        };
        let raw = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [0x01, seed @ ..] = raw.as_slice() else {
            return Err(bad("not an Ed25519 (type 1) key"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("an Ed25519 seed is 32 bytes"))?;
        let signer = Ed25519Key::from_seed(&seed)?;
        let verifier = VerifierKey::new(name, KeyType::Ed25519, signer.public_key())?;
        if format!("{:08x}", verifier.key_id) != id {
            return Err(bad("the key ID does not match the key"));
        }
        Ok((name.into(), signer))
    }
}

impl Ed25519Signer for Ed25519Key {
    fn public_key(&self) -> [u8; 32] {
        self.0
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes")
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.0.sign(message).as_ref().to_vec())
    }
}

/// A named signing key: a log's checkpoint key (type 0x01) or a witness's cosigning key (type
/// 0x04).
pub struct NoteSigner<S> {
    verifier: VerifierKey,
    key: S,
}

impl<S: Ed25519Signer> NoteSigner<S> {
    pub fn new(name: &str, kind: KeyType, key: S) -> Result<Self, NoteError> {
        Ok(NoteSigner {
            verifier: VerifierKey::new(name, kind, key.public_key())?,
            key,
        })
    }

    /// The verifier key clients configure for this signer.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs `text` (which must be note text: ending in a newline). A cosigning key signs with
    /// `timestamp` (POSIX seconds); a log key ignores it.
    pub fn sign(&self, text: &str, timestamp: u64) -> Result<NoteSignature, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text ends in a newline"));
        }
        let signature = match self.verifier.kind {
            KeyType::Ed25519 => self.key.sign(text.as_bytes()).map_err(NoteError::Signing)?,
            KeyType::Cosignature => {
                if timestamp > i64::MAX as u64 {
                    return Err(NoteError::BadTimestamp {
                        name: self.verifier.name.clone(),
                        timestamp,
                    });
                }
                let mut out = timestamp.to_be_bytes().to_vec();
                out.extend(
                    self.key
                        .sign(&cosigned_message(text, timestamp))
                        .map_err(NoteError::Signing)?,
                );
                out
            }
        };
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id,
            signature,
        })
    }
}
