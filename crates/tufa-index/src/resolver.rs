//! Name lookups for the upstream clients, remembered for a minute.
//!
//! Every new connection to the upstream's file host costs a lookup, and a mirror sync opens
//! many at once. A resolver that drops a query leaves the lookup waiting for its 5 s retry
//! (measured on the build machine: `cargo bench -p tufa --bench mirror` went 3x slower than
//! bandersnatch, whose HTTP client caches lookups). Remembering each answer for a minute makes
//! that one lookup per host and minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// How long an answer is used.
const TTL: Duration = Duration::from_secs(60);

/// Hosts remembered at most: the upstream and its file host, with room to spare.
const MAX_HOSTS: usize = 64;

/// [`DefaultResolver`] with its answers remembered for [`TTL`].
#[derive(Debug, Default, Clone)]
struct CachingResolver {
    inner: Arc<DefaultResolver>,
    answers: Arc<Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let lock = || self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, addrs)) = lock().get(&key)
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut answers = lock();
        if answers.len() >= MAX_HOSTS {
            answers.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        if answers.len() < MAX_HOSTS {
            answers.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

/// An agent with `config` whose lookups go through the process's one [`CachingResolver`].
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    static RESOLVER: std::sync::LazyLock<CachingResolver> =
        std::sync::LazyLock::new(CachingResolver::default);
    ureq::Agent::with_parts(config, DefaultConnector::default(), RESOLVER.clone())
}
