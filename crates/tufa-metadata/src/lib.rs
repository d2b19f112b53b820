//! The TUF metadata core: data model, canonical JSON, keys, signatures, threshold verification and
//! hashed-bin math, for TUF specification 1.0.x with TAP 15 succinct delegations. No I/O.
//!
//! Everything here is pure: parsing, validation and signature checks take bytes and return typed
//! values or an [`Error`] naming the cause. The trust decisions that need state (what was trusted
//! before, the current time) live in the client crate, which builds on these checks.
//!
//! Interoperability: unrecognized fields are kept wherever they appear and written back in
//! canonical order, so metadata written by python-tuf or go-tuf re-serializes to the bytes that
//! were signed.

mod canonical;
mod delegation;
mod error;
mod glob;
mod key;
mod metadata;
mod signer;
mod types;

pub use canonical::{check_no_duplicate_keys, to_canonical_bytes, write_canonical};
pub use delegation::{DelegatedRole, DelegatedRoles, Delegations, PathMatcher, SuccinctRoles};
pub use error::{Error, Result};
pub use key::{
    KEYTYPE_ECDSA, KEYTYPE_ED25519, KEYTYPE_RSA, Key, KeyAlgorithm, KeyVal, SCHEME_ECDSA_P256,
    SCHEME_ED25519, SCHEME_RSA_PSS_SHA256,
};
pub use metadata::{
    MetaFile, Metadata, Role, RoleKeys, Root, Signature, Snapshot, TargetFile, Targets, Timestamp,
    TopLevelRoles, verify_threshold,
};
pub use signer::{FileSigner, Signer, generate_private_key, private_key_pem};
pub use types::{
    Expires, HexDigest, KeyId, RoleName, SpecVersion, TOP_LEVEL_ROLES, TargetPath, Threshold,
};
