//! The index end to end, driven by the real tools: twine and `uv publish` upload, pip and uv
//! install, against a real `tufa serve` process.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::{TUFA, installed, ok, pip, token, tufa, twine, uv};
use tufa_testkit::http::{self, RawResponse};
use tufa_testkit::sha256_hex;
use tufa_testkit::{Built, Project, PythonEnv, TufaServer};

/// Installs into a fresh `--target` directory with pip, returning the installed distributions.
fn pip_install(server: &TufaServer, dir: &Path, requirements: &[&str]) -> Vec<String> {
    let target = dir.join(format!(
        "pip-target-{}",
        requirements.join("_").replace(['=', '>', '<'], "")
    ));
    ok(
        pip(&server.simple_url(), &target, requirements),
        "pip install",
    );
    installed(&target)
}

fn uv_install(server: &TufaServer, dir: &Path, requirements: &[&str]) -> Vec<String> {
    let target = dir.join(format!(
        "uv-target-{}",
        requirements.join("_").replace(['=', '>', '<'], "")
    ));
    ok(
        uv(&server.simple_url(), &target, requirements),
        "uv pip install",
    );
    installed(&target)
}

fn build(env: &PythonEnv, dir: &Path, name: &str, version: &str, dependencies: &[&str]) -> Built {
    Project {
        name,
        version,
        dependencies,
        payload: "original",
    }
    .build(env, dir)
}

fn sha256_of(path: &Path) -> String {
    sha256_hex(&fs::read(path).unwrap())
}

#[test]
fn twine_and_uv_publish_then_pip_and_uv_install() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);

    let app = build(env, dir.path(), "tufa-app", "1.0.0", &["tufa-lib>=0.2"]);
    let lib = build(env, dir.path(), "tufa-lib", "0.2.0", &[]);
    ok(
        twine(&server, &alice, &[&app.wheel, &app.sdist], &[]),
        "twine upload",
    );
    ok(
        env.command("uv")
            .env("UV_CACHE_DIR", dir.path().join("uv-cache"))
            .args(["publish", "--publish-url"])
            .arg(server.upload_url())
            .args(["--token", &alice])
            .arg(&lib.wheel)
            .arg(&lib.sdist)
            .output()
            .unwrap(),
        "uv publish",
    );

    assert_eq!(
        pip_install(&server, dir.path(), &["tufa-app"]),
        ["tufa_app-1.0.0", "tufa_lib-0.2.0"]
    );
    assert_eq!(
        uv_install(&server, dir.path(), &["tufa-app"]),
        ["tufa_app-1.0.0", "tufa_lib-0.2.0"]
    );
    let wheel_name = app.wheel.file_name().unwrap().to_str().unwrap();
    let metadata_fetch = format!(
        "GET /files/{}/{wheel_name}.metadata 200",
        sha256_of(&app.wheel)
    );
    assert!(
        server.log().matches(&metadata_fetch).count() >= 2,
        "pip and uv both fetch the PEP 658 metadata file:\n{}",
        server.log()
    );

    let requirements = dir.path().join("requirements.txt");
    fs::write(
        &requirements,
        format!("tufa-lib==0.2.0 --hash=sha256:{}\n", sha256_of(&lib.wheel)),
    )
    .unwrap();
    ok(
        env.command("pip")
            .args([
                "download",
                "--no-cache-dir",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--require-hashes",
                "--index-url",
            ])
            .arg(server.simple_url())
            .arg("-d")
            .arg(dir.path().join("downloads"))
            .arg("-r")
            .arg(&requirements)
            .output()
            .unwrap(),
        "pip download --require-hashes",
    );
    assert_eq!(
        fs::read(
            dir.path()
                .join("downloads")
                .join(lib.wheel.file_name().unwrap())
        )
        .unwrap(),
        fs::read(&lib.wheel).unwrap()
    );
    fs::write(
        &requirements,
        format!("tufa-lib==0.2.0 --hash=sha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    let refused = env
        .command("pip")
        .args([
            "download",
            "--no-cache-dir",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--require-hashes",
            "--index-url",
        ])
        .arg(server.simple_url())
        .arg("-d")
        .arg(dir.path().join("downloads-bad"))
        .arg("-r")
        .arg(&requirements)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a wrong pinned hash must fail pip download"
    );
}

#[test]
fn yanked_releases_are_skipped_unless_pinned_exactly() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);
    for version in ["1.0.0", "2.0.0"] {
        let built = build(env, dir.path(), "tufa-yank", version, &[]);
        ok(
            twine(&server, &alice, &[&built.wheel, &built.sdist], &[]),
            "twine upload",
        );
    }
    let data = server.data_dir.to_str().unwrap();
    ok(
        tufa(&[
            "yank",
            "--data",
            data,
            "tufa-yank",
            "2.0.0",
            "--reason",
            "broken build",
        ]),
        "tufa yank",
    );

    let page = http::get(
        &format!("{}tufa-yank/", server.simple_url()),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    )
    .json();
    let yanked: BTreeMap<String, serde_json::Value> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_string(),
                f["yanked"].clone(),
            )
        })
        .collect();
    assert_eq!(yanked["tufa_yank-2.0.0-py3-none-any.whl"], "broken build");
    assert_eq!(yanked["tufa_yank-1.0.0-py3-none-any.whl"], false);
    let html = http::get(&format!("{}tufa-yank/", server.simple_url()), &[]).text();
    assert!(
        html.contains("data-yanked=\"broken build\">tufa_yank-2.0.0-py3-none-any.whl"),
        "{html}"
    );

    assert_eq!(
        pip_install(&server, dir.path(), &["tufa-yank"]),
        ["tufa_yank-1.0.0"]
    );
    assert_eq!(
        uv_install(&server, dir.path(), &["tufa-yank"]),
        ["tufa_yank-1.0.0"]
    );
    assert_eq!(
        pip_install(&server, dir.path(), &["tufa-yank==2.0.0"]),
        ["tufa_yank-2.0.0"]
    );
    assert_eq!(
        uv_install(&server, dir.path(), &["tufa-yank==2.0.0"]),
        ["tufa_yank-2.0.0"]
    );

    let info = http::get(&format!("{}/pypi/tufa-yank/json", server.url), &[]).json();
    assert_eq!(
        info["info"]["version"], "1.0.0",
        "the JSON API's latest skips yanked releases"
    );
    assert_eq!(
        info["releases"]["2.0.0"][0]["yanked_reason"],
        "broken build"
    );

    ok(
        tufa(&["unyank", "--data", data, "tufa-yank", "2.0.0"]),
        "tufa unyank",
    );
    assert_eq!(
        pip_install(&server, dir.path(), &["tufa-yank>=1"]),
        ["tufa_yank-2.0.0"]
    );
    let missing = tufa(&["yank", "--data", data, "tufa-yank", "9.9"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no release \"9.9\""));
}

/// Everything under the data directory but the database files, which SQLite may touch on reads,
/// plus the index's serial: what a refused upload must leave as it was.
fn data_state(server: &TufaServer) -> (BTreeMap<PathBuf, Vec<u8>>, String) {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tufa.db")
            {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    server.wait_until_signed();
    let mut files = BTreeMap::new();
    walk(&server.data_dir, &server.data_dir, &mut files);
    let serial = http::get(&server.simple_url(), &[])
        .header("x-pypi-last-serial")
        .unwrap()
        .to_string();
    (files, serial)
}

struct Upload<'a> {
    name: &'a str,
    version: &'a str,
    filetype: &'a str,
    filename: &'a str,
    content: &'a [u8],
    sha256: Option<String>,
}

fn send(server: &TufaServer, auth: Option<&str>, upload: &Upload) -> RawResponse {
    let sha256 = upload
        .sha256
        .clone()
        .unwrap_or_else(|| sha256_hex(upload.content));
    let (content_type, body) = http::multipart(
        &[
            (":action", "file_upload"),
            ("protocol_version", "1"),
            ("metadata_version", "2.1"),
            ("name", upload.name),
            ("version", upload.version),
            ("filetype", upload.filetype),
            ("pyversion", "py3"),
            ("sha256_digest", &sha256),
        ],
        upload.filename,
        upload.content,
    );
    let mut headers = vec![("Content-Type", content_type.as_str())];
    if let Some(auth) = auth {
        headers.push(("Authorization", auth));
    }
    http::request("POST", &server.upload_url(), &headers, &body)
}

const SKIP_EXISTING: &str = r#"
import sys
from twine import package, repository
from twine.commands.upload import skip_upload
url, token, path = sys.argv[1:4]
dist = package.PackageFile.from_filename(path, None)
response = repository.Repository(url, "__token__", token, disable_progress_bar=True).upload(dist)
print(response.status_code, f"skip={skip_upload(response, True, dist)}")
"#;

#[test]
fn bad_uploads_are_refused_with_their_reason_and_change_nothing() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--max-upload-size", "3000"],
    );
    let alice = token(&server.data_dir, "alice", None);
    let bob = token(&server.data_dir, "bob", None);
    let alice_other = token(&server.data_dir, "alice", Some("tufa-other"));
    let v1 = build(env, dir.path(), "tufa-bad", "1.0.0", &[]);
    ok(
        twine(&server, &alice, &[&v1.wheel, &v1.sdist], &[]),
        "twine upload",
    );
    let wheel = fs::read(&v1.wheel).unwrap();
    let sdist = fs::read(&v1.sdist).unwrap();
    let changed = Project {
        name: "tufa-bad",
        version: "1.0.0",
        dependencies: &[],
        payload: "changed",
    }
    .build(env, &dir.path().join("changed"));
    let changed_wheel = fs::read(&changed.wheel).unwrap();
    assert_ne!(changed_wheel, wheel);
    let noise: String = (0u32..3000)
        .map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    let big = Project {
        name: "tufa-bad",
        version: "3.0.0",
        dependencies: &[],
        payload: &noise,
    }
    .build(env, dir.path());

    let before = data_state(&server);
    let wheel_name = "tufa_bad-1.0.0-py3-none-any.whl";
    let good = |filename: &'static str, content: &'static [u8]| Upload {
        name: "tufa-bad",
        version: "1.0.0",
        filetype: "bdist_wheel",
        filename,
        content,
        sha256: None,
    };
    let wheel: &'static [u8] = Box::leak(wheel.into_boxed_slice());
    let sdist: &'static [u8] = Box::leak(sdist.into_boxed_slice());
    let changed_wheel: &'static [u8] = Box::leak(changed_wheel.into_boxed_slice());
    let big_wheel: &'static [u8] = Box::leak(fs::read(&big.wheel).unwrap().into_boxed_slice());
    let cases: Vec<(Option<String>, Upload, u16, &str)> = vec![
        (
            None,
            good(wheel_name, b"x"),
            401,
            "Invalid or non-existent authentication information",
        ),
        (
            Some(http::basic_auth("tufa-not-a-token")),
            good(wheel_name, b"x"),
            403,
            "Invalid API token",
        ),
        (
            Some(http::basic_auth(&bob)),
            good(wheel_name, wheel),
            403,
            "The user 'bob' isn't allowed to upload to project 'tufa-bad'",
        ),
        (
            Some(http::basic_auth(&alice_other)),
            good(wheel_name, wheel),
            403,
            "limited to project 'tufa-other'",
        ),
        (
            Some(http::basic_auth(&alice)),
            good(wheel_name, changed_wheel),
            400,
            "File already exists",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                sha256: Some("0".repeat(64)),
                version: "1.0.2",
                ..good("tufa_bad-1.0.2-py3-none-any.whl", wheel)
            },
            400,
            "does not match a digest calculated from the uploaded file (sha256)",
        ),
        (
            Some(http::basic_auth(&alice)),
            good("tufa_bad.whl", wheel),
            400,
            "invalid distribution filename",
        ),
        (
            Some(http::basic_auth(&alice)),
            good("tufa_bad-1.0.0.zip", wheel),
            400,
            "invalid file extension",
        ),
        (
            Some(http::basic_auth(&alice)),
            good("tufa_bad-1.0.0-py3-none-any.whl.exe", wheel),
            400,
            "invalid file extension",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                version: "1.0.3",
                ..good(
                    "tufa_bad-1.0.3-py3-none-any.whl",
                    b"this is not a zip archive",
                )
            },
            400,
            "not a valid zip archive",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                filetype: "sdist",
                version: "1.0.4",
                ..good("tufa_bad-1.0.4.tar.gz", b"\x1f\x8bgarbage")
            },
            400,
            "not a valid .tar.gz archive",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                version: "1.0.5",
                ..good("tufa_bad-1.0.5-py3-none-any.whl", wheel)
            },
            400,
            "The version in the file name (\"1.0.5\") does not match the version in the file's core metadata (\"1.0.0\")",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                name: "tufa-other",
                ..good("tufa_other-1.0.0-py3-none-any.whl", wheel)
            },
            400,
            "The project name in the file name (\"tufa-other\") does not match the project name in the file's core metadata (\"tufa-bad\")",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                version: "1.0.6",
                ..good(wheel_name, wheel)
            },
            400,
            "The version in the form (\"1.0.6\") does not match the version in the file (\"1.0.0\")",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                filetype: "sdist",
                ..good(wheel_name, wheel)
            },
            400,
            "does not match the file name",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                filetype: "sdist",
                ..good("tufa-bad-1.0.0.tar.gz", sdist)
            },
            400,
            "Only one sdist may be uploaded per release",
        ),
        (
            Some(http::basic_auth(&alice)),
            Upload {
                version: "3.0.0",
                ..good("tufa_bad-3.0.0-py3-none-any.whl", big_wheel)
            },
            400,
            "File too large: the limit is 3000 bytes",
        ),
    ];
    for (auth, upload, status, reason) in &cases {
        let response = send(&server, auth.as_deref(), upload);
        assert_eq!(
            response.status, *status,
            "{}: {}",
            upload.filename, response.reason
        );
        assert!(
            response.reason.contains(reason),
            "{}: the status line must carry the reason {reason:?}, got {:?}",
            upload.filename,
            response.reason
        );
        assert!(
            response.text().contains(reason),
            "and so must the body: {}",
            response.text()
        );
        assert_eq!(
            data_state(&server),
            before,
            "{} changed the data directory",
            upload.filename
        );
    }
    let unauthenticated = send(&server, None, &good(wheel_name, b"x"));
    assert_eq!(
        unauthenticated.header("www-authenticate"),
        Some("Basic realm=\"tufa\"")
    );

    // The same file again is accepted and changes nothing; twine shows other uploads' reasons and
    // --skip-existing relies on the "File already exists" text.
    ok(
        twine(&server, &alice, &[&v1.wheel], &[]),
        "re-uploading identical content",
    );
    assert_eq!(data_state(&server), before);
    let refused = twine(&server, &alice, &[&changed.wheel], &[]);
    assert!(!refused.status.success());
    let shown = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        shown.contains("File already exists"),
        "twine shows the reason: {shown}"
    );
    // twine 7 refuses the --skip-existing flag for any URL but PyPI's, before it sends anything;
    // what the flag decides on is twine's own `skip_upload` over the server's answer, run here on
    // an upload made by twine's own `Repository`.
    let skip = env.run_script(
        SKIP_EXISTING,
        &[
            &server.upload_url(),
            &alice,
            changed.wheel.to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&skip.stdout).lines().last(),
        Some("400 skip=True")
    );
    ok(
        env.command("uv")
            .env("UV_CACHE_DIR", dir.path().join("uv-cache"))
            .args(["publish", "--publish-url"])
            .arg(server.upload_url())
            .args(["--token", &alice])
            .arg(&v1.wheel)
            .output()
            .unwrap(),
        "uv publish of a file already uploaded with the same content",
    );
    let refused = twine(&server, &bob, &[&v1.sdist], &[]);
    let shown = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success());
    assert!(
        shown.contains("isn't allowed to upload to project 'tufa-bad'"),
        "{shown}"
    );
    assert_eq!(data_state(&server), before);
}

#[test]
fn simple_api_negotiates_redirects_and_reports_serials() {
    let env = PythonEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);
    let built = build(env, dir.path(), "Tufa.Neg_Demo", "0.1.0", &[]);
    ok(
        twine(&server, &alice, &[&built.wheel, &built.sdist], &[]),
        "twine upload",
    );
    let base = &server.url;

    let html = http::get(&format!("{base}/simple/tufa-neg-demo/"), &[]);
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(html.header("vary"), Some("Accept, Accept-Encoding"));
    assert_eq!(html.header("x-pypi-last-serial"), Some("2"));
    for (accept, content_type) in [
        (
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
            "application/vnd.pypi.simple.v1+json",
        ),
        (
            "application/vnd.pypi.simple.v1+html",
            "application/vnd.pypi.simple.v1+html",
        ),
        (
            "application/vnd.pypi.simple.v1+json;q=0.2, application/vnd.pypi.simple.v1+html",
            "application/vnd.pypi.simple.v1+html",
        ),
        (
            "application/vnd.pypi.simple.latest+json",
            "application/vnd.pypi.simple.v1+json",
        ),
    ] {
        let response = http::get(
            &format!("{base}/simple/tufa-neg-demo/"),
            &[("Accept", accept)],
        );
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{accept}"
        );
    }
    let forced = http::get(
        &format!("{base}/simple/tufa-neg-demo/?format=application/vnd.pypi.simple.v1+json"),
        &[("Accept", "text/html")],
    );
    assert_eq!(
        forced.header("content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let json = forced.json();
    assert_eq!(json["meta"]["api-version"], "1.1");
    assert_eq!(json["meta"]["_last-serial"], 2);
    assert_eq!(json["name"], "tufa-neg-demo");
    assert_eq!(json["versions"], serde_json::json!(["0.1.0"]));
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for file in files {
        let local = if file["filename"].as_str().unwrap().ends_with(".whl") {
            &built.wheel
        } else {
            &built.sdist
        };
        assert_eq!(file["hashes"]["sha256"], sha256_of(local));
        assert_eq!(file["size"], fs::metadata(local).unwrap().len());
        assert_eq!(file["requires-python"], ">=3.8");
        assert!(file["upload-time"].as_str().unwrap().ends_with('Z'));
        let download = http::get(&format!("{base}{}", file["url"].as_str().unwrap()), &[]);
        assert_eq!(download.body, fs::read(local).unwrap());
        if local == &built.wheel {
            let sha = file["core-metadata"]["sha256"].as_str().unwrap();
            assert_eq!(file["dist-info-metadata"]["sha256"], sha);
            let metadata = http::get(
                &format!("{base}{}.metadata", file["url"].as_str().unwrap()),
                &[],
            );
            assert!(
                metadata.text().contains("Name: Tufa.Neg_Demo"),
                "{}",
                metadata.text()
            );
        } else {
            assert_eq!(file["core-metadata"], false);
        }
    }
    let refused = http::get(
        &format!("{base}/simple/tufa-neg-demo/"),
        &[("Accept", "application/xml")],
    );
    assert_eq!(refused.status, 406);

    for (from, to) in [
        ("/simple/Tufa.Neg_Demo/", "/simple/tufa-neg-demo/"),
        ("/simple/tufa-neg-demo", "/simple/tufa-neg-demo/"),
        ("/simple", "/simple/"),
        (
            "/simple/TUFA-NEG-DEMO/?format=application/vnd.pypi.simple.v1+json",
            "/simple/tufa-neg-demo/?format=application/vnd.pypi.simple.v1+json",
        ),
        ("/pypi/Tufa_Neg_Demo/json", "/pypi/tufa-neg-demo/json"),
    ] {
        let response = http::get(&format!("{base}{from}"), &[]);
        assert_eq!(response.status, 301, "{from}");
        assert_eq!(response.header("location"), Some(to), "{from}");
    }
    assert_eq!(
        http::get(&format!("{base}/simple/no-such-project/"), &[]).status,
        404
    );
    assert_eq!(
        http::get(&format!("{base}/pypi/no-such-project/json"), &[]).status,
        404
    );
    assert_eq!(
        http::get(&format!("{base}/files/{}/nothing.whl", "0".repeat(64)), &[]).status,
        404
    );

    let index = http::get(
        &format!("{base}/simple/"),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    )
    .json();
    assert_eq!(
        index["projects"],
        serde_json::json!([{"name": "tufa-neg-demo", "_last-serial": 2}])
    );
    assert!(
        http::get(&format!("{base}/simple/"), &[])
            .text()
            .contains("<a href=\"/simple/tufa-neg-demo/\">tufa-neg-demo</a>")
    );

    let warehouse = http::get(&format!("{base}/pypi/tufa-neg-demo/json"), &[]).json();
    assert_eq!(warehouse["info"]["name"], "Tufa.Neg_Demo");
    assert_eq!(warehouse["info"]["version"], "0.1.0");
    assert_eq!(warehouse["info"]["requires_python"], ">=3.8");
    assert_eq!(warehouse["info"]["summary"], "A Tufa test project");
    assert_eq!(warehouse["last_serial"], 2);
    let url = &warehouse["urls"][0];
    assert!(
        url["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/files/"))
    );
    assert_eq!(url["digests"]["sha256"].as_str().unwrap().len(), 64);
    assert!(url["upload_time_iso_8601"].as_str().unwrap().ends_with('Z'));
    assert_eq!(url["yanked"], false);
    assert!(warehouse["releases"]["0.1.0"].is_array());
    let release = http::get(&format!("{base}/pypi/tufa-neg-demo/0.1.0/json"), &[]).json();
    assert_eq!(release["info"]["version"], "0.1.0");
    assert!(release.get("releases").is_none());
    assert_eq!(
        http::get(&format!("{base}/pypi/tufa-neg-demo/9.9/json"), &[]).status,
        404
    );
}

/// A memory figure of process `pid` (`VmRSS:`, `VmHWM:`), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends an upload's head and the first part of its body, then leaves the connection open.
fn start_upload(
    server: &TufaServer,
    token: &str,
    total: usize,
    first: &[u8],
) -> std::net::TcpStream {
    use std::io::Write;
    let boundary = "tufa-partial-boundary";
    let prefix = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"tufa_big-1.0-py3-none-any.whl\"\r\n\r\n"
    );
    let host = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /legacy/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{prefix}",
        http::basic_auth(token),
        prefix.len() + total
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream
}

#[test]
fn uploads_stream_to_disk_and_a_crash_mid_upload_leaves_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let alice = token(&server.data_dir, "alice", None);

    // 64 MiB through a server whose memory grows by far less: the body is never held whole.
    let before = memory_kib(server.pid(), "VmRSS:");
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut stream = start_upload(&server, &alice, 64 * chunk.len() + 100, &chunk);
    for _ in 1..64 {
        stream.write_all(&chunk).unwrap();
    }
    stream
        .write_all(b"\r\n--tufa-partial-boundary--\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("The form field ':action' is missing"),
        "{answer}"
    );
    let peak = memory_kib(server.pid(), "VmHWM:");
    assert!(
        peak.saturating_sub(before) < 32 * 1024,
        "peak memory {peak} KiB while receiving 64 MiB, from {before} KiB before"
    );

    // Killed while a file is half received: after a restart no partial file is left, nothing was
    // recorded, and the same upload then succeeds.
    let _stream = start_upload(&server, &alice, 32 * chunk.len(), &chunk);
    let tmp = data.join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs::read_dir(&tmp).unwrap().next().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached tmp/"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill();
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        1,
        "the partial upload was on disk"
    );
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "a restart removes partial uploads"
    );
    assert_eq!(
        http::get(&server.simple_url(), &[]).header("x-pypi-last-serial"),
        Some("0")
    );
    assert_eq!(fs::read_dir(data.join("files")).unwrap().count(), 0);
    let env = PythonEnv::shared();
    let built = build(env, dir.path(), "tufa-big", "1.0", &[]);
    ok(
        twine(&server, &alice, &[&built.wheel], &[]),
        "twine upload after the crash",
    );
    assert_eq!(
        pip_install(&server, dir.path(), &["tufa-big"]),
        ["tufa_big-1.0"]
    );
}

#[test]
fn settings_come_from_the_config_file_then_the_environment_then_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("tufa.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nmax_upload_size = 100\npublic_url = \"https://index.example\"\n",
            data
        ),
    )
    .unwrap();
    let wheel = tufa_testkit::minimal_wheel("configured", "1.0");
    let upload = |server: &TufaServer| {
        let (content_type, body) = http::wheel_upload("configured", "1.0", &wheel);
        let auth = http::basic_auth(&server.create_token("alice"));
        http::request(
            "POST",
            &server.upload_url(),
            &[("Content-Type", &content_type), ("Authorization", &auth)],
            &body,
        )
    };

    // --data on the command line beats the file's; the file's limit applies.
    let elsewhere = dir.path().join("elsewhere");
    let server = TufaServer::start(
        TUFA.as_ref(),
        &elsewhere,
        &["--config", config.to_str().unwrap()],
    );
    assert!(elsewhere.join("files").is_dir() && !data.exists());
    let refused = upload(&server);
    assert_eq!(refused.status, 400);
    assert!(
        refused.reason.contains("the limit is 100 bytes"),
        "{}",
        refused.reason
    );
    drop(server);

    // The environment beats the file.
    let server = TufaServer::start_with_env(
        TUFA.as_ref(),
        &elsewhere,
        &["--config", config.to_str().unwrap()],
        &[("TUFA_MAX_UPLOAD_SIZE", "1000000".into())],
    );
    assert_eq!(upload(&server).status, 200);
    let info = http::get(&format!("{}/pypi/configured/json", server.url), &[]).json();
    assert!(
        info["urls"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://index.example/files/"),
        "the file's public_url: {info}"
    );
    drop(server);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 8080\nunknown_key = 1\n").unwrap();
    let output = tufa(&[
        "serve",
        "--config",
        bad.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("parsing the config file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
