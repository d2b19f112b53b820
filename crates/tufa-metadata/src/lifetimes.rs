//! The longest lifetime root allows each online role: `root.signed["x-tufa-online-lifetimes"]`.
//!
//! A stolen online key signs whatever expiry the thief chooses, so without a bound a forged
//! timestamp expiring in ten years freezes a client on the thief's view until it sees a new root.
//! Root is signed offline, so a declaration there bounds what the online key can make a client
//! accept: online metadata expiring further ahead than `now + lifetime` is refused. Clients that
//! do not know the field (python-tuf, go-tuf) keep it as an unrecognized field and still verify.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metadata::Root;
use crate::types::Expires;

/// The field of root's `signed` object that holds the declaration.
pub const ONLINE_LIFETIMES_FIELD: &str = "x-tufa-online-lifetimes";

/// How far a client's clock may run behind the clock that signed, in seconds (five minutes,
/// as the publisher's own clock tolerance): without it, metadata signed by a server whose clock
/// is a little ahead would look longer-lived than declared.
pub const LIFETIME_CLOCK_TOLERANCE: Duration = Duration::from_secs(300);

/// The declared lifetimes, in seconds. `bins` covers every bin-XXXX role that `bins` delegates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineLifetimes {
    pub timestamp: u64,
    pub snapshot: u64,
    pub bins: u64,
}

/// An online role, as the declaration names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnlineRole {
    Timestamp,
    Snapshot,
    /// A bin-XXXX role.
    Bin,
}

impl OnlineLifetimes {
    /// The declaration in `root`, `None` when root has none (a repository from before the field,
    /// or from another tool). A malformed declaration is an error: it is offline-signed, so it
    /// is a mistake to fix, not a bound to guess.
    pub fn of(root: &Root) -> Result<Option<Self>> {
        let Some(value) = root.unrecognized.get(ONLINE_LIFETIMES_FIELD) else {
            return Ok(None);
        };
        let lifetimes: OnlineLifetimes = serde_json::from_value(value.clone())
            .map_err(|e| Error::InvalidOnlineLifetimes(e.to_string()))?;
        if [lifetimes.timestamp, lifetimes.snapshot, lifetimes.bins].contains(&0) {
            return Err(Error::InvalidOnlineLifetimes(
                "a lifetime of 0 seconds would refuse every signature".into(),
            ));
        }
        Ok(Some(lifetimes))
    }

    /// Writes this declaration into `root` (which then needs signing again).
    pub fn declare(&self, root: &mut Root) {
        root.unrecognized.insert(
            ONLINE_LIFETIMES_FIELD.to_string(),
            serde_json::json!({
                "timestamp": self.timestamp,
                "snapshot": self.snapshot,
                "bins": self.bins,
            }),
        );
    }

    pub fn of_role(&self, role: OnlineRole) -> Duration {
        Duration::from_secs(match role {
            OnlineRole::Timestamp => self.timestamp,
            OnlineRole::Snapshot => self.snapshot,
            OnlineRole::Bin => self.bins,
        })
    }

    /// Whether `expires` lies within the role's lifetime (plus the clock tolerance) from `now`.
    pub fn allows(&self, role: OnlineRole, expires: &Expires, now: SystemTime) -> bool {
        expires.to_system_time() <= now + self.of_role(role) + LIFETIME_CLOCK_TOLERANCE
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::TopLevelRoles;
    use crate::{RoleKeys, Threshold};

    fn root() -> Root {
        let none = || RoleKeys::new(vec![], Threshold::ONE);
        Root::new(
            1,
            Expires::after(SystemTime::now(), Duration::from_secs(60)),
            true,
            BTreeMap::new(),
            TopLevelRoles {
                root: none(),
                targets: none(),
                snapshot: none(),
                timestamp: none(),
            },
        )
    }

    #[test]
    fn declared_lifetimes_round_trip_and_bound_expiry() {
        let mut root = root();
        assert_eq!(OnlineLifetimes::of(&root).unwrap(), None);
        let declared = OnlineLifetimes {
            timestamp: 86_400,
            snapshot: 2 * 86_400,
            bins: 3 * 86_400,
        };
        declared.declare(&mut root);
        assert_eq!(OnlineLifetimes::of(&root).unwrap(), Some(declared));
        let now = SystemTime::now();
        let in_days = |days: u64| Expires::after(now, Duration::from_secs(days * 86_400));
        assert!(declared.allows(OnlineRole::Timestamp, &in_days(1), now));
        assert!(!declared.allows(OnlineRole::Timestamp, &in_days(2), now));
        assert!(declared.allows(OnlineRole::Bin, &in_days(3), now));
        assert!(!declared.allows(OnlineRole::Snapshot, &in_days(3650), now));
    }

    #[test]
    fn malformed_or_zero_lifetimes_are_refused() {
        for value in [
            serde_json::json!({"timestamp": 1, "snapshot": 1}),
            serde_json::json!({"timestamp": -1, "snapshot": 1, "bins": 1}),
            serde_json::json!({"timestamp": 0, "snapshot": 1, "bins": 1}),
            serde_json::json!("one day"),
        ] {
            let mut root = root();
            root.unrecognized
                .insert(ONLINE_LIFETIMES_FIELD.into(), value.clone());
            assert!(
                matches!(
                    OnlineLifetimes::of(&root),
                    Err(Error::InvalidOnlineLifetimes(_))
                ),
                "{value}"
            );
        }
    }
}
