//! The PostgreSQL backend against a real PostgreSQL server: `tufa database move` from SQLite,
//! after which the same data directory serves the same serials and signed repository; and a
//! database that goes away and comes back (503 with the reason meanwhile, nothing half-written,
//! recovery without a restart).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{TUFA, ok, pip, tufa};
use tufa_testkit::TufaServer;
use tufa_testkit::http::{self, RawResponse};
use tufa_testkit::postgres::{Cluster, fresh_database};

fn status(server: &TufaServer) -> (i64, i64) {
    let status = http::get(&format!("{}/status", server.url), &[]).json();
    (
        status["last_serial"].as_i64().unwrap(),
        status["signed_serial"].as_i64().unwrap(),
    )
}

fn upload(server: &TufaServer, token: &str, project: &str, version: &str) -> RawResponse {
    server.upload_wheel(token, project, version)
}

fn data_arg(data: &Path) -> &str {
    data.to_str().unwrap()
}

#[test]
fn database_move_keeps_serials_tokens_and_the_signed_repository() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // On SQLite whatever TUFA_TEST_BACKEND says: this is the index to move.
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &["--database", ""]);
    let token = server.create_token("alice");
    for (project, version) in [("alpha", "1.0"), ("alpha", "1.1"), ("beta", "0.1")] {
        let answer = upload(&server, &token, project, version);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    ok(
        tufa(&["yank", "--data", data_arg(&data), "alpha", "1.0"]),
        "tufa yank",
    );
    let signed = server.wait_until_signed();
    let before_page = http::get(&format!("{}/simple/alpha/", server.url), &[]).body;
    let tokens_before = ok(
        tufa(&["token", "list", "--data", data_arg(&data)]),
        "tufa token list",
    );
    let url = fresh_database();
    let busy = tufa(&["database", "move", "--data", data_arg(&data), "--to", &url]);
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success());
    assert!(said.contains("stop it, then move"), "{said}");
    server.kill();
    let serials = format!("serials: {signed} recorded, {signed} signed");

    let moved = ok(
        tufa(&["database", "move", "--data", data_arg(&data), "--to", &url]),
        "tufa database move",
    );
    assert!(moved.contains(&serials), "{moved}");
    // The SQLite file stays, with everything it held (opening it checkpoints its WAL, so its
    // bytes may change; its content does not).
    let left = ok(
        tufa(&["status", "--data", data_arg(&data), "--database", ""]),
        "tufa status on the SQLite file",
    );
    assert!(left.contains(&serials), "{left}");
    let recorded = std::fs::read_to_string(data.join("locations.toml")).unwrap();
    assert!(
        recorded.contains(&format!("database = \"{url}\"")),
        "{recorded}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("locations.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Moving again is refused: nothing is left to move.
    let again = tufa(&["database", "move", "--data", data_arg(&data), "--to", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already runs on"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Another index into the now non-empty database is refused, naming the fix.
    let other = dir.path().join("other");
    drop(TufaServer::start(
        TUFA.as_ref(),
        &other,
        &["--database", ""],
    ));
    let refused = tufa(&["database", "move", "--data", data_arg(&other), "--to", &url]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("is not empty") && said.contains("createdb"),
        "{said}"
    );

    // The same data directory now serves from PostgreSQL: same serials, tokens, pages; the
    // start-up check of the signed repository against the database passes.
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    assert_eq!(status(&server), (signed, signed));
    assert_eq!(
        http::get(&format!("{}/simple/alpha/", server.url), &[]).body,
        before_page
    );
    assert_eq!(
        ok(
            tufa(&["token", "list", "--data", data_arg(&data)]),
            "tufa token list"
        ),
        tokens_before
    );
    let answer = upload(&server, &token, "beta", "0.2");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(server.wait_until_signed(), signed + 1);
    let target = dir.path().join("installed");
    ok(
        pip(&server.simple_url(), &target, &["beta==0.2"]),
        "pip install",
    );
    assert!(target.join("beta").exists() || target.join("beta-0.2.dist-info").exists());
    ok(
        tufa(&["verify", "--data", data_arg(&data)]),
        "tufa verify after the move",
    );
}

/// Polls `url` until it answers `status`, for up to a minute.
fn eventually(url: &str, status: u16) -> RawResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http::get(url, &[]);
        if answer.status == status || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_database_outage_answers_503_with_the_reason_and_the_index_recovers() {
    let cluster = Cluster::private();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let database = cluster.fresh_database();
    let server = TufaServer::start(TUFA.as_ref(), &data, &["--database", &database]);
    let token = server.create_token("alice");
    let answer = upload(&server, &token, "demo", "1.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    let page = format!("{}/simple/demo/", server.url);
    let held = http::get(&page, &[]);
    assert_eq!(held.status, 200, "{}", held.text());
    let unknown = format!("{}/simple/never-asked-for/", server.url);

    cluster.stop();
    // A page this replica rendered is still served; one it never rendered cannot be.
    let answer = http::get(&page, &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, held.body, "the newest page held is served");
    let answer = http::get(&unknown, &[]);
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(
        answer
            .reason
            .starts_with("Service Unavailable: database unavailable ("),
        "the reason is in the status line: {:?}",
        answer.reason
    );
    let refused = upload(&server, &token, "demo", "2.0");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.reason.contains("database unavailable"),
        "{:?}",
        refused.reason
    );
    let files_dir = data.join("files");
    let before = walk(&files_dir);

    cluster.start().unwrap();
    // The pool reconnects by itself: no restart of the server.
    let answer = eventually(&page, 200);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        !answer.text().contains("demo-2.0"),
        "the refused upload left no record"
    );
    assert_eq!(walk(&files_dir), before, "the refused upload left no file");
    let answer = upload(&server, &token, "demo", "2.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.wait_until_signed();
    assert!(http::get(&page, &[]).text().contains("demo-2.0"));
}

/// How many files are under `dir` (0 when it does not exist).
fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() { walk(&path) } else { 1 }
            })
            .sum()
    })
}
