//! Root's declared online lifetimes (`x-tufa-online-lifetimes`): timestamp, snapshot and every
//! role that `bins` delegates are refused when they expire further ahead than declared, the way
//! a thief holding the online key would sign them; a root without the declaration bounds nothing.

#[allow(dead_code)] // The other test binaries use the rest of it.
mod common;

use std::time::SystemTime;

use common::*;
use tufa_client::Error;
use tufa_metadata::{OnlineLifetimes, PathMatcher};

const DAY: u64 = 86_400;

/// A repository whose root declares one day for every online role, with `targets` → `bins` →
/// four succinct bin roles, one of them holding `path`.
fn declaring_repository(declare: bool, path: &str) -> (Sim, String) {
    let sim = Sim::new();
    let bin = {
        let mut repo = sim.repo();
        if declare {
            let lifetimes = OnlineLifetimes {
                timestamp: DAY,
                snapshot: DAY,
                bins: DAY,
            };
            lifetimes.declare(&mut repo.root);
            repo.publish_root();
        }
        repo.delegate(
            "targets",
            "bins",
            PathMatcher::Paths(vec!["simple/*/index.json".into()]),
            true,
        );
        repo.delegate_succinct("bins", "bin", 2);
        let bin = match &repo
            .targets_role("bins")
            .delegations
            .as_ref()
            .unwrap()
            .roles
        {
            tufa_metadata::DelegatedRoles::Succinct(s) => s.role_for_target(path).to_string(),
            _ => unreachable!(),
        };
        repo.add_target(&bin, path, b"page");
        repo.update_snapshot();
        bin
    };
    (sim, bin)
}

fn beyond(error: Error, role: &str) {
    match error {
        Error::BeyondOnlineLifetime {
            role: refused,
            lifetime_seconds,
            ..
        } => {
            assert_eq!(refused, role);
            assert_eq!(lifetime_seconds, DAY);
        }
        other => panic!("{role}: expected the stolen online key attack, got {other}"),
    }
}

#[test]
fn online_roles_expiring_beyond_the_declared_lifetime_are_refused() {
    let path = "simple/demo/index.json";
    let now = SystemTime::now();

    let (sim, _) = declaring_repository(true, path);
    sim.repo().timestamp.expires = expiry(now, 3650);
    let error = Client::new(&sim).updater.refresh(now).unwrap_err();
    assert!(
        error.to_string().contains("stolen online key attack"),
        "{error}"
    );
    beyond(error, "timestamp");

    let (sim, _) = declaring_repository(true, path);
    {
        let mut repo = sim.repo();
        repo.snapshot.expires = expiry(now, 30);
        repo.update_snapshot();
    }
    beyond(
        Client::new(&sim).updater.refresh(now).unwrap_err(),
        "snapshot",
    );

    let (sim, bin) = declaring_repository(true, path);
    {
        let mut repo = sim.repo();
        repo.targets_role_mut(&bin).expires = expiry(now, 30);
        repo.targets_role_mut(&bin).version += 1;
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    let refreshed = client.updater.refresh(now).unwrap();
    beyond(refreshed.target_info(path).unwrap_err(), &bin);

    // Within the lifetime, and without a declaration, the same expiries are accepted.
    let (sim, _) = declaring_repository(true, path);
    let client = Client::new(&sim);
    client
        .updater
        .refresh(now)
        .unwrap()
        .target_info(path)
        .unwrap();
    let (sim, bin) = declaring_repository(false, path);
    {
        let mut repo = sim.repo();
        repo.timestamp.expires = expiry(now, 3650);
        repo.targets_role_mut(&bin).expires = expiry(now, 30);
        repo.targets_role_mut(&bin).version += 1;
        repo.update_snapshot();
    }
    let client = Client::new(&sim);
    client
        .updater
        .refresh(now)
        .unwrap()
        .target_info(path)
        .unwrap();
}
