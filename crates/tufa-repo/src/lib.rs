//! The repository side of Tufa's PEP 458 signing: the key ceremony that creates the offline roles,
//! and the [`Repository`] that a running index uses to sign every change with the online key.
//!
//! Layout (PEP 458 with TAP 15): `targets` delegates every project page
//! (`simple/<name>/index.json`) to the offline `bins` role, which delegates with `succinct_roles`
//! to `2^bit_length` online bin roles `bin-XXXX`. Snapshot and timestamp are online. Consistent
//! snapshots throughout: `N.<role>.json`, targets as `<dir>/<sha256>.<name>`.

mod bins;
mod ceremony;
pub mod dev;
mod error;
mod keyfile;
pub mod layout;
mod offline;
mod repository;
pub mod s3;
mod store;
pub mod tlog;
mod witness;

pub use ceremony::{CeremonyPlan, OfflineRoles, RoleSpec};
pub use error::{Error, Result};
pub use keyfile::{generate_key_files, key_paths, load_public_key, load_signer};
pub use layout::{Expiries, View};
pub use offline::{INCOMING_DIR, OfflineState, Requirement, RootChanges, SigningRequest};
pub use repository::{
    ClockSkew, DEFAULT_CLOCK_TOLERANCE, GARBAGE_PER_ROUND, Import, ListedPage, ONLINE_FLOOR_FILE,
    PageChange, Policy, Published, RejectedPage, Repository, Unreachable, delegates,
    record_online_floor,
};
pub use s3::{S3Client, S3Error, S3Settings, S3Store, S3Url};
pub use store::{Flush, FsStore, Store, Visit, list_in_parts, map_in_parallel};
pub use tlog::{LogKey, LogSettings, LogStatus};
pub use witness::{WitnessSettings, WitnessStatus};
