//! The signed mirror of the real https://pypi.org end to end: `tufa serve --upstream` with a
//! development repository, `tufa proxy` in front of it, and real pip, uv and python-tuf. One
//! index serves every step (each step also relies on what the earlier ones mirrored).
//!
//! Needs the network (pypi.org and files.pythonhosted.org), as every machine of this project
//! has it.

use std::path::Path;
use std::process::Output;

mod common;

use common::{TUFA, installed, ok, output_text, python_tuf, token, tufa, uv};
use tufa_testkit::{PythonEnv, TufaProxy, TufaServer, http, sha256_hex};

const UPSTREAM: &str = "https://pypi.org/simple/";

/// What `pip install flask requests` brings, by normalized project name.
const EXPECTED: &[&str] = &[
    "blinker",
    "certifi",
    "charset_normalizer",
    "click",
    "flask",
    "idna",
    "itsdangerous",
    "jinja2",
    "markupsafe",
    "requests",
    "urllib3",
    "werkzeug",
];

/// `pip install --target` from `index_url` with no cache and no local wheel directories, so
/// that every file comes through the index.
fn pip_only_from(index_url: &str, target: &Path, requirements: &[&str]) -> Output {
    PythonEnv::shared()
        .command("pip")
        .env_remove("PIP_FIND_LINKS")
        .env("PIP_NO_CACHE_DIR", "1")
        .args(["install", "--index-url", index_url, "--target"])
        .arg(target)
        .args(requirements)
        .output()
        .unwrap()
}

/// The project names of what a `--target` directory holds, lower-cased.
fn projects(target: &Path) -> Vec<String> {
    let mut names: Vec<String> = installed(target)
        .iter()
        .map(|dist| {
            dist.rsplit_once('-')
                .map_or(dist.as_str(), |(name, _)| name)
                .to_lowercase()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn metric(server: &TufaServer, name: &str) -> u64 {
    let metrics = http::get(&format!("{}/metrics", server.url), &[]).text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn an_organization_installs_from_pypi_through_the_signed_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", UPSTREAM, "--private", "acme-*"],
    );
    let root = server.data_dir.join("trusted-root.json");
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root,
        &dir.path().join("proxy-cache"),
        &[],
    );

    // pip through the proxy: every page it asks for is mirrored on demand, signed, verified.
    let pip_target = dir.path().join("pip");
    let output = pip_only_from(&proxy.simple_url(), &pip_target, &["flask", "requests"]);
    ok(output, "pip install through the proxy and the mirror");
    assert_eq!(
        projects(&pip_target),
        EXPECTED,
        "{:?}",
        installed(&pip_target)
    );
    proxy.log_containing("the index mirrored");

    // uv with a cache of its own, through the same proxy: now from mirrored, stored files.
    let uv_target = dir.path().join("uv");
    ok(
        uv(&proxy.simple_url(), &uv_target, &["flask", "requests"]),
        "uv pip install through the proxy and the mirror",
    );
    assert_eq!(
        projects(&uv_target),
        EXPECTED,
        "{:?}",
        installed(&uv_target)
    );

    // python-tuf verifies the mirrored pages: PEP 708 `tracks` names pypi.org, file URLs point
    // at this index, and every file stored so far is the one its signed hash names.
    let verified = python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["flask", "requests"],
    );
    let storage = common::published(&server.data_dir);
    for project in ["flask", "requests"] {
        let page = &verified["pages"][project];
        assert_eq!(page["meta"]["api-version"], "1.2", "{project}");
        assert_eq!(
            page["tracks"],
            serde_json::json!([format!("{UPSTREAM}{project}/")]),
            "{project}"
        );
        let files = page["files"].as_array().unwrap();
        assert!(files.len() > 10, "{project} has all of PyPI's files");
        let mut stored = 0;
        for file in files {
            let sha256 = file["hashes"]["sha256"].as_str().unwrap();
            assert_eq!(
                file["url"],
                format!("/files/{sha256}/{}", file["filename"].as_str().unwrap())
            );
            let path = format!("files/{}/{sha256}", &sha256[..2]);
            if let Some(bytes) = storage.read(&path) {
                assert_eq!(sha256_hex(&bytes), sha256, "{path}");
                stored += 1;
            }
        }
        assert!(stored >= 1, "the installed wheel of {project} is stored");
    }
    assert!(metric(&server, "tufa_mirror_projects") >= EXPECTED.len() as u64);
    assert_eq!(metric(&server, "tufa_mirror_hash_mismatches_total"), 0);

    // A private name is answered without asking upstream.
    let fetches = metric(&server, "tufa_mirror_page_fetches_total");
    let private = http::get(&format!("{}/simple/acme-billing/", server.url), &[]);
    assert_eq!(private.status, 404);
    assert!(
        private.reason.contains("reserved for private uploads")
            && private.reason.contains("acme-*"),
        "{}",
        private.reason
    );
    assert_eq!(metric(&server, "tufa_mirror_page_fetches_total"), fetches);
    assert!(!server.log().contains("pypi.org/simple/acme-billing"));

    // An upload to a mirrored name is refused with the fix; a private name takes uploads.
    let alice = token(&server.data_dir, "alice", None);
    let refused = server.upload_wheel(&alice, "flask", "99.0");
    assert_eq!(refused.status, 403, "{}", refused.reason);
    assert!(
        refused.reason.contains("mirrored from the upstream index")
            && refused
                .reason
                .contains("tufa mirror adopt flask --owner USER")
            && refused.reason.contains("--private"),
        "{}",
        refused.reason
    );
    let accepted = server.upload_wheel(&alice, "acme-billing", "1.0");
    assert_eq!(accepted.status, 200, "{}", accepted.reason);
    server.wait_until_signed();
    let page = http::get(
        &format!("{}/simple/acme-billing/", server.url),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    )
    .json();
    assert!(
        page.get("tracks").is_none(),
        "a local project tracks nothing"
    );

    // `tufa verify` beside the running server: files not downloaded yet are not missing.
    let report = ok(
        tufa(&["verify", "--data", server.data_dir.to_str().unwrap()]),
        "tufa verify",
    );
    assert!(
        report.contains("mirrored file(s) not downloaded yet") && report.contains(": 0 problem(s)"),
        "{report}"
    );

    // Adopting ends mirroring: the owner uploads, the mirrored files stay.
    let adopted = ok(
        tufa(&[
            "mirror",
            "adopt",
            "flask",
            "--owner",
            "alice",
            "--data",
            server.data_dir.to_str().unwrap(),
        ]),
        "tufa mirror adopt",
    );
    assert!(adopted.contains("adopted flask"), "{adopted}");
    let uploaded = server.upload_wheel(&alice, "flask", "99.0");
    assert_eq!(uploaded.status, 200, "{}", uploaded.reason);
    server.wait_until_signed();
    let verified = python_tuf(&server, &dir.path().join("python-tuf"), &["flask"]);
    let page = &verified["pages"]["flask"];
    assert!(page.get("tracks").is_none(), "{}", page["meta"]);
    let names: Vec<&str> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"flask-99.0-py3-none-any.whl"));
    assert!(
        names.contains(&"flask-3.0.0-py3-none-any.whl"),
        "pins keep working"
    );
    let status = output_text(&tufa(&[
        "status",
        "--data",
        server.data_dir.to_str().unwrap(),
    ]));
    assert!(
        status.contains("project(s) mirrored from upstream"),
        "{status}"
    );
}
