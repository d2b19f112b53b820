//! The programmable upstream serves what a PEP 691 client expects, and each switch changes what
//! it serves: the mirror's fault tests rely on both.

use tufa_testkit::http::{get, try_request};
use tufa_testkit::sha256_hex;
use tufa_testkit::upstream::{Fault, Upstream};

#[test]
fn serves_pep_691_pages_files_and_metadata_with_etags() {
    let upstream = Upstream::with_real_wheels();
    let page = get(&format!("{}six/", upstream.simple_url()), &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let json = page.json();
    assert_eq!(json["name"], "six");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{json}");
    for file in files {
        let url = file["url"].as_str().unwrap();
        let body = get(url, &[]).body;
        assert_eq!(sha256_hex(&body), file["hashes"]["sha256"]);
        assert_eq!(body.len() as u64, file["size"].as_u64().unwrap());
        let metadata = get(&format!("{url}.metadata"), &[]).body;
        assert_eq!(sha256_hex(&metadata), file["core-metadata"]["sha256"]);
        assert!(String::from_utf8_lossy(&metadata).contains("Name: six"));
    }

    let etag = page.header("etag").unwrap().to_string();
    let again = get(
        &format!("{}six/", upstream.simple_url()),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    upstream.set_upload_time(
        files[0]["filename"].as_str().unwrap(),
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    );
    let changed = get(
        &format!("{}six/", upstream.simple_url()),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(changed.status, 200, "a changed page gets a new ETag");
    assert_eq!(
        changed.json()["files"][0]["upload-time"],
        "2023-11-14T22:13:20.000000Z"
    );
    assert!(upstream.requests_for("SIX").len() >= 5);
    assert!(upstream.requests_for("idna").is_empty());
}

#[test]
fn switches_change_what_is_served() {
    let mut upstream = Upstream::with_real_wheels();
    let page_url = format!("{}idna/", upstream.simple_url());
    let filename = upstream.filenames("idna")[0].clone();
    let file_url = format!("{}/packages/{filename}", upstream.url());
    let listed = upstream.listed_sha256(&filename);

    upstream.change_content(&filename, b"tampered".to_vec());
    assert_eq!(
        get(&page_url, &[]).json()["files"][0]["hashes"]["sha256"],
        listed
    );
    assert_eq!(get(&file_url, &[]).body, b"tampered");

    upstream.republish(&filename, b"another build".to_vec());
    let page = get(&page_url, &[]).json();
    assert_eq!(
        page["files"][0]["hashes"]["sha256"],
        sha256_hex(b"another build")
    );

    upstream.set_page_fault("idna", Some(Fault::Status(500)));
    let failed = get(&page_url, &[]);
    assert_eq!(
        (failed.status, failed.reason.as_str()),
        (500, "Injected fault")
    );
    upstream.set_page_fault("idna", Some(Fault::WrongName("other".into())));
    assert_eq!(get(&page_url, &[]).json()["name"], "other");
    upstream.set_page_fault("idna", Some(Fault::MalformedJson));
    assert!(serde_json::from_slice::<serde_json::Value>(&get(&page_url, &[]).body).is_err());
    upstream.set_page_fault("idna", Some(Fault::Oversized(3 << 20)));
    assert!(get(&page_url, &[]).body.len() >= 3 << 20);
    upstream.set_page_fault(
        "idna",
        Some(Fault::Redirect(upstream.elsewhere("/simple/idna/"))),
    );
    let redirected = get(&page_url, &[]);
    assert_eq!(redirected.status, 302);
    assert!(
        redirected
            .header("location")
            .unwrap()
            .starts_with("http://127.0.0.2:")
    );
    upstream.set_page_fault("idna", None);

    upstream.remove_file(&filename);
    assert_eq!(get(&file_url, &[]).status, 404);
    let generated = upstream.add_generated_file("big", "big-1.0-py3-none-any.whl", 3 << 20);
    let body = get(
        &format!("{}/packages/big-1.0-py3-none-any.whl", upstream.url()),
        &[],
    )
    .body;
    assert_eq!(body.len(), 3 << 20);
    assert_eq!(sha256_hex(&body), generated);

    upstream.stop();
    assert!(
        try_request("GET", &page_url, &[], b"").is_err(),
        "stopped: refused"
    );
    upstream.restart();
    assert_eq!(
        get(&format!("{}six/", upstream.simple_url()), &[]).status,
        200
    );
}
