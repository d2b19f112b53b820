use std::path::PathBuf;

use tufa_metadata::RoleName;

/// Why the repository could not be opened, signed or published.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{role} metadata ({file}) is invalid: {source}")]
    InvalidMetadata {
        role: String,
        file: String,
        source: tufa_metadata::Error,
    },

    #[error(
        "{role} metadata ({file}) is not trusted: {source}. The file was tampered with or signed \
         by the wrong keys; restore it from the key ceremony's output or sign it again"
    )]
    Untrusted {
        role: String,
        file: String,
        source: tufa_metadata::Error,
    },

    #[error(
        "{file} does not match what {referrer} records for it ({what}): the file was modified or replaced"
    )]
    Mismatch {
        file: String,
        referrer: String,
        what: &'static str,
    },

    #[error(
        "no {0} metadata found: run `tufa ceremony` (or start `tufa serve` on an empty directory for a development repository)"
    )]
    Missing(String),

    #[error(
        "{0} is missing, but the repository's signed metadata refers to it: restore it from a backup of the data directory (`tufa verify --data DIR` lists anything else missing); do not run `tufa ceremony`, which starts a new repository clients do not trust"
    )]
    MissingFile(String),

    #[error("the online key {keyid} is not trusted for {role}: {fix}")]
    OnlineKeyNotTrusted {
        keyid: String,
        role: RoleName,
        fix: &'static str,
    },

    #[error("bins must delegate with succinct_roles (TAP 15); {0}")]
    NotSuccinct(&'static str),

    #[error("invalid repository configuration: {0}")]
    Config(String),

    #[error(
        "the clock is {by_seconds} s behind the newest signed metadata (signed at {newest_signing}): \
         anything signed now could already be expired, so nothing is signed. Fix the clock; if \
         that metadata was signed while the clock ran ahead, start once with --trust-clock"
    )]
    ClockBehind {
        newest_signing: String,
        by_seconds: u64,
    },

    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),

    #[error("signing failed: {0}")]
    Signing(#[from] tufa_metadata::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
