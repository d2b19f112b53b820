//! The mirror against a hostile or broken upstream: a local PEP 691 server (the testkit's
//! `Upstream`) that a test switches into each fault at run time, in front of one `tufa serve
//! --upstream`. Each fault is refused with its cause in the status line, nothing unverified is
//! stored, the last signed page stays served, no request waits unbounded (the test client gives
//! up after 60 s), and private or reserved names are never asked upstream.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TUFA, ok, pip};
use serde_json::Value;
use tufa_testkit::http::{RawResponse, try_request};
use tufa_testkit::upstream::{Fault, Upstream};
use tufa_testkit::{TufaServer, minimal_wheel};

const JSON: &str = "application/vnd.pypi.simple.v1+json";

fn get(url: &str) -> RawResponse {
    // The raw client gives up after 60 s without a byte: a request the index let wait on a
    // stuck upstream fails here instead of hanging the test.
    try_request("GET", url, &[("Accept", JSON)], b"")
        .unwrap_or_else(|e| panic!("GET {url}: no answer: {e}"))
}

fn page(server: &TufaServer, project: &str) -> RawResponse {
    get(&format!("{}{project}/", server.simple_url()))
}

/// Polls `check` until it holds, for at most 150 s (a refresh runs in the background, and one
/// that hangs ends at the index's page deadline, 60 s).
fn wait_for(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let Some(last) = check() else { return };
        assert!(Instant::now() < deadline, "{what}: still not so: {last}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(server: &TufaServer) -> Value {
    get(&format!("{}/status", server.url)).json()
}

fn metric(server: &TufaServer, name: &str) -> u64 {
    let text = get(&format!("{}/metrics", server.url)).text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn wheel_name(project: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", project.replace('-', "_"))
}

/// Lists a minimal wheel of `project` `version` upstream and returns its file name.
fn publish(upstream: &Upstream, project: &str, version: &str) -> String {
    let filename = wheel_name(project, version);
    upstream.add_file(project, &filename, minimal_wheel(project, version));
    filename
}

/// The `/files/...` URL the index's page gives for `filename`.
fn file_url(server: &TufaServer, project: &str, filename: &str) -> String {
    let page = page(server, project);
    assert_eq!(
        page.status,
        200,
        "{project}: {} {}",
        page.reason,
        page.text()
    );
    let json = page.json();
    let url = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == filename)
        .unwrap_or_else(|| panic!("{filename} not on the page: {json}"))["url"]
        .as_str()
        .unwrap()
        .to_string();
    if url.starts_with('/') {
        format!("{}{url}", server.url)
    } else {
        url
    }
}

fn listed_sha256(page: &Value, filename: &str) -> Option<String> {
    page["files"]
        .as_array()?
        .iter()
        .find(|f| f["filename"] == filename)
        .and_then(|f| f["hashes"]["sha256"].as_str())
        .map(str::to_string)
}

fn installed(target: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dist-info"))
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_upstream_is_refused_with_its_cause_and_private_names_never_leak() {
    let mut upstream = Upstream::with_real_wheels();
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &[
            "--upstream",
            &upstream.simple_url(),
            "--upstream-ttl",
            "1s",
            "--private",
            "acme-*",
        ],
    );

    // Pages that cannot be mirrored: each first request is refused, naming the cause.
    let elsewhere = upstream.elsewhere("/simple/f-redirect/");
    let first_request_faults = [
        ("f-status", Fault::Status(500), 502, "answered HTTP 500"),
        ("f-hang", Fault::Hang, 504, "did not answer"),
        ("f-endless", Fault::EndlessBody, 502, "over the limit"),
        ("f-malformed", Fault::MalformedJson, 502, "malformed page"),
        (
            "f-oversized",
            Fault::Oversized(65 << 20),
            502,
            "over the limit",
        ),
        (
            "f-redirect",
            Fault::Redirect(elsewhere),
            502,
            "another host",
        ),
        (
            "f-wrong-name",
            Fault::WrongName("f-other".into()),
            502,
            "when asked for",
        ),
    ];
    // The same faults once a project is mirrored: its last signed page stays served.
    let stale_faults: Vec<(String, Fault)> = first_request_faults
        .iter()
        .map(|(name, fault, _, _)| (name.replacen("f-", "s-", 1), fault.clone()))
        .collect();
    for (name, fault, _, _) in &first_request_faults {
        publish(&upstream, name, "1.0");
        upstream.set_page_fault(name, Some(fault.clone()));
    }
    let mut kept = Vec::new();
    for (name, _) in &stale_faults {
        let filename = publish(&upstream, name, "1.0");
        let answer = page(&server, name);
        assert_eq!(
            answer.status,
            200,
            "{name}: {} {}",
            answer.reason,
            answer.text()
        );
        kept.push((name.clone(), filename, answer.json()));
    }
    for (name, fault) in &stale_faults {
        upstream.set_page_fault(name, Some(fault.clone()));
    }
    std::thread::scope(|scope| {
        {
            let (server, upstream) = (&server, &upstream);
            scope.spawn(move || {
                // A known file name re-published upstream with another hash: the pinned hash
                // stays, the conflict is reported, and the new bytes are refused.
                let pinned = publish(upstream, "pinned", "1.0");
                let before = page(server, "pinned").json();
                let url = file_url(server, "pinned", &pinned);
                upstream.republish(&pinned, minimal_wheel("pinned-other", "1.0"));
                wait_for("the pin conflict reported in /status", || {
                    let status = status(server);
                    let conflicts = status["mirror"]["pin_conflicts"]["files"].to_string();
                    (!conflicts.contains(&pinned)).then(|| status.to_string())
                });
                assert_eq!(
                    listed_sha256(&page(server, "pinned").json(), &pinned),
                    listed_sha256(&before, &pinned),
                    "the pinned hash stays"
                );
                assert_eq!(get(&url).status, 502, "the re-published bytes are refused");
                assert!(metric(server, "tufa_mirror_pin_conflicts_total") >= 1);
            });
        }
        {
            let (server, upstream, dir) = (&server, &upstream, dir.path());
            scope.spawn(move || {
                // A file removed upstream still installs when pinned.
                let six_old = upstream
                    .filenames("six")
                    .into_iter()
                    .find(|f| f.starts_with("six-1.16.0"))
                    .unwrap();
                let target = dir.join("six-before");
                ok(
                    pip(&server.simple_url(), &target, &["six==1.16.0"]),
                    "pip install six==1.16.0",
                );
                upstream.remove_file(&six_old);
                wait_for("the removed file kept on six's page, yanked", || {
                    let page = page(server, "six").json();
                    let file = page["files"]
                        .as_array()
                        .and_then(|files| files.iter().find(|f| f["filename"] == six_old.as_str()))
                        .cloned();
                    let yanked = file
                        .as_ref()
                        .is_some_and(|f| !matches!(f["yanked"], Value::Null | Value::Bool(false)));
                    (!yanked).then(|| format!("{file:?}"))
                });
                let target = dir.join("six-after");
                ok(
                    pip(&server.simple_url(), &target, &["six==1.16.0"]),
                    "pip install of a removed file",
                );
                assert_eq!(installed(&target), ["six-1.16.0.dist-info"]);
            });
        }
        // Files upstream cannot deliver: each refused with the cause, the next try fetches
        // again.
        for (project, fault, cause) in [
            ("file-status", Fault::Status(500), "http status 500"),
            ("file-endless", Fault::EndlessBody, "more than"),
            ("file-hang", Fault::Hang, "timeout"),
        ] {
            let (server, upstream) = (&server, &upstream);
            scope.spawn(move || {
                let filename = publish(upstream, project, "1.0");
                let url = file_url(server, project, &filename);
                upstream.set_file_fault(&filename, Some(fault.clone()));
                let refused = get(&url);
                assert_eq!(
                    (
                        refused.status,
                        refused.reason.to_lowercase().contains(cause)
                    ),
                    (502, true),
                    "{fault:?}: {} {:?}",
                    refused.status,
                    refused.reason
                );
                upstream.set_file_fault(&filename, None);
                assert_eq!(get(&url).body, minimal_wheel(project, "1.0"), "{fault:?}");
            });
        }
        for (name, _, status, cause) in &first_request_faults {
            let server = &server;
            scope.spawn(move || {
                let answer = page(server, name);
                assert_eq!(
                    (answer.status, answer.reason.contains(cause)),
                    (*status, true),
                    "{name}: expected {status} naming {cause:?}, got {} {:?}",
                    answer.status,
                    answer.reason
                );
            });
        }
        for (name, filename, before) in &kept {
            let server = &server;
            scope.spawn(move || {
                // Past the TTL, a request starts a refresh that fails, and is answered the last
                // signed page meanwhile, whether the upstream answers badly or not at all.
                std::thread::sleep(Duration::from_millis(1100));
                let last_page_served = || {
                    let answer = page(server, name);
                    assert_eq!(
                        answer.status,
                        200,
                        "{name}: {} {}",
                        answer.reason,
                        answer.text()
                    );
                    assert_eq!(
                        listed_sha256(&answer.json(), filename),
                        listed_sha256(before, filename),
                        "{name}: the last signed page stays served"
                    );
                };
                last_page_served();
                // The refresh fails (the sweep or this request tries it once the TTL passed);
                // /status names the project and the cause, and the page stays as signed.
                wait_for(&format!("{name} reported failing"), || {
                    let status = status(server);
                    let failing = &status["mirror"]["failing"]["projects"];
                    let listed = failing
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["project"] == name.as_str()));
                    (!listed).then(|| status.to_string())
                });
                last_page_served();
            });
        }
    });
    let status_now = status(&server);
    let failing = status_now["mirror"]["failing"]["projects"].to_string();
    assert!(failing.contains("answered HTTP 500"), "{failing}");
    assert!(failing.contains("another host"), "{failing}");
    for (name, _, _, _) in &first_request_faults {
        upstream.set_page_fault(name, None);
    }
    for (name, _) in &stale_faults {
        upstream.set_page_fault(name, None);
    }

    // A file changed upstream under its listed hash: refused, counted, not stored.
    let tampered = publish(&upstream, "tampered", "1.0");
    let url = file_url(&server, "tampered", &tampered);
    let original = minimal_wheel("tampered", "1.0");
    let mut changed = original.clone();
    *changed.last_mut().unwrap() ^= 0xff;
    upstream.change_content(&tampered, changed);
    let mismatches = metric(&server, "tufa_mirror_hash_mismatches_total");
    let refused = get(&url);
    assert_eq!(refused.status, 502, "{} {}", refused.reason, refused.text());
    assert!(refused.reason.contains("sha256"), "{}", refused.reason);
    assert!(
        refused.reason.contains("tampered or substituted"),
        "{}",
        refused.reason
    );
    assert!(refused.reason.contains("not stored"), "{}", refused.reason);
    assert_eq!(
        metric(&server, "tufa_mirror_hash_mismatches_total"),
        mismatches + 1
    );
    // Nothing was stored: once upstream serves the right bytes, they are fetched again.
    let fetched = |upstream: &Upstream| {
        upstream
            .requests_for("tampered")
            .iter()
            .filter(|p| p.ends_with(".whl"))
            .count()
    };
    let before = fetched(&upstream);
    upstream.change_content(&tampered, original.clone());
    let served = get(&url);
    assert_eq!(served.status, 200, "{}", served.reason);
    assert_eq!(served.body, original);
    assert_eq!(
        fetched(&upstream),
        before + 1,
        "fetched again: nothing was stored"
    );
    assert_eq!(get(&url).body, original);
    assert_eq!(fetched(&upstream), before + 1, "now served from the store");

    // Dependency confusion: a public project upstream under a name that is private here (local
    // uploads) or reserved (`--private acme-*`) is never asked for, and pip gets the local one.
    upstream.add_file(
        "corp-tool",
        &wheel_name("corp-tool", "9.9"),
        minimal_wheel("corp-tool", "9.9"),
    );
    upstream.add_file(
        "acme-secret",
        &wheel_name("acme-secret", "9.9"),
        minimal_wheel("acme-secret", "9.9"),
    );
    let token = server.create_token("alice");
    let uploaded = server.upload_wheel(&token, "corp-tool", "1.0");
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    let reserved = page(&server, "acme-secret");
    assert_eq!(reserved.status, 404, "{}", reserved.text());
    assert!(reserved.reason.contains("reserved"), "{}", reserved.reason);
    let uploaded = server.upload_wheel(&token, "acme-secret", "1.0");
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    server.wait_until_signed();
    let target = dir.path().join("private");
    ok(
        pip(&server.simple_url(), &target, &["corp-tool", "acme-secret"]),
        "pip install",
    );
    assert_eq!(
        installed(&target),
        ["acme_secret-1.0.dist-info", "corp_tool-1.0.dist-info"]
    );
    assert_eq!(upstream.requests_for("corp-tool"), Vec::<String>::new());
    assert_eq!(upstream.requests_for("acme-secret"), Vec::<String>::new());

    // Upstream down: mirrored pages stay served; a new name is refused with the cause.
    upstream.stop();
    let answer = page(&server, "six");
    assert_eq!(answer.status, 200, "{} {}", answer.reason, answer.text());
    let answer = page(&server, "idna");
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        answer.reason.contains("could not be reached"),
        "{}",
        answer.reason
    );
    upstream.restart();
    assert_eq!(page(&server, "idna").status, 200);
}

/// Reads the VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status")
        * 1024
}

#[test]
fn server_memory_stays_flat_while_a_large_file_streams_through() {
    const SIZE: u64 = 200 << 20;
    let upstream = Upstream::start();
    let filename = "big-1.0-py3-none-any.whl";
    let sha256 = upstream.add_generated_file("big", filename, SIZE);
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url()],
    );
    let url = file_url(&server, "big", filename);
    let baseline = rss(server.pid());

    // Read the body slowly enough that the server must hold back rather than buffer ahead,
    // sampling its memory all along.
    let path = url.split_once("://").unwrap().1;
    let (host, path) = path.split_at(path.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut peak = baseline;
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        total += n as u64;
        peak = peak.max(rss(server.pid()));
    }
    assert_eq!(total, SIZE);
    assert_eq!(hex(context.finish().as_ref()), sha256);
    assert!(
        peak < baseline + (64 << 20),
        "the server grew from {} MB to {} MB while streaming {} MB",
        baseline >> 20,
        peak >> 20,
        SIZE >> 20
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Versions a verified JSON page lists, from its file names.
fn versions_on(page: &Value) -> Vec<String> {
    let mut versions: Vec<String> = page["files"]
        .as_array()
        .unwrap_or_else(|| panic!("not a project page: {page}"))
        .iter()
        .map(|f| {
            f["filename"]
                .as_str()
                .unwrap()
                .split('-')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    versions.sort();
    versions
}

/// The cooldown view of mirrored projects counts from upstream's upload time: a release upstream
/// published a month ago is in the view, one published today is held back until an operator
/// allows it early. The proxy serving the view mirrors a project it has never seen (asking the
/// index, which signs both views in one batch), and python-tuf verifies the view's target.
#[test]
fn mirrored_releases_enter_the_cooldown_view_by_their_upstream_upload_time() {
    let upstream = Upstream::start();
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for project in ["mirrored-cd", "unseen-cd"] {
        let old = publish(&upstream, project, "1.0");
        upstream.set_upload_time(&old, month_ago);
        let fresh = publish(&upstream, project, "2.0");
        upstream.set_upload_time(&fresh, std::time::SystemTime::now());
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url(), "--cooldown", "7d"],
    );

    // The first request for the cooldown view mirrors the project too.
    let view = get(&format!("{}/cooldown/simple/mirrored-cd/", server.url));
    assert_eq!(view.status, 200, "{}", view.reason);
    assert_eq!(versions_on(&view.json()), ["1.0"]);
    assert_eq!(
        versions_on(&page(&server, "mirrored-cd").json()),
        ["1.0", "2.0"]
    );

    let root = server.data_dir.join("trusted-root.json");
    let proxy = tufa_testkit::TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root,
        &dir.path().join("proxy-cache"),
        &["--view", "cooldown"],
    );
    let target = dir.path().join("through-proxy");
    let output = pip(&proxy.simple_url(), &target, &["unseen-cd", "mirrored-cd"]);
    ok(output, "pip through the proxy's cooldown view");
    assert_eq!(
        installed(&target),
        ["mirrored_cd-1.0.dist-info", "unseen_cd-1.0.dist-info"]
    );

    // The fix that cannot wait: allowed early, signed, and then installable through the proxy.
    ok(
        common::tufa(&[
            "cooldown",
            "allow",
            "--data",
            server.data_dir.to_str().unwrap(),
            "mirrored-cd",
            "2.0",
            "--reason",
            "fixes the upstream advisory",
        ]),
        "tufa cooldown allow",
    );
    let proxy_page = format!("{}mirrored-cd/", proxy.simple_url());
    wait_for("2.0 in the proxy's verified cooldown view", || {
        let listed = versions_on(&get(&proxy_page).json());
        (listed != ["1.0", "2.0"]).then(|| format!("{listed:?}"))
    });
    let target = dir.path().join("allowed");
    ok(
        pip(&proxy.simple_url(), &target, &["mirrored-cd==2.0"]),
        "pip of the release allowed early",
    );
    let verified = common::python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &["cooldown/mirrored-cd", "cooldown/unseen-cd"],
    );
    let pages = &verified["pages"];
    assert_eq!(versions_on(&pages["cooldown/mirrored-cd"]), ["1.0", "2.0"]);
    assert_eq!(
        pages["cooldown/mirrored-cd"]["_tufa-cooldown"]["allowed"][0]["reason"],
        "fixes the upstream advisory"
    );
    assert_eq!(versions_on(&pages["cooldown/unseen-cd"]), ["1.0"]);
}

/// Another Tufa index is an upstream like any PEP 691 index: its relative file URLs resolve
/// against its own pages, its files are verified against its hashes, and the mirroring index
/// signs the page under its own keys and says, with PEP 708 `tracks`, where it comes from.
#[test]
fn another_tufa_index_is_an_upstream_too() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TufaServer::start(TUFA.as_ref(), &dir.path().join("origin"), &[]);
    let token = origin.create_token("alice");
    for version in ["1.0", "1.1"] {
        let uploaded = origin.upload_wheel(&token, "tufa-origin", version);
        assert_eq!(uploaded.status, 200, "{}", uploaded.reason);
    }
    origin.wait_until_signed();
    let mirror = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("mirror"),
        &["--upstream", &origin.simple_url()],
    );

    let target = dir.path().join("installed");
    ok(
        pip(&mirror.simple_url(), &target, &["tufa-origin"]),
        "pip from a Tufa index mirroring another",
    );
    assert_eq!(installed(&target), ["tufa_origin-1.1.dist-info"]);
    let mirrored = page(&mirror, "tufa-origin").json();
    let origin_page = page(&origin, "tufa-origin").json();
    assert_eq!(
        mirrored["tracks"],
        serde_json::json!([format!("{}tufa-origin/", origin.simple_url())])
    );
    for filename in [
        "tufa_origin-1.0-py3-none-any.whl",
        "tufa_origin-1.1-py3-none-any.whl",
    ] {
        assert_eq!(
            listed_sha256(&mirrored, filename),
            listed_sha256(&origin_page, filename),
            "{filename}"
        );
    }
    origin.log_containing("GET /simple/tufa-origin/");
    let verified = common::python_tuf(&mirror, &dir.path().join("python-tuf"), &["tufa-origin"]);
    assert_eq!(
        listed_sha256(
            &verified["pages"]["tufa-origin"],
            "tufa_origin-1.1-py3-none-any.whl"
        ),
        listed_sha256(&origin_page, "tufa_origin-1.1-py3-none-any.whl")
    );
}

/// PEP 792: once upstream quarantines a project, the index offers none of its files — not on the
/// signed page, not by URL, stored or not — and offers them again when upstream lifts it.
#[test]
fn a_project_upstream_quarantines_offers_no_files_until_it_is_lifted() {
    let upstream = Upstream::start();
    let stored = publish(&upstream, "quarantine-me", "1.0");
    let unfetched = publish(&upstream, "quarantine-me", "1.1");
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url(), "--upstream-ttl", "1s"],
    );
    let stored_url = file_url(&server, "quarantine-me", &stored);
    let unfetched_url = file_url(&server, "quarantine-me", &unfetched);
    assert_eq!(get(&stored_url).status, 200, "downloaded, so stored");

    upstream.set_project_status("quarantine-me", "quarantined", Some("malware reported"));
    wait_for("the quarantine on the page", || {
        let page = page(&server, "quarantine-me").json();
        (page["project-status"]["status"] != "quarantined" || page["files"] != Value::Array(vec![]))
            .then(|| page.to_string())
    });
    for url in [&stored_url, &unfetched_url] {
        let answer = get(url);
        assert_eq!(answer.status, 403, "{url}: {}", answer.reason);
        assert!(answer.reason.contains("quarantined"), "{}", answer.reason);
    }
    server.wait_until_signed();
    let verified = common::python_tuf(&server, &dir.path().join("python-tuf"), &["quarantine-me"]);
    assert_eq!(
        verified["pages"]["quarantine-me"]["files"],
        Value::Array(vec![])
    );

    upstream.set_project_status("quarantine-me", "active", None);
    wait_for("the files back once the quarantine is lifted", || {
        let page = page(&server, "quarantine-me").json();
        (listed_sha256(&page, &stored).is_none()).then(|| page.to_string())
    });
    assert_eq!(get(&stored_url).status, 200);
}
