//! The publisher lease: several `tufa serve` replicas share one database and one storage; any of
//! them takes uploads and serves pages, exactly one signs at a time.
//!
//! The lease is one database row ([`crate::db::LeaseRow`]). Its holder renews it every
//! [`Lease::renew_interval`] (a fifth of the TTL). Every other replica watches the row and takes
//! it over, with a compare-and-set on `(holder, epoch, renewals)`, once it has seen the row
//! unchanged for a whole TTL on its own monotonic clock. No replica reads another's clock, so
//! clocks that disagree across machines never hand the lease out early; only their rates must
//! agree (they do, to parts per million).
//!
//! The holder counts its lease valid for [`VALID_FOR`] of the TTL from the start of the last
//! renewal the database confirmed. Any takeover comes at least a whole TTL after that renewal
//! started, so between the moment a holder stops trusting its lease and the earliest takeover
//! there are two fifths of the TTL for a write the holder started just before: see
//! [`crate::signing`] for what this fence covers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::db::{Database, LeaseRow, now_micros};
use crate::error::Result;

/// The lease's default TTL: another replica takes over about this long after the publisher
/// dies.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// How much of the TTL, counted from the start of its last confirmed renewal, the holder trusts
/// its lease for (three fifths; renewals come every fifth, so two may fail before it stops).
const VALID_FOR: (u32, u32) = (3, 5);

/// This replica's view of the lease.
pub struct Lease {
    database: Database,
    id: String,
    ttl: Duration,
    state: std::sync::Mutex<State>,
    /// Notified when this replica gains or loses the lease.
    changed: Notify,
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    /// The row as another replica holds it, and since when (on this replica's clock) it has
    /// looked like this.
    watched: Option<(LeaseRow, Instant)>,
    /// Released at shutdown: never taken again by this process.
    released: bool,
}

#[derive(Clone, Copy)]
struct Held {
    epoch: i64,
    valid_until: Instant,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("held", &self.holding())
            .finish()
    }
}

/// This boot of this machine: the kernel's boot id, empty where there is none.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().chars().filter(|c| *c != '-').take(12).collect())
        .unwrap_or_default()
}

/// `host:pid:boot-random`: who holds the lease, for people, and unique to this process (a
/// restarted process with a reused pid never mistakes its predecessor's lease for its own).
fn replica_id() -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .replace(':', "_");
    let mut random = [0u8; 4];
    // A failing system random source leaves zeros: the host, pid and boot still tell processes
    // apart on every machine but one that reuses a pid, and that one also needs this to fail.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    format!(
        "{host}:{}:{}-{}",
        rustix::process::getpid().as_raw_nonzero(),
        boot_id(),
        hex::encode(random)
    )
}

/// Whether `holder` names a process of this machine's current boot that no longer runs (a
/// publisher that was killed): its lease can be taken at once instead of after the TTL. Any
/// doubt (another machine, no boot id, a pid that runs, perhaps reused) answers no.
fn holder_gone(holder: &str, own: &str) -> bool {
    let split = |id: &str| -> Option<(String, String, String)> {
        let mut parts = id.rsplitn(3, ':');
        let boot_random = parts.next()?;
        let pid = parts.next()?;
        let host = parts.next()?;
        let boot = boot_random.rsplit_once('-')?.0;
        Some((host.to_string(), pid.to_string(), boot.to_string()))
    };
    let (Some((host, pid, boot)), Some((own_host, _, own_boot))) = (split(holder), split(own))
    else {
        return false;
    };
    if host != own_host || boot.is_empty() || boot != own_boot {
        return false;
    }
    let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

impl Lease {
    pub fn new(database: Database, ttl: Duration) -> Self {
        Lease {
            database,
            id: replica_id(),
            ttl,
            state: std::sync::Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    /// This replica's name in the lease.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the holder renews, and the others look at the row.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 5
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The epoch this replica holds the lease under, while the last confirmed renewal keeps it
    /// valid; `None` otherwise.
    pub fn holding(&self) -> Option<i64> {
        let held = self.state().held?;
        (Instant::now() < held.valid_until).then_some(held.epoch)
    }

    /// Waits until this replica gains or loses the lease, at most `bound`.
    pub async fn changed(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.changed.notified()).await;
    }

    fn hold(&self, epoch: i64, started: Instant) {
        let (numerator, denominator) = VALID_FOR;
        let valid_until = started + self.ttl * numerator / denominator;
        let mut state = self.state();
        if state.released {
            // A renewal or takeover that was under way at shutdown: the process is ending, and
            // another replica takes the lease over once it has (see `holder_gone`).
            return;
        }
        let gained = state.held.is_none_or(|held| held.epoch != epoch);
        state.held = Some(Held { epoch, valid_until });
        state.watched = None;
        drop(state);
        if gained {
            tracing::info!(
                replica = self.id,
                epoch,
                "this replica holds the publisher lease: it signs"
            );
            self.changed.notify_waiters();
        }
    }

    fn lose(&self, holder: Option<&str>) {
        if self.state().held.take().is_some() {
            tracing::warn!(
                replica = self.id,
                holder,
                "this replica lost the publisher lease: it stops signing and goes on serving"
            );
            self.changed.notify_waiters();
        }
    }

    /// One round: renews the lease if this replica holds it, otherwise watches the row and takes
    /// it when it is free or its holder stopped renewing it for a whole TTL.
    pub async fn step(&self) -> Result<()> {
        let started = Instant::now();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let (held, released) = {
            let state = self.state();
            (state.held, state.released)
        };
        if released {
            return Ok(());
        }
        if let Some(held) = held {
            if self
                .database
                .renew_lease(&self.id, held.epoch, now_micros())
                .await?
            {
                self.hold(held.epoch, started);
            } else {
                let holder = self.database.lease().await.ok().flatten().map(|r| r.holder);
                self.lose(holder.as_deref());
            }
            return Ok(());
        }
        let Some(row) = self.database.lease().await? else {
            if let Some(epoch) = self
                .database
                .create_lease(&self.id, now_micros(), ttl_ms)
                .await?
            {
                self.hold(epoch, started);
            }
            return Ok(());
        };
        if row.holder == self.id {
            // Taken by a statement whose answer was lost (a timeout after the commit).
            self.hold(row.epoch, started);
            return Ok(());
        }
        let expired = row.holder.is_empty() || holder_gone(&row.holder, &self.id) || {
            let mut state = self.state();
            match &state.watched {
                Some((seen, since)) if *seen == row => since.elapsed() >= self.ttl,
                _ => {
                    state.watched = Some((row.clone(), started));
                    false
                }
            }
        };
        if expired {
            if let Some(epoch) = self
                .database
                .take_lease(&self.id, &row, now_micros(), ttl_ms)
                .await?
            {
                if !row.holder.is_empty() {
                    tracing::warn!(
                        previous = row.holder,
                        "the publisher died or stopped renewing its lease: taking over"
                    );
                }
                self.hold(epoch, started);
            } else {
                self.state().watched = None;
            }
        }
        Ok(())
    }

    /// Keeps the lease (or watches for it) until the process ends. A database that fails keeps
    /// no renewal from expiring: the holder stops signing once its lease runs out.
    pub async fn keep(self: Arc<Self>) {
        let mut failing = false;
        loop {
            match self.step().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!("the publisher lease could not be renewed or watched: {error}");
                }
                Err(_) => {}
            }
            tokio::time::sleep(self.renew_interval()).await;
        }
    }

    /// Lets go of the lease (at shutdown), so that another replica takes over at once.
    pub async fn release(&self) -> Result<()> {
        let held = {
            let mut state = self.state();
            state.released = true;
            state.held.take()
        };
        if let Some(held) = held {
            self.database.release_lease(&self.id, held.epoch).await?;
            tracing::info!(replica = self.id, "released the publisher lease");
        }
        Ok(())
    }

    /// What `/status` and `/metrics` say of the lease: the row, and this replica's part in it.
    pub async fn describe(&self) -> Result<serde_json::Value> {
        let row = self.database.lease().await?;
        Ok(describe(row.as_ref(), Some((self.id(), self.holding()))))
    }
}

/// The lease for `/status` and `tufa status`: who holds it since when, and, from a replica,
/// its own name and role.
pub fn describe(row: Option<&LeaseRow>, replica: Option<(&str, Option<i64>)>) -> serde_json::Value {
    let mut value = match row.filter(|row| !row.holder.is_empty()) {
        Some(row) => serde_json::json!({
            "holder": row.holder,
            "epoch": row.epoch,
            "since": crate::format_micros(row.acquired),
            "renewed": crate::format_micros(row.renewed),
            "ttl_ms": row.ttl_ms,
        }),
        None => serde_json::json!({"holder": null}),
    };
    if let Some((id, holding)) = replica {
        value["replica"] = id.into();
        value["role"] = if holding.is_some() {
            "publisher"
        } else {
            "replica"
        }
        .into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_process_of_this_boot_gives_its_lease_up_at_once() {
        let own = replica_id();
        assert!(!holder_gone(&own, &own), "this process runs");
        let (host, rest) = own.split_once(':').unwrap();
        let boot = rest.split_once(':').unwrap().1;
        // Above any pid the kernel hands out (pid_max is at most 2^22).
        let dead = format!("{host}:{}:{boot}", 1 << 23);
        assert_eq!(holder_gone(&dead, &own), !boot.starts_with('-'));
        assert!(!holder_gone(&format!("elsewhere:{}:{boot}", 1 << 23), &own));
        assert!(!holder_gone(
            &format!("{host}:{}:0123456789ab-00000000", 1 << 23),
            &own
        ));
        assert!(!holder_gone("not an id", &own));
    }
}
