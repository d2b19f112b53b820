use std::path::PathBuf;

use tufa_metadata::KeyAlgorithm;

/// Why a key on a token could not be used or created. Each variant names what to fix; none of
/// them carries the PIN.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid PKCS#11 URI: {reason} (expected \
         pkcs11:token=<token label>;object=<key label>?module-path=<PKCS#11 module .so>)"
    )]
    InvalidUri { reason: String },

    #[error(
        "no PIN for token {token:?}: set TUFA_PKCS11_PIN (or pin-value= in the URI, which is \
         less safe)"
    )]
    NoPin { token: String },

    #[error(
        "PKCS#11 module {path} not found: install the token's PKCS#11 library or fix module-path="
    )]
    ModuleNotFound { path: PathBuf },

    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },

    #[error(
        "no token labelled {token:?} (tokens present: {present}): fix token= or plug the token in"
    )]
    TokenNotFound { token: String, present: String },

    #[error("wrong PIN for token {token:?}")]
    WrongPin { token: String },

    #[error(
        "the user PIN of token {token:?} is locked after too many wrong PINs: unlock it with \
         the security officer PIN"
    )]
    PinLocked { token: String },

    #[error(
        "no private key labelled {label:?} on token {token:?}: fix object= or create one with \
         `tufa keys generate-pkcs11`"
    )]
    KeyNotFound { token: String, label: String },

    #[error(
        "{count} {class} objects labelled {label:?} on token {token:?}: a label must name one key"
    )]
    AmbiguousKey {
        token: String,
        label: String,
        class: &'static str,
        count: usize,
    },

    #[error(
        "no public key labelled {label:?} on token {token:?}: Tufa reads the public key from \
         the token, so it must be stored next to the private key under the same label"
    )]
    PublicKeyNotFound { token: String, label: String },

    #[error(
        "key {label:?} on token {token:?} is {found}: Tufa signs with ECDSA P-256 or Ed25519 keys"
    )]
    UnsupportedKeyType {
        token: String,
        label: String,
        found: String,
    },

    #[error(
        "the public and private keys labelled {label:?} on token {token:?} are not one pair: \
         a test signature does not verify"
    )]
    KeyPairMismatch { token: String, label: String },

    #[error(
        "signing on token {token:?} failed ({first}) and a new session failed too ({again}): \
         is the token plugged in and up? Signing is retried"
    )]
    Reopen {
        token: String,
        first: String,
        again: String,
    },

    #[error(
        "the key labelled {label:?} on token {token:?} is no longer the key Tufa started with: \
         a new key is a new TUF online key; rotate to it with the online-key rotation procedure"
    )]
    KeyChanged { token: String, label: String },

    #[error("a key labelled {label:?} already exists on token {token:?}: choose another label")]
    KeyExists { token: String, label: String },

    #[error("Tufa creates ECDSA P-256 or Ed25519 keys on tokens, not {0:?}")]
    UnsupportedAlgorithm(KeyAlgorithm),

    #[error("token {token:?} does not support the mechanism {mechanism}")]
    MechanismNotSupported {
        token: String,
        mechanism: &'static str,
    },

    #[error("token {token:?}: {action}: {source}")]
    Token {
        token: String,
        action: &'static str,
        source: cryptoki::error::Error,
    },

    #[error(transparent)]
    Metadata(#[from] tufa_metadata::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
