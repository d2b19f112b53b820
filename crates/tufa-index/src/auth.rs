//! Who is uploading: the API token in the `Authorization` header, and a back-off for addresses
//! that keep presenting tokens that do not work (someone guessing, or a job with an old token
//! hammering the index).
//!
//! Nothing here logs or returns the token: refusals name the token by its ID at most.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::Index;
use crate::db::{Authenticated, Identity};
use crate::error::Error;
use crate::upload::UploadError;

/// Failed authentications an address may make within `WINDOW` before it is refused for
/// `LOCKOUT`.
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// Addresses remembered at once: about 1 MB, whatever the number of addresses failing.
const MAX_ADDRESSES: usize = 16_384;

/// Why a request's credentials were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(
        "This API token (ID {id}) expired at {expired}; create a new one with `tufa token create`"
    )]
    Expired { id: String, expired: String },
    #[error(
        "This API token (ID {id}) was revoked at {revoked}; create a new one with `tufa token create`"
    )]
    Revoked { id: String, revoked: String },
    #[error(
        "Too many failed authentications from this address: retry in {retry_after} s \
         (after {max} failures within {window} s)",
        max = MAX_FAILURES,
        window = WINDOW.as_secs()
    )]
    TooManyFailures { retry_after: u64 },
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Upload(error) => error.status(),
            AuthError::Expired { .. } | AuthError::Revoked { .. } => 403,
            AuthError::TooManyFailures { .. } => 429,
        }
    }

    /// Seconds after which the client may try again, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::TooManyFailures { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<Error> for AuthError {
    fn from(error: Error) -> Self {
        AuthError::Upload(UploadError::Internal(error))
    }
}

/// RFC 3339 to the second, for messages and `tufa token list`.
pub fn format_micros(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(micros.div_euclid(1_000_000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{micros} µs after 1970"))
}

/// The identity whose token `headers` carry, from `client`. Each failure with credentials
/// counts against the client's address; an address over the limit is refused before its
/// token is looked at.
pub async fn identify(
    index: &Index,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Identity, AuthError> {
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Err(UploadError::Unauthenticated.into());
    };
    if let Some(retry_after) = index.failed_logins.blocked(client, Instant::now()) {
        return Err(AuthError::TooManyFailures { retry_after });
    }
    let result = check(index, authorization.to_str().ok()).await;
    if matches!(&result, Err(error) if error.status() != 500) {
        index.failed_logins.failed(client, Instant::now());
    }
    result
}

async fn check(index: &Index, authorization: Option<&str>) -> Result<Identity, AuthError> {
    let credentials = authorization
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(UploadError::Unauthenticated)?;
    let (user, token) = credentials
        .split_once(':')
        .ok_or(UploadError::Unauthenticated)?;
    if user != "__token__" || token.is_empty() {
        return Err(UploadError::Unauthenticated.into());
    }
    match index.database.authenticate(token).await? {
        Authenticated::Valid(identity) => Ok(identity),
        Authenticated::Expired { id, expired_micros } => Err(AuthError::Expired {
            id: id.to_string(),
            expired: format_micros(expired_micros),
        }),
        Authenticated::Revoked { id, revoked_micros } => Err(AuthError::Revoked {
            id: id.to_string(),
            revoked: format_micros(revoked_micros),
        }),
        Authenticated::Unknown => Err(UploadError::BadToken.into()),
    }
}

/// The key an address is counted under: an IPv6 client usually holds a whole /64, so its
/// addresses count as one.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn expired(&self, now: Instant) -> bool {
        match self.blocked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.window_start) >= WINDOW,
        }
    }
}

/// Failed authentications per client address, bounded in size.
#[derive(Debug, Default)]
pub struct FailedLogins {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl FailedLogins {
    /// Seconds until `client` may authenticate again, if it is locked out.
    fn blocked(&self, client: IpAddr, now: Instant) -> Option<u64> {
        let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let until = addresses.get(&client_key(client))?.blocked_until?;
        let left = until.checked_duration_since(now).filter(|d| !d.is_zero())?;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    fn failed(&self, client: IpAddr, now: Instant) {
        let key = client_key(client);
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if !addresses.contains_key(&key) && addresses.len() >= MAX_ADDRESSES {
            addresses.retain(|_, failures| !failures.expired(now));
            if addresses.len() >= MAX_ADDRESSES {
                // Still full of live entries: forget the one that started failing first, which
                // is the nearest to being forgotten anyway.
                if let Some(oldest) = addresses
                    .iter()
                    .filter(|(_, f)| f.blocked_until.is_none())
                    .min_by_key(|(_, f)| f.window_start)
                    .or_else(|| addresses.iter().min_by_key(|(_, f)| f.blocked_until))
                    .map(|(key, _)| *key)
                {
                    addresses.remove(&oldest);
                }
            }
        }
        let failures = addresses.entry(key).or_insert(Failures {
            count: 0,
            window_start: now,
            blocked_until: None,
        });
        if failures.expired(now) {
            *failures = Failures {
                count: 0,
                window_start: now,
                blocked_until: None,
            };
        }
        failures.count += 1;
        if failures.count >= MAX_FAILURES {
            failures.blocked_until = Some(now + LOCKOUT);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.addresses.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_after_the_failures_and_let_in_after_the_lockout() {
        let logins = FailedLogins::default();
        let start = Instant::now();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            logins.failed(client, start);
        }
        assert_eq!(logins.blocked(client, start), None);
        logins.failed(client, start);
        assert_eq!(logins.blocked(client, start), Some(LOCKOUT.as_secs()));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(logins.blocked(other, start), None);
        assert_eq!(logins.blocked(client, start + LOCKOUT), None);
        logins.failed(client, start + LOCKOUT);
        assert_eq!(logins.blocked(client, start + LOCKOUT), None);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_lock_out() {
        let logins = FailedLogins::default();
        let start = Instant::now();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let spacing = WINDOW / (MAX_FAILURES - 1) + Duration::from_secs(1);
        for i in 0..3 * MAX_FAILURES {
            let now = start + spacing * i;
            logins.failed(client, now);
            assert_eq!(logins.blocked(client, now), None, "failure {i}");
        }
    }

    #[test]
    fn an_ipv6_client_counts_as_its_slash_64() {
        let logins = FailedLogins::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            logins.failed(format!("2001:db8::{i:x}").parse().unwrap(), now);
        }
        assert!(
            logins
                .blocked("2001:db8::ffff".parse().unwrap(), now)
                .is_some()
        );
        assert!(
            logins
                .blocked("2001:db8:0:1::1".parse().unwrap(), now)
                .is_none()
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let logins = FailedLogins::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 1000) {
            logins.failed(IpAddr::V4(i.into()), now);
        }
        assert_eq!(logins.len(), MAX_ADDRESSES);
    }
}
