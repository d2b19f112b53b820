//! PEP 458 signing end to end: a running `tufa serve` signs every change, python-tuf's client and
//! ours verify it, a crash never exposes a half-published state or loses an acknowledged upload,
//! and the server refuses metadata that does not verify.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tufa_metadata::{MetaFile, Metadata, Snapshot, Targets, Timestamp};
use tufa_repo::{View, layout};
mod common;

use common::{
    TUFA, generate_keys, install_ceremony, ok, page_files, published, python_tuf, token, tufa,
    twine,
};
use tufa_testkit::http;
use tufa_testkit::sha256_hex;
use tufa_testkit::{Project, PythonEnv, TufaServer, minimal_wheel};

#[test]
fn python_tuf_verifies_uploads_yanks_and_re_signing_against_a_running_index() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let expiry = [
        "--timestamp-expiry",
        "6",
        "--snapshot-expiry",
        "6",
        "--bin-expiry",
        "6",
    ];
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &expiry);
    let alice = token(&server.data_dir, "alice", None);
    let cache = dir.path().join("python-tuf-cache");
    let build = |name: &str, version: &str| {
        Project {
            name,
            version,
            dependencies: &[],
            payload: "signed",
        }
        .build(env, dir.path())
    };

    let one = build("tufa-signed", "1.0");
    ok(
        twine(&server, &alice, &[&one.wheel, &one.sdist], &[]),
        "twine upload",
    );
    server.wait_until_signed();
    let view = python_tuf(&server, &cache, &["tufa-signed", "not-uploaded"]);
    let expected: BTreeMap<String, String> = [&one.wheel, &one.sdist]
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                sha256_hex(&fs::read(p).unwrap()),
            )
        })
        .collect();
    assert_eq!(page_files(&view["pages"]["tufa-signed"]), expected);
    assert_eq!(view["pages"]["not-uploaded"], Value::Null);

    // A second batch: a new version of the same project and a second project.
    let two = build("tufa-signed", "2.0");
    let other = build("tufa-other-signed", "0.1");
    ok(
        twine(&server, &alice, &[&two.wheel, &other.wheel], &[]),
        "twine upload",
    );
    server.wait_until_signed();
    let view = python_tuf(&server, &cache, &["tufa-signed", "tufa-other-signed"]);
    let files = page_files(&view["pages"]["tufa-signed"]);
    assert_eq!(files.len(), 3);
    assert_eq!(
        files[two.wheel.file_name().unwrap().to_str().unwrap()],
        sha256_hex(&fs::read(&two.wheel).unwrap())
    );
    assert_eq!(page_files(&view["pages"]["tufa-other-signed"]).len(), 1);

    // A yank made by the command line while the server runs is signed too.
    let data = server.data_dir.to_str().unwrap();
    ok(
        tufa(&[
            "yank",
            "--data",
            data,
            "tufa-signed",
            "1.0",
            "--reason",
            "bad",
        ]),
        "tufa yank",
    );
    server.wait_until_signed();
    let view = python_tuf(&server, &cache, &["tufa-signed"]);
    let yanked: Vec<&Value> = view["pages"]["tufa-signed"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["yanked"] == "bad")
        .collect();
    assert_eq!(
        yanked.len(),
        2,
        "both files of 1.0 are yanked in the signed page"
    );

    // With no change at all, the online roles are re-signed before their 6 s expire: a client
    // refreshing after that still gets unexpired metadata.
    let before = view["timestamp_version"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let view = python_tuf(&server, &cache, &["tufa-signed"]);
    assert!(
        view["timestamp_version"].as_u64().unwrap() > before,
        "timestamp re-signed"
    );
    assert_eq!(page_files(&view["pages"]["tufa-signed"]).len(), 3);
    assert!(
        server
            .log()
            .contains("re-signed online roles before expiry"),
        "{}",
        server.log()
    );

    // Our own client and the conformance-protocol command verify the same pages.
    let listing = ok(
        tufa(&[
            "download",
            "--index",
            &server.url,
            "--root",
            server.data_dir.join("trusted-root.json").to_str().unwrap(),
            "--cache",
            dir.path().join("tufa-cache").to_str().unwrap(),
            "Tufa_Signed",
        ]),
        "tufa download",
    );
    for (filename, sha256) in &files {
        assert!(
            listing.contains(sha256) && listing.contains(filename),
            "{listing}"
        );
    }
    let metadata_dir = dir.path().join("conformance-metadata");
    fs::create_dir_all(&metadata_dir).unwrap();
    let metadata_dir = metadata_dir.to_str().unwrap();
    ok(
        tufa(&[
            "tuf-client",
            "--metadata-dir",
            metadata_dir,
            "init",
            server.data_dir.join("trusted-root.json").to_str().unwrap(),
        ]),
        "tufa tuf-client init",
    );
    let targets = dir.path().join("conformance-targets");
    fs::create_dir_all(&targets).unwrap();
    ok(
        tufa(&[
            "tuf-client",
            "--metadata-dir",
            metadata_dir,
            "--metadata-url",
            &format!("{}/tuf/metadata", server.url),
            "--target-name",
            "simple/tufa-other-signed/index.json",
            "--target-base-url",
            &format!("{}/tuf/targets", server.url),
            "--target-dir",
            targets.to_str().unwrap(),
            "download",
        ]),
        "tufa tuf-client download",
    );
    let downloaded: Vec<_> = fs::read_dir(&targets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(downloaded.len(), 1);
    let page: Value = serde_json::from_slice(&fs::read(&downloaded[0]).unwrap()).unwrap();
    assert_eq!(page_files(&page), page_files(&view_other(&server, &cache)));
}

fn view_other(server: &TufaServer, cache: &Path) -> Value {
    python_tuf(server, cache, &["tufa-other-signed"])["pages"]["tufa-other-signed"].clone()
}

/// Checks what a client would find on disk right now: the timestamp's snapshot, every role the
/// snapshot lists, and every target those roles list, each present with the recorded hash and
/// length. Returns the filenames listed on `project`'s page.
fn assert_published_state_is_whole(data: &Path, project: &str) -> BTreeSet<String> {
    let published = published(data);
    let read = |relative: &str| {
        published
            .read(&format!("tuf/{relative}"))
            .unwrap_or_else(|| panic!("the timestamp reaches {relative}, which is missing"))
    };
    let timestamp: Metadata<Timestamp> =
        Metadata::from_bytes(&read("metadata/timestamp.json")).unwrap();
    let meta = &timestamp.signed.snapshot_meta;
    let bytes = read(&format!("metadata/{}.snapshot.json", meta.version));
    assert_eq!(
        MetaFile::with_content(meta.version, &bytes).hashes,
        meta.hashes,
        "snapshot hash"
    );
    let snapshot: Metadata<Snapshot> = Metadata::from_bytes(&bytes).unwrap();
    let page_target = layout::page_target(View::Simple, project);
    let mut files = BTreeSet::new();
    for (role, meta) in &snapshot.signed.meta {
        let role = role.trim_end_matches(".json");
        let bytes = read(&format!("metadata/{}.{role}.json", meta.version));
        let targets: Metadata<Targets> = Metadata::from_bytes(&bytes).unwrap_or_else(|e| {
            panic!("{role} version {} is partial or invalid: {e}", meta.version)
        });
        for (target, file) in &targets.signed.targets {
            let stored = read(&layout::target_file(target, &file.hashes["sha256"]));
            assert_eq!(stored.len() as u64, file.length, "{target}");
            assert_eq!(
                sha256_hex(&stored),
                file.hashes["sha256"].as_str(),
                "{target}"
            );
            if target == &page_target {
                let page: Value = serde_json::from_slice(&stored).unwrap();
                files.extend(page_files(&page).into_keys());
            }
        }
    }
    files
}

#[test]
fn sigkill_during_uploads_never_exposes_partial_metadata_or_loses_an_acknowledged_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = {
        let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
        token(&server.data_dir, "alice", None)
    };
    let auth = http::basic_auth(&alice);
    let mut acknowledged = BTreeSet::new();
    let mut next = 0u32;
    for round in 0..8u64 {
        let mut server = TufaServer::start(TUFA.as_ref(), &data, &[]);
        let url = server.upload_url();
        let auth = auth.clone();
        let first = next;
        // Uploads one after another until the server dies; returns the file names it acknowledged.
        let uploader = std::thread::spawn(move || {
            let mut accepted = Vec::new();
            for n in first.. {
                let version = format!("1.{n}");
                let filename = format!("crash_test-{version}-py3-none-any.whl");
                let (content_type, body) = http::wheel_upload(
                    "crash-test",
                    &version,
                    &minimal_wheel("crash-test", &version),
                );
                let sent = http::try_request(
                    "POST",
                    &url,
                    &[("Content-Type", &content_type), ("Authorization", &auth)],
                    &body,
                );
                match sent {
                    Ok(response) if response.status == 200 => accepted.push(filename),
                    _ => return (accepted, n),
                }
            }
            unreachable!("the loop ends when the server is killed")
        });
        // Kill at a different moment in each round: mid-upload, mid-publish, between the two.
        std::thread::sleep(Duration::from_millis(150 + round * 137 % 500));
        server.kill();
        let (accepted, stopped_at) = uploader.join().unwrap();
        next = stopped_at + 1;
        acknowledged.extend(accepted);
        assert_published_state_is_whole(&data, "crash-test");
    }
    assert!(
        acknowledged.len() >= 8,
        "uploads were acknowledged: {}",
        acknowledged.len()
    );

    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    server.wait_until_signed();
    let signed = assert_published_state_is_whole(&data, "crash-test");
    let missing: Vec<_> = acknowledged.difference(&signed).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not signed: {missing:?}"
    );
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["crash-test"]);
    let verified: BTreeSet<String> = page_files(&view["pages"]["crash-test"])
        .into_keys()
        .collect();
    assert!(
        acknowledged.is_subset(&verified),
        "python-tuf sees every acknowledged upload"
    );
}

fn ceremony(dir: &Path, out: &Path, signers: &[&str]) -> String {
    let key = |name: &str, ext: &str| {
        dir.join(format!("{name}.{ext}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let mut args: Vec<String> = [
        "ceremony",
        "--out",
        out.to_str().unwrap(),
        "--root-key",
        &key("root-a", "pub.json"),
        "--root-key",
        &key("root-b", "pub.json"),
        "--root-key",
        &key("root-c", "pub.json"),
        "--root-threshold",
        "2",
        "--targets-key",
        &key("targets", "pub.json"),
        "--bins-key",
        &key("bins", "pub.json"),
        "--online-key",
        &key("online", "pub.json"),
        "--bin-bits",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for signer in signers {
        args.push("--sign".into());
        args.push(key(signer, "pem"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(tufa(&args), "tufa ceremony")
}

/// Starts `tufa serve` on `data` with the ceremony's online key and returns how it ended within
/// a few seconds: `None` if it is still serving.
fn serve_outcome(data: &Path, online_key: &Path) -> Option<(bool, String)> {
    let mut child = Command::new(TUFA)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--online-key")
        .arg(online_key)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return Some((status.success(), stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn serve_refuses_tampered_or_under_threshold_metadata_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    fs::create_dir_all(&keys_dir).unwrap();
    generate_keys(
        &keys_dir,
        &[
            "root-a", "root-b", "root-c", "targets", "bins", "online", "intruder",
        ],
    );
    let online = keys_dir.join("online.pem");

    let short = dir.path().join("short");
    let said = ceremony(&keys_dir, &short, &["root-a", "targets", "bins"]);
    assert!(
        said.contains("root has 1 of its 2 required signatures"),
        "{said}"
    );
    let data = dir.path().join("data-short");
    install_ceremony(&short, &data);
    let (success, stderr) = serve_outcome(&data, &online).expect("the server must refuse to start");
    assert!(!success);
    assert!(
        stderr.contains("root metadata") && stderr.contains("needs 2"),
        "{stderr}"
    );

    let good = dir.path().join("good");
    ceremony(&keys_dir, &good, &["root-a", "root-c", "targets", "bins"]);

    let data = dir.path().join("data-tampered");
    install_ceremony(&good, &data);
    let targets = data.join("tuf/metadata/1.targets.json");
    // A later expiry: the kind of change an attacker holding no targets key would want.
    let text = fs::read_to_string(&targets).unwrap();
    let year = text.find("\"expires\":\"").unwrap() + "\"expires\":\"".len();
    fs::write(
        &targets,
        format!("{}2999{}", &text[..year], &text[year + 4..]),
    )
    .unwrap();
    let (success, stderr) = serve_outcome(&data, &online).expect("the server must refuse to start");
    assert!(!success);
    assert!(
        stderr.contains("targets metadata (metadata/1.targets.json) is not trusted"),
        "{stderr}"
    );

    let data = dir.path().join("data-wrong-key");
    install_ceremony(&good, &data);
    let (success, stderr) = serve_outcome(&data, &keys_dir.join("intruder.pem"))
        .expect("the server must refuse an online key root does not trust");
    assert!(!success);
    assert!(stderr.contains("is not trusted for timestamp"), "{stderr}");

    let data = dir.path().join("data-good");
    install_ceremony(&good, &data);
    let forgot_key = tufa(&[
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!forgot_key.status.success());
    assert!(
        String::from_utf8_lossy(&forgot_key.stderr).contains("start with --online-key"),
        "{}",
        String::from_utf8_lossy(&forgot_key.stderr)
    );
    assert_eq!(
        serve_outcome(&data, &online),
        None,
        "a verified repository serves"
    );
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--online-key", online.to_str().unwrap()],
    );
    assert!(
        !server.log().contains("DEVELOPMENT"),
        "a ceremony's repository is not a development one"
    );
    let alice = token(&data, "alice", None);
    let wheel = minimal_wheel("ceremony-demo", "1.0");
    let (content_type, body) = http::wheel_upload("ceremony-demo", "1.0", &wheel);
    let auth = http::basic_auth(&alice);
    let response = http::request(
        "POST",
        &server.upload_url(),
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.reason);
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["ceremony-demo"]);
    assert_eq!(
        page_files(&view["pages"]["ceremony-demo"])["ceremony_demo-1.0-py3-none-any.whl"],
        sha256_hex(&wheel)
    );
}

#[test]
fn import_adds_a_packages_directory_and_signs_it_with_or_without_a_running_server() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let packages = dir.path().join("packages");
    fs::create_dir_all(packages.join("nested")).unwrap();
    let one = Project {
        name: "import-one",
        version: "1.0",
        dependencies: &[],
        payload: "a",
    }
    .build(env, dir.path());
    let two = Project {
        name: "import-two",
        version: "2.0",
        dependencies: &[],
        payload: "b",
    }
    .build(env, dir.path());
    for (source, target) in [
        (&one.wheel, packages.clone()),
        (&one.sdist, packages.clone()),
        (&two.wheel, packages.join("nested")),
    ] {
        fs::copy(source, target.join(source.file_name().unwrap())).unwrap();
    }
    fs::write(packages.join("README.txt"), "not a distribution").unwrap();

    let said = ok(
        tufa(&[
            "import",
            "--data",
            data.to_str().unwrap(),
            "--user",
            "alice",
            packages.to_str().unwrap(),
        ]),
        "tufa import",
    );
    assert!(
        said.contains("imported 3 file(s), 0 already present, 0 refused, 1 skipped; all signed"),
        "{said}"
    );
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let view = python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["import-one", "import-two"],
    );
    assert_eq!(page_files(&view["pages"]["import-one"]).len(), 2);
    assert_eq!(page_files(&view["pages"]["import-two"]).len(), 1);

    // With the server running, the import leaves signing to it; a broken file is refused by name.
    let more = dir.path().join("more");
    fs::create_dir_all(&more).unwrap();
    let three = Project {
        name: "import-one",
        version: "3.0",
        dependencies: &[],
        payload: "c",
    }
    .build(env, dir.path());
    fs::copy(&three.wheel, more.join(three.wheel.file_name().unwrap())).unwrap();
    fs::write(more.join("import_two-9.0-py3-none-any.whl"), "not a zip").unwrap();
    let output = tufa(&[
        "import",
        "--data",
        data.to_str().unwrap(),
        "--user",
        "alice",
        more.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("a running tufa serve signs this data directory"),
        "{said}"
    );
    assert!(
        said.contains("import_two-9.0-py3-none-any.whl: invalid distribution file")
            && said.contains("not a valid zip archive"),
        "{said}"
    );
    assert!(said.contains("imported 1 file(s)"), "{said}");
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["import-one"]);
    assert_eq!(page_files(&view["pages"]["import-one"]).len(), 3);
}

/// pip and uv still install sdists packed the old ways; an import of an old directory takes them,
/// reading `PKG-INFO` from each, and names what it refuses (eggs, Windows installers).
#[test]
fn import_takes_the_older_sdist_archives_pip_installs_and_names_what_it_refuses() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let packages = dir.path().join("packages");
    fs::create_dir_all(&packages).unwrap();
    let built = Project {
        name: "legacy-sdist",
        version: "1.0",
        dependencies: &[],
        payload: "a",
    }
    .build(env, dir.path());
    // Python's own archive modules repack the real sdist under each older format and version.
    let repack = env.run_script(
        r#"
import io, sys, tarfile, zipfile, pathlib
source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with tarfile.open(source) as tar:
    members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
def renamed(name, version):
    return name.replace("legacy_sdist-1.0", f"legacy_sdist-{version}").replace(
        "Version: 1.0", f"Version: {version}")
for version, mode, suffix in [("2.0", "zip", ".zip"), ("3.0", "w:bz2", ".tar.bz2"),
                              ("4.0", "w:xz", ".tar.xz"), ("5.0", "w:gz", ".tgz")]:
    path = out / f"legacy_sdist-{version}{suffix}"
    if mode == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, content in members:
                if content is not None:
                    archive.writestr(renamed(member.name, version),
                                     renamed(content.decode(), version))
    else:
        with tarfile.open(path, mode) as archive:
            for member, content in members:
                member.name = renamed(member.name, version)
                if content is None:
                    archive.addfile(member)
                else:
                    data = renamed(content.decode(), version).encode()
                    member.size = len(data)
                    archive.addfile(member, io.BytesIO(data))
"#,
        &[built.sdist.to_str().unwrap(), packages.to_str().unwrap()],
    );
    assert!(
        repack.status.success(),
        "{}",
        String::from_utf8_lossy(&repack.stderr)
    );
    fs::write(packages.join("legacy_sdist-0.9-py2.7.egg"), "an egg").unwrap();
    fs::write(packages.join("legacy_sdist-0.8.win32.exe"), "an installer").unwrap();
    fs::write(packages.join("NOTES.txt"), "not a distribution").unwrap();

    let output = tufa(&[
        "import",
        "--data",
        data.to_str().unwrap(),
        "--user",
        "alice",
        packages.to_str().unwrap(),
    ]);
    assert!(
        !output.status.success(),
        "the refused files fail the import"
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("imported 4 file(s)"), "{said}");
    assert!(said.contains("pip stopped installing eggs"), "{said}");
    assert!(said.contains("bdist_wininst"), "{said}");
    assert!(said.contains("2 refused, 1 skipped"), "{said}");

    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let view = python_tuf(&server, &dir.path().join("python-tuf"), &["legacy-sdist"]);
    let files = page_files(&view["pages"]["legacy-sdist"]);
    let names: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "legacy_sdist-2.0.zip",
            "legacy_sdist-3.0.tar.bz2",
            "legacy_sdist-4.0.tar.xz",
            "legacy_sdist-5.0.tgz",
        ])
    );
    for name in names {
        assert_eq!(
            files[name],
            sha256_hex(&fs::read(packages.join(name)).unwrap())
        );
    }
}
