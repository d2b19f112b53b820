//! [`S3Store`] against a real S3 service (SeaweedFS, see `tufa_testkit::seaweedfs`): the
//! `Store` contract, listing past one page of ListObjectsV2, errors that name the object, and a
//! repository whose batch fails half-way keeps serving its previous, complete timestamp, and an
//! upload cut off after its request's head leaves the object as it was.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tufa_repo::layout::Expiries;
use tufa_repo::*;
use tufa_testkit::SeaweedFs;

fn settings(env: &[(&'static str, String)]) -> S3Settings {
    S3Settings::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        .unwrap()
}

/// A store under `prefix` in a fresh bucket.
fn fresh_store(prefix: &str) -> S3Store {
    let (bucket, env) = SeaweedFs::shared().fresh_bucket();
    let client = S3Client::new(&bucket, &settings(&env)).unwrap();
    S3Store::new(
        Arc::new(client),
        S3Url::parse(&format!("s3://{bucket}/{prefix}")).unwrap(),
    )
}

#[test]
fn the_store_contract_holds_in_a_bucket() {
    let store = fresh_store("some/prefix");
    let before = SystemTime::now() - std::time::Duration::from_secs(5);
    store
        .write_all(&[
            ("a/b/c.json".into(), b"one".to_vec()),
            ("d.json".into(), b"two".to_vec()),
        ])
        .unwrap();
    assert_eq!(store.read("a/b/c.json").unwrap().unwrap(), b"one");
    assert_eq!(store.read("missing").unwrap(), None);
    assert_eq!(store.size("d.json").unwrap(), Some(3));
    assert_eq!(store.size("missing").unwrap(), None);
    let modified = store.modified("d.json").unwrap().unwrap();
    assert!(modified >= before, "{modified:?} before {before:?}");
    assert_eq!(store.modified("missing").unwrap(), None);
    let mut listed = store.list("").unwrap();
    listed.sort();
    assert_eq!(listed, ["a/b/c.json", "d.json"]);
    assert_eq!(store.list("a").unwrap(), ["a/b/c.json"]);
    assert!(store.list("a/b/c").unwrap().is_empty());
    // Overwriting replaces the whole object.
    store
        .write_all(&[("d.json".into(), b"three".to_vec())])
        .unwrap();
    assert_eq!(store.read("d.json").unwrap().unwrap(), b"three");
    store.remove("d.json").unwrap();
    store.remove("d.json").unwrap();
    assert_eq!(store.read("d.json").unwrap(), None);
    // Nothing outside the prefix is seen or touched.
    let outside = S3Store::new(
        store.client().clone(),
        S3Url::parse(&format!("s3://{}/some", store.client().bucket())).unwrap(),
    );
    assert_eq!(outside.list("").unwrap(), ["prefix/a/b/c.json"]);
}

#[test]
fn listing_follows_every_page() {
    let store = fresh_store("many");
    let files: Vec<(String, Vec<u8>)> = (0..1_234)
        .map(|i| {
            (
                format!("targets/{:02x}/{i}.json", i % 200),
                i.to_string().into_bytes(),
            )
        })
        .collect();
    store.write_all(&files).unwrap();
    let mut listed = store.list("targets").unwrap();
    listed.sort();
    let mut expected: Vec<String> = files.into_iter().map(|(path, _)| path).collect();
    expected.sort();
    assert_eq!(listed.len(), 1_234);
    assert_eq!(listed, expected);
}

#[test]
fn errors_name_the_bucket_the_key_the_status_and_the_code() {
    let seaweed = SeaweedFs::shared();
    // Named anew each run: SeaweedFS creates a bucket on the first PUT into it.
    let missing = format!(
        "missing-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let client = S3Client::new(&missing, &settings(&seaweed.env())).unwrap();
    let error = client.get("tuf/metadata/timestamp.json").unwrap_err();
    let Error::S3(error) = error else {
        panic!("not an S3 error: {error}")
    };
    assert_eq!(error.bucket, missing);
    assert_eq!(error.key, "tuf/metadata/timestamp.json");
    assert_eq!(error.status, Some(404));
    assert_eq!(error.code.as_deref(), Some("NoSuchBucket"));
    assert!(!error.unavailable());
    let message = error.to_string();
    assert!(
        message.contains(&format!("s3://{missing}/tuf/metadata/timestamp.json"))
            && message.contains("404 NoSuchBucket"),
        "{message}"
    );
    let mut wrong = settings(&seaweed.env());
    wrong.credentials = Some(rusty_s3::Credentials::new("tufa-test", "wrong-secret"));
    let (bucket, _) = seaweed.fresh_bucket();
    let error = S3Client::new(&bucket, &wrong)
        .unwrap()
        .get("x")
        .unwrap_err();
    assert!(
        matches!(&error, Error::S3(e) if e.status == Some(403)),
        "{error}"
    );
}

/// A relay to `endpoint` that passes each request's head on and then closes both connections
/// before any of the body: what the bucket sees when the process uploading is killed between
/// the two. Returns the relay's endpoint.
fn cutting_the_body_off(endpoint: &url::Url) -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = format!("http://{}", listener.local_addr().unwrap());
    let bucket = format!(
        "{}:{}",
        endpoint.host_str().unwrap(),
        endpoint.port_or_known_default().unwrap()
    );
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            if let Ok(mut service) = TcpStream::connect(&bucket) {
                let _ = service.write_all(&head);
                // The service starts on the request before its connection ends.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    relay.parse().unwrap()
}

#[test]
fn a_put_cut_off_after_its_head_leaves_the_object_as_it_was() {
    let (bucket, env) = SeaweedFs::shared().fresh_bucket();
    let direct = S3Client::new(&bucket, &settings(&env)).unwrap();
    let mut relayed = settings(&env);
    relayed.endpoint = cutting_the_body_off(&relayed.endpoint);
    let cut = S3Client::new(&bucket, &relayed).unwrap();
    let key = "tuf/metadata/timestamp.json";
    direct.put(key, b"the previous timestamp").unwrap();

    let error = cut.put(key, b"the next timestamp").unwrap_err();
    assert!(
        matches!(&error, Error::S3(e) if e.status.is_none()),
        "{error}"
    );
    assert_eq!(direct.get(key).unwrap().unwrap(), b"the previous timestamp");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.whl");
    std::fs::write(&file, b"the next distribution").unwrap();
    direct
        .put("files/a.whl", b"the previous distribution")
        .unwrap();
    cut.put_file("files/a.whl", &file).unwrap_err();
    assert_eq!(
        direct.get("files/a.whl").unwrap().unwrap(),
        b"the previous distribution"
    );
    direct.put_file("files/a.whl", &file).unwrap();
    assert_eq!(
        direct.get("files/a.whl").unwrap().unwrap(),
        b"the next distribution"
    );
}

/// The bucket-backed store with one upload refused by the service while `refuse` is set: the
/// object whose path contains `bin-` is sent under a key S3 does not accept (longer than its
/// 1,024 bytes), so that the batch fails in S3 itself while the other uploads succeed.
struct Refusing {
    inner: S3Store,
    refuse: Arc<AtomicBool>,
}

impl Store for Refusing {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        if !self.refuse.load(Ordering::Relaxed) {
            return self.inner.write_all(files);
        }
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(path, bytes)| match path.contains("bin-") {
                true => (format!("{path}/{}", "x".repeat(1100)), bytes.clone()),
                false => (path.clone(), bytes.clone()),
            })
            .collect();
        self.inner.write_all(&files)
    }
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        self.inner.modified(path)
    }
    fn size(&self, path: &str) -> Result<Option<u64>> {
        self.inner.size(path)
    }
}

fn page(project: &str, body: &str) -> PageChange {
    PageChange {
        project: project.into(),
        view: View::Simple,
        page: Some(format!("{{\"name\":\"{project}\",\"body\":\"{body}\"}}").into_bytes()),
    }
}

/// Every object the bucket's timestamp refers to, down to the targets, is in the bucket.
fn assert_complete(store: &S3Store) -> u64 {
    let json = |path: &str| -> serde_json::Value {
        let bytes = store.read(path).unwrap();
        serde_json::from_slice(&bytes.unwrap_or_else(|| panic!("{path} is missing"))).unwrap()
    };
    let timestamp = json("metadata/timestamp.json");
    let snapshot_version = &timestamp["signed"]["meta"]["snapshot.json"]["version"];
    let snapshot = json(&format!("metadata/{snapshot_version}.snapshot.json"));
    for (file, meta) in snapshot["signed"]["meta"].as_object().unwrap() {
        let role = json(&format!("metadata/{}.{file}", meta["version"]));
        if file.starts_with("bin-") {
            for (name, target) in role["signed"]["targets"].as_object().unwrap() {
                let (dir, base) = name.rsplit_once('/').unwrap();
                let sha = target["hashes"]["sha256"].as_str().unwrap();
                let path = format!("targets/{dir}/{sha}.{base}");
                assert!(store.read(&path).unwrap().is_some(), "{path} is missing");
            }
        }
    }
    timestamp["signed"]["version"].as_u64().unwrap()
}

#[test]
fn a_batch_that_fails_in_the_bucket_leaves_the_previous_timestamp_served() {
    let store = fresh_store("tuf");
    let keys = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    dev::create_development_repository(&store, keys.path(), 3, Expiries::default(), now).unwrap();
    let online: Arc<dyn tufa_metadata::Signer> =
        Arc::new(load_signer(&key_paths(&keys.path().join(dev::ONLINE_KEY)).0, None).unwrap());
    let refuse = Arc::new(AtomicBool::new(false));
    let refusing = Refusing {
        inner: store.clone(),
        refuse: refuse.clone(),
    };
    let mut repo = Repository::open(refusing, online.clone(), Expiries::default(), now).unwrap();
    repo.publish(&[page("demo", "one")], now).unwrap();
    let served = assert_complete(&store);
    let timestamp_before = store.read("metadata/timestamp.json").unwrap();

    refuse.store(true, Ordering::Relaxed);
    let pages: Vec<PageChange> = (0..40).map(|i| page(&format!("p{i}"), "two")).collect();
    let error = repo.publish(&pages, now).unwrap_err();
    let Error::S3(s3) = &error else {
        panic!("not an S3 error: {error}")
    };
    assert_eq!(s3.status, Some(400), "{error}");
    assert_eq!(
        store.read("metadata/timestamp.json").unwrap(),
        timestamp_before
    );
    assert_eq!(assert_complete(&store), served);

    // The same changes go through once the bucket takes them, and a new repository opened on
    // the bucket alone verifies them.
    refuse.store(false, Ordering::Relaxed);
    repo.publish(&pages, now).unwrap();
    assert!(assert_complete(&store) > served);
    let reopened = Repository::open(store.clone(), online, Expiries::default(), now).unwrap();
    assert!(reopened.page(View::Simple, "p39").is_some());
}
