//! What the index keeps rendered and compressed, reused while the version it names is current.
//!
//! Rendering a page of 2,000 files costs milliseconds of database reads and formatting, and pip
//! and uv ask for the same few pages over and over. Every change to a project moves its serial
//! (uploads and yanks both write the journal), so a page cached under a serial is never stale;
//! TUF files are named by version or hash, except `timestamp.json`, cached by its digest.

use tufa_repo::View;

use crate::name::ProjectName;

/// At most this many bytes of bodies, plain and compressed, are kept; past it the least recently
/// used go first. A quarter of the 256 MiB issue 14 allows a replica of 700,000 projects, whose
/// random pages would otherwise fill it: pip and uv ask for the same few pages over and over,
/// and a page rendered again costs a few queries.
pub const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// At most this many projects' newest page serials are remembered for serving while the
/// database is unreachable (a few megabytes).
pub const NEWEST_PAGES: usize = 100_000;

/// One version of one body the index serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A project's simple page in a view (PEP 691 JSON, or HTML) at the project's serial.
    Page {
        view: View,
        project: ProjectName,
        json: bool,
        serial: i64,
    },
    /// The list of projects, linking into a view, at the index's serial.
    ProjectList { view: View, json: bool, serial: i64 },
    /// Warehouse's JSON API for a project (its latest release, or the one named), with URLs
    /// under `base`, at the project's serial.
    Api {
        project: ProjectName,
        version: Option<String>,
        base: String,
        serial: i64,
    },
    /// A TUF file named by version or hash (all but `timestamp.json`), which never changes once
    /// published; its size and modification time as well, so that whatever replaced the file on
    /// disk is what is served.
    TufFile {
        path: String,
        length: u64,
        modified: Option<std::time::SystemTime>,
    },
    /// A TUF file that changes in place, by the SHA-256 of its content.
    TufContent(String),
}
