//! The publisher under faults a server meets in production: a project whose page cannot be
//! stored, and a clock that ran ahead or fell behind. Each time the server stays up, every other
//! change is signed, nothing acknowledged is lost, and python-tuf verifies the repository.

use std::fs;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tufa_metadata::{Metadata, Timestamp};
mod common;

use common::{TUFA, python_tuf, token};
use tufa_testkit::faketime::clock_offset_env;
use tufa_testkit::{TufaServer, http};

/// These tests run on the data directory's storage whatever `TUFA_TEST_BACKEND` says, given at
/// every start (`tufa serve` records no storage choice that is the default, and the testkit
/// would move a prepared directory into a bucket).
const ON_THE_DATA_DIRECTORY: &[&str] = &["--storage", ""];

fn upload(server: &TufaServer, token: &str, project: &str, version: &str) {
    let response = server.upload_wheel(token, project, version);
    assert_eq!(response.status, 200, "{}", response.reason);
}

fn status(server: &TufaServer) -> Value {
    http::get(&format!("{}/status", server.url), &[]).json()
}

fn metric(server: &TufaServer, name: &str) -> f64 {
    let text = http::get(&format!("{}/metrics", server.url), &[]).text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `condition` on the server's status for up to 60 s.
fn wait_for(server: &TufaServer, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status(server);
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached within 60 s: {status}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_project_whose_page_cannot_be_stored_is_set_aside_and_every_other_change_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The test blocks a page with a file where the publisher needs a directory, which only a
    // file system has.
    let short_lives = [
        "--timestamp-expiry",
        "6",
        "--snapshot-expiry",
        "6",
        "--bin-expiry",
        "6",
        ON_THE_DATA_DIRECTORY[0],
        ON_THE_DATA_DIRECTORY[1],
    ];
    let server = TufaServer::start(TUFA.as_ref(), &data, &short_lives);
    let alice = token(&data, "alice", None);
    // Where the publisher must create the project's target directory stands a file: as a
    // directory the server cannot write would (we run as root, so permissions would not stop it).
    let blocker = data.join("tuf/targets/simple/blocked");
    fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    fs::write(&blocker, b"not a directory").unwrap();

    upload(&server, &alice, "blocked", "1.0");
    upload(&server, &alice, "fine", "1.0");
    let signed = server.wait_until_signed();
    let state = wait_for(&server, "the blocked project reported", |s| {
        s["unpublished"]["count"] == 1
    });
    assert_eq!(state["unpublished"]["projects"][0]["project"], "blocked");
    let reason = state["unpublished"]["projects"][0]["error"]
        .as_str()
        .unwrap();
    assert!(reason.contains("simple/blocked"), "{reason}");
    assert!(
        !reason.contains(data.to_str().unwrap()),
        "the server path leaked: {reason}"
    );
    assert_eq!(metric(&server, "tufa_unpublished_projects"), 1.0);
    // The online roles are still re-signed before they expire while the project waits.
    let version = state["timestamp_version"].as_u64().unwrap();
    wait_for(&server, "re-signing", |s| {
        s["timestamp_version"].as_u64() > Some(version) && s["unpublished"]["count"] == 1
    });
    let view = python_tuf(&server, &dir.path().join("cache"), &["fine", "blocked"]);
    assert!(view["pages"]["fine"].is_object(), "{view}");
    assert!(view["pages"]["blocked"].is_null(), "{view}");

    // Later uploads of other projects are signed while it waits.
    upload(&server, &alice, "later", "1.0");
    assert!(server.wait_until_signed() > signed);
    let tufa_status = common::tufa(&["status", "--data", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&tufa_status.stderr);
    assert!(
        text.contains("1 project(s) could not be published") && text.contains("blocked"),
        "{text}"
    );

    let verify = common::tufa(&["verify", "--data", data.to_str().unwrap()]);
    let text = common::output_text(&verify);
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("blocked could not be published"), "{text}");

    // Once the cause is fixed, the retry publishes it without any new change.
    fs::remove_file(&blocker).unwrap();
    wait_for(&server, "the blocked project published", |s| {
        s["unpublished"]["count"] == 0
    });
    let view = python_tuf(&server, &dir.path().join("cache"), &["blocked", "later"]);
    assert!(view["pages"]["blocked"].is_object(), "{view}");
    assert!(view["pages"]["later"].is_object(), "{view}");

    // A restart finds everything in place.
    drop(server);
    let server = TufaServer::start(TUFA.as_ref(), &data, ON_THE_DATA_DIRECTORY);
    server.wait_until_signed();
    let view = python_tuf(
        &server,
        &dir.path().join("cache"),
        &["blocked", "fine", "later"],
    );
    for project in ["blocked", "fine", "later"] {
        assert!(view["pages"][project].is_object(), "{project}: {view}");
    }
}

fn served_timestamp(server: &TufaServer) -> Metadata<Timestamp> {
    let body = http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]);
    Metadata::from_bytes(&body.body).unwrap()
}

#[test]
fn a_clock_that_ran_ahead_is_pulled_back_and_a_clock_behind_pauses_signing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = Duration::from_secs(86_400);

    // Started once with the clock 400 days ahead: it signs a timestamp valid until then. (A
    // bucket would refuse requests signed with a clock that far off: S3 allows 15 minutes.)
    let ahead = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        ON_THE_DATA_DIRECTORY,
        &clock_offset_env("+400d"),
    );
    let alice = token(&data, "alice", None);
    upload(&ahead, &alice, "early", "1.0");
    ahead.wait_until_signed();
    let stretched = served_timestamp(&ahead);
    assert!(stretched.signed.expires.to_system_time() > SystemTime::now() + 300 * day);
    drop(ahead);

    // With the clock fixed, the online roles are re-signed within their lifetime at once.
    let server = TufaServer::start(TUFA.as_ref(), &data, ON_THE_DATA_DIRECTORY);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let timestamp = served_timestamp(&server);
        if timestamp.signed.expires.to_system_time() <= SystemTime::now() + day {
            assert!(timestamp.signed.version > stretched.signed.version);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not re-signed:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let view = python_tuf(&server, &dir.path().join("cache"), &["early"]);
    assert!(view["pages"]["early"].is_object(), "{view}");
    drop(server);

    // With the clock two days behind the newest signing, nothing is signed (it would already be
    // expired for everyone else); uploads are still taken, and the warning names the cause.
    let behind = TufaServer::start_with_env(
        TUFA.as_ref(),
        &data,
        ON_THE_DATA_DIRECTORY,
        &clock_offset_env("-2d"),
    );
    let before = served_timestamp(&behind).signed.version;
    upload(&behind, &alice, "waiting", "1.0");
    let state = wait_for(&behind, "the clock warning", |s| {
        s["clock_warning"].is_string() && s["signing_failure"].is_string()
    });
    assert!(
        state["clock_warning"].as_str().unwrap().contains("behind"),
        "{state}"
    );
    assert!(metric(&behind, "tufa_clock_behind_seconds") > 86_400.0);
    assert!(state["signed_serial"].as_i64() < state["last_serial"].as_i64());
    assert_eq!(served_timestamp(&behind).signed.version, before);
    drop(behind);

    // Back on the right clock, the waiting upload is signed; nothing was lost.
    let server = TufaServer::start(TUFA.as_ref(), &data, ON_THE_DATA_DIRECTORY);
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("cache"), &["early", "waiting"]);
    assert!(view["pages"]["waiting"].is_object(), "{view}");
}
