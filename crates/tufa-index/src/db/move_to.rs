//! Moving an index's database from its SQLite file into an empty PostgreSQL database: every
//! table row for row, with its ids and serials, so that the journal, the signed serial and every
//! page signed from them stay what they were. The SQLite file is only read.
//!
//! The copy is generic over the tables SQLite holds (a table a later schema step adds moves
//! too): columns are read by their declared type (INTEGER, TEXT, BLOB) and written to the
//! PostgreSQL table of the same name, parents before the tables whose foreign keys name them.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use tokio_stream::StreamExt;

use super::{Backend, Database, Tx};
use crate::error::{Error, Result};

/// Rows per `INSERT`: many fewer round trips than one each, far below PostgreSQL's limit of
/// 65,535 parameters per statement.
const BATCH_ROWS: usize = 500;

/// What a move copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Rows per table, in the order copied.
    pub tables: Vec<(String, u64)>,
    pub last_serial: i64,
    pub signed_serial: i64,
}

#[derive(Clone, Copy)]
enum Column {
    Integer,
    Text,
    Blob,
}

struct Table {
    name: String,
    columns: Vec<(String, Column)>,
    /// Tables its foreign keys reference.
    parents: BTreeSet<String>,
}

/// `name` as an SQL identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Database {
    /// Copies this SQLite database into the PostgreSQL database at `url`, which must hold no
    /// table yet; it is given the current schema first. Writers wait while the copy runs (it
    /// holds SQLite's write lock), so what is copied is one state of the index.
    pub async fn move_to_postgres(&self, url: &str) -> Result<(Database, Moved)> {
        if self.backend != Backend::Sqlite {
            return Err(Error::Config(format!(
                "{} is not an SQLite database: only the SQLite file moves",
                self.location
            )));
        }
        Backend::of_url(url)?;
        let target = Database::connect_unmigrated(url).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() ORDER BY table_name",
        )
        .fetch_all(&target.pool)
        .await?;
        if !tables.is_empty() {
            return Err(Error::Config(format!(
                "the database {} is not empty (it has the tables {}): give a new, empty \
                 database (`createdb NAME`, or `CREATE DATABASE name` in psql), or drop its \
                 tables if they are a failed earlier move",
                target.location,
                tables.join(", ")
            )));
        }
        target.migrate().await?;
        let mut source = self.begin_write().await?;
        let tables = source_tables(&mut source).await?;
        let mut tx = target.begin_write().await?;
        // The schema's own rows (the signed serial, the cooldown state, the mirror user) are
        // replaced by the source's.
        for table in tables.iter().rev() {
            sqlx::query(&format!("DELETE FROM {}", quoted(&table.name)))
                .execute(&mut *tx)
                .await?;
        }
        let mut moved = Moved::default();
        for table in &tables {
            let rows = copy_table(&mut source, &mut tx, table).await?;
            moved.tables.push((table.name.clone(), rows));
        }
        reset_sequences(&mut source, &mut tx).await?;
        tx.commit().await?;
        source.rollback().await?;
        moved.last_serial = target.last_serial().await?;
        moved.signed_serial = target.signed_serial().await?;
        Ok((target, moved))
    }

    /// A connection to PostgreSQL that leaves the schema alone.
    async fn connect_unmigrated(url: &str) -> Result<Database> {
        sqlx::any::install_default_drivers();
        let options: sqlx::any::AnyConnectOptions = url.parse()?;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(super::ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Database {
            writer: pool.clone(),
            pool,
            backend: Backend::Postgres,
            location: super::redact(url),
            url: Some(super::Secret(url.into())),
        })
    }
}

/// The source's tables with their columns, parents first.
async fn source_tables(source: &mut Tx) -> Result<Vec<Table>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         ORDER BY name",
    )
    .fetch_all(&mut **source)
    .await?;
    let mut tables = BTreeMap::new();
    for name in names {
        let columns = sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
            .bind(&name)
            .fetch_all(&mut **source)
            .await?
            .iter()
            .map(|row| {
                let column: String = row.get(0);
                let declared: String = row.get(1);
                // SQLite's affinity rule: a declared type containing INT is an integer (the
                // portable migrations declare BIGINT).
                let kind = match declared.to_ascii_uppercase().as_str() {
                    integer if integer.contains("INT") => Column::Integer,
                    "TEXT" => Column::Text,
                    "BLOB" => Column::Blob,
                    other => {
                        return Err(Error::Config(format!(
                            "column {name}.{column} has the type {other:?}, which a move \
                             cannot copy"
                        )));
                    }
                };
                Ok((column, kind))
            })
            .collect::<Result<Vec<_>>>()?;
        let parents: BTreeSet<String> =
            sqlx::query_scalar::<_, String>("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(&name)
                .fetch_all(&mut **source)
                .await?
                .into_iter()
                .filter(|parent| *parent != name)
                .collect();
        tables.insert(
            name.clone(),
            Table {
                name,
                columns,
                parents,
            },
        );
    }
    // Parents first: each round takes the tables whose parents are all placed.
    let mut ordered: Vec<Table> = Vec::new();
    while !tables.is_empty() {
        let placed: BTreeSet<String> = ordered.iter().map(|t| t.name.clone()).collect();
        let ready: Vec<String> = tables
            .values()
            .filter(|t| {
                t.parents
                    .iter()
                    .all(|p| placed.contains(p) || !tables.contains_key(p))
            })
            .map(|t| t.name.clone())
            .collect();
        if ready.is_empty() {
            return Err(Error::Config(
                "the tables' foreign keys form a cycle: no order to copy them in".into(),
            ));
        }
        for name in ready {
            ordered.extend(tables.remove(&name));
        }
    }
    Ok(ordered)
}

async fn copy_table(source: &mut Tx, target: &mut Tx, table: &Table) -> Result<u64> {
    let names: Vec<String> = table.columns.iter().map(|(name, _)| quoted(name)).collect();
    let select = format!(
        "SELECT {} FROM {} ORDER BY rowid",
        names.join(", "),
        quoted(&table.name)
    );
    let mut rows = sqlx::query(&select).fetch(&mut **source);
    let mut batch: Vec<sqlx::any::AnyRow> = Vec::new();
    let mut copied = 0;
    while let Some(row) = rows.next().await {
        batch.push(row?);
        if batch.len() == BATCH_ROWS {
            insert(target, table, &names, &batch).await?;
            copied += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        insert(target, table, &names, &batch).await?;
        copied += batch.len() as u64;
    }
    Ok(copied)
}

async fn insert(
    target: &mut Tx,
    table: &Table,
    names: &[String],
    rows: &[sqlx::any::AnyRow],
) -> Result<()> {
    let width = names.len();
    let values: Vec<String> = (0..rows.len())
        .map(|row| {
            let placeholders: Vec<String> = (1..=width)
                .map(|column| format!("${}", row * width + column))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quoted(&table.name),
        names.join(", "),
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        for (index, (_, kind)) in table.columns.iter().enumerate() {
            query = match kind {
                Column::Integer => query.bind(row.try_get::<Option<i64>, _>(index)?),
                Column::Text => query.bind(row.try_get::<Option<String>, _>(index)?),
                Column::Blob => query.bind(row.try_get::<Option<Vec<u8>>, _>(index)?),
            };
        }
    }
    query.execute(&mut **target).await?;
    Ok(())
}

/// Moves each identity column's sequence past the ids copied, and past every id SQLite ever
/// gave (`sqlite_sequence`, for AUTOINCREMENT tables such as the journal), so that a serial is
/// never given twice.
async fn reset_sequences(source: &mut Tx, target: &mut Tx) -> Result<()> {
    let given: BTreeMap<String, i64> = sqlx::query("SELECT name, seq FROM sqlite_sequence")
        .fetch_all(&mut **source)
        .await?
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
        .collect();
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut **target)
    .await?;
    for (table, column) in identities {
        let floor = given.get(&table).copied().unwrap_or(0);
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2),
                 GREATEST(COALESCE((SELECT MAX({column}) FROM {table}), 0), $3) + 1, false)",
            column = quoted(&column),
            table = quoted(&table),
        );
        sqlx::query(&sql)
            .bind(quoted(&table))
            .bind(&column)
            .bind(floor)
            .execute(&mut **target)
            .await?;
    }
    Ok(())
}
