//! Verified downloads: a file fetched over HTTP and checked against the sha256 and size a signed
//! or pinned page lists while it streams. Used by the proxy (files from the index) and by the
//! index's mirror (files from the upstream index).
//!
//! Bytes go to the client as they arrive, except the last chunk, which is held back until the
//! whole file has matched its size and sha256. A file that fails ends its response with an error
//! instead, so the client sees a broken download and never a complete wrong file. Only files
//! that matched are stored, written to a temporary file and renamed into place (content-addressed
//! paths); stored files are checked again as they are served, so a damaged copy costs a download,
//! never trust.
//!
//! A download is bounded in time as well as in size ([`Pace`]): a source that sends nothing for
//! a while, sends too slowly, or takes too long in all is cut off (a slow retrieval attack, in
//! TUF's words), and the file is neither served whole nor stored.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ring::digest;
use tokio::sync::{mpsc, oneshot};

const CHUNK: usize = 64 * 1024;

/// What the bytes must be.
#[derive(Clone, Debug)]
pub struct Expected {
    /// For messages: the file name and the project whose page lists it.
    pub what: String,
    /// Lowercase hex, as the page lists it.
    pub sha256: String,
    /// The page that lists it, for messages: "verified page" (signed, checked by TUF) or
    /// "pinned page" (the mirror's record of upstream).
    pub page: &'static str,
    /// Exact size when the page gives one (files); PEP 658 metadata files have only a hash.
    pub size: Option<u64>,
    /// Bytes read at most (endless data).
    pub limit: u64,
}

/// Time bounds on a download from the index (slow retrieval). Time counts only while the proxy
/// waits for the index, not while it waits for the installer to take what it already has, so a
/// slow installer does not make the index look slow.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Longest wait for the response and for each next bytes; also the window the rate is
    /// measured over.
    pub stall: Duration,
    /// Longest wait for a whole download, response and body.
    pub deadline: Duration,
    /// Bytes per second a download must average over each `stall` window.
    pub min_rate: u64,
}

/// A download's progress against its [`Pace`].
struct Pacer {
    pace: Pace,
    waited: Duration,
    window_waited: Duration,
    window_bytes: u64,
}

impl Pacer {
    /// `waited`: how long the response took to come.
    fn new(pace: Pace, waited: Duration) -> Self {
        Pacer {
            pace,
            waited,
            window_waited: Duration::ZERO,
            window_bytes: 0,
        }
    }

    /// Accounts for `bytes` that came after `waited`.
    fn arrived(&mut self, bytes: usize, waited: Duration, what: &str) -> Result<(), String> {
        self.waited += waited;
        self.window_waited += waited;
        self.window_bytes += bytes as u64;
        if self.waited > self.pace.deadline {
            return Err(self.past_deadline(what));
        }
        if self.window_waited >= self.pace.stall {
            let rate = self.window_bytes as f64 / self.window_waited.as_secs_f64();
            if rate < self.pace.min_rate as f64 {
                return Err(format!(
                    "slow retrieval attack: {what} came at {rate:.0} bytes/s, below the minimum \
                     of {} bytes/s; the download was stopped",
                    self.pace.min_rate
                ));
            }
            self.window_waited = Duration::ZERO;
            self.window_bytes = 0;
        }
        Ok(())
    }

    fn past_deadline(&self, what: &str) -> String {
        format!(
            "slow retrieval attack: {what} was not complete after {:?}, the download deadline; \
             the download was stopped",
            self.pace.deadline
        )
    }

    /// The reason for a read that timed out.
    fn timed_out(&mut self, waited: Duration, what: &str) -> String {
        self.waited += waited;
        if self.waited > self.pace.deadline {
            return self.past_deadline(what);
        }
        format!(
            "slow retrieval attack: nothing of {what} arrived for {:?}; the download was stopped",
            self.pace.stall
        )
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
}

/// Why a download could not even start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The source could not be reached, or answered with a 5xx.
    #[error("{0}")]
    Unreachable(String),
    /// The source answered, and what it answered is refused (a 4xx, a wrong announced length).
    #[error("{0}")]
    Refused(String),
    /// The source announced a length other than the expected size: the bytes cannot match.
    #[error("{0}")]
    Mismatch(String),
}

/// Why a download that started did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The bytes are not the expected ones (size or sha256): tampered or substituted.
    Mismatch(String),
    /// The source failed or was too slow; nothing is known about the bytes.
    Incomplete(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Mismatch(reason) | Failure::Incomplete(reason) => reason,
        }
    }
}

/// A verified download under way: the size to announce, the body's chunks, of which the last is
/// an error if verification fails, and how it ended.
pub struct Download {
    pub size: Option<u64>,
    pub body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    /// `Ok` once the file matched (and was stored); dropped unsent when the client hung up first.
    pub done: oneshot::Receiver<Result<(), Failure>>,
}

/// Where a verified file is kept: its final, content-addressed path, and the directory (on the
/// same file system) its temporary copy is written in.
#[derive(Clone, Debug)]
pub struct Destination {
    pub path: PathBuf,
    pub staging_dir: PathBuf,
    /// Sync the file and its directory before it counts as stored: the index's file store, which
    /// its database refers to, must survive a crash; a cache need not.
    pub durable: bool,
}

/// Fetches files over HTTP and verifies them while they stream.
/// Idle connections kept for reuse, to one host and in all.
const MAX_IDLE_CONNECTIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    pace: Pace,
}

impl Downloader {
    pub fn new(pace: Pace, user_agent: &str) -> Self {
        // The deadline is kept by `Pacer`, not by ureq's global timeout, which would also count
        // the time the client takes to read.
        let agent = crate::resolver::agent(
            ureq::Agent::config_builder()
                .timeout_connect(Some(pace.stall))
                .timeout_recv_response(Some(pace.stall))
                .timeout_per_read(Some(pace.stall))
                .tls_config(crate::upstream::tls_config())
                // Keep a connection for every download in flight (ureq keeps 3 per host): each new
                // one costs a TLS handshake, and a lookup once the resolver's answer expired.
                .max_idle_connections(MAX_IDLE_CONNECTIONS)
                .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
                .http_status_as_error(false)
                .user_agent(user_agent)
                .build(),
        );
        Downloader { agent, pace }
    }

    /// Starts serving `expected` from `destination`, or else from `url` (storing it at
    /// `destination` once verified). Returns once the source answered, so that an unreachable
    /// source or a wrong announced length still becomes an error status rather than a broken
    /// body.
    pub async fn fetch(
        &self,
        expected: Expected,
        url: String,
        destination: Destination,
    ) -> Result<Download, StartError> {
        let downloader = self.clone();
        let (started, start) = oneshot::channel();
        let (sink, body) = mpsc::channel(4);
        let (finished, done) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let outcome = downloader.run(expected, &url, &destination, started, &sink);
            if let Err(failure) = &outcome {
                let _ =
                    sink.blocking_send(Err(std::io::Error::other(failure.reason().to_string())));
            }
            let _ = finished.send(outcome);
        });
        let size = start
            .await
            .map_err(|_| StartError::Unreachable("the download task stopped".into()))??;
        Ok(Download { size, body, done })
    }

    fn run(
        &self,
        expected: Expected,
        url: &str,
        destination: &Destination,
        started: oneshot::Sender<Result<Option<u64>, StartError>>,
        sink: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Result<(), Failure> {
        let stored = &destination.path;
        match File::open(stored) {
            Ok(file) => {
                let _ = started.send(Ok(expected.size));
                let checked = pump(file, &expected, None, None, sink);
                if let Err(failure) = &checked {
                    tracing::error!("stored copy refused and removed: {}", failure.reason());
                    let _ = std::fs::remove_file(stored);
                }
                return checked;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("stored file {} not read: {e}", stored.display()),
        }
        let asked = Instant::now();
        let response = match self.agent.get(url).call() {
            Ok(response) => response,
            Err(e) => {
                let reason = format!("fetching {url}: {e}");
                let _ = started.send(Err(StartError::Unreachable(reason.clone())));
                return Err(Failure::Incomplete(reason));
            }
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let reason = format!("fetching {url}: HTTP status {status}");
            let _ = started.send(Err(if status >= 500 {
                StartError::Unreachable(reason.clone())
            } else {
                StartError::Refused(reason.clone())
            }));
            return Err(Failure::Incomplete(reason));
        }
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(announced), Some(size)) = (announced, expected.size)
            && announced != size
        {
            let reason = format!(
                "{} is {announced} bytes at {url}, but its {} lists {size}: tampered or \
                 substituted",
                expected.what, expected.page
            );
            tracing::error!("refused: {reason}");
            let _ = started.send(Err(StartError::Mismatch(reason.clone())));
            return Err(Failure::Mismatch(reason));
        }
        let _ = started.send(Ok(expected.size));
        let temp = std::fs::create_dir_all(&destination.staging_dir)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(".tufa-download-")
                    .tempfile_in(&destination.staging_dir)
            })
            .map_err(|e| tracing::warn!("not storing {}: {e}", expected.what))
            .ok();
        let reader = response.into_body().into_reader();
        let pacer = Pacer::new(self.pace, asked.elapsed());
        let store = temp.map(|temp| Store {
            temp,
            path: stored,
            durable: destination.durable,
        });
        let pumped = pump(reader, &expected, store, Some(pacer), sink);
        if let Err(failure) = &pumped {
            tracing::error!("refused: {}", failure.reason());
        }
        pumped
    }
}

/// Where `pump` keeps the verified bytes.
struct Store<'a> {
    temp: tempfile::NamedTempFile,
    path: &'a Path,
    durable: bool,
}

impl Store<'_> {
    fn persist(self) -> std::io::Result<()> {
        if self.durable {
            self.temp.as_file().sync_all()?;
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.temp.persist(self.path).map_err(|e| e.error)?;
        if self.durable
            && let Some(dir) = self.path.parent()
        {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Streams `source` into `sink` while checking it, holding the last chunk back until the check
/// passed; on success, persists the copy in `store`. With a `pacer`, a source too slow for it is
/// cut off. `Err` carries the reason to log; the caller ends the body with it. A sink whose
/// receiver is gone (the client hung up) ends the copy quietly, storing nothing.
fn pump(
    mut source: impl Read,
    expected: &Expected,
    mut store: Option<Store<'_>>,
    mut pacer: Option<Pacer>,
    sink: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), Failure> {
    let what = &expected.what;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut total: u64 = 0;
    let mut held: Option<Bytes> = None;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let asked = Instant::now();
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Incomplete(match pacer.as_mut() {
                    Some(pacer) if is_timeout(&e) => pacer.timed_out(asked.elapsed(), what),
                    _ => format!("reading {what}: {e}"),
                }));
            }
        };
        if let Some(pacer) = pacer.as_mut() {
            pacer
                .arrived(read, asked.elapsed(), what)
                .map_err(Failure::Incomplete)?;
        }
        let chunk = &buffer[..read];
        total += read as u64;
        if total > expected.limit {
            return Err(match expected.size {
                Some(size) => Failure::Mismatch(format!(
                    "{what} is more than the {size} bytes its {} lists: tampered or substituted",
                    expected.page
                )),
                None => Failure::Incomplete(format!(
                    "endless data attack: {what} sent more than {} bytes",
                    expected.limit
                )),
            });
        }
        context.update(chunk);
        if let Some(file) = store.as_mut()
            && let Err(e) = file.temp.write_all(chunk)
        {
            tracing::warn!("not storing {what}: {e}");
            store = None;
        }
        if let Some(previous) = held.replace(Bytes::copy_from_slice(chunk))
            && sink.blocking_send(Ok(previous)).is_err()
        {
            return Ok(());
        }
    }
    if let Some(size) = expected.size
        && size != total
    {
        return Err(Failure::Mismatch(format!(
            "{what} is {total} bytes, but its {} lists {size}: tampered or substituted",
            expected.page
        )));
    }
    let actual = hex::encode(context.finish());
    if actual != expected.sha256 {
        return Err(Failure::Mismatch(format!(
            "{what} does not match its sha256 in the {}: tampered or substituted (it has \
             sha256 {actual}, the page lists {})",
            expected.page, expected.sha256
        )));
    }
    if let Some(store) = store
        && let Err(e) = store.persist()
    {
        tracing::warn!("not storing {what}: {e}");
    }
    if let Some(last) = held {
        let _ = sink.blocking_send(Ok(last));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(content: &[u8], size: Option<u64>) -> Expected {
        Expected {
            what: "demo.whl of demo".into(),
            sha256: hex::encode(digest::digest(&digest::SHA256, content)),
            page: "verified page",
            size,
            limit: size.unwrap_or(1 << 20),
        }
    }

    /// Runs `pump` and returns what reached the installer: the chunks, and whether the body
    /// ended in an error.
    fn run(source: &[u8], expected: &Expected, cache: Option<&Path>) -> (Vec<u8>, bool) {
        run_paced(source, expected, cache, None).0
    }

    /// Like `run`, with a pacer, and the reason the body ended in an error.
    fn run_paced(
        source: impl Read,
        expected: &Expected,
        cache: Option<&Path>,
        pacer: Option<Pacer>,
    ) -> ((Vec<u8>, bool), Option<String>) {
        let (sink, mut body) = mpsc::channel(1024);
        let store = cache.map(|path| Store {
            temp: tempfile::NamedTempFile::new_in(path.parent().unwrap()).unwrap(),
            path,
            durable: true,
        });
        let result = pump(source, expected, store, pacer, &sink);
        if let Err(failure) = &result {
            sink.blocking_send(Err(std::io::Error::other(failure.reason().to_string())))
                .unwrap();
        }
        drop(sink);
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(item) = body.blocking_recv() {
            match item {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        (
            (received, failed),
            result.err().map(|f| f.reason().to_string()),
        )
    }

    /// Gives `step` bytes of `content` per read, each after `delay`.
    struct Slow<'a> {
        content: &'a [u8],
        step: usize,
        delay: Duration,
    }

    impl Read for Slow<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            let n = self.step.min(self.content.len()).min(buffer.len());
            buffer[..n].copy_from_slice(&self.content[..n]);
            self.content = &self.content[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_source_below_the_minimum_rate_or_past_the_deadline_is_cut_off_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached");
        let content = vec![7u8; 10_000];
        let pace = Pace {
            stall: Duration::from_millis(100),
            deadline: Duration::from_secs(60),
            min_rate: 1000,
        };
        let drip = Slow {
            content: &content,
            step: 1,
            delay: Duration::from_millis(20),
        };
        let pacer = Pacer::new(pace, Duration::ZERO);
        let ((received, failed), reason) = run_paced(
            drip,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(pacer),
        );
        assert!(failed && received.len() < 100, "{}", received.len());
        let reason = reason.unwrap();
        assert!(
            reason.starts_with("slow retrieval attack: demo.whl of demo came at ")
                && reason.contains("below the minimum of 1000 bytes/s"),
            "{reason}"
        );
        assert!(!path.exists());

        // Fast enough for the rate, too slow for the deadline.
        let pace = Pace {
            deadline: Duration::from_millis(300),
            ..pace
        };
        let steady = Slow {
            content: &content,
            step: 500,
            delay: Duration::from_millis(20),
        };
        let ((received, failed), reason) = run_paced(
            steady,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(Pacer::new(pace, Duration::ZERO)),
        );
        assert!(failed && received.len() < content.len());
        assert!(
            reason
                .unwrap()
                .contains("was not complete after 300ms, the download deadline")
        );
        assert!(!path.exists());

        // The same source within both bounds arrives whole and is cached.
        let pace = Pace {
            deadline: Duration::from_secs(60),
            ..pace
        };
        let steady = Slow {
            content: &content,
            step: 500,
            delay: Duration::from_millis(1),
        };
        let ((received, failed), reason) = run_paced(
            steady,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(Pacer::new(pace, Duration::ZERO)),
        );
        assert!(!failed, "{reason:?}");
        assert_eq!(received, content);
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_matching_file_streams_whole_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("cached");
        let (received, failed) = run(
            &content,
            &expected(&content, Some(content.len() as u64)),
            Some(&path),
        );
        assert!(!failed);
        assert_eq!(received, content);
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_tampered_file_never_arrives_whole_and_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut tampered = content.clone();
        tampered[150_000] ^= 1;
        let path = dir.path().join("cached");
        for (source, size) in [
            (&tampered[..], Some(content.len() as u64)),
            (&content[..10], Some(content.len() as u64)),
            (&content[..], Some(100)),
            (&tampered[..], None),
        ] {
            let (received, failed) = run(source, &expected(&content, size), Some(&path));
            assert!(failed);
            assert!(received.len() < source.len(), "the last chunk is held back");
            assert!(!path.exists());
        }
        // Small files: nothing at all before the check.
        let (received, failed) = run(b"evil", &expected(b"good", Some(4)), None);
        assert!(failed && received.is_empty());
    }
}
