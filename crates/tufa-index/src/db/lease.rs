//! The publisher lease: one row naming the replica that signs, so that several `tufa serve`
//! processes on one database publish one at a time (see [`crate::lease`] for the protocol).
//! Every query is one statement, atomic on its own in SQLite and PostgreSQL alike, and portable
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`, no SQLite-only functions).

use sqlx::Row;

use super::{Backend, Database};
use crate::error::Result;

/// One row, `name = 'publisher'`. `holder` is empty when the last holder let go of it; `epoch`
/// counts acquisitions (the fencing token); `renewals` counts the holder's renewals, which is
/// what the other replicas watch, on their own clocks, to tell a live holder from a dead one.
/// `acquired`, `renewed` and `ttl_ms` are for people (`/status`, `tufa status`): no replica
/// compares its clock with another's.
pub(super) const LEASE: &str = "
CREATE TABLE publisher_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    renewals BIGINT NOT NULL,
    acquired BIGINT NOT NULL,
    renewed BIGINT NOT NULL,
    ttl_ms BIGINT NOT NULL
);
";

/// The lease as the database records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    /// The holding replica (`host:pid:random`), empty when released.
    pub holder: String,
    pub epoch: i64,
    pub renewals: i64,
    /// Microseconds since the epoch, by the holder's clock.
    pub acquired: i64,
    pub renewed: i64,
    pub ttl_ms: i64,
}

const NAME: &str = "publisher";

impl Database {
    /// The lease, if any replica ever held it.
    pub async fn lease(&self) -> Result<Option<LeaseRow>> {
        let row = sqlx::query(
            "SELECT holder, epoch, renewals, acquired, renewed, ttl_ms
             FROM publisher_lease WHERE name = $1",
        )
        .bind(NAME)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| LeaseRow {
            holder: row.get(0),
            epoch: row.get(1),
            renewals: row.get(2),
            acquired: row.get(3),
            renewed: row.get(4),
            ttl_ms: row.get(5),
        }))
    }

    /// Takes the lease when nobody ever held it; the epoch it is held under, or `None` when
    /// the row exists already.
    pub async fn create_lease(&self, holder: &str, now: i64, ttl_ms: i64) -> Result<Option<i64>> {
        let done = sqlx::query(
            "INSERT INTO publisher_lease (name, holder, epoch, renewals, acquired, renewed, ttl_ms)
             VALUES ($1, $2, 1, 0, $3, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(NAME)
        .bind(holder)
        .bind(now)
        .bind(ttl_ms)
        .execute(&self.writer)
        .await?;
        Ok((done.rows_affected() == 1).then_some(1))
    }

    /// Takes the lease from the holder seen at `(epoch, renewals)`, provided the row has not
    /// moved since (compare-and-set: of several replicas trying at once, one wins); or takes a
    /// released lease. The new epoch, or `None` when another replica got there first or the
    /// holder renewed.
    pub async fn take_lease(
        &self,
        holder: &str,
        seen: &LeaseRow,
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE publisher_lease
             SET holder = $1, epoch = epoch + 1, renewals = 0, acquired = $2, renewed = $2,
                 ttl_ms = $3
             WHERE name = $4 AND epoch = $5 AND renewals = $6 AND holder = $7
             RETURNING epoch",
        )
        .bind(holder)
        .bind(now)
        .bind(ttl_ms)
        .bind(NAME)
        .bind(seen.epoch)
        .bind(seen.renewals)
        .bind(&seen.holder)
        .fetch_optional(&self.writer)
        .await?)
    }

    /// Renews the lease `holder` holds under `epoch`; false when it no longer does.
    pub async fn renew_lease(&self, holder: &str, epoch: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE publisher_lease SET renewals = renewals + 1, renewed = $1
             WHERE name = $2 AND holder = $3 AND epoch = $4",
        )
        .bind(now)
        .bind(NAME)
        .bind(holder)
        .bind(epoch)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lets go of the lease, so that another replica takes it at once instead of after the TTL.
    pub async fn release_lease(&self, holder: &str, epoch: i64) -> Result<()> {
        sqlx::query(
            "UPDATE publisher_lease SET holder = '', renewals = renewals + 1
             WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(NAME)
        .bind(holder)
        .bind(epoch)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Records that every change up to `serial` is signed, in the same statement that checks
    /// `holder` still holds the lease under `epoch`: a publisher that lost the lease can never
    /// move the serial. False when it no longer holds it (nothing is recorded). With `round`
    /// (`from`, `now`), the round that signed the changes after `from` is recorded for the trust
    /// page in the same transaction: on SQLite each transaction is a sync and a turn at the
    /// write lock that other replicas' uploads queue for, and the next round waits for both.
    pub async fn set_signed_serial_fenced(
        &self,
        serial: i64,
        holder: &str,
        epoch: i64,
        round: Option<(i64, i64)>,
    ) -> Result<bool> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        let done = sqlx::query(
            "UPDATE signed SET serial = CASE WHEN serial < $1 THEN $1 ELSE serial END
             WHERE id = 1 AND EXISTS (
                 SELECT 1 FROM publisher_lease WHERE name = $2 AND holder = $3 AND epoch = $4
             )",
        )
        .bind(serial)
        .bind(NAME)
        .bind(holder)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some((from, now)) = round {
            super::web::record_signing(&mut tx, from, serial, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
