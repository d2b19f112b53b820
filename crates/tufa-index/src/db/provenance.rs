//! PEP 740 provenance per file: the provenance object the Integrity API serves, exactly as its
//! sha256 is signed into the project's page, and the publisher its attestations were verified to
//! name when the file was uploaded.

use sqlx::Row;

use super::{Database, Tx};
use crate::error::Result;
use crate::name::{ProjectName, Version};

/// One row per attested file. `provenance` is the served JSON text, byte for byte: the page's
/// `_provenance_sha256` (see `crate::pages`) is the sha256 of these bytes, so they are stored,
/// never re-serialized. `publisher` is the verified publisher, as JSON, for `tufa provenance`.
pub(super) const PROVENANCE: &str = "
CREATE TABLE file_provenance (
    file_id INTEGER PRIMARY KEY REFERENCES files(id),
    provenance TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    publisher TEXT NOT NULL
);
";

pub(super) const POSTGRES_PROVENANCE: &str = r#"
CREATE TABLE file_provenance (
    file_id BIGINT PRIMARY KEY REFERENCES files(id),
    provenance TEXT COLLATE "C" NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    publisher TEXT COLLATE "C" NOT NULL
);
"#;

/// A verified provenance object, ready to be recorded with its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProvenance {
    /// The provenance object as served (`application/vnd.pypi.integrity.v1+json`).
    pub json: String,
    /// Lowercase hex sha256 of `json`.
    pub sha256: String,
    /// The verified publisher, as JSON.
    pub publisher: String,
}

/// One attested file, as `tufa provenance` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProvenance {
    pub filename: String,
    pub version: String,
    /// The verified publisher, as JSON; `None` for a file uploaded without attestations.
    pub publisher: Option<String>,
}

/// Records `provenance` for the file row `file_id`, in the upload's transaction.
pub(super) async fn insert(tx: &mut Tx, file_id: i64, provenance: &NewProvenance) -> Result<()> {
    sqlx::query(
        "INSERT INTO file_provenance (file_id, provenance, sha256, publisher)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(file_id)
    .bind(&provenance.json)
    .bind(&provenance.sha256)
    .bind(&provenance.publisher)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Database {
    /// The provenance object of `filename` in release `version` of `project`: `None` when no such
    /// file exists, `Some(None)` when it has no provenance.
    pub async fn provenance(
        &self,
        project: &ProjectName,
        version: &Version,
        filename: &str,
    ) -> Result<Option<Option<String>>> {
        let row = sqlx::query(
            "SELECT file_provenance.provenance
             FROM files JOIN releases ON releases.id = files.release_id
             JOIN projects ON projects.id = releases.project_id
             LEFT JOIN file_provenance ON file_provenance.file_id = files.id
             WHERE projects.name = $1 AND releases.version = $2 AND files.filename = $3",
        )
        .bind(project.as_str())
        .bind(version.as_str())
        .bind(filename)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.get::<Option<String>, _>(0)))
    }

    /// Every file of `project` with its verified publisher, by file name.
    pub async fn project_provenance(&self, project: &ProjectName) -> Result<Vec<FileProvenance>> {
        let rows = sqlx::query(
            "SELECT files.filename, releases.version, file_provenance.publisher
             FROM files JOIN releases ON releases.id = files.release_id
             JOIN projects ON projects.id = releases.project_id
             LEFT JOIN file_provenance ON file_provenance.file_id = files.id
             WHERE projects.name = $1 ORDER BY files.filename",
        )
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| FileProvenance {
                filename: row.get(0),
                version: row.get(1),
                publisher: row.get(2),
            })
            .collect())
    }
}
