//! Keys for years, end to end: a 2-of-3 root signed by separate processes, a root rotation that
//! replaces two keys and raises the threshold (clients follow), refusal of a request lacking its
//! threshold, and recovery from a stolen online key that even clients which accepted the
//! attacker's metadata come back from.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{
    TUFA, generate_keys, install_ceremony, ok, page_files, python_tuf, python_tuf_at, token, tufa,
};
use tufa_metadata::{
    DelegatedRoles, Expires, FileSigner, MetaFile, Metadata, Snapshot, TargetFile, Targets,
    Timestamp,
};
use tufa_repo::{View, layout};
use tufa_testkit::{StaticServer, TufaServer, http, minimal_wheel, sha256_hex};

fn key_id(dir: &Path, name: &str) -> String {
    let key: tufa_metadata::Key =
        serde_json::from_slice(&fs::read(dir.join(format!("{name}.pub.json"))).unwrap()).unwrap();
    key.key_id().unwrap().as_str().to_string()
}

fn path(dir: &Path, name: &str, ext: &str) -> String {
    dir.join(format!("{name}.{ext}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// A ceremony with root keys a, b, c (threshold 2), written unsigned; then each holder signs in
/// a process of their own, holding only their own key.
fn ceremony_signed_separately(keys_dir: &Path, out: &Path) {
    let key = |n: &str| path(keys_dir, n, "pub.json");
    ok(
        tufa(&[
            "ceremony",
            "--out",
            out.to_str().unwrap(),
            "--root-key",
            &key("root-a"),
            "--root-key",
            &key("root-b"),
            "--root-key",
            &key("root-c"),
            "--root-threshold",
            "2",
            "--targets-key",
            &key("targets"),
            "--bins-key",
            &key("bins"),
            "--online-key",
            &key("online"),
            "--bin-bits",
            "4",
        ]),
        "tufa ceremony (unsigned)",
    );
    let metadata = out.join("metadata");
    for (file, holder) in [
        ("1.root.json", "root-a"),
        ("1.root.json", "root-c"),
        ("1.targets.json", "targets"),
        ("1.bins.json", "bins"),
    ] {
        let said = ok(
            tufa(&[
                "sign",
                metadata.join(file).to_str().unwrap(),
                "--key",
                &path(keys_dir, holder, "pem"),
            ]),
            "tufa sign",
        );
        assert!(said.contains("signed"), "{said}");
    }
}

fn upload(server: &TufaServer, token: &str, project: &str, version: &str) -> String {
    let response = server.upload_wheel(token, project, version);
    assert_eq!(response.status, 200, "{}", response.reason);
    server.wait_until_signed();
    sha256_hex(&minimal_wheel(project, version))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn submit(data: &Path, files: &[&Path]) -> (bool, String) {
    let mut args = vec!["roles", "submit", "--data", data.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let output = tufa(&args);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn tufa_download(
    server_url: &str,
    root: &Path,
    cache: &Path,
    project: &str,
) -> Result<String, String> {
    let output = tufa(&[
        "download",
        "--index",
        server_url,
        "--root",
        root.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        project,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn separate_signers_then_a_root_rotation_clients_follow() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    fs::create_dir_all(&keys_dir).unwrap();
    generate_keys(
        &keys_dir,
        &[
            "root-a", "root-b", "root-c", "root-d", "root-e", "targets", "bins", "online",
        ],
    );
    let ceremony = dir.path().join("ceremony");
    ceremony_signed_separately(&keys_dir, &ceremony);
    let data = dir.path().join("data");
    install_ceremony(&ceremony, &data);
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--online-key", &path(&keys_dir, "online", "pem")],
    );
    let alice = token(&data, "alice", None);
    let first = upload(&server, &alice, "rotation-demo", "1.0");
    let python_cache = dir.path().join("python-tuf");
    let view = python_tuf(&server, &python_cache, &["rotation-demo"]);
    assert_eq!(
        page_files(&view["pages"]["rotation-demo"])["rotation_demo-1.0-py3-none-any.whl"],
        first
    );
    let root_file = data.join("trusted-root.json");
    let tufa_cache = dir.path().join("tufa-cache");
    tufa_download(&server.url, &root_file, &tufa_cache, "rotation-demo").unwrap();

    // Root 2 replaces a and b with d and e, and raises the threshold to 3 of c, d, e.
    let request = dir.path().join("root-2.json");
    let data_arg = data.to_str().unwrap();
    ok(
        tufa(&[
            "roles",
            "prepare",
            "root",
            "--data",
            data_arg,
            "--out",
            request.to_str().unwrap(),
            "--add-root-key",
            &path(&keys_dir, "root-d", "pub.json"),
            "--add-root-key",
            &path(&keys_dir, "root-e", "pub.json"),
            "--remove-root-key",
            &key_id(&keys_dir, "root-a"),
            "--remove-root-key",
            &key_id(&keys_dir, "root-b"),
            "--root-threshold",
            "3",
        ]),
        "tufa roles prepare root",
    );
    // Every holder signs a copy of their own.
    let copy = |holder: &str| -> PathBuf {
        let file = dir.path().join(format!("root-2-{holder}.json"));
        fs::copy(&request, &file).unwrap();
        ok(
            tufa(&[
                "sign",
                file.to_str().unwrap(),
                "--key",
                &path(&keys_dir, holder, "pem"),
            ]),
            "tufa sign",
        );
        file
    };
    let (a, c, d, e) = (
        copy("root-a"),
        copy("root-c"),
        copy("root-d"),
        copy("root-e"),
    );

    let (published, said) = submit(&data, &[&a, &c]);
    assert!(!published, "a request below its threshold is refused");
    assert!(
        said.contains("root keys of the trusted root version 1: 2 of 2 signature(s)"),
        "{said}"
    );
    let d_id = key_id(&keys_dir, "root-d");
    let e_id = key_id(&keys_dir, "root-e");
    assert!(
        said.contains(
            "root keys of the new root version 2: 1 of 3 signature(s); 2 more needed from any of:"
        ) && said.contains(&d_id)
            && said.contains(&e_id),
        "the refusal says how many more signatures from which keys: {said}"
    );
    assert!(said.contains("not published yet"), "{said}");
    let (published, said) = submit(&data, &[&d]);
    assert!(!published);
    assert!(
        said.contains("2 of 3 signature(s); 1 more needed from any of:") && said.contains(&e_id),
        "{said}"
    );
    let status = ok(tufa(&["status", "--data", data_arg]), "tufa status");
    assert!(status.contains("pending root version 2"), "{status}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        http::get(&format!("{}/tuf/metadata/2.root.json", server.url), &[]).status,
        404,
        "not published below threshold"
    );

    let (published, said) = submit(&data, &[&e]);
    assert!(published, "{said}");
    wait_for("root version 2 to be published", || {
        http::get(&format!("{}/tuf/metadata/2.root.json", server.url), &[]).status == 200
    });
    let status = ok(tufa(&["status", "--data", data_arg]), "tufa status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("root") && l.contains(" 2 ") && l.contains("3 of 3")),
        "{status}"
    );

    // Both clients follow the rotation on their next refresh and keep verifying new uploads.
    let second = upload(&server, &alice, "rotation-demo", "2.0");
    let view = python_tuf(&server, &python_cache, &["rotation-demo"]);
    assert_eq!(
        page_files(&view["pages"]["rotation-demo"])["rotation_demo-2.0-py3-none-any.whl"],
        second
    );
    let trusted: serde_json::Value =
        serde_json::from_slice(&fs::read(python_cache.join("metadata/root.json")).unwrap())
            .unwrap();
    assert_eq!(
        trusted["signed"]["version"], 2,
        "python-tuf now trusts root version 2"
    );
    let listing = tufa_download(&server.url, &root_file, &tufa_cache, "rotation-demo").unwrap();
    assert!(listing.contains(&second), "{listing}");

    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    for line in [
        "tufa_role_version{role=\"root\"} 2",
        "tufa_role_version{role=\"targets\"} 1",
        "tufa_publisher_lag_serials 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        metrics.contains("tufa_role_expires_timestamp_seconds{role=\"timestamp\"} "),
        "{metrics}"
    );

    // Targets re-signed with only 10 days to live: status warns, metrics show the new expiry.
    let status = ok(tufa(&["status", "--data", data_arg]), "tufa status");
    assert!(!status.contains("warning"), "{status}");
    let targets_request = dir.path().join("targets-2.json");
    ok(
        tufa(&[
            "roles",
            "prepare",
            "targets",
            "--data",
            data_arg,
            "--out",
            targets_request.to_str().unwrap(),
            "--expiry-days",
            "10",
        ]),
        "tufa roles prepare targets",
    );
    ok(
        tufa(&[
            "sign",
            targets_request.to_str().unwrap(),
            "--key",
            &path(&keys_dir, "targets", "pem"),
        ]),
        "tufa sign",
    );
    let (published, said) = submit(&data, &[&targets_request]);
    assert!(published, "{said}");
    wait_for("targets version 2", || {
        http::get(&format!("{}/metrics", server.url), &[])
            .text()
            .contains("tufa_role_version{role=\"targets\"} 2")
    });
    let status = ok(tufa(&["status", "--data", data_arg]), "tufa status");
    assert!(status.contains("warning: targets expires"), "{status}");
    // The superseded targets waits for removal with the rest, as the server counts it.
    let awaiting =
        http::get(&format!("{}/status", server.url), &[]).json()["awaiting_removal"]["files"]
            .as_u64()
            .unwrap();
    let counted = status
        .lines()
        .find_map(|line| {
            line.trim_start_matches("disk")
                .trim()
                .strip_prefix("awaiting removal")
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
    assert_eq!(counted, Some(awaiting), "{status}");
    assert!(!status.contains("warning: root"), "{status}");
    let view = python_tuf(&server, &python_cache, &["rotation-demo"]);
    assert_eq!(
        page_files(&view["pages"]["rotation-demo"]).len(),
        2,
        "clients follow the new targets"
    );
}

/// What an attacker holding the online key can do: publish a page of its choosing for
/// `project`, with every online role re-signed at versions far above the real ones.
fn forge_with_stolen_key(
    tuf: &Path,
    stolen: &FileSigner,
    project: &str,
    evil_page: &[u8],
    bump: u64,
) {
    let read = |file: &str| fs::read(tuf.join(file)).unwrap();
    let timestamp: Metadata<Timestamp> =
        Metadata::from_bytes(&read("metadata/timestamp.json")).unwrap();
    let snapshot_file = format!(
        "metadata/{}.snapshot.json",
        timestamp.signed.snapshot_meta.version
    );
    let snapshot: Metadata<Snapshot> = Metadata::from_bytes(&read(&snapshot_file)).unwrap();
    let bins_version = snapshot.signed.meta["bins.json"].version;
    let bins: Metadata<Targets> =
        Metadata::from_bytes(&read(&format!("metadata/{bins_version}.bins.json"))).unwrap();
    let Some(DelegatedRoles::Succinct(succinct)) =
        bins.signed.delegations.as_ref().map(|d| &d.roles)
    else {
        panic!("bins delegates no succinct roles");
    };
    let target = layout::page_target(View::Simple, project);
    let bin_name = succinct.role_for_target(target.as_str());
    let bin_meta = snapshot.signed.role_meta(&bin_name).unwrap();
    let bin: Metadata<Targets> = Metadata::from_bytes(&read(&format!(
        "metadata/{}.{bin_name}.json",
        bin_meta.version
    )))
    .unwrap();
    let far = Expires::after(SystemTime::now(), Duration::from_secs(30 * 86_400));

    let evil = TargetFile::from_content(evil_page);
    let evil_file = tuf.join(layout::target_file(&target, &evil.hashes["sha256"]));
    fs::create_dir_all(evil_file.parent().unwrap()).unwrap();
    fs::write(&evil_file, evil_page).unwrap();
    let mut forged_bin = Metadata::new(bin.signed.clone());
    forged_bin.signed.version += bump;
    forged_bin.signed.expires = far;
    forged_bin.signed.targets.insert(target, evil);
    forged_bin.sign(stolen).unwrap();
    fs::write(
        tuf.join(format!(
            "metadata/{}.{bin_name}.json",
            forged_bin.signed.version
        )),
        forged_bin.to_bytes().unwrap(),
    )
    .unwrap();
    let mut forged_snapshot = Metadata::new(snapshot.signed.clone());
    forged_snapshot.signed.version += bump;
    forged_snapshot.signed.expires = far;
    forged_snapshot.signed.meta.insert(
        format!("{bin_name}.json"),
        MetaFile::new(forged_bin.signed.version),
    );
    forged_snapshot.sign(stolen).unwrap();
    let snapshot_bytes = forged_snapshot.to_bytes().unwrap();
    fs::write(
        tuf.join(format!(
            "metadata/{}.snapshot.json",
            forged_snapshot.signed.version
        )),
        &snapshot_bytes,
    )
    .unwrap();
    let mut forged_timestamp = Metadata::new(Timestamp::new(
        timestamp.signed.version + bump,
        far,
        MetaFile::with_content(forged_snapshot.signed.version, &snapshot_bytes),
    ));
    forged_timestamp.sign(stolen).unwrap();
    fs::write(
        tuf.join("metadata/timestamp.json"),
        forged_timestamp.to_bytes().unwrap(),
    )
    .unwrap();
}

/// A copy of the index's published files, as a compromised mirror would serve them.
fn mirror_of(data: &Path, mirror: &Path) {
    common::published(data).export(mirror);
}

#[test]
fn recovery_from_a_stolen_online_key_brings_every_client_back() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    fs::create_dir_all(&keys_dir).unwrap();
    generate_keys(
        &keys_dir,
        &[
            "root-a", "root-b", "root-c", "targets", "bins", "online", "online-2",
        ],
    );
    let ceremony = dir.path().join("ceremony");
    ceremony_signed_separately(&keys_dir, &ceremony);
    let data = dir.path().join("data");
    install_ceremony(&ceremony, &data);
    let stolen_path = path(&keys_dir, "online", "pem");
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &["--online-key", &stolen_path]);
    let alice = token(&data, "alice", None);
    let real = upload(&server, &alice, "victim", "1.0");
    let root_file = data.join("trusted-root.json");
    let early = dir.path().join("early-client");
    let view = python_tuf(&server, &early, &["victim"]);
    assert_eq!(
        page_files(&view["pages"]["victim"])["victim-1.0-py3-none-any.whl"],
        real
    );
    let tufa_early = dir.path().join("tufa-early");
    tufa_download(&server.url, &root_file, &tufa_early, "victim").unwrap();
    server.kill();

    // The attacker, with the stolen online key, serves a page pointing at its own file.
    let evil_sha = "e".repeat(64);
    let evil_page = format!(
        r#"{{"meta":{{"api-version":"1.1"}},"name":"victim","versions":["1.0"],"files":[{{"filename":"victim-1.0-py3-none-any.whl","url":"/files/{evil_sha}/victim-1.0-py3-none-any.whl","hashes":{{"sha256":"{evil_sha}"}},"size":1}}]}}"#
    );
    let stolen = FileSigner::from_pem(&fs::read_to_string(&stolen_path).unwrap(), None).unwrap();
    let attacker = dir.path().join("attacker-mirror");
    fs::create_dir_all(&attacker).unwrap();
    mirror_of(&data, &attacker);
    forge_with_stolen_key(
        &attacker.join("tuf"),
        &stolen,
        "victim",
        evil_page.as_bytes(),
        1000,
    );
    let mirror = StaticServer::start(&attacker);
    let fooled = python_tuf_at(&mirror.url(), &root_file, &early, &["victim"])
        .expect("the stolen key fools python-tuf, which does not read the declared lifetimes");
    assert_eq!(
        page_files(&fooled["pages"]["victim"])["victim-1.0-py3-none-any.whl"],
        evil_sha
    );
    // Not ours: root declares a one-day lifetime for the online roles, and the thief signed for
    // thirty days (`x-tufa-online-lifetimes`).
    let refused = tufa_download(&mirror.url(), &root_file, &tufa_early, "victim")
        .expect_err("our client refuses metadata outliving its declared lifetime");
    assert!(refused.contains("stolen online key attack"), "{refused}");

    // Recovery, as PEP 458 describes it: root and bins replace the online key (signed offline),
    // the server restarts with the new key and re-signs every online role from its database.
    let data_arg = data.to_str().unwrap();
    let new_root = dir.path().join("root-2.json");
    let new_bins = dir.path().join("bins-2.json");
    let new_key = path(&keys_dir, "online-2", "pub.json");
    ok(
        tufa(&[
            "roles",
            "prepare",
            "root",
            "--data",
            data_arg,
            "--out",
            new_root.to_str().unwrap(),
            "--online-key",
            &new_key,
        ]),
        "prepare root",
    );
    ok(
        tufa(&[
            "roles",
            "prepare",
            "bins",
            "--data",
            data_arg,
            "--out",
            new_bins.to_str().unwrap(),
            "--online-key",
            &new_key,
        ]),
        "prepare bins",
    );
    for (file, holder) in [
        (&new_root, "root-a"),
        (&new_root, "root-b"),
        (&new_bins, "bins"),
    ] {
        ok(
            tufa(&[
                "sign",
                file.to_str().unwrap(),
                "--key",
                &path(&keys_dir, holder, "pem"),
            ]),
            "tufa sign",
        );
    }
    let (published, said) = submit(&data, &[&new_root, &new_bins]);
    assert!(published, "{said}");
    let server = TufaServer::start(
        TUFA.as_ref(),
        &data,
        &["--online-key", &path(&keys_dir, "online-2", "pem")],
    );
    server.wait_until_signed();
    assert!(
        server
            .log()
            .contains("re-signing every online role with the new key"),
        "{}",
        server.log()
    );

    // The client that accepted the attacker's metadata comes back, as does a new one.
    let recovered = python_tuf(&server, &early, &["victim"]);
    assert_eq!(
        page_files(&recovered["pages"]["victim"])["victim-1.0-py3-none-any.whl"],
        real
    );
    let listing = tufa_download(&server.url, &root_file, &tufa_early, "victim").unwrap();
    assert!(
        listing.contains(&real) && !listing.contains(&evil_sha),
        "{listing}"
    );
    let fresh = python_tuf(&server, &dir.path().join("fresh-client"), &["victim"]);
    assert_eq!(
        page_files(&fresh["pages"]["victim"])["victim-1.0-py3-none-any.whl"],
        real
    );

    // Metadata signed by the old key is now refused, however high its versions.
    let attacker_again = dir.path().join("attacker-again");
    fs::create_dir_all(&attacker_again).unwrap();
    mirror_of(&data, &attacker_again);
    forge_with_stolen_key(
        &attacker_again.join("tuf"),
        &stolen,
        "victim",
        evil_page.as_bytes(),
        5000,
    );
    let mirror = StaticServer::start(&attacker_again);
    let refused = python_tuf_at(&mirror.url(), &root_file, &early, &["victim"])
        .expect_err("old-key metadata must be refused");
    assert!(
        refused.contains("timestamp") && refused.contains("signature"),
        "{refused}"
    );
    let refused = tufa_download(&mirror.url(), &root_file, &tufa_early, "victim")
        .expect_err("by our client too");
    assert!(refused.contains("timestamp"), "{refused}");
}
