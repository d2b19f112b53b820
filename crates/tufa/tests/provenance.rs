//! PEP 740 end to end, on real attestations made by real Trusted Publishing (the assets of the
//! `pypi-attestations` sdist): twine uploads them, the index verifies and serves them in PyPI's
//! Integrity API format and signs their digests into the pages (python-tuf verifies those), and
//! `tufa proxy --provenance require|tofu` lets pip and uv install only what the policy allows.
//!
//! The one installable wheel among the assets attested on Sigstore's public-good instance is
//! CircleCI's example (`circleci-sign-publish-example`); `rfc8785`'s wheel was attested on
//! Sigstore's staging instance, so it serves as the real attestation from another root.
//!
//! The assets hold one attested file per project, so no project has two releases by different
//! publishers. The publisher change is therefore constructed: the proxy's trusted-on-first-use
//! pin for the CircleCI project is set (with the documented `tufa proxy trust-publisher`) to
//! another real publisher, that of `pypi-attestations`, and the real CircleCI file is then
//! refused as a file from a changed publisher, and accepted again after the override.

use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::{TUFA, installed, ok, output_text as text, pip, tufa, twine, uv};
use serde_json::{Value, json};
use tufa_testkit::{Project, PythonEnv, TufaProxy, TufaServer, sha256_hex};

const RFC8785: &str = "rfc8785-0.1.2-py3-none-any.whl";
const CIRCLECI: &str = "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl";
const CIRCLECI_PROJECT: &str = "circleci-sign-publish-example";
const CIRCLECI_PIN: &str = "circleci-sign-publish-example==0.0.1.dev137";
const CIRCLECI_PUBLISHER: &str = "CircleCI project fdd9283f-e619-46af-8f9c-851f7d3e8b2b pipeline definition 8e4f8ab2-8d7c-4827-9f15-de076d6d647f";
const PYPI_ATTESTATIONS: &str = "pypi_attestations-0.0.19.tar.gz";
const GITLAB: &str = "gitlab_oidc_project-0.0.3.tar.gz";

fn assets() -> PathBuf {
    tufa_testkit::pypi_attestations_assets()
}

/// Copies the asset `file` into `dir`, with the attestation `attestation` under the name twine
/// looks for beside it (`<file>.publish.attestation`).
fn staged(dir: &Path, file: &str, attestation: Option<&str>) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let copy = dir.join(file);
    fs::copy(assets().join(file), &copy).unwrap();
    let mut paths = vec![copy];
    if let Some(attestation) = attestation {
        let beside = dir.join(format!("{file}.publish.attestation"));
        fs::copy(assets().join(attestation), &beside).unwrap();
        paths.push(beside);
    }
    paths
}

fn upload_attested(server: &TufaServer, token: &str, files: &[PathBuf]) -> std::process::Output {
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    twine(server, token, &files, &["--attestations"])
}

fn get(url: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = ureq::get(url).config().http_status_as_error(false).build();
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = response.status().as_u16();
    (
        status,
        content_type,
        response.body_mut().read_to_vec().unwrap(),
    )
}

fn json_page(server: &TufaServer, project: &str) -> Value {
    let (status, _, body) = get(
        &format!("{}/simple/{project}/", server.url),
        Some("application/vnd.pypi.simple.v1+json"),
    );
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

fn root(server: &TufaServer) -> PathBuf {
    server.data_dir.join("trusted-root.json")
}

fn proxy(server: &TufaServer, cache: &Path, mode: &str) -> TufaProxy {
    TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root(server),
        cache,
        &["--provenance", mode, "--refresh-interval-ms", "300"],
    )
}

/// What a command printed, with twine's line wrapping undone.
fn flat(output: &std::process::Output) -> String {
    text(output)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn attestation_of(file: &str) -> String {
    format!("{file}.publish.attestation")
}

type Install = fn(&str, &Path, &[&str]) -> std::process::Output;
const INSTALLERS: [(&str, Install); 2] = [("pip", pip), ("uv", uv)];

#[test]
fn attested_uploads_are_verified_served_as_pypi_does_and_required_by_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = common::token(&server.data_dir, "alice", None);

    // Another file's attestation, a real attestation from another Sigstore instance (staging),
    // and a changed statement are refused at upload, with the reason in the status line twine
    // prints; nothing is recorded.
    let swapped = staged(
        &dir.path().join("swapped"),
        CIRCLECI,
        Some(&attestation_of(PYPI_ATTESTATIONS)),
    );
    let said = flat(&upload_attested(&server, &token, &swapped));
    assert!(
        said.contains("400")
            && said.contains(&format!("Invalid attestation 1 of 1 for {CIRCLECI}")),
        "{said}"
    );
    let staging = staged(
        &dir.path().join("staging"),
        RFC8785,
        Some(&attestation_of(RFC8785)),
    );
    let said = flat(&upload_attested(&server, &token, &staging));
    assert!(
        said.contains("400") && said.contains("the trust root does not list"),
        "{said}"
    );
    let tampered = staged(
        &dir.path().join("tampered"),
        CIRCLECI,
        Some(&attestation_of(CIRCLECI)),
    );
    let mut attestation: Value = serde_json::from_slice(&fs::read(&tampered[1]).unwrap()).unwrap();
    let statement = attestation["envelope"]["statement"]
        .as_str()
        .unwrap()
        .to_string();
    // One base64 character changed: another statement than the one signed.
    let flipped = if statement.starts_with('e') { "f" } else { "e" };
    attestation["envelope"]["statement"] = json!(format!("{flipped}{}", &statement[1..]));
    fs::write(&tampered[1], attestation.to_string()).unwrap();
    let said = flat(&upload_attested(&server, &token, &tampered));
    assert!(
        said.contains("400") && said.contains("Invalid attestation"),
        "{said}"
    );
    for project in [CIRCLECI_PROJECT, "rfc8785"] {
        let (status, _, _) = get(&format!("{}/simple/{project}/", server.url), None);
        assert_eq!(status, 404, "a refused upload records nothing");
    }

    // The real files with their real attestations.
    for file in [CIRCLECI, PYPI_ATTESTATIONS, GITLAB] {
        let files = staged(&dir.path().join("good"), file, Some(&attestation_of(file)));
        ok(
            upload_attested(&server, &token, &files),
            &format!("twine upload --attestations of {file}"),
        );
    }
    server.wait_until_signed();

    // The Integrity API answers what PyPI answers for the same files: PyPI's own provenance
    // objects, shipped in the assets, compare equal.
    for (project, version, file) in [
        ("pypi-attestations", "0.0.19", PYPI_ATTESTATIONS),
        (CIRCLECI_PROJECT, "0.0.1.dev137", CIRCLECI),
    ] {
        let url = format!(
            "{}/integrity/{project}/{version}/{file}/provenance",
            server.url
        );
        let (status, content_type, body) = get(&url, None);
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/vnd.pypi.integrity.v1+json")
        );
        let ours: Value = serde_json::from_slice(&body).unwrap();
        let pypis: Value =
            serde_json::from_slice(&fs::read(assets().join(format!("{file}.provenance"))).unwrap())
                .unwrap();
        assert_eq!(
            ours, pypis,
            "{file}: the provenance object as PyPI serves it"
        );
        let (status, content_type, _) = get(&url, Some("application/json"));
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let (status, _, body) = get(&url, Some("text/html"));
        assert_eq!(status, 406);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"message": "Request not acceptable"})
        );
    }
    let (_, _, body) = get(
        &format!(
            "{}/integrity/gitlab-oidc-project/0.0.3/{GITLAB}/provenance",
            server.url
        ),
        None,
    );
    let gitlab: Value = serde_json::from_slice(&body).unwrap();
    let publisher = &gitlab["attestation_bundles"][0]["publisher"];
    assert_eq!(publisher["kind"], "GitLab", "{gitlab}");
    assert!(
        publisher["workflow_filepath"].is_string() && publisher["environment"].is_null(),
        "{publisher}"
    );

    // An unattested file, and a file that does not exist: PyPI's 404s.
    let plain_dir = dir.path().join("plain");
    fs::create_dir_all(&plain_dir).unwrap();
    let plain = Project {
        name: "tufa-plain",
        version: "1.0",
        dependencies: &[],
        payload: "plain",
    }
    .build(PythonEnv::shared(), &plain_dir);
    ok(
        twine(&server, &token, &[plain.wheel.as_path()], &[]),
        "twine upload of an unattested file",
    );
    server.wait_until_signed();
    let plain_name = plain
        .wheel
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (status, _, body) = get(
        &format!(
            "{}/integrity/tufa-plain/1.0/{plain_name}/provenance",
            server.url
        ),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"message": format!("No provenance available for {plain_name}")})
    );
    let (status, _, _) = get(
        &format!(
            "{}/integrity/{CIRCLECI_PROJECT}/9.9/{CIRCLECI}/provenance",
            server.url
        ),
        None,
    );
    assert_eq!(status, 404);

    // The page: the provenance URL at api-version 1.3, and the provenance's digest under the
    // private key, inside the page TUF signs; python-tuf verifies every page.
    let page = json_page(&server, CIRCLECI_PROJECT);
    assert_eq!(page["meta"]["api-version"], "1.3");
    let file = &page["files"][0];
    let provenance_path =
        format!("/integrity/{CIRCLECI_PROJECT}/0.0.1.dev137/{CIRCLECI}/provenance");
    assert_eq!(file["provenance"], provenance_path.as_str());
    let provenance = get(&format!("{}{provenance_path}", server.url), None).2;
    assert_eq!(file["_provenance_sha256"], sha256_hex(&provenance));
    assert_eq!(
        json_page(&server, "tufa-plain")["meta"]["api-version"],
        "1.1"
    );
    let (_, _, html) = get(
        &format!("{}/simple/{CIRCLECI_PROJECT}/", server.url),
        Some("text/html"),
    );
    assert!(
        String::from_utf8(html)
            .unwrap()
            .contains(&format!("data-provenance=\"{provenance_path}\""))
    );
    let verified = common::python_tuf(
        &server,
        &dir.path().join("python-tuf"),
        &[
            CIRCLECI_PROJECT,
            "pypi-attestations",
            "gitlab-oidc-project",
            "tufa-plain",
        ],
    );
    let signed = &verified["pages"][CIRCLECI_PROJECT]["files"][0];
    assert_eq!(
        signed["_provenance_sha256"],
        sha256_hex(&provenance),
        "python-tuf verified the digest: {verified}"
    );
    for project in ["pypi-attestations", "gitlab-oidc-project", "tufa-plain"] {
        assert!(verified["pages"][project]["files"].is_array(), "{verified}");
    }

    // `tufa provenance` on the index (TUF + Sigstore) and on the data directory.
    let root_arg = root(&server).to_str().unwrap().to_string();
    let cli_cache = dir.path().join("cli-cache");
    let listed = ok(
        tufa(&[
            "provenance",
            CIRCLECI_PROJECT,
            "--index",
            &server.url,
            "--root",
            &root_arg,
            "--cache",
            cli_cache.to_str().unwrap(),
        ]),
        "tufa provenance --index",
    );
    assert!(
        listed.contains(&format!("{CIRCLECI}  {CIRCLECI_PUBLISHER}")),
        "{listed}"
    );
    let listed = ok(
        tufa(&[
            "provenance",
            "tufa-plain",
            "--data",
            server.data_dir.to_str().unwrap(),
        ]),
        "tufa provenance --data",
    );
    assert!(
        listed.contains(&format!("{plain_name}  unattested")),
        "{listed}"
    );

    // `require`: pip and uv install the attested file; the unattested one is refused with the
    // reason, and nothing is installed.
    let proxy = proxy(&server, &dir.path().join("proxy-cache"), "require");
    for (tool, install) in INSTALLERS {
        let target = dir.path().join(format!("{tool}-attested"));
        ok(
            install(&proxy.simple_url(), &target, &[CIRCLECI_PIN]),
            &format!("{tool} install of the attested file"),
        );
        assert!(
            installed(&target)
                .iter()
                .any(|d| d.starts_with("circleci_sign_publish_example-0.0.1.dev137")),
            "{:?}",
            installed(&target)
        );
        let target = dir.path().join(format!("{tool}-plain"));
        let output = install(&proxy.simple_url(), &target, &["tufa-plain==1.0"]);
        assert!(
            !output.status.success(),
            "{tool} installed an unattested file: {}",
            text(&output)
        );
        assert!(installed(&target).is_empty());
    }
    let said = text(&pip(
        &proxy.simple_url(),
        &dir.path().join("pip-plain-2"),
        &["tufa-plain==1.0"],
    ));
    assert!(
        said.contains("424") && said.contains("has no PEP 740 attestation"),
        "{said}"
    );

    // The proxy's pages point at the provenance it checked, served from the proxy.
    let (status, _, body) = get(
        &format!("{}/simple/{CIRCLECI_PROJECT}/", proxy.url),
        Some("application/vnd.pypi.simple.v1+json"),
    );
    assert_eq!(status, 200);
    let proxied: Value = serde_json::from_slice(&body).unwrap();
    let at = proxied["files"][0]["provenance"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&format!("{}{at}", proxy.url), None).2, provenance);
}

#[test]
fn the_same_file_without_its_attestation_is_refused_in_require_mode_and_served_in_warn_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = common::token(&server.data_dir, "alice", None);
    let bare = staged(&dir.path().join("bare"), CIRCLECI, None);
    ok(
        twine(&server, &token, &[bare[0].as_path()], &[]),
        "twine upload without attestations",
    );
    server.wait_until_signed();
    let proxy = proxy(&server, &dir.path().join("proxy-cache"), "require");
    for (tool, install) in INSTALLERS {
        let target = dir.path().join(tool);
        let output = install(&proxy.simple_url(), &target, &[CIRCLECI_PIN]);
        assert!(!output.status.success(), "{tool}: {}", text(&output));
        assert!(
            installed(&target).is_empty(),
            "{tool} installed {:?}",
            installed(&target)
        );
    }
    assert!(
        proxy.log().contains(&format!(
            "{CIRCLECI} of {CIRCLECI_PROJECT} has no PEP 740 attestation"
        )),
        "{}",
        proxy.log()
    );
    let warn = self::proxy(&server, &dir.path().join("warn-cache"), "warn");
    ok(
        pip(
            &warn.simple_url(),
            &dir.path().join("warn"),
            &[CIRCLECI_PIN],
        ),
        "pip through a warn-mode proxy",
    );
}

#[test]
fn tofu_refuses_a_changed_publisher_and_an_unattested_release_until_the_operator_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = common::token(&server.data_dir, "alice", None);
    let circleci = staged(
        &dir.path().join("good"),
        CIRCLECI,
        Some(&attestation_of(CIRCLECI)),
    );
    ok(
        upload_attested(&server, &token, &circleci),
        "twine upload --attestations",
    );
    // A later release of the same project uploaded without an attestation, as with a stolen
    // API token.
    let later_dir = dir.path().join("later");
    fs::create_dir_all(&later_dir).unwrap();
    let later = Project {
        name: CIRCLECI_PROJECT,
        version: "0.2.0",
        dependencies: &[],
        payload: "later",
    }
    .build(PythonEnv::shared(), &later_dir);
    ok(
        twine(&server, &token, &[later.wheel.as_path()], &[]),
        "twine upload of the unattested release",
    );
    server.wait_until_signed();

    let cache = dir.path().join("proxy-cache");
    let cache_arg = cache.to_str().unwrap().to_string();
    let pins_file = cache.join("provenance-publishers.json");
    let proxy = proxy(&server, &cache, "tofu");
    ok(
        pip(
            &proxy.simple_url(),
            &dir.path().join("first"),
            &[CIRCLECI_PIN],
        ),
        "pip install on first sight",
    );
    let pins: Value = serde_json::from_slice(&fs::read(&pins_file).unwrap()).unwrap();
    assert_eq!(pins[CIRCLECI_PROJECT]["kind"], "CircleCI", "{pins}");
    assert_eq!(
        pins[CIRCLECI_PROJECT]["project_id"], "fdd9283f-e619-46af-8f9c-851f7d3e8b2b",
        "{pins}"
    );

    let target = dir.path().join("unattested");
    let said = text(&pip(
        &proxy.simple_url(),
        &target,
        &[&format!("{CIRCLECI_PROJECT}==0.2.0")],
    ));
    assert!(
        said.contains("424")
            && said.contains(&format!(
                "{CIRCLECI_PROJECT} was first seen published by {CIRCLECI_PUBLISHER}"
            )),
        "{said}"
    );
    assert!(installed(&target).is_empty());

    // The constructed publisher change (see the module comment): the pin names another real
    // publisher; the real file is then from a changed publisher.
    ok(
        tufa(&[
            "proxy",
            "trust-publisher",
            CIRCLECI_PROJECT,
            "--cache",
            &cache_arg,
            "--repository",
            "trailofbits/pypi-attestations",
            "--workflow",
            "release.yml",
        ]),
        "pinning another publisher",
    );
    for (tool, install) in INSTALLERS {
        let target = dir.path().join(format!("{tool}-changed"));
        let output = install(&proxy.simple_url(), &target, &[CIRCLECI_PIN]);
        assert!(!output.status.success(), "{tool}: {}", text(&output));
        assert!(
            installed(&target).is_empty(),
            "{tool} installed {:?}",
            installed(&target)
        );
    }
    let log = proxy.log();
    assert!(log.contains(&format!("publisher changed: {CIRCLECI} of {CIRCLECI_PROJECT} is attested by {CIRCLECI_PUBLISHER}, but {CIRCLECI_PROJECT} was first seen published by GitHub trailofbits/pypi-attestations workflow release.yml")), "{log}");

    // The documented override: forget the pin, and the next attested file seen is trusted.
    ok(
        tufa(&[
            "proxy",
            "trust-publisher",
            CIRCLECI_PROJECT,
            "--cache",
            &cache_arg,
            "--forget",
        ]),
        "accepting the move",
    );
    let target = dir.path().join("accepted");
    ok(
        uv(&proxy.simple_url(), &target, &[CIRCLECI_PIN]),
        "uv install after the override",
    );
    assert!(
        installed(&target)
            .iter()
            .any(|d| d.starts_with("circleci_sign_publish_example-0.0.1.dev137"))
    );
    let pins: Value = serde_json::from_slice(&fs::read(&pins_file).unwrap()).unwrap();
    assert_eq!(
        pins[CIRCLECI_PROJECT]["kind"], "CircleCI",
        "pinned again on sight: {pins}"
    );
}

#[test]
fn a_mirror_that_swaps_or_strips_provenance_is_caught_and_a_policy_names_the_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = common::token(&server.data_dir, "alice", None);
    let circleci = staged(
        &dir.path().join("good"),
        CIRCLECI,
        Some(&attestation_of(CIRCLECI)),
    );
    ok(
        upload_attested(&server, &token, &circleci),
        "twine upload --attestations",
    );
    server.wait_until_signed();

    // A mirror (a static copy of what the index publishes) serving, at the provenance URL,
    // another file's genuine PyPI provenance; then serving none.
    let mirror_dir = dir.path().join("mirror");
    common::published(&server.data_dir).export(&mirror_dir);
    // The files where the page's URLs put them, as the index serves them.
    let sha = sha256_hex(&fs::read(assets().join(CIRCLECI)).unwrap());
    for name in [CIRCLECI.to_string(), format!("{CIRCLECI}.metadata")] {
        let path = format!("files/{sha}/{name}");
        let (status, _, body) = get(&format!("{}/{path}", server.url), None);
        assert_eq!(status, 200, "{path}");
        fs::create_dir_all(mirror_dir.join(format!("files/{sha}"))).unwrap();
        fs::write(mirror_dir.join(path), body).unwrap();
    }
    let at = mirror_dir.join(format!(
        "integrity/{CIRCLECI_PROJECT}/0.0.1.dev137/{CIRCLECI}/provenance"
    ));
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    fs::copy(
        assets().join(format!("{PYPI_ATTESTATIONS}.provenance")),
        &at,
    )
    .unwrap();
    let mirror = tufa_testkit::StaticServer::start(&mirror_dir);
    let through_mirror = |cache: &str| {
        TufaProxy::start(
            TUFA.as_ref(),
            &mirror.url(),
            &root(&server),
            &dir.path().join(cache),
            &["--provenance", "require"],
        )
    };
    let proxy = through_mirror("swapped-cache");
    let target = dir.path().join("swapped");
    let said = text(&pip(&proxy.simple_url(), &target, &[CIRCLECI_PIN]));
    assert!(
        said.contains("provenance swapped"),
        "{said}\n{}",
        proxy.log()
    );
    assert!(installed(&target).is_empty());
    fs::remove_file(&at).unwrap();
    let proxy = through_mirror("stripped-cache");
    let target = dir.path().join("stripped");
    let output = uv(&proxy.simple_url(), &target, &[CIRCLECI_PIN]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(installed(&target).is_empty());
    assert!(
        proxy.log().contains("provenance stripped"),
        "{}",
        proxy.log()
    );

    // A policy naming another publisher for the project refuses its real file, naming both.
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[projects.{CIRCLECI_PROJECT}]\nkind = \"GitHub\"\nrepository = \"acme/example\"\n"
        ),
    )
    .unwrap();
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &root(&server),
        &dir.path().join("policy-cache"),
        &[
            "--provenance",
            "tofu",
            "--provenance-policy",
            policy.to_str().unwrap(),
        ],
    );
    let target = dir.path().join("policy");
    let said = text(&pip(&proxy.simple_url(), &target, &[CIRCLECI_PIN]));
    assert!(
        said.contains(&format!(
            "publisher mismatch: {CIRCLECI} of {CIRCLECI_PROJECT} is attested by {CIRCLECI_PUBLISHER}, but"
        )) && said.contains("expects GitHub acme/example (any workflow)"),
        "{said}"
    );
    assert!(installed(&target).is_empty());
}

#[test]
fn mirrored_files_carry_upstream_provenance_verified_and_pinned_like_the_file() {
    let upstream = tufa_testkit::upstream::Upstream::start();
    upstream.add_file(
        CIRCLECI_PROJECT,
        CIRCLECI,
        fs::read(assets().join(CIRCLECI)).unwrap(),
    );
    let pypis = fs::read(assets().join(format!("{CIRCLECI}.provenance"))).unwrap();
    upstream.set_provenance(CIRCLECI, pypis.clone());
    // Upstream serving another file's provenance for an attested file: not recorded.
    upstream.add_file(
        "pypi-attestations",
        PYPI_ATTESTATIONS,
        fs::read(assets().join(PYPI_ATTESTATIONS)).unwrap(),
    );
    upstream.set_provenance(PYPI_ATTESTATIONS, pypis.clone());
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--upstream", &upstream.simple_url(), "--upstream-ttl", "1s"],
    );

    // pip through a proxy that requires provenance: the index mirrors the project with its
    // provenance, signs the digest into the page, and the proxy verifies it.
    let proxy = proxy(&server, &dir.path().join("proxy-cache"), "require");
    let target = dir.path().join("pip");
    ok(
        pip(&proxy.simple_url(), &target, &[CIRCLECI_PIN]),
        "pip install of a mirrored attested file",
    );
    assert!(
        installed(&target)
            .iter()
            .any(|d| d.starts_with("circleci_sign_publish_example-0.0.1.dev137"))
    );
    let (status, _, body) = get(
        &format!(
            "{}/integrity/{CIRCLECI_PROJECT}/0.0.1.dev137/{CIRCLECI}/provenance",
            server.url
        ),
        None,
    );
    assert_eq!(
        (status, body),
        (200, pypis.clone()),
        "the upstream provenance, byte for byte"
    );
    let page = json_page(&server, CIRCLECI_PROJECT);
    assert_eq!(page["files"][0]["_provenance_sha256"], sha256_hex(&pypis));
    assert_eq!(page["meta"]["api-version"], "1.3");

    // Pinned like the file: upstream changing it later changes nothing here.
    let other = fs::read(assets().join(format!("{PYPI_ATTESTATIONS}.provenance"))).unwrap();
    upstream.set_provenance(CIRCLECI, other);
    let listed = ok(
        tufa(&[
            "provenance",
            CIRCLECI_PROJECT,
            "--data",
            server.data_dir.to_str().unwrap(),
        ]),
        "tufa provenance --data",
    );
    assert!(
        listed.contains(&format!("{CIRCLECI}  {CIRCLECI_PUBLISHER}")),
        "{listed}"
    );

    let (status, _, _) = get(&format!("{}/simple/pypi-attestations/", server.url), None);
    assert_eq!(status, 200);
    server.wait_until_signed();
    let (status, _, _) = get(
        &format!(
            "{}/integrity/pypi-attestations/0.0.19/{PYPI_ATTESTATIONS}/provenance",
            server.url
        ),
        None,
    );
    assert_eq!(status, 404, "another file's provenance is not recorded");
    assert!(
        server.log().contains(&format!(
            "the upstream provenance of {PYPI_ATTESTATIONS} is not recorded"
        )),
        "{}",
        server.log()
    );

    // PEP 792: once upstream quarantines the project, its provenance is not offered either.
    upstream.set_project_status(CIRCLECI_PROJECT, "quarantined", Some("malware"));
    let integrity = format!(
        "{}/integrity/{CIRCLECI_PROJECT}/0.0.1.dev137/{CIRCLECI}/provenance",
        server.url
    );
    let mut status = 200;
    // The page is refreshed once it is older than the TTL, by a request or the sweep.
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        get(&format!("{}/simple/{CIRCLECI_PROJECT}/", server.url), None);
        status = get(&integrity, None).0;
        if status != 200 {
            break;
        }
    }
    assert_eq!(status, 403, "{}", json_page(&server, CIRCLECI_PROJECT));
}

#[test]
fn the_operator_replaces_the_sigstore_trust_root() {
    // rfc8785's real attestation was made on Sigstore's staging instance: under the public-good
    // root its log is unknown (first test); under the staging root the whole chain verifies and
    // only its identity is refused, a developer's GitHub login, which is no Trusted Publisher.
    let staging_root = tufa_testkit::workspace_root()
        .join("crates/tufa-provenance/tests/assets/staging_trusted_root.json");
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--sigstore-trust-root", staging_root.to_str().unwrap()],
    );
    let token = common::token(&server.data_dir, "alice", None);
    let staging = staged(
        &dir.path().join("staging"),
        RFC8785,
        Some(&attestation_of(RFC8785)),
    );
    let said = flat(&upload_attested(&server, &token, &staging));
    assert!(
        said.contains("400")
            && said.contains("\"https://github.com/login/oauth\" is not a Trusted Publisher"),
        "{said}"
    );
    // And the public-good material no longer verifies under it.
    let circleci = staged(
        &dir.path().join("good"),
        CIRCLECI,
        Some(&attestation_of(CIRCLECI)),
    );
    let said = flat(&upload_attested(&server, &token, &circleci));
    assert!(
        said.contains("400") && said.contains("Invalid attestation"),
        "{said}"
    );
}
