//! Downloading bytes: the [`Fetcher`] trait the updater does all its I/O through, and
//! [`HttpFetcher`], its HTTP implementation.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// The content codings this client asks for and decodes, smallest output first.
const ACCEPT_ENCODING: &str = "zstd, gzip";

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
/// sends slowly cannot hold the client forever (slow retrieval), and a byte limit. It asks for
/// zstd or gzip and decodes them; the byte limit is on the decoded bytes, which are what TUF
/// lengths and hashes describe, so a small compressed bomb is endless data like any other.
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
            .accept_encoding(ACCEPT_ENCODING)
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
        let coding = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty() && v != "identity");
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A compressed body is shorter than what it decodes to, so more than the limit is too
        // much whether compressed or not.
        if announced.is_some_and(|length| length > max_length) {
            return Err(FetchError::TooLarge);
        }
        let body = response.into_body().into_with_config().limit(max_length);
        let Some(coding) = coding else {
            return body.read_to_vec().map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge,
                other => FetchError::Transport(other.to_string()),
            });
        };
        let raw = body.reader();
        let decoded: Box<dyn Read> = match coding.as_str() {
            "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(raw)),
            "zstd" => Box::new(
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| FetchError::Transport(format!("decoding zstd: {e}")))?,
            ),
            other => {
                return Err(FetchError::Transport(format!(
                    "the server sent content coding {other:?}, which was not asked for \
                     ({ACCEPT_ENCODING})"
                )));
            }
        };
        read_decoded(decoded, &coding, max_length)
    }
}

/// Reads at most `max_length` decoded bytes, and one more to tell a body of exactly the limit
/// from a longer one: memory never grows with what a compressed body would expand to.
fn read_decoded(decoded: impl Read, coding: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    decoded
        .take(max_length.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            let raw_too_long = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                .is_some_and(|inner| matches!(inner, ureq::Error::BodyExceedsLimit(_)));
            if raw_too_long {
                FetchError::TooLarge
            } else {
                FetchError::Transport(format!("decoding {coding}: {e}"))
            }
        })?;
    if out.len() as u64 > max_length {
        return Err(FetchError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decoded_bytes_are_bounded_by_the_limit() {
        let content = vec![b'a'; 10_000];
        let zstd = zstd::encode_all(&content[..], 3).unwrap();
        for (coding, body) in [("gzip", gzip(&content)), ("zstd", zstd)] {
            let decoder = || -> Box<dyn Read + '_> {
                match coding {
                    "gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
                    _ => Box::new(zstd::stream::read::Decoder::new(&body[..]).unwrap()),
                }
            };
            assert_eq!(read_decoded(decoder(), coding, 10_000).unwrap(), content);
            assert_eq!(
                read_decoded(decoder(), coding, 9_999),
                Err(FetchError::TooLarge),
                "{coding}: one byte past the limit"
            );
        }
        let corrupt = &gzip(&content)[..40];
        assert!(matches!(
            read_decoded(flate2::read::GzDecoder::new(corrupt), "gzip", 10_000),
            Err(FetchError::Transport(_))
        ));
    }
}
