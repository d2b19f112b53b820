//! `tufa mirror sync` against a running `tufa serve`: which files it fetches for names,
//! `--latest`, requirements pins and lock files, that a re-run resumes instead of starting over,
//! that TUF verification with `--root` works, and that every failure is named.

mod common;

use std::path::Path;
use std::process::Output;

use common::TUFA;
use tufa_testkit::TufaServer;

fn sync(server: &TufaServer, cache: &Path, args: &[&str]) -> Output {
    std::process::Command::new(TUFA)
        .args(["mirror", "sync", "--index", &server.url, "--cache"])
        .arg(cache)
        .args(args)
        .output()
        .expect("running tufa mirror sync")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeeded(output: Output) -> String {
    let text = text(&output);
    assert!(output.status.success(), "tufa mirror sync failed:\n{text}");
    text
}

#[test]
fn sync_selects_resumes_verifies_and_names_failures() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = server.create_token("alice");
    for (project, version) in [
        ("demo", "1.0"),
        ("demo", "1.1"),
        ("demo", "2.0rc1"),
        ("other", "0.1"),
    ] {
        let answer = server.upload_wheel(&token, project, version);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    server.wait_until_signed();

    // --latest: the highest final release, not the pre-release.
    let latest = succeeded(sync(&server, &dir.path().join("c1"), &["--latest", "demo"]));
    assert!(latest.contains("1 projects: 1 files"), "{latest}");

    // A requirements file pins releases; a lock file pins files by hash.
    let requirements = dir.path().join("requirements.txt");
    std::fs::write(
        &requirements,
        "# pinned\ndemo==1.0 ; python_version >= '3'  # comment\n",
    )
    .unwrap();
    let pinned = succeeded(sync(
        &server,
        &dir.path().join("c2"),
        &["-r", requirements.to_str().unwrap()],
    ));
    assert!(pinned.contains("1 projects: 1 files"), "{pinned}");
    let other_sha = tufa_testkit::sha256_hex(&tufa_testkit::minimal_wheel("other", "0.1"));
    let lock = dir.path().join("pylock.toml");
    std::fs::write(
        &lock,
        format!(
            "lock-version = \"1.0\"\ncreated-by = \"test\"\n\n[[packages]]\nname = \"other\"\n\
             version = \"0.1\"\nwheels = [{{ name = \"other-0.1-py3-none-any.whl\", \
             hashes = {{ sha256 = \"{other_sha}\" }} }}]\n"
        ),
    )
    .unwrap();
    // uv.lock: the project itself (virtual, no files) is skipped.
    let uv_lock = dir.path().join("uv.lock");
    std::fs::write(
        &uv_lock,
        format!(
            "version = 1\nrequires-python = \">=3.8\"\n\n[[package]]\nname = \"app\"\n\
             version = \"0.1.0\"\nsource = {{ virtual = \".\" }}\n\n[[package]]\n\
             name = \"other\"\nversion = \"0.1\"\nsource = {{ registry = \"{}\" }}\n\
             wheels = [{{ url = \"x\", hash = \"sha256:{other_sha}\", size = 1 }}]\n",
            server.simple_url()
        ),
    )
    .unwrap();
    let uv_locked = succeeded(sync(
        &server,
        &dir.path().join("c3uv"),
        &["--lock", uv_lock.to_str().unwrap()],
    ));
    assert!(uv_locked.contains("1 projects: 1 files"), "{uv_locked}");
    let locked = succeeded(sync(
        &server,
        &dir.path().join("c3"),
        &["--lock", lock.to_str().unwrap()],
    ));
    assert!(locked.contains("1 projects: 1 files"), "{locked}");

    // Everything, then again: the second run downloads nothing.
    let cache = dir.path().join("c4");
    let first = succeeded(sync(&server, &cache, &["demo", "other", "--jobs", "2"]));
    assert!(first.contains("2 projects: 4 files"), "{first}");
    let again = succeeded(sync(&server, &cache, &["demo", "other"]));
    assert!(again.contains("2 projects: 0 files"), "{again}");
    assert!(again.contains("already synced"), "{again}");
    assert!(!again.contains(" 0 already synced"), "{again}");

    // Through TUF: the pages are checked against the signed targets.
    let root = server.data_dir.join("trusted-root.json");
    let verified = succeeded(sync(
        &server,
        &dir.path().join("c5"),
        &["--root", root.to_str().unwrap(), "demo"],
    ));
    assert!(verified.contains("1 projects: 3 files"), "{verified}");

    // Failures are all named, and the rest still syncs.
    std::fs::write(&requirements, "demo==9.9\nother==0.1\n").unwrap();
    let failed = sync(
        &server,
        &dir.path().join("c6"),
        &["-r", requirements.to_str().unwrap(), "no-such-project"],
    );
    let report = text(&failed);
    assert!(!failed.status.success(), "{report}");
    assert!(
        report.contains("demo==9.9 is not on the index's page"),
        "{report}"
    );
    assert!(report.contains("no-such-project: page"), "{report}");
    assert!(report.contains("404"), "{report}");
    assert!(
        report.contains("1 files"),
        "other==0.1 still synced: {report}"
    );
}

#[test]
fn sync_through_a_mirror_fetches_each_upstream_file_once_and_names_refusals() {
    use tufa_testkit::upstream::Upstream;
    let upstream = Upstream::with_real_wheels();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url()],
    );
    let cache = dir.path().join("cache");
    let root = server.data_dir.join("trusted-root.json");
    let args = ["--root", root.to_str().unwrap(), "six", "idna", "iniconfig"];
    let first = succeeded(sync(&server, &cache, &args));
    assert!(
        first.contains("3 projects: 5 files (and 5 metadata files)"),
        "{first}"
    );
    let file_requests = || {
        upstream
            .requests()
            .into_iter()
            .filter(|p| p.starts_with("/packages/"))
            .count()
    };
    assert_eq!(file_requests(), 10, "{:?}", upstream.requests());
    // Again with a fresh state file: the index serves everything from its store.
    let again = succeeded(sync(&server, &dir.path().join("other-cache"), &args));
    assert!(again.contains("3 projects: 5 files"), "{again}");
    assert_eq!(file_requests(), 10, "nothing fetched upstream twice");

    // A file changed upstream: the sync names it and the index's reason.
    let wheel = tufa_testkit::minimal_wheel("changed", "1.0");
    let filename = "changed-1.0-py3-none-any.whl";
    upstream.add_file("changed", filename, wheel.clone());
    let mut tampered = wheel;
    tampered[10] ^= 0xff;
    upstream.change_content(filename, tampered);
    let failed = sync(&server, &cache, &["changed", "six"]);
    let report = text(&failed);
    assert!(!failed.status.success(), "{report}");
    assert!(
        report.contains(&format!("changed: {filename}: GET ")),
        "{report}"
    );
    assert!(report.contains("502 Bad Gateway"), "{report}");
    assert!(report.contains("tampered or substituted"), "{report}");
    assert!(report.contains("4 already synced"), "six resumed: {report}");
}

#[test]
fn an_interrupted_sync_resumes_without_fetching_again() {
    use tufa_testkit::upstream::{Fault, Upstream};
    let mut upstream = Upstream::start();
    let wheel = |version: &str| format!("slowpoke-{version}-py3-none-any.whl");
    for version in ["1.0", "1.1", "1.2"] {
        upstream.add_file(
            "slowpoke",
            &wheel(version),
            tufa_testkit::minimal_wheel("slowpoke", version),
        );
    }
    // The last file (and its metadata) never comes: the sync is killed while it waits.
    upstream.set_file_fault(&wheel("1.2"), Some(Fault::Hang));
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url()],
    );
    let cache = dir.path().join("cache");
    let mut child = std::process::Command::new(TUFA)
        .args([
            "mirror",
            "sync",
            "--jobs",
            "1",
            "--index",
            &server.url,
            "--cache",
        ])
        .arg(&cache)
        .arg("slowpoke")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = cache.join("mirror-sync-state");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done = std::fs::read_to_string(&state).unwrap_or_default();
        // Whole lines: a wheel's name is also the start of its metadata file's name.
        let recorded = |name: String| {
            done.lines()
                .any(|line| line.ends_with(&format!("  {name}")))
        };
        if ["1.0", "1.1"]
            .iter()
            .all(|v| recorded(wheel(v)) && recorded(format!("{}.metadata", wheel(v))))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first files were not recorded: {done:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Ends the hanging answer, so the index's fetch of it fails rather than lingers.
    upstream.stop();
    upstream.set_file_fault(&wheel("1.2"), None);
    upstream.restart();

    // The re-run downloads only the file that was not finished.
    let resumed = succeeded(sync(&server, &cache, &["slowpoke"]));
    assert!(resumed.contains("1 projects: 1 files"), "{resumed}");
    let fetched = |version: &str| {
        upstream
            .requests()
            .iter()
            .filter(|path| path.ends_with(&format!("/{}", wheel(version))))
            .count()
    };
    // And the index fetched nothing twice from upstream.
    assert_eq!(
        (fetched("1.0"), fetched("1.1")),
        (1, 1),
        "{:?}",
        upstream.requests()
    );
    assert!(fetched("1.2") >= 1, "{:?}", upstream.requests());
}
