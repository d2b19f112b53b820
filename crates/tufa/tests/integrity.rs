//! Data-directory integrity end to end: a real `tufa serve` refuses a database that does not
//! match its published TUF repository, names signed by the repository stay reserved, and
//! `tufa verify` finds (and with `--repair` removes) what is wrong, beside a running server.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

mod common;

use common::{TUFA, output_text, page_files, python_tuf, serve_refused, token, tufa, twine};
use tufa_testkit::{Built, Project, PythonEnv, TufaServer, sha256_hex};

/// These tests delete, restore and edit the SQLite file and the files under `tuf/` and `files/`
/// (moving them aside, ageing them), so every start runs on SQLite and the data directory's
/// storage whatever `TUFA_TEST_BACKEND` says (`tufa serve` records no choice that is the
/// default, and the testkit would move a prepared directory into a bucket).
fn start(data: &Path, extra: &[&str]) -> TufaServer {
    let mut args = vec!["--database", "", "--storage", ""];
    args.extend(extra);
    TufaServer::start(TUFA.as_ref(), data, &args)
}

fn build(dir: &Path, name: &str, version: &str, payload: &str) -> Built {
    Project {
        name,
        version,
        dependencies: &[],
        payload,
    }
    .build(PythonEnv::shared(), dir)
}

fn upload(server: &TufaServer, token: &str, built: &Built) {
    let output = twine(server, token, &[&built.wheel, &built.sdist], &[]);
    assert!(
        output.status.success(),
        "twine upload failed:\n{}",
        output_text(&output)
    );
}

fn database_files(data: &Path) -> Vec<PathBuf> {
    ["tufa.db", "tufa.db-wal", "tufa.db-shm"]
        .iter()
        .map(|name| data.join(name))
        .collect()
}

/// Copies the database (with its WAL) of a stopped server to `to`, or back.
fn copy_database(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for (source, target) in database_files(from).iter().zip(database_files(to)) {
        let _ = fs::remove_file(&target);
        if source.exists() {
            fs::copy(source, &target).unwrap();
        }
    }
}

fn verify(data: &Path, repair: bool) -> (bool, String) {
    let mut args = vec!["verify", "--data", data.to_str().unwrap()];
    if repair {
        args.push("--repair");
    }
    let output = tufa(&args);
    (output.status.success(), output_text(&output))
}

fn stored(data: &Path, file: &Path) -> PathBuf {
    let sha256 = sha256_hex(&fs::read(file).unwrap());
    data.join("files").join(&sha256[..2]).join(sha256)
}

fn age_by(path: &Path, age: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[test]
fn a_deleted_database_stops_the_server_and_its_signed_names_stay_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let original = build(dir.path(), "tufa-keep", "1.0", "original");
    let server = start(&data, &[]);
    upload(&server, &token(&data, "alice", None), &original);
    server.wait_until_signed();
    drop(server);

    for file in database_files(&data) {
        let _ = fs::remove_file(file);
    }
    let refusal = serve_refused(&data);
    for expected in [
        data.join("tufa.db").display().to_string(),
        data.join("tuf").display().to_string(),
        "tufa-keep".into(),
        "restore the database backup".into(),
        "start a new repository".into(),
    ] {
        assert!(refusal.contains(&expected), "{expected:?} in:\n{refusal}");
    }

    // Started on purpose as it is: the signed name cannot be taken, by anyone.
    let server = start(&data, &["--accept-data-mismatch"]);
    let impostor = build(dir.path(), "tufa-keep", "1.0.1", "impostor");
    let mallory = token(&data, "mallory", None);
    let output = twine(&server, &mallory, &[&impostor.wheel], &[]);
    let text = output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("409") && text.contains("reserved"), "{text}");
    let other = build(dir.path(), "tufa-other", "1.0", "other");
    upload(&server, &mallory, &other);
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["tufa-keep"]);
    assert_eq!(
        page_files(&view["pages"]["tufa-keep"])["tufa_keep-1.0-py3-none-any.whl"],
        sha256_hex(&fs::read(&original.wheel).unwrap()),
        "the signed page is the original one"
    );
}

#[test]
fn an_older_database_backup_or_a_missing_repository_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let alice = token(&data, "alice", None);
    upload(
        &server,
        &alice,
        &build(dir.path(), "tufa-old", "1.0", "one"),
    );
    server.wait_until_signed();
    drop(server);
    copy_database(&data, &dir.path().join("backup"));

    let server = start(&data, &[]);
    upload(
        &server,
        &alice,
        &build(dir.path(), "tufa-old", "2.0", "two"),
    );
    let newest = server.wait_until_signed();
    drop(server);
    copy_database(&data, &dir.path().join("newest"));

    copy_database(&dir.path().join("backup"), &data);
    let refusal = serve_refused(&data);
    for expected in [
        data.join("tufa.db").display().to_string(),
        data.join("tuf").display().to_string(),
        "older than the TUF repository".into(),
        format!("\"tufa-old\" shows serial {newest}"),
        "restore the database backup".into(),
    ] {
        assert!(refusal.contains(&expected), "{expected:?} in:\n{refusal}");
    }
    let (healthy, report) = verify(&data, false);
    assert!(!healthy, "{report}");
    assert!(report.contains("older than the TUF repository"), "{report}");

    // The repository moved away with the database still marking changes as signed.
    copy_database(&dir.path().join("newest"), &data);
    fs::rename(data.join("tuf"), dir.path().join("tuf-aside")).unwrap();
    let refusal = serve_refused(&data);
    for expected in [
        data.join("tufa.db").display().to_string(),
        data.join("tuf").display().to_string(),
        format!("signed up to serial {newest}"),
        "restore the repository from the backup".into(),
    ] {
        assert!(refusal.contains(&expected), "{expected:?} in:\n{refusal}");
    }
    assert!(
        !data.join("tuf/metadata/1.root.json").exists(),
        "no new repository was created"
    );

    // A new repository on purpose: every project of the database is signed into it.
    for name in ["dev-keys", "trusted-root.json"] {
        fs::rename(data.join(name), dir.path().join(format!("{name}-aside"))).unwrap();
    }
    let server = start(&data, &["--accept-data-mismatch"]);
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("python-tuf-new"), &["tufa-old"]);
    assert_eq!(view["pages"]["tufa-old"]["meta"]["_last-serial"], newest);
    drop(server);

    // With the original pair back, it starts and python-tuf verifies the newest state.
    for name in ["tuf", "dev-keys", "trusted-root.json"] {
        let _ = fs::remove_dir_all(data.join(name));
        let _ = fs::remove_file(data.join(name));
        fs::rename(dir.path().join(format!("{name}-aside")), data.join(name)).unwrap();
    }
    let server = start(&data, &[]);
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["tufa-old"]);
    assert_eq!(view["pages"]["tufa-old"]["meta"]["_last-serial"], newest);

    // A fresh directory still starts.
    TufaServer::start(TUFA.as_ref(), &dir.path().join("fresh"), &[]);
}

/// The current bin role file that lists `project`'s page.
fn bin_role_of(data: &Path, project: &str) -> PathBuf {
    let metadata = data.join("tuf/metadata");
    let target = format!("\"simple/{project}/index.json\"");
    let timestamp: serde_json::Value =
        serde_json::from_slice(&fs::read(metadata.join("timestamp.json")).unwrap()).unwrap();
    let version = &timestamp["signed"]["meta"]["snapshot.json"]["version"];
    let snapshot: serde_json::Value = serde_json::from_slice(
        &fs::read(metadata.join(format!("{version}.snapshot.json"))).unwrap(),
    )
    .unwrap();
    snapshot["signed"]["meta"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("bin-"))
        .map(|(name, meta)| metadata.join(format!("{}.{name}", meta["version"])))
        .find(|file| String::from_utf8_lossy(&fs::read(file).unwrap()).contains(&target))
        .expect("a bin role lists the page")
}

#[test]
fn verify_names_each_problem_and_repair_removes_only_what_nothing_references() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let alice = token(&data, "alice", None);
    let a = build(dir.path(), "tufa-a", "1.0", "a");
    let b = build(dir.path(), "tufa-b", "1.0", "b");
    upload(&server, &alice, &a);
    upload(&server, &alice, &b);
    server.wait_until_signed();
    let (healthy, report) = verify(&data, false);
    assert!(healthy, "a healthy directory verifies:\n{report}");
    assert!(report.contains("checked 4 distribution file(s) and 2 signed page(s): 0 problem(s)"));

    // Damage, beside the running server.
    let corrupted = stored(&data, &a.wheel);
    let good = fs::read(&corrupted).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    fs::write(&corrupted, &bad).unwrap();
    let bin = bin_role_of(&data, "tufa-b");
    let bin_aside = dir.path().join("bin-aside.json");
    fs::rename(&bin, &bin_aside).unwrap();
    let orphan = data.join("files/ab").join("ab".repeat(32));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"a race loser").unwrap();
    age_by(&orphan, Duration::from_secs(3600));
    let fresh_orphan = data.join("files/cd").join("cd".repeat(32));
    fs::create_dir_all(fresh_orphan.parent().unwrap()).unwrap();
    fs::write(&fresh_orphan, b"an upload about to record its row").unwrap();
    let staging = data.join("tmp/upload-left-by-a-crash");
    fs::write(&staging, b"partial").unwrap();
    age_by(&staging, Duration::from_secs(3600));
    let tuf_temp = data.join("tuf/metadata/9.snapshot.json.tufa-tmp");
    fs::write(&tuf_temp, b"partial").unwrap();
    age_by(&tuf_temp, Duration::from_secs(3600));
    let in_progress = data.join("tmp/upload-in-progress");
    fs::write(&in_progress, b"still arriving").unwrap();

    let (healthy, report) = verify(&data, false);
    assert!(!healthy, "{report}");
    let bin_name = bin.file_name().unwrap().to_str().unwrap();
    for expected in [
        format!(
            "{}: the file tufa_a-1.0-py3-none-any.whl has sha256",
            corrupted.display()
        ),
        format!("metadata/{bin_name} is missing"),
        format!("{}: no database row references", orphan.display()),
        format!("{}: a partial write left 60 minutes ago", staging.display()),
        format!(
            "{}: a partial write left 60 minutes ago",
            tuf_temp.display()
        ),
        "5 problem(s)".into(),
    ] {
        assert!(report.contains(&expected), "{expected:?} in:\n{report}");
    }
    assert_eq!(report.matches("Fix:").count(), 5, "{report}");
    assert!(!report.contains(&format!("problem: {}", fresh_orphan.display())));
    assert!(!report.contains(&format!("problem: {}", in_progress.display())));

    let (healthy, report) = verify(&data, true);
    assert!(!healthy, "{report}");
    assert!(
        report.contains(&format!("removed {}", orphan.display())),
        "{report}"
    );
    assert!(
        report.contains(&format!("removed {}", staging.display())),
        "{report}"
    );
    assert!(
        report.contains(&format!("removed {}", tuf_temp.display())),
        "{report}"
    );
    assert!(!orphan.exists() && !staging.exists() && !tuf_temp.exists());
    assert!(
        fresh_orphan.exists() && in_progress.exists(),
        "recent files stay"
    );
    for built in [&a, &b] {
        for file in [&built.wheel, &built.sdist] {
            assert!(stored(&data, file).exists(), "{} was kept", file.display());
        }
    }

    fs::rename(&bin_aside, &bin).unwrap();
    let (healthy, report) = verify(&data, false);
    assert!(!healthy, "{report}");
    assert!(
        report.contains("1 problem(s)"),
        "only the corrupted file:\n{report}"
    );
    assert!(
        report.contains(&corrupted.display().to_string()),
        "{report}"
    );
    fs::write(&corrupted, &good).unwrap();
    let (healthy, report) = verify(&data, false);
    assert!(healthy, "{report}");

    // A change the stopped server has not signed is pending, not wrong; a signed serial past
    // the journal's end is.
    let signed = server.wait_until_signed();
    drop(server);
    let data_arg = data.to_str().unwrap();
    common::ok(
        tufa(&["yank", "--data", data_arg, "tufa-b", "1.0"]),
        "tufa yank",
    );
    let (healthy, report) = verify(&data, false);
    assert!(healthy, "{report}");
    assert!(
        report.contains(&format!(
            "1 journal entr(ies) after the signed serial {signed} are pending"
        )),
        "{report}"
    );
    let set_signed = |serial: i64| {
        let script = "import sqlite3, sys\n\
            db = sqlite3.connect(sys.argv[1])\n\
            db.execute('UPDATE signed SET serial = ?', (int(sys.argv[2]),))\n\
            db.commit()\n";
        let output = PythonEnv::shared()
            .command("python")
            .args(["-c", script, data.join("tufa.db").to_str().unwrap()])
            .arg(serial.to_string())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
    };
    set_signed(signed + 5);
    let (healthy, report) = verify(&data, false);
    assert!(!healthy, "{report}");
    assert!(
        report.contains(&format!(
            "the journal ends at serial {}, but the database marks serial {} as signed",
            signed + 1,
            signed + 5
        )),
        "{report}"
    );
    set_signed(signed);

    let server = start(&data, &[]);
    server.wait_until_signed();
    let view = python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["tufa-a", "tufa-b"],
    );
    assert_eq!(
        page_files(&view["pages"]["tufa-a"])["tufa_a-1.0-py3-none-any.whl"],
        sha256_hex(&good)
    );
    assert_eq!(
        view["pages"]["tufa-b"]["files"][0]["yanked"], true,
        "the pending yank was signed at start"
    );
}
