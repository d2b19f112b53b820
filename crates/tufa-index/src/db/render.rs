//! Many projects' pages read at once, for the publisher. A first publish of a large index (a
//! moved or imported one: hundreds of thousands of journal entries) renders a page per project;
//! read one project at a time that is a transaction and three statements per project, which on
//! PostgreSQL are round trips that take longer than rendering and signing the page.

use std::collections::HashMap;

use sqlx::Row;

use super::{
    Database, FILE_COLUMNS, FileRecord, PROJECT_COLUMNS, Project, Tx, file_record, project_record,
};
use crate::error::Result;
use crate::name::{ProjectName, Version};

/// At most this many projects are read by one statement of [`Database::project_states`]: well
/// under the bound variables a statement may have (32,766 in SQLite, 65,535 in PostgreSQL), and
/// a few megabytes of rows.
pub const PROJECTS_PER_READ: usize = 1_000;

/// A project with its release versions (in PEP 440 order) and its files (by file name): what its
/// pages are rendered from.
pub type ProjectState = (Project, Vec<Version>, Vec<FileRecord>);

/// `$first, $first+1, ...`: `count` placeholders for an `IN (...)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Database {
    /// Each of `names` that is a project, with its releases and files, as
    /// [`Database::project_state`] reads one: in one transaction, with three statements per
    /// [`PROJECTS_PER_READ`] names.
    pub async fn project_states(
        &self,
        names: &[ProjectName],
    ) -> Result<HashMap<ProjectName, ProjectState>> {
        let mut states = HashMap::with_capacity(names.len());
        if names.is_empty() {
            return Ok(states);
        }
        let mut tx = self.begin_read().await?;
        for chunk in names.chunks(PROJECTS_PER_READ) {
            read_states(&mut tx, chunk, &mut states).await?;
        }
        tx.commit().await?;
        Ok(states)
    }
}

async fn read_states(
    tx: &mut Tx,
    names: &[ProjectName],
    states: &mut HashMap<ProjectName, ProjectState>,
) -> Result<()> {
    let by_name = format!(
        "{PROJECT_COLUMNS} WHERE projects.name IN ({})",
        placeholders(1, names.len())
    );
    let mut query = sqlx::query(&by_name);
    for name in names {
        query = query.bind(name.as_str());
    }
    let projects = query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(project_record)
        .collect::<Result<Vec<Project>>>()?;
    if projects.is_empty() {
        return Ok(());
    }
    let ids = placeholders(1, projects.len());

    // The columns `file_record` reads, then the project each file belongs to.
    let (columns, from) = FILE_COLUMNS
        .split_once(" FROM ")
        .expect("FILE_COLUMNS has a FROM clause");
    let by_release = format!(
        "{columns}, releases.project_id AS project_id FROM {from}
         WHERE releases.project_id IN ({ids}) ORDER BY files.filename"
    );
    let mut query = sqlx::query(&by_release);
    for project in &projects {
        query = query.bind(project.id);
    }
    let mut files: HashMap<i64, Vec<FileRecord>> = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        files
            .entry(row.get::<i64, _>("project_id"))
            .or_default()
            .push(file_record(&row));
    }

    let versions_of =
        format!("SELECT project_id, version FROM releases WHERE project_id IN ({ids})");
    let mut query = sqlx::query(&versions_of);
    for project in &projects {
        query = query.bind(project.id);
    }
    let mut versions: HashMap<i64, Vec<Version>> = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        versions
            .entry(row.get(0))
            .or_default()
            .push(Version::new(row.get::<&str, _>(1))?);
    }

    for project in projects {
        let mut versions = versions.remove(&project.id).unwrap_or_default();
        versions.sort();
        let files = files.remove(&project.id).unwrap_or_default();
        states.insert(project.name.clone(), (project, versions, files));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::wheel;

    both_backends!(
        many_projects_read_as_each_alone,
        many_projects_read_as_each_alone
    );
    async fn many_projects_read_as_each_alone(database: Database) {
        let alice = database.user("alice").await.unwrap();
        // Releases uploaded out of PEP 440 order and files out of name order, a yanked release,
        // and a name that is no project.
        for (project, version, content) in [
            ("beta", "1.10", 'a'),
            ("alpha", "2.0rc1", 'b'),
            ("beta", "1.9", 'c'),
            ("alpha", "1.0", 'd'),
            ("gamma", "0.1", 'e'),
            ("beta", "1.9.post1", 'f'),
        ] {
            let added = database
                .add_file(&alice, &wheel(project, version, content), async || Ok(()))
                .await
                .unwrap();
            assert!(added.is_ok(), "{added:?}");
        }
        database
            .set_yanked(
                &ProjectName::new("beta").unwrap(),
                &Version::new("1.9").unwrap(),
                None,
                Some("broken"),
            )
            .await
            .unwrap();
        let names: Vec<ProjectName> = ["gamma", "missing", "beta", "alpha"]
            .into_iter()
            .map(|name| ProjectName::new(name).unwrap())
            .collect();

        let mut states = database.project_states(&names).await.unwrap();

        assert_eq!(states.len(), 3, "every project, no entry for a missing one");
        for name in &names {
            let alone = database.project_state(name).await.unwrap();
            let together = states.remove(name);
            let page = |state: Option<ProjectState>| {
                state.map(|(project, versions, files)| {
                    crate::pages::project_json(&project, &versions, &files)
                })
            };
            assert_eq!(
                page(together).map(String::from_utf8),
                page(alone).map(String::from_utf8),
                "{name}"
            );
        }
        assert!(database.project_states(&[]).await.unwrap().is_empty());
    }
}
