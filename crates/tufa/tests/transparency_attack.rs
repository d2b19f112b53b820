//! Issue 16's attack, end to end: someone holding the index's online key (not the log key)
//! shows one proxy a private view: a forged timestamp, snapshot, bin role and page listing a
//! forged file, served in place of the index (a compromised mirror or CDN, a man in the middle).
//! Plain TUF accepts it, since the online key signed it; with the transparency log declared in
//! root the proxy refuses it, because the log never recorded that timestamp. Real `tufa serve`,
//! real `tufa proxy`, real pip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::SystemTime;

mod common;

use common::{TUFA, installed, ok, output_text as text, pip, published, token, twine};
use tufa_metadata::{Metadata, Root};
use tufa_repo::{Expiries, FsStore, PageChange, Repository, View, key_paths, load_signer};
use tufa_testkit::{Built, Project, PythonEnv, StaticServer, TufaProxy, TufaServer, sha256_hex};

const PROJECT: &str = "tufa-victim";
const LOG_FIELD: &str = "x-tufa-transparency-log";

fn build(dir: &Path, version: &str, payload: &str) -> Built {
    let out = dir.join(payload);
    fs::create_dir_all(&out).unwrap();
    Project {
        name: PROJECT,
        version,
        dependencies: &[],
        payload,
    }
    .build(PythonEnv::shared(), &out)
}

fn proxy(index: &str, root: &Path, cache: &Path) -> TufaProxy {
    TufaProxy::start(
        TUFA.as_ref(),
        index,
        root,
        cache,
        &["--refresh-interval-ms", "300"],
    )
}

fn install(proxy: &TufaProxy, target: &Path) -> Output {
    pip(&proxy.simple_url(), target, &["-vv", PROJECT])
}

/// What the installed module says it is (its `PAYLOAD`).
fn installed_payload(target: &Path) -> String {
    let module = fs::read_to_string(target.join("tufa_victim/__init__.py")).unwrap();
    module
        .lines()
        .find_map(|line| line.strip_prefix("PAYLOAD = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// The attacker's copy of the index: everything it published, plus a forged release of
/// [`PROJECT`] signed with the index's online key (a new page, bin role, snapshot and
/// timestamp), served by a static web server. Nothing is appended to the log: the attacker has
/// no log key.
fn forge(data: &Path, dir: &Path) -> StaticServer {
    let copy = dir.join("attacker");
    published(data).export(&copy);
    let forged = build(dir, "1.1", "forged");
    let name = forged
        .wheel
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let wheel = fs::read(&forged.wheel).unwrap();
    fs::create_dir_all(copy.join("files")).unwrap();
    fs::write(copy.join("files").join(&name), &wheel).unwrap();
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": PROJECT,
        "files": [{
            "filename": name,
            "url": format!("/files/{name}"),
            "hashes": {"sha256": sha256_hex(&wheel)},
            "size": wheel.len(),
        }],
    });
    // tufa-repo refuses to publish for a root that declares a log without the log's key; the
    // attacker's tool is not bound by that. Here it opens the copy with a root stripped of the
    // declaration, and the index's own root files are put back before anything is served.
    let roots: Vec<PathBuf> = fs::read_dir(copy.join("tuf/metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("root.json"))
        .collect();
    let originals: Vec<Vec<u8>> = roots.iter().map(|p| fs::read(p).unwrap()).collect();
    let stripped = fs::read(root_without_log(data, dir)).unwrap();
    for path in &roots {
        fs::write(path, &stripped).unwrap();
    }
    let online = load_signer(&key_paths(&data.join("dev-keys/online")).0, None).unwrap();
    let now = SystemTime::now();
    let mut repository = Repository::open(
        FsStore::open(copy.join("tuf")).unwrap(),
        Arc::new(online),
        Expiries::default(),
        now,
    )
    .unwrap();
    repository
        .publish(
            &[PageChange {
                project: PROJECT.into(),
                view: View::Simple,
                page: Some(serde_json::to_vec(&page).unwrap()),
            }],
            now,
        )
        .unwrap();
    for (path, original) in roots.iter().zip(&originals) {
        fs::write(path, original).unwrap();
    }
    StaticServer::start(copy)
}

/// The index's trusted root without the log declaration, signed again with the development
/// root key: what every TUF client trusted before the log, verifying everything else alike.
fn root_without_log(data: &Path, out: &Path) -> PathBuf {
    let mut root =
        Metadata::<Root>::from_bytes(&fs::read(data.join("trusted-root.json")).unwrap()).unwrap();
    assert!(
        root.signed.unrecognized.remove(LOG_FIELD).is_some(),
        "the index's root declares its transparency log"
    );
    root.clear_signatures();
    let key = load_signer(&key_paths(&data.join("dev-keys/dev-root")).0, None).unwrap();
    let path = out.join("root-without-log.json");
    fs::write(&path, root.sign_to_bytes(&key).unwrap()).unwrap();
    path
}

#[test]
fn a_view_forged_with_the_online_key_is_installed_without_the_log_and_refused_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = TufaServer::start(TUFA.as_ref(), &dir.join("data"), &[]);
    let token = token(&server.data_dir, "alice", None);
    let honest = build(dir, "1.0", "honest");
    ok(
        twine(&server, &token, &[&honest.wheel], &[]),
        "twine upload",
    );
    server.wait_until_signed();
    let root = server.data_dir.join("trusted-root.json");

    // A proxy in use before the attack has seen the log.
    let seen_cache = dir.join("cache-seen");
    {
        let before = proxy(&server.url, &root, &seen_cache);
        let target = dir.join("before");
        let output = install(&before, &target);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(installed_payload(&target), "honest");
    }

    let attacker = forge(&server.data_dir, dir);
    let attacker_url = attacker.url();

    // Without the log: the online key's signature is all plain TUF asks, and the forged file
    // is installed.
    let plain = proxy(
        &attacker_url,
        &root_without_log(&server.data_dir, dir),
        &dir.join("cache-plain"),
    );
    let target = dir.join("plain");
    let output = install(&plain, &target);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(installed(&target), ["tufa_victim-1.1"]);
    assert_eq!(installed_payload(&target), "forged");

    // With the log: a fresh proxy refuses the timestamp and installs nothing.
    let logged = proxy(&attacker_url, &root, &dir.join("cache-logged"));
    let target = dir.join("logged");
    let output = install(&logged, &target);
    assert!(!output.status.success(), "installed:\n{}", text(&output));
    assert_eq!(installed(&target), Vec::<String>::new());
    let reason = "unlogged timestamp";
    assert!(
        text(&output).contains(reason),
        "pip does not show {reason:?}:\n{}",
        text(&output)
    );
    let log = logged.log_containing(reason);
    assert!(
        log.contains(reason),
        "the proxy does not log {reason:?}:\n{log}"
    );

    // `tufa download` refuses it the same way.
    let download_cache = dir.join("download-cache");
    let download = common::tufa(&[
        "download",
        "--index",
        &attacker_url,
        "--root",
        root.to_str().unwrap(),
        "--cache",
        download_cache.to_str().unwrap(),
        PROJECT,
    ]);
    assert!(!download.status.success(), "{}", text(&download));
    assert!(text(&download).contains(reason), "{}", text(&download));

    // The proxy that saw the log before keeps serving what it verified then: the honest file.
    let seen = proxy(&attacker_url, &root, &seen_cache);
    let target = dir.join("seen");
    let output = install(&seen, &target);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(installed(&target), ["tufa_victim-1.0"]);
    assert_eq!(installed_payload(&target), "honest");
    let log = seen.log_containing("refused the index's new timestamp");
    assert!(log.contains(reason), "{log}");
}

/// The `/tuf/` requests `server` answered since its log had `mark` bytes, with the bytes of
/// each answer (0 for a miss), as (path, status, bytes).
fn tuf_requests(server: &TufaServer, mark: usize) -> Vec<(String, u16, usize)> {
    let store = published(&server.data_dir);
    server.log()[mark..]
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("GET /tuf/")? + "GET /".len()..];
            let mut words = rest.split(' ');
            let path = words.next()?.to_string();
            let status: u16 = words.next()?.parse().ok()?;
            let bytes = if status == 200 {
                store.read(&path).map_or(0, |b| b.len())
            } else {
                0
            };
            Some((path, status, bytes))
        })
        .collect()
}

/// One refresh of `proxy` (a page request past its refresh interval), and the `/tuf/`
/// requests it made of `server`.
fn refresh(server: &TufaServer, proxy: &TufaProxy) -> Vec<(String, u16, usize)> {
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mark = server.log().len();
    let page = tufa_testkit::http::get(&format!("{}{PROJECT}/", proxy.simple_url()), &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    tuf_requests(server, mark)
}

#[test]
fn a_proxy_refresh_with_the_log_costs_one_more_request_or_two_when_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = TufaServer::start(TUFA.as_ref(), &dir.join("data"), &[]);
    let token = token(&server.data_dir, "alice", None);
    let publish = |version: &str| {
        let built = build(dir, version, &format!("v{version}"));
        ok(twine(&server, &token, &[&built.wheel], &[]), "twine upload");
        server.wait_until_signed();
    };
    publish("1.0");
    let root = server.data_dir.join("trusted-root.json");
    let plain = proxy(
        &server.url,
        &root_without_log(&server.data_dir, dir),
        &dir.join("cache-plain"),
    );
    let logged = proxy(&server.url, &root, &dir.join("cache-logged"));
    refresh(&server, &plain);
    refresh(&server, &logged);

    let mut report = String::new();
    for (case, versions) in [
        ("one publish behind", &["1.1"][..]),
        ("three publishes behind", &["1.2", "1.3", "1.4"][..]),
    ] {
        for version in versions {
            publish(version);
        }
        let without = refresh(&server, &plain);
        let with = refresh(&server, &logged);
        let log_requests: Vec<_> = with
            .iter()
            .filter(|r| r.0.starts_with("tuf/log/"))
            .collect();
        // The log check adds only requests under `log/`; the rest may differ by a publish that
        // lands between the two refreshes.
        let added = log_requests.len();
        let bytes = |requests: &[(String, u16, usize)]| requests.iter().map(|r| r.2).sum::<usize>();
        report.push_str(&format!(
            "{case}: {} requests / {} bytes without the log, {} / {} with it (+{added}: {})\n",
            without.len(),
            bytes(&without),
            with.len(),
            bytes(&with),
            log_requests
                .iter()
                .map(|r| format!("{} {} B", r.0, r.2))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        assert!(added <= 2, "{report}");
        assert!(
            log_requests
                .first()
                .is_some_and(|r| r.0.starts_with("tuf/log/proof/")),
            "{report}"
        );
    }
    eprintln!("{report}");
}
