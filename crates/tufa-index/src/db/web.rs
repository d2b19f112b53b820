//! What the web pages read beyond what the APIs do: counts, recent uploads, search over names
//! and summaries, and the publisher's rounds for the upload-to-signed latency chart.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Database, FILE_COLUMNS, FileRecord, Tx, file_record};
use crate::error::Result;
use crate::name::Version;

/// Each release's summary, for search (kept when the release is recorded: reading it out of
/// every release's metadata per search would not scale), and one row per publishing round: when
/// it signed, the oldest change it signed and how many. Releases recorded before this step have
/// no summary until their project's next release.
pub(super) const WEB: &str = "
ALTER TABLE projects ADD COLUMN summary TEXT;
CREATE TABLE signings (
    serial INTEGER PRIMARY KEY,
    signed INTEGER NOT NULL,
    oldest_change INTEGER NOT NULL,
    changes INTEGER NOT NULL
);
CREATE INDEX signings_by_time ON signings (signed);
";

pub(super) const POSTGRES_WEB: &str = r#"
ALTER TABLE projects ADD COLUMN summary TEXT COLLATE "C";
CREATE TABLE signings (
    serial BIGINT PRIMARY KEY,
    signed BIGINT NOT NULL,
    oldest_change BIGINT NOT NULL,
    changes BIGINT NOT NULL
);
CREATE INDEX signings_by_time ON signings (signed);
"#;

/// How long publishing rounds are kept: the chart shows the last hour.
const SIGNINGS_KEPT_MICROS: i64 = 24 * 3_600 * 1_000_000;

/// The most rounds the chart reads: a busy publisher signs many a second, and one bar per
/// minute shows the slowest of them anyway.
const SIGNINGS_READ: i64 = 20_000;

/// A file as the home page lists it among recent uploads.
#[derive(Clone, Debug)]
pub struct RecentFile {
    pub project: String,
    pub display_name: String,
    pub version: String,
    pub filename: String,
    pub upload_time_micros: i64,
}

/// A project found by search.
#[derive(Clone, Debug)]
pub struct FoundProject {
    pub name: String,
    pub display_name: String,
    pub summary: Option<String>,
}

/// One publishing round, as the latency chart shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningRound {
    pub signed_micros: i64,
    pub oldest_change_micros: i64,
    pub changes: i64,
}

/// A release as the project page lists it: its files counted and dated by the database, so
/// that a project of thousands of releases is listed without reading their files or metadata.
#[derive(Clone, Debug)]
pub struct ReleaseLine {
    pub version: Version,
    /// When its first file was uploaded; `None` for a release without files.
    pub first_upload_micros: Option<i64>,
    pub files: i64,
    pub yanked_files: i64,
    /// A yanked file's reason, if any gave one.
    pub yanked_reason: Option<String>,
}

impl ReleaseLine {
    /// `Some(reason)` when every file of the release is yanked (PEP 592 yanks a release whole);
    /// the reason may be empty.
    pub fn yanked(&self) -> Option<String> {
        (self.files > 0 && self.yanked_files == self.files)
            .then(|| self.yanked_reason.clone().unwrap_or_default())
    }

    /// Whether an installer may still pick one of its files.
    pub fn is_live(&self) -> bool {
        self.yanked_files < self.files
    }
}

/// The release a project page is about, read in one transaction: its core metadata, its files
/// by file name, and the verified publisher (as JSON) of each attested one, by file name.
#[derive(Clone, Debug)]
pub struct ShownRelease {
    pub metadata: Vec<u8>,
    pub files: Vec<FileRecord>,
    pub publishers: BTreeMap<String, String>,
}

/// `query` as a `LIKE` pattern matching it anywhere, its own `%`, `_` and `\` taken literally.
fn contains_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Keeps the summary of the release whose core metadata is `metadata` as its project's: called
/// when a release is recorded, the newest usually.
pub(super) async fn set_summary(tx: &mut Tx, project_id: i64, metadata: &[u8]) -> Result<()> {
    let summary = crate::coremeta::CoreMetadata::parse("METADATA", metadata.to_vec())
        .ok()
        .and_then(|parsed| parsed.get("Summary").map(str::to_string));
    if let Some(summary) = summary {
        sqlx::query("UPDATE projects SET summary = $1 WHERE id = $2")
            .bind(summary)
            .bind(project_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Database {
    /// How many projects and files the index holds.
    pub async fn counts(&self) -> Result<(i64, i64)> {
        let projects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects")
            .fetch_one(&self.pool)
            .await?;
        let files: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files")
            .fetch_one(&self.pool)
            .await?;
        Ok((projects, files))
    }

    /// The `limit` files uploaded last, newest first.
    pub async fn recent_files(&self, limit: i64) -> Result<Vec<RecentFile>> {
        let rows = sqlx::query(
            "SELECT projects.name, projects.display_name, releases.version, files.filename,
                 files.upload_time
             FROM files JOIN releases ON releases.id = files.release_id
             JOIN projects ON projects.id = releases.project_id
             ORDER BY files.upload_time DESC, files.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| RecentFile {
                project: row.get(0),
                display_name: row.get(1),
                version: row.get(2),
                filename: row.get(3),
                upload_time_micros: row.get(4),
            })
            .collect())
    }

    /// Projects whose name or summary contains `query` (any case; every project when it is
    /// empty), by name: how many there are, and those from `offset` on, at most `limit`.
    pub async fn search_projects(
        &self,
        query: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<FoundProject>)> {
        let pattern = contains_pattern(query.trim());
        const MATCHES: &str = "WHERE LOWER(name) LIKE $1 ESCAPE '\\'
             OR LOWER(display_name) LIKE $1 ESCAPE '\\'
             OR LOWER(summary) LIKE $1 ESCAPE '\\'";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM projects {MATCHES}"))
            .bind(&pattern)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT name, display_name, summary FROM projects {MATCHES}
             ORDER BY name LIMIT $2 OFFSET $3"
        ))
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            total,
            rows.iter()
                .map(|row| FoundProject {
                    name: row.get(0),
                    display_name: row.get(1),
                    summary: row.get(2),
                })
                .collect(),
        ))
    }

    /// Every release of a project as its page lists it, in PEP 440 order, oldest first.
    pub async fn release_lines(&self, project_id: i64) -> Result<Vec<ReleaseLine>> {
        let rows = sqlx::query(
            "SELECT releases.version, MIN(files.upload_time), COUNT(files.id),
                 COUNT(CASE WHEN files.yanked <> 0 THEN 1 END),
                 MAX(CASE WHEN files.yanked <> 0 THEN files.yanked_reason END)
             FROM releases LEFT JOIN files ON files.release_id = releases.id
             WHERE releases.project_id = $1
             GROUP BY releases.id, releases.version",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        let mut lines = rows
            .iter()
            .map(|row| {
                Ok(ReleaseLine {
                    version: Version::new(row.get::<&str, _>(0))?,
                    first_upload_micros: row.get(1),
                    files: row.get(2),
                    yanked_files: row.get(3),
                    yanked_reason: row.get(4),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        lines.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(lines)
    }

    /// The release `version` (as stored) of a project, as its page shows it; `None` when there
    /// is no such release.
    pub async fn shown_release(
        &self,
        project_id: i64,
        version: &Version,
    ) -> Result<Option<ShownRelease>> {
        let mut tx = self.begin_read().await?;
        let release: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, metadata FROM releases WHERE project_id = $1 AND version = $2",
        )
        .bind(project_id)
        .bind(version.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((release_id, metadata)) = release else {
            return Ok(None);
        };
        let files = sqlx::query(&format!(
            "{FILE_COLUMNS} WHERE files.release_id = $1 ORDER BY files.filename"
        ))
        .bind(release_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(file_record)
        .collect();
        let publishers = sqlx::query_as(
            "SELECT files.filename, file_provenance.publisher
             FROM files JOIN file_provenance ON file_provenance.file_id = files.id
             WHERE files.release_id = $1",
        )
        .bind(release_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        tx.commit().await?;
        Ok(Some(ShownRelease {
            metadata,
            files,
            publishers,
        }))
    }

    /// Publishing rounds since `since`, oldest first.
    pub async fn signings_since(&self, since: i64) -> Result<Vec<SigningRound>> {
        let rows = sqlx::query(
            "SELECT signed, oldest_change, changes FROM signings WHERE signed >= $1
             ORDER BY signed DESC LIMIT $2",
        )
        .bind(since)
        .bind(SIGNINGS_READ)
        .fetch_all(&self.pool)
        .await?;
        let mut rounds: Vec<SigningRound> = rows
            .iter()
            .map(|row| SigningRound {
                signed_micros: row.get(0),
                oldest_change_micros: row.get(1),
                changes: row.get(2),
            })
            .collect();
        rounds.reverse();
        Ok(rounds)
    }
}

/// Records in `tx` a publishing round that signed the changes after serial `from` up to `to`
/// at `now`, and forgets rounds older than a day.
pub(super) async fn record_signing(tx: &mut Tx, from: i64, to: i64, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO signings (serial, signed, oldest_change, changes)
         SELECT $2, $3, MIN(time), COUNT(*) FROM journal WHERE serial > $1 AND serial <= $2
         HAVING COUNT(*) > 0
         ON CONFLICT (serial) DO NOTHING",
    )
    .bind(from)
    .bind(to)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM signings WHERE signed < $1")
        .bind(now - SIGNINGS_KEPT_MICROS)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ReleaseLine, contains_pattern};
    use crate::db::Database;
    use crate::db::tests::wheel;
    use crate::name::{ProjectName, Version};

    #[test]
    fn patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("A_b%"), "%a\\_b\\%%");
    }

    async fn search_and_rounds(database: Database) {
        let identity = database.user("alice").await.unwrap();
        for (project, content) in [("alpha", 'a'), ("beta-x", 'b'), ("gamma", 'c')] {
            let new = wheel(project, "1.0", content);
            database
                .add_file(&identity, &new, async || Ok(()))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(database.counts().await.unwrap(), (3, 3));
        let (total, found) = database.search_projects("", 0, 2).await.unwrap();
        assert_eq!(total, 3);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "alpha");
        let (total, found) = database.search_projects("A_X", 0, 10).await.unwrap();
        assert_eq!((total, found.len()), (0, 0), "the _ is literal");
        let (total, found) = database.search_projects("ETA", 0, 10).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(found[0].name, "beta-x");
        let recent = database.recent_files(2).await.unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].project, "gamma");

        let last = database.last_serial().await.unwrap();
        let now = crate::db::now_micros();
        let epoch = database
            .create_lease("publisher", 0, 5_000)
            .await
            .unwrap()
            .unwrap();
        let signed =
            |from| database.set_signed_serial_fenced(last, "publisher", epoch, Some((from, now)));
        assert!(signed(0).await.unwrap());
        // Nothing between: no round recorded.
        assert!(signed(last).await.unwrap());
        // A publisher that lost the lease records no round either.
        assert!(
            !database
                .set_signed_serial_fenced(last + 1, "another", epoch, Some((0, now + 1)))
                .await
                .unwrap()
        );
        let rounds = database.signings_since(now - 1).await.unwrap();
        assert_eq!(rounds.len(), 1);
        assert_eq!(rounds[0].changes, 3);
        assert!(rounds[0].oldest_change_micros <= now);
    }

    both_backends!(search_and_signings, search_and_rounds);

    async fn release_lines_and_shown(database: Database) {
        let alice = database.user("alice").await.unwrap();
        let name = ProjectName::new("demo").unwrap();
        let mut attested = wheel("demo", "1.0", 'a');
        attested.file.upload_time_micros = 2_000;
        attested.provenance = Some(crate::db::NewProvenance {
            json: r#"{"version":1,"attestation_bundles":[]}"#.into(),
            sha256: "9f".repeat(32),
            publisher: r#"{"kind":"GitHub","repository":"o/demo"}"#.into(),
        });
        let mut sdist = wheel("demo", "1.0", 'b');
        sdist.file.filename = "demo-1.0.tar.gz".into();
        sdist.file.upload_time_micros = 1_000;
        let mut newer = wheel("demo", "2.0", 'c');
        newer.file.upload_time_micros = 3_000;
        let pre = wheel("demo", "3.0rc1", 'd');
        for new in [&attested, &sdist, &newer, &pre] {
            database
                .add_file(&alice, new, async || Ok(()))
                .await
                .unwrap()
                .unwrap();
        }
        let v = |text: &str| Version::new(text).unwrap();
        database
            .set_yanked(&name, &v("2.0"), None, Some("broken build"))
            .await
            .unwrap();
        database
            .set_yanked(&name, &v("1.0"), Some("demo-1.0.tar.gz"), Some("bad sdist"))
            .await
            .unwrap();
        let project = database.project(&name).await.unwrap().unwrap();

        let lines = database.release_lines(project.id).await.unwrap();
        let versions: Vec<&str> = lines.iter().map(|l| l.version.as_str()).collect();
        assert_eq!(versions, ["1.0", "2.0", "3.0rc1"], "PEP 440 order");
        assert_eq!(lines[0].first_upload_micros, Some(1_000));
        assert_eq!((lines[0].files, lines[0].yanked_files), (2, 1));
        assert_eq!(lines[0].yanked(), None, "one file left to install");
        assert_eq!(lines[1].yanked(), Some("broken build".to_string()));
        assert!(!lines[1].is_live());
        let latest = crate::pages::latest_of(&lines, |l| &l.version, ReleaseLine::is_live);
        assert_eq!(
            latest.map(|l| l.version.as_str()),
            Some("1.0"),
            "neither yanked nor a pre-release"
        );

        let shown = database
            .shown_release(project.id, &v("1.0"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shown.metadata, attested.release_metadata);
        let files: Vec<&str> = shown.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(files, ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]);
        assert_eq!(shown.files[1].yanked.as_deref(), Some("bad sdist"));
        assert_eq!(
            shown.publishers.keys().collect::<Vec<_>>(),
            ["demo-1.0-py3-none-any.whl"]
        );
        let other = database
            .shown_release(project.id, &v("2.0"))
            .await
            .unwrap()
            .unwrap();
        assert!(other.publishers.is_empty());
        assert!(
            database
                .shown_release(project.id, &v("9.9"))
                .await
                .unwrap()
                .is_none()
        );
    }

    both_backends!(release_lines_and_shown_release, release_lines_and_shown);
}
