//! TAP 16 end to end: `tufa serve` signs a `merkle_root` into every timestamp and serves each
//! role's proof beside the classic snapshot; pip and uv install through `tufa proxy`, which
//! refreshes with the proofs and never downloads the snapshot; python-tuf, which knows nothing
//! of TAP 16, still verifies everything through the classic snapshot.

use std::fs;
use std::path::Path;

mod common;

use common::{TUFA, ok, pip, python_tuf, token, twine, uv};
use tufa_metadata::{Metadata, SnapshotProof, Timestamp};
use tufa_testkit::{Project, PythonEnv, TufaProxy, TufaServer, http};

fn timestamp(server: &TufaServer) -> Metadata<Timestamp> {
    let answer = http::get(&format!("{}/tuf/metadata/timestamp.json", server.url), &[]);
    assert_eq!(answer.status, 200, "{}", answer.reason);
    Metadata::from_bytes(&answer.body).unwrap()
}

#[test]
fn the_proxy_installs_through_proofs_and_python_tuf_through_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let token = token(&server.data_dir, "alice", None);
    let out = dir.path().join("built");
    fs::create_dir_all(&out).unwrap();
    let built = Project {
        name: "tufa-tap",
        version: "1.0",
        dependencies: &[],
        payload: "good",
    }
    .build(PythonEnv::shared(), &out);
    ok(
        twine(&server, &token, &[&built.wheel, &built.sdist], &[]),
        "twine upload",
    );
    server.wait_until_signed();

    // Every role's proof leads to the timestamp's root; a role the snapshot lacks is a 404
    // that says so.
    let timestamp = timestamp(&server);
    let root = timestamp
        .signed
        .merkle_root()
        .unwrap()
        .expect("a merkle_root");
    let version = timestamp.signed.snapshot_meta.version;
    for role in ["targets", "bins", "bin-00"] {
        let answer = http::get(
            &format!("{}/tuf/metadata/{version}.{role}-snapshot.json", server.url),
            &[],
        );
        assert_eq!(answer.status, 200, "{role}: {}", answer.reason);
        let proof = SnapshotProof::from_bytes(&answer.body).unwrap();
        assert_eq!(proof.root().unwrap(), root, "{role}");
        assert_eq!(proof.leaf().unwrap().0, format!("{role}.json"));
    }
    let missing = http::get(
        &format!("{}/tuf/metadata/{version}.bin-zz-snapshot.json", server.url),
        &[],
    );
    assert_eq!(missing.status, 404);
    assert!(
        missing.reason.contains("lists no bin-zz.json"),
        "{}",
        missing.reason
    );

    let cache = dir.path().join("proxy-cache");
    let proxy = TufaProxy::start(
        TUFA.as_ref(),
        &server.url,
        &server.data_dir.join("trusted-root.json"),
        &cache,
        &[],
    );
    for (tool, install) in [("pip", pip as fn(&str, &Path, &[&str]) -> _), ("uv", uv)] {
        let target = dir.path().join(tool);
        let output = install(&proxy.simple_url(), &target, &["tufa-tap"]);
        ok(output, tool);
    }
    let log = server.log();
    assert!(
        log.contains(&format!(
            "GET /tuf/metadata/{version}.targets-snapshot.json 200 "
        )),
        "{log}"
    );
    assert!(
        !log.contains(".snapshot.json 200 "),
        "the proxy fetched the snapshot:\n{log}"
    );

    // python-tuf ignores merkle_root and verifies the same state through the snapshot.
    let seen = python_tuf(&server, &dir.path().join("python-tuf"), &["tufa-tap"]);
    assert_eq!(
        seen["timestamp_version"], timestamp.signed.version,
        "{seen}"
    );
    assert!(
        server
            .log()
            .contains(&format!("GET /tuf/metadata/{version}.snapshot.json 200 "))
    );
}
