//! Downloading bytes: the [`Fetcher`] trait the updater does all its I/O through, and
//! [`HttpFetcher`], its HTTP implementation.

use std::sync::Arc;
use std::time::Duration;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The server answered with a non-success status; 403 and 404 mean "no such file".
    Status(u16),
    /// The response went past the byte limit (endless data), and reading stopped there.
    TooLarge,
    /// Connection, TLS, timeout or protocol failure.
    Transport(String),
}

/// Fetches a URL, returning at most `max_length` bytes. An implementation should stop reading
/// once the limit is passed (and answer [`FetchError::TooLarge`]), so that endless data costs no
/// memory; the updater refuses longer answers itself, so a fetcher that does not still cannot
/// make the client accept them.
pub trait Fetcher {
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError>;
}

impl<F: Fetcher + ?Sized> Fetcher for &F {
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
        (**self).fetch(url, max_length)
    }
}

impl<F: Fetcher + ?Sized> Fetcher for Arc<F> {
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
        (**self).fetch(url, max_length)
    }
}

/// A blocking HTTP(S) fetcher (ureq with rustls). Every request has a deadline, so a server that
/// sends slowly cannot hold the client forever (slow retrieval), and a byte limit.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    agent: ureq::Agent,
}

impl HttpFetcher {
    /// `timeout` bounds each whole request: connecting, headers and body.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .http_status_as_error(false)
            .user_agent(concat!("tufa-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpFetcher { agent }
    }
}

impl Default for HttpFetcher {
    fn default() -> Self {
        HttpFetcher::new(Duration::from_secs(30))
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|length| length > max_length) {
            return Err(FetchError::TooLarge);
        }
        response
            .into_body()
            .into_with_config()
            .limit(max_length)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge,
                other => FetchError::Transport(other.to_string()),
            })
    }
}
