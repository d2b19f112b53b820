//! The database's behaviour, each test run on SQLite and on PostgreSQL (see `both_backends!`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn new_file(project: &str, version: &str, filename: &str, content: char) -> NewFile {
    NewFile {
        project: ProjectName::new(project).unwrap(),
        display_name: project.to_string(),
        version: Version::new(version).unwrap(),
        release_metadata: format!("Name: {project}\nVersion: {version}\n").into_bytes(),
        file: FileRecord {
            filename: filename.to_string(),
            version: version.to_string(),
            packagetype: "bdist_wheel".into(),
            python_version: "py3".into(),
            size: 10,
            sha256: content.to_string().repeat(64),
            md5: "m".repeat(32),
            blake2_256: "b".repeat(64),
            requires_python: None,
            metadata_sha256: None,
            upload_time_micros: now_micros(),
            yanked: None,
            provenance_sha256: None,
        },
        provenance: None,
    }
}

pub(super) fn wheel(project: &str, version: &str, content: char) -> NewFile {
    new_file(
        project,
        version,
        &format!("{project}-{version}-py3-none-any.whl"),
        content,
    )
}

both_backends!(placeholders_bind_by_number, bind_by_number);
async fn bind_by_number(database: Database) {
    // sqlx's SQLite driver reads `$N` as parameter N, not as the Nth placeholder: every query
    // relies on this to run unchanged on both backends.
    let (second, first, again): (String, String, String) = sqlx::query_as("SELECT $2, $1, $2")
        .bind("one")
        .bind("two")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(
        (second.as_str(), first.as_str(), again.as_str()),
        ("two", "one", "two")
    );
}

both_backends!(uploads_yanks_and_the_journal, uploads_yanks_journal);
async fn uploads_yanks_journal(database: Database) {
    let alice = database.user("alice").await.unwrap();
    let bob = database.user("bob").await.unwrap();
    assert_ne!(alice.user_id, bob.user_id);
    assert_eq!(database.user("alice").await.unwrap().user_id, alice.user_id);

    let first = wheel("demo", "1.0", 'a');
    assert_eq!(
        database.check_file(&alice, &first).await.unwrap(),
        Ok(Added::New { serial: 0 })
    );
    assert_eq!(
        database
            .add_file(&alice, &first, async || Ok(()))
            .await
            .unwrap(),
        Ok(Added::New { serial: 1 })
    );
    assert_eq!(
        database
            .add_file(&alice, &first, async || Ok(()))
            .await
            .unwrap(),
        Ok(Added::Unchanged)
    );
    assert!(matches!(
        database
            .add_file(&alice, &wheel("demo", "1.0", 'b'), async || Ok(()))
            .await
            .unwrap(),
        Err(AddRefused::FileExists { .. })
    ));
    assert!(matches!(
        database
            .add_file(&bob, &wheel("demo", "2.0", 'c'), async || Ok(()))
            .await
            .unwrap(),
        Err(AddRefused::NotOwner { .. })
    ));
    assert!(matches!(
        database
            .add_file(&alice, &wheel("demo", "1.0.0", 'd'), async || Ok(()))
            .await
            .unwrap(),
        Err(AddRefused::VersionSpelling { .. })
    ));
    let sdist = |name: &str, content| new_file("demo", "1.0", name, content);
    assert_eq!(
        database
            .add_file(&alice, &sdist("demo-1.0.tar.gz", 'e'), async || Ok(()))
            .await
            .unwrap(),
        Ok(Added::New { serial: 2 })
    );
    let mut real = new_file("demo", "3.0", "demo-3.0.tar.gz", 'g');
    real.file.packagetype = "sdist".into();
    assert_eq!(
        database
            .add_file(&alice, &real, async || Ok(()))
            .await
            .unwrap(),
        Ok(Added::New { serial: 3 })
    );
    let mut another = new_file("demo", "3.0", "demo-3.0.zip", 'h');
    another.file.packagetype = "sdist".into();
    assert!(matches!(
        database
            .add_file(&alice, &another, async || Ok(()))
            .await
            .unwrap(),
        Err(AddRefused::SecondSdist { .. })
    ));

    // Files sort by name, byte-wise on both backends ('-' before '.', uppercase first).
    let name = ProjectName::new("demo").unwrap();
    let (project, versions, files) = database.project_state(&name).await.unwrap().unwrap();
    assert_eq!(project.last_serial, 3);
    assert_eq!(
        versions.iter().map(Version::as_str).collect::<Vec<_>>(),
        ["1.0", "3.0"]
    );
    let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo-1.0-py3-none-any.whl",
            "demo-1.0.tar.gz",
            "demo-3.0.tar.gz"
        ]
    );
    let releases = database.releases(project.id).await.unwrap();
    assert_eq!(releases[0].metadata, b"Name: demo\nVersion: 1.0\n");

    // Yanking one file, then the release, journals each change once.
    let version = Version::new("1.0").unwrap();
    let changed = database
        .set_yanked(&name, &version, Some("demo-1.0.tar.gz"), Some("broken"))
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(
        database
            .set_yanked(&name, &version, Some("demo-1.0.tar.gz"), Some("broken"))
            .await
            .unwrap(),
        0
    );
    let yanked = database.file("demo-1.0.tar.gz").await.unwrap().unwrap();
    assert_eq!(yanked.yanked.as_deref(), Some("broken"));
    assert_eq!(
        database
            .set_yanked(&name, &version, None, Some(""))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        database
            .set_yanked(&name, &version, None, None)
            .await
            .unwrap(),
        2
    );
    assert!(
        database
            .file("demo-1.0.tar.gz")
            .await
            .unwrap()
            .unwrap()
            .yanked
            .is_none()
    );
    assert!(matches!(
        database
            .set_yanked(&name, &Version::new("9").unwrap(), None, None)
            .await,
        Err(Error::NoRelease { .. })
    ));

    // The journal in serial order; signing never moves back.
    let journal = database.journal_after(0, 100).await.unwrap();
    let serials: Vec<i64> = journal.iter().map(|(serial, _)| *serial).collect();
    assert_eq!(serials, [1, 2, 3, 4, 5, 6]);
    assert_eq!(database.last_serial().await.unwrap(), 6);
    assert_eq!(database.journal_after(4, 1).await.unwrap()[0].0, 5);
    assert_eq!(database.journal_count_after(4).await.unwrap(), 2);
    assert!(database.oldest_unsigned().await.unwrap().is_some());
    // Only the lease holder under its epoch records the signed serial.
    let epoch = database
        .create_lease("publisher-a", 0, 5_000)
        .await
        .unwrap()
        .expect("the first lease is taken");
    assert!(
        !database
            .set_signed_serial_fenced(5, "publisher-a", epoch + 1, None)
            .await
            .unwrap()
    );
    assert!(
        !database
            .set_signed_serial_fenced(5, "publisher-b", epoch, None)
            .await
            .unwrap()
    );
    assert_eq!(database.signed_serial().await.unwrap(), 0);
    let fenced = |serial| database.set_signed_serial_fenced(serial, "publisher-a", epoch, None);
    assert!(fenced(5).await.unwrap());
    assert!(fenced(3).await.unwrap());
    assert_eq!(database.signed_serial().await.unwrap(), 5);
    assert!(fenced(6).await.unwrap());
    assert_eq!(database.oldest_unsigned().await.unwrap(), None);
    database.reset_signed_serial().await.unwrap();
    assert_eq!(database.signed_serial().await.unwrap(), 0);

    // What `tufa verify` reads.
    let stored = database.stored_files(0, 10).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|file| !file.mirrored));
    assert!(database.references(&"a".repeat(64)).await.unwrap());
    assert!(!database.references(&"z".repeat(64)).await.unwrap());
    assert!(database.stores_file(&"g".repeat(64)).await.unwrap());
    let mut lock = database.write_lock().await.unwrap();
    assert!(lock.references(&"a".repeat(64)).await.unwrap());
    drop(lock);

    // Projects the publisher could not publish.
    database
        .record_unpublished("demo", "full disk", Duration::from_secs(60))
        .await
        .unwrap();
    database
        .record_unpublished("demo", "still full", Duration::from_secs(60))
        .await
        .unwrap();
    let (count, listed) = database.unpublished(10).await.unwrap();
    assert_eq!((count, listed[0].attempts), (1, 2));
    assert_eq!(listed[0].error, "still full");
    assert!(database.unpublished_due(10).await.unwrap().is_empty());
    database.clear_unpublished(&["demo"]).await.unwrap();
    assert_eq!(database.unpublished(10).await.unwrap().0, 0);
    assert_eq!(database.projects().await.unwrap(), [(name.clone(), 6)]);
    database.truncate_wal().await.unwrap();
}

both_backends!(tokens_expire_and_are_revoked, tokens);
async fn tokens(database: Database) {
    let project = ProjectName::new("demo").unwrap();
    let token = database
        .create_token("alice", Some(&project), None)
        .await
        .unwrap();
    let later = database
        .create_token("alice", None, Some(now_micros() + 60_000_000))
        .await
        .unwrap();
    match database.authenticate(&token).await.unwrap() {
        Authenticated::Valid(identity) => {
            assert_eq!(identity.user, "alice");
            assert_eq!(identity.project, Some(project));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        database.authenticate("tufa-unknown").await.unwrap(),
        Authenticated::Unknown
    ));
    let listed = database.tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].last_used_micros.is_some());
    assert!(listed[1].expires_micros.is_some());
    assert_eq!(
        database.revoke_token(listed[1].id).await.unwrap(),
        Revocation::Revoked
    );
    assert!(matches!(
        database.revoke_token(listed[1].id).await.unwrap(),
        Revocation::AlreadyRevoked { .. }
    ));
    assert!(matches!(
        database.authenticate(&later).await.unwrap(),
        Authenticated::Revoked { .. }
    ));
    let missing: TokenId = "999".parse().unwrap();
    assert_eq!(
        database.revoke_token(missing).await.unwrap(),
        Revocation::NoSuchToken
    );
    assert!(database.create_token("a:b", None, None).await.is_err());
}

both_backends!(concurrent_writers_commit_serials_in_order, serials_in_order);
async fn serials_in_order(database: Database) {
    // Writers race; a reader follows the journal as the publisher does, from the last serial it
    // saw. A serial drawn by one writer and committed after a higher one would be passed over:
    // the write lock must make that impossible.
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let database = database.clone();
            tokio::spawn(async move {
                let identity = database.user(&format!("user{writer}")).await.unwrap();
                for n in 0..15 {
                    let mut new = wheel(&format!("p{writer}"), &format!("{n}.0"), 'a');
                    new.file.sha256 = format!("{writer:032}{n:032}");
                    assert!(matches!(
                        database
                            .add_file(&identity, &new, async || Ok(()))
                            .await
                            .unwrap(),
                        Ok(Added::New { .. })
                    ));
                }
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let mut finished = false;
    loop {
        let done = writers.iter().all(|writer| writer.is_finished());
        for (serial, _) in database.journal_after(cursor, 1000).await.unwrap() {
            assert!(serial > cursor);
            seen.insert(serial);
            cursor = serial;
        }
        if finished {
            break;
        }
        // One more read after every writer ended.
        finished = done;
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all: BTreeSet<i64> = database
        .journal_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(serial, _)| serial)
        .collect();
    assert_eq!(all.len(), 90);
    assert_eq!(
        seen, all,
        "the reader passed over a serial that committed late"
    );
}

both_backends!(
    concurrent_uploads_of_one_project_all_land,
    one_project_at_once
);
async fn one_project_at_once(database: Database) {
    // Uploads of one project, the first of which creates it, race: each must see what the others
    // committed (the project, a release), never fail on a row another inserted meanwhile.
    let identity = database.user("alice").await.unwrap();
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let (database, identity) = (database.clone(), identity.clone());
            tokio::spawn(async move {
                for n in 0..10 {
                    let mut new = wheel("shared", &format!("{}.0", n % 3), 'a');
                    new.file.filename = format!("shared-{}.0-{writer}{n}-py3-none-any.whl", n % 3);
                    new.file.sha256 = format!("{writer:032}{n:032}");
                    let added = database.add_file(&identity, &new, async || Ok(())).await;
                    assert!(matches!(added, Ok(Ok(Added::New { .. }))), "{added:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let project = database
        .project(&ProjectName::new("shared").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(database.releases(project.id).await.unwrap().len(), 3);
    assert_eq!(database.journal_after(0, 1000).await.unwrap().len(), 60);
}

both_backends!(a_committed_journal_entry_is_announced, announced);
async fn announced(database: Database) {
    let Some(mut listener) = database.journal_listener().await.unwrap() else {
        assert_eq!(
            database.backend(),
            Backend::Sqlite,
            "PostgreSQL always listens"
        );
        return;
    };
    let identity = database.user("alice").await.unwrap();
    let added = database
        .add_file(&identity, &wheel("announced", "1.0", 'a'), async || Ok(()))
        .await;
    assert!(matches!(added, Ok(Ok(Added::New { .. }))), "{added:?}");
    tokio::time::timeout(Duration::from_secs(30), listener.next())
        .await
        .expect("the upload's journal entry was announced")
        .unwrap();
}

// Opening a database migrates it once; a second open finds it current.
both_backends!(the_schema_is_current_after_opening, schema_current);
async fn schema_current(database: Database) {
    assert_eq!(database.schema_version().await.unwrap(), SCHEMA_VERSION);
    database.migrate().await.unwrap();
    assert_eq!(database.schema_version().await.unwrap(), SCHEMA_VERSION);
    // The mirror user the schema creates exists once.
    let mirror: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name = $1")
        .bind(MIRROR_USER)
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(mirror, 1);
}

/// The SQLite file is opened by URL: a data directory whose path holds URL syntax still gets
/// its database at exactly that path.
#[tokio::test]
async fn an_sqlite_path_with_url_syntax_opens_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a b%20c?d#e ü");
    std::fs::create_dir_all(&odd).unwrap();
    let database = Database::open(&odd.join("tufa.db")).await.unwrap();
    database.user("alice").await.unwrap();
    database.close().await;
    assert!(odd.join("tufa.db").is_file());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

both_backends!(provenance_is_recorded_with_its_file, provenance_with_file);
async fn provenance_with_file(database: Database) {
    let alice = database.user("alice").await.unwrap();
    let mut attested = wheel("demo", "1.0", 'a');
    let provenance = super::NewProvenance {
        json: r#"{"version":1,"attestation_bundles":[]}"#.into(),
        sha256: "9f".repeat(32),
        publisher: r#"{"kind":"GitHub","repository":"o/demo"}"#.into(),
    };
    attested.provenance = Some(provenance.clone());
    database
        .add_file(&alice, &attested, async || Ok(()))
        .await
        .unwrap()
        .unwrap();
    database
        .add_file(&alice, &wheel("demo", "2.0", 'b'), async || Ok(()))
        .await
        .unwrap()
        .unwrap();
    let name = ProjectName::new("demo").unwrap();
    let version = Version::new("1.0").unwrap();
    let filename = "demo-1.0-py3-none-any.whl";
    assert_eq!(
        database
            .provenance(&name, &version, filename)
            .await
            .unwrap(),
        Some(Some(provenance.json.clone()))
    );
    assert_eq!(
        database
            .provenance(
                &name,
                &Version::new("2.0").unwrap(),
                "demo-2.0-py3-none-any.whl"
            )
            .await
            .unwrap(),
        Some(None)
    );
    assert_eq!(
        database
            .provenance(&name, &version, "demo-1.0.tar.gz")
            .await
            .unwrap(),
        None
    );
    let file = database.file(filename).await.unwrap().unwrap();
    assert_eq!(file.provenance_sha256, Some(provenance.sha256.clone()));
    let listed = database.project_provenance(&name).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].publisher, Some(provenance.publisher));
    assert_eq!(listed[1].publisher, None);
}
