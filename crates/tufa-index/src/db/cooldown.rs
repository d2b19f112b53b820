//! The cooldown view's records: the operator's decisions on releases, the policy the view was
//! last published under, and the boundary up to which files that crossed it are journaled.
//! Projects are named by their normalized name (as in the journal), so these tables depend on
//! nothing but `projects`, `releases` and `files`, whichever way a project's files arrived.

use std::time::Duration;

use sqlx::Row;

use super::{
    Database, FileRecord, Project, Tx, find_project, journal, now_micros, project_state_in,
};
use crate::cooldown::{Decision, Override, Policy};
use crate::error::{Error, Result};
use crate::name::{ProjectName, Version};

/// Decisions on releases (one per release), and the one row of cooldown state: the policy
/// (period in seconds, exempt patterns one per line; NULL period: off) and the sweep cursor.
pub(super) const COOLDOWN: &str = "
CREATE TABLE cooldown_overrides (
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason TEXT NOT NULL,
    who TEXT NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (project, version)
);
CREATE TABLE cooldown_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    period INTEGER,
    exempt TEXT NOT NULL,
    swept INTEGER NOT NULL
);
INSERT INTO cooldown_state (id, period, exempt, swept) VALUES (1, NULL, '', 0);
CREATE INDEX files_by_upload_time ON files (upload_time);
";

/// A project as its cooldown page shows it, read in one transaction.
pub struct CooldownState {
    pub project: Project,
    pub versions: Vec<Version>,
    pub files: Vec<FileRecord>,
    pub overrides: Vec<Override>,
    /// Files uploaded up to `swept - period` are in the view.
    pub swept_micros: i64,
}

fn override_from(row: &sqlx::any::AnyRow) -> Result<Override> {
    let decision: String = row.get(2);
    Ok(Override {
        project: super::stored_name(row.get(0))?,
        version: Version::new(row.get::<&str, _>(1))?,
        decision: Decision::parse(&decision)
            .ok_or_else(|| Error::Config(format!("unknown cooldown decision {decision:?}")))?,
        reason: row.get(3),
        who: row.get(4),
        time_micros: row.get(5),
    })
}

const OVERRIDE_COLUMNS: &str =
    "SELECT project, version, decision, reason, who, time FROM cooldown_overrides";

impl Database {
    /// The policy the view was last published under, if it is on.
    pub async fn cooldown_policy(&self) -> Result<Option<Policy>> {
        let row = sqlx::query("SELECT period, exempt FROM cooldown_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let period: Option<i64> = row.get(0);
        let exempt: String = row.get(1);
        Ok(period.map(|seconds| Policy {
            period: Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
            exempt: exempt.lines().map(str::to_string).collect(),
        }))
    }

    /// Records `policy` as the one the view is published under. When it differs from the one
    /// recorded (the view turned on or off, another period, other exemptions), every project's
    /// view changes: each gets a journal entry, so the publisher signs (or withdraws) its
    /// cooldown page, and the sweep starts from now. Returns how many projects were journaled.
    pub async fn configure_cooldown(&self, policy: Option<&Policy>) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT period, exempt FROM cooldown_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let period = policy.map(|p| i64::try_from(p.period.as_secs()).unwrap_or(i64::MAX));
        let exempt = policy.map(|p| p.exempt.join("\n")).unwrap_or_default();
        if row.get::<Option<i64>, _>(0) == period && row.get::<String, _>(1) == exempt {
            return Ok(0);
        }
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
        for name in &names {
            journal(&mut tx, &super::stored_name(name)?, "cooldown policy").await?;
        }
        sqlx::query("UPDATE cooldown_state SET period = $1, exempt = $2, swept = $3 WHERE id = 1")
            .bind(period)
            .bind(exempt)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(names.len())
    }

    /// Journals every project with a file whose upload time plus the period fell between the
    /// last sweep and `now_micros`, and moves the cursor to `now_micros`: the view follows the
    /// clock in signed steps, each a journal entry. A clock that went back moves the cursor back
    /// too, journaling the projects whose files it had admitted early, so that a clock that once
    /// ran ahead does not leave fresh files in the view. Returns how many projects were
    /// journaled.
    pub async fn sweep_cooldown(&self, policy: &Policy, now_micros: i64) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let swept: i64 = sqlx::query_scalar("SELECT swept FROM cooldown_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        if now_micros == swept {
            return Ok(0);
        }
        let period = policy.period_micros();
        let (from, to) = (swept.min(now_micros), swept.max(now_micros));
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT projects.name FROM files
             JOIN releases ON releases.id = files.release_id
             JOIN projects ON projects.id = releases.project_id
             WHERE files.upload_time > $1 AND files.upload_time <= $2
             ORDER BY projects.name",
        )
        .bind(from.saturating_sub(period))
        .bind(to.saturating_sub(period))
        .fetch_all(&mut *tx)
        .await?;
        // With nothing crossed the cursor stays: every page renders the same from it, and an
        // idle index writes nothing.
        if names.is_empty() && now_micros > swept {
            return Ok(0);
        }
        for name in &names {
            journal(&mut tx, &super::stored_name(name)?, "cooldown boundary").await?;
        }
        sqlx::query("UPDATE cooldown_state SET swept = $1 WHERE id = 1")
            .bind(now_micros)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(names.len())
    }

    /// A project as [`Database::project_state`] reads it, with its decisions and the sweep
    /// cursor, as one consistent state: what its cooldown page is rendered from.
    pub async fn cooldown_state(&self, name: &ProjectName) -> Result<Option<CooldownState>> {
        let mut tx = self.begin_read().await?;
        let Some((project, versions, files)) = project_state_in(&mut tx, name).await? else {
            return Ok(None);
        };
        let (overrides, swept_micros) = decisions_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(Some(CooldownState {
            project,
            versions,
            files,
            overrides,
            swept_micros,
        }))
    }

    /// The operator's decisions on `name` and the sweep cursor, read together: with the files
    /// of one release, enough to say where each of them stands in the view (the project page
    /// shows one release, and reads no other release's files for it).
    pub async fn cooldown_decisions(&self, name: &ProjectName) -> Result<(Vec<Override>, i64)> {
        let mut tx = self.begin_read().await?;
        let decisions = decisions_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(decisions)
    }

    /// Allows or denies a release in the cooldown view, replacing an earlier decision on it,
    /// journaled in the same transaction so that the publisher signs it. The release must exist:
    /// a decision on a version nobody uploaded would be a typo nobody notices.
    pub async fn set_cooldown_override(
        &self,
        project: &ProjectName,
        version: &Version,
        decision: Decision,
        reason: &str,
        who: &str,
    ) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(Error::MissingReason);
        }
        let mut tx = self.begin_write().await?;
        release_exists(&mut tx, project, version).await?;
        sqlx::query(
            "INSERT INTO cooldown_overrides (project, version, decision, reason, who, time)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (project, version) DO UPDATE
             SET decision = excluded.decision, reason = excluded.reason, who = excluded.who,
                 time = excluded.time",
        )
        .bind(project.as_str())
        .bind(version.as_str())
        .bind(decision.as_str())
        .bind(reason.trim())
        .bind(who)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        let action = format!("cooldown {} {version}", decision.as_str());
        journal(&mut tx, project, &action).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the decision on a release, journaled; the release then follows the period again.
    pub async fn remove_cooldown_override(
        &self,
        project: &ProjectName,
        version: &Version,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let removed =
            sqlx::query("DELETE FROM cooldown_overrides WHERE project = $1 AND version = $2")
                .bind(project.as_str())
                .bind(version.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if removed == 0 {
            return Err(Error::NoDecision {
                project: project.to_string(),
                version: version.to_string(),
            });
        }
        journal(&mut tx, project, &format!("cooldown clear {version}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every decision, by project and version.
    pub async fn cooldown_overrides(&self) -> Result<Vec<Override>> {
        let rows = sqlx::query(&format!("{OVERRIDE_COLUMNS} ORDER BY project, version"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(override_from).collect()
    }
}

/// The decisions on `name` and the sweep cursor.
async fn decisions_in(tx: &mut Tx, name: &ProjectName) -> Result<(Vec<Override>, i64)> {
    let overrides = sqlx::query(&format!("{OVERRIDE_COLUMNS} WHERE project = $1"))
        .bind(name.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(override_from)
        .collect::<Result<Vec<_>>>()?;
    let swept_micros: i64 = sqlx::query_scalar("SELECT swept FROM cooldown_state WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok((overrides, swept_micros))
}

async fn release_exists(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: &ProjectName,
    version: &Version,
) -> Result<()> {
    let Some(found) = find_project(&mut **tx, project).await? else {
        return Err(Error::NoProject(project.to_string()));
    };
    let known: Option<i64> =
        sqlx::query_scalar("SELECT id FROM releases WHERE project_id = $1 AND version = $2")
            .bind(found.id)
            .bind(version.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    match known {
        Some(_) => Ok(()),
        None => Err(Error::NoRelease {
            project: project.to_string(),
            version: version.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    async fn database(database: Database) -> Database {
        sqlx::raw_sql(
            "INSERT INTO users (id, name, created) VALUES (100, 'alice', 0);
             INSERT INTO projects (id, name, display_name, owner_id, last_serial)
                 VALUES (1, 'early', 'early', 100, 0), (2, 'late', 'late', 100, 0);",
        )
        .execute(&database.pool)
        .await
        .unwrap();
        for id in [1_i64, 2] {
            sqlx::query(
                "INSERT INTO releases (id, project_id, version, metadata, created)
                 VALUES ($1, $1, '1.0', $2, 0)",
            )
            .bind(id)
            .bind(Vec::<u8>::new())
            .execute(&database.pool)
            .await
            .unwrap();
        }
        for (id, release, uploaded) in [(1, 1, 100 * SECOND), (2, 2, 200 * SECOND)] {
            sqlx::query(
                "INSERT INTO files (id, release_id, filename, packagetype, python_version, size,
                     sha256, md5, blake2_256, upload_time)
                 VALUES ($1, $2, $3, 'bdist_wheel', 'py3', 1, '', '', '', $4)",
            )
            .bind(id)
            .bind(release)
            .bind(format!("file-{id}.whl"))
            .bind(uploaded)
            .execute(&database.pool)
            .await
            .unwrap();
        }
        database
    }

    async fn swept(database: &Database) -> i64 {
        sqlx::query_scalar("SELECT swept FROM cooldown_state WHERE id = 1")
            .fetch_one(&database.pool)
            .await
            .unwrap()
    }

    async fn journaled(database: &Database, after: i64) -> Vec<(String, String)> {
        sqlx::query_as("SELECT project, action FROM journal WHERE serial > $1 ORDER BY serial")
            .bind(after)
            .fetch_all(&database.pool)
            .await
            .unwrap()
    }

    both_backends!(
        the_sweep_journals_each_crossing_once_and_follows_a_clock_that_went_back,
        sweep
    );
    async fn sweep(database: Database) {
        let database = self::database(database).await;
        let policy = Policy {
            period: Duration::from_secs(50),
            exempt: Vec::new(),
        };
        // Turning the view on journals every project and starts the cursor at the real now.
        assert_eq!(database.configure_cooldown(Some(&policy)).await.unwrap(), 2);
        assert_eq!(database.configure_cooldown(Some(&policy)).await.unwrap(), 0);
        sqlx::query("UPDATE cooldown_state SET swept = $1")
            .bind(120 * SECOND)
            .execute(&database.pool)
            .await
            .unwrap();
        let serial = database.last_serial().await.unwrap();

        // Up to 160 s: "early" (100 s + 50 s) crossed; nothing else.
        assert_eq!(
            database
                .sweep_cooldown(&policy, 160 * SECOND)
                .await
                .unwrap(),
            1
        );
        let crossed = journaled(&database, serial).await;
        assert_eq!(crossed, [("early".into(), "cooldown boundary".into())]);
        assert_eq!(swept(&database).await, 160 * SECOND);
        // Nothing crossed by 200 s: nothing written, the cursor stays.
        assert_eq!(
            database
                .sweep_cooldown(&policy, 200 * SECOND)
                .await
                .unwrap(),
            0
        );
        assert_eq!(swept(&database).await, 160 * SECOND);
        // By 260 s "late" (200 s + 50 s) crossed, journaled once.
        assert_eq!(
            database
                .sweep_cooldown(&policy, 260 * SECOND)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            database
                .sweep_cooldown(&policy, 261 * SECOND)
                .await
                .unwrap(),
            0
        );
        // The clock back at 240 s: "late" is no longer old enough and is journaled again.
        let serial = database.last_serial().await.unwrap();
        assert_eq!(
            database
                .sweep_cooldown(&policy, 240 * SECOND)
                .await
                .unwrap(),
            1
        );
        let withdrawn = journaled(&database, serial).await;
        assert_eq!(withdrawn, [("late".into(), "cooldown boundary".into())]);
        assert_eq!(swept(&database).await, 240 * SECOND);
        let state = database
            .cooldown_state(&ProjectName::new("late").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.swept_micros, 240 * SECOND);

        // Turning the view off journals every project again, to withdraw their pages.
        assert_eq!(database.configure_cooldown(None).await.unwrap(), 2);
        assert_eq!(database.cooldown_policy().await.unwrap(), None);
    }

    both_backends!(
        decisions_need_a_release_and_a_reason_and_are_journaled,
        decisions
    );
    async fn decisions(database: Database) {
        let database = self::database(database).await;
        let project = ProjectName::new("early").unwrap();
        let version = Version::new("1.0").unwrap();
        let decide = |decision, reason: &'static str, version: &'static str| {
            let (database, project) = (database.clone(), project.clone());
            async move {
                let version = Version::new(version).unwrap();
                database
                    .set_cooldown_override(&project, &version, decision, reason, "ops")
                    .await
            }
        };
        assert!(matches!(
            decide(Decision::Allow, "fix", "2.0").await,
            Err(Error::NoRelease { .. })
        ));
        assert!(matches!(
            decide(Decision::Allow, "  ", "1.0").await,
            Err(Error::MissingReason)
        ));
        let serial = database.last_serial().await.unwrap();
        decide(Decision::Allow, "fix", "1.0").await.unwrap();
        decide(Decision::Deny, "taken over", "1.0").await.unwrap();
        let listed = database.cooldown_overrides().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].decision, listed[0].reason.as_str()),
            (Decision::Deny, "taken over")
        );
        database
            .remove_cooldown_override(&project, &version)
            .await
            .unwrap();
        assert!(matches!(
            database.remove_cooldown_override(&project, &version).await,
            Err(Error::NoDecision { .. })
        ));
        let actions: Vec<String> = journaled(&database, serial)
            .await
            .into_iter()
            .map(|(_, action)| action)
            .collect();
        assert_eq!(
            actions,
            [
                "cooldown allow 1.0",
                "cooldown deny 1.0",
                "cooldown clear 1.0"
            ]
        );
        let missing = ProjectName::new("missing").unwrap();
        assert!(matches!(
            database
                .set_cooldown_override(&missing, &version, Decision::Deny, "x", "ops")
                .await,
            Err(Error::NoProject(_))
        ));
    }
}
