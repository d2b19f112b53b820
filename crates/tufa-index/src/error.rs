use std::path::PathBuf;

/// Why a name, version, file name or distribution file was refused. Each message names the
/// problem the way an uploader needs to read it to fix their package.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error(
        "invalid project name {0:?}: use ASCII letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    )]
    ProjectName(String),

    #[error("invalid version {0:?}: not a PEP 440 version ({1})")]
    Version(String, String),

    #[error("invalid distribution filename {filename:?}: {reason}")]
    Filename { filename: String, reason: String },

    #[error("invalid distribution file {filename:?}: {reason}")]
    Archive { filename: String, reason: String },

    #[error("invalid core metadata in {filename:?}: {reason}")]
    Metadata { filename: String, reason: String },
}

/// Why the index could not do what was asked, for reasons other than bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(#[from] Invalid),

    #[error("no project {0:?} on this index")]
    NoProject(String),

    #[error("project {project:?} has no release {version:?}")]
    NoRelease { project: String, version: String },

    #[error("release {version} of {project:?} has no file {filename:?}")]
    NoFile {
        project: String,
        version: String,
        filename: String,
    },

    #[error(transparent)]
    Tuf(#[from] tufa_repo::Error),

    #[error("the online key: {0}")]
    Pkcs11(#[from] tufa_pkcs11::Error),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error(transparent)]
    DataMismatch(#[from] crate::integrity::Mismatch),

    #[error("a cooldown decision needs a reason (--reason TEXT): the page shows it to every user")]
    MissingReason,

    #[error("{project} {version} has no cooldown decision to remove (see `tufa cooldown list`)")]
    NoDecision { project: String, version: String },

    #[error(
        "the cooldown view cannot be signed: the TUF repository's targets role (version \
         {targets_version}) does not delegate cooldown/*/index.json to bins (it was made before \
         the cooldown view), so no client could verify the view. Fix: the targets key holders \
         re-sign targets offline to delegate the cooldown pattern: `tufa roles prepare targets \
         --data DIR --out targets.json` (it adds the pattern), `tufa sign targets.json --key \
         KEY` by each, `tufa roles submit --data DIR targets.json`; then start with --cooldown \
         again. Or start without --cooldown"
    )]
    CooldownNotDelegated { targets_version: u64 },
}

impl Error {
    /// What failed, in words that reveal nothing of the server (no paths, no SQL): what an HTTP
    /// answer may say, while the log holds the whole error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Database(_) => "database error",
            Error::Io { .. } => "storage error",
            Error::Invalid(_) => "invalid stored data",
            Error::NoProject(_) | Error::NoRelease { .. } | Error::NoFile { .. } => {
                "missing record"
            }
            Error::Tuf(_) => "TUF repository error",
            Error::Pkcs11(_) => "online key error",
            Error::Config(_) => "internal error",
            Error::DataMismatch(_) => "data directory mismatch",
            Error::MissingReason | Error::NoDecision { .. } => "invalid cooldown decision",
            Error::CooldownNotDelegated { .. } => "cooldown view not delegated",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
