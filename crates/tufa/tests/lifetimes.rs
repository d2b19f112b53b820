//! Bounded damage from a stolen online key (issue 17, part 4): root declares the longest lifetime
//! of each online role (`x-tufa-online-lifetimes`), and `tufa proxy` refuses online metadata that
//! expires further ahead, while python-tuf, which ignores the field, still verifies the index.
//! A root without the declaration keeps working as before (and bounds nothing).

use std::path::Path;
use std::time::{Duration, SystemTime};

mod common;

use common::{TUFA, published, python_tuf};
use tufa_metadata::{
    Expires, Metadata, ONLINE_LIFETIMES_FIELD, Root, TRANSPARENCY_LOG_FIELD, Timestamp,
};
use tufa_repo::{key_paths, load_signer};
use tufa_testkit::{TufaProxy, TufaServer, http};

const TIMESTAMP: &str = "tuf/metadata/timestamp.json";
const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

/// An index with one signed project and a proxy in front of it trusting its root.
fn index_and_proxy(dir: &Path, data: &Path, server: &TufaServer) -> TufaProxy {
    let token = server.create_token("alice");
    let response = server.upload_wheel(&token, "tufa-util", "0.1");
    assert_eq!(response.status, 200, "{}", response.text());
    server.wait_until_signed();
    TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &data.join("trusted-root.json"),
        &dir.join("cache"),
        &["--refresh-interval-ms", "200"],
    )
}

/// What a thief holding the online key serves: the next timestamp, expiring ten years ahead.
fn forge_timestamp(data: &Path) -> u64 {
    let storage = published(data);
    let served: Metadata<Timestamp> =
        Metadata::from_bytes(&storage.read(TIMESTAMP).unwrap()).unwrap();
    let mut forged = Metadata::new(served.signed.clone());
    forged.signed.version += 1;
    forged.signed.expires = Expires::after(SystemTime::now(), TEN_YEARS);
    let stolen = load_signer(&key_paths(&data.join("dev-keys/online")).0, None).unwrap();
    storage.write(TIMESTAMP, &forged.sign_to_bytes(&stolen).unwrap());
    forged.signed.version
}

fn page(proxy: &TufaProxy) -> http::RawResponse {
    // Past the proxy's refresh interval, so the request refreshes the metadata.
    std::thread::sleep(Duration::from_millis(400));
    http::get(&format!("{}tufa-util/", proxy.simple_url()), &[])
}

fn cached_timestamp_version(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("cache/metadata/timestamp.json")).unwrap();
    Metadata::<Timestamp>::from_bytes(&bytes)
        .unwrap()
        .signed
        .version
}

#[test]
fn a_timestamp_forged_to_expire_years_ahead_is_refused_by_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    let root: Metadata<Root> =
        Metadata::from_bytes(&published(&data).read("tuf/metadata/1.root.json").unwrap()).unwrap();
    assert_eq!(
        root.signed.unrecognized[ONLINE_LIFETIMES_FIELD],
        serde_json::json!({"timestamp": 86_400, "snapshot": 86_400, "bins": 86_400}),
        "the development repository declares the expiries its server signs with"
    );
    let proxy = index_and_proxy(dir.path(), &data, &server);
    assert_eq!(page(&proxy).status, 200);
    let python = python_tuf(&server, &dir.path().join("python-tuf"), &["tufa-util"]);
    assert!(python.to_string().contains("tufa_util-0.1"), "{python}");
    let honest = cached_timestamp_version(dir.path());

    forge_timestamp(&data);
    let refused = page(&proxy);
    assert_ne!(refused.status, 200, "{}", refused.text());
    let reason = "stolen online key attack: timestamp expires at";
    let log = proxy.log_containing(reason);
    assert!(log.contains(reason), "{log}");
    assert!(
        log.contains("further ahead than the 86400 seconds root allows it"),
        "{log}"
    );
    assert_eq!(cached_timestamp_version(dir.path()), honest);
}

#[test]
fn a_root_without_declared_lifetimes_keeps_working_and_bounds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &[]);
    server.kill();
    // Root as a repository from before the declaration has it: re-signed without the field,
    // and without a transparency log, which would refuse the unlogged forgery on its own.
    let storage = published(&data);
    let file = "tuf/metadata/1.root.json";
    let mut root: Metadata<Root> = Metadata::from_bytes(&storage.read(file).unwrap()).unwrap();
    root.signed.unrecognized.remove(ONLINE_LIFETIMES_FIELD);
    root.signed.unrecognized.remove(TRANSPARENCY_LOG_FIELD);
    std::fs::remove_file(data.join("dev-keys").join(tufa_repo::dev::LOG_KEY)).unwrap();
    root.clear_signatures();
    let root_key = load_signer(&key_paths(&data.join("dev-keys/dev-root")).0, None).unwrap();
    storage.write(file, &root.sign_to_bytes(&root_key).unwrap());
    std::fs::remove_file(data.join("trusted-root.json")).unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &data, &[]);

    let proxy = index_and_proxy(dir.path(), &data, &server);
    assert_eq!(page(&proxy).status, 200);
    let forged = forge_timestamp(&data);
    let accepted = page(&proxy);
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(cached_timestamp_version(dir.path()), forged);
}
