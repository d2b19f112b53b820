//! Mirrored projects: a project row with a non-NULL `upstream` (the upstream page it tracks),
//! owned by the system user [`MIRROR_USER`], its files rows with their `upstream_url`, the state
//! of the last fetch (validators for conditional requests, upstream serial, PEP 792 status,
//! the last error), and the hash changes upstream made to file names already pinned.
//!
//! Every mirrored page is recorded by [`Database::record_mirror`], which writes one journal row
//! (action `mirror`) exactly when what the page shows changed, in the transaction that changes
//! it, like an upload.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{Database, journal, now_micros, stored_name};
use crate::error::Result;
use crate::name::ProjectName;
use crate::upstream::UpstreamPage;

/// The schema step that adds mirroring. Independent of any other step after TOKEN_LIFETIMES.
pub(super) const MIRROR: &str = "
ALTER TABLE projects ADD COLUMN upstream TEXT;
ALTER TABLE files ADD COLUMN upstream_url TEXT;
CREATE TABLE mirror_state (
    project_id INTEGER PRIMARY KEY REFERENCES projects(id),
    etag TEXT,
    last_modified TEXT,
    upstream_serial INTEGER,
    fetched INTEGER NOT NULL,
    status TEXT,
    status_reason TEXT,
    error TEXT,
    error_since INTEGER
);
CREATE TABLE mirror_conflicts (
    filename TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    pinned_sha256 TEXT NOT NULL,
    upstream_sha256 TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
INSERT OR IGNORE INTO users (name, created) VALUES (':mirror', 0);
";

/// The owner of every mirrored project. User names with `:` are refused everywhere a user is
/// named (tokens, imports), so nobody can log in as it or take its projects.
pub const MIRROR_USER: &str = ":mirror";

/// The yank reason of a file upstream stopped listing: it stays on the page (a lockfile that
/// pins it keeps working, and PEP 592 lets installers take a yanked file pinned with `==`),
/// and un-yanks itself if upstream lists it again.
pub const REMOVED_UPSTREAM: &str = "removed from upstream";

/// What a mirrored project's page says of its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorInfo {
    /// The upstream page (PEP 708 `tracks`).
    pub tracks: String,
    /// PEP 792 status as upstream gives it.
    pub status: Option<String>,
    pub status_reason: Option<String>,
}

/// The state of a mirrored project's last fetch.
#[derive(Clone, Debug, Default)]
pub struct MirrorState {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub upstream_serial: Option<i64>,
    /// When upstream last answered (a page or "not modified"), microseconds since the epoch.
    pub fetched: i64,
    pub error: Option<String>,
}

/// A file name upstream now lists with another sha256 than the one pinned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PinConflict {
    pub filename: String,
    pub project: String,
    pub pinned_sha256: String,
    pub upstream_sha256: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// A mirrored project whose last refresh failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MirrorError {
    pub project: String,
    pub error: String,
    /// Microseconds since the epoch of the first failure in a row.
    pub since: i64,
}

/// What recording a page did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The page changed: journaled at this serial.
    Changed { serial: i64 },
    /// Nothing the page shows changed (the fetch state was updated).
    Unchanged,
    /// The name has local uploads (since the fetch began): never mirrored.
    Local,
}

#[derive(Debug)]
pub struct RecordOutcome {
    pub recorded: Recorded,
    /// Files whose upstream sha256 differs from the pinned one, refused.
    pub conflicts: Vec<PinConflict>,
    /// Files left out, with the reason (a file name another project holds).
    pub skipped: Vec<String>,
}

/// What `tufa mirror adopt` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Adopted {
    Adopted { serial: i64, files: i64 },
    NotMirrored,
    NoProject,
}

struct Existing {
    id: i64,
    sha256: String,
    yanked: Option<String>,
    requires_python: Option<String>,
    metadata_sha256: Option<String>,
    upstream_url: Option<String>,
}

impl Database {
    /// The fetch state of `name` when it is a mirrored project.
    pub async fn mirror_state(&self, name: &ProjectName) -> Result<Option<MirrorState>> {
        let row = sqlx::query(
            "SELECT mirror_state.etag, mirror_state.last_modified, mirror_state.upstream_serial,
                 mirror_state.fetched, mirror_state.error
             FROM projects JOIN mirror_state ON mirror_state.project_id = projects.id
             WHERE projects.name = $1 AND projects.upstream IS NOT NULL",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| MirrorState {
            etag: row.get(0),
            last_modified: row.get(1),
            upstream_serial: row.get(2),
            fetched: row.get(3),
            error: row.get(4),
        }))
    }

    /// Records `page` as the mirrored project `page.name`: one transaction, one journal row
    /// when the page changed. A file name keeps the sha256 it was first recorded with; a file
    /// upstream stops listing stays, yanked as [`REMOVED_UPSTREAM`].
    pub async fn record_mirror(
        &self,
        page: &UpstreamPage,
        provenance: &std::collections::HashMap<String, super::NewProvenance>,
    ) -> Result<RecordOutcome> {
        let now = now_micros();
        let name = page.name.as_str();
        let mut tx = self.begin_write().await?;
        let project: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, upstream FROM projects WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let mut changed = false;
        let project_id = match project {
            Some((_, None)) => {
                return Ok(RecordOutcome {
                    recorded: Recorded::Local,
                    conflicts: Vec::new(),
                    skipped: Vec::new(),
                });
            }
            Some((id, Some(upstream))) => {
                if upstream != page.url {
                    sqlx::query("UPDATE projects SET upstream = $1 WHERE id = $2")
                        .bind(&page.url)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    changed = true;
                }
                id
            }
            None => {
                changed = true;
                sqlx::query_scalar(
                    "INSERT INTO projects (name, display_name, owner_id, last_serial, upstream)
                     VALUES ($1, $2, (SELECT id FROM users WHERE name = $3), 0, $4) RETURNING id",
                )
                .bind(name)
                .bind(&page.display_name)
                .bind(MIRROR_USER)
                .bind(&page.url)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let mut existing: HashMap<String, Existing> = sqlx::query(
            "SELECT files.id, files.filename, files.sha256, files.yanked, files.yanked_reason,
                 files.requires_python, files.metadata_sha256, files.upstream_url
             FROM files JOIN releases ON releases.id = files.release_id
             WHERE releases.project_id = $1",
        )
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            let yanked = row.get::<i64, _>(3) != 0;
            (
                row.get::<String, _>(1),
                Existing {
                    id: row.get(0),
                    sha256: row.get(2),
                    yanked: yanked.then(|| row.get::<Option<String>, _>(4).unwrap_or_default()),
                    requires_python: row.get(5),
                    metadata_sha256: row.get(6),
                    upstream_url: row.get(7),
                },
            )
        })
        .collect();
        let mut releases: HashMap<String, i64> =
            sqlx::query_as("SELECT version, id FROM releases WHERE project_id = $1")
                .bind(project_id)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let mut conflicts = Vec::new();
        let mut skipped = Vec::new();
        let mut listed = HashSet::new();
        for file in &page.files {
            listed.insert(file.filename.as_str());
            if let Some(old) = existing.get(&file.filename) {
                if old.sha256 != file.sha256 {
                    conflicts.push(
                        record_conflict(
                            &mut tx,
                            name,
                            &file.filename,
                            &old.sha256,
                            &file.sha256,
                            now,
                        )
                        .await?,
                    );
                    continue;
                }
                // The pinned metadata hash stays once known; one upstream adds later is taken.
                let metadata = old.metadata_sha256.clone().or(file.metadata_sha256.clone());
                if old.yanked != file.yanked
                    || old.requires_python != file.requires_python
                    || old.metadata_sha256 != metadata
                {
                    changed = true;
                }
                if old.yanked != file.yanked
                    || old.requires_python != file.requires_python
                    || old.metadata_sha256 != metadata
                    || old.upstream_url.as_deref() != Some(file.url.as_str())
                {
                    sqlx::query(
                        "UPDATE files SET yanked = $1, yanked_reason = $2, requires_python = $3,
                             metadata_sha256 = $4, upstream_url = $5
                         WHERE id = $6",
                    )
                    .bind(i64::from(file.yanked.is_some()))
                    .bind(&file.yanked)
                    .bind(&file.requires_python)
                    .bind(&metadata)
                    .bind(&file.url)
                    .bind(old.id)
                    .execute(&mut *tx)
                    .await?;
                }
                continue;
            }
            let elsewhere: Option<String> =
                sqlx::query_scalar("SELECT sha256 FROM files WHERE filename = $1")
                    .bind(&file.filename)
                    .fetch_optional(&mut *tx)
                    .await?;
            if elsewhere.is_some() {
                skipped.push(format!(
                    "{}: another project of this index has a file of that name",
                    file.filename
                ));
                continue;
            }
            let upload_time = file.upload_time_micros.unwrap_or(now);
            let release_id = match releases.get(file.version.as_str()) {
                Some(id) => *id,
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO releases (project_id, version, metadata, created)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .bind(project_id)
                    .bind(file.version.as_str())
                    .bind(Vec::<u8>::new())
                    .bind(upload_time)
                    .fetch_one(&mut *tx)
                    .await?;
                    releases.insert(file.version.as_str().to_string(), id);
                    id
                }
            };
            let file_id: i64 = sqlx::query_scalar(
                "INSERT INTO files (release_id, filename, packagetype, python_version, size,
                     sha256, md5, blake2_256, requires_python, metadata_sha256, upload_time,
                     yanked, yanked_reason, upstream_url)
                 VALUES ($1, $2, $3, $4, $5, $6, '', '', $7, $8, $9, $10, $11, $12)
                 RETURNING id",
            )
            .bind(release_id)
            .bind(&file.filename)
            .bind(file.packagetype)
            .bind(&file.python_version)
            .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
            .bind(&file.sha256)
            .bind(&file.requires_python)
            .bind(&file.metadata_sha256)
            .bind(upload_time)
            .bind(i64::from(file.yanked.is_some()))
            .bind(&file.yanked)
            .bind(&file.url)
            .fetch_one(&mut *tx)
            .await?;
            // Pinned with the file, at first sight: never replaced, like the file's hash.
            if let Some(provenance) = provenance.get(&file.filename) {
                super::provenance::insert(&mut tx, file_id, provenance).await?;
            }
            changed = true;
        }
        existing.retain(|filename, _| !listed.contains(filename.as_str()));
        for old in existing.values() {
            if old.yanked.as_deref() != Some(REMOVED_UPSTREAM) {
                sqlx::query("UPDATE files SET yanked = 1, yanked_reason = $1 WHERE id = $2")
                    .bind(REMOVED_UPSTREAM)
                    .bind(old.id)
                    .execute(&mut *tx)
                    .await?;
                changed = true;
            }
        }
        let status: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT status, status_reason FROM mirror_state WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(&mut *tx)
                .await?;
        let new_status = (
            page.status.as_ref().map(|s| s.status.clone()),
            page.status.as_ref().and_then(|s| s.reason.clone()),
        );
        if status.is_some_and(|old| old != new_status) {
            changed = true;
        }
        sqlx::query(
            "INSERT INTO mirror_state (project_id, etag, last_modified, upstream_serial, fetched,
                 status, status_reason, error, error_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)
             ON CONFLICT (project_id) DO UPDATE SET etag = excluded.etag,
                 last_modified = excluded.last_modified,
                 upstream_serial = excluded.upstream_serial, fetched = excluded.fetched,
                 status = excluded.status, status_reason = excluded.status_reason,
                 error = NULL, error_since = NULL",
        )
        .bind(project_id)
        .bind(&page.validators.etag)
        .bind(&page.validators.last_modified)
        .bind(page.serial)
        .bind(now)
        .bind(&new_status.0)
        .bind(&new_status.1)
        .execute(&mut *tx)
        .await?;
        let recorded = if changed {
            Recorded::Changed {
                serial: journal(&mut tx, &page.name, "mirror").await?,
            }
        } else {
            Recorded::Unchanged
        };
        tx.commit().await?;
        Ok(RecordOutcome {
            recorded,
            conflicts,
            skipped,
        })
    }

    /// Upstream answered "not modified": the page is fresh as of now.
    pub async fn mirror_not_modified(&self, name: &ProjectName) -> Result<()> {
        sqlx::query(
            "UPDATE mirror_state SET fetched = $1, error = NULL, error_since = NULL
             WHERE project_id = (SELECT id FROM projects WHERE name = $2)",
        )
        .bind(now_micros())
        .bind(name.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A refresh of a mirrored project failed: the last page stays, the error is shown.
    pub async fn mirror_failed(&self, name: &ProjectName, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE mirror_state SET error = $1, error_since = COALESCE(error_since, $2)
             WHERE project_id = (SELECT id FROM projects WHERE name = $3)",
        )
        .bind(error)
        .bind(now_micros())
        .bind(name.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Mirrored projects last fetched before `before` (microseconds), oldest first.
    pub async fn mirror_stale(&self, before: i64, limit: i64) -> Result<Vec<ProjectName>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT projects.name FROM projects JOIN mirror_state
                 ON mirror_state.project_id = projects.id
             WHERE projects.upstream IS NOT NULL AND mirror_state.fetched < $1
             ORDER BY mirror_state.fetched LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        names.iter().map(|name| stored_name(name)).collect()
    }

    /// How many projects are mirrored.
    pub async fn mirrored_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE upstream IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Mirrored projects whose last refresh failed: how many, and the first `limit`.
    pub async fn mirror_errors(&self, limit: i64) -> Result<(i64, Vec<MirrorError>)> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mirror_state WHERE error IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(
            "SELECT projects.name, mirror_state.error, mirror_state.error_since
             FROM mirror_state JOIN projects ON projects.id = mirror_state.project_id
             WHERE mirror_state.error IS NOT NULL ORDER BY mirror_state.error_since LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            count,
            rows.iter()
                .map(|row| MirrorError {
                    project: row.get(0),
                    error: row.get(1),
                    since: row.get::<Option<i64>, _>(2).unwrap_or_default(),
                })
                .collect(),
        ))
    }

    /// Hash changes refused: how many file names, and the newest `limit`.
    pub async fn pin_conflicts(&self, limit: i64) -> Result<(i64, Vec<PinConflict>)> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mirror_conflicts")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT filename, project, pinned_sha256, upstream_sha256, first_seen, last_seen
             FROM mirror_conflicts ORDER BY last_seen DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            count,
            rows.iter()
                .map(|row| PinConflict {
                    filename: row.get(0),
                    project: row.get(1),
                    pinned_sha256: row.get(2),
                    upstream_sha256: row.get(3),
                    first_seen: row.get(4),
                    last_seen: row.get(5),
                })
                .collect(),
        ))
    }

    /// The upstream URL of a mirrored file (`None` for local files and unknown names), and
    /// its project's PEP 792 status.
    pub async fn upstream_url(
        &self,
        filename: &str,
    ) -> Result<Option<(String, ProjectName, Option<String>)>> {
        let row = sqlx::query(
            "SELECT files.upstream_url, projects.name, mirror_state.status
             FROM files JOIN releases ON releases.id = files.release_id
                 JOIN projects ON projects.id = releases.project_id
                 LEFT JOIN mirror_state ON mirror_state.project_id = projects.id
             WHERE files.filename = $1 AND files.upstream_url IS NOT NULL",
        )
        .bind(filename)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.get(0), stored_name(row.get(1))?, row.get(2))))
            .transpose()
    }

    /// Ends mirroring of `name`: `owner` owns it from now on and may upload to it. Its files
    /// stay (with their upstream URLs, so that those not yet downloaded still can be), so pins
    /// keep working. Journaled: the page loses its `tracks`.
    pub async fn adopt(&self, name: &ProjectName, owner: &str) -> Result<Adopted> {
        let owner = self.user(owner).await?;
        let mut tx = self.begin_write().await?;
        let project: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, upstream FROM projects WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let project_id = match project {
            None => return Ok(Adopted::NoProject),
            Some((_, None)) => return Ok(Adopted::NotMirrored),
            Some((id, Some(_))) => id,
        };
        sqlx::query("UPDATE projects SET upstream = NULL, owner_id = $1 WHERE id = $2")
            .bind(owner.user_id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mirror_state WHERE project_id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        let files: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM files JOIN releases ON releases.id = files.release_id
             WHERE releases.project_id = $1",
        )
        .bind(project_id)
        .fetch_one(&mut *tx)
        .await?;
        let serial = journal(&mut tx, name, &format!("adopt by {}", owner.user)).await?;
        tx.commit().await?;
        Ok(Adopted::Adopted { serial, files })
    }
}

async fn record_conflict(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: &str,
    filename: &str,
    pinned: &str,
    upstream: &str,
    now: i64,
) -> Result<PinConflict> {
    let row = sqlx::query(
        "INSERT INTO mirror_conflicts (filename, project, pinned_sha256, upstream_sha256,
             first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (filename) DO UPDATE SET upstream_sha256 = excluded.upstream_sha256,
             last_seen = excluded.last_seen
         RETURNING first_seen",
    )
    .bind(filename)
    .bind(project)
    .bind(pinned)
    .bind(upstream)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(PinConflict {
        filename: filename.to_string(),
        project: project.to_string(),
        pinned_sha256: pinned.to_string(),
        upstream_sha256: upstream.to_string(),
        first_seen: row.get(0),
        last_seen: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Version;
    use crate::upstream::{ProjectStatus, UpstreamFile, Validators};

    fn file(filename: &str, version: &str, sha: char) -> UpstreamFile {
        UpstreamFile {
            filename: filename.into(),
            url: format!("https://files.example/{filename}"),
            sha256: sha.to_string().repeat(64),
            size: 10,
            version: Version::new(version).unwrap(),
            packagetype: "bdist_wheel",
            python_version: "py3".into(),
            requires_python: None,
            upload_time_micros: Some(1_000_000),
            yanked: None,
            metadata_sha256: None,
            provenance_url: None,
        }
    }

    fn page(files: Vec<UpstreamFile>) -> UpstreamPage {
        UpstreamPage {
            url: "https://pypi.example/simple/demo/".into(),
            name: ProjectName::new("demo").unwrap(),
            display_name: "Demo".into(),
            files,
            skipped: Vec::new(),
            status: None,
            validators: Validators::default(),
            serial: Some(1),
        }
    }

    both_backends!(
        pages_are_journaled_only_when_changed_and_pins_and_removed_files_hold,
        pages
    );
    async fn pages(db: Database) {
        let one = file("demo-1.0-py3-none-any.whl", "1.0", 'a');
        let two = file("demo-2.0-py3-none-any.whl", "2.0", 'b');
        let first = db
            .record_mirror(&page(vec![one.clone()]), &Default::default())
            .await
            .unwrap();
        assert!(matches!(first.recorded, Recorded::Changed { .. }));
        let again = db
            .record_mirror(&page(vec![one.clone()]), &Default::default())
            .await
            .unwrap();
        assert_eq!(again.recorded, Recorded::Unchanged);
        assert_eq!(db.last_serial().await.unwrap(), 1, "one journal row");

        // Upstream swaps the bytes of 1.0 and drops it for 2.0: the pin holds, 1.0 stays yanked.
        let swapped = file("demo-1.0-py3-none-any.whl", "1.0", 'c');
        let outcome = db
            .record_mirror(&page(vec![swapped, two.clone()]), &Default::default())
            .await
            .unwrap();
        assert_eq!(outcome.conflicts.len(), 1);
        assert_eq!(outcome.conflicts[0].pinned_sha256, "a".repeat(64));
        let kept = db.file("demo-1.0-py3-none-any.whl").await.unwrap().unwrap();
        assert_eq!(kept.sha256, "a".repeat(64));
        let outcome = db
            .record_mirror(&page(vec![two.clone()]), &Default::default())
            .await
            .unwrap();
        assert!(matches!(outcome.recorded, Recorded::Changed { .. }));
        let kept = db.file("demo-1.0-py3-none-any.whl").await.unwrap().unwrap();
        assert_eq!(kept.yanked.as_deref(), Some(REMOVED_UPSTREAM));
        assert_eq!(db.pin_conflicts(10).await.unwrap().0, 1);

        // A PEP 792 status change is a page change.
        let mut archived = page(vec![two]);
        archived.status = Some(ProjectStatus {
            status: "archived".into(),
            reason: None,
        });
        let outcome = db
            .record_mirror(&archived, &Default::default())
            .await
            .unwrap();
        assert!(matches!(outcome.recorded, Recorded::Changed { .. }));
        let project = db.project(&archived.name).await.unwrap().unwrap();
        assert_eq!(project.mirror.unwrap().status.as_deref(), Some("archived"));

        // Uploads are refused until adopted; adoption keeps the files.
        let identity = db.user("alice").await.unwrap();
        assert!(matches!(
            db.may_upload(&identity, &archived.name).await.unwrap(),
            Err(crate::db::AddRefused::Mirrored { .. })
        ));
        assert!(matches!(
            db.adopt(&archived.name, "alice").await.unwrap(),
            Adopted::Adopted { files: 2, .. }
        ));
        assert_eq!(
            db.may_upload(&identity, &archived.name).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            db.record_mirror(&archived, &Default::default())
                .await
                .unwrap()
                .recorded,
            Recorded::Local
        );
        assert!(db.user(MIRROR_USER).await.is_err(), "nobody can act as it");
    }
}
