use std::path::PathBuf;

use tufa_metadata::Expires;

/// Why an update or a download was refused. Variants name the attack or fault the client
/// detected, so that a report says what happened rather than that something was "invalid".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rollback attack: {role} version {received} < trusted {trusted}")]
    RollbackAttack {
        role: String,
        trusted: u64,
        received: u64,
    },

    #[error(
        "rollback attack: the new snapshot no longer lists {file}, which the trusted snapshot lists"
    )]
    RemovedFromSnapshot { file: String },

    #[error("root version {received} served as version {expected}: roots must be fetched in order")]
    UnexpectedRootVersion { expected: u64, received: u64 },

    #[error("freeze attack: {role} expired at {expires}")]
    Expired { role: String, expires: Expires },

    /// Online metadata that outlives what root allows: only the online key can sign it, and a
    /// thief holding that key picks a far expiry to freeze clients on a view of their choosing.
    #[error(
        "stolen online key attack: {role} expires at {expires}, further ahead than the \
         {lifetime_seconds} seconds root allows it (x-tufa-online-lifetimes)"
    )]
    BeyondOnlineLifetime {
        role: String,
        expires: Expires,
        lifetime_seconds: u64,
    },

    #[error(
        "mix-and-match attack: {role} version {received}, but {referrer} lists version {expected}"
    )]
    MixAndMatch {
        role: String,
        referrer: String,
        expected: u64,
        received: u64,
    },

    /// Too few valid signatures by the keys the delegating role trusts: forged metadata (an
    /// arbitrary software attack), or keys compromised below the threshold.
    #[error("{role} is not signed by a threshold of trusted keys: {source}")]
    Signatures {
        role: String,
        source: tufa_metadata::Error,
    },

    #[error("{what} is {received} bytes, but {referrer} lists {expected}")]
    LengthMismatch {
        what: String,
        referrer: String,
        expected: u64,
        received: u64,
    },

    #[error("{what} does not match its {algorithm} hash in {referrer}: tampered or substituted")]
    HashMismatch {
        what: String,
        referrer: String,
        algorithm: String,
    },

    #[error("{what} cannot be verified: {reason}")]
    Unverifiable { what: String, reason: String },

    #[error("endless data attack: {url} sent more than {limit} bytes")]
    EndlessData { url: String, limit: u64 },

    #[error("invalid {role} metadata: {source}")]
    InvalidMetadata {
        role: String,
        source: tufa_metadata::Error,
    },

    #[error("invalid snapshot proof for {role}: {source}")]
    InvalidSnapshotProof {
        role: String,
        source: tufa_metadata::SnapshotProofError,
    },

    /// TAP 16: a proof that does not lead to the trusted timestamp's `merkle_root` belongs to
    /// another snapshot (or was forged).
    #[error(
        "mix-and-match attack: the snapshot proof of {role} leads to Merkle root {received}, \
         not the trusted timestamp's {expected}"
    )]
    SnapshotProofOtherRoot {
        role: String,
        expected: String,
        received: String,
    },

    #[error("mix-and-match attack: the snapshot proof served for {role} proves {proven}")]
    SnapshotProofForOtherRole { role: String, proven: String },

    /// TAP 16: the role that came with a proven entry is another version than the entry says.
    #[error(
        "mix-and-match attack: {role} version {received} came with a snapshot proof of version \
         {proven}"
    )]
    SnapshotProofMismatch {
        role: String,
        proven: u64,
        received: u64,
    },

    #[error("the trusted snapshot does not list {role}")]
    NotInSnapshot { role: String },

    #[error(
        "{role} keys were rotated in root: the previously trusted {role} is discarded \
         (fast-forward attack recovery)"
    )]
    RotatedKeys { role: String },

    #[error("{role} is not trusted yet: {reason}")]
    NotLoaded { role: String, reason: &'static str },

    #[error("target {path:?} not found in trusted metadata")]
    TargetNotFound { path: String },

    #[error("searching for {path:?} visited {max} roles, the limit, without an answer")]
    TooManyDelegations { path: String, max: usize },

    #[error("fetching {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },

    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },

    #[error("no trusted root in {0}: initialize the client with a root file first")]
    NoTrustedRoot(PathBuf),

    /// The root declares a transparency log and the timestamp is not proven to be in it.
    #[error(transparent)]
    Transparency(#[from] crate::transparency::TransparencyError),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
