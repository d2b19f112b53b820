//! The transparency log key on the command line: `tufa ceremony` and `tufa roles prepare root`
//! declare it in root (`--log-key FILE`, generated there with `--log-origin`), `tufa serve
//! --log-key FILE` logs with it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_metadata::{Root, TransparencyLog};
use tufa_repo::LogKey;
use tufa_tlog::VerifierKey;

/// The log a new root declares.
#[derive(Args, Default)]
pub struct LogKeyArgs {
    /// The transparency log's key: its private key file (the server's `--log-key`) or the
    /// verifier key beside it (`FILE.pub`). Root declares the log, so clients learn its key
    /// from TUF and root rotation governs it.
    #[arg(long)]
    log_key: Option<std::path::PathBuf>,
    /// Generate the log key into --log-key (which must not exist yet) for a log with this
    /// origin, e.g. `pypi.example.org/log`: the first line of every checkpoint, unique to the
    /// log.
    #[arg(long, requires = "log_key")]
    log_origin: Option<String>,
}

impl LogKeyArgs {
    /// Declares the log in `root` when a key was given (generating it first with an origin),
    /// refusing a log key that is also one of root's keys.
    pub fn declare(&self, root: &mut Root) -> Result<()> {
        let Some(path) = &self.log_key else {
            return Ok(());
        };
        let declared = match &self.log_origin {
            Some(origin) => {
                let declared = LogKey::generate(path, origin)
                    .with_context(|| format!("generating the log key {}", path.display()))?;
                eprintln!(
                    "generated the log key {} (keep it with the server's online key; its \
                     verifier key is in {})",
                    path.display(),
                    tufa_repo::tlog::public_key_path(path).display()
                );
                declared
            }
            None => read_declaration(path)?,
        };
        tufa_repo::tlog::check_distinct(&declared.key, root)?;
        root.set_transparency_log(Some(&declared));
        eprintln!(
            "root declares the transparency log {} (key {})",
            declared.origin, declared.key
        );
        Ok(())
    }
}

/// The log a key file stands for: a private log key, or a verifier key.
fn read_declaration(path: &Path) -> Result<TransparencyLog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the log key {}", path.display()))?;
    if text.starts_with("PRIVATE+KEY+") {
        return Ok(LogKey::load(path)?.declaration()?);
    }
    let key = VerifierKey::parse(text.trim()).with_context(|| {
        format!(
            "{} is neither a log key nor its verifier key",
            path.display()
        )
    })?;
    match TransparencyLog::new(key) {
        Ok(declared) => Ok(declared),
        Err(error) => bail!("{}: {error}", path.display()),
    }
}
