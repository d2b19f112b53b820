//! The signed cooldown view end to end: a real `tufa serve --cooldown`, files made old by
//! importing them with the importer's clock moved back (libfaketime), fresh uploads, real pip
//! through `/cooldown/simple/` and through `tufa proxy --view cooldown`, python-tuf verifying
//! the `cooldown/<name>/index.json` targets, and `tufa cooldown allow/deny` on the data
//! directory of the running server. One server serves every step: each step waits for what it
//! checks by polling with a bound, never by timing.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{TUFA, installed, ok, output_text, pip, python_tuf, token, tufa, uv};
use serde_json::Value;
use tufa_testkit::faketime::clock_offset_env;
use tufa_testkit::{TufaProxy, TufaServer, http, minimal_wheel};

/// Long enough that a fresh upload never crosses it while the test runs.
const PERIOD_SECONDS: u64 = 3600;
/// How far after its import a file made almost old crosses the boundary.
const CROSSES_AFTER_SECONDS: u64 = 20;

const JSON: &str = "application/vnd.pypi.simple.v1+json";

fn wheel_file(dir: &Path, project: &str, version: &str) {
    fs::create_dir_all(dir).unwrap();
    let name = format!("{}-{version}-py3-none-any.whl", project.replace('-', "_"));
    fs::write(dir.join(name), minimal_wheel(project, version)).unwrap();
}

/// `tufa import` of `dir` with the importer's clock `offset` seconds back, so that its files
/// were "uploaded" that long ago; the running server signs them.
fn import_aged(server: &TufaServer, dir: &Path, seconds_ago: u64) {
    let output = Command::new(TUFA)
        .args(["import", "--user", "alice", "--data"])
        .arg(&server.data_dir)
        .arg(dir)
        .envs(clock_offset_env(&format!("-{seconds_ago}")))
        .envs(common::backend_env())
        .output()
        .unwrap();
    ok(output, "tufa import");
    server.wait_until_signed();
}

/// The cooldown view's JSON page of `project` as the index serves it.
fn cooldown_page(server: &TufaServer, project: &str) -> Value {
    let response = http::get(
        &format!("{}/cooldown/simple/{project}/", server.url),
        &[("Accept", JSON)],
    );
    assert_eq!(response.status, 200, "{}", response.reason);
    response.json()
}

fn filenames(page: &Value) -> Vec<String> {
    let mut names: Vec<String> = common::page_files(page).into_keys().collect();
    names.sort();
    names
}

fn whl(project: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", project.replace('-', "_"))
}

/// Polls `check` every 200 ms until it holds, for at most `bound`.
fn wait_for(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cooldown(server: &TufaServer, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "cooldown",
        args[0],
        "--data",
        server.data_dir.to_str().unwrap(),
    ];
    all.extend(&args[1..]);
    tufa(&all)
}

#[test]
fn the_cooldown_view_is_signed_follows_the_clock_and_the_operators_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let period = format!("{PERIOD_SECONDS}s");
    // The data directory's storage even on the S3 test backend: the aged imports move the
    // importer's clock back hours, and a bucket refuses requests signed at such a time (S3
    // allows 15 minutes of skew).
    let server_args = [
        "--cooldown",
        &period,
        "--cooldown-exempt",
        "acme-*",
        "--storage",
        "",
    ];
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &server_args);
    server.log_containing("cooldown view of files at least 1h old");
    let status = http::get(&format!("{}/status", server.url), &[]).json();
    assert_eq!(
        status["cooldown"],
        serde_json::json!({"period": "1h", "exempt": ["acme-*"]})
    );
    let token = token(&server.data_dir, "alice", None);

    // 1.0 of tufa-cd is two periods old; 2.0 is a fresh upload; acme-tools is exempt.
    wheel_file(&dir.path().join("old"), "tufa-cd", "1.0");
    import_aged(&server, &dir.path().join("old"), 2 * PERIOD_SECONDS);
    for (project, version) in [("tufa-cd", "2.0"), ("acme-tools", "1.0")] {
        let answer = server.upload_wheel(&token, project, version);
        assert_eq!(answer.status, 200, "{}", answer.reason);
    }
    server.wait_until_signed();

    let page = cooldown_page(&server, "tufa-cd");
    assert_eq!(filenames(&page), [whl("tufa-cd", "1.0")], "{page}");
    assert_eq!(page["versions"], serde_json::json!(["1.0"]));
    let state = &page["_tufa-cooldown"];
    assert_eq!(state["period"], "1h");
    let main: Value = http::get(
        &format!("{}/simple/tufa-cd/", server.url),
        &[("Accept", JSON)],
    )
    .json();
    assert_eq!(
        filenames(&main),
        [whl("tufa-cd", "1.0"), whl("tufa-cd", "2.0")]
    );
    // Exempt: its fresh upload is in the view at once.
    let acme = cooldown_page(&server, "acme-tools");
    assert_eq!(filenames(&acme), [whl("acme-tools", "1.0")]);
    assert_eq!(acme["_tufa-cooldown"]["exempt"], true);
    // The HTML page carries the same state.
    let html = http::get(
        &format!("{}/cooldown/simple/tufa-cd/", server.url),
        &[("Accept", "text/html")],
    );
    let html = String::from_utf8(html.body).unwrap();
    assert!(html.contains("<meta name=\"tufa:cooldown\""), "{html}");
    assert!(!html.contains(&whl("tufa-cd", "2.0")), "{html}");

    // pip through the cooldown view gets the old release and cannot get the fresh one; pip
    // through the main view gets the fresh one.
    let cooldown_url = format!("{}/cooldown/simple/", server.url);
    let target = dir.path().join("pip-cooldown");
    let output = pip(&cooldown_url, &target, &["tufa-cd"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(installed(&target), ["tufa_cd-1.0"]);
    let target = dir.path().join("uv-cooldown");
    let output = uv(&cooldown_url, &target, &["tufa-cd"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(installed(&target), ["tufa_cd-1.0"]);
    let target = dir.path().join("pip-cooldown-fresh");
    let output = pip(&cooldown_url, &target, &["tufa-cd==2.0"]);
    assert!(!output.status.success(), "{}", output_text(&output));
    assert_eq!(installed(&target), Vec::<String>::new());
    let target = dir.path().join("pip-main");
    let output = pip(&server.simple_url(), &target, &["tufa-cd"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(installed(&target), ["tufa_cd-2.0"]);

    // Decisions need a real release and a reason.
    let refused = output_text(&cooldown(
        &server,
        &["allow", "nobody", "1.0", "--reason", "x"],
    ));
    assert!(refused.contains("no project \"nobody\""), "{refused}");
    let refused = output_text(&cooldown(
        &server,
        &["allow", "tufa-cd", "9.9", "--reason", "x"],
    ));
    assert!(refused.contains("has no release \"9.9\""), "{refused}");
    let refused = output_text(&cooldown(&server, &["allow", "tufa-cd", "2.0"]));
    assert!(refused.contains("--reason"), "{refused}");
    let refused = output_text(&cooldown(
        &server,
        &["deny", "tufa-cd", "1.0", "--reason", " "],
    ));
    assert!(refused.contains("needs a reason"), "{refused}");

    // Allow admits the fresh release early, deny holds the old one back: both signed, shown.
    ok(
        cooldown(
            &server,
            &["allow", "tufa-cd", "2.0", "--reason", "fixes CVE-2026-1"],
        ),
        "tufa cooldown allow",
    );
    ok(
        cooldown(
            &server,
            &[
                "deny",
                "tufa-cd",
                "1.0",
                "--reason",
                "maintainer account taken over",
            ],
        ),
        "tufa cooldown deny",
    );
    let listed = ok(cooldown(&server, &["list"]), "tufa cooldown list");
    assert!(
        listed.contains("cooldown view: 1h, exempt: acme-*"),
        "{listed}"
    );
    assert!(listed.contains("fixes CVE-2026-1"), "{listed}");
    // The publisher polls the journal the commands wrote.
    wait_for("the decisions signed", Duration::from_secs(30), || {
        let status = http::get(&format!("{}/status", server.url), &[]).json();
        status["signed_serial"] == status["last_serial"]
            && filenames(&cooldown_page(&server, "tufa-cd")) == [whl("tufa-cd", "2.0")]
    });
    let page = cooldown_page(&server, "tufa-cd");
    let state = &page["_tufa-cooldown"];
    assert_eq!(state["allowed"][0]["version"], "2.0");
    assert_eq!(state["allowed"][0]["reason"], "fixes CVE-2026-1");
    assert_eq!(state["denied"][0]["version"], "1.0");
    assert_eq!(
        state["denied"][0]["reason"],
        "maintainer account taken over"
    );

    // python-tuf verifies the cooldown targets: the same files the index serves.
    let verified = python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["cooldown/tufa-cd", "cooldown/acme-tools", "tufa-cd"],
    );
    let pages = &verified["pages"];
    assert_eq!(
        filenames(&pages["cooldown/tufa-cd"]),
        [whl("tufa-cd", "2.0")]
    );
    assert_eq!(pages["cooldown/tufa-cd"]["_tufa-cooldown"], *state);
    assert_eq!(
        filenames(&pages["cooldown/acme-tools"]),
        [whl("acme-tools", "1.0")]
    );
    assert_eq!(filenames(&pages["tufa-cd"]).len(), 2);

    // A file crossing the boundary enters the signed view with no other event.
    let crossing = dir.path().join("crossing");
    wheel_file(&crossing, "tufa-late", "1.0");
    import_aged(&server, &crossing, PERIOD_SECONDS - CROSSES_AFTER_SECONDS);
    let imported = Instant::now();
    let page = cooldown_page(&server, "tufa-late");
    if imported.elapsed() < Duration::from_secs(CROSSES_AFTER_SECONDS / 2) {
        assert!(filenames(&page).is_empty(), "{page}");
    }
    wait_for(
        "tufa-late 1.0 in the cooldown view",
        Duration::from_secs(CROSSES_AFTER_SECONDS + 60),
        || !filenames(&cooldown_page(&server, "tufa-late")).is_empty(),
    );
    server.log_containing("files crossed the cooldown boundary");
    server.wait_until_signed();
    // For the record (not asserted): how long after its boundary the signed view had it.
    let main: Value = http::get(
        &format!("{}/simple/tufa-late/", server.url),
        &[("Accept", JSON)],
    )
    .json();
    let uploaded = time::OffsetDateTime::parse(
        main["files"][0]["upload-time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let boundary = uploaded + Duration::from_secs(PERIOD_SECONDS);
    eprintln!(
        "tufa-late was signed into the cooldown view within {} ms of its boundary",
        (time::OffsetDateTime::now_utc() - boundary).whole_milliseconds()
    );
    let verified = python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["cooldown/tufa-late"],
    );
    assert_eq!(
        filenames(&verified["pages"]["cooldown/tufa-late"]),
        [whl("tufa-late", "1.0")]
    );

    // `tufa verify` checks the cooldown pages like the others, beside the running server.
    let verified = ok(
        tufa(&["verify", "--data", server.data_dir.to_str().unwrap()]),
        "tufa verify",
    );
    assert!(!verified.contains("cooldown view"), "{verified}");

    // The proxy serves the cooldown view, verified: only what the view allows installs.
    let fresh = server.upload_wheel(&token, "tufa-cd", "3.0");
    assert_eq!(fresh.status, 200, "{}", fresh.reason);
    server.wait_until_signed();
    let root = server.data_dir.join("trusted-root.json");
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root,
        &dir.path().join("proxy-cache"),
        &["--view", "cooldown"],
    );
    proxy.log_containing("cooldown view");
    let target = dir.path().join("proxy-latest");
    let output = pip(
        &proxy.simple_url(),
        &target,
        &["tufa-cd", "acme-tools", "tufa-late"],
    );
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(
        installed(&target),
        ["acme_tools-1.0", "tufa_cd-2.0", "tufa_late-1.0"]
    );
    for (case, requirement) in [("fresh", "tufa-cd==3.0"), ("denied", "tufa-cd==1.0")] {
        let target = dir.path().join(format!("proxy-{case}"));
        let output = pip(&proxy.simple_url(), &target, &[requirement]);
        assert!(!output.status.success(), "{case}: {}", output_text(&output));
        assert_eq!(installed(&target), Vec::<String>::new(), "{case}");
    }

    // A cooldown page changed on the index's disk is refused, with nothing installed.
    let storage = common::published(&server.data_dir);
    let pages = storage.list("tuf/targets/cooldown/tufa-cd");
    assert!(!pages.is_empty());
    for path in pages {
        let page = String::from_utf8(storage.read(&path).unwrap()).unwrap();
        storage.write(&path, page.replace("\"2.0\"", "\"3.0\"").as_bytes());
    }
    let tampered = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root,
        &dir.path().join("proxy-cache-tampered"),
        &["--view", "cooldown"],
    );
    let target = dir.path().join("proxy-tampered");
    let output = pip(&tampered.simple_url(), &target, &["-vv", "tufa-cd"]);
    assert!(!output.status.success(), "{}", output_text(&output));
    assert_eq!(installed(&target), Vec::<String>::new());
    let reason = "target cooldown/tufa-cd/index.json does not match its sha256 hash";
    assert!(tampered.log_containing(reason).contains(reason));
}

/// A repository whose `targets` delegates only `simple/*/index.json` (made before the cooldown
/// view): `tufa serve --cooldown` refuses to start and names the offline fix, and after that
/// fix (the next targets, signed by its key) it starts.
#[test]
fn a_repository_made_before_the_cooldown_view_must_delegate_it_first() {
    use tufa_metadata::{DelegatedRoles, PathMatcher, Signer};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A development repository, then its targets re-signed as an older tufa made it.
    drop(TufaServer::start(TUFA.as_ref(), &data, &[]));
    let storage = common::published(&data);
    let targets_file = "tuf/metadata/1.targets.json";
    let mut targets: tufa_metadata::Metadata<tufa_metadata::Targets> =
        tufa_metadata::Metadata::from_bytes(&storage.read(targets_file).unwrap()).unwrap();
    let Some(DelegatedRoles::Roles(roles)) =
        targets.signed.delegations.as_mut().map(|d| &mut d.roles)
    else {
        panic!("targets delegates to bins by name");
    };
    roles[0].paths = PathMatcher::Paths(vec!["simple/*/index.json".into()]);
    let key = data.join("dev-keys/dev-targets.pem");
    let signer = tufa_repo::load_signer(&key, None).unwrap();
    targets.clear_signatures();
    targets.sign(&signer as &dyn Signer).unwrap();
    storage.write(targets_file, &targets.to_bytes().unwrap());

    let refused = Command::new(TUFA)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cooldown",
            "7d",
            "--data",
        ])
        .arg(&data)
        .envs(common::backend_env())
        .output()
        .unwrap();
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("does not delegate cooldown/*/index.json to bins"),
        "{text}"
    );
    assert!(text.contains("tufa roles prepare targets"), "{text}");

    // The fix it names: the next targets (which adds the pattern), signed, submitted.
    let request = dir.path().join("targets.json");
    let data_arg = data.to_str().unwrap();
    ok(
        tufa(&[
            "roles",
            "prepare",
            "targets",
            "--data",
            data_arg,
            "--out",
            request.to_str().unwrap(),
        ]),
        "tufa roles prepare targets",
    );
    ok(
        tufa(&[
            "sign",
            request.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]),
        "tufa sign",
    );
    ok(
        tufa(&[
            "roles",
            "submit",
            "--data",
            data_arg,
            request.to_str().unwrap(),
        ]),
        "tufa roles submit",
    );
    let server = TufaServer::start(TUFA.as_ref(), &data, &["--cooldown", "7d"]);
    server.log_containing("cooldown view of files at least 7d old");
    let token = token(&data, "alice", None);
    let answer = server.upload_wheel(&token, "tufa-cd", "1.0");
    assert_eq!(answer.status, 200, "{}", answer.reason);
    server.wait_until_signed();
    // A decision cleared: the release follows the period again.
    ok(
        cooldown(&server, &["allow", "tufa-cd", "1.0", "--reason", "urgent"]),
        "tufa cooldown allow",
    );
    wait_for("the allow signed", Duration::from_secs(30), || {
        server.wait_until_signed();
        !filenames(&cooldown_page(&server, "tufa-cd")).is_empty()
    });
    ok(
        cooldown(&server, &["clear", "tufa-cd", "1.0"]),
        "tufa cooldown clear",
    );
    let refused = output_text(&cooldown(&server, &["clear", "tufa-cd", "1.0"]));
    assert!(refused.contains("has no cooldown decision"), "{refused}");
    wait_for("the clear signed", Duration::from_secs(30), || {
        server.wait_until_signed();
        filenames(&cooldown_page(&server, "tufa-cd")).is_empty()
    });
    let cache = dir.path().join("python-tuf");
    let pages = &python_tuf(&server, &cache, &["cooldown/tufa-cd"])["pages"];
    assert_eq!(filenames(&pages["cooldown/tufa-cd"]), Vec::<String>::new());
    assert_eq!(
        pages["cooldown/tufa-cd"]["_tufa-cooldown"]["allowed"],
        serde_json::json!([])
    );
    drop(server);

    // Turned off, the view is withdrawn: its targets and its URLs.
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    server.log_containing("every project's cooldown page is published again");
    server.wait_until_signed();
    let pages = &python_tuf(&server, &cache, &["cooldown/tufa-cd", "tufa-cd"])["pages"];
    assert_eq!(pages["cooldown/tufa-cd"], Value::Null);
    assert_eq!(filenames(&pages["tufa-cd"]), [whl("tufa-cd", "1.0")]);
    let off = http::get(&format!("{}/cooldown/simple/tufa-cd/", server.url), &[]);
    assert_eq!(off.status, 404);
    assert!(off.reason.contains("--cooldown"), "{}", off.reason);
    drop(server);

    // Turned on again from the config file, with this project exempt: published again.
    let config = dir.path().join("tufa.toml");
    fs::write(
        &config,
        "cooldown = \"7d\"\ncooldown-exempt = [\"tufa-*\"]\n",
    )
    .unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--config", config.to_str().unwrap()],
    );
    server.wait_until_signed();
    let pages = &python_tuf(&server, &cache, &["cooldown/tufa-cd"])["pages"];
    assert_eq!(
        filenames(&pages["cooldown/tufa-cd"]),
        [whl("tufa-cd", "1.0")]
    );
    assert_eq!(pages["cooldown/tufa-cd"]["_tufa-cooldown"]["exempt"], true);
}
