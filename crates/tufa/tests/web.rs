//! The web pages end to end: a real `tufa serve` with real uploads, read by a real headless
//! Chromium. Each page must show what the database and the signed metadata hold, hostile metadata
//! must never become markup or script, and the screenshots (under `target/web-screenshots/`) are
//! for a person to look at.

mod common;

use std::path::PathBuf;

use common::{TUFA, ok, tufa};
use tufa_testkit::{Chromium, TufaServer, http};

/// Uploads a wheel of `name` `version` whose core metadata is `metadata` (after the name and
/// version lines), as twine would.
fn upload(server: &TufaServer, token: &str, name: &str, version: &str, metadata: &str) {
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}");
    let wheel = tufa_testkit::wheel_with_metadata(name, version, &metadata);
    let (content_type, body) = http::wheel_upload(name, version, &wheel);
    let answer = http::request(
        "POST",
        &server.upload_url(),
        &[
            ("Content-Type", &content_type),
            ("Authorization", &http::basic_auth(token)),
        ],
        &body,
    );
    assert_eq!(
        answer.status, 200,
        "upload of {name} {version}: {}",
        answer.reason
    );
}

/// Whether `needle` occurs inside a tag of `html` (an attribute), rather than in text, where
/// the page shows what an uploader wrote, escaped.
fn in_a_tag(html: &str, needle: &str) -> bool {
    html.match_indices(needle).any(|(at, _)| {
        let before = &html[..at];
        before.rfind('<') > before.rfind('>')
    })
}

fn screenshots() -> PathBuf {
    tufa_testkit::target_dir().join("web-screenshots")
}

const LAPTOP: (u32, u32) = (1366, 900);
const PHONE: (u32, u32) = (390, 844);
const TALL: (u32, u32) = (1366, 1500);

const DESCRIPTION: &str = "\
# Sample project

Sample makes *examples* for the Tufa web pages.

| feature | state |
|---|---|
| signed | yes |

```python
import sample
```
";

#[test]
fn pages_show_what_the_index_holds() {
    let chromium = Chromium::new();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--cooldown", "7d"],
    );
    let token = server.create_token("alice");
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        upload(
            &server,
            &token,
            "Sample-Project",
            version,
            &format!(
                "Summary: Makes samples for the web pages\nRequires-Python: >=3.9\n\
                 License-Expression: Apache-2.0\n\
                 Project-URL: Source, https://example.org/sample\n\
                 Description-Content-Type: text/markdown\n\n{DESCRIPTION}"
            ),
        );
    }
    upload(
        &server,
        &token,
        "other-thing",
        "0.1",
        "Summary: Something else entirely\nDescription-Content-Type: text/x-rst\n\n\
         Other\n=====\n\n.. note:: shown as written\n",
    );
    let data = server.data_dir.to_str().unwrap();
    ok(
        tufa(&[
            "yank",
            "--data",
            data,
            "sample-project",
            "1.1.0",
            "--reason",
            "broken build",
        ]),
        "tufa yank",
    );
    server.wait_until_signed();

    // The home page: counts and recent uploads as the database holds them.
    let home = chromium.dump_dom(&format!("{}/", server.url));
    assert!(home.contains("id=\"project-count\">2<"), "{home}");
    assert!(home.contains("id=\"file-count\">4<"), "{home}");
    assert!(home.contains("other_thing-0.1-py3-none-any.whl"), "{home}");
    assert!(
        home.contains("href=\"/project/sample-project/2.0.0/\""),
        "{home}"
    );

    // The project page against the JSON API and the signed page.
    let json = http::get(&format!("{}/pypi/sample-project/json", server.url), &[]).json();
    let page = chromium.dump_dom(&format!("{}/project/sample-project/", server.url));
    assert!(
        page.contains("<title>Sample-Project 2.0.0 – Tufa</title>"),
        "{page}"
    );
    assert!(page.contains("Makes samples for the web pages"), "{page}");
    assert!(
        page.contains("<h1>Sample project</h1>"),
        "Markdown rendered: {page}"
    );
    assert!(page.contains("<table>"), "{page}");
    for file in json["urls"].as_array().unwrap() {
        let filename = file["filename"].as_str().unwrap();
        let sha256 = file["digests"]["sha256"].as_str().unwrap();
        assert!(page.contains(filename), "{filename} on the page: {page}");
        assert!(page.contains(sha256), "its sha256 on the page");
    }
    assert!(page.contains("Private: uploaded to this index"), "{page}");
    assert!(
        page.contains("Cooling down until"),
        "cooldown state: {page}"
    );
    assert!(page.contains("yanked: broken build"), "yank reason: {page}");
    assert!(page.contains("Python &gt;=3.9"), "{page}");
    assert!(page.contains("Apache-2.0"), "{page}");
    assert!(
        page.contains("href=\"https://example.org/sample\""),
        "{page}"
    );
    let base = server.url.as_str();
    assert!(
        page.contains(&format!(
            "pip install --index-url {base}/simple/ sample-project==2.0.0"
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "uv pip install --index-url {base}/simple/ sample-project==2.0.0"
        )),
        "{page}"
    );
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        assert!(
            page.contains(&format!("href=\"/project/sample-project/{version}/\"")),
            "{version} listed"
        );
    }
    // An older release, and a name spelled otherwise, which redirects.
    let older = chromium.dump_dom(&format!("{}/project/Sample_Project/1.0.0", server.url));
    assert!(older.contains("id=\"project-version\">1.0.0<"), "{older}");
    assert!(older.contains("Not the latest release"), "{older}");

    // reStructuredText is shown as written.
    let rst = chromium.dump_dom(&format!("{}/project/other-thing/", server.url));
    assert!(
        rst.contains("<pre class=\"description-text\">Other\n=====\n\n.. note:: shown as written"),
        "{rst}"
    );

    // Search over names and summaries, paginated.
    let found = chromium.dump_dom(&format!("{}/search/?q=entirely", server.url));
    assert!(found.contains("href=\"/project/other-thing/\""), "{found}");
    assert!(
        !found.contains("href=\"/project/sample-project/\""),
        "{found}"
    );
    let all = chromium.dump_dom(&format!("{}/search/", server.url));
    assert!(all.contains("2 projects"), "{all}");

    // The trust page against /status and the signed metadata.
    let status = http::get(&format!("{}/status", server.url), &[]).json();
    let trust = chromium.dump_dom(&format!("{}/trust/", server.url));
    let timestamp: serde_json::Value = serde_json::from_slice(
        &http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]).body,
    )
    .unwrap();
    assert!(
        trust.contains(&format!(
            "version {}",
            timestamp["signed"]["version"].as_u64().unwrap()
        )),
        "{trust}"
    );
    assert!(
        trust.contains(&format!(
            "id=\"signed-serial\">{}<",
            status["signed_serial"].as_i64().unwrap()
        )),
        "{trust}"
    );
    for role in ["root", "targets", "bins", "snapshot", "timestamp", "bin-*"] {
        assert!(
            trust.contains(&format!("id=\"role-{role}\"")),
            "{role}: {trust}"
        );
    }
    let root = http::get(&format!("{}/tuf/metadata/1.root.json", server.url), &[]).body;
    assert!(
        trust.contains(&tufa_testkit::sha256_hex(&root)),
        "the root's sha256: {trust}"
    );
    let root: serde_json::Value = serde_json::from_slice(&root).unwrap();
    for keyid in root["signed"]["roles"]["timestamp"]["keyids"]
        .as_array()
        .unwrap()
    {
        assert!(trust.contains(keyid.as_str().unwrap()), "{keyid}: {trust}");
    }
    assert!(
        trust.contains("class=\"bar\""),
        "the latency chart has bars: {trust}"
    );
    assert!(trust.contains("changes signed in the last hour"), "{trust}");

    let shots = screenshots();
    for (name, path) in [
        ("home", "/".to_string()),
        ("project", "/project/sample-project/".to_string()),
        ("trust", "/trust/".to_string()),
        ("search", "/search/?q=sample".to_string()),
    ] {
        let url = format!("{}{path}", server.url);
        chromium.screenshot(&url, &shots.join(format!("{name}-laptop.png")), LAPTOP);
        chromium.screenshot(&url, &shots.join(format!("{name}-phone.png")), PHONE);
    }
    // Taller, for the README: the whole of each page.
    for (name, path) in [
        ("project", "/project/sample-project/"),
        ("trust", "/trust/"),
    ] {
        let url = format!("{}{path}", server.url);
        chromium.screenshot(&url, &shots.join(format!("{name}-full.png")), TALL);
    }
}

#[test]
fn hostile_metadata_never_becomes_markup() {
    let chromium = Chromium::new();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = server.create_token("mallory");
    let script = "<script>document.title='pwned'</script>";
    upload(
        &server,
        &token,
        "hostile",
        "1.0",
        &format!(
            "Summary: {script}<b>bold</b>\n\
             Home-page: javascript:document.title='pwned'\n\
             Project-URL: \"><script>document.title='pwned'</script>, https://example.org/\"onmouseover=\"x\n\
             Project-URL: Docs, javascript:document.title='pwned'\n\
             Author: <img src=x onerror=\"document.title='pwned'\">\n\
             Requires-Python: <svg onload=alert(1)>\n\
             Description-Content-Type: text/markdown\n\n\
             Hello {script}\n\n<img src=x onerror=\"document.title='pwned'\">\n\n\
             [click](javascript:document.title='pwned') ![img](javascript:alert(1))\n\n\
             <a href=\"javascript:alert(1)\">raw link</a>\n"
        ),
    );
    upload(
        &server,
        &token,
        "hostile-rst",
        "1.0",
        &format!("Summary: plain\n\n.. raw:: html\n\n   {script}\n"),
    );
    server.wait_until_signed();

    let mut pages = Vec::new();
    for path in [
        "/",
        "/project/hostile/",
        "/project/hostile-rst/",
        "/search/?q=%3Cscript%3Edocument.title%3D%27pwned%27%3C%2Fscript%3E",
        "/search/?q=hostile",
    ] {
        let url = format!("{}{path}", server.url);
        let dom = chromium.dump_dom(&url);
        assert!(
            dom.contains("– Tufa</title>") || dom.contains("<title>Tufa</title>"),
            "{path}: {dom}"
        );
        assert!(
            !dom.contains("pwned</title>"),
            "a script ran on {path}: {dom}"
        );
        let lower = dom.to_ascii_lowercase();
        assert!(
            !lower.contains("<script"),
            "a script element on {path}: {dom}"
        );
        // An attribute follows a space; inside a quoted value (an escaped URL) it does not.
        for attribute in [
            " onerror=",
            " onload=",
            " onmouseover=",
            " href=\"javascript:",
            " src=\"javascript:",
        ] {
            assert!(
                !in_a_tag(&lower, attribute),
                "{attribute} made it into a tag on {path}: {dom}"
            );
        }
        pages.push((path, dom));

        let headers = http::get(&url, &[]);
        let policy = headers
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
        assert!(
            !policy.contains("script-src"),
            "no script source is allowed: {policy}"
        );
        assert_eq!(headers.header("x-content-type-options"), Some("nosniff"));
    }
    let (_, project) = &pages[1];
    // What the uploader wrote is shown, as text.
    assert!(
        project
            .contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"),
        "{project}"
    );
    assert!(project.contains("Hello &lt;script&gt;"), "{project}");
    let (_, rst) = &pages[2];
    assert!(rst.contains("   &lt;script&gt;document.title"), "{rst}");

    chromium.screenshot(
        &format!("{}/project/hostile/", server.url),
        &screenshots().join("hostile-laptop.png"),
        LAPTOP,
    );
}

#[test]
fn unknown_projects_and_old_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let missing = http::get(&format!("{}/project/nothing-here/", server.url), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.reason.contains("no project"), "{}", missing.reason);
    let bad = http::get(&format!("{}/project/..%2Fetc/", server.url), &[]);
    assert_eq!(bad.status, 404, "{}", bad.reason);
    let page = http::get(&format!("{}/search/?q=x&page=-5", server.url), &[]);
    assert_eq!(page.status, 200, "a page number out of range is clamped");
    // The simple index is where it was.
    let simple = http::get(&format!("{}/simple/", server.url), &[]);
    assert_eq!(simple.status, 200);
    assert!(simple.text().contains("Simple index"));
    let css = http::get(&format!("{}/static/tufa.css", server.url), &[]);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
}
