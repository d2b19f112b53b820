//! The client workflow (TUF 1.0.34 section 5) step by step, and every attack the specification
//! lists, against a repository built and signed in the test (see `common`).

mod common;

use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use tufa_client::{
    Error, FetchError, Fetcher, MAX_FILE_NAME, Updater, UpdaterConfig, target_file_name,
};
use tufa_metadata::{PathMatcher, Signer, Threshold};

fn refresh_err(client: &Client<'_>) -> Error {
    client.updater.refresh(SystemTime::now()).unwrap_err()
}

// ---- 5.1–5.6: the workflow and the cache ----

#[test]
fn refresh_fetches_top_level_roles_in_order_and_caches_the_exact_bytes() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(
        sim.requests(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/1.snapshot.json",
            "metadata/1.targets.json"
        ]
    );
    assert_eq!(
        client.cached_files(),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    let repo = sim.repo();
    for (file, served) in [
        ("timestamp.json", "timestamp.json"),
        ("snapshot.json", "1.snapshot.json"),
        ("targets.json", "1.targets.json"),
    ] {
        let cached = std::fs::read(client.metadata_dir().join(file)).unwrap();
        assert_eq!(cached, repo.metadata_file(served).unwrap(), "{file}");
    }
}

#[test]
fn unchanged_repository_costs_two_requests_on_the_next_refresh() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    client.updater.refresh(SystemTime::now()).unwrap();
    sim.clear_requests();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(
        sim.requests(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );
}

#[test]
fn without_consistent_snapshots_files_have_unversioned_names() {
    let sim = Sim::with(SystemTime::now(), false);
    sim.repo().add_target("targets", "dir/file.txt", b"content");
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("dir/file.txt").unwrap();
    refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert_eq!(
        sim.requests(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/snapshot.json",
            "metadata/targets.json",
            "targets/dir/file.txt"
        ]
    );
}

#[test]
fn metadata_dir_without_root_is_refused() {
    let sim = Sim::new();
    let dir = tempfile::tempdir().unwrap();
    let updater = tufa_client::Updater::new(dir.path(), METADATA_URL, &sim, Default::default());
    assert!(matches!(
        updater.refresh(SystemTime::now()),
        Err(Error::NoTrustedRoot(_))
    ));
}

// ---- 5.3: root rotation ----

#[test]
fn root_rotation_chain_with_key_and_threshold_changes() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    client.updater.refresh(SystemTime::now()).unwrap();
    // v2: three new root keys, threshold 2; v3: threshold 3 of the same keys; v4: new timestamp key.
    let new_root = vec![key(), key(), key()];
    sim.repo().rotate("root", new_root.clone(), 2);
    sim.repo().rotate("root", new_root, 3);
    sim.repo().rotate("timestamp", vec![key()], 1);
    sim.repo().update_timestamp();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(4));
    assert!(sim.requests().contains(&"metadata/5.root.json".to_string()));
}

#[test]
fn new_root_not_signed_by_the_trusted_root_is_arbitrary_software() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        // An attacker publishes a root with their own key, signed only by that key.
        let attacker = key();
        repo.signers.insert("root".into(), vec![attacker.clone()]);
        repo.root
            .keys
            .insert(attacker.key_id().clone(), attacker.public_key().clone());
        repo.root.roles.root.keyids = vec![attacker.key_id().clone()];
        repo.root.version = 2;
        repo.publish_root();
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::Signatures { role, .. } if role.contains("trusted root")),
        "{err}"
    );
    assert_eq!(client.cached_version("root"), Some(1));
}

#[test]
fn new_root_must_meet_its_own_threshold() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        let old = repo.signers["root"].clone();
        let new = vec![key(), key()];
        // Root v2 needs 2 of the new keys but only one of them signs (plus the old key).
        repo.rotate("root", new.clone(), 2);
        repo.signers.insert("root".into(), vec![new[0].clone()]);
        repo.publish_root_signed_by(&old);
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::Signatures { role, .. } if role.contains("own keys")),
        "{err}"
    );
}

#[test]
fn root_version_must_be_exactly_the_next() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    let v1 = sim.trusted_root();
    {
        let mut repo = sim.repo();
        repo.root.version = 3;
        let v3 = repo.sign(&repo.signers["root"], &repo.root);
        repo.served.insert("2.root.json".into(), v3);
    }
    assert!(matches!(
        refresh_err(&client),
        Error::UnexpectedRootVersion {
            expected: 2,
            received: 3
        }
    ));
    sim.repo().served.insert("2.root.json".into(), v1);
    let err = refresh_err(&client);
    assert!(
        matches!(
            err,
            Error::UnexpectedRootVersion {
                expected: 2,
                received: 1
            }
        ) || matches!(err, Error::RollbackAttack { .. }),
        "{err}"
    );
}

#[test]
fn root_rotations_per_refresh_are_capped() {
    let sim = Sim::new();
    for _ in 0..4 {
        let mut repo = sim.repo();
        repo.root.version += 1;
        repo.publish_root();
    }
    let config = UpdaterConfig {
        max_root_rotations: 2,
        ..Default::default()
    };
    let client = Client::with_config(&sim, config);
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(3));
    assert!(!sim.requests().contains(&"metadata/4.root.json".to_string()));
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(5));
}

#[test]
fn a_chain_of_100_root_versions_with_new_keys_each_loads_in_one_refresh() {
    let sim = Sim::new();
    for _ in 0..99 {
        sim.repo().rotate("root", vec![key()], 1);
    }
    let client = Client::new(&sim);
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(100));
    assert!(
        sim.requests()
            .contains(&"metadata/101.root.json".to_string())
    );
}

#[test]
fn root_rotation_stops_at_256_versions_without_error_and_goes_on_with_the_root_reached() {
    let sim = Sim::new();
    for _ in 0..257 {
        let mut repo = sim.repo();
        repo.root.version += 1;
        repo.publish_root();
    }
    let client = Client::new(&sim);
    assert_eq!(client.updater.config().max_root_rotations, 256);
    // As python-tuf does: the refresh stops at the limit and completes with root 257.
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(257));
    assert!(
        !sim.requests()
            .contains(&"metadata/258.root.json".to_string())
    );
    assert_eq!(client.cached_version("timestamp"), Some(1));
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("root"), Some(258));
}

#[test]
fn intermediate_roots_may_be_expired_but_the_final_one_may_not() {
    let now = SystemTime::now();
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        repo.root.version = 2;
        repo.root.expires = expiry(now - Duration::from_secs(10 * 86_400), 1);
        repo.publish_root();
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "root"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("freeze attack: root expired at ")
    );
    {
        let mut repo = sim.repo();
        repo.root.version = 3;
        repo.root.expires = expiry(now, 365);
        repo.publish_root();
    }
    client.updater.refresh(now).unwrap();
    assert_eq!(client.cached_version("root"), Some(3));
}

// ---- 5.4: timestamp ----

#[test]
fn timestamp_rollback_is_refused() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo().update_snapshot();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("timestamp"), Some(2));
    sim.repo().timestamp.version = 1;
    let err = refresh_err(&client);
    assert!(matches!(
        err,
        Error::RollbackAttack { ref role, trusted: 2, received: 1 } if role == "timestamp"
    ));
    assert_eq!(
        err.to_string(),
        "rollback attack: timestamp version 1 < trusted 2"
    );
}

#[test]
fn timestamp_listing_an_older_snapshot_is_a_rollback() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo().update_snapshot();
    client.updater.refresh(SystemTime::now()).unwrap();
    {
        let mut repo = sim.repo();
        repo.timestamp.version += 1;
        repo.timestamp.snapshot_meta = tufa_metadata::MetaFile::new(1);
    }
    assert!(matches!(
        refresh_err(&client),
        Error::RollbackAttack { ref role, trusted: 2, received: 1 } if role == "snapshot"
    ));
}

#[test]
fn expired_timestamp_is_a_freeze_attack_and_not_persisted() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    client.updater.refresh(SystemTime::now()).unwrap();
    {
        let mut repo = sim.repo();
        repo.timestamp.version += 1;
        repo.timestamp.expires = expiry(SystemTime::now() - Duration::from_secs(2 * 86_400), 1);
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "timestamp"),
        "{err}"
    );
    assert_eq!(client.cached_version("timestamp"), Some(1));
    // The cached, still valid timestamp cannot be replayed past its expiry either.
    sim.repo().timestamp.version = 1;
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    assert!(matches!(
        client.updater.refresh(later).unwrap_err(),
        Error::Expired { .. }
    ));
}

#[test]
fn key_compromise_below_threshold_cannot_sign_timestamp() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    let (first, second) = (key(), key());
    sim.repo()
        .rotate("timestamp", vec![first.clone(), second], 2);
    client.updater.refresh(SystemTime::now()).unwrap();
    // The attacker holds one of the two keys.
    {
        let mut repo = sim.repo();
        repo.signers.insert("timestamp".into(), vec![first]);
        repo.timestamp.version += 1;
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::Signatures { role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[test]
fn endless_timestamp_is_cut_off_at_the_default_limit() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo()
        .served
        .insert("timestamp.json".into(), vec![b' '; 16_385]);
    assert!(matches!(
        refresh_err(&client),
        Error::EndlessData { limit: 16_384, .. }
    ));
}

#[test]
fn more_than_the_limit_is_refused_by_the_updater_whatever_the_fetcher_returns() {
    // The simulated repository's fetcher ignores the limit, so these reach the updater whole.
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo()
        .served
        .insert("2.root.json".into(), vec![b' '; 512_001]);
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::EndlessData { url, limit: 512_000 } if url.ends_with("/2.root.json")),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("endless data attack: "),
        "{err}"
    );
    assert_eq!(client.cached_version("root"), Some(1));
    {
        let mut repo = sim.repo();
        repo.served.remove("2.root.json");
        let mut bytes = repo.metadata_file("1.targets.json").unwrap();
        bytes.push(b' ');
        repo.served.insert("1.targets.json".into(), bytes);
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::EndlessData { url, .. } if url.ends_with("/1.targets.json")),
        "{err}"
    );
    assert_eq!(client.cached_version("targets"), None);
}

// ---- 5.5: snapshot ----

#[test]
fn snapshot_not_matching_timestamp_hashes_is_refused_before_parsing() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        let mut bytes = repo.metadata_file("1.snapshot.json").unwrap();
        let length = bytes.len();
        bytes[length - 1] = b' ';
        repo.served.insert("1.snapshot.json".into(), bytes);
    }
    assert!(matches!(
        refresh_err(&client),
        Error::HashMismatch { ref referrer, .. } if referrer == "timestamp"
    ));
}

#[test]
fn snapshot_longer_than_timestamp_says_is_endless_data() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        let mut bytes = repo.metadata_file("1.snapshot.json").unwrap();
        bytes.extend_from_slice(&[b' '; 100]);
        repo.served.insert("1.snapshot.json".into(), bytes);
    }
    assert!(matches!(refresh_err(&client), Error::EndlessData { .. }));
}

#[test]
fn snapshot_of_another_version_is_mix_and_match() {
    let sim = Sim::with(SystemTime::now(), true);
    sim.repo().meta_hashes = false;
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        let old = repo.snapshot.clone();
        repo.update_snapshot();
        let stale = repo.sign(&repo.signers["snapshot"], &old);
        let name = format!("{}.snapshot.json", repo.snapshot.version);
        repo.served.insert(name, stale);
    }
    let err = refresh_err(&client);
    assert!(
        matches!(&err, Error::MixAndMatch { role, referrer, .. } if role == "snapshot" && referrer == "timestamp"),
        "{err}"
    );
}

#[test]
fn snapshot_rolling_back_targets_is_refused() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo().add_target("targets", "a", b"a");
    sim.repo().update_snapshot();
    client.updater.refresh(SystemTime::now()).unwrap();
    {
        let mut repo = sim.repo();
        repo.targets.version = 1;
        repo.update_snapshot();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::RollbackAttack { ref role, trusted: 2, received: 1 } if role == "targets"
    ));
}

#[test]
fn snapshot_dropping_a_role_is_refused() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    sim.repo()
        .delegate("targets", "a", PathMatcher::Paths(vec!["*".into()]), false);
    sim.repo().update_snapshot();
    client.updater.refresh(SystemTime::now()).unwrap();
    {
        let mut repo = sim.repo();
        repo.update_snapshot();
        repo.snapshot.meta.remove("a.json");
        repo.update_timestamp();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::RemovedFromSnapshot { ref file } if file == "a.json"
    ));
}

#[test]
fn expired_snapshot_is_a_freeze_attack() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        repo.snapshot.expires = expiry(SystemTime::now() - Duration::from_secs(2 * 86_400), 1);
        repo.update_snapshot();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::Expired { ref role, .. } if role == "snapshot"
    ));
}

// ---- 5.3.11: fast-forward attack recovery ----

#[test]
fn fast_forward_timestamp_is_forgotten_when_timestamp_keys_rotate() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    // An attacker with the timestamp key fast-forwards the client to version 1000.
    sim.repo().timestamp.version = 1000;
    client.updater.refresh(SystemTime::now()).unwrap();
    sim.repo().timestamp.version = 3;
    assert!(matches!(refresh_err(&client), Error::RollbackAttack { .. }));
    // The repository recovers by rotating the timestamp key.
    sim.repo().rotate("timestamp", vec![key()], 1);
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("timestamp"), Some(3));
}

#[test]
fn fast_forward_snapshot_is_forgotten_when_snapshot_keys_rotate() {
    let sim = Sim::new();
    sim.repo().meta_hashes = false;
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    // The attacker's snapshot lists targets version 1000, which does not exist.
    {
        let mut repo = sim.repo();
        repo.snapshot.version += 1;
        repo.snapshot
            .meta
            .insert("targets.json".into(), tufa_metadata::MetaFile::new(1000));
        repo.update_timestamp();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::HttpStatus { status: 404, .. }
    ));
    assert_eq!(client.cached_version("snapshot"), Some(3));
    {
        let mut repo = sim.repo();
        repo.update_snapshot();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::RollbackAttack { ref role, trusted: 1000, received: 1 } if role == "targets"
    ));
    sim.repo().rotate("snapshot", vec![key()], 1);
    sim.repo().update_snapshot();
    client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(client.cached_version("snapshot"), Some(5));
}

// ---- 5.6: targets ----

#[test]
fn targets_of_another_version_is_mix_and_match() {
    let sim = Sim::new();
    sim.repo().meta_hashes = false;
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        let old = repo.targets.clone();
        repo.targets.version += 1;
        repo.update_snapshot();
        let stale = repo.sign(&repo.signers["targets"], &old);
        repo.served.insert("2.targets.json".into(), stale);
    }
    assert!(matches!(
        refresh_err(&client),
        Error::MixAndMatch { ref role, expected: 2, received: 1, .. } if role == "targets"
    ));
}

#[test]
fn targets_signed_by_an_untrusted_key_is_refused() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        repo.signers.insert("targets".into(), vec![key()]);
        repo.add_target("targets", "evil", b"evil");
        repo.update_snapshot();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::Signatures { ref role, .. } if role == "targets"
    ));
}

#[test]
fn expired_targets_is_a_freeze_attack() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    {
        let mut repo = sim.repo();
        repo.targets.expires = expiry(SystemTime::now() - Duration::from_secs(2 * 86_400), 1);
        repo.targets.version += 1;
        repo.update_snapshot();
    }
    assert!(matches!(
        refresh_err(&client),
        Error::Expired { ref role, .. } if role == "targets"
    ));
}

// ---- 5.7: targets and artifacts ----

#[test]
fn downloads_are_verified_stored_at_a_fixed_path_and_not_fetched_twice() {
    let sim = Sim::new();
    sim.repo().add_target("targets", "dir/file.txt", b"content");
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("dir/file.txt").unwrap();
    let artifact = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert!(artifact.downloaded);
    assert_eq!(artifact.path, client.targets_dir().join("dir%2Ffile.txt"));
    assert_eq!(std::fs::read(&artifact.path).unwrap(), b"content");
    let hash = &info.file.hashes["sha256"];
    assert!(
        sim.requests()
            .contains(&format!("targets/dir/{hash}.file.txt"))
    );
    sim.clear_requests();
    let again = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert!(!again.downloaded);
    assert!(sim.requests().is_empty());
}

#[test]
fn malicious_mirror_content_is_refused_and_not_stored() {
    let sim = Sim::new();
    sim.repo().add_target("targets", "good.txt", b"good");
    sim.repo()
        .add_target("targets", "other.txt", b"other, also signed");
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("good.txt").unwrap();
    let hash = info.file.hashes["sha256"].clone();
    // Wrong software: another signed artifact of the same length class, served in its place.
    sim.repo()
        .served
        .insert(format!("targets/{hash}.good.txt"), b"evil".to_vec());
    let err = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(!client.targets_dir().join("good.txt").exists());
    sim.repo().served.insert(
        format!("targets/{hash}.good.txt"),
        b"other, also signed".to_vec(),
    );
    assert!(matches!(
        refreshed
            .download_target(&info, TARGETS_URL, &client.targets_dir())
            .unwrap_err(),
        Error::EndlessData { limit: 4, .. }
    ));
}

#[test]
fn tampered_cached_artifact_is_downloaded_again() {
    let sim = Sim::new();
    sim.repo().add_target("targets", "a.txt", b"aaaa");
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("a.txt").unwrap();
    std::fs::create_dir_all(client.targets_dir()).unwrap();
    std::fs::write(client.targets_dir().join("a.txt"), b"bbbb").unwrap();
    let artifact = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert!(artifact.downloaded);
    assert_eq!(artifact.content, b"aaaa");
}

#[test]
fn unknown_target_is_not_found() {
    let sim = Sim::new();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert!(matches!(
        refreshed.target_info("missing"),
        Err(Error::TargetNotFound { .. })
    ));
}

// ---- delegations ----

fn all() -> PathMatcher {
    PathMatcher::Paths(vec!["*".into()])
}

fn delegated_requests(sim: &Sim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter_map(|r| {
            let file = r.strip_prefix("metadata/")?;
            let (_, name) = file.split_once('.')?;
            let name = name.strip_suffix(".json")?;
            (!["root", "timestamp", "snapshot", "targets"].contains(&name))
                .then(|| name.to_string())
        })
        .collect()
}

#[test]
fn delegations_are_searched_depth_first_in_listed_order() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        repo.delegate("targets", "b", all(), false);
        repo.delegate("a", "c", all(), false);
        repo.add_target("b", "t", b"from b");
        repo.add_target("c", "t", b"from c");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("t").unwrap();
    assert_eq!(info.role.as_str(), "c");
    assert_eq!(delegated_requests(&sim), ["a", "c"]);
    // A later search reuses the roles this cycle already verified.
    sim.clear_requests();
    assert!(matches!(
        refreshed.target_info("u"),
        Err(Error::TargetNotFound { .. })
    ));
    assert_eq!(delegated_requests(&sim), ["b"]);
}

#[test]
fn terminating_delegation_ends_the_search() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), true);
        repo.delegate("targets", "b", all(), false);
        repo.add_target("b", "t", b"from b");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert!(matches!(
        refreshed.target_info("t"),
        Err(Error::TargetNotFound { .. })
    ));
    assert_eq!(delegated_requests(&sim), ["a"]);
}

#[test]
fn terminating_delegation_below_a_role_ends_the_whole_search() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        repo.delegate("targets", "b", all(), false);
        repo.delegate("a", "c", all(), true);
        repo.add_target("b", "t", b"from b");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert!(refreshed.target_info("t").is_err());
    assert_eq!(delegated_requests(&sim), ["a", "c"]);
}

#[test]
fn non_terminating_delegation_continues_with_the_next() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        repo.delegate("targets", "b", all(), false);
        repo.add_target("b", "t", b"from b");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(refreshed.target_info("t").unwrap().role.as_str(), "b");
    assert_eq!(delegated_requests(&sim), ["a", "b"]);
}

#[test]
fn delegation_cycles_visit_each_role_once() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        repo.delegate("a", "b", all(), false);
        repo.delegate("b", "a", all(), false);
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert!(matches!(
        refreshed.target_info("t"),
        Err(Error::TargetNotFound { .. })
    ));
    assert_eq!(delegated_requests(&sim), ["a", "b"]);
}

#[test]
fn search_gives_up_after_the_maximum_number_of_roles() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        let mut parent = "targets".to_string();
        for depth in 1..=40 {
            let name = format!("r{depth}");
            repo.delegate(&parent, &name, all(), false);
            parent = name;
        }
        repo.add_target("r31", "shallow", b"31");
        repo.add_target("r32", "deep", b"32");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    // targets plus r1..r31 are 32 roles, the limit.
    assert_eq!(
        refreshed.target_info("shallow").unwrap().role.as_str(),
        "r31"
    );
    assert!(matches!(
        refreshed.target_info("deep"),
        Err(Error::TooManyDelegations { max: 32, .. })
    ));
    assert!(!delegated_requests(&sim).contains(&"r32".to_string()));
}

#[test]
fn roles_are_trusted_only_for_their_delegated_paths() {
    // Extraneous dependencies: a role cannot add targets outside the paths delegated to it.
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate(
            "targets",
            "a",
            PathMatcher::Paths(vec!["a/*".into()]),
            false,
        );
        repo.add_target("a", "a/ok", b"ok");
        repo.add_target("a", "b/extra", b"extra");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(refreshed.target_info("a/ok").unwrap().role.as_str(), "a");
    sim.clear_requests();
    assert!(matches!(
        refreshed.target_info("b/extra"),
        Err(Error::TargetNotFound { .. })
    ));
    assert!(sim.requests().is_empty());
}

#[test]
fn path_hash_prefixes_select_roles() {
    let path = "simple/requests/index.json";
    let digest = ring_sha256_hex(path);
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        let other = if digest.starts_with('0') { "1" } else { "0" };
        repo.delegate(
            "targets",
            "miss",
            PathMatcher::HashPrefixes(vec![other.into()]),
            false,
        );
        repo.delegate(
            "targets",
            "hit",
            PathMatcher::HashPrefixes(vec![digest[..2].into()]),
            false,
        );
        repo.add_target("hit", path, b"page");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(refreshed.target_info(path).unwrap().role.as_str(), "hit");
    assert_eq!(delegated_requests(&sim), ["hit"]);
}

fn ring_sha256_hex(text: &str) -> String {
    let file = tufa_metadata::TargetFile::from_content(text.as_bytes());
    file.hashes["sha256"].as_str().to_string()
}

#[test]
fn succinct_bins_fetch_only_the_bin_a_target_hashes_to() {
    let sim = Sim::new();
    let (first, second) = ("simple/a/index.json", "simple/b/index.json");
    let (first_bin, second_bin) = {
        let mut repo = sim.repo();
        repo.delegate_succinct("targets", "bin", 10);
        let succinct = match &repo.targets.delegations.as_ref().unwrap().roles {
            tufa_metadata::DelegatedRoles::Succinct(s) => s.clone(),
            _ => unreachable!(),
        };
        let bins = (
            succinct.role_for_target(first).to_string(),
            succinct.role_for_target(second).to_string(),
        );
        repo.add_target(&bins.0, first, b"a");
        repo.add_target(&bins.1, second, b"b");
        repo.update_snapshot();
        bins
    };
    assert_ne!(first_bin, second_bin);
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(
        refreshed.target_info(first).unwrap().role.as_str(),
        first_bin
    );
    assert_eq!(delegated_requests(&sim), std::slice::from_ref(&first_bin));
    assert_eq!(
        refreshed.target_info(second).unwrap().role.as_str(),
        second_bin
    );
    assert_eq!(delegated_requests(&sim), [first_bin.clone(), second_bin]);
    assert_eq!(refreshed.trusted().delegated_count(), 2);
    // The next cycle reads the bin from the cache instead of fetching it again.
    drop(refreshed);
    sim.clear_requests();
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    refreshed.target_info(first).unwrap();
    assert!(delegated_requests(&sim).is_empty());
    assert!(client.cached_files().contains(&format!("{first_bin}.json")));
}

#[test]
fn a_role_reached_again_is_verified_against_its_new_delegator() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        repo.delegate("targets", "b", all(), false);
        repo.delegate("a", "x", PathMatcher::Paths(vec!["x".into()]), false);
        // b also delegates to x, for other paths and to a key that never signed x.
        let x_signers = repo.signers["x"].clone();
        repo.delegate_to_key("b", "x", PathMatcher::Paths(vec!["y".into()]), false, key());
        repo.signers.insert("x".into(), x_signers);
        repo.add_target("x", "x", b"x");
        repo.add_target("x", "y", b"y");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert_eq!(refreshed.target_info("x").unwrap().role.as_str(), "x");
    let err = refreshed.target_info("y").unwrap_err();
    assert!(
        matches!(&err, Error::Signatures { role, .. } if role == "x"),
        "{err}"
    );
}

#[test]
fn delegated_role_signed_below_threshold_is_refused() {
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        repo.delegate("targets", "a", all(), false);
        if let Some(tufa_metadata::DelegatedRoles::Roles(roles)) =
            repo.targets.delegations.as_mut().map(|d| &mut d.roles)
        {
            roles[0].threshold = Threshold::new(2).unwrap();
        }
        repo.add_target("a", "t", b"t");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    assert!(matches!(
        refreshed.target_info("t"),
        Err(Error::Signatures { .. })
    ));
}

// ---- unusual names ----

#[test]
fn unusual_role_names_are_quoted_in_urls_and_file_names() {
    let names = [
        "?",
        "#",
        "/delegatedrole",
        "../delegatedrole",
        "a b%c",
        "ünï",
        "..",
    ];
    for name in names {
        let sim = Sim::new();
        sim.repo().delegate("targets", name, all(), false);
        sim.repo().update_snapshot();
        let client = Client::new(&sim);
        let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
        assert!(matches!(
            refreshed.target_info("missing"),
            Err(Error::TargetNotFound { .. })
        ));
        let quoted = tufa_client::encode_component(name);
        assert!(
            sim.requests()
                .contains(&format!("metadata/1.{quoted}.json")),
            "{name}: {:?}",
            sim.requests()
        );
        assert_eq!(client.cached_files().len(), 5, "{name}");
        assert!(client.cached_files().contains(&format!("{quoted}.json")));
    }
}

#[test]
fn unusual_target_names_download_into_one_directory() {
    let names = [
        "a b.txt",
        "q?.txt",
        "h#.txt",
        "p%25.txt",
        "dir/sub/ü.txt",
        "..",
    ];
    let sim = Sim::new();
    for name in names {
        sim.repo().add_target("targets", name, name.as_bytes());
    }
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    for name in names {
        let info = refreshed.target_info(name).unwrap();
        let artifact = refreshed
            .download_target(&info, TARGETS_URL, &client.targets_dir())
            .unwrap();
        assert_eq!(
            artifact.path,
            client.targets_dir().join(target_file_name(name))
        );
        assert_eq!(std::fs::read(&artifact.path).unwrap(), name.as_bytes());
    }
    assert_eq!(
        std::fs::read_dir(client.targets_dir()).unwrap().count(),
        names.len()
    );
}

#[test]
fn names_too_long_for_a_file_name_are_stored_under_bounded_names_and_reused() {
    // A 300-character delegated role and a 240-character project: percent-encoded they are
    // longer than the 255 bytes a file name may have.
    let role_name = "r".repeat(300);
    let page = format!("simple/{}/index.json", "p".repeat(240));
    let sim = Sim::new();
    {
        let mut repo = sim.repo();
        let paths = PathMatcher::Paths(vec!["simple/*/index.json".into()]);
        repo.delegate("targets", &role_name, paths, false);
        repo.add_target(&role_name, &page, b"the page");
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info(&page).unwrap();
    assert_eq!(info.role.as_str(), role_name);
    let artifact = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert!(artifact.downloaded);
    assert_eq!(artifact.content, b"the page");
    assert_eq!(std::fs::read(&artifact.path).unwrap(), b"the page");
    let stored = artifact.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(stored.len(), MAX_FILE_NAME, "{stored}");
    assert!(
        client
            .cached_files()
            .iter()
            .all(|name| name.len() <= MAX_FILE_NAME)
    );
    assert_eq!(client.cached_files().len(), 5);

    // The next cycle finds both in the cache.
    drop(refreshed);
    sim.clear_requests();
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info(&page).unwrap();
    let again = refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert!(!again.downloaded);
    assert!(delegated_requests(&sim).is_empty(), "{:?}", sim.requests());
}

/// Holds every request for one file until released; answers the others from `sim` at once.
struct Held<'a> {
    sim: &'a Sim,
    file: String,
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl<'a> Held<'a> {
    fn new(sim: &'a Sim, file: String) -> Self {
        Held {
            sim,
            file,
            state: Mutex::new((false, false)),
            changed: Condvar::new(),
        }
    }

    /// Waits (at most 10 s) until a request for the file is being held.
    fn wait_until_holding(&self) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |(holding, _)| !*holding)
            .unwrap();
        state.0
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Fetcher for Held<'_> {
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
        if url.ends_with(&self.file) {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            self.changed.notify_all();
            while !state.1 {
                state = self.changed.wait(state).unwrap();
            }
        }
        self.sim.fetch(url, max_length)
    }
}

#[test]
fn a_lookup_waiting_for_the_repository_holds_up_no_lookup_of_another_target() {
    let sim = Sim::new();
    let (first, second) = ("simple/a/index.json", "simple/b/index.json");
    let (first_bin, second_bin) = {
        let mut repo = sim.repo();
        repo.delegate_succinct("targets", "bin", 10);
        let succinct = match &repo.targets.delegations.as_ref().unwrap().roles {
            tufa_metadata::DelegatedRoles::Succinct(s) => s.clone(),
            _ => unreachable!(),
        };
        let bins = (
            succinct.role_for_target(first).to_string(),
            succinct.role_for_target(second).to_string(),
        );
        repo.add_target(&bins.0, first, b"a");
        repo.add_target(&bins.1, second, b"b");
        repo.update_snapshot();
        bins
    };
    let held = Held::new(&sim, format!(".{first_bin}.json"));
    let dir = tempfile::tempdir().unwrap();
    Updater::<&Held>::initialize(dir.path(), &sim.trusted_root()).unwrap();
    let updater = Updater::new(dir.path(), METADATA_URL, &held, UpdaterConfig::default());
    let refreshed = updater.refresh(SystemTime::now()).unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| refreshed.target_info(first));
        assert!(held.wait_until_holding());
        let (sender, receiver) = std::sync::mpsc::channel();
        let shared = &refreshed;
        scope.spawn(move || {
            let _ = sender.send(shared.target_info(second));
        });
        let other = receiver.recv_timeout(Duration::from_secs(10));
        held.release();
        let other = other.expect("the second lookup waited for the first one's fetch");
        assert_eq!(other.unwrap().role.as_str(), second_bin);
        assert_eq!(waiting.join().unwrap().unwrap().role.as_str(), first_bin);
    });
}

// ---- Offline use of the cache ----

#[test]
fn offline_load_uses_only_the_cache_and_stops_at_expiry() {
    let sim = Sim::new();
    sim.repo().add_target("targets", "page.json", b"page");
    sim.repo().update_snapshot();
    let client = Client::new(&sim);
    assert!(matches!(
        client.updater.load_offline(SystemTime::now()).unwrap_err(),
        Error::NotLoaded { ref role, .. } if role == "timestamp"
    ));
    let refreshed = client.updater.refresh(SystemTime::now()).unwrap();
    let info = refreshed.target_info("page.json").unwrap();
    refreshed
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    sim.clear_requests();

    let offline = client.updater.load_offline(SystemTime::now()).unwrap();
    let info = offline.target_info("page.json").unwrap();
    let page = offline
        .download_target(&info, TARGETS_URL, &client.targets_dir())
        .unwrap();
    assert_eq!(page.content, b"page");
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());

    // The cache gives no more than its signatures allow: past the timestamp's expiry it is a
    // freeze, as on a refresh.
    let later = SystemTime::now() + Duration::from_secs(30 * 86_400);
    let err = client.updater.load_offline(later).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(err.to_string().starts_with("freeze attack:"), "{err}");
}
