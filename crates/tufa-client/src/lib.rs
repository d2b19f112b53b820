//! The verifying TUF client: the client workflow of TUF specification 1.0.34 section 5, with
//! TAP 15 succinct hashed bins, as PEP 458 uses them.
//!
//! - [`trusted`]: the trusted metadata set, a pure state machine holding every trust decision
//!   (signatures, thresholds, rollback, freeze, mix-and-match, lengths and hashes). No I/O, and
//!   the time is passed in.
//! - [`Updater`]: the I/O around it. It reads and writes the local cache (`<role>.json`, exactly
//!   the bytes verified), fetches through a [`Fetcher`] with a byte limit on every download, and
//!   searches delegations lazily: of PEP 458's 16,384 bins it fetches only the one a target hashes
//!   to.
//! - [`HttpFetcher`]: blocking HTTP(S) with rustls, timeouts and byte limits.
//!
//! ```no_run
//! # fn main() -> Result<(), tufa_client::Error> {
//! use tufa_client::{HttpFetcher, Updater, UpdaterConfig};
//! let updater = Updater::new(
//!     "cache/metadata",
//!     "https://index.example/tuf/metadata/",
//!     HttpFetcher::default(),
//!     UpdaterConfig::default(),
//! );
//! let mut refreshed = updater.refresh(std::time::SystemTime::now())?;
//! let info = refreshed.target_info("simple/requests/index.json")?;
//! let page = refreshed.download_target(
//!     &info,
//!     "https://index.example/tuf/targets/",
//!     std::path::Path::new("cache/targets"),
//! )?;
//! # let _ = page;
//! # Ok(())
//! # }
//! ```
//!
//! # Performance
//!
//! Not measured yet.

mod cache;
mod error;
mod fetcher;
mod names;
pub mod trusted;
mod updater;
mod verify;

pub use error::{Error, Result};
pub use fetcher::{FetchError, Fetcher, HttpFetcher};
pub use names::{encode_component, target_file_name};
pub use updater::{Artifact, Refreshed, TargetInfo, Updater, UpdaterConfig};
