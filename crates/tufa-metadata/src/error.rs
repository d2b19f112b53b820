use crate::types::KeyId;

/// Why a piece of TUF metadata, a key or a signature was refused.
///
/// Each variant names a cause a caller can act on or report; the client crate wraps these in the
/// attack they indicate (rollback, freeze, ...), which needs context this crate does not have.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed metadata JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error(
        "duplicate JSON object key {key:?}: parsers disagree on which value wins, so the document is refused"
    )]
    DuplicateJsonKey { key: String },

    #[error("metadata has _type {found:?} where {expected:?} was expected")]
    WrongType {
        expected: &'static str,
        found: String,
    },

    #[error("unsupported spec_version {0:?}: only TUF specification 1.x is supported")]
    UnsupportedSpecVersion(String),

    #[error("invalid version {0}: metadata versions start at 1")]
    InvalidVersion(u64),

    #[error("invalid expires {0:?}: expected UTC time as YYYY-MM-DDTHH:MM:SSZ")]
    InvalidExpires(String),

    #[error("role {role:?} has threshold 0: a threshold must be at least 1")]
    ZeroThreshold { role: String },

    #[error("role {role:?} lists key ID {keyid} more than once")]
    DuplicateRoleKey { role: String, keyid: KeyId },

    #[error("key ID {keyid} does not match its key, whose ID is {computed}")]
    KeyIdMismatch { keyid: KeyId, computed: KeyId },

    #[error("two signatures by key {keyid}: each key may sign once")]
    DuplicateSignature { keyid: KeyId },

    #[error("unsupported key type {keytype:?} with scheme {scheme:?}")]
    UnsupportedKey { keytype: String, scheme: String },

    #[error("invalid {keytype} public key: {reason}")]
    InvalidPublicKey { keytype: String, reason: String },

    #[error("signature by key {keyid} does not verify")]
    BadSignature { keyid: KeyId },

    #[error(
        "role {role:?} is signed by {valid} distinct trusted key(s) but needs {threshold}: \
         bad threshold, or metadata signed by an untrusted key"
    )]
    ThresholdNotMet {
        role: String,
        threshold: u32,
        valid: u32,
    },

    #[error("invalid role name {name:?}: {reason}")]
    InvalidRoleName { name: String, reason: &'static str },

    #[error("invalid delegations: {0}")]
    InvalidDelegations(String),

    #[error("invalid target path {path:?}: {reason}")]
    InvalidTargetPath { path: String, reason: &'static str },

    #[error("invalid hash {value:?}: expected lowercase hexadecimal")]
    InvalidHash { value: String },

    #[error("invalid x-tufa-online-lifetimes in root: {0}")]
    InvalidOnlineLifetimes(String),

    #[error("cannot serialize metadata as canonical JSON: {0}")]
    Canonical(String),

    #[error("private key: {0}")]
    PrivateKey(String),

    #[error("signing failed: {0}")]
    Signing(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
