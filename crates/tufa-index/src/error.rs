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
    Database(sqlx::Error),

    /// The database cannot be reached, or went away mid-request: the request may succeed once
    /// it is back (the pool reconnects by itself), so HTTP answers 503.
    #[error("database unavailable ({}): {source}", unavailable_reason(source))]
    DatabaseUnavailable { source: sqlx::Error },

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

    #[error("the online key in Vault: {0}")]
    Vault(#[from] tufa_vault::Error),

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
    /// Why, when this is a bucket that is unreachable or failing (a 503 and a later retry, not
    /// an internal error): what the bucket answered, without the endpoint.
    pub fn storage_unavailable(&self) -> Option<String> {
        match self {
            Error::Tuf(tufa_repo::Error::S3(error)) if error.unavailable() => {
                Some(format!("{} {}: {}", error.action, error.key, error.detail))
            }
            _ => None,
        }
    }

    /// What failed, in words that reveal nothing of the server (no paths, no SQL): what an HTTP
    /// answer may say, while the log holds the whole error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Database(_) => "database error",
            Error::DatabaseUnavailable { .. } => "database unavailable",
            Error::Io { .. } => "storage error",
            Error::Invalid(_) => "invalid stored data",
            Error::NoProject(_) | Error::NoRelease { .. } | Error::NoFile { .. } => {
                "missing record"
            }
            Error::Tuf(_) => "TUF repository error",
            Error::Pkcs11(_) | Error::Vault(_) => "online key error",
            Error::Config(_) => "internal error",
            Error::DataMismatch(_) => "data directory mismatch",
            Error::MissingReason | Error::NoDecision { .. } => "invalid cooldown decision",
            Error::CooldownNotDelegated { .. } => "cooldown view not delegated",
        }
    }
}

impl Error {
    /// Why the database is unavailable, in words an HTTP answer may carry (nothing of the
    /// server's address or credentials); `None` for any other error.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Error::DatabaseUnavailable { source } => Some(unavailable_reason(source)),
            _ => None,
        }
    }
}

/// Whether `error` says the database is out of reach (rather than that a statement failed), and
/// in which words.
fn unavailable(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => Some("no connection to the database within the timeout"),
        sqlx::Error::PoolClosed => Some("the database connection pool is closed"),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Some("the connection to the database failed"),
        sqlx::Error::WorkerCrashed => Some("the database connection's worker stopped"),
        sqlx::Error::Database(error) => {
            let code = error.code()?;
            // PostgreSQL's SQLSTATEs: class 08 is "connection exception"; 57P01-57P03 are an
            // administrator's or a crash's shutdown and a server starting or stopping; 53300 is
            // "too many connections".
            if code.starts_with("08") {
                Some("the connection to the database failed")
            } else if matches!(&*code, "57P01" | "57P02" | "57P03") {
                Some("the database server is shutting down or starting")
            } else if code == "53300" {
                Some("the database server has too many connections")
            } else {
                None
            }
        }
        _ => None,
    }
}

fn unavailable_reason(error: &sqlx::Error) -> &'static str {
    unavailable(error).unwrap_or("unreachable")
}

impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Self {
        if unavailable(&source).is_some() {
            Error::DatabaseUnavailable { source }
        } else {
            Error::Database(source)
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
